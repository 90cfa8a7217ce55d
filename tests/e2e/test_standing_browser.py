"""The judging page in a real browser when the annotator may no longer judge: the card says
why instead of staying on the prefetched comparison, and the lease is released."""

from collections.abc import Callable
from typing import Any

import pytest

from apps.batches.models import Batch, Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.projects.models import Membership, Project
from tests.conftest import prompt_line
from tests.e2e.conftest import PageLog
from tests.e2e.helpers import WAIT_MS, current_assignment, log_in

pytestmark = pytest.mark.django_db(transaction=True)


def stop(project: Project, how: str) -> None:
    member = Membership.objects.filter(project=project, user__username="ann")
    if how == "removed":
        member.delete()
    else:  # the gold rule: a lead raises the minimum above the annotator's accuracy
        member.update(gold_answered=4, gold_correct=1)
        project.gold_min_accuracy, project.gold_min_answers = 0.8, 3
        project.save()


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("removed", "You are no longer a member of this project."),
        ("stopped", "your gold accuracy 25% over 4 gold items is below"),
    ],
)
def test_a_refused_judgment_says_why_on_the_card(
    live_server: Any,
    page: Any,
    page_log: PageLog,
    project: Project,
    import_rows: Callable[..., Batch],
    how: str,
    says: str,
) -> None:
    import_rows(*(prompt_line(f"p-{i}", n=2) for i in range(3)))
    base = live_server.url
    log_in(page, base, "ann")
    page.goto(f"{base}/p/demo/")
    lease = int(current_assignment(page) or 0)
    comparison = Assignment.objects.get(pk=lease).comparison_id
    stop(project, how)
    page.keyboard.press("1")  # the prefetched comparison shows at once; the server refuses
    page.get_by_role("heading", name="No more work for you here").wait_for(
        state="visible", timeout=WAIT_MS
    )
    page.get_by_text(says).first.wait_for(state="visible", timeout=WAIT_MS)
    assert page.locator("form.judge").count() == 0  # nothing left to answer on the card
    assert page.get_attribute("section#comparison", "aria-busy") is None
    page_log.assert_clean(base)
    assert not Judgment.objects.exists()
    assert Assignment.objects.get(pk=lease).status == AssignmentStatus.EXPIRED
    assert Comparison.objects.get(pk=comparison).lease_count == 0
