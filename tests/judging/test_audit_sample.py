"""The audit sample (Project.audit_rate, Comparison.is_audit): a fixed pseudo-random share of the
comparisons that every policy fills to the full overlap first and that never stops early, so
that agreement over it is that of a uniform sample; marked at import and when the rate changes;
its agreement reported in /stats/, on the dashboard and in the dataset card."""

import random

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from apps.agreement.flags import AUDIT_NOTE, Design
from apps.agreement.stats import Vote, annotator_summaries, project_stats, stats_votes
from apps.batches.audit import audit_sample_mark, audit_threshold, in_audit_sample
from apps.batches.models import Comparison
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import AssignmentPolicy, Project
from apps.projects.services import membership_add
from tests.conftest import prompt_line
from tests.judging.test_concurrency import run_threads
from tests.judging.test_stopping import state, stopping, vote
from tests.projects.test_admin import _project_form

POLICIES = [policy.value for policy in AssignmentPolicy]


@pytest.fixture
def crowd(project, make_user):
    project.memberships.filter(role="annotator").delete()
    users = [make_user(f"crowd{i}") for i in range(6)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    return users


def audited(project, rate, **settings):
    project.audit_rate = rate
    for name, value in settings.items():
        setattr(project, name, value)
    project.full_clean()
    project.save()
    return project


def audit_ids(project) -> set[int]:
    return set(
        Comparison.objects.filter(project=project, is_audit=True).values_list("pk", flat=True)
    )


# -- membership --------------------------------------------------------------------------------


def test_the_sample_is_a_stable_share_of_the_ids_that_only_grows_with_the_rate():
    ids = range(1, 20_001)
    for rate in (0.01, 0.05, 0.2, 0.5):
        share = sum(in_audit_sample(i, rate) for i in ids) / len(ids)
        assert abs(share - rate) < 0.002, (rate, share)
    small = {i for i in ids if in_audit_sample(i, 0.05)}
    large = {i for i in ids if in_audit_sample(i, 0.2)}
    assert small < large
    assert not any(in_audit_sample(i, 0.0) for i in ids)
    assert all(in_audit_sample(i, 1.0) for i in ids)
    assert audit_threshold(-1) == 0 and audit_threshold(2) == 2**32


def test_an_import_marks_the_comparisons_the_hash_picks(project, import_rows):
    audited(project, 0.3)
    batch = import_rows(*(prompt_line(f"p{i}", n=4) for i in range(40)))
    comparisons = Comparison.objects.filter(batch=batch)
    assert comparisons.count() == 240
    expected = {c.pk for c in comparisons if in_audit_sample(c.pk, 0.3)}
    assert 40 < len(expected) < 110
    assert audit_ids(project) == expected


def test_without_a_rate_nothing_is_marked(project, import_rows):
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(10)))
    assert not audit_ids(project)


def long_prompt(pid):
    """A prompt whose responses are long enough to degrade into a honeypot."""
    text = "The first sentence says one thing. The second says another. A third ends it here."
    return {
        "id": pid,
        "prompt": f"Question {pid}?",
        "candidates": [{"id": f"c{i}", "text": f"{text} ({i})", "model": f"m{i}"} for i in (1, 2)],
    }


def test_gold_items_are_never_in_the_sample(project, import_rows):
    audited(project, 1.0, gold_rate=0.2, honeypot_rate=1.0)
    import_rows(*(long_prompt(f"p{i}") for i in range(10)))
    gold = Comparison.objects.filter(project=project, is_gold=True)
    assert gold.count() == 10
    assert not gold.filter(is_audit=True).exists()
    assert Comparison.objects.filter(project=project, is_gold=False, is_audit=False).count() == 0


def test_the_database_refuses_a_gold_item_in_the_sample(project, import_rows):
    audited(project, 1.0)
    import_rows(prompt_line("p"))
    comparison = Comparison.objects.get(project=project)
    assert comparison.is_audit
    comparison.is_gold, comparison.gold_answer = True, "a"
    with pytest.raises(ValidationError, match="comparison_audit_not_gold"):
        comparison.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(pk=comparison.pk).update(is_gold=True, gold_answer="a")
    assert not Comparison.objects.get(pk=comparison.pk).is_gold


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_a_rate_outside_zero_and_one_is_refused(project, bad):
    project.audit_rate = bad
    with pytest.raises(ValidationError) as info:
        project.full_clean()
    assert "audit_rate" in info.value.message_dict


@pytest.mark.parametrize("bad", [-0.1, 1.5, "often", None])
def test_the_api_refuses_a_bad_rate_and_creates_nothing(api, alice, bad):
    response = api(alice).post(
        "/api/v1/projects/", {"slug": "aud", "name": "Aud", "audit_rate": bad}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["audit_rate"]
    assert not Project.objects.filter(slug="aud").exists()


def test_the_api_creates_a_project_with_a_rate_and_shows_it(api, alice):
    response = api(alice).post(
        "/api/v1/projects/", {"slug": "aud", "name": "Aud", "audit_rate": 0.1}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["audit_rate"] == 0.1
    assert Project.objects.get(slug="aud").audit_rate == 0.1


# -- the queue ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "random"])
def test_every_policy_that_orders_by_votes_fills_the_sample_to_the_overlap_first(
    project, crowd, import_rows, policy
):
    audited(project, 0.25, policy=policy, overlap=3)
    import_rows(*(prompt_line(f"p{i}", n=3) for i in range(12)))
    sample = audit_ids(project)
    assert 4 < len(sample) < 20
    rng = random.Random(policy)
    # Three annotators judge as many comparisons as the sample has: all of them audited ones.
    for user in crowd[:3]:
        for _ in sample:
            vote(project, user, rng.choice(["a", "b", "tie"]))
    judged = set(Judgment.objects.values_list("comparison_id", flat=True))
    assert judged == sample
    for pk in sample:
        assert state(pk)[2:] == (3, True)
    # Then the rest of the queue as the policy orders it.
    lease = assignment_next(project=project, annotator=crowd[3])
    assert lease is not None and lease.comparison_id not in sample


@pytest.mark.parametrize("policy", POLICIES)
def test_an_audited_comparison_never_stops_early(project, crowd, import_rows, policy):
    audited(project, 0.5, overlap=3, policy=policy)
    stopping(project, 0.8, overlap=3)  # a margin of 1: one vote decides an ordinary comparison
    import_rows(*(prompt_line(f"p{i}", n=2) for i in range(8)))
    sample = audit_ids(project)
    assert sample and len(sample) < 8
    for pk in Comparison.objects.values_list("pk", flat=True):
        vote_on(project, crowd[0], pk, "a")
    for pk in Comparison.objects.values_list("pk", flat=True):
        assert state(pk) == (1, 0, 1, pk not in sample), pk
    # The other annotators fill the sample; ordinary comparisons stay decided.
    for user in crowd[1:3]:
        for _ in sample:
            vote(project, user, "b")
    for pk in sample:
        assert state(pk) == (1, 2, 3, True)


def vote_on(project, user, comparison_id, option):
    """Votes on one given comparison: takes leases until it comes (skipping none: the pick
    order is deterministic here), for a test that needs every comparison voted once."""
    lease = assignment_next(project=project, annotator=user)
    while lease is not None and lease.comparison_id != comparison_id:
        choice = "left" if lease.left_id == lease.comparison.candidate_a_id else "right"
        judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)
        lease = assignment_next(project=project, annotator=user)
    if lease is None:  # judged already in the loop of an earlier call
        assert Judgment.objects.filter(comparison_id=comparison_id, annotator=user).exists()
        return
    wanted = lease.comparison.candidate_a_id if option == "a" else lease.comparison.candidate_b_id
    choice = "left" if lease.left_id == wanted else "right"
    judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


def test_raising_the_rate_in_the_admin_marks_the_project_and_reopens_what_stopped(
    client, bob, project, crowd, import_rows
):
    stopping(project, 0.8, overlap=3)
    import_rows(*(prompt_line(f"p{i}", n=2) for i in range(10)))
    for _ in range(10):
        vote(project, crowd[0], "a")
    assert not Comparison.objects.filter(complete=False).exists()
    client.force_login(bob)
    url = f"/admin/projects/project/{project.pk}/change/"
    form = _project_form(project, stop_confidence="0.8", audit_rate="0.5")
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    sample = audit_ids(project)
    assert sample == {
        pk for pk in Comparison.objects.values_list("pk", flat=True) if in_audit_sample(pk, 0.5)
    }
    assert set(Comparison.objects.filter(complete=False).values_list("pk", flat=True)) == sample
    # Lowered to 0: the sample is gone, and its comparisons stop again.
    response = client.post(url, {**form, "audit_rate": "0"})
    assert response.status_code == 302
    assert not audit_ids(project)
    assert not Comparison.objects.filter(complete=False).exists()


def test_marking_one_prompt_leaves_the_others(project, import_rows):
    import_rows(*(prompt_line(f"p{i}", n=4) for i in range(6)))
    project.audit_rate = 1.0
    project.save()
    first = Comparison.objects.order_by("pk").first()
    assert audit_sample_mark(project=project, prompt_id=first.prompt_id) == 6
    assert Comparison.objects.filter(is_audit=True).count() == 6
    assert audit_sample_mark(project=project) == 30


# -- the figures ---------------------------------------------------------------------------------


def split_votes(comparisons, audited_ids, names=("ann", "bob", "cat")):
    """Three annotators on each comparison: unanimous on the audited ones, split elsewhere (what
    an adaptive policy leaves behind)."""
    votes = []
    for c in comparisons:
        options = ["a", "a", "a"] if c in audited_ids else ["a", "b", "a"]
        for name, option in zip(names, options, strict=True):
            votes.append(
                Vote(
                    comparison=c, annotator=name, option=option, side="left", strength=None,
                    model_a="m1", model_b="m2", is_gold=False, gold_correct=None,
                    duration_ms=None, is_audit=c in audited_ids,
                )
            )  # fmt: skip
    return votes


def test_stats_report_the_audit_sample_beside_the_biased_whole():
    votes = split_votes(range(1, 41), set(range(1, 11)))
    design = Design(policy="uncertain_first", clicker=(0.25,) * 4)
    report = project_stats(votes, design=design)
    assert report["agreement"]["sample"] == "adaptive"
    audit = report["audit_agreement"]
    assert audit["sample"] == "audit" and audit["sample_note"] == AUDIT_NOTE
    assert (audit["comparisons"], audit["judgments"]) == (10, 30)
    assert audit["pairwise"]["with_ties"] == {"agreement": 1.0, "pairs": 30}
    whole = report["agreement"]["pairwise"]["with_ties"]
    assert whole["pairs"] == 120 and whole["agreement"] < 0.6


def test_without_audited_votes_there_is_no_audit_figure():
    report = project_stats(
        split_votes(range(1, 5), set()), design=Design("random", (0.5,) * 2 + (0,) * 2)
    )
    assert report["audit_agreement"] is None


def test_under_an_adaptive_design_annotators_are_measured_and_tested_on_the_sample():
    audited_ids = set(range(1, 31))
    votes = split_votes(range(1, 61), audited_ids)
    design = Design(policy="uncertain_first", clicker=(0.25,) * 4)
    rows = {row["annotator"]: row for row in annotator_summaries(votes, design=design)}
    for row in rows.values():
        assert row["agreement_with_others_sample"] == "audit"
        assert row["agreement_with_others_note"] == AUDIT_NOTE
        assert row["agreement_with_others_comparisons"] == 30
        assert row["agreement_with_others"] == 1.0
        assert row["agreement_test"] is not None
    # Without the sample the same votes are marked not meaningful and not tested.
    unaudited = [
        Vote(**{f: getattr(v, f) for f in Vote.__dataclass_fields__ if f != "is_audit"})
        for v in votes
    ]
    rows = annotator_summaries(unaudited, design=design)
    assert all(r["agreement_with_others_sample"] == "adaptive" for r in rows)
    assert all(r["agreement_test"] is None for r in rows)


def test_adaptive_stopping_makes_a_design_adaptive(project):
    assert not Design.of(project).adaptive
    stopping(project, 0.9)
    design = Design.of(project)
    assert design.adaptive and design.sample == "adaptive" and "stopping" in design.note


def test_stats_dashboard_and_card_show_the_sample(project, crowd, import_rows, api, bob, client):
    audited(project, 0.5, policy="uncertain_first", overlap=3)
    import_rows(*(prompt_line(f"p{i}", n=2) for i in range(6)))
    sample = audit_ids(project)
    for user in crowd[:3]:
        for _ in sample:
            vote(project, user, "a")
    report = api(bob).get(f"/api/v1/projects/{project.slug}/stats/").json()
    audit = report["audit_agreement"]
    assert audit["comparisons"] == len(sample) and audit["judgments"] == 3 * len(sample)
    assert audit["pairwise"]["with_ties"]["agreement"] == 1.0
    assert {row["agreement_with_others_sample"] for row in report["annotators"]} == {"audit"}
    votes = stats_votes(project=project)
    assert int(votes.is_audit.sum()) == 3 * len(sample)
    client.force_login(bob)
    page = client.get(f"/lead/p/{project.slug}/").content.decode()
    assert 'data-testid="audit-agreement"' in page and "Audit sample" in page
    assert ", audit sample</span>" in page
    card = api(bob).get(reverse("api-export", args=[project.slug]), {"format": "card"})
    assert card.status_code == 200, card.content
    card = card.content.decode()
    assert "Audit sample: agreement over the audit sample only" in card


# -- many annotators at once (PostgreSQL) ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_annotators_fill_the_sample_under_uncertain_first(project, make_user, import_rows):
    """Sixteen threads judge under uncertain_first with stopping on, spending half again the
    sample's slots: every audited comparison ends with exactly the overlap's votes, none over."""
    assert connection.vendor == "postgresql"
    audited(project, 0.2, policy="uncertain_first", overlap=3, stop_confidence=0.8)
    import_rows(*(prompt_line(f"p{i}", n=4) for i in range(20)))
    sample = audit_ids(project)
    assert 10 < len(sample) < 40
    users = [make_user(f"racer{i}") for i in range(16)]
    for user in users:
        membership_add(project=project, user=user, role="annotator")
    budget = iter(range(int(len(sample) * 3 * 1.5)))

    def annotate(index: int) -> None:
        rng = random.Random(index)
        while next(budget, None) is not None:
            lease = assignment_next(project=project, annotator=users[index])
            if lease is None:
                return
            choice = rng.choice(["left", "right", "tie"])
            judgment_submit(assignment_id=lease.pk, annotator=users[index], choice=choice)

    assert run_threads(annotate, len(users)) == []
    for c in Comparison.objects.filter(pk__in=sample):
        assert Judgment.objects.filter(comparison=c).count() == c.judgment_count == 3, c.pk
        assert c.complete and c.lease_count == 0
    over = [c.pk for c in Comparison.objects.all() if c.judgment_count > 3]
    assert over == []
