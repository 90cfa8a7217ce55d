"""Issue 4's judgment schemes: graded strength, criteria, flags, the rationale rule and the
guideline version, through the REST API on both databases."""

import pytest

from apps.batches.models import Comparison
from apps.judging.models import Assignment, AssignmentStatus, Judgment
from apps.projects.models import GuidelineVersion
from apps.projects.services import project_guidelines_set
from tests.conftest import prompt_line

NEXT = "/api/v1/projects/demo/assignments/next/"


def judge_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/judgment/"


def configure(project, **settings):
    for name, value in settings.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()


@pytest.fixture
def client(api, annotators, batch):
    return api(annotators[0])


def lease_of(client):
    return client.post(NEXT).json()


def submit(client, lease, **body):
    return client.post(judge_url(lease["id"]), body, format="json")


def left_is_a(lease):
    comparison = Comparison.objects.select_related("candidate_a").get(pk=lease["comparison"])
    return comparison.candidate_a.external_id == lease["left"]["id"]


def assert_refused(response, fragment, lease):
    """A 400 that says what is wrong, and nothing stored: the lease is still open."""
    assert response.status_code == 400, response.content
    assert fragment in str(response.json()), response.json()
    assert not Judgment.objects.filter(assignment_id=lease["id"]).exists()
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.OPEN


# -- graded ------------------------------------------------------------------------------------


@pytest.mark.parametrize("screen", [-3, -2, -1, 1, 2, 3])
def test_a_graded_strength_is_stored_oriented_to_the_candidates(client, project, screen):
    configure(project, scheme="graded")
    lease = lease_of(client)
    response = submit(client, lease, strength=screen)
    assert response.status_code == 201, response.content
    body = response.json()
    winner = lease["left"] if screen < 0 else lease["right"]
    assert (body["choice"], body["chosen_id"], body["strength"]) == (
        "left" if screen < 0 else "right",
        winner["id"],
        screen,
    )
    stored = Judgment.objects.get()
    # Positive favours candidate A, whichever side it was shown on.
    assert stored.strength == (-screen if left_is_a(lease) else screen)
    assert stored.chosen.external_id == winner["id"]


def test_a_graded_zero_is_a_tie_even_where_ties_are_not_offered(client, project):
    configure(project, scheme="graded", allow_tie=False)
    lease = lease_of(client)
    response = submit(client, lease, strength=0)
    assert response.status_code == 201, response.content
    stored = Judgment.objects.get()
    assert (stored.choice, stored.chosen_id, stored.strength) == ("tie", None, 0)
    assert Comparison.objects.get(pk=lease["comparison"]).votes_tie == 1


def test_both_bad_needs_no_strength_in_a_graded_project(client, project):
    configure(project, scheme="graded")
    lease = lease_of(client)
    assert submit(client, lease, choice="both_bad").status_code == 201
    assert Judgment.objects.get().strength is None


@pytest.mark.parametrize(
    ("scheme", "body", "fragment"),
    [
        ("graded", {"choice": "left"}, "This project is graded: send strength"),
        ("graded", {"strength": 4}, "strength must be from -3 to 3"),
        ("graded", {"strength": "lots"}, "strength must be a whole number"),
        ("graded", {"choice": "right", "strength": -2}, "contradicts strength -2"),
        ("pairwise", {"strength": 2}, "This project is not graded"),
        ("pairwise", {"choice": "left", "strength": -1}, "This project is not graded"),
        ("pairwise", {}, "choice must be one of"),
    ],
)
def test_answers_that_do_not_fit_the_scheme_are_refused(client, project, scheme, body, fragment):
    configure(project, scheme=scheme)
    lease = lease_of(client)
    assert_refused(submit(client, lease, **body), fragment, lease)
    # Nothing was lost: the same lease takes a good answer.
    good = {"strength": 1} if scheme == "graded" else {"choice": "left"}
    assert submit(client, lease, **good).status_code == 201


# -- criteria ----------------------------------------------------------------------------------

CRITERIA = [
    {"name": "helpfulness", "description": "Does it do what was asked?"},
    {"name": "harmlessness", "description": "Could it hurt anyone?"},
]


def test_each_criterion_is_answered_and_stored_on_its_own(client, project):
    configure(project, criteria=CRITERIA)
    lease = lease_of(client)
    response = submit(
        client, lease, choice="left", criteria={"helpfulness": "left", "harmlessness": "tie"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["criteria"] == {
        "helpfulness": {"choice": "left", "strength": None},
        "harmlessness": {"choice": "tie", "strength": None},
    }
    left = "a" if left_is_a(lease) else "b"
    assert Judgment.objects.get().criteria == {
        "helpfulness": {"option": left, "strength": None},
        "harmlessness": {"option": "tie", "strength": None},
    }


def test_graded_criteria_take_strengths(client, project):
    configure(project, scheme="graded", criteria=CRITERIA)
    lease = lease_of(client)
    response = submit(
        client, lease, strength=2, criteria={"helpfulness": 3, "harmlessness": {"strength": -1}}
    )
    assert response.status_code == 201, response.content
    flip = -1 if left_is_a(lease) else 1
    stored = Judgment.objects.get().criteria
    assert stored["helpfulness"]["strength"] == 3 * flip
    assert stored["harmlessness"]["strength"] == -1 * flip
    assert response.json()["criteria"]["harmlessness"] == {"choice": "left", "strength": -1}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"criteria": {"helpfulness": "left"}}, "each of this project's criteria"),
        (
            {"criteria": {"helpfulness": "left", "harmlessness": "left", "honesty": "left"}},
            "helpfulness, harmlessness",
        ),
        ({"criteria": {"helpfulness": "left", "harmlessness": "maybe"}}, "criteria[harmlessness]"),
        ({"criteria": {"helpfulness": "left", "harmlessness": 2}}, "criteria[harmlessness]"),
        ({"criteria": ["helpfulness"]}, "criteria must be an object"),
    ],
)
def test_criteria_answers_are_checked(client, project, body, fragment):
    configure(project, criteria=CRITERIA, allow_tie=False)
    lease = lease_of(client)
    assert_refused(submit(client, lease, choice="left", **body), fragment, lease)


def test_a_project_without_criteria_refuses_them(client, project):
    lease = lease_of(client)
    response = submit(client, lease, choice="left", criteria={"helpfulness": "left"})
    assert_refused(response, "This project has no criteria", lease)


# -- flags -------------------------------------------------------------------------------------


def test_flags_are_stored_once_each(client, project):
    configure(project, flags=["unsafe content", "factual error", "prompt unclear"])
    lease = lease_of(client)
    response = submit(
        client, lease, choice="right", flags=["factual error", "unsafe content", "factual error"]
    )
    assert response.status_code == 201, response.content
    assert Judgment.objects.get().flags == ["factual error", "unsafe content"]


@pytest.mark.parametrize(
    ("flags", "body", "fragment"),
    [
        (["unsafe content"], {"flags": ["spam"]}, "among this project's flags: unsafe content"),
        ([], {"flags": ["spam"]}, "This project has no flags"),
        (["unsafe content"], {"flags": "unsafe content"}, "flags must be a list"),
    ],
)
def test_flags_are_checked(client, project, flags, body, fragment):
    configure(project, flags=flags)
    lease = lease_of(client)
    assert_refused(submit(client, lease, choice="left", **body), fragment, lease)


# -- rationale ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "least", "rationale", "fragment"),
    [
        ("off", 0, "Because.", "takes no rationale"),
        ("required", 0, "", "at least 1 characters"),
        ("required", 0, "   ", "at least 1 characters"),
        ("required", 20, "Too short.", "at least 20 characters"),
        ("optional", 10, "Short.", "at least 10 characters"),
    ],
)
def test_the_rationale_rule_is_enforced(client, project, rule, least, rationale, fragment):
    configure(project, rationale=rule, rationale_min_length=least)
    lease = lease_of(client)
    response = submit(client, lease, choice="left", rationale=rationale)
    assert_refused(response, fragment, lease)


@pytest.mark.parametrize(
    ("rule", "least", "rationale"),
    [("off", 0, ""), ("optional", 10, ""), ("required", 5, "Clearer and correct.")],
)
def test_rationales_that_follow_the_rule_are_taken(client, project, rule, least, rationale):
    configure(project, rationale=rule, rationale_min_length=least)
    lease = lease_of(client)
    assert submit(client, lease, choice="left", rationale=rationale).status_code == 201


# -- guideline versions ------------------------------------------------------------------------


def test_a_judgment_records_the_guideline_version_of_its_lease(client, project, bob):
    first = lease_of(client)
    assert project_guidelines_set(project=project, text="Prefer the **shorter** answer.", by=bob)
    assert not project_guidelines_set(project=project, text="Prefer the **shorter** answer.")
    assert submit(client, first, choice="left").json()["guideline_version"] == 1
    second = lease_of(client)
    assert submit(client, second, choice="left").json()["guideline_version"] == 2
    versions = GuidelineVersion.objects.filter(project=project).order_by("version")
    assert [(v.version, v.text) for v in versions] == [
        (1, ""),
        (2, "Prefer the **shorter** answer."),
    ]
    assert versions[1].created_by == bob


def test_a_project_refuses_malformed_criteria_and_flags(project):
    from django.core.exceptions import ValidationError

    for bad in (
        {"criteria": [{"name": ""}]},
        {"criteria": [{"name": "a"}, {"name": "a"}]},
        {"criteria": [{"name": "ok", "weight": 2}]},
        {"criteria": "helpfulness"},
        {"flags": ["<script>"]},
        {"flags": "spam"},
    ):
        with pytest.raises(ValidationError):
            configure(project, **bad)


# -- the judging page's forms (no JavaScript) -----------------------------------------------


@pytest.fixture
def page_client(annotators, batch):
    """A logged-in browser without JavaScript: Django's test client."""
    from django.test import Client

    browser = Client()
    browser.force_login(annotators[0])
    return browser


def lease_on_page(browser):
    import re

    html = browser.get("/p/demo/").content.decode()
    return html, re.search(r'data-assignment="(\d+)"', html).group(1)


def test_the_page_offers_the_graded_scale_criteria_and_flags(page_client, project):
    configure(project, scheme="graded", criteria=CRITERIA, flags=["factual error"])
    html, _ = lease_on_page(page_client)
    html = html.split("<template")[0]  # the card, without the prefetched next one
    for value in range(-3, 4):
        assert f'name="strength" value="{value}"' in html
    assert 'name="choice" value="left"' not in html
    assert html.count('name="criterion:helpfulness"') == 7
    assert "Does it do what was asked?" in html
    assert 'name="flag" value="factual error"' in html


def test_a_plain_form_post_takes_a_graded_answer_with_criteria_and_flags(page_client, project):
    configure(project, scheme="graded", criteria=CRITERIA, flags=["factual error"])
    _, lease = lease_on_page(page_client)
    response = page_client.post(
        f"/p/demo/a/{lease}/",
        {
            "strength": "-1",
            "criterion:helpfulness": "-3",
            "criterion:harmlessness": "0",
            "flag": ["factual error"],
            "rationale": "Left is a bit clearer.",
        },
    )
    assert response.status_code == 302
    judgment = Judgment.objects.get()
    assert judgment.choice == "left" and abs(judgment.strength) == 1
    assert judgment.criteria["harmlessness"] == {"option": "tie", "strength": 0}
    assert judgment.flags == ["factual error"]


def test_a_form_post_missing_a_criterion_shows_why_on_the_same_comparison(page_client, project):
    configure(project, criteria=CRITERIA)
    _, lease = lease_on_page(page_client)
    response = page_client.post(
        f"/p/demo/a/{lease}/", {"choice": "left", "criterion:helpfulness": "left"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "each of this project&#x27;s criteria" in html
    assert f'data-assignment="{lease}"' in html
    assert not Judgment.objects.exists()


def test_the_rationale_box_follows_the_rule(page_client, project):
    configure(project, rationale="off")
    html, _ = lease_on_page(page_client)
    assert 'id="rationale"' not in html
    configure(project, rationale="required", rationale_min_length=12)
    html, _ = lease_on_page(page_client)
    assert 'required minlength="12"' in html


def test_model_names_show_only_where_the_project_says(page_client, project, import_rows):
    import_rows(
        {
            "id": "m-1",
            "prompt": "Hi",
            "candidates": [
                {"id": "x1", "text": "Hello there", "model": "zephyr-secret-7b"},
                {"id": "x2", "text": "Hi!", "model": "orca-hidden-13b"},
            ],
        }
    )
    Comparison.objects.exclude(prompt__external_id="m-1").update(complete=True)
    html, _ = lease_on_page(page_client)
    assert "zephyr-secret-7b" not in html and "orca-hidden-13b" not in html
    configure(project, show_models=True)
    html, _ = lease_on_page(page_client)
    assert "zephyr-secret-7b" in html and "orca-hidden-13b" in html


def test_a_prefetched_gold_item_is_served_as_prefetched(page_client, project, import_rows):
    """The prefetch draws gold (at the project's rate), and the judgment that names a gold item
    gets it: the page never swaps one comparison for another because a gold item was drawn."""
    import re

    from apps.judging.models import Assignment

    import_rows(*(prompt_line(f"gold-{i}", gold={"preferred": "c1"}) for i in range(3)))
    import_rows(*(prompt_line(f"plain-{i}") for i in range(3)))
    configure(project, gold_rate=1.0)
    html, lease = lease_on_page(page_client)
    prefer = re.search(r'name="prefer" value="(\d+):([01])"', html)
    assert prefer is not None
    assert Comparison.objects.get(pk=prefer.group(1)).is_gold
    response = page_client.post(
        f"/p/demo/a/{lease}/",
        {"choice": "left", "prefer": f"{prefer.group(1)}:{prefer.group(2)}"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert "taken by others" not in html
    new = re.search(r'data-assignment="(\d+)"', html).group(1)
    assignment = Assignment.objects.get(pk=new)
    assert str(assignment.comparison_id) == prefer.group(1)
    swapped = prefer.group(2) == "1"
    assert assignment.left_id == (
        assignment.comparison.candidate_b_id if swapped else assignment.comparison.candidate_a_id
    )
    assert Comparison.objects.get(pk=prefer.group(1)).lease_count == 0  # gold takes no slot
