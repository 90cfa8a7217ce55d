"""How undecided the leaderboard leaves each pair of models: the doubt the uncertain_first
policy spends its votes by (batches.queue_order), kept on the comparisons as
Comparison.pair_doubt.

A vote on a pair of models the leaderboard has already ordered beyond doubt changes the ranking
little; one on a pair whose intervals overlap can change it. So uncertain_first serves the
comparisons of undecided pairs first (and, within a level, the most split comparisons first, as
before), and reaches a settled leaderboard with fewer judgments than a uniform draw
(bench/quality.py). The levels come from the crowd leaderboard (reliability-weighted, so that a
spammer's coin flips do not keep a settled pair in doubt): for models i and j with scores s and
95% intervals, z = |s_i - s_j| / sqrt(se_i^2 + se_j^2), se the half-width / 1.96, and

- 0, undecided: z below DECIDED_Z (the order wrong with more than 5% probability), and every
  pair with a model the leaderboard does not rank yet, every comparison with a side that names
  no model, and every comparison before the first fit;
- 1, decided: z below SETTLED_Z;
- 2, settled.

The levels are written each time the dashboard's figures are computed (dashboard.services), so
every DASHBOARD_REFRESH_SECONDS while a worker and its beat run; open ordinary comparisons only,
in chunks of their own transactions, and only the rows whose level changes.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import CharField, QuerySet, Value
from django.db.models.functions import Concat
from django.db.models.lookups import In

from apps.batches.models import Comparison
from apps.projects.models import AssignmentPolicy, Project

UNDECIDED, DECIDED, SETTLED = 0, 1, 2
DECIDED_Z = 1.645  # one-sided 95%: the order is wrong with at most 5% probability
SETTLED_Z = 3.0  # one-sided 99.87%
CHUNK = 2000  # rows an UPDATE writes in one transaction
_SEPARATOR = "\x1f"  # between the two model names of a pair's key (never in a model's name)
_Z95 = 1.959963984540054


def pair_level(first: dict[str, Any], second: dict[str, Any]) -> int:
    """The doubt level of two leaderboard entries ({"score", "ci95": [low, high]})."""
    spread = math.hypot(*((m["ci95"][1] - m["ci95"][0]) / (2 * _Z95) for m in (first, second)))
    difference = abs(first["score"] - second["score"])
    if spread <= 0:
        return SETTLED if difference > 0 else UNDECIDED
    z = difference / spread
    return UNDECIDED if z < DECIDED_Z else DECIDED if z < SETTLED_Z else SETTLED


def pair_levels(models: Iterable[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Every pair of the leaderboard's models (name, name), in both orders, with its level."""
    board = [m for m in models if m.get("ci95") is not None and m.get("score") is not None]
    levels = {}
    for i, first in enumerate(board):
        for second in board[i + 1 :]:
            level = pair_level(first, second)
            levels[first["model"], second["model"]] = level
            levels[second["model"], first["model"]] = level
    return levels


@dataclass(frozen=True)
class DoubtUpdate:
    levels: dict[int, int]  # level -> model pairs at that level (each pair counted once)
    changed: int  # comparisons whose level was written


def _pair_in(keys: list[str]) -> In:
    """The comparison's two models, as a pair's key, among `keys`."""
    pair = Concat(
        "candidate_a__model", Value(_SEPARATOR), "candidate_b__model", output_field=CharField()
    )
    return In(pair, keys)


def _write(rows: "QuerySet[Comparison]", level: int) -> int:
    ids = list(rows.exclude(pair_doubt=level).values_list("pk", flat=True))
    for start in range(0, len(ids), CHUNK):
        Comparison.objects.filter(pk__in=ids[start : start + CHUNK]).update(pair_doubt=level)
    return len(ids)


def pair_doubt_update(project: Project, leaderboard: Iterable[dict[str, Any]]) -> DoubtUpdate:
    """Writes the levels of `leaderboard` (the crowd leaderboard's models) onto the project's
    open ordinary comparisons. A project of another policy is left alone (its rows keep the
    level they had, which no other policy reads)."""
    if project.policy != AssignmentPolicy.UNCERTAIN_FIRST:
        return DoubtUpdate(levels={}, changed=0)
    levels = pair_levels(leaderboard)
    keys = {
        level: [f"{a}{_SEPARATOR}{b}" for (a, b), found in levels.items() if found == level]
        for level in (DECIDED, SETTLED)
    }
    rows = Comparison.objects.filter(project=project, complete=False, is_gold=False)
    changed = 0
    for level, listed in keys.items():
        if listed:
            changed += _write(rows.filter(_pair_in(listed)), level)
    listed = keys[DECIDED] + keys[SETTLED]
    changed += _write(rows.exclude(_pair_in(listed)) if listed else rows, UNDECIDED)
    counts = {level: 0 for level in (UNDECIDED, DECIDED, SETTLED)}
    for level in levels.values():
        counts[level] += 1
    return DoubtUpdate(levels={k: v // 2 for k, v in counts.items()}, changed=changed)
