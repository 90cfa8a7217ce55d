"""The dashboard's figures as HTML, rendered once per refresh (by the beat job) and cached.

A request then only wraps the cached HTML with the line that says how fresh it is, so its cost
does not grow with the project, nor with the number of charts and tables.
"""

from datetime import date
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from apps.dashboard import charts

# Up to this many days, the judgments-per-day chart labels each bar with its whole date.
FULL_DATES_UP_TO = 8


def _charts(figures: dict[str, Any]) -> dict[str, str]:
    """The SVG of every chart, from the cached figures."""
    name = figures["project"]["name"]
    days = figures["per_day"]
    buckets = figures["durations"]["buckets"]
    people = figures["throughput"]
    models = figures["models"]
    return {
        "progress": charts.progress_chart(
            "chart-progress",
            title=f"Progress per batch of {name}",
            desc="For each batch, a bar split into comparisons done, in progress (leased now) "
            "and open. The table below gives the numbers.",
            batches=figures["batches"],
        ),
        "per_day": charts.column_chart(
            "chart-per-day",
            title="Judgments per day (UTC)",
            desc=(
                f"One bar per day, the last {len(days)} days with the latest on the right; "
                "the table below gives each day's count."
                if len(days) != 1
                else f"One bar: the judgments of {days[0]['day']}, the only day so far; the "
                "table below gives the count."
            ),
            # A few days have room for the whole date; more get month and day.
            labels=[
                d["day"]
                if len(days) <= FULL_DATES_UP_TO
                else date.fromisoformat(d["day"]).strftime("%m-%d")
                for d in days
            ],
            values=[d["judgments"] for d in days],
            unit="judgments",
            label_every=max(1, len(days) // 8),
        ),
        "durations": charts.column_chart(
            "chart-durations",
            title="Time per judgment",
            desc="How many judgments took each span of time, from the first sight of the "
            "comparison to the submission. The table below gives the counts.",
            labels=[b["label"] for b in buckets],
            values=[b["count"] for b in buckets],
            unit="judgments",
        ),
        "throughput": charts.bar_chart(
            "chart-throughput",
            title="Judgments per annotator",
            desc="One bar per annotator, most judgments first; the table gives their rates.",
            labels=[p["username"] for p in people],
            values=[p["judgments"] for p in people],
            unit="judgments",
        ),
        "leaderboard": charts.interval_chart(
            "chart-leaderboard",
            title="Bradley-Terry scores of the models, with 95% intervals",
            desc="Each model's score (dot) and its 95% bootstrap interval (whiskers); the mean "
            "score is 1000, and 400 points are 10:1 odds. The table gives the numbers.",
            rows=models["leaderboard"],
        ),
        "heat_map": charts.heat_map(
            "chart-heat-map",
            title="Win rates between the models",
            desc="Each cell is how often the row's model beat the column's model (ties count "
            "half): blue above 50%, red below, grey where they never met.",
            names=models["names"],
            matrix=models["matrix"],
            votes=models["votes"],
        ),
    }


def figures_html(figures: dict[str, Any]) -> SafeString:
    """Every section of the dashboard (tables and charts) for these figures; escaped."""
    return render_to_string(
        "dashboard/_sections.html", {"figures": figures, "charts": _charts(figures)}
    )
