"""Dashboard pages: home, key list, create, edit, revoke, rotate.

Every key is looked up within the current team first (404 for anything
else, so ids of other teams do not leak), then the role is checked: members
read, owners and admins change. A new secret is rendered straight into the
POST response, never stored, and that response is marked ``no-store``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.decorators import TeamRequest, team_required
from accounts.models import BudgetPeriod
from keys import quickstart, selectors, services
from keys.forms import (
    STATUS_LABELS,
    ApiKeyCreateForm,
    ApiKeyForm,
    KeyFilterForm,
    ModelLimitFormSet,
    model_limit_initial,
)
from keys.models import ApiKey
from keys.panels import key_panel_context

KEYS_PER_PAGE = 25
#: Stands for the key in the home page's snippets and says where to get one.
QUICKSTART_PLACEHOLDER = gettext_lazy("YOUR_KEY_FROM_THE_API_KEYS_PAGE")


def _get_key(request: TeamRequest, public_id: Any) -> ApiKey:
    api_key = selectors.api_key_get(team=request.membership.team, public_id=public_id)
    if api_key is None:
        raise Http404
    return api_key


def _require_manager(request: TeamRequest) -> None:
    if not request.membership.can_manage:
        raise PermissionDenied


def _quickstart(request: HttpRequest, *, key: str, allowed: list[str]) -> list[quickstart.Snippet]:
    model = quickstart.example_model(selectors.catalog_model_list(), allowed)
    return quickstart.snippets(origin=quickstart.base_url(request), key=key, model=model)


def _show_secret(
    request: TeamRequest, created: services.CreatedKey, *, rotated: bool
) -> HttpResponse:
    api_key = created.api_key
    context: dict[str, Any] = {
        "api_key": api_key,
        "plaintext": created.plaintext,
        "rotated": rotated,
    }
    if not api_key.is_management:
        context["quickstart"] = _quickstart(
            request, key=created.plaintext, allowed=api_key.allowed_models
        )
    response = render(request, "keys/key_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _form_errors_from(form: ApiKeyForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@team_required
def home(request: TeamRequest) -> HttpResponse:
    """The team at a glance: key counts, recent keys, recently used, models."""
    team = request.membership.team
    keys = selectors.api_key_list(team=team)
    models = selectors.catalog_model_list()
    return render(
        request,
        "keys/home.html",
        {
            "summary": selectors.api_key_summary(team=team),
            "recent_keys": keys[:5],
            "recently_used": keys.filter(last_used_at__isnull=False).order_by("-last_used_at")[:5],
            "models": models,
            "quickstart": _quickstart(request, key=str(QUICKSTART_PLACEHOLDER), allowed=[]),
            "quickstart_placeholder": QUICKSTART_PLACEHOLDER,
        },
    )


@team_required
def key_list(request: TeamRequest) -> HttpResponse:
    """List the team's keys with search and a status filter."""
    form = KeyFilterForm(request.GET or None)
    search = status = ""
    if form.is_valid():
        search = form.cleaned_data["q"].strip()
        status = form.cleaned_data["status"]
    keys = selectors.api_key_list(team=request.membership.team, search=search, status=status)
    page = Paginator(keys, KEYS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "keys/key_list.html",
        {
            "form": form,
            "page": page,
            "status_labels": STATUS_LABELS,
            "search": search,
            "status": status,
        },
    )


@team_required
def key_create(request: TeamRequest) -> HttpResponse:
    """Create a key and show its secret once."""
    _require_manager(request)
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = services.api_key_create(
                team=request.membership.team,
                created_by=request.user,  # type: ignore[arg-type]
                name=data["name"],
                expires_at=data["expires_at"],
                allowed_models=data["allowed_models"],
                rpm_limit=data["rpm_limit"],
                tpm_limit=data["tpm_limit"],
                concurrency_limit=data["concurrency_limit"],
                budget_rub=data["budget_rub"],
                budget_period=data["budget_period"] or BudgetPeriod.MONTHLY,
                pii_mode=data["pii_mode"],
                kind=ApiKey.Kind.MANAGEMENT if data["management"] else ApiKey.Kind.STANDARD,
            )
        except ValidationError as exc:
            _form_errors_from(form, exc)
        else:
            return _show_secret(request, created, rotated=False)
    return render(request, "keys/key_form.html", {"form": form, "creating": True})


@team_required
def key_detail(request: TeamRequest, public_id: Any) -> HttpResponse:
    """Show a key with its usage and limits; owners and admins edit its settings.

    Members see the page read-only; their POST is refused with 403 before
    any form is read.
    """
    api_key = _get_key(request, public_id)
    # A playground key is the playground's: revoke it, never extend it.
    editable = request.membership.can_manage and not api_key.is_revoked and not api_key.playground
    initial = {
        "name": api_key.name,
        "expires_at": api_key.expires_at,
        "allowed_models": api_key.allowed_models,
        "rpm_limit": api_key.rpm_limit,
        "tpm_limit": api_key.tpm_limit,
        "concurrency_limit": api_key.concurrency_limit,
        "budget_rub": api_key.budget_rub,
        "budget_period": api_key.budget_period,
        "pii_mode": api_key.pii_mode,
    }
    limited_models = list(api_key.model_limits or {})
    if request.method == "POST":
        _require_manager(request)
        if api_key.playground:
            raise PermissionDenied
        form = ApiKeyForm(request.POST, current_models=api_key.allowed_models)
        # A POST without the per-model rows (an older page) leaves them as they are.
        with_models = "model-TOTAL_FORMS" in request.POST
        model_forms = ModelLimitFormSet(
            request.POST if with_models else None,
            initial=model_limit_initial(api_key.model_limits or {}),
            prefix="model",
            models=limited_models,
        )
        if form.is_valid() and (not with_models or model_forms.is_valid()):
            changes = {name: form.cleaned_data[name] for name in initial}
            if not changes["budget_period"]:  # not sent: keep the key's period
                del changes["budget_period"]
            if with_models:
                changes["model_limits"] = model_forms.model_limits()
            try:
                services.api_key_update(api_key=api_key, **changes)
            except ValidationError as exc:
                _form_errors_from(form, exc)
            else:
                messages.success(request, _("Key “%(name)s” saved.") % {"name": api_key.name})
                return redirect("dashboard:key_detail", public_id=api_key.public_id)
    else:
        form = ApiKeyForm(initial=initial, current_models=api_key.allowed_models)
        model_forms = ModelLimitFormSet(
            initial=model_limit_initial(api_key.model_limits or {}),
            prefix="model",
            models=limited_models,
        )
    if not editable:
        for each in [form, *model_forms.forms]:
            for field in each.fields.values():
                field.disabled = True
    return render(
        request,
        "keys/key_form.html",
        {
            "form": form,
            "model_forms": model_forms,
            "api_key": api_key,
            "editable": editable,
            "creating": False,
            **key_panel_context(request, api_key),
        },
    )


@team_required
def key_revoke(request: TeamRequest, public_id: Any) -> HttpResponse:
    """Ask for confirmation (GET), then revoke for good (POST)."""
    api_key = _get_key(request, public_id)
    _require_manager(request)
    if request.method == "POST":
        services.api_key_revoke(api_key=api_key)
        messages.success(request, _("Key “%(name)s” revoked.") % {"name": api_key.name})
        return redirect("dashboard:keys")
    return render(request, "keys/key_confirm.html", {"api_key": api_key, "action": "revoke"})


@team_required
def key_rotate(request: TeamRequest, public_id: Any) -> HttpResponse:
    """Ask for confirmation (GET), then issue a new secret and revoke the old (POST)."""
    api_key = _get_key(request, public_id)
    _require_manager(request)
    if request.method == "POST":
        try:
            created = services.api_key_rotate(api_key=api_key, created_by=request.user)  # type: ignore[arg-type]
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("dashboard:keys")
        return _show_secret(request, created, rotated=True)
    return render(request, "keys/key_confirm.html", {"api_key": api_key, "action": "rotate"})
