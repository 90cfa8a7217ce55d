"""The standing rules (account, membership, gold rule) are one table: the Python verdict that
the pages, next and skip read (standing_problem, gold_stop_reason) and the SQL that
annotate_submit embeds (STANDING_REFUSAL) must agree on every case, on either database."""

import pytest

from apps.judging.queue import statements
from apps.judging.queue.sql_submit_steps import STANDING_REFUSAL
from apps.judging.queue.standing import standing_problem
from apps.projects.models import Membership

# (active, member, gold_correct, gold_answered, min_accuracy, min_answers): the outcome.
CASES = [
    ((True, True, 0, 0, 0.0, 0), ""),
    ((True, True, 0, 0, 0.8, 0), ""),  # no gold answer yet: never stopped
    ((True, True, 0, 5, 0.0, 0), ""),  # no minimum
    ((True, True, 3, 5, 0.8, 5), "stopped"),
    ((True, True, 3, 4, 0.8, 5), ""),  # too few answers to judge
    ((True, True, 4, 5, 0.8, 5), ""),  # exactly the minimum: not below it
    ((True, True, 7, 10, 0.7, 1), ""),  # 7/10 == 0.7 in floats, on both sides
    ((True, True, 1, 3, 1 / 3 + 1e-12, 1), "stopped"),
    ((True, True, 2, 3, 2 / 3, 3), ""),
    ((True, True, 0, 1, 0.01, 0), "stopped"),
    ((True, False, 0, 0, 0.8, 0), "not_member"),
    ((False, True, 3, 5, 0.8, 5), "inactive"),  # the account first, then the rest
    ((False, False, 0, 0, 0.0, 0), "inactive"),
]


@pytest.mark.parametrize(("standing", "expected"), CASES)
def test_the_sql_and_python_verdicts_agree(project, annotators, standing, expected):
    active, member, correct, answered, min_accuracy, min_answers = standing
    user = annotators[0]
    user.is_active = active
    user.save(update_fields=["is_active"])
    if member:
        Membership.objects.filter(project=project, user=user).update(
            gold_correct=correct, gold_answered=answered
        )
    else:
        Membership.objects.filter(project=project, user=user).delete()
    project.gold_min_accuracy = min_accuracy
    project.gold_min_answers = min_answers

    outcome, detail = standing_problem(
        project, active=active, member=member, gold_answered=answered, gold_correct=correct
    )
    row = statements.run(
        STANDING_REFUSAL,
        {
            "annotator": user.pk,
            "project": project.pk,
            "min_accuracy": min_accuracy,
            "min_answers": min_answers,
        },
    )
    assert row is not None
    assert (outcome, row[0] or "") == (expected, expected)
    assert bool(detail) == (expected == "stopped")
    if member:
        assert row[1:] == (correct, answered)
