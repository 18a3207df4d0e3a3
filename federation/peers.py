"""Pinned peer nodes (ARCHITECTURE §6): the peer record and the validation of what an operator
types for one. Pure: no I/O; the table itself lives in the node's store."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sonet.core import limits
from sonet.core.address import validate_node_name
from sonet.core.crypto import normalize_fingerprint
from sonet.core.errors import LocalProtocolError

__all__ = ["Peer", "PeerError", "validate_peer", "validate_peer_url", "find_peer"]

_MAX_URL_LEN = 2048


class PeerError(LocalProtocolError):
    """A peer entry the operator typed is invalid (one clear line)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Peer:
    name: str  # normalised node name, e.g. beta.example
    url: str  # ws:// or wss:// base URL; the link uses URL/federation
    fingerprint: str  # normalised pin of the peer's node identity key
    via: str | None  # the name of another configured peer that relays for it, or None
    added_at: int  # ms since the epoch
    #: the peer's full identity key (VerifyKey bytes) once learned and checked against the pin
    key: bytes | None = None


def validate_peer_url(url: str) -> str:
    text = url.strip()
    parts = urlsplit(text)
    if len(text) > _MAX_URL_LEN or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise PeerError(f"invalid peer URL {url!r} (expected ws://HOST:PORT or wss://HOST[:PORT])")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise PeerError(f"invalid peer URL {url!r} (bad port)") from None
    if parts.query or parts.fragment:
        raise PeerError(f"invalid peer URL {url!r} (no query or fragment allowed)")
    return text.rstrip("/")


def validate_peer(*, name: str, url: str, fingerprint: str, via: str | None) -> tuple[str, str, str, str | None]:
    """Normalise one peer entry; PeerError with a clear message if any field is invalid.

    Whether ``via`` names a configured peer is the store's check (it needs the table)."""
    try:
        norm_name = validate_node_name(name)
        norm_via = validate_node_name(via) if via is not None else None
    except LocalProtocolError as exc:
        raise PeerError(str(exc)) from None
    try:
        norm_fp = normalize_fingerprint(fingerprint)
    except LocalProtocolError:
        raise PeerError("invalid fingerprint (expected 32 base32 characters, as `sonet-node fingerprint` prints)") from None
    if norm_via == norm_name:
        raise PeerError(f"peer {norm_name} cannot be its own relay (--via)")
    assert len(norm_name) <= limits.MAX_NODE_NAME_LEN
    return norm_name, validate_peer_url(url), norm_fp, norm_via


def find_peer(peers: list[Peer], *, name: str | None = None, fingerprint: str | None = None) -> Peer | None:
    for peer in peers:
        if (name is None or peer.name == name) and (fingerprint is None or peer.fingerprint == fingerprint):
            return peer
    return None
