"""One brute-force policy for ``/admin/login/`` and the dashboard login.

Issue 15 (Medium 7): the admin login had no throttle, and the dashboard's
per-username limit let anyone lock a real user out with five bad
passwords a minute. Both logins now share:

- **django-axes**, locking the pair (username, client address) after
  ``XROUTER_LOGIN_FAILURE_LIMIT`` failures for ``XROUTER_LOGIN_COOLOFF_MINUTES``.
  The pair, not the username alone: an attacker's failures lock the
  attacker's address out of that account, while the owner, coming from any
  other address, still logs in. A success resets the count.
- **a per-address volume cap** (:data:`LOGIN_RATE_PER_IP`, django-ratelimit)
  on login POSTs, against spraying many usernames from one address. It
  delays the sprayer only; no account is ever locked by it.

The client address is :func:`xrouter_site.client_ip.client_ip` in both, so
behind a trusted proxy they count clients, not the proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_ratelimit.core import is_ratelimited

LOGIN_RATE_PER_IP = "20/m"


def login_flooded(request: HttpRequest) -> bool:
    """Count a login POST against its address; return True once over the cap."""
    return bool(
        is_ratelimited(request, group="login-ip", key="ip", rate=LOGIN_RATE_PER_IP, increment=True)
    )


def flood_response(request: HttpRequest) -> HttpResponse:
    message = _("Too many login attempts from your address. Wait a minute and try again.")
    return render(request, "accounts/locked_out.html", {"message": message}, status=429)


def throttle_login_posts(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view (the admin's) with the per-address cap."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST" and login_flooded(request):
            return flood_response(request)
        return view(request, *args, **kwargs)

    return wrapper


def locked_out(request: HttpRequest, credentials: Any = None, *args: Any) -> HttpResponse:
    """django-axes' lockout answer (``AXES_LOCKOUT_CALLABLE``): 429, no oracle.

    The page says the same whether the password was right, and never says
    whether the account exists.
    """
    minutes = settings.XROUTER_LOGIN_COOLOFF_MINUTES
    message = ngettext(
        "Too many login attempts for this account from your address. "
        "Try again in %(minutes)d minute; logging in from elsewhere is not affected.",
        "Too many login attempts for this account from your address. "
        "Try again in %(minutes)d minutes; logging in from elsewhere is not affected.",
        minutes,
    ) % {"minutes": minutes}
    return render(request, "accounts/locked_out.html", {"message": message}, status=429)
