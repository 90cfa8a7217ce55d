"""What the comparison card shows besides Markdown: a conversation's parts and the word diff."""

from dataclasses import dataclass
from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from apps.judging.diff import WordDiff, marked, word_diff
from apps.judging.rendering import message_text

register = template.Library()

# A conversation longer than this shows only its last RECENT_TURNS turns; the rest fold away.
FOLD_AFTER_TURNS = 6
RECENT_TURNS = 4
# Roles with a style of their own; the import admits only these, older rows may hold others.
KNOWN_ROLES = {"system", "user", "assistant", "tool"}
_NO_HTML = mark_safe("")


@dataclass(frozen=True)
class Message:
    role: str  # as written, shown as text
    kind: str  # one of KNOWN_ROLES or "other": the only value that reaches a class attribute
    content: str
    html: SafeString = _NO_HTML  # its stored rendering (apps.judging.rendering)


@dataclass(frozen=True)
class Conversation:
    system: list[Message]  # the leading system prompts, shown folded
    earlier: list[Message]  # folded behind "Show N earlier messages"
    recent: list[Message]


def _message(raw: Any, html: SafeString = _NO_HTML) -> Message:
    data = raw if isinstance(raw, dict) else {"content": raw}
    role = str(data.get("role") or "unknown")
    return Message(
        role=role,
        kind=role if role in KNOWN_ROLES else "other",
        content=message_text(raw),
        html=html,
    )


@register.simple_tag
def conversation(messages: list[Any], htmls: list[SafeString] | None = None) -> Conversation:
    """Splits a prompt's messages into leading system prompts, folded turns and recent turns.

    `htmls`, if given, are the messages' renderings, in order (renderings_attach)."""
    htmls = htmls or [_NO_HTML] * len(messages)
    parsed = [_message(raw, html) for raw, html in zip(messages, htmls, strict=True)]
    start = 0
    while start < len(parsed) and parsed[start].kind == "system":
        start += 1
    turns = parsed[start:]
    fold = len(turns) - RECENT_TURNS if len(turns) > FOLD_AFTER_TURNS else 0
    return Conversation(system=parsed[:start], earlier=turns[:fold], recent=turns[fold:])


@register.simple_tag
def candidates_diff(left: str, right: str) -> WordDiff:
    return word_diff(left or "", right or "")


# A side of a word diff, escaped, its own words marked (apps.judging.diff, which the stored
# renderings use too).
register.filter("marked", marked)
