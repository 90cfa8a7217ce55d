"""The OpenAPI schema (/api/schema/) describes every endpoint and parameter, and is valid."""

import re
from io import StringIO

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_api_endpoint_is_in_the_schema(schema):
    from annotate import urls

    api = {str(p.pattern) for p in urls.api_v1}
    documented = {path.removeprefix("/api/v1/") for path in schema["paths"]}
    expected = {re.sub(r"<(?:int|slug):(\w+)>", r"{\1}", pattern) for pattern in api}
    assert expected == documented


def test_every_operation_and_parameter_is_described(schema):
    for path, method, operation in operations(schema):
        assert operation.get("summary"), f"{method} {path} has no summary"
        assert operation.get("description"), f"{method} {path} has no description"
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), f"{method} {path}: {parameter['name']}"
        assert operation.get("responses"), f"{method} {path} has no responses"


def test_the_schema_and_the_docs_page_are_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"annotate API" in response.content
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html.replace("<script src=", "")  # no inline script: CSP holds
    assert "cdn" not in html.lower()  # assets from our own origin


def test_refusals_of_a_judgment_are_described(schema):
    """403 when the annotator may no longer act on the lease; 409 carries the stored judgment
    when the idempotency key was used with another answer."""
    judge = schema["paths"]["/api/v1/assignments/{assignment_id}/judgment/"]["post"]
    skip = schema["paths"]["/api/v1/assignments/{assignment_id}/skip/"]["post"]
    undo = schema["paths"]["/api/v1/projects/{slug}/judgments/undo/"]["post"]
    assert {"403", "409"} <= set(judge["responses"]) & set(skip["responses"])
    assert "403" in undo["responses"]
    conflict = judge["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    properties = schema["components"]["schemas"][conflict.rsplit("/", 1)[1]]["properties"]
    assert {"detail", "judgment"} <= set(properties)
