"""`aggregate=reliability`: votes weighted by each annotator's estimated reliability (Dawid-Skene).

Dawid and Skene (1979) model each annotator by a confusion matrix: the chance that they answer
option l when the true option is k. Expectation-maximisation estimates the matrices, the prior of
each option and each comparison's posterior from the votes alone:

- options are "a", "b", "tie" and "both_bad" (per candidate, not per screen side), those that
  occur among the votes, in that order;
- initialisation: each comparison's majority vote (the tied options share it equally), no
  randomness;
- M-step: prior and confusion matrices from the posteriors, each count smoothed by adding
  `SMOOTHING` (a tenth of a pseudo-vote per cell, so that no probability is 0; an annotator
  with few votes stays closer to "no information");
- E-step: log prior + the sum of each vote's log confusion entry, normalised;
- stop after `MAX_ITERATIONS` or when no posterior moves by more than `TOLERANCE`.

The fit runs once per export over compact arrays (comparison index int32, annotator index int32,
option int8: 9 bytes a vote while fitting, ~17 while reading rows); the export then streams as
usual and computes each comparison's posterior from its own votes with the fitted model, so
every row agrees with the votes it shows. Deterministic: the same votes give the same numbers.
"""

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from math import exp, log

import numpy as np
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from apps.judging.models import Choice, Judgment
from apps.projects.models import Project

OPTIONS = ("a", "b", "tie", "both_bad")
SMOOTHING = 0.1
MAX_ITERATIONS = 100
TOLERANCE = 1e-6
# Two options whose posteriors are this close are a tie: the comparison is left out.
TIE_EPSILON = 1e-9
CHUNK = 5000


@dataclass(frozen=True)
class Fit:
    prior: np.ndarray  # (K,)
    confusion: np.ndarray  # (annotators, K, K): [j, true, answered]
    posterior: np.ndarray  # (K, items)
    iterations: int


def dawid_skene(
    item: np.ndarray,
    annotator: np.ndarray,
    label: np.ndarray,
    *,
    n_items: int,
    n_annotators: int,
    n_classes: int,
    smoothing: float = SMOOTHING,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> Fit:
    """EM over votes given as parallel arrays (item index, annotator index, label index).

    Every item must have at least one vote. Sums run in vote order (np.bincount), so the result
    does not depend on the machine's BLAS. Stops when no prior or confusion entry moves by more
    than `tolerance` in an iteration.
    """
    k_ = n_classes
    item = item.astype(np.intp, copy=False)
    # One index per (annotator, answered option): the cell a vote lands in.
    cell = annotator.astype(np.intp) * k_ + label
    # Arrays by option first (option, item): a row is contiguous, and np.take on it is fast.
    counted = np.empty((k_, n_items))
    for k in range(k_):
        counted[k] = np.bincount(item, weights=(label == k).astype(float), minlength=n_items)
    # The majority vote: the most-voted option, or the tied ones equally.
    posterior = (counted == counted.max(axis=0, keepdims=True)).astype(float)
    posterior /= posterior.sum(axis=0, keepdims=True)
    del counted
    prior = np.full(k_, 1.0 / k_)
    confusion = np.full((n_annotators, k_, k_), 1.0 / k_)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        # M-step.
        new_prior = (posterior.sum(axis=1) + smoothing) / (n_items + k_ * smoothing)
        counts = np.empty((n_annotators, k_, k_))
        for k in range(k_):
            counts[:, k, :] = np.bincount(
                cell, weights=np.take(posterior[k], item), minlength=n_annotators * k_
            ).reshape(n_annotators, k_)
        new_confusion = (counts + smoothing) / (counts.sum(axis=2, keepdims=True) + k_ * smoothing)
        moved = max(
            float(np.abs(new_prior - prior).max()),
            float(np.abs(new_confusion - confusion).max()),
        )
        prior, confusion = new_prior, new_confusion
        # E-step: by cell, the log chance of that answer under each true option.
        by_cell = np.ascontiguousarray(
            np.log(confusion).transpose(1, 0, 2).reshape(k_, n_annotators * k_)
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

    classes: tuple[str, ...]
    log_prior: list[float]
    log_confusion: dict[int, list[list[float]]]
    iterations: int
    votes: int

    def decide(self, votes: Iterable[tuple[int, str]]) -> tuple[str | None, float | None]:
        """(winning option, its posterior) from one comparison's (annotator id, option) votes;
        (None, None) when two options tie in posterior or nothing is known. Votes by an
        annotator the fit did not see (who voted after it) carry no weight."""
        scores = list(self.log_prior)
        for annotator_id, option in votes:
            matrix = self.log_confusion.get(annotator_id)
            if matrix is None or option not in self.classes:
                continue
            answered = self.classes.index(option)
            for k in range(len(scores)):
                scores[k] += matrix[k][answered]
        if not scores:
            return None, None
        top = max(scores)
        weights = [exp(s - top) for s in scores]
        total = sum(weights)
        posterior = [w / total for w in weights]
        order = sorted(range(len(posterior)), key=lambda k: -posterior[k])
        best = order[0]
        if len(order) > 1 and posterior[best] - posterior[order[1]] < TIE_EPSILON:
            return None, None
        return self.classes[best], posterior[best]


def reliability_model(
    *, project: Project, include_gold: bool = False, criterion: str | None = None
) -> ReliabilityModel | None:
    """Fits Dawid-Skene to every vote on the project's pairwise comparisons (all batches: a
    row's label does not depend on the slice exported), on the overall choice or on one
    criterion's answer. One query, read in id order. None when there are no votes."""
    judgments = Judgment.objects.filter(
        comparison__project=project, comparison__candidate_ids__isnull=True
    ).exclude(choice=Choice.RANKING)
    if not include_gold:
        judgments = judgments.filter(comparison__is_gold=False)
    comparison_ids = array("q")
    annotator_ids = array("q")
    labels = array("b")
    code = {option: index for index, option in enumerate(OPTIONS)}
    if criterion is not None:
        rows = (
            judgments.annotate(
                criterion_option=KeyTextTransform("option", KeyTransform(criterion, "criteria"))
            )
            .filter(criterion_option__isnull=False)
            .order_by("id")
            .values_list("comparison_id", "annotator_id", "criterion_option")
        )
        for comparison_id, annotator_id, option in rows.iterator(chunk_size=CHUNK):
            if option in code:
                comparison_ids.append(comparison_id)
                annotator_ids.append(annotator_id)
                labels.append(code[option])
    else:
        overall = judgments.order_by("id").values_list(
            "comparison_id", "annotator_id", "choice", "chosen_id", "comparison__candidate_a_id"
        )
        for comparison_id, annotator_id, choice, chosen_id, a_id in overall.iterator(
            chunk_size=CHUNK
        ):
            comparison_ids.append(comparison_id)
            annotator_ids.append(annotator_id)
            if choice in (Choice.TIE, Choice.BOTH_BAD):
                labels.append(code[choice])
            else:
                labels.append(0 if chosen_id == a_id else 1)
    if not labels:
        return None
    return fit_model(
        np.frombuffer(comparison_ids, dtype=np.int64),
        np.frombuffer(annotator_ids, dtype=np.int64),
        np.frombuffer(labels, dtype=np.int8),
    )


def fit_model(
    comparison_ids: np.ndarray, annotator_ids: np.ndarray, labels: np.ndarray
) -> ReliabilityModel:
    """The model from raw ids and option codes (indexes into OPTIONS), one entry a vote."""
    _, item = np.unique(comparison_ids, return_inverse=True)
    users, annotator = np.unique(annotator_ids, return_inverse=True)
    present = np.unique(labels)
    remap = np.full(len(OPTIONS), -1, dtype=np.int8)
    remap[present] = np.arange(len(present), dtype=np.int8)
    fit = dawid_skene(
        item.astype(np.int32),
        annotator.astype(np.int32),
        remap[labels],
        n_items=int(item.max()) + 1,
        n_annotators=len(users),
        n_classes=len(present),
    )
    return ReliabilityModel(
        classes=tuple(OPTIONS[int(p)] for p in present),
        log_prior=[log(p) for p in fit.prior.tolist()],
        log_confusion={
            int(user): np.log(fit.confusion[j]).tolist() for j, user in enumerate(users.tolist())
        },
        iterations=fit.iterations,
        votes=len(labels),
    )
