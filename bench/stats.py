"""The statistics benchmark: `project_stats(stats_votes(...))` at 10k and 1M judgments.

    .venv/bin/python bench/stats.py                        # 10,000 then 1,000,000 judgments
    .venv/bin/python bench/stats.py --judgments 30000      # one size
    .venv/bin/python bench/stats.py --baseline /tmp/base   # also time another checkout's code

For each size it creates a throwaway PostgreSQL database, migrates it, and seeds a graded project
(overlap 3, a handful of models) as bench/export.py does, with COPY; one judgment in 97 is then
invalidated (the statistics leave those out). It computes the stats endpoint's report in a
`manage.py shell` subprocess (DEBUG off, PostgreSQL): the time of each computation, the process's
RSS before it and its peak (VmHWM) after, and a SHA-256 of the report's JSON (keys sorted), so that
two checkouts' reports can be compared byte for byte. `--baseline DIR` runs the same measurement
with the code of another checkout of the repository (its manage.py, hence its `apps`) on the same
database, e.g. a `git worktree` of the commit before a change.
"""

import sys
from pathlib import Path

# As bench/export.py: keep bench/queue.py from shadowing the standard library's `queue`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sysconfig  # noqa: E402

import common  # noqa: E402
import psycopg  # noqa: E402
from export import OVERLAP, seed_export  # noqa: E402

SLUG = "bench-stats"
INVALIDATE_EVERY = 97

MEASURE = """
import hashlib, json, time
from apps.agreement.stats import project_stats, stats_votes
from apps.projects.models import Project

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
project = Project.objects.get(slug=SLUG)
before = status("VmRSS")
seconds = []
for _ in range(REPEAT):
    started = time.perf_counter()
    report = project_stats(stats_votes(project=project))
    seconds.append(time.perf_counter() - started)
digest = hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()
print(json.dumps({"file": __import__("apps.agreement.stats").agreement.stats.__file__,
                  "seconds": seconds, "rss_before": before, "hwm": status("VmHWM"),
                  "sha256": digest, "judgments": report["counts"]["judgments"]}))
"""


def measure(env: dict[str, str], repo: Path, repeat: int, timeout: float) -> dict[str, object]:
    """Runs MEASURE with `repo`'s code: from its folder (`shell -c` puts the working directory
    first on sys.path), with `python -S` and the virtualenv's site-packages on PYTHONPATH, so
    that the editable install's finder (which maps `apps` to this checkout) is not loaded."""
    code = MEASURE.replace("SLUG", repr(SLUG)).replace("REPEAT", str(repeat))
    env = {**env, "PYTHONPATH": f"{repo}:{sysconfig.get_paths()['purelib']}"}
    shell = f"cd {shlex.quote(str(repo))} && exec {shlex.quote(common.PYTHON)} -S manage.py "
    result = common.run_measured(
        ["/bin/sh", "-c", shell + "shell -c " + shlex.quote(code)], env, timeout
    )
    if result.returncode != 0:
        raise common.BenchError(f"stats failed in {repo}:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run_size(n: int, args: argparse.Namespace) -> None:
    with common.temporary_database(prefix="annotate_bench_stats", keep=args.keep_db) as db:
        env = common.production_env(db)
        env["CACHE_KEY_PREFIX"] = f"benchs{os.getpid()}"
        common.migrate(env)
        setup = common.setup_project(env, SLUG, overlap=OVERLAP, annotators=args.annotators)
        with psycopg.connect(db) as conn:
            conn.execute(
                "UPDATE projects_project SET scheme = 'graded' WHERE id = %s", (setup["project"],)
            )
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM auth_user WHERE username LIKE 'bench-annotator-%'"
                ).fetchall()
            ]
        seeded = seed_export(
            db, project_id=setup["project"], annotators=ids, n_judgments=n, seed=args.seed
        )
        with psycopg.connect(db, autocommit=True) as conn:
            invalidated = conn.execute(
                "UPDATE judging_judgment SET invalidated_at = now() WHERE id %% %s = 0",
                (INVALIDATE_EVERY,),
            ).rowcount
            conn.execute("ANALYZE judging_judgment")
        print(
            f"\n{n:,} judgments ({seeded.comparisons:,} comparisons, {len(ids)} annotators) "
            f"seeded in {seeded.seconds:.1f} s; {invalidated:,} invalidated (left out)"
        )
        runs = [("this checkout", common.REPO)]
        if args.baseline:
            runs.insert(0, ("baseline " + str(args.baseline), Path(args.baseline).resolve()))
        for label, repo in runs:
            repeat = 1 if repo != common.REPO else args.repeat
            out = measure(env, repo, repeat, args.timeout)
            seconds = [float(s) for s in out["seconds"]]  # type: ignore[attr-defined]
            before, hwm = int(out["rss_before"]), int(out["hwm"])  # type: ignore[call-overload]
            print(
                f"  {label}: project_stats(stats_votes(...)) "
                + ", ".join(f"{s:.2f} s" for s in seconds)
                + f" (best {min(seconds):.2f} s); RSS before {common.human_bytes(before)}, "
                f"peak {common.human_bytes(hwm)} (+{common.human_bytes(hwm - before)}); "
                f"{out['judgments']:,} judgments counted; report sha256 {str(out['sha256'])[:16]}; "
                f"code {out['file']}"
            )
            sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--judgments", type=int, nargs="+", default=[10_000, 1_000_000], help="sizes to run"
    )
    parser.add_argument("--annotators", type=int, default=12)
    parser.add_argument(
        "--repeat", type=int, default=2, help="computations with this checkout (baseline: one)"
    )
    parser.add_argument("--baseline", help="another checkout of the repository to time too")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    common.bound_runtime(args.timeout)
    common.print_machine()
    try:
        for n in args.judgments:
            run_size(n, args)
    except common.BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
