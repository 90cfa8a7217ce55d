"""What the comparison card shows besides Markdown: a conversation's parts."""

from dataclasses import dataclass
from typing import Any

from django import template

register = template.Library()

# A conversation longer than this shows only its last RECENT_TURNS turns; the rest fold away.
FOLD_AFTER_TURNS = 6
RECENT_TURNS = 4
# Roles with a style of their own; the import admits only these, older rows may hold others.
KNOWN_ROLES = {"system", "user", "assistant", "tool"}


@dataclass(frozen=True)
class Message:
    role: str  # as written, shown as text
    kind: str  # one of KNOWN_ROLES or "other": the only value that reaches a class attribute
    content: str


@dataclass(frozen=True)
class Conversation:
    system: list[Message]  # the leading system prompts, shown folded
    earlier: list[Message]  # folded behind "Show N earlier messages"
    recent: list[Message]


def _message(raw: Any) -> Message:
    data = raw if isinstance(raw, dict) else {"content": raw}
    role = str(data.get("role") or "unknown")
    content = data.get("content")
    return Message(
        role=role,
        kind=role if role in KNOWN_ROLES else "other",
        content=content if isinstance(content, str) else str(content or ""),
    )


@register.simple_tag
def conversation(messages: list[Any]) -> Conversation:
    """Splits a prompt's messages into leading system prompts, folded turns and recent turns."""
    parsed = [_message(raw) for raw in messages]
    start = 0
    while start < len(parsed) and parsed[start].kind == "system":
        start += 1
    turns = parsed[start:]
    fold = len(turns) - RECENT_TURNS if len(turns) > FOLD_AFTER_TURNS else 0
    return Conversation(system=parsed[:start], earlier=turns[:fold], recent=turns[fold:])
