"""The device: SDK (trio) and the ``sonet`` CLI. Imports core only."""

if __name__ != "sonet.client":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.client; import it as that, not as {__name__}")
