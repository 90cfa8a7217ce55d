"""Listwise comparisons in exports: the `listwise` format, and rankings as pairs.

A ranking says, for each pair of its responses, which one is better or that they tie
(`apps.agreement.rankings.pair_option`): `ranking_tallies` counts those as pairwise votes, so
that the pairwise formats export a listwise project's pairs the way they export a pairwise one's.
The `listwise` rows carry each prompt's merged ranking and Kendall's W (`apps.agreement.rankings`).
"""

from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from apps.agreement.rankings import Ranking, kendall_w, merged_ranks, pair_option
from apps.agreement.reliability import OPTIONS, ReliabilityModel, fit_model
from apps.batches.models import Candidate, Comparison, Prompt
from apps.exports.options import Options
from apps.exports.selectors import (
    AGGREGATES,
    CHUNK,
    CandidateRef,
    ComparisonRef,
    PromptRef,
    Tally,
    decide,
    keyset_pages,
    split_of,
    voted_by,
    voted_since,
    votes_by_source,
)
from apps.judging.models import Choice, Judgment
from apps.projects.models import Project
from apps.projects.selectors import Pseudonyms


@dataclass
class Ranked:
    """One listwise comparison with its rankings, in judgment order."""

    comparison: Comparison
    candidates: list[Candidate]  # in the comparison's order (import order)
    rankings: list[Ranking]
    annotators: list[str]
    guideline_versions: list[int]
    annotator_ids: list[int]
    # Each ranking's source ("human" or "ai"), in the same order.
    sources: list[str]


def ranked_comparisons(*, project: Project, options: Options) -> Iterator[Ranked]:
    """Every ranked listwise comparison, by id, in chunks: three statements a chunk. With
    `options.since`, only those ranked at or after it (all their rankings count); also by
    `batch_id` and `split`."""
    pseudonym = Pseudonyms(project)
    comparisons = Comparison.objects.filter(project=project, candidate_ids__isnull=False)
    if options.human_only:
        comparisons = comparisons.filter(judgment_count__gt=0)
    else:
        comparisons = comparisons.filter(voted_by(options.sources))
    if options.batch_id is not None:
        comparisons = comparisons.filter(batch_id=options.batch_id)
    if options.since is not None:
        comparisons = comparisons.filter(voted_since(options.since, options.sources))
    rows = comparisons.order_by("id").values_list("id", "batch_id", "prompt_id", "candidate_ids")
    # Keyset pages, as the other exports read: a held server-side cursor is built whole (the
    # `since` subquery included) before its first row.
    for page in keyset_pages(rows, CHUNK):
        chunk = [(pk, batch, prompt, list(ids or [])) for pk, batch, prompt, ids in page]
        yield from _ranked_chunk(project, chunk, pseudonym, options)


def _ranked_chunk(
    project: Project,
    chunk: list[tuple[int, int, int, list[int]]],
    pseudonym: Pseudonyms,
    options: Options,
) -> Iterator[Ranked]:
    split, test_fraction = options.split, options.test_fraction
    prompts = Prompt.objects.in_bulk([row[2] for row in chunk])
    candidates = Candidate.objects.in_bulk([pk for row in chunk for pk in row[3]])
    votes: dict[int, list[tuple[int, Ranking, int | None, str]]] = {}
    judgments = (
        Judgment.objects.filter(
            comparison_id__in=[row[0] for row in chunk],
            choice=Choice.RANKING,
            invalidated_at__isnull=True,
            source__in=options.sources,
        )
        .order_by("id")
        .values_list("comparison_id", "annotator_id", "ranking", "guideline_version", "source")
    )
    for comparison_id, annotator_id, ranking, version, source in judgments:
        votes.setdefault(comparison_id, []).append(
            (annotator_id, list(ranking or []), version, source)
        )
    for comparison_id, batch_id, prompt_id, candidate_ids in chunk:
        prompt = prompts[prompt_id]
        if split is not None and split_of(project.slug, prompt.external_id, test_fraction) != split:
            continue
        given = votes.get(comparison_id, [])
        if not given:
            continue
        own = [candidates[pk] for pk in candidate_ids]
        comparison = Comparison(
            pk=comparison_id,
            project=project,
            batch_id=batch_id,
            prompt=prompt,
            candidate_a=own[0],
            candidate_b=own[1],
            candidate_ids=candidate_ids,
        )
        yield Ranked(
            comparison=comparison,
            candidates=own,
            rankings=[ranking for _, ranking, _, _ in given],
            annotators=[pseudonym(annotator_id) for annotator_id, _, _, _ in given],
            guideline_versions=sorted({v for _, _, v, _ in given if v is not None}),
            annotator_ids=[annotator_id for annotator_id, _, _, _ in given],
            sources=[source for _, _, _, source in given],
        )


def listwise_rows(
    *,
    project: Project,
    options: Options,
    prompt: Callable[[Any], Any] = lambda content: content,
) -> Iterator[dict[str, Any]]:
    """One row per ranked prompt: its responses best first, each with its merged rank and mean
    place, and every annotator's ranking (by response id, best first, ties as groups).
    `prompt` writes the prompt's content in the export's form."""
    for item in ranked_comparisons(project=project, options=options):
        if len(item.rankings) < options.min_votes:
            continue
        ids = [c.pk for c in item.candidates]
        merged = merged_ranks(ids, item.rankings)
        external = {c.pk: c.external_id for c in item.candidates}
        order = sorted(item.candidates, key=lambda c: (merged[c.pk][0], ids.index(c.pk)))
        yield {
            "prompt": prompt(item.comparison.prompt.content),
            "prompt_id": item.comparison.prompt.external_id,
            "comparison_id": item.comparison.pk,
            "candidates": [
                {
                    "id": c.external_id,
                    "model": c.model,
                    "text": c.text,
                    "rank": merged[c.pk][0],
                    "mean_place": round(float(merged[c.pk][1]), 4),
                }
                for c in order
            ],
            "rankings": [
                {"annotator": name, "ranking": [[external[pk] for pk in g] for g in ranking]}
                for name, ranking in zip(item.annotators, item.rankings, strict=True)
            ],
            "n_annotators": len(item.rankings),
            "kendall_w": kendall_w(ids, item.rankings),
            "batch": item.comparison.batch_id,
            "guideline_versions": item.guideline_versions,
            "votes_by_source": votes_by_source(Counter(item.sources)),
        }


def _ref(candidate: Candidate) -> CandidateRef:
    return CandidateRef(
        pk=candidate.pk,
        external_id=candidate.external_id,
        text=candidate.text,
        model=candidate.model,
    )


# A pair's item id in the reliability fit: its comparison's id and its index among the
# comparison's at most 28 pairs (8 responses).
PAIR_SLOTS = 64


def ranking_reliability_model(
    *, project: Project, sources: tuple[str, ...] = ("human",)
) -> ReliabilityModel | None:
    """Dawid-Skene fitted to the votes the project's rankings (of `sources`) give their pairs
    (each pair an item): the reliability aggregation of a listwise project. None without
    rankings."""
    items, annotators, labels = array("q"), array("q"), array("b")
    code = {option: index for index, option in enumerate(OPTIONS)}
    for item in ranked_comparisons(project=project, options=Options(sources=sources)):
        ids = [c.pk for c in item.candidates]
        for slot, (first, second) in enumerate(combinations(ids, 2)):
            for annotator_id, ranking in zip(item.annotator_ids, item.rankings, strict=True):
                items.append(item.comparison.pk * PAIR_SLOTS + slot)
                annotators.append(annotator_id)
                labels.append(code[pair_option(first, second, ranking)])
    if not labels:
        return None
    return fit_model(
        np.frombuffer(items, dtype=np.int64),
        np.frombuffer(annotators, dtype=np.int64),
        np.frombuffer(labels, dtype=np.int8),
    )


def ranking_tallies(*, project: Project, options: Options) -> Iterator[Tally]:
    """Each ranked listwise comparison's pairs as tallies, by comparison id, then by pair in the
    comparison's candidate order (the earlier-imported response as candidate A), under the
    filters and aggregations of `selectors.pairwise_tallies`. Every pair of a comparison keeps
    its `comparison_id`; its candidate ids tell the pairs apart. Rankings have no criteria and
    no graded strength: with `criterion` there are no pairs, and `mean_strength` picks none.
    Listwise projects have no gold items (`include_gold` changes nothing)."""
    aggregate, models = options.aggregate, options.models
    min_votes, min_agreement = options.min_votes, options.min_agreement
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
    if options.criterion is not None:
        return
    model = None
    if aggregate == "reliability":
        model = ranking_reliability_model(project=project, sources=options.sources)
    allowed = None if models is None else set(models)
    for item in ranked_comparisons(project=project, options=options):
        for first, second in combinations(item.candidates, 2):
            if allowed is not None and not {first.model, second.model} <= allowed:
                continue
            voted = [pair_option(first.pk, second.pk, r) for r in item.rankings]
            votes = Counter(voted)
            total = len(voted)
            if total < min_votes or votes.most_common(1)[0][1] / total < min_agreement:
                continue
            ballots = list(zip(item.annotator_ids, voted, strict=True))
            winner, confidence = decide(aggregate, votes, [], ballots, model)
            prompt = item.comparison.prompt
            pair = ComparisonRef(
                pk=item.comparison.pk,
                batch_id=item.comparison.batch_id,
                prompt=PromptRef(
                    pk=prompt.pk, external_id=prompt.external_id, content=prompt.content
                ),
                candidate_a=_ref(first),
                candidate_b=_ref(second),
            )
            yield Tally(
                pair,
                votes,
                winner,
                list(item.annotators),
                options=voted,
                guideline_versions=item.guideline_versions,
                label_confidence=confidence,
                sources=Counter(item.sources),
            )
