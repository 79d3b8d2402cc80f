"""The audit log: who changed which key, limit, member or app access, and how.
May import accounts.models, accounts.roles, accounts.decorators and xrouter_site; never keys."""
