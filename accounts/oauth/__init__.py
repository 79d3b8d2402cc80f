"""OAuth 2.0 for third-party apps: the DOT server, consent, tokens and the token exchange.
May import accounts, keys (a grant acts through a hidden key) and xrouter_site; never routing."""
