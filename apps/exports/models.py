"""Background exports: one row per requested export file (see apps/exports/jobs.py)."""

from django.conf import settings
from django.db import models

from apps.projects.models import Project


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    EXPIRED = "expired", "expired"
    # Stopped on request (POST .../cancel/) while queued or running; it never has a file.
    CANCELLED = "cancelled", "cancelled"


class FileFormat(models.TextChoices):
    JSONL = "jsonl", "JSON Lines"
    PARQUET = "parquet", "Parquet"


class ExportJob(models.Model):
    """An export built by a Celery task into a file under EXPORT_ROOT.

    `attempts` counts the runs that claimed the job; each run writes only while the row still
    says running with its own attempt number, so two deliveries never both write a file.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    format = models.CharField(max_length=32)
    file_format = models.CharField(max_length=16, choices=FileFormat.choices)
    # The export's query parameters besides format (strings, as the streaming endpoint takes
    # them), validated before the job was created.
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    rows_written = models.BigIntegerField(default=0)
    # An estimate made when the run starts (the rows some formats filter out are counted).
    rows_total = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Written as the run writes rows; while queued, when it was last (re)sent to the workers.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The file's name within EXPORT_ROOT once done; the dataset card is `<stem>.card.md` beside it.
    file_name = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="exportjob_project_id"),
            models.Index(fields=["status", "heartbeat_at"], name="exportjob_status_heartbeat"),
            models.Index(fields=["status", "expires_at"], name="exportjob_status_expires"),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.file_format}, {self.status})"

    @property
    def percent(self) -> float | None:
        """Progress in percent: 100 once done (and expired); while running, rows written over
        the estimate, held below 100 (the estimate can be low while new votes arrive)."""
        if self.status in (ExportStatus.DONE, ExportStatus.EXPIRED):
            return 100.0
        if not self.rows_total:
            return None if self.status == ExportStatus.QUEUED else 0.0
        return round(min(99.9, 100.0 * self.rows_written / self.rows_total), 1)
