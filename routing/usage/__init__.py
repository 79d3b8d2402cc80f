"""Usage accounting: pricing, records and sinks, roll-ups, the dashboard, the API, tasks.
May import routing.models, routing.metrics, keys, accounts, providers and xrouter_site."""
