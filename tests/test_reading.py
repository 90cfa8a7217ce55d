"""Reading what is judged: highlighted code."""

import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings

from apps.judging.markdown import ALLOWED_TAGS, TOKEN_CLASSES, render_markdown

CODE_CSS = Path(settings.BASE_DIR) / "static" / "css" / "code.css"


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = TagCollector()
    collector.feed(html)
    return collector.tags


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


# Highlighting


def test_it_highlights_a_fenced_block_with_a_known_language():
    html = render_markdown('```python\ndef f(x):\n    return "hi"  # note\n```')
    assert html.startswith('<pre><code class="language-python"><span class="k">def</span>')
    assert '<span class="nf">f</span>' in html
    assert '<span class="s2">"hi"</span>' in html
    assert '<span class="c1"># note</span>' in html
    assert "style=" not in html


def test_it_shows_an_unknown_or_missing_language_plain_and_escaped():
    for fence in ("```no-such-language", "```"):
        html = render_markdown(f"{fence}\n<b>bold</b> & more\n```")
        assert "<span" not in html
        assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
        assert "<b>" not in html


def test_highlighted_html_is_text_not_markup():
    html = render_markdown("```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```")
    assert '<code class="language-html">' in html
    assert '<span class="nt">script</span>' in html  # highlighted...
    assert "<script" not in html and "<img" not in html  # ...never live
    assert text_of(html).strip() == "<script>alert(1)</script>\n<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    "info",
    [
        '"><script>alert(1)</script>',
        '" onmouseover="alert(1)',
        "html onclick=alert(1)",
        "python><img src=x onerror=alert(1)>",
        "javascript:alert(1)",
        "x" * 200,
    ],
)
def test_a_hostile_language_name_injects_nothing(info):
    html = render_markdown(f"```{info}\nprint(1)\n```")
    for tag, attrs in tags_of(html):
        assert tag in {"pre", "code", "span"}, tag
        assert set(attrs) <= {"class"}, (tag, attrs)
        for name in (attrs.get("class") or "").split():
            if tag == "code":
                assert re.fullmatch(r"language-[\w+#.-]{1,40}", name), name
            else:
                assert name in TOKEN_CLASSES, name
    assert "print(1)" in text_of(html)


def test_only_pygments_token_classes_survive_on_spans():
    # markdown-it never writes these spans itself (raw HTML is off); the filter is the backstop.
    from apps.judging.markdown import _only_our_classes

    assert _only_our_classes("span", "class", "k s2") == "k s2"
    assert _only_our_classes("span", "class", "k visually-hidden") == "k"
    assert _only_our_classes("span", "class", "choices") is None
    assert _only_our_classes("code", "class", "language-py") == "language-py"
    assert _only_our_classes("code", "class", 'language-"><script>') is None
    assert _only_our_classes("p", "class", "k") is None
    assert _only_our_classes("a", "href", "https://example.com") == "https://example.com"


@pytest.mark.parametrize(
    "payload",
    [
        '<span class="visually-hidden">x</span>',
        '<span class="k" onclick="alert(1)">x</span>',
        '<span style="color:red">x</span>',
        '<code class="choices">x</code>',
        "`<span class=k>inline</span>`",
    ],
)
def test_a_response_cannot_write_its_own_spans_or_classes(payload):
    html = render_markdown(payload)
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_TAGS
        assert "class" not in attrs and "style" not in attrs and "onclick" not in attrs
    assert payload.strip("`") in text_of(html)  # shown as text


def test_a_huge_block_is_shown_plain():
    code = "x = 1\n" * 10_000
    html = render_markdown(f"```python\n{code}```")
    assert "<span" not in html and html.count("x = 1") == 10_000


def test_the_code_stylesheet_colours_the_token_classes_without_inline_styles():
    css = CODE_CSS.read_text()
    for name in ("k", "s2", "c1", "nf", "mi"):
        assert re.search(rf"^\.md pre code \.{name} \{{ color: #[0-9A-Fa-f]{{6}}", css, re.M), name
    html = render_markdown("```js\nconst a = 'b'; // c\n```")
    assert "style" not in html
