"""Rules written once as tables (apps.projects.rules), read by Python and as SQL: the two must
agree on every case, on either database.

- The standing (account, membership, gold rule): the Python verdict that the pages, next and
  skip read (standing_problem, gold_stop_reason) and STANDING_REFUSAL, which annotate_submit
  embeds.
- Whether an answer fits the scheme (answers.PICK_FITS): answers' check and annotate_fits.
"""

import itertools

import pytest

from apps.judging.answers import PICK_FITS
from apps.judging.queue import backend, statements
from apps.judging.queue.sql_submit_steps import STANDING_REFUSAL
from apps.judging.queue.standing import standing_problem
from apps.projects.models import Membership
from apps.projects.rules import case_holds, case_sql

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


# Every pick the shape lets through (strength -3..3 comes with its implied choice), on every
# scheme setting.
PICKS = [(choice, None) for choice in ("left", "right", "tie", "both_bad", "ranking")] + [
    ("left" if s < 0 else "right" if s > 0 else "tie", s) for s in (-3, -1, 0, 2)
]
SETTINGS = list(itertools.product((False, True), repeat=3))  # graded, allow_tie, allow_both_bad
_FITS_TERMS = {
    name: f"%({name})s" for name in ("choice", "strength", "graded", "allow_tie", "allow_both_bad")
}


@pytest.mark.django_db
@pytest.mark.parametrize(("graded", "allow_tie", "allow_both_bad"), SETTINGS)
def test_answers_and_annotate_fits_agree(graded, allow_tie, allow_both_bad):
    fitting = []
    for choice, strength in PICKS:
        values = {
            "choice": choice,
            "strength": strength,
            "graded": graded,
            "allow_tie": allow_tie,
            "allow_both_bad": allow_both_bad,
        }
        verdict = case_holds(PICK_FITS, values)
        row = statements.run(f"SELECT {case_sql(PICK_FITS, _FITS_TERMS)}", values)
        assert row is not None
        assert bool(row[0]) == verdict, values
        if backend.postgresql():  # the installed function, made from the same table
            row = statements.run(
                "SELECT annotate_fits(%(choice)s, %(strength)s, %(graded)s, %(allow_tie)s, "
                "%(allow_both_bad)s)",
                values,
            )
            assert row is not None
            assert row[0] == verdict, values
        if verdict:
            fitting.append((choice, strength))
    # The rule itself: what fits each scheme.
    if graded:
        expected = [pick for pick in PICKS if pick[1] is not None]
    else:
        expected = [("left", None), ("right", None)] + [("tie", None)] * allow_tie
    expected += [("both_bad", None)] * allow_both_bad
    assert sorted(fitting, key=str) == sorted(expected, key=str)
