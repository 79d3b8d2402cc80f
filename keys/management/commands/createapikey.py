"""Create an API key and print only its plaintext on stdout."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import BudgetPeriod
from accounts.services import team_get_or_create
from keys.models import ApiKey
from keys.services import api_key_create


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise CommandError(f"{value!r} must be at least 1")
    return number


class Command(BaseCommand):
    help = "Create an API key for a team (created if missing); print the key only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="team slug")
        parser.add_argument("--name", required=True, help="key name")
        parser.add_argument("--rpm", type=_positive_int, help="requests per minute")
        parser.add_argument("--tpm", type=_positive_int, help="tokens per minute")
        parser.add_argument("--budget", help="budget in RUB, e.g. 1500.00")
        parser.add_argument(
            "--budget-period",
            choices=[choice.value for choice in BudgetPeriod],
            default=BudgetPeriod.MONTHLY.value,
            help="when the budget starts over (default: monthly)",
        )
        parser.add_argument(
            "--concurrency", type=_positive_int, help="concurrent requests (streams included)"
        )
        parser.add_argument("--expires", help="expiry as an ISO 8601 date-time")
        parser.add_argument("--models", help="comma-separated allowed model ids")
        parser.add_argument(
            "--management",
            action="store_true",
            help="issue a management key (for /api/v1/, refused on /v1/)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        budget = None
        if options["budget"] is not None:
            try:
                budget = Decimal(options["budget"])
            except InvalidOperation:
                raise CommandError(f"--budget {options['budget']!r} is not a number") from None
            if budget < 0:
                raise CommandError("--budget cannot be negative")
        expires: datetime | None = None
        if options["expires"]:
            expires = parse_datetime(options["expires"])
            if expires is None:
                raise CommandError(f"--expires {options['expires']!r} is not an ISO date-time")
            if timezone.is_naive(expires):
                expires = timezone.make_aware(expires, timezone.get_default_timezone())
        models = [m.strip() for m in (options["models"] or "").split(",") if m.strip()]
        try:
            team, _created = team_get_or_create(slug=options["team"])
            created = api_key_create(
                team=team,
                name=options["name"],
                expires_at=expires,
                allowed_models=models,
                rpm_limit=options["rpm"],
                tpm_limit=options["tpm"],
                budget_rub=budget,
                budget_period=options["budget_period"],
                concurrency_limit=options["concurrency"],
                kind=ApiKey.Kind.MANAGEMENT if options["management"] else ApiKey.Kind.STANDARD,
            )
        except (ValidationError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(created.plaintext)
