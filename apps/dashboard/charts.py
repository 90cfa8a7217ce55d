"""Small server-rendered SVG charts: no script, no build step, no request to anyone.

Every chart is an `<svg role="img">` with a `<title>` and a `<desc>` that say what it shows, a
`<title>` on each mark (its exact value, as a tooltip and for screen readers), and the page puts
the same values in a table beside it. Every string is escaped (`format_html`): project, batch,
model and user names are chosen by people and are never markup. Colours are SVG attributes,
not styles, so the page's Content-Security-Policy (no inline styles) holds; text colours have
at least 4.5:1 contrast on white, marks at least 3:1.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

TEXT = "#1b1f24"  # 16:1 on white
MUTED = "#57606a"  # 6.1:1
GRID = "#d0d7de"
BAR = "#0b5cad"  # 6.4:1
DONE = "#1a7f37"  # 5.1:1
IN_PROGRESS = "#9a6700"  # 4.9:1
OPEN = "#6e7781"  # 4.6:1
LABEL_CHARS = 22
# A 12 px system-ui character is at most this wide on average (Latin text); used to leave room
# for labels, since the server cannot measure text.
CHAR_W = 7.2
# The widest a column of column_chart gets: with one day, one bar no longer fills the chart.
MAX_BAR_W = 48.0


def _join(parts: Iterable[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


def _num(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _short(name: str, limit: int = LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _svg(uid: str, title: str, desc: str, width: float, height: float, body: SafeString) -> str:
    return format_html(
        '<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" '
        'width="{}" height="{}" aria-labelledby="{}-title {}-desc" '
        'font-family="system-ui, sans-serif">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        _num(width),
        _num(height),
        _num(width),
        _num(height),
        uid,
        uid,
        uid,
        title,
        uid,
        desc,
        body,
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    fill: str = TEXT,
    size: int = 12,
    weight: str = "normal",
) -> SafeString:
    return format_html(
        '<text x="{}" y="{}" text-anchor="{}" fill="{}" font-size="{}" font-weight="{}">{}</text>',
        _num(x),
        _num(y),
        anchor,
        fill,
        size,
        weight,
        text,
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str) -> SafeString:
    return format_html(
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
        _num(x),
        _num(y),
        _num(max(w, 0)),
        _num(max(h, 0)),
        fill,
        tip,
    )


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1) -> SafeString:
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"/>',
        _num(x1),
        _num(y1),
        _num(x2),
        _num(y2),
        stroke,
        _num(width),
    )


def column_chart(
    uid: str,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    values: Sequence[int],
    unit: str,
    label_every: int = 1,
    width: float = 720,
    height: float = 200,
) -> str:
    """Vertical bars (judgments per day, a histogram), the largest value marked on its axis."""
    left, right, top, bottom = 44.0, 8.0, 16.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(values, default=0) or 1
    step = plot_w / max(len(values), 1)
    parts = [
        _line(left, top + plot_h, width - right, top + plot_h, MUTED),
        _line(left, top, width - right, top, GRID),
        _text(left - 6, top + 4, f"{peak:,}", anchor="end", fill=MUTED, size=11),
        _text(left - 6, top + plot_h, "0", anchor="end", fill=MUTED, size=11),
    ]
    show_values = len(values) <= 16
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        bar_h = plot_h * value / peak
        x = left + i * step
        bar_w = min(step * 0.76, MAX_BAR_W)
        parts.append(
            _rect(
                x + (step - bar_w) / 2,
                top + plot_h - bar_h,
                bar_w,
                bar_h,
                BAR,
                f"{label}: {value:,} {unit}",
            )
        )
        if show_values and value:
            parts.append(
                _text(
                    x + step / 2, top + plot_h - bar_h - 3, f"{value:,}", anchor="middle", size=11
                )
            )
        if i % label_every == 0 or i == len(values) - 1:
            parts.append(
                _text(x + step / 2, top + plot_h + 16, label, anchor="middle", fill=MUTED, size=11)
            )
    return _svg(uid, title, desc, width, height, _join(parts))


def progress_chart(uid: str, *, title: str, desc: str, batches: Sequence[dict[str, Any]]) -> str:
    """One stacked bar per batch: done, in progress and open comparisons."""
    width, row_h, label_w, right_w = 720.0, 28.0, 170.0, 150.0
    legend_h = 24.0
    height = legend_h + row_h * max(len(batches), 1) + 4
    plot_w = width - label_w - right_w
    parts = []
    for i, (name, colour) in enumerate(
        (("done", DONE), ("in progress", IN_PROGRESS), ("open", OPEN))
    ):
        x = label_w + i * 110
        parts.append(_rect(x, 4, 12, 12, colour, name))
        parts.append(_text(x + 16, 14, name, fill=TEXT, size=12))
    for i, batch in enumerate(batches):
        y = legend_h + i * row_h
        parts.append(_text(label_w - 8, y + 17, _short(batch["name"]), anchor="end"))
        total = batch["comparisons"] or 1
        x = label_w
        for key, colour, name in (
            ("done", DONE, "done"),
            ("in_progress", IN_PROGRESS, "in progress"),
            ("open", OPEN, "open"),
        ):
            w = plot_w * batch[key] / total
            parts.append(
                _rect(x, y + 4, w, row_h - 10, colour, f"{batch['name']}: {batch[key]:,} {name}")
            )
            x += w
        parts.append(
            _text(
                label_w + plot_w + 8,
                y + 17,
                f"{batch['done']:,} of {batch['comparisons']:,} done",
                fill=TEXT,
                size=12,
            )
        )
    return _svg(uid, title, desc, width, height, _join(parts))


def bar_chart(
    uid: str,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    values: Sequence[float],
    unit: str,
) -> str:
    """Horizontal bars, one per row (judgments per annotator)."""
    width, row_h, label_w, right_w = 720.0, 22.0, 170.0, 110.0
    height = row_h * max(len(values), 1) + 4
    plot_w = width - label_w - right_w
    peak = max(values, default=0) or 1
    parts = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = i * row_h
        parts.append(_text(label_w - 8, y + 15, _short(label), anchor="end"))
        parts.append(
            _rect(
                label_w, y + 4, plot_w * value / peak, row_h - 8, BAR, f"{label}: {value:,} {unit}"
            )
        )
        parts.append(_text(label_w + plot_w * value / peak + 6, y + 15, f"{value:,}", size=12))
    return _svg(uid, title, desc, width, height, _join(parts))


def interval_chart(uid: str, *, title: str, desc: str, rows: Sequence[dict[str, Any]]) -> str:
    """A point and its 95% interval per model (the Bradley-Terry leaderboard)."""
    width, row_h, label_w, right_w = 720.0, 26.0, 170.0, 150.0
    axis_h = 22.0
    height = row_h * max(len(rows), 1) + axis_h + 6
    plot_w = width - label_w - right_w
    lows: list[float] = [row["ci95"][0] for row in rows] or [0.0]
    highs: list[float] = [row["ci95"][1] for row in rows] or [1.0]
    low, high = min(lows), max(highs)
    if high - low < 1:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad

    def x_of(value: float) -> float:
        return label_w + plot_w * (value - low) / (high - low)

    parts = []
    if low < 1000 < high:
        parts.append(_line(x_of(1000), 0, x_of(1000), row_h * len(rows), GRID))
    for i, row in enumerate(rows):
        y = i * row_h + row_h / 2
        lo, hi = row["ci95"]
        parts.append(_text(label_w - 8, y + 4, _short(row["model"]), anchor="end"))
        parts.append(_line(x_of(lo), y, x_of(hi), y, BAR, 2))
        parts.append(_line(x_of(lo), y - 5, x_of(lo), y + 5, BAR, 2))
        parts.append(_line(x_of(hi), y - 5, x_of(hi), y + 5, BAR, 2))
        parts.append(
            format_html(
                '<circle cx="{}" cy="{}" r="5" fill="{}"><title>{}</title></circle>',
                _num(x_of(row["score"])),
                _num(y),
                TEXT,
                f"{row['model']}: {row['score']} (95% interval {lo} to {hi})",
            )
        )
        parts.append(
            _text(label_w + plot_w + 8, y + 4, f"{row['score']:.0f} ({lo:.0f} to {hi:.0f})")
        )
    axis_y = row_h * len(rows) + 4
    parts.append(_line(label_w, axis_y, label_w + plot_w, axis_y, MUTED))
    for value in (low + pad, (low + high) / 2, high - pad):
        parts.append(
            _text(x_of(value), axis_y + 15, f"{value:.0f}", anchor="middle", fill=MUTED, size=11)
        )
    return _svg(uid, title, desc, width, height, _join(parts))


# The heat map's darkest tint: light enough that its dark text keeps 4.5:1 on every cell.
HEAT_MAX_TINT = 0.6


def heat_fill(rate: float) -> str:
    """The fill for a win rate: red below one half, blue above, white at one half."""
    strength = min(abs(rate - 0.5) * 2, 1.0) * HEAT_MAX_TINT
    base = (11, 92, 173) if rate >= 0.5 else (180, 35, 24)
    fill = tuple(round(255 + (channel - 255) * strength) for channel in base)
    return "#{:02x}{:02x}{:02x}".format(*fill)


def heat_map(
    uid: str,
    *,
    title: str,
    desc: str,
    names: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    votes: Sequence[Sequence[int]],
) -> str:
    """The win-rate matrix: how often the row's model beat the column's model, in each cell.

    The column labels are turned 45 degrees up and to the right, so the chart is widened by what
    the last one reaches past its column, and its corner says which way the matrix reads."""
    cell, label_w, top = 56.0, 170.0, 120.0
    column_labels = [_short(name, 18) for name in names]
    # A label turned 45 degrees reaches its length times cos(45°) to the right of its start.
    reach = max((len(label) * CHAR_W * 0.71 for label in column_labels), default=0.0)
    right = max(reach - cell / 2, 0.0) + 8
    width = label_w + cell * len(names) + right
    height = top + cell * len(names) + 8
    parts = [_text(label_w - 8, top - 8, "row beat column", anchor="end", weight="bold")]
    for j, (name, label) in enumerate(zip(names, column_labels, strict=True)):
        x = label_w + j * cell + cell / 2
        parts.append(
            format_html(
                '<text x="{}" y="{}" fill="{}" font-size="12" text-anchor="start" '
                'transform="rotate(-45 {} {})"><title>{}</title>{}</text>',
                _num(x),
                _num(top - 8),
                TEXT,
                _num(x),
                _num(top - 8),
                name,
                label,
            )
        )
    for i, row_name in enumerate(names):
        y = top + i * cell
        parts.append(_text(label_w - 8, y + cell / 2 + 4, _short(row_name), anchor="end"))
        for j, column_name in enumerate(names):
            x = label_w + j * cell
            rate = matrix[i][j]
            if rate is None:
                tip = (
                    f"{row_name} against itself"
                    if i == j
                    else f"{row_name} and {column_name} never met"
                )
                parts.append(_rect(x + 1, y + 1, cell - 2, cell - 2, "#eef1f4", tip))
                parts.append(
                    _text(x + cell / 2, y + cell / 2 + 4, "-", anchor="middle", fill=MUTED)
                )
                continue
            fill = heat_fill(rate)
            tip = f"{row_name} beat {column_name} in {rate:.0%} of {votes[i][j]:,} votes"
            parts.append(_rect(x + 1, y + 1, cell - 2, cell - 2, fill, tip))
            parts.append(_text(x + cell / 2, y + cell / 2 + 4, f"{rate:.0%}", anchor="middle"))
    return _svg(uid, title, desc, width, height, _join(parts))
