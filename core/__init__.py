"""Pure protocol and crypto: no I/O, no clocks, no randomness of its own."""

if __name__ != "sonet.core":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.core; import it as that, not as {__name__}")
