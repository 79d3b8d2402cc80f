"""View decorators for dashboard pages that act on the current team."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect

from accounts.models import Membership
from accounts.selectors import membership_current, membership_list_for_user


class TeamRequest(HttpRequest):
    """A request that :func:`team_required` has given a ``membership``."""

    membership: Membership
    user_memberships: list[Membership]


def team_required(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """Require a logged-in user with a current team; set ``request.membership``.

    A user without a team is sent to the teams page to create one.
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership = membership_current(request)
        if membership is None:
            # The teams page itself says what to do; no message on top of it.
            return redirect("accounts:teams")
        request.membership = membership  # type: ignore[attr-defined]
        # For the team switcher in the page header.
        request.user_memberships = list(  # type: ignore[attr-defined]
            membership_list_for_user(user=request.user)  # type: ignore[arg-type]
        )
        return view(request, *args, **kwargs)

    return wrapper
