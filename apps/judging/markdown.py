"""Markdown for untrusted text: prompts, responses, rationales and guidelines.

markdown-it renders with raw HTML turned off (a response that writes `<b>` shows `<b>`), then nh3
sanitizes the result against an allow-list, so no script, event handler, `javascript:` URL,
iframe, style block or image request to another origin can survive either step.
"""

import re
from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
    ["table", "strikethrough"]
)


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
    "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
}


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
    )
