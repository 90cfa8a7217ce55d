from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.functional import cached_property

from apps.batches.models import Candidate, Comparison
from apps.projects.models import Project


class AssignmentStatus(models.TextChoices):
    OPEN = "open", "Open"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"
    UNDONE = "undone", "Judged, then undone"


class Assignment(models.Model):
    """A lease of one comparison to one annotator, with the side each candidate was shown on."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments"
    )
    left = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(
        max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.OPEN
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    # The project's guideline version when the lease was given.
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    # Listwise: the candidates' ids in the order shown (left and right are the first two).
    shown_order = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"],
                condition=Q(status="open"),
                name="assignment_one_open_per_annotator",
            ),
            models.CheckConstraint(
                condition=~Q(left=models.F("right")), name="assignment_distinct_sides"
            ),
        ]
        indexes = [
            # An annotator's open lease in a project, returned on reload.
            models.Index(
                fields=["annotator", "project"],
                condition=Q(status="open"),
                name="assignment_open_by_annotator",
            ),
            # Expired leases to reclaim, lazily per project and by the beat sweep.
            models.Index(
                fields=["project", "expires_at"],
                condition=Q(status="open"),
                name="assignment_open_by_expiry",
            ),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk}"

    @cached_property
    def shown(self) -> list[Candidate] | None:
        """Listwise: the candidates in the order shown (`shown_order`); None for a pair. The queue
        fills it in as it hands the lease out (apps.judging.queue.next); else it is read here."""
        if self.shown_order is None:
            return None
        by_id = Candidate.objects.in_bulk(self.shown_order)
        return [by_id[pk] for pk in self.shown_order]


class Choice(models.TextChoices):
    LEFT = "left", "Left is better"
    RIGHT = "right", "Right is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"
    RANKING = "ranking", "A ranking of all the responses"


class Source(models.TextChoices):
    HUMAN = "human", "A person"
    AI = "ai", "An AI judge"


class Judgment(models.Model):
    """One annotator's answer to one comparison. Never deleted by a cascade.

    `source` says who answered: a person, or an AI judge (apps.judges) through its account of
    role "ai". Every figure about people (agreement, flags, the leaderboards, the training
    exports by default) reads `human` judgments only; an AI judge's votes count toward a
    comparison's overlap only when its judge says so (Judge.counts_toward_overlap)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="judgments")
    # Copied from the comparison: per-batch caps count an annotator's judgments by batch.
    batch = models.ForeignKey("batches.Batch", on_delete=models.PROTECT, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments"
    )
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="judgment")
    choice = models.CharField(max_length=16, choices=Choice.choices)
    # A database default too: the queue's PostgreSQL functions insert judgments without it.
    source = models.CharField(
        max_length=8, choices=Source.choices, default=Source.HUMAN, db_default=Source.HUMAN
    )
    # Whether the page could show this person an AI judge's verdict on the comparison
    # (Project.show_ai_suggestion, and an AI judgment there when the lease was given): it
    # biases, so every figure can leave such judgments out.
    ai_suggestion_shown = models.BooleanField(default=False, db_default=False)
    # False for an AI judge's vote given besides the people (Judge.counts_toward_overlap off):
    # it took no slot, and the comparison's counts never include it, even when recounted.
    counts_toward_overlap = models.BooleanField(default=True, db_default=True)
    # Copied from the assignment so that a judgment reads on its own: what was shown where, and
    # which candidate won (null for tie and both bad).
    left = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="+")
    right = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="+")
    chosen = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Graded projects: how much better, from -3 to +3, oriented to the candidates: positive when
    # the comparison's candidate A is better, whichever side it was shown on; 0 a tie.
    strength = models.SmallIntegerField(null=True, blank=True)
    # Per criterion (by name): {"option": "a" | "b" | "tie" | "both_bad", "strength": -3..3 or
    # null}, oriented to the candidates like `strength`.
    criteria = models.JSONField(default=dict, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # Listwise: the ranking, best first: a list of groups of candidate ids (a group of more than
    # one is a tie). Null for a pair.
    ranking = models.JSONField(null=True, blank=True)
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=128, blank=True)
    # For a gold item: whether the answer matched the gold answer; null otherwise.
    gold_correct = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Set when a lead invalidates the judgment (a spammer's, say): it is kept, but no longer
    # counts. Its comparison reopens for another vote; exports and statistics leave it out.
    invalidated_at = models.DateTimeField(null=True, blank=True)
    invalidated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # A database default too: the queue's PL/pgSQL insert (queue/sql_submit.py) names no such
    # column.
    invalidation_reason = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="judgment_one_per_annotator"
            ),
            models.CheckConstraint(
                condition=(Q(choice__in=["left", "right"]) & Q(chosen__isnull=False))
                | (Q(choice__in=["tie", "both_bad", "ranking"]) & Q(chosen__isnull=True)),
                name="judgment_chosen_matches_choice",
            ),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | (Q(strength__gte=-3) & Q(strength__lte=3)),
                name="judgment_strength_range",
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "created_at"], name="judgment_by_annotator"),
            models.Index(fields=["annotator", "batch"], name="judgment_by_annotator_batch"),
        ]

    def __str__(self) -> str:
        return f"Judgment {self.pk}"


class Skip(models.Model):
    """An annotator passed on a comparison, with a reason. It is never offered to them again."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="skips"
    )
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="skip")
    reason = models.CharField(max_length=200)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="skip_one_per_annotator"
            ),
        ]

    def __str__(self) -> str:
        return f"Skip {self.pk}: {self.reason}"


class Rendering(models.Model):
    """A text's HTML as the judging page shows it, rendered once (apps.judging.rendering).

    Keyed by a digest of the renderer's version and the text: identical texts share one row,
    and a new renderer version renders each text again the first time it is shown.
    """

    digest = models.CharField(max_length=64, primary_key=True)
    html = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The beat job `prune-renderings` deletes by age (apps.judging.rendering.renderings_prune).
        indexes = [models.Index(fields=["created_at"], name="rendering_created")]

    def __str__(self) -> str:
        return self.digest


class RepeatProbe(models.Model):
    """A consistency probe (Project.repeat_rate; apps.judging.probes): one of an annotator's
    judgments shown to them again, sides swapped, once `repeat_after` more of their judgments
    came after it, and their second answer compared with the first.

    Kept apart from the queue's tables: a probe takes no slot and is never a vote, so no count,
    export or agreement figure ever sees it; only the repeat consistency reads it."""

    # Not stored: set by probe_answer and probe_skip when they were asked again what the probe
    # holds already (a retry), and so changed nothing.
    replayed = False

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="repeat_probes"
    )
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+")
    original = models.OneToOneField(Judgment, on_delete=models.CASCADE, related_name="repeat_probe")
    # The original's sides, swapped.
    left = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    # The annotator's judgment count in the project at which the probe falls due (when drawn).
    due_after = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    served_at = models.DateTimeField(null=True, blank=True)
    # Set by the answer, or by a skip (choice blank, consistent null).
    answered_at = models.DateTimeField(null=True, blank=True)
    # The answer oriented to the candidates: a, b, tie or both_bad; blank until answered.
    choice = models.CharField(max_length=16, blank=True)
    # Whether it is the original's oriented choice; null until answered (and for a skip).
    consistent = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(left=models.F("right")), name="repeatprobe_distinct_sides"
            ),
            models.CheckConstraint(
                condition=Q(choice__in=["", "a", "b", "tie", "both_bad"]),
                name="repeatprobe_choice_oriented",
            ),
        ]
        indexes = [
            models.Index(
                fields=["annotator", "project"],
                condition=Q(answered_at__isnull=True),
                name="repeatprobe_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Repeat probe {self.pk}"
