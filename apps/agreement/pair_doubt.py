"""How settled the leaderboard leaves the order of each pair of models: what the uncertain_first
policy spends its votes by (batches.queue_order), kept on the comparisons as
Comparison.pair_doubt.

A vote on a pair of models the leaderboard has already ordered beyond doubt changes the ranking
little; one on a pair whose intervals overlap can change it. So uncertain_first serves the
comparisons of the least settled pairs first (and, within a level, the most split comparisons
first, as before). The levels come from the crowd leaderboard (reliability-weighted, so that a
spammer's coin flips do not keep a settled pair in doubt): for models i and j with scores s and
95% intervals, z = |s_i - s_j| / sqrt(se_i^2 + se_j^2), se the half-width / 1.96, and the
comparison's level is z in steps of STEP, capped at TOP_LEVEL (0: z below 0.5, ..., 8: z of 4
or more). Level 0 also holds every pair with a model the leaderboard does not rank yet, every
comparison with a side that names no model, and every comparison before the first fit. Steps
rather than two or three bands: the votes go to the single least settled pair first, not to
every pair under a threshold (in a model of the queue, bench/policy_sim.py, three bands left
uncertain_first behind the random policy's tau; steps brought it level).

For the dashboard, the pairs are counted in three bands: undecided (z below DECIDED_Z, the order
wrong with more than 5% probability), decided (below SETTLED_Z) and settled.

The levels are written each time the dashboard's figures are computed (dashboard.services), so
every DASHBOARD_REFRESH_SECONDS while a worker and its beat run; open ordinary comparisons only,
in chunks of their own transactions, only the rows whose level changes, and at most
WRITE_LIMIT of them a refresh.
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

STEP = 0.5  # z a level
TOP_LEVEL = 8  # z of 4 or more
DECIDED_Z = 1.645  # one-sided 95%: the order is wrong with at most 5% probability
SETTLED_Z = 3.0  # one-sided 99.87%
BANDS = ("undecided", "decided", "settled")
CHUNK = 2000  # rows an UPDATE writes in one transaction
# Rows a refresh rewrites at most: 4-8 s on PostgreSQL with the scan that finds them, at
# 1,000,000 open comparisons on 2 cores (all of them at once took 43 s; README), so that a fit
# that moves every pair (the first after a large import) spreads its writes over several
# refreshes instead of holding the worker for a minute.
WRITE_LIMIT = 100_000
_SEPARATOR = "\x1f"  # between the two model names of a pair's key (never in a model's name)
_Z95 = 1.959963984540054


def pair_z(first: dict[str, Any], second: dict[str, Any]) -> float:
    """z of two leaderboard entries ({"score", "ci95": [low, high]}): their difference over its
    standard error (inf for a difference without error, 0 for none)."""
    spread = math.hypot(*((m["ci95"][1] - m["ci95"][0]) / (2 * _Z95) for m in (first, second)))
    difference = abs(float(first["score"]) - float(second["score"]))
    if spread <= 0:
        return math.inf if difference > 0 else 0.0
    return difference / spread


def level_of(z: float) -> int:
    return TOP_LEVEL if z >= TOP_LEVEL * STEP else int(z / STEP)


def band_of(z: float) -> str:
    return BANDS[0] if z < DECIDED_Z else BANDS[1] if z < SETTLED_Z else BANDS[2]


def pair_zs(models: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Every pair of the leaderboard's models (name, name), in both orders, with its z; entries
    without a score or an interval left out."""
    board = [m for m in models if m.get("ci95") is not None and m.get("score") is not None]
    zs = {}
    for i, first in enumerate(board):
        for second in board[i + 1 :]:
            z = pair_z(first, second)
            zs[first["model"], second["model"]] = z
            zs[second["model"], first["model"]] = z
    return zs


@dataclass(frozen=True)
class DoubtUpdate:
    bands: dict[str, int]  # band (BANDS) -> model pairs in it, each pair counted once
    changed: int  # comparisons whose level was written
    pending: bool  # the write limit was reached: more rows may wait for the next refresh


def _pair_in(keys: list[str]) -> In:
    """The comparison's two models, as a pair's key, among `keys`."""
    pair = Concat(
        "candidate_a__model", Value(_SEPARATOR), "candidate_b__model", output_field=CharField()
    )
    return In(pair, keys)


def _write(rows: "QuerySet[Comparison]", level: int, limit: int) -> int:
    """Gives at most `limit` of `rows` whose level differs `level`; returns how many."""
    ids = list(rows.exclude(pair_doubt=level).values_list("pk", flat=True)[:limit])
    for start in range(0, len(ids), CHUNK):
        Comparison.objects.filter(pk__in=ids[start : start + CHUNK]).update(pair_doubt=level)
    return len(ids)


def pair_doubt_update(
    project: Project, leaderboard: Iterable[dict[str, Any]]
) -> DoubtUpdate | None:
    """Writes the levels of `leaderboard` (the crowd leaderboard's models) onto the project's
    open ordinary comparisons, at most WRITE_LIMIT rows a call, the lowest levels (the least
    settled pairs) first: the rest follow at the next refresh. None for a project of another
    policy, left alone (its rows keep the level they had, which no other policy reads)."""
    if project.policy != AssignmentPolicy.UNCERTAIN_FIRST:
        return None
    zs = pair_zs(leaderboard)
    keys: dict[int, list[str]] = {}
    for (a, b), z in zs.items():
        keys.setdefault(level_of(z), []).append(f"{a}{_SEPARATOR}{b}")
    rows = Comparison.objects.filter(project=project, complete=False, is_gold=False)
    # Level 0 first: its pairs, and every comparison no pair above it names.
    above = [key for level, listed in keys.items() if level for key in listed]
    changed = _write(rows.exclude(_pair_in(above)) if above else rows, 0, WRITE_LIMIT)
    for level, listed in sorted(keys.items()):
        if level and changed < WRITE_LIMIT:
            changed += _write(rows.filter(_pair_in(listed)), level, WRITE_LIMIT - changed)
    bands = dict.fromkeys(BANDS, 0)
    for (a, b), z in zs.items():
        if a < b:
            bands[band_of(z)] += 1
    return DoubtUpdate(bands=bands, changed=changed, pending=changed >= WRITE_LIMIT)
