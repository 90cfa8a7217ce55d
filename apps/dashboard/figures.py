"""The figures of a project's dashboard, computed in one go for the cache.

`project_figures` reads the votes through `apps.agreement.stats` (`stats_votes`, `project_stats`)
and everything else through `judgments_of` and a few aggregate queries, so that a rule about
which judgments count (invalidated ones, say) added to those two places applies here too. The
result is plain data (dicts, lists, numbers, strings): it is pickled into the cache and the page
renders from it alone.
"""

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from apps.agreement.ai_judges import ai_judges_report
from apps.agreement.flags import Design
from apps.agreement.stats import (
    OPTIONS,
    REFERENCE,
    Vote,
    krippendorff_alpha,
    pairwise_agreement,
    project_stats,
    reliability_matrix,
    stats_repeats,
    stats_votes,
)
from apps.agreement.stopping_report import stopping_report
from apps.batches.models import Batch, Comparison
from apps.dashboard.outliers import THRESHOLDS, annotators, flag_rules
from apps.judging.models import Judgment, Source
from apps.projects.models import Membership, Project, Role

# Judgments per day: the chart shows at most this many days, up to the latest.
DAYS_SHOWN = 60
# Time per judgment: the histogram's bucket edges in seconds (the last bucket is open).
DURATION_EDGES_S = (0, 5, 10, 20, 30, 60, 120, 300, 600)


def judgments_of(project: Project) -> QuerySet[Judgment]:
    """Every people's judgment of the project that counts (invalidated ones do not, nor an AI
    judge's: the AI judges have their own table, `ai_judges`): the one place the dashboard's
    SQL reads them."""
    return Judgment.objects.filter(
        comparison__project=project, invalidated_at__isnull=True, source=Source.HUMAN
    )


def people_of(project: Project) -> QuerySet[Membership]:
    """The project's members who may be annotators: every role but an AI judge's account."""
    return Membership.objects.filter(project=project).exclude(role=Role.AI)


# -- progress ----------------------------------------------------------------------------------


def batch_progress(project: Project) -> list[dict[str, Any]]:
    """Per batch (newest first): comparisons done, in progress (leased now) and open.

    Gold items test annotators and are never done; they are left out. Done is a comparison with
    all the votes the project's overlap asks for; in progress one without them that someone holds
    a lease on; open the rest (`partly_judged` of them have some votes already).
    """
    counts = {
        row["batch_id"]: row
        for row in Comparison.objects.filter(project=project, is_gold=False)
        .values("batch_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(complete=True)),
            in_progress=Count("id", filter=Q(complete=False, lease_count__gt=0)),
            partly_judged=Count(
                "id", filter=Q(complete=False, lease_count=0, judgment_count__gt=0)
            ),
        )
        .order_by()
    }
    judged = dict(
        judgments_of(project)
        .values("batch_id")
        .annotate(n=Count("id"))
        .values_list("batch_id", "n")
    )
    rows = []
    for batch in Batch.objects.filter(project=project).order_by("-created_at", "-id"):
        row: Any = counts.get(batch.pk, {})
        total, done, leased = row.get("total", 0), row.get("done", 0), row.get("in_progress", 0)
        rows.append(
            {
                "id": batch.pk,
                "name": batch.name or f"Batch {batch.pk}",
                "status": batch.get_status_display(),
                "comparisons": total,
                "done": done,
                "in_progress": leased,
                "open": total - done - leased,
                "partly_judged": row.get("partly_judged", 0),
                "judgments": judged.get(batch.pk, 0),
                "percent_done": round(100 * done / total, 1) if total else 0.0,
            }
        )
    return rows


def days_between(
    counts: dict[date, int], *, last: date, shown: int = DAYS_SHOWN
) -> list[dict[str, Any]]:
    """One entry per day, zeros included, from the first day with a judgment (at most `shown`
    days back) to `last`."""
    if not counts:
        return []
    first = max(min(counts), last - timedelta(days=shown - 1))
    days = []
    day = first
    while day <= last:
        days.append({"day": day.isoformat(), "judgments": counts.get(day, 0)})
        day += timedelta(days=1)
    return days


def hourly_counts(project: Project) -> list[tuple[int, datetime, int]]:
    """(annotator id, hour, judgments) for every hour in which someone judged."""
    rows = (
        judgments_of(project)
        .annotate(hour=TruncHour("created_at"))
        .values("annotator_id", "hour")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("annotator_id", "hour", "n")
    )
    return [(annotator, hour, n) for annotator, hour, n in rows]


def per_day(hours: Sequence[tuple[int, datetime, int]], *, today: date) -> list[dict[str, Any]]:
    counts: dict[date, int] = defaultdict(int)
    for _, hour, n in hours:
        counts[hour.date()] += n
    return days_between(counts, last=max(today, max(counts, default=today)))


def recent_counts(project: Project, *, now: datetime) -> dict[int, int]:
    """Judgments per annotator in the 24 hours before `now`."""
    since = now - timedelta(hours=24)
    return dict(
        judgments_of(project)
        .filter(created_at__gt=since, created_at__lte=now)
        .values("annotator_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("annotator_id", "n")
    )


def throughput(
    hours: Sequence[tuple[int, datetime, int]],
    *,
    names: dict[int, tuple[str, str]],
    recent: dict[int, int],
) -> list[dict[str, Any]]:
    """Per annotator: judgments, in the last 24 hours, and per day and per hour of work.

    A day (an hour) of work is a UTC day (clock hour) in which they judged at least once, so a
    rate is how fast they go when they work, not diluted by the nights.
    """
    total: dict[int, int] = defaultdict(int)
    active_hours: dict[int, int] = defaultdict(int)
    active_days: dict[int, set[date]] = defaultdict(set)
    for annotator, hour, n in hours:
        total[annotator] += n
        active_hours[annotator] += 1
        active_days[annotator].add(hour.date())
    rows = []
    for annotator in sorted(total, key=lambda a: (-total[a], names.get(a, ("", ""))[0])):
        username, pseudonym = names.get(annotator, (f"user {annotator}", ""))
        days = len(active_days[annotator])
        rows.append(
            {
                "username": username,
                "pseudonym": pseudonym,
                "judgments": total[annotator],
                "last_24h": recent.get(annotator, 0),
                "active_days": days,
                "per_day": round(total[annotator] / days, 1),
                "active_hours": active_hours[annotator],
                "per_hour": round(total[annotator] / active_hours[annotator], 1),
            }
        )
    return rows


def duration_histogram(project: Project) -> dict[str, Any]:
    """Time per judgment in buckets (one query), and how many judgments had no time."""
    edges = DURATION_EDGES_S
    buckets: dict[str, Any] = {}
    for i, low in enumerate(edges):
        condition = Q(duration_ms__gte=low * 1000)
        if i + 1 < len(edges):
            condition &= Q(duration_ms__lt=edges[i + 1] * 1000)
        buckets[f"b{i}"] = Count("id", filter=condition)
    counts = judgments_of(project).aggregate(
        **buckets, untimed=Count("id", filter=Q(duration_ms__isnull=True))
    )
    rows = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        label = _span(low, high)
        rows.append({"label": label, "low_s": low, "high_s": high, "count": counts[f"b{i}"]})
    return {"buckets": rows, "untimed": counts["untimed"]}


def _span(low: int, high: int | None) -> str:
    """A bucket's label, short enough for a chart: 0-5 s, 30 s-1 min, at least 10 min."""
    if high is None:
        return f"\u2265 {low // 60} min" if low >= 60 else f"\u2265 {low} s"
    if high <= 60 and low < 60:
        return f"{low}\u2013{high} s" if high < 60 else f"{low} s\u20131 min"
    return f"{low // 60}\u2013{high // 60} min"


# -- agreement per batch -----------------------------------------------------------------------


def agreement_by_batch(project: Project, votes: Sequence[Vote]) -> dict[int, dict[str, Any]]:
    """Each batch's agreement over its ordinary votes (the figures of `stats.agreement`)."""
    batch_of = dict(
        Comparison.objects.filter(project=project, is_gold=False).values_list("id", "batch_id")
    )
    by_batch: dict[int, list[Vote]] = defaultdict(list)
    for vote in votes:
        if not vote.is_gold and vote.comparison in batch_of:
            by_batch[batch_of[vote.comparison]].append(vote)
    return {batch_id: batch_agreement(mine) for batch_id, mine in by_batch.items()}


def batch_agreement(votes: Sequence[Vote]) -> dict[str, Any]:
    """Raw agreement and Krippendorff's alpha of some votes, as `stats.agreement` computes them
    (with the same functions), without Fleiss' kappa, which the page does not show."""
    by_comparison: dict[int, list[str]] = defaultdict(list)
    for vote in votes:
        by_comparison[vote.comparison].append(vote.option)
    pairwise = pairwise_agreement(by_comparison[pk] for pk in sorted(by_comparison))
    code = {option: i for i, option in enumerate(OPTIONS)}
    nominal = reliability_matrix((v.annotator, v.comparison, code[v.option]) for v in votes)
    strengths = [(v.annotator, v.comparison, v.strength) for v in votes if v.strength is not None]
    return _agreement_summary(
        {
            "pairwise": pairwise,
            "krippendorff_alpha_nominal": krippendorff_alpha(
                nominal, level="nominal", value_domain=list(range(len(OPTIONS)))
            ),
            "krippendorff_alpha_ordinal": krippendorff_alpha(
                reliability_matrix(strengths), level="ordinal", value_domain=list(range(-3, 4))
            )
            if strengths
            else None,
        }
    )


def _agreement_summary(report: dict[str, Any]) -> dict[str, Any]:
    pairwise = report["pairwise"]
    return {
        "with_ties": pairwise["with_ties"]["agreement"],
        "with_ties_pairs": pairwise["with_ties"]["pairs"],
        "without_ties": pairwise["without_ties"]["agreement"],
        "without_ties_pairs": pairwise["without_ties"]["pairs"],
        "alpha": report["krippendorff_alpha_nominal"],
        "alpha_ordinal": report["krippendorff_alpha_ordinal"],
    }


def _audit_summary(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The audit sample's agreement (stats.audit_agreement) as the dashboard shows it."""
    if report is None:
        return None
    return {
        **_agreement_summary(report),
        "kappa": report["fleiss_kappa"],
        "comparisons": report["comparisons"],
        "judgments": report["judgments"],
        "note": report["sample_note"],
    }


# -- models --------------------------------------------------------------------------------------


def models_of(report: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard, and the win-rate matrix in its order (None where two never met)."""
    leaderboard = report["bradley_terry"]["models"]
    names = [entry["model"] for entry in leaderboard]
    rates = report["win_rates"]
    matrix = [
        [
            rates.get(row, {}).get(column, {}).get("win_rate") if row != column else None
            for column in names
        ]
        for row in names
    ]
    votes = [
        [rates.get(row, {}).get(column, {}).get("votes", 0) for column in names] for row in names
    ]
    return {
        "leaderboard": leaderboard,
        "names": names,
        "matrix": matrix,
        "votes": votes,
        "scale": report["bradley_terry"]["scale"],
        "interval": report["bradley_terry"]["interval"],
        "note": report["win_rates_note"],
        "crowd_leaderboard": report["crowd_leaderboard"],
    }


# -- all of it -----------------------------------------------------------------------------------


def project_figures(project: Project, *, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the dashboard, as plain data, with when and how long it took."""
    started = time.perf_counter()
    now = now or timezone.now()
    votes = list(stats_votes(project=project))
    design = Design.of(project)
    report = project_stats(votes, design=design, repeats=stats_repeats(project=project))
    hours = hourly_counts(project)
    names = {
        user_id: (username, pseudonym)
        for user_id, username, pseudonym in people_of(project).values_list(
            "user_id", "user__username", "pseudonym"
        )
    }
    batches = batch_progress(project)
    by_batch = agreement_by_batch(project, votes)
    for batch in batches:
        batch["agreement"] = by_batch.get(batch["id"])
    people, project_median = annotators(project, votes, report["annotators"])
    total = sum(batch["comparisons"] for batch in batches)
    return {
        "project": {
            "id": project.pk,
            "slug": project.slug,
            "name": project.name,
            "overlap": project.overlap,
            "gold_min_accuracy": project.gold_min_accuracy,
            "gold_min_answers": project.gold_min_answers,
        },
        "totals": {
            "comparisons": total,
            "done": sum(batch["done"] for batch in batches),
            "in_progress": sum(batch["in_progress"] for batch in batches),
            "open": sum(batch["open"] for batch in batches),
            "judgments": sum(n for _, _, n in hours),
            "annotators": len({annotator for annotator, _, _ in hours}),
        },
        "batches": batches,
        "per_day": per_day(hours, today=now.date()),
        "durations": duration_histogram(project),
        "throughput": throughput(hours, names=names, recent=recent_counts(project, now=now)),
        "agreement": _agreement_summary(report["agreement"]),
        "agreement_sample": {"sample": design.sample, "note": design.note},
        "audit_agreement": _audit_summary(report["audit_agreement"]),
        "reference": REFERENCE,
        "annotators": people,
        "crowd": report["crowd"],
        "transitivity": report["transitivity"],
        "repeat": report["repeat"],
        "project_median_ms": project_median,
        "models": models_of(report["models"]),
        "thresholds": asdict(THRESHOLDS),
        "flag_rules": flag_rules(design, people),
        "counts": report["counts"],
        "stopping": stopping_report(project=project),
        "ai_judges": ai_judges_report(project=project),
        "computed_at": now.timestamp(),
        "compute_seconds": round(time.perf_counter() - started, 3),
    }
