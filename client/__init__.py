"""The device: SDK (trio) and the ``sonet`` CLI. Imports core only."""
