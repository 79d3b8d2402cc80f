"""API surfaces other than chat: translation layers onto the chat hot path.

Each module turns one wire format (legacy completions, Anthropic Messages,
OpenAI Responses) into a ``validation.ChatInput``, serves it through
``routing.gateway.pipeline`` (auth, limits, routing, fallback, usage, metrics,
logs), and renders the ``ChatResponse`` or chunk stream, and errors, in its
own shape. May import the rest of routing.gateway (never the middleware),
routing, keys, providers and xrouter_site.
"""
