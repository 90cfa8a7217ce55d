"""Settings for annotate, read from the environment only.

A fresh checkout runs with no configuration: SQLite, Celery eager, local-memory cache, DEBUG on.
Production sets DEBUG=false and then must set SECRET_KEY (and ALLOWED_HOSTS), or start-up stops.
"""

import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Django's classes are generic in its type stubs only (ModelAdmin[Project], ModelForm[Batch]): this
# lets a class say its type arguments at run time too, as mypy's strict mode asks.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def envseconds(name: str, default: float, minimum: float = 0.05) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}") from None
    if not number >= minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return number


def envrate(name: str, default: str) -> str:
    """A request rate as DRF's throttles read it, "<n>/<period>", or "" for no limit."""
    value = os.environ.get(name, default).strip()
    if value and not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(
            f"{name} must be a rate like 3000/min (per s, min, hour or day), not {value!r}"
        )
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] or default


def database_from_url(url: str) -> dict[str, object]:
    """Turn postgres://user:pass@host:port/name or sqlite:///path into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        return {
            # Django's, with a cheaper health check (annotate/postgresql/base.py).
            "ENGINE": "annotate.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": envint("DATABASE_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        return sqlite_database(path or str(BASE_DIR / "db.sqlite3"))
    raise ImproperlyConfigured(
        f"DATABASE_URL must start with postgres:// or sqlite:///, not {parsed.scheme!r}"
    )


def sqlite_database(path: str) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue instead of failing.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }


# A persistent PostgreSQL connection that served a request without an error less than this many
# seconds ago is reused without Django's health check (a SELECT 1 round trip before each
# request); 0: checked every time (annotate/postgresql/base.py).
DATABASE_HEALTH_CHECK_AFTER = envseconds("DATABASE_HEALTH_CHECK_AFTER", 5.0, minimum=0)

DEBUG = envbool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
if not DEBUG and SECRET_KEY in {DEFAULT_SECRET_KEY, ""}:
    raise ImproperlyConfigured(
        "SECRET_KEY is unset or the development default while DEBUG is off. "
        "Set SECRET_KEY to a long random value (python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))')."
    )
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "annotate.apps.AnnotateAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "apps.projects",
    "apps.accounts",
    "apps.batches",
    "apps.judging",
    "apps.agreement",
    "apps.exports",
    "apps.dashboard",
    "apps.audit",
    "apps.endpoints",
    "apps.generation",
    "apps.judges",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Under /api/: JSON errors, and NUL, chunked and oversized bodies refused before any view.
    "annotate.middleware.ApiErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "annotate.middleware.ContentSecurityPolicyMiddleware",
    "annotate.middleware.DatabaseErrorMiddleware",
    # Last, as django-axes asks: it turns a login refused for lockout into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "annotate.urls"
WSGI_APPLICATION = "annotate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "annotate.context_processors.navigation",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
DATABASES = {
    "default": database_from_url(DATABASE_URL)
    if DATABASE_URL
    else sqlite_database(str(BASE_DIR / "db.sqlite3"))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "").strip()
# How long one call to Redis (connect, or a command) may take before it counts as failed. Redis
# answers in a millisecond; the bound is for when it is gone, so that the cache fails open and a
# task that cannot be sent is refused (503) quickly instead of holding the request.
REDIS_TIMEOUT = envseconds("REDIS_TIMEOUT", 0.5)
# After a failed call, a process leaves Redis alone for this long (the cache answers "empty" at
# once), then tries again.
REDIS_RETRY_SECONDS = envseconds("REDIS_RETRY_SECONDS", 2.0, minimum=0)


def cache_settings(redis_url: str) -> dict[str, dict[str, object]]:
    """The Django cache: Redis, failing open (annotate/cache.py), or local memory without it."""
    if not redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "annotate.cache.FailOpenRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "annotate"),
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }


CACHES = cache_settings(REDIS_URL)

# Celery: a real broker when REDIS_URL is set, otherwise tasks run in-process (eager).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Sending a task must fail fast when Redis is gone (annotate/broker.py answers 503): Celery's
# defaults retry the broker and the result store for about 19 s. One quick retry is kept, for a
# pooled connection that Redis closed when it restarted.
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": REDIS_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.1,
}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_TIMEOUT
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_TIMEOUT
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": CELERY_TASK_PUBLISH_RETRY_POLICY}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "annotate")
# The project dashboards: the beat job recomputes their figures this often; the page polls.
DASHBOARD_REFRESH_SECONDS = envint("DASHBOARD_REFRESH_SECONDS", 30, minimum=5)
DASHBOARD_POLL_SECONDS = envint("DASHBOARD_POLL_SECONDS", 30, minimum=1)
# Above this many judgments, a project's first view asks the worker for its figures instead of
# computing them in the request (about 1 s per 10,000 judgments), and the page says so.
DASHBOARD_INLINE_MAX_JUDGMENTS = envint("DASHBOARD_INLINE_MAX_JUDGMENTS", 20_000)
# The queue's upkeep (apps/judging/queue/upkeep.py): every QUEUE_VACUUM_SECONDS the beat job
# VACUUMs each queue table (comparisons, assignments) that has QUEUE_VACUUM_MIN_DEAD dead rows (or
# as many inserted since its last VACUUM), so that the pick does not slow down between
# autovacuum's rounds (or without them). 0: no job.
QUEUE_VACUUM_SECONDS = envint("QUEUE_VACUUM_SECONDS", 15)
QUEUE_VACUUM_MIN_DEAD = envint("QUEUE_VACUUM_MIN_DEAD", 1000)
# The judging page's stored renderings (apps/judging/rendering.py) are a cache: the beat job
# `prune-renderings` deletes, once a day, those stored more than this many days ago (a text
# still shown is rendered again). 0: kept for ever (no job).
RENDERINGS_MAX_AGE_DAYS = envint("RENDERINGS_MAX_AGE_DAYS", 30)
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {
        "task": "apps.judging.tasks.leases_reclaim_expired_task",
        "schedule": 60.0,
    },
    "vacuum-queue": {
        "task": "apps.judging.tasks.queue_vacuum_task",
        "schedule": float(QUEUE_VACUUM_SECONDS),
        # A round still queued when the next is due (a busy worker) is dropped, not run twice.
        "options": {"expires": float(QUEUE_VACUUM_SECONDS or 1)},
    },
    "refresh-dashboards": {
        "task": "apps.dashboard.tasks.dashboards_refresh_task",
        "schedule": float(DASHBOARD_REFRESH_SECONDS),
    },
    "sweep-exports": {
        "task": "apps.exports.tasks.exports_sweep_task",
        "schedule": 60.0,
    },
    "sweep-imports": {
        "task": "apps.batches.tasks.imports_sweep_task",
        "schedule": 60.0,
    },
    "sweep-policy-follows": {
        "task": "apps.batches.tasks.policy_follows_sweep_task",
        "schedule": 60.0,
    },
    "check-references": {
        "task": "apps.batches.tasks.references_check_task",
        "schedule": 86400.0,
    },
    "sweep-generations": {
        "task": "apps.generation.tasks.generation_sweep_task",
        "schedule": 60.0,
    },
    "sweep-judgings": {
        "task": "apps.judges.tasks.judging_sweep_task",
        "schedule": 60.0,
    },
    "prune-renderings": {
        "task": "apps.judging.tasks.renderings_prune_task",
        "schedule": 86400.0,
        "options": {"expires": 3600.0},
    },
}
if not QUEUE_VACUUM_SECONDS:
    del CELERY_BEAT_SCHEDULE["vacuum-queue"]
if not RENDERINGS_MAX_AGE_DAYS:
    del CELERY_BEAT_SCHEDULE["prune-renderings"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Password guessing (django-axes, annotate/login_lockout.py): LOGIN_FAILURE_LIMIT wrong
# passwords in a row for one username from one client address lock that pair out for
# LOGIN_COOLOFF_MINUTES (429 with Retry-After; a try during the lock starts the wait again); a
# right password before the limit starts the count again. Keyed on the username AND the address,
# so that an attacker cannot lock a user out from everywhere, nor one address all its users.
# The attempts are rows in the database (no Redis needed). Behind reverse proxies, set
# TRUSTED_PROXY_COUNT so that the address is the client's, not the proxy's.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_COOLOFF_MINUTES = envint("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "annotate.login_lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "annotate.login_lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Annotator accounts get a one-time link to set their password (valid this long, in seconds).
# The admin shows it to the lead; with ACCOUNT_LINKS_BY_EMAIL it is also mailed through
# Django's email backend (EMAIL_HOST, EMAIL_PORT, ... from the environment).
PASSWORD_RESET_TIMEOUT = envint("PASSWORD_RESET_TIMEOUT", 7 * 24 * 3600, minimum=60)
ACCOUNT_LINKS_BY_EMAIL = envbool("ACCOUNT_LINKS_BY_EMAIL", False)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "annotate@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotate.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        # DRF's, refusing what PostgreSQL cannot store with a 400 naming the field.
        "annotate.parsers.StorableJSONParser",
        "annotate.parsers.StorableMultiPartParser",
    ],
    # `format` is our export parameter (format=trl), not DRF's renderer switch.
    "URL_FORMAT_OVERRIDE": None,
    "EXCEPTION_HANDLER": "annotate.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["annotate.api.TokenRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema (/api/schema/) and its docs page (/api/docs/), served from our own origin.
SPECTACULAR_SETTINGS = {
    "TITLE": "annotate API",
    "DESCRIPTION": (
        "Human preferences between model responses: projects, batches, the annotators' queue, "
        "judgments and exports. Authenticate with `Authorization: Token <key>` (or the "
        'browser\'s session). Errors are `{"detail": ...}`, or per-field lists for bad '
        'parameters, or `{"errors": [{"line", "error"}]}` for a bad import file.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Generation and AI judging jobs share one set of statuses.
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "apps.generation.models.JobStatus"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "annotate.schema.describe_path_parameters",
        "annotate.schema.declare_errors",
    ],
}
# Requests one API token may make per period ("<n>/<sec|min|hour|day>"; empty: no limit).
API_TOKEN_RATE = envrate("API_TOKEN_RATE", "3000/min")

# Uploads: files above IMPORT_BACKGROUND_BYTES are imported by a Celery task (202 + status).
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", 256 * 1024 * 1024, minimum=1)
IMPORT_BACKGROUND_BYTES = envint("IMPORT_BACKGROUND_BYTES", 2 * 1024 * 1024)
IMPORT_MAX_REPORTED_ERRORS = envint("IMPORT_MAX_REPORTED_ERRORS", 1000, minimum=1)
# Background imports (apps/batches/services.py): a run writes a heartbeat as it checks the file.
# The beat sweep re-sends an import still waiting for a worker after IMPORT_STALE_AFTER seconds
# (its message was lost), and re-queues one whose heartbeat is that old (its worker died), up to
# IMPORT_MAX_ATTEMPTS runs in all, then marks it failed.
IMPORT_STALE_AFTER = envint("IMPORT_STALE_AFTER", 300, minimum=1)
IMPORT_MAX_ATTEMPTS = envint("IMPORT_MAX_ATTEMPTS", 3, minimum=1)
# A change of a project's policy (or overlap, stopping, audit sample) is applied to its
# comparisons in the change's transaction for up to POLICY_FOLLOW_INLINE of them; above that,
# after the change commits, by a task, in chunks of POLICY_FOLLOW_CHUNK ids (each its own short
# transaction). The beat sweep sends the task again for a change left unfollowed
# POLICY_FOLLOW_STALE_AFTER seconds (apps.batches.policy_follow).
POLICY_FOLLOW_INLINE = envint("POLICY_FOLLOW_INLINE", 10_000, minimum=0)
POLICY_FOLLOW_CHUNK = envint("POLICY_FOLLOW_CHUNK", 10_000, minimum=1)
POLICY_FOLLOW_STALE_AFTER = envint("POLICY_FOLLOW_STALE_AFTER", 300, minimum=1)
# Generation jobs (apps.generation): a run writes its heartbeat about once a second; the beat
# sweep re-queues a running job whose heartbeat is GENERATION_STALE_AFTER seconds old (its worker
# died), GENERATION_MAX_ATTEMPTS runs in all, then stops it saying why (it can be resumed).
GENERATION_STALE_AFTER = envint("GENERATION_STALE_AFTER", 60, minimum=1)
GENERATION_MAX_ATTEMPTS = envint("GENERATION_MAX_ATTEMPTS", 5, minimum=1)
# A test hook only: milliseconds a background import sleeps at each progress write, so that a
# test can kill a worker mid-import. Always 0 in real use.
IMPORT_TEST_DELAY_MS = envint("IMPORT_TEST_DELAY_MS", 0)
# The longest prompt, message or candidate text an import accepts, in characters.
IMPORT_MAX_TEXT_CHARS = envint("IMPORT_MAX_TEXT_CHARS", 200_000, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10000

# Background exports (apps/exports/jobs.py): files are written under EXPORT_ROOT (not served as
# static or media: they download through the API's authorized link) and deleted after EXPORT_TTL
# seconds. A running export whose heartbeat is older than EXPORT_STALE_AFTER seconds is re-queued,
# up to EXPORT_MAX_ATTEMPTS runs in all, then marked failed.
# Where the files live: the "exports" storage (apps/exports/storage.py). EXPORT_STORAGE=local
# (the default): the folder EXPORT_ROOT, which web, worker and beat must share (one volume).
# EXPORT_STORAGE=s3: an S3-compatible bucket, so that they may run on different hosts; EXPORT_ROOT
# is then each worker's scratch folder. Downloads are then redirects to signed links valid for
# EXPORT_URL_EXPIRY seconds. Credentials: EXPORT_S3_ACCESS_KEY_ID and EXPORT_S3_SECRET_ACCESS_KEY,
# or, unset, boto3's own chain (AWS_* variables, an instance or task role).
EXPORT_ROOT = Path(os.environ.get("EXPORT_ROOT", str(BASE_DIR / "var" / "exports")))
EXPORT_STORAGE = os.environ.get("EXPORT_STORAGE", "").strip().lower() or "local"
EXPORT_URL_EXPIRY = envint("EXPORT_URL_EXPIRY", 300, minimum=1)
if EXPORT_URL_EXPIRY > 7 * 24 * 3600:
    raise ImproperlyConfigured(
        f"EXPORT_URL_EXPIRY must be at most 604800 (7 days, S3's limit), not {EXPORT_URL_EXPIRY}"
    )
if EXPORT_STORAGE == "local":
    STORAGES["exports"] = {"BACKEND": "apps.exports.storage.ExportFolderStorage"}
elif EXPORT_STORAGE == "s3":
    _bucket = os.environ.get("EXPORT_S3_BUCKET", "").strip()
    if not _bucket:
        raise ImproperlyConfigured("EXPORT_STORAGE=s3 needs EXPORT_S3_BUCKET (the bucket's name)")
    _key_id = os.environ.get("EXPORT_S3_ACCESS_KEY_ID", "").strip()
    _secret = os.environ.get("EXPORT_S3_SECRET_ACCESS_KEY", "").strip()
    if bool(_key_id) != bool(_secret):
        raise ImproperlyConfigured(
            "Set both EXPORT_S3_ACCESS_KEY_ID and EXPORT_S3_SECRET_ACCESS_KEY, or neither "
            "(then boto3 finds credentials itself)"
        )
    _addressing = os.environ.get("EXPORT_S3_ADDRESSING_STYLE", "").strip().lower() or None
    if _addressing not in (None, "auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"EXPORT_S3_ADDRESSING_STYLE must be auto, path or virtual, not {_addressing!r}"
        )
    STORAGES["exports"] = {
        "BACKEND": "apps.exports.s3.ExportS3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            "location": os.environ.get("EXPORT_S3_PREFIX", "").strip().strip("/"),
            "endpoint_url": os.environ.get("EXPORT_S3_ENDPOINT_URL", "").strip() or None,
            "public_endpoint_url": (
                os.environ.get("EXPORT_S3_PUBLIC_ENDPOINT_URL", "").strip() or None
            ),
            "region_name": os.environ.get("EXPORT_S3_REGION", "").strip() or None,
            "addressing_style": _addressing,
            "access_key": _key_id or None,
            "secret_key": _secret or None,
            "querystring_auth": True,
            "querystring_expire": EXPORT_URL_EXPIRY,
            "default_acl": None,
            "file_overwrite": True,
        },
    }
else:
    raise ImproperlyConfigured(f"EXPORT_STORAGE must be local or s3, not {EXPORT_STORAGE!r}")
EXPORT_TTL = envint("EXPORT_TTL", 7 * 24 * 3600, minimum=1)
EXPORT_STALE_AFTER = envint("EXPORT_STALE_AFTER", 300, minimum=1)
EXPORT_MAX_ATTEMPTS = envint("EXPORT_MAX_ATTEMPTS", 3, minimum=1)
# Progress and heartbeat are written every EXPORT_PROGRESS_ROWS rows; Parquet row groups hold
# EXPORT_PARQUET_ROW_GROUP rows.
EXPORT_PROGRESS_ROWS = envint("EXPORT_PROGRESS_ROWS", 1000, minimum=1)
EXPORT_PARQUET_ROW_GROUP = envint("EXPORT_PARQUET_ROW_GROUP", 10000, minimum=1)
# Exports name the `since` of the next incremental pull (header X-Next-Since): this many seconds
# before the export started, so that a judgment stamped before it but committed after it is not
# missed (apps/exports/cursor.py).
EXPORT_SINCE_SETTLE = envint("EXPORT_SINCE_SETTLE", 60, minimum=0)
# A test hook only: milliseconds a background export sleeps at each progress write, so that a
# test can kill a worker mid-export. Always 0 in real use.
EXPORT_TEST_DELAY_MS = envint("EXPORT_TEST_DELAY_MS", 0)

# Leases: how long an annotator holds a comparison before it returns to the pool.
LEASE_SECONDS_DEFAULT = envint("LEASE_SECONDS_DEFAULT", 600, minimum=10)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# HTTPS (README "Logins, HTTPS and deployment checks"): off unless set, so that plain-HTTP
# set-ups keep working; the documented HTTPS set-up passes `manage.py check --deploy`.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
if (SECURE_HSTS_INCLUDE_SUBDOMAINS or SECURE_HSTS_PRELOAD) and not SECURE_HSTS_SECONDS:
    raise ImproperlyConfigured(
        "SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_PRELOAD need SECURE_HSTS_SECONDS "
        "(e.g. 31536000): without it no HSTS header is sent"
    )
if SECURE_HSTS_PRELOAD and (SECURE_HSTS_SECONDS < 31536000 or not SECURE_HSTS_INCLUDE_SUBDOMAINS):
    raise ImproperlyConfigured(
        "SECURE_HSTS_PRELOAD needs SECURE_HSTS_SECONDS of at least 31536000 (a year) and "
        "SECURE_HSTS_INCLUDE_SUBDOMAINS=true, as browsers' preload lists require"
    )
if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = envbool("SECURE_COOKIES", True)
    # Only a proxy that sets the header itself may be trusted to say the request was HTTPS.
    if envbool("TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Model endpoints (apps/endpoints): an endpoint names the environment variable that holds its API
# key, and that name must start with this prefix, so that whoever registers an endpoint cannot
# have the server send another secret of its environment to an address of their choosing.
ENDPOINT_KEY_ENV_PREFIX = os.environ.get("ENDPOINT_KEY_ENV_PREFIX", "").strip() or "ANNOTATE_KEY_"
