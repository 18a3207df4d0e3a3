"""A device's groups: their sealed MLS state, ordering and the SDK operations (docs/groups.md)."""
