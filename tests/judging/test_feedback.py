"""What the judging page says after each action: the figure "left for you", a brief status
line, and skipping with or without reasons (issue 15)."""

import re

import pytest
from django.core.cache import cache

from apps.batches.models import Batch
from apps.judging.models import Skip
from apps.judging.queue import assignment_next
from tests.conftest import prompt_line
from tests.judging.test_views import current_assignment

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ann_client(client, annotators):
    cache.clear()  # "left" is cached per annotator; start every test from an empty cache
    client.force_login(annotators[0])
    return client


def left(html: str) -> str:
    match = re.search(r'data-testid="left">([^<]*)<', html)
    assert match, html
    return match.group(1)


def test_left_for_you_is_right_after_each_of_five_judgments(ann_client, batch):
    html = ann_client.get("/p/demo/").content.decode()
    assert left(html) == "15"  # and now cached
    for judged in range(1, 6):
        response = ann_client.post(
            f"/p/demo/a/{current_assignment(html)}/", {"choice": "left"}, headers=HTMX
        )
        html = response.content.decode()
        assert left(html) == str(15 - judged)
        assert 'data-testid="judged">' + str(judged) in html
        assert "Judgment saved." in html and "undoes it" in html
    # A full page load reads the same figure.
    assert left(ann_client.get("/p/demo/").content.decode()) == "10"


def test_skip_and_undo_move_the_figure_too(ann_client, batch):
    html = ann_client.get("/p/demo/").content.decode()
    html = ann_client.post(
        f"/p/demo/a/{current_assignment(html)}/", {"choice": "tie"}, headers=HTMX
    ).content.decode()
    assert left(html) == "14"
    html = ann_client.post(
        f"/p/demo/a/{current_assignment(html)}/skip/",
        {"reason": "other", "note": "not my field"},
        headers=HTMX,
    ).content.decode()
    assert left(html) == "13"
    assert "Skipped: that comparison is not offered to you again." in html
    assert "Judgment saved." not in html
    html = ann_client.post("/p/demo/undo/", headers=HTMX).content.decode()
    assert left(html) == "14"  # the judged comparison is open for them again
    assert "Undone:" in html


def test_nothing_left_says_zero(ann_client, import_rows):
    import_rows(prompt_line("one", n=3))  # three comparisons
    html = ann_client.get("/p/demo/").content.decode()
    assert left(html) == "3"
    for _ in range(3):
        html = ann_client.post(
            f"/p/demo/a/{current_assignment(html)}/", {"choice": "right"}, headers=HTMX
        ).content.decode()
    assert "Nothing left to judge" in html
    assert left(html) == "0"
    assert "Judgment saved." in html
    assert left(ann_client.get("/p/demo/").content.decode()) == "0"


def test_comparisons_full_by_others_leases_are_not_left_for_you(
    ann_client, project, annotators, import_rows
):
    """What the queue cannot give them is not "left": a comparison whose free slots are all
    under other annotators' leases (here its only slot, overlap 1) leaves them nothing, and the
    page that says "Nothing left to judge" says 0 beside it. The holder's own lease counts."""
    project.overlap = 1
    project.save(update_fields=["overlap"])
    import_rows(prompt_line("one"))  # one comparison
    assert assignment_next(project=project, annotator=annotators[1]) is not None  # ben holds it
    html = ann_client.get("/p/demo/").content.decode()
    assert "Nothing left to judge" in html
    assert left(html) == "0"
    ann_client.force_login(annotators[1])
    assert left(ann_client.get("/p/demo/").content.decode()) == "1"  # his, on his screen


def test_a_batch_whose_cap_they_reached_is_not_left_for_them(ann_client, project, batch):
    """The queue passes over a batch where the annotator reached the batch's cap: so does
    "left"."""
    Batch.objects.filter(pk=batch.pk).update(annotator_cap=1)
    html = ann_client.get("/p/demo/").content.decode()
    assert left(html) == "15"
    html = ann_client.post(
        f"/p/demo/a/{current_assignment(html)}/", {"choice": "left"}, headers=HTMX
    ).content.decode()
    assert "Nothing left to judge" in html
    assert left(html) == "0"


def test_a_failed_judgment_says_nothing_was_saved(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    html = ann_client.post(
        f"/p/demo/a/{first}/", {"choice": "sideways"}, headers=HTMX
    ).content.decode()
    assert "choice must be one of" in html
    assert "Judgment saved." not in html
    assert left(html) == "15"


def test_skip_reasons_are_buttons_with_keys(ann_client, project, batch):
    html = ann_client.get("/p/demo/").content.decode()
    for key, reason in enumerate(project.skip_reasons, start=1):
        assert f'value="{reason}" data-skip-key="{key}"' in html.replace("&#x27;", "'")
    assert 'value="other" data-skip-key="o"' in html
    assert 'data-skip-key="Enter"' not in html


def test_a_project_without_skip_reasons_skips_without_one(ann_client, project, batch):
    project.skip_reasons = []
    project.save()
    html = ann_client.get("/p/demo/").content.decode()
    assert 'name="reason" value="" data-skip-key="Enter"' in html
    assert 'value="other"' not in html
    first = current_assignment(html)
    response = ann_client.post(f"/p/demo/a/{first}/skip/", {"reason": ""}, headers=HTMX)
    html = response.content.decode()
    assert current_assignment(html) != first
    assert "Skipped:" in html
    skip = Skip.objects.get()
    assert (skip.reason, skip.note) == ("", "")


def test_an_empty_reason_is_refused_where_the_project_has_reasons(ann_client, batch):
    first = current_assignment(ann_client.get("/p/demo/").content.decode())
    html = ann_client.post(f"/p/demo/a/{first}/skip/", {"reason": ""}).content.decode()
    assert "reason must be one of" in html
    assert not Skip.objects.exists()
