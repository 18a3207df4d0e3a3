"""The validity rules of a LeafNode (RFC 9420 §7.3) and of a KeyPackage (§10.1).

Each check raises ``ValidationError`` naming the broken rule (``VerifyError`` for a signature).
Whether a credential is acceptable is the application's decision and is not checked here. Core
has no clock: the caller passes ``now`` (seconds since the epoch) to check a KeyPackage leaf's
lifetime, or None where RFC 9420 only recommends it (a received ratchet tree).

The group-wide rules (§7.3: the new leaf and every member support each other's credential types;
its signature and encryption keys are no member's) read a ``LeafSummary`` of the members'
leaves, not the leaves: counts that the ratchet tree keeps up to date as leaves change, so
checking a leaf costs O(the credential types in use), not a pass over the group, and a commit of k Adds
is checked in O(k), not O(k * n).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import RemoteProtocolError, VerifyError
from ..extensions.required_capabilities import RequiredCapabilities
from .errors import ValidationError
from .key_package import MLS10, KeyPackage
from .leaf_node import LeafNode, LeafNodeSource

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["LeafSummary", "check_leaf_node", "check_key_package"]


def _bump(counts: dict[Any, int], key: object, delta: int) -> None:
    n = counts.get(key, 0) + delta
    if n:
        counts[key] = n
    else:
        del counts[key]


@dataclass(slots=True)
class LeafSummary:
    """What the group-wide leaf rules need of a set of members' leaves: how many there are, how
    many hold each signature key and each encryption key, how many use each credential type,
    and how many list each credential type in their capabilities."""

    members: int = 0
    signature_keys: dict[bytes, int] = field(default_factory=dict)
    encryption_keys: dict[bytes, int] = field(default_factory=dict)
    #: credential type -> members whose credential is of that type
    credential_types: dict[int, int] = field(default_factory=dict)
    #: credential type -> members whose capabilities list it
    supporting: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, leaves: Iterable[LeafNode]) -> LeafSummary:
        summary = cls()
        for leaf in leaves:
            summary.add(leaf)
        return summary

    def copy(self) -> LeafSummary:
        return LeafSummary(
            self.members, self.signature_keys.copy(), self.encryption_keys.copy(), self.credential_types.copy(), self.supporting.copy()
        )

    def add(self, leaf: LeafNode) -> None:
        self._count(leaf, 1)

    def remove(self, leaf: LeafNode) -> None:
        """Forget a leaf counted by ``add`` before (its counts go down by one)."""
        self._count(leaf, -1)

    def _count(self, leaf: LeafNode, delta: int) -> None:
        self.members += delta
        _bump(self.signature_keys, leaf.signature_key, delta)
        _bump(self.encryption_keys, leaf.encryption_key, delta)
        _bump(self.credential_types, leaf.credential.credential_type, delta)
        for t in set(leaf.capabilities.credentials):  # a type listed twice is still one member's support
            _bump(self.supporting, t, delta)


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
    others: LeafSummary | Iterable[LeafNode] = (),
    replacing: LeafNode | None = None,
    required: RequiredCapabilities | None = None,
    now: int | None = None,
) -> None:
    """§7.3 for ``leaf`` arriving as ``source`` (at ``leaf_index`` of group ``group_id`` for
    update and commit leaves), its encryption key a public key of the suite's KEM; ``others``
    are the members' leaves, summarised (or the leaves, summarised here), and ``replacing`` the
    one of them ``leaf`` replaces (an Update's or a commit path's old leaf), which does not count."""
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
    if not isinstance(others, LeafSummary):
        others = LeafSummary.of(others)
    _check_against_members(leaf, others, replacing)


def _check_against_members(leaf: LeafNode, members: LeafSummary, replacing: LeafNode | None) -> None:
    """The group-wide rules of §7.3 against ``members`` without ``replacing``, rule by rule (a
    leaf breaking several gets the first rule's error, whichever members break it)."""
    caps = leaf.capabilities
    own_type = leaf.credential.credential_type
    n = members.members
    old_type: int | None = None
    old_supports: tuple[int, ...] = ()
    if replacing is not None:
        n, old_type, old_supports = n - 1, replacing.credential.credential_type, replacing.capabilities.credentials
    if n <= 0:
        return
    listed = set(caps.credentials)
    for t, count in members.credential_types.items():
        if t not in listed and count - (t == old_type) > 0:
            raise ValidationError(f"leaf node does not support credential type {t} of a member")
    if members.supporting.get(own_type, 0) - (own_type in old_supports) < n:
        raise ValidationError(f"a member does not support the leaf node's credential type {own_type}")
    old_signature, old_encryption = (replacing.signature_key, replacing.encryption_key) if replacing is not None else (None, None)
    if members.signature_keys.get(leaf.signature_key, 0) - (leaf.signature_key == old_signature) > 0:
        raise ValidationError("leaf node's signature key is a member's already")
    if members.encryption_keys.get(leaf.encryption_key, 0) - (leaf.encryption_key == old_encryption) > 0:
        raise ValidationError("leaf node's encryption key is a member's already")


def check_key_package(
    cs: CipherSuite,
    key_package: KeyPackage,
    *,
    others: LeafSummary | Iterable[LeafNode] = (),
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
