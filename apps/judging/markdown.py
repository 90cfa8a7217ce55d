"""Markdown for untrusted text: prompts, responses, rationales and guidelines.

markdown-it renders with raw HTML turned off (a response that writes `<b>` shows `<b>`), then nh3
sanitizes the result against an allow-list, so no script, event handler, `javascript:` URL,
iframe, style block or image request to another origin can survive either step.

A text is rendered within fixed bounds on what it holds, or not at all (`render_bounded`): one
with more lines, table cells or Markdown punctuation than the bounds, one whose link labels would
make the parser walk further than its step budget, and one that nests lists or quotes past
markdown-it's depth limit (which silently drops the rest of the text) is shown as written,
escaped, under a note that says so. The bounds are counts, never a clock, so a text renders the
same way on every machine and every time; within them a text renders in well under a second.

Fenced code with a language Pygments knows is highlighted here, on the server, as `<span>`s with
Pygments' short token classes (`k`, `s2`, `nb`...), coloured by static/css/code.css. The
allow-list keeps a `class` only where its every name is one we emit: token names on `span`,
`language-<name>` on `code`. Anything else a response writes is text, or is dropped.
"""

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import MethodType
from typing import Any

import nh3
from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.parser_inline import ParserInline
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Past this size a block is shown plain: some lexers' regular expressions grow worse than linearly.
MAX_HIGHLIGHT_CHARS = 50_000
TOKEN_CLASSES = frozenset(STANDARD_TYPES.values()) - {""}
_LANGUAGE_CLASS = re.compile(r"language-[\w+#.-]{1,40}")
_formatter = HtmlFormatter(nowrap=True)


def highlight_code(code: str, language: str, attrs: str = "") -> str:
    """Highlighted HTML for a fenced block, or "" for markdown-it to show it plain and escaped.

    Only a language named exactly (`py`, `python`, `html`...) is highlighted: guessing would cost
    time on every page and colour prose as code.
    """
    if not language or len(code) > MAX_HIGHLIGHT_CHARS:
        return ""
    lexer = _lexer(language)
    if lexer is None:
        return ""
    return highlight(code, lexer, _formatter)


@functools.lru_cache(maxsize=256)
def _lexer(language: str) -> Lexer | None:
    """The lexer of a language name, made once: get_lexer_by_name looks through every lexer
    Pygments has (about a millisecond), and a lexer holds no state between texts."""
    try:
        return get_lexer_by_name(language)
    except ClassNotFound:
        return None


_markdown = MarkdownIt(
    "commonmark",
    {"html": False, "linkify": False, "breaks": True, "highlight": highlight_code},
).enable(["table", "strikethrough"])


def _image_as_link(
    renderer: Any, tokens: Sequence[Token], index: int, options: Any, env: Any
) -> str:
    """An image becomes a link to it, so nothing is fetched but the reference stays visible."""
    token = tokens[index]
    alt = escapeHtml(renderer.renderInlineAsText(token.children or [], options, env))
    src = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a href="{src}">[image: {alt or "no description"}]</a>'


_markdown.add_render_rule("image", _image_as_link)

# A project's guidelines are a document, written in an editor that wraps its lines: a single
# line break there is a soft one (a space), as CommonMark says, and only a blank line starts a
# paragraph. Responses keep theirs (`breaks`): a model's single line breaks are meant.
_document = MarkdownIt(
    "commonmark",
    {"html": False, "linkify": False, "breaks": False, "highlight": highlight_code},
).enable(["table", "strikethrough"])
_document.add_render_rule("image", _image_as_link)

# The bounds of render_bounded. Each grows the parser's work by a few to 40 microseconds per
# unit on one core; bench/render.py shows where a text at the bounds lands.
MAX_LINES = 10_000
MAX_TABLE_BARS = 5_000  # `|`: a table's cells, each an inline parse of its own
# Characters that stop markdown-it's text rule, so that each costs an inline step of its own.
MAX_MARKUP_CHARS = 20_000
_MARKUP_CHARS = re.compile(r"[\n!#$%&*+\-:<=>@\[\\\]^_`{}~]")
# Steps of markdown-it's look-ahead (ParserInline.skipToken: a link label is scanned token by
# token to its end, again for each `[` before it, so that the work grows with their product).
MAX_LOOKAHEAD_STEPS = 100_000
# markdown-it stops parsing blocks at this nesting (a list takes two levels, a quote one) and
# drops the rest of the text; a text that reaches it is shown as written instead.
MAX_NESTING = int(_markdown.options.maxNesting)
_STEPS = "annotate_lookahead_steps"


class _TooMuchWork(Exception):
    pass


def _skip_token_counted(parser: ParserInline, state: StateInline) -> None:
    """ParserInline.skipToken, counting its calls against MAX_LOOKAHEAD_STEPS in `env`."""
    steps = state.env.get(_STEPS, 0) + 1
    if steps > MAX_LOOKAHEAD_STEPS:
        raise _TooMuchWork
    state.env[_STEPS] = steps
    ParserInline.skipToken(parser, state)


for _parser in (_markdown, _document):
    _parser.inline.skipToken = MethodType(_skip_token_counted, _parser.inline)  # type: ignore[method-assign]
_ALIGN_STYLE = re.compile(r' style="text-align:(left|right|center)"')

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
}


def _only_our_classes(element: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: a `class` keeps only the names our own rendering writes.

    With raw HTML off, markdown-it writes a `span` only through highlight_code, inside `code`;
    nh3 cannot check nesting, so the names themselves are the guard. A response cannot borrow the
    page's own classes (say `visually-hidden`) to hide or restyle text.
    """
    if attribute != "class":
        return value
    if element == "span":
        kept = [name for name in value.split() if name in TOKEN_CLASSES]
    elif element == "code":
        kept = [name for name in value.split() if _LANGUAGE_CLASS.fullmatch(name)]
    else:
        kept = []
    return " ".join(kept) or None


@dataclass(frozen=True)
class Rendered:
    html: str  # safe to insert
    # Why the text is shown as written rather than formatted ("" when it is formatted).
    plain_because: str = ""


def _over_bounds(text: str) -> str:
    """Why `text` is past the renderer's bounds, or ""."""
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        return f"it has {lines:,} lines (the limit is {MAX_LINES:,})"
    bars = text.count("|")
    if bars > MAX_TABLE_BARS:
        return f"it has {bars:,} table bars `|` (the limit is {MAX_TABLE_BARS:,})"
    markup = len(_MARKUP_CHARS.findall(text))
    if markup > MAX_MARKUP_CHARS:
        return f"it has {markup:,} Markdown punctuation marks (the limit is {MAX_MARKUP_CHARS:,})"
    return ""


def _too_deep(tokens: Sequence[Token]) -> bool:
    """Whether a block opened at the depth where markdown-it stops and drops the rest."""
    return any(token.nesting == 1 and token.level >= MAX_NESTING - 1 for token in tokens)


def as_written(text: str, because: str) -> str:
    """`text` escaped, in full, under a note that says why it is not formatted."""
    return (
        f'<p class="render-note" role="note">Shown as written, without formatting: '
        f"{escape(because)}.</p>"
        f'<pre class="as-written">{escape(text)}</pre>'
    )


# The fast path: a text that is plain prose, with no character that could start any Markdown
# construct, is paragraphs (split by blank lines) of lines (broken by <br>). It is written here
# directly, byte for byte what markdown-it and nh3 make of it (tests/judging/test_rendering.py
# compares the two over many generated texts), in a few microseconds rather than hundreds.
# Not plain: Markdown's and HTML's punctuation (`!` is left out: it is an image only before `[`),
# control characters, any whitespace but the space and the newline, a line that starts or ends
# with a space (indented code, a hard break), a line that starts with a number and `.` or `)`
# (an ordered list), and blank lines at either end.
_NOT_PLAIN = frozenset("#$%&*+-<=>@[\\]^_`{|}~").union(
    map(chr, [*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0)])
)
_LIST_NUMBER = re.compile(r"\n\d+[.)]")  # after a newline (a literal: a fast scan)
_NUMBER_FIRST = re.compile(r"\d+[.)]")
_BLANK_LINES = re.compile(r"\n{2,}")
# Longer texts take the full path (where the bounds on lines and punctuation are counted).
FAST_MAX_CHARS = 10_000


def plain_html(text: str) -> str | None:
    """The HTML of a plain-prose text (see _NOT_PLAIN), or None for any other text."""
    if (
        not text
        or len(text) > FAST_MAX_CHARS
        or text[0] in " \n"
        or text[-1] in " \n"
        or "\n " in text
        or " \n" in text
        or _NUMBER_FIRST.match(text)
        or _LIST_NUMBER.search(text)
    ):
        return None
    chars = set(text)
    if not chars.isdisjoint(_NOT_PLAIN) or any(c.isspace() and c not in " \n" for c in chars):
        return None
    return "".join(
        f"<p>{paragraph.replace(chr(10), '<br>' + chr(10))}</p>\n"
        for paragraph in (_BLANK_LINES.split(text) if "\n\n\n" in text else text.split("\n\n"))
    )


def render_bounded(text: str) -> Rendered:
    """Safe HTML for `text`, formatted within the bounds above, or shown as written past them.

    Either way every character of the text is on the page.
    """
    html = plain_html(text)
    if html is not None:
        return Rendered(html)
    return render_full(text)


def render_full(text: str, *, document: bool = False) -> Rendered:
    """render_bounded without the fast path: markdown-it, then nh3. `document`: single line
    breaks are soft (guidelines), not kept (responses)."""
    parser = _document if document else _markdown
    because = _over_bounds(text)
    if not because:
        env: dict[str, Any] = {}
        try:
            tokens = parser.parse(text, env)
        except _TooMuchWork:
            because = "its brackets would take the formatter too long to read"
        else:
            if _too_deep(tokens):
                because = (
                    f"it nests lists or quotes deeper than the formatter reads "
                    f"({MAX_NESTING // 2} lists, or {MAX_NESTING} quotes)"
                )
            else:
                return Rendered(_sanitized(parser.renderer.render(tokens, parser.options, env)))
    return Rendered(as_written(text, because), plain_because=because)


def render_markdown(text: str) -> str:
    """Safe HTML for `text` (render_bounded's). Images are not rendered: they would fetch from
    other origins."""
    return render_bounded(text).html


def render_guidelines(text: str) -> str:
    """Safe HTML for a project's guidelines: a document, whose single line breaks are soft
    (the paragraph reflows to the page's width), within the same bounds as every text."""
    return render_full(text, document=True).html


def _sanitized(rendered: str) -> str:
    # markdown-it aligns table cells with a style attribute; keep it as the align attribute.
    html = _ALIGN_STYLE.sub(r' align="\1"', rendered)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        # A link opens in a tab of its own: the judging page (and the work on it) stays.
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
        attribute_filter=_only_our_classes,
    )
