"""The Django cache on Redis, failing open: when Redis is gone, annotation goes on.

Everything the app keeps in the cache can be recomputed or done without: the dashboard's figures
(computed again), the judging page's "left for you" count (counted again), an import's progress
(read from the batch row), the API token throttle's counts (not counted). So when a call to Redis
fails (refused, timed out, an error reply), FailOpenRedisCache answers as an empty cache would,
logs it (once when Redis goes, then at most once a minute, and once when it is back), and
remembers when it went (`cache_health()`, shown by /healthz).

While Redis is down, a process tries it again at most once every REDIS_RETRY_SECONDS and answers
"empty" at once in between, so that a page does not pay REDIS_TIMEOUT for every cache call.

What "empty" means for each call: get -> the default; get_many -> {}; has_key -> False;
add -> True (the key was absent, so it would have been added: a lock taken with add is then not
exclusive, and two processes may compute the same figures); set, touch, delete -> as if done
(touch and delete answer False: there was nothing); set_many -> every key as failed;
incr/decr -> ValueError, as for a missing key; clear -> nothing.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A failure is logged when Redis goes, and then at most this often while it stays away.
LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class CacheHealth:
    ok: bool
    down_since: float | None  # time.time() of the first failure of this outage
    error: str  # the last error, "" when ok
    failures: int  # calls that failed (or were skipped) in this outage


class _State:
    """One process's view of Redis, shared by its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.retry_at = 0.0  # time.monotonic() before which calls are skipped
        self.logged_at = 0.0
        self.error = ""
        self.failures = 0

    def skip(self) -> bool:
        with self.lock:
            if self.down_since is None or time.monotonic() >= self.retry_at:
                return False
            self.failures += 1
            return True

    def failed(self, exc: BaseException, operation: str) -> None:
        now = time.monotonic()
        with self.lock:
            first = self.down_since is None
            if first:
                self.down_since = time.time()
                self.failures = 0
            self.failures += 1
            self.error = f"{type(exc).__name__}: {exc}"
            self.retry_at = now + float(getattr(settings, "REDIS_RETRY_SECONDS", 2.0))
            log = first or now - self.logged_at >= LOG_EVERY_SECONDS
            if log:
                self.logged_at = now
            failures = self.failures
        if log:
            logger.warning(
                "cache: Redis unreachable (%s on %s); answering as an empty cache "
                "(%d calls so far in this outage)",
                self.error,
                operation,
                failures,
            )

    def succeeded(self) -> None:
        if self.down_since is None:  # the usual case: no lock taken
            return
        with self.lock:
            if self.down_since is None:
                return
            seconds = time.time() - self.down_since
            failures = self.failures
            self.down_since = None
            self.error = ""
            self.failures = 0
        logger.warning(
            "cache: Redis reachable again after %.1f s (%d calls answered as empty)",
            seconds,
            failures,
        )

    def health(self) -> CacheHealth:
        with self.lock:
            return CacheHealth(
                ok=self.down_since is None,
                down_since=self.down_since,
                error=self.error,
                failures=self.failures,
            )


_state = _State()


def cache_health() -> CacheHealth:
    """Whether this process's last call to the Redis cache worked, and since when it fails."""
    return _state.health()


def cache_down() -> bool:
    return _state.down_since is not None


class FailOpenRedisCache(RedisCache):
    """Django's RedisCache, answering as an empty cache while Redis cannot be reached."""

    def _guard(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        if _state.skip():
            return fallback
        try:
            result = call()
        except (RedisError, OSError) as exc:
            _state.failed(exc, operation)
            return fallback
        _state.succeeded()
        return result

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._guard("get", partial(super().get, key, default, version), default)

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._guard("get_many", partial(super().get_many, keys, version), {})

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._guard("has_key", partial(super().has_key, key, version), False)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._guard("add", partial(super().add, key, value, timeout, version), True)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._guard("set", partial(super().set, key, value, timeout, version), None)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard("touch", partial(super().touch, key, timeout, version), False)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._guard("delete", partial(super().delete, key, version), False)

    def set_many(
        self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        failed: list[Any] = self._guard(
            "set_many", partial(super().set_many, data, timeout, version), list(data)
        )
        return failed

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._guard("delete_many", partial(super().delete_many, keys, version), None)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        result: int | None = self._guard("incr", partial(super().incr, key, delta, version), None)
        if result is None:
            raise ValueError(f"Key '{key}' not found (the cache cannot be reached).")
        return result

    def clear(self) -> None:
        self._guard("clear", super().clear, None)

    def count_hit(self, key: str, previous: str, timeout: int) -> tuple[int, int] | None:
        """Adds one to the counter `key` (kept `timeout` seconds after its last hit) and reads
        the counter `previous`, in one round trip; None while Redis cannot be reached."""

        def call() -> tuple[int, int]:
            current = self.make_and_validate_key(key)
            client = self._cache.get_client(current, write=True)
            pipe = client.pipeline(transaction=False)
            pipe.incr(current)
            pipe.expire(current, timeout)
            pipe.get(self.make_and_validate_key(previous))
            now, _, before = pipe.execute()
            return int(now), int(before or 0)

        return self._guard("count_hit", call, None)

    def count_undo(self, key: str) -> None:
        """Takes back one hit of the counter `key` (count_hit)."""
        current = self.make_and_validate_key(key)
        self._guard(
            "count_undo", lambda: self._cache.get_client(current, write=True).decr(current), None
        )


def count_hit(cache: Any, key: str, previous: str, timeout: int) -> tuple[int, int] | None:
    """One more hit of the counter `key` in `cache`: (its count now, the count of the counter
    `previous`); None when the cache cannot count (Redis gone). One round trip on Redis; on
    another backend (the local memory of a development server) an add and an incr, each atomic
    in the process."""
    # Asked by name, not by class: `cache` may be Django's proxy of the default cache.
    counter = getattr(cache, "count_hit", None)
    if counter is not None:
        return counter(key, previous, timeout)  # type: ignore[no-any-return]
    cache.add(key, 0, timeout)
    try:
        now = int(cache.incr(key))
    except ValueError:  # expired between the add and the incr
        cache.set(key, 1, timeout)
        now = 1
    return now, int(cache.get(previous) or 0)


def count_undo(cache: Any, key: str) -> None:
    """Takes back one hit of the counter `key` (count_hit)."""
    undo = getattr(cache, "count_undo", None)
    if undo is not None:
        undo(key)
        return
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing to take back
        cache.decr(key)


def cache_ping() -> bool | None:
    """Whether the cache answers now (None: not Redis). While Redis is known to be down this
    answers False without trying until REDIS_RETRY_SECONDS have passed."""
    from django.core.cache import caches

    backend = caches["default"]
    if not isinstance(backend, FailOpenRedisCache):
        return None
    return bool(backend._guard("ping", lambda: backend._cache.get_client().ping(), False))
