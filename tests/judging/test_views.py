"""The annotator's pages, with and without htmx."""

import re
from html.parser import HTMLParser

import pytest
from django.utils.html import escape

from apps.judging.markdown import ALLOWED_TAGS, render_markdown
from apps.judging.models import Assignment, Judgment, Skip
from tests.conftest import prompt_line


@pytest.fixture
def ann_client(client, annotators):
    client.force_login(annotators[0])
    return client


def current_assignment(html: str) -> int:
    match = re.search(r'data-assignment="(\d+)"', html)
    assert match, html
    return int(match.group(1))


def test_it_sends_anonymous_users_to_log_in(client, batch):
    response = client.get("/p/demo/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_home_lists_the_projects_with_progress(ann_client, batch):
    response = ann_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Demo" in html and 'href="/p/demo/"' in html
    assert "0 / 15" in html


def test_home_does_not_list_other_projects(client, charlie, batch):
    client.force_login(charlie)
    html = client.get("/").content.decode()
    assert "/p/demo/" not in html
    assert "not a member" in html


def test_non_members_cannot_open_the_page(client, charlie, batch):
    client.force_login(charlie)
    assert client.get("/p/demo/").status_code == 404


def test_the_page_shows_the_prompt_and_both_candidates(ann_client, batch):
    response = ann_client.get("/p/demo/")
    html = response.content.decode()
    assignment = Assignment.objects.get(pk=current_assignment(html))
    assert assignment.left.text in html and assignment.right.text in html
    assert "What is 2 + 2?" in html
    for label in ("Left is better", "Right is better", "Tie", "Both bad"):
        assert label in html
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_page_offers_only_the_projects_choices(ann_client, project, batch):
    project.allow_tie = project.allow_both_bad = False
    project.save()
    html = ann_client.get("/p/demo/").content.decode()
    assert 'value="tie"' not in html and 'value="both_bad"' not in html


def test_a_plain_form_post_judges_and_redirects(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    response = ann_client.post(
        f"/p/demo/a/{first}/", {"choice": "left", "rationale": "ok", "duration_ms": "1500"}
    )
    assert response.status_code == 302
    judgment = Judgment.objects.get()
    assert (judgment.choice, judgment.rationale, judgment.duration_ms) == ("left", "ok", 1500)
    second = current_assignment(ann_client.get("/p/demo/").content.decode())
    assert second != first


def test_an_htmx_post_returns_the_next_card_only(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    response = ann_client.post(
        f"/p/demo/a/{first}/", {"choice": "right"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="comparison"')
    assert "<html" not in html
    assert current_assignment(html) != first


def test_a_double_submit_stores_one_judgment(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    form = {"choice": "left", "idempotency_key": "same-key"}
    ann_client.post(f"/p/demo/a/{first}/", form, headers={"HX-Request": "true"})
    response = ann_client.post(f"/p/demo/a/{first}/", form, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert Judgment.objects.count() == 1


def test_a_missing_choice_is_explained(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    response = ann_client.post(f"/p/demo/a/{first}/", {"choice": "sideways"})
    assert response.status_code == 200
    assert "choice must be one of" in response.content.decode()
    assert Judgment.objects.count() == 0


def test_it_says_plainly_when_nothing_is_left(ann_client, import_rows):
    import_rows(prompt_line("only"))
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    ann_client.post(f"/p/demo/a/{first}/", {"choice": "tie"})
    html = ann_client.get("/p/demo/").content.decode()
    assert "Nothing left to judge" in html
    assert "data-assignment" not in html


def test_it_renders_conversations_with_roles(ann_client, import_rows):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Explain **tables**"},
    ]
    import_rows(prompt_line(prompt=messages))
    html = ann_client.get("/p/demo/").content.decode()
    assert "<summary>System prompt</summary>" in html
    assert 'class="message user"' in html and 'class="message assistant"' in html
    assert "<strong>tables</strong>" in html


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<iframe src='javascript:alert(1)'></iframe>",
    "<svg onload=alert(1)>",
    "<style>body{display:none}</style>",
    "[link](javascript:alert(1))",
    "[link](JaVaScRiPt:alert(1))",
    "[link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<a href='javascript:alert(1)'>x</a>",
    "![x](http://example.invalid/track.png)",
    "<div onclick='alert(1)'>x</div>",
    "| a | b |\n|---|---|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",
    "```html\n<script>alert(1)</script>\n```",
    '<form action="http://example.invalid"><button>x</button></form>',
    "<object data='x'></object><embed src='x'>",
    "<math><mi xlink:href='javascript:alert(1)'>x</mi></math>",
    "<base href='http://example.invalid/'>",
    "<meta http-equiv='refresh' content='0;url=http://example.invalid'>",
    "<link rel=stylesheet href='http://example.invalid/x.css'>",
    "<a href='&#106;avascript:alert(1)'>x</a>",
]


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


@pytest.mark.parametrize("payload", HOSTILE)
def test_markdown_removes_every_active_thing(payload):
    collector = TagCollector()
    collector.feed(render_markdown(payload))
    for tag, attrs in collector.tags:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            allowed = {"href", "title", "class", "start", "align", "rel", "target"}
            assert name in allowed, (tag, name)
            if name == "target":
                assert value == "_blank"
            if name == "href":
                assert value and value.lower().startswith(("http://", "https://", "mailto:"))


def test_markdown_keeps_tables_lists_code_and_links():
    html = render_markdown(
        "# T\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```py\nprint(1)\n```\n\n"
        "[site](https://example.com)"
    )
    assert "<table>" in html and "<td>1</td>" in html
    assert "<li>a</li>" in html
    assert '<code class="language-py"><span class="nb">print</span>' in html  # highlighted
    assert 'href="https://example.com"' in html and 'rel="noopener noreferrer nofollow"' in html
    # A link opens in a new tab: the judging page stays (issue 15).
    assert 'target="_blank"' in html


def test_the_admin_link_shows_only_for_those_it_admits(client, annotators, bob, batch):
    client.force_login(annotators[0])
    assert 'href="/admin/"' not in client.get("/").content.decode()
    client.force_login(bob)
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_markdown_shows_images_as_links_and_keeps_table_alignment():
    html = render_markdown(
        "![a chart](https://example.com/c.png)\n\n| a | b |\n|:-:|--:|\n| 1 | 2 |"
    )
    assert '<a href="https://example.com/c.png"' in html and "[image: a chart]</a>" in html
    assert "<img" not in html
    assert '<th align="center">a</th>' in html and '<td align="right">2</td>' in html


def test_an_expired_session_sends_htmx_to_the_login_page(client, batch):
    response = client.post(
        "/p/demo/a/1/",
        {"choice": "left"},
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/p/demo/"},
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=/p/demo/"
    plain = client.post("/p/demo/a/1/", {"choice": "left"})
    assert plain.status_code == 302 and plain["Location"].startswith("/accounts/login/")


def test_the_page_skips_with_a_reason(ann_client, project, import_rows):
    import_rows(prompt_line("a"), prompt_line("b"))
    html = ann_client.get("/p/demo/").content.decode()
    first = current_assignment(html)
    for reason in project.skip_reasons:
        assert f'name="reason" value="{escape(reason)}"' in html
    response = ann_client.post(
        f"/p/demo/a/{first}/skip/",
        {"reason": "other", "note": "not my language"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert current_assignment(response.content.decode()) != first
    skip = Skip.objects.get()
    assert (skip.reason, skip.note) == ("other", "not my language")


def test_the_page_explains_a_skip_without_a_note(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    response = ann_client.post(f"/p/demo/a/{first}/skip/", {"reason": "other"})
    assert "needs a note" in response.content.decode()
    assert not Skip.objects.exists()


def test_the_page_says_why_an_annotator_gets_no_more_work(ann_client, project, batch):
    project.annotator_cap = 1
    project.save()
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    ann_client.post(f"/p/demo/a/{first}/", {"choice": "left"})
    html = ann_client.get("/p/demo/").content.decode()
    assert "No more work for you here" in html and "cap of 1" in html
