"""The signed-in user's API token page: make one (shown once), see that it exists, revoke it."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from apps.projects.tokens import (
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
        "projects/api_token.html",
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
