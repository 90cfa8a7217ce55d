"""`manage.py demo`: the seeded logins, project and batch, and the demo data itself."""

import io
import json
import logging
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from apps.batches.import_format import parse_jsonl
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.judging.markdown import render_markdown
from apps.projects.management.commands.demo import DEMO_FILE, GUIDELINES
from apps.projects.models import Membership, Project

LOGINS = {
    "admin": "demo-admin-pass",
    "lead": "demo-lead-pass",
    "annotator1": "demo-annotator-pass",
    "annotator2": "demo-annotator-pass",
    "annotator3": "demo-annotator-pass",
}


@pytest.fixture(autouse=True)
def _fast_hashing(settings: Any) -> None:
    # The command hashes and checks five passwords a run; the default hasher is slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def demo_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_FILE.read_text("utf-8").splitlines() if line]


def expected_comparisons() -> int:
    return sum(len(r["candidates"]) * (len(r["candidates"]) - 1) // 2 for r in demo_rows())


def counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "projects": Project.objects.count(),
        "memberships": Membership.objects.count(),
        "batches": Batch.objects.count(),
        "prompts": Prompt.objects.count(),
        "candidates": Candidate.objects.count(),
        "comparisons": Comparison.objects.count(),
    }


class TagCollector(HTMLParser):
    """Every element and attribute that a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_harmless(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert not re.search(r"<[^>]*onerror", lowered), "onerror inside a tag"
    collector = TagCollector()
    collector.feed(html)
    collector.close()
    for tag, attrs in collector.tags:
        assert tag not in {"script", "img", "iframe", "svg", "style", "object", "embed"}, html
        for name, value in attrs:
            assert not name.startswith("on"), html
            assert not (value or "").strip().lower().startswith("javascript:"), html


def texts_of(row: dict[str, Any]) -> list[str]:
    prompt = row["prompt"]
    messages = [m["content"] for m in prompt] if isinstance(prompt, list) else [prompt]
    return messages + [c["text"] for c in row["candidates"]]


# The data file ---------------------------------------------------------------------------------


def test_it_seeds_from_a_file_that_parses() -> None:
    with DEMO_FILE.open("rb") as f:
        prompts = parse_jsonl(f)
    assert 25 <= len(prompts) <= 40
    assert all(2 <= len(p.candidates) <= 4 for p in prompts)
    assert all(p.metadata.get("source") == "demo" and p.metadata.get("topic") for p in prompts)
    assert any(c.params for p in prompts for c in p.candidates)
    models = {c.model for p in prompts for c in p.candidates}
    assert {"atlas-7b", "borealis-13b", "cirrus-70b", "delta-mini"} <= models


def test_it_seeds_conversations_tables_and_code() -> None:
    rows = demo_rows()
    conversations = [r for r in rows if isinstance(r["prompt"], list)]
    assert len(conversations) >= 3
    assert any(m["role"] == "system" for r in conversations for m in r["prompt"])
    candidate_texts = [c["text"] for r in rows for c in r["candidates"]]
    rendered = [render_markdown(text) for text in candidate_texts]
    assert any("<table>" in html for html in rendered)
    assert any("<h1>" in html or "<h2>" in html for html in rendered)
    assert any('<a href="https://' in html for html in rendered)
    assert any("<ul>" in html for html in rendered) and any("<ol>" in html for html in rendered)
    for language in ("python", "sql", "js"):
        assert any(f'<code class="language-{language}' in html for html in rendered), language


def test_it_seeds_texts_that_render_without_active_html() -> None:
    for row in demo_rows():
        for text in texts_of(row):
            assert_harmless(render_markdown(text))


def test_it_seeds_hostile_html_that_shows_as_text() -> None:
    hostile = [
        c["text"]
        for r in demo_rows()
        for c in r["candidates"]
        if "<script>alert(1)</script>" in c["text"] or "<img src=x onerror=alert(1)>" in c["text"]
    ]
    assert hostile, "the demo must show that hostile HTML is displayed as text"
    shown = "".join(render_markdown(text) for text in hostile)
    assert_harmless(shown)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown


def test_it_seeds_guidelines_that_render_safely() -> None:
    html = render_markdown(GUIDELINES)
    assert_harmless(html)
    assert "<h2>" in html


# The command -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_seeds_the_logins() -> None:
    run_demo()
    for username, password in LOGINS.items():
        user = User.objects.get(username=username)
        assert user.check_password(password), username
        assert user.is_active
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    # Leads reach the admin through their membership, not through staff status.
    assert not User.objects.filter(is_staff=True).exclude(username="admin").exists()


@pytest.mark.django_db
def test_it_seeds_the_project_and_its_members() -> None:
    run_demo()
    project = Project.objects.get(slug="demo")
    assert project.name == "Demo: chat assistant preferences"
    assert project.overlap == 3
    assert project.allow_tie and project.allow_both_bad
    assert project.guidelines.count("\n\n") >= 3
    roles = dict(project.memberships.values_list("user__username", "role"))
    assert roles == {
        "lead": "lead",
        "annotator1": "annotator",
        "annotator2": "annotator",
        "annotator3": "annotator",
    }


@pytest.mark.django_db
def test_it_seeds_the_demo_batch() -> None:
    run_demo()
    project = Project.objects.get(slug="demo")
    batch = Batch.objects.get(project=project)
    assert batch.name == "demo"
    assert batch.status == BatchStatus.ACTIVE
    rows = demo_rows()
    assert batch.prompt_count == len(rows) == project.prompts.count()
    assert 25 <= len(rows) <= 40
    assert batch.comparison_count == expected_comparisons() == project.comparisons.count()
    assert Candidate.objects.filter(prompt__project=project).count() == sum(
        len(r["candidates"]) for r in rows
    )
    assert project.prompts.filter(external_id="demo-010").get().is_conversation


@pytest.mark.django_db
def test_it_prints_the_addresses_and_every_login() -> None:
    out = run_demo()
    assert "http://127.0.0.1:8000/" in out
    assert "http://127.0.0.1:8000/admin/" in out
    for username, password in LOGINS.items():
        line = next(line for line in out.splitlines() if line.split()[:1] == [username])
        assert password in line
    assert "lead of" in out and "annotator in" in out and "superuser" in out


@pytest.mark.django_db
def test_it_prints_nothing_when_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out, err = io.StringIO(), io.StringIO()
    call_command("demo", "--quiet", stdout=out, stderr=err)
    assert out.getvalue() == "" and err.getvalue() == ""
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]
    assert Project.objects.filter(slug="demo").exists()


@pytest.mark.django_db
def test_it_seeds_nothing_twice() -> None:
    run_demo()
    before = counts()
    hashes = dict(User.objects.values_list("username", "password"))
    pseudonyms = dict(Membership.objects.values_list("user__username", "pseudonym"))
    out = run_demo()
    assert counts() == before
    assert dict(User.objects.values_list("username", "password")) == hashes
    assert dict(Membership.objects.values_list("user__username", "pseudonym")) == pseudonyms
    assert "not imported again" in out
    assert Comparison.objects.filter(project__slug="demo").count() == expected_comparisons()


@pytest.mark.django_db
def test_it_keeps_the_password_of_an_existing_user() -> None:
    User.objects.create_user("annotator2", password="my-own-password")
    out = run_demo()
    user = User.objects.get(username="annotator2")
    assert user.check_password("my-own-password")
    assert "annotator2" in out and "--reset-passwords" in out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["annotator2"])
    assert "demo-annotator-pass" not in line


@pytest.mark.django_db
def test_it_resets_passwords_when_asked() -> None:
    User.objects.create_user("lead", password="my-own-password")
    run_demo("--reset-passwords")
    assert User.objects.get(username="lead").check_password("demo-lead-pass")
    assert User.objects.filter(username="lead").count() == 1


@pytest.mark.django_db
def test_it_leaves_an_existing_project_and_batch_alone() -> None:
    run_demo()
    project = Project.objects.get(slug="demo")
    project.overlap = 5
    project.save(update_fields=["overlap"])
    Prompt.objects.filter(external_id="demo-001").delete()
    run_demo()
    project.refresh_from_db()
    assert project.overlap == 5
    assert Batch.objects.filter(project=project).count() == 1
    assert not Prompt.objects.filter(external_id="demo-001").exists()


@pytest.mark.django_db
def test_it_refuses_to_seed_public_logins_in_a_real_deployment(settings):
    settings.SECRET_KEY = "a-real-deployment-key"
    with pytest.raises(CommandError, match="SECRET_KEY is set"):
        call_command("demo", "--quiet")
    assert not Project.objects.exists()
    call_command("demo", "--quiet", "--force")
    assert Project.objects.filter(slug="demo").exists()


@pytest.mark.django_db
def test_it_seeds_a_graded_and_a_ranked_project_on_the_same_prompts() -> None:
    out = run_demo()
    graded = Project.objects.get(slug="demo-graded")
    assert graded.scheme == "graded"
    assert [c["name"] for c in graded.criteria] == ["helpfulness", "harmlessness", "honesty"]
    assert graded.comparisons.count() == expected_comparisons()
    ranked = Project.objects.get(slug="demo-ranked")
    assert ranked.scheme == "listwise"
    many = [r for r in demo_rows() if len(r["candidates"]) >= 3]
    assert ranked.comparisons.count() == ranked.prompts.count() == len(many)
    for project in (graded, ranked):
        roles = dict(project.memberships.values_list("user__username", "role"))
        assert roles == {"lead": "lead", **{f"annotator{n}": "annotator" for n in (1, 2, 3)}}
        assert f"(slug {project.slug!r}" in out
