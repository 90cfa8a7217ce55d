"""The API token throttle (API_TOKEN_RATE): a sliding window from two counters in the cache.

These run on whatever cache the suite has: Redis on the PostgreSQL leg (one pipelined round
trip a request), the process's local memory on SQLite. The clock is the throttle's own `timer`,
set by the test, so that the window's edges are exact.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache, caches
from rest_framework.test import APIClient

from annotate.api import TokenRateThrottle, token_throttle_key
from annotate.cache import FailOpenRedisCache

ME = "/api/v1/me/"
ON_REDIS = isinstance(caches["default"], FailOpenRedisCache)
PERIOD = 60
START = 1_800_000_000 // PERIOD * PERIOD  # the start of a period (epoch seconds)


class Clock:
    def __init__(self) -> None:
        self.now = float(START)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(TokenRateThrottle, "timer", staticmethod(lambda: clock.now))
    return clock


@pytest.fixture
def counters(charlie: User, make_user: Callable[..., User]) -> Iterator[None]:
    """The counters of the users these tests use, for the periods they use, start at nothing."""

    def keys() -> list[str]:
        return [
            token_throttle_key(f"throttle_token_{user.pk}", START // PERIOD + offset)
            for user in User.objects.all()
            for offset in range(-1, 4)
        ]

    cache.delete_many(keys())
    yield
    cache.delete_many(keys())


def statuses(client: APIClient, count: int) -> list[int]:
    return [client.get(ME).status_code for _ in range(count)]


@pytest.mark.usefixtures("counters")
def test_the_limit_holds_and_retry_after_is_when_a_request_fits_again(
    settings: Any, api: Callable[[User | None], APIClient], charlie: User, clock: Clock
) -> None:
    settings.API_TOKEN_RATE = "4/min"
    client = api(charlie)
    clock.now = START + 1
    assert statuses(client, 4) == [200] * 4
    refused = client.get(ME)
    assert refused.status_code == 429
    # Four in this period: the next request fits once the next period's window covers no more
    # than 3 of them, a quarter of the way into it: 59 + 15 s from now.
    assert int(refused["Retry-After"]) == 74
    assert "74 seconds" in refused.json()["detail"]
    # A second before, still refused; at the time told, let through.
    clock.now = START + 1 + 73
    assert client.get(ME).status_code == 429
    clock.now = START + 1 + 74
    assert client.get(ME).status_code == 200


@pytest.mark.usefixtures("counters")
def test_refused_requests_are_not_counted(
    settings: Any, api: Callable[[User | None], APIClient], charlie: User, clock: Clock
) -> None:
    """A script that keeps asking while refused is not kept out longer for it."""
    settings.API_TOKEN_RATE = "3/min"
    client = api(charlie)
    clock.now = START + 30
    assert statuses(client, 3) == [200] * 3
    told = [int(response["Retry-After"]) for response in (client.get(ME) for _ in range(20))]
    assert len(set(told)) == 1  # 20 refusals later, the same answer
    # Three in this period: in the next, 3 x (1 - f) + 1 <= 3 from f = 1/3 on.
    assert told[0] == 30 + 20
    clock.now = START + 30 + told[0]
    assert client.get(ME).status_code == 200


@pytest.mark.usefixtures("counters")
def test_the_window_slides_over_the_period_before(
    settings: Any, api: Callable[[User | None], APIClient], charlie: User, clock: Clock
) -> None:
    """The previous period's requests weigh as much as the window still covers of it: not a
    fixed window that forgets everything at its edge (twice the rate across it)."""
    settings.API_TOKEN_RATE = "10/min"
    client = api(charlie)
    clock.now = START + 59
    assert statuses(client, 10) == [200] * 10
    clock.now = START + PERIOD + 1  # the window still covers 59/60 of those ten
    assert client.get(ME).status_code == 429
    clock.now = START + PERIOD + 30  # half of them: room for five
    assert statuses(client, 6) == [200] * 5 + [429]
    clock.now = START + 2 * PERIOD + 30  # half of the five, and none of the ten
    assert statuses(client, 8) == [200] * 7 + [429]


@pytest.mark.usefixtures("counters")
def test_each_token_has_its_own_count_and_the_browser_none(
    settings: Any,
    api: Callable[[User | None], APIClient],
    charlie: User,
    make_user: Callable[..., User],
    clock: Clock,
) -> None:
    settings.API_TOKEN_RATE = "2/min"
    dora = make_user("dora")
    clock.now = START + 5
    assert statuses(api(charlie), 3) == [200, 200, 429]
    assert statuses(api(dora), 3) == [200, 200, 429]
    browser = APIClient()
    browser.force_login(charlie)
    assert all(browser.get(ME).status_code == 200 for _ in range(5))


@pytest.mark.usefixtures("counters")
def test_the_counters_expire_and_a_request_costs_one_counter(
    settings: Any, api: Callable[[User | None], APIClient], charlie: User, clock: Clock
) -> None:
    """What the cache holds for a token: one small counter per period, kept two periods (DRF's
    own throttle kept a list of every request's time, read and written whole each request)."""
    settings.API_TOKEN_RATE = "3000/min"
    client = api(charlie)
    clock.now = START + 10
    assert statuses(client, 25) == [200] * 25
    key = token_throttle_key(f"throttle_token_{charlie.pk}", START // PERIOD)
    assert cache.get(key) == 25
    assert cache.get(f"throttle_token_{charlie.pk}") is None  # no list of times
    if ON_REDIS:  # the counter's time to live (the local memory's expiry is its own clock's)
        backend = caches["default"]
        assert isinstance(backend, FailOpenRedisCache)
        full = backend.make_and_validate_key(key)
        assert 0 < backend._cache.get_client(full).ttl(full) <= 2 * PERIOD
