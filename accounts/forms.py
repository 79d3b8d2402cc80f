"""Forms of the account pages: sign-up, teams, invitations, roles."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from accounts.models import BudgetPeriod, DataPolicy, Membership, PiiMode, User
from accounts.services import MAX_BUDGET_RUB, MAX_CONCURRENCY, MAX_RPM, MAX_TPM


class SignupForm(UserCreationForm):
    """A username, an e-mail for password resets and a password twice."""

    email = forms.EmailField(
        label=_("E-mail"),
        help_text=_("Used only to reset your password."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self) -> str:
        # No "already registered" error: it told anyone which addresses
        # have accounts (issue 15). A second account with an address gives
        # its creator nothing: reset links go to the address, not to them.
        return str(self.cleaned_data["email"]).strip().lower()


class TeamForm(forms.Form):
    name = forms.CharField(label=_("Team name"), max_length=100)


class InvitationForm(forms.Form):
    role = forms.ChoiceField(
        label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.MEMBER
    )
    email = forms.EmailField(label=_("E-mail (optional, for your records)"), required=False)

    def __init__(self, *args: Any, inviter: Membership, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if inviter.role != Membership.Role.OWNER:
            # Only owners can make owners.
            self.fields["role"].choices = [  # type: ignore[attr-defined]
                c for c in Membership.Role.choices if c[0] != Membership.Role.OWNER
            ]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)


class DataHandlingForm(forms.Form):
    """The team's residency policy and PII guardrail mode."""

    data_policy = forms.ChoiceField(
        label=_("Data policy"),
        choices=DataPolicy.choices,
        help_text=_(
            "Which deployments may receive the team's requests. Deployments that do not "
            "comply are skipped; when none is left the request is refused."
        ),
    )
    pii_mode = forms.ChoiceField(
        label=_("Personal data in prompts"),
        choices=PiiMode.choices,
        help_text=_(
            "Passport numbers, SNILS, INN, OGRN, phone numbers, e-mail addresses, card and "
            "account numbers found in requests."
        ),
    )


def limit_field(label: Any, maximum: int, help_text: Any = "") -> forms.IntegerField:
    """Return an optional whole-number limit field from 1 to ``maximum``."""
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=1,
        max_value=maximum,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )


class RubField(forms.DecimalField):
    """An amount in roubles typed as people write it: ``1 500,25`` or ``1500.25``.

    Spaces (plain, no-break and narrow no-break, the Russian thousands
    separators) are dropped; the locale's decimal comma is accepted.
    """

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            value = "".join(value.split())
        return super().to_python(value)


def budget_field(label: Any) -> forms.DecimalField:
    """Return an optional amount in roubles: 0 to MAX_BUDGET_RUB, two decimals."""
    return RubField(
        label=label,
        required=False,
        min_value=Decimal(0),
        max_value=MAX_BUDGET_RUB,
        max_digits=14,
        decimal_places=2,
        localize=True,
        help_text=_("Leave empty for no budget; 0 stops all paid requests."),
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )


class TeamLimitsForm(forms.Form):
    """The team's caps, its defaults for keys and its budget (empty: no limit)."""

    rpm_limit = limit_field(_("Team requests per minute"), MAX_RPM)
    tpm_limit = limit_field(_("Team tokens per minute"), MAX_TPM)
    concurrency_limit = limit_field(_("Team concurrent requests"), MAX_CONCURRENCY)
    default_key_rpm = limit_field(
        _("Requests per minute per key"),
        MAX_RPM,
        _("For each key that sets no limit of its own."),
    )
    default_key_tpm = limit_field(
        _("Tokens per minute per key"), MAX_TPM, _("For each key that sets no limit of its own.")
    )
    default_key_concurrency = limit_field(
        _("Concurrent requests per key"),
        MAX_CONCURRENCY,
        _("For each key that sets no limit of its own."),
    )
    budget_rub = budget_field(_("Team budget, RUB"))
    budget_period = forms.ChoiceField(
        label=_("Budget period"),
        choices=BudgetPeriod.choices,
        help_text=_("Periods start at midnight in the server's time zone; weeks on Monday."),
    )
