"""Provider adapters behind one contract (base, errors), the pooled HTTP client, emulators.
May import only xrouter_site base modules; never accounts, keys or routing."""
