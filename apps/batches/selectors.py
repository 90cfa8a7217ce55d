"""Reading batches: how many candidates a comparison needs, and the prompts still short of them.

A batch imported with candidates optional (`Batch.candidates_optional`) may hold prompts with
fewer candidates than one comparison of its project needs: they wait for their responses to be
generated (apps.generation), which then forms their comparisons. These are the figures the
admin, the API and the generation share.
"""

from typing import Any

from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from apps.batches.import_format import MIN_CANDIDATES
from apps.batches.models import Batch, Candidate, Comparison, Prompt
from apps.projects.models import Project, Scheme

# A listwise comparison ranks 3 to 8 of a prompt's responses (all of them).
LISTWISE_MIN, LISTWISE_MAX = 3, 8


def candidates_needed(project: Project | str) -> int:
    """How many candidates one comparison of the project (or of the scheme given) needs: 2 for a
    pair (pairwise, graded), 3 for a listwise ranking."""
    scheme = project if isinstance(project, str) else project.scheme
    return LISTWISE_MIN if scheme == Scheme.LISTWISE else MIN_CANDIDATES


def _needed(scheme_field: str) -> Case:
    """candidates_needed, in SQL, of the project whose scheme is at `scheme_field`."""
    return Case(
        When(**{scheme_field: Scheme.LISTWISE}, then=Value(LISTWISE_MIN)),
        default=Value(MIN_CANDIDATES),
        output_field=IntegerField(),
    )


def _short_prompts() -> QuerySet[Prompt]:
    """Prompts with fewer of their own candidates than a comparison of their project needs (a
    honeypot's degraded copy is not one of their own)."""
    own = (
        Candidate.objects.filter(prompt=OuterRef("pk"), degradation="")
        .order_by()
        .values("prompt")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Prompt.objects.annotate(
        own_candidates=Coalesce(Subquery(own, output_field=IntegerField()), Value(0))
    ).filter(own_candidates__lt=_needed("project__scheme"))


def prompts_awaiting_candidates(batch: Batch) -> int:
    """How many of the batch's prompts wait for candidates: they have fewer than a comparison
    needs, and so no comparison yet. 0 for a batch imported without candidates optional (its
    import refused such prompts), with no query; else one query."""
    if not batch.candidates_optional:
        return 0
    return _short_prompts().filter(batch_id=batch.pk).count()


def batch_awaiting_candidates() -> Any:
    """An annotation of batches: prompts_awaiting_candidates, for a list of them in one query
    (only batches imported with candidates optional are counted)."""
    counted = (
        _short_prompts()
        .filter(batch=OuterRef("pk"))
        .order_by()
        .values("batch")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Case(
        When(
            candidates_optional=True,
            then=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)),
        ),
        default=Value(0),
        output_field=IntegerField(),
    )


# What reference_problems counts: each kind, and the one-line meaning `check_references` prints.
REFERENCE_PROBLEMS = {
    "prompt": "its prompt is missing, or is not of the comparison's batch and project",
    "candidate_a": "its candidate A is missing, or is not a response to the comparison's prompt",
    "candidate_b": "its candidate B is missing, or is not a response to the comparison's prompt",
    "batch": "its batch is missing, or is not of the comparison's project",
}


def reference_problems(
    *, project_id: int | None = None, batch_id: int | None = None, examples: int = 5
) -> dict[str, dict[str, Any]]:
    """The comparisons (of a project or batch, or all) whose references do not hold: per kind
    of REFERENCE_PROBLEMS, how many and the ids of up to `examples` of them. Empty when every
    reference holds.

    A comparison's project, batch, prompt and candidates have no foreign-key constraint in the
    database (an import's million rows would pay for five checks each, about half of its time:
    bench/README.md); every writer holds or creates what it refers to in its own transaction
    (the import, generation's form_comparisons), and deletes go through Django's cascade. This
    checks the same, and more than the constraints did (that a candidate answers the
    comparison's own prompt, that the prompt is of its batch and project), as a set: one query
    for the counts, and one a kind that has any.
    """
    rows = Comparison.objects.all()
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    if batch_id is not None:
        rows = rows.filter(batch_id=batch_id)
    broken: dict[str, Any] = {  # each a negated Exists: the rows whose reference fails
        "prompt": ~Exists(
            Prompt.objects.filter(
                pk=OuterRef("prompt_id"),
                batch_id=OuterRef("batch_id"),
                project_id=OuterRef("project_id"),
            )
        ),
        "candidate_a": ~Exists(
            Candidate.objects.filter(pk=OuterRef("candidate_a_id"), prompt_id=OuterRef("prompt_id"))
        ),
        "candidate_b": ~Exists(
            Candidate.objects.filter(pk=OuterRef("candidate_b_id"), prompt_id=OuterRef("prompt_id"))
        ),
        "batch": ~Exists(
            Batch.objects.filter(pk=OuterRef("batch_id"), project_id=OuterRef("project_id"))
        ),
    }
    counts = rows.aggregate(
        **{kind: Count("pk", filter=condition) for kind, condition in broken.items()}
    )
    return {
        kind: {
            "count": counts[kind],
            "examples": list(
                rows.filter(broken[kind]).order_by("pk").values_list("pk", flat=True)[:examples]
            ),
        }
        for kind in broken
        if counts[kind]
    }
