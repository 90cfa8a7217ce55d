"""The documented HTTPS set-up (README.md, "Logins, HTTPS and deployment checks"): Django's
deployment checks pass with exactly its lines, the compose file passes them on, and gunicorn
then redirects plain HTTP and sends HSTS. Real processes; no database."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.annotate.test_delivery import (  # noqa: F401  # gunicorn is a fixture used by name
    REAL_KEY,
    ROOT,
    clean_env,
    django_setup,
    fetch,
    gunicorn,
    needs_compose,
    yaml_keys,
)

SECTION = "### Logins, HTTPS and deployment checks"


def documented_https_env() -> dict[str, str]:
    """The KEY=value lines of the README's HTTPS block, as an operator would copy them."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = next(
        b for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL) if "SECURE_HSTS" in b
    )
    lines = [line for line in block.splitlines() if line.strip()]
    env = dict(line.split("=", 1) for line in lines)
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "TRUST_X_FORWARDED_PROTO"} <= set(env)
    return env


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            # The browser tests' switch (tests/e2e/conftest.py), which check --deploy rejects.
            k: v
            for k, v in clean_env(DEBUG="false", SECRET_KEY=REAL_KEY, **env).items()
            if k != "DJANGO_ALLOW_ASYNC_UNSAFE"
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_documented_https_setup_passes_the_deployment_checks() -> None:
    result = check_deploy(**documented_https_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_it_the_deployment_checks_warn() -> None:
    result = check_deploy(ALLOWED_HOSTS="annotate.example.com")
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECURE_SSL_REDIRECT": "sure"}, "SECURE_SSL_REDIRECT must be true or false"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS must be a whole number"),
        ({"SECURE_HSTS_SECONDS": "-1"}, "SECURE_HSTS_SECONDS must be at least 0"),
        ({"SECURE_HSTS_PRELOAD": "true"}, "need SECURE_HSTS_SECONDS"),
        (
            {
                "SECURE_HSTS_SECONDS": "3600",
                "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
                "SECURE_HSTS_PRELOAD": "true",
            },
            "SECURE_HSTS_PRELOAD needs SECURE_HSTS_SECONDS of at least 31536000",
        ),
        ({"LOGIN_FAILURE_LIMIT": "0"}, "LOGIN_FAILURE_LIMIT must be at least 1, not 0"),
        ({"LOGIN_COOLOFF_MINUTES": "soon"}, "LOGIN_COOLOFF_MINUTES must be a whole number"),
        ({"TRUSTED_PROXY_COUNT": "one"}, "TRUSTED_PROXY_COUNT must be a whole number"),
    ],
)
def test_a_bad_https_or_login_value_stops_start_up(env: dict[str, str], message: str) -> None:
    result = django_setup(DEBUG="false", SECRET_KEY=REAL_KEY, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_the_login_settings_come_from_the_environment() -> None:
    show = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; "
        "django.setup(); from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.TRUSTED_PROXY_COUNT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", show],
        cwd=ROOT,
        env=clean_env(LOGIN_FAILURE_LIMIT="4", LOGIN_COOLOFF_MINUTES="2", TRUSTED_PROXY_COUNT="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "120.0", "1"]


@needs_compose
def test_the_compose_file_passes_the_https_lines_on(tmp_path: Path) -> None:
    documented = documented_https_env()
    env_file = tmp_path / "https.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in documented.items()))
    result = subprocess.run(
        [
            "docker-compose",
            "--env-file",
            str(env_file),
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
        ],
        env={
            k: v
            for k, v in clean_env(SECRET_KEY="x", MINIO_ROOT_PASSWORD="x" * 12).items()
            if k not in documented
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    keys = yaml_keys(result.stdout)
    for service in ("web", "worker", "beat"):
        for name, value in documented.items():
            assert keys[("services", service, "environment", name)] == value, (service, name)


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    """The gunicorn fixture's environment (tests/annotate/test_delivery.py), with HTTPS lines."""
    return clean_env(
        DEBUG="false",
        SECRET_KEY=REAL_KEY,
        DATABASE_URL=f"sqlite:///{tmp_path / 'throwaway.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        XDG_RUNTIME_DIR=str(tmp_path),
        **{**documented_https_env(), "ALLOWED_HOSTS": "127.0.0.1"},
    )


def test_gunicorn_redirects_plain_http_and_sends_hsts(gunicorn: str) -> None:  # noqa: F811
    status, headers, _ = fetch(f"{gunicorn}/accounts/login/", follow=False)
    assert status == 301
    assert headers["Location"] == gunicorn.replace("http://", "https://") + "/accounts/login/"
    # Through the TLS proxy (which says so in X-Forwarded-Proto), as the web health check asks.
    status, headers, _ = fetch(f"{gunicorn}/accounts/login/", {"X-Forwarded-Proto": "https"})
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "Secure" in headers["Set-Cookie"]


def test_the_web_health_check_passes_against_the_https_setup(gunicorn: str) -> None:  # noqa: F811
    """The compose file's own health-check command, pointed at this gunicorn, exits 0."""
    compose = (ROOT / "docker-compose.yml").read_text()
    command = re.search(r"- >-\n((?:          .*\n)+)", compose)
    assert command is not None, "the web health check's python command"
    code = " ".join(line.strip() for line in command.group(1).splitlines())
    assert "/healthz" in code
    code = code.replace("http://localhost:8000", gunicorn)
    env = {"PATH": "/usr/bin:/bin", "ALLOWED_HOSTS": "127.0.0.1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
