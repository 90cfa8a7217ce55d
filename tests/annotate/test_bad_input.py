"""Bad input under /api/ is a 4xx naming what is wrong, in JSON, never a 500 (issue 11)."""

import json
import socket

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.audit.models import AuditEvent
from apps.batches.models import Batch
from apps.exports.models import ExportJob
from tests.annotate.test_delivery import gunicorn, production_env  # noqa: F401  # fixtures
from tests.conftest import jsonl, prompt_line

BASE = "/api/v1/projects/demo"


# --- NUL characters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/export/?format=trl&criterion=%00", "criterion"),
        ("/export/?format=trl&since=%00", "since"),
        ("/export/?format=trl&models=%00", "models"),
        ("/export/?format=card&models=a%00b", "models"),
        ("/judgments/?since=2026-01-01T00:00:00Z%00", "since"),
        ("/comparisons/?batch=1%00", "batch"),
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(api, bob, batch, path, name):
    response = api(bob).get(f"{BASE}{path}")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert name in response.json()
    assert "NUL" in response.json()[name][0]


def test_a_nul_in_a_batch_name_is_a_400_and_nothing_is_imported(api, bob, project):
    response = api(bob).post(
        f"{BASE}/batches/?name=a%00b", jsonl(prompt_line("a")), content_type="application/jsonl"
    )
    assert response.status_code == 400
    assert "name" in response.json()
    assert not Batch.objects.exists()


def test_a_nul_in_a_multipart_field_or_file_name_is_a_400_naming_it(api, bob, project):
    upload = SimpleUploadedFile("f.jsonl", jsonl(prompt_line("a")))
    response = api(bob).post(f"{BASE}/batches/", {"file": upload, "name": "a\x00b"})
    assert response.status_code == 400
    assert response.json() == {"name": ["Must not contain a NUL character (\\u0000)."]}
    assert not Batch.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{"format": "trl", "models": "\u0000"}, {"format": "trl", "criterion": "a\u0000"}],
)
def test_a_nul_in_an_export_jobs_parameter_is_a_400_and_no_job(api, bob, batch, body):
    response = api(bob).post(f"{BASE}/exports/", body, format="json")
    assert response.status_code == 400, response.content
    (name,) = set(body) - {"format"}
    assert "NUL" in response.json()[name][0]
    assert not ExportJob.objects.exists()


def test_a_nul_or_a_lone_surrogate_in_a_json_body_is_a_400(api, bob, project):
    client = api(bob)
    response = client.post(
        f"{BASE}/members/",
        b'{"username": "ann\\u0000", "role": "annotator"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "NUL" in response.json()["username"][0]
    response = client.post(
        f"{BASE}/members/",
        b'{"username": "\\ud800", "role": "annotator"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "surrogate" in response.json()["username"][0]


# --- non-finite numbers -----------------------------------------------------------------------


def test_a_non_finite_number_in_an_import_is_a_400_with_its_line(api, bob, project):
    good = json.dumps(prompt_line("a"))
    bad = json.dumps(prompt_line("b", metadata={"score": 1.5})).replace("1.5", "1e999")
    response = api(bob).post(f"{BASE}/batches/", jsonl(good, bad), content_type="application/jsonl")
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert error["line"] == 2
    assert "1e999" in error["error"]
    assert not Batch.objects.filter(status="active").exists()


def test_a_non_finite_number_in_a_json_body_is_a_400(api, bob, batch):
    response = api(bob).post(
        f"{BASE}/exports/",
        b'{"format": "trl", "min_agreement": 1e999}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "min_agreement" in response.json()
    assert not ExportJob.objects.exists()


# --- body size --------------------------------------------------------------------------------


def test_a_multipart_file_over_the_limit_is_a_413(api, bob, project, settings):
    settings.IMPORT_MAX_BYTES = 100_000
    upload = SimpleUploadedFile("big.jsonl", b"x" * 200_000)
    response = api(bob).post(f"{BASE}/batches/", {"file": upload})
    assert response.status_code == 413
    assert "100000" in response.json()["detail"]
    assert not Batch.objects.exists()


def test_a_multipart_file_just_over_the_limit_is_a_413_too(api, bob, project, settings):
    # Within multipart's framing allowance of the Content-Length check: the view checks the file.
    settings.IMPORT_MAX_BYTES = 100
    upload = SimpleUploadedFile("big.jsonl", jsonl(prompt_line("a", n=5)))
    response = api(bob).post(f"{BASE}/batches/", {"file": upload})
    assert response.status_code == 413
    assert not Batch.objects.exists()


def test_the_content_length_is_refused_before_the_body_is_read(api, bob, project, settings):
    settings.IMPORT_MAX_BYTES = 1000
    response = api(bob).post(
        f"{BASE}/batches/",
        jsonl(prompt_line("a")),
        content_type="application/jsonl",
        CONTENT_LENGTH="5000",
    )
    assert response.status_code == 413
    assert "IMPORT_MAX_BYTES" in response.json()["detail"]
    # Other endpoints: DATA_UPLOAD_MAX_MEMORY_SIZE, as a 413 too rather than Django's 400.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = api(bob).post(f"{BASE}/exports/", {"format": "trl", "x": "y" * 200}, format="json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_real_server_refuses_chunked_and_oversized_uploads_without_reading_them(
    gunicorn,  # noqa: F811
):
    data = jsonl(prompt_line("a"))
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
    answer = raw_request(
        gunicorn,
        f"POST {BASE}/batches/ HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/jsonl\n"
        "Transfer-Encoding: chunked\nConnection: close\n",
        chunked,
    )
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 411 " in status_line, answer
    assert b"Content-Length" in rest.split(b"\r\n\r\n")[1] or b"chunked" in rest

    # A body announced far over IMPORT_MAX_BYTES and never sent: answered at once.
    answer = raw_request(
        gunicorn,
        f"POST {BASE}/batches/ HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/jsonl\n"
        f"Content-Length: {10**12}\nConnection: close\n",
    )
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert "IMPORT_MAX_BYTES" in body["detail"]


# --- every answer under /api/ is JSON ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/v1/projects/not a slug/batches/",
        "/api/v1/batches/null/",
        "/api/nothing/",
    ],
)
def test_an_unknown_api_path_is_a_json_404(api, bob, path):
    response = api(bob).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "No API endpoint" in response.json()["detail"]


def test_a_wrong_method_is_a_json_405(api, bob, project):
    response = api(bob).delete(f"{BASE}/batches/")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_pages_outside_the_api_keep_their_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- the export audit -------------------------------------------------------------------------


def test_the_export_audit_records_validated_parameters_only(api, bob, batch):
    client = api(bob)
    assert client.get(f"{BASE}/export/?format=trl&aggregate=nope").status_code == 400
    assert client.get(f"{BASE}/export/?format=nope").status_code == 400
    assert not AuditEvent.objects.filter(action="export").exists()
    response = client.get(f"{BASE}/export/?format=trl&min_votes=1")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    (event,) = AuditEvent.objects.filter(action="export")
    assert event.details == {"format": "trl", "min_votes": "1"}
    assert client.get(f"{BASE}/export/").status_code == 200
    assert AuditEvent.objects.filter(action="export").order_by("pk").last().details == {
        "format": "trl"
    }


# --- what the schema says is what the API does ------------------------------------------------


@pytest.mark.parametrize("value", ["null", "0", "-5", "1001", "²", "1.5"])
def test_a_bad_page_size_is_a_400_not_ignored(api, bob, batch, value):
    response = api(bob).get(f"{BASE}/comparisons/?page_size={value}")
    assert response.status_code == 400
    assert response.json() == {"page_size": ["Must be a whole number from 1 to 1000."]}


@pytest.mark.parametrize("path", ["/comparisons/?batch=-1", "/stats/?batch=²"])
def test_a_bad_batch_is_a_400(api, bob, batch, path):
    response = api(bob).get(f"{BASE}{path}")
    assert response.status_code == 400
    assert "batch" in response.json()


def test_an_empty_since_on_judgments_is_a_400(api, bob, batch):
    response = api(bob).get(f"{BASE}/judgments/?since=")
    assert response.status_code == 400
    assert "since" in response.json()


def test_an_export_job_body_that_is_not_an_object_is_a_detail(api, bob, batch):
    response = api(bob).post(f"{BASE}/exports/", [1, 2], format="json")
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


@pytest.fixture
def openapi(client):
    import yaml

    return yaml.safe_load(client.get("/api/schema/").content)


def test_the_schema_declares_bounds_and_nulls(openapi):
    job = openapi["components"]["schemas"]["ExportJob"]["properties"]
    for name in ("download", "card", "next_since"):
        assert job[name].get("nullable") is True, name
    undone = openapi["components"]["schemas"]["UndoneOut"]["properties"]["id"]
    assert undone.get("nullable") is True
    comparisons = openapi["paths"]["/api/v1/projects/{slug}/comparisons/"]["get"]
    parameters = {p["name"]: p["schema"] for p in comparisons["parameters"]}
    assert parameters["page_size"]["minimum"] == 1
    assert parameters["page_size"]["maximum"] == 1000
    assert parameters["batch"]["minimum"] == 0
    export = openapi["paths"]["/api/v1/projects/{slug}/export/"]["get"]
    parameters = {p["name"]: p["schema"] for p in export["parameters"]}
    assert (parameters["min_votes"]["minimum"], parameters["min_votes"]["maximum"]) == (1, 1000)
    assert parameters["min_agreement"]["maximum"] == 1


def test_the_schema_declares_every_error_answer(openapi):
    error = openapi["components"]["schemas"]["ErrorOut"]
    assert "additionalProperties" in error  # per-parameter lists of messages
    assert "detail" not in error.get("required", [])
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "403", "429"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            queried = any(p["in"] == "query" for p in operation.get("parameters", []))
            if queried or "requestBody" in operation:
                assert "400" in responses, (method, path)
    batches = openapi["paths"]["/api/v1/projects/{slug}/batches/"]["post"]["responses"]
    assert "413" in batches
