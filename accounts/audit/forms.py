"""The audit log page's filter form."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import AuditEvent


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        label=_("Action"),
        required=False,
        choices=[("", _("All"))] + list(AuditEvent.Action.choices),
    )
    actor = forms.CharField(label=_("Actor"), required=False, max_length=200)
