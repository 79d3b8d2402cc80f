"""API keys: format, storage, principal cache, dashboard, management REST API, activity.
May import accounts, providers, xrouter_site base; routing only via routing.table."""
