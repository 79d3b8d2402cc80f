"""Forms of the key dashboard: filter, create and edit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import PiiMode
from keys.selectors import KEY_STATUSES, catalog_model_list
from keys.serializers import PG_INT_MAX

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
    rpm_limit = forms.IntegerField(
        label=_("Requests per minute"), required=False, min_value=1, max_value=PG_INT_MAX
    )
    tpm_limit = forms.IntegerField(
        label=_("Tokens per minute"), required=False, min_value=1, max_value=PG_INT_MAX
    )
    budget_rub = forms.DecimalField(
        label=_("Budget, RUB"),
        required=False,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=2,
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
