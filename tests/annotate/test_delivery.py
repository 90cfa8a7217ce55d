"""Delivery: the compose file, start-up refusal of unsafe settings, and DEBUG-off serving.

These tests start real processes (docker-compose, python, gunicorn) and need no database.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotate.settings import DEFAULT_SECRET_KEY
from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"postgres", "redis", "minio", "minio-bucket", "migrate", "web", "worker", "beat"}
ONE_SHOT = {"minio-bucket", "migrate"}  # run once and exit: no health check
APP_SERVICES = {"web", "worker", "beat"}

# Variables that settings read: the subprocesses below start from none of them.
SETTINGS_VARIABLES = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "DATABASE_CONN_MAX_AGE",
    "REDIS_URL",
    "CACHE_KEY_PREFIX",
    "CELERY_QUEUE",
    "STATIC_ROOT",
    "IMPORT_MAX_BYTES",
    "IMPORT_BACKGROUND_BYTES",
    "IMPORT_MAX_REPORTED_ERRORS",
    "LEASE_SECONDS_DEFAULT",
    "SECURE_COOKIES",
    "TRUST_X_FORWARDED_PROTO",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_COOLOFF_MINUTES",
    "TRUSTED_PROXY_COUNT",
    "LOG_LEVEL",
    "DJANGO_SETTINGS_MODULE",
    "EXPORT_ROOT",
    "EXPORT_STORAGE",
    "EXPORT_URL_EXPIRY",
    "EXPORT_S3_BUCKET",
    "EXPORT_S3_PREFIX",
    "EXPORT_S3_ENDPOINT_URL",
    "EXPORT_S3_PUBLIC_ENDPOINT_URL",
    "EXPORT_S3_REGION",
    "EXPORT_S3_ADDRESSING_STYLE",
    "EXPORT_S3_ACCESS_KEY_ID",
    "EXPORT_S3_SECRET_ACCESS_KEY",
}
REAL_KEY = "a-real-secret-key-for-tests-only-0123456789-abcdefghijklmnop"


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env.update(values)
    return env


# --- docker-compose.yml ---------------------------------------------------------------------

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not on PATH (CI installs Debian's docker-compose)",
)


def compose(
    tmp_path: Path, *args: str, secret_key: str | None = "x", minio_password: str | None = "x" * 12
) -> subprocess.CompletedProcess:
    """Runs docker-compose on our file, ignoring any .env and compose variables of the caller."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_COOKIES"}
        and not k.startswith(("COMPOSE_", "MINIO_", "EXPORT_"))
    }
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    if minio_password is not None:
        env["MINIO_ROOT_PASSWORD"] = minio_password
    return subprocess.run(
        [
            "docker-compose",
            "--env-file",
            str(empty_env_file),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def yaml_keys(text: str) -> dict[tuple[str, ...], str]:
    """The key paths of block-style YAML (as `docker-compose config` prints it) and their values.

    Not a YAML parser: list items and continuation lines are skipped. Enough to check the shape
    of the normalized config without PyYAML.
    """
    keys: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        match = re.fullmatch(r"([A-Za-z0-9_.-]+):(?: (.*))?", stripped)
        if not match:
            continue
        indent = len(line) - len(stripped)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(1)))
        value = (match.group(2) or "").strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        keys[tuple(key for _, key in stack)] = value
    return keys


@needs_compose
def test_it_accepts_the_compose_file(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr


@needs_compose
def test_it_refuses_the_compose_file_without_a_secret_key(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", "-q", secret_key=None)
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


@needs_compose
def test_it_refuses_the_compose_file_without_a_minio_password(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", "-q", minio_password=None)
    assert result.returncode != 0
    assert "Set MINIO_ROOT_PASSWORD" in result.stderr


@needs_compose
def test_it_runs_its_services_with_healthchecks_after_migrate(tmp_path: Path) -> None:
    result = compose(tmp_path, "config")
    assert result.returncode == 0, result.stderr
    keys = yaml_keys(result.stdout)
    services = {path[1] for path in keys if len(path) >= 2 and path[0] == "services"}
    assert services == SERVICES
    for service in SERVICES - ONE_SHOT:
        assert ("services", service, "healthcheck", "test") in keys, service
    for service in APP_SERVICES:
        for dependency in ("postgres", "redis"):
            condition = keys.get(("services", service, "depends_on", dependency, "condition"))
            assert condition == "service_healthy", (service, dependency)
        env = {
            path[-1]: value
            for path, value in keys.items()
            if path[:3] == ("services", service, "environment") and len(path) == 4
        }
        assert env["DEBUG"] == "false"
        assert env["SECRET_KEY"] == "x"
        assert env["DATABASE_URL"] == "postgres://annotate:annotate@postgres:5432/annotate"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["ALLOWED_HOSTS"] == "localhost,127.0.0.1"
        assert env["SECURE_COOKIES"] == "false"
        # Export files in MinIO's bucket, made before the app starts: no shared volume.
        assert env["EXPORT_STORAGE"] == "s3"
        assert env["EXPORT_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["EXPORT_S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"
        assert env["EXPORT_S3_BUCKET"] == "annotate-exports"
        assert env["EXPORT_S3_SECRET_ACCESS_KEY"] == "x" * 12
        for one_shot in ONE_SHOT:
            condition = keys.get(("services", service, "depends_on", one_shot, "condition"))
            assert condition == "service_completed_successfully", (service, one_shot)
        assert not any(path[:3] == ("services", service, "volumes") for path in keys), service
    assert keys[("services", "web", "image")] == keys[("services", "worker", "image")]
    # Migrations run once, before any app process starts, and only there (README "Deploying").
    assert keys[("services", "migrate", "image")] == keys[("services", "web", "image")]
    assert keys[("services", "migrate", "restart")] == "no"
    assert ("services", "migrate", "depends_on", "postgres", "condition") in keys
    assert ("services", "migrate", "depends_on", "migrate") not in keys
    assert ("services", "web", "ports") in keys
    assert ("volumes", "postgres-data") in keys
    assert ("volumes", "exports") not in keys
    assert keys[("services", "minio", "environment", "MINIO_ROOT_PASSWORD")] == "x" * 12


def test_it_reads_nested_yaml_keys() -> None:
    keys = yaml_keys(
        'services:\n  web:\n    command:\n    - a: b\n    environment:\n      DEBUG: "false"\n'
        "  db:\n    image: postgres:16\n"
    )
    assert keys[("services", "web", "environment", "DEBUG")] == "false"
    assert keys[("services", "db", "image")] == "postgres:16"
    assert ("services", "web", "a") not in keys


# --- settings refuse to start with unsafe or malformed values -------------------------------

SETUP = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; django.setup()"
)


def django_setup(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "secret_key",
    [None, "", DEFAULT_SECRET_KEY],
    ids=["unset", "empty", "development-default"],
)
def test_it_refuses_to_start_with_debug_off_and_no_secret_key(secret_key: str | None) -> None:
    env = {"DEBUG": "false"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    result = django_setup(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_it_starts_with_debug_off_and_a_real_secret_key() -> None:
    result = django_setup(DEBUG="false", SECRET_KEY=REAL_KEY)
    assert result.returncode == 0, result.stderr


def test_it_starts_with_no_configuration_at_all() -> None:
    result = django_setup()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false, not 'maybe'"),
        ("IMPORT_MAX_BYTES", "abc", "IMPORT_MAX_BYTES must be a whole number, not 'abc'"),
        ("IMPORT_MAX_BYTES", "0", "IMPORT_MAX_BYTES must be at least 1, not 0"),
        (
            "DASHBOARD_INLINE_MAX_JUDGMENTS",
            "many",
            "DASHBOARD_INLINE_MAX_JUDGMENTS must be a whole number, not 'many'",
        ),
        ("SECURE_COOKIES", "sometimes", "SECURE_COOKIES must be true or false"),
        ("DATABASE_URL", "mysql://db/annotate", "DATABASE_URL must start with postgres://"),
        ("REDIS_TIMEOUT", "soon", "REDIS_TIMEOUT must be a number of seconds, not 'soon'"),
        ("REDIS_TIMEOUT", "0", "REDIS_TIMEOUT must be at least 0.05"),
        ("REDIS_RETRY_SECONDS", "-1", "REDIS_RETRY_SECONDS must be at least 0"),
    ],
)
def test_it_stops_start_up_on_a_bad_value(name: str, value: str, message: str) -> None:
    result = django_setup(**{"DEBUG": "false", "SECRET_KEY": REAL_KEY, name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


# --- with DEBUG off, gunicorn serves the pages and the static files itself (whitenoise) -------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx itself is the answer


def fetch(
    url: str, headers: dict[str, str] | None = None, *, follow: bool = True
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310  # our own server
    opener = urllib.request.build_opener(*([] if follow else [_NoRedirect()]))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(
        DEBUG="false",
        SECRET_KEY=REAL_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'throwaway.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        # gunicorn 25.1+ opens a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn: keep it here.
        XDG_RUNTIME_DIR=str(tmp_path),
    )


@pytest.fixture
def gunicorn(tmp_path: Path, production_env: dict[str, str]) -> Iterator[str]:
    """A gunicorn serving the app with DEBUG off, after collectstatic; yields its base URL."""
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=production_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert collect.returncode == 0, collect.stderr
    with serving(production_env, tmp_path / "gunicorn.log", "--access-logfile", "-") as base:
        yield base


@contextlib.contextmanager
def serving(env: dict[str, str], log_path: Path, *options: str) -> Iterator[str]:
    """A gunicorn serving the app with `env` and `options`, on a free port, once it answers;
    yields its base URL, and stops it after (its log printed, which pytest shows on failure)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "annotate.wsgi:application"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*command, "--bind", f"127.0.0.1:{port}", "--workers", "1", *options],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()}")
            try:
                fetch(
                    f"{base}/accounts/login/", follow=False
                )  # any answer: a 301 with SSL redirect
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not answer within 60 s:\n{log_path.read_text()}")
                time.sleep(0.2)
        yield base
    finally:
        stop_process(server, timeout=15)
        print(f"--- gunicorn log ---\n{log_path.read_text(errors='replace')}")


def test_it_serves_static_files_and_pages_with_debug_off(
    gunicorn: str, production_env: dict[str, str]
) -> None:
    status, headers, body = fetch(f"{gunicorn}/static/css/annotate.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert body == (ROOT / "static" / "css" / "annotate.css").read_bytes()

    status, headers, _ = fetch(
        f"{gunicorn}/static/css/annotate.css", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers.get("Content-Encoding") == "gzip"  # compressed at collectstatic: whitenoise

    manifest = json.loads((Path(production_env["STATIC_ROOT"]) / "staticfiles.json").read_text())
    hashed = manifest["paths"]["css/annotate.css"]
    assert hashed != "css/annotate.css"
    status, headers, _ = fetch(f"{gunicorn}/static/{hashed}")
    assert status == 200
    assert "immutable" in headers.get("Cache-Control", "")

    status, headers, body = fetch(f"{gunicorn}/accounts/login/")
    assert status == 200
    assert "default-src 'self'" in headers.get("Content-Security-Policy", "")
    assert hashed.encode() in body  # pages link the hashed names

    status, _, _ = fetch(f"{gunicorn}/static/css/missing.css")
    assert status == 404
