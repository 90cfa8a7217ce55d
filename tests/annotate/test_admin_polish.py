"""What the admin shows to tell things apart: batches of one name, the prompt of a judgment's
comparison, the time zone of "Since"; and the icon every page names, so no /favicon.ico 404."""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.batches.models import Batch, Comparison
from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line

FAVICON = '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'


def test_batches_of_one_name_are_told_apart(project, import_rows):
    first = import_rows(prompt_line("p-1"))
    second = import_rows(prompt_line("p-2"))
    Batch.objects.filter(pk__in=[first.pk, second.pk]).update(
        name="weekly", created_at=datetime(2026, 3, 4, 23, 30, tzinfo=UTC)
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert str(first) == f"weekly (#{first.pk}, 2026-03-04)"
    assert str(second) == f"weekly (#{second.pk}, 2026-03-04)"
    Batch.objects.filter(pk=second.pk).update(name="")
    second.refresh_from_db()
    assert str(second) == f"Batch {second.pk} (2026-03-04)"
    assert str(Batch(name="draft")) == "draft"


def test_the_judgments_filter_names_each_batch_with_its_id(client, bob, project, import_rows):
    batches = [import_rows(prompt_line(f"p-{n}")) for n in (1, 2)]
    Batch.objects.filter(pk__in=[b.pk for b in batches]).update(name="weekly")
    annotator = project.memberships.filter(role="annotator").first().user
    for _ in batches:
        lease = assignment_next(project=project, annotator=annotator)
        judgment_submit(assignment_id=lease.pk, annotator=annotator, choice="left")
    client.force_login(bob)
    html = client.get("/admin/judging/judgment/").content.decode()
    for batch in batches:
        assert f"weekly (#{batch.pk}, " in html


def test_a_comparison_names_its_prompt_when_it_is_loaded_and_never_queries_for_it(batch):
    plain = Comparison.objects.first()
    with CaptureQueriesContext(connection) as queries:
        assert str(plain) == f"Comparison {plain.pk}"
    assert len(queries) == 0
    joined = Comparison.objects.select_related("prompt").get(pk=plain.pk)
    assert str(joined) == f"Comparison {plain.pk} of prompt {joined.prompt.external_id}"


def test_the_judgments_list_shows_each_prompt_in_one_query(client, bob, project, import_rows):
    import_rows(*(prompt_line(f"prompt-{n}") for n in range(3)))
    annotator = project.memberships.filter(role="annotator").first().user
    leases = []
    while (lease := assignment_next(project=project, annotator=annotator)) is not None:
        judgment_submit(assignment_id=lease.pk, annotator=annotator, choice="left")
        leases.append(lease)
    client.force_login(bob)
    with CaptureQueriesContext(connection) as few:
        html = client.get("/admin/judging/judgment/").content.decode()
    for lease in leases:
        comparison = Comparison.objects.select_related("prompt").get(pk=lease.comparison_id)
        assert f"{comparison.pk} ({comparison.prompt.external_id})" in html
    assert re.search(
        r'column-comparison_and_prompt">\s*<div class="text"><a [^>]*>Comparison \(prompt\)<', html
    )
    assert re.search(r'column-judged_at">\s*<div class="text"><a [^>]*>Judged \(UTC\)<', html)
    assert re.search(r'class="field-judged_at">\d{4}-\d\d-\d\d \d\d:\d\d<', html)
    # One more judgment costs no more queries: the prompts come with the rows.
    import_rows(prompt_line("prompt-late"))
    lease = assignment_next(project=project, annotator=annotator)
    judgment_submit(assignment_id=lease.pk, annotator=annotator, choice="left")
    with CaptureQueriesContext(connection) as more:
        client.get("/admin/judging/judgment/")
    assert len(more) == len(few)


def test_since_says_its_time_zone(client, bob, project):
    client.force_login(bob)
    html = client.get("/admin/judging/judgment/invalidate/").content.decode()
    assert '<label for="id_since">Since (UTC):</label>' in html
    assert "in UTC (YYYY-MM-DD HH:MM)" in html
    assert "/static/admin/css/forms.css" in html


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_every_page_names_the_icon(client, url, db):
    html = client.get(url).content.decode()
    assert FAVICON in html


def test_every_admin_page_loads_the_admins_additions(client, bob, project):
    client.force_login(bob)
    for url in ("/admin/", "/admin/batches/batch/", "/admin/judging/judgment/invalidate/"):
        assert "/static/css/admin-console.css" in client.get(url).content.decode(), url


def test_the_icon_is_a_static_svg():
    path = finders.find("img/favicon.svg")
    assert path, "static/img/favicon.svg is missing"
    with open(path, encoding="utf-8") as svg:
        assert svg.read().startswith('<svg xmlns="http://www.w3.org/2000/svg"')


def test_the_invalidate_action_names_each_prompt_and_styles_its_form(
    client, bob, project, import_rows
):
    import_rows(prompt_line("named-prompt"))
    annotator = project.memberships.filter(role="annotator").first().user
    lease = assignment_next(project=project, annotator=annotator)
    judgment = judgment_submit(assignment_id=lease.pk, annotator=annotator, choice="left").judgment
    client.force_login(bob)
    html = client.post(
        "/admin/judging/judgment/",
        {"action": "invalidate_selected", "_selected_action": [judgment.pk]},
    ).content.decode()
    assert f"on Comparison {lease.comparison_id} of prompt named-prompt," in html
    assert "/static/admin/css/forms.css" in html
