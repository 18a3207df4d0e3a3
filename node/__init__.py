"""The home node: server, client API, mailboxes, store, ``sonet-node`` CLI."""

if __name__ != "sonet.node":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.node; import it as that, not as {__name__}")
