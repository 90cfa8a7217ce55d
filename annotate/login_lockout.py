"""Password guessing (django-axes): where a login attempt comes from, and what a locked-out
client is told.

Every door that takes a password (the login page, the admin's login page) goes through
django.contrib.auth's authenticate() with the request, which axes' backend checks first; the
API takes tokens and sessions only. See settings.py (LOGIN_FAILURE_LIMIT ...) and README.md.
"""

import ipaddress
import math

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str:
    """The client's address: the connection's, or behind TRUSTED_PROXY_COUNT reverse proxies,
    the address the outermost of them appended to X-Forwarded-For. Addresses a client wrote
    into the header itself come before it and are not read: nobody escapes a lock by forging
    the header."""
    address = str(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip()
            for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            candidate = forwarded[-proxies]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass  # not an address: the proxy is not the one configured; the connection's
    return address


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return (
        request.path.startswith("/api/")
        or request.headers.get("X-Requested-With") == "XMLHttpRequest"
        or ("application/json" in accept and "text/html" not in accept)
    )


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, object] | None = None,
) -> HttpResponse:
    """429 Too Many Requests, with Retry-After, as a page or (for API clients) as JSON."""
    cool_off = get_cool_off(request)
    seconds = math.ceil(cool_off.total_seconds()) if cool_off else 0
    minutes = math.ceil(seconds / 60)
    message = (
        "Too many failed logins for this username from your address. "
        f"Try again in {minutes} minutes, or ask an administrator to unlock the account."
    )
    response: HttpResponse
    if _wants_json(request):
        response = JsonResponse({"detail": message, "retry_after_seconds": seconds}, status=429)
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"message": message, "minutes": minutes},
            status=429,
        )
    response["Retry-After"] = str(seconds)
    return response
