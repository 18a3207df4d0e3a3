"""The sparse post-quantum ratchet of hybrid sessions: ML-KEM-768 epochs apart from DH turns.

Hybrid mode's Double Ratchet (core/ratchet/session.py) turns with X25519 only; post-quantum
secrecy and recovery come from this layer, as in Signal's SPQR ("triple ratchet"), simplified:

- Both sides hold an **epoch key**. Epoch 0's comes from the PQXDH secret (itself ML-KEM
  protected); every message key is ``HKDF(DH-ratchet message key, salt=epoch key)``, and the
  header names the epoch (``ep``), so a message is readable only with its epoch's key.
- Epoch ``e+1`` is one ML-KEM-768 exchange. Its **owner** (the initiator for odd ``e+1``, the
  responder for even, so the sides take turns) generates a key pair once the current epoch has
  seen :data:`EPOCH_INTERVAL` messages, and sends the encapsulation key in chunks of
  :data:`CHUNK_LEN` bytes, one per message (header field ``pq``), until the peer shows it has
  the whole key (its first ciphertext chunk). Chunks are erasure coded (core/ratchet/erasure.py):
  chunk ``i`` is the value at ``i`` of a Reed-Solomon code of the zero-padded whole, the first
  three are the whole itself, and any three distinct ones rebuild it, so a network that drops
  the messages carrying one chunk index cannot stall the exchange (as SPQR). The peer, with the whole key checked
  against its id, encapsulates and sends the ciphertext the same way until the owner shows it
  has switched (a header naming ``e+1``). ``epoch key[e+1] = HKDF(ss, salt=epoch key[e])``.
  The owner switches as soon as the ciphertext is complete; the peer holds the new key as
  "next" and switches on the first message of ``e+1``, so neither uses a key the other lacks.
- A chunk is in the header, so in the message's associated data: only chunks of messages that
  decrypt count. ``pq = {e, k, i, n, id, d}``: the epoch it builds (always the header's epoch +
  1), kind ``"ek"`` or ``"ct"``, index (0..255), chunks needed (3), the id of the whole (``SHA-256(ek)[:8]``, or
  ``SHA-256(label, ek id, ct)[:8]``, which binds a ciphertext to the key it answers) and the
  bytes. Wrong totals, indices, lengths or epochs are refused before decryption; inconsistent
  ids or chunks, a key chunk from the side that does not own the epoch, a ciphertext for a key
  not sent, or a whole that does not match its id, after it (RemoteProtocolError, the state unchanged).
- Late messages: the previous epoch's key is kept until the next switch (one epoch back), then
  deleted; chunks of an exchange that has completed are ignored. A sender's epochs never go
  back, so once a message of epoch ``e`` came from the peer, one of an earlier epoch must have
  been sent before it and opens only with a skipped message key (:func:`check_not_late`):
  the previous epoch's key, if stolen, forges nothing at a new position. The owner's ML-KEM secret is
  deleted once its ciphertext is decapsulated, the shared secret is never stored.

Functions here work on a mutable dict of the state's fields (session.py's staged copy).
"""

from __future__ import annotations

import types
from typing import Any

from .. import limits
from ..crypto import MlKemKeyPair, Rng, hkdf, mlkem_encapsulate, sha256
from ..errors import DecryptError, RemoteProtocolError
from . import erasure
from ._codec import check_map, need_range
from .state import INITIATOR, KEM_CT_LEN, KEM_PUB_LEN, KID_LEN, RESPONDER, kem_key_id

__all__ = [
    "CHUNK_LEN",
    "EPOCH_INTERVAL",
    "check_chunk",
    "check_not_late",
    "ct_id",
    "epoch_key_for",
    "first_epoch_key",
    "next_chunk",
    "owner_of",
    "received",
]

#: bytes of key or ciphertext per message: any 3 distinct chunks each way complete an exchange
CHUNK_LEN = 400
#: messages (sent and received) an epoch sees before its owner starts the next exchange
EPOCH_INTERVAL = 20
EK, CT = "ek", "ct"
_LENGTHS = {EK: KEM_PUB_LEN, CT: KEM_CT_LEN}
#: chunks needed to rebuild each kind (the whole is zero-padded to this many CHUNK_LEN)
_TOTALS = {kind: -(-length // CHUNK_LEN) for kind, length in _LENGTHS.items()}
_CHUNK = {"d": (bytes,), "e": (int,), "i": (int,), "k": (str,), "n": (int,), "id": (bytes,)}
_EPOCH0_INFO = b"Sonet_PQ_Epoch0_v1"
_EPOCH_INFO = b"Sonet_PQ_Epoch_v1"
_CT_ID_LABEL = b"sonet-pq-ct-id-v1"


def first_epoch_key(root_key: bytes) -> bytes:
    """Epoch 0: from the PQXDH secret both sides start with."""
    return hkdf(root_key, salt=None, info=_EPOCH0_INFO, length=32)


def _next_epoch_key(epoch_key: bytes, shared: bytes, epoch: int) -> bytes:
    return hkdf(shared, salt=epoch_key, info=_EPOCH_INFO + epoch.to_bytes(4, "big"), length=32)


def owner_of(epoch: int) -> str:
    """The side that generates the ML-KEM key of ``epoch`` (epochs alternate)."""
    return INITIATOR if epoch % 2 else RESPONDER


def ct_id(ek_id: bytes, ciphertext: bytes) -> bytes:
    return sha256(_CT_ID_LABEL, ek_id, ciphertext)[:KID_LEN]


def check_chunk(pq: Any, epoch: int) -> None:
    """Structure of a header's chunk, before decryption (RemoteProtocolError)."""
    check_map(pq, _CHUNK, "post-quantum chunk")
    kind, index, total = pq["k"], pq["i"], pq["n"]
    if kind not in _TOTALS:
        raise RemoteProtocolError(f"post-quantum chunk of unknown kind {kind!r} (expected 'ek' or 'ct')")
    if total != _TOTALS[kind]:
        raise RemoteProtocolError(f"post-quantum {kind} chunk gives a total of {total}, expected {_TOTALS[kind]}")
    if not 0 <= index < erasure.POINTS:
        raise RemoteProtocolError(f"post-quantum {kind} chunk index {index} is out of range 0..{erasure.POINTS - 1}")
    if len(pq["d"]) != CHUNK_LEN:
        raise RemoteProtocolError(f"post-quantum {kind} chunk {index} must be {CHUNK_LEN} bytes")
    if len(pq["id"]) != KID_LEN:
        raise RemoteProtocolError(f"post-quantum chunk id must be {KID_LEN} bytes")
    if pq["e"] != epoch + 1:
        raise RemoteProtocolError(f"post-quantum chunk builds epoch {pq['e']}, but its message is of epoch {epoch}")


def epoch_key_for(state: Any, epoch: int) -> bytes:
    """The key of the epoch a header names: the previous, current or (peer's switch) next one."""
    need_range(epoch, 0, limits.MAX_CHAIN_INDEX, "ratchet header 'ep'")
    current = state.epoch
    if epoch == current:
        return state.epoch_key  # type: ignore[no-any-return]
    if epoch == current - 1 and state.prev_epoch_key is not None:
        return state.prev_epoch_key  # type: ignore[no-any-return]
    if epoch == current + 1 and state.next_epoch_key is not None:
        return state.next_epoch_key  # type: ignore[no-any-return]
    if epoch < current:
        raise RemoteProtocolError(f"message of post-quantum epoch {epoch} is older than this session keeps (now {current})")
    raise RemoteProtocolError(f"message names post-quantum epoch {epoch}, which this session has not reached (now {current})")


def check_not_late(state: Any, epoch: int) -> None:
    """A message at a new position (no skipped key) must not be of an epoch older than one
    the peer has already used: the peer sent no such message, so it is a forgery (opaque)."""
    if epoch < state.peer_epoch:
        raise DecryptError()


def next_chunk(state: Any) -> dict[str, Any] | None:
    """The chunk the next message carries (the caller advances ``pq_sent``), or None."""
    if state.pq_seed is not None and state.pq_in_id is None:  # owner: until a ciphertext chunk arrives
        payload, kind, ident = state.pq_key.public, EK, state.pq_key_id
    elif state.pq_ct is not None:  # peer: until the owner's messages name the new epoch
        payload, kind, ident = state.pq_ct, CT, ct_id(state.pq_in_id, state.pq_ct)
    else:
        return None
    total = _TOTALS[kind]
    index = state.pq_sent % erasure.POINTS  # a new chunk each message: any `total` rebuild the whole
    padded = payload.ljust(total * CHUNK_LEN, b"\0")
    # keys in canonical order (see _codec.dumps_ordered)
    return {
        "d": erasure.encode([padded[i * CHUNK_LEN : (i + 1) * CHUNK_LEN] for i in range(total)], index),
        "e": state.epoch + 1,
        "i": index,
        "k": kind,
        "n": total,
        "id": ident,
    }


def received(v: dict[str, Any], epoch: int, pq: dict[str, Any] | None, rng: Rng) -> None:
    """Update ``v`` for an authentic message of ``epoch`` carrying ``pq``."""
    if epoch == v["epoch"] + 1:  # the owner has switched: so do we (we hold its key as next)
        _advance(v, v["next_epoch_key"])
    v["epoch_msgs"] += 1
    v["peer_epoch"] = max(v["peer_epoch"], epoch)
    if pq is not None and pq["e"] == v["epoch"] + 1:  # else: a late chunk of a finished exchange
        _take_chunk(v, pq)
    if owner_of(v["epoch"] + 1) == v["role"] and v["pq_seed"] is None and v["epoch_msgs"] >= EPOCH_INTERVAL:
        key = MlKemKeyPair.generate(rng)
        v.update(pq_seed=key.seed_bytes(), pq_key=key, pq_key_id=kem_key_id(key.public), pq_sent=0)


def _take_chunk(v: dict[str, Any], pq: dict[str, Any]) -> None:
    epoch, kind = pq["e"], pq["k"]
    ours = owner_of(epoch) == v["role"]
    if kind == EK:
        if ours:
            raise RemoteProtocolError(f"ML-KEM key chunk for epoch {epoch}, whose key this side generates")
        if v["next_epoch_key"] is not None:
            return  # already answered: the owner repeats until it sees our ciphertext
        whole = _collect(v, pq)
        if whole is None:
            return
        if kem_key_id(whole) != pq["id"]:
            raise RemoteProtocolError(f"the ML-KEM key assembled for epoch {epoch} does not match its id")
        shared, ciphertext = mlkem_encapsulate(whole)
        v.update(
            next_epoch_key=_next_epoch_key(v["epoch_key"], shared, epoch),
            pq_ct=ciphertext, pq_in=types.MappingProxyType({}), pq_in_id=pq["id"], pq_sent=0,
        )  # fmt: skip
        return
    if not ours or v["pq_seed"] is None:
        raise RemoteProtocolError(f"ML-KEM ciphertext chunk for epoch {epoch}, for a key this side has not sent")
    whole = _collect(v, pq)
    if whole is None:
        return
    if ct_id(v["pq_key_id"], whole) != pq["id"]:
        raise RemoteProtocolError(f"the ML-KEM ciphertext assembled for epoch {epoch} does not match its id or the key this side sent")
    shared = v["pq_key"].decapsulate(whole)
    _advance(v, _next_epoch_key(v["epoch_key"], shared, epoch))


def _collect(v: dict[str, Any], pq: dict[str, Any]) -> bytes | None:
    """Add one chunk; the whole once enough distinct chunks are there."""
    held = v["pq_in"]
    if held and pq["id"] != v["pq_in_id"]:
        raise RemoteProtocolError(f"post-quantum chunk for epoch {pq['e']} names another id than the chunks before it")
    index = pq["i"]
    if index in held:
        if held[index] != pq["d"]:
            raise RemoteProtocolError(f"post-quantum chunk {index} for epoch {pq['e']} differs from its earlier copy")
        return None
    held = {**held, index: pq["d"]}
    v["pq_in"], v["pq_in_id"] = types.MappingProxyType(held), pq["id"]
    if len(held) < pq["n"]:
        return None
    padded = b"".join(erasure.decode(held, pq["n"]))
    length = _LENGTHS[pq["k"]]
    if any(padded[length:]):  # chunks of one id that are not of one whole (a faulty peer)
        raise RemoteProtocolError(f"post-quantum {pq['k']} chunks for epoch {pq['e']} do not agree with each other")
    return padded[:length]


def _advance(v: dict[str, Any], key: bytes) -> None:
    """Switch to the next epoch; the one before the current is deleted, and so is every part
    of the exchange (the owner's ML-KEM secret, the ciphertext, the chunks)."""
    v.update(
        epoch=v["epoch"] + 1, prev_epoch_key=v["epoch_key"], epoch_key=key, next_epoch_key=None, epoch_msgs=0,
        pq_seed=None, pq_key=None, pq_key_id=None, pq_ct=None, pq_in=types.MappingProxyType({}), pq_in_id=None, pq_sent=0,
    )  # fmt: skip
