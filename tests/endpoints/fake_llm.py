"""A fake OpenAI-compatible server on loopback: a real HTTP server in a thread, for the outside
service the tests cannot run (an LLM API). GET /v1/models lists its models; POST
/v1/chat/completions answers deterministically per prompt, with usage. Faults are scripted:
`fail_next(...)` queues answers (a status with headers and body, a delay longer than the
client's timeout, a malformed body) that the next requests get, in order, before the normal
answer resumes; `fail_when(text, fault)` answers every request whose last message contains
`text` with the fault, until `heal()`. Every request is recorded (path, headers, JSON body)."""

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": {"message": "fake server error"}}'
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def answer_for(messages: list[dict[str, Any]], seed: Any = None) -> str:
    """The deterministic answer to a conversation (and a seed, when the request has one): the
    last message's words, and a digest."""
    last = str(messages[-1].get("content", "")) if messages else ""
    key = json.dumps(messages, sort_keys=True) + ("" if seed is None else f"#{seed}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"Answer {digest} to: {last}"


class FakeLLM:
    def __init__(
        self,
        *,
        models: tuple[str, ...] = ("fake-model",),
        latency: float = 0.0,
        responder: Callable[[list[dict[str, Any]]], str] | None = None,
    ):
        self.models = models
        # A judge's part: the reply computed from the messages, instead of the echo.
        self.responder = responder
        self.latency = latency
        self.faults: deque[Fault] = deque()
        self.faults_when: dict[str, Fault] = {}
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.list_models = True
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def fail_when(self, text: str, fault: Fault) -> None:
        with self._lock:
            self.faults_when[text] = fault

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()
            self.faults_when.clear()

    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def start(self) -> "FakeLLM":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self, body: Any) -> Fault | None:
        with self._lock:
            if self.faults_when and isinstance(body, dict):
                messages = body.get("messages") or [{}]
                last = str(messages[-1].get("content", ""))
                for text, fault in self.faults_when.items():
                    if text in last:
                        return fault
            return self.faults.popleft() if self.faults else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with fake._lock:
                    fake.requests.append(Recorded(method, self.path, dict(self.headers), body))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fault = fake._next_fault(body)
                    if fault is not None:
                        if fault.delay:
                            time.sleep(fault.delay)
                        self._send(fault.status, fault.body, fault.headers)
                        return
                    if fake.latency:
                        time.sleep(fake.latency)
                    self._normal(method, body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _normal(self, method: str, body: Any) -> None:
                if method == "GET" and self.path == "/v1/models" and fake.list_models:
                    data = [{"id": name, "object": "model"} for name in fake.models]
                    self._send(200, json.dumps({"object": "list", "data": data}).encode(), {})
                    return
                if method == "POST" and self.path == "/v1/chat/completions":
                    if not isinstance(body, dict) or body.get("model") not in fake.models:
                        error = {"error": {"message": "The model does not exist."}}
                        self._send(404, json.dumps(error).encode(), {})
                        return
                    messages = body.get("messages") or []
                    text = (
                        fake.responder(messages)
                        if fake.responder is not None
                        else answer_for(messages, body.get("seed"))
                    )
                    limit = body.get("max_tokens")
                    words = text.split()
                    finish = "stop"
                    if isinstance(limit, int) and len(words) > limit:
                        words, finish = words[:limit], "length"
                        text = " ".join(words)
                    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
                    answer = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": finish,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": len(words),
                            "total_tokens": prompt_tokens + len(words),
                        },
                    }
                    self._send(200, json.dumps(answer).encode(), {})
                    return
                self._send(404, b'{"error": {"message": "not found"}}', {})

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


@contextmanager
def fake_llm(**kwargs: Any) -> Iterator[FakeLLM]:
    server = FakeLLM(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
