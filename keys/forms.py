"""Forms of the key dashboard: filter, create and edit."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.forms import budget_field, limit_field
from accounts.models import BudgetPeriod, PiiMode
from accounts.services import MAX_CONCURRENCY, MAX_RPM, MAX_TPM
from keys.selectors import KEY_STATUSES, catalog_model_list

STATUS_LABELS = {
    "active": _("Active"),
    "revoked": _("Revoked"),
    "expired": _("Expired"),
    "disabled": _("Disabled"),
}


class KeyFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), max_length=100, required=False)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("All"))] + [(s, STATUS_LABELS[s]) for s in KEY_STATUSES],
    )


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%Y-%m-%dT%H:%M")


class ApiKeyForm(forms.Form):
    """Name, expiry, allowed models and limits of a key.

    ``allowed_models`` offers the live catalog; ids a key already holds but
    the catalog no longer lists stay selectable so an edit does not drop them.
    """

    name = forms.CharField(label=_("Name"), max_length=100)
    expires_at = forms.DateTimeField(
        label=_("Expires"),
        required=False,
        widget=DateTimeLocalInput(),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text=_("Leave empty for a key that does not expire."),
    )
    allowed_models = forms.MultipleChoiceField(
        label=_("Allowed models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None selected allows every model."),
    )
    rpm_limit = limit_field(
        _("Requests per minute"), MAX_RPM, _("Empty: the team's default for keys, if any.")
    )
    tpm_limit = limit_field(
        _("Tokens per minute"), MAX_TPM, _("Empty: the team's default for keys, if any.")
    )
    concurrency_limit = limit_field(
        _("Concurrent requests"),
        MAX_CONCURRENCY,
        _("Empty: the team's default for keys, if any."),
    )
    budget_rub = budget_field(_("Budget, RUB"))
    # Not required: a form posted without it keeps the key's period.
    budget_period = forms.ChoiceField(
        label=_("Budget period"),
        choices=BudgetPeriod.choices,
        initial=BudgetPeriod.MONTHLY,
        required=False,
    )
    pii_mode = forms.ChoiceField(
        label=_("Personal data in prompts"),
        required=False,
        choices=[("", _("As the team"))] + list(PiiMode.choices),
        help_text=_("A key can be stricter than its team, never looser."),
    )

    def __init__(self, *args: Any, current_models: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [
            (m.model_id, f"{m.model_id} — {m.display_name}" if m.display_name else m.model_id)
            for m in catalog_model_list()
        ]
        known = {c[0] for c in choices}
        choices += [(m, m) for m in current_models or [] if m not in known]
        self.fields["allowed_models"].choices = choices  # type: ignore[attr-defined]
        tz = timezone.get_current_timezone_name()
        self.fields["expires_at"].help_text = _(
            "Time zone %(tz)s. Leave empty for a key that does not expire."
        ) % {"tz": tz}

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now():
            raise forms.ValidationError(_("The expiry must be in the future."))
        return value


class ApiKeyCreateForm(ApiKeyForm):
    management = forms.BooleanField(
        label=_("Management key"),
        required=False,
        help_text=_("For scripts that manage keys through /api/v1/. It cannot call models."),
    )


def _model_choices(current: list[str] | None = None) -> list[tuple[str, str]]:
    choices = [(m.model_id, m.model_id) for m in catalog_model_list()]
    known = {c[0] for c in choices}
    return choices + [(m, m) for m in current or [] if m not in known]


class ModelLimitForm(forms.Form):
    """One row of a key's per-model limits: a model and up to three limits."""

    model = forms.ChoiceField(label=_("Model"), required=False)
    rpm = limit_field(_("Requests per minute"), MAX_RPM)
    tpm = limit_field(_("Tokens per minute"), MAX_TPM)
    concurrency = limit_field(_("Concurrent requests"), MAX_CONCURRENCY)

    def __init__(self, *args: Any, models: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "—")] + _model_choices(models)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        values = [data.get(name) for name in ("rpm", "tpm", "concurrency")]
        if data.get("model") and all(v is None for v in values):
            raise forms.ValidationError(
                _("Set at least one limit for this model, or choose “—” to remove the row.")
            )
        if not data.get("model") and any(v is not None for v in values):
            raise forms.ValidationError(_("Choose the model these limits are for."))
        return data


class BaseModelLimitFormSet(forms.BaseFormSet):  # type: ignore[type-arg]
    """The per-model rows of a key; a model appears at most once."""

    def __init__(self, *args: Any, models: list[str] | None = None, **kwargs: Any) -> None:
        self.models = models or []
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index: int | None) -> dict[str, Any]:
        return {**super().get_form_kwargs(index), "models": self.models}

    def clean(self) -> None:
        if any(form.errors for form in self.forms):
            return
        seen: set[str] = set()
        for form in self.forms:
            model = form.cleaned_data.get("model")
            if not model:
                continue
            if model in seen:
                raise forms.ValidationError(
                    _("%(model)s is listed twice; keep one row per model.") % {"model": model}
                )
            seen.add(model)

    def model_limits(self) -> dict[str, dict[str, int]]:
        """Return ``{model: {"rpm"|"tpm"|"concurrency": n}}`` of the filled rows."""
        limits: dict[str, dict[str, int]] = {}
        for form in self.forms:
            data = form.cleaned_data
            if data.get("model"):
                limits[data["model"]] = {
                    name: data[name]
                    for name in ("rpm", "tpm", "concurrency")
                    if data.get(name) is not None
                }
        return limits


ModelLimitFormSet = cast(
    type[BaseModelLimitFormSet],
    forms.formset_factory(
        ModelLimitForm, formset=BaseModelLimitFormSet, extra=2, max_num=50, validate_max=True
    ),
)


def model_limit_initial(model_limits: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Return the formset's initial rows for a key's ``model_limits``."""
    return [{"model": model, **values} for model, values in sorted(model_limits.items())]
