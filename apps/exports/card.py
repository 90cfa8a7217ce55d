"""The dataset card (`format=card`): what an export holds, and how far to trust it, in Markdown.

Built from the statistics endpoint's report (stats.py) and the pairwise tallies the exports
use, so the card and the data always say the same. Deterministic: no clock in it, so the same
data gives the same card.
"""

import re
from dataclasses import replace
from typing import Any

from apps.agreement.ai_judges import ai_judges_report
from apps.agreement.flags import Design
from apps.agreement.labels import CrowdLabels
from apps.agreement.stats import project_stats, stats_repeats, stats_votes
from apps.agreement.stopping_report import stopping_report
from apps.exports.formats import tallies
from apps.exports.options import Options
from apps.exports.selectors import Labeller, reliability_labeller
from apps.projects.models import Project


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# What CommonMark, GitHub's tables and common extensions read as markup inside a line: links
# and images ([ ] ( ) !), HTML and autolinks (< > &), emphasis and strikethrough (* _ ~), code
# (`), table cells (|), headings (#), math ($) and the escape itself. Each may be
# backslash-escaped (CommonMark: any ASCII punctuation), which shows it as typed.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>&~$])")


def _md(text: object, *, code: bool = False) -> str:
    """A lead-chosen string (project name, slug, model, criterion...) as literal Markdown text,
    for use inside a line: never a link, HTML, heading, emphasis or an extra table cell.

    Line breaks become spaces, so the string cannot start a block of its own. With `code`, a
    code span instead (backslashes do not escape there): fenced by more backticks than the
    string holds, and padded when it starts or ends with one (CommonMark's rule).
    """
    value = " ".join(str(text).splitlines())
    if not code:
        return _MARKDOWN_SPECIAL.sub(r"\\\1", value)
    # A pipe would still split a table cell; a code span is never put in one here.
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


AGGREGATION_TEXT = {
    "majority": "a pair is exported when one candidate has strictly more votes than every "
    "other option",
    "unanimous": "a pair is exported when every vote is for the same candidate",
    "mean_strength": "the chosen response is the one the graded votes' mean strength favours; "
    "a zero mean, and comparisons without graded votes, are left out",
    "reliability": "the crowd model (each annotator's reliability and position bias and the "
    "models' strengths, fitted together by EM over the project's votes) gives each comparison "
    "the chance that each candidate is better; the chosen response is the likelier one, that "
    "chance (given that one of the two is better) is each row's `label_confidence`, and a tie "
    "in posterior is left out. Dawid-Skene (each annotator's confusion matrix) instead labels "
    "a criterion's answers and listwise rankings' pairs, which the crowd model does not read",
}


SOURCES_TEXT = {
    ("ai",): "the AI judges' votes only (an RLAIF dataset: no person's vote in the rows)",
    ("human", "ai"): "people's and AI judges' votes together (each row's `votes_by_source` "
    "says how many of each)",
}


def ai_judge_lines(report: dict[str, Any]) -> list[str]:
    """The card's AI judges: one line per judge (its figures from /stats/'s `ai_judges`)."""
    judges = report["judges"]
    if not judges:
        return []
    people = report["human_human_agreement"]
    lines = [
        "",
        "## AI judges",
        "",
        "Their votes are in no figure above, and in the rows only when the export asks for "
        "them (`sources=ai` or `all`). People agree with each "
        f"other {_pct(people['with_ties']['agreement'])} of the time "
        f"({_pct(people['without_ties']['agreement'])} without ties).",
        "",
    ]
    for judge in judges:
        agreement = judge["human_ai_agreement"]
        versions = ", ".join(_md(v, code=True) for v in judge["template_versions"]) or "none"
        lines.append(
            f"- {_md(judge['judge'])} (prompt {versions}): {judge['comparisons_judged']} "
            f"comparisons judged, its two orders agreeing on {_pct(judge['order_consistency'])} "
            f"({judge['inconsistent']} inconsistent); agrees with people "
            f"{_pct(agreement['with_ties']['agreement'])} of the time "
            f"({agreement['with_ties']['pairs']} pairs), "
            f"{_pct(agreement['without_ties']['agreement'])} without ties."
        )
    return lines


def filters_text(options: Options) -> str:
    """The filters an export was made with, in words (or "none")."""
    used = []
    if options.batch_id is not None:
        used.append(f"batch {options.batch_id}")
    if options.models is not None:
        used.append("models " + ", ".join(_md(m, code=True) for m in options.models))
    if options.since is not None:
        used.append(f"comparisons with a vote at or after {options.since.isoformat()}")
    if options.criterion is not None:
        used.append(f"criterion {_md(options.criterion, code=True)} instead of the overall choice")
    if options.min_votes > 1:
        used.append(f"at least {options.min_votes} votes")
    if options.min_agreement > 0:
        used.append(f"the most-voted option holds at least {options.min_agreement:.0%}")
    if options.split is not None:
        used.append(f"the {options.split} half by prompt (test fraction {options.test_fraction})")
    if options.include_gold:
        used.append("gold comparisons included")
    if not options.human_only:
        used.append(SOURCES_TEXT[options.sources])
    return "; ".join(used) + "." if used else "none (all batches)."


def _stopping_lines(stopping: dict[str, Any]) -> list[str]:
    """The card's sentence on adaptive stopping, when it is on or stopped anything."""
    if not stopping["margin"] and not stopping["stopped_early"]:
        return []
    how = (
        f"on at a confidence of {stopping['confidence']}: a comparison stopped receiving votes "
        f"once one side led by {stopping['margin']}"
        if stopping["margin"]
        else "off now"
    )
    stopped, saved = stopping["stopped_early"], stopping["judgments_saved"]
    return [
        "",
        f"Adaptive stopping is {how}. {stopped} comparison{'' if stopped == 1 else 's'} stopped "
        f"early, with fewer votes than the overlap; that saved {saved} "
        f"judgment{'' if saved == 1 else 's'}.",
    ]


def dataset_card(
    *, project: Project, options: Options | None = None, batch_id: int | None = None
) -> str:
    """The card of the pairwise rows under `options` (aggregation and filters); `batch_id` is
    the older spelling of `options.batch_id`."""
    if options is None:
        options = Options(batch_id=batch_id)
    elif batch_id is not None:
        options = replace(options, batch_id=batch_id)
    batch_id = options.batch_id
    votes = stats_votes(project=project, batch_id=batch_id)
    report = project_stats(
        votes,
        batch_id=batch_id,
        design=Design.of(project),
        repeats=stats_repeats(project=project, batch_id=batch_id),
    )
    labeller: Labeller | None = None
    if options.aggregate == "reliability":
        # The fit reads every batch's votes: the same columns when the card is of them all.
        labeller = reliability_labeller(
            project=project,
            options=options,
            votes=votes if batch_id is None and options.human_only else None,
        )
    del votes
    winners = ties = both_bad = split = 0
    confidences: list[float] = []
    for tally in tallies(project, options, labeller):
        if tally.winner in ("a", "b"):
            winners += 1
            if tally.label_confidence is not None:
                confidences.append(tally.label_confidence)
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
        f"# {_md(project.name)}: preference data",
        "",
        f"Project {_md(project.slug, code=True)}, judged under the **{project.scheme}** scheme "
        f"with an overlap of {project.overlap} annotators per comparison"
        + (f", batch {batch_id}" if batch_id is not None else ", all batches")
        + f"; guidelines version {project.guideline_version}.",
        *_stopping_lines(stopping_report(project=project, batch_id=batch_id)),
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
        f"| tie / both bad / no winner (left out of pairwise formats) | "
        f"{ties} / {both_bad} / {split} |",
        "",
        "## Aggregation and filters",
        "",
        f"- Aggregation: **{options.aggregate}**. Votes are counted per candidate (not per "
        "screen side) over candidate A, candidate B, tie and both bad; "
        f"{AGGREGATION_TEXT[options.aggregate]}. No random tie-breaks.",
        *(
            [f"- Reliability fit: {labeller.describe()}"]
            if isinstance(labeller, CrowdLabels)
            else []
        ),
        *(
            [
                f"- Mean label confidence of the pairs: {sum(confidences) / len(confidences):.3f}"
                f" (lowest {min(confidences):.3f})."
            ]
            if confidences
            else []
        ),
        "- Filters: " + filters_text(options),
        "- Left out: "
        + ("" if options.include_gold else "gold items (they test annotators), ")
        + "listwise comparisons (rankings; in `judgments`).",
        "- Agreement, models and annotators below are over all the "
        + ("batch's" if batch_id is not None else "project's")
        + " votes, not only the rows counted above.",
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
        f"{_md(agreement['fleiss_kappa_note'] or '')} |",
        "",
    ]
    if agreement["sample_note"]:
        lines += [f"Sample: adaptive. Agreement above is {agreement['sample_note']}.", ""]
    lines += audit_lines(report["audit_agreement"])
    lines += [
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
            f"| {_md(m['model'])} | {m['score']:.1f} | {m['ci95'][0]:.1f} to "
            f"{m['ci95'][1]:.1f} | {m['votes']} |"
            for m in bt["models"]
        ]
    else:
        lines.append("No two named models met yet.")
    crowd = report["models"]["crowd_leaderboard"]["models"]
    if crowd:
        lines += [
            "",
            "Reliability-weighted (crowd model, each vote counting its annotator's "
            "reliability): "
            + ", ".join(
                f"{_md(m['model'])} {m['score']:.1f} ({m['ci95'][0]:.1f} to {m['ci95'][1]:.1f})"
                for m in crowd
            )
            + ".",
        ]
    lines += ["", "## Annotators", ""]
    annotators: list[dict[str, Any]] = report["annotators"]
    if annotators:
        lines += [
            "| annotator | judgments | agreement with the others | gold accuracy | "
            "left share (95% interval) | reliability (95% interval) | tie rate | median time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for a in annotators:
            bias = a["position_bias"]
            interval = bias["ci95"]
            left = _pct(bias["left_share"]) + (
                f" ({interval[0]:.0%} to {interval[1]:.0%})" if interval else ""
            )
            median = a["median_duration_ms"]
            model = a["model_reliability"]
            reliability = (
                "n/a"
                if model is None
                else f"{model['estimate']:.0%} ({model['ci95'][0]:.0%} to {model['ci95'][1]:.0%})"
            )
            lines.append(
                f"| {_md(a['annotator'])} | {a['judgments']} | "
                f"{_pct(a['agreement_with_others'])} | {_pct(a['gold_accuracy'])} | {left} | "
                f"{reliability} | "
                f"{_pct(a['tie_rate'])} | "
                + ("n/a" if median is None else f"{median / 1000:.1f} s")
                + " |"
            )
        lines += [
            "",
            "Reliability: the share of an annotator's votes the crowd model reads as honest "
            "judgments rather than random answers.",
        ]
        if annotators[0]["agreement_with_others_note"]:
            lines += [
                "",
                f"Agreement with the others is {annotators[0]['agreement_with_others_note']}.",
            ]
    else:
        lines.append("No judgments yet.")
    lines += repeat_lines(report["repeat"], report["annotators"])
    lines += ai_judge_lines(ai_judges_report(project=project, batch_id=batch_id))
    lines += [
        "",
        "Made by annotate. The same data gives the same card; the figures are those of "
        + _md(f"GET /api/v1/projects/{project.slug}/stats/", code=True)
        + ".",
        "",
    ]
    return "\n".join(lines)


def audit_lines(audit: dict[str, Any] | None) -> list[str]:
    """The audit sample's agreement (stats.audit_agreement), with what the sample is; nothing
    without one."""
    if audit is None:
        return []
    pairwise = audit["pairwise"]
    return [
        f"Audit sample: agreement {audit['sample_note']} ({audit['comparisons']} comparisons, "
        f"{audit['judgments']} judgments): {_pct(pairwise['with_ties']['agreement'])} with ties "
        f"({pairwise['with_ties']['pairs']} pairs), "
        f"{_pct(pairwise['without_ties']['agreement'])} without; Krippendorff's alpha "
        f"{_num(audit['krippendorff_alpha_nominal'])}; Fleiss' kappa "
        f"{_num(audit['fleiss_kappa'])}.",
        "",
    ]


def repeat_lines(repeat: dict[str, Any], annotators: list[dict[str, Any]]) -> list[str]:
    """The consistency probes (Project.repeat_rate) in one line: answered, consistent, per
    annotator, and the flagged; nothing when no probe was answered."""
    if not repeat["probes"]:
        return []
    per = [
        f"{_md(a['annotator'])} {a['repeat']['consistent']} of {a['repeat']['probes']}"
        + (" (flagged)" if (a["repeat"]["test"] or {}).get("flagged") else "")
        for a in annotators
        if a.get("repeat")
    ]
    return [
        "",
        f"Repeat consistency: {repeat['consistent']} of {repeat['probes']} consistency probes "
        f"answered as the first time ({_pct(repeat['consistent'] / repeat['probes'])}): "
        + "; ".join(per)
        + f". {repeat['meaning'][0].upper() + repeat['meaning'][1:]}.",
    ]
