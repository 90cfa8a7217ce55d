import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q


class AssignmentPolicy(models.TextChoices):
    BREADTH_FIRST = "breadth_first", "Breadth first: fewest votes first"
    DEPTH_FIRST = "depth_first", "Depth first: finish started comparisons first"
    UNCERTAIN_FIRST = "uncertain_first", "Uncertain first: most split votes, then fewest votes"
    RANDOM = "random", "Random"


def default_skip_reasons() -> list[str]:
    return [
        "I can't judge this topic",
        "The prompt is unclear",
        "A response is broken or unreadable",
    ]


class Project(models.Model):
    slug = models.SlugField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Use lowercase letters, digits and -.")
        ],
    )
    name = models.CharField(max_length=200)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown to annotators.")
    overlap = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="How many annotators judge each comparison.",
    )
    allow_tie = models.BooleanField(default=True)
    allow_both_bad = models.BooleanField(default=True)
    lease_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(10)],
        help_text="How long an annotator holds a comparison before it returns to the pool.",
    )
    policy = models.CharField(
        max_length=32,
        choices=AssignmentPolicy.choices,
        default=AssignmentPolicy.BREADTH_FIRST,
        help_text="Which open comparison comes next. Higher batch priority comes first.",
    )
    skip_reasons = models.JSONField(
        default=default_skip_reasons,
        blank=True,
        help_text="Reasons an annotator may give for skipping (a list of strings).",
    )
    annotator_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many judgments from one annotator."
    )
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of assignments that are gold items (0.05 = 5%).",
    )
    gold_min_accuracy = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Below this gold accuracy an annotator stops receiving work (0 = never).",
    )
    gold_min_answers = models.PositiveIntegerField(
        default=10, help_text="Gold answers needed before the minimum accuracy applies."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(overlap__gte=1) & Q(overlap__lte=50), name="project_overlap_range"
            ),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="project_lease_min"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    LEAD = "lead", "Lead"


def new_pseudonym() -> str:
    return "ann-" + secrets.token_hex(5)


class Membership(models.Model):
    """A user's role in a project. Its pseudonym names the annotator in every export."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    pseudonym = models.CharField(max_length=32, default=new_pseudonym, editable=False)
    # Kept by the queue's transactions, so that caps and gold accuracy cost no query.
    judgment_count = models.PositiveIntegerField(default=0, editable=False)
    skip_count = models.PositiveIntegerField(default=0, editable=False)
    gold_answered = models.PositiveIntegerField(default=0, editable=False)
    gold_correct = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.UniqueConstraint(
                fields=["project", "pseudonym"], name="membership_unique_pseudonym"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_answered if self.gold_answered else None

    def blocked_reason(self, project: "Project | None" = None) -> str:
        """Why this annotator gets no more work in the project, or "" when they do."""
        project = project or self.project
        if project.annotator_cap is not None and self.judgment_count >= project.annotator_cap:
            return f"reached the project's cap of {project.annotator_cap} judgments"
        accuracy = self.gold_accuracy
        if (
            project.gold_min_accuracy > 0
            and accuracy is not None
            and self.gold_answered >= project.gold_min_answers
            and accuracy < project.gold_min_accuracy
        ):
            return (
                f"gold accuracy {accuracy:.0%} over {self.gold_answered} gold items is below "
                f"the project's minimum of {project.gold_min_accuracy:.0%}"
            )
        return ""
