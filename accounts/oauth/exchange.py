"""OpenRouter-compatible key exchange: an app gets a plain API key by PKCE.

1. The app sends the user to ``GET /auth?callback_url=...&code_challenge=...
   &code_challenge_method=S256``; the user logs in and approves.
2. XRouter redirects to ``callback_url?code=...`` (one-time, 60 s).
3. The app calls ``POST /api/v1/auth/keys`` with JSON ``{code,
   code_verifier, code_challenge_method}`` and gets ``{"key", "user_id"}``.

The key is a standard key of the user's current team, named after the
app's origin, so it shows up (and is revoked) in the team's key list.
Codes live in the database under their SHA-256 only (``KeyExchangeCode``:
every worker sees them, with or without Redis); redeeming deletes them
first, so a code works once even under concurrent redemptions, and a wrong
verifier burns the code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited

from accounts import roles
from accounts.decorators import TeamRequest, team_required
from accounts.models import KeyExchangeCode, Membership
from accounts.oauth import pkce as oauth_pkce
from accounts.oauth.forms import validate_redirect_uri
from keys.services import api_key_create
from xrouter_site.errors import error_body

logger = logging.getLogger(__name__)

CODE_TTL_SECONDS = 60
# Brute force of codes and verifiers, per client IP.
EXCHANGE_RATE = "20/m"


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _with_params(url: str, **params: str) -> str:
    from urllib.parse import urlencode

    return url + ("&" if "?" in url else "?") + urlencode(params)


@require_http_methods(["GET", "POST"])
@team_required
def exchange_authorize(request: TeamRequest) -> HttpResponse:
    """Show the consent page, and on approval redirect with a one-time code.

    Bad input is shown as an error page, never redirected: the callback is
    not registered anywhere, so it is trusted only once it is valid.
    """
    params = request.POST if request.method == "POST" else request.GET
    callback_url = params.get("callback_url", "")
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "")
    problems = []
    try:
        validate_redirect_uri(callback_url, debug_http=False)
    except ValidationError as exc:
        problems.extend(exc.messages)
    if method != oauth_pkce.S256:
        problems.append("code_challenge_method must be S256.")
    if not oauth_pkce.challenge_is_well_formed(challenge):
        problems.append("code_challenge must be a 43-character base64url S256 challenge.")
    if problems:
        return render(request, "oauth/exchange.html", {"problems": problems}, status=400)
    if not roles.allows(request.membership.role, roles.Action.KEY_CREATE):
        # Refused before the consent page: the code could never be redeemed.
        denied = str(roles.RoleDenied(roles.Action.KEY_CREATE))
        return render(request, "oauth/exchange.html", {"problems": [denied]}, status=403)
    origin = _origin(callback_url)
    context = {
        "callback_url": callback_url,
        "origin": origin,
        "code_challenge": challenge,
        "code_challenge_method": method,
        "team": request.membership.team,
    }
    if request.method == "GET":
        return render(request, "oauth/exchange.html", context)
    if "allow" not in request.POST:
        return HttpResponseRedirect(_with_params(callback_url, error="access_denied"))
    code = secrets.token_urlsafe(32)
    now = timezone.now()
    # Expired codes of anyone go here, so the table stays small without a task.
    KeyExchangeCode.objects.filter(expires_at__lte=now).delete()
    KeyExchangeCode.objects.create(
        code_hash=_code_digest(code),
        user=request.user,  # type: ignore[misc]  # team_required: logged in
        team_id=request.membership.team_id,
        challenge=challenge,
        origin=origin,
        expires_at=now + timedelta(seconds=CODE_TTL_SECONDS),
    )
    return HttpResponseRedirect(_with_params(callback_url, code=code))


def _error(message: str, status: int, code: str) -> JsonResponse:
    response = JsonResponse(error_body(message, code=code), status=status)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
def exchange_keys(request: HttpRequest) -> HttpResponse:
    """Trade a code and its PKCE verifier for a new API key (JSON in and out)."""
    if is_ratelimited(
        request, group="oauth-key-exchange", key="ip", rate=EXCHANGE_RATE, increment=True
    ):
        return _error("Too many attempts; retry in a minute.", 429, "rate_limited")
    try:
        body: Any = json.loads(request.body or b"null")
    except ValueError:
        return _error("The body must be JSON.", 400, "invalid_json")
    if not isinstance(body, dict) or not all(
        isinstance(body.get(f), str) for f in ("code", "code_verifier")
    ):
        return _error("code and code_verifier are required strings.", 400, "invalid_request")
    if body.get("code_challenge_method", oauth_pkce.S256) != oauth_pkce.S256:
        return _error("code_challenge_method must be S256.", 400, "invalid_request")
    digest = _code_digest(body["code"])
    data = KeyExchangeCode.objects.filter(code_hash=digest, expires_at__gt=timezone.now()).first()
    # The DELETE decides: of two concurrent redemptions exactly one removes
    # the row. A wrong verifier burns the code too.
    if data is None or KeyExchangeCode.objects.filter(code_hash=digest).delete()[0] != 1:
        return _error("Invalid or expired code.", 403, "invalid_code")
    if not oauth_pkce.s256_matches(body["code_verifier"], data.challenge):
        return _error("Invalid code_verifier.", 403, "invalid_code")
    membership = (
        Membership.objects.select_related("team", "user")
        .filter(user_id=data.user_id, team_id=data.team_id, user__is_active=True)
        .first()
    )
    if membership is None:
        return _error("Invalid or expired code.", 403, "invalid_code")
    try:
        # The role is checked again here (accounts.roles): a demotion or
        # removal since the consent voids the code.
        created = api_key_create(
            team=membership.team, name=f"App: {data.origin}"[:100], created_by=membership.user
        )
    except roles.RoleDenied as exc:
        return _error(str(exc), 403, "permission_denied")
    logger.info(
        "key issued by exchange", extra={"key_id": created.api_key.pk, "origin": data.origin}
    )
    response = JsonResponse({"key": created.plaintext, "user_id": str(membership.user_id)})
    response["Cache-Control"] = "no-store"
    return response
