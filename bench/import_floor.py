"""The database's own floor under an import: the rows of an import written by the server alone.

    .venv/bin/python bench/import_floor.py [--comparisons 1000000] [--variants]

Creates a throwaway database (annotate_floor_<pid>), migrates it and creates a project and a
batch; then, in one transaction that is rolled back, writes as many prompts (4 candidates each,
texts of about the import bench's size), candidates and comparisons as an import of that many
comparisons writes, with INSERT ... SELECT over generate_series: no client, no parsing, no
network, only what PostgreSQL does for each row (heap, every index, every foreign-key check).
An import through the app cannot be faster than this on the same server.

--variants times the comparisons again, in a savepoint rolled back, without the queue's partial
indexes (dropped inside the savepoint), to show what they cost. (The comparisons' references have
no foreign-key constraints since batches/0011: the prompts' and candidates' still check theirs.)

Point it at another server with BENCH_ADMIN_DATABASE_URL (e.g. one with a larger
shared_buffers): see bench/README.md.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports: move this
# script's folder to the end of sys.path (as the other benches do).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import time  # noqa: E402
from math import ceil  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402

PROMPTS = """
INSERT INTO batches_prompt (id, external_id, content, metadata, batch_id, project_id)
SELECT i, 'p-' || i, to_jsonb(repeat('word ', 60)), '{"topic": "x"}', %(batch)s, %(project)s
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

CANDIDATES = """
INSERT INTO batches_candidate (
    id, external_id, text, model, params, metadata, prompt_id, degradation, finish_reason)
SELECT (p - 1) * 4 + j, 'c' || j, repeat('word ', 110), 'model', '{"temperature": 0.5}', '{}', p,
       '', ''
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS p, generate_series(1, 4) AS j
"""

COMPARISONS = """
INSERT INTO batches_comparison (
    judgment_count, lease_count, complete, rank, votes_a, votes_b, votes_tie, votes_both_bad,
    split, skip_count, is_gold, gold_answer, batch_id, candidate_a_id, candidate_b_id,
    project_id, prompt_id, policy)
SELECT 0, 0, false, (random() * 2147483646)::int, 0, 0, 0, 0, 1, 0, false, '', %(batch)s,
       (p - 1) * 4 + a, (p - 1) * 4 + b, %(project)s, p,
       (SELECT policy FROM projects_project WHERE id = %(project)s)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS p,
     (VALUES (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)) AS pairs (a, b)
"""

QUEUE_INDEXES = ["queue_breadth", "queue_depth", "queue_gold", "queue_random", "queue_uncertain"]


def timed(conn: psycopg.Connection, statement: str, params: dict) -> float:
    started = time.perf_counter()
    conn.execute(statement, params)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comparisons", type=int, default=1_000_000)
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    common.bound_runtime(args.timeout)
    prompts = ceil(args.comparisons / 6)
    common.print_machine()
    with common.temporary_database(prefix="annotate_floor") as database:
        env = common.app_env(database)
        common.migrate(env)
        common.setup_project(env, "bench-floor")
        with psycopg.connect(database) as conn:
            project = conn.execute("SELECT id FROM projects_project").fetchone()[0]  # type: ignore[index]
            batch = conn.execute(
                "INSERT INTO batches_batch (project_id, name, status, priority, created_at, "
                "prompt_count, comparison_count, errors, import_running, import_attempts, "
                "rows_total, rows_done, import_note, candidates_optional) VALUES (%s, 'floor', "
                "'active', 0, now(), 0, 0, '[]', false, 0, 0, 0, '', false) RETURNING id",
                [project],
            ).fetchone()[0]  # type: ignore[index]
            # Above every id the app's sequences handed out (the setup made none of these rows).
            params = {"batch": batch, "project": project, "first": 1, "last": prompts}
            server = conn.execute("SHOW shared_buffers").fetchone()[0]  # type: ignore[index]
            print(f"\nPostgreSQL {common.postgres_version()}, shared_buffers {server}")
            print(
                f"  {prompts:,} prompts, {prompts * 4:,} candidates, {prompts * 6:,} comparisons "
                "in one transaction (rolled back)"
            )
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # each statement checks its own rows
            seconds = {
                "prompts": timed(conn, PROMPTS, params),
                "candidates": timed(conn, CANDIDATES, params),
            }
            # Each variant writes the same comparisons again, from here.
            conn.execute("SAVEPOINT floor")
            seconds["comparisons"] = timed(conn, COMPARISONS, params)
            for table, value in seconds.items():
                print(f"  {table + ':':13} {value:7.2f} s")
            print(f"  {'total:':13} {sum(seconds.values()):7.2f} s")
            if args.variants:
                conn.execute("ROLLBACK TO SAVEPOINT floor")
                conn.execute("DROP INDEX " + ", ".join(QUEUE_INDEXES))
                no_queue = timed(conn, COMPARISONS, params)
                print(f"  comparisons without the 5 queue indexes:    {no_queue:7.2f} s")
                conn.execute("ROLLBACK TO SAVEPOINT floor")
            conn.rollback()
    return 0


if __name__ == "__main__":
    sys.exit(main())
