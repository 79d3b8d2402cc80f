"""OAuth 2.0 endpoints (on top of DOT's views) and the dashboard pages.

Protocol views subclass django-oauth-toolkit's and add only what XRouter
needs: S256-only PKCE on the authorization endpoint, loopback http
redirects for native apps (RFC 8252), form-encoded bodies on the token,
revocation and introspection endpoints, and introspection only for bearer
tokens with the ``introspection`` scope (RFC 7662 2.1). Dashboard views are
thin: parse, authorize, call a service in accounts.oauth.services, render.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django.views.generic import View
from oauth2_provider.compat import login_not_required
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_refresh_token_model,
)
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import AuthorizationView, IntrospectTokenView, RevokeTokenView, TokenView
from oauthlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidRequestError

from accounts import roles
from accounts.decorators import TeamRequest, team_required
from accounts.oauth import pkce as oauth_pkce
from accounts.oauth import services as oauth_services
from accounts.oauth.forms import ApplicationRegisterForm, is_loopback_http
from accounts.oauth.scopes import scope_labels
from accounts.selectors import membership_current
from keys.models import ApiKey

# Connect the token-cache eviction receivers in every process that serves
# URLs, before the first token is revoked (they live with the resolver).
from accounts.oauth import tokens as oauth_tokens  # noqa: F401, E402  isort: skip

Application = get_application_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _oauth_error(error: str, description: str, status: int = 400) -> JsonResponse:
    """Return an RFC 6749 5.2 error body that no cache may keep."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _is_form_encoded(request: HttpRequest) -> bool:
    # RFC 6749 3.2 / 7009 2.1 / 7662 2.1: parameters are form-encoded. JSON
    # or multipart bodies would otherwise be silently read as empty.
    return request.content_type == FORM_CONTENT_TYPE


class XRouterAuthorizationView(AuthorizationView):
    """The authorization endpoint with a consent page that names the team."""

    template_name = "oauth/authorize.html"

    def validate_authorization_request(
        self, request: HttpRequest
    ) -> tuple[list[str], dict[str, Any]]:
        """Validate like DOT, then refuse anything but a well-formed S256 challenge.

        oauthlib turns an omitted ``code_challenge_method`` into ``plain``
        (RFC 7636 4.3) and DOT refuses ``plain`` only when the code is saved,
        after the consent page; refusing here answers before any consent.
        """
        scopes, credentials = super().validate_authorization_request(request)
        method = credentials.get("code_challenge_method")
        challenge = credentials.get("code_challenge")
        if method != oauth_pkce.S256 or not oauth_pkce.challenge_is_well_formed(challenge):
            raise OAuthToolkitError(
                error=InvalidRequestError(
                    description="code_challenge_method must be S256 with a 43-character challenge.",
                    state=credentials.get("state"),
                ),
                redirect_uri=credentials["redirect_uri"],
            )
        membership = membership_current(request)
        if membership is not None:
            try:
                roles.require_consent(membership.role, scopes)
            except roles.RoleDenied as exc:
                # Before the consent page: a member is never offered what
                # the role matrix does not let them give.
                raise OAuthToolkitError(
                    error=AccessDeniedError(description=str(exc), state=credentials.get("state")),
                    redirect_uri=credentials["redirect_uri"],
                ) from None
        return scopes, credentials

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Show the consent page; ``approval_prompt=auto`` only skips a live consent.

        DOT's ``auto`` reissues a code whenever some unexpired token of the
        user covers the scopes, even after the consent was revoked in the
        dashboard or was given for another team. Here it applies only while
        the consent's team binding is live and is the current team;
        otherwise the user sees the consent page as with ``force``.
        """
        if request.GET.get("approval_prompt") == "auto" and not self._consent_is_live(request):
            query = request.GET.copy()
            query["approval_prompt"] = "force"
            request.GET = query  # type: ignore[assignment]  # a mutable copy, by design
        return super().get(request, *args, **kwargs)  # type: ignore[no-any-return]

    @staticmethod
    def _consent_is_live(request: HttpRequest) -> bool:
        membership = membership_current(request)
        application = Application.objects.filter(client_id=request.GET.get("client_id", "")).first()
        if membership is None or application is None or request.user.pk is None:
            return False
        binding = ApiKey.objects.filter(
            key_hash=oauth_services.oauth_principal_digest(
                application_id=application.pk, user_id=request.user.pk
            ),
            kind=ApiKey.Kind.OAUTH,
        ).first()
        return binding is not None and binding.is_usable() and binding.team_id == membership.team_id

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        """Redirect; plain http only to a loopback IP literal (RFC 8252 7.3).

        oauthlib has already matched ``redirect_to`` against the registered
        URIs exactly; this only widens DOT's scheme check for loopback.
        """
        if application is None:
            schemes = list(oauth2_settings.ALLOWED_REDIRECT_URI_SCHEMES)
        else:
            schemes = list(application.get_allowed_schemes())
        if is_loopback_http(redirect_to) and "http" not in schemes:
            schemes.append("http")
        return OAuth2ResponseRedirect(redirect_to, schemes)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """Add the current team, on whose behalf ``chat`` acts."""
        context = super().get_context_data(**kwargs)
        context["membership"] = membership_current(self.request)
        context["team_bound"] = bool(
            oauth_services.TEAM_SCOPES.intersection(context.get("scopes", []))
        )
        labels = scope_labels()
        context["scope_items"] = [(s, labels.get(s, s)) for s in context.get("scopes", [])]
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        """Bind a team-scoped grant to the current team, then issue the code."""
        data = form.cleaned_data
        if data.get(
            "code_challenge_method"
        ) != oauth_pkce.S256 or not oauth_pkce.challenge_is_well_formed(data.get("code_challenge")):
            # The hidden fields can be edited between GET and POST.
            return render(
                self.request,
                self.template_name,
                {"error": {"error": "invalid_request", "description": "S256 PKCE is required."}},
                status=400,
            )
        scopes = (data.get("scope") or "").split()
        if data.get("allow") and oauth_services.TEAM_SCOPES.intersection(scopes):
            membership = membership_current(self.request)
            if membership is None:
                return render(
                    self.request,
                    self.template_name,
                    {
                        "error": {
                            "error": "access_denied",
                            "description": _("Join or create a team before granting model access."),
                        }
                    },
                    status=403,
                )
            application = Application.objects.filter(client_id=data.get("client_id")).first()
            if application is not None and application.redirect_uri_allowed(
                data.get("redirect_uri") or ""
            ):
                try:
                    oauth_services.oauth_principal_key_ensure(
                        application=application,
                        user=self.request.user,
                        team=membership.team,
                        scopes=scopes,
                    )
                except roles.RoleDenied as exc:
                    # The role changed since the page was shown, or the
                    # hidden scope field was edited.
                    return render(
                        self.request,
                        self.template_name,
                        {"error": {"error": "access_denied", "description": str(exc)}},
                        status=403,
                    )
        return super().form_valid(form)


class XRouterTokenView(TokenView):
    """The token endpoint; form-encoded bodies only, no device grant."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Refuse non-form bodies and the device grant, then defer to DOT."""
        if not _is_form_encoded(request):
            return _oauth_error("invalid_request", f"The request body must be {FORM_CONTENT_TYPE}.")
        if request.POST.get("grant_type") == DEVICE_CODE_GRANT:
            return _oauth_error("unsupported_grant_type", "The device grant is not enabled.")
        return super().post(request, *args, **kwargs)


class XRouterRevokeTokenView(RevokeTokenView):
    """RFC 7009 revocation; form-encoded bodies only."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Refuse non-form bodies, then revoke through DOT (client-bound)."""
        if not _is_form_encoded(request):
            return _oauth_error("invalid_request", f"The request body must be {FORM_CONTENT_TYPE}.")
        return super().post(request, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class XRouterIntrospectView(IntrospectTokenView):
    """RFC 7662 introspection for resource servers.

    Only a POST with a bearer token carrying the ``introspection`` scope is
    answered (resource servers get one with the client-credentials grant).
    DOT also lets any registered client introspect any token with its
    client credentials, and reads ``?token=`` on GET; both are refused.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Authenticate the resource server, then answer from DOT."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not _is_form_encoded(request):
            return _oauth_error("invalid_request", f"The request body must be {FORM_CONTENT_TYPE}.")
        valid, _oauthlib_request = self.verify_request(request)
        response: HttpResponseBase
        if not valid:
            response = _oauth_error(
                "invalid_token", "A bearer token with the introspection scope is required.", 401
            )
            response["WWW-Authenticate"] = 'Bearer error="invalid_token", scope="introspection"'
            return response
        response = View.dispatch(self, request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


# --- dashboard ----------------------------------------------------------------


@team_required
def application_list(request: TeamRequest) -> HttpResponse:
    """List the apps this user registered; owners and admins may register one."""
    form = ApplicationRegisterForm()
    created = None
    if request.method == "POST":
        if not roles.allows(request.membership.role, roles.Action.APP_REGISTER):
            return HttpResponse(status=403)
        form = ApplicationRegisterForm(request.POST)
        if form.is_valid():
            created = oauth_services.oauth_application_register(
                name=form.cleaned_data["name"],
                redirect_uris=form.cleaned_data["redirect_uris"],
                client_type=form.cleaned_data["client_type"],
                owner=request.user,  # type: ignore[arg-type]
            )
            form = ApplicationRegisterForm()
    applications = Application.objects.filter(user=request.user).order_by("-created")
    response = render(
        request,
        "oauth/applications.html",
        {"form": form, "applications": applications, "created": created},
    )
    if created is not None:
        # The page shows the client secret once: no cache may keep it.
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_required
def application_delete(request: TeamRequest, pk: int) -> HttpResponse:
    """Delete an app this user registered, with every token it holds."""
    application = get_object_or_404(Application, pk=pk, user=request.user)
    if not roles.allows(request.membership.role, roles.Action.APP_REGISTER):
        return HttpResponse(status=403)
    oauth_services.oauth_application_delete(application=application)
    messages.success(request, _("The application was deleted and its tokens revoked."))
    return redirect("oauth:applications")


@login_required
def authorized_list(request: HttpRequest) -> HttpResponse:
    """List the apps this user has granted access to."""
    user = request.user
    app_ids = set(AccessToken.objects.filter(user=user).values_list("application_id", flat=True))
    app_ids |= set(
        RefreshToken.objects.filter(user=user, revoked__isnull=True).values_list(
            "application_id", flat=True
        )
    )
    applications = Application.objects.filter(pk__in=app_ids).order_by("name")
    return render(request, "oauth/authorized.html", {"applications": applications})


@require_POST
@login_required
def authorized_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke every token this user granted one app."""
    application = get_object_or_404(Application, pk=pk)
    oauth_services.oauth_authorization_revoke(application=application, user=request.user)  # type: ignore[arg-type]
    messages.success(request, _("Access revoked for %(name)s.") % {"name": application.name})
    return redirect("oauth:authorized")
