"""The home node's URL as a user types it (``--node``): checked once, before anything is
dialled or saved, so a typo is one clear line instead of a traceback from the WebSocket layer.

Devices speak WebSocket to their node, so only ``ws://`` and ``wss://`` are accepted. An
``http://`` / ``https://`` URL or a bare ``host:port`` is refused with the URL that was most
likely meant, rather than converted silently: the URL is stored in the device state and in
link codes, and a user who typed ``https://`` should see that it became ``wss://``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sonet.core.errors import LocalProtocolError

__all__ = ["NodeUrlError", "check_node_url"]

_SCHEMES = ("ws", "wss")
#: what a web-style scheme most likely meant
_MEANT = {"http": "ws", "https": "wss"}
#: the node serves devices on URL/client; that path is added by the device itself
_DEVICE_PATH = "/client"


class NodeUrlError(LocalProtocolError):
    code = "bad_node_url"


def check_node_url(text: str) -> str:
    """``text`` as the node URL the device stores (no trailing slash); NodeUrlError, naming the
    URL probably meant where there is one, when it is not ``ws[s]://HOST[:PORT][/PATH]``."""
    raw = text.strip()
    if not raw:
        raise NodeUrlError("the node URL is empty: give it as ws://HOST:PORT or wss://HOST")
    if "://" not in raw:
        raise NodeUrlError(f"the node URL {raw!r} has no scheme: did you mean ws://{raw} (or wss://{raw})?")
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError:
        raise NodeUrlError(f"the node URL {raw!r} has a bad port: it must be a number from 1 to 65535") from None
    scheme = parts.scheme.lower()
    if scheme in _MEANT:
        meant = f"{_MEANT[scheme]}://{raw.split('://', 1)[1]}"
        raise NodeUrlError(f"devices talk WebSocket to their node: use {meant} instead of {raw}")
    if scheme not in _SCHEMES:
        raise NodeUrlError(f"the node URL {raw!r} must start with ws:// or wss://")
    if not parts.hostname:
        raise NodeUrlError(f"the node URL {raw!r} names no host: give it as ws://HOST:PORT")
    if port == 0:
        raise NodeUrlError(f"the node URL {raw!r} has a bad port: it must be a number from 1 to 65535")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise NodeUrlError(f"the node URL {raw!r} may not carry a user, a query or a fragment")
    path = parts.path.rstrip("/")
    if path.endswith(_DEVICE_PATH):
        base = raw.rstrip("/")[: -len(_DEVICE_PATH)]
        raise NodeUrlError(f"give the node's URL without {_DEVICE_PATH}: {base}")
    return f"{scheme}://{parts.netloc}{path}"
