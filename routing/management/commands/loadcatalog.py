"""Load the declarative model catalog (YAML) into the database."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.services import CatalogError, catalog_load_file


class Command(BaseCommand):
    help = "Load a catalog file (default: $XROUTER_CATALOG). Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="catalog YAML path")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["path"] or settings.XROUTER_CATALOG
        if not path:
            raise CommandError("give a path or set XROUTER_CATALOG")
        try:
            result = catalog_load_file(path)
        except CatalogError as exc:
            raise CommandError(f"{path}: {exc}") from None
        self.stdout.write(
            f"catalog {path}: {result.providers} providers, {result.models} models, "
            f"{result.retired} retired"
        )
