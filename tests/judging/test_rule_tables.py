"""Rules written once as tables (apps.projects.rules), read by Python and as SQL: the two must
agree on every case, on either database.

- The standing (account, membership, gold rule): the Python verdict that the pages, next and
  skip read (standing_problem, gold_stop_reason) and STANDING_REFUSAL, which annotate_submit
  embeds.
- Whether an answer fits the scheme (answer_rules.PICK_FITS): the Python check and
  annotate_fits.
- The project's rules for an answer (answer_rules.ANSWER_RULES): answer_problem and the SQL that
  annotate_submit embeds (answer_problem_sql), every rule's cases through both on PostgreSQL.
"""

import itertools
import json
from typing import Any

import pytest

from apps.judging.answer_rules import (
    ANSWER_RULES,
    ANSWER_TERMS,
    PICK_FITS,
    answer_problem,
    answer_problem_sql,
)
from apps.judging.answers import MESSAGES, answer_parse
from apps.judging.queue import backend, statements
from apps.judging.queue.sql_submit_steps import STANDING_REFUSAL
from apps.judging.queue.standing import standing_problem
from apps.projects.models import Membership, Project
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


# (the project's settings besides pairwise, ties allowed, no criteria, no flags, an optional
# rationale of any length; the answer as sent): the problem's code and detail ("" for none).
ANSWER_CASES: list[tuple[dict[str, Any], dict[str, Any], tuple[str, str] | None]] = [
    ({"scheme": "listwise"}, {"choice": "left"}, ("needs_ranking", "")),
    ({"scheme": "listwise"}, {"ranking": ["c1", ["c2", "c3"]]}, None),
    (
        {"scheme": "listwise", "flags": ["x"]},
        {"ranking": ["c1"], "flags": ["y"]},
        ("bad_flags", "x"),
    ),
    ({}, {"ranking": ["c1", "c2"]}, ("no_ranking", "")),
    ({"scheme": "graded"}, {"choice": "left"}, ("needs_strength", "")),
    ({"scheme": "graded"}, {"choice": "both_bad"}, ("needs_strength", "")),
    ({"scheme": "graded", "allow_both_bad": True}, {"choice": "both_bad"}, None),
    ({"scheme": "graded", "allow_tie": False}, {"strength": 0}, None),
    ({"scheme": "graded"}, {"strength": -2}, None),
    ({}, {"strength": 2}, ("no_strength", "")),
    ({}, {"choice": "right"}, None),
    ({"allow_tie": False}, {"choice": "tie"}, ("bad_choice", "left, right")),
    ({"allow_both_bad": True}, {"choice": "ranking"}, ("bad_choice", "left, right, tie, both_bad")),
    ({}, {"choice": "left", "criteria": {"a": "left"}}, ("no_criteria", "")),
    (
        {"criteria": ["a", "b"]},
        {"choice": "left", "criteria": {"a": "left"}},
        ("bad_criteria", "a, b"),
    ),
    ({"criteria": ["b", "a"]}, {"choice": "left"}, ("bad_criteria", "b, a")),
    ({"criteria": ["b", "a"]}, {"choice": "left", "criteria": {"a": "tie", "b": "left"}}, None),
    (
        {"criteria": ["b", "a"], "allow_tie": False},
        {"choice": "left", "criteria": {"a": "tie", "b": "tie"}},
        ("bad_criterion_answer", "b"),
    ),
    (
        {"criteria": ["a"], "scheme": "graded"},
        {"strength": 1, "criteria": {"a": "left"}},
        ("bad_criterion_answer", "a"),
    ),
    ({"criteria": ["a"], "scheme": "graded"}, {"strength": 1, "criteria": {"a": -3}}, None),
    ({}, {"choice": "left", "flags": ["x"]}, ("no_flags", "")),
    ({"flags": ["y", "x"]}, {"choice": "left", "flags": ["x", "z"]}, ("bad_flags", "y, x")),
    ({"flags": ["y", "x"]}, {"choice": "left", "flags": ["x", "y"]}, None),
    ({"flags": ["y", "x"]}, {"choice": "left", "flags": ["x"]}, None),
    ({"rationale": "off"}, {"choice": "left", "rationale": "why"}, ("no_rationale", "")),
    ({"rationale": "off", "rationale_min_length": 5}, {"choice": "left"}, None),
    ({"rationale": "required"}, {"choice": "left"}, ("short_rationale", "1")),
    (
        {"rationale": "required", "rationale_min_length": 3},
        {"choice": "left", "rationale": "éé"},
        ("short_rationale", "3"),
    ),
    (
        {"rationale": "required", "rationale_min_length": 3},
        {"choice": "left", "rationale": "ééé"},
        None,
    ),
    ({"rationale_min_length": 5}, {"choice": "left", "rationale": "abc"}, ("short_rationale", "5")),
    ({"rationale_min_length": 5}, {"choice": "left"}, None),
    # The first rule broken is the one reported.
    (
        {"scheme": "graded", "rationale": "off"},
        {"choice": "left", "flags": ["x"], "rationale": "why"},
        ("needs_strength", ""),
    ),
    (
        {"rationale": "off"},
        {"choice": "left", "flags": ["x"], "rationale": "why"},
        ("no_flags", ""),
    ),
]
# answer_problem_sql's terms as typed parameters, for running it through a cursor.
_TYPES = {
    "strength": "integer",
    "ranked": "boolean",
    "allow_tie": "boolean",
    "allow_both_bad": "boolean",
    "criteria": "jsonb",
    "flags": "jsonb",
    "project_criteria": "jsonb",
    "project_flags": "jsonb",
    "rationale_min_length": "integer",
}
_ANSWER_TERMS = {name: f"CAST(%({name})s AS {_TYPES.get(name, 'text')})" for name in ANSWER_TERMS}


def test_every_answer_rule_has_cases_and_a_message():
    codes = [rule.code for rule in ANSWER_RULES]
    assert set(codes) <= set(MESSAGES)
    assert set(codes) <= {expected[0] for _, _, expected in ANSWER_CASES if expected}


@pytest.mark.django_db
@pytest.mark.parametrize(("given", "sent", "expected"), ANSWER_CASES)
def test_answer_problem_and_its_sql_agree(given, sent, expected):
    settings = {
        "scheme": "pairwise",
        "allow_tie": True,
        "allow_both_bad": False,
        "rationale": "optional",
        "rationale_min_length": 0,
        "flags": [],
        **given,
    }
    project = Project(
        **{**settings, "criteria": [{"name": n} for n in settings.get("criteria", [])]}
    )
    answer = answer_parse(**sent)
    assert answer_problem(project, answer) == expected
    if not backend.postgresql():  # the SQL is PostgreSQL's (jsonb, annotate_fits)
        return
    problem, detail = answer_problem_sql(_ANSWER_TERMS, "s.outcome")
    row = statements.run(
        f"SELECT s.outcome, {detail} FROM (SELECT {problem} AS outcome) s",  # noqa: S608
        {
            "choice": answer.overall.choice,
            "strength": answer.overall.strength,
            "ranked": answer.ranking is not None,
            "criteria": json.dumps({n: pick.as_json() for n, pick in answer.criteria.items()}),
            "flags": json.dumps(answer.flags),
            "rationale": answer.rationale,
            "scheme": project.scheme,
            "allow_tie": project.allow_tie,
            "allow_both_bad": project.allow_both_bad,
            "project_criteria": json.dumps(project.criteria),
            "project_flags": json.dumps(project.flags),
            "rationale_rule": project.rationale,
            "rationale_min_length": project.rationale_min_length,
        },
    )
    assert row is not None
    assert (None if row[0] is None else (row[0], row[1] or "")) == expected
