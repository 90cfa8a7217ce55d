"""The home page per role: an annotator's own progress and next step, a lead's projects with
their dashboard, batches, export and settings one click away, and staff's every project."""

import io
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from apps.batches.models import Batch, BatchStatus
from apps.batches.services import batch_import
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Project
from apps.projects.services import membership_add, project_create
from tests.conftest import jsonl, prompt_line

pytestmark = pytest.mark.django_db


def judge(project: Project, user: User, times: int) -> None:
    for _ in range(times):
        lease = assignment_next(project=project, annotator=user)
        assert lease is not None
        judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")


def row(html: str, slug: str, table: str) -> str:
    """The table row of project `slug` in the home page's table `table`."""
    section = re.search(rf'<table class="projects" data-testid="{table}">(.*?)</table>', html, re.S)
    assert section, f"no {table} table on the page"
    match = re.search(rf'<tr data-project="{slug}">(.*?)</tr>', section.group(1), re.S)
    assert match, f"no row for {slug} in the {table} table"
    return match.group(1)


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


def home(client: Any, user: User) -> str:
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    return response.content.decode()


def test_an_annotator_sees_their_own_progress_and_continue(client, project, batch, annotators):
    ann = annotators[0]
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "mine") == "0" and figure(cells, "left") == "15"
    assert "Start judging" in cells and 'href="/p/demo/"' in cells

    judge(project, ann, 14)
    cells = row(home(client, ann), "demo", "judging")
    # Nobody else judged: no comparison has its 3 votes, yet 14 of 15 are done by them.
    assert figure(cells, "mine") == "14" and figure(cells, "left") == "1"
    assert "Continue judging" in cells and "Start judging" not in cells
    assert "0 / 15" in cells and "with all 3 votes" in cells
    assert "Project: fully judged" in home(client, ann)

    judge(project, ann, 1)
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "mine") == "15" and figure(cells, "left") == "0"
    assert "Nothing left for you now" in cells and 'href="/p/demo/"' not in cells


def test_left_is_counted_at_each_load(client, project, batch, annotators, make_user):
    """Not the judging page's 30-second cache: one judgment moves the next load's figure."""
    ann = annotators[0]
    assert figure(row(home(client, ann), "demo", "judging"), "left") == "15"
    judge(project, ann, 1)
    assert figure(row(home(client, ann), "demo", "judging"), "left") == "14"
    judge(project, annotators[1], 15)
    judge(project, annotators[2], 15)
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "left") == "14"  # two votes each: still open for ann
    assert "1 / 15" in cells  # the one ann judged has all three votes
    # Others' votes fill comparisons for everyone: a third vote on each leaves ann nothing.
    dan = make_user("dan")
    membership_add(project=project, user=dan, role="annotator")
    judge(project, dan, 14)
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "left") == "0" and "15 / 15" in cells


def test_left_leaves_out_paused_batches_and_stops_at_the_cap(client, project, batch, annotators):
    ann = annotators[0]
    project.annotator_cap = 3
    project.save(update_fields=["annotator_cap"])
    assert figure(row(home(client, ann), "demo", "judging"), "left") == "3"
    judge(project, ann, 3)
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "left") == "0"
    assert "Stopped: reached the project&#x27;s cap of 3 judgments" in cells
    assert 'href="/p/demo/"' not in cells
    project.annotator_cap = None
    project.save(update_fields=["annotator_cap"])
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.PAUSED)
    cells = row(home(client, ann), "demo", "judging")
    assert figure(cells, "left") == "0" and "Nothing left for you now" in cells


def test_what_others_hold_under_lease_is_not_left(client, project, annotators, import_rows):
    """A comparison whose only free slot is under another annotator's lease cannot be given to
    them: "Nothing left for you now", and 0 (not 1) beside it; the holder has it left."""
    project.overlap = 1
    project.save(update_fields=["overlap"])
    import_rows(prompt_line("one"))
    assert assignment_next(project=project, annotator=annotators[1]) is not None
    cells = row(home(client, annotators[0]), "demo", "judging")
    assert figure(cells, "left") == "0" and "Nothing left for you now" in cells
    cells = row(home(client, annotators[1]), "demo", "judging")
    assert figure(cells, "left") == "1" and "Start judging" in cells


def test_gold_items_are_left_out_of_the_fully_judged_figure(
    client, project, annotators, bob, import_rows
):
    """Gold items test annotators and are never complete (the queue's rule): a project whose
    ordinary comparisons all have their votes is fully judged, however often its gold items
    were answered, on the home page as on the dashboard."""
    import_rows(prompt_line("p-1"), prompt_line("p-2"), prompt_line("g", gold={"preferred": "c1"}))
    project.overlap, project.gold_rate = 1, 1.0
    project.save()
    assert "0 / 2" in row(home(client, bob), "demo", "managed")
    judge(project, annotators[0], 2)  # the gold item first, then one ordinary comparison
    assert "1 / 2" in row(home(client, bob), "demo", "managed")
    judge(project, annotators[1], 2)
    assert "2 / 2" in row(home(client, bob), "demo", "managed")
    assert "2 / 2" in row(home(client, annotators[0]), "demo", "judging")


def test_an_annotator_gets_no_links_to_manage(client, project, batch, annotators):
    html = home(client, annotators[0])
    assert 'data-testid="managed"' not in html
    assert reverse("dashboard", args=["demo"]) not in html
    assert "/admin/" not in html
    assert 'href="/accounts/api-token/"' in html  # the API serves annotators too


def manage_links(cells: str) -> dict[str, str]:
    return {
        name: href.replace("&amp;", "&")
        for href, name in re.findall(r'<a href="([^"]+)" data-link="(\w+)">', cells)
    }


def test_a_lead_sees_their_projects_with_working_links(client, project, batch, bob, alice):
    other = project_create(slug="other", name="Other", created_by=alice)
    html = home(client, bob)
    assert "Projects you lead" in html
    assert 'data-project="other"' not in html
    cells = row(html, "demo", "managed")
    links = manage_links(cells)
    assert links == {
        "dashboard": reverse("dashboard", args=["demo"]),
        "batches": f"{reverse('admin:batches_batch_changelist')}?project__id__exact={project.pk}",
        "export": f"{reverse('api-export', args=['demo'])}?format=judgments",
        "card": f"{reverse('api-export', args=['demo'])}?format=card",
        "settings": reverse("admin:projects_project_change", args=[project.pk]),
    }
    assert "0 / 15" in cells
    # Each opens for the lead, one click away.
    for name, href in links.items():
        response = client.get(href)
        assert response.status_code == 200, (name, href, response.status_code)
        if name == "export":
            b"".join(response.streaming_content)
    # The batches list is the project's: another project's batch is not on it.
    data = jsonl(prompt_line("x-1"))
    theirs = batch_import(project=other, source=io.BytesIO(data), size=len(data), background=False)
    theirs.name = "someone-elses-batch"
    theirs.save(update_fields=["name"])
    client.force_login(alice)
    assert (
        "someone-elses-batch"
        in client.get(reverse("admin:batches_batch_changelist")).content.decode()
    )
    listing = client.get(links["batches"]).content.decode()
    assert "someone-elses-batch" not in listing and batch.name in listing
    # Their own judging row is there too (a lead is a member).
    assert 'data-testid="judging"' in html and "Your judging" in html


def test_staff_see_every_project_with_the_same_links(client, project, alice, make_user):
    project_create(slug="empty", name="Empty project", created_by=alice)
    html = home(client, alice)
    assert "not a member" not in html
    assert "All projects" in html
    for slug in ("demo", "empty"):
        links = manage_links(row(html, slug, "managed"))
        assert set(links) == {"dashboard", "batches", "export", "card", "settings"}
        assert client.get(links["dashboard"]).status_code == 200


def test_staff_with_no_project_yet_are_told_to_create_one(client, make_user):
    staff = make_user("root", staff=True)
    html = home(client, staff)
    assert "not a member" not in html
    assert "No projects yet" in html and reverse("admin:projects_project_add") in html


def test_a_user_in_no_project_is_told_so(client, project, charlie):
    html = home(client, charlie)
    assert "not a member of any project" in html
    assert 'data-testid="managed"' not in html
    assert "/p/demo/" not in html
