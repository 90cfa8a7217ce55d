"""The dashboard benchmark: its figures' aggregation and its render time at 10k and 1M judgments.

    .venv/bin/python bench/dashboard.py                      # 10,000 then 1,000,000 judgments
    .venv/bin/python bench/dashboard.py --sizes 10000        # one size
    .venv/bin/python bench/dashboard.py --requests 100

Creates a throwaway PostgreSQL database, migrates it, creates 30 annotators and a lead with a
logged-in session, then for each size seeds one project with that many judgments straight into
the tables with COPY: overlap 3 (each comparison judged by three different annotators), three
candidates per prompt from five models of different strengths, two batches, judgments spread
over the last 30 days with times per judgment drawn around 25 s; one annotator always picks the
left response and one answers in about a second. It then runs the aggregation the beat job runs
(`figures_refresh`, in a `manage.py shell`, against Redis) and times it, serves the app with
gunicorn (DEBUG=false, REDIS_URL set) and times `--requests` GETs of the dashboard page and of
its HTMX fragment as the lead, over one keep-alive connection, checking each answer, and of the
cheapest authenticated request (`GET /api/v1/me/`, the floor) for comparison. Last, it times
`--cold-requests` GETs of the page on a cold cache (its figures deleted from Redis before each):
above DASHBOARD_INLINE_MAX_JUDGMENTS the page asks the worker (none runs here: the tasks go to a
queue of the bench's own, deleted at the end) and says the figures are being computed; at or
below it, the request computes them.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports: keep this
# folder last on sys.path (see bench/queue.py), where `import common` still finds it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402

_queue_spec = importlib.util.spec_from_file_location(
    "bench_queue", Path(__file__).resolve().parent / "queue.py"
)
assert _queue_spec is not None and _queue_spec.loader is not None
bench_queue = importlib.util.module_from_spec(_queue_spec)
_queue_spec.loader.exec_module(bench_queue)

ANNOTATORS = 30
OVERLAP = 3
DAYS = 30
# Model strengths (Bradley-Terry log-odds): who tends to win.
MODELS = {
    "model-a-7b": -1.2,
    "model-b-13b": -0.4,
    "model-c-70b": 1.4,
    "model-d-instruct": 0.6,
    "model-e-chat": -0.2,
}
TARGET_RENDER_MS = 300.0
# The app's default DASHBOARD_INLINE_MAX_JUDGMENTS (annotate/settings.py).
INLINE_MAX_JUDGMENTS = int(os.environ.get("DASHBOARD_INLINE_MAX_JUDGMENTS", "20000"))
COMPUTING = "Computing this project's figures (about"

JUDGMENT_COLUMNS = [
    *bench_queue.JUDGMENT_COLUMNS,
    "criteria",
    "flags",
    "strength",
    "ranking",
    "guideline_version",
]

_SETUP_LEAD = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from apps.projects.services import membership_add, project_create

spec = json.loads(SPEC)
lead = User.objects.create_user("bench-lead", password=None)
projects = {}
annotators = list(User.objects.filter(username__startswith="bench-annotator-").order_by("id"))
for slug in spec["slugs"]:
    project = project_create(slug=slug, name=f"Bench dashboard {slug}", overlap=3)
    membership_add(project=project, user=lead, role="lead")
    for user in annotators:
        membership_add(project=project, user=user, role="annotator")
    projects[slug] = project.pk
session = SessionStore()
session[SESSION_KEY] = str(lead.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = lead.get_session_auth_hash()
session.create()
print(MARK + json.dumps({
    "session": session.session_key,
    "projects": projects,
    "annotators": [u.pk for u in annotators],
}))
"""

_WARM = """
import json, time
from apps.dashboard.services import figures_refresh
from apps.projects.models import Project

project = Project.objects.get(slug=SLUG)
started = time.perf_counter()
figures = figures_refresh(project)
seconds = time.perf_counter() - started
print(MARK + json.dumps({
    "seconds": seconds,
    "inner_seconds": figures["compute_seconds"],
    "judgments": figures["totals"]["judgments"],
    "comparisons": figures["totals"]["comparisons"],
    "annotators": len(figures["annotators"]),
    "flagged": [[a["username"], [f["flag"] for f in a["flags"]]] for a in figures["annotators"]
                if a["flags"]],
    "alpha": figures["agreement"]["alpha"],
    "without_ties": figures["agreement"]["without_ties"],
    "leaderboard": [[m["model"], m["score"]] for m in figures["models"]["leaderboard"]],
}))
"""

MARK = "BENCH-JSON "


def shell(code: str, env: dict[str, str], timeout: float = 1800, **names: Any) -> dict[str, Any]:
    prelude = "".join(
        f"{key} = json.loads({json.dumps(json.dumps(value))})\n" for key, value in names.items()
    )
    script = f"import json\nMARK = {MARK!r}\n{prelude}{code}"
    out = common.manage(["shell", "-c", script], env, timeout=timeout).stdout
    for line in out.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK) :]))
    raise common.BenchError(f"the shell printed no result:\n{out[-2000:]}")


def seed(
    database: str,
    *,
    project_id: int,
    judgments: int,
    annotators: list[int],
    offset: int,
    seed_value: int,
) -> dict[str, float]:
    """Seeds `judgments` judgments (and their comparisons, prompts, candidates, assignments).

    Ids start after `offset` in every table, so that several projects share the database.
    """
    rng = random.Random(seed_value)
    comparisons = math.ceil(judgments / OVERLAP)
    prompts = math.ceil(comparisons / 3)
    names = list(MODELS)
    now = datetime.now(UTC)
    batch_ids = (offset + 1, offset + 2)
    always_left, fast = annotators[0], annotators[1]
    chunk = 20_000

    def batch_rows() -> Iterator[list[str]]:
        stamp = now.isoformat()
        yield [
            f"{batch_id}\t{project_id}\tbench {k + 1}\tactive\t0\t\\N\t0\t0\t[]\t{stamp}"
            f"\t{stamp}\t\\N"
            for k, batch_id in enumerate(batch_ids)
        ]

    def batch_of(prompt: int) -> int:
        return batch_ids[0] if prompt <= prompts // 2 else batch_ids[1]

    def prompt_rows() -> Iterator[list[str]]:
        for start in range(1, prompts + 1, chunk):
            yield [
                f"{offset + i}\t{project_id}\t{batch_of(i)}\tp-{i:07d}\t"
                f'"Question {i}: which answer is better?"\t{{}}'
                for i in range(start, min(prompts + 1, start + chunk))
            ]

    def models_of(prompt: int) -> list[str]:
        first = prompt % len(names)
        return [names[first], names[(first + 1) % len(names)], names[(first + 3) % len(names)]]

    def candidate_rows() -> Iterator[list[str]]:
        for start in range(1, prompts + 1, chunk // 3):
            rows = []
            for i in range(start, min(prompts + 1, start + chunk // 3)):
                for k, model in enumerate(models_of(i)):
                    cid = offset + 3 * (i - 1) + k + 1
                    rows.append(
                        f"{cid}\t{offset + i}\tc{k + 1}\tAnswer {k + 1} to prompt {i}\t{model}"
                        "\t{}\t{}"
                    )
            yield rows

    pairs = ((0, 1), (0, 2), (1, 2))
    # comparison c (1-based): prompt (c-1)//3 + 1, pair (c-1) % 3.
    votes: list[tuple[int, int, str, bool, int, datetime]] = []  # per judgment, in order
    tallies: list[tuple[int, int, int, int]] = []
    made = 0
    for c in range(1, comparisons + 1):
        prompt = (c - 1) // 3 + 1
        first, second = pairs[(c - 1) % 3]
        model_a, model_b = models_of(prompt)[first], models_of(prompt)[second]
        p_a = 1 / (1 + math.exp(MODELS[model_b] - MODELS[model_a]))
        tally = [0, 0, 0, 0]
        for user in rng.sample(annotators, OVERLAP):
            if made == judgments:
                break
            made += 1
            a_left = rng.random() < 0.5
            draw = rng.random()
            if user == always_left:
                option = "a" if a_left else "b"
            elif draw < 0.07:
                option = "tie"
            elif draw < 0.10:
                option = "both_bad"
            else:
                option = "a" if rng.random() < p_a else "b"
            tally[["a", "b", "tie", "both_bad"].index(option)] += 1
            ms = 900 + rng.randrange(600) if user == fast else int(rng.lognormvariate(10.1, 0.6))
            when = now - timedelta(seconds=rng.random() * DAYS * 86_400)
            votes.append((c, user, option, a_left, ms, when))
        tallies.append(tuple(tally))  # type: ignore[arg-type]

    def candidate_ids(c: int) -> tuple[int, int]:
        prompt = (c - 1) // 3 + 1
        first, second = pairs[(c - 1) % 3]
        base = offset + 3 * (prompt - 1)
        return base + first + 1, base + second + 1

    def comparison_rows() -> Iterator[list[str]]:
        for start in range(1, comparisons + 1, chunk):
            rows = []
            for c in range(start, min(comparisons + 1, start + chunk)):
                a, b = candidate_ids(c)
                va, vb, vt, vbb = tallies[c - 1]
                total = va + vb + vt + vbb
                done = "t" if total >= OVERLAP else "f"
                prompt = (c - 1) // 3 + 1
                rows.append(
                    f"{offset + c}\t{project_id}\t{batch_of(prompt)}\t{offset + prompt}\t{a}\t{b}"
                    f"\t{total}\t0\t{done}\t{rng.getrandbits(31)}\t{va}\t{vb}\t{vt}\t{vbb}"
                    f"\t{abs(va - vb)}\t0\tf\t"
                )
            yield rows

    def assignment_rows() -> Iterator[list[str]]:
        for start in range(0, len(votes), chunk):
            rows = []
            for k in range(start, min(len(votes), start + chunk)):
                c, user, _, a_left, ms, when = votes[k]
                a, b = candidate_ids(c)
                left, right = (a, b) if a_left else (b, a)
                opened = when - timedelta(milliseconds=ms)
                rows.append(
                    f"{offset + k + 1}\t{project_id}\t{offset + c}\t{user}\t{left}\t{right}"
                    f"\tsubmitted\t{opened.isoformat()}"
                    f"\t{(opened + timedelta(minutes=10)).isoformat()}"
                    f"\t{when.isoformat()}"
                )
            yield rows

    def judgment_rows(low: int, high: int) -> Iterator[list[str]]:
        for start in range(low, high, chunk):
            rows = []
            for k in range(start, min(high, start + chunk)):
                c, user, option, a_left, ms, when = votes[k]
                a, b = candidate_ids(c)
                left, right = (a, b) if a_left else (b, a)
                if option in ("a", "b"):
                    chosen = a if option == "a" else b
                    choice = "left" if chosen == left else "right"
                    chosen_field = str(chosen)
                else:
                    choice, chosen_field = option, "\\N"
                prompt = (c - 1) // 3 + 1
                rows.append(
                    f"{offset + k + 1}\t{offset + c}\t{batch_of(prompt)}\t{user}\t{offset + k + 1}"
                    f"\t{choice}\t{left}\t{right}\t{chosen_field}\t\t{ms}\t\t\\N\t{when.isoformat()}"
                    "\t{}\t[]\t\\N\t\\N\t1"
                )
            yield rows

    def connect() -> psycopg.Connection:
        return common.seed_connect(database)

    took: dict[str, float] = {}
    started = time.perf_counter()
    with connect() as conn:
        common.copy_rows(conn, "batches_batch", common.BATCH_COLUMNS, batch_rows())
    half = len(votes) // 2
    common.parallel_copy(
        connect,
        [
            ("batches_prompt", common.PROMPT_COLUMNS, prompt_rows()),
            ("batches_candidate", common.CANDIDATE_COLUMNS, candidate_rows()),
            ("batches_comparison", common.COMPARISON_COLUMNS, comparison_rows()),
            ("judging_assignment", bench_queue.ASSIGNMENT_COLUMNS, assignment_rows()),
            ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(0, half)),
            ("judging_judgment", JUDGMENT_COLUMNS, judgment_rows(half, len(votes))),
        ],
    )
    with connect() as conn:
        for batch_id in batch_ids:
            conn.execute(
                "UPDATE batches_batch SET comparison_count = (SELECT count(*) FROM "
                "batches_comparison WHERE batch_id = %s), prompt_count = (SELECT count(*) FROM "
                "batches_prompt WHERE batch_id = %s) WHERE id = %s",
                (batch_id, batch_id, batch_id),
            )
        conn.execute(
            "UPDATE projects_membership m SET judgment_count = j.n FROM (SELECT annotator_id, "
            "count(*) n FROM judging_judgment WHERE batch_id = ANY(%s) GROUP BY annotator_id) j "
            "WHERE m.project_id = %s AND m.user_id = j.annotator_id",
            (list(batch_ids), project_id),
        )
        common.reset_sequences(conn)
    took["seed"] = time.perf_counter() - started
    with psycopg.connect(database, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("ANALYZE")
        conn.execute("CHECKPOINT")
        took["analyze"] = time.perf_counter() - started
    took["comparisons"] = comparisons
    return took


def measure(
    port: int,
    path: str,
    session: str,
    requests: int,
    expect: str,
    before: Callable[[], None] | None = None,
) -> list[float]:
    """Times GETs of `path` (after 3 warm-up ones); `before` runs before each, untimed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Cookie": f"sessionid={session}", "Accept": "text/html, application/json"}
    if path.endswith("/figures/"):
        headers["HX-Request"] = "true"
    seconds = []
    try:
        for i in range(requests + 3):
            if before is not None:
                before()
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read().decode()
            took = time.perf_counter() - started
            if response.status != 200:
                raise common.BenchError(f"GET {path}: {response.status}\n{body[:2000]}")
            if expect not in body:
                raise common.BenchError(f"GET {path}: {expect!r} is not on the page")
            if i >= 3:  # three warm-up requests: each gunicorn worker's first is slower
                seconds.append(took)
    finally:
        conn.close()
    return seconds


def cold_cache(env: dict[str, str], project_id: int) -> Callable[[], None]:
    """Deletes the project's cached figures (and the note that the worker was asked), as a Redis
    flush would: the keys apps/dashboard/services.py writes, under the bench's cache prefix."""
    client = redis.Redis.from_url(common.REDIS_URL)
    prefix = f"{env['CACHE_KEY_PREFIX']}:1:dashboard:v1"
    keys = [f"{prefix}:figures:{project_id}", f"{prefix}:asked:{project_id}"]

    def flush() -> None:
        # Each page before leaves one of them (the figures, or the note that it asked).
        if client.delete(*keys) == 0:
            raise common.BenchError(f"none of {keys} in Redis: has the cache key changed?")

    return flush


def forget_queue(queue: str) -> None:
    """Deletes the throwaway queue (and the tasks the cold pages sent to it) from Redis."""
    client = redis.Redis.from_url(common.REDIS_URL)
    try:
        keys: list[str | bytes] = [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
        keys.extend(client.scan_iter(match=f"{queue}*"))
        client.delete(*keys)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--cold-requests", type=int, default=10, help="pages timed on a cold cache, per size"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warm-runs", type=int, default=2, help="aggregations timed per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    slugs = {size: f"dash-{size}" for size in args.sizes}
    results = []
    with (
        common.temporary_database(keep=args.keep_db) as database,
        tempfile.TemporaryDirectory(prefix="annotate_bench_static_") as static,
    ):
        env = common.production_env(database)
        env["STATIC_ROOT"] = static
        env["DASHBOARD_REFRESH_SECONDS"] = "60"
        # No worker consumes this queue: the cold pages' tasks wait there until deleted.
        env["CELERY_QUEUE"] = f"annotate-bench-dashboard-{os.getpid()}"
        common.migrate(env)
        common.collectstatic(env)
        common.setup_project(env, "bench-setup", annotators=ANNOTATORS)
        setup = shell(_SETUP_LEAD, env, SPEC=json.dumps({"slugs": list(slugs.values())}))
        session = setup["session"]
        offset = 0
        server = common.Gunicorn(env, workers=args.workers)
        server.start()
        try:
            for size in args.sizes:
                slug = slugs[size]
                print(f"\n{size:,} judgments (project {slug})")
                took = seed(
                    database,
                    project_id=setup["projects"][slug],
                    judgments=size,
                    annotators=setup["annotators"],
                    offset=offset,
                    seed_value=args.seed,
                )
                offset += 10 * size
                print(
                    f"  seeded   {size:,} judgments, {took['comparisons']:,} comparisons in "
                    f"{took['seed']:.1f} s (COPY), ANALYZE + CHECKPOINT {took['analyze']:.1f} s"
                )
                warm = []
                for _ in range(args.warm_runs):
                    report = shell(_WARM, env, SLUG=slug)
                    warm.append(report)
                    print(
                        f"  aggregation (the beat job's figures_refresh): "
                        f"{report['inner_seconds']:.2f} s computing, {report['seconds']:.2f} s "
                        "with the cache write"
                    )
                report = warm[-1]
                if report["judgments"] != size:
                    raise common.BenchError(f"the figures count {report['judgments']} judgments")
                print(
                    f"  figures: {report['judgments']:,} judgments, {report['annotators']} "
                    f"annotators, alpha {report['alpha']}, agreement without ties "
                    f"{report['without_ties']}, flagged {report['flagged']}"
                )
                print(f"  leaderboard: {report['leaderboard']}")
                expect = f'data-testid="total-judgments">{size}<'
                page = measure(server.port, f"/lead/p/{slug}/", session, args.requests, expect)
                fragment = measure(
                    server.port, f"/lead/p/{slug}/figures/", session, args.requests, expect
                )
                floor = measure(server.port, "/api/v1/me/", session, args.requests, "username")
                print("  " + common.latency_line("page", page))
                print("  " + common.latency_line("poll", fragment))
                print("  " + common.latency_line("floor", floor) + "  (GET /api/v1/me/)")
                inline = size <= INLINE_MAX_JUDGMENTS
                cold = measure(
                    server.port,
                    f"/lead/p/{slug}/",
                    session,
                    args.cold_requests,
                    expect if inline else COMPUTING,
                    before=cold_cache(env, setup["projects"][slug]),
                )
                how = "computed in the request" if inline else "asks the worker, says so"
                print("  " + common.latency_line("cold page", cold) + f"  ({how})")
                results.append((size, report, page, fragment, cold))
        finally:
            server.stop()
            forget_queue(env["CELERY_QUEUE"])
    print("\nsummary (render from the cache; the target is under 300 ms at 1M judgments)")
    for size, report, page, _, cold in results:
        p50 = common.percentile(sorted(page), 50) * 1000
        p95 = common.percentile(sorted(page), 95) * 1000
        verdict = "under" if p95 < TARGET_RENDER_MS else "OVER"
        cold_p50 = common.percentile(sorted(cold), 50) * 1000
        cold_p95 = common.percentile(sorted(cold), 95) * 1000
        cold_verdict = "under" if cold_p95 < TARGET_RENDER_MS else "OVER"
        print(
            f"  {size:>9,} judgments: page p50 {p50:6.1f} ms, p95 {p95:6.1f} ms ({verdict} "
            f"{TARGET_RENDER_MS:.0f} ms); cold page p50 {cold_p50:6.1f} ms, p95 "
            f"{cold_p95:6.1f} ms ({cold_verdict}); aggregation {report['inner_seconds']:.1f} s"
        )
    if len(results) == 2:
        small, large = results
        ratio = common.percentile(sorted(large[2]), 50) / common.percentile(sorted(small[2]), 50)
        print(f"  page p50 at {large[0]:,} over {small[0]:,}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except common.BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
