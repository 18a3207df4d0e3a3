"""Node <-> node federation: pinned peers, authenticated links, outboxes, relays, lookups
(ARCHITECTURE §6). node/app.py builds one ``Federation`` (federation/service.py)."""

if __name__ != "sonet.federation":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.federation; import it as that, not as {__name__}")

from typing import TYPE_CHECKING

from sonet.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .backoff import Backoff
    from .errors import FederationError
    from .link import DialError, LinkLost, MuxLink, PeerGate, PeerLink, dial_peer, serve_link
    from .peers import Peer, PeerError, find_peer, validate_peer, validate_peer_url
    from .routes import Routes
    from .service import Federation
    from .settings import FederationSettings
    from .status import FederationStatus, Refusal

#: each name's submodule, imported when the name is first asked for: a module that needs one
#: small piece (the peer table's validation, the settings) must not load the links, the service
#: and trio-websocket with it (every ``sonet-node`` command reads node.toml and the peer table)
_SUBMODULE = {
    "Backoff": "backoff",
    "FederationError": "errors",
    **dict.fromkeys(("DialError", "LinkLost", "MuxLink", "PeerGate", "PeerLink", "dial_peer", "serve_link"), "link"),
    **dict.fromkeys(("Peer", "PeerError", "find_peer", "validate_peer", "validate_peer_url"), "peers"),
    "Routes": "routes",
    "Federation": "service",
    "FederationSettings": "settings",
    **dict.fromkeys(("FederationStatus", "Refusal"), "status"),
}


__getattr__ = lazy_exports(__name__, _SUBMODULE)


__all__ = [
    "Backoff",
    "DialError",
    "Federation",
    "FederationError",
    "FederationSettings",
    "FederationStatus",
    "LinkLost",
    "MuxLink",
    "Peer",
    "PeerError",
    "PeerGate",
    "PeerLink",
    "Refusal",
    "Routes",
    "dial_peer",
    "find_peer",
    "serve_link",
    "validate_peer",
    "validate_peer_url",
]
