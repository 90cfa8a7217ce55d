"""Agreement and statistics of a project's votes: how far to trust them, and what they say.

`stats_votes` loads the votes in one query, page by page, into numpy columns (`VoteColumns`: one
row per vote, integer codes for options, annotators and models); every other function here is
pure and takes those columns (or `Vote`s, which it turns into columns), so each number can be
checked by hand or against the libraries. Counting is vectorised (bincount over the codes), never
one Python object per vote; tests/agreement/test_stats_fast.py checks each figure by hand and
against independent references. Alpha and kappa come from `krippendorff` and statsmodels, not
from code of ours.

Gold items are left out of agreement, annotator habits and model statistics (they test the
annotators; they are not data) and give gold accuracy only. Invalidated judgments (a spammer's)
are left out of everything. Listwise comparisons are left out of
everything for now. AI judges' votes (Judgment.source "ai") are left out of every figure about
people; apps/agreement/ai_judges.py sets them beside people's.
"""

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import krippendorff
import numpy as np

# scipy and statsmodels are imported in the functions that use them, not here: with pandas and
# pyarrow, which statsmodels loads, they are about 150 MiB of a process's memory, and every
# process imports this module as Django starts (the admin's autodiscovery), an import or a web
# worker too, while only the statistics use them (tests/annotate/test_startup_memory.py).
from django.db import connections

from apps.agreement.crowd_report import crowd_report
from apps.agreement.flags import (
    AUDIT_NOTE,
    CONFIDENCE,
    DEFAULT_DESIGN,
    Design,
    agreement_tests,
    bias_tests,
)
from apps.agreement.flags import wilson_interval as wilson_interval  # re-exported
from apps.agreement.repeats import MEANING as REPEAT_MEANING
from apps.agreement.repeats import MIN_PROBES, clicker_consistency, repeat_consistency
from apps.agreement.transitivity import MEANING as TRANSITIVITY_MEANING
from apps.agreement.transitivity import MIN_TRIADS, transitivity
from apps.judging.models import Choice, Judgment, Source
from apps.judging.probes import repeat_counts
from apps.projects.models import Project
from apps.projects.selectors import Pseudonyms

# A vote's option, oriented to the candidates: candidate A, candidate B, or neither.
OPTIONS = ("a", "b", "tie", "both_bad")
SIDED = ("a", "b")
DIGITS = 4
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20260127
REFERENCE = {
    "instructgpt": {
        "agreement": 0.726,
        "plus_minus": 0.015,
        "between": "training labelers (Ouyang et al. 2022, InstructGPT)",
    },
    "hh_rlhf": {
        "agreement": 0.63,
        "plus_minus": None,
        "between": "crowdworkers and the authors (Bai et al. 2022, HH-RLHF), about 63%",
    },
}


@dataclass(frozen=True, slots=True)
class Vote:
    comparison: int
    annotator: str  # the pseudonym
    option: str  # one of OPTIONS
    side: str | None  # "left" or "right" when a side was chosen; None otherwise
    strength: int | None  # graded projects: -3..3, above 0 candidate A is better
    model_a: str
    model_b: str
    is_gold: bool
    gold_correct: bool | None
    duration_ms: int | None
    # The comparison's prompt and candidates (database ids), for the transitivity checks; None
    # where unknown.
    prompt: int | None = None
    candidate_a: int | None = None
    candidate_b: int | None = None
    # In the project's audit sample (Comparison.is_audit).
    is_audit: bool = False


SIDES = (None, "left", "right")
# Rows a page of `stats_votes` turns into columns at a time.
STATS_PAGE = 20_000


@dataclass(frozen=True)
class VoteColumns:
    """Votes as numpy columns, one row per vote, by comparison (then judgment id).

    Annotators and models are codes into `names` and `models`, both sorted, so that ordering
    codes orders names. Nullable columns come with a mask (`has_strength`, `has_duration`);
    `gold_correct` is -1 where null. Iterating gives `Vote`s.
    """

    comparison: np.ndarray  # int64
    annotator: np.ndarray  # int64, into names
    option: np.ndarray  # int8, into OPTIONS
    side: np.ndarray  # int8, into SIDES
    strength: np.ndarray  # int64, where has_strength
    has_strength: np.ndarray  # bool
    model_a: np.ndarray  # int64, into models
    model_b: np.ndarray  # int64, into models
    is_gold: np.ndarray  # bool
    gold_correct: np.ndarray  # int8: -1 null, 0 false, 1 true
    duration_ms: np.ndarray  # int64, where has_duration
    has_duration: np.ndarray  # bool
    prompt: np.ndarray  # int64, -1 where unknown
    candidate_a: np.ndarray  # int64, -1 where unknown
    candidate_b: np.ndarray  # int64, -1 where unknown
    is_audit: np.ndarray  # bool
    names: list[str]
    models: list[str]

    def __len__(self) -> int:
        return len(self.comparison)

    def __iter__(self) -> Iterator[Vote]:
        for k in range(len(self)):
            yield Vote(
                comparison=int(self.comparison[k]),
                annotator=self.names[self.annotator[k]],
                option=OPTIONS[self.option[k]],
                side=SIDES[self.side[k]],
                strength=int(self.strength[k]) if self.has_strength[k] else None,
                model_a=self.models[self.model_a[k]],
                model_b=self.models[self.model_b[k]],
                is_gold=bool(self.is_gold[k]),
                gold_correct=None if self.gold_correct[k] < 0 else bool(self.gold_correct[k]),
                duration_ms=int(self.duration_ms[k]) if self.has_duration[k] else None,
                prompt=int(self.prompt[k]) if self.prompt[k] >= 0 else None,
                candidate_a=int(self.candidate_a[k]) if self.candidate_a[k] >= 0 else None,
                candidate_b=int(self.candidate_b[k]) if self.candidate_b[k] >= 0 else None,
                is_audit=bool(self.is_audit[k]),
            )

    def select(self, mask: np.ndarray) -> "VoteColumns":
        """The votes where `mask` holds, with the same names and models."""
        arrays = {
            name: getattr(self, name)[mask]
            for name in self.__dataclass_fields__
            if name not in ("names", "models")
        }
        return VoteColumns(**arrays, names=self.names, models=self.models)

    @classmethod
    def of(cls, votes: "Iterable[Vote] | VoteColumns") -> "VoteColumns":
        """Columns of any votes (already columns are returned as they are), by comparison."""
        if isinstance(votes, VoteColumns):
            return votes
        votes = list(votes)
        names = sorted({v.annotator for v in votes})
        name_code = {name: i for i, name in enumerate(names)}
        models = sorted({v.model_a or "" for v in votes} | {v.model_b or "" for v in votes})
        model_code = {name: i for i, name in enumerate(models)}
        option_code = {option: i for i, option in enumerate(OPTIONS)}
        side_code = {side: i for i, side in enumerate(SIDES)}
        columns = cls(
            comparison=np.array([v.comparison for v in votes], dtype=np.int64),
            annotator=np.array([name_code[v.annotator] for v in votes], dtype=np.int64),
            option=np.array([option_code[v.option] for v in votes], dtype=np.int8),
            side=np.array([side_code[v.side] for v in votes], dtype=np.int8),
            strength=np.array([v.strength or 0 for v in votes], dtype=np.int64),
            has_strength=np.array([v.strength is not None for v in votes], dtype=bool),
            model_a=np.array([model_code[v.model_a or ""] for v in votes], dtype=np.int64),
            model_b=np.array([model_code[v.model_b or ""] for v in votes], dtype=np.int64),
            is_gold=np.array([v.is_gold for v in votes], dtype=bool),
            gold_correct=np.array(
                [-1 if v.gold_correct is None else int(v.gold_correct) for v in votes],
                dtype=np.int8,
            ),
            duration_ms=np.array([v.duration_ms or 0 for v in votes], dtype=np.int64),
            has_duration=np.array([v.duration_ms is not None for v in votes], dtype=bool),
            prompt=_ids([v.prompt for v in votes]),
            candidate_a=_ids([v.candidate_a for v in votes]),
            candidate_b=_ids([v.candidate_b for v in votes]),
            is_audit=np.array([v.is_audit for v in votes], dtype=bool),
            names=names,
            models=models,
        )
        # Grouping by comparison keeps each comparison's votes in their given order.
        return columns.select(np.argsort(columns.comparison, kind="stable"))


def _ids(values: list[int | None]) -> np.ndarray:
    return np.array([-1 if v is None else v for v in values], dtype=np.int64)


class _ColumnsBuilder:
    """Turns pages of `stats_votes` rows into columns: numpy per page, Python only to map
    strings (choices, model names) to small codes."""

    CHOICES = {Choice.LEFT.value: 0, Choice.RIGHT.value: 1, "tie": 2, "both_bad": 3}

    def __init__(self) -> None:
        self.pages: list[dict[str, np.ndarray]] = []
        self.model_code: dict[str | None, int] = {}

    def add(self, page: list[tuple[Any, ...]]) -> None:
        (comparison, annotator, choice, chosen, candidate_a, model_a, model_b, is_gold, strength,
         gold_correct, duration, prompt, candidate_b,
         is_audit) = zip(*page, strict=True)  # fmt: skip
        choices = np.fromiter(map(self.CHOICES.__getitem__, choice), np.int8, len(choice))
        chose_a = np.array(chosen, dtype=np.float64) == np.array(candidate_a, dtype=np.float64)
        sided = choices < 2
        strengths = np.array(strength, dtype=np.float64)
        gold = np.array(gold_correct, dtype=np.float64)
        durations = np.array(duration, dtype=np.float64)
        code = self.model_code
        for name in {*model_a, *model_b} - code.keys():
            code[name] = len(code)
        self.pages.append(
            {
                "comparison": np.array(comparison, dtype=np.int64),
                "annotator": np.array(annotator, dtype=np.int64),
                "option": np.where(sided, np.where(chose_a, 0, 1), choices).astype(np.int8),
                "side": np.where(sided, choices + 1, 0).astype(np.int8),
                "strength": np.nan_to_num(strengths).astype(np.int64),
                "has_strength": ~np.isnan(strengths),
                "model_a": np.fromiter(map(code.__getitem__, model_a), np.int64, len(model_a)),
                "model_b": np.fromiter(map(code.__getitem__, model_b), np.int64, len(model_b)),
                "is_gold": np.array(is_gold, dtype=bool),
                "gold_correct": np.where(np.isnan(gold), -1, gold).astype(np.int8),
                "duration_ms": np.nan_to_num(durations).astype(np.int64),
                "has_duration": ~np.isnan(durations),
                "prompt": np.array(prompt, dtype=np.int64),
                "candidate_a": np.array(candidate_a, dtype=np.int64),
                "candidate_b": np.array(candidate_b, dtype=np.int64),
                "is_audit": np.array(is_audit, dtype=bool),
            }
        )

    def finish(self, pseudonym: Pseudonyms) -> VoteColumns:
        columns = {
            name: np.concatenate([page[name] for page in self.pages])
            if self.pages
            else np.zeros(0, dtype=np.int64)
            for name in (
                "comparison", "annotator", "option", "side", "strength", "has_strength",
                "model_a", "model_b", "is_gold", "gold_correct", "duration_ms", "has_duration",
                "prompt", "candidate_a", "candidate_b", "is_audit",
            )
        }  # fmt: skip
        if not self.pages:
            for name in ("has_strength", "is_gold", "has_duration", "is_audit"):
                columns[name] = columns[name].astype(bool)
        user_ids, annotator = np.unique(columns["annotator"], return_inverse=True)
        per_user = [pseudonym(int(pk)) for pk in user_ids]
        names = sorted(set(per_user))
        name_code = {name: i for i, name in enumerate(names)}
        columns["annotator"] = np.array([name_code[n] for n in per_user], dtype=np.int64)[
            annotator.reshape(-1)
        ]
        models = sorted({name or "" for name in self.model_code})
        recode = np.zeros(len(self.model_code), dtype=np.int64)
        for model, code in self.model_code.items():
            recode[code] = models.index(model or "")
        columns["model_a"] = recode[columns["model_a"]]
        columns["model_b"] = recode[columns["model_b"]]
        return VoteColumns(**columns, names=names, models=models)


def stats_votes(
    *,
    project: Project,
    batch_id: int | None = None,
    sources: tuple[str, ...] = (Source.HUMAN.value,),
) -> VoteColumns:
    """Every pairwise vote of the project (or of one batch), by comparison, in one streamed query,
    as columns (`VoteColumns`; iterating them gives `Vote`s).

    People's votes only by default: every figure about people (agreement, flags, leaderboards)
    reads theirs; an export of AI votes (`sources`) asks for others. The annotators'
    pseudonyms cost one more, small query.
    """
    pseudonym = Pseudonyms(project)
    judgments = Judgment.objects.filter(
        comparison__project=project,
        comparison__candidate_ids__isnull=True,
        invalidated_at__isnull=True,
        source__in=sources,
    )
    if batch_id is not None:
        judgments = judgments.filter(comparison__batch_id=batch_id)
    rows = judgments.order_by("comparison_id", "id").values_list(
        "comparison_id",
        "annotator_id",
        "choice",
        "chosen_id",
        "comparison__candidate_a_id",
        "comparison__candidate_a__model",
        "comparison__candidate_b__model",
        "comparison__is_gold",
        "strength",
        "gold_correct",
        "duration_ms",
        "comparison__prompt_id",
        "comparison__candidate_b_id",
        "comparison__is_audit",
    )
    builder = _ColumnsBuilder()
    # A plain (client-side) cursor, not QuerySet.iterator()'s server-side one: PostgreSQL plans
    # a cursor for its first rows (no parallel hash joins) and reads 1M votes about twice as
    # slowly. The result waits in the driver's buffer, far smaller than the rows as objects.
    sql, params = rows.query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        while page := cursor.fetchmany(STATS_PAGE):
            builder.add(page)
    return builder.finish(pseudonym)


def stats_repeats(*, project: Project, batch_id: int | None = None) -> dict[str, tuple[int, int]]:
    """The consistency probes answered in the project (or of one batch's comparisons), by
    annotator pseudonym: (answered, consistent). One query, and the pseudonyms' when there are
    any."""
    counts = repeat_counts(project=project, batch_id=batch_id)
    if not counts:
        return {}
    pseudonym = Pseudonyms(project)
    return {pseudonym(user_id): pair for user_id, pair in counts.items()}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, DIGITS) if whole else None


def _finite(value: float) -> float | None:
    """The value rounded, or None where a library answers NaN (an undefined coefficient)."""
    return None if value is None or math.isnan(value) else round(float(value), DIGITS)


# -- agreement -----------------------------------------------------------------------------------


def pairwise_agreement(items: Iterable[Sequence[str]]) -> dict[str, Any]:
    """Raw agreement over every pair of annotators who judged the same comparison.

    `items` holds each comparison's options. As MT-Bench reports it: `with_ties` counts every
    pair (equal options agree); `without_ties` only pairs where both votes chose a candidate.
    """
    pairs = agree = sided_pairs = sided_agree = 0
    for options in items:
        for first, second in combinations(options, 2):
            pairs += 1
            agree += first == second
            if first in SIDED and second in SIDED:
                sided_pairs += 1
                sided_agree += first == second
    return {
        "with_ties": {"agreement": _share(agree, pairs), "pairs": pairs},
        "without_ties": {"agreement": _share(sided_agree, sided_pairs), "pairs": sided_pairs},
    }


def reliability_matrix(cells: Iterable[tuple[str, int, float]]) -> np.ndarray:
    """Krippendorff's reliability data: annotators x comparisons, NaN where one did not vote.

    `cells` are (annotator, comparison, value). Rows and columns are in sorted order.
    """
    cells = list(cells)
    annotators = {name: i for i, name in enumerate(sorted({c[0] for c in cells}))}
    comparisons = {pk: j for j, pk in enumerate(sorted({c[1] for c in cells}))}
    matrix = np.full((len(annotators), len(comparisons)), np.nan)
    for annotator, comparison, value in cells:
        matrix[annotators[annotator], comparisons[comparison]] = value
    return matrix


def krippendorff_alpha(
    matrix: np.ndarray,
    *,
    level: Literal["nominal", "ordinal"],
    value_domain: Sequence[float] | None = None,
) -> float | None:
    """Krippendorff's alpha from the library; None where it is undefined.

    It is undefined without a comparison of two or more votes, or when every vote is the same.
    """
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2 if matrix.size else np.array([])
    if not pairable.any():
        return None
    values = matrix[:, pairable]
    if len(np.unique(values[~np.isnan(values)])) < 2:
        return None
    return _finite(
        krippendorff.alpha(
            reliability_data=values, level_of_measurement=level, value_domain=value_domain
        )
    )


def fleiss(items: Sequence[Sequence[str]]) -> tuple[float | None, str | None]:
    """Fleiss' kappa from statsmodels, and None with the reason where it does not apply."""
    table = np.array([[Counter(options)[o] for o in OPTIONS] for options in items], dtype=np.int64)
    return _fleiss(table.reshape(-1, len(OPTIONS)))


def _groups(comparison: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each vote's comparison as an index into the comparisons in order, and where each
    comparison's votes start: the columns are grouped by comparison, so no sort is needed."""
    if not len(comparison):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new = np.empty(len(comparison), dtype=bool)
    new[0] = True
    np.not_equal(comparison[1:], comparison[:-1], out=new[1:])
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _tally(index: np.ndarray, values: np.ndarray, groups: int, width: int) -> np.ndarray:
    """groups x width: how many votes of each group have each value (0 .. width - 1)."""
    return np.bincount(index * width + values, minlength=groups * width).reshape(groups, width)


def _by_comparison(votes: VoteColumns) -> tuple[np.ndarray, np.ndarray]:
    """Each vote's comparison as an index into the sorted comparisons, and each comparison's
    votes per option (comparisons x OPTIONS)."""
    index, starts = _groups(votes.comparison)
    return index, _tally(index, votes.option.astype(np.int64), len(starts), len(OPTIONS))


def _pairs(n: np.ndarray) -> int:
    return int((n * (n - 1) // 2).sum())


def _alpha(
    value_counts: np.ndarray,
    *,
    level: Literal["nominal", "ordinal"],
    value_domain: Sequence[float],
) -> float | None:
    """`krippendorff_alpha` of comparisons x values counts (the value counts the library
    derives from a reliability matrix, with comparisons in the matrix's order): the library
    computes the same from them, without the annotators x comparisons matrix."""
    pairable = value_counts[value_counts.sum(axis=1) >= 2]
    if not len(pairable) or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    return _finite(
        krippendorff.alpha(
            value_counts=pairable, level_of_measurement=level, value_domain=value_domain
        )
    )


def _fleiss(counts: np.ndarray) -> tuple[float | None, str | None]:
    """`fleiss` of a comparisons x OPTIONS table of votes."""
    sizes = {int(n) for n in np.unique(counts.sum(axis=1))}
    if not len(counts):
        return None, "No votes."
    if len(sizes) > 1:
        return None, (
            f"Comparisons have from {min(sizes)} to {max(sizes)} votes; Fleiss' kappa needs the "
            "same number of votes on every comparison (Krippendorff's alpha does not)."
        )
    if sizes == {1}:
        return None, "Every comparison has one vote; Fleiss' kappa needs two or more."
    # Every vote for one option: chance agreement is 1 and kappa 0/0, undefined (null).
    with np.errstate(invalid="ignore", divide="ignore"):
        from statsmodels.stats.inter_rater import fleiss_kappa

        return _finite(fleiss_kappa(counts.astype(np.int64), method="fleiss")), None


def agreement(votes: Iterable[Vote] | VoteColumns) -> dict[str, Any]:
    """The project's agreement: raw, Krippendorff's alpha, and Fleiss' kappa where it applies."""
    votes = VoteColumns.of(votes)
    _, counts = _by_comparison(votes)
    sided = counts[:, 0] + counts[:, 1]
    pairs, sided_pairs = _pairs(counts.sum(axis=1)), _pairs(sided)
    agree, sided_agree = _pairs(counts), _pairs(counts[:, :2])
    graded = votes.has_strength
    ordinal = None
    if graded.any():
        index, starts = _groups(votes.comparison[graded])
        strengths = votes.strength[graded] + 3
        ordinal = _alpha(
            _tally(index, strengths, len(starts), 7),
            level="ordinal",
            value_domain=list(range(-3, 4)),
        )
    kappa, note = _fleiss(counts)
    return {
        "pairwise": {
            "with_ties": {"agreement": _share(agree, pairs), "pairs": pairs},
            "without_ties": {"agreement": _share(sided_agree, sided_pairs), "pairs": sided_pairs},
        },
        "krippendorff_alpha_nominal": _alpha(
            counts, level="nominal", value_domain=list(range(len(OPTIONS)))
        ),
        "krippendorff_alpha_ordinal": ordinal,
        "fleiss_kappa": kappa,
        "fleiss_kappa_note": note,
        "reference": REFERENCE,
    }


def audit_agreement(ordinary: VoteColumns) -> dict[str, Any] | None:
    """Agreement, alpha and kappa over the audit sample's votes alone (Comparison.is_audit):
    unbiased whatever the policy, as every policy fills the sample to the full overlap first and
    it never stops early. None when the sample has no votes (no audit rate, or none judged)."""
    audited = ordinary.select(ordinary.is_audit)
    if not len(audited):
        return None
    return {
        **agreement(audited),
        "sample": "audit",
        "sample_note": AUDIT_NOTE,
        "comparisons": len(_groups(audited.comparison)[1]),
        "judgments": len(audited),
    }


# -- annotators ----------------------------------------------------------------------------------


def others_majority(votes: VoteColumns) -> np.ndarray:
    """Per vote: the option (code into OPTIONS) the others' votes on its comparison hold a
    majority for, or -1.

    There is one when at least two others voted on the comparison and one option has strictly
    more of their votes than any other; without it there is nothing to agree with.
    """
    index, counts = _by_comparison(votes)
    rows = np.arange(len(votes))
    others = counts[index].astype(np.int32)
    others[rows, votes.option] -= 1
    most = others.max(axis=1) if len(votes) else np.zeros(0, dtype=np.int32)
    counted = (counts.sum(axis=1)[index] >= 3) & ((others == most[:, None]).sum(axis=1) == 1)
    return np.where(counted, others.argmax(axis=1) if len(votes) else rows, -1)


def leave_one_out(
    votes: VoteColumns, majority: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator code: agreements and comparisons counted with the majority of the others
    (`others_majority`, given or computed)."""
    majority = others_majority(votes) if majority is None else majority
    counted = majority >= 0
    agree = majority == votes.option
    size = len(votes.names)
    return (
        np.bincount(votes.annotator[agree], minlength=size),
        np.bincount(votes.annotator[counted], minlength=size),
    )


def _medians(annotator: np.ndarray, values: np.ndarray, size: int) -> list[int | float | None]:
    """Per annotator code, `statistics.median` of their values (None without any)."""
    if not len(values) or (values.min() >= 0 and values.max() < 2**32):
        # One sort of (annotator, value) packed in an int64 (durations fit in 32 bits).
        packed = np.sort((annotator.astype(np.int64) << 32) | values.astype(np.int64))
        annotator, values = packed >> 32, packed & 0xFFFFFFFF
    else:
        order = np.lexsort((values, annotator))
        annotator, values = annotator[order], values[order]
    starts = np.searchsorted(annotator, np.arange(size + 1))
    medians: list[int | float | None] = []
    for i in range(size):
        low, n = int(starts[i]), int(starts[i + 1] - starts[i])
        if not n:
            medians.append(None)
        elif n % 2:
            medians.append(int(values[low + n // 2]))
        else:
            medians.append((int(values[low + n // 2 - 1]) + int(values[low + n // 2])) / 2)
    return medians


def _median_other(shares: list[float], left: int, sides: int) -> float | None:
    """The median of `shares` without this annotator's own (`left` of `sides`), if it is there."""
    others = list(shares)
    if sides:
        others.remove(left / sides)
    return round(float(np.median(others)), DIGITS) if others else None


def annotator_summaries(
    votes: Iterable[Vote] | VoteColumns, *, design: Design = DEFAULT_DESIGN
) -> list[dict[str, Any]]:
    """One entry per annotator (by pseudonym, sorted): their habits, and how far to trust them.

    Every figure but the gold ones is over their votes on ordinary (non-gold) comparisons.
    `design` (the project's policy and options) gives the chance level of the agreement tests,
    and says when agreement is not meaningful (an adaptive policy or adaptive stopping). Then,
    where the project has an audit sample with votes, agreement with the others is measured and
    tested over the audit sample alone (uniform, filled to the full overlap); without one it is
    not tested.
    """
    votes = VoteColumns.of(votes)
    size = len(votes.names)
    mine = votes.select(~votes.is_gold)
    sample, note = design.audit_sample(bool(mine.is_audit.any()))
    scored = mine.select(mine.is_audit) if sample == "audit" else mine
    answered = votes.is_gold & (votes.gold_correct >= 0)

    def per(mask: np.ndarray, among: VoteColumns = mine) -> list[int]:
        return [int(n) for n in np.bincount(among.annotator[mask], minlength=size)]

    everything = np.ones(len(mine), dtype=bool)
    judgments, ties, both_bad = per(everything), per(mine.option == 2), per(mine.option == 3)
    lefts, sides = per(mine.side == 1), per(mine.side != 0)
    gold_answered = per(answered, votes)
    gold_correct = per(answered & (votes.gold_correct == 1), votes)
    majority = others_majority(scored)
    agree, counted = leave_one_out(scored, majority)
    chance = np.bincount(
        scored.annotator[majority >= 0],
        weights=np.asarray(design.clicker)[majority[majority >= 0]],
        minlength=size,
    )
    tests = (
        [None] * size
        if design.adaptive and sample != "audit"
        else agreement_tests(
            [int(n) for n in agree],
            [int(n) for n in counted],
            [float(chance[i] / counted[i]) if counted[i] else None for i in range(size)],
        )
    )
    left_shares = [lefts[i] / sides[i] for i in range(size) if sides[i]]
    project_shares = [_median_other(left_shares, lefts[i], sides[i]) for i in range(size)]
    bias = bias_tests(lefts, sides, project_shares)
    medians = _medians(mine.annotator[mine.has_duration], mine.duration_ms[mine.has_duration], size)
    summaries = []
    for i, name in enumerate(votes.names):
        if not judgments[i] and not gold_answered[i]:
            continue
        summaries.append(
            {
                "annotator": name,
                "judgments": judgments[i],
                "agreement_with_others": _share(int(agree[i]), int(counted[i])),
                "agreement_with_others_comparisons": int(counted[i]),
                "agreement_with_others_sample": sample,
                "agreement_with_others_note": note,
                "agreement_test": tests[i],
                "gold_answered": gold_answered[i],
                "gold_accuracy": _share(gold_correct[i], gold_answered[i]),
                "position_bias": {
                    "left_share": _share(lefts[i], sides[i]),
                    "left": lefts[i],
                    "side_choices": sides[i],
                    "ci95": wilson_interval(lefts[i], sides[i]),
                    # The project's own lean, which this one is judged by: the median other
                    # annotator's, so that an always-left clicker does not move it.
                    "project_left_share": project_shares[i],
                    "test": bias[i],
                },
                "tie_rate": _share(ties[i], judgments[i]),
                "both_bad_rate": _share(both_bad[i], judgments[i]),
                "median_duration_ms": medians[i],
            }
        )
    return summaries


# -- models --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Battle:
    """The votes of one comparison between two different models, both-bad votes left out."""

    model_a: str
    model_b: str
    wins_a: int
    wins_b: int
    ties: int


@dataclass(frozen=True)
class Battles:
    """Battles as columns, in comparison order: model codes (into `models`) and tallies."""

    model_a: np.ndarray
    model_b: np.ndarray
    wins_a: np.ndarray
    wins_b: np.ndarray
    ties: np.ndarray
    models: list[str]

    def __len__(self) -> int:
        return len(self.model_a)

    @classmethod
    def of(cls, battles: Sequence[Battle]) -> "Battles":
        models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
        code = {name: i for i, name in enumerate(models)}

        def column(values: Iterable[int]) -> np.ndarray:
            return np.array(list(values), dtype=np.int64)

        return cls(
            column(code[b.model_a] for b in battles),
            column(code[b.model_b] for b in battles),
            column(b.wins_a for b in battles),
            column(b.wins_b for b in battles),
            column(b.ties for b in battles),
            models,
        )


def battles_of(votes: VoteColumns) -> Battles:
    """One battle per comparison of two named, different models, in comparison order."""
    named = np.array([bool(name) for name in votes.models] or [False], dtype=bool)
    keep = (
        ~votes.is_gold
        & named[votes.model_a]
        & named[votes.model_b]
        & (votes.model_a != votes.model_b)
    )
    votes = votes.select(keep)
    # Each comparison's models are those of its first vote.
    index, first = _groups(votes.comparison)
    counts = _tally(index, votes.option.astype(np.int64), len(first), len(OPTIONS))
    fought = counts[:, :3].sum(axis=1) > 0
    first = first[fought]
    return Battles(
        votes.model_a[first],
        votes.model_b[first],
        counts[fought, 0].astype(np.int64),
        counts[fought, 1].astype(np.int64),
        counts[fought, 2].astype(np.int64),
        votes.models,
    )


def win_rates(battles: Battles) -> dict[str, dict[str, dict[str, Any]]]:
    """For each ordered pair of models that met: the first's wins over the second.

    `win_rate` is (wins + ties / 2) / votes between them; both-bad votes are left out.
    """
    size = len(battles.models)
    pair = np.concatenate(
        [battles.model_a * size + battles.model_b, battles.model_b * size + battles.model_a]
    )
    met = np.bincount(pair, minlength=size * size)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(pair, weights=values, minlength=size * size)

    wins_of = total(np.concatenate([battles.wins_a, battles.wins_b]))
    losses_of = total(np.concatenate([battles.wins_b, battles.wins_a]))
    ties_of = total(np.concatenate([battles.ties, battles.ties]))
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for key in np.flatnonzero(met):  # in order of (first, second), as codes sort as names
        first, second = divmod(int(key), size)
        wins, losses, ties = int(wins_of[key]), int(losses_of[key]), int(ties_of[key])
        votes = wins + losses + ties
        matrix.setdefault(battles.models[first], {})[battles.models[second]] = {
            "win_rate": round((wins + ties / 2) / votes, DIGITS),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "votes": votes,
        }
    return matrix


def bradley_terry_strengths(wins: np.ndarray, *, tolerance: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths by Hunter's MM algorithm, with geometric mean 1.

    `wins[i, j]` is how often model i beat model j (ties already counted half to each). Every
    model needs some wins and the graph of who met whom must be connected; `bradley_terry` sees
    to both with its prior.
    """
    met = wins + wins.T
    total_wins = wins.sum(axis=1)
    strengths = np.ones(len(wins))
    for _ in range(10_000):
        shares = met / (strengths[:, None] + strengths[None, :])
        updated: np.ndarray = total_wins / shares.sum(axis=1)
        updated /= np.exp(np.log(updated).mean())
        if np.abs(np.log(updated) - np.log(strengths)).max() < tolerance:
            return updated
        strengths = updated
    return strengths


def elo_scale(strengths: np.ndarray) -> np.ndarray:
    scaled: np.ndarray = 1000 + 400 * np.log10(strengths)
    return scaled


def bradley_terry(
    battles: Sequence[Battle] | Battles,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Bradley-Terry scores per model with 95% bootstrap intervals, on an Elo-like scale.

    Ties count half a win to each side, as Chatbot Arena counts them. Each pair of models that
    met gets one more virtual tie (half a win each way), so that an unbeaten or winless model
    still has a finite score. The bootstrap resamples comparisons (all votes of one comparison
    together, since they judge the same two texts) with a fixed seed, so the output is the same
    on every call.

    A resample draws comparisons with `rng.integers` and sums each kind of battle's wins times
    how often it was drawn: halves and whole numbers, exact in floating point whatever the
    order of the sum, so the numbers are those of a battle-by-battle sum.
    """
    description = {
        "scale": "1000 + 400 * log10(strength); strengths have geometric mean 1, so the "
        "mean score is 1000 and 400 points are 10:1 odds",
        "ties": "half a win to each model",
        "prior": "one virtual tie between each pair of models that met",
        "interval": f"95% percentile bootstrap over comparisons, {resamples} resamples, "
        f"seed {seed}",
    }
    if not isinstance(battles, Battles):
        battles = Battles.of(battles)
    present, index = np.unique(
        np.concatenate([battles.model_a, battles.model_b]), return_inverse=True
    )
    models = [battles.models[int(code)] for code in present]
    if len(models) < 2:
        return {**description, "models": []}
    size, n = len(models), len(battles)
    first, second = index.reshape(-1)[:n], index.reshape(-1)[n:]
    # Battles alike (the same two models, the same tallies) weigh alike: a resample needs only
    # how often it drew each kind of battle.
    base = int(max(battles.wins_a.max(), battles.wins_b.max(), battles.ties.max())) + 1
    forward = first * size + second
    kinds, kind = np.unique(
        ((forward * base + battles.wins_a) * base + battles.wins_b) * base + battles.ties,
        return_inverse=True,
    )
    kind = kind.reshape(-1)
    kind_ties, rest = kinds % base, kinds // base
    kind_b, rest = rest % base, rest // base
    kind_a, kind_forward = rest % base, rest // base
    kind_backward = (kind_forward % size) * size + kind_forward // size
    wins_first, wins_second = kind_a + kind_ties / 2, kind_b + kind_ties / 2
    prior = np.zeros((size, size))
    prior[first, second] = prior[second, first] = 0.5

    def scores(drawn: np.ndarray) -> np.ndarray:
        wins = prior.copy().reshape(-1)
        wins += np.bincount(kind_forward, weights=drawn * wins_first, minlength=size * size)
        wins += np.bincount(kind_backward, weights=drawn * wins_second, minlength=size * size)
        return elo_scale(bradley_terry_strengths(wins.reshape(size, size)))

    point = scores(np.bincount(kind, minlength=len(kinds)))
    rng = np.random.default_rng(seed)
    samples = np.array(
        [
            scores(np.bincount(kind[rng.integers(0, n, n)], minlength=len(kinds)))
            for _ in range(resamples)
        ]
    )
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    played = battles.wins_a + battles.wins_b + battles.ties
    votes = np.bincount(index.reshape(-1), weights=np.concatenate([played, played]), minlength=size)
    ranked = sorted(range(size), key=lambda i: (-point[i], models[i]))
    return {
        **description,
        "models": [
            {
                "model": models[i],
                "score": round(float(point[i]), 1),
                "ci95": [round(float(low[i]), 1), round(float(high[i]), 1)],
                "votes": int(votes[i]),
            }
            for i in ranked
        ],
    }


# -- the report ----------------------------------------------------------------------------------


def project_stats(
    votes: Iterable[Vote] | VoteColumns,
    *,
    batch_id: int | None = None,
    design: Design = DEFAULT_DESIGN,
    repeats: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The whole report of the stats endpoint, from the votes `stats_votes` loads, for a project
    of this `design` (`Design.of(project)`), and the consistency probes' counts `stats_repeats`
    loads (`repeats`; none when not given)."""
    votes = VoteColumns.of(votes)
    ordinary = votes.select(~votes.is_gold)
    battles = battles_of(ordinary)
    crowd = crowd_report(votes)
    summaries = annotator_summaries(votes, design=design)
    consistency = transitivity(ordinary)
    repeat = repeat_consistency(
        [summary["annotator"] for summary in summaries],
        repeats or {},
        chance=clicker_consistency(design.clicker),
    )
    for summary in summaries:
        summary["transitivity"] = consistency.get(summary["annotator"])
        summary["repeat"] = repeat.get(summary["annotator"])
        summary.update(
            crowd["annotators"].get(
                summary["annotator"],
                {"model_reliability": None, "model_position_bias": None, "left_bias_test": None},
            )
        )
    return {
        "counts": {
            "comparisons": len(_groups(ordinary.comparison)[1]),
            "judgments": len(ordinary),
            "annotators": int(np.count_nonzero(np.bincount(votes.annotator))),
            "gold_judgments": len(votes) - len(ordinary),
            "filters": {"batch": batch_id},
            "left_out": "listwise comparisons (all figures); gold items (all but gold accuracy)",
        },
        "agreement": {
            **agreement(ordinary),
            "sample": design.sample,
            "sample_note": design.note,
        },
        "audit_agreement": audit_agreement(ordinary),
        "annotators": summaries,
        "crowd": crowd["crowd"],
        "transitivity": {
            "meaning": TRANSITIVITY_MEANING.format(min_triads=MIN_TRIADS, confidence=CONFIDENCE),
            "min_triads": MIN_TRIADS,
            "triads": sum(t["triads"] for t in consistency.values() if t),
            "cycles": sum(t["cycles"] for t in consistency.values() if t),
        },
        "repeat": {
            "meaning": REPEAT_MEANING.format(min_probes=MIN_PROBES, confidence=CONFIDENCE),
            "min_probes": MIN_PROBES,
            "probes": sum(r["probes"] for r in repeat.values() if r),
            "consistent": sum(r["consistent"] for r in repeat.values() if r),
        },
        "models": {
            "win_rates": win_rates(battles),
            "win_rates_note": "win_rate = (wins + ties / 2) / votes between the two models; "
            "both-bad votes, and comparisons of a model with itself or without model names, "
            "are left out",
            "bradley_terry": bradley_terry(battles),
            "crowd_leaderboard": crowd["leaderboard"],
        },
    }
