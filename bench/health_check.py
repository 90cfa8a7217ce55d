"""What Django's connection health check costs a request, and what annotate's backend saves.

    .venv/bin/python bench/health_check.py [--requests 2000] [--rounds 10]

With CONN_HEALTH_CHECKS Django runs `SELECT 1` on a kept connection before each request reuses
it; annotate's backend (annotate/postgresql/base.py) skips it for a connection that served a
request less than DATABASE_HEALTH_CHECK_AFTER seconds ago. In a `manage.py shell` of the app,
on a database of its own, this plays requests of one query each (Django's own handler of a
request's start and end, close_old_connections, around a `SELECT 1`), in rounds that alternate
the setting between 0 (Django's behaviour) and 5, and prints the median time of a request for
each: the difference is the check's round trip, here, on an otherwise idle connection.
"""

import sys
from pathlib import Path

# bench/queue.py is named like the standard library's `queue`, which psycopg imports: move this
# script's folder to the end of sys.path (as the other benches do).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402

import common  # noqa: E402

CODE = """
import statistics, time
from django.conf import settings
from django.db import close_old_connections, connection

def batch(n):
    started = time.perf_counter()
    for _ in range(n):
        close_old_connections()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        close_old_connections()
    return (time.perf_counter() - started) / n * 1e6

times = {{0: [], 5: []}}
for _ in range({rounds}):
    for after in (0, 5):
        settings.DATABASE_HEALTH_CHECK_AFTER = after
        times[after].append(batch({requests}))
for after, values in times.items():
    print(f"DATABASE_HEALTH_CHECK_AFTER={{after}}: {{statistics.median(values):.1f}} us a request "
          f"(median of {rounds} rounds of {requests}; fastest round {{min(values):.1f}} us)")
saved = statistics.median(times[0]) - statistics.median(times[5])
print(f"the check's round trip: {{saved:.1f}} us a request")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests a round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each setting")
    args = parser.parse_args()
    common.print_machine()
    with common.temporary_database("annotate_bench_health") as database:
        env = common.app_env(database)
        common.migrate(env)
        code = CODE.format(requests=args.requests, rounds=args.rounds)
        print(common.manage(["shell", "-c", code], env).stdout.strip())


if __name__ == "__main__":
    main()
