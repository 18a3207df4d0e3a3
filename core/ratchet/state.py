"""The session record: one side's Double Ratchet state as an immutable value.

:class:`SessionState` is what core/ratchet/session.py's ``encrypt``/``decrypt`` take and return
(they never modify one) and what the device stores, as canonical CBOR via :meth:`to_bytes`.
The record holds secrets (root and chain keys, ratchet secrets, skipped message keys), so the
caller keeps it encrypted at rest; :meth:`from_bytes` treats it as our own data and raises
``LocalProtocolError`` when it is damaged. Public keys and key ids derived from the stored
secrets are recomputed on load, never stored. ``repr`` shows no secrets.

A state also carries its ratchet key pairs as live key objects (not serialized): building an
ML-KEM-768 key from its seed costs about as much as generating one, so a state passes them on
to its successors instead of rebuilding them on every turn. A caller that keeps the state
object between messages (client/sessions.py) therefore pays for the expansion only on load,
and not even then for a key it still holds (``from_bytes(..., expanded=)``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import canonical, limits
from ..crypto import CryptoMode, MlKemKeyPair, VerifyKey, X25519KeyPair, sha256
from ..crypto.expanded import ExpandedKeys
from ..errors import LocalProtocolError, RemoteProtocolError
from ._codec import NONE, decode_map, dumps_ordered, need_len, need_range

__all__ = ["INITIATOR", "RESPONDER", "SessionState", "kem_key_id", "state_values", "state_from_values"]

INITIATOR = "initiator"
RESPONDER = "responder"
#: 2: the sparse post-quantum ratchet's epoch fields. A record of format 1 (every hybrid
#: header carried ML-KEM material) is refused, not migrated: its peer still runs the old
#: ratchet, so the session must be started again (there is no deployed base to carry over).
RECORD_VERSION = 2
DH_LEN, KEM_SEED_LEN, KEM_PUB_LEN, KEM_CT_LEN, KID_LEN, KEY_LEN, CHAIN_ID_LEN = 32, 64, 1184, 1088, 8, 32, 16
_B, _OB, _I = (bytes,), (bytes, NONE), (int,)
_MAX_CHUNKS = 16  # received chunks a record may hold (3 of one kind rebuild the whole)
_CHUNK_INDICES = 256  # chunk indices are the points of core/ratchet/erasure.py's code


def kem_key_id(public: bytes) -> bytes:
    """The 8-byte id a header uses to name the ML-KEM key it encapsulated to."""
    return sha256(public)[:KID_LEN]


# Not slots: a state's fields live in its __dict__, so the ratchet's successor of a state (one
# per message) is a dict copy in C (state_values / state_from_values) rather than ~40 slot reads
# and writes in Python: ~1 µs instead of ~5.
@dataclass(frozen=True, kw_only=True, repr=False)
class SessionState:
    """One side of one session. Immutable: operations return a new state.

    For callers: ``mode``, ``role``, ``session_id``, ``peer_identity`` (check it against the
    directory / sender certificate), ``peer_identity_dh`` and :attr:`needs_prekey_header`. The
    other fields are the ratchet's internals (exposed read-only for tests)."""

    mode: CryptoMode
    role: str
    session_id: bytes
    ad: bytes
    peer_identity: VerifyKey
    peer_identity_dh: bytes | None
    root_key: bytes
    own_dh: bytes | None  # X25519 ratchet secret
    own_kem: bytes | None  # ML-KEM seed of the current key
    prev_kem: bytes | None  # ML-KEM seed of the previous key
    peer_dh: bytes | None
    peer_kem: bytes | None
    send_ck: bytes | None
    send_n: int
    prev_send_n: int
    send_ct: bytes | None  # this chain's encapsulation to the peer (same in every header)
    send_kid: bytes | None
    recv_ck: bytes | None
    recv_n: int
    recv_chain: bytes | None
    skipped: Mapping[tuple[bytes, int], bytes]  # (chain id, n) -> message key, oldest first
    prekey_header: bytes | None  # initiator: attached to every message until the first reply
    # hybrid mode's sparse post-quantum ratchet (core/ratchet/epochs.py); 0/None/empty otherwise
    epoch: int = 0
    epoch_key: bytes | None = None
    prev_epoch_key: bytes | None = None  # for late messages of the epoch before
    next_epoch_key: bytes | None = None  # answered the owner's key; used once it switches
    epoch_msgs: int = 0  # messages sent and received in this epoch
    peer_epoch: int = 0  # the latest epoch of a message from the peer: older ones are late ones
    pq_seed: bytes | None = None  # owner: ML-KEM seed of the next epoch's key
    pq_ct: bytes | None = None  # peer: the ciphertext it sends in chunks
    pq_sent: int = 0  # chunks sent of the current key or ciphertext (round robin)
    pq_in: Mapping[int, bytes] = field(default_factory=lambda: types.MappingProxyType({}))  # chunks received
    pq_in_id: bytes | None = None  # their id (the peer keeps the answered key's id here)
    # derived from the secrets above, never serialized
    own_dh_key: X25519KeyPair | None = field(default=None, compare=False)
    own_kem_key: MlKemKeyPair | None = field(default=None, compare=False)
    prev_kem_key: MlKemKeyPair | None = field(default=None, compare=False)
    own_kem_id: bytes | None = field(default=None, compare=False)
    prev_kem_id: bytes | None = field(default=None, compare=False)
    pq_key: MlKemKeyPair | None = field(default=None, compare=False)
    pq_key_id: bytes | None = field(default=None, compare=False)

    @property
    def needs_prekey_header(self) -> bool:
        return self.prekey_header is not None

    @property
    def own_dh_pub(self) -> bytes | None:
        return self.own_dh_key.public if self.own_dh_key is not None else None

    @property
    def own_kem_pub(self) -> bytes | None:
        return self.own_kem_key.public if self.own_kem_key is not None else None

    def __repr__(self) -> str:
        return (
            f"SessionState({self.mode.value}, {self.role}, peer={self.peer_identity.fingerprint}, "
            f"sent={self.send_n}, received={self.recv_n}, skipped={len(self.skipped)}, epoch={self.epoch})"
        )

    # Session record ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        # written once per message: keys in canonical order (see _codec.dumps_ordered)
        return dumps_ordered(
            {
                "v": RECORD_VERSION,
                "ad": self.ad,
                "ct": self.send_ct,
                "dh": self.own_dh,
                "ep": self.epoch,
                "nr": self.recv_n,
                "ns": self.send_n,
                "pn": self.prev_send_n,
                "rk": self.root_key,
                "ckr": self.recv_ck,
                "cks": self.send_ck,
                "epk": self.epoch_key,
                "epm": self.epoch_msgs,
                "epn": self.next_epoch_key,
                "epp": self.prev_epoch_key,
                "epr": self.peer_epoch,
                "kem": self.own_kem,
                "kid": self.send_kid,
                "pqc": self.pq_ct,
                "pqi": [[i, d] for i, d in sorted(self.pq_in.items())],
                "pqn": self.pq_sent,
                "pqs": self.pq_seed,
                "sid": self.session_id,
                "mode": self.mode.value,
                "peer": self.peer_identity.to_bytes(),
                "pqid": self.pq_in_id,
                "role": self.role,
                "chain": self.recv_chain,
                "prekey": self.prekey_header,
                "peer_dh": self.peer_dh,
                "skipped": [[c, n, mk] for (c, n), mk in self.skipped.items()],
                "peer_idh": self.peer_identity_dh,
                "peer_kem": self.peer_kem,
                "prev_kem": self.prev_kem,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, expanded: ExpandedKeys[MlKemKeyPair] | None = None) -> "SessionState":
        """Load a record written by :meth:`to_bytes`; LocalProtocolError if it is damaged.
        ``expanded``: ML-KEM keys already built, by seed (client/session_cache.py keeps them
        while the session is live); the record's keys are taken from there or added to it."""
        try:
            v = decode_map(data, _RECORD, "session record", max_bytes=limits.MAX_SESSION_RECORD_BYTES, err=LocalProtocolError)
        except LocalProtocolError:
            if _version_of(data) == 1:
                raise LocalProtocolError(
                    "session record is of format 1, from before the sparse post-quantum ratchet, and is not "
                    "migrated: start a new session with this device"
                ) from None
            raise
        if v["v"] != RECORD_VERSION or v["role"] not in (INITIATOR, RESPONDER):
            raise LocalProtocolError("session record has an unknown version or role")
        mode = CryptoMode.parse(v["mode"], remote=False)
        try:
            peer = VerifyKey.from_bytes(v["peer"])
        except RemoteProtocolError:
            raise LocalProtocolError("session record holds a malformed peer identity") from None
        for name, length in _RECORD_LENGTHS.items():
            need_len(v[name], length, f"session record field {name!r}", LocalProtocolError)
        for name in ("ns", "pn", "nr", "ep", "epm", "epr", "pqn"):
            need_range(v[name], 0, limits.MAX_CHAIN_INDEX, f"session record field {name!r}", LocalProtocolError)
        skipped = v["skipped"]
        if len(skipped) > limits.MAX_SKIPPED_KEYS:
            raise LocalProtocolError("session record holds too many skipped keys")
        table: dict[tuple[bytes, int], bytes] = {}
        for entry in skipped:
            if not (
                type(entry) is list
                and len(entry) == 3
                and type(entry[0]) is bytes
                and len(entry[0]) == CHAIN_ID_LEN
                and type(entry[1]) is int
                and 0 <= entry[1] <= limits.MAX_CHAIN_INDEX
                and type(entry[2]) is bytes
                and len(entry[2]) == KEY_LEN
            ):
                raise LocalProtocolError("session record holds a malformed skipped key")
            table[(entry[0], entry[1])] = entry[2]
        chunks = _chunks(v["pqi"])
        _check_record_mode(v, mode)
        return _with_keys(
            cls(
                mode=mode,
                role=v["role"],
                session_id=v["sid"],
                ad=v["ad"],
                peer_identity=peer,
                peer_identity_dh=v["peer_idh"],
                root_key=v["rk"],
                own_dh=v["dh"],
                own_kem=v["kem"],
                prev_kem=v["prev_kem"],
                peer_dh=v["peer_dh"],
                peer_kem=v["peer_kem"],
                send_ck=v["cks"],
                send_n=v["ns"],
                prev_send_n=v["pn"],
                send_ct=v["ct"],
                send_kid=v["kid"],
                recv_ck=v["ckr"],
                recv_n=v["nr"],
                recv_chain=v["chain"],
                skipped=types.MappingProxyType(table),
                prekey_header=v["prekey"],
                epoch=v["ep"],
                epoch_key=v["epk"],
                prev_epoch_key=v["epp"],
                next_epoch_key=v["epn"],
                epoch_msgs=v["epm"],
                peer_epoch=v["epr"],
                pq_seed=v["pqs"],
                pq_ct=v["pqc"],
                pq_sent=v["pqn"],
                pq_in=types.MappingProxyType(chunks),
                pq_in_id=v["pqid"],
            ),
            expanded,
        )


_RECORD = {
    "v": _I, "mode": (str,), "role": (str,), "sid": _B, "ad": _B, "peer": _B, "peer_idh": _OB, "rk": _B,
    "dh": _OB, "kem": _OB, "prev_kem": _OB, "peer_dh": _OB, "peer_kem": _OB, "cks": _OB, "ns": _I, "pn": _I,
    "ct": _OB, "kid": _OB, "ckr": _OB, "nr": _I, "chain": _OB, "skipped": (list,), "prekey": _OB,
    "ep": _I, "epk": _OB, "epp": _OB, "epn": _OB, "epm": _I, "epr": _I, "pqs": _OB, "pqc": _OB, "pqn": _I,
    "pqi": (list,), "pqid": _OB,
}  # fmt: skip
_RECORD_LENGTHS = {
    "sid": 16, "peer_idh": DH_LEN, "rk": KEY_LEN, "dh": DH_LEN, "kem": KEM_SEED_LEN, "prev_kem": KEM_SEED_LEN,
    "peer_dh": DH_LEN, "peer_kem": KEM_PUB_LEN, "cks": KEY_LEN, "ct": KEM_CT_LEN, "kid": KID_LEN, "ckr": KEY_LEN,
    "chain": CHAIN_ID_LEN, "epk": KEY_LEN, "epp": KEY_LEN, "epn": KEY_LEN, "pqs": KEM_SEED_LEN, "pqc": KEM_CT_LEN,
    "pqid": KID_LEN,
}  # fmt: skip


_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionState))


def state_values(state: SessionState) -> dict[str, Any]:
    """Every field of ``state`` (derived ones too), to build its successor from."""
    return dict(state.__dict__)


def state_from_values(values: Mapping[str, Any]) -> SessionState:
    """``SessionState(**values)`` for a full set of fields, several times faster: the generated
    __init__ of a frozen dataclass with this many keyword arguments is slow, and the ratchet
    builds one state per message. Exactly the fields, as that __init__ would insist."""
    if values.keys() != _FIELDS:
        raise TypeError(f"a session state has the fields {sorted(_FIELDS)}, not {sorted(values)}")
    state = object.__new__(SessionState)
    object.__setattr__(state, "__dict__", dict(values))
    return state


def _version_of(data: bytes) -> object:
    """The ``v`` of a record that does not load, to say why (None if there is none)."""
    try:
        value = canonical.loads(data, max_bytes=limits.MAX_SESSION_RECORD_BYTES)
    except RemoteProtocolError:
        return None
    return value.get("v") if type(value) is dict else None


def _chunks(entries: list[Any]) -> dict[int, bytes]:
    """The record's received chunks: ``[[index, bytes], ...]``, at most one exchange's worth
    (core/ratchet/epochs.py checks each chunk as it arrives; this is a bound on our own record)."""
    if len(entries) > _MAX_CHUNKS:
        raise LocalProtocolError("session record holds too many post-quantum chunks")
    table: dict[int, bytes] = {}
    for entry in entries:
        if not (
            type(entry) is list and len(entry) == 2 and type(entry[0]) is int and 0 <= entry[0] < _CHUNK_INDICES
            and type(entry[1]) is bytes and 0 < len(entry[1]) <= KEM_PUB_LEN and entry[0] not in table
        ):  # fmt: skip
            raise LocalProtocolError("session record holds a malformed post-quantum chunk")
        table[entry[0]] = entry[1]
    return table


def _check_record_mode(v: dict[str, Any], mode: CryptoMode) -> None:
    classical = ("dh", "peer_dh", "peer_idh")
    turn_kem = ("kem", "prev_kem", "peer_kem", "ct", "kid")  # pq mode: ML-KEM in every turn
    sparse = ("epk", "epp", "epn", "pqs", "pqc", "pqid")  # hybrid mode: ML-KEM epochs
    per_turn, epochs = mode is CryptoMode.PQ, mode is CryptoMode.HYBRID
    if (
        (v["dh"] is None) == mode.uses_classical
        or (not mode.uses_classical and any(v[name] is not None for name in classical))
        or (not per_turn and any(v[name] is not None for name in turn_kem))
        or (per_turn and v["kem"] is None and v["cks"] is not None)
        or (not epochs and (any(v[name] is not None for name in sparse) or v["pqi"] or v["ep"] or v["epm"] or v["epr"] or v["pqn"]))
        or v["epr"] > v["ep"]  # the peer is never an epoch ahead once we have its message
        or (epochs and v["epk"] is None)
    ):
        raise LocalProtocolError("session record does not match its crypto mode")


def _with_keys(state: SessionState, expanded: ExpandedKeys[MlKemKeyPair] | None) -> SessionState:
    """Fill in the key objects and key ids derived from the state's secrets."""
    build = expanded.get if expanded is not None else MlKemKeyPair
    own_kem = build(state.own_kem) if state.own_kem is not None else None
    prev_kem = build(state.prev_kem) if state.prev_kem is not None else None
    pq_key = build(state.pq_seed) if state.pq_seed is not None else None
    return dataclasses.replace(
        state,
        own_dh_key=X25519KeyPair(state.own_dh) if state.own_dh is not None else None,
        own_kem_key=own_kem,
        prev_kem_key=prev_kem,
        own_kem_id=kem_key_id(own_kem.public) if own_kem is not None else None,
        prev_kem_id=kem_key_id(prev_kem.public) if prev_kem is not None else None,
        pq_key=pq_key,
        pq_key_id=kem_key_id(pq_key.public) if pq_key is not None else None,
    )
