"""A ``Group``'s whole state as bytes and back (``Group.to_bytes`` / ``Group.from_bytes``), so a
device can keep its groups between runs.

Everything the Group holds round-trips: the suite, the signature private key, the epoch state
(GroupContext, ratchet tree, retained epoch secrets, the secret tree with each sender's ratchet
position and the keys of skipped generations it keeps, the interim transcript hash, the TreeKEM
private keys, the confirmation tag), the pending proposals in the order they came, the private
keys of our own Updates, the resumption PSKs, and the removed / ReInit flags. Not in it: the
external PSKs, which are the application's (``from_bytes(..., external_psks=)``), and any
StagedCommit (one made before a save does not merge into the loaded group: commit again).

The format is the MLS TLS codec (``codec``), version ``FORMAT_VERSION`` first::

    uint8 version = 1; uint16 cipher_suite; opaque signature_priv<V>;
    GroupContext context; opaque ratchet_tree<V>;          // the ratchet_tree extension's encoding
    opaque secret<V>[8];                                    // RetainedEpochSecrets, field order
    uint32 leaf_count; uint32 window; uint32 max_skipped;   // the secret tree
    struct { uint32 node; opaque secret<V>; } nodes<V>;     // node secrets not yet split, ascending
    struct { uint32 leaf; uint8 kind; uint64 next; optional<opaque> secret;
             struct { uint32 generation; opaque key<V>; opaque nonce<V>; } skipped<V>; } ratchets<V>;
    opaque interim_transcript_hash<V>;
    uint32 leaf_index; struct { uint32 node; opaque priv<V>; } private_keys<V>;   // ascending
    opaque confirmation_tag<V>;
    struct { opaque ref<V>; Sender sender; Proposal proposal; } pending<V>;        // as received
    struct { opaque ref<V>; opaque priv<V>; } own_updates<V>;
    struct { uint64 epoch; opaque psk<V>; } resumption<V>;                         // ascending
    uint8 removed; optional<Proposal> reinit;

Decoding is strict: truncation, trailing bytes, another version, a length or value out of range,
entries out of order or twice, and a state that contradicts itself (a tree whose hash is not the
context's, private keys that are not the tree's, a signature key that is not our leaf's, an own
Update that is not pending) are ``DecodeError`` naming the part. The bytes hold every secret of
the group: the application seals them (the client's vault); integrity against the disk is its job.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar

from ...errors import LocalProtocolError, ProtocolError
from ...limits import MLS_MAX_MESSAGE_BYTES
from ..codec import DecodeError, Reader, Writer, decode_all
from ..crypto import cipher_suite
from ..framing import Sender, SenderType
from ..key_schedule import GroupContext, RetainedEpochSecrets
from ..messages import ReInit, Update, read_proposal
from ..secret_tree import MAX_GENERATION, RatchetKey, RatchetKind, SecretTree, SenderRatchet
from ..tree import RatchetTree, TreeKEMPrivate
from ..tree_math import direct_path, leaf_to_node, level
from .state import EpochState, QueuedProposal

if TYPE_CHECKING:
    from ..crypto import CipherSuite
    from .group import Group

__all__ = ["FORMAT_VERSION", "MAX_STATE_BYTES", "encode_group", "decode_group"]

T = TypeVar("T")

#: the first byte of every saved group; another value is refused (a newer format needs new code)
FORMAT_VERSION = 1
#: a saved group holds the tree (capped at MLS_MAX_MESSAGE_BYTES like any Welcome) plus up to
#: MAX_PENDING_PROPOSALS proposals; four times the message cap leaves room for both
MAX_STATE_BYTES = 4 * MLS_MAX_MESSAGE_BYTES

# The encoding reads the fields of these classes: a new field must be added here and to the
# format (with a new FORMAT_VERSION), never silently left out.
_SECRET_FIELDS = (
    "sender_data_secret", "exporter_secret", "external_secret", "confirmation_key", "membership_key",
    "resumption_psk", "epoch_authenticator", "init_secret",
)  # fmt: skip
assert tuple(f.name for f in fields(RetainedEpochSecrets)) == _SECRET_FIELDS
assert tuple(f.name for f in fields(EpochState)) == (
    "context", "tree", "secrets", "secret_tree", "interim_transcript_hash", "private", "confirmation_tag",
)  # fmt: skip
assert SecretTree.__slots__ == ("_cs", "_leaves", "_nodes", "_ratchets", "_window", "_max_skipped")
assert SenderRatchet.__slots__ == ("_cs", "_secret", "_next", "_skipped", "_window", "_max_skipped")

_KIND_CODES = {RatchetKind.HANDSHAKE: 1, RatchetKind.APPLICATION: 2}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}


# ---- encoding ------------------------------------------------------------------------------------


def encode_group(group: Group) -> bytes:
    """``group`` as bytes (see the module's docstring for the format)."""
    state = group._state
    w = Writer()
    w.u8(FORMAT_VERSION)
    w.u16(group.cs.id)
    w.opaque(group._signature_priv)
    state.context.write(w)
    tree = state.tree.to_bytes()
    if len(tree) > MLS_MAX_MESSAGE_BYTES:  # RatchetTree.from_bytes would refuse it
        raise LocalProtocolError(f"MLS: a ratchet tree of {len(tree)} bytes is over the cap of {MLS_MAX_MESSAGE_BYTES}")
    w.opaque(tree)
    for name in _SECRET_FIELDS:
        w.opaque(getattr(state.secrets, name))
    _write_secret_tree(w, state.secret_tree)
    w.opaque(state.interim_transcript_hash)
    w.u32(state.private.leaf_index)
    w.vector(sorted(state.private.keys.items()), _write_indexed)
    w.opaque(state.confirmation_tag)
    w.vector(group._pending.values(), _write_pending)
    w.vector(group._own_updates.items(), _write_pair)
    w.vector(group._resumption.items(), _write_epoch_psk)
    w.u8(1 if group._removed else 0)
    w.optional(group._reinit, lambda w, reinit: reinit.write(w))
    data = w.bytes()
    if len(data) > MAX_STATE_BYTES:  # never write what from_bytes would refuse
        raise LocalProtocolError(f"MLS: a group state of {len(data)} bytes is over the cap of {MAX_STATE_BYTES}")
    return data


def _write_indexed(w: Writer, item: tuple[int, bytes]) -> None:
    w.u32(item[0])
    w.opaque(item[1])


def _write_pair(w: Writer, item: tuple[bytes, bytes]) -> None:
    w.opaque(item[0])
    w.opaque(item[1])


def _write_epoch_psk(w: Writer, item: tuple[int, bytes]) -> None:
    w.u64(item[0])
    w.opaque(item[1])


def _write_pending(w: Writer, queued: QueuedProposal) -> None:
    w.opaque(queued.ref)
    queued.sender.write(w)
    queued.proposal.write(w)


def _write_secret_tree(w: Writer, tree: SecretTree) -> None:
    w.u32(tree._leaves)
    w.u32(tree._window)
    w.u32(tree._max_skipped)
    w.vector(sorted(tree._nodes.items()), _write_indexed)
    ratchets = sorted(tree._ratchets.items(), key=lambda item: (item[0][0], _KIND_CODES[item[0][1]]))
    w.vector(ratchets, _write_ratchet)


def _write_ratchet(w: Writer, item: tuple[tuple[int, RatchetKind], SenderRatchet]) -> None:
    (leaf, kind), ratchet = item
    w.u32(leaf)
    w.u8(_KIND_CODES[kind])
    w.u64(ratchet._next)
    w.optional(ratchet._secret, Writer.opaque)
    w.vector(sorted(ratchet._skipped.values(), key=lambda k: k.generation), _write_skipped)


def _write_skipped(w: Writer, key: RatchetKey) -> None:
    w.u32(key.generation)
    w.opaque(key.key)
    w.opaque(key.nonce)


# ---- decoding ------------------------------------------------------------------------------------


def decode_group(data: bytes, *, external_psks: MutableMapping[bytes, bytes] | None = None) -> Group:
    """The Group ``encode_group`` wrote; ``external_psks`` as for ``Group.create``."""
    try:
        return decode_all(data, lambda r: _read_group(r, external_psks), max_bytes=MAX_STATE_BYTES)
    except DecodeError as e:
        raise DecodeError(f"group state: {_reason(e)}") from None


def _reason(e: ProtocolError) -> str:
    return str(e).removeprefix("MLS: ")


def _part(name: str, r: Reader, read: Callable[[Reader], T]) -> T:
    """``read(r)``, a refusal inside it named for the part of the state it was reading."""
    try:
        return read(r)
    except ProtocolError as e:  # DecodeError, or a key that does not parse, a tree that does not hold together
        raise DecodeError(f"{name}: {_reason(e)}") from None


def _sized(r: Reader, size: int, what: str) -> bytes:
    value = r.opaque()
    if len(value) != size:
        raise DecodeError(f"{what} of {len(value)} bytes, the suite's is {size}")
    return value


def _ascending(keys: list[int], what: str) -> None:
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise DecodeError(f"{what} out of order or repeated")


def _read_group(r: Reader, external_psks: MutableMapping[bytes, bytes] | None) -> Group:
    from .group import MAX_PENDING_PROPOSALS, RESUMPTION_PSK_EPOCHS, Group

    version = _part("format version", r, Reader.u8)
    if version != FORMAT_VERSION:
        raise DecodeError(f"format version {version} is not one this code reads ({FORMAT_VERSION})")
    cs = _part("cipher suite", r, lambda r: cipher_suite(r.u16()))
    hash_size = len(cs.hash(b""))
    signature_priv = _part("signature key", r, Reader.opaque)
    context = _part("group context", r, GroupContext.read)
    if context.cipher_suite != cs.id:
        raise DecodeError(f"group context of cipher suite {context.cipher_suite}, the state's is {cs.id}")
    tree = _part("ratchet tree", r, lambda r: RatchetTree.from_bytes(cs, r.opaque()))
    if tree.root_tree_hash() != context.tree_hash:
        raise DecodeError("the ratchet tree's hash is not the group context's")
    secrets = RetainedEpochSecrets(**{name: _part(name, r, lambda r: _sized(r, cs.nh, "secret")) for name in _SECRET_FIELDS})
    secret_tree = _part("secret tree", r, lambda r: _read_secret_tree(r, cs, tree.n_leaves))
    interim = _part("interim transcript hash", r, lambda r: _sized(r, hash_size, "hash"))
    private = _part("private keys", r, lambda r: _read_private(r, tree))
    tag = _part("confirmation tag", r, lambda r: _sized(r, hash_size, "tag"))
    own_leaf = tree.leaf(private.leaf_index)
    assert own_leaf is not None  # _read_private checked the leaf key against the tree
    try:
        signature_pub = cs.signature_public_key(signature_priv)
    except ProtocolError as e:
        raise DecodeError(f"signature key: {_reason(e)}") from None
    if signature_pub != own_leaf.signature_key:
        raise DecodeError("the signature private key is not our leaf's")
    state = EpochState(context, tree, secrets, secret_tree, interim, private, tag)

    pending = _part("pending proposals", r, lambda r: _read_pending(r, hash_size, MAX_PENDING_PROPOSALS))
    own_updates = _part("own updates", r, lambda r: _read_own_updates(r, cs, pending, private.leaf_index))
    resumption = _part("resumption PSKs", r, lambda r: _read_resumption(r, cs, state, RESUMPTION_PSK_EPOCHS))
    removed = _part("removed flag", r, Reader.u8)
    if removed > 1:
        raise DecodeError(f"removed flag {removed} (must be 0 or 1)")
    reinit = _part("reinit", r, lambda r: r.optional(read_proposal))
    if reinit is not None and not isinstance(reinit, ReInit):
        raise DecodeError(f"a {type(reinit).__name__} proposal where a ReInit was expected")
    if removed and reinit is not None:
        raise DecodeError("both removed and reinitialised")

    group = Group(cs, state, signature_priv, external_psks=external_psks)
    group._pending = pending
    group._own_updates = own_updates
    group._resumption = resumption
    group._removed = bool(removed)
    group._reinit = reinit
    return group


def _read_secret_tree(r: Reader, cs: CipherSuite, tree_leaves: int) -> SecretTree:
    leaves, window, max_skipped = r.u32(), r.u32(), r.u32()
    if leaves != tree_leaves:
        raise DecodeError(f"{leaves} leaves, the ratchet tree has {tree_leaves}")
    width = 2 * leaves - 1
    nodes = r.vector(lambda r: (r.u32(), _sized(r, cs.nh, "node secret")))
    _ascending([n for n, _ in nodes], "node secrets")
    if nodes and nodes[-1][0] >= width:
        raise DecodeError(f"a secret for node {nodes[-1][0]} of a tree of {width} nodes")
    ratchets = r.vector(lambda r: _read_ratchet(r, cs, leaves, window, max_skipped))
    _ascending([4 * leaf + _KIND_CODES[kind] for (leaf, kind), _ in ratchets], "ratchets")
    # Each leaf's secret comes from exactly one place: a held node's secret (itself or an
    # ancestor), or its ratchets (both kinds, made together); anything else is not a state the
    # tree can reach, and would fail only later, when that sender is used.
    held = {n for n, _ in nodes}
    for n in held:
        if held.intersection(direct_path(n, leaves)):
            raise DecodeError(f"node {n} and one of its ancestors are both held")
    split = {leaf for (leaf, _), _ in ratchets}
    for leaf in split:
        node = leaf_to_node(leaf)
        if node in held or held.intersection(direct_path(node, leaves)):
            raise DecodeError(f"leaf {leaf} has ratchets and a held secret above it")
    if len(ratchets) != 2 * len(split):
        raise DecodeError("a sender with one ratchet of the two")
    if len(split) + sum(1 << level(n) for n in held) != leaves:  # disjoint (above): count them
        raise DecodeError("the secrets held do not cover every sender")
    try:
        tree = SecretTree(cs, bytes(cs.nh), leaves, window=window, max_skipped=max_skipped)
    except ProtocolError as e:
        raise DecodeError(_reason(e)) from None
    tree._nodes = dict(nodes)
    tree._ratchets = dict(ratchets)
    return tree


def _read_ratchet(
    r: Reader, cs: CipherSuite, leaves: int, window: int, max_skipped: int
) -> tuple[tuple[int, RatchetKind], SenderRatchet]:
    leaf = r.u32()
    if leaf >= leaves:
        raise DecodeError(f"a ratchet for leaf {leaf} of a tree of {leaves} leaves")
    code = r.u8()
    kind = _KINDS.get(code)
    if kind is None:
        raise DecodeError(f"ratchet kind {code} (must be 1 or 2)")
    next_generation = r.u64()
    if next_generation > MAX_GENERATION + 1:
        raise DecodeError(f"next generation {next_generation} is past 2^32")
    secret = r.optional(lambda r: _sized(r, cs.nh, "ratchet secret"))
    if (secret is None) != (next_generation == MAX_GENERATION + 1):
        raise DecodeError("a ratchet secret held past the last generation, or missing before it")
    skipped = r.vector(lambda r: RatchetKey(r.u32(), _sized(r, cs.nk, "key"), _sized(r, cs.nn, "nonce")))
    generations = [k.generation for k in skipped]
    _ascending(generations, "skipped generations")
    if skipped and not (generations[0] >= next_generation - window and generations[-1] < next_generation):
        raise DecodeError(f"skipped generations outside the window ({window} behind {next_generation})")
    ratchet = SenderRatchet(cs, bytes(cs.nh), window=window, max_skipped=max_skipped)
    ratchet._secret = secret
    ratchet._next = next_generation
    ratchet._skipped = {k.generation: k for k in skipped}
    return (leaf, kind), ratchet


def _read_private(r: Reader, tree: RatchetTree) -> TreeKEMPrivate:
    leaf_index = r.u32()
    keys = r.vector(lambda r: (r.u32(), r.opaque()))
    _ascending([n for n, _ in keys], "private keys")
    if leaf_index >= tree.n_leaves or tree.leaf(leaf_index) is None:
        raise DecodeError(f"our leaf {leaf_index} is not a member of the tree")
    private = TreeKEMPrivate(leaf_index, dict(keys))
    if leaf_to_node(leaf_index) not in private.keys:
        raise DecodeError("no private key for our own leaf")
    private.check_against(tree)  # ValidationError / a key that does not parse: named by _part
    return private


def _read_pending(r: Reader, ref_size: int, cap: int) -> dict[bytes, QueuedProposal]:
    def read(r: Reader) -> QueuedProposal:
        ref = _sized(r, ref_size, "proposal ref")
        sender = Sender.read(r)
        return QueuedProposal(ref, read_proposal(r), sender)

    entries = r.vector(read)
    if len(entries) > cap:
        raise DecodeError(f"{len(entries)} proposals, more than the {cap} an epoch keeps")
    pending = {q.ref: q for q in entries}
    if len(pending) != len(entries):
        raise DecodeError("the same proposal ref twice")
    return pending


def _read_own_updates(r: Reader, cs: CipherSuite, pending: dict[bytes, QueuedProposal], leaf_index: int) -> dict[bytes, bytes]:
    entries = r.vector(lambda r: (r.opaque(), r.opaque()))
    own = dict(entries)
    if len(own) != len(entries):
        raise DecodeError("the same proposal ref twice")
    for ref, priv in own.items():
        queued = pending.get(ref)
        if queued is None or not isinstance(queued.proposal, Update) or queued.sender != Sender(SenderType.MEMBER, leaf_index):
            raise DecodeError("a key for an Update of ours that is not pending")
        if cs.hpke_private_key(priv).public.raw != queued.proposal.leaf_node.encryption_key:
            raise DecodeError("an Update's private key does not match its leaf")
    return own


def _read_resumption(r: Reader, cs: CipherSuite, state: EpochState, cap: int) -> OrderedDict[int, bytes]:
    entries = r.vector(lambda r: (r.u64(), _sized(r, cs.nh, "PSK")))
    _ascending([epoch for epoch, _ in entries], "epochs")
    if not 1 <= len(entries) <= cap:
        raise DecodeError(f"{len(entries)} epochs (1 to {cap} are kept)")
    if entries[-1] != (state.epoch, state.secrets.resumption_psk):
        raise DecodeError("the last one is not the current epoch's")
    return OrderedDict(entries)

