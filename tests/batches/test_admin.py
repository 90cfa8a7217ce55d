"""The batch list of the admin (apps.batches.admin): its "complete" column."""

from pathlib import Path

from django.contrib.staticfiles import finders

from apps.judging.queue import assignment_next, judgment_submit
from tests.conftest import prompt_line


def test_complete_leaves_gold_out_so_a_judged_batch_reaches_100_percent(
    client, bob, project, annotators, import_rows
):
    """Gold items test annotators and are never complete (the queue's rule): counted in the
    column, a batch with gold could never show 100%."""
    import_rows(prompt_line("p-1"), prompt_line("p-2"), prompt_line("g", gold={"preferred": "c1"}))
    project.overlap, project.gold_rate = 1, 1.0
    project.save()
    client.force_login(bob)
    html = client.get("/admin/batches/batch/").content.decode()
    assert "<span>Complete (gold left out)</span>" in html
    assert "0 / 2 (0%)" in html
    for annotator in annotators[:2]:
        while (lease := assignment_next(project=project, annotator=annotator)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=annotator, choice="left")
    html = client.get("/admin/batches/batch/").content.decode()
    assert "2 / 2 (100%)" in html


def test_a_batch_page_takes_its_styles_from_the_admins_stylesheet(client, bob, batch):
    """No inline <style>: the batch panel's rules are in css/admin-console.css, which every
    admin page loads."""
    client.force_login(bob)
    html = client.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert 'id="batch-panel"' in html and "<style" not in html
    assert "/static/css/admin-console.css" in html
    path = finders.find("css/admin-console.css")
    assert path and "#batch-panel .batch-actions" in Path(path).read_text()
