"""Users, teams, memberships, invitations; accounts.oauth is the OAuth 2.0 server.
Core accounts import only xrouter_site base; accounts.oauth may import keys, never routing."""
