"""Reading batches: how many candidates a comparison needs, and the prompts still short of them.

A batch imported with candidates optional (`Batch.candidates_optional`) may hold prompts with
fewer candidates than one comparison of its project needs: they wait for their responses to be
generated (apps.generation), which then forms their comparisons. These are the figures the
admin, the API and the generation share.
"""

from typing import Any

from django.db.models import Case, Count, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce

from apps.batches.import_format import MIN_CANDIDATES
from apps.batches.models import Batch, Candidate, Prompt
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
