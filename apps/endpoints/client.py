"""A thin client for OpenAI-compatible chat APIs, over httpx: retries on 429, 5xx, timeouts and
lost connections (honouring Retry-After, else exponential backoff with full jitter), a limit
on requests in flight and on requests started per minute, and a circuit that refuses calls at
once while an endpoint keeps failing, so that a job stops cleanly instead of spending its retries
on a dead server.

It knows nothing of the database: `EndpointConfig` carries what it needs (apps.endpoints.services
makes one from a ModelEndpoint). The limits and the circuit are shared by every client of one
endpoint in this process (`for_config`); across processes each worker keeps its own.
"""

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 120.0
CIRCUIT_THRESHOLD = 5  # failed attempts in a row that open the circuit
CIRCUIT_COOLDOWN_SECONDS = 30.0
ERROR_DETAIL_CHARS = 200


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str
    model: str
    api_key: str | None = None
    max_concurrency: int = 4
    requests_per_minute: int | None = None
    timeout_seconds: float = 60.0
    max_retries: int = 4


@dataclass(frozen=True)
class Completion:
    """One chat completion: the first choice's text and why it ended, the tokens counted by the
    server (None where it did not say), the time the successful request took, and how many
    attempts it needed."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    attempts: int


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    detail: str
    latency_ms: int | None = None
    model_listed: bool | None = None  # None: the server does not list its models


class EndpointError(Exception):
    """A call that failed; `kind` says how: http_<status>, timeout, connection, malformed,
    circuit_open. `retryable` errors were retried up to the endpoint's limit first."""

    def __init__(self, kind: str, detail: str, *, attempts: int = 1, retryable: bool = False):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.attempts = attempts
        self.retryable = retryable


class CircuitOpen(EndpointError):
    def __init__(self, seconds_left: float):
        super().__init__(
            "circuit_open",
            f"the endpoint failed {CIRCUIT_THRESHOLD} times in a row; calls resume in "
            f"{seconds_left:.0f} s",
        )
        self.seconds_left = seconds_left


class Circuit:
    """Closed, it lets calls through; `threshold` failures in a row open it for `cooldown`
    seconds, during which calls fail at once; then one trial call goes through (half open):
    its success closes the circuit, its failure opens it again."""

    def __init__(
        self,
        threshold: int = CIRCUIT_THRESHOLD,
        cooldown: float = CIRCUIT_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def before_call(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            left = self._opened_at + self.cooldown - self._clock()
            if left > 0 or self._trial:
                raise CircuitOpen(max(left, 0.0))
            self._trial = True  # half open: this call is the trial

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None


class RateLimiter:
    """At most `per_minute` starts a minute, spaced evenly (60 / per_minute s apart), so that a
    burst of workers does not meet the server's own limit all at once."""

    def __init__(
        self,
        per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


@dataclass
class _Shared:
    circuit: Circuit
    limiter: RateLimiter
    slots: threading.BoundedSemaphore
    config: EndpointConfig


_shared: dict[EndpointConfig, _Shared] = {}
_shared_lock = threading.Lock()


def _shared_for(config: EndpointConfig) -> _Shared:
    with _shared_lock:
        if config not in _shared:
            _shared[config] = _Shared(
                circuit=Circuit(),
                limiter=RateLimiter(config.requests_per_minute),
                slots=threading.BoundedSemaphore(config.max_concurrency),
                config=config,
            )
        return _shared[config]


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)] (attempt 0 is the first retry)."""
    return rng.uniform(0.0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message, short (OpenAI's {"error": {"message": ...}} shape or a
    plain {"detail": ...}); never the raw body, which may be anything."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or body.get("detail") or body.get("message")
    if not isinstance(message, str) or not message:
        return f"HTTP {response.status_code}"
    return f"HTTP {response.status_code}: {message[:ERROR_DETAIL_CHARS]}"


@dataclass
class EndpointClient:
    config: EndpointConfig
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._shared = _shared_for(self.config)
        headers = {"Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        self._http = httpx.Client(
            base_url=self.config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=self.config.timeout_seconds,
            transport=self.transport,
            follow_redirects=False,
        )

    @property
    def circuit(self) -> Circuit:
        return self._shared.circuit

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EndpointClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        retries: int | None = None,
    ) -> Completion:
        """One chat completion of `messages` ([{"role": ..., "content": ...}])."""
        payload: dict[str, Any] = {"model": self.config.model, "messages": list(messages)}
        for name, value in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("max_tokens", max_tokens),
            ("seed", seed),
            ("stop", list(stop) if stop else None),
        ):
            if value is not None:
                payload[name] = value
        body, latency_ms, attempts = self._call("POST", "chat/completions", payload, retries)
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (KeyError, IndexError, TypeError) as error:
            raise EndpointError(
                "malformed", f"no choices[0].message.content ({error})", attempts=attempts
            ) from None
        usage: dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            latency_ms=latency_ms,
            attempts=attempts,
        )

    def models(self, *, retries: int | None = None) -> list[str]:
        """The model ids the server lists (GET /models)."""
        body, _, attempts = self._call("GET", "models", None, retries)
        data = body.get("data")
        if not isinstance(data, list):
            raise EndpointError("malformed", "no data list in /models", attempts=attempts)
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]

    def check(self) -> ConnectionCheck:
        """Test connection: the model list (where the server has one), then a one-token
        completion, each tried once. Says what failed in a line, never the server's body."""
        listed: bool | None
        try:
            listed = self.config.model in self.models(retries=0)
        except EndpointError as error:
            if error.kind not in ("http_404", "http_405", "malformed"):
                return ConnectionCheck(ok=False, detail=f"/models failed: {error}")
            listed = None
        try:
            completion = self.chat(
                [{"role": "user", "content": "Say OK."}], max_tokens=1, retries=0
            )
        except EndpointError as error:
            return ConnectionCheck(
                ok=False, detail=f"a one-token completion failed: {error}", model_listed=listed
            )
        said = (
            "listed by the server"
            if listed
            else "not in the server's list"
            if listed is False
            else "the server lists no models"
        )
        return ConnectionCheck(
            ok=True,
            detail=f"answered in {completion.latency_ms} ms; model {self.config.model!r} {said}",
            latency_ms=completion.latency_ms,
            model_listed=listed,
        )

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None, retries: int | None
    ) -> tuple[dict[str, Any], int, int]:
        """The JSON object answered, the successful attempt's latency and the attempts made."""
        limit = self.config.max_retries if retries is None else retries
        shared = self._shared
        attempt = 0
        while True:
            attempt += 1
            shared.circuit.before_call()
            shared.limiter.wait()
            retry_after: float | None = None
            with shared.slots:
                started = time.perf_counter()
                try:
                    response = self._http.request(method, path, json=payload)
                    latency_ms = round((time.perf_counter() - started) * 1000)
                    error = self._response_error(response, attempt)
                    if error is None:
                        body = self._json(response, attempt)
                except httpx.TimeoutException:
                    error = EndpointError(
                        "timeout",
                        f"no answer within {self.config.timeout_seconds:g} s",
                        attempts=attempt,
                        retryable=True,
                    )
                except httpx.TransportError as exc:
                    error = EndpointError(
                        "connection", type(exc).__name__, attempts=attempt, retryable=True
                    )
                except EndpointError as exc:
                    error = exc
            if error is None:
                shared.circuit.succeeded()
                return body, latency_ms, attempt
            if not error.retryable:
                # The request's own fault (400, 401, 404...): the endpoint is up.
                shared.circuit.succeeded()
                raise error
            shared.circuit.failed()
            if attempt > limit:
                raise error
            if error.kind.startswith("http_"):
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            delay = (
                min(retry_after, RETRY_AFTER_CAP_SECONDS)
                if retry_after is not None
                else backoff_seconds(attempt - 1, self.rng)
            )
            self.sleep(delay)

    @staticmethod
    def _response_error(response: httpx.Response, attempt: int) -> EndpointError | None:
        if response.is_success:
            return None
        return EndpointError(
            f"http_{response.status_code}",
            _error_detail(response),
            attempts=attempt,
            retryable=response.status_code in RETRYABLE_STATUSES,
        )

    @staticmethod
    def _json(response: httpx.Response, attempt: int) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise EndpointError(
                "malformed", "the answer is not a JSON object", attempts=attempt, retryable=True
            )
        return body


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
