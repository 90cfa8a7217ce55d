"""GET /api/v1/projects/ says how to read a project's data: scheme, criteria, grade scale, the
answers allowed, flags, skip reasons, rationale rule, overlap, policy and the export formats."""

import pytest

from apps.projects.models import GRADES

URL = "/api/v1/projects/"


def listed(api, user, slug="demo"):
    response = api(user).get(URL)
    assert response.status_code == 200
    return next(p for p in response.json() if p["slug"] == slug)


def test_a_pairwise_project_with_criteria_and_flags(api, bob, project):
    project.criteria = [
        {"name": "helpfulness", "description": "Which answers the question?"},
        {"name": "honesty"},  # no description: an empty one
    ]
    project.flags = ["unsafe content", "factual error"]
    project.skip_reasons = ["Not my field"]
    project.allow_both_bad = False
    project.rationale = "required"
    project.rationale_min_length = 20
    project.policy = "depth_first"
    project.save()
    data = listed(api, bob)
    assert data["scheme"] == "pairwise"
    assert data["criteria"] == [
        {"name": "helpfulness", "description": "Which answers the question?"},
        {"name": "honesty", "description": ""},
    ]
    assert data["grade_scale"] is None
    assert data["flags"] == ["unsafe content", "factual error"]
    assert data["skip_reasons"] == ["Not my field"]
    assert (data["allow_tie"], data["allow_both_bad"]) == (True, False)
    assert (data["rationale"], data["rationale_min_length"]) == ("required", 20)
    assert (data["overlap"], data["policy"]) == (3, "depth_first")
    assert data["show_models"] is False and data["guideline_version"] == 1
    assert data["export_formats"] == [
        "trl",
        "trl-implicit",
        "kto",
        "hh-rlhf",
        "openai",
        "arena",
        "judgments",
    ]


def test_a_graded_project_gives_its_scale(api, bob, project):
    project.scheme = "graded"
    project.save()
    data = listed(api, bob)
    assert data["scheme"] == "graded"
    assert data["grade_scale"] == [{"value": v, "description": text} for v, text in GRADES]
    assert [g["value"] for g in data["grade_scale"]] == [-3, -2, -1, 0, 1, 2, 3]
    assert "arena" in data["export_formats"] and "listwise" not in data["export_formats"]


def test_a_listwise_project(api, annotators, project):
    project.scheme = "listwise"
    project.save()
    data = listed(api, annotators[0])  # an annotator reads it too
    assert data["scheme"] == "listwise" and data["criteria"] == []
    assert data["grade_scale"] is None
    assert "listwise" in data["export_formats"] and "arena" not in data["export_formats"]


@pytest.mark.parametrize("secret", ["created_by", "password", "token", "key"])
def test_no_secret_or_account_is_given(api, bob, project, secret):
    assert secret not in listed(api, bob)


def test_the_create_answer_has_the_same_fields(api, alice):
    response = api(alice).post(URL, {"slug": "new", "name": "New"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["scheme"] == "pairwise" and body["criteria"] == []
    assert body == listed(api, alice, "new")
