"""Model endpoints: OpenAI-compatible servers (vLLM, TGI, Ollama, llama.cpp's server, OpenAI and
the like) that generate candidates and judge comparisons. The key is never stored: an endpoint
names the environment variable that holds it (apps.endpoints.services.endpoint_key)."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.projects.models import Project


class ModelEndpoint(models.Model):
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="endpoints",
        help_text="The project that may use it; empty: every project (staff only).",
    )
    name = models.CharField(max_length=100)
    # Not a URLField: Django's URL validator wants a dotted domain, and an endpoint is often a
    # service name on the local network (http://vllm:8000/v1). services.endpoint_problems checks it.
    base_url = models.CharField(
        "base URL",
        max_length=500,
        help_text="The OpenAI-compatible API's base, up to /v1: e.g. http://vllm:8000/v1, "
        "http://localhost:11434/v1 (Ollama), https://api.openai.com/v1.",
    )
    model = models.CharField(max_length=200, help_text="The model name the server expects.")
    key_env = models.CharField(
        "key's environment variable",
        max_length=100,
        blank=True,
        help_text="The name of the environment variable that holds the API key (it must start "
        "with the prefix ENDPOINT_KEY_ENV_PREFIX, ANNOTATE_KEY_ by default); empty: no key. "
        "The key itself is never stored nor shown.",
    )
    max_concurrency = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="Requests in flight at once, at most.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests started per minute, at most; empty: no limit.",
    )
    timeout_seconds = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(3600.0)],
        help_text="How long one request may take.",
    )
    max_retries = models.PositiveSmallIntegerField(
        default=4,
        validators=[MaxValueValidator(10)],
        help_text="Retries of a request that met a 429, a 5xx, a timeout or a lost connection.",
    )
    input_price = models.DecimalField(
        "price per million input tokens",
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="For cost estimates, in your currency; empty: not estimated.",
    )
    output_price = models.DecimalField(
        "price per million output tokens",
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "model endpoint"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(project__isnull=False),
                name="endpoint_unique_name_per_project",
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(project__isnull=True),
                name="endpoint_unique_name_shared",
            ),
            models.CheckConstraint(
                condition=Q(max_concurrency__gte=1) & Q(max_concurrency__lte=256),
                name="endpoint_concurrency_range",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1) & Q(timeout_seconds__lte=3600),
                name="endpoint_timeout_range",
            ),
            models.CheckConstraint(condition=Q(max_retries__lte=10), name="endpoint_retries_range"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"
