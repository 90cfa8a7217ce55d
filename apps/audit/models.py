from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class AuditAction(models.TextChoices):
    PROJECT_CREATED = "project_created", "Project created"
    PROJECT_SETTINGS = "project_settings", "Project settings changed"
    GUIDELINES_CHANGED = "guidelines_changed", "Guidelines changed"
    MEMBERSHIP_ADDED = "membership_added", "Member added"
    MEMBERSHIP_CHANGED = "membership_changed", "Member's role changed"
    MEMBERSHIP_REMOVED = "membership_removed", "Member removed"
    IMPORT_STARTED = "import_started", "Import started"
    IMPORT_FINISHED = "import_finished", "Import finished"
    IMPORT_FAILED = "import_failed", "Import failed"
    BATCH_STATUS = "batch_status", "Batch status changed"
    BATCH_PRIORITY = "batch_priority", "Batch priority changed"
    BATCH_DELETED = "batch_deleted", "Batch deleted"
    LEASES_RECLAIMED = "leases_reclaimed", "Expired leases reclaimed"
    ACCOUNT_CREATED = "account_created", "Account created"
    ACCOUNT_DEACTIVATED = "account_deactivated", "Account deactivated"
    ACCOUNT_REACTIVATED = "account_reactivated", "Account reactivated"
    PASSWORD_LINK = "password_link", "Set-password link issued"
    EXPORT = "export", "Export"
    EXPORT_CANCELLED = "export_cancelled", "Background export cancelled"
    JUDGMENTS_INVALIDATED = "judgments_invalidated", "Judgments invalidated"
    API_TOKEN_CREATED = "api_token_created", "API token created"
    API_TOKEN_REVOKED = "api_token_revoked", "API token revoked"
    ENDPOINT_CREATED = "endpoint_created", "Model endpoint registered"
    ENDPOINT_CHANGED = "endpoint_changed", "Model endpoint changed"
    ENDPOINT_DELETED = "endpoint_deleted", "Model endpoint deleted"
    ENDPOINT_TESTED = "endpoint_tested", "Model endpoint's connection tested"
    GENERATION_STARTED = "generation_started", "Generation started"
    GENERATION_CANCELLED = "generation_cancelled", "Generation cancelled"
    GENERATION_RESUMED = "generation_resumed", "Generation resumed"
    GENERATION_ENDED = "generation_ended", "Generation ended"
    JUDGE_SAVED = "judge_saved", "AI judge saved"
    JUDGING_STARTED = "judging_started", "AI judging started"
    JUDGING_CANCELLED = "judging_cancelled", "AI judging cancelled"
    JUDGING_RESUMED = "judging_resumed", "AI judging resumed"
    JUDGING_ENDED = "judging_ended", "AI judging ended"


class AuditEvent(models.Model):
    """One lead or staff action: who, when, what, on which project and object, with details.

    Written by `apps.audit.services.audit_record` only, and never changed afterwards. The actor's
    username and the target's name are copied in, so the record outlives both.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
    )
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="audit_project_time"),
            models.Index(fields=["action", "-created_at"], name="audit_action_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_name or 'the system'}"
