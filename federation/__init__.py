"""Node <-> node federation: pinned peers, authenticated links, status (ARCHITECTURE §6)."""

from .link import DialError, PeerGate, PeerLink, dial_peer, serve_peer_link
from .peers import Peer, PeerError, find_peer, validate_peer, validate_peer_url
from .status import FederationStatus, Refusal

__all__ = [
    "DialError",
    "FederationStatus",
    "Peer",
    "PeerError",
    "PeerGate",
    "PeerLink",
    "Refusal",
    "dial_peer",
    "find_peer",
    "serve_peer_link",
    "validate_peer",
    "validate_peer_url",
]
