"""The outage benchmark: what requests cost while Redis is up, stopped, and gone.

    .venv/bin/python bench/outage.py                 # 10 requests of each kind per state
    .venv/bin/python bench/outage.py --requests 30

Creates a throwaway PostgreSQL database, migrates it, creates a lead and an annotator with API
tokens and imports a batch; starts a Redis of its own (`redis-server` on a free port, no
persistence) and gunicorn (DEBUG=false, that Redis as cache and broker). Then, with Redis up,
stopped (SIGSTOP: it keeps the connections open and answers nothing, as a hung or partitioned
server does) and gone (killed: connections refused), it times over HTTP: a judgment through the
API (lease, then judgment), a background export request (`POST .../exports/`), a background
import (`IMPORT_BACKGROUND_BYTES=1`: every upload goes to the worker) and `GET /healthz`, and
prints the answers' status codes with the latencies. With Redis down, the judgment must still be
201 and the export and import 503, within REDIS_TIMEOUT-bounded time (the issue asks for 2 s).
No worker runs: the tasks sent while Redis is up wait in the bench's Redis, killed at the end.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports: keep this
# folder last on sys.path (see bench/queue.py), where `import common` still finds it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402

_SETUP = """
import io, json
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from apps.batches.services import batch_import
from apps.projects.services import membership_add, project_create
lead = User.objects.create_user("bench-lead")
ann = User.objects.create_user("bench-annotator")
project = project_create(slug="outage", name="outage", overlap=1)
membership_add(project=project, user=lead, role="lead")
membership_add(project=project, user=ann, role="annotator")
rows = [
    {"id": f"p-{i}", "prompt": f"Prompt {i}", "candidates": [
        {"id": f"c{j}", "text": f"Answer {j} to {i}", "model": f"m{j}"} for j in range(2)]}
    for i in range(2000)
]
data = "".join(json.dumps(row) + "\\n" for row in rows).encode()
batch_import(project=project, source=io.BytesIO(data), size=len(data), background=False)
print("BENCH-JSON " + json.dumps({"lead": Token.objects.create(user=lead).key,
                                  "annotator": Token.objects.create(user=ann).key}))
"""

UPLOAD = (
    b'{"id": "new-%d", "prompt": "p", "candidates": '
    b'[{"id": "a", "text": "a"}, {"id": "b", "text": "b"}]}\n'
)


def request(
    port: int, method: str, path: str, token: str, body: bytes | None = None, kind: str = ""
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Token {token}"}
    if kind:
        headers["Content-Type"] = kind
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def timed(n: int, call: Callable[[int], tuple[int, bytes]]) -> tuple[list[float], Counter[int]]:
    seconds: list[float] = []
    statuses: Counter[int] = Counter()
    for i in range(n):
        started = time.perf_counter()
        status, _ = call(i)
        seconds.append(time.perf_counter() - started)
        statuses[status] += 1
    return seconds, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    common.bound_runtime(args.timeout)
    if shutil.which("redis-server") is None:
        raise common.BenchError("needs redis-server on PATH (a Redis of the bench's own)")
    common.print_machine()
    redis_port = common.free_port()
    redis_cmd = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    redis = start_redis(redis_cmd)
    try:
        return run(args, redis_cmd, redis_port, redis)
    finally:
        stop_redis(redis[0])


def start_redis(cmd: list[str]) -> list[subprocess.Popen[bytes]]:
    quiet = subprocess.DEVNULL
    return [subprocess.Popen(cmd, stdout=quiet, stderr=quiet, stdin=quiet)]


def stop_redis(redis: subprocess.Popen[bytes]) -> None:
    if redis.poll() is None:
        redis.send_signal(signal.SIGCONT)
        redis.kill()
        redis.wait()


def run(args: argparse.Namespace, redis_cmd: list[str], redis_port: int, redis: list[Any]) -> int:
    """The measurements; `redis` holds the one Redis process (replaced when it is restarted)."""
    uploads = iter(range(10**6))
    with (
        common.temporary_database() as database,
        tempfile.TemporaryDirectory(prefix="annotate_bench_static_") as static,
    ):
        env = common.production_env(database)
        env.update(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            STATIC_ROOT=static,
            IMPORT_BACKGROUND_BYTES="1",
            API_TOKEN_RATE="",
        )
        common.migrate(env)
        common.collectstatic(env)
        out = common.manage(["shell", "-c", _SETUP], env).stdout
        tokens = json.loads(out.split("BENCH-JSON ", 1)[1].splitlines()[0])
        server = common.Gunicorn(env, workers=1, worker_class="gthread", threads=4)
        server.start()
        port = server.port

        def judge(i: int) -> tuple[int, bytes]:
            status, body = request(
                port, "POST", "/api/v1/projects/outage/assignments/next/", tokens["annotator"]
            )
            if status != 200:
                return status, body
            lease = json.loads(body)["id"]
            payload = json.dumps({"choice": "left", "idempotency_key": f"k{lease}"}).encode()
            return request(
                port,
                "POST",
                f"/api/v1/assignments/{lease}/judgment/",
                tokens["annotator"],
                payload,
                "application/json",
            )

        calls: dict[str, Callable[[int], tuple[int, bytes]]] = {
            "judgment (lease + judge)": judge,
            "export request": lambda i: request(
                port,
                "POST",
                "/api/v1/projects/outage/exports/",
                tokens["lead"],
                b'{"format": "trl"}',
                "application/json",
            ),
            "background import": lambda i: request(
                port,
                "POST",
                "/api/v1/projects/outage/batches/",
                tokens["lead"],
                UPLOAD % next(uploads),
                "application/jsonl",
            ),
            "healthz": lambda i: request(port, "GET", "/healthz", tokens["lead"]),
        }
        try:
            for state in ("up", "stopped (SIGSTOP)", "gone (killed)", "back"):
                if state.startswith("stopped"):
                    redis[0].send_signal(signal.SIGSTOP)
                elif state.startswith("gone"):
                    stop_redis(redis[0])
                elif state == "back":
                    redis[:] = start_redis(redis_cmd)
                    time.sleep(3)  # past REDIS_RETRY_SECONDS: the cache tries Redis again
                print(f"\nRedis {state}")
                for name, call in calls.items():
                    seconds, statuses = timed(args.requests, call)
                    answers = ", ".join(f"{n} x {code}" for code, n in sorted(statuses.items()))
                    print("  " + common.latency_line(name, seconds) + f"  [{answers}]")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except common.BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
