"""`aggregate=reliability` on a criterion's answers and on listwise rankings' pairs: votes weighted
by each annotator's estimated reliability (Dawid-Skene). The overall pairwise choice is labelled
by the crowd model instead (labels.py), which reads the overall choice only.

Dawid and Skene (1979) model each annotator by a confusion matrix: the chance that they answer
option l when the truth is k. Expectation-maximisation estimates the matrices, the prior of each
truth and each comparison's posterior from the votes alone:

- the truth is which candidate is better, "a" or "b"; the answers are "a", "b", "tie" and
  "both_bad" (per candidate, not per screen side). Ties and both-bad votes are evidence like
  any other, weighted by how each annotator uses them; they are not latent classes (with only
  those, EM turns a rare option into a catch-all cluster of comparisons);
- initialisation: each comparison's majority between "a" and "b" (even when they tie or have no
  votes), no randomness;
- M-step: prior and confusion matrices from the posteriors, each count smoothed by adding
  `SMOOTHING` (a tenth of a pseudo-vote per cell, so that no probability is 0; an annotator
  with few votes stays closer to "no information");
- E-step: log prior + the sum of each vote's log confusion entry, normalised;
- stop after `MAX_ITERATIONS`, or once no prior or confusion entry moves by more than
  `TOLERANCE` in an iteration.

The fit runs once per export over compact arrays (comparison index and annotator index as intp,
answer int8: 17 bytes a vote); the export then streams as usual and computes each comparison's
posterior from its own votes with the fitted model, so every row agrees with the votes it shows.
A comparison without a vote for either candidate is left out: nothing in it points to one.
Deterministic: the same votes give the same numbers.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from math import exp, log
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Case, CharField, F, IntegerField, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from apps.judging.models import Choice, Judgment
from apps.projects.models import Project

OPTIONS = ("a", "b", "tie", "both_bad")
TRUTHS = ("a", "b")
SMOOTHING = 0.1
MAX_ITERATIONS = 500
TOLERANCE = 1e-6
# Two options whose posteriors are this close are a tie: the comparison is left out.
TIE_EPSILON = 1e-9
CHUNK = 5000


@dataclass(frozen=True)
class Fit:
    prior: np.ndarray  # (K,)
    confusion: np.ndarray  # (annotators, truths, answers): [j, truth, answer]
    posterior: np.ndarray  # (truths, items)
    iterations: int


def dawid_skene(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    n_classes: int = len(TRUTHS),
    n_answers: int = len(OPTIONS),
    smoothing: float = SMOOTHING,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> Fit:
    """EM over votes given as parallel arrays (item index, annotator index, answer index).

    The truths are the first `n_classes` answers. Every item must have at least one vote. Sums
    run in vote order (np.bincount), so the result does not depend on the machine's BLAS.
    """
    k_, l_ = n_classes, n_answers
    item = item.astype(np.intp, copy=False)
    # One index per (annotator, answer): the cell a vote lands in.
    cell = annotator.astype(np.intp) * l_ + label
    # Arrays by truth first (truth, item): a row is contiguous, and np.take on it is fast.
    counted = np.empty((k_, n_items))
    for k in range(k_):
        counted[k] = np.bincount(item, weights=(label == k).astype(float), minlength=n_items)
    # The majority vote: the most-voted truth, or the tied ones equally.
    posterior = (counted == counted.max(axis=0, keepdims=True)).astype(float)
    posterior /= posterior.sum(axis=0, keepdims=True)
    del counted
    prior = np.full(k_, 1.0 / k_)
    confusion = np.full((n_annotators, k_, l_), 1.0 / l_)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        # M-step.
        new_prior = (posterior.sum(axis=1) + smoothing) / (n_items + k_ * smoothing)
        counts = np.empty((n_annotators, k_, l_))
        for k in range(k_):
            counts[:, k, :] = np.bincount(
                cell, weights=np.take(posterior[k], item), minlength=n_annotators * l_
            ).reshape(n_annotators, l_)
        new_confusion = (counts + smoothing) / (counts.sum(axis=2, keepdims=True) + l_ * smoothing)
        moved = max(
            float(np.abs(new_prior - prior).max()),
            float(np.abs(new_confusion - confusion).max()),
        )
        prior, confusion = new_prior, new_confusion
        # E-step: by cell, the log chance of that answer under each truth.
        by_cell = np.ascontiguousarray(
            np.log(confusion).transpose(1, 0, 2).reshape(k_, n_annotators * l_)
        )
        log_posterior = np.empty((k_, n_items))
        for k in range(k_):
            log_posterior[k] = np.log(prior[k]) + np.bincount(
                item, weights=np.take(by_cell[k], cell), minlength=n_items
            )
        log_posterior -= log_posterior.max(axis=0, keepdims=True)
        posterior = np.exp(log_posterior)
        posterior /= posterior.sum(axis=0, keepdims=True)
        if moved < tolerance:
            break
    return Fit(prior, confusion, posterior, iterations)


@dataclass(frozen=True)
class ReliabilityModel:
    """A fitted model: per annotator (by user id), log P(answer | truth) for each option."""

    log_prior: list[float]
    # annotator id -> [truth][answer], truths in TRUTHS order, answers in OPTIONS order.
    log_confusion: dict[int, list[list[float]]]
    iterations: int
    votes: int

    def decide(self, votes: Iterable[tuple[int, str]]) -> tuple[str | None, float | None]:
        """("a" or "b", its posterior) from one comparison's (annotator id, answer) votes;
        (None, None) when no vote names a candidate or the two tie in posterior. Votes by an
        annotator the fit did not see (who voted after it) carry no weight."""
        scores = list(self.log_prior)
        named = False
        for annotator_id, answer in votes:
            named = named or answer in TRUTHS
            matrix = self.log_confusion.get(annotator_id)
            if matrix is None or answer not in OPTIONS:
                continue
            column = OPTIONS.index(answer)
            for k in range(len(scores)):
                scores[k] += matrix[k][column]
        if not named:
            return None, None
        top = max(scores)
        weights = [exp(s - top) for s in scores]
        posterior = [w / sum(weights) for w in weights]
        best = 0 if posterior[0] >= posterior[1] else 1
        if abs(posterior[0] - posterior[1]) < TIE_EPSILON:
            return None, None
        return TRUTHS[best], posterior[best]


def reliability_model(
    *,
    project: Project,
    include_gold: bool = False,
    criterion: str | None = None,
    sources: tuple[str, ...] = ("human",),
) -> ReliabilityModel | None:
    """Fits Dawid-Skene to every vote of `sources` (people's by default) on the project's
    pairwise comparisons (all batches: a row's label does not depend on the slice exported), on
    the overall choice or on one criterion's answer. One query, read in id order. None when
    there are no votes."""
    judgments = Judgment.objects.filter(
        comparison__project=project,
        comparison__candidate_ids__isnull=True,
        invalidated_at__isnull=True,
        source__in=sources,
    ).exclude(choice=Choice.RANKING)
    if not include_gold:
        judgments = judgments.filter(comparison__is_gold=False)
    with transaction.atomic():
        # Inside a transaction PostgreSQL streams the server-side cursor as it is read, instead of
        # materialising the whole result first (a cursor WITH HOLD, outside one).
        return _fit_votes(judgments, criterion)


def _fit_votes(judgments: "QuerySet[Judgment]", criterion: str | None) -> ReliabilityModel | None:
    # Each vote's option as its index in OPTIONS, computed by the database: the rows are three
    # integers, read a chunk at a time into arrays.
    if criterion is not None:
        option: Any = Cast(
            KeyTextTransform("option", KeyTransform(criterion, "criteria")), CharField()
        )
    else:
        option = Case(
            When(choice=Choice.TIE, then=Value(Choice.TIE.value)),
            When(choice=Choice.BOTH_BAD, then=Value(Choice.BOTH_BAD.value)),
            When(chosen_id=F("comparison__candidate_a_id"), then=Value("a")),
            default=Value("b"),
        )
    code = Case(
        *(When(vote_option=name, then=Value(index)) for index, name in enumerate(OPTIONS)),
        default=Value(-1),
        output_field=IntegerField(),
    )
    rows = (
        judgments.annotate(vote_option=option)
        .annotate(vote_code=code)
        .filter(vote_code__gte=0)
        .order_by("id")
        .values_list("comparison_id", "annotator_id", "vote_code")
        .iterator(chunk_size=CHUNK)
    )
    comparisons, annotators, answers = [], [], []
    while chunk := list(islice(rows, CHUNK)):
        columns = np.array(chunk, dtype=np.int64).T
        comparisons.append(columns[0].copy())
        annotators.append(columns[1].astype(np.int32))
        answers.append(columns[2].astype(np.int8))
    if not answers:
        return None
    return fit_model(
        np.concatenate(comparisons), np.concatenate(annotators), np.concatenate(answers)
    )


def fit_model(
    comparison_ids: np.ndarray, annotator_ids: np.ndarray, labels: np.ndarray
) -> ReliabilityModel:
    """The model from raw ids and answer codes (indexes into OPTIONS), one entry a vote."""
    _, item = np.unique(comparison_ids, return_inverse=True)
    users, annotator = np.unique(annotator_ids, return_inverse=True)
    fit = dawid_skene(item, annotator, labels, n_items=int(item.max()) + 1, n_annotators=len(users))
    return ReliabilityModel(
        log_prior=[log(p) for p in fit.prior.tolist()],
        log_confusion={
            int(user): np.log(fit.confusion[j]).tolist() for j, user in enumerate(users.tolist())
        },
        iterations=fit.iterations,
        votes=len(labels),
    )
