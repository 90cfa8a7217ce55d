"""Registering, changing, deleting and testing model endpoints in the admin, and what the rules
refuse: a lead for their own projects only, shared endpoints for staff, no key but from an
allowed environment variable, no metadata address; each action audited, the key never shown."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from annotate.errors import BadRequest, Forbidden
from apps.audit.models import AuditEvent
from apps.endpoints.models import ModelEndpoint
from apps.endpoints.services import (
    endpoint_delete,
    endpoint_problems,
    endpoint_save,
    endpoint_test,
)
from apps.projects.models import Project
from tests.conftest import events
from tests.endpoints.fake_llm import FakeLLM, Fault

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/endpoints/modelendpoint/add/"
KEY = "sk-very-secret-123"


def form(project: Project | None, **changes: Any) -> dict[str, str]:
    data = {
        "name": "local vllm",
        "project": str(project.pk) if project is not None else "",
        "base_url": "http://127.0.0.1:8001/v1",
        "model": "fake-model",
        "key_env": "ANNOTATE_KEY_TEST",
        "max_concurrency": "4",
        "requests_per_minute": "",
        "timeout_seconds": "30",
        "max_retries": "2",
        "input_price": "0.5",
        "output_price": "1.5",
    }
    data.update(changes)
    return data


def endpoint_of(project: Project | None, by: User, **fields: Any) -> ModelEndpoint:
    values: dict[str, Any] = {
        "name": "judge",
        "project": project,
        "base_url": "http://127.0.0.1:9/v1",
        "model": "fake-model",
    }
    values.update(fields)
    return endpoint_save(ModelEndpoint(**values), by=by)


@pytest.mark.parametrize(
    ("key_env", "message"),
    [
        ("SECRET_KEY", "must start with ANNOTATE_KEY_"),
        ("DATABASE_URL", "must start with ANNOTATE_KEY_"),
        ("ANNOTATE_KEY_", "must start with ANNOTATE_KEY_"),
        ("annotate_key_x", "capital letters"),
        ("ANNOTATE_KEY_X; rm", "capital letters"),
    ],
)
def test_a_key_variable_outside_the_prefix_is_refused(key_env: str, message: str) -> None:
    problems = endpoint_problems(base_url="https://api.example.com/v1", key_env=key_env)
    assert message in problems["key_env"]


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://example.com/v1", "http:// or https://"),
        ("http:///v1", "http:// or https://"),
        ("https://user:pw@example.com/v1", "No user or password"),
        ("https://example.com/v1?key=x", "before any ? or #"),
        ("http://169.254.169.254/latest", "metadata"),
        ("http://[fe80::1]/v1", "metadata"),
        ("http://metadata.google.internal/v1", "metadata"),
    ],
)
def test_a_bad_address_is_refused(base_url: str, message: str) -> None:
    problems = endpoint_problems(base_url=base_url, key_env="")
    assert message in problems["base_url"]


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:11434/v1", "http://vllm:8000/v1", "https://api.openai.com/v1"],
)
def test_ordinary_addresses_are_accepted(base_url: str) -> None:
    assert endpoint_problems(base_url=base_url, key_env="ANNOTATE_KEY_OPENAI") == {}


def test_the_prefix_is_a_setting(settings: Any) -> None:
    settings.ENDPOINT_KEY_ENV_PREFIX = "LLM_"
    assert endpoint_problems(base_url="http://x/v1", key_env="LLM_OPENAI") == {}
    assert "key_env" in endpoint_problems(base_url="http://x/v1", key_env="ANNOTATE_KEY_A")


def test_a_lead_registers_an_endpoint_for_their_project(
    lead: Client, bob: User, project: Project
) -> None:
    response = lead.post(ADD_URL, form(project))
    assert response.status_code == 302, response.content.decode()[:3000]
    endpoint = ModelEndpoint.objects.get()
    assert endpoint.project == project
    assert endpoint.created_by == bob
    [event] = events("endpoint_created")
    assert event.actor == bob
    assert event.project == project
    assert event.details["key_env"] == "ANNOTATE_KEY_TEST"
    assert event.details["project"] == "demo"


def test_a_service_name_of_the_local_network_is_an_address(lead: Client, project: Project) -> None:
    response = lead.post(ADD_URL, form(project, base_url="http://vllm:8000/v1"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ModelEndpoint.objects.get().base_url == "http://vllm:8000/v1"


def test_a_lead_cannot_register_one_for_another_project_nor_a_shared_one(
    lead: Client, other: Project
) -> None:
    response = lead.post(ADD_URL, form(other))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    response = lead.post(ADD_URL, form(None))
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not ModelEndpoint.objects.exists()
    assert not events("endpoint_created")


def test_the_form_refuses_a_secret_of_the_servers_environment(
    lead: Client, project: Project
) -> None:
    response = lead.post(ADD_URL, form(project, key_env="SECRET_KEY"))
    assert response.status_code == 200
    assert "must start with ANNOTATE_KEY_" in response.content.decode()
    response = lead.post(ADD_URL, form(project, base_url="http://169.254.169.254/v1"))
    assert response.status_code == 200
    assert "metadata" in response.content.decode()
    assert not ModelEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrency", "0"),
        ("max_concurrency", "257"),
        ("timeout_seconds", "0.5"),
        ("max_retries", "11"),
        ("input_price", "-1"),
        ("requests_per_minute", "0"),
        ("max_concurrency", "many"),
        ("name", ""),
        ("model", ""),
    ],
)
def test_out_of_range_values_are_form_errors(
    lead: Client, project: Project, field: str, value: str
) -> None:
    response = lead.post(ADD_URL, form(project, **{field: value}))
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not ModelEndpoint.objects.exists()


def test_staff_registers_a_shared_endpoint_and_a_lead_neither_sees_nor_changes_it(
    client: Client, lead: Client, alice: User, bob: User, project: Project
) -> None:
    shared = endpoint_of(None, alice, name="shared judge")
    mine = endpoint_of(project, bob, name="mine")
    listing = lead.get("/admin/endpoints/modelendpoint/").content.decode()
    assert "mine" in listing
    assert "shared judge" not in listing
    page = lead.get(f"/admin/endpoints/modelendpoint/{shared.pk}/change/")
    assert page.status_code == 302  # the admin's "does not exist" redirect
    response = lead.post(
        f"/admin/endpoints/modelendpoint/{shared.pk}/change/", form(project, name="taken")
    )
    assert response.status_code == 302
    shared.refresh_from_db()
    assert shared.name == "shared judge"
    with pytest.raises(Forbidden):
        endpoint_save(shared, by=bob)
    with pytest.raises(Forbidden):
        endpoint_delete(shared, by=bob)
    mine.project = None
    with pytest.raises(Forbidden):  # nor move their own to everyone
        endpoint_save(mine, by=bob)


def test_a_lead_of_another_project_cannot_touch_it(
    make_user: Any, alice: User, bob: User, project: Project, other: Project
) -> None:
    endpoint = endpoint_of(project, bob)
    dora = User.objects.get(username="dora")
    with pytest.raises(Forbidden):
        endpoint_save(endpoint, by=dora)
    with pytest.raises(Forbidden):
        endpoint_test(endpoint, by=dora)
    with pytest.raises(Forbidden):
        endpoint_delete(endpoint, by=dora)
    annotator = project.memberships.filter(role="annotator").first()
    assert annotator is not None
    with pytest.raises(Forbidden):
        endpoint_save(
            ModelEndpoint(name="x", project=project, base_url="http://x/v1", model="m"),
            by=annotator.user,
        )
    assert ModelEndpoint.objects.count() == 1


def test_a_change_is_audited_with_what_changed(lead: Client, bob: User, project: Project) -> None:
    endpoint = endpoint_of(project, bob)
    response = lead.post(
        f"/admin/endpoints/modelendpoint/{endpoint.pk}/change/",
        form(project, name="judge", base_url=endpoint.base_url, max_concurrency="8"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    [event] = events("endpoint_changed")
    assert event.details["max_concurrency"] == {"old": 4, "new": 8}
    assert "name" not in event.details


def test_the_service_refuses_what_the_form_does(bob: User, project: Project) -> None:
    with pytest.raises(BadRequest, match="ANNOTATE_KEY_"):
        endpoint_of(project, bob, key_env="SECRET_KEY")
    assert not ModelEndpoint.objects.exists()


def test_deleting_is_audited(lead: Client, bob: User, project: Project) -> None:
    endpoint = endpoint_of(project, bob)
    response = lead.post(f"/admin/endpoints/modelendpoint/{endpoint.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ModelEndpoint.objects.exists()
    [event] = events("endpoint_deleted")
    assert event.actor == bob


def test_test_connection_reports_success_and_never_shows_the_key(
    lead: Client, bob: User, project: Project, llm: FakeLLM, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ANNOTATE_KEY_TEST", KEY)
    endpoint = endpoint_of(project, bob, base_url=llm.url, key_env="ANNOTATE_KEY_TEST")
    change = f"/admin/endpoints/modelendpoint/{endpoint.pk}/change/"
    assert "Test connection" in lead.get(change).content.decode()
    response = lead.post(f"/admin/endpoints/modelendpoint/{endpoint.pk}/test/", follow=True)
    page = response.content.decode()
    assert "answered in" in page
    assert "listed by the server" in page
    assert KEY not in page
    assert llm.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    [event] = events("endpoint_tested")
    assert event.details["ok"] is True
    assert KEY not in str(AuditEvent.objects.values_list("details", flat=True)[::1])


def test_test_connection_says_what_failed(
    lead: Client, bob: User, project: Project, llm: FakeLLM, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANNOTATE_KEY_TEST", raising=False)
    endpoint = endpoint_of(project, bob, base_url=llm.url, key_env="ANNOTATE_KEY_TEST")
    url = f"/admin/endpoints/modelendpoint/{endpoint.pk}/test/"
    page = lead.post(url, follow=True).content.decode()
    assert "ANNOTATE_KEY_TEST is not set" in page
    assert llm.requests == []
    monkeypatch.setenv("ANNOTATE_KEY_TEST", KEY)
    llm.fail_next(Fault(status=500, body=b"<html>internal admin console</html>"))
    page = lead.post(url, follow=True).content.decode()
    assert "/models failed: http_500: HTTP 500" in page
    assert "internal admin console" not in page
    assert [e.details["ok"] for e in events("endpoint_tested")] == [False, False]


def test_test_connection_is_a_post(lead: Client, bob: User, project: Project) -> None:
    endpoint = endpoint_of(project, bob)
    assert lead.get(f"/admin/endpoints/modelendpoint/{endpoint.pk}/test/").status_code == 405


def test_an_annotator_has_no_admin_for_endpoints(client: Client, project: Project) -> None:
    annotator = project.memberships.filter(role="annotator").first()
    assert annotator is not None
    client.force_login(annotator.user)
    response = client.get("/admin/endpoints/modelendpoint/")
    assert response.status_code == 302
    assert "/login" in response["Location"]
