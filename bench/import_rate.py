"""How fast `manage.py import_batch` stores a JSON Lines file, and how much memory it takes.

    .venv/bin/python bench/import_rate.py [--prompts 10000] [--candidates 4] [--sqlite]

Builds the file, creates a throwaway PostgreSQL database (annotate_bench_<pid>), migrates it,
creates a project, and times the import command in a subprocess. Prints the machine and the
figures; drops the database at the end (also on error or --timeout).
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports, and Python
# puts this script's folder first on sys.path: move the folder to the end (as queue.py does).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from math import comb  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402


def count_rows(database: str) -> dict[str, int]:
    tables = ("batches_prompt", "batches_candidate", "batches_comparison")
    queries = {table: f"SELECT count(*) FROM {table}" for table in tables}  # noqa: S608
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


def bench_backend(
    label: str, database: str, path: Path, prompts: int, candidates: int, timeout: float
) -> None:
    env = common.app_env(database)
    migrate_s = common.migrate(env)
    common.setup_project(env, "bench-import", overlap=3)
    startup = common.run_measured(
        [common.PYTHON, common.MANAGE, "shell", "-c", "pass"], env, timeout
    ).seconds
    size_before = database_size(database)
    idle = common.machine_busy_now(1.0)
    run = common.run_measured(
        [common.PYTHON, common.MANAGE, "import_batch", "bench-import", str(path)], env, timeout
    )
    if run.returncode != 0:
        raise common.BenchError(f"import_batch failed ({run.returncode}):\n{run.stderr[-4000:]}")
    rows = count_rows(database)
    expected = {
        "batches_prompt": prompts,
        "batches_candidate": prompts * candidates,
        "batches_comparison": prompts * comb(candidates, 2),
    }
    if rows != expected:
        raise common.BenchError(f"stored {rows}, expected {expected}")
    grown = database_size(database) - size_before
    seconds = run.seconds
    total_rows = sum(rows.values()) + 1  # and the batch
    n_prompts, n_candidates, n_comparisons = expected.values()
    print(f"\n{label} (migrate took {migrate_s:.1f} s)")
    print("  command:        manage.py import_batch (a subprocess, timed from spawn to exit)")
    print(f"  wall time:      {seconds:.2f} s (Django start-up alone: {startup:.2f} s)")
    print(f"  prompts/s:      {n_prompts / seconds:,.0f}  ({n_prompts:,})")
    print(f"  candidates/s:   {n_candidates / seconds:,.0f}  ({n_candidates:,})")
    print(f"  comparisons/s:  {n_comparisons / seconds:,.0f}  ({n_comparisons:,})")
    print(f"  rows/s total:   {total_rows / seconds:,.0f}  ({total_rows:,} rows)")
    print(f"  peak RSS:       {common.human_bytes(run.max_rss_bytes)} (the import process)")
    print(f"  database grew:  {common.human_bytes(grown)}")
    print(f"  said:           {run.stdout.strip()}")
    print(f"  machine load just before the import: {idle:.2f} cores busy (other processes)")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--sqlite", action="store_true", help="also import into SQLite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="stop the whole run after")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if not 2 <= args.candidates <= 16:
        parser.error("--candidates must be between 2 and 16")
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
                )
            if args.sqlite:
                with common.temporary_sqlite() as database:
                    bench_backend(
                        "SQLite", database, path, args.prompts, args.candidates, args.timeout
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
