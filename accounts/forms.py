"""Forms of the account pages: sign-up, teams, invitations, roles."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, User


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
