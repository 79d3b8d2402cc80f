"""Settings for `make migrations-lint` only: production settings plus
django-migration-linter, which flags migrations the running old release
could not survive (expand/contract, see docs/operations.md "Upgrades")."""

from __future__ import annotations

from xrouter_site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_migration_linter"]  # noqa: F405

MIGRATION_LINTER_OPTIONS = {
    # Third-party apps' migrations are theirs to keep compatible.
    "exclude_apps": [
        "admin",
        "auth",
        "contenttypes",
        "sessions",
        "messages",
        "staticfiles",
        "oauth2_provider",
        "django_migration_linter",
    ],
    # Shipped before release 1.2 made expand/contract a rule: each adds a
    # NOT NULL column with a Python-side default, which an old release still
    # running during the deploy could not INSERT around. Already applied
    # everywhere, so they stay; every later migration must pass (add columns
    # nullable or with db_default, drop them a release after the code stops
    # using them).
    "ignore_name": [
        "0003_team_limits_and_budget",
        "0002_apikey_kind",
        "0003_key_concurrency_budget_period_model_limits",
        "0002_model_versions",
    ],
    "no_cache": True,
}
