import re
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models import Q
from django.utils import timezone

from apps.projects.rules import GOLD_STOP, holds
from apps.projects.signals import policy_changed
from apps.projects.stopping import stop_margin


class AssignmentPolicy(models.TextChoices):
    BREADTH_FIRST = "breadth_first", "Breadth first: fewest votes first"
    DEPTH_FIRST = "depth_first", "Depth first: finish started comparisons first"
    UNCERTAIN_FIRST = (
        "uncertain_first",
        "Uncertain first: undecided model pairs, then most split votes, then fewest votes",
    )
    RANDOM = "random", "Random"


class Scheme(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise: left or right (and, if allowed, tie or both bad)"
    GRADED = "graded", "Graded: how much better, from -3 to +3 (0 is a tie)"
    LISTWISE = "listwise", "Listwise: rank all 3-8 responses of a prompt (ties if allowed)"


class RationaleRule(models.TextChoices):
    OFF = "off", "Off: no rationale"
    OPTIONAL = "optional", "Optional"
    REQUIRED = "required", "Required"


# The graded scale, from the left's point of view on screen: -3 means the left response is
# significantly better, +3 the right one (the labels follow Llama 2's).
GRADES = [
    (-3, "Left is significantly better"),
    (-2, "Left is better"),
    (-1, "Left is slightly better"),
    (0, "Negligibly better or unsure"),
    (1, "Right is slightly better"),
    (2, "Right is better"),
    (3, "Right is significantly better"),
]
MAX_CRITERIA = 12
MAX_FLAGS = 20
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,62}$"


def default_skip_reasons() -> list[str]:
    return [
        "I can't judge this topic",
        "The prompt is unclear",
        "A response is broken or unreadable",
    ]


def honeypot_problem(*, scheme: str, gold_rate: float, honeypot_rate: float) -> str | None:
    """Why a project cannot have generated honeypots (Project.clean, and the API's input, which
    has no model instance to clean), or None."""
    if not honeypot_rate or honeypot_rate <= 0:
        return None
    if scheme == Scheme.LISTWISE:
        return "A listwise project has no gold items, and so no honeypots: set it to 0."
    if not gold_rate or gold_rate <= 0:
        return (
            "Honeypots are gold items, and gold items are never shown while the gold rate is 0: "
            "set a gold rate above 0 first, or set this to 0."
        )
    return None


# The highest repeat rate: a probe is a comparison judged again for no new vote, so at most one
# in three of an annotator's answers.
MAX_REPEAT_RATE = 0.5


def repeat_problem(*, scheme: str, repeat_rate: float) -> str | None:
    """Why a project cannot have consistency probes (Project.clean, and the API's input), or
    None."""
    if repeat_rate and repeat_rate > 0 and scheme == Scheme.LISTWISE:
        return (
            "Consistency probes show a pair again with its sides swapped: a listwise project "
            "ranks lists and has none. Set it to 0."
        )
    return None


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
    # A change of the policy is applied to the project's comparisons (their `policy`) by
    # apps.batches.policy_follow: in the change's transaction for a project of up to
    # POLICY_FOLLOW_INLINE comparisons, after it in short chunks for a larger one. Each change
    # counts one more `policy_version`; the follow marks the version it finished in
    # `policy_followed`, and its own beat sweep (policy_follows_sweep) sends it again for a
    # change left unfollowed.
    policy_version = models.PositiveIntegerField(default=0, editable=False)
    policy_followed = models.PositiveIntegerField(default=0, editable=False)
    policy_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    skip_reasons = models.JSONField(
        default=default_skip_reasons,
        blank=True,
        help_text="Reasons an annotator may give for skipping (a list of strings).",
    )
    annotator_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many judgments from one annotator."
    )
    scheme = models.CharField(
        max_length=16,
        choices=Scheme.choices,
        default=Scheme.PAIRWISE,
        help_text="How annotators answer each comparison.",
    )
    criteria = models.JSONField(
        default=list,
        blank=True,
        help_text="Criteria judged each on its own, beside the overall judgment: a list of "
        '{"name": ..., "description": ...} (for example helpfulness, harmlessness, honesty).',
    )
    rationale = models.CharField(
        max_length=16,
        choices=RationaleRule.choices,
        default=RationaleRule.OPTIONAL,
        help_text="Whether annotators write why.",
    )
    rationale_min_length = models.PositiveIntegerField(
        default=0,
        help_text="A rationale, when given (or required), has at least this many characters.",
    )
    flags = models.JSONField(
        default=list,
        blank=True,
        help_text="Flags an annotator may raise on a comparison (a list of strings), for "
        "example unsafe content, factual error, prompt unclear.",
    )
    show_models = models.BooleanField(
        default=False,
        help_text="Show annotators which model wrote each response (off: judging is blind).",
    )
    show_ai_suggestion = models.BooleanField(
        default=False,
        help_text="Show annotators an AI judge's verdict on the comparison, where there is one "
        "(off: people never see it). It biases them: each judgment records whether it was shown.",
    )
    # Raised by every change of the guidelines; each judgment records the one it was given under.
    guideline_version = models.PositiveIntegerField(default=1, editable=False)
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
    stop_confidence = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.5), MaxValueValidator(0.999)],
        help_text="Adaptive stopping: a comparison stops receiving votes once the side it leads "
        "is better with at least this posterior probability (empty = off; the overlap stays the "
        "most votes a comparison receives).",
    )
    # Derived from stop_confidence on every save (projects.stopping), so that the queue's SQL
    # reads the margin rather than the posterior: 0 when stopping is off.
    stop_margin = models.PositiveSmallIntegerField(
        default=0,
        editable=False,
        help_text="Adaptive stopping: the vote margin |for A - for B| at which a comparison is "
        "decided (from the stopping confidence; 0 = off).",
    )
    honeypot_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of imported prompts that also get a generated gold item: one of their "
        "responses against a degraded copy of it (0 = none).",
    )
    audit_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Audit sample: the share of comparisons, drawn at random, that every policy "
        "fills to the full overlap first and that never stop early, so that agreement measured "
        "on them is unbiased by adaptive assignment (0.05 = 5%; 0 = none).",
    )
    repeat_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(MAX_REPEAT_RATE)],
        help_text="Consistency probes: the share of an annotator's judgments shown to them "
        "again later, sides swapped, to compare the two answers (0.05 = 5%; 0 = off; at most "
        "0.5). The repeat is never a vote.",
    )
    repeat_after = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="Consistency probes: how many of the annotator's own judgments in the project "
        "come between a judgment and its repeat.",
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
            models.CheckConstraint(
                condition=Q(honeypot_rate__gte=0) & Q(honeypot_rate__lte=1),
                name="project_honeypot_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(audit_rate__gte=0) & Q(audit_rate__lte=1),
                name="project_audit_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(repeat_rate__gte=0) & Q(repeat_rate__lte=MAX_REPEAT_RATE),
                name="project_repeat_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(repeat_after__gte=1), name="project_repeat_after_min"
            ),
            models.CheckConstraint(
                condition=Q(stop_confidence__isnull=True)
                | Q(stop_confidence__gte=0.5) & Q(stop_confidence__lt=1),
                name="project_stop_confidence_range",
            ),
            models.CheckConstraint(
                condition=Q(stop_confidence__isnull=True, stop_margin=0)
                | Q(stop_confidence__isnull=False, stop_margin__gte=1),
                name="project_stop_margin_follows_confidence",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.stop_margin = stop_margin(self.stop_confidence)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "stop_confidence" in update_fields:
            kwargs["update_fields"] = {*update_fields, "stop_margin"}
        if self._state.adding or (update_fields is not None and "policy" not in update_fields):
            super().save(*args, **kwargs)
            return
        # Every comparison carries its project's policy (batches.Comparison.policy): a change
        # counts one more policy_version and sends policy_changed in its transaction, on which
        # batches gives the comparisons the new policy (apps.batches.policy_follow: there and
        # then for a small project, after the commit in short chunks for a large one). The row's
        # lock (FOR NO KEY UPDATE: what the UPDATE takes anyway) is taken first, so that two
        # changes apply in turn; an import still writing holds the row at its end
        # (batches.models.comparison_policy) and updates its own rows then.
        using = kwargs.get("using") or self._state.db or DEFAULT_DB_ALIAS
        with transaction.atomic(using=using):
            saved = (
                Project.objects.using(using)
                .select_for_update(no_key=True)
                .filter(pk=self.pk)
                .values_list("policy", "policy_version", "policy_followed", "policy_changed_at")
                .first()
            )
            if saved is None:
                super().save(*args, **kwargs)
                return
            # The follow's marks as they stand, not as this copy of the row last read them: a
            # full save of a stale copy must not set them back.
            _, self.policy_version, self.policy_followed, self.policy_changed_at = saved
            if saved[0] == self.policy:
                super().save(*args, **kwargs)
                return
            self.policy_version += 1
            self.policy_changed_at = timezone.now()
            if update_fields is not None:
                kwargs["update_fields"] = {
                    *kwargs["update_fields"],
                    "policy_version",
                    "policy_changed_at",
                }
            super().save(*args, **kwargs)
            policy_changed.send(sender=Project, project_id=self.pk, using=using)

    def clean(self) -> None:
        # Before the constraints are checked (full_clean): the margin follows the confidence.
        if self.stop_confidence is None or 0 < self.stop_confidence < 1:
            self.stop_margin = stop_margin(self.stop_confidence)
        errors: dict[str, str] = {}
        if problem := _names_problem(
            [c.get("name") if isinstance(c, dict) else c for c in self.criteria]
            if isinstance(self.criteria, list)
            else None,
            MAX_CRITERIA,
        ):
            errors["criteria"] = problem
        elif any(
            not isinstance(c, dict)
            or set(c) - {"name", "description"}
            or not isinstance(c.get("description", ""), str)
            for c in self.criteria
        ):
            errors["criteria"] = 'Each criterion is {"name": ..., "description": ...}.'
        if self.scheme == Scheme.LISTWISE and self.criteria and "criteria" not in errors:
            errors["criteria"] = "Criteria are judged on pairs: a listwise project has none."
        if self.scheme == Scheme.LISTWISE and self.stop_confidence is not None:
            errors["stop_confidence"] = (
                "Adaptive stopping reads the votes for each side of a pair: a listwise project "
                "has none. Leave it empty."
            )
        if problem := _names_problem(
            self.flags if isinstance(self.flags, list) else None, MAX_FLAGS
        ):
            errors["flags"] = problem
        if honeypots := honeypot_problem(
            scheme=self.scheme, gold_rate=self.gold_rate, honeypot_rate=self.honeypot_rate
        ):
            errors["honeypot_rate"] = honeypots
        if repeats := repeat_problem(scheme=self.scheme, repeat_rate=self.repeat_rate):
            errors["repeat_rate"] = repeats
        if errors:
            raise ValidationError(errors)

    @property
    def criterion_names(self) -> list[str]:
        return [c["name"] for c in self.criteria]


def _names_problem(names: list[object] | None, limit: int) -> str:
    """Why this list of criterion or flag names is not acceptable, or ""."""
    if names is None:
        return "Give a list."
    if len(names) > limit:
        return f"At most {limit}."
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            return (
                f"{name!r} is not a name: 1-63 letters, digits, spaces, _ or -, starting with a "
                "letter or digit."
            )
    if len(set(names)) != len(names):
        return "Each name once."
    return ""


class GuidelineVersion(models.Model):
    """One version of a project's guidelines. Judgments name the version they were given under."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="guideline_versions"
    )
    version = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="guideline_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.project} guidelines v{self.version}"


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    LEAD = "lead", "Lead"
    # An AI judge's account (apps.judges): it takes work through the queue, never logs in.
    AI = "ai", "AI judge"


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

    def cap_reached(self, project: "Project | None" = None) -> bool:
        project = project or self.project
        return project.annotator_cap is not None and self.judgment_count >= project.annotator_cap

    def blocked_reason(self, project: "Project | None" = None) -> str:
        """Why this annotator gets no more work in the project, or "" when they do: "reached
        the project's cap ..." (the cap) or "gold accuracy ... is below ..." (the gold rule)."""
        project = project or self.project
        if self.cap_reached(project):
            return f"reached the project's cap of {project.annotator_cap} judgments"
        return gold_stop_reason(
            correct=self.gold_correct,
            answered=self.gold_answered,
            min_accuracy=project.gold_min_accuracy,
            min_answers=project.gold_min_answers,
        )


def gold_stop_reason(*, correct: int, answered: int, min_accuracy: float, min_answers: int) -> str:
    """The gold rule: why an annotator with these gold answers is stopped, or "" when they are
    not: rules.GOLD_STOP, which annotate_submit's standing check writes as SQL."""
    values = {
        "correct": correct,
        "answered": answered,
        "min_accuracy": min_accuracy,
        "min_answers": min_answers,
    }
    if not holds(GOLD_STOP, values):
        return ""
    return (
        f"gold accuracy {correct / answered:.0%} over {answered} gold items is below the project's "
        f"minimum of {min_accuracy:.0%}"
    )
