"""The playground page and the endpoints that hand its key out and take it back.

The page itself holds no credential: its script asks ``key/`` for a
playground key (a session POST with the CSRF token), keeps the plaintext in
memory and calls ``/v1/chat/completions`` and ``/api/v1/generation`` with it
like any client. Answers of the key endpoints are OpenAI error objects on
failure, as the script reads them the same way as the gateway's.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts import roles
from accounts.decorators import TeamRequest, team_required
from keys import selectors
from keys.playground import services
from xrouter_site.errors import error_body

DENIED = gettext_lazy(
    "Only owners and admins of the team can use the playground: it spends the team's budget."
)
#: The parameters' bounds, shared by the page's inputs and its script.
TEMPERATURE_MAX = 2


def _strings() -> dict[str, str]:
    """Return the script's messages in the active language."""
    return {
        "you": _("You"),
        "minting": _("Getting a playground key…"),
        "waiting": _("Waiting for the first token…"),
        "streaming": _("Streaming…"),
        "done": _("Done"),
        "stopped": _("Stopped"),
        "empty": _("Write a message first."),
        "temperature": _("Temperature must be a number from 0 to 2."),
        "max_tokens": _("Max tokens must be a whole number from 1 to %(max)s."),
        "schema_json": _("The JSON schema is not valid JSON: %(error)s"),
        "schema_object": _("The JSON schema must be a JSON object."),
        "tools_json": _("The tools are not valid JSON: %(error)s"),
        "tools_array": _("The tools must be a JSON array."),
        "tools_item": _('tools[%(i)s] must be {"type": "function", "function": {"name": …}}.'),
        "second_model": _("Pick the model to compare with."),
        "session": _("Your session has ended: reload the page and sign in again."),
        "mint_failed": _("No playground key: %(error)s"),
        "network": _("The connection failed: %(error)s"),
        "stream_cut": _("The stream ended before the answer was complete."),
        "provider": _("Provider"),
        "model": _("Model"),
        "version": _("Version"),
        "attempts": _("Attempts"),
        "tokens": _("Tokens"),
        "tokens_value": _("%(prompt)s prompt + %(completion)s completion"),
        "cost": _("Cost"),
        "cost_pending": _("being recorded…"),
        "cost_missing": _("not recorded yet: see Usage"),
        "ttft": _("Time to first token"),
        "latency": _("Latency"),
        "ms": _("%(n)s ms"),
        "rub": _("%(amount)s RUB"),
        "generation": _("Request"),
        "tool_call": _("Tool call"),
        "error": _("Error"),
        "key_line": _("Playground key %(masked)s, valid until %(time)s."),
        "revoked": _("Playground key revoked."),
        "cleared": _("Conversation cleared."),
    }


@team_required
def playground(request: TeamRequest) -> HttpResponse:
    """Show the playground: models with prices, parameters, one or two chats."""
    membership = request.membership
    models = selectors.catalog_model_list(model_type="chat")
    return render(
        request,
        "keys/playground.html",
        {
            "models": models,
            "can_use": roles.allows(membership.role, roles.Action.KEY_CREATE),
            "ttl_minutes": settings.XROUTER_PLAYGROUND_KEY_TTL_MINUTES,
            "temperature_max": TEMPERATURE_MAX,
            "max_tokens_cap": settings.XROUTER_MAX_TOKENS_CAP,
            "strings": _strings(),
        },
    )


def _refused(message: str, *, code: str, status: int) -> JsonResponse:
    return JsonResponse(
        error_body(
            message,
            code=code,
            type_="permission_error" if status == 403 else "invalid_request_error",
        ),
        status=status,
    )


@require_POST
@team_required
def playground_key(request: TeamRequest) -> HttpResponse:
    """Mint a playground key of the current team for the signed-in user."""
    team = request.membership.team
    try:
        created = services.playground_key_mint(team=team, user=request.user)  # type: ignore[arg-type]
    except roles.RoleDenied:
        return _refused(
            str(DENIED),
            code="permission_denied",
            status=403,
        )
    except ValidationError as exc:
        return _refused(" ".join(exc.messages), code="invalid_request", status=400)
    key = created.api_key
    assert key.expires_at is not None  # playground keys always expire
    response = JsonResponse(
        {
            "key": created.plaintext,
            "id": str(key.public_id),
            "name": key.name,
            "masked": key.masked,
            "team": team.name,
            "expires_at": key.expires_at.isoformat(),
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_required
def playground_key_revoke(request: TeamRequest) -> HttpResponse:
    """Revoke the signed-in user's playground keys of the current team."""
    count = services.playground_keys_revoke(
        team=request.membership.team,
        user=request.user,  # type: ignore[arg-type]
    )
    return JsonResponse({"revoked": count})
