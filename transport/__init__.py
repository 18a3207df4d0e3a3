"""The secure-WebSocket transport between core and its users (client, federation, node): open a
socket and run the handshake under one deadline, multiplex requests over a channel, refuse with
an error frame and close. Imports core only."""

if __name__ != "sonet.transport":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.transport; import it as that, not as {__name__}")
