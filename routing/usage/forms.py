"""Filters of the usage pages: a date range (UTC days) and a grouping."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

DEFAULT_DAYS = 30
MAX_DAYS = 366
GROUP_CHOICES = [("model", _("Model")), ("key", _("Key")), ("provider", _("Provider"))]


class DateInput(forms.DateInput):
    input_type = "date"


class UsageRangeForm(forms.Form):
    """A date range; empty fields mean the last 30 days."""

    start = forms.DateField(label=_("From"), required=False, widget=DateInput)
    end = forms.DateField(label=_("To"), required=False, widget=DateInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        today = timezone.now().date()
        end: date = data.get("end") or today
        start: date = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError(_("The start date is after the end date."))
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(_("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        data["start"], data["end"] = start, end
        return data

    def range(self) -> tuple[date, date]:
        """Return the cleaned range, or the default one if the input is invalid."""
        if self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"]
        end = timezone.now().date()
        return end - timedelta(days=DEFAULT_DAYS - 1), end


class UsageOverviewForm(UsageRangeForm):
    group = forms.ChoiceField(
        label=_("Group by"), choices=GROUP_CHOICES, required=False, initial="model"
    )

    def group_value(self) -> str:
        if self.is_valid() and self.cleaned_data.get("group"):
            return str(self.cleaned_data["group"])
        return "model"


class RequestLogForm(UsageRangeForm):
    request_id = forms.CharField(label=_("Request ID"), required=False, max_length=128)
