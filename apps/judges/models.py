"""AI judges: an endpoint and a judging prompt that label comparisons as an account of role "ai"
(apps.judges.services), and the jobs that run them over a batch."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.batches.models import Batch, Comparison
from apps.endpoints.models import ModelEndpoint
from apps.judging.models import Judgment
from apps.projects.models import Project


class Disagreement(models.TextChoices):
    """What a comparison gets when the judge's two orders disagree."""

    TIE = "tie", "A tie"
    INCONSISTENT = "inconsistent", "No vote: recorded as inconsistent"


class Judge(models.Model):
    """An endpoint and a judging prompt for one project. Its prompt is versioned: each verdict
    records `template_version` (apps.judges.prompts.template_version), so a changed prompt is
    told apart in every figure."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judges")
    name = models.CharField(max_length=100)
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="+")
    # Empty: the documented default for the project's scheme (apps.judges.prompts).
    system_prompt = models.TextField(blank=True)
    user_prompt = models.TextField(blank=True)
    template_version = models.CharField(max_length=12, editable=False)
    disagreement = models.CharField(
        max_length=16, choices=Disagreement.choices, default=Disagreement.INCONSISTENT
    )
    temperature = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    max_tokens = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(16), MaxValueValidator(100_000)]
    )
    counts_toward_overlap = models.BooleanField(
        default=False,
        help_text="Its votes take a comparison's slots as a person's would. Off: it labels "
        "every comparison besides the people, and no figure about people reads its votes.",
    )
    people_first_where_unsure = models.BooleanField(
        default=True,
        help_text="Within each level of the project's policy, people get first the comparisons "
        "where this judge's two orders disagreed or it was unsure (a tie, or a graded verdict of "
        "one step), and last those it was sure of.",
    )
    # Its account: role "ai" in the project, an unusable password.
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ai_judge", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="judge_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class JudgeJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"
    STOPPED = "stopped", "Stopped"


class JudgeJob(models.Model):
    """A judge over a batch's comparisons, in the background: each comparison judged once per
    judge (idempotent), in both orders."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="jobs")
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="judge_jobs")
    status = models.CharField(
        max_length=16, choices=JudgeJobStatus.choices, default=JudgeJobStatus.QUEUED
    )
    note = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    comparisons_total = models.PositiveIntegerField(default=0)
    comparisons_done = models.PositiveIntegerField(default=0)
    comparisons_failed = models.PositiveIntegerField(default=0)
    inconsistent = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Judging {self.pk} by {self.judge}" if self.pk else "new judging job"


class Verdict(models.Model):
    """What the judge answered for one comparison, in both orders: the raw texts, the parsed
    verdicts, whether the orders agreed, and the judgment recorded from them (none when they
    disagreed and the judge records that as inconsistent, or when an answer could not be
    parsed after a retry)."""

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="verdicts")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+")
    judgment = models.OneToOneField(
        Judgment, null=True, blank=True, on_delete=models.PROTECT, related_name="ai_verdict"
    )
    template_version = models.CharField(max_length=12)
    # As shown (candidate_a first) and swapped; the parsed verdicts in the comparison's
    # orientation ({"option", "strength", "criteria"}), null where it could not be parsed.
    raw_first = models.TextField(blank=True)
    raw_second = models.TextField(blank=True)
    first = models.JSONField(null=True, blank=True)
    second = models.JSONField(null=True, blank=True)
    outcome = models.JSONField(null=True, blank=True)
    consistent = models.BooleanField(null=True)
    # "" when judged; else why not: unparsable, http_<status>, timeout...
    failure = models.CharField(max_length=32, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "comparison"], name="verdict_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.judge} on comparison {self.comparison_id}"
