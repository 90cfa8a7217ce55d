"""The queue under load: annotators loop next -> judgment over HTTP against gunicorn.

    .venv/bin/python bench/queue_quick.py [--annotators 16] [--duration 30] [--large]

Creates a throwaway PostgreSQL database, imports N prompts x 2 candidates (10,000 comparisons, or
100,000 with --large) with overlap 3 through `manage.py import_batch`, creates the annotators with
DRF tokens, serves the app with gunicorn (DEBUG=false, REDIS_URL set) and lets every annotator
loop POST assignments/next/ then POST assignments/<id>/judgment/ on its own keep-alive
connection. Prints latencies, throughput and errors, then checks the queue's invariants in SQL.
"""

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import common
import psycopg

CHOICES = ("left", "right", "tie", "both_bad")
CHOICE_WEIGHTS = (45, 45, 7, 3)
SLUG = "bench-queue"


# --- the client --------------------------------------------------------------------------------


@dataclass
class Stats:
    next_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    judged_in_window: int = 0  # submits answered 201/200 inside the measured window
    judged_total: int = 0  # and during the warm-up and the last cycle's overrun
    unknown: int = 0  # submits whose outcome the client never learnt (connection lost twice)
    exhausted: int = 0  # annotators told 204: nothing left for them

    def merge(self, other: "Stats") -> None:
        self.next_s += other.next_s
        self.submit_s += other.submit_s
        self.errors += other.errors
        self.judged_in_window += other.judged_in_window
        self.judged_total += other.judged_total
        self.unknown += other.unknown
        self.exhausted += other.exhausted


class Connection:
    """One keep-alive HTTP connection; reconnects once when the server has closed it."""

    RETRYABLE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionError)

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def post(self, path: str, payload: dict[str, object]) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()
        try:
            return self._post(path, body)
        except self.RETRYABLE:
            # Safe to repeat: next returns the open lease, a judgment carries an idempotency key.
            self.conn.close()
            return self._post(path, body)

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def annotator_loop(
    port: int, token: str, measure_from: float, until: float, max_judgments: int, seed: int
) -> Stats:
    stats = Stats()
    rng = random.Random(seed)
    conn = Connection(port, token)
    next_path = f"/api/v1/projects/{SLUG}/assignments/next/"
    try:
        while True:
            started = time.monotonic()
            if started >= until or (max_judgments and stats.judged_total >= max_judgments):
                break
            measuring = started >= measure_from
            try:
                status, body = conn.post(next_path, {})
            except OSError as exc:
                stats.errors[f"next {exc.__class__.__name__}"] += 1
                time.sleep(0.1)
                continue
            if measuring:
                stats.next_s.append(time.monotonic() - started)
            if status == 204:
                stats.exhausted += 1
                break
            if status != 200:
                stats.errors[f"next {status}"] += 1
                time.sleep(0.05)
                continue
            assignment_id = json.loads(body)["id"]
            payload = {
                "choice": rng.choices(CHOICES, CHOICE_WEIGHTS)[0],
                "idempotency_key": uuid.uuid4().hex,
                "duration_ms": rng.randint(2_000, 90_000),
            }
            sent = time.monotonic()
            try:
                status, body = conn.post(f"/api/v1/assignments/{assignment_id}/judgment/", payload)
            except OSError as exc:
                stats.errors[f"submit {exc.__class__.__name__}"] += 1
                stats.unknown += 1
                time.sleep(0.1)
                continue
            done = time.monotonic()
            if measuring:
                stats.submit_s.append(done - sent)
            if status in (200, 201):
                stats.judged_total += 1
                if measure_from <= done <= until:
                    stats.judged_in_window += 1
            else:
                stats.errors[f"submit {status}"] += 1
    finally:
        conn.close()
    return stats


def run_group(
    port: int, tokens: list[str], measure_from: float, until: float, max_judgments: int, seed: int
) -> Stats:
    """One thread per annotator in this process; returns their merged figures."""
    results: list[Stats] = []
    lock = threading.Lock()

    def work(index: int, token: str) -> None:
        try:
            stats = annotator_loop(port, token, measure_from, until, max_judgments, seed + index)
        except Exception as exc:
            stats = Stats()
            stats.errors[f"client {exc.__class__.__name__}: {exc}"] += 1
        with lock:
            results.append(stats)

    threads = [
        threading.Thread(target=work, args=(i, token), daemon=True)
        for i, token in enumerate(tokens)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = Stats()
    for stats in results:
        merged.merge(stats)
    return merged


# --- checking the database afterwards ----------------------------------------------------------

INVARIANTS = {
    "comparisons whose judgment_count exceeds the overlap": """
        SELECT c.id FROM batches_comparison c JOIN projects_project p ON p.id = c.project_id
        WHERE c.judgment_count > p.overlap""",
    "comparisons whose judgment_count + lease_count exceeds the overlap": """
        SELECT c.id FROM batches_comparison c JOIN projects_project p ON p.id = c.project_id
        WHERE c.judgment_count + c.lease_count > p.overlap""",
    "comparisons with more judgments than the overlap": """
        SELECT j.comparison_id FROM judging_judgment j
        JOIN batches_comparison c ON c.id = j.comparison_id
        JOIN projects_project p ON p.id = c.project_id
        GROUP BY j.comparison_id, p.overlap HAVING count(*) > p.overlap""",
    "(comparison, annotator) pairs judged more than once": """
        SELECT comparison_id FROM judging_judgment
        GROUP BY comparison_id, annotator_id HAVING count(*) > 1""",
    "comparisons whose judgment_count differs from their judgments": """
        SELECT c.id FROM batches_comparison c
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM judging_judgment GROUP BY 1) j
            ON j.comparison_id = c.id
        WHERE c.judgment_count <> coalesce(j.n, 0)""",
    "comparisons whose lease_count differs from their open assignments": """
        SELECT c.id FROM batches_comparison c
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM judging_assignment
                   WHERE status = 'open' GROUP BY 1) a ON a.comparison_id = c.id
        WHERE c.lease_count <> coalesce(a.n, 0)""",
    "judgments whose assignment is not submitted, or is another annotator's or comparison's": """
        SELECT j.id FROM judging_judgment j JOIN judging_assignment a ON a.id = j.assignment_id
        WHERE a.status <> 'submitted' OR a.annotator_id <> j.annotator_id
           OR a.comparison_id <> j.comparison_id""",
    "annotators holding more than one open lease in the project": """
        SELECT annotator_id FROM judging_assignment WHERE status = 'open'
        GROUP BY annotator_id, project_id HAVING count(*) > 1""",
}


def check_invariants(database: str, stats: Stats) -> tuple[list[str], list[str]]:
    """(violations, facts) about the queue's state after the run."""
    violations: list[str] = []
    facts: list[str] = []
    with psycopg.connect(database) as conn:
        for name, query in INVARIANTS.items():
            ids = [row[0] for row in conn.execute(query).fetchall()]
            if ids:
                violations.append(f"{len(ids)} {name} (e.g. {ids[:5]})")
        stored = conn.execute("SELECT count(*) FROM judging_judgment").fetchone()[0]  # type: ignore[index]
        low, high = stats.judged_total, stats.judged_total + stats.unknown
        if not low <= stored <= high:
            violations.append(
                f"{stored} judgments stored but the clients were told of {low} "
                f"(+{stats.unknown} unknown)"
            )
        facts.append(f"judgments stored: {stored:,} (clients saw {low:,} accepted)")
        spread = conn.execute(
            "SELECT judgment_count, count(*) FROM batches_comparison GROUP BY 1 ORDER BY 1"
        ).fetchall()
        facts.append(
            "comparisons by judgment_count: " + ", ".join(f"{k}: {n:,}" for k, n in spread)
        )
        open_leases = conn.execute(
            "SELECT count(*) FROM judging_assignment WHERE status = 'open'"
        ).fetchone()[0]  # type: ignore[index]
        facts.append(f"open leases left: {open_leases}")
    return violations, facts


_EXPLAIN_CODE = """
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from apps.judging.services import _comparison_pick
from apps.projects.models import Project

project = Project.objects.get(slug=SLUG)
user = (
    User.objects.filter(memberships__project=project, username__startswith="bench-annotator")
    .order_by("id").first()
)
with transaction.atomic():
    with CaptureQueriesContext(connection) as ctx:
        _comparison_pick(project=project, annotator=user)
    pick = ctx.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + pick)
        plan = [row[0] for row in cursor.fetchall()]
    transaction.set_rollback(True)
print(MARK + json.dumps({"user": user.username, "judged": user.judgments.count(), "sql": pick,
                         "plan": plan}))
"""


def explain_pick(env: dict[str, str]) -> None:
    """EXPLAIN ANALYZE of the queue's pick query, as Django sends it, for the first annotator."""
    mark = "BENCH-EXPLAIN "
    code = f"import json\nSLUG = {SLUG!r}\nMARK = {mark!r}\n{_EXPLAIN_CODE}"
    out = common.manage(["shell", "-c", code], env, timeout=120).stdout
    result = next(
        json.loads(line[len(mark) :]) for line in out.splitlines() if line.startswith(mark)
    )
    print(f"\npick query for {result['user']} (has {result['judged']} judgments):")
    print(f"  {result['sql']}")
    print("EXPLAIN (ANALYZE, BUFFERS):")
    for line in result["plan"]:
        print(f"  {line}")


# --- the run -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10_000, help="default 10,000")
    parser.add_argument("--candidates", type=int, default=2, help="per prompt (2: one pair each)")
    parser.add_argument("--large", action="store_true", help="100,000 prompts instead")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds before measuring")
    parser.add_argument("--count", type=int, default=0, help="stop each annotator after N")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=4, help="per gthread worker")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="spread the annotators over N processes"
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the pick query")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip VACUUM ANALYZE after the import: the queue as served before autovacuum ran",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.large:
        args.prompts = 100_000
    args.comparisons = args.prompts * args.candidates * (args.candidates - 1) // 2
    return args


def seed(env: dict[str, str], database: str, args: argparse.Namespace) -> list[str]:
    """Creates the project, the annotators and the queue; returns the annotators' tokens."""
    common.migrate(env)
    setup = common.setup_project(env, SLUG, overlap=args.overlap, annotators=args.annotators)
    with tempfile.TemporaryDirectory(prefix="annotate_bench_") as folder:
        path = Path(folder) / "queue.jsonl"
        size = common.write_prompts_jsonl(path, args.prompts, args.candidates)
        run = common.run_measured(
            [common.PYTHON, common.MANAGE, "import_batch", SLUG, str(path)], env, args.timeout
        )
        if run.returncode != 0:
            raise common.BenchError(f"import failed:\n{run.stderr[-3000:]}")
    if not args.no_analyze:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # as autovacuum would, a minute after an import
    print(
        f"\nqueue: {args.comparisons:,} comparisons ({args.prompts:,} prompts x "
        f"{args.candidates} candidates, {common.human_bytes(size)}), overlap {args.overlap}; "
        f"imported in {run.seconds:.1f} s; "
        + ("NOT analyzed (--no-analyze)" if args.no_analyze else "then VACUUM ANALYZE")
    )
    return [a["token"] for a in setup["annotators"]]


@dataclass
class Load:
    stats: Stats
    window: float  # the measured seconds
    elapsed: float  # warm-up included
    machine_busy: float  # fraction of all cores
    cpu_seconds: dict[str, float]  # per group of processes


def load(
    server: common.Gunicorn, database: str, tokens: list[str], args: argparse.Namespace
) -> Load:
    """Runs the annotators (threads, spread over --client-processes processes)."""
    procs = max(1, min(args.client_processes, len(tokens)))
    idle = common.machine_busy_now(1.0)
    print(f"machine load before the run: {idle:.2f} cores busy (other processes)")
    print(
        f"client: {len(tokens)} annotators as threads in {procs} process(es), "
        f"{args.duration:.0f} s measured after {args.warmup:.0f} s warm-up"
        + (f", at most {args.count} judgments each" if args.count else "")
    )
    sys.stdout.flush()

    def groups() -> dict[str, list[int]]:
        ours = set(server.pids())
        mine = [p for p in common.child_pids(os.getpid()) if p not in ours]
        return {
            "gunicorn": sorted(ours),
            "postgres": common.backend_pids(database),  # this database's backends only
            "client": [os.getpid(), *mine],
        }

    meter = common.CpuMeter()
    start = time.monotonic() + 0.2
    measure_from = start + args.warmup
    until = measure_from + args.duration
    stats = Stats()
    if procs == 1:
        meter.begin(groups())
        stats = run_group(server.port, tokens, measure_from, until, args.count, 1)
        busy, used = meter.end(groups())
    else:
        with ProcessPoolExecutor(procs, mp_context=get_context("fork")) as pool:
            futures = [
                pool.submit(
                    run_group, server.port, tokens[i::procs], measure_from, until, args.count, i
                )
                for i in range(procs)
            ]
            time.sleep(0.1)
            meter.begin(groups())  # the pool's processes exist by now
            for future in futures:
                stats.merge(future.result())
            busy, used = meter.end(groups())
    now = time.monotonic()
    window = min(args.duration, max(1e-9, now - measure_from))
    return Load(stats, window, now - start, busy, used)


def report(result: Load, args: argparse.Namespace) -> None:
    stats = result.stats
    print(f"\nresults ({args.annotators} annotators, {args.comparisons:,} comparisons)")
    print("  " + common.latency_line("next", stats.next_s))
    print("  " + common.latency_line("submit", stats.submit_s))
    rate = stats.judged_in_window / result.window
    print(
        f"  judgments/s: {rate:,.1f}  ({stats.judged_in_window:,} in the {result.window:.1f} s "
        f"window; {stats.judged_total:,} in all, warm-up included)"
    )
    errors = ", ".join(f"{k}: {n}" for k, n in sorted(stats.errors.items()))
    print(f"  errors: {errors or 'none'}")
    if stats.exhausted:
        print(f"  annotators who ran out of work (204): {stats.exhausted}")
    cores = {k: v / result.elapsed for k, v in result.cpu_seconds.items()}
    machine = result.machine_busy * (os.cpu_count() or 1)
    other = machine - sum(cores.values())
    print(
        f"  cpu, in cores busy out of {os.cpu_count()}: machine {machine:.2f} = gunicorn "
        f"{cores['gunicorn']:.2f} + postgres {cores['postgres']:.2f} + client "
        f"{cores['client']:.2f} + other {other:.2f}"
    )
    if other > 0.25:
        print("  WARNING: other processes used the CPU during the run; the figures are low")

    print("\nanchor (ANCHORS.md; Label Studio: official uWSGI, 4 workers, PostgreSQL 15)")
    next_p50 = common.percentile(sorted(stats.next_s), 50)
    for a in common.anchors_for(args.comparisons):
        print(
            f"  {common.LABEL_STUDIO} at {a.tasks:,} tasks / {a.annotators} annotators: next p50 "
            f"{a.next_p50:.2f} s, p99 {a.next_p99:.2f} s, submit p50 {a.submit_p50:.2f} s, "
            f"{a.per_second} annotations/s"
        )
        print(
            f"    annotate, {args.annotators} annotators: next p50 {next_p50:.3f} s "
            f"({a.next_p50 / next_p50:,.0f}x lower), {rate:,.1f} judgments/s "
            f"({rate / a.per_second:,.1f}x)"
        )
    if args.comparisons >= 50_000:
        target = common.TARGET_FACTOR_AT_100K * common.anchors_for(100_000)[0].per_second
        verdict = "met" if rate >= target else "NOT met"
        print(
            f"  target: {common.TARGET_FACTOR_AT_100K}x Label Studio's throughput at 100k = "
            f"{target:.0f} judgments/s: {verdict}"
        )


def main() -> int:
    args = parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    server: common.Gunicorn | None = None
    try:
        with common.temporary_database(keep=args.keep_db) as database:
            env = common.production_env(database)
            tokens = seed(env, database, args)
            server = common.Gunicorn(
                env, workers=args.workers, worker_class=args.worker_class, threads=args.threads
            )
            server.start()
            print(
                f"server: {server.description} on 127.0.0.1:{server.port}, DEBUG=false, "
                "REDIS_URL set, PostgreSQL"
            )
            result = load(server, database, tokens, args)
            server.stop()
            report(result, args)

            violations, facts = check_invariants(database, result.stats)
            print()
            for fact in facts:
                print(f"  {fact}")
            if violations:
                print("invariants: VIOLATED")
                for violation in violations:
                    print(f"  - {violation}")
            else:
                print("invariants: OK")
            if args.explain:
                explain_pick(env)
            return 1 if violations else 0
    except common.BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
