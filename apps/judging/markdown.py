"""Markdown for untrusted text: prompts, responses, rationales and guidelines.

markdown-it renders with raw HTML turned off (a response that writes `<b>` shows `<b>`), then nh3
sanitizes the result against an allow-list, so no script, event handler, `javascript:` URL,
iframe, style block or image request to another origin can survive either step.

Fenced code with a language Pygments knows is highlighted here, on the server, as `<span>`s with
Pygments' short token classes (`k`, `s2`, `nb`...), coloured by static/css/code.css. The
allow-list keeps a `class` only where its every name is one we emit: token names on `span`,
`language-<name>` on `code`. Anything else a response writes is text, or is dropped.
"""

import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
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
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, _formatter)


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


def render_markdown(text: str) -> str:
    """Safe HTML for `text`. Images are not rendered: they would fetch from other origins."""
    # markdown-it aligns table cells with a style attribute; keep it as the align attribute.
    html = _ALIGN_STYLE.sub(r' align="\1"', _markdown.render(text))
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        attribute_filter=_only_our_classes,
    )
