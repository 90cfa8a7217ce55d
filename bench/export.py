"""The export benchmark: 1M judgments seeded with COPY, streamed over HTTP, against COPY's floor.

    .venv/bin/python bench/export.py                       # 1,000,000 judgments (333,334 pairs)
    .venv/bin/python bench/export.py --judgments 30000     # a quick run
    .venv/bin/python bench/export.py --formats judgments --repeat 2

Creates a throwaway PostgreSQL database, migrates it, creates one graded project (overlap 3) with
`--annotators` members and a lead (DRF tokens), then seeds `--judgments` judgments straight into
the tables with COPY: a third as many comparisons (one prompt and two candidates each, a handful of
models), each judged by three distinct annotators, with their assignments. It serves the app with
gunicorn (one sync worker, DEBUG=false, REDIS_URL set), streams each export format through
`GET /api/v1/projects/<slug>/export/?format=...` as the lead, counts rows and bytes, samples the
worker's RSS from /proc, and times `COPY (SELECT ...) TO STDOUT` of the same judgment rows (the
same joins) on the same database: the floor.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports, and Python
# puts the script's folder first on sys.path: move the folder to the end, where `import common`
# still finds it (as bench/queue.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402
from common import BATCH_COLUMNS, CANDIDATE_COLUMNS, COMPARISON_COLUMNS, PROMPT_COLUMNS  # noqa: E402

SLUG = "bench-export"
OVERLAP = 3
MODELS = ("model-a-7b", "model-b-13b", "model-c-70b", "model-d-instruct", "model-e-chat")
CHOICES = ("left", "right", "tie", "both_bad")
CHOICE_WEIGHTS = (45, 45, 7, 3)
NULL = "\\N"  # COPY's text format
FLAGS = ('["unsafe"]', '["factual-error"]', '["unsure"]')

# Targets (the issue), on this machine.
TARGET_JUDGMENTS_OVER_COPY = 5.0
TARGET_TRL_SECONDS = 60.0
TARGET_RSS_GROWTH = 200 * 1024 * 1024
# The Docker image's gunicorn has no --timeout: sync workers are killed after 30 s without a
# heartbeat, and a sync worker sends none while it streams a response.
IMAGE_WORKER_TIMEOUT = 30.0

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
    "guideline_version",
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
    "strength",
    "criteria",
    "flags",
    "guideline_version",
    "rationale",
    "duration_ms",
    "idempotency_key",
    "gold_correct",
    "created_at",
]

# The floor: the judgments export's rows, with the same joins as `judgments_rows` (the prompt,
# the left, right, chosen and A candidates' external ids), the pseudonym from the membership,
# in the same order.
FLOOR_JUDGMENTS = """
COPY (
    SELECT j.comparison_id, p.external_id, m.pseudonym, l.external_id, r.external_id, j.choice,
           ch.external_id, j.rationale, j.duration_ms, j.created_at, ca.external_id, j.strength,
           j.criteria, j.flags, j.ranking, j.guideline_version
    FROM judging_judgment j
    JOIN batches_comparison c ON c.id = j.comparison_id
    JOIN batches_prompt p ON p.id = c.prompt_id
    JOIN batches_candidate l ON l.id = j.left_id
    JOIN batches_candidate r ON r.id = j.right_id
    LEFT JOIN batches_candidate ch ON ch.id = j.chosen_id
    JOIN batches_candidate ca ON ca.id = c.candidate_a_id
    LEFT JOIN projects_membership m ON m.project_id = c.project_id AND m.user_id = j.annotator_id
    WHERE c.project_id = {project} AND NOT c.is_gold
    ORDER BY j.id
) TO STDOUT
"""

# For reference beside trl: every judged pair with its prompt and both texts, and its votes.
FLOOR_TRL = """
COPY (
    SELECT c.id, p.external_id, p.content, a.external_id, a.text, a.model, b.external_id, b.text,
           b.model, c.batch_id,
           (SELECT array_agg(ARRAY[j.choice, j.chosen_id::text, j.strength::text, m.pseudonym]
                             ORDER BY j.id)
            FROM judging_judgment j
            LEFT JOIN projects_membership m
                   ON m.project_id = c.project_id AND m.user_id = j.annotator_id
            WHERE j.comparison_id = c.id)
    FROM batches_comparison c
    JOIN batches_prompt p ON p.id = c.prompt_id
    JOIN batches_candidate a ON a.id = c.candidate_a_id
    JOIN batches_candidate b ON b.id = c.candidate_b_id
    WHERE c.project_id = {project} AND c.judgment_count > 0 AND NOT c.is_gold
          AND c.candidate_ids IS NULL
    ORDER BY c.id
) TO STDOUT
"""


# --- seeding -------------------------------------------------------------------------------------


@dataclass
class Seeded:
    judgments: int
    comparisons: int
    seconds: float = 0.0
    tables: dict[str, float] = field(default_factory=dict)
    analyze_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    bytes: int = 0
    trl_rows: int = 0  # comparisons whose votes name a winning candidate
    choices: Counter[str] = field(default_factory=Counter)


def plan_votes(
    n_judgments: int, annotators: list[int], rng: random.Random
) -> tuple[list[int], bytearray, bytearray, bytearray]:
    """Who voted, what and how: per judgment k (0-based; comparison k // 3 + 1), its annotator,
    its choice (an index of CHOICES), whether candidate A was on the left, and its strength
    magnitude (1-3). Three distinct annotators per comparison."""
    voters: list[int] = []
    choices = bytearray(n_judgments)
    a_left = bytearray(n_judgments)
    grade = bytearray(n_judgments)
    comparisons = math.ceil(n_judgments / OVERLAP)
    for _ in range(comparisons):
        voters.extend(rng.sample(annotators, OVERLAP))
    del voters[n_judgments:]
    picks = rng.choices(range(len(CHOICES)), weights=CHOICE_WEIGHTS, k=n_judgments)
    choices[:] = bytes(picks)
    for k in range(n_judgments):
        a_left[k] = rng.random() < 0.5
        grade[k] = rng.choice((1, 1, 2, 2, 2, 3))
    return voters, choices, a_left, grade


def seed_export(
    database: str,
    *,
    project_id: int,
    annotators: list[int],
    n_judgments: int,
    seed: int,
) -> Seeded:
    """Seeds one done batch of ceil(n/3) comparisons, each with 3 judgments, with COPY.

    Ids are explicit (prompt i, candidates 2i-1 and 2i, comparison i, assignment and judgment k)
    and the identity sequences moved past them. Foreign keys are not checked row by row
    (session_replication_role = replica, as pg_restore does): the rows are consistent by
    construction.
    """
    rng = random.Random(seed)
    prompt_pool, text_pool = common.text_pools(seed)
    maker = common._TextMaker(random.Random(seed + 1))
    rationales = [common.copy_escape(maker.text(40, 300)) for _ in range(500)]
    n_comparisons = math.ceil(n_judgments / OVERLAP)
    voters, choices, a_left, grade = plan_votes(n_judgments, annotators, rng)
    seeded = Seeded(judgments=n_judgments, comparisons=n_comparisons)
    now = datetime.now(UTC)
    stamp = now.isoformat()
    chunk = 20_000
    n_models = len(MODELS)

    def when(k: int, offset: float = 0) -> str:  # one judgment every 0.1 s, the last a minute ago
        return (now - timedelta(seconds=(n_judgments - k) / 10 + 60 - offset)).isoformat()

    def sides(cid: int, k: int) -> tuple[int, int]:
        return (2 * cid - 1, 2 * cid) if a_left[k] else (2 * cid, 2 * cid - 1)

    def chosen_of(cid: int, k: int) -> int | None:
        choice = choices[k]
        left, right = sides(cid, k)
        return left if choice == 0 else right if choice == 1 else None

    def strength_of(cid: int, k: int) -> str:
        """Oriented to the candidates: above 0 when A is better; 0 a tie; null for both bad."""
        chosen = chosen_of(cid, k)
        if chosen is None:
            return "0" if choices[k] == 2 else "\\N"
        return str(grade[k] if chosen == 2 * cid - 1 else -grade[k])

    # The comparisons' tallies, and how many trl rows they make.
    tallies: list[tuple[int, int, int, int]] = []
    for cid in range(1, n_comparisons + 1):
        counts = [0, 0, 0, 0]  # a, b, tie, both_bad
        for k in range((cid - 1) * OVERLAP, min(n_judgments, cid * OVERLAP)):
            chosen = chosen_of(cid, k)
            if chosen is None:
                counts[choices[k]] += 1
            else:
                counts[0 if chosen == 2 * cid - 1 else 1] += 1
            seeded.choices[CHOICES[choices[k]]] += 1
        best = max(counts)
        if counts.count(best) == 1 and counts.index(best) in (0, 1):
            seeded.trl_rows += 1
        tallies.append((counts[0], counts[1], counts[2], counts[3]))

    def batch_rows() -> Iterator[list[str]]:
        yield [
            f"1\t{project_id}\tbench\tdone\t0\t\\N\t{n_comparisons}\t{n_comparisons}\t[]\t"
            f"{stamp}\t{stamp}\t\\N"
        ]

    def prompt_rows() -> Iterator[list[str]]:
        pool = len(prompt_pool)
        for start in range(1, n_comparisons + 1, chunk):
            yield [
                f"{i}\t{project_id}\t1\tp-{i:07d}\t{prompt_pool[(i * 7919) % pool]}\t{{}}"
                for i in range(start, min(n_comparisons + 1, start + chunk))
            ]

    def candidate_rows() -> Iterator[list[str]]:
        pool = len(text_pool)
        for start in range(1, n_comparisons + 1, chunk // 2):
            rows = []
            for i in range(start, min(n_comparisons + 1, start + chunk // 2)):
                # Two different models per pair, from a handful.
                first = (i * 7) % n_models
                second = (first + 1 + i % (n_models - 1)) % n_models
                for cid, name, model in ((2 * i - 1, "c1", first), (2 * i, "c2", second)):
                    params = f'{{"temperature": {0.1 * (cid % 11):.1f}, "max_tokens": 1024}}'
                    rows.append(
                        f"{cid}\t{i}\t{name}\t{text_pool[cid % pool]}\t{MODELS[model]}\t"
                        f"{params}\t{{}}"
                    )
            yield rows

    def comparison_rows() -> Iterator[list[str]]:
        for start in range(1, n_comparisons + 1, chunk):
            rows = []
            for i in range(start, min(n_comparisons + 1, start + chunk)):
                a, b, tie, bad = tallies[i - 1]
                votes = a + b + tie + bad
                split = abs(a - b) if votes else 1
                done = "t" if votes >= OVERLAP else "f"
                rows.append(
                    f"{i}\t{project_id}\t1\t{i}\t{2 * i - 1}\t{2 * i}\t{votes}\t0\t{done}\t"
                    f"{rng.getrandbits(31)}\t{a}\t{b}\t{tie}\t{bad}\t{split}\t0\tf\t"
                )
            yield rows

    def assignment_rows(low: int, high: int) -> Iterator[list[str]]:
        for start in range(low, high, chunk):
            rows = []
            for k in range(start, min(high, start + chunk)):
                cid = (k - 1) // OVERLAP + 1
                left, right = sides(cid, k - 1)
                rows.append(
                    f"{k}\t{project_id}\t{cid}\t{voters[k - 1]}\t{left}\t{right}\tsubmitted\t"
                    f"{when(k, -90)}\t{when(k, 510)}\t{when(k)}\t1"
                )
            yield rows

    def judgment_rows(low: int, high: int) -> Iterator[list[str]]:
        for start in range(low, high, chunk):
            rows = []
            for k in range(start, min(high, start + chunk)):
                j = k - 1
                cid = j // OVERLAP + 1
                left, right = sides(cid, j)
                chosen = chosen_of(cid, j)
                # A quarter explain themselves; a few flag something.
                rationale = rationales[(k * 31) % len(rationales)] if k % 4 == 0 else ""
                flags = FLAGS[k % len(FLAGS)] if k % 50 == 0 else "[]"
                rows.append(
                    f"{k}\t{cid}\t1\t{voters[j]}\t{k}\t{CHOICES[choices[j]]}\t{left}\t{right}\t"
                    f"{NULL if chosen is None else chosen}\t{strength_of(cid, j)}\t{{}}\t"
                    f"{flags}\t1\t{rationale}\t{2_000 + (k * 7919) % 88_000}\t"
                    f"k{k:08d}-{k * 2654435761 % 2**32:08x}\t\\N\t{when(k)}"
                )
            yield rows

    def connect() -> psycopg.Connection:
        return common.seed_connect(database)

    started = time.perf_counter()
    with connect() as conn:
        common.copy_rows(conn, "batches_batch", BATCH_COLUMNS, batch_rows())
    total = n_judgments + 1
    half = total // 2 + 1
    seeded.tables = common.parallel_copy(
        connect,
        [
            ("batches_prompt", PROMPT_COLUMNS, prompt_rows()),
            ("batches_candidate", CANDIDATE_COLUMNS, candidate_rows()),
            ("batches_comparison", COMPARISON_COLUMNS, comparison_rows()),
            ("judging_assignment", ASSIGNMENT_COLUMNS, assignment_rows(1, total)),
            ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(1, half)),
            ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(half, total)),
        ],
    )
    with connect() as conn:
        for user, count in Counter(voters).items():
            conn.execute(
                "UPDATE projects_membership SET judgment_count = %s "
                "WHERE project_id = %s AND user_id = %s",
                (count, project_id, user),
            )
        common.reset_sequences(conn)
    seeded.seconds = time.perf_counter() - started
    with psycopg.connect(database, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("ANALYZE")
        seeded.analyze_seconds = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("CHECKPOINT")  # flush the load's dirty pages before measuring
        seeded.checkpoint_seconds = time.perf_counter() - started
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        seeded.bytes = int(row[0]) if row else 0
    return seeded


# --- the server's memory --------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    """A field of /proc/<pid>/status in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise common.BenchError(f"/proc/{pid}/status has no {key}")


class RssSampler:
    """Samples one process's VmRSS every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline_kib = status_kib(pid, "VmRSS")
        self.hwm_before_kib = status_kib(pid, "VmHWM")
        self.peak_kib = self.baseline_kib
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, common.BenchError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_after_kib = status_kib(self.pid, "VmHWM")
        self.end_kib = status_kib(self.pid, "VmRSS")

    @property
    def growth_bytes(self) -> int:
        """The sampled peak minus the baseline."""
        return (self.peak_kib - self.baseline_kib) * 1024

    @property
    def hwm_growth_bytes(self) -> int:
        """VmHWM after minus VmRSS before: catches a peak between samples (an upper bound; 0
        when the worker's high-water mark predates the export)."""
        return max(0, self.hwm_after_kib - self.baseline_kib) * 1024


class BackendCpu:
    """CPU used by this database's PostgreSQL backends during a run, including the ones that
    connect (and perhaps go) meanwhile: listed every `interval` seconds from pg_stat_activity
    on a connection of its own, which it leaves out."""

    def __init__(self, database: str, interval: float = 0.5) -> None:
        self.conn = psycopg.connect(database, autocommit=True)
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._look(born=False)

    def _look(self, born: bool) -> None:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        for (pid,) in rows:
            seconds = common.process_cpu_seconds(int(pid))
            if seconds is None:
                continue
            # A backend seen first during the run was born during it: all its CPU counts.
            self.first.setdefault(int(pid), 0.0 if born else seconds)
            self.last[int(pid)] = seconds

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._look(born=True)

    def __enter__(self) -> "BackendCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._look(born=True)
        self.conn.close()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - first for pid, first in self.first.items())


# --- the client ----------------------------------------------------------------------------------


@dataclass
class Streamed:
    format: str
    status: int
    rows: int
    bytes: int
    seconds: float
    first_byte_seconds: float
    first_row: dict[str, Any]
    last_row: dict[str, Any]
    rss: RssSampler
    cpu_seconds: float = 0.0  # gunicorn's, the backends' and this client's


def stream(port: int, token: str, query: str, worker: int, label: str) -> Streamed:
    """GETs one export, reading it as it comes, counting lines and bytes; samples `worker`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Token {token}"}
    rows = size = 0
    head = b""
    tail = b""
    with RssSampler(worker) as rss:
        started = time.perf_counter()
        conn.request("GET", f"/api/v1/projects/{SLUG}/export/?{query}", headers=headers)
        response = conn.getresponse()
        first_byte = time.perf_counter() - started
        if response.status != 200:
            body = response.read()[:2000].decode(errors="replace")
            raise common.BenchError(f"{label}: {response.status} {body}")
        while True:
            data = response.read1(1 << 18)
            if not data:
                break
            size += len(data)
            rows += data.count(b"\n")
            if len(head) < 200_000:
                head += data
            tail = (tail + data)[-200_000:]
        seconds = time.perf_counter() - started
    conn.close()
    first = json.loads(head.split(b"\n", 1)[0]) if rows else {}
    last = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]) if rows else {}
    return Streamed(label, response.status, rows, size, seconds, first_byte, first, last, rss)


def warm_up(port: int, token: str) -> None:
    """One tiny request per format (nothing since 2999), so that imports and the URLconf are
    loaded in the worker before its baseline is read."""
    for fmt in ("trl", "judgments"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request(
            "GET",
            f"/api/v1/projects/{SLUG}/export/?format={fmt}&since=2999-01-01T00:00:00Z",
            headers={"Authorization": f"Token {token}"},
        )
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            raise common.BenchError(f"warm-up {fmt}: {response.status} {body[:500]!r}")


@dataclass
class Floor:
    seconds: float
    rows: int
    bytes: int
    cpu_seconds: float  # the backend's and this client's


def copy_floor(database: str, statement: str) -> Floor:
    """Times one COPY ... TO STDOUT, read to the end; its CPU is the backends' (parallel workers
    included) and this client's."""
    with psycopg.connect(database) as conn, conn.cursor() as cursor:
        conn.execute("SELECT 1")
        client_before = time.process_time()
        with BackendCpu(database) as backends:
            started = time.perf_counter()
            rows = size = 0
            with cursor.copy(statement) as copy:
                for data in copy:
                    size += len(data)
                    rows += bytes(data).count(b"\n")
            seconds = time.perf_counter() - started
        cpu = backends.seconds + time.process_time() - client_before
        return Floor(seconds, rows, size, cpu)


# --- the run -------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:,.1f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_stream(result: Streamed, expected: int) -> None:
    rate = result.rows / result.seconds if result.seconds else float("nan")
    check = "" if result.rows == expected else f"  MISMATCH: expected {expected:,} rows"
    print(
        f"  {result.format:<10} {result.rows:>10,} rows {mib(result.bytes):>12} in "
        f"{result.seconds:7.2f} s: {rate:>9,.0f} rows/s, {mib(result.bytes / result.seconds)}/s; "
        f"first byte {result.first_byte_seconds * 1000:,.0f} ms{check}"
    )
    rss = result.rss
    print(
        f"  {'':<10} worker RSS {rss.baseline_kib / 1024:,.1f} MiB before, peak "
        f"{rss.peak_kib / 1024:,.1f} MiB ({rss.samples:,} samples), growth "
        f"{mib(rss.growth_bytes)}; VmHWM {rss.hwm_before_kib / 1024:,.1f} -> "
        f"{rss.hwm_after_kib / 1024:,.1f} MiB (growth over the baseline "
        f"{mib(rss.hwm_growth_bytes)}); after {rss.end_kib / 1024:,.1f} MiB"
    )
    if result.seconds > IMAGE_WORKER_TIMEOUT:
        print(
            f"  {'':<10} note: over {IMAGE_WORKER_TIMEOUT:.0f} s, gunicorn's default --timeout "
            "for a sync worker, which would be killed mid-stream there (the Docker image runs "
            "threaded workers, which keep their heartbeat)"
        )


def run(args: argparse.Namespace) -> int:
    n = args.judgments
    server: common.Gunicorn | None = None
    failures = 0
    with common.temporary_database(prefix="annotate_bench_export", keep=args.keep_db) as db:
        env = common.production_env(db)
        env["CACHE_KEY_PREFIX"] = f"benchx{os.getpid()}"
        migrate_s = common.migrate(env)
        setup = common.setup_project(env, SLUG, overlap=OVERLAP, annotators=args.annotators + 1)
        accounts = setup["annotators"]
        lead = accounts[-1]
        with psycopg.connect(db) as conn:
            ids = dict(
                conn.execute(
                    "SELECT username, id FROM auth_user WHERE username LIKE 'bench-annotator-%'"
                ).fetchall()
            )
            conn.execute(
                "UPDATE projects_project SET scheme = 'graded' WHERE id = %s", (setup["project"],)
            )
            conn.execute(
                "UPDATE projects_membership SET role = 'lead' "
                "WHERE project_id = %s AND user_id = %s",
                (setup["project"], ids[lead["username"]]),
            )
        annotator_ids = [ids[a["username"]] for a in accounts[:-1]]
        print(
            f"setup: migrate {migrate_s:.1f} s; project {SLUG!r} (graded, overlap {OVERLAP}), "
            f"{len(annotator_ids)} annotators with pseudonyms, lead {lead['username']} (a token)"
        )
        seeded = seed_export(
            db,
            project_id=setup["project"],
            annotators=annotator_ids,
            n_judgments=n,
            seed=args.seed,
        )
        print(
            f"seeded {n:,} judgments ({seeded.comparisons:,} comparisons, prompts; "
            f"{2 * seeded.comparisons:,} candidates of 300-800 chars; {n:,} assignments) with "
            f"COPY in {seeded.seconds:.1f} s: {n / seeded.seconds:,.0f} judgments/s"
        )
        print(
            "  in parallel, loaded after: "
            + ", ".join(f"{table} {s:.1f} s" for table, s in seeded.tables.items())
        )
        print(
            "  choices: "
            + ", ".join(f"{c} {seeded.choices[c]:,}" for c in CHOICES)
            + f"; {seeded.trl_rows:,} comparisons with a winning candidate (trl rows)"
        )
        print(
            f"  ANALYZE {seeded.analyze_seconds:.1f} s, CHECKPOINT "
            f"{seeded.checkpoint_seconds:.1f} s; database {common.human_bytes(seeded.bytes)}"
        )
        sys.stdout.flush()
        if args.seed_only:
            return 0

        project = int(setup["project"])
        floors = [
            copy_floor(db, FLOOR_JUDGMENTS.format(project=project)) for _ in range(args.repeat + 1)
        ]
        floor = min(floors, key=lambda f: f.seconds)
        print(
            f"\nfloor: COPY (SELECT <the judgments export's columns, same joins>) TO STDOUT, "
            f"{len(floors)} runs: "
            + ", ".join(f"{f.seconds:.2f} s" for f in floors)
            + f"; {floor.rows:,} rows, {mib(floor.bytes)}: "
            f"{floor.rows / floor.seconds:,.0f} rows/s; cpu seconds (backends + client) "
            f"{floor.cpu_seconds:.1f}"
        )
        trl_floor = copy_floor(db, FLOOR_TRL.format(project=project))
        print(
            f"for reference: COPY of every judged pair with its texts and votes (what trl reads): "
            f"{trl_floor.seconds:.2f} s, {trl_floor.rows:,} rows, {mib(trl_floor.bytes)}"
        )

        results: dict[str, list[Streamed]] = {}
        try:
            server = common.Gunicorn(
                env,
                workers=1,
                extra=["--no-control-socket", "--timeout", str(args.server_timeout)],
            )
            server.start()
            workers = common.child_pids(server.proc.pid) if server.proc else []
            if len(workers) != 1:
                raise common.BenchError(f"expected one gunicorn worker, found {workers}")
            print(
                f"\nserver: {server.description} --timeout {args.server_timeout:.0f} on "
                f"127.0.0.1:{server.port}, DEBUG=false, REDIS_URL set, PostgreSQL; worker pid "
                f"{workers[0]}"
            )
            load_before = common.machine_busy_now(1.0)
            print(
                f"machine load before the exports: {load_before:.2f} cores busy, loadavg "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )
            warm_up(server.port, lead["token"])
            # arena: one row per vote, as judgments (no gold, no rankings here).
            expected = {"judgments": n, "trl": seeded.trl_rows, "arena": n}
            print("exports, streamed over HTTP as the lead:")
            for _ in range(args.repeat):
                for fmt in args.formats:
                    meter = common.CpuMeter()
                    groups = {"gunicorn": workers, "client": [os.getpid()]}
                    meter.begin(groups)
                    with BackendCpu(db) as backends:
                        result = stream(
                            server.port, lead["token"], f"format={fmt}", workers[0], fmt
                        )
                    busy, used = meter.end(groups)
                    used["postgres"] = backends.seconds
                    result.cpu_seconds = used["gunicorn"] + used["postgres"] + used["client"]
                    results.setdefault(fmt, []).append(result)
                    print_stream(result, expected[fmt])
                    other = busy * (os.cpu_count() or 1) * result.seconds - sum(used.values())
                    print(
                        f"  {'':<10} cpu seconds: gunicorn {used['gunicorn']:.1f}, postgres "
                        f"{used['postgres']:.1f}, client {used['client']:.1f}, other "
                        f"{max(0.0, other):.1f}"
                    )
                    if result.rows != expected[fmt]:
                        failures += 1
                    sys.stdout.flush()
            if "judgments" in results:
                first = results["judgments"][0].first_row
                print(f"  first judgments row: {json.dumps(first, ensure_ascii=False)[:300]}...")
        finally:
            if server is not None:
                server.stop()

    print(f"\ntargets (N = {n:,} judgments)")
    if "judgments" in results:
        best = min(r.seconds for r in results["judgments"])
        ratio = best / floor.seconds
        print(
            f"  judgments export / COPY: {best:.2f} s / {floor.seconds:.2f} s = {ratio:.2f}x "
            f"(target <= {TARGET_JUDGMENTS_OVER_COPY:g}x): "
            f"{verdict(ratio <= TARGET_JUDGMENTS_OVER_COPY)}"
        )
        cpu = min(r.cpu_seconds for r in results["judgments"])
        print(
            f"    in CPU seconds (server, backends, client), which other load on the machine "
            f"moves less: {cpu:.1f} / {floor.cpu_seconds:.1f} = {cpu / floor.cpu_seconds:.2f}x"
        )
    if "trl" in results:
        best = min(r.seconds for r in results["trl"])
        scale = "" if n == 1_000_000 else f" (at {n:,} judgments; the target is for 1M)"
        print(
            f"  trl export: {best:.2f} s (target < {TARGET_TRL_SECONDS:g} s){scale}: "
            f"{verdict(best < TARGET_TRL_SECONDS)}"
        )
    growth = max(
        max(r.rss.growth_bytes, r.rss.hwm_growth_bytes) for rs in results.values() for r in rs
    )
    print(
        f"  worker RSS growth, the largest of any export (sampled or VmHWM): {mib(growth)} "
        f"(target < {mib(TARGET_RSS_GROWTH)}): {verdict(growth < TARGET_RSS_GROWTH)}"
    )
    return 1 if failures else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--judgments", "--n", type=int, default=1_000_000, help="judgments (default 1,000,000)"
    )
    parser.add_argument(
        "--annotators", type=int, default=12, help="annotators voting (default 12), >= 3"
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        default=["judgments", "trl"],
        choices=("judgments", "trl", "arena"),
        help="the exports to stream, in order",
    )
    parser.add_argument("--repeat", type=int, default=1, help="stream each export this often")
    parser.add_argument(
        "--server-timeout",
        type=float,
        default=600,
        help="gunicorn --timeout (default 600; gunicorn's own default, 30, kills a sync worker "
        "that streams for longer)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seed-only", action="store_true", help="seed, report, drop")
    parser.add_argument("--timeout", type=float, default=1800, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.annotators < OVERLAP:
        parser.error(f"--annotators must be at least {OVERLAP}")
    if args.judgments < 1:
        parser.error("--judgments must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    try:
        return run(args)
    except common.BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
