"""The validity rules of a LeafNode (RFC 9420 §7.3) and of a KeyPackage (§10.1).

Each check raises ``ValidationError`` naming the broken rule (``VerifyError`` for a signature).
Whether a credential is acceptable is the application's decision and is not checked here. Core
has no clock: the caller passes ``now`` (seconds since the epoch) to check a KeyPackage leaf's
lifetime, or None where RFC 9420 only recommends it (a received ratchet tree).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError, VerifyError
from ..extensions.required_capabilities import RequiredCapabilities
from .errors import ValidationError
from .key_package import MLS10, KeyPackage
from .leaf_node import LeafNode, LeafNodeSource

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["check_leaf_node", "check_key_package"]


def _check_hpke_public_key(cs: CipherSuite, key: bytes, what: str) -> None:
    """``key`` parses as a public key of the suite's KEM: a malformed one would make every later
    encryption to it fail, so it is refused on arrival (§7.3, §10.1)."""
    try:
        cs.hpke_public_key(key)
    except RemoteProtocolError as e:
        raise ValidationError(f"{what} is not a public key of the cipher suite's KEM ({e})") from None


def check_leaf_node(
    cs: CipherSuite,
    leaf: LeafNode,
    *,
    source: LeafNodeSource,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
    others: Iterable[LeafNode] = (),
    required: RequiredCapabilities | None = None,
    now: int | None = None,
) -> None:
    """§7.3 for ``leaf`` arriving as ``source`` (at ``leaf_index`` of group ``group_id`` for
    update and commit leaves), its encryption key a public key of the suite's KEM; ``others``
    are the other members' leaves (not the one it replaces)."""
    if leaf.leaf_node_source != source:
        raise ValidationError(f"leaf node source is {leaf.leaf_node_source.name.lower()}, expected {source.name.lower()}")
    _check_hpke_public_key(cs, leaf.encryption_key, "leaf node's encryption key")
    if not leaf.verify_signature(cs, group_id, leaf_index):
        raise VerifyError("MLS: leaf node signature does not verify")
    caps = leaf.capabilities
    if required is not None and (missing := required.missing_in(caps)) is not None:
        raise ValidationError(f"leaf node does not support the group's required {missing}")
    if leaf.credential.credential_type not in caps.credentials:
        raise ValidationError(f"leaf node's capabilities do not list its own credential type {leaf.credential.credential_type}")
    for ext in leaf.extensions:
        if not caps.supports_extension(ext.extension_type):
            raise ValidationError(f"leaf node carries extension type {ext.extension_type} its capabilities do not list")
    if now is not None and leaf.lifetime is not None and not leaf.lifetime.contains(now):
        raise ValidationError("leaf node is outside its lifetime")
    for other in others:
        if other.credential.credential_type not in caps.credentials:
            raise ValidationError(f"leaf node does not support credential type {other.credential.credential_type} of a member")
        if leaf.credential.credential_type not in other.capabilities.credentials:
            raise ValidationError(f"a member does not support the leaf node's credential type {leaf.credential.credential_type}")
        if other.signature_key == leaf.signature_key:
            raise ValidationError("leaf node's signature key is a member's already")
        if other.encryption_key == leaf.encryption_key:
            raise ValidationError("leaf node's encryption key is a member's already")


def check_key_package(
    cs: CipherSuite,
    key_package: KeyPackage,
    *,
    others: Iterable[LeafNode] = (),
    required: RequiredCapabilities | None = None,
    now: int | None = None,
) -> None:
    """§10.1: version and suite of the group (``cs``), an init key of the suite's KEM, a valid
    key_package leaf, a valid signature, and an init key other than the leaf's encryption key."""
    if key_package.version != MLS10:
        raise ValidationError(f"KeyPackage of protocol version {key_package.version}")
    if key_package.cipher_suite != cs.id:
        raise ValidationError(f"KeyPackage of cipher suite {key_package.cipher_suite} in a group of suite {cs.id}")
    _check_hpke_public_key(cs, key_package.init_key, "KeyPackage init key")
    check_leaf_node(cs, key_package.leaf_node, source=LeafNodeSource.KEY_PACKAGE, others=others, required=required, now=now)
    if not key_package.verify_signature(cs):
        raise VerifyError("MLS: KeyPackage signature does not verify")
    if key_package.init_key == key_package.leaf_node.encryption_key:
        raise ValidationError("KeyPackage init key equals its leaf's encryption key")
