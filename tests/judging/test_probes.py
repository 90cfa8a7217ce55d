"""Consistency probes (apps/judging/probes.py): the draw, the due rule, serving on the judging
page with the sides swapped, the answer recorded and compared, bad input on the answer's route,
and that a probe is never a vote."""

import html as html_module
import re

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from apps.batches.models import Comparison
from apps.judging.models import Judgment, RepeatProbe
from apps.judging.probes import (
    ProbeAnswered,
    probe_after_submit,
    probe_answer,
    probe_drawn,
    probe_next,
)
from apps.judging.queue import (
    assignment_next,
    judgment_submit,
    judgment_undo,
    judgments_invalidate,
)
from apps.projects.models import Membership, Project
from apps.projects.services import project_create
from tests.conftest import prompt_line

PAGE = "/p/demo/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The page's "left" count and the dashboard's figures are cached under ids the next test
    reuses: leave an empty cache behind, as found."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def many(import_rows):
    """Ten prompts of three candidates: 30 comparisons."""
    return import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 11)))


def probes_on(project: Project, *, rate: float = 0.5, after: int = 2) -> None:
    project.repeat_rate, project.repeat_after = rate, after
    project.save()


def judge_next(project, user, choice: str = "left") -> Judgment:
    lease = assignment_next(project=project, annotator=user)
    assert lease is not None
    return judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice).judgment


def judge_until_drawn(project, user, choice: str = "left") -> RepeatProbe:
    """Judges as `user` until one of their judgments is drawn for a probe."""
    for _ in range(30):
        judgment = judge_next(project, user, choice)
        probe = RepeatProbe.objects.filter(original=judgment).first()
        if probe is not None:
            return probe
    raise AssertionError("no judgment drawn in 30")


def shown(html: str) -> str:
    match = re.search(r'data-assignment="([^"]+)"', html)
    assert match, html
    return match.group(1)


def served_probe(client, project, user, *, first: str = "left", after: int = 1) -> RepeatProbe:
    """A probe of one of `user`'s judgments (answered `first`), served on the page."""
    probes_on(project, after=after)
    client.force_login(user)
    probe = judge_until_drawn(project, user, first)
    for _ in range(after):
        judge_next(project, user)
    assert shown(client.get(PAGE).content.decode()) == f"r{probe.pk}"
    probe.refresh_from_db()
    return probe


# -- the draw ----------------------------------------------------------------------------------


def test_the_draw_is_a_hash_of_the_id_at_the_rate():
    ids = range(1, 20_001)
    for rate in (0.05, 0.2, 0.5):
        share = sum(probe_drawn(i, rate) for i in ids) / len(ids)
        assert abs(share - rate) < 0.01
    assert not any(probe_drawn(i, 0.0) for i in ids)
    # Deterministic, and a higher rate only adds judgments.
    assert all(probe_drawn(i, 0.5) for i in ids if probe_drawn(i, 0.1))


def test_it_draws_exactly_the_hashed_judgments_with_their_sides_swapped(project, annotators, many):
    probes_on(project, rate=0.5, after=5)
    judgments = [judge_next(project, annotators[0]) for _ in range(20)]
    drawn = {j.pk for j in judgments if probe_drawn(j.pk, 0.5)}
    assert drawn, "none of 20 ids drawn at one half"
    probes = RepeatProbe.objects.filter(annotator=annotators[0])
    assert {p.original_id for p in probes} == drawn
    for probe in probes:
        original = probe.original
        assert (probe.left_id, probe.right_id) == (original.right_id, original.left_id)
        assert probe.comparison_id == original.comparison_id and probe.project == project
        assert probe.served_at is None and probe.answered_at is None and probe.consistent is None
    # due_after: the annotator's count when drawn, plus repeat_after.
    first = min(probes, key=lambda p: p.pk)
    position = [j.pk for j in judgments].index(first.original_id) + 1
    assert first.due_after == position + 5


def test_no_probe_at_rate_zero_nor_for_an_ai_judge(project, annotators, many):
    for _ in range(10):
        judge_next(project, annotators[0])
    assert not RepeatProbe.objects.exists()
    probes_on(project, rate=0.5)
    judgment = judge_next(project, annotators[1])
    RepeatProbe.objects.all().delete()
    Membership.objects.filter(user=annotators[1]).update(role="ai")
    assert probe_after_submit(judgment=judgment) is None
    Membership.objects.filter(user=annotators[1]).update(role="annotator")
    judgment.source = "ai"
    assert probe_after_submit(judgment=judgment) is None


def test_a_drawn_judgment_gets_one_probe_only(project, annotators, many):
    probes_on(project)
    probe = judge_until_drawn(project, annotators[0])
    assert probe_after_submit(judgment=probe.original) is None
    assert RepeatProbe.objects.filter(original=probe.original).count() == 1


# -- serving -----------------------------------------------------------------------------------


def test_it_is_served_after_exactly_repeat_after_judgments_sides_swapped(
    client, project, annotators, many
):
    probes_on(project, after=3)
    user = annotators[0]
    client.force_login(user)
    probe = judge_until_drawn(project, user)
    for _ in range(3):
        html = client.get(PAGE).content.decode()
        assert shown(html).isdigit()  # an ordinary lease: the probe is not due yet
        judgment_submit(assignment_id=int(shown(html)), annotator=user, choice="left")
    html = client.get(PAGE).content.decode()
    assert shown(html) == f"r{probe.pk}"
    original = probe.original
    # The same card, sides swapped: the original's right response is on the left now.
    card = html.split('id="prefetched"')[0]
    assert card.index(original.right.text) < card.index(original.left.text)
    assert f'action="/p/demo/r/{probe.pk}/"' in card
    assert f'action="/p/demo/r/{probe.pk}/skip/"' in card
    for label in ("Left is better", "Right is better", "Tie", "Both bad"):
        assert label in card
    probe.refresh_from_db()
    assert probe.served_at is not None
    # A reload shows it again; no lease was taken for it.
    assert shown(client.get(PAGE).content.decode()) == f"r{probe.pk}"
    assert not user.assignments.filter(status="open").exists()


def test_an_open_lease_goes_first_and_an_invalidated_original_is_never_served(
    client, project, annotators, bob, many
):
    probes_on(project, after=1)
    user = annotators[0]
    client.force_login(user)
    probe = judge_until_drawn(project, user)
    lease = assignment_next(project=project, annotator=user)  # open, e.g. from the API
    assert shown(client.get(PAGE).content.decode()) == str(lease.pk)
    judgment_submit(assignment_id=lease.pk, annotator=user, choice="left")
    judgments_invalidate(
        project=project, annotator=user, actor=bob, reason="test", judgment_ids=[probe.original_id]
    )
    assert shown(client.get(PAGE).content.decode()).isdigit()


def test_rate_zero_serves_none(client, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    RepeatProbe.objects.filter(pk=probe.pk).update(served_at=None)
    probes_on(project, rate=0.0)
    assert shown(client.get(PAGE).content.decode()).isdigit()


# -- the answer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "again", "consistent"),
    [
        ("left", "right", True),  # the same response, now on the right
        ("left", "left", False),
        ("right", "left", True),
        ("tie", "tie", True),
        ("left", "tie", False),
        ("tie", "right", False),
        ("both_bad", "both_bad", True),
    ],
)
def test_the_answer_is_recorded_oriented_and_compared(
    client, project, annotators, many, first, again, consistent
):
    probe = served_probe(client, project, annotators[0], first=first)
    response = client.post(f"/p/demo/r/{probe.pk}/", {"choice": again})
    assert response.status_code == 302
    probe.refresh_from_db()
    assert probe.answered_at is not None and probe.consistent is consistent
    a_on_left = probe.left_id == probe.comparison.candidate_a_id
    expected = {"left": "a" if a_on_left else "b", "right": "b" if a_on_left else "a"}
    assert probe.choice == expected.get(again, again)
    # Then the queue's next comparison.
    assert shown(client.get(PAGE).content.decode()).isdigit()


def test_the_htmx_answer_shows_the_next_comparison(client, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    response = client.post(f"/p/demo/r/{probe.pk}/", {"choice": "right"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert shown(response.content.decode()).isdigit()
    assert "Judgment saved." in response.content.decode()


def test_a_probe_is_never_a_vote(api, client, bob, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    comparison = Comparison.objects.get(pk=probe.comparison_id)
    before = {
        "counts": (comparison.judgment_count, comparison.lease_count),
        "judgments": Judgment.objects.count(),
        "member": Membership.objects.get(user=annotators[0], project=project).judgment_count,
        "stats": api(bob).get("/api/v1/projects/demo/stats/").json(),
        "export": b"".join(api(bob).get("/api/v1/projects/demo/export/").streaming_content),
    }
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "left"}).status_code == 302
    comparison.refresh_from_db()
    stats = api(bob).get("/api/v1/projects/demo/stats/").json()
    assert (comparison.judgment_count, comparison.lease_count) == before["counts"]
    assert Judgment.objects.count() == before["judgments"]
    assert (
        Membership.objects.get(user=annotators[0], project=project).judgment_count
        == before["member"]
    )
    for key in ("counts", "agreement", "models"):
        assert stats[key] == before["stats"][key]
    export = b"".join(api(bob).get("/api/v1/projects/demo/export/").streaming_content)
    assert export == before["export"]
    # Only the repeat figures see it.
    [row] = [a for a in stats["annotators"] if a["repeat"]]
    assert (row["repeat"]["probes"], row["repeat"]["consistent"]) == (1, 0)


def test_a_skip_closes_it_unanswered(client, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    response = client.post(f"/p/demo/r/{probe.pk}/skip/", {"reason": ""})
    assert response.status_code == 302
    probe.refresh_from_db()
    assert probe.answered_at is not None and probe.consistent is None and probe.choice == ""
    assert shown(client.get(PAGE).content.decode()).isdigit()


# -- bad input on the answer's route -------------------------------------------------------------


def test_another_annotators_probe_is_a_404_and_changes_nothing(client, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    client.force_login(annotators[1])
    for data in ({"choice": "left"}, {"choice": "sideways"}):
        assert client.post(f"/p/demo/r/{probe.pk}/", data).status_code == 404
        assert client.post(f"/p/demo/r/{probe.pk}/skip/", data).status_code == 404
    probe.refresh_from_db()
    assert probe.answered_at is None
    # Nor through another project's address, nor for a stranger.
    client.force_login(annotators[0])
    assert client.post(f"/p/other/r/{probe.pk}/", {"choice": "left"}).status_code == 404


def test_an_unserved_probe_is_a_404(client, project, annotators, many):
    probes_on(project, after=50)
    client.force_login(annotators[0])
    probe = judge_until_drawn(project, annotators[0])
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "left"}).status_code == 404
    probe.refresh_from_db()
    assert probe.answered_at is None


def test_answering_twice_keeps_the_first_answer(client, project, annotators, many):
    probe = served_probe(client, project, annotators[0])
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "right"}).status_code == 302
    again = client.post(f"/p/demo/r/{probe.pk}/", {"choice": "left"})
    assert again.status_code == 409
    assert "already answered this comparison: your first answer stands" in again.content.decode()
    assert client.post(f"/p/demo/r/{probe.pk}/skip/", {}).status_code == 409
    probe.refresh_from_db()
    assert probe.consistent is True


def test_the_same_answer_posted_twice_goes_on_to_the_next_comparison(
    client, project, annotators, many
):
    """A double submit of the same answer (a second click, a resent form) is no error: the page
    goes on, and the probe keeps its one answer."""
    probe = served_probe(client, project, annotators[0])
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "right"}).status_code == 302
    probe.refresh_from_db()
    stored = (probe.choice, probe.consistent, probe.answered_at)
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "right"}).status_code == 302
    probe.refresh_from_db()
    assert (probe.choice, probe.consistent, probe.answered_at) == stored


@pytest.mark.parametrize(
    "data",
    [{"choice": "sideways"}, {}, {"choice": "left", "strength": "x"}, {"choice": "ranking"}],
)
def test_a_malformed_answer_is_a_400_and_the_probe_waits(client, project, annotators, many, data):
    probe = served_probe(client, project, annotators[0])
    response = client.post(f"/p/demo/r/{probe.pk}/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="error"' in html and shown(html) == f"r{probe.pk}"
    probe.refresh_from_db()
    assert probe.answered_at is None
    # With htmx: the same card and the error, swapped in.
    response = client.post(f"/p/demo/r/{probe.pk}/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and shown(response.content.decode()) == f"r{probe.pk}"
    assert client.post(f"/p/demo/r/{probe.pk}/", {"choice": "right"}).status_code == 302
    probe.refresh_from_db()
    assert probe.consistent is True


def test_the_project_rules_apply_to_the_answer(client, project, annotators, many):
    project.allow_tie = False
    project.save()
    probe = served_probe(client, project, annotators[0])
    response = client.post(f"/p/demo/r/{probe.pk}/", {"choice": "tie"})
    assert response.status_code == 400 and "choice must be one of" in response.content.decode()


FAIL_ON_NEW_PROBE = {
    "postgresql": [
        """CREATE FUNCTION test_refuse_probe() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'refused for the test'; END $$""",
        """CREATE TRIGGER test_refuse_probe BEFORE INSERT ON judging_repeatprobe
           FOR EACH ROW EXECUTE FUNCTION test_refuse_probe()""",
    ],
    "sqlite": [
        """CREATE TRIGGER test_refuse_probe BEFORE INSERT ON judging_repeatprobe
           BEGIN SELECT RAISE(ABORT, 'refused for the test'); END""",
    ],
}


def test_the_judgment_stands_when_its_probe_cannot_be_stored(api, project, annotators, many):
    """The database refuses the probe (a trigger, inside this test's transaction): every
    judgment is stored and answered 201 all the same, and none has a probe."""
    probes_on(project)
    client = api(annotators[0])
    with connection.cursor() as cursor:
        for sql in FAIL_ON_NEW_PROBE[connection.vendor]:
            cursor.execute(sql)
    ids = []
    for _ in range(10):
        lease = client.post("/api/v1/projects/demo/assignments/next/").json()
        response = client.post(
            f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": "left"}, format="json"
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    assert any(probe_drawn(pk, 0.5) for pk in ids)
    assert Judgment.objects.filter(pk__in=ids).count() == 10
    assert not RepeatProbe.objects.exists()


def test_an_undone_judgment_takes_its_probe_with_it(project, annotators, many):
    probes_on(project)
    probe = judge_until_drawn(project, annotators[0])
    judgment_undo(project=project, annotator=annotators[0])
    assert not RepeatProbe.objects.filter(pk=probe.pk).exists()


# -- settings ----------------------------------------------------------------------------------


def test_the_admin_sets_the_rate_and_refuses_it_for_listwise(client, alice, project):
    from tests.projects.test_admin import _project_form

    client.force_login(alice)
    url = f"/admin/projects/project/{project.pk}/change/"
    response = client.post(url, _project_form(project, scheme="listwise", repeat_rate="0.2"))
    assert response.status_code == 200
    assert "a listwise project" in html_module.unescape(response.content.decode())
    project.refresh_from_db()
    assert (project.scheme, project.repeat_rate) == ("pairwise", 0.0)
    response = client.post(url, _project_form(project, repeat_rate="0.2", repeat_after="5"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.repeat_rate, project.repeat_after) == (0.2, 5)
    response = client.post(url, _project_form(project, repeat_rate="0.7"))
    assert response.status_code == 200 and "less than or equal to 0.5" in response.content.decode()


def test_listwise_projects_refuse_probes(alice):
    with pytest.raises(ValidationError) as info:
        project_create(slug="l", name="L", created_by=alice, scheme="listwise", repeat_rate=0.1)
    assert "listwise" in str(info.value.message_dict["repeat_rate"])
    assert project_create(slug="p", name="P", created_by=alice, repeat_rate=0.1).repeat_rate == 0.1


@pytest.mark.parametrize(("field", "value"), [("repeat_rate", 0.6), ("repeat_rate", -0.1)])
def test_the_database_refuses_a_rate_out_of_range(project, field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**{field: value})


def test_the_database_refuses_repeat_after_zero(project):
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(repeat_after=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"repeat_rate": 0.6}, "less than or equal to 0.5"),
        ({"repeat_rate": "x"}, "valid number"),
        ({"repeat_after": 0}, "greater than or equal to 1"),
    ],
)
def test_the_api_refuses_bad_settings(api, alice, data, message):
    response = api(alice).post(
        "/api/v1/projects/", {"slug": "new", "name": "New", **data}, format="json"
    )
    assert response.status_code == 400
    assert message in " ".join(next(iter(response.json().values())))
    assert not Project.objects.filter(slug="new").exists()


def test_the_api_creates_and_shows_the_settings(api, alice):
    response = api(alice).post(
        "/api/v1/projects/",
        {"slug": "new", "name": "New", "repeat_rate": 0.1, "repeat_after": 30},
        format="json",
    )
    assert response.status_code == 201
    assert (response.json()["repeat_rate"], response.json()["repeat_after"]) == (0.1, 30)


# -- at once -----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_answers_at_once_store_exactly_one(project, annotators, import_rows):
    from tests.judging.test_concurrency import run_threads

    import_rows(*(prompt_line(f"p-{i}", n=3) for i in range(1, 11)))
    probes_on(project, after=1)
    user = annotators[0]
    probe = judge_until_drawn(project, user)
    judge_next(project, user)
    assert probe_next(project=project, annotator=user).pk == probe.pk
    choices = ["left", "right", "tie", "both_bad"] * 2
    stored: list[str] = []

    replayed: list[str] = []

    def answer(index: int) -> None:
        try:
            got = probe_answer(
                probe_id=probe.pk, project=project, annotator=user, choice=choices[index]
            )
            (replayed if got.replayed else stored).append(choices[index])
        except ProbeAnswered:
            pass

    assert run_threads(answer, len(choices)) == []
    # One answer is stored; the same choice sent by another thread (each is sent twice) is a
    # replay of it, never a second answer.
    assert len(stored) == 1
    assert set(replayed) <= set(stored) and len(replayed) <= 1
    probe.refresh_from_db()
    a_on_left = probe.left_id == probe.comparison.candidate_a_id
    oriented = {"left": "a" if a_on_left else "b", "right": "b" if a_on_left else "a"}
    assert probe.choice == oriented.get(stored[0], stored[0])
