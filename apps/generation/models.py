"""Generation jobs: responses sampled from model endpoints for a batch's prompts, and the
comparisons formed from them a prompt at a time (apps.generation.services)."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.batches.models import Batch, Prompt
from apps.endpoints.models import ModelEndpoint

MAX_SAMPLES = 16


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    # A lead cancelled it; what it generated stays, and it can be resumed.
    CANCELLED = "cancelled", "Cancelled"
    # It stopped on its own: an endpoint kept failing (its circuit opened), its key is missing,
    # or its worker died too often. It can be resumed.
    STOPPED = "stopped", "Stopped"


class Pairing(models.TextChoices):
    ALL = "all", "Every pair of a prompt's responses"
    RANDOM = "random", "k random pairs per prompt"
    MODELS = "models", "One pair per pair of models"


class GenerationJob(models.Model):
    """`samples` responses per prompt from each of `endpoints`, with one set of sampling
    parameters. A (prompt, endpoint, sample index) gets at most one candidate
    (Candidate.candidate_unique_sample), so a retried or resumed job never makes a duplicate."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="generation_jobs")
    endpoints = models.ManyToManyField(ModelEndpoint, related_name="+")
    samples = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="Responses per prompt from each endpoint.",
    )
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    top_p = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    seed = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Sample i of a prompt is asked with seed + i: reproducible where the server "
        "honours seeds, and still different samples.",
    )
    system_prompt = models.TextField(
        blank=True, help_text="Sent first, to prompts that have no system message of their own."
    )
    pairing = models.CharField(max_length=16, choices=Pairing.choices, default=Pairing.ALL)
    pairs_per_prompt = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="k, for k random pairs per prompt.",
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    note = models.CharField(max_length=500, blank=True)
    # Runs, as for background imports: a run claims a queued job with a conditional UPDATE
    # (running, attempts + 1) and beats its heartbeat; every later write of the run is conditional
    # on that attempt. The sweep re-queues a running job whose heartbeat stopped (its worker died).
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Progress: requests to make (prompts x endpoints x samples), made (a candidate stored) and
    # failed (listed in GenerationFailure), prompts whose requests are all settled, comparisons
    # formed, and what the job's candidates cost.
    requests_total = models.PositiveIntegerField(default=0)
    requests_done = models.PositiveIntegerField(default=0)
    requests_failed = models.PositiveIntegerField(default=0)
    prompts_total = models.PositiveIntegerField(default=0)
    prompts_done = models.PositiveIntegerField(default=0)
    comparisons_made = models.PositiveIntegerField(default=0)
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
        verbose_name = "generation job"
        constraints = [
            models.CheckConstraint(
                condition=Q(samples__gte=1) & Q(samples__lte=MAX_SAMPLES),
                name="generation_samples_range",
            ),
            models.CheckConstraint(
                condition=~Q(pairing="random") | Q(pairs_per_prompt__isnull=False),
                name="generation_random_has_k",
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.pk} of {self.batch}" if self.pk else "new generation job"


class GenerationFailure(models.Model):
    """A request that failed for good in the job's last run (after the endpoint's retries): the
    prompt has no candidate for that (endpoint, sample index) until a resumed run makes one,
    which removes the row."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="failures")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.CASCADE, related_name="+")
    sample_index = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=32)
    detail = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt_id", "endpoint_id", "sample_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "prompt", "endpoint", "sample_index"],
                name="generation_failure_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} for prompt {self.prompt_id}"
