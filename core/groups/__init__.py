"""Sonet groups over MLS: credentials, the group extension, rules and the hub (docs/groups.md); pure."""
