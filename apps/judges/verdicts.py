"""An AI judge's verdict: its strict format, parsed, and the two orders of a pair combined.

A judge sees one pair twice, once as shown (the comparison's candidate A as "Assistant A") and
once swapped, and answers each time in a strict format. Nothing here guesses: a reply that does
not hold exactly one well-formed verdict (per criterion, when the project has criteria) is
refused with a `VerdictError` and its reason, never read as "A seems better".

Verdict tokens
--------------
Every verdict is a token in double square brackets. Spaces inside the brackets are ignored
("[[ A > B ]]" is "[[A>B]]"); letters are upper case. "A" and "B" are the answers as the judge
saw them in that prompt.

Pairwise projects (MT-Bench's tokens):

    [[A]]  Assistant A is better        [[C]]  a tie (only if the project allows ties)
    [[B]]  Assistant B is better        [[D]]  both are bad (only if the project allows it)

Graded projects, the project's scale from -3 to +3 (apps.projects.models.GRADES) as arrows,
one ">" per step, so that a token says its direction and strength without a legend:

    [[A>>>B]] +3  A is significantly better     [[B>A]]   -1  B is slightly better
    [[A>>B]]  +2  A is better                   [[B>>A]]  -2  B is better
    [[A>B]]   +1  A is slightly better          [[B>>>A]] -3  B is significantly better
    [[A=B]]    0  negligibly better or unsure   [[D]]         both bad (if the project allows)

The strength is stored as Judgment.strength is: positive when A is better. 0 is a point of the
scale and always offered; [[C]] is not a graded token.

Pairwise or graded projects with criteria: one line per criterion and one for the overall
verdict, each "<name>: [[token]]" on a line of its own, every criterion exactly once, and
"Overall: [[token]]" exactly once (names match without regard to case; "**" and a leading
"- " are allowed). In this mode every token must sit on such a line, and a line naming no
criterion of the project is refused:

    helpfulness: [[A]]
    honesty: [[C]]
    Overall: [[A]]

Without criteria, the reply may hold the token more than once (a judge that restates its
verdict), but never two different tokens.

Listwise projects: the answers are labelled A, B, C, ... in the order shown, and the verdict is
one ranking of all of them, best first, ">" between places and "=" within a tie (only if the
project allows ties): "[[C>A=B>D]]". Every label exactly once.

Parsed verdicts use the stored vocabulary of apps.judging: an `Outcome` is an option ("a",
"b", "tie", "both_bad") and a strength (graded: -3..3, positive when A is better; else None),
the shape of an entry of Judgment.criteria. A listwise verdict is a `Ranking`: groups of the
answers' indices in the order shown, best first.

Combining the two orders
------------------------
`swap` turns a verdict given on the swapped prompt back to the shown orientation (a <-> b, the
strength negated; for a ranking, index i <-> n-1-i, since the list is shown reversed).
`combine(first, second)` takes the verdict on the shown order and the one on the swapped
order (as the judge gave it; it is swapped back here), and per pick (the overall one and each
criterion's):

- pairwise: consistent when both orders give the same option, which is the outcome;
- graded: consistent when both orders take the same side (both favour A, both favour B, both
  0, or both "both bad"); the outcome is the weaker of the two strengths, the most both orders
  support (+3 and +1 give +1);
- otherwise the pick is inconsistent, and the outcome follows the policy: "tie" gives a tie
  (strength 0 when graded), "inconsistent" gives the option "inconsistent" (no strength),
  which is not a Judgment choice: the caller records it as a failed judging, not a vote.
  A "tie" on a project without ties is the caller's to refuse (`policy_problem`).
- listwise: consistent when both rankings are the same; otherwise "tie" puts every answer in
  one group and "inconsistent" gives no ranking.

`consistent` is recorded either way, so that position bias can be measured per judge.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from apps.judging.answers import MAX_RANKED, MAX_STRENGTH
from apps.judging.models import Choice
from apps.projects.models import Scheme

A, B, TIE, BOTH_BAD = "a", "b", Choice.TIE.value, Choice.BOTH_BAD.value
INCONSISTENT = "inconsistent"
OVERALL = "overall"
Policy = Literal["tie", "inconsistent"]
POLICIES: tuple[Policy, ...] = ("tie", "inconsistent")

PAIRWISE_TOKENS: dict[str, tuple[str, int | None]] = {
    "A": (A, None),
    "B": (B, None),
    "C": (TIE, None),
    "D": (BOTH_BAD, None),
}
GRADED_TOKENS: dict[str, tuple[str, int | None]] = {
    **{f"A{'>' * n}B": (A, n) for n in range(MAX_STRENGTH, 0, -1)},
    "A=B": (TIE, 0),
    **{f"B{'>' * n}A": (B, -n) for n in range(1, MAX_STRENGTH + 1)},
    "D": (BOTH_BAD, None),
}
LABELS = "ABCDEFGH"[:MAX_RANKED]

_TOKEN = re.compile(r"\[\[([^\[\]\n]{1,64})\]\]")
_RANKING = re.compile(rf"[{LABELS}](?:[>=][{LABELS}])*")
# A verdict line once "*" and "`" are dropped: "<name>: [[token]]", maybe a "- " bullet.
_LINE = re.compile(
    r"\s*(?:-\s+)?(?P<label>[A-Za-z0-9][A-Za-z0-9 _-]*?)\s*:\s*\[\[[^\[\]\n]+\]\]\s*"
)


class VerdictError(ValueError):
    """The judge's reply holds no single well-formed verdict; the message says why (short)."""


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Spec:
    """What a project lets a judge answer: its scheme, options and criteria (see `spec_for`)."""

    scheme: str = Scheme.PAIRWISE.value
    allow_tie: bool = True
    allow_both_bad: bool = True
    criteria: tuple[Criterion, ...] = ()
    guidelines: str = ""

    def __post_init__(self) -> None:
        if self.scheme not in Scheme.values:
            raise ValueError(f"Unknown scheme {self.scheme!r}: one of {', '.join(Scheme.values)}.")
        if self.criteria and self.scheme == Scheme.LISTWISE:
            raise ValueError("A listwise project has no criteria.")
        folded = [c.name.casefold() for c in self.criteria]
        if OVERALL in folded:
            raise ValueError(
                f"A criterion named {OVERALL!r} clashes with the overall verdict's line."
            )
        if len(set(folded)) != len(folded):
            raise ValueError("A judge matches criteria without regard to case: make them differ.")

    @property
    def graded(self) -> bool:
        return self.scheme == Scheme.GRADED

    @property
    def listwise(self) -> bool:
        return self.scheme == Scheme.LISTWISE

    def tokens(self) -> list[str]:
        """The tokens this project offers for a pair, in the order the prompt lists them."""
        if self.graded:
            return [t for t in GRADED_TOKENS if t != "D" or self.allow_both_bad]
        offered = {"A", "B", "C" if self.allow_tie else "", "D" if self.allow_both_bad else ""}
        return [t for t in PAIRWISE_TOKENS if t in offered]


def spec_for(project: Any) -> Spec:
    """The project's Spec (a Project, or anything with its fields)."""
    return Spec(
        scheme=str(project.scheme),
        allow_tie=bool(project.allow_tie),
        allow_both_bad=bool(project.allow_both_bad),
        criteria=tuple(
            Criterion(c["name"], c.get("description", "")) for c in project.criteria or []
        ),
        guidelines=project.guidelines or "",
    )


@dataclass(frozen=True)
class Outcome:
    """One pick, oriented as stored: option a | b | tie | both_bad (| inconsistent, only from
    `combine`), strength -3..3 for graded (positive: A better), else None."""

    option: str
    strength: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"option": self.option, "strength": self.strength}


@dataclass(frozen=True)
class Verdict:
    """A judge's verdict on a pair: the overall outcome and, by name, each criterion's."""

    overall: Outcome
    criteria: Mapping[str, Outcome] = field(default_factory=dict)


# Listwise: groups of the answers' indices in the order shown, best first.
Ranking = tuple[tuple[int, ...], ...]


def _token_text(content: str) -> str:
    return re.sub(r"\s+", "", content)


def _outcome(written: str, spec: Spec) -> Outcome:
    """The outcome a token stands for (spaces aside), if the project offers it."""
    token = _token_text(written)
    own, other = (GRADED_TOKENS, PAIRWISE_TOKENS) if spec.graded else (PAIRWISE_TOKENS, {})
    if token not in own:
        if token in other or token in GRADED_TOKENS:
            kind = "graded" if token in GRADED_TOKENS else "pairwise"
            raise VerdictError(f"[[{token}]] is a {kind} token; {_offered(spec)}.")
        raise VerdictError(f"[[{written.strip()}]] is not a verdict token; {_offered(spec)}.")
    if token not in spec.tokens():
        what = "a tie" if own[token][0] == TIE else "both bad"
        raise VerdictError(f"[[{token}]] ({what}) is not offered in this project.")
    option, strength = own[token]
    return Outcome(option, strength)


def _offered(spec: Spec) -> str:
    return "use one of " + ", ".join(f"[[{t}]]" for t in spec.tokens())


def _single(tokens: Iterable[str], spec: Spec, where: str) -> Outcome:
    outcomes = {_token_text(token): _outcome(token, spec) for token in tokens}
    if not outcomes:
        raise VerdictError(f"No verdict token{where}.")
    if len(outcomes) > 1:
        shown = " and ".join(f"[[{t}]]" for t in outcomes)
        raise VerdictError(f"Conflicting verdicts{where}: {shown}.")
    return next(iter(outcomes.values()))


def parse_verdict(text: str, spec: Spec) -> Verdict:
    """The verdict a judge's reply holds, for a pair (see the module's formats).
    Raises VerdictError."""
    if spec.listwise:
        raise ValueError("A listwise project's verdict is a ranking: use parse_ranking.")
    if not isinstance(text, str) or not text.strip():
        raise VerdictError("The reply is empty.")
    if not spec.criteria:
        return Verdict(_single(_TOKEN.findall(text), spec, ""))
    names = {c.name.casefold(): c.name for c in spec.criteria}
    found: dict[str, Outcome] = {}
    for number, line in enumerate(text.splitlines(), 1):
        tokens = _TOKEN.findall(line)
        if not tokens:
            continue
        match = _LINE.fullmatch(re.sub(r"[*`]", "", line))
        if not match or len(tokens) > 1:
            raise VerdictError(
                f"Line {number}: each verdict goes on a line of its own, as '<criterion>: "
                "[[token]]' or 'Overall: [[token]]'."
            )
        label = match["label"].casefold()
        name = OVERALL if label == OVERALL else names.get(label)
        if name is None:
            raise VerdictError(f"Line {number}: {match['label']!r} is not a criterion here.")
        if name in found:
            raise VerdictError(f"{name!r} is judged more than once.")
        found[name] = _single(tokens, spec, f" for {name!r}")
    missing = [c.name for c in spec.criteria if c.name not in found]
    if OVERALL not in found:
        missing.append("Overall")
    if missing:
        raise VerdictError(f"No verdict for: {', '.join(missing)}.")
    overall = found.pop(OVERALL)
    return Verdict(overall, {c.name: found[c.name] for c in spec.criteria})


def parse_ranking(text: str, spec: Spec, count: int) -> Ranking:
    """The ranking a judge's reply holds for `count` answers labelled A, B, ... as shown.
    Raises VerdictError."""
    if not 2 <= count <= len(LABELS):
        raise ValueError(f"A judge ranks 2 to {len(LABELS)} answers, not {count}.")
    if not isinstance(text, str) or not text.strip():
        raise VerdictError("The reply is empty.")
    tokens = {_token_text(t) for t in _TOKEN.findall(text)}
    if not tokens:
        raise VerdictError("No ranking token.")
    if len(tokens) > 1:
        raise VerdictError(f"Conflicting rankings: {' and '.join(f'[[{t}]]' for t in tokens)}.")
    token = tokens.pop()
    labels = LABELS[:count]
    if not _RANKING.fullmatch(token):
        raise VerdictError(
            f"[[{token}]] is not a ranking: list {', '.join(labels)} best first, with '>' "
            "between places" + (" and '=' within a tie." if spec.allow_tie else ".")
        )
    if "=" in token and not spec.allow_tie:
        raise VerdictError(f"[[{token}]] ranks a tie, which this project does not offer.")
    named = re.findall(r"[A-Z]", token)
    if sorted(named) != list(labels):
        raise VerdictError(f"[[{token}]] must rank each of {', '.join(labels)} exactly once.")
    return tuple(
        tuple(sorted(LABELS.index(label) for label in group.split("=")))
        for group in token.split(">")
    )


def render_outcome(outcome: Outcome, spec: Spec) -> str:
    """The token an outcome is written as in this project: "[[A]]", "[[B>>A]]", ..."""
    tokens = GRADED_TOKENS if spec.graded else PAIRWISE_TOKENS
    for token, meaning in tokens.items():
        if meaning == (outcome.option, outcome.strength):
            return f"[[{token}]]"
    raise ValueError(f"{outcome} has no token in a {spec.scheme} project.")


def render_verdict(verdict: Verdict, spec: Spec) -> str:
    """The verdict as a judge that follows the format writes it (parse_verdict's inverse)."""
    if not spec.criteria:
        return render_outcome(verdict.overall, spec)
    lines = [f"{c.name}: {render_outcome(verdict.criteria[c.name], spec)}" for c in spec.criteria]
    return "\n".join([*lines, f"Overall: {render_outcome(verdict.overall, spec)}"])


def render_ranking(ranking: Ranking) -> str:
    return "[[" + ">".join("=".join(LABELS[i] for i in group) for group in ranking) + "]]"


def swap_outcome(outcome: Outcome) -> Outcome:
    option = {A: B, B: A}.get(outcome.option, outcome.option)
    return Outcome(option, None if outcome.strength is None else -outcome.strength)


def swap(verdict: Verdict) -> Verdict:
    """A verdict given with the answers swapped, oriented back to the order shown (its own
    inverse)."""
    return Verdict(
        swap_outcome(verdict.overall),
        {name: swap_outcome(outcome) for name, outcome in verdict.criteria.items()},
    )


def swap_ranking(ranking: Ranking, count: int) -> Ranking:
    """A ranking given on the answers in reverse order, in the indices of the order shown."""
    return tuple(tuple(sorted(count - 1 - i for i in group)) for group in ranking)


@dataclass(frozen=True)
class Agreement:
    """One pick of both orders combined: the outcome, and whether the orders agreed."""

    outcome: Outcome
    consistent: bool


@dataclass(frozen=True)
class Combined:
    overall: Agreement
    criteria: Mapping[str, Agreement] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        """Both orders agreed on the overall pick and on every criterion."""
        return self.overall.consistent and all(a.consistent for a in self.criteria.values())


def _side(outcome: Outcome) -> str:
    if outcome.strength is None:
        return outcome.option
    return A if outcome.strength > 0 else B if outcome.strength < 0 else TIE


def combine_outcomes(first: Outcome, second: Outcome, *, policy: Policy = "tie") -> Agreement:
    """Two outcomes on the shown orientation (`second` already swapped back) combined."""
    if policy not in POLICIES:
        raise ValueError(f"Unknown policy {policy!r}: one of {', '.join(POLICIES)}.")
    graded = first.strength is not None or second.strength is not None
    if _side(first) == _side(second):
        if first.strength is None or second.strength is None:
            return Agreement(first, True)
        weaker = min(first.strength, second.strength, key=abs)
        return Agreement(Outcome(first.option, weaker), True)
    if policy == "tie":
        return Agreement(Outcome(TIE, 0 if graded else None), False)
    return Agreement(Outcome(INCONSISTENT), False)


def combine(first: Verdict, second: Verdict, *, policy: Policy = "tie") -> Combined:
    """The verdict on the order shown (`first`) and the one on the swapped order (`second`,
    as the judge gave it), combined per pick. Both must judge the same criteria."""
    back = swap(second)
    if set(first.criteria) != set(back.criteria):
        raise ValueError("Both orders must judge the same criteria.")
    return Combined(
        combine_outcomes(first.overall, back.overall, policy=policy),
        {
            name: combine_outcomes(outcome, back.criteria[name], policy=policy)
            for name, outcome in first.criteria.items()
        },
    )


@dataclass(frozen=True)
class CombinedRanking:
    ranking: Ranking | None
    consistent: bool


def combine_rankings(
    first: Ranking, second: Ranking, count: int, *, policy: Policy = "tie"
) -> CombinedRanking:
    """The ranking on the order shown and the one on the reversed order (as the judge gave
    it), combined: the same ranking is consistent; else one tie of all, or none."""
    if policy not in POLICIES:
        raise ValueError(f"Unknown policy {policy!r}: one of {', '.join(POLICIES)}.")
    back = swap_ranking(second, count)
    if first == back:
        return CombinedRanking(first, True)
    if policy == "tie":
        return CombinedRanking((tuple(range(count)),), False)
    return CombinedRanking(None, False)


def policy_problem(spec: Spec, policy: str) -> str:
    """Why this policy cannot serve the project, or "": a disagreement falls back to a tie,
    which a pairwise or listwise project without ties cannot record (graded 0 is always
    offered)."""
    if policy not in POLICIES:
        return f"The policy is one of {', '.join(POLICIES)}."
    if policy == "tie" and not spec.allow_tie and not spec.graded:
        return "This project offers no tie: use the 'inconsistent' policy."
    return ""
