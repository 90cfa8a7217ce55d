"""The endpoint client against a real HTTP server on loopback (tests/endpoints/fake_llm.py):
retries, Retry-After, backoff, the circuit, the limits, and every malformed answer."""

import random
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from apps.endpoints.client import (
    BACKOFF_BASE_SECONDS,
    CIRCUIT_THRESHOLD,
    Circuit,
    CircuitOpen,
    EndpointClient,
    EndpointConfig,
    EndpointError,
    RateLimiter,
    backoff_seconds,
    retry_after_seconds,
)
from tests.endpoints.fake_llm import FakeLLM, Fault, answer_for, fake_llm

MESSAGES = [{"role": "user", "content": "Name three primes."}]


def client_for(server: FakeLLM, *, sleeps: list[float] | None = None, **config: object):
    recorded = sleeps if sleeps is not None else []
    settings = {"base_url": server.url, "model": "fake-model", **config}
    return EndpointClient(
        EndpointConfig(**settings),  # type: ignore[arg-type]
        sleep=recorded.append,
        rng=random.Random(7),
    )


def test_a_completion_carries_its_text_finish_reason_usage_and_latency(llm: FakeLLM) -> None:
    with client_for(llm, api_key="sk-test") as client:
        completion = client.chat(MESSAGES, temperature=0.7, top_p=0.9, max_tokens=50, seed=3)
    assert completion.text == answer_for(MESSAGES, 3)
    assert completion.finish_reason == "stop"
    assert completion.prompt_tokens == 3
    assert completion.completion_tokens == len(answer_for(MESSAGES, 3).split())
    assert completion.latency_ms >= 0
    assert completion.attempts == 1
    sent = llm.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "fake-model",
        "messages": MESSAGES,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 3,
    }
    assert sent.headers["Authorization"] == "Bearer sk-test"


def test_no_key_sends_no_authorization(llm: FakeLLM) -> None:
    with client_for(llm) as client:
        client.chat(MESSAGES)
    assert "Authorization" not in llm.requests[-1].headers


def test_a_length_cut_says_so(llm: FakeLLM) -> None:
    with client_for(llm) as client:
        completion = client.chat(MESSAGES, max_tokens=2)
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 2


def test_a_429_waits_as_retry_after_says_then_succeeds(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=429, headers={"Retry-After": "2"}))
    sleeps: list[float] = []
    with client_for(llm, sleeps=sleeps) as client:
        completion = client.chat(MESSAGES)
    assert sleeps == [2.0]
    assert completion.attempts == 2
    assert len(llm.requests) == 2


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(later, now=now) == 30.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_5xx_and_lost_answers_back_off_with_jitter_then_succeed(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=500), Fault(status=503), Fault(status=502, body=b"<html>"))
    sleeps: list[float] = []
    with client_for(llm, sleeps=sleeps) as client:
        completion = client.chat(MESSAGES)
    assert completion.attempts == 4
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0 <= slept <= BACKOFF_BASE_SECONDS * 2**attempt
    assert len(set(sleeps)) == 3  # jittered, not a fixed ladder


def test_backoff_is_capped() -> None:
    rng = random.Random(1)
    assert all(backoff_seconds(40, rng) <= 30.0 for _ in range(100))


def test_retries_run_out_with_the_last_error(llm: FakeLLM) -> None:
    llm.fail_next(*[Fault(status=503) for _ in range(3)])
    with client_for(llm, max_retries=2) as client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "http_503"
    assert caught.value.attempts == 3
    assert "fake server error" in caught.value.detail
    assert len(llm.requests) == 3


def test_a_request_error_is_not_retried_and_says_the_servers_message(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=400, body=b'{"error": {"message": "max_tokens is too large"}}'))
    sleeps: list[float] = []
    with client_for(llm, sleeps=sleeps) as client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "http_400"
    assert caught.value.detail == "HTTP 400: max_tokens is too large"
    assert sleeps == []
    assert len(llm.requests) == 1
    assert not client.circuit.is_open


def test_an_unknown_model_is_a_404_with_its_message(llm: FakeLLM) -> None:
    with client_for(llm, model="nope") as client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "http_404"
    assert "does not exist" in caught.value.detail


def test_a_body_that_is_not_json_never_reaches_the_message(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=401, body=b"<html>secret internal page</html>"))
    with client_for(llm) as client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert str(caught.value) == "http_401: HTTP 401"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"choices": []}',
        b'{"choices": [{"message": {"content": null}}]}',
        b'{"choices": [{"text": "legacy"}]}',
    ],
    ids=["not-json", "not-an-object", "no-choice", "null-content", "no-message"],
)
def test_a_malformed_answer_is_an_error_never_a_guess(llm: FakeLLM, body: bytes) -> None:
    llm.fail_next(*[Fault(status=200, body=body) for _ in range(2)])
    with client_for(llm, max_retries=1) as client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "malformed"


def test_a_malformed_answer_once_is_retried(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=200, body=b"not json"))
    with client_for(llm) as client:
        assert client.chat(MESSAGES).attempts == 2


def test_a_timeout_is_retried(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=200, delay=1.5))
    with client_for(llm, timeout_seconds=1.0) as client:
        completion = client.chat(MESSAGES)
    assert completion.attempts == 2


def test_a_timeout_every_time_says_timeout(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=200, delay=1.5), Fault(status=200, delay=1.5))
    client = client_for(llm, timeout_seconds=1.0, max_retries=1)
    with client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "timeout"


def test_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1)
    sleeps: list[float] = []
    client = EndpointClient(config, sleep=sleeps.append)
    with client, pytest.raises(EndpointError) as caught:
        client.chat(MESSAGES)
    assert caught.value.kind == "connection"
    assert len(sleeps) == 1


def test_the_circuit_opens_after_failures_in_a_row_and_stops_calling(llm: FakeLLM) -> None:
    llm.fail_next(*[Fault(status=500) for _ in range(CIRCUIT_THRESHOLD)])
    with client_for(llm, max_retries=CIRCUIT_THRESHOLD + 3) as client:
        with pytest.raises(CircuitOpen):
            client.chat(MESSAGES)
        assert len(llm.requests) == CIRCUIT_THRESHOLD
        # Another client of the same endpoint in this process meets the same open circuit.
        second = client_for(llm, max_retries=CIRCUIT_THRESHOLD + 3)
        with second, pytest.raises(CircuitOpen):
            second.chat(MESSAGES)
        assert len(llm.requests) == CIRCUIT_THRESHOLD


def test_the_circuit_half_opens_after_its_cooldown() -> None:
    now = [100.0]
    circuit = Circuit(threshold=2, cooldown=30.0, clock=lambda: now[0])
    circuit.failed()
    circuit.before_call()  # one failure: still closed
    circuit.failed()
    with pytest.raises(CircuitOpen) as caught:
        circuit.before_call()
    assert caught.value.seconds_left == 30.0
    now[0] += 30.0
    circuit.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        circuit.before_call()  # only one trial at a time
    circuit.failed()  # the trial failed: open again, for a whole cooldown
    with pytest.raises(CircuitOpen):
        circuit.before_call()
    now[0] += 30.0
    circuit.before_call()
    circuit.succeeded()
    circuit.before_call()
    circuit.before_call()
    assert not circuit.is_open


def test_a_success_resets_the_count_of_failures() -> None:
    circuit = Circuit(threshold=2, cooldown=30.0)
    circuit.failed()
    circuit.succeeded()
    circuit.failed()
    circuit.before_call()
    assert not circuit.is_open


def test_no_more_requests_in_flight_than_the_limit() -> None:
    with fake_llm(latency=0.2) as server:
        client = client_for(server, max_concurrency=2)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.chat(MESSAGES)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        client.close()
    assert errors == []
    assert server.max_in_flight == 2
    assert len(server.requests) == 6


def test_the_rate_limit_spaces_the_starts() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert sleeps == [1.0, 2.0]
    now[0] = 10.0
    limiter.wait()
    assert sleeps == [1.0, 2.0]  # long after: no wait
    assert RateLimiter(None).interval == 0.0


def test_check_says_the_model_is_listed_and_answers(llm: FakeLLM) -> None:
    with client_for(llm) as client:
        result = client.check()
    assert result.ok
    assert result.model_listed is True
    assert "listed by the server" in result.detail


def test_check_of_a_model_the_server_does_not_have(llm: FakeLLM) -> None:
    with client_for(llm, model="other") as client:
        result = client.check()
    assert not result.ok
    assert result.model_listed is False
    assert "does not exist" in result.detail


def test_check_of_a_server_without_a_model_list(llm: FakeLLM) -> None:
    llm.list_models = False
    with client_for(llm) as client:
        result = client.check()
    assert result.ok
    assert result.model_listed is None


def test_check_of_a_refused_key(llm: FakeLLM) -> None:
    llm.fail_next(Fault(status=401, body=b'{"error": {"message": "Incorrect API key"}}'))
    with client_for(llm) as client:
        result = client.check()
    assert not result.ok
    assert "Incorrect API key" in result.detail
    assert len(llm.requests) == 1  # tried once, no retries
