"""The list endpoints: batches, comparisons and judgments, cursor-paginated, leads and staff."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.batches.models import Comparison
from apps.judging.models import Judgment
from apps.judging.queue import assignment_next, judgment_submit
from apps.projects.models import Membership
from tests.conftest import prompt_line

BASE = "/api/v1/projects/demo"


def judge_all(project, users, choice="left"):
    for user in users:
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            judgment_submit(assignment_id=lease.pk, annotator=user, choice=choice)


def every_page(client, url, **params):
    """All the results, following `next`, and how many pages it took."""
    results, pages = [], 0
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        results += body["results"]
        pages += 1
        if not body["next"]:
            return results, pages
        response = client.get(body["next"])


@pytest.fixture
def judged(project, annotators, import_rows):
    import_rows(*(prompt_line(f"p{i}") for i in range(3)))
    import_rows(prompt_line("g", gold={"preferred": "c1"}), prompt_line("q"))
    project.gold_rate = 1.0  # each annotator gets the gold item first
    project.save()
    judge_all(project, annotators[:2])
    return project


def test_batches_are_listed_page_by_page(api, bob, judged):
    results, pages = every_page(api(bob), f"{BASE}/batches/", page_size=1)
    assert [r["prompts"] for r in results] == [3, 2]
    assert pages == 2
    assert results[0]["id"] < results[1]["id"]


def test_comparisons_are_listed_with_their_counts_and_filters(api, bob, judged):
    client = api(bob)
    everything, _ = every_page(client, f"{BASE}/comparisons/", page_size=2)
    assert [r["id"] for r in everything] == sorted(
        Comparison.objects.filter(project=judged).values_list("id", flat=True)
    )
    first = everything[0]
    assert set(first) >= {"prompt_id", "candidate_a_id", "judgment_count", "votes", "complete"}
    assert first["votes"]["a"] == Comparison.objects.get(pk=first["id"]).votes_a
    gold, _ = every_page(client, f"{BASE}/comparisons/", gold="true")
    assert [r["prompt_id"] for r in gold] == ["g"]
    batch = everything[-1]["batch"]
    in_batch, _ = every_page(client, f"{BASE}/comparisons/", batch=batch, gold="false")
    assert {r["prompt_id"] for r in in_batch} == {"q"}


def test_judgments_are_listed_under_pseudonyms_without_gold(api, bob, judged, annotators):
    client = api(bob)
    results, pages = every_page(client, f"{BASE}/judgments/", page_size=3)
    stored = Judgment.objects.filter(comparison__is_gold=False).order_by("id")
    assert [r["id"] for r in results] == list(stored.values_list("id", flat=True))
    assert pages == -(-stored.count() // 3)
    pseudonyms = set(Membership.objects.values_list("pseudonym", flat=True))
    assert {r["annotator"] for r in results} <= pseudonyms
    assert not {r["annotator"] for r in results} & {u.username for u in annotators}
    with_gold, _ = every_page(client, f"{BASE}/judgments/", gold="true", page_size=1000)
    assert len(with_gold) == Judgment.objects.count() > len(results)


def test_a_cursor_neither_repeats_nor_skips_while_judgments_arrive(
    api, bob, project, annotators, import_rows
):
    import_rows(*(prompt_line(f"p{i}") for i in range(4)))
    judge_all(project, annotators[:1])
    client = api(bob)
    first = client.get(f"{BASE}/judgments/", {"page_size": 2}).json()
    judge_all(project, annotators[1:2])  # more rows arrive between two pages
    seen = [r["id"] for r in first["results"]]
    response = client.get(first["next"])
    while True:
        body = response.json()
        seen += [r["id"] for r in body["results"]]
        if not body["next"]:
            break
        response = client.get(body["next"])
    assert seen == sorted(set(seen))
    assert seen == list(Judgment.objects.order_by("id").values_list("id", flat=True))


def test_since_pulls_only_what_is_new(api, bob, judged):
    client = api(bob)
    later = Judgment.objects.order_by("id").last()
    moment = later.created_at - timedelta(microseconds=1)
    results, _ = every_page(client, f"{BASE}/judgments/", since=moment.isoformat())
    assert [r["id"] for r in results] == [later.pk]
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert every_page(client, f"{BASE}/judgments/", since=future)[0] == []


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("judgments/", {"since": "yesterday"}, "since"),
        ("judgments/", {"batch": "one"}, "batch"),
        ("judgments/", {"gold": "maybe"}, "gold"),
        ("comparisons/", {"complete": "yes"}, "complete"),
        ("comparisons/", {"batch": "-1"}, "batch"),
    ],
)
def test_bad_parameters_get_a_400_that_names_them(api, bob, judged, path, params, name):
    response = api(bob).get(f"{BASE}/{path}", params)
    assert response.status_code == 400
    assert name in response.json()


@pytest.mark.parametrize("path", ["batches/", "comparisons/", "judgments/"])
def test_only_staff_and_the_projects_leads_list(api, alice, annotators, charlie, judged, path):
    assert api(alice).get(f"{BASE}/{path}").status_code == 200
    assert api(annotators[0]).get(f"{BASE}/{path}").status_code == 404
    assert api(charlie).get(f"{BASE}/{path}").status_code == 404
    assert api(None).get(f"{BASE}/{path}").status_code in (401, 403)


def test_an_api_token_is_throttled_and_told_when_to_come_back(api, bob, judged, settings):
    from django.core.cache import cache
    from django.test import Client

    from annotate.api import token_throttle_key

    period = int(time.time() // 60)
    keys = [token_throttle_key(f"throttle_token_{bob.pk}", period + k) for k in (-1, 0, 1)]
    cache.delete_many(keys)
    settings.API_TOKEN_RATE = "3/min"
    client = api(bob)
    assert [client.get(f"{BASE}/batches/").status_code for _ in range(3)] == [200] * 3
    response = client.get(f"{BASE}/batches/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    # The browser's session is not a script: not counted.
    browser = Client()
    browser.force_login(bob)
    assert all(browser.get(f"{BASE}/batches/").status_code == 200 for _ in range(5))
    cache.delete_many(keys)


def test_a_malformed_rate_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from annotate.settings import envrate

    monkeypatch.setenv("API_TOKEN_RATE", "lots")
    with pytest.raises(ImproperlyConfigured, match="API_TOKEN_RATE"):
        envrate("API_TOKEN_RATE", "3000/min")
    monkeypatch.setenv("API_TOKEN_RATE", "")
    assert envrate("API_TOKEN_RATE", "3000/min") == ""
