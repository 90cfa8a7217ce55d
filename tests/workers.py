"""What the tests of a REAL Celery worker share: starting one on a queue of its own, reading its
log, and cleaning the queue out of Redis afterwards.

Each worker consumes a throwaway queue (CELERY_QUEUE), so that no other worker on the same Redis
takes the tests' tasks, and reads the test database that pytest-django created. Plain functions:
the fixtures that use them are conftest.py's (`worker` and `via_worker`: one worker for a test
module; `queue` and `workers`: a queue of a test's own, and the workers it starts and kills).
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from apps.projects.models import Project
from apps.projects.services import membership_add, project_create

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path
    queue: str

    def log(self, start: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the worker exited with {self.process.returncode}:\n{self.log()}")

    def wait_for_log(self, text: str, *, start: int = 0, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(start):
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not in the worker's log after {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def wait_ready(self) -> None:
        self.wait_for_log(" ready.", timeout=START_TIMEOUT)


def worker_database_url() -> str:
    """The URL of the database pytest-django created, for the worker's settings to read."""
    db = connection.settings_dict
    assert db["ENGINE"].endswith("postgresql")
    user = quote(str(db["USER"] or ""), safe="")
    password = quote(str(db["PASSWORD"] or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db["PORT"] else ""
    url = f"postgres://{credentials}{db['HOST'] or ''}{port}/{quote(str(db['NAME']), safe='')}"
    if db.get("OPTIONS"):
        url += "?" + urlencode({key: str(value) for key, value in db["OPTIONS"].items()})
    return url


def worker_start(queue: str, log_path: Path, *, name: str, **env: str) -> Worker:
    """Starts a worker process on `queue`, its output to `log_path`, without waiting for it to be
    ready (the caller first records it, so that it is stopped even if it never gets ready)."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotate.settings",
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "annotate",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=info",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    return Worker(process=process, log_path=log_path, queue=queue)


def start_worker(workers: list[Worker], queue: str, **env: str) -> Worker:
    """Starts one more worker on `queue` (the `queue` fixture's), recorded in `workers` (the
    fixture that stops them all), with EXPORT_ROOT and `env` set; returns it once ready."""
    log_path = Path(settings.EXPORT_ROOT).parent / f"worker-{len(workers)}.log"
    name = f"{queue}-{len(workers)}"
    env = {"EXPORT_ROOT": str(settings.EXPORT_ROOT), **env}  # a test may name its own
    worker = worker_start(queue, log_path, name=name, **env)
    workers.append(worker)
    worker.wait_ready()
    return worker


def kill(worker: Worker) -> None:
    """Kills the worker as a crash would (SIGKILL): it finishes nothing and acknowledges nothing."""
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=10)
    assert worker.process.returncode == -signal.SIGKILL


def forget_queue(queue: str) -> None:
    """Removes what kombu keeps in Redis for the throwaway queue."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys: list[str | bytes] = [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
        keys.extend(client.scan_iter(match=f"{queue}*"))
        client.delete(*keys)
    finally:
        client.close()


def lead_and_project(slug: str) -> tuple[User, Project]:
    """A committed project of overlap 3 and its lead, both named after `slug`."""
    lead = User.objects.create_user(f"lead-{slug}", password="pw-for-tests")
    project = project_create(slug=slug, name=slug.title(), created_by=lead, overlap=3)
    membership_add(project=project, user=lead, role="lead")
    return lead, project
