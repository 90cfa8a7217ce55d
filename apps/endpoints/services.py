"""Who may register, change, delete and test a model endpoint, what an endpoint may say, and the
audit of it: staff for every endpoint, a lead for the endpoints of the projects they lead;
an endpoint shared by every project (no project) is staff's alone. Admin, commands and tasks
all come through here."""

import ipaddress
import os
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from annotate.errors import BadRequest, Forbidden
from apps.audit.models import AuditAction
from apps.audit.services import audit_record, changes_of
from apps.endpoints.client import Completion, ConnectionCheck, EndpointClient, EndpointConfig
from apps.endpoints.models import ModelEndpoint
from apps.projects.models import Project
from apps.projects.selectors import projects_led_by

Actor = User | AnonymousUser
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# Never reachable for an endpoint, whoever asks: cloud metadata services.
_BLOCKED_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
AUDITED_FIELDS = (
    "name",
    "project",
    "base_url",
    "model",
    "key_env",
    "max_concurrency",
    "requests_per_minute",
    "timeout_seconds",
    "max_retries",
    "input_price",
    "output_price",
)


def key_env_prefix() -> str:
    return str(getattr(settings, "ENDPOINT_KEY_ENV_PREFIX", "ANNOTATE_KEY_"))


def endpoint_problems(*, base_url: str, key_env: str) -> dict[str, str]:
    """What is wrong with an endpoint's address and key variable, by field ({} if nothing).

    The key's variable must carry the configured prefix, so that nobody who may register an
    endpoint can have the server send another secret of its environment (SECRET_KEY, a
    database password) to an address of their choosing. Cloud metadata addresses are refused.
    """
    problems: dict[str, str] = {}
    if key_env:
        prefix = key_env_prefix()
        if not _ENV_NAME.fullmatch(key_env):
            problems["key_env"] = "Use capital letters, digits and _, starting with a letter."
        elif not key_env.startswith(prefix) or key_env == prefix:
            problems["key_env"] = (
                f"The variable's name must start with {prefix} (ENDPOINT_KEY_ENV_PREFIX): "
                f"for example {prefix}OPENAI."
            )
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        problems["base_url"] = "Give an http:// or https:// address with a host."
    elif parts.username or parts.password:
        problems["base_url"] = "No user or password in the address: use the key's variable."
    elif parts.query or parts.fragment:
        problems["base_url"] = "The base address ends before any ? or #."
    elif host in _BLOCKED_HOSTS or _link_local(host):
        problems["base_url"] = "Cloud metadata and link-local addresses are not endpoints."
    return problems


def _link_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_link_local


def may_manage(user: Actor, project: Project | None) -> bool:
    if not isinstance(user, User) or not user.is_active:
        return False
    if user.is_staff:
        return True
    return project is not None and projects_led_by(user).filter(pk=project.pk).exists()


def _check_may_manage(user: Actor, project: Project | None) -> None:
    if not may_manage(user, project):
        if project is None:
            raise Forbidden("Only staff may manage an endpoint shared by every project.")
        raise Forbidden("Only staff and the project's leads may manage its endpoints.")


def _values(endpoint: ModelEndpoint) -> dict[str, Any]:
    values = {name: getattr(endpoint, name) for name in AUDITED_FIELDS if name != "project"}
    values["project"] = endpoint.project.slug if endpoint.project is not None else None
    return values


def endpoint_save(endpoint: ModelEndpoint, *, by: Actor) -> ModelEndpoint:
    """Creates or changes `endpoint` (its fields as set by the caller), after the checks; records
    endpoint_created or endpoint_changed with what changed."""
    problems = endpoint_problems(base_url=endpoint.base_url, key_env=endpoint.key_env)
    if problems:
        raise BadRequest(" ".join(problems.values()))
    endpoint.full_clean()
    with transaction.atomic():
        before: ModelEndpoint | None = None
        if endpoint.pk is not None:
            before = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
            _check_may_manage(by, before.project)
        _check_may_manage(by, endpoint.project)
        if before is None:
            endpoint.created_by = by if isinstance(by, User) else None
            endpoint.save()
            audit_record(
                actor=by,
                action=AuditAction.ENDPOINT_CREATED,
                project=endpoint.project,
                target=endpoint,
                details=_values(endpoint),
            )
            return endpoint
        changes = changes_of(_values(before), _values(endpoint))
        endpoint.save()
        if changes:
            audit_record(
                actor=by,
                action=AuditAction.ENDPOINT_CHANGED,
                project=endpoint.project,
                target=endpoint,
                details=changes,
            )
        return endpoint


def endpoint_delete(endpoint: ModelEndpoint, *, by: Actor) -> None:
    with transaction.atomic():
        _check_may_manage(by, endpoint.project)
        audit_record(
            actor=by,
            action=AuditAction.ENDPOINT_DELETED,
            project=endpoint.project,
            target=endpoint,
            details=_values(endpoint),
        )
        endpoint.delete()


def endpoint_key(endpoint: ModelEndpoint) -> str | None:
    """The key from the endpoint's environment variable (None when it names none)."""
    if not endpoint.key_env:
        return None
    problems = endpoint_problems(base_url=endpoint.base_url, key_env=endpoint.key_env)
    if "key_env" in problems:
        raise BadRequest(problems["key_env"])
    key = os.environ.get(endpoint.key_env)
    if not key:
        raise BadRequest(
            f"The environment variable {endpoint.key_env} is not set where this process runs."
        )
    return key


def endpoint_config(endpoint: ModelEndpoint) -> EndpointConfig:
    return EndpointConfig(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key=endpoint_key(endpoint),
        max_concurrency=endpoint.max_concurrency,
        requests_per_minute=endpoint.requests_per_minute,
        timeout_seconds=endpoint.timeout_seconds,
        max_retries=endpoint.max_retries,
    )


def endpoint_test(endpoint: ModelEndpoint, *, by: Actor) -> ConnectionCheck:
    """Test connection, for whoever may manage the endpoint; recorded with its outcome."""
    _check_may_manage(by, endpoint.project)
    try:
        config = endpoint_config(endpoint)
    except BadRequest as error:
        result = ConnectionCheck(ok=False, detail=str(error))
    else:
        with EndpointClient(config) as client:
            result = client.check()
    audit_record(
        actor=by,
        action=AuditAction.ENDPOINT_TESTED,
        project=endpoint.project,
        target=endpoint,
        details={"ok": result.ok, "detail": result.detail},
    )
    return result


MILLION = Decimal(1_000_000)


def request_cost(endpoint: ModelEndpoint, completion: Completion) -> Decimal | None:
    """The estimated cost at the endpoint's prices (per million tokens); None when it has no
    prices or the server did not count the tokens."""
    if endpoint.input_price is None and endpoint.output_price is None:
        return None
    if completion.prompt_tokens is None or completion.completion_tokens is None:
        return None
    cost = (
        Decimal(completion.prompt_tokens) * (endpoint.input_price or 0)
        + Decimal(completion.completion_tokens) * (endpoint.output_price or 0)
    ) / MILLION
    return cost.quantize(Decimal("0.00000001"))
