"""How fast the app imports a JSON Lines file, how much memory it takes, and its progress bar.

    .venv/bin/python bench/import_rate.py [--comparisons 1000000 | --prompts 10000]
        [--candidates 4] [--mode background|foreground|both] [--sqlite] [--render]
        [--policy-change] [--redis-url URL]

Builds the file, creates a throwaway PostgreSQL database (annotate_bench_<pid>), migrates it,
creates a project, and times the import in subprocesses. Prints the machine (and its load
average before and after) and the figures; drops the database at the end (also on error or
--timeout).

- background (the real path of a large upload): `manage.py import_batch --background` stores
  the file in the database and queues the task (on a queue of its own, which no worker reads);
  then the task's body (`apps.batches.tasks.batch_import_task`) runs in a subprocess of its own,
  as a worker runs it, while a third process samples the batch's progress as the admin reads it
  (`batch_import_progress`) every half second. Its wall time runs from the upload's start to
  the batch's end; the peak RSS is each process's own.
- foreground: `manage.py import_batch` (no progress to see: the batch is stored as a whole).

An import renders no text: on its commit it sends the rendering task (to the bench's queue,
which no worker reads). With --render, the task's work for the foreground batch
(`renderings_for_batch`) is then run and timed in a subprocess of its own, as a worker would run
it after the import: the pages' HTML is ready that much later (until then a page renders each
text it shows, the first time). With --policy-change, a change of the foreground project's
policy to depth first and back is then timed: Project.save, which commits the change, and the
follow that gives every comparison of the project the new policy (Comparison.policy), run
in-process as its task would run it, in chunks of POLICY_FOLLOW_CHUNK ids, each its own
transaction: the longest chunk is the longest any row stays locked.

Files past IMPORT_MAX_BYTES (256 MiB) are let through by raising it for the bench's processes.
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
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from math import ceil, comb  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402


def count_rows(database: str, slug: str) -> dict[str, int]:
    # slug is one of this script's own two: no parameter binding needed (and sqlite3 and
    # psycopg would spell it differently).
    assert slug in ("bench-import", "bench-import-fg")
    project = f"(SELECT id FROM projects_project WHERE slug = '{slug}')"  # noqa: S608
    queries = {
        "batches_prompt": f"SELECT count(*) FROM batches_prompt WHERE project_id = {project}",  # noqa: S608
        "batches_candidate": "SELECT count(*) FROM batches_candidate c JOIN batches_prompt p "  # noqa: S608
        f"ON p.id = c.prompt_id WHERE p.project_id = {project}",
        "batches_comparison": "SELECT count(*) FROM batches_comparison "  # noqa: S608
        f"WHERE project_id = {project}",
    }
    if database.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database[len("sqlite:///") :]) as lite:
            return {t: lite.execute(q).fetchone()[0] for t, q in queries.items()}
    with psycopg.connect(database) as conn:
        return {t: conn.execute(q).fetchone()[0] for t, q in queries.items()}  # type: ignore[index]


def database_size(database: str) -> int:
    if database.startswith("sqlite:///"):
        return Path(database[len("sqlite:///") :]).stat().st_size
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} cores)"


# --honeypot-rate: the projects' share of prompts that get a generated gold item (one more
# candidate and one more comparison each; apps/batches/honeypots.py).
HONEYPOT_RATE = 0.0


def check_rows(database: str, slug: str, prompts: int, candidates: int) -> dict[str, int]:
    rows = count_rows(database, slug)
    # Honeypots are drawn: as many as the stored candidates beyond the file's, at most one each.
    honeypots = rows["batches_candidate"] - prompts * candidates if HONEYPOT_RATE else 0
    expected = {
        "batches_prompt": prompts,
        "batches_candidate": prompts * candidates + honeypots,
        "batches_comparison": prompts * comb(candidates, 2) + honeypots,
    }
    if HONEYPOT_RATE:
        print(f"  honeypots:      {honeypots:,} (rate {HONEYPOT_RATE})")
    if rows != expected or not 0 <= honeypots <= prompts:
        raise common.BenchError(f"stored {rows}, expected {expected}")
    return rows


def print_rates(seconds: float, rows: dict[str, int]) -> None:
    n_prompts, n_candidates, n_comparisons = rows.values()
    total_rows = n_prompts + n_candidates + n_comparisons + 1  # and the batch
    tasks, ls_seconds = common.LABEL_STUDIO_IMPORT
    ls_rate = tasks / ls_seconds
    print(f"  prompts/s:      {n_prompts / seconds:,.0f}  ({n_prompts:,})")
    print(f"  candidates/s:   {n_candidates / seconds:,.0f}  ({n_candidates:,})")
    print(
        f"  comparisons/s:  {n_comparisons / seconds:,.0f}  ({n_comparisons:,}); "
        f"{n_comparisons / seconds / ls_rate:.1f}x {common.LABEL_STUDIO}'s {ls_rate:,.0f} tasks/s"
    )
    print(f"  rows/s total:   {total_rows / seconds:,.0f}  ({total_rows:,} rows)")


POLLER = """
import json, sys, time
from apps.batches.models import Batch
from apps.batches.services import batch_import_progress
started = time.time()
while True:
    batch = Batch.objects.filter(project__slug="bench-import").order_by("-id").first()
    if batch is not None:
        p = batch_import_progress(batch)
        print(json.dumps([round(time.time() - started, 2), p["percent"], p["phase"], p["done"],
                          p["total"], batch.status]), flush=True)
        if batch.status != "importing":
            break
    time.sleep(0.5)
"""


def bench_background(
    label: str, database: str, path: Path, prompts: int, candidates: int, timeout: float, env: dict
) -> None:
    samples: list[list[Any]] = []
    poller = subprocess.Popen(
        [common.PYTHON, common.MANAGE, "shell", "-c", POLLER],
        cwd=common.REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    reader = threading.Thread(
        target=lambda: samples.extend(
            json.loads(line) for line in poller.stdout or [] if line.startswith("[")
        )
    )
    reader.start()
    time.sleep(3)  # the poller's start-up: it samples from before the upload
    started = time.perf_counter()
    upload = common.run_measured(
        [common.PYTHON, common.MANAGE, "import_batch", "--background", "bench-import", str(path)],
        env,
        timeout,
    )
    if upload.returncode != 0:
        poller.kill()
        raise common.BenchError(
            f"the upload failed ({upload.returncode}):\n{upload.stderr[-4000:]}"
        )
    said = [line for line in upload.stdout.splitlines() if line.startswith("Batch ")]
    batch_id = int(said[-1].split()[1])
    task = common.run_measured(
        [
            common.PYTHON,
            common.MANAGE,
            "shell",
            "-c",
            "from apps.batches.tasks import batch_import_task; "
            f"print(batch_import_task({batch_id}))",
        ],
        env,
        timeout,
    )
    seconds = time.perf_counter() - started
    try:
        poller.wait(30)
    except subprocess.TimeoutExpired:
        poller.kill()
    reader.join()
    said = (task.stdout.strip().splitlines() or [""])[-1]
    if task.returncode != 0 or said != "active":
        raise common.BenchError(
            f"the import ended {task.stdout.strip()!r} ({task.returncode}):\n{task.stderr[-4000:]}"
        )
    rows = check_rows(database, "bench-import", prompts, candidates)
    print(f"\n{label}, background (the real path of an upload)")
    print(f"  wall time:      {seconds:.2f} s, from the upload's start to the batch active")
    print(f"    upload:       {upload.seconds:.2f} s (manage.py import_batch --background)")
    print(f"    import task:  {task.seconds:.2f} s (batch_import_task, Django start-up included)")
    print_rates(seconds, rows)
    print(
        f"  peak RSS:       upload {common.human_bytes(upload.max_rss_bytes)}, import task "
        f"{common.human_bytes(task.max_rss_bytes)}"
    )
    print("  progress (the admin's bar, batch_import_progress, sampled every 0.5 s):")
    t0 = next((s[0] for s in samples if s[2] != "queued" or s[1]), samples[0][0] if samples else 0)
    shown: list[str] = []
    last_second = -1
    for at, percent, phase, *_rest in samples:
        second = int(at - t0)
        if second != last_second and at >= t0:
            shown.append(f"{second}s {percent}% {phase}")
            last_second = second
    for start in range(0, len(shown), 8):
        print("    " + " | ".join(shown[start : start + 8]))
    running = [s for s in samples if s[5] == "importing" and (s[2] != "queued")]
    longest = 0.0
    moments = [s[0] for i, s in enumerate(running) if i == 0 or s[3] != running[i - 1][3]]
    if moments:
        longest = max(b - a for a, b in zip(moments, [*moments[1:], running[-1][0]], strict=False))
    moved = bool(running) and longest <= 5
    print(
        f"  progress moved: {'yes' if moved else 'NO'}: {len(running)} samples while running, "
        f"the longest time without a change {longest:.1f} s"
    )
    sys.stdout.flush()


def bench_foreground(
    label: str,
    database: str,
    path: Path,
    prompts: int,
    candidates: int,
    timeout: float,
    env: dict,
    render: bool = False,
) -> None:
    run = common.run_measured(
        [common.PYTHON, common.MANAGE, "import_batch", "bench-import-fg", str(path)], env, timeout
    )
    if run.returncode != 0:
        raise common.BenchError(f"import_batch failed ({run.returncode}):\n{run.stderr[-4000:]}")
    rows = check_rows(database, "bench-import-fg", prompts, candidates)
    print(f"\n{label}, foreground")
    print("  command:        manage.py import_batch (a subprocess, timed from spawn to exit)")
    print(f"  wall time:      {run.seconds:.2f} s")
    print_rates(run.seconds, rows)
    print(f"  peak RSS:       {common.human_bytes(run.max_rss_bytes)} (the import process)")
    print(f"  said:           {run.stdout.strip()}")
    if render:
        bench_render(database, env, timeout)


RENDER = """
import time
from apps.batches.models import Batch
from apps.judging.models import Rendering
from apps.judging.rendering import renderings_for_batch
batch = Batch.objects.filter(project__slug="bench-import-fg").latest("id")
before = Rendering.objects.count()
started = time.perf_counter()
renderings_for_batch(batch_id=batch.pk, seconds=float("inf"))
seconds = time.perf_counter() - started
print("RENDERED", Rendering.objects.count() - before, round(seconds, 2))
"""


def bench_render(database: str, env: dict, timeout: float) -> None:
    run = common.run_measured([common.PYTHON, common.MANAGE, "shell", "-c", RENDER], env, timeout)
    said = [line.split() for line in run.stdout.splitlines() if line.startswith("RENDERED")]
    if run.returncode != 0 or not said:
        raise common.BenchError(f"the rendering failed ({run.returncode}):\n{run.stderr[-4000:]}")
    texts, seconds = int(said[0][1]), float(said[0][2])
    print(
        f"  then rendering: {seconds:.2f} s for {texts:,} distinct texts "
        f"({texts / seconds:,.0f}/s), the task's work after the import, on one core; "
        f"peak RSS {common.human_bytes(run.max_rss_bytes)}"
    )


POLICY_CHANGE = """
import time
from apps.batches.models import Comparison
from apps.batches.policy_follow import comparison_policy_follow
from apps.projects.models import Project
project = Project.objects.get(slug="bench-import-fg")
for policy in ("depth_first", "breadth_first"):
    started = time.perf_counter()
    project.policy = policy
    project.save(update_fields=["policy"])  # commits; its task goes to a queue no worker reads
    saved = time.perf_counter() - started
    chunks = [time.perf_counter()]
    changed = comparison_policy_follow(
        project_id=project.pk, after_chunk=lambda _: chunks.append(time.perf_counter())
    )
    spans = [b - a for a, b in zip(chunks, chunks[1:])]
    carried = Comparison.objects.filter(project=project, policy=policy).count()
    print("CHANGED", policy, carried, changed, round(saved, 3), round(chunks[-1] - chunks[0], 2),
          len(spans), round(max(spans, default=0), 3), round(sorted(spans)[len(spans) // 2], 3))
"""


def bench_policy_change(env: dict, timeout: float) -> None:
    """A change of the project's policy after the foreground import, and its follow: every
    comparison of the project takes it (apps.batches.policy_follow), chunk by chunk."""
    run = common.run_measured(
        [common.PYTHON, common.MANAGE, "shell", "-c", POLICY_CHANGE], env, timeout
    )
    said = [line.split() for line in run.stdout.splitlines() if line.startswith("CHANGED")]
    if run.returncode != 0 or len(said) != 2:
        raise common.BenchError(
            f"the policy change failed ({run.returncode}):\n{run.stderr[-4000:]}"
        )
    for _, policy, carried, changed, saved, follow, chunks, longest, median in said:
        print(
            f"  then policy -> {policy}: Project.save {float(saved):.3f} s; the follow "
            f"(comparison_policy_follow, the task's work) {float(follow):.2f} s in {chunks} "
            f"chunks (each its own transaction: median {float(median):.3f} s, longest "
            f"{float(longest):.3f} s), {int(changed):,} rows changed; {int(carried):,} "
            "comparisons carry it after"
        )


def bench_backend(
    label: str,
    database: str,
    path: Path,
    prompts: int,
    candidates: int,
    timeout: float,
    mode: str,
    redis_url: str,
    render: bool = False,
    policy_change: bool = False,
) -> None:
    env = common.app_env(
        database,
        REDIS_URL=redis_url,
        CELERY_QUEUE=f"bench-import-{os.getpid()}",
        IMPORT_MAX_BYTES=str(max(path.stat().st_size + 1, 256 * 1024 * 1024)),
    )
    migrate_s = common.migrate(env)
    common.setup_project(env, "bench-import", overlap=3)
    common.setup_project(env, "bench-import-fg", overlap=3)  # the foreground's, ids apart
    if HONEYPOT_RATE:
        common.manage(
            [
                "shell",
                "-c",
                "from apps.projects.models import Project; Project.objects.filter("
                "slug__in=['bench-import', 'bench-import-fg']).update("
                f"gold_rate=0.1, honeypot_rate={HONEYPOT_RATE!r})",
            ],
            env,
            timeout=timeout,
        )
    startup = common.run_measured(
        [common.PYTHON, common.MANAGE, "shell", "-c", "pass"], env, timeout
    ).seconds
    print(f"\n{label}: migrate took {migrate_s:.1f} s; Django start-up alone {startup:.2f} s")
    print(f"  load average before: {load_average()}")
    print(f"  busy just before:    {common.machine_busy_now(1.0):.2f} cores (other processes)")
    size_before = database_size(database)
    if mode in ("background", "both"):
        bench_background(label, database, path, prompts, candidates, timeout, env)
    if mode in ("foreground", "both"):
        bench_foreground(label, database, path, prompts, candidates, timeout, env, render)
        if policy_change:
            bench_policy_change(env, timeout)
    print(f"  database grew:  {common.human_bytes(database_size(database) - size_before)}")
    print(f"  load average after:  {load_average()}")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument(
        "--comparisons", type=int, help="this many comparisons (sets --prompts; pairwise)"
    )
    parser.add_argument("--mode", choices=("background", "foreground", "both"), default="both")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        help="Redis for the cache (the store's progress) and the broker",
    )
    parser.add_argument("--sqlite", action="store_true", help="also import into SQLite")
    parser.add_argument(
        "--render",
        action="store_true",
        help="after the foreground import, time the rendering task's work for its batch",
    )
    parser.add_argument(
        "--policy-change",
        action="store_true",
        help="after the foreground import, time a change of the project's policy and back",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--honeypot-rate",
        type=float,
        default=0.0,
        help="the projects' honeypot_rate (0-1; with a gold rate of 0.1)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if not 2 <= args.candidates <= 16:
        parser.error("--candidates must be between 2 and 16")
    if not 0 <= args.honeypot_rate <= 1:
        parser.error("--honeypot-rate must be between 0 and 1")
    global HONEYPOT_RATE
    HONEYPOT_RATE = args.honeypot_rate
    if args.comparisons:
        args.prompts = ceil(args.comparisons / comb(args.candidates, 2))
    common.bound_runtime(args.timeout)

    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="annotate_bench_") as folder:
        path = Path(folder) / "prompts.jsonl"
        started = time.perf_counter()
        size = common.write_prompts_jsonl(path, args.prompts, args.candidates, seed=args.seed)
        print(
            f"\nfile: {args.prompts:,} prompts x {args.candidates} candidates "
            f"(300-800 chars each, a fifth of prompts are conversations): "
            f"{common.human_bytes(size)}, written in {time.perf_counter() - started:.1f} s"
        )
        try:
            with common.temporary_database(keep=args.keep_db) as database:
                bench_backend(
                    f"PostgreSQL {common.postgres_version()}",
                    database,
                    path,
                    args.prompts,
                    args.candidates,
                    args.timeout,
                    args.mode,
                    args.redis_url,
                    args.render,
                    args.policy_change,
                )
            if args.sqlite:
                with common.temporary_sqlite() as database:
                    bench_backend(
                        "SQLite",
                        database,
                        path,
                        args.prompts,
                        args.candidates,
                        args.timeout,
                        "foreground",
                        args.redis_url,
                        args.render,
                        args.policy_change,
                    )
        except common.BenchError as exc:
            print(f"\nFAILED: {exc}", file=sys.stderr)
            return 1
    tasks, seconds = common.LABEL_STUDIO_IMPORT
    print(
        f"\n{common.LABEL_STUDIO} (ANCHORS.md): {tasks:,} tasks in {seconds} s = "
        f"{tasks / seconds:,.0f} tasks/s (one pairwise task ~ one of our comparisons)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
