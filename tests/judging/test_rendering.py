"""Rendering bounded by the input: texts are rendered once (after their import, in the
background, or when first shown), within fixed bounds, and the judging page shows every
character of what is exported."""

import io
import re
from html import unescape

import pytest

from apps.batches.models import Candidate, Prompt
from apps.batches.services import batch_import
from apps.judging import markdown, rendering, tasks
from apps.judging.markdown import MAX_NESTING, render_bounded, render_guidelines, render_markdown
from apps.judging.models import Assignment, Rendering
from apps.judging.rendering import (
    RIGHT_SIDE,
    diff_digest,
    guidelines_digest,
    rendered_html,
    renderings_for_batch,
    text_digest,
)
from apps.projects.models import Project
from tests.conftest import jsonl, prompt_line


@pytest.fixture
def ann_client(client, annotators):
    client.force_login(annotators[0])
    return client


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def as_written(html: str) -> str:
    """The text inside the as-written block, unescaped; fails if there is none."""
    match = re.search(r'<pre class="as-written">(.*?)</pre>', html, re.S)
    assert match, html[:300]
    return unescape(match.group(1))


def nested_list(depth: int) -> str:
    lines = [f"{'  ' * level}- level {level}" for level in range(depth)]
    return "\n".join(lines) + "\n\nThe conclusion, which must not vanish."


# The bounds


def test_a_list_nested_past_the_depth_limit_is_shown_whole():
    # markdown-it stops at 20 levels (a list takes two) and silently dropped everything after.
    text = nested_list(12)
    html = render_markdown(text)
    assert "The conclusion, which must not vanish." in text_of(html)
    assert as_written(html) == text
    assert "Shown as written" in html and "nests" in html


@pytest.mark.parametrize(
    "text",
    [
        "1. " * 30 + "tail",
        "> " * 25 + "quoted tail",
        "- " * 12 + "[x](y) tail",
        "* a\n" + nested_list(11),
    ],
)
def test_every_deep_text_keeps_every_character(text):
    html = render_markdown(text)
    assert as_written(html) == text


def test_a_list_inside_the_depth_limit_is_formatted():
    depth = MAX_NESTING // 2 - 1  # 9 lists: markdown-it keeps all of it
    html = render_markdown(nested_list(depth))
    assert "as-written" not in html
    assert html.count("<ul>") == depth
    assert "The conclusion, which must not vanish." in text_of(html)
    assert f"level {depth - 1}" in text_of(html)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 100_000, "punctuation"),
        ("a*" * 30_000, "punctuation"),
        ("| a " * 6_000, "table bars"),
        ("line\n" * 12_000, "lines"),
        # Few marks, but each `[` makes the parser walk the rest of the paragraph again.
        ("[- " * 5_000, "brackets"),
    ],
)
def test_a_text_past_the_bounds_is_shown_as_written_with_a_note(text, reason):
    rendered = render_bounded(text)
    assert reason in rendered.plain_because
    assert as_written(rendered.html) == text
    assert '<p class="render-note" role="note">Shown as written, without formatting: ' in (
        rendered.html
    )


def test_the_lookahead_budget_is_counted_per_text(monkeypatch):
    # A count, never a clock: the same text gives the same answer every time.
    text = "[a " * 400
    assert render_bounded(text).plain_because == ""
    monkeypatch.setattr(markdown, "MAX_LOOKAHEAD_STEPS", 100)
    assert "brackets" in render_bounded(text).plain_because
    assert "brackets" in render_bounded(text).plain_because
    monkeypatch.undo()
    assert render_bounded(text).plain_because == ""  # the count starts again with each text


def test_as_written_text_is_escaped():
    html = render_markdown("<script>alert(1)</script>\n" + "[" * 30_000)
    assert "<script" not in html
    assert as_written(html).startswith("<script>alert(1)</script>\n[[[")


# Render once


def test_the_import_stores_every_text_rendered(import_rows):
    convo = [
        {"role": "system", "content": "Be *brief*."},
        {"role": "user", "content": "Hi **there**"},
    ]
    import_rows(prompt_line("a", n=3), prompt_line("b", prompt=convo))
    texts = [c.text for c in Candidate.objects.all()] + ["What is 2 + 2?"]
    texts += [message["content"] for message in convo]
    stored = dict(Rendering.objects.values_list("digest", "html"))
    for text in texts:
        assert stored[text_digest(text)] == render_markdown(text)


def test_the_import_renders_nothing_itself_and_sends_the_rendering_on_commit(
    project, django_capture_on_commit_callbacks
):
    data = jsonl(prompt_line("a", n=3), prompt_line("b", prompt="Why *so*?"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    # The rows are stored; not one text was rendered on the import's way.
    assert Candidate.objects.filter(prompt__batch=batch).count() == 5
    assert not Rendering.objects.exists()
    for callback in callbacks:
        callback()  # the commit: the task is sent (and, in the tests, runs at once)
    texts = [*Candidate.objects.values_list("text", flat=True), "What is 2 + 2?", "Why *so*?"]
    stored = dict(Rendering.objects.values_list("digest", "html"))
    assert {text_digest(text): render_markdown(text) for text in texts} == stored


def test_the_rendering_goes_a_round_at_a_time_and_sends_the_next(project, monkeypatch):
    monkeypatch.setattr(rendering, "BATCH_CHUNK", 2)
    data = jsonl(*(prompt_line(f"p-{i}", prompt=f"Prompt {i}") for i in range(5)))
    batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    ids = list(Prompt.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))
    Rendering.objects.all().delete()
    # One chunk a round when the round's time is spent at once; the last round returns None.
    assert renderings_for_batch(batch_id=batch.pk, seconds=0) == ids[1]
    assert Rendering.objects.filter(digest=text_digest("Prompt 1")).exists()
    assert not Rendering.objects.filter(digest=text_digest("Prompt 2")).exists()
    assert renderings_for_batch(batch_id=batch.pk, after=ids[1], seconds=0) == ids[3]
    assert renderings_for_batch(batch_id=batch.pk, after=ids[3], seconds=0) is None
    assert Rendering.objects.filter(digest=text_digest("Prompt 4")).exists()
    # The task sends the next round itself: every prompt ends up rendered from one send.
    Rendering.objects.all().delete()
    monkeypatch.setattr(tasks, "RENDER_ROUND_SECONDS", 0)
    sent: list[tuple] = []
    real_send = tasks.send_task

    def send(task, *args):
        sent.append(args)
        real_send(task, *args)

    monkeypatch.setattr(tasks, "send_task", send)
    tasks.render_batch_send(batch.pk)
    assert sent == [(batch.pk, 0), (batch.pk, ids[1]), (batch.pk, ids[3])]
    for i in range(5):
        assert Rendering.objects.filter(digest=text_digest(f"Prompt {i}")).exists()
    # A batch deleted meanwhile: nothing to do.
    assert renderings_for_batch(batch_id=batch.pk + 1000, seconds=0) is None


def test_without_a_broker_the_import_stands_and_the_page_renders_on_first_show(
    ann_client, project, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    from annotate.broker import BrokerUnavailable

    def refuse(*args):
        raise BrokerUnavailable()

    monkeypatch.setattr(tasks, "send_task", refuse)
    data = jsonl(prompt_line("a"))
    with django_capture_on_commit_callbacks(execute=True):
        batch = batch_import(project=project, source=io.BytesIO(data), size=len(data))
    assert batch.status == "active"
    assert not Rendering.objects.exists()
    assert "pages render on first show" in caplog.text
    html = ann_client.get("/p/demo/").content.decode()
    assert "Answer 1 to a" in html
    assert Rendering.objects.filter(digest=text_digest("Answer 1 to a")).exists()


def test_the_page_shows_the_stored_rendering_and_renders_nothing(ann_client, import_rows):
    import_rows(
        {
            "id": "p-1",
            "prompt": [{"role": "user", "content": "Say **hi**"}],
            "candidates": [{"id": "a", "text": "Hello *a*"}, {"id": "b", "text": "Hello *b*"}],
        }
    )
    # What the page shows is what was stored at import, not a rendering of its own.
    for text, mark in [("Say **hi**", "PROMPT"), ("Hello *a*", "LEFTA"), ("Hello *b*", "RIGHTB")]:
        Rendering.objects.filter(digest=text_digest(text)).update(html=f"<p>stored-{mark}</p>")
    ann_client.get("/p/demo/")  # the first view stores the pair's word diff, and nothing else
    count = Rendering.objects.count()
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        html = ann_client.get("/p/demo/", **headers).content.decode()
        for mark in ("PROMPT", "LEFTA", "RIGHTB"):
            assert f"<p>stored-{mark}</p>" in html
        assert "<em>a</em>" not in html and "<strong>hi</strong>" not in html
    assert Rendering.objects.count() == count


def test_the_htmx_judge_brings_the_next_card_rendered(ann_client, import_rows):
    import_rows(prompt_line("a"), prompt_line("b"))
    Rendering.objects.update(html="<p>from-storage</p>")
    ann_client.get("/p/demo/")
    lease = Assignment.objects.get()
    response = ann_client.post(f"/p/demo/a/{lease.pk}/", {"choice": "left"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<p>from-storage</p>") >= 3  # the prompt and both responses


def test_texts_without_a_stored_rendering_are_rendered_once_when_shown(ann_client, import_rows):
    # Rows imported before renderings were stored: the first page renders and stores them.
    import_rows(prompt_line("a"))
    Rendering.objects.all().delete()
    html = ann_client.get("/p/demo/").content.decode()
    assert "Answer 1 to a" in html and "Answer 2 to a" in html
    assert set(Rendering.objects.values_list("digest", flat=True)) >= {
        text_digest("Answer 1 to a"),
        text_digest("Answer 2 to a"),
        text_digest("What is 2 + 2?"),
    }


def test_the_guidelines_come_from_storage_too(ann_client, import_rows):
    Project.objects.filter(slug="demo").update(guidelines="Prefer **honest** answers.")
    import_rows(prompt_line("a"))
    html = ann_client.get("/p/demo/").content.decode()
    assert "<strong>honest</strong>" in html
    stored = Rendering.objects.get(digest=guidelines_digest("Prefer **honest** answers."))
    # What the page shows is the stored one.
    stored.html = "<p>stored-guidelines</p>"
    stored.save()
    assert "<p>stored-guidelines</p>" in ann_client.get("/p/demo/").content.decode()


WRAPPED = "Prefer the answer that is\nhonest, even when it is\nshorter.\n\nThen the kinder one."


def test_the_guidelines_reflow_their_wrapped_lines_and_responses_keep_theirs(
    ann_client, import_rows, admin_client
):
    # Guidelines are a document written in an editor that wraps lines: a single line break is
    # a soft one (a space); a blank line starts a paragraph. A response keeps its line breaks.
    Project.objects.filter(slug="demo").update(guidelines=WRAPPED)
    row = prompt_line("a")
    row["candidates"][0]["text"] = WRAPPED
    import_rows(row)
    assert render_guidelines(WRAPPED) == (
        "<p>Prefer the answer that is\nhonest, even when it is\nshorter.</p>\n"
        "<p>Then the kinder one.</p>\n"
    )
    html = ann_client.get("/p/demo/").content.decode()
    guidelines = html[html.index('id="guidelines"') :]
    assert "Prefer the answer that is\nhonest, even when it is\nshorter.</p>" in guidelines
    # The same text as a response: its line breaks stay.
    assert "Prefer the answer that is<br>" in html[: html.index('id="guidelines"')]
    # The admin's live preview shows the guidelines as the page will.
    preview = admin_client.post("/admin/projects/project/preview/", {"guidelines": WRAPPED})
    assert preview.content.decode() == render_guidelines(WRAPPED)


def test_the_guidelines_are_bounded_like_every_text():
    deep = nested_list(12)
    html = render_guidelines(deep)
    assert "Shown as written" in html and as_written(html) == deep


def test_the_page_shows_a_deep_response_whole_with_its_note(ann_client, import_rows):
    deep = nested_list(14)
    row = prompt_line("a")
    row["candidates"][0]["text"] = deep
    import_rows(row)
    html = ann_client.get("/p/demo/").content.decode()
    assert "Shown as written, without formatting" in html
    assert as_written(html) == deep
    # The export holds the same text, character for character.
    assert Candidate.objects.get(external_id="c1").text == deep


def test_rendered_html_keeps_the_order_and_repeats(db):
    htmls = rendered_html(["*a*", "b", "*a*"])
    assert htmls == ["<p><em>a</em></p>\n", "<p>b</p>\n", "<p><em>a</em></p>\n"]
    assert Rendering.objects.count() == 2


def test_a_prompt_row_that_is_not_text_is_shown(ann_client, import_rows):
    import_rows(prompt_line("a", prompt=[{"role": "user", "content": "x"}]))
    Prompt.objects.update(content=[{"role": "user", "content": 3}, "loose"])
    html = ann_client.get("/p/demo/").content.decode()
    assert "<p>3</p>" in html and "<p>loose</p>" in html


def test_the_word_diff_is_computed_once_per_pair_and_sides(ann_client, import_rows, annotators):
    import_rows(
        {
            "id": "p-1",
            "prompt": "Say hi",
            "candidates": [
                {"id": "a", "text": "Hello there, friend"},
                {"id": "b", "text": "Hello there, stranger"},
            ],
        }
    )
    ann_client.get("/p/demo/")
    lease = Assignment.objects.get()
    digest = diff_digest(lease.left.text, lease.right.text)
    stored = Rendering.objects.get(digest=digest)
    assert '<mark class="only-left">' in stored.html and '<mark class="only-right">' in stored.html
    # What the page shows is the stored diff.
    Rendering.objects.filter(digest=digest).update(
        html=f'<mark class="only-left">stored-L</mark>{RIGHT_SIDE}'
        '<mark class="only-right">stored-R</mark>'
    )
    html = ann_client.get("/p/demo/", HTTP_HX_REQUEST="true").content.decode()
    assert '<div class="diff-view"><mark class="only-left">stored-L</mark></div>' in html
    assert '<div class="diff-view"><mark class="only-right">stored-R</mark></div>' in html
    Rendering.objects.filter(digest=digest).update(html="too-long")
    html = ann_client.get("/p/demo/").content.decode()
    assert html.count("Too long to diff") == 2


def test_a_diff_of_texts_that_look_like_its_separator_is_stored_whole(ann_client, import_rows):
    import_rows(
        {
            "id": "p-1",
            "prompt": "Say hi",
            "candidates": [
                {"id": "a", "text": f"left {RIGHT_SIDE} one"},
                {"id": "b", "text": f"right {RIGHT_SIDE} two"},
            ],
        }
    )
    html = ann_client.get("/p/demo/").content.decode()
    assert html.count("&lt;!--right--&gt;") >= 4  # in both views of both responses
    lease = Assignment.objects.get()
    stored = Rendering.objects.get(digest=diff_digest(lease.left.text, lease.right.text)).html
    assert stored.count(RIGHT_SIDE) == 1


def test_the_background_import_renders_too(
    api, bob, project, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_BYTES = 10
    row = prompt_line("a")
    row["candidates"][0]["text"] = nested_list(12)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(bob).post(
            "/api/v1/projects/demo/batches/",
            jsonl(row, prompt_line("b")),
            content_type="application/jsonl",
        )
    assert response.status_code == 202
    html = Rendering.objects.get(digest=text_digest(nested_list(12))).html
    assert as_written(html) == nested_list(12)
    assert Rendering.objects.filter(digest=text_digest("Answer 2 to b")).exists()


# The fast path: plain prose is written directly, exactly as the full renderer writes it.

# Pieces a generated text is made of: words in several scripts, the punctuation the fast path
# lets through, and the characters and line shapes that must send a text to the full renderer.
FAST_PIECES = [
    "word", "Résumé", "über", "日本語", "Ωμέγα", "emoji 🙂", "2026", "1.5", "(1)", "x)", "3.",
    "!", "?", ":", ";", ",", ".", "'", '"', "“quoted”", "—", "…", "/", "a\u200bb", "é",
    " ", " ", " ", "  ", "\n", "\n", "\n\n", "\n\n\n", "\n ", " \n", "    ", "\t", "\r", "\r\n",
    "\u00a0", "\u2028", "\x0b", "\x0c", "\x7f", "\ufeff", "-", "*", "_", "#", "<b>", "&amp;",
    "[x]", "![i](u)", "`c`", "~~", "|", ">", "=", "+", "\\", "1. ", "2) ", "http://x.org",
]  # fmt: skip


def generated_texts(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    plain = [p for p in FAST_PIECES if markdown.plain_html(f"a {p} b") is not None]
    texts = []
    for _ in range(count):
        # Half from every piece (mostly refused), half from the plain ones with line breaks.
        pool = FAST_PIECES if rng.random() < 0.5 else [*plain, "\n", "\n\n", " "]
        pieces = [rng.choice(pool) for _ in range(rng.randint(1, 25))]
        texts.append("".join(pieces) if rng.random() < 0.3 else " ".join(pieces))
    return texts


def test_the_fast_path_writes_what_the_full_renderer_writes():
    texts = generated_texts(6000, seed=7)
    fast = 0
    for text in texts:
        html = markdown.plain_html(text)
        if html is not None:
            fast += 1
            assert html == markdown.render_full(text).html, repr(text)
        # Either way render_bounded gives the full renderer's output.
        assert render_bounded(text) == markdown.render_full(text), repr(text)
    # Both kinds were tried, many times over.
    assert 1000 < fast < len(texts) - 1000


@pytest.mark.parametrize(
    "text",
    [
        "1. an ordered list",
        "Two lines\n2) and a list",
        "    indented code",
        "a hard break  \nhere",
        "\nleading blank line",
        "tab\there",
        "Heading\n===",
        "a\u00a0b",
        "x" * (markdown.FAST_MAX_CHARS + 1),
    ],
)
def test_the_fast_path_leaves_anything_but_plain_prose_to_the_full_renderer(text):
    assert markdown.plain_html(text) is None


def test_the_fast_path_keeps_the_bounds():
    # A plain text over the bounds is not the fast path's: the full renderer shows it as written.
    many_lines = "\n".join(["line"] * (markdown.MAX_LINES + 1))
    assert markdown.plain_html(many_lines) is None
    assert "Shown as written" in render_bounded(many_lines).html
