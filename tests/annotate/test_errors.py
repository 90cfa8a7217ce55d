"""One ApplicationError base (annotate.errors), mapped to HTTP in one place (annotate.api).

Every error a service raises for its caller to show subclasses it, with the status it means;
the API answers that status with {"detail": message} for each, through one generic branch of
the exception handler, which therefore imports no app's exceptions.
"""

import ast
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

import annotate
import apps
from annotate.errors import (
    ApplicationError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from apps.batches.models import Batch
from apps.exports.jobs import NotCancellable
from apps.projects.models import Membership, Project
from tests.annotate.test_outages import dead_broker  # noqa: F401 - a fixture
from tests.conftest import jsonl

ROOT = Path(__file__).resolve().parents[2]
NEXT = "/api/v1/projects/demo/assignments/next/"
# Modules that are not code to import in a test process (settings read the environment; the
# servers' entry points build an application).
NOT_IMPORTED = ("annotate.settings", "annotate.wsgi", "annotate.asgi")
KINDS = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ServiceUnavailable: 503,
}


def _project_modules() -> Iterator[str]:
    for package in (annotate, apps):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" in module.name or module.name in NOT_IMPORTED:
                continue
            yield module.name


def _subclasses(cls: type[ApplicationError]) -> set[type[ApplicationError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def application_errors() -> list[type[ApplicationError]]:
    """Every ApplicationError subclass of the project, once all its modules are imported."""
    for name in _project_modules():
        importlib.import_module(name)
    return sorted(_subclasses(ApplicationError), key=lambda cls: cls.__qualname__)


def test_every_application_error_has_the_status_of_its_kind() -> None:
    errors = application_errors()
    names = {cls.__name__ for cls in errors}
    # The services' errors (the list grows; these must be there).
    assert {
        "ProjectError",
        "ImportFormatError",
        "ImportSuperseded",
        "BatchActionError",
        "StorageUnavailable",
        "Superseded",
        "NotCancellable",
        "BrokerUnavailable",
        "JudgmentError",
        "JudgmentConflict",
        "IdempotencyConflict",
        "AssignmentNotFound",
        "AnnotatorBlocked",
        "GenerationInvalid",
    } <= names
    for cls in errors:
        assert HTTPStatus(cls.status) and 400 <= cls.status < 600, cls
        assert cls.code and cls.code.isidentifier(), cls
        kinds = [kind for kind in KINDS if issubclass(cls, kind)]
        assert kinds, f"{cls.__module__}.{cls.__qualname__} subclasses no kind of annotate.errors"
        assert {KINDS[kind] for kind in kinds} == {cls.status}, cls
    # Every status raised has its representative answered through the API below.
    assert {cls.status for cls in errors} <= set(REPRESENTATIVES)


def test_an_instance_keeps_its_http_status() -> None:
    """A subclass's own fields must not hide `status` (the job's status is `job_status`)."""
    refused = NotCancellable("done")
    assert refused.status == 409
    assert refused.job_status == "done"
    assert "Its file stays until it expires." in str(refused)


def test_the_handler_imports_no_apps_exceptions() -> None:
    """annotate/api.py maps ApplicationError alone: it imports nothing of apps.*; and
    annotate/errors.py imports nothing of the project, so that every app may import it."""
    for path, forbidden in (
        ("annotate/api.py", ("apps",)),
        ("annotate/errors.py", ("apps", "annotate")),
    ):
        tree = ast.parse((ROOT / path).read_text())
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        wrong = [name for name in imported if name.split(".")[0] in forbidden]
        assert not wrong, f"{path} imports {wrong}"


# --- one representative of each status, raised through a real endpoint ------------------------


def _bad_request(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """JudgmentError: a choice that its strength contradicts."""
    client = api(annotator)
    lease = client.post(NEXT).json()
    return client.post(
        f"/api/v1/assignments/{lease['id']}/judgment/",
        {"choice": "left", "strength": 2},
        format="json",
    )


def _forbidden(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """AnnotatorBlocked: the annotator's gold accuracy is below the project's minimum."""
    Membership.objects.filter(project=project, user=annotator).update(
        gold_answered=4, gold_correct=1
    )
    Project.objects.filter(pk=project.pk).update(gold_min_accuracy=0.8, gold_min_answers=3)
    return api(annotator).post(NEXT)


def _not_found(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """AssignmentNotFound: another annotator's lease."""
    lease = api(User.objects.get(username="ben")).post(NEXT).json()
    return api(annotator).post(
        f"/api/v1/assignments/{lease['id']}/judgment/", {"choice": "left"}, format="json"
    )


def _conflict(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """BatchActionError: an active batch cannot be deleted."""
    batch = Batch.objects.get(project=project)
    return api(User.objects.get(username="bob")).delete(f"/api/v1/batches/{batch.pk}/")


def _too_large(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """PayloadTooLarge: a multipart file over IMPORT_MAX_BYTES (set to 64 by the test)."""
    upload = SimpleUploadedFile("big.jsonl", b"x" * 65, content_type="application/jsonl")
    return api(User.objects.get(username="bob")).post(
        "/api/v1/projects/demo/batches/", {"file": upload}, format="multipart"
    )


def _unavailable(api: Callable[..., Any], project: Project, annotator: User) -> Any:
    """BrokerUnavailable: the task queue cannot take the background export."""
    return api(User.objects.get(username="bob")).post(
        "/api/v1/projects/demo/exports/", {"format": "trl"}, format="json"
    )


# status -> (the request, words of the service's message)
REPRESENTATIVES: dict[int, tuple[Callable[..., Any], str]] = {
    400: (_bad_request, "contradicts strength 2"),
    403: (_forbidden, "No more work for you in this project"),
    404: (_not_found, "No such assignment."),
    409: (_conflict, "active"),
    413: (_too_large, "larger than the limit of 64 bytes"),
    503: (_unavailable, "nothing was created"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("status", sorted(REPRESENTATIVES))
def test_the_api_answers_each_status_with_a_detail(
    request: pytest.FixtureRequest,
    api: Callable[..., Any],
    project: Project,
    annotators: list[User],
    batch: Batch,
    settings: Any,
    status: int,
) -> None:
    send, words = REPRESENTATIVES[status]
    settings.IMPORT_MAX_BYTES = 64
    if status == 503:
        request.getfixturevalue("dead_broker")
    response = send(api, project, annotators[0])
    assert response.status_code == status, response.content
    body = response.json()
    assert list(body) == ["detail"], body
    assert isinstance(body["detail"], str) and body["detail"]
    assert words in body["detail"]
    if status == 503:
        assert response["Retry-After"] == "60"
    else:
        assert "Retry-After" not in response


@pytest.mark.django_db
def test_an_import_format_error_answers_its_lines(
    api: Callable[..., Any], project: Project, bob: User, settings: Any
) -> None:
    """ImportFormatError's body is its list of line errors, the last counting the rest."""
    settings.IMPORT_MAX_REPORTED_ERRORS = 2
    data = jsonl(*["{not json"] * 3)
    response = api(bob).post(
        "/api/v1/projects/demo/batches/",
        {"file": SimpleUploadedFile("bad.jsonl", data)},
        format="multipart",
    )
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [error["line"] for error in errors] == [1, 2, None]
    assert errors[-1]["error"] == "... and 1 more errors"
    assert not Batch.objects.exists()
