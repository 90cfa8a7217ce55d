"""Background export files on S3 (EXPORT_STORAGE=s3): against a real S3-compatible HTTP server,
moto's server mode, started here as a process of its own on a free loopback port.

The files land in the bucket (not in EXPORT_ROOT); the download is a redirect, minted after the
permission check, to a signed link that works and expires; the sweep deletes from the bucket; a
missing bucket or an S3 that does not answer fails the job with the reason. The last test is "a
worker on another host": a real Celery worker whose EXPORT_ROOT is another empty folder writes
the export, and this process (the web side) serves it from the bucket.

moto accepts a signed link without checking its signature or its expiry, so the expiry is
checked as S3 checks it: `s3_accepts` recomputes the link's signature with the secret key for
its own X-Amz-Date and X-Amz-Expires (a link whose expiry was altered no longer matches), then
compares the time.
"""

import hashlib
import io
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pyarrow.parquet as pq
import pytest
import requests
from botocore.config import Config
from django.conf import settings
from django.utils import timezone

from apps.exports.jobs import export_jobs_sweep
from apps.exports.models import ExportJob, ExportStatus
from tests.annotate.test_delivery import ROOT, django_setup, free_port
from tests.conftest import api_client_for, stop_process
from tests.exports.test_jobs import _streamed, voted  # noqa: F401  # a fixture by name

JOBS = "/api/v1/projects/demo/exports/"
KEY_ID = "test-key-id"
SECRET = "test-secret-key"  # moto takes any; the signature check below uses it
REGION = "us-east-1"


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server, a real HTTP server in a process of its own."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # moto imports much: slow on a loaded machine
    while True:
        try:
            # Its first answer loads moto's backends: seconds on a loaded machine.
            requests.get(endpoint, timeout=30)
            break
        except (requests.ConnectionError, requests.Timeout):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process, timeout=5)
                pytest.fail(f"moto_server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        stop_process(process, timeout=10)


def _options(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    """The "exports" storage as settings.py makes it from EXPORT_STORAGE=s3 and the rest."""
    return {
        "BACKEND": "apps.exports.s3.ExportS3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "region_name": REGION,
            "addressing_style": "path",
            "access_key": KEY_ID,
            "secret_key": SECRET,
            "location": "exports",
            "querystring_expire": 300,
            "max_attempts": 1,
            "connect_timeout": 2,
            **extra,
        },
    }


@pytest.fixture
def bucket(settings: Any, s3_endpoint: str, tmp_path: Path) -> Any:
    """A fresh bucket, and the exports storage on it; EXPORT_ROOT (the web side's) is empty."""
    name = f"exports-{uuid.uuid4().hex[:12]}"
    client = _client(s3_endpoint)
    client.create_bucket(Bucket=name)
    settings.STORAGES = {**settings.STORAGES, "exports": _options(s3_endpoint, name)}
    settings.EXPORT_ROOT = tmp_path / "web-scratch"
    settings.EXPORT_URL_EXPIRY = 300

    class Bucket:
        def __init__(self) -> None:
            self.name, self.client, self.endpoint = name, client, s3_endpoint

        def keys(self) -> list[str]:
            listed = client.list_objects_v2(Bucket=name)
            return sorted(item["Key"] for item in listed.get("Contents", []))

        def get(self, key: str) -> Any:
            return client.get_object(Bucket=name, Key=key)

    return Bucket()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def s3_accepts(url: str, now: datetime) -> bool:
    """Whether S3 would serve this signed link at `now`: its signature, recomputed with the
    secret key for the link's own date and expiry, matches, and the expiry has not passed."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = int(query["X-Amz-Expires"])
    bucket, key = parts.path.lstrip("/").split("/", 1)
    params = {"Bucket": bucket, "Key": urllib.parse.unquote(key)}
    for name in ("response-content-type", "response-content-disposition"):
        if name in query:
            params["Response" + "".join(w.title() for w in name.split("-")[1:])] = query[name]
    saved = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: signed_at.replace(tzinfo=None)
    try:
        again = _client(f"{parts.scheme}://{parts.netloc}").generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires
        )
    finally:
        botocore.auth.get_current_datetime = saved
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(again).query))
    if signature["X-Amz-Signature"] != query["X-Amz-Signature"]:
        return False
    return now < signed_at + timedelta(seconds=expires)


def _export(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post(JOBS, body, format="json")
    assert response.status_code == 202, response.content
    return dict(response.json())


def test_a_job_s_files_land_in_the_bucket_not_in_export_root(api, bob, voted, bucket):  # noqa: F811
    client = api(bob)
    job = _export(client, format="trl")
    assert job["status"] == "done", job
    assert bucket.keys() == [
        f"exports/export-{job['id']}.card.md",
        f"exports/export-{job['id']}.jsonl",
    ]
    assert _files(Path(settings.EXPORT_ROOT)) == []  # no file, no leftover temporary file
    stored = bucket.get(f"exports/export-{job['id']}.jsonl")
    assert stored["ContentType"] == "application/jsonl"
    data = stored["Body"].read()
    assert data == _streamed(client, "trl", {})
    assert job["file_size"] == len(data)
    card = bucket.get(f"exports/export-{job['id']}.card.md")
    assert card["ContentType"].startswith("text/markdown")
    assert card["Body"].read().decode().startswith("# Demo: preference data")


def test_the_download_redirects_to_a_signed_link_that_works(api, bob, voted, bucket):  # noqa: F811
    client = api(bob)
    job = _export(client, format="trl", file_format="parquet")
    response = client.get(job["download"], HTTP_ACCEPT="application/vnd.apache.parquet")
    assert response.status_code == 302, response.content
    assert response["Cache-Control"] == "no-store"
    url = response["Location"]
    assert url.startswith(f"{bucket.endpoint}/{bucket.name}/exports/export-{job['id']}.parquet?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["X-Amz-Expires"] == "300"
    assert s3_accepts(url, datetime.now(UTC))
    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert fetched.headers["Content-Disposition"] == (
        f'attachment; filename="demo-trl-{job["id"]}.parquet"'
    )
    table = pq.read_table(io.BytesIO(fetched.content))
    assert table.num_rows == job["rows_written"] > 0

    card = client.get(job["card"], HTTP_ACCEPT="text/markdown")
    assert card.status_code == 302
    fetched = requests.get(card["Location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == bucket.get(f"exports/export-{job['id']}.card.md")["Body"].read()


def test_the_signed_link_expires(api, bob, voted, bucket, settings):  # noqa: F811
    settings.EXPORT_URL_EXPIRY = 1
    client = api(bob)
    job = _export(client, format="arena")
    url = client.get(job["download"])["Location"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["X-Amz-Expires"] == "1"
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 5  # signed now
    assert s3_accepts(url, signed_at)
    assert not s3_accepts(url, signed_at + timedelta(seconds=1))
    time.sleep(max(0.0, (signed_at + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))
    assert not s3_accepts(url, datetime.now(UTC))
    # A link whose expiry was stretched no longer carries a valid signature.
    stretched = url.replace("X-Amz-Expires=1&", "X-Amz-Expires=3600&")
    assert stretched != url
    assert not s3_accepts(stretched, datetime.now(UTC))
    # A new request mints a new link.
    assert s3_accepts(client.get(job["download"])["Location"], datetime.now(UTC))


def test_no_link_is_minted_without_the_permission(api, bob, charlie, annotators, voted, bucket):  # noqa: F811
    job = _export(api(bob), format="trl")
    for user in (charlie, annotators[0], None):
        for link in (job["download"], job["card"]):
            response = api(user).get(link, HTTP_ACCEPT="application/jsonl, text/markdown")
            assert response.status_code in (401, 403, 404), (user, response.status_code)
            assert "Location" not in response
            assert bucket.name not in response.content.decode()


def test_the_sweep_deletes_expired_files_from_the_bucket(api, bob, voted, bucket):  # noqa: F811
    client = api(bob)
    kept = _export(client, format="trl")
    gone = _export(client, format="kto")
    assert len(bucket.keys()) == 4
    ExportJob.objects.filter(pk=gone["id"]).update(expires_at=timezone.now() - timedelta(1))
    assert client.get(gone["download"]).status_code == 410  # past its time, before the sweep
    assert export_jobs_sweep()["expired"] == 1
    assert bucket.keys() == [
        f"exports/export-{kept['id']}.card.md",
        f"exports/export-{kept['id']}.jsonl",
    ]
    assert ExportJob.objects.get(pk=gone["id"]).status == ExportStatus.EXPIRED
    assert client.get(gone["download"]).status_code == 410
    assert client.get(kept["download"]).status_code == 302


def test_a_sweep_that_cannot_reach_s3_keeps_the_job_for_the_next(
    api,
    bob,
    voted,  # noqa: F811
    bucket,
    settings,
):
    client = api(bob)
    job = _export(client, format="trl")
    ExportJob.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(1))
    closed = f"http://127.0.0.1:{free_port()}"
    settings.STORAGES = {**settings.STORAGES, "exports": _options(closed, bucket.name)}
    assert export_jobs_sweep()["expired"] == 0
    assert ExportJob.objects.get(pk=job["id"]).status == ExportStatus.DONE
    settings.STORAGES = {**settings.STORAGES, "exports": _options(bucket.endpoint, bucket.name)}
    assert export_jobs_sweep()["expired"] == 1
    assert bucket.keys() == []


def test_a_missing_bucket_fails_the_job_with_the_reason(api, bob, voted, bucket, settings):  # noqa: F811
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": _options(bucket.endpoint, "no-such-bucket-here"),
    }
    job = _export(api(bob), format="trl")
    assert job["status"] == "failed", job
    assert job["error"].startswith(
        "export storage: the bucket 'no-such-bucket-here' does not exist"
    )
    assert bucket.endpoint in job["error"]
    assert job["download"] is None
    assert _files(Path(settings.EXPORT_ROOT)) == []


def test_an_s3_that_does_not_answer_fails_the_job_and_the_download_says_503(
    api,
    bob,
    voted,  # noqa: F811
    bucket,
    settings,
):
    client = api(bob)
    done = _export(client, format="trl")
    closed = f"http://127.0.0.1:{free_port()}"
    settings.STORAGES = {**settings.STORAGES, "exports": _options(closed, bucket.name)}
    started = time.monotonic()
    job = _export(client, format="trl")
    assert time.monotonic() - started < 30
    assert job["status"] == "failed", job
    assert job["error"].startswith(f"export storage: S3 at {closed} cannot be reached")
    response = client.get(done["download"])
    assert response.status_code == 503
    assert "cannot be reached" in response.json()["detail"]


def test_a_public_endpoint_signs_links_for_the_outside(api, bob, voted, bucket, settings):  # noqa: F811
    """In docker-compose.yml the processes reach MinIO at http://minio:9000, browsers at
    http://localhost:9000: the link names (and is signed for) the latter."""
    public = bucket.endpoint.replace("127.0.0.1", "localhost")
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": _options(bucket.endpoint, bucket.name, public_endpoint_url=public),
    }
    client = api(bob)
    job = _export(client, format="trl")
    url = client.get(job["download"])["Location"]
    assert url.startswith(f"{public}/{bucket.name}/")
    assert s3_accepts(url, datetime.now(UTC))
    assert requests.get(url, timeout=10).content == _streamed(client, "trl", {})


# --- the download views take the types they document (any storage) ----------------------------


@pytest.fixture
def local(settings: Any, tmp_path: Path) -> None:
    settings.EXPORT_ROOT = tmp_path / "exports"


@pytest.mark.parametrize(
    ("file_format", "accept", "status"),
    [
        ("parquet", "application/vnd.apache.parquet", 200),
        ("parquet", "application/vnd.apache.parquet;q=0.9, application/json;q=0.5", 200),
        ("jsonl", "application/jsonl", 200),
        ("jsonl", "application/*", 200),
        ("jsonl", "*/*", 200),
        ("jsonl", "application/json", 200),  # as it always was
        ("jsonl", "application/vnd.apache.parquet", 406),
        ("parquet", "application/jsonl", 406),
        ("jsonl", "image/png", 406),
    ],
)
def test_the_download_answers_the_accept_header(
    api,
    bob,
    voted,  # noqa: F811
    local,
    file_format,
    accept,
    status,
):
    client = api(bob)
    job = _export(client, format="trl", file_format=file_format)
    response = client.get(job["download"], HTTP_ACCEPT=accept)
    assert response.status_code == status, getattr(response, "content", b"")
    if status == 200:
        assert response["Content-Type"] == (
            "application/jsonl" if file_format == "jsonl" else "application/vnd.apache.parquet"
        )
        assert b"".join(response.streaming_content)
    else:
        assert response["Content-Type"] == "application/json"
        assert response.json()["detail"]


@pytest.mark.parametrize(
    ("accept", "status"), [("text/markdown", 200), ("text/*", 200), ("image/png", 406)]
)
def test_the_card_answers_the_accept_header(api, bob, voted, local, accept, status):  # noqa: F811
    client = api(bob)
    job = _export(client, format="trl")
    response = client.get(job["card"], HTTP_ACCEPT=accept)
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"] == "text/markdown; charset=utf-8"


def test_an_accept_header_does_not_open_the_door(api, charlie, bob, voted, local):  # noqa: F811
    job = _export(api(bob), format="trl", file_format="parquet")
    response = api(charlie).get(job["download"], HTTP_ACCEPT="application/vnd.apache.parquet")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


# --- settings ---------------------------------------------------------------------------------

S3_ENV = {"EXPORT_STORAGE": "s3", "EXPORT_S3_BUCKET": "exports"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXPORT_STORAGE": "ftp"}, "EXPORT_STORAGE must be local or s3, not 'ftp'"),
        ({"EXPORT_STORAGE": "s3"}, "EXPORT_STORAGE=s3 needs EXPORT_S3_BUCKET"),
        (
            {**S3_ENV, "EXPORT_S3_ACCESS_KEY_ID": "id"},
            "Set both EXPORT_S3_ACCESS_KEY_ID and EXPORT_S3_SECRET_ACCESS_KEY, or neither",
        ),
        (
            {**S3_ENV, "EXPORT_S3_ADDRESSING_STYLE": "sideways"},
            "EXPORT_S3_ADDRESSING_STYLE must be auto, path or virtual",
        ),
        ({"EXPORT_URL_EXPIRY": "0"}, "EXPORT_URL_EXPIRY must be at least 1, not 0"),
        ({"EXPORT_URL_EXPIRY": "604801"}, "EXPORT_URL_EXPIRY must be at most 604800"),
        ({"EXPORT_URL_EXPIRY": "soon"}, "EXPORT_URL_EXPIRY must be a whole number"),
    ],
)
def test_a_bad_export_storage_setting_stops_start_up(env: dict[str, str], message: str) -> None:
    result = django_setup(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_the_s3_storage_comes_from_the_environment() -> None:
    show = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'annotate.settings'; "
        "django.setup(); from apps.exports.storage import export_storage; s = export_storage(); "
        "print(type(s).__name__, s.bucket_name, s.location, s.endpoint_url, "
        "s.public_endpoint_url, s.region_name, s.addressing_style, s.access_key, "
        "s.querystring_expire)"
    )
    env = {
        **S3_ENV,
        "EXPORT_S3_PREFIX": "/annotate/",
        "EXPORT_S3_ENDPOINT_URL": "http://minio:9000",
        "EXPORT_S3_PUBLIC_ENDPOINT_URL": "http://localhost:9000",
        "EXPORT_S3_REGION": "eu-west-1",
        "EXPORT_S3_ADDRESSING_STYLE": "path",
        "EXPORT_S3_ACCESS_KEY_ID": "id",
        "EXPORT_S3_SECRET_ACCESS_KEY": "secret",
        "EXPORT_URL_EXPIRY": "120",
    }
    from tests.annotate.test_delivery import clean_env

    result = subprocess.run(
        [sys.executable, "-c", show],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "ExportS3Storage",
        "exports",
        "annotate",
        "http://minio:9000",
        "http://localhost:9000",
        "eu-west-1",
        "path",
        "id",
        "120",
    ]
    local = subprocess.run(
        [sys.executable, "-c", show.split("; print(")[0] + "; print(type(s).__name__)"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert local.stdout.split() == ["ExportFolderStorage"], local.stderr


# --- a worker on another host -----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL=redis://...")
def test_a_worker_on_another_host_writes_to_s3_and_the_web_serves_it(
    queue: str,
    workers: list[Any],
    bucket: Any,
    tmp_path: Path,
) -> None:
    """A real Celery worker whose EXPORT_ROOT is another empty folder (nothing shared with this
    process but PostgreSQL, Redis and the bucket) writes the export; this process, the web side,
    answers the download from the bucket."""
    from tests.exports.test_worker import ROWS, job_when, judged_project
    from tests.workers import start_worker

    worker_root = tmp_path / "worker-host"
    web_root = tmp_path / "web-host"
    settings.EXPORT_ROOT = web_root
    lead, project = judged_project("s3-host")
    client = api_client_for(lead)
    worker = start_worker(
        workers,
        queue,
        EXPORT_ROOT=str(worker_root),
        EXPORT_STORAGE="s3",
        EXPORT_S3_BUCKET=bucket.name,
        EXPORT_S3_PREFIX="exports",
        EXPORT_S3_ENDPOINT_URL=bucket.endpoint,
        EXPORT_S3_REGION=REGION,
        EXPORT_S3_ADDRESSING_STYLE="path",
        EXPORT_S3_ACCESS_KEY_ID=KEY_ID,
        EXPORT_S3_SECRET_ACCESS_KEY=SECRET,
    )
    jobs = f"/api/v1/projects/{project.slug}/exports/"
    jsonl = client.post(jobs, {"format": "judgments"}, format="json")
    parquet = client.post(jobs, {"format": "judgments", "file_format": "parquet"}, format="json")
    assert jsonl.status_code == parquet.status_code == 202, (jsonl.content, parquet.content)
    assert jsonl.json()["status"] == "queued"  # not run here: the worker does it

    ended = lambda job: job["status"] not in ("queued", "running")  # noqa: E731
    first = job_when(client, jsonl.json()["url"], ended, worker)
    second = job_when(client, parquet.json()["url"], ended, worker)
    assert first["status"] == second["status"] == "done", (first, second)
    assert bucket.keys() == sorted(
        f"exports/export-{job['id']}.{suffix}"
        for job in (first, second)
        for suffix in ("card.md", "jsonl" if job is first else "parquet")
    )
    assert _files(web_root) == []  # nothing written on the web side
    assert _files(worker_root) == []  # and the worker's temporary files are gone
    assert "Task apps.exports.tasks.export_job_task[" in worker.log()

    response = client.get(first["download"])
    assert response.status_code == 302
    fetched = requests.get(response["Location"], timeout=10)
    assert fetched.status_code == 200
    streamed: Any = client.get(f"/api/v1/projects/{project.slug}/export/", {"format": "judgments"})
    assert fetched.content == b"".join(streamed.streaming_content)
    assert len(fetched.content.splitlines()) == ROWS

    response = client.get(second["download"], HTTP_ACCEPT="application/vnd.apache.parquet")
    assert response.status_code == 302
    fetched = requests.get(response["Location"], timeout=10)
    table = pq.read_table(io.BytesIO(fetched.content))
    assert table.num_rows == ROWS
    assert second["sha256"] == hashlib.sha256(fetched.content).hexdigest()
