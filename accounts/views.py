"""Account pages: sign-up, log-in, passwords, teams, members, invitations.

Views parse the request, check the role, call one service and render or
redirect; every rule about who may do what to a team lives in
:mod:`accounts.services`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.core import is_ratelimited

from accounts import lockout, services
from accounts.decorators import TeamRequest, team_required
from accounts.forms import InvitationForm, RoleForm, SignupForm, TeamForm
from accounts.models import Invitation, Membership
from accounts.selectors import (
    CURRENT_TEAM_SESSION_KEY,
    invitation_pending_list,
    membership_get,
    membership_list_for_user,
    team_member_list,
)

# Abuse limits per source address (logins: accounts/lockout.py).
SIGNUP_RATE_PER_IP = "10/h"
RESET_MAIL_RATE_PER_IP = "10/h"


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


class LoginView(auth_views.LoginView):
    """Django's login under the shared lockout policy (accounts/lockout.py)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The shared policy (accounts/lockout.py): a per-address cap here,
        # the (username, address) lockout in django-axes' backend.
        if lockout.login_flooded(request):
            return lockout.flood_response(request)
        return super().post(request, *args, **kwargs)


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if is_ratelimited(
            request,
            group="password-reset",
            key="ip",
            rate=RESET_MAIL_RATE_PER_IP,
            increment=True,
        ):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, _("Too many requests. Try again later."))
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log it in; continue to ``next`` (an invitation)."""
    if request.user.is_authenticated:
        return redirect("dashboard:home")
    form = SignupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if is_ratelimited(
            request, group="signup", key="ip", rate=SIGNUP_RATE_PER_IP, increment=True
        ):
            form.add_error(None, _("Too many sign-ups from your address. Try again later."))
            status = 429
        elif form.is_valid():
            user = services.user_signup(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome! Create a team to get your first key."))
            return redirect(_safe_next(request, reverse("accounts:teams")))
    return render(
        request,
        "accounts/signup.html",
        {"form": form, "next": request.GET.get("next", "")},
        status=status,
    )


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    """List the user's teams and create a new one."""
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(name=form.cleaned_data["name"], owner=request.user)  # type: ignore[arg-type]
        except ValidationError as exc:
            form.add_error("name", exc)
        else:
            request.session[CURRENT_TEAM_SESSION_KEY] = team.pk
            messages.success(request, _("Team “%(name)s” created.") % {"name": team.name})
            return redirect("dashboard:home")
    memberships = membership_list_for_user(user=request.user)  # type: ignore[arg-type]
    return render(request, "accounts/teams.html", {"form": form, "memberships": memberships})


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    """Make another of the user's teams the current one."""
    try:
        team_id = int(request.POST.get("team", ""))
    except ValueError:
        team_id = 0
    membership = membership_get(user=request.user, team_id=team_id)  # type: ignore[arg-type]
    if membership is None:
        # Not the user's team: the same answer as a team that does not exist.
        raise Http404
    request.session[CURRENT_TEAM_SESSION_KEY] = membership.team_id
    return redirect(_safe_next(request, reverse("dashboard:home")))


def _members_context(request: TeamRequest, **extra: Any) -> dict[str, Any]:
    membership = request.membership
    context: dict[str, Any] = {
        "members": team_member_list(team=membership.team),
        "roles": Membership.Role.choices,
        "invitations": invitation_pending_list(team=membership.team)
        if membership.can_manage
        else [],
        "invite_form": InvitationForm(inviter=membership) if membership.can_manage else None,
    }
    context.update(extra)
    return context


@team_required
def member_list(request: TeamRequest) -> HttpResponse:
    """Show the current team's members (and invitations to owners/admins)."""
    return render(request, "accounts/members.html", _members_context(request))


@team_required
@require_POST
def invitation_create(request: TeamRequest) -> HttpResponse:
    """Create an invitation link and show it once."""
    membership = request.membership
    if not membership.can_manage:
        raise PermissionDenied
    form = InvitationForm(request.POST, inviter=membership)
    if not form.is_valid():
        return render(
            request,
            "accounts/members.html",
            _members_context(request, invite_form=form),
            status=400,
        )
    created = services.team_invitation_create(
        team=membership.team,
        created_by=request.user,  # type: ignore[arg-type]
        role=form.cleaned_data["role"],
        email=form.cleaned_data["email"],
    )
    link = request.build_absolute_uri(reverse("accounts:invitation_accept", args=[created.token]))
    response = render(request, "accounts/members.html", _members_context(request, new_link=link))
    response["Cache-Control"] = "no-store"
    return response


@team_required
@require_POST
def invitation_revoke(request: TeamRequest, public_id: Any) -> HttpResponse:
    membership = request.membership
    invitation = get_object_or_404(Invitation, team=membership.team, public_id=public_id)
    if not membership.can_manage:
        raise PermissionDenied
    services.team_invitation_revoke(invitation=invitation)
    messages.success(request, _("Invitation revoked."))
    return redirect("accounts:members")


@team_required
@require_POST
def member_remove(request: TeamRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(Membership, team=request.membership.team, pk=pk)
    try:
        services.team_member_remove(membership=target, by=request.membership)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(user)s was removed.") % {"user": target.user.username})
    return redirect("accounts:members")


@team_required
@require_POST
def member_role(request: TeamRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(Membership, team=request.membership.team, pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Unknown role."))
        return redirect("accounts:members")
    try:
        services.team_member_set_role(
            membership=target, role=form.cleaned_data["role"], by=request.membership
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Role updated."))
    return redirect("accounts:members")


@team_required
@require_POST
def team_leave(request: TeamRequest) -> HttpResponse:
    membership = request.membership
    try:
        services.team_leave(membership=membership)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("accounts:members")
    request.session.pop(CURRENT_TEAM_SESSION_KEY, None)
    messages.success(request, _("You left %(team)s.") % {"team": membership.team.name})
    return redirect("accounts:teams")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Show an invitation (GET) and join its team (POST, logged in)."""
    invitation = services.team_invitation_get(token=token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if not request.user.is_authenticated:
        return render(request, "accounts/invitation.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            membership = services.team_invitation_accept(token=token, user=request.user)  # type: ignore[arg-type]
        except ValidationError:
            return render(request, "accounts/invitation_invalid.html", status=404)
        request.session[CURRENT_TEAM_SESSION_KEY] = membership.team_id
        messages.success(request, _("You joined %(team)s.") % {"team": membership.team.name})
        return redirect("dashboard:home")
    return render(request, "accounts/invitation.html", {"invitation": invitation})
