"""Shared helpers of the benchmarks: the machine, a throwaway database, the app's processes.

Everything here talks to the app only from outside (subprocesses, HTTP, SQL), so the figures are
those of the app as deployed. Nothing in this module imports Django.
"""

import json
import math
import os
import platform
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
_VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(_VENV_BIN / "python") if (_VENV_BIN / "python").exists() else sys.executable
GUNICORN = str(_VENV_BIN / "gunicorn") if (_VENV_BIN / "gunicorn").exists() else "gunicorn"
MANAGE = str(REPO / "manage.py")
# A superuser connection to the server's maintenance database; each bench creates its own database.
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


class BenchError(Exception):
    """The benchmark could not run (a subprocess failed, the server did not start...)."""


class BenchTimeout(BenchError):
    pass


# --- bounding the run time -------------------------------------------------------------------


def _on_alarm(signum: int, frame: Any) -> None:
    raise BenchTimeout("the benchmark ran past its --timeout and was stopped")


def bound_runtime(seconds: float) -> None:
    """Raises BenchTimeout in the main thread after `seconds`; `finally` blocks still clean up."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


# --- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def postgres_version(url: str = ADMIN_URL) -> str:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"
    except psycopg.Error as exc:
        return f"unavailable ({exc.__class__.__name__})"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_lines() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"cpu:        {_cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
        f"ram:        {_ram_gib():.1f} GiB",
        f"os:         {platform.platform()}",
        f"python:     {platform.python_version()} ({PYTHON})",
        f"postgresql: {postgres_version()}",
        f"django:     {_package_version('django')}, gunicorn {_package_version('gunicorn')}, "
        f"psycopg {_package_version('psycopg')}",
    ]


def print_machine() -> None:
    print("machine")
    for line in machine_lines():
        print(f"  {line}")
    sys.stdout.flush()


# --- figures ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile of an ascending list (p in 0..100); nan when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_line(name: str, seconds: list[float]) -> str:
    values = sorted(seconds)
    if not values:
        return f"{name:<7} no requests"
    ms = [percentile(values, p) * 1000 for p in (50, 95, 99)]
    return (
        f"{name:<7} n={len(values):<7,} p50 {ms[0]:7.1f} ms  p95 {ms[1]:7.1f} ms  "
        f"p99 {ms[2]:7.1f} ms  max {values[-1] * 1000:7.1f} ms"
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


# --- the Label Studio anchor (/work/shared/ANCHORS.md) ----------------------------------------


@dataclass(frozen=True)
class Anchor:
    tasks: int
    annotators: int
    next_p50: float
    next_p99: float
    submit_p50: float
    per_second: float


LABEL_STUDIO = "Label Studio 1.23.2"
LABEL_STUDIO_QUEUE = [
    Anchor(10_000, 8, 0.50, 0.83, 0.45, 8.3),
    Anchor(10_000, 32, 1.76, 2.60, 1.78, 8.9),
    Anchor(100_000, 32, 5.70, 10.0, 4.85, 3.0),
]
LABEL_STUDIO_IMPORT = (100_000, 44.5)  # tasks, seconds
TARGET_FACTOR_AT_100K = 50  # annotate's target: 50x Label Studio's throughput at 100k


def anchors_for(tasks: int) -> list[Anchor]:
    """The anchor rows measured at the queue size nearest to `tasks` (by ratio)."""
    nearest = min({a.tasks for a in LABEL_STUDIO_QUEUE}, key=lambda t: abs(math.log(tasks / t)))
    return [a for a in LABEL_STUDIO_QUEUE if a.tasks == nearest]


# --- databases -------------------------------------------------------------------------------


def database_url(name: str, base: str = ADMIN_URL) -> str:
    return urlunparse(urlparse(base)._replace(path=f"/{name}"))


@contextmanager
def temporary_database(prefix: str = "annotate_bench", keep: bool = False) -> Iterator[str]:
    """Creates `<prefix>_<pid>` on the PostgreSQL server, yields its URL, and drops it."""
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextmanager
def temporary_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="annotate_bench_") as folder:
        yield f"sqlite:///{folder}/bench.sqlite3"


def app_env(database: str, **overrides: str) -> dict[str, str]:
    """The environment of the app's processes: this one's, pointed at the bench database."""
    env = dict(os.environ)
    for key in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(key, None)
    env.update(
        DATABASE_URL=database,
        DJANGO_SETTINGS_MODULE="annotate.settings",
        LOG_LEVEL="WARNING",
        CACHE_KEY_PREFIX=f"bench{os.getpid()}",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def production_env(database: str) -> dict[str, str]:
    """DEBUG off, a random SECRET_KEY, loopback only, Redis on: as the app is deployed."""
    return app_env(
        database,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        REDIS_URL=REDIS_URL,
    )


def manage(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Runs `manage.py <args>`; raises BenchError with its output when it fails."""
    result = subprocess.run(
        [PYTHON, MANAGE, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"manage.py {' '.join(args[:1])} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result


def migrate(env: dict[str, str], timeout: float = 300) -> float:
    started = time.perf_counter()
    manage(["migrate", "--noinput", "-v", "0"], env, timeout=timeout)
    return time.perf_counter() - started


def collectstatic(env: dict[str, str], timeout: float = 300) -> float:
    """`manage.py collectstatic` into env["STATIC_ROOT"], which DEBUG=false needs: whitenoise
    serves the hashed, compressed files from there. Returns the seconds it took."""
    if not env.get("STATIC_ROOT"):
        raise BenchError("collectstatic needs STATIC_ROOT in the environment (a temporary folder)")
    started = time.perf_counter()
    manage(["collectstatic", "--noinput", "-v", "0"], env, timeout=timeout)
    return time.perf_counter() - started


_MARK = "BENCH-JSON "

_SETUP_CODE = """
import json
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token
from apps.projects.services import membership_add, project_create

spec = json.loads(SPEC)
with transaction.atomic():
    project = project_create(slug=spec["slug"], name=spec["slug"], overlap=spec["overlap"])
    out = []
    for name in spec["annotators"]:
        user = User(username=name)
        if spec["password"]:
            user.set_password(spec["password"])  # for a browser's login form
        else:
            # No password: hashing one costs ~0.3 s and tokens are all the bench needs.
            user.set_unusable_password()
        user.save()
        membership_add(project=project, user=user, role="annotator")
        out.append({"username": name, "token": Token.objects.create(user=user).key})
print(MARK + json.dumps({"project": project.pk, "annotators": out}))
"""


def setup_project(
    env: dict[str, str],
    slug: str,
    overlap: int = 3,
    annotators: int = 0,
    timeout: float = 120,
    *,
    password: str = "",
) -> dict[str, Any]:
    """Creates a project and `annotators` member accounts with DRF tokens (manage.py shell).

    The accounts have no usable password unless `password` is given (each hash costs ~0.3 s).
    """
    spec = {
        "slug": slug,
        "overlap": overlap,
        "annotators": [f"bench-annotator-{i:03d}" for i in range(1, annotators + 1)],
        "password": password,
    }
    code = f"SPEC = {json.dumps(spec)!r}\nMARK = {_MARK!r}\n{_SETUP_CODE}"
    out = manage(["shell", "-c", code], env, timeout=timeout).stdout
    for line in out.splitlines():
        if line.startswith(_MARK):
            return dict(json.loads(line[len(_MARK) :]))
    raise BenchError(f"the setup printed no result:\n{out[-2000:]}")


@dataclass
class Measured:
    returncode: int
    seconds: float
    max_rss_bytes: int
    stdout: str
    stderr: str


def run_measured(cmd: list[str], env: dict[str, str], timeout: float) -> Measured:
    """Runs a command and returns its wall time and its own peak RSS.

    The peak comes from wait4() on that one child: getrusage(RUSAGE_CHILDREN) would report the
    largest of *all* children waited for so far (migrate, the setup shell...), not this one.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - started > timeout:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    raise BenchTimeout(f"{cmd[1:3]} ran longer than {timeout:.0f} s")
                time.sleep(0.01)
        except BaseException:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=proc.returncode,
            seconds=seconds,
            max_rss_bytes=usage.ru_maxrss * 1024,  # kilobytes on Linux
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def children_max_rss_bytes() -> int:
    """getrusage(RUSAGE_CHILDREN).ru_maxrss: the largest RSS of any child waited for so far."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# --- the import file ---------------------------------------------------------------------------

_WORDS = (  # noqa: SIM905 - a sentence is easier to read and edit than a list
    "the model answer question user data function value result example because however "
    "therefore first second finally return list string number error request response server "
    "database query index table column row python django code test performance memory time "
    "cost approach option simple complex important consider note step process system input "
    "output format parse file line read write update create delete check case edge handle "
    "exception loop variable class method object type integer float boolean dictionary key "
    "network latency cache thread process lock transaction commit rollback schema migration "
    "customer report summary analysis chart trend growth revenue quarter market risk policy "
    "history science energy climate water health patient treatment study evidence sample "
    "recipe flour sugar butter oven minutes travel city museum train ticket weather weekend "
    "café naïve résumé façade — “quoted” 東京 données über"
).split()
_MODELS = ("model-a-7b", "model-b-13b", "model-c-70b", "model-d-instruct", "model-e-chat")
_TOPICS = ("coding", "math", "writing", "advice", "science", "travel", "cooking", "history")


class _TextMaker:
    """Plausible English-ish text: sentences, lists and code, of a chosen length."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sentences = [self._sentence() for _ in range(4000)]

    def _sentence(self) -> str:
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(6, 22))]
        if self.rng.random() < 0.2:
            words.insert(self.rng.randrange(len(words)), str(self.rng.randint(2, 2026)))
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.rng.choice(".....?!:")

    def text(self, low: int, high: int) -> str:
        target = self.rng.randint(low, high)
        parts: list[str] = []
        size = 0
        while size < target:
            kind = self.rng.random()
            if kind < 0.1 and parts:
                items = self.rng.sample(self.sentences, 3)
                piece = "\n".join(f"- {s}" for s in items)
            elif kind < 0.15 and parts:
                name = self.rng.choice(_WORDS).replace("—", "x")
                piece = f"```python\ndef {name}(x):\n    return x * {self.rng.randint(2, 9)}\n```"
            else:
                piece = self.rng.choice(self.sentences)
            parts.append(piece)
            size += len(piece) + 1
        text = "\n\n".join(parts) if self.rng.random() < 0.5 else " ".join(parts)
        return text[:high].rstrip()


def write_prompts_jsonl(
    path: Path,
    prompts: int,
    candidates: int,
    *,
    seed: int = 1,
    candidate_chars: tuple[int, int] = (300, 800),
    prompt_chars: tuple[int, int] = (40, 600),
) -> int:
    """Writes `prompts` lines of `candidates` responses each; returns the file's size in bytes.

    A fifth of the prompts are chat conversations (a list of messages) rather than a string.
    """
    rng = random.Random(seed)
    maker = _TextMaker(rng)
    with path.open("w", encoding="utf-8") as out:
        for i in range(1, prompts + 1):
            prompt: Any
            if rng.random() < 0.2:
                prompt = [
                    {"role": "system", "content": maker.text(30, 120)},
                    {"role": "user", "content": maker.text(*prompt_chars)},
                ]
            else:
                prompt = maker.text(*prompt_chars)
            row = {
                "id": f"p-{i:07d}",
                "prompt": prompt,
                "candidates": [
                    {
                        "id": f"c{j}",
                        "text": maker.text(*candidate_chars),
                        "model": rng.choice(_MODELS),
                        "params": {
                            "temperature": round(rng.uniform(0, 1.2), 2),
                            "max_tokens": 1024,
                        },
                    }
                    for j in range(1, candidates + 1)
                ],
                "metadata": {"topic": rng.choice(_TOPICS), "source": "bench"},
            }
            out.write(json.dumps(row, ensure_ascii=False))
            out.write("\n")
    return path.stat().st_size


# --- seeding with COPY ------------------------------------------------------------------------


def copy_escape(text: str) -> str:
    """A value for COPY's text format (tab-separated, \\N for NULL)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# Zero values for NOT NULL columns this script does not know about (a field added since): COPY
# must name a value for each, since Django's field defaults are not database defaults.
_ZERO_BY_TYPE = {
    "smallint": "0",
    "integer": "0",
    "bigint": "0",
    "double precision": "0",
    "real": "0",
    "numeric": "0",
    "boolean": "f",
    "text": "",
    "character varying": "",
    "jsonb": "{}",
    "json": "{}",
    "timestamp with time zone": "now",
    "date": "today",
}


# Columns that copy one of the project's (the queue's partial indexes read Comparison.policy).
_FROM_THE_PROJECT = {("batches_comparison", "policy"): "policy"}


def unknown_columns(conn: psycopg.Connection, table: str, known: list[str]) -> list[str]:
    """NOT NULL columns without a database default that `known` does not list (and a warning)."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s AND is_nullable = 'NO' "
        "AND column_default IS NULL AND is_identity = 'NO' ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    extra = []
    for name, data_type in rows:
        if name in known:
            continue
        if (table, name) in _FROM_THE_PROJECT:
            # A copy of the project's column (every seeded database holds one project).
            row = conn.execute(
                f"SELECT {_FROM_THE_PROJECT[table, name]} FROM projects_project ORDER BY id LIMIT 1"  # noqa: S608
            ).fetchone()
            if row is None:
                raise BenchError(f"{table}.{name} copies the project's: create the project first")
            extra.append((name, row[0]))
            continue
        if data_type not in _ZERO_BY_TYPE:
            raise BenchError(
                f"{table}.{name} ({data_type}) is NOT NULL and the bench does not know it"
            )
        zero = _ZERO_BY_TYPE[data_type]
        print(f"  note: {table}.{name} is new to this script; seeded as {zero!r}")
        extra.append((name, _ZERO_BY_TYPE[data_type]))
    known.extend(name for name, _ in extra)
    return [value for _, value in extra]


def seed_connect(database: str) -> psycopg.Connection:
    """A connection for seeding a throwaway database by COPY: no per-row foreign-key triggers
    (the rows are made consistent by the generator) and no wait for the WAL flush."""
    conn = psycopg.connect(database)
    conn.execute("SET session_replication_role = replica")
    conn.execute("SET synchronous_commit = off")
    return conn


def copy_rows(
    conn: psycopg.Connection, table: str, columns: list[str], chunks: Iterator[list[str]]
) -> int:
    """COPYs rows given as lists of already escaped fields; appends unknown NOT NULL columns."""
    columns = list(columns)
    tail_values = unknown_columns(conn, table, columns)
    tail = "".join(f"\t{copy_escape(v)}" for v in tail_values)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in chunks:
            copy.write("".join(f"{row}{tail}\n" for row in chunk))
            count += len(chunk)
    return count


def text_pools(seed: int) -> tuple[list[str], list[str]]:
    """Pre-escaped prompt contents (JSON) and candidate texts, reused across rows."""
    maker = _TextMaker(random.Random(seed))
    prompts = []
    for i in range(1_000):
        content: Any
        if i % 5 == 0:  # a fifth are conversations, as in an import
            content = [
                {"role": "system", "content": maker.text(30, 120)},
                {"role": "user", "content": maker.text(40, 600)},
            ]
        else:
            content = maker.text(40, 600)
        prompts.append(copy_escape(json.dumps(content, ensure_ascii=False)))
    candidates = [copy_escape(maker.text(300, 800)) for _ in range(2_003)]
    return prompts, candidates


def parallel_copy(
    connect: Any, jobs: list[tuple[str, list[str], Iterator[list[str]]]]
) -> dict[str, float]:
    """Runs the COPY jobs at once, one connection each; returns when each table was loaded.

    PostgreSQL's side of COPY (parsing, heap, indexes) is the limit, and one backend uses one
    core: on 2 cores, four streams at once loaded 1M comparisons in 25-29 s, one after another
    in 39 s.
    """
    started = time.perf_counter()
    took: dict[str, float] = {}
    failures: list[BaseException] = []

    def load(table: str, columns: list[str], rows: Iterator[list[str]]) -> None:
        try:
            with connect() as conn:
                copy_rows(conn, table, columns, rows)
            took[table] = time.perf_counter() - started
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=load, args=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchError(f"seeding failed: {failures[0]!r}")
    return took


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn serving annotate.wsgi on a free loopback port, in its own process group."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 4,
        worker_class: str = "sync",
        threads: int = 4,
        extra: list[str] | None = None,
    ) -> None:
        self.env = env
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.extra = extra or []
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="annotate_bench_gunicorn_", suffix=".log", delete=False
        )

    @property
    def description(self) -> str:
        threads = f" --threads {self.threads}" if self.worker_class == "gthread" else ""
        return f"gunicorn -w {self.workers} -k {self.worker_class}{threads}"

    def start(self, wait: float = 30) -> None:
        self.port = free_port()
        cmd = [
            GUNICORN,
            "annotate.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            "--error-logfile",
            self._log.name,
            *self.extra,
        ]
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait_until_answering(wait)

    def _wait_until_answering(self, wait: float) -> None:
        import http.client

        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"gunicorn exited ({self.proc.returncode}):\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/api/v1/projects/")
                status = conn.getresponse().status
                if status < 500:  # 401/403 without a token: Django answers
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer within {wait:.0f} s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The master and its workers."""
        if self.proc is None:
            return []
        return [self.proc.pid, *child_pids(self.proc.pid)]

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> "Gunicorn":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- CPU accounting, from /proc ----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU of one process (all its threads), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def backend_pids(database: str) -> list[int]:
    """The PostgreSQL server processes serving `database` (not this query's own)."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def machine_busy_now(seconds: float = 1.0) -> float:
    """Cores busy over the next `seconds`, whoever uses them."""
    busy0, total0 = machine_cpu_ticks()
    time.sleep(seconds)
    busy1, total1 = machine_cpu_ticks()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class CpuMeter:
    """CPU used during a run by groups of processes, and by the whole machine."""

    def __init__(self) -> None:
        self.start: dict[str, dict[int, float]] = {}
        self.machine_start = (0, 0)

    @staticmethod
    def _snapshot(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for group, pids in groups.items():
            snap[group] = {}
            for pid in pids:
                seconds = process_cpu_seconds(pid)
                if seconds is not None:
                    snap[group][pid] = seconds
        return snap

    def begin(self, groups: dict[str, list[int]]) -> None:
        self.start = self._snapshot(groups)
        self.machine_start = machine_cpu_ticks()

    def end(self, groups: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
        """(machine busy fraction, CPU seconds per group) since begin()."""
        busy, total = machine_cpu_ticks()
        fraction = (busy - self.machine_start[0]) / max(1, total - self.machine_start[1])
        now = self._snapshot(groups)
        used = {
            group: sum(s - self.start.get(group, {}).get(pid, 0.0) for pid, s in pids.items())
            for group, pids in now.items()
        }
        return fraction, used


# The columns the benchmarks COPY into these tables (each script adds its own assignment and
# judgment columns: what it seeds differs).
BATCH_COLUMNS = [
    "id",
    "project_id",
    "name",
    "status",
    "priority",
    "annotator_cap",
    "prompt_count",
    "comparison_count",
    "errors",
    "created_at",
    "finished_at",
    "created_by_id",
]
PROMPT_COLUMNS = ["id", "project_id", "batch_id", "external_id", "content", "metadata"]
CANDIDATE_COLUMNS = ["id", "prompt_id", "external_id", "text", "model", "params", "metadata"]
COMPARISON_COLUMNS = [
    "id",
    "project_id",
    "batch_id",
    "prompt_id",
    "candidate_a_id",
    "candidate_b_id",
    "judgment_count",
    "lease_count",
    "complete",
    "rank",
    "votes_a",
    "votes_b",
    "votes_tie",
    "votes_both_bad",
    "split",
    "skip_count",
    "is_gold",
    "gold_answer",
]

SEEDED_TABLES = (
    "batches_batch",
    "batches_prompt",
    "batches_candidate",
    "batches_comparison",
    "judging_assignment",
    "judging_judgment",
)


def reset_sequences(conn: psycopg.Connection) -> None:
    """After COPY with explicit ids: each seeded table's id sequence starts after its rows, so
    that the app's own inserts do not collide with them. Commits."""
    for table in SEEDED_TABLES:
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({name}, 'id'), "
                "(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            ).format(name=sql.Literal(table), table=sql.Identifier(table))
        )
    conn.commit()
