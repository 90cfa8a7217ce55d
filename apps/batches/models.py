import secrets
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import F, Q

from annotate.db import postgresql
from apps.batches.queue_order import queue_indexes
from apps.endpoints.models import ModelEndpoint
from apps.projects.models import AssignmentPolicy, Project


class BatchStatus(models.TextChoices):
    IMPORTING = "importing", "Importing"
    FAILED = "failed", "Failed"
    # A lead stopped the import (queued or running) before it stored anything.
    CANCELLED = "cancelled", "Cancelled"
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    DONE = "done", "Done"


class Batch(models.Model):
    """One import into a project. Only active batches hand out comparisons."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="batches")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=16, choices=BatchStatus.choices, default=BatchStatus.IMPORTING
    )
    priority = models.IntegerField(default=0, help_text="Higher priority batches are served first.")
    annotator_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many judgments from one annotator here."
    )
    prompt_count = models.PositiveIntegerField(default=0)
    comparison_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    # A background import's progress through its file: lines checked of the lines it has.
    rows_total = models.PositiveIntegerField(default=0, editable=False)
    rows_done = models.PositiveIntegerField(default=0, editable=False)
    # A background import's runs (apps.batches.services, "Running a background import"): how
    # many claimed it, whether one holds it now, its last heartbeat (while waiting for a worker:
    # when the task was last sent), and why an earlier run was re-queued.
    import_attempts = models.PositiveIntegerField(default=0, editable=False)
    import_running = models.BooleanField(default=False, editable=False)
    import_heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    import_note = models.CharField(max_length=500, blank=True, editable=False)
    # Imported as prompts to generate responses for (apps.generation): a prompt may come with
    # fewer candidates than a comparison needs, and gets its comparisons when they are generated.
    candidates_optional = models.BooleanField(default=False, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["project", "status"], name="batch_project_status")]

    def __str__(self) -> str:
        """The name with the id and the day of the import (UTC): batches may share a name, and
        the admin's filters and messages must tell them apart."""
        if self.pk is None:
            return self.name or "new batch"
        day = f", {self.created_at:%Y-%m-%d}" if self.created_at else ""
        if self.name:
            return f"{self.name} (#{self.pk}{day})"
        return f"Batch {self.pk}" + (f" ({self.created_at:%Y-%m-%d})" if self.created_at else "")


class BatchSource(models.Model):
    """The uploaded file of a batch imported in the background, kept until the import ends.

    It lives in the database so that any worker process on any host can read it. An upload is
    stored in parts (BatchSourcePart), written and read one at a time so that neither the web
    process nor the worker holds the whole file; `data` holds a file stored whole (before parts).
    """

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="source")
    data = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Source of batch {self.batch_id}"


class BatchSourcePart(models.Model):
    """One piece of an uploaded file, in order (`index` from 0)."""

    source = models.ForeignKey(BatchSource, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "index"], name="batch_source_part_index"),
        ]

    def __str__(self) -> str:
        return f"Part {self.index} of batch {self.source.batch_id}'s file"


class Prompt(models.Model):
    # No index of its own: prompt_unique_external_id (project, external_id) starts with it. An
    # index fewer is a cost fewer for every row an import writes.
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="prompts", db_index=False
    )
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=255)
    # A non-empty string, or a list of {"role", "content"} messages, exactly as imported.
    content = models.JSONField()
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="prompt_unique_external_id"
            ),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def is_conversation(self) -> bool:
        return isinstance(self.content, list)


class Degradation(models.TextChoices):
    TRUNCATED = "truncated", "Truncated mid-sentence"
    OFF_TOPIC = "off_topic", "Another prompt's answer"
    SHUFFLED = "shuffled", "Sentences shuffled"


class Candidate(models.Model):
    # No index of its own: candidate_unique_external_id (prompt, external_id) starts with it.
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, related_name="candidates", db_index=False
    )
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="Generation parameters.")
    metadata = models.JSONField(default=dict, blank=True)
    # A generated honeypot's response: how it was degraded from another candidate ("" for an
    # imported response).
    degradation = models.CharField(
        max_length=16, choices=Degradation.choices, blank=True, default=""
    )
    # A generated response (apps.generation): the endpoint and the sample's index among that
    # endpoint's samples for the prompt (one candidate per (prompt, endpoint, sample_index), so a
    # retried or resumed job never makes a duplicate), why it ended, the tokens the server
    # counted, how long the request took and its estimated cost at the endpoint's prices then.
    # All empty for an imported response.
    # No index of its own: an import's COPY would pay for it on every row, and only deleting an
    # endpoint looks candidates up by it alone.
    endpoint = models.ForeignKey(
        ModelEndpoint,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    sample_index = models.PositiveSmallIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "external_id"], name="candidate_unique_external_id"
            ),
            models.UniqueConstraint(
                fields=["prompt", "endpoint", "sample_index"],
                condition=Q(endpoint__isnull=False),
                name="candidate_unique_sample",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id


def random_rank() -> int:
    return secrets.randbelow(2**31)


def comparison_policy(project_id: int, *, hold: bool = False) -> str:
    """The policy new comparisons of the project carry (Comparison.policy), read now. With
    `hold` (PostgreSQL), the project's row is held FOR SHARE until the caller's transaction
    ends: a change of the policy, which updates the project's comparisons in its own
    transaction (Project.save), waits for the caller's rows to commit and then updates them too.
    """
    lock = " FOR SHARE" if hold and postgresql() else ""
    table = Project._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT policy FROM {table} WHERE id = %s{lock}", [project_id])  # noqa: S608
        policy: str = cursor.fetchone()[0]
        return policy


class GoldAnswer(models.TextChoices):
    A = "a", "Candidate A"
    B = "b", "Candidate B"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class Comparison(models.Model):
    """Two candidates of one prompt, to be judged by `project.overlap` annotators.

    `judgment_count + lease_count` is the number of slots taken; it never exceeds the overlap.
    Both counts are changed only inside the queue's transactions (apps.judging.queue).
    """

    # No foreign-key constraints in the database for these five: an import writes a million rows
    # and paid five checks a row, about half of its time (bench/README.md). Every writer holds or
    # creates what it refers to in its own transaction (the import holds the project and the
    # batch and writes the prompts and candidates; generation locks the prompt), deletes cascade
    # through Django's collector (on_delete), and `manage.py check_references`
    # (selectors.reference_problems) checks as a set what the constraints did, and more.
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="comparisons", db_constraint=False
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.CASCADE, related_name="comparisons", db_constraint=False
    )
    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, related_name="comparisons", db_constraint=False
    )
    # No index of its own: comparison_unique_pair (candidate_a, candidate_b) starts with it.
    candidate_a = models.ForeignKey(
        Candidate, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    candidate_b = models.ForeignKey(
        Candidate, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    judgment_count = models.PositiveIntegerField(default=0)
    lease_count = models.PositiveIntegerField(default=0)
    # The complete rule (queue_order.complete_condition: all the votes the overlap asks for,
    # never a gold item): out of the queue's indexes while it holds.
    complete = models.BooleanField(default=False)
    # A random key: the order within a policy's level, so that no annotator's past work gathers
    # at the head of a scan.
    rank = models.IntegerField(default=random_rank)
    # Votes per option, oriented to the candidates (not to the screen sides).
    votes_a = models.PositiveIntegerField(default=0)
    votes_b = models.PositiveIntegerField(default=0)
    votes_tie = models.PositiveIntegerField(default=0)
    votes_both_bad = models.PositiveIntegerField(default=0)
    # |votes_a - votes_b|, and 1 before any vote: what uncertain_first orders by.
    split = models.PositiveIntegerField(default=1)
    # How settled the leaderboard leaves the order of this comparison's two models, as z in
    # half steps: 0 (z < 0.5, and whenever a side has no model or there is no fit yet) to 8
    # (z >= 4); what uncertain_first orders by before the split (queue_order).
    # agreement.pair_doubt writes it from the project's crowd leaderboard each time the
    # dashboard's figures are computed.
    pair_doubt = models.PositiveSmallIntegerField(default=0, db_default=0)
    skip_count = models.PositiveIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    # In the project's audit sample (Project.audit_rate; batches.audit): every policy serves it
    # first and it never stops early, so it receives the full overlap. Never a gold item.
    is_audit = models.BooleanField(default=False, db_default=False)
    # Listwise projects: every candidate of the prompt (their ids, 3-8, in import order), ranked
    # as a whole; candidate_a and candidate_b are the first two. Null for a pair.
    candidate_ids = models.JSONField(null=True, blank=True)
    gold_answer = models.CharField(max_length=16, choices=GoldAnswer.choices, blank=True)
    # The project's policy, copied: which of the queue's partial indexes the row is in
    # (queue_order.index_condition). Project.save changes it with the project's; the writers of
    # new rows read it from the project (comparison_policy).
    policy = models.CharField(max_length=32, choices=AssignmentPolicy.choices)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(policy__in=AssignmentPolicy.values), name="comparison_policy_valid"
            ),
            models.CheckConstraint(
                condition=~Q(candidate_a=F("candidate_b")), name="comparison_distinct_candidates"
            ),
            models.UniqueConstraint(
                fields=["candidate_a", "candidate_b"], name="comparison_unique_pair"
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold_answer="") | Q(is_gold=True) & ~Q(gold_answer=""),
                name="comparison_gold_has_answer",
            ),
            models.CheckConstraint(
                condition=~Q(is_gold=True, is_audit=True), name="comparison_audit_not_gold"
            ),
        ]
        indexes = [
            # One index per assignment policy, each scanned within one batch (queue_order).
            *queue_indexes(),
            models.Index(F("batch"), F("rank"), name="queue_gold", condition=Q(is_gold=True)),
        ]

    def __str__(self) -> str:
        """With its prompt's id when the prompt is loaded already (the admin's lists join it):
        never a query of its own."""
        if Comparison.prompt.is_cached(self):
            return f"Comparison {self.pk} of prompt {self.prompt.external_id}"
        return f"Comparison {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.policy:
            self.policy = comparison_policy(self.project_id)
        super().save(*args, **kwargs)
