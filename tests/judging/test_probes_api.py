"""Consistency probes over the REST API (apps/judging/api.py): handed out only to a client that
asks (`probes=1`), shaped as an assignment with `kind` "probe", answered and passed at their own
routes with the project's rules, never a vote, and every bad request refused with nothing
changed."""

import pytest

from apps.batches.models import Comparison
from apps.judging.models import Judgment, RepeatProbe
from apps.projects.models import Membership
from tests.judging.test_probes import (  # noqa: F401 (fixtures)
    _fresh_cache,
    judge_until_drawn,
    many,
    probes_on,
)

# Ten prompts of three candidates (test_probes' fixture) in every test here.
pytestmark = pytest.mark.usefixtures("many")

NEXT = "/api/v1/projects/demo/assignments/next/"


def answer_url(probe_id: int, action: str = "judgment", slug: str = "demo") -> str:
    return f"/api/v1/projects/{slug}/probes/{probe_id}/{action}/"


def judge_by_api(client, choice: str = "left") -> dict:
    lease = client.post(NEXT)
    assert lease.status_code == 200, lease.content
    assert lease.json()["kind"] == "assignment"
    done = client.post(f"/api/v1/assignments/{lease.json()['id']}/judgment/", {"choice": choice})
    assert done.status_code == 201, done.content
    return done.json()


def due_probe(api, project, user, *, first: str = "left") -> tuple[object, RepeatProbe]:
    """An API client of `user` and a probe of theirs that is due (drawn, then one more
    judgment), not yet served."""
    probes_on(project, after=1)
    probe = judge_until_drawn(project, user, first)
    client = api(user)
    judge_by_api(client)
    return client, probe


def test_a_client_that_does_not_ask_is_never_handed_a_probe(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    for _ in range(3):
        judge_by_api(client)
    probe.refresh_from_db()
    assert probe.served_at is None


def test_a_client_that_asks_gets_it_sides_swapped_as_an_assignment(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    response = client.post(NEXT + "?probes=1")
    assert response.status_code == 200
    body = response.json()
    original = probe.original
    assert body["kind"] == "probe" and body["id"] == probe.pk
    assert body["comparison"] == original.comparison_id
    assert body["left"]["id"] == original.right.external_id
    assert body["right"]["id"] == original.left.external_id
    assert body["left"]["text"] == original.right.text and body["expires_at"] is None
    assert isinstance(body["prompt"], str) and body["prompt"]
    # A reload gets the same probe back; it is marked served once.
    again = client.post(NEXT + "?probes=1").json()
    assert (again["kind"], again["id"]) == ("probe", probe.pk)
    probe.refresh_from_db()
    assert probe.served_at is not None


@pytest.mark.parametrize(("second", "consistent"), [("right", True), ("left", False)])
def test_the_answer_is_compared_with_the_first_and_is_never_a_vote(
    api, bob, project, annotators, second, consistent
):
    client, probe = due_probe(api, project, annotators[0], first="left")
    client.post(NEXT + "?probes=1")
    comparison = Comparison.objects.get(pk=probe.comparison_id)
    before = (
        comparison.judgment_count,
        Judgment.objects.count(),
        Membership.objects.get(user=annotators[0], project=project).judgment_count,
        b"".join(api(bob).get("/api/v1/projects/demo/export/").streaming_content),
    )
    # The sides are swapped: "right" now names what "left" named the first time.
    response = client.post(answer_url(probe.pk), {"choice": second}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] == probe.pk and body["comparison"] == probe.comparison_id
    assert body["answered_at"] and "next" not in body and "consistent" not in body
    probe.refresh_from_db()
    assert probe.consistent is consistent
    comparison.refresh_from_db()
    after = (
        comparison.judgment_count,
        Judgment.objects.count(),
        Membership.objects.get(user=annotators[0], project=project).judgment_count,
        b"".join(api(bob).get("/api/v1/projects/demo/export/").streaming_content),
    )
    assert after == before
    stats = api(bob).get("/api/v1/projects/demo/stats/").json()
    [row] = [a for a in stats["annotators"] if a["repeat"]]
    assert (row["repeat"]["probes"], row["repeat"]["consistent"]) == (1, int(consistent))


def test_the_answer_carries_the_next_assignment_when_asked(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    client.post(NEXT + "?probes=1")
    response = client.post(answer_url(probe.pk) + "?next=1&probes=1", {"choice": "right"})
    assert response.status_code == 201
    body = response.json()
    assert body["next"]["kind"] == "assignment" and body["next_reason"] is None
    # It is a real lease: judging it works.
    done = client.post(f"/api/v1/assignments/{body['next']['id']}/judgment/", {"choice": "left"})
    assert done.status_code == 201


def test_a_judgment_with_next_hands_the_due_probe_to_a_client_that_asks(api, project, annotators):
    probes_on(project, after=1)
    user = annotators[0]
    judge_until_drawn(project, user)
    client = api(user)
    lease = client.post(NEXT).json()
    url = f"/api/v1/assignments/{lease['id']}/judgment/?next=1&probes=1"
    body = client.post(url, {"choice": "left"}).json()
    assert body["next"]["kind"] == "probe"
    probe = RepeatProbe.objects.get(pk=body["next"]["id"])
    assert probe.annotator == user and probe.served_at is not None


def test_a_judgment_with_next_but_not_probes_carries_a_lease(api, project, annotators):
    probes_on(project, after=1)
    user = annotators[0]
    probe = judge_until_drawn(project, user)
    client = api(user)
    lease = client.post(NEXT).json()
    body = client.post(
        f"/api/v1/assignments/{lease['id']}/judgment/?next=1", {"choice": "left"}
    ).json()
    assert body["next"]["kind"] == "assignment"
    probe.refresh_from_db()
    assert probe.served_at is None


def test_a_pass_closes_it_unanswered(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    client.post(NEXT + "?probes=1")
    response = client.post(answer_url(probe.pk, "skip") + "?next=1")
    assert response.status_code == 201
    assert response.json()["next"]["kind"] == "assignment"
    probe.refresh_from_db()
    assert probe.answered_at is not None and probe.consistent is None and probe.choice == ""
    assert client.post(answer_url(probe.pk), {"choice": "left"}).status_code == 409


# -- retries: the same request again changes nothing ------------------------------------------


def test_the_same_answer_sent_again_is_a_200_with_the_same_body_and_changes_nothing(
    api, project, annotators
):
    """A client whose response was lost sends the answer again: no idempotency key is needed,
    as a probe takes one answer. The retry gets the stored answer back, with the next item when
    it asks; another answer, or a pass, is a 409 and the first answer stands."""
    client, probe = due_probe(api, project, annotators[0], first="left")
    client.post(NEXT + "?probes=1")
    first = client.post(answer_url(probe.pk), {"choice": "right"}, format="json")
    assert first.status_code == 201, first.content
    probe.refresh_from_db()
    stored = (probe.choice, probe.consistent, probe.answered_at)
    again = client.post(answer_url(probe.pk), {"choice": "right"}, format="json")
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    with_next = client.post(answer_url(probe.pk) + "?next=1", {"choice": "right"}, format="json")
    assert with_next.status_code == 200
    assert with_next.json()["id"] == probe.pk and with_next.json()["next"]["kind"] == "assignment"
    for body in ({"choice": "left"}, {"choice": "tie"}, {"choice": "sideways"}, {}):
        refused = client.post(answer_url(probe.pk), body, format="json")
        assert refused.status_code == 409, (body, refused.content)
        assert "first answer stands" in refused.json()["detail"]
    assert client.post(answer_url(probe.pk, "skip")).status_code == 409
    probe.refresh_from_db()
    assert (probe.choice, probe.consistent, probe.answered_at) == stored
    assert RepeatProbe.objects.filter(annotator=annotators[0]).count() == 1


def test_a_pass_sent_again_is_a_200_and_an_answer_after_it_a_409(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    client.post(NEXT + "?probes=1")
    first = client.post(answer_url(probe.pk, "skip"))
    assert first.status_code == 201
    again = client.post(answer_url(probe.pk, "skip"))
    assert again.status_code == 200 and again.json() == first.json()
    assert client.post(answer_url(probe.pk), {"choice": "left"}).status_code == 409
    probe.refresh_from_db()
    assert probe.choice == "" and probe.consistent is None


# -- bad requests: each refused, the probe still waiting --------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"choice": "sideways"},
        {"choice": 3},
        {"choice": ["left"]},
        {"choice": "left", "strength": 2},
        {"choice": "left", "rationale": 5},
        {"choice": "left", "flags": "not-a-list"},
        {"choice": "left", "criteria": {"unknown": "left"}},
    ],
)
def test_a_malformed_answer_is_a_400_and_the_probe_waits(api, project, annotators, data):
    client, probe = due_probe(api, project, annotators[0])
    client.post(NEXT + "?probes=1")
    response = client.post(answer_url(probe.pk), data, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    probe.refresh_from_db()
    assert probe.answered_at is None and probe.choice == ""
    assert client.post(answer_url(probe.pk), {"choice": "left"}).status_code == 201


def test_a_body_that_is_not_an_object_is_a_400(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    client.post(NEXT + "?probes=1")
    response = client.post(answer_url(probe.pk), ["left"], format="json")
    assert response.status_code == 400
    probe.refresh_from_db()
    assert probe.answered_at is None


@pytest.mark.parametrize("value", ["yes", "2", ""])
def test_a_bad_probes_or_next_value_is_a_400_before_anything_is_stored(
    api, project, annotators, value
):
    client, probe = due_probe(api, project, annotators[0])
    response = client.post(NEXT + f"?probes={value}")
    assert response.status_code == 400 and "probes" in response.json()
    probe.refresh_from_db()
    assert probe.served_at is None
    client.post(NEXT + "?probes=1")
    for query in (f"?probes={value}", f"?next={value}"):
        refused = client.post(answer_url(probe.pk) + query, {"choice": "left"})
        assert refused.status_code == 400
    lease = Judgment.objects.count()
    judged = client.post(
        f"/api/v1/assignments/{probe.pk}/judgment/?next=1&probes={value}", {"choice": "left"}
    )
    assert judged.status_code == 400 and Judgment.objects.count() == lease
    probe.refresh_from_db()
    assert probe.answered_at is None


def test_another_annotators_or_an_unserved_or_unknown_probe_is_a_404(api, project, annotators):
    client, probe = due_probe(api, project, annotators[0])
    # Not served yet.
    assert client.post(answer_url(probe.pk), {"choice": "left"}).status_code == 404
    client.post(NEXT + "?probes=1")
    other = api(annotators[1])
    for action in ("judgment", "skip"):
        assert other.post(answer_url(probe.pk, action), {"choice": "left"}).status_code == 404
        assert client.post(answer_url(10**9, action), {"choice": "left"}).status_code == 404
    # Another project's address, and no account at all.
    assert client.post(answer_url(probe.pk, slug="other"), {"choice": "left"}).status_code == 404
    assert api(None).post(answer_url(probe.pk), {"choice": "left"}).status_code in (401, 403)
    probe.refresh_from_db()
    assert probe.answered_at is None


def test_the_project_rules_apply_to_the_answer(api, project, annotators):
    project.allow_tie = False
    project.save()
    client, probe = due_probe(api, project, annotators[0], first="left")
    client.post(NEXT + "?probes=1")
    refused = client.post(answer_url(probe.pk), {"choice": "tie"})
    assert refused.status_code == 400 and "choice must be one of" in refused.json()["detail"]
    probe.refresh_from_db()
    assert probe.answered_at is None
    assert client.post(answer_url(probe.pk), {"choice": "right"}).status_code == 201
