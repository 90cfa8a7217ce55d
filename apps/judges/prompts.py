"""The prompts an AI judge is given: one default template per kind of project, filled safely,
as chat messages for either order of a pair.

A template is a system text and a user text with named placeholders:

- {question}: the prompt; a conversation (a list of {"role", "content"} messages) is written
  out turn by turn ("### User:", "### Assistant:", ...), its last turn being the one answered;
- {answer_a}, {answer_b}: the two answers of a pair, in the order of that prompt;
- {answers}: listwise, every answer labelled A, B, C, ... in the order of that prompt;
- {guidelines}: the project's guidelines, framed, or nothing when it has none;
- {criteria}: the project's criteria with their descriptions, or nothing;
- {verdict_format}: how to answer, made from the project's options (apps.judges.verdicts
  documents the tokens): required, since a reply is parsed strictly against it.

Only these names are filled ("{{" and "}}" are literal braces); the values are inserted as
they are, so user text holding braces, newlines or any Unicode is never read as a template.
A template's version (`template_version`) is a short hash of its texts and of FORMAT_VERSION,
which is raised whenever the verdict format's wording here changes, so that a judgment records
the exact instructions that produced it.
"""

import hashlib
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.judges.verdicts import BOTH_BAD, GRADED_TOKENS, LABELS, PAIRWISE_TOKENS, TIE, A, B, Spec

# Raised whenever the wording of verdict_format or of the rendered blocks changes.
FORMAT_VERSION = "1"
VERSION_LENGTH = 12

PAIR_FIELDS = frozenset({"question", "answer_a", "answer_b", "guidelines", "criteria"})
LIST_FIELDS = frozenset({"question", "answers", "guidelines"})
FORMAT_FIELD = "verdict_format"

Message = dict[str, str]


class TemplateError(ValueError):
    """A template that cannot be filled; the message says why."""


class PromptError(ValueError):
    """A prompt that is neither a non-empty string nor a list of {"role", "content"}."""


@dataclass(frozen=True)
class Template:
    system: str
    user: str

    @property
    def version(self) -> str:
        return template_version(self)


def template_version(template: Template) -> str:
    """A stable short id of the template's texts (line endings and trailing spaces aside) and
    of the verdict format's wording: judgments record which prompt produced them."""
    texts = [
        "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
        for text in (template.system, template.user)
    ]
    digest = hashlib.sha256("\x00".join([FORMAT_VERSION, *texts]).encode()).hexdigest()
    return digest[:VERSION_LENGTH]


_IMPARTIAL = (
    "Avoid any position bias: the order in which the responses are presented must not "
    "influence your decision. Do not let the length of the responses influence you, nor the "
    "names of the assistants. Be as objective as possible."
)
_ANSWER = (
    "[The Start of Assistant {label}'s Answer]\n{answer}\n[The End of Assistant {label}'s Answer]"
)
_PAIR_USER = (
    "{guidelines}[User Question]\n{question}\n\n"
    + _ANSWER.format(label="A", answer="{answer_a}")
    + "\n\n"
    + _ANSWER.format(label="B", answer="{answer_b}")
)

PAIRWISE = Template(
    system=(
        "Please act as an impartial judge and evaluate the quality of the responses provided "
        "by two AI assistants to the user question displayed below. Choose the assistant that "
        "follows the user's instructions and answers the user's question better, considering "
        "helpfulness, relevance, accuracy, depth, creativity and level of detail. Begin your "
        "evaluation by comparing the two responses and give a short explanation. "
        f"{_IMPARTIAL}\n\n{{verdict_format}}"
    ),
    user=_PAIR_USER,
)
GRADED = Template(
    system=(
        "Please act as an impartial judge and evaluate the quality of the responses provided "
        "by two AI assistants to the user question displayed below. Decide which assistant "
        "follows the user's instructions and answers the user's question better, and by how "
        "much, considering helpfulness, relevance, accuracy, depth, creativity and level of "
        "detail. Begin your evaluation by comparing the two responses and give a short "
        f"explanation. {_IMPARTIAL}\n\n{{verdict_format}}"
    ),
    user=_PAIR_USER,
)
CRITERIA = Template(
    system=(
        "Please act as an impartial judge and evaluate the quality of the responses provided "
        "by two AI assistants to the user question displayed below, on each of the criteria "
        "below on its own, and overall. For each criterion, consider only what it describes. "
        "Begin with a short explanation per criterion. "
        f"{_IMPARTIAL}\n\n{{criteria}}{{verdict_format}}"
    ),
    user=_PAIR_USER,
)
LISTWISE = Template(
    system=(
        "Please act as an impartial judge and evaluate the quality of the responses provided "
        "by several AI assistants to the user question displayed below. Rank them from best "
        "to worst by how well they follow the user's instructions and answer the user's "
        "question, considering helpfulness, relevance, accuracy, depth, creativity and level "
        "of detail. Begin your evaluation by comparing the responses and give a short "
        f"explanation. {_IMPARTIAL}\n\n{{verdict_format}}"
    ),
    user="{guidelines}[User Question]\n{question}\n\n{answers}",
)


def default_template(spec: Spec) -> Template:
    if spec.listwise:
        return LISTWISE
    if spec.criteria:
        return CRITERIA
    return GRADED if spec.graded else PAIRWISE


def _fields(text: str) -> list[str]:
    """The placeholders of a template text, refusing anything but plain names."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise TemplateError(
            f"Unbalanced braces ({error}): write {{{{ and }}}} for braces."
        ) from None
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(
                f"{{{name}}} is not a placeholder: use a plain name like {{question}}."
            )
        names.append(name)
    return names


def template_problem(template: Template, spec: Spec) -> str:
    """Why this template cannot judge the project, or ""."""
    allowed = (LIST_FIELDS if spec.listwise else PAIR_FIELDS) | {FORMAT_FIELD}
    required = {"question", FORMAT_FIELD} | (
        {"answers"} if spec.listwise else {"answer_a", "answer_b"}
    )
    if spec.criteria:
        required.add("criteria")
    try:
        used = set(_fields(template.system)) | set(_fields(template.user))
    except TemplateError as error:
        return str(error)
    if unknown := sorted(used - allowed):
        return f"Unknown placeholders: {', '.join('{' + n + '}' for n in unknown)}."
    if missing := sorted(required - used):
        return f"Missing placeholders: {', '.join('{' + n + '}' for n in missing)}."
    return ""


def fill(text: str, values: Mapping[str, str]) -> str:
    """The text with its placeholders replaced by `values`, inserted verbatim."""
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return "".join(out)


def render_question(prompt: Any) -> str:
    """A prompt as the judge reads it: the text, or the conversation turn by turn."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptError("The prompt is empty.")
        return prompt
    if not isinstance(prompt, list) or not prompt:
        raise PromptError('A prompt is a string or a list of {"role", "content"} messages.')
    turns = []
    for message in prompt:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise PromptError('Each message of a prompt is {"role": ..., "content": ...}.')
        turns.append(f"### {message['role'].strip().capitalize() or 'User'}:\n{message['content']}")
    return "\n\n".join(turns)


def _guidelines(spec: Spec) -> str:
    if not spec.guidelines.strip():
        return ""
    return (
        f"[The Start of the Guidelines]\n{spec.guidelines.strip()}\n[The End of the Guidelines]\n\n"
    )


def _criteria(spec: Spec) -> str:
    if not spec.criteria:
        return ""
    lines = [f"- {c.name}" + (f": {c.description}" if c.description else "") for c in spec.criteria]
    return "The criteria:\n" + "\n".join(lines) + "\n\n"


# What each outcome means to the judge: graded by its strength, else by its option.
_MEANINGS: dict[int | str, str] = {
    3: "Assistant A is significantly better",
    2: "Assistant A is better",
    1: "Assistant A is slightly better",
    0: "they are about the same, or you are unsure",
    -1: "Assistant B is slightly better",
    -2: "Assistant B is better",
    -3: "Assistant B is significantly better",
    A: "Assistant A is better",
    B: "Assistant B is better",
    TIE: "a tie",
    BOTH_BAD: "both answers are bad",
}


def _token_legend(spec: Spec) -> str:
    table = GRADED_TOKENS if spec.graded else PAIRWISE_TOKENS
    legend = []
    for token in spec.tokens():
        option, strength = table[token]
        legend.append(f'"[[{token}]]" if {_MEANINGS[option if strength is None else strength]}')
    return "; ".join(legend)


def verdict_format(spec: Spec, count: int = 2) -> str:
    """How the judge must answer this project (the strict format verdicts.py parses)."""
    if spec.listwise:
        labels = LABELS[:count]
        # The form is shown with stand-ins (X, Y, Z), not labels: an example ranking of the
        # real labels would suggest an order.
        tie = ", and '=' between answers that tie" if spec.allow_tie else ""
        form = "[[X>Y=Z]]" if spec.allow_tie else "[[X>Y>Z]]"
        return (
            "After your explanation, output your final ranking of all the answers, best first, "
            f"in double square brackets: the labels {', '.join(labels)}, each exactly once, with "
            f"'>' between places{tie}, in the form {form} (X, Y and Z standing for labels). "
            "Write exactly one ranking, and no other text in double square brackets."
        )
    legend = _token_legend(spec)
    if not spec.criteria:
        return (
            "After your explanation, output your final verdict by strictly following this "
            f"format: {legend}. Write exactly one verdict, and no other text in double square "
            "brackets."
        )
    lines = "\n".join(f"{c.name}: [[X]]" for c in spec.criteria)
    return (
        "After your explanation, output one line per criterion and a last line for your "
        f"overall verdict, exactly in this form:\n{lines}\nOverall: [[X]]\nwhere each [[X]] "
        f"is one of: {legend}. Write each line once, and no other text in double square "
        "brackets."
    )


def _messages(template: Template, values: Mapping[str, str]) -> list[Message]:
    return [
        {"role": "system", "content": fill(template.system, values)},
        {"role": "user", "content": fill(template.user, values)},
    ]


def _checked(template: Template, spec: Spec) -> None:
    if problem := template_problem(template, spec):
        raise TemplateError(problem)


def build_messages(
    spec: Spec, template: Template, prompt: Any, answer_a: str, answer_b: str
) -> list[Message]:
    """The chat messages asking the judge about one pair, in the order given."""
    if spec.listwise:
        raise ValueError(
            "A listwise project's judge ranks all answers: use build_ranking_messages."
        )
    _checked(template, spec)
    return _messages(
        template,
        {
            "question": render_question(prompt),
            "answer_a": answer_a,
            "answer_b": answer_b,
            "guidelines": _guidelines(spec),
            "criteria": _criteria(spec),
            FORMAT_FIELD: verdict_format(spec),
        },
    )


def build_both_orders(
    spec: Spec, template: Template, prompt: Any, answer_a: str, answer_b: str
) -> tuple[list[Message], list[Message]]:
    """The messages with A shown first, and with the answers swapped (parse the second's reply,
    then verdicts.combine turns it back)."""
    return (
        build_messages(spec, template, prompt, answer_a, answer_b),
        build_messages(spec, template, prompt, answer_b, answer_a),
    )


def build_ranking_messages(
    spec: Spec, template: Template, prompt: Any, answers: Sequence[str]
) -> list[Message]:
    """The chat messages asking the judge to rank the answers, labelled A, B, ... as given."""
    if not spec.listwise:
        raise ValueError("Only a listwise project's judge ranks: use build_messages.")
    if not 2 <= len(answers) <= len(LABELS):
        raise ValueError(f"A judge ranks 2 to {len(LABELS)} answers, not {len(answers)}.")
    _checked(template, spec)
    shown = "\n\n".join(
        _ANSWER.format(label=label, answer=answer)
        for label, answer in zip(LABELS, answers, strict=False)
    )
    return _messages(
        template,
        {
            "question": render_question(prompt),
            "answers": shown,
            "guidelines": _guidelines(spec),
            FORMAT_FIELD: verdict_format(spec, len(answers)),
        },
    )


def build_ranking_both_orders(
    spec: Spec, template: Template, prompt: Any, answers: Sequence[str]
) -> tuple[list[Message], list[Message]]:
    """The messages with the answers as given, and reversed (verdicts.combine_rankings turns
    the second's ranking back)."""
    return (
        build_ranking_messages(spec, template, prompt, answers),
        build_ranking_messages(spec, template, prompt, list(reversed(answers))),
    )
