"""The dataset card (`format=card`): what an export holds, and how far to trust it, in Markdown.

Built from the statistics endpoint's report (stats.py) and the pairwise tallies the exports
use, so the card and the data always say the same. Deterministic: no clock in it, so the same
data gives the same card.
"""

from typing import Any

from apps.exports.selectors import pairwise_tallies
from apps.exports.stats import project_stats, stats_votes
from apps.projects.models import Project


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(text: object) -> str:
    """A table cell: pipes and newlines would break the table (names are lead-chosen)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def dataset_card(*, project: Project, batch_id: int | None = None) -> str:
    report = project_stats(stats_votes(project=project, batch_id=batch_id), batch_id=batch_id)
    winners = ties = both_bad = split = 0
    for tally in pairwise_tallies(project=project, batch_id=batch_id):
        if tally.winner in ("a", "b"):
            winners += 1
        elif tally.winner == "tie":
            ties += 1
        elif tally.winner == "both_bad":
            both_bad += 1
        else:
            split += 1
    counts, agreement = report["counts"], report["agreement"]
    pairwise = agreement["pairwise"]
    reference = agreement["reference"]
    lines = [
        f"# {_cell(project.name)}: preference data",
        "",
        f"Project `{project.slug}`, judged under the **{project.scheme}** scheme with an "
        f"overlap of {project.overlap} annotators per comparison"
        + (f", batch {batch_id}" if batch_id is not None else ", all batches")
        + f"; guidelines version {project.guideline_version}.",
        "",
        "## Contents",
        "",
        "| | |",
        "| --- | --- |",
        f"| comparisons judged | {counts['comparisons']} |",
        f"| judgments | {counts['judgments']} |",
        f"| annotators | {counts['annotators']} (named by pseudonym only) |",
        f"| gold judgments (left out of the data) | {counts['gold_judgments']} |",
        f"| pairs with a winner (rows of `trl`, `hh-rlhf`, `openai`, ...) | {winners} |",
        f"| majority tie / both bad / split (left out of pairwise formats) | "
        f"{ties} / {both_bad} / {split} |",
        "",
        "## Aggregation and filters",
        "",
        "- Aggregation: **majority**. Votes are counted per candidate (not per screen side) over "
        "candidate A, candidate B, tie and both bad; a pair is exported when one candidate has "
        "strictly more votes than every other option. No random tie-breaks.",
        "- Filters: " + (f"batch {batch_id}." if batch_id is not None else "none (all batches)."),
        "- Left out: gold items (they test annotators), listwise comparisons (rankings; in "
        "`judgments`).",
        "",
        "## Agreement",
        "",
        "| measure | value | for comparison |",
        "| --- | --- | --- |",
        f"| raw pairwise agreement, ties included | {_pct(pairwise['with_ties']['agreement'])} "
        f"({pairwise['with_ties']['pairs']} pairs) | HH-RLHF about "
        f"{reference['hh_rlhf']['agreement']:.0%} |",
        f"| raw pairwise agreement, ties left out | {_pct(pairwise['without_ties']['agreement'])} "
        f"({pairwise['without_ties']['pairs']} pairs) | InstructGPT "
        f"{reference['instructgpt']['agreement']:.1%} ± "
        f"{reference['instructgpt']['plus_minus']:.1%} between labelers |",
        f"| Krippendorff's alpha, nominal (the choice) | "
        f"{_num(agreement['krippendorff_alpha_nominal'])} | |",
        f"| Krippendorff's alpha, ordinal (graded strength) | "
        f"{_num(agreement['krippendorff_alpha_ordinal'])} | |",
        f"| Fleiss' kappa | {_num(agreement['fleiss_kappa'])} | "
        f"{_cell(agreement['fleiss_kappa_note'] or '')} |",
        "",
        "## Models",
        "",
    ]
    bt = report["models"]["bradley_terry"]
    if bt["models"]:
        lines += [
            "Bradley-Terry scores (ties as half a win each), with 95% bootstrap intervals:",
            "",
            "| model | score | 95% interval | votes |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {_cell(m['model'])} | {m['score']:.1f} | {m['ci95'][0]:.1f} to "
            f"{m['ci95'][1]:.1f} | {m['votes']} |"
            for m in bt["models"]
        ]
    else:
        lines.append("No two named models met yet.")
    lines += ["", "## Annotators", ""]
    annotators: list[dict[str, Any]] = report["annotators"]
    if annotators:
        lines += [
            "| annotator | judgments | agreement with the others | gold accuracy | "
            "left share (95% interval) | tie rate | median time |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for a in annotators:
            bias = a["position_bias"]
            interval = bias["ci95"]
            left = _pct(bias["left_share"]) + (
                f" ({interval[0]:.0%} to {interval[1]:.0%})" if interval else ""
            )
            median = a["median_duration_ms"]
            lines.append(
                f"| {_cell(a['annotator'])} | {a['judgments']} | "
                f"{_pct(a['agreement_with_others'])} | {_pct(a['gold_accuracy'])} | {left} | "
                f"{_pct(a['tie_rate'])} | "
                + ("n/a" if median is None else f"{median / 1000:.1f} s")
                + " |"
            )
    else:
        lines.append("No judgments yet.")
    lines += [
        "",
        "Made by annotate. The same data gives the same card; the figures are those of "
        f"`GET /api/v1/projects/{project.slug}/stats/`.",
        "",
    ]
    return "\n".join(lines)
