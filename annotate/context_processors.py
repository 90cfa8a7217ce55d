from collections.abc import Callable

from django.http import HttpRequest

from apps.projects.selectors import is_lead_anywhere


def navigation(request: HttpRequest) -> dict[str, Callable[[], bool]]:
    """Whether to show the admin link: only to those the admin lets in.

    A callable, so that the query runs only on pages that show the link (not on HTMX swaps).
    """

    def can_use_admin() -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return False
        return bool(user.is_staff or is_lead_anywhere(user))

    return {"can_use_admin": can_use_admin}
