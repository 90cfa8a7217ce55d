"""Reading what is judged: highlighted code, conversations, the word diff, and a page that names
no model."""

import random
import re
import unicodedata
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings

from apps.judging.diff import MAX_TOKENS, Segment, marked, word_diff
from apps.judging.markdown import ALLOWED_TAGS, TOKEN_CLASSES, render_markdown
from apps.judging.models import Assignment
from apps.judging.templatetags.comparison import conversation
from tests.conftest import prompt_line

CODE_CSS = Path(settings.BASE_DIR) / "static" / "css" / "code.css"


@pytest.fixture
def ann_client(client, annotators):
    client.force_login(annotators[0])
    return client


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


# The word diff


def joined(segments: list[Segment]) -> str:
    return "".join(segment.text for segment in segments)


def only(segments: list[Segment]) -> list[str]:
    return [segment.text for segment in segments if segment.only_here]


def test_it_marks_the_words_each_side_has_alone():
    diff = word_diff("The cat sat on the mat.", "The dog sat on the mat!")
    assert only(diff.left) == ["cat", "."]
    assert only(diff.right) == ["dog", "!"]
    assert joined(diff.left) == "The cat sat on the mat."
    assert joined(diff.right) == "The dog sat on the mat!"
    assert not diff.too_long


def test_a_changed_run_is_one_mark_without_blank_ends():
    diff = word_diff("keep this\nand that", "keep one more thing\nand that")
    assert only(diff.left) == ["this"]
    assert only(diff.right) == ["one more thing"]


def test_identical_texts_have_nothing_marked():
    text = "Same words,\n\nsame   spacing.\n"
    diff = word_diff(text, text)
    assert diff.left == diff.right == [Segment(text, False)]


def test_spacing_alone_is_not_a_difference():
    diff = word_diff("one two\nthree", "one  two three ")
    assert only(diff.left) == only(diff.right) == []
    assert joined(diff.right) == "one  two three "


def test_empty_texts():
    assert word_diff("", "") == word_diff("", "") and word_diff("", "").left == []
    diff = word_diff("", "  hello world ")
    assert diff.left == []
    assert only(diff.right) == ["hello world"]
    assert joined(diff.right) == "  hello world "
    assert only(word_diff("   ", "").left) == []


def test_it_handles_unicode_words_and_unspaced_scripts():
    diff = word_diff("Ein schöner Tag — ça va? 🙂", "Ein schöner Abend — ça va! 🙂")
    assert only(diff.left) == ["Tag", "?"]
    assert only(diff.right) == ["Abend", "!"]
    diff = word_diff("日本語のテキストです", "日本語の文章です")
    assert only(diff.left) == ["テキスト"]
    assert only(diff.right) == ["文章"]
    # The same letter composed or decomposed is the same word.
    diff = word_diff("café au lait", "cafe\u0301 au lait")
    assert only(diff.left) == only(diff.right) == []


def test_one_changed_word_in_a_long_text_is_marked_alone():
    words = [f"the word{i % 40} of, and" for i in range(300)]
    left = " ".join(words)
    right = " ".join([*words[:150], "the CHANGED of, and", *words[151:]])
    diff = word_diff(left, right)
    assert only(diff.left) == ["word30"]
    assert only(diff.right) == ["CHANGED"]


def test_lines_that_only_wrap_differently_are_the_same():
    diff = word_diff("one two three\nfour five", "one two\nthree four\nfive six")
    assert only(diff.left) == [] and only(diff.right) == ["six"]


def test_a_changed_block_past_the_word_budget_is_marked_whole(monkeypatch):
    left, right = "same line\nalpha beta gamma\nend", "same line\nalpha BETA gamma\nend"
    assert only(word_diff(left, right).left) == ["beta"]
    monkeypatch.setattr("apps.judging.diff.WORD_PAIRS_BUDGET", 8)  # 3 x 3 words is over
    diff = word_diff(left, right)
    assert only(diff.left) == ["alpha beta gamma"] and only(diff.right) == ["alpha BETA gamma"]


def test_the_segments_give_back_every_character():
    rng = random.Random(7)
    alphabet = "ab cé\n\t日本-—,.!?🙂\u0301  _x1"
    for _ in range(300):
        left = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        right = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        diff = word_diff(left, right)
        assert joined(diff.left) == unicodedata.normalize("NFC", left)
        assert joined(diff.right) == unicodedata.normalize("NFC", right)
        for segment in diff.left + diff.right:
            if segment.only_here:
                assert segment.text == segment.text.strip(), segment


def test_it_does_not_compare_past_the_cap():
    long = "word " * (MAX_TOKENS // 2 + 1)
    diff = word_diff(long, long + "more")
    assert diff.too_long
    assert diff.left == [Segment(long, False)] and only(diff.right) == []
    assert word_diff("a b c", "a b d", max_tokens=5).too_long
    assert not word_diff("a b c", "a b d", max_tokens=6).too_long


def test_it_stops_splitting_at_the_cap():
    # A 5 MB text was split whole (a million tokens) before the cap was looked at.
    from apps.judging.diff import _tokens

    leading, tokens = _tokens("  one two three four five", 3)
    assert leading == "  " and tokens == [("one", " "), ("two", " "), ("three", " ")]
    assert len(_tokens("word " * 1_000_000, MAX_TOKENS + 1)[1]) == MAX_TOKENS + 1
    assert word_diff("[" * 1_000_000, "a").too_long
    assert word_diff("a", "[" * 1_000_000).too_long
    assert word_diff("a " * 10, "b " * 10, max_tokens=20).too_long is False
    assert word_diff("a " * 10, "b " * 11, max_tokens=20).too_long


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "plain words only",
        "a*" * 500,
        "[" * 300,
        "snake_case_name = f(x)[0] -> {y: z}!",
        "\x01\x02 control\x1c\x1dseparators\x1f",
        "héllo wörld — “quotes” 東京は晴れ 안녕하세요",
        "nbsp\u00a0between\u2003em spaces\u3000ideographic",
        "tabs\tand\nnewlines\r\n  ",
        "\ud800 a lone surrogate",
    ],
)
def test_the_token_estimate_never_exceeds_the_count(text):
    from apps.judging.diff import _at_least_tokens, _tokens

    assert _at_least_tokens(text) <= len(_tokens(text)[1])


def test_a_text_plainly_past_the_cap_is_not_split():
    from apps.judging.diff import _at_least_tokens

    # Each is known too long from counts at C speed, before the tokenizer runs.
    assert _at_least_tokens("[" * 200_000) == 200_000
    assert _at_least_tokens("a*" * 100_000) == 200_000
    assert _at_least_tokens("word " * 30_000) == 30_000
    assert word_diff("a*" * 10_001, "b").too_long


def test_the_diff_is_rendered_escaped():
    diff = word_diff("<b>same</b> <script>alert(1)</script>", "<b>same</b> plain")
    left, right = marked(diff.left, "left"), marked(diff.right, "right")
    assert "<script" not in left and "<b>" not in left
    assert '<mark class="only-left">' in left and '<mark class="only-right">plain</mark>' in right
    assert {tag for tag, _ in tags_of(left + right)} == {"mark"}
    assert text_of(left) == "<b>same</b> <script>alert(1)</script>"


# Conversations


def messages(*roles: str) -> list[dict[str, str]]:
    return [{"role": role, "content": f"turn {i} ({role})"} for i, role in enumerate(roles)]


def test_a_short_conversation_shows_every_turn():
    convo = conversation(messages("system", "user", "assistant", "user"))
    assert [m.role for m in convo.system] == ["system"]
    assert convo.earlier == []
    assert [m.role for m in convo.recent] == ["user", "assistant", "user"]


def test_a_long_conversation_folds_its_earlier_turns():
    convo = conversation(messages("system", *(["user", "assistant"] * 5), "user"))
    assert len(convo.system) == 1
    assert len(convo.earlier) == 7
    assert [m.content for m in convo.recent] == [
        "turn 8 (assistant)",
        "turn 9 (user)",
        "turn 10 (assistant)",
        "turn 11 (user)",
    ]
    six = conversation(messages(*(["user", "assistant"] * 3)))
    assert six.earlier == [] and len(six.recent) == 6


def test_an_unknown_role_is_shown_but_never_becomes_a_class():
    convo = conversation([{"role": 'x" onclick="alert(1)', "content": "hi"}, {"content": 3}])
    assert [m.kind for m in convo.recent] == ["other", "other"]
    assert convo.recent[0].role == 'x" onclick="alert(1)'
    assert convo.recent[1].content == "3"


# The page


def test_the_page_folds_a_long_conversation(ann_client, import_rows):
    convo = [{"role": "system", "content": "Be brief."}]
    roles = ["user", "assistant", "tool"] * 3
    convo += [{"role": role, "content": f"Turn **{i}**"} for i, role in enumerate(roles)]
    import_rows(prompt_line(prompt=convo))
    html = ann_client.get("/p/demo/").content.decode()
    assert "<summary>System prompt</summary>" in html
    assert "<summary>Show 5 earlier messages</summary>" in html  # 9 turns: the last 4 stay
    earlier = html.split('<details class="earlier">', 1)[1].split("</details>", 1)[0]
    assert "<strong>0</strong>" in earlier and "<strong>4</strong>" in earlier
    assert "<strong>5</strong>" not in earlier
    for role in ("user", "assistant", "tool"):
        assert f'<div class="message {role}"><span class="role">{role}</span>' in html


def test_the_page_carries_both_views_and_the_reading_tools(ann_client, import_rows):
    import_rows(
        {
            "id": "p-1",
            "prompt": "Say hi",
            "candidates": [
                {"id": "a", "text": "Hello **there**, friend", "model": "m1"},
                {"id": "b", "text": "Hello **there**, stranger <i>", "model": "m2"},
            ],
        }
    )
    html = ann_client.get("/p/demo/").content.decode()
    assert 'id="scroll-together"' in html and "Scroll together" in html
    assert 'id="show-diff"' in html and "Show differences" in html
    assert html.count('class="diff-view"') == 2
    # Each pane marks its own words, whichever side the coin put each response on.
    friend, stranger = "friend", "stranger &lt;i&gt;"
    if Assignment.objects.get().left.external_id == "b":
        friend, stranger = stranger, friend
    assert f'<mark class="only-left">{friend}</mark>' in html
    assert f'<mark class="only-right">{stranger}</mark>' in html
    assert "<strong>there</strong>" in html  # the rendered view is there too
    # The htmx card carries the same.
    card = ann_client.get("/p/demo/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in card and card.count('class="diff-view"') == 2


def test_the_page_says_when_responses_are_too_long_to_diff(ann_client, import_rows):
    long = "word " * (MAX_TOKENS // 2 + 10)
    import_rows(
        {
            "id": "p-1",
            "prompt": "Write a lot",
            "candidates": [{"id": "a", "text": long}, {"id": "b", "text": long + "end"}],
        }
    )
    html = ann_client.get("/p/demo/").content.decode()
    assert html.count("Too long to diff") == 2
    assert '<mark class="only-' not in html


SECRETS = {
    "models": ["zebra-secret-model-7b", "Owl Internal 3000"],
    "ids": ["cand-ext-ID-5d1e9", "cand-ext-ID-8a2f0"],
    "params": ["0.123456789", "987654321", "nucleus-secret-param"],
    "metadata": ["meta-secret-provenance"],
}


def test_the_page_names_no_model_id_or_parameter(ann_client, annotators, import_rows):
    import_rows(
        {
            "id": "p-1",
            "prompt": [{"role": "user", "content": "Which model are you?"}],
            "candidates": [
                {
                    "id": SECRETS["ids"][i],
                    "text": f"I am a helpful assistant. Answer {i}.",
                    "model": SECRETS["models"][i],
                    "params": {
                        "temperature": 0.123456789,
                        "seed": 987654321,
                        "sampler": "nucleus-secret-param",
                    },
                    "metadata": {"source": "meta-secret-provenance"},
                }
                for i in range(2)
            ],
        }
    )
    full = ann_client.get("/p/demo/").content.decode()
    card = ann_client.get("/p/demo/", HTTP_HX_REQUEST="true").content.decode()
    assignment = Assignment.objects.get(annotator=annotators[0])
    assert "Answer 0." in full and "Answer 1." in full
    for html in (full, card):
        lowered = html.lower()
        for kind, values in SECRETS.items():
            for value in values:
                assert value.lower() not in lowered, f"the page shows a candidate's {kind}: {value}"
        # No data attribute is about a candidate, whatever its value (checked above).
        data = {name for _, attrs in tags_of(html) for name in attrs if name.startswith("data-")}
        assert "data-assignment" in data
        for name in data:
            assert not re.search(r"model|candidate|param|external|meta|source", name), name
        assert f'data-assignment="{assignment.pk}"' in html
