"""Listwise comparisons in exports: the `listwise` format, and rankings as pairs.

A ranking (Judgment.ranking) is a list of groups of candidate ids, best first; a group of two or
more is a tie. Every ranking of k responses says, for each of its k(k-1)/2 pairs, which one is
better or that they tie: `ranking_tallies` counts those as pairwise votes, so that the pairwise
formats export a listwise project's pairs the way they export a pairwise one's.

The merged ranking of a prompt orders its responses by their mean place over the annotators'
rankings (tied responses share the mean of the places they span, 1-based); equal means tie, and
the merged ranks are competition ranks ("1, 2, 2, 4"). Exact fractions keep it deterministic.
"""

from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Any

import numpy as np

from apps.batches.models import Candidate, Comparison, Prompt
from apps.exports.options import Options
from apps.exports.reliability import OPTIONS, ReliabilityModel, fit_model
from apps.exports.selectors import (
    AGGREGATES,
    CHUNK,
    CandidateRef,
    ComparisonRef,
    PromptRef,
    Pseudonyms,
    Tally,
    decide,
    keyset_pages,
    split_of,
    voted_since,
)
from apps.judging.models import Choice, Judgment
from apps.projects.models import Project

Ranking = list[list[int]]


def places_of(ranking: Ranking) -> dict[int, Fraction]:
    """Each candidate's place in one ranking, 1-based; a tied group shares the mean of the
    places it spans (a group of two after the first place: both 2.5)."""
    places: dict[int, Fraction] = {}
    start = 1
    for group in ranking:
        shared = Fraction(2 * start + len(group) - 1, 2)
        for pk in group:
            places[pk] = shared
        start += len(group)
    return places


def merged_ranks(candidate_ids: Sequence[int], rankings: Sequence[Ranking]) -> dict[int, Any]:
    """{candidate id: (merged competition rank, mean place)} over `rankings`."""
    means = {pk: Fraction(0) for pk in candidate_ids}
    for ranking in rankings:
        for pk, place in places_of(ranking).items():
            means[pk] += place
    if rankings:
        means = {pk: total / len(rankings) for pk, total in means.items()}
    ordered = sorted(candidate_ids, key=lambda pk: means[pk])
    merged: dict[int, Any] = {}
    for index, pk in enumerate(ordered):
        same = index and means[ordered[index - 1]] == means[pk]
        rank = merged[ordered[index - 1]][0] if same else index + 1
        merged[pk] = (rank, means[pk])
    return merged


def kendall_w(candidate_ids: Sequence[int], rankings: Sequence[Ranking]) -> float | None:
    """Kendall's coefficient of concordance W among the rankings, corrected for ties: 1 when
    every annotator ranks alike, 0 when their rankings cancel out; None for fewer than two
    rankings or when no ranking orders anything (every response tied)."""
    m, n = len(rankings), len(candidate_ids)
    if m < 2 or n < 2:
        return None
    totals = {pk: Fraction(0) for pk in candidate_ids}
    ties = 0
    for ranking in rankings:
        for pk, place in places_of(ranking).items():
            totals[pk] += place
        ties += sum(len(g) ** 3 - len(g) for g in ranking)
    mean = Fraction(m * (n + 1), 2)
    spread = sum((total - mean) ** 2 for total in totals.values())
    denominator = m * m * (n**3 - n) - m * ties
    if denominator == 0:
        return None
    return round(float(12 * spread / denominator), 4)


@dataclass
class Ranked:
    """One listwise comparison with its rankings, in judgment order."""

    comparison: Comparison
    candidates: list[Candidate]  # in the comparison's order (import order)
    rankings: list[Ranking]
    annotators: list[str]
    guideline_versions: list[int]
    annotator_ids: list[int]


def ranked_comparisons(*, project: Project, options: Options) -> Iterator[Ranked]:
    """Every ranked listwise comparison, by id, in chunks: three statements a chunk. With
    `options.since`, only those ranked at or after it (all their rankings count); also by
    `batch_id` and `split`."""
    pseudonym = Pseudonyms(project)
    comparisons = Comparison.objects.filter(
        project=project, judgment_count__gt=0, candidate_ids__isnull=False
    )
    if options.batch_id is not None:
        comparisons = comparisons.filter(batch_id=options.batch_id)
    if options.since is not None:
        comparisons = comparisons.filter(voted_since(options.since))
    rows = comparisons.order_by("id").values_list("id", "batch_id", "prompt_id", "candidate_ids")
    # Keyset pages, as the other exports read: a held server-side cursor is built whole (the
    # `since` subquery included) before its first row.
    for page in keyset_pages(rows, CHUNK):
        chunk = [(pk, batch, prompt, list(ids or [])) for pk, batch, prompt, ids in page]
        yield from _ranked_chunk(project, chunk, pseudonym, options.split, options.test_fraction)


def _ranked_chunk(
    project: Project,
    chunk: list[tuple[int, int, int, list[int]]],
    pseudonym: Pseudonyms,
    split: str | None,
    test_fraction: float,
) -> Iterator[Ranked]:
    prompts = Prompt.objects.in_bulk([row[2] for row in chunk])
    candidates = Candidate.objects.in_bulk([pk for row in chunk for pk in row[3]])
    votes: dict[int, list[tuple[int, Ranking, int | None]]] = {}
    judgments = (
        Judgment.objects.filter(
            comparison_id__in=[row[0] for row in chunk],
            choice=Choice.RANKING,
            invalidated_at__isnull=True,
        )
        .order_by("id")
        .values_list("comparison_id", "annotator_id", "ranking", "guideline_version")
    )
    for comparison_id, annotator_id, ranking, version in judgments:
        votes.setdefault(comparison_id, []).append((annotator_id, list(ranking or []), version))
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
            rankings=[ranking for _, ranking, _ in given],
            annotators=[pseudonym(annotator_id) for annotator_id, _, _ in given],
            guideline_versions=sorted({v for _, _, v in given if v is not None}),
            annotator_ids=[annotator_id for annotator_id, _, _ in given],
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
        }


def _ref(candidate: Candidate) -> CandidateRef:
    return CandidateRef(
        pk=candidate.pk,
        external_id=candidate.external_id,
        text=candidate.text,
        model=candidate.model,
    )


def pair_option(a: int, b: int, ranking: Ranking) -> str:
    """What one ranking says of the pair (a, b): "a", "b" or a tie (the same group)."""
    places = places_of(ranking)
    if places[a] < places[b]:
        return "a"
    if places[b] < places[a]:
        return "b"
    return str(Choice.TIE)


def pair_votes(a: int, b: int, rankings: Sequence[Ranking]) -> Counter[str]:
    """The votes the rankings give the pair (a, b)."""
    return Counter(pair_option(a, b, ranking) for ranking in rankings)


# A pair's item id in the reliability fit: its comparison's id and its index among the
# comparison's at most 28 pairs (8 responses).
PAIR_SLOTS = 64


def ranking_reliability_model(*, project: Project) -> ReliabilityModel | None:
    """Dawid-Skene fitted to the votes the project's rankings give their pairs (each pair an
    item): the reliability aggregation of a listwise project. None without rankings."""
    items, annotators, labels = array("q"), array("q"), array("b")
    code = {option: index for index, option in enumerate(OPTIONS)}
    for item in ranked_comparisons(project=project, options=Options()):
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
        model = ranking_reliability_model(project=project)
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
            )
