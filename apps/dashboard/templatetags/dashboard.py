from typing import Any

from django import template

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.7234 -> "72.3%"; None -> "—" (undefined: too few votes)."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


@register.filter
def seconds(milliseconds: float | None) -> str:
    """A duration in ms as "3.2 s"; None -> "—"."""
    if milliseconds is None:
        return "—"
    return f"{milliseconds / 1000:.1f} s"


@register.filter
def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


@register.filter
def thousands(value: int) -> str:
    """1234567 -> "1,234,567"."""
    return f"{value:,}"


@register.filter
def any_counted(buckets: list[dict[str, Any]]) -> bool:
    """Whether any bucket of a histogram holds something."""
    return any(bucket.get("count") for bucket in buckets or [])
