"""The AI judge's suggestion on the judging page, in a real browser at 1366x768 and at 768 px:
shown only where the project turns it on, on the screen's terms of each lease (also on the
prefetched next card), and judged past by keyboard. docs/annotate-ai-suggestion.png."""

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.batches.services import batch_import
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.judges.models import Judge
from apps.judges.services import judge_save, judging_run, judging_start
from apps.judging.models import Assignment, Judgment
from apps.projects.models import Project
from tests.conftest import jsonl
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import (
    DOCS,
    current_assignment,
    next_frames,
    open_project,
    press_and_wait_for_swap,
)
from tests.endpoints.fake_llm import fake_llm
from tests.judges.test_judging import truthful

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("viewport", [(1366, 768), (768, 1024)], ids=["laptop", "tablet"])
def test_the_suggestion_shows_on_each_card_where_the_project_turns_it_on(
    tmp_path: Path,
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    bob: User,
    viewport: tuple[int, int],
) -> None:
    rows = [
        {
            "id": f"p{i}",
            "prompt": f"Question {i}: which command lists the files of a folder?",
            "candidates": [
                {"id": "good", "text": f"GOOD: use `ls` ({i})."},
                {"id": "bad", "text": f"BAD: use `rm -rf` ({i})."},
            ],
        }
        for i in range(3)
    ]
    data = jsonl(*rows)
    batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
    with fake_llm(models=("judge-model",), responder=truthful) as llm:
        endpoint = endpoint_save(
            ModelEndpoint(project=project, name="local", base_url=llm.url, model="judge-model"),
            by=bob,
        )
        judge = judge_save(Judge(project=project, name="Qwen judge", endpoint=endpoint), by=bob)
        job = judging_start(judge=judge, batch=project.batches.get(), by=bob)
        judging_run(job_id=job.pk)  # the worker's part (the start's commit sent it nowhere)
    project.show_ai_suggestion = True
    project.save(update_fields=["show_ai_suggestion"])

    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    base = live_server.url
    open_project(page, base)
    for _ in range(2):
        lease = Assignment.objects.get(pk=int(current_assignment(page) or 0))
        side = "left" if lease.left_id == lease.comparison.candidate_a_id else "right"
        note = page.locator("#comparison .ai-suggestion")
        assert note.is_visible()
        assert note.inner_text().startswith(f"AI judge Qwen judge suggests: the {side} response")
        box = note.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport[0]
        if _ == 0 and viewport[0] == 1366:
            target = DOCS if os.environ.get("SCREENSHOTS") == "1" else tmp_path
            next_frames(page)
            page.screenshot(path=str(target / "annotate-ai-suggestion.png"))
        press_and_wait_for_swap(page, "1")  # judged by keyboard; the next card swaps in
    judgments = Judgment.objects.filter(annotator__username="ann")
    assert judgments.count() == 2
    assert set(judgments.values_list("ai_suggestion_shown", flat=True)) == {True}
    page_log.assert_clean(base)
