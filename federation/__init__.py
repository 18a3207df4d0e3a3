"""Node <-> node federation: pinned peers, authenticated links, outboxes, relays, lookups
(ARCHITECTURE §6). node/app.py builds one ``Federation`` (federation/service.py)."""

if __name__ != "sonet.federation":  # one name per module (sonet/__init__.py)
    raise ImportError(f"this package is sonet.federation; import it as that, not as {__name__}")

from .backoff import Backoff
from .errors import FederationError
from .link import DialError, LinkLost, MuxLink, PeerGate, PeerLink, dial_peer, serve_link
from .peers import Peer, PeerError, find_peer, validate_peer, validate_peer_url
from .routes import Routes
from .service import Federation
from .settings import FederationSettings
from .status import FederationStatus, Refusal

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
