"""The queue benchmark: a large queue seeded with COPY, annotators on gunicorn, one heavy annotator.

    .venv/bin/python bench/queue.py [--n 10000] [--annotators 32] [--duration 30] [--heavy]
    .venv/bin/python bench/queue.py --n 1000000 --heavy
    .venv/bin/python bench/queue.py --both --heavy          # N=10k then N=1M, and their ratio
    .venv/bin/python bench/queue.py --n 1000000 --heavy --fill-others   # the heavy worst case
    .venv/bin/python bench/queue.py --n 120000 --rounds 2   # two vs one request a judgment

Creates a throwaway PostgreSQL database, migrates it, creates one project (overlap 3) and the
annotators with DRF tokens, then seeds N comparisons (one per prompt, 2 candidates each) straight
into the tables with COPY, in one active batch, and runs VACUUM (ANALYZE). With --heavy one
annotator already has 100,000 judgments (N/2 when N <= 100,000), on the comparisons with the lowest
ranks; with --fill-others every other comparison has one judgment too (by a member outside the
run), so that those 100,000 are the head of the breadth-first order. It serves the app with
gunicorn (DEBUG=false, REDIS_URL set), measures the floor (GET /api/v1/me/), then lets every
annotator loop POST assignments/next/ and POST assignments/<id>/judgment/ over keep-alive
connections (two requests a judgment), then POST assignments/<id>/judgment/?next=1, whose answer
carries the next lease (one request a judgment; --mode picks one, --rounds alternates them), prints
latencies, throughput and errors per mode, and checks the queue's invariants in SQL. Beside the
server runs a Celery worker with its beat, as deployed, whose `vacuum-queue` job keeps the queue's
tables free of the dead rows judging leaves (--no-upkeep runs without it, to see the difference).
"""

import sys
from pathlib import Path

# This file is named like the standard library's `queue`, which psycopg and concurrent.futures
# import. Python puts the script's folder first on sys.path, so `import queue` would load this
# file again; move the folder to the end, where `import common` still finds it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402
from common import BATCH_COLUMNS, CANDIDATE_COLUMNS, COMPARISON_COLUMNS, PROMPT_COLUMNS  # noqa: E402

SLUG = "bench-queue"
OVERLAP = 3
HEAVY_JUDGMENTS = 100_000
POLICIES = ("breadth_first", "depth_first", "uncertain_first", "random")
CHOICES = ("left", "right", "tie", "both_bad")
CHOICE_WEIGHTS = (45, 45, 7, 3)
MODELS = ("model-a-7b", "model-b-13b", "model-c-70b", "model-d-instruct", "model-e-chat")

# Targets (the issue): ratios, so that they hold on any machine.
TARGET_NEXT_OVER_FLOOR = 3.0
TARGET_HEAVY_OVER_FRESH = 1.5
TARGET_LARGE_OVER_SMALL = 1.5
TARGET_SEED_1M_SECONDS = 60.0
# Label Studio at 100,000 tasks, C=32 (ANCHORS.md, measured again 2026-12-01), and the issue's
# factor: at least 50x its throughput, and a next p99 at most 1/50 of its.
LABEL_STUDIO_RATE_100K = 2.26  # annotations/s
LABEL_STUDIO_NEXT_P99_100K = 12.9  # seconds
TARGET_FACTOR = 50

# The two ways an API client can loop: next then submit (two requests a judgment), or a submit
# that asks for the next assignment (`?next=1`: one request a judgment, after the first next).
MODES = {
    "two": "two requests a judgment (next, then submit)",
    "one": "one request a judgment (submit?next=1)",
}

ASSIGNMENT_COLUMNS = [
    "id",
    "project_id",
    "comparison_id",
    "annotator_id",
    "left_id",
    "right_id",
    "status",
    "created_at",
    "expires_at",
    "closed_at",
]
JUDGMENT_COLUMNS = [
    "id",
    "comparison_id",
    "batch_id",
    "annotator_id",
    "assignment_id",
    "choice",
    "left_id",
    "right_id",
    "chosen_id",
    "rationale",
    "duration_ms",
    "idempotency_key",
    "gold_correct",
    "created_at",
]


# --- seeding with COPY -------------------------------------------------------------------------


@dataclass
class Seeded:
    comparisons: int
    seconds: float  # prompts + candidates + comparisons (+ the batch row), committed
    heavy_judgments: int = 0
    past_judgments: int = 0  # the heavy annotator's and the filler's
    past_seconds: float = 0.0
    analyze_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    bytes: int = 0
    tables: dict[str, float] = field(default_factory=dict)  # seconds until each was loaded


def _ts(moment: datetime) -> str:
    return moment.isoformat()


def seed_queue(
    database: str,
    *,
    project_id: int,
    n: int,
    heavy_user: int | None,
    heavy_n: int,
    filler_user: int | None,
    seed: int,
    redraw_ranks: bool = True,
) -> Seeded:
    """Seeds one active batch of n comparisons, and past judgments, with COPY.

    The heavy annotator (if any) judged the heavy_n comparisons with the lowest ranks; the filler
    (if any) judged every other one, so that all comparisons are at level 1 of the breadth-first
    order and the heavy annotator's are its head. Ids are given explicitly (prompt i, candidates
    2i-1 and 2i, comparison i) and the identity sequences moved past them afterwards. Foreign
    keys are not checked row by row (session_replication_role = replica, as pg_restore does): the
    rows are consistent by construction, and the invariants are checked after the run.
    """
    rng = random.Random(seed)
    prompt_pool, text_pool = common.text_pools(seed)
    ranks = [rng.getrandbits(31) for _ in range(n)]
    # Past work: comparison id -> (annotator, whether candidate a was shown on the left).
    past: dict[int, tuple[int, bool]] = {}
    if heavy_user is not None and heavy_n:
        for index in sorted(range(n), key=ranks.__getitem__)[:heavy_n]:
            past[index + 1] = (heavy_user, rng.random() < 0.5)
    heavy_count = len(past)
    if filler_user is not None:
        for cid in range(1, n + 1):
            if cid not in past:
                past[cid] = (filler_user, rng.random() < 0.5)
    if redraw_ranks:
        # As the app does: every vote draws a new rank for its comparison. The heavy annotator
        # worked first (on the lowest ranks, as breadth first hands them out), and their
        # comparisons then sit at random places of the next level, as they would after real
        # submits. --heavy-at-head keeps the old ranks: the layout the redraw prevents.
        for cid in past:
            ranks[cid - 1] = rng.getrandbits(31)
    past_items = list(past.items())  # heavy's first; assignment k and judgment k are item k
    now = datetime.now(UTC)
    stamp = _ts(now)
    chunk = 20_000

    def batch_rows() -> Iterator[list[str]]:
        yield [f"1\t{project_id}\tbench\tactive\t0\t\\N\t{n}\t{n}\t[]\t{stamp}\t{stamp}\t\\N"]

    def prompt_rows(low: int, high: int) -> Iterator[list[str]]:
        pool = len(prompt_pool)
        for start in range(low, high, chunk):
            yield [
                f"{i}\t{project_id}\t1\tp-{i:07d}\t{prompt_pool[(i * 7919) % pool]}\t{{}}"
                for i in range(start, min(high, start + chunk))
            ]

    def candidate_rows(low: int, high: int) -> Iterator[list[str]]:
        pool = len(text_pool)
        models = len(MODELS)
        for start in range(low, high, chunk // 2):
            rows = []
            for i in range(start, min(high, start + chunk // 2)):
                for cid, name in ((2 * i - 1, "c1"), (2 * i, "c2")):
                    text, model = text_pool[cid % pool], MODELS[cid % models]
                    rows.append(f"{cid}\t{i}\t{name}\t{text}\t{model}\t{{}}\t{{}}")
            yield rows

    def comparison_rows(low: int, high: int) -> Iterator[list[str]]:
        done = "t" if OVERLAP <= 1 else "f"
        for start in range(low, high, chunk):
            rows = []
            for i in range(start, min(high, start + chunk)):
                rank = ranks[i - 1]
                vote = past.get(i)
                if vote is None:  # judgment/lease count, complete, rank, votes, split, skips, gold
                    counts = f"\t0\t0\tf\t{rank}\t0\t0\t0\t0\t1\t0\tf\t"
                else:  # one vote, "left", for whichever candidate was shown on the left
                    votes = "1\t0" if vote[1] else "0\t1"
                    counts = f"\t1\t0\t{done}\t{rank}\t{votes}\t0\t0\t1\t0\tf\t"
                rows.append(f"{i}\t{project_id}\t1\t{i}\t{2 * i - 1}\t{2 * i}{counts}")
            yield rows

    def sides(cid: int, a_left: bool) -> tuple[int, int]:
        return (2 * cid - 1, 2 * cid) if a_left else (2 * cid, 2 * cid - 1)

    def when(k: int, offset: int) -> str:  # one judgment every 2 s, the last a minute ago
        return _ts(now - timedelta(seconds=2 * (len(past_items) - k) + offset))

    def assignment_rows(low: int, high: int) -> Iterator[list[str]]:
        for start in range(low, high, chunk):
            rows = []
            for k in range(start, min(high, start + chunk)):
                cid, (user, a_left) = past_items[k - 1]
                left, right = sides(cid, a_left)
                rows.append(
                    f"{k}\t{project_id}\t{cid}\t{user}\t{left}\t{right}\tsubmitted\t"
                    f"{when(k, 90)}\t{when(k, 90 - 600)}\t{when(k, 60)}"
                )
            yield rows

    def judgment_rows(low: int, high: int) -> Iterator[list[str]]:
        for start in range(low, high, chunk):
            rows = []
            for k in range(start, min(high, start + chunk)):
                cid, (user, a_left) = past_items[k - 1]
                left, right = sides(cid, a_left)
                rows.append(
                    f"{k}\t{cid}\t1\t{user}\t{k}\tleft\t{left}\t{right}\t{left}\t\t"
                    f"{2_000 + (k * 7919) % 88_000}\t\t\\N\t{when(k, 60)}"
                )
            yield rows

    def connect() -> psycopg.Connection:
        return common.seed_connect(database)

    started = time.perf_counter()
    with connect() as conn:
        common.copy_rows(conn, "batches_batch", BATCH_COLUMNS, batch_rows())
    half = n // 2 + 1  # the comparisons, with a dozen indexes, are the slowest: two streams
    took = common.parallel_copy(
        connect,
        [
            ("batches_prompt", PROMPT_COLUMNS, prompt_rows(1, n + 1)),
            ("batches_candidate", CANDIDATE_COLUMNS, candidate_rows(1, n + 1)),
            ("batches_comparison", COMPARISON_COLUMNS, comparison_rows(1, half)),
            ("batches_comparison", COMPARISON_COLUMNS, comparison_rows(half, n + 1)),
        ],
    )
    seeded = Seeded(comparisons=n, seconds=time.perf_counter() - started, tables=took)

    if past_items:
        started = time.perf_counter()
        total = len(past_items) + 1
        half = total // 2 + 1
        common.parallel_copy(
            connect,
            [
                ("judging_assignment", ASSIGNMENT_COLUMNS, assignment_rows(1, total)),
                ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(1, half)),
                ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(half, total)),
            ],
        )
        with connect() as conn:
            for user, count in Counter(user for user, _ in past.values()).items():
                conn.execute(
                    "UPDATE projects_membership SET judgment_count = %s "
                    "WHERE project_id = %s AND user_id = %s",
                    (count, project_id, user),
                )
        seeded.heavy_judgments = heavy_count
        seeded.past_judgments = len(past_items)
        seeded.past_seconds = time.perf_counter() - started

    with connect() as conn:
        # The app inserts assignments and judgments: its ids must start after ours.
        common.reset_sequences(conn)
        seeded.bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]

    with psycopg.connect(database, autocommit=True) as conn:
        started = time.perf_counter()
        # VACUUM as well, as autovacuum does after a bulk load (its insert threshold) and the
        # beat's vacuum-queue does for the queue's tables: without it the first minutes of
        # judging ran at 160-226 judgments/s instead of 240-252 (bench/README.md, 2026-12-04).
        conn.execute("VACUUM (ANALYZE)")
        seeded.analyze_seconds = time.perf_counter() - started
        # Flush the load's dirty pages now rather than during the measured run: a checkpoint
        # in progress (GBs at 1M) would otherwise slow the first minutes of the queue.
        started = time.perf_counter()
        conn.execute("CHECKPOINT")
        seeded.checkpoint_seconds = time.perf_counter() - started
    return seeded


# --- the client --------------------------------------------------------------------------------


@dataclass
class Stats:
    next_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    judged_in_window: int = 0
    judged_total: int = 0
    unknown: int = 0  # submits whose outcome was never learnt
    exhausted: int = 0  # annotators told 204

    def merge(self, other: "Stats") -> None:
        self.next_s += other.next_s
        self.submit_s += other.submit_s
        self.floor_s += other.floor_s
        self.errors += other.errors
        self.judged_in_window += other.judged_in_window
        self.judged_total += other.judged_total
        self.unknown += other.unknown
        self.exhausted += other.exhausted


class Connection:
    """One keep-alive HTTP connection; sends a request once more when the server closed it."""

    RETRYABLE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionError)

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def request(self, method: str, path: str, payload: object = None) -> tuple[int, bytes]:
        body = None if payload is None else json.dumps(payload).encode()
        try:
            return self._request(method, path, body)
        except self.RETRYABLE:
            # Safe to repeat: next returns the open lease, a judgment carries an idempotency key.
            self.conn.close()
            return self._request(method, path, body)

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def floor_loop(port: int, token: str, measure_from: float, until: float) -> Stats:
    stats = Stats()
    conn = Connection(port, token)
    try:
        while (started := time.monotonic()) < until:
            try:
                status, _ = conn.request("GET", "/api/v1/me/")
            except OSError as exc:
                stats.errors[f"me {exc.__class__.__name__}"] += 1
                continue
            if started >= measure_from:
                stats.floor_s.append(time.monotonic() - started)
            if not 200 <= status < 300:
                stats.errors[f"me {status}"] += 1
    finally:
        conn.close()
    return stats


def annotator_loop(port: int, token: str, measure_from: float, until: float, seed: int) -> Stats:
    stats = Stats()
    rng = random.Random(seed)
    conn = Connection(port, token)
    next_path = f"/api/v1/projects/{SLUG}/assignments/next/"
    try:
        while (started := time.monotonic()) < until:
            measuring = started >= measure_from
            try:
                status, body = conn.request("POST", next_path, {})
            except OSError as exc:
                stats.errors[f"next {exc.__class__.__name__}"] += 1
                time.sleep(0.05)
                continue
            if measuring:
                stats.next_s.append(time.monotonic() - started)
            if status == 204:
                stats.exhausted += 1
                break
            if not 200 <= status < 300:
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
                status, body = conn.request(
                    "POST", f"/api/v1/assignments/{assignment_id}/judgment/", payload
                )
            except OSError as exc:
                stats.errors[f"submit {exc.__class__.__name__}"] += 1
                stats.unknown += 1
                continue
            done = time.monotonic()
            if measuring:
                stats.submit_s.append(done - sent)
            if 200 <= status < 300 and status != 204:
                stats.judged_total += 1
                if measure_from <= done <= until:
                    stats.judged_in_window += 1
            else:
                stats.errors[f"submit {status}"] += 1
    finally:
        conn.close()
    return stats


def combined_loop(port: int, token: str, measure_from: float, until: float, seed: int) -> Stats:
    """One request a judgment: POST next once, then POST judgment/?next=1 again and again, each
    answer carrying the next lease. Each submit-with-next's latency is kept in next_s: it is
    what the annotator waits for between two comparisons. Any answer outside 2xx is an error, as
    is a next_reason other than none_left (then the loop asks next again); none_left stops it."""
    stats = Stats()
    rng = random.Random(seed)
    conn = Connection(port, token)
    next_path = f"/api/v1/projects/{SLUG}/assignments/next/"
    assignment_id: int | None = None
    try:
        while (started := time.monotonic()) < until:
            measuring = started >= measure_from
            if assignment_id is None:  # the first lease, or after an error
                try:
                    status, body = conn.request("POST", next_path, {})
                except OSError as exc:
                    stats.errors[f"next {exc.__class__.__name__}"] += 1
                    time.sleep(0.05)
                    continue
                if status == 204:
                    stats.exhausted += 1
                    break
                if not 200 <= status < 300:
                    stats.errors[f"next {status}"] += 1
                    time.sleep(0.05)
                    continue
                assignment_id = json.loads(body)["id"]
                continue
            payload = {
                "choice": rng.choices(CHOICES, CHOICE_WEIGHTS)[0],
                "idempotency_key": uuid.uuid4().hex,
                "duration_ms": rng.randint(2_000, 90_000),
            }
            try:
                status, body = conn.request(
                    "POST", f"/api/v1/assignments/{assignment_id}/judgment/?next=1", payload
                )
            except OSError as exc:
                stats.errors[f"submit {exc.__class__.__name__}"] += 1
                stats.unknown += 1
                assignment_id = None
                continue
            done = time.monotonic()
            if measuring:
                stats.next_s.append(done - started)
            if not 200 <= status < 300 or status == 204:
                stats.errors[f"submit {status}"] += 1
                assignment_id = None
                continue
            stats.judged_total += 1
            if measure_from <= done <= until:
                stats.judged_in_window += 1
            answer = json.loads(body)
            following = answer.get("next")
            if following is not None:
                assignment_id = following["id"]
            elif answer.get("next_reason") == "none_left":
                stats.exhausted += 1
                break
            else:
                stats.errors[f"submit next_reason {answer.get('next_reason')}"] += 1
                assignment_id = None
    finally:
        conn.close()
    return stats


def run_threads(target: Any, jobs: list[tuple[Any, ...]]) -> list[Stats]:
    """Runs target(*job) in one thread per job; returns their Stats in the jobs' order."""
    results: list[Stats] = [Stats() for _ in jobs]

    def work(index: int) -> None:
        try:
            results[index] = target(*jobs[index])
        except Exception as exc:
            results[index].errors[f"client {exc.__class__.__name__}: {exc}"] += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def merged(stats: list[Stats]) -> Stats:
    total = Stats()
    for one in stats:
        total.merge(one)
    return total


# --- checking the database afterwards ----------------------------------------------------------

CHECKS = {
    "over-assignments": """
        SELECT count(*) FROM batches_comparison c
        JOIN projects_project p ON p.id = c.project_id
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM judging_judgment GROUP BY 1) j
            ON j.comparison_id = c.id
        WHERE NOT c.is_gold AND (c.judgment_count > p.overlap OR coalesce(j.n, 0) > p.overlap
              OR c.judgment_count + c.lease_count > p.overlap)""",
    "doubled (comparison, annotator) pairs": """
        SELECT count(*) FROM (SELECT 1 FROM judging_judgment
        GROUP BY comparison_id, annotator_id HAVING count(*) > 1) d""",
    "comparisons whose judgment_count differs from their judgments": """
        SELECT count(*) FROM batches_comparison c
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM judging_judgment GROUP BY 1) j
            ON j.comparison_id = c.id
        WHERE c.judgment_count <> coalesce(j.n, 0)""",
    "comparisons whose lease_count differs from their open assignments": """
        SELECT count(*) FROM batches_comparison c
        LEFT JOIN (SELECT comparison_id, count(*) AS n FROM judging_assignment
                   WHERE status = 'open' GROUP BY 1) a ON a.comparison_id = c.id
        WHERE c.lease_count <> coalesce(a.n, 0)""",
    "comparisons whose complete flag is wrong": """
        SELECT count(*) FROM batches_comparison c JOIN projects_project p ON p.id = c.project_id
        WHERE NOT c.is_gold AND c.complete <> (c.judgment_count >= p.overlap OR
              p.stop_margin > 0 AND abs(c.votes_a - c.votes_b) >= p.stop_margin)""",
    "members whose judgment_count differs from their judgments": """
        SELECT count(*) FROM projects_membership m
        LEFT JOIN (SELECT annotator_id, count(*) AS n FROM judging_judgment GROUP BY 1) j
            ON j.annotator_id = m.user_id
        WHERE m.judgment_count <> coalesce(j.n, 0)""",
    "annotators holding more than one open lease": """
        SELECT count(*) FROM (SELECT 1 FROM judging_assignment WHERE status = 'open'
        GROUP BY annotator_id, project_id HAVING count(*) > 1) d""",
}


def check_invariants(
    database: str, judged: int, unknown: int, seeded: int
) -> tuple[dict[str, int], list[str]]:
    """Prints each check; returns the counts and the violations."""
    counts: dict[str, int] = {}
    violations = []
    with psycopg.connect(database) as conn:
        for name, query in CHECKS.items():
            counts[name] = conn.execute(query).fetchone()[0]  # type: ignore[index]
            print(f"  {name}: {counts[name]}")
            if counts[name]:
                violations.append(f"{counts[name]} {name}")
        stored = conn.execute("SELECT count(*) FROM judging_judgment").fetchone()[0]  # type: ignore[index]
        new = stored - seeded
        print(f"  judgments stored during the run: {new:,} (clients saw {judged:,} accepted)")
        if not judged <= new <= judged + unknown:
            violations.append(f"{new} judgments stored, clients saw {judged} (+{unknown} unknown)")
        spread = conn.execute(
            "SELECT judgment_count, count(*) FROM batches_comparison GROUP BY 1 ORDER BY 1"
        ).fetchall()
        print("  comparisons by judgment_count: " + ", ".join(f"{k}: {v:,}" for k, v in spread))
    return counts, violations


# --- EXPLAIN of the pick -----------------------------------------------------------------------

_EXPLAIN_CODE = """
import json
import statistics
import time
from django.contrib.auth.models import User
from django.db import connection, transaction
from apps.judging.queue import policy as queue_policy
from apps.projects.models import Project

out = []
project = Project.objects.get(slug=SLUG)
for policy in POLICIES:
    # The comparisons carry the project's policy (Comparison.policy): save() updates them.
    if project.policy != policy:
        project.policy = policy
        project.save(update_fields=["policy"])
    for label, username in USERS:
        user = User.objects.get(username=username)
        args = [project.pk, user.pk, policy, project.overlap, 0, queue_policy.WINDOW]
        call = "SELECT o_probe FROM annotate_pick(%s, %s, %s, %s, %s, %s)"
        times, probes = [], set()
        for _ in range(25):  # each in a transaction rolled back: nothing stays locked or taken
            with transaction.atomic(), connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute(call, args)
                probes.add(cursor.fetchone()[0])
                times.append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + call, args)
            plan = [row[0] for row in cursor.fetchall()]
            transaction.set_rollback(True)
        out.append({"label": label, "user": username, "policy": policy,
                    "probes": sorted(probes), "median_ms": statistics.median(times[5:]),
                    "judged": user.judgments.count(), "plan": plan})
print(MARK + json.dumps(out))
"""


def explain_pick(env: dict[str, str], users: list[tuple[str, str]], policies: list[str]) -> None:
    mark = "BENCH-EXPLAIN "
    code = (
        f"SLUG = {SLUG!r}\nMARK = {mark!r}\nUSERS = {users!r}\nPOLICIES = {policies!r}\n"
        + _EXPLAIN_CODE
    )
    out = common.manage(["shell", "-c", code], env, timeout=600).stdout
    results = next(
        json.loads(line[len(mark) :]) for line in out.splitlines() if line.startswith(mark)
    )
    names = {1: "the policy's bounded head", 2: "the bounded breadth-first head", 0: "exact"}
    print("\nthe pick alone (annotate_pick, apps/judging/queue/sql_pick.py), from a client in one")
    print("process, 20 calls after 5 of warm-up, each rolled back:")
    for result in results:
        found = ", ".join(names.get(probe, "no probe") for probe in result["probes"])
        print(
            f"  {result['policy']}, {result['label']} ({result['user']}, "
            f"{result['judged']:,} judgments): median {result['median_ms']:.2f} ms; found by "
            f"{found}"
        )
        for line in result["plan"]:
            if "Time" in line:
                print(f"    EXPLAIN ANALYZE: {line.strip()}")


# --- one run -----------------------------------------------------------------------------------


MODE_ORDER = {"two": ["two"], "one": ["one"], "both": ["two", "one"]}


class Upkeep:
    """A Celery worker with its beat, as the app is deployed (docker-compose's worker and beat),
    on a queue of the bench's own: it runs the beat's jobs, `vacuum-queue` among them
    (apps/judging/queue/upkeep.py), which keeps the pick from slowing down as judging leaves dead
    rows behind."""

    def __init__(self, env: dict[str, str]) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="annotate_bench_upkeep_")
        self.env = {**env, "CELERY_QUEUE": f"bench-queue-{os.getpid()}"}
        self.log = Path(self.folder.name) / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 120) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    common.PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "annotate",
                    "worker",
                    "--beat",
                    "--concurrency=1",
                    "--loglevel=info",
                    f"--schedule={Path(self.folder.name) / 'beat-schedule'}",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=common.REPO,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        # Started and ready before anything is measured: its start-up (Django, Celery) costs
        # a core for a few seconds, which is not the steady state the run is about.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise common.BenchError(f"the worker exited:\n{self.log_tail()}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise common.BenchError(f"the worker was not ready within {wait:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid, *common.child_pids(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.folder.cleanup()


def vacuum_counts(database: str) -> dict[str, int]:
    """How many times each queue table was vacuumed (by hand or by a job) since the seed."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT relname, vacuum_count FROM pg_stat_user_tables "
            "WHERE relname IN ('batches_comparison', 'judging_assignment') ORDER BY relname"
        ).fetchall()
    return {name: int(count) for name, count in rows}


@dataclass
class Phase:
    """One measured phase of the queue: one mode, every annotator, one window."""

    mode: str
    results: list[Stats]
    window: float
    busy: float  # the machine's share busy, 0..1
    used: dict[str, float]  # CPU seconds per group
    elapsed: float

    def cores(self) -> dict[str, float]:
        return {k: v / self.elapsed for k, v in self.used.items()}

    def other(self) -> float:
        return self.busy * (os.cpu_count() or 1) - sum(self.cores().values())

    def cpu_line(self) -> str:
        cores = self.cores()
        return (
            f"cores busy out of {os.cpu_count()}: {self.busy * (os.cpu_count() or 1):.2f} = "
            f"gunicorn {cores['gunicorn']:.2f} + postgres {cores['postgres']:.2f} + client "
            f"{cores['client']:.2f} + upkeep {cores['upkeep']:.2f} + other {self.other():.2f}"
        )


@dataclass
class RunResult:
    n: int
    floor_p50: float
    next_p50: float
    next_p99: float
    heavy_next_p99: float
    errors: int
    over_assignments: int
    violations: list[str]
    seed_seconds: float
    rate: float
    # Per mode ("two", "one"): judgments/s, next p50 and p99 (for "one", submit-with-next's).
    modes: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def p(values: list[float], q: float) -> float:
    return common.percentile(sorted(values), q)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run_one(n: int, args: argparse.Namespace) -> RunResult:
    print(f"\n=== N = {n:,} comparisons, policy {args.policy}, overlap {OVERLAP} ===")
    heavy_n = 0
    if args.heavy:
        heavy_n = HEAVY_JUDGMENTS if n > HEAVY_JUDGMENTS else n // 2
        if heavy_n != HEAVY_JUDGMENTS:
            print(
                f"note: N <= {HEAVY_JUDGMENTS:,}, so the heavy annotator has {heavy_n:,} past "
                f"judgments (N/2) instead of {HEAVY_JUDGMENTS:,}"
            )
    server: common.Gunicorn | None = None
    with common.temporary_database(prefix=f"annotate_bench_queue{n}", keep=args.keep_db) as db:
        env = common.production_env(db)
        env["CACHE_KEY_PREFIX"] = f"benchq{os.getpid()}n{n}"  # no cache shared between runs
        migrate_s = common.migrate(env)
        # The filler, when asked for, is one more member who never takes part in the run.
        accounts = args.annotators + (1 if args.fill_others else 0)
        setup = common.setup_project(env, SLUG, overlap=OVERLAP, annotators=accounts)
        annotators = setup["annotators"][: args.annotators]
        heavy = annotators[-1] if args.heavy else None
        filler = setup["annotators"][-1] if args.fill_others else None
        with psycopg.connect(db) as conn:
            conn.execute(
                "UPDATE projects_project SET policy = %s WHERE id = %s",
                (args.policy, setup["project"]),
            )
            ids: dict[str, int] = dict(
                conn.execute(
                    "SELECT username, id FROM auth_user WHERE username LIKE 'bench-annotator-%'"
                ).fetchall()
            )
        print(
            f"setup: migrate {migrate_s:.1f} s; project {SLUG!r}, overlap {OVERLAP}, policy "
            f"{args.policy}; {len(annotators)} annotators"
            + (f" (one of them, {heavy['username']}, heavy)" if heavy else "")
            + (f"; filler {filler['username']} (not in the run)" if filler else "")
        )
        seeded = seed_queue(
            db,
            project_id=setup["project"],
            n=n,
            heavy_user=ids[heavy["username"]] if heavy else None,
            heavy_n=heavy_n,
            redraw_ranks=not args.heavy_at_head,
            filler_user=ids[filler["username"]] if filler else None,
            seed=args.seed,
        )
        rate = seeded.comparisons / seeded.seconds
        print(
            f"seeded {n:,} comparisons ({n:,} prompts, {2 * n:,} candidates of 300-800 chars, "
            f"1 batch) with COPY in {seeded.seconds:.1f} s: {rate:,.0f} comparisons/s"
        )
        print(
            "  in parallel, loaded after: "
            + ", ".join(f"{table} {s:.1f} s" for table, s in seeded.tables.items())
        )
        if seeded.past_judgments:
            filled = seeded.past_judgments - seeded.heavy_judgments
            parts = []
            if seeded.heavy_judgments:
                where = (
                    "kept at the head of the next level (--heavy-at-head)"
                    if args.heavy_at_head
                    else "made on the lowest ranks, each comparison then re-ranked as a vote does"
                )
                parts.append(f"the heavy annotator's {seeded.heavy_judgments:,}, {where}")
            if filled:
                parts.append(f"the filler's {filled:,} on every other comparison")
            print(
                f"seeded {seeded.past_judgments:,} past assignments + judgments in "
                f"{seeded.past_seconds:.1f} s: " + ", ".join(parts)
            )
        print(
            f"VACUUM (ANALYZE) {seeded.analyze_seconds:.1f} s, CHECKPOINT "
            f"{seeded.checkpoint_seconds:.1f} s; database {common.human_bytes(seeded.bytes)}"
        )
        sys.stdout.flush()
        if args.seed_only:
            nan = float("nan")
            return RunResult(n, nan, nan, nan, nan, 0, 0, [], seeded.seconds, rate)

        upkeep = Upkeep(env) if args.upkeep else None
        vacuums_before = vacuum_counts(db)
        try:
            server = common.Gunicorn(env, workers=args.workers, extra=["--no-control-socket"])
            server.start(wait=120)  # four workers importing Django on a busy 2-core machine
            print(
                f"server: {server.description} on 127.0.0.1:{server.port}, DEBUG=false, "
                "REDIS_URL set, PostgreSQL"
            )
            if upkeep is not None:
                upkeep.start()
                print(
                    "upkeep: a Celery worker with its beat (concurrency 1), as deployed; the "
                    f"beat's vacuum-queue every {os.environ.get('QUEUE_VACUUM_SECONDS', '15')} s"
                )
            else:
                print("upkeep: none (--no-upkeep): no worker, no beat, no vacuum-queue")
            tokens = [a["token"] for a in annotators]
            load_before = common.machine_busy_now(1.0)
            print(
                f"machine load before the run: {load_before:.2f} cores busy, loadavg "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )

            # The floor: the cheapest authenticated request, at the same concurrency.
            start = time.monotonic() + 0.1
            measure_from = start + 1.0
            until = measure_from + args.floor_seconds
            floor = merged(
                run_threads(floor_loop, [(server.port, t, measure_from, until) for t in tokens])
            )
            print(
                f"floor: {len(tokens)} threads GET /api/v1/me/ for {args.floor_seconds:.0f} s: "
                f"{len(floor.floor_s) / args.floor_seconds:,.0f} requests/s"
            )
            print("  " + common.latency_line("me", floor.floor_s))

            # The queue.
            meter = common.CpuMeter()

            def groups() -> dict[str, list[int]]:
                assert server is not None
                return {
                    "gunicorn": server.pids(),
                    "postgres": common.backend_pids(db),
                    "client": [os.getpid()],
                    "upkeep": upkeep.pids() if upkeep is not None else [],
                }

            phases = [mode for _ in range(args.rounds) for mode in MODE_ORDER[args.mode]]
            print(
                f"queue: {len(tokens)} annotators; "
                + ", then ".join(f"{mode}: {MODES[mode]}" for mode in MODE_ORDER[args.mode])
                + (f"; {args.rounds} rounds, alternating" if args.rounds > 1 else "")
                + f"; each phase {args.duration:.0f} s measured after {args.warmup:.0f} s "
                "warm-up, on the same server and database"
            )
            runs: list[Phase] = []
            for index, mode in enumerate(phases):
                sys.stdout.flush()
                start = time.monotonic() + 0.1
                measure_from = start + args.warmup
                until = measure_from + args.duration
                meter.begin(groups())
                port = server.port
                jobs = [
                    (port, t, measure_from, until, args.seed + 1000 * index + i)
                    for i, t in enumerate(tokens)
                ]
                loop = annotator_loop if mode == "two" else combined_loop
                results = run_threads(loop, jobs)
                busy, used = meter.end(groups())
                elapsed = time.monotonic() - start
                window = min(args.duration, max(1e-9, time.monotonic() - measure_from))
                phase = Phase(mode, results, window, busy, used, elapsed)
                runs.append(phase)
                everyone = merged(results)
                print(
                    f"  phase {index + 1}, {mode}: {everyone.judged_in_window / window:,.1f} "
                    f"judgments/s; next p50 {ms(p(everyone.next_s, 50))}, p99 "
                    f"{ms(p(everyone.next_s, 99))}; {phase.cpu_line()}"
                )
            server.stop()
        finally:
            if server is not None:
                server.stop()
            if upkeep is not None:
                upkeep.stop()
        vacuums = {
            table: count - vacuums_before.get(table, 0)
            for table, count in vacuum_counts(db).items()
        }
        print(
            "VACUUMs during the run: "
            + ", ".join(f"{table} {count}" for table, count in vacuums.items())
        )

        everyone = merged([stats for phase in runs for stats in phase.results])
        errors = everyone.errors + floor.errors
        print(f"\nresults (N = {n:,}, {len(tokens)} annotators, {args.policy})")
        modes: dict[str, tuple[float, float, float]] = {}
        for mode in MODE_ORDER[args.mode]:
            mine = [phase for phase in runs if phase.mode == mode]
            all_of = merged([stats for phase in mine for stats in phase.results])
            fresh = merged(
                [s for phase in mine for s in (phase.results[:-1] if heavy else phase.results)]
            )
            heavy_stats = merged([phase.results[-1] for phase in mine]) if heavy else Stats()
            window = sum(phase.window for phase in mine)
            per_s = all_of.judged_in_window / window
            what = "next" if mode == "two" else "sub+next"
            print(f"  {MODES[mode]}:")
            print("    " + common.latency_line(what, fresh.next_s) + "   (fresh annotators)")
            if heavy:
                print(
                    "    "
                    + common.latency_line(what, heavy_stats.next_s)
                    + f"   (heavy annotator, {heavy_n:,} past judgments)"
                )
            if mode == "two":
                print("    " + common.latency_line("submit", all_of.submit_s))
            print(
                f"    judgments/s: {per_s:,.1f} ({all_of.judged_in_window:,} in "
                f"{window:.1f} s of window; {all_of.judged_total:,} in all, warm-up included)"
            )
            if all_of.exhausted:
                print(f"    annotators who ran out of work: {all_of.exhausted}")
            modes[mode] = (per_s, p(fresh.next_s, 50), p(fresh.next_s, 99))
            if mode == "two" or "two" not in MODE_ORDER[args.mode]:
                main_fresh, main_heavy = fresh, heavy_stats
        if len(modes) == 2:
            gain = modes["one"][0] / modes["two"][0]
            print(f"  judgments/s, one request a judgment / two: {gain:.2f}x")
        print(f"  errors: {', '.join(f'{k}: {v}' for k, v in sorted(errors.items())) or 'none'}")
        if any(phase.other() > 0.25 for phase in runs):
            print("  WARNING: other processes used the CPU during the run; figures are noisy")

        print("\ninvariants (SQL, after the run)")
        counts, violations = check_invariants(
            db, everyone.judged_total, everyone.unknown, seeded.past_judgments
        )
        over = counts["over-assignments"]
        print("invariants: " + ("OK" if not violations else "VIOLATED: " + "; ".join(violations)))

        if args.explain:
            users = [("a fresh annotator", annotators[0]["username"])]
            if heavy:
                users.append(("the heavy annotator", heavy["username"]))
            policies = list(POLICIES) if args.explain_all else [args.policy]
            explain_pick(env, users, policies)

    result = RunResult(
        n=n,
        floor_p50=p(floor.floor_s, 50),
        next_p50=p(main_fresh.next_s, 50),
        next_p99=p(main_fresh.next_s, 99),
        heavy_next_p99=p(main_heavy.next_s, 99) if heavy else float("nan"),
        errors=sum(errors.values()),
        over_assignments=over,
        violations=violations,
        seed_seconds=seeded.seconds,
        rate=rate,
        modes=modes,
    )
    print_targets(result, args)
    return result


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_targets(r: RunResult, args: argparse.Namespace) -> None:
    print(f"\ntargets (N = {r.n:,})")
    ratio = r.next_p50 / r.floor_p50
    print(
        f"  next p50 / floor p50: {ms(r.next_p50)} / {ms(r.floor_p50)} = {ratio:.2f}x "
        f"(target <= {TARGET_NEXT_OVER_FLOOR:g}x): {verdict(ratio <= TARGET_NEXT_OVER_FLOOR)}"
    )
    print(
        f"  next p99 at N = {r.n:,}: {ms(r.next_p99)} (fresh annotators). Compare with the same "
        f"command at the other size (--n 10000 / --n 1000000) or run --both: "
        f"p99(1M) / p99(10k) <= {TARGET_LARGE_OVER_SMALL:g}x"
    )
    if args.heavy:
        ratio = r.heavy_next_p99 / r.next_p99
        print(
            f"  heavy next p99 / fresh next p99: {ms(r.heavy_next_p99)} / {ms(r.next_p99)} = "
            f"{ratio:.2f}x (target <= {TARGET_HEAVY_OVER_FRESH:g}x): "
            f"{verdict(ratio <= TARGET_HEAVY_OVER_FRESH)}"
        )
    else:
        print("  heavy next p99 / fresh next p99: not measured (add --heavy)")
    rate_target = TARGET_FACTOR * LABEL_STUDIO_RATE_100K
    p99_target = LABEL_STUDIO_NEXT_P99_100K / TARGET_FACTOR
    for mode, (rate, _, p99) in r.modes.items():
        what = "next" if mode == "two" else "submit-with-next"
        print(
            f"  {MODES[mode]}: {rate:,.1f} judgments/s = {rate / LABEL_STUDIO_RATE_100K:.1f}x "
            f"Label Studio's {LABEL_STUDIO_RATE_100K} at 100k (target >= {TARGET_FACTOR}x, "
            f"{rate_target:.0f}/s): {verdict(rate >= rate_target)}; {what} p99 {ms(p99)} = "
            f"1/{LABEL_STUDIO_NEXT_P99_100K / p99:.0f} of its {LABEL_STUDIO_NEXT_P99_100K:g} s "
            f"(target <= {ms(p99_target)}): {verdict(p99 <= p99_target)}"
        )
    print(f"  errors: {r.errors} (target 0): {verdict(r.errors == 0)}")
    print(
        f"  over-assignments: {r.over_assignments} (target 0): {verdict(r.over_assignments == 0)}"
    )
    projected = 1_000_000 / r.rate
    how = "measured" if r.n == 1_000_000 else f"projected from {r.rate:,.0f}/s at N = {r.n:,}"
    print(
        f"  seeding 1M comparisons: {projected:.1f} s, {how} (target < "
        f"{TARGET_SEED_1M_SECONDS:g} s): {verdict(projected < TARGET_SEED_1M_SECONDS)}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="comparisons (default 10,000)")
    parser.add_argument(
        "--both", action="store_true", help="run N=10,000 then N=1,000,000 and compare next p99"
    )
    parser.add_argument("--annotators", type=int, default=32, help="concurrent, heavy included")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    parser.add_argument(
        "--mode",
        choices=list(MODE_ORDER),
        default="both",
        help="two: next then submit; one: submit?next=1; both (default): two, then one, on "
        "the same server and database",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the modes, alternating (default 1)"
    )
    parser.add_argument("--floor-seconds", type=float, default=5, help="seconds of GET /me/")
    parser.add_argument("--workers", type=int, default=4, choices=(2, 3, 4), help="gunicorn sync")
    parser.add_argument("--policy", default="breadth_first", choices=POLICIES)
    parser.add_argument(
        "--no-upkeep",
        dest="upkeep",
        action="store_false",
        help="run no Celery worker and beat (so no vacuum-queue) beside the server",
    )
    parser.add_argument(
        "--heavy", action="store_true", help="one annotator already has 100,000 judgments"
    )
    parser.add_argument(
        "--heavy-at-head",
        action="store_true",
        help="keep the heavy annotator's comparisons on the lowest ranks after their votes "
        "(the app draws a new rank with every vote; this shows the layout that prevents)",
    )
    parser.add_argument(
        "--fill-others",
        action="store_true",
        help="give every comparison the heavy annotator did not judge one judgment by a filler "
        "annotator: all are then at level 1 and the heavy annotator's are the head of the "
        "breadth-first order (without it, they sit behind every level-0 comparison)",
    )
    parser.add_argument("--no-explain", dest="explain", action="store_false")
    parser.add_argument(
        "--explain-all", action="store_true", help="EXPLAIN the pick under every policy"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seed-only", action="store_true", help="seed, report, drop; no load")
    parser.add_argument("--timeout", type=float, default=3600, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.annotators < (2 if args.heavy else 1):
        parser.error("--annotators must leave at least one fresh annotator")
    return args


def main() -> int:
    args = parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sizes = [10_000, 1_000_000] if args.both else [args.n]
    try:
        results = [run_one(n, args) for n in sizes]
    except common.BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    if args.both:
        small, large = results
        ratio = large.next_p99 / small.next_p99
        print(
            f"\nnext p99 (fresh) at 1M / at 10k: {ms(large.next_p99)} / {ms(small.next_p99)} = "
            f"{ratio:.2f}x (target <= {TARGET_LARGE_OVER_SMALL:g}x): "
            f"{verdict(ratio <= TARGET_LARGE_OVER_SMALL)}"
        )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
