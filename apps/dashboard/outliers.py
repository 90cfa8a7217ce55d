"""The annotators of a project's dashboard and their outlier flags.

The tested flags (low agreement, position bias) read the tests `apps.agreement.stats` ran
(`apps.agreement.flags`), "left bias" also the test against the crowd model's expected left
share (`agreement.crowd_bias`), "unreliable" the crowd model's intervals (`agreement.crowd_report`);
speed, which has no chance level to test against, keeps a threshold, and gold accuracy the
project's minimum. The page lists every rule (`flag_rules`, `Thresholds`).
"""

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apps.agreement.flags import BIAS_MARGIN, CONFIDENCE, Design
from apps.agreement.stats import Vote
from apps.projects.models import Membership, Project, Role

# -- thresholds of the outlier flags (documented on the page) ---------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What is still a threshold: speed has no chance level to test against. Low agreement and
    position bias are tests (`apps.agreement.flags`)."""

    # Too fast: median time per judgment below this fraction of the project's median...
    fast_fraction: float = 1 / 3
    # ...over at least this many timed judgments.
    fast_min_judgments: int = 20


THRESHOLDS = Thresholds()

# -- annotators and their flags ----------------------------------------------------------------


def outlier_flags(
    summary: dict[str, Any],
    *,
    project_median_ms: float | None,
    gold_min_accuracy: float,
    gold_min_answers: int,
    thresholds: Thresholds = THRESHOLDS,
) -> list[dict[str, str]]:
    """Why this annotator looks like an outlier: a list of {"flag", "reason"}, maybe empty.

    `summary` is one entry of `stats.annotator_summaries`.
    """
    flags = []
    bias = summary["position_bias"]
    test, project_share = bias["test"], bias["project_left_share"]
    model_bias = summary.get("left_bias_test")
    if model_bias is not None and model_bias["flagged"]:
        # The test against the crowd model's expectation takes the place of the margin test's
        # left side: one "left bias" flag.
        flags.append({"flag": "left bias", "reason": left_bias_reason(model_bias)})
        if test is not None and test["side"] == "left":
            test = None
    if test is not None and test["side"] is not None:
        side = test["side"]
        side_share = bias["left_share"] if side == "left" else 1 - bias["left_share"]
        beyond = (
            "one half"
            if project_share is None
            else (
                f"one half and the project's own left share ({project_share:.0%}, the median "
                "of the other annotators')"
            )
        )
        bound = test["bounds"][1] if side == "left" else 1 - test["bounds"][0]
        p_value = test["p_left_holm"] if side == "left" else test["p_right_holm"]
        flags.append(
            {
                "flag": f"{side} bias",
                "reason": f"chose the {side} response in {side_share:.0%} of "
                f"{bias['side_choices']} choices of a side, significantly more than {bound:.0%}: "
                f"{beyond} plus {BIAS_MARGIN * 100:.0f} points (one-sided exact binomial test, "
                f"Holm-adjusted p = {p_value:.2g}, at {test['confidence']:.0%} confidence, "
                f"{test['correction']})",
            }
        )
    median, timed = summary["median_duration_ms"], summary.get("timed_judgments", 0)
    if (
        median is not None
        and project_median_ms
        and timed >= thresholds.fast_min_judgments
        and median < project_median_ms * thresholds.fast_fraction
    ):
        flags.append(
            {
                "flag": "too fast",
                "reason": f"median {median / 1000:.1f} s per judgment over {timed} judgments, "
                f"below {thresholds.fast_fraction:.2g} of the project's median "
                f"({project_median_ms / 1000:.1f} s)",
            }
        )
    accuracy, answered = summary["gold_accuracy"], summary["gold_answered"]
    if (
        gold_min_accuracy > 0
        and accuracy is not None
        and answered >= gold_min_answers
        and accuracy < gold_min_accuracy
    ):
        flags.append(
            {
                "flag": "below gold",
                "reason": f"gold accuracy {accuracy:.0%} over {answered} gold items, below the "
                f"project's minimum of {gold_min_accuracy:.0%}",
            }
        )
    test = summary["agreement_test"]
    if test is not None and test["flagged"]:
        flags.append({"flag": "low agreement", "reason": low_agreement_reason(summary)})
    consistency = summary.get("transitivity")
    if consistency and consistency["test"] and consistency["test"]["flagged"]:
        flags.append({"flag": "intransitive", "reason": intransitive_reason(consistency)})
    repeat = summary.get("repeat")
    if repeat and repeat["test"] and repeat["test"]["flagged"]:
        flags.append(
            {"flag": "inconsistent repeats", "reason": inconsistent_repeats_reason(repeat)}
        )
    reliability = summary.get("model_reliability")
    if reliability and reliability["unreliable"] and reliability["unreliable"]["flagged"]:
        flags.append({"flag": "unreliable", "reason": unreliable_reason(reliability)})
    return flags


def left_bias_reason(test: dict[str, Any]) -> str:
    """The test of a left share against the models' strengths (crowd_bias.left_bias)."""
    needed = test["min_evidence"]
    return (
        f"chose the left response in {test['left_share']:.0%} of {test['n']} choices of a side, "
        f"where the models' strengths expect {test['expected']:.0%} of the comparisons they saw "
        f"(one-sided exact Poisson-binomial test against each vote's chance, Holm-adjusted "
        f"p = {test['p_holm']:.2g}, at "
        f"{test['confidence']:.0%} confidence, {test['correction']})"
        + (f"; an always-left clicker is flagged after {needed} choices" if needed else "")
    )


def intransitive_reason(consistency: dict[str, Any]) -> str:
    """The transitivity test behind the "intransitive" flag (agreement.transitivity)."""
    test = consistency["test"]
    needed = test["random_clicker_min_triads"]
    return (
        f"{consistency['cycles']} of their {consistency['triads']} triads go round in a circle "
        f"({consistency['cycle_rate']:.0%}), significantly more than the other annotators' "
        f"{consistency['others_cycle_rate']:.0%} (one-sided Fisher exact test, Holm-adjusted "
        f"p = {test['p_holm']:.2g}, at {test['confidence']:.0%} confidence, {test['correction']})"
        + (f"; a random clicker is flagged after {needed} triads" if needed else "")
    )


def inconsistent_repeats_reason(repeat: dict[str, Any]) -> str:
    """The repeat test behind the "inconsistent repeats" flag (agreement.repeats)."""
    test = repeat["test"]
    needed = test["random_clicker_min_probes"]
    return (
        f"answered {repeat['consistent']} of {repeat['probes']} comparisons shown again as the "
        f"first time ({repeat['consistency']:.0%}), significantly fewer than the other "
        f"annotators' {repeat['others_consistency']:.0%} (one-sided Fisher exact test, "
        f"Holm-adjusted p = {test['p_holm']:.2g}, at {test['confidence']:.0%} confidence, "
        f"{test['correction']})"
        + (f"; a random clicker is flagged after {needed} repeats" if needed else "")
    )


def unreliable_reason(reliability: dict[str, Any]) -> str:
    """The crowd model's figures behind the "unreliable" flag."""
    low, high = reliability["ci95"]
    other = reliability["unreliable"]
    other_low, other_high = other["others_median_ci95"]
    return (
        f"the crowd model reads {reliability['estimate']:.0%} of their votes as honest "
        f"(95% interval {low:.0%} to {high:.0%}), wholly below the median other annotator's "
        f"{other['others_median']:.0%} ({other_low:.0%} to {other_high:.0%})"
    )


def low_agreement_reason(summary: dict[str, Any]) -> str:
    """What the agreement tests found, with their confidence and the evidence a random clicker
    needs to be flagged."""
    test = summary["agreement_test"]
    alpha = 1 - test["confidence"]
    found = []
    if test["p_others_holm"] is not None and test["p_others_holm"] < alpha:
        found.append(
            f"below the median other annotator's {test['others_median']:.0%} of "
            f"{test['others_median_comparisons']} (one-sided Fisher exact test, Holm-adjusted "
            f"p = {test['p_others_holm']:.2g})"
        )
    if test["p_chance_holm"] is not None and test["p_chance_holm"] < alpha:
        found.append(
            f"below chance, {test['chance']:.0%} (one-sided exact binomial test, Holm-adjusted "
            f"p = {test['p_chance_holm']:.2g})"
        )
    needed = test["random_clicker_min_comparisons"]
    return (
        f"agrees with the others' majority on {summary['agreement_with_others']:.0%} of "
        f"{summary['agreement_with_others_comparisons']} comparisons, significantly "
        f"{' and '.join(found)}, at {test['confidence']:.0%} confidence ({test['correction']})"
        + (f"; a random clicker is flagged after {needed} comparisons" if needed else "")
    )


def annotators(
    project: Project, votes: Sequence[Vote], summaries: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], float | None]:
    """The summaries with usernames, timed-judgment counts and flags; and the project median."""
    durations = [v.duration_ms for v in votes if not v.is_gold and v.duration_ms is not None]
    project_median = statistics.median(durations) if durations else None
    timed: dict[str, int] = defaultdict(int)
    for vote in votes:
        if not vote.is_gold and vote.duration_ms is not None:
            timed[vote.annotator] += 1
    usernames = dict(
        Membership.objects.filter(project=project)
        .exclude(role=Role.AI)
        .values_list("pseudonym", "user__username")
    )
    rows = []
    for summary in summaries:
        row = {
            **summary,
            "username": usernames.get(summary["annotator"], ""),
            "timed_judgments": timed[summary["annotator"]],
        }
        row["flags"] = outlier_flags(
            row,
            project_median_ms=project_median,
            gold_min_accuracy=project.gold_min_accuracy,
            gold_min_answers=project.gold_min_answers,
            thresholds=THRESHOLDS,
        )
        rows.append(row)
    rows.sort(key=lambda r: (not r["flags"], -r["judgments"], r["username"]))
    return rows, project_median


def flag_rules(design: Design, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page says of the tested flags: their confidence and margins, the chance level
    and the evidence a random clicker needs here (the median over the annotators: both depend a
    little on each one's comparisons)."""
    tests = [row["agreement_test"] for row in rows if row["agreement_test"]]
    chances = [t["chance"] for t in tests if t["chance"] is not None]
    needed = [t["random_clicker_min_comparisons"] for t in tests]
    return {
        "confidence": CONFIDENCE,
        "bias_margin": BIAS_MARGIN,
        "chance": statistics.median(chances) if chances else None,
        "random_clicker_min_comparisons": statistics.median_low([n for n in needed if n])
        if any(needed)
        else None,
        # Agreement is tested over the audit sample where the design is adaptive and there is
        # one; "adaptive" says it is not tested at all.
        "audited": any(row.get("agreement_with_others_sample") == "audit" for row in rows),
        "adaptive": design.adaptive
        and not any(row.get("agreement_with_others_sample") == "audit" for row in rows),
        "policy": design.policy,
        "note": design.note,
    }
