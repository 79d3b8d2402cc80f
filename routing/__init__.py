"""Catalog and routing table, the /v1/ gateway, limits, usage, health, breakers, metrics.
May import keys, accounts, providers, xrouter_site base; only site wiring imports it."""
