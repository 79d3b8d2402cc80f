"""Rate limits, concurrency and budgets: the Redis and local limiters, plans and admission.
May import routing.table, routing.usage.pricing, routing.metrics, keys and xrouter_site."""
