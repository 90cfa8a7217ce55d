"""How fast a generation job asks a model endpoint, and what it costs the worker: throughput
against the endpoint's concurrency, memory over the run, duplicates.

    .venv/bin/python bench/generate.py [--prompts 1000] [--samples 4] [--concurrency 16]
        [--latency 0.2] [--sqlite] [--profile N] [--timeout 1800]

The endpoint is the tests' fake OpenAI-compatible server (tests/endpoints/fake_llm.py, a
ThreadingHTTPServer), in a process of its own so that its CPU does not share a GIL with the run,
answering every request after `--latency` seconds. The app's side runs in another subprocess,
with Django set up on a throwaway database (PostgreSQL `annotate_bench_<pid>` by default, a
temporary SQLite file with `--sqlite`), migrated: it creates a lead, a project, a batch of
`--prompts` prompts without candidates and one endpoint (`max_concurrency` = `--concurrency`, no
retries), then times `generation_start(samples=--samples)` end to end. That subprocess has no
REDIS_URL, so Celery runs tasks eagerly: the start's commit runs
`apps.generation.tasks.generation_run_task` in that same process, the task's body exactly as a
worker runs it (the thread pool, the HTTP client, every row written). It samples its own RSS
every half second meanwhile.

Target (the issue): 1,000 prompts x 4 samples at 200 ms and a concurrency of 16 run at >= 90%
of concurrency / latency (72 requests/s), with RSS flat and no duplicates. The figures are
printed, with PASS or MISS beside the target; nothing here asserts.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports, and Python
# puts this script's folder first on sys.path: move the folder to the end (as queue.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import subprocess  # noqa: E402
from math import comb  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402

MODEL = "bench-model"
TARGET_SHARE = 0.9  # of concurrency / latency

# The fake server's process: prints its URL, then answers "stats" on stdin with what it saw,
# and stops at EOF. Its listen backlog is raised from socketserver's 5: a burst of new
# connections (the fake answers HTTP/1.0, so every request opens one) must not be dropped by
# the test double's kernel queue and retried a second later, which would be the fake's delay,
# not the app's.
SERVER = """
import json, resource, sys
from http.server import ThreadingHTTPServer
ThreadingHTTPServer.request_queue_size = 128
from tests.endpoints.fake_llm import FakeLLM
server = FakeLLM(models=(MODEL,), latency=LATENCY).start()
print(server.url, flush=True)
for line in sys.stdin:
    with server._lock:
        chat = [r for r in server.requests if r.path == "/v1/chat/completions"]
        keys = [(json.dumps(r.body.get("messages"), sort_keys=True), r.body.get("seed"))
                for r in chat if isinstance(r.body, dict)]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = {
            "requests": len(server.requests),
            "chat": len(chat),
            "distinct": len(set(keys)),
            "max_in_flight": server.max_in_flight,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }
    print(json.dumps(stats), flush=True)
server.stop()
"""

# The app's process: Django on the bench database, no broker (tasks run eagerly, in here).
CHILD = """
import cProfile, io, json, os, pstats, resource, sys, threading, time
import django
django.setup()
from django.contrib.auth.models import User
from django.db import connection
from apps.batches.models import Batch, BatchStatus, Candidate, Comparison, Prompt
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import endpoint_save
from apps.generation.models import GenerationJob
from apps.generation.services import generation_start
from apps.projects.services import membership_add, project_create

spec = json.loads(SPEC)
assert not os.environ.get("REDIS_URL")
lead = User.objects.create_user("bench-lead")
project = project_create(slug="bench-generate", name="bench-generate", created_by=lead)
membership_add(project=project, user=lead, role="lead")
batch = Batch.objects.create(project=project, name="bench prompts", status=BatchStatus.ACTIVE,
                             candidates_optional=True, created_by=lead)
words = ("the model answer question data value result because first second return list "
         "server query index cache thread latency summary analysis").split()
Prompt.objects.bulk_create(
    [Prompt(project=project, batch=batch, external_id=f"p-{i}",
            content=" ".join(words[(i * 7 + j) % len(words)] for j in range(8 + i % 30)) + f" {i}?")
     for i in range(spec["prompts"])],
    batch_size=1000,
)
Batch.objects.filter(pk=batch.pk).update(prompt_count=spec["prompts"])
batch.refresh_from_db()
endpoint = endpoint_save(ModelEndpoint(
    project=project, name="bench", base_url=spec["url"], model=spec["model"],
    max_concurrency=spec["concurrency"], max_retries=0, timeout_seconds=30,
), by=lead)

def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

samples = []
stop = threading.Event()
def sampler() -> None:
    started = time.perf_counter()
    while True:
        samples.append((round(time.perf_counter() - started, 2), rss()))
        if stop.wait(0.5):
            samples.append((round(time.perf_counter() - started, 2), rss()))
            return

print("BENCH-READY", flush=True)
sys.stdin.readline()  # the parent has read the server's counters: go
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
thread = threading.Thread(target=sampler, daemon=True)
thread.start()
# --profile: cProfile sees the thread it is enabled in, the run's own, which writes every row
# and waits for the pool; the pool's threads (HTTP only) are not in it.
profiler = cProfile.Profile() if spec["profile"] else None
started = time.perf_counter()
if profiler:
    profiler.enable()
job = generation_start(batch=batch, endpoints=[endpoint], samples=spec["samples"],
                       seed=1, by=lead)
if profiler:
    profiler.disable()
seconds = time.perf_counter() - started
profile = ""
if profiler:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(spec["profile"])
    profile = out.getvalue()
stop.set()
thread.join()
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
job = GenerationJob.objects.get(pk=job.pk)
generated = Candidate.objects.filter(prompt__batch=batch)
latencies = sorted(generated.values_list("latency_ms", flat=True))
print("BENCH-JSON " + json.dumps({
    "seconds": seconds,
    "job": {k: getattr(job, k) for k in ("pk", "status", "note", "attempts", "requests_total",
            "requests_done", "requests_failed", "prompts_total", "prompts_done",
            "comparisons_made", "prompt_tokens", "completion_tokens")},
    "job_seconds": (job.finished_at - job.created_at).total_seconds() if job.finished_at else None,
    "batch": batch.pk,
    "endpoint": endpoint.pk,
    "latencies": latencies,
    "rss": samples,
    "cpu_seconds": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
    "candidates": generated.count(),
    "comparisons": Comparison.objects.filter(batch=batch).count(),
    "vendor": connection.vendor,
    "profile": profile,
}), flush=True)
"""


class FakeServer:
    """The fake OpenAI-compatible server in a subprocess of its own."""

    def __init__(self, latency: float) -> None:
        code = f"MODEL = {MODEL!r}\nLATENCY = {latency!r}\n{SERVER}"
        self.proc = subprocess.Popen(
            [common.PYTHON, "-c", code],
            cwd=common.REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise common.BenchError(f"the fake server did not start (it said {self.url!r})")

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def signed(n: float) -> str:
    return ("+" if n >= 0 else "-") + common.human_bytes(abs(n))


def count_duplicates(database: str, batch: int) -> tuple[int, int]:
    """(keys with more than one candidate, candidates beyond the first of each), in SQL."""
    query = (
        "SELECT count(*), coalesce(sum(n - 1), 0) FROM (SELECT c.prompt_id, c.endpoint_id, "
        "c.sample_index, count(*) AS n FROM batches_candidate c JOIN batches_prompt p "
        "ON p.id = c.prompt_id WHERE p.batch_id = ? "
        "GROUP BY c.prompt_id, c.endpoint_id, c.sample_index HAVING count(*) > 1) AS d"
    )
    if database.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database[len("sqlite:///") :]) as lite:
            row = lite.execute(query, (batch,)).fetchone()
    else:
        with psycopg.connect(database) as conn:
            row = conn.execute(query.replace("?", "%s"), (batch,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_child(
    env: dict[str, str], spec: dict[str, Any], server: FakeServer
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
    """Runs CHILD; lets it go once the server's counters before the run are read. Returns the
    child's results, the server's counters before and after, and the child's peak RSS."""
    code = f"SPEC = {json.dumps(spec)!r}\n{CHILD}"
    proc = subprocess.Popen(
        [common.PYTHON, "-c", code],
        cwd=common.REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        before: dict[str, Any] | None = None
        result: dict[str, Any] | None = None
        for line in proc.stdout:
            if line.startswith("BENCH-READY"):
                before = server.stats()
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif line.startswith("BENCH-JSON "):
                result = json.loads(line[len("BENCH-JSON ") :])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read() if proc.stderr else ""
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or result is None or before is None:
        raise common.BenchError(f"the run failed ({proc.returncode}):\n{stderr[-4000:]}")
    return result, before, server.stats(), usage.ru_maxrss * 1024


def bench_backend(label: str, database: str, args: argparse.Namespace) -> None:
    # As a worker is deployed (DEBUG off: Django keeps no log of queries), but without REDIS_URL:
    # Celery then runs the task here, eagerly.
    env = common.app_env(database, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50))
    migrate_s = common.migrate(env, timeout=args.timeout)
    print(f"\n{label}: migrate took {migrate_s:.1f} s")
    print(f"  busy just before:  {common.machine_busy_now(1.0):.2f} cores (other processes)")
    server = FakeServer(args.latency)
    try:
        spec = {
            "prompts": args.prompts,
            "samples": args.samples,
            "concurrency": args.concurrency,
            "url": server.url,
            "model": MODEL,
            "profile": args.profile,
        }
        result, before, after, peak_rss = run_child(env, spec, server)
    finally:
        server.stop()
    requests = after["chat"] - before["chat"]
    distinct = after["distinct"] - before["distinct"]
    seconds = result["seconds"]
    ceiling = args.concurrency / args.latency
    rate = requests / seconds if seconds else 0.0
    share = rate / ceiling
    job = result["job"]
    latencies = [float(v) for v in result["latencies"] if v is not None]
    groups, extra = count_duplicates(database, result["batch"])
    expected_requests = args.prompts * args.samples
    expected_comparisons = args.prompts * comb(args.samples, 2)
    print(f"  run:               {args.prompts:,} prompts x {args.samples} samples, 1 endpoint")
    print(
        f"  endpoint:          fake server (own process), latency {args.latency * 1000:.0f} ms, "
        f"max_concurrency {args.concurrency}, no retries"
    )
    print(
        f"  requests:          {requests:,} chat completions seen by the server "
        f"({distinct:,} distinct (prompt, seed) pairs; {expected_requests:,} wanted); "
        f"most in flight at once {after['max_in_flight']}"
    )
    print(
        f"  wall time:         {seconds:.2f} s, generation_start to its return (the eager run "
        f"included); the job's created_at to finished_at {result['job_seconds'] or 0:.2f} s"
    )
    verdict = "PASS" if share >= TARGET_SHARE else "MISS"
    print(
        f"  throughput:        {rate:.1f} requests/s = {share:.1%} of concurrency / latency "
        f"({ceiling:.0f}/s); target >= {TARGET_SHARE:.0%} ({TARGET_SHARE * ceiling:.0f}/s): "
        f"{verdict}"
    )
    print(
        "  latency (Candidate.latency_ms, the request alone): "
        + "  ".join(f"p{p} {common.percentile(sorted(latencies), p):.0f} ms" for p in (50, 90, 99))
        + f"  max {max(latencies, default=float('nan')):.0f} ms"
    )
    print(
        f"  CPU:               run process {result['cpu_seconds']:.1f} s "
        f"({result['cpu_seconds'] / max(requests, 1) * 1000:.2f} ms a request), fake server "
        f"{after['cpu_seconds'] - before['cpu_seconds']:.1f} s"
    )
    series = result["rss"]
    if series:
        marks = []
        for name, share_of_run in (("start", 0), ("25%", 0.25), ("50%", 0.5), ("75%", 0.75)):
            at, value = series[min(len(series) - 1, int(share_of_run * (len(series) - 1)))]
            marks.append(f"{name} {common.human_bytes(value)} ({at:.0f} s)")
        marks.append(f"end {common.human_bytes(series[-1][1])}")
        peak = max(v for _, v in series)
        print(f"  RSS (run process, every 0.5 s): {' | '.join(marks)}")
        growth = series[-1][1] - series[0][1]
        second_half = series[-1][1] - series[len(series) // 2][1]
        # Per 1,000 requests over the second half, when the pool and the caches are warm: a
        # leak shows as a steady slope there, whatever the run's length.
        per_1000 = second_half / max(requests / 2, 1) * 1000
        print(
            f"                     peak {common.human_bytes(peak)}; start to end {signed(growth)}, "
            f"second half {signed(second_half)} ({signed(per_1000)} per 1,000 requests); "
            f"process peak (wait4) {common.human_bytes(peak_rss)}, the setup included"
        )
    print(
        f"  duplicates (SQL):  {groups} (prompt, endpoint, sample) keys with more than one "
        f"candidate, {extra} extra candidates; candidates stored {result['candidates']:,} "
        f"of {expected_requests:,}"
    )
    print(
        f"  comparisons:       {result['comparisons']:,} formed (pairing all: "
        f"{args.prompts:,} x C({args.samples},2) = {expected_comparisons:,})"
    )
    print(
        f"  job:               {job['status']}{' (' + job['note'] + ')' if job['note'] else ''}; "
        f"attempts {job['attempts']}, requests {job['requests_done']:,} done / "
        f"{job['requests_failed']:,} failed / {job['requests_total']:,}, prompts "
        f"{job['prompts_done']:,} / {job['prompts_total']:,}, comparisons "
        f"{job['comparisons_made']:,}, tokens {job['prompt_tokens']:,} in / "
        f"{job['completion_tokens']:,} out"
    )
    if result["profile"]:
        print("  the run's own thread (cProfile, by cumulative time; its clock is wall time):")
        print("    " + result["profile"].strip().replace("\n", "\n    "))
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt (1-16)")
    parser.add_argument("--concurrency", type=int, default=16, help="the endpoint's limit")
    parser.add_argument("--latency", type=float, default=0.2, help="the server's, in seconds")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--timeout", type=float, default=1800, help="stop the whole run after")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the run's own thread (the one that writes) and print its top N functions",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")
    if not 1 <= args.samples <= 16:
        parser.error("--samples must be between 1 and 16")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64 (a run's most threads)")
    if not 0 < args.latency <= 10:
        parser.error("--latency must be above 0 and at most 10 seconds")
    common.bound_runtime(args.timeout)

    common.print_machine()
    try:
        if args.sqlite:
            with common.temporary_sqlite() as database:
                bench_backend("SQLite", database, args)
        else:
            with common.temporary_database(keep=args.keep_db) as database:
                bench_backend(f"PostgreSQL {common.postgres_version()}", database, args)
    except common.BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
