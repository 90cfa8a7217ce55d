"""The judging page's keys, written once: the buttons' hints, the help list and the scripts' table.

The template renders the hints and the help list from `keymap(project)`; the same table goes to
the page as JSON in a data attribute (not a `json_script` block: the page keeps no inline
<script> of any kind, which its CSP and the hostile-content tests check), and static/js/keys.js
hands it to annotate.js, panes.js and arrival.js, so no script repeats a key.
Keys are `KeyboardEvent.key` values. Esc, Tab and Enter inside a form keep their browser meaning
(leave, move, submit) and are only described here.
"""

import json
from dataclasses import dataclass
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.judging.answer_rules import allowed_choices
from apps.judging.models import Choice
from apps.projects.models import GRADES, Project, Scheme

# How a key is printed on a button or in the help list.
SHOWN = {"ArrowLeft": "←", "ArrowRight": "→"}

# Pairwise: key(s) for each choice, in key order. The first key is the button's aria shortcut.
CHOICE_KEYS: list[tuple[str, tuple[str, ...]]] = [
    (Choice.LEFT.value, ("1", "ArrowLeft")),
    (Choice.RIGHT.value, ("2", "ArrowRight")),
    (Choice.TIE.value, ("3",)),
    (Choice.BOTH_BAD.value, ("4",)),
]
CHOICE_LABELS = {
    Choice.LEFT.value: "Left is better",
    Choice.RIGHT.value: "Right is better",
    Choice.TIE.value: "Tie",
    Choice.BOTH_BAD.value: "Both bad",
}
# Graded: the scale's keys, left to right: 1 (left significantly better) to 7; b for both bad.
GRADE_KEYS = "1234567"
BOTH_BAD_GRADED_KEY = "b"

# Keys that act on the page rather than judge: action -> key.
PAGE_KEYS = {
    "help": "?",
    "guidelines": "g",
    "undo": "u",
    "skip": "s",
    "skip_other": "o",  # in the skip form: to the note, for the reason "Other"
    "rationale": "r",
    "criterion": "c",
    "diff": "d",
}


@dataclass(frozen=True)
class Binding:
    """One judging button and the keys that press it."""

    name: str  # the button's field: "choice" or "strength"
    value: str
    label: str
    keys: tuple[str, ...]

    @property
    def shown(self) -> str:
        """The keys as the button prints them: "1 or ←"."""
        return " or ".join(SHOWN.get(key, key) for key in self.keys)

    @property
    def shortcut(self) -> str:
        """The button's aria-keyshortcuts: its first key."""
        return self.keys[0]


@dataclass(frozen=True)
class KeyMap:
    """The keys of one project's judging page."""

    choices: list[Binding]  # pairwise buttons
    grades: list[Binding]  # graded scale buttons (both bad apart)
    both_bad: Binding | None  # graded projects' "both bad" button
    page: dict[str, str]  # action -> key
    help: list[tuple[SafeString, SafeString]]  # (keys, what they do), as the help list shows them

    def script_data(self) -> dict[str, Any]:
        """What annotate.js and panes.js read: key -> [field, value] to judge, key -> action."""
        buttons = [*self.choices, *self.grades, *([self.both_bad] if self.both_bad else [])]
        return {
            "judge": {key: [b.name, b.value] for b in buttons for key in b.keys},
            "page": {key: action for action, key in self.page.items()},
        }

    def script_json(self) -> str:
        """script_data as JSON, for the page's data-keys attribute (the template escapes it)."""
        return json.dumps(self.script_data(), ensure_ascii=False)


def _kbd(*keys: str, sep: str = " ") -> SafeString:
    return format_html_join(sep, "<kbd>{}</kbd>", ((SHOWN.get(key, key),) for key in keys))


def keymap(project: Project, *, skip_reasons: bool) -> KeyMap:
    """The keys this project's judging page offers, with the help list's rows."""
    listwise = project.scheme == Scheme.LISTWISE
    graded = project.scheme == Scheme.GRADED
    offered = allowed_choices(project.allow_tie, project.allow_both_bad)
    choices = [
        Binding("choice", value, CHOICE_LABELS[value], keys)
        for value, keys in CHOICE_KEYS
        if value in offered
    ]
    grades = [
        Binding("strength", str(value), label, (key,))
        for (value, label), key in zip(GRADES, GRADE_KEYS, strict=True)
    ]
    both_bad = (
        Binding("choice", Choice.BOTH_BAD.value, "Both bad", (BOTH_BAD_GRADED_KEY,))
        if project.allow_both_bad
        else None
    )
    if listwise:
        choices, grades, both_bad = [], [], None
    elif graded:
        choices = []
    else:
        grades, both_bad = [], None

    rows: list[tuple[SafeString, SafeString]] = []
    if listwise:
        rows += [
            (
                _kbd("1", "9", sep="…"),
                _text(
                    "Give the marked response its place (1 is best; equal places tie where ties"
                    " are allowed), then mark the next one without a place"
                ),
            ),
            (
                format_html("{} {}+{}", *[_kbd(k) for k in ("Tab", "Shift", "Tab")]),
                _text("Mark the next or the previous response"),
            ),
            (_kbd("Backspace"), _text("Clear the marked response's place")),
            (
                _kbd("Enter"),
                _text("Submit the ranking; with a place missing, it says which and marks it"),
            ),
        ]
    for binding in [*grades, *([both_bad] if both_bad else []), *choices]:
        rows.append((_kbd(binding.shown), _text(binding.label)))
    page = PAGE_KEYS
    if project.criteria:
        rows.append(
            (
                _kbd(page["criterion"]),
                format_html(
                    "Go to the first unanswered criterion; {} pick, {} picks the first",
                    _kbd("ArrowLeft", "ArrowRight"),
                    _kbd("Space"),
                ),
            )
        )
    if project.rationale != "off":
        rows.append(
            (
                _kbd(page["rationale"]),
                format_html("Write the rationale; {} leaves the box", _kbd("Esc")),
            )
        )
    rows.append(
        (_kbd("Tab"), _text("Move through flags, the rationale, the choices and the skip form"))
    )
    rows.append(
        (_kbd(page["diff"]), _text("Show or hide the differences between the two responses"))
    )
    if skip_reasons:
        rows.append(
            (
                format_html("{}, then a reason's digit", _kbd(page["skip"])),
                format_html(
                    "Skip this comparison for that reason; {}, a note, {} skips for another reason;"
                    " {} leaves the skip form",
                    _kbd(page["skip"], page["skip_other"]),
                    _kbd("Enter"),
                    _kbd("Esc"),
                ),
            )
        )
    else:
        rows.append(
            (
                format_html("{}, then {}", _kbd(page["skip"]), _kbd("Enter")),
                format_html("Skip this comparison; {} leaves the skip form", _kbd("Esc")),
            )
        )
    rows += [
        (_kbd(page["undo"]), _text("Undo your last judgment: its comparison comes back")),
        (_kbd(page["guidelines"]), _text("Open or close the guidelines")),
        (_kbd(page["help"]), _text("Open or close this list")),
    ]
    return KeyMap(choices=choices, grades=grades, both_bad=both_bad, page=dict(page), help=rows)


def _text(text: str) -> SafeString:
    return format_html("{}", text)
