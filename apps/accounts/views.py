"""The signed-in user's API token page: make one (shown once), see that it exists, revoke it."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.accounts.tokens import (
    TokenRefused,
    api_token_allowed,
    api_token_create,
    api_token_info,
    api_token_revoke,
)

REFUSED = "API tokens are for staff and members of a project; you belong to no project."


def _page(
    request: HttpRequest, *, key: str = "", notice: str = "", status: int = 200
) -> HttpResponse:
    response = render(
        request,
        "accounts/api_token.html",
        {
            "refused": REFUSED if status == 403 else "",
            "key": key,
            "notice": notice,
            "token": None if status == 403 else api_token_info(user=request.user),  # type: ignore[arg-type]
        },
        status=status,
    )
    # The key is in the page once: no cache may keep it.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    if not api_token_allowed(request.user):
        return _page(request, status=403)
    if request.method == "GET":
        return _page(request)
    action = request.POST.get("action", "")
    try:
        if action == "create":
            return _page(request, key=api_token_create(user=request.user))
        if action == "revoke":
            revoked = api_token_revoke(user=request.user)
            notice = "Your API token is revoked: it no longer works." if revoked else ""
            return _page(request, notice=notice or "You had no API token.")
    except TokenRefused:
        return _page(request, status=403)
    return _page(request, notice="Unknown action: choose Create or Revoke.", status=400)


# The accounts page lived under the projects app until the accounts app was made from it.
OLD_ADMIN_PREFIX = "/admin/projects/annotatoraccount/"
ADMIN_PREFIX = "/admin/accounts/annotatoraccount/"


def old_admin_redirect(request: HttpRequest, rest: str) -> HttpResponse:
    """Sends a bookmark of the accounts page's old admin URL to its new one: a permanent
    redirect that keeps the method and the query string (308). The admin checks the rights."""
    target = ADMIN_PREFIX + rest
    if request.META.get("QUERY_STRING"):
        target += "?" + request.META["QUERY_STRING"]
    response = HttpResponseRedirect(target)
    response.status_code = 308
    return response
