"""The OpenAI-compatible /v1/ hot path: middleware, bearer auth, views, relay, formatting.
May import the rest of routing, keys, accounts.oauth, providers and xrouter_site."""
