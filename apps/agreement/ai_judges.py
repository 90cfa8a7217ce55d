"""/stats/'s `ai_judges` section: each AI judge's readings, beside the people's.

An AI judge's votes (Judgment.source "ai", by the judge's account) are left out of every figure
about people; here they are set beside them. Per judge: the prompt versions it judged with, how
many comparisons it judged (both orders read), how often its two orders agreed (order
consistency: a judge that flips with the order reads position, not quality), and how often it
agrees with people on the same comparisons, with and without ties, overall and per criterion.
People's agreement with each other is computed the same way, beside it, as the yardstick: a
judge agreeing with people about as often as people agree with each other is as good a rater
as one more person.

Gold items and listwise comparisons are left out, as in the people's agreement; so are
invalidated judgments.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import combinations
from typing import Any

from apps.judges.models import Judge, Verdict
from apps.judging.models import Choice, Judgment, Source
from apps.projects.models import Project

SIDED = ("a", "b")
DIGITS = 4

MEANING = (
    "AI judges (apps.judges), set beside the people: their votes are in no other figure of this "
    "report. Gold items and listwise comparisons are left out, as in `agreement`."
)
MEANINGS = {
    "template_versions": "The judging prompt's versions the judge's verdicts were made with.",
    "comparisons_judged": "Comparisons the judge answered in both orders (failures left out).",
    "order_consistency": "The share of those where both orders gave the same verdict; a judge "
    "that changes its mind when the responses swap places reads position, not quality.",
    "inconsistent": "Comparisons where the two orders disagreed (no vote under the "
    "'inconsistent' policy, a tie under 'tie').",
    "human_ai_agreement": "The share of (this judge's vote, a person's vote) pairs on the same "
    "comparison that chose the same option; without ties, only pairs where both chose a "
    "response.",
    "human_human_agreement": "The same share over pairs of two people's votes on the same "
    "comparison, every comparison of the project (or batch): the yardstick for the judges.",
    "criteria": "Per criterion of the project: human-AI (per judge) and human-human agreement "
    "on that criterion's answers, computed the same way.",
}

# A vote read here: (comparison id, option of the overall choice, {criterion: option}).
Ballot = tuple[int, str, dict[str, str]]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, DIGITS) if whole else None


class _Count:
    """Agreeing pairs and pairs, with ties and without."""

    def __init__(self) -> None:
        self.pairs = self.agree = self.sided_pairs = self.sided_agree = 0

    def add(self, first: str, second: str) -> None:
        self.pairs += 1
        self.agree += first == second
        if first in SIDED and second in SIDED:
            self.sided_pairs += 1
            self.sided_agree += first == second

    def figures(self) -> dict[str, Any]:
        return {
            "with_ties": {"agreement": _share(self.agree, self.pairs), "pairs": self.pairs},
            "without_ties": {
                "agreement": _share(self.sided_agree, self.sided_pairs),
                "pairs": self.sided_pairs,
            },
        }


def _option(choice: str, chosen_id: int | None, candidate_a_id: int) -> str:
    if choice in (Choice.TIE, Choice.BOTH_BAD):
        return str(choice)
    return "a" if chosen_id == candidate_a_id else "b"


def _ballots(judgments: Any) -> Iterator[tuple[int, int, str, dict[str, str]]]:
    """(annotator id, comparison id, option, {criterion: option}) of each vote."""
    rows = judgments.values_list(
        "annotator_id", "comparison_id", "choice", "chosen_id", "comparison__candidate_a_id",
        "criteria",
    )  # fmt: skip
    for annotator_id, comparison_id, choice, chosen_id, candidate_a_id, criteria in rows.iterator(
        chunk_size=5000
    ):
        answers = {
            name: str(answer["option"])
            for name, answer in (criteria or {}).items()
            if isinstance(answer, dict) and answer.get("option") in ("a", "b", "tie", "both_bad")
        }
        yield annotator_id, comparison_id, _option(choice, chosen_id, candidate_a_id), answers


def _agreement_between(
    ai: Sequence[Ballot], people: dict[int, list[tuple[str, dict[str, str]]]], criteria: list[str]
) -> tuple[_Count, dict[str, _Count]]:
    overall, by_criterion = _Count(), {name: _Count() for name in criteria}
    for comparison_id, option, answers in ai:
        for human_option, human_answers in people.get(comparison_id, ()):
            overall.add(option, human_option)
            for name in criteria:
                if name in answers and name in human_answers:
                    by_criterion[name].add(answers[name], human_answers[name])
    return overall, by_criterion


def _agreement_among(
    people: Iterable[list[tuple[str, dict[str, str]]]], criteria: list[str]
) -> tuple[_Count, dict[str, _Count]]:
    overall, by_criterion = _Count(), {name: _Count() for name in criteria}
    for votes in people:
        for (first, first_answers), (second, second_answers) in combinations(votes, 2):
            overall.add(first, second)
            for name in criteria:
                if name in first_answers and name in second_answers:
                    by_criterion[name].add(first_answers[name], second_answers[name])
    return overall, by_criterion


def ai_judges_report(*, project: Project, batch_id: int | None = None) -> dict[str, Any]:
    """The `ai_judges` section for the project (or one batch): `judges`, one entry per judge of
    the project (by name), and `human_human_agreement` beside them; each figure's meaning in
    `meanings`. Without judges, no vote is read."""
    report: dict[str, Any] = {"meaning": MEANING, "meanings": MEANINGS}
    judges = list(Judge.objects.filter(project=project).order_by("name"))
    criteria = list(project.criterion_names)
    if not judges:
        return {**report, "judges": [], "human_human_agreement": None}
    valid = Judgment.objects.filter(
        comparison__project=project,
        comparison__candidate_ids__isnull=True,
        comparison__is_gold=False,
        invalidated_at__isnull=True,
    )
    verdicts = Verdict.objects.filter(judge__project=project)
    if batch_id is not None:
        valid = valid.filter(comparison__batch_id=batch_id)
        verdicts = verdicts.filter(comparison__batch_id=batch_id)
    people: dict[int, list[tuple[str, dict[str, str]]]] = defaultdict(list)
    for _, comparison_id, option, answers in _ballots(
        valid.filter(source=Source.HUMAN).order_by("comparison_id", "id")
    ):
        people[comparison_id].append((option, answers))
    ai_of: dict[int, list[Ballot]] = defaultdict(list)
    accounts = {judge.account_id: judge for judge in judges}
    for annotator_id, comparison_id, option, answers in _ballots(
        valid.filter(source=Source.AI, annotator_id__in=list(accounts)).order_by("id")
    ):
        ai_of[annotator_id].append((comparison_id, option, answers))
    readings: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"versions": set(), "judged": 0, "consistent": 0, "inconsistent": 0}
    )
    for judge_id, version, consistent in verdicts.values_list(
        "judge_id", "template_version", "consistent"
    ):
        seen = readings[judge_id]
        if version:
            seen["versions"].add(version)
        if consistent is None:
            continue  # not judged in both orders (a failure)
        seen["judged"] += 1
        seen["consistent" if consistent else "inconsistent"] += 1
    entries = []
    for judge in judges:
        seen = readings[judge.pk]
        overall, by_criterion = _agreement_between(ai_of[judge.account_id], people, criteria)
        entry: dict[str, Any] = {
            "judge": judge.name,
            "template_versions": sorted(seen["versions"]),
            "counts_toward_overlap": judge.counts_toward_overlap,
            "comparisons_judged": seen["judged"],
            "order_consistency": _share(seen["consistent"], seen["judged"]),
            "inconsistent": seen["inconsistent"],
            "human_ai_agreement": overall.figures(),
        }
        if criteria:
            entry["criteria"] = {name: by_criterion[name].figures() for name in criteria}
        entries.append(entry)
    overall, by_criterion = _agreement_among(people.values(), criteria)
    report["judges"] = entries
    report["human_human_agreement"] = overall.figures()
    if criteria:
        report["criteria_human_human_agreement"] = {
            name: by_criterion[name].figures() for name in criteria
        }
        # The same figures as rows, for the dashboard's table: a criterion, each judge's
        # agreement with people on it (in the judges' order), then people's with each other.
        report["criteria_rows"] = [
            {
                "criterion": name,
                "judges": [entry["criteria"][name] for entry in entries],
                "people": report["criteria_human_human_agreement"][name],
            }
            for name in criteria
        ]
    return report
