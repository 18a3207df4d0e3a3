"""The Double Ratchet with a post-quantum ratchet: encrypt and decrypt messages.

The state they work on, and its record encoding, is core/ratchet/state.py.

Signal's Double Ratchet (revision 4) with these choices:

- ``KDF_RK(rk, x) = HKDF-SHA256(salt=rk, ikm=x, info="Sonet_Ratchet_Root_v1_" + mode, 64)``
  split into the new root key and a chain key; ``KDF_CK``: ``mk = HMAC-SHA256(ck, 0x01)``,
  ``ck' = HMAC-SHA256(ck, 0x02)``. A message is AES-256-GCM under ``key || nonce =
  HKDF-SHA256(mk, salt=epoch key or none, info="Sonet_Message_Keys_v1", 44)`` (the epoch key
  in hybrid mode only) with associated data ``AD || CBOR(header)`` (AD from PQXDH,
  core/ratchet/pqxdh.py).
- **PQ ratchet** (deviation from Signal's spec, which has no KEM in the Double Ratchet).
  *Hybrid mode* (the default) turns with X25519 only and runs the sparse post-quantum ratchet
  of core/ratchet/epochs.py beside it, as Signal's SPQR / "triple ratchet": ML-KEM-768 epochs
  whose key and ciphertext travel in chunks, one per message (header ``pq``), and whose epoch
  key salts every message key (header ``ep``). An attacker who knows every X25519 ratchet
  secret therefore still needs the current epoch's ML-KEM secret: recovery from a state
  compromise at the next turn against a classical attacker, and after the next complete
  epoch against one holding the X25519 secrets (tests/core/ratchet/test_security.py).
  *pq mode* has no X25519: whoever starts a sending chain generates a fresh ML-KEM key pair
  and, if it knows the peer's latest ML-KEM key, encapsulates to it. Every header of the chain
  carries the public key and ``(ct, kid)``, ``kid = SHA-256(peer ML-KEM key)[:8]``; the turn's
  root input is the KEM secret (empty on the initiator's first chain only), so recovery
  happens at the next turn. Cost: an ML-KEM public key and ciphertext (~2.3 KB) per header.
- A new chain is recognised by its chain id ``SHA-256(header dh || header kem)[:16]`` (not by
  the DH key alone, which pq mode lacks). On a new chain the receiver stores the skipped keys of
  its old receiving chain up to ``pn``, (pq mode) decapsulates with its own ML-KEM key whose id
  matches (it keeps the current and the previous one), derives the receiving chain, and at once
  makes its own sending turn (fresh keys, in pq mode encapsulation to the header's ML-KEM key).
  Because that turn, and the start of a post-quantum epoch, need randomness, :func:`decrypt`
  takes ``rng``; :func:`encrypt` needs none.
- Skipped keys: at most ``MAX_SKIP`` per chain step (more is "too many skipped messages", a
  RemoteProtocolError), at most ``MAX_SKIPPED_KEYS`` in total (oldest evicted). Every message
  key is deleted once used, so a replay fails with DecryptError.
- **Staged**: :func:`encrypt` and :func:`decrypt` return a new :class:`SessionState` and never
  change the one they are given; on any error nothing is consumed. The caller adopts the new
  state once its store has committed it (ARCHITECTURE §10.5).
- Messages are canonical CBOR ``{v: 2, h: header, c: ciphertext}``; until the initiator hears
  from the responder it wraps each one as ``{v: 2, prekey: PrekeyHeader, m: message}``, as
  Signal resends its PreKeySignalMessage. The responder's state only accepts a wrapped message
  whose prekey header is the one its session came from (the session id is a hash of it).

"Deleting" a key means dropping every reference to it; Python cannot promise the memory is
overwritten. ML-KEM encapsulation randomness comes from OpenSSL (see core/crypto/dh.py).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

from .. import canonical, limits
from ..crypto import Aead, CryptoMode, MlKemKeyPair, Rng, VerifyKey, X25519KeyPair, hkdf, hmac_sha256_pair, mlkem_encapsulate, sha256
from ..errors import DecryptError, LocalProtocolError, RemoteProtocolError
from ._codec import NONE, check_map, dumps_ordered, need_len, need_range
from .state import CHAIN_ID_LEN, DH_LEN, INITIATOR, KEM_CT_LEN, KEM_PUB_LEN, KID_LEN, RESPONDER, SessionState, kem_key_id
from .state import state_from_values, state_values
from . import epochs

__all__ = [
    "INITIATOR",
    "RESPONDER",
    "SessionState",
    "encrypt",
    "decrypt",
    "is_initial",
    "looks_initial",
    "prekey_part",
    "session_id_of",
    "initiator_state",
    "responder_state",
    "kem_key_id",
    "chain_id",
]

VERSION = 2  # 2: headers name the post-quantum epoch and carry its chunks
_ROOT_INFO = b"Sonet_Ratchet_Root_v1_"
_MESSAGE_INFO = b"Sonet_Message_Keys_v1"
_SESSION_ID_LABEL = b"sonet-session-id-v1"
_B, _OB, _I = (bytes,), (bytes, NONE), (int,)
_HEADER = {"dh": _OB, "kem": _OB, "ct": _OB, "kid": _OB, "pn": _I, "n": _I, "ep": (int, NONE), "pq": (dict, NONE)}
_MESSAGE = {"v": _I, "h": (dict,), "c": _B}
_INITIAL = {"v": _I, "prekey": (dict,), "m": (dict,)}
_HEADER_LENGTHS = tuple((name, length, f"ratchet header {name!r}") for name, length in (("dh", DH_LEN), ("kem", KEM_PUB_LEN), ("ct", KEM_CT_LEN), ("kid", KID_LEN)))


# Key schedule ------------------------------------------------------------------------------


def chain_id(dh: bytes | None, kem: bytes | None) -> bytes:
    return sha256((dh or b"") + (kem or b""))[:CHAIN_ID_LEN]


def session_id_of(prekey_header: bytes) -> bytes:
    """The id both sides give a session: a hash of the initiator's encoded prekey header."""
    return sha256(_SESSION_ID_LABEL, prekey_header)[:16]


def _kdf_rk(mode: CryptoMode, root_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    out = hkdf(ikm, salt=root_key, info=_ROOT_INFO + mode.value.encode(), length=64)
    return out[:32], out[32:]


def _kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """(next chain key, message key)"""
    return hmac_sha256_pair(chain_key, b"\x02", b"\x01")


def _aead(message_key: bytes, epoch_key: bytes | None) -> tuple[Aead, bytes]:
    """AES key and nonce of a message; in hybrid mode the epoch key is the salt, so a message
    key needs the post-quantum epoch secret as well as the DH ratchet's key."""
    okm = hkdf(message_key, salt=epoch_key, info=_MESSAGE_INFO, length=44)
    return Aead(okm[:32]), okm[32:]


# Staged updates: a mutable working copy, frozen again only when everything succeeded -------


def _work(state: SessionState) -> types.SimpleNamespace:
    w = types.SimpleNamespace(**state_values(state))
    w.skipped = dict(state.skipped)
    return w


def _freeze(w: types.SimpleNamespace) -> SessionState:
    values = dict(vars(w))
    values["skipped"] = types.MappingProxyType(values["skipped"])
    return state_from_values(values)


def _send_turn(w: types.SimpleNamespace, rng: Rng) -> None:
    """Start a new sending chain: fresh ratchet keys, DH with the peer's ratchet key and
    encapsulation to the peer's latest ML-KEM key, mixed into the root key."""
    ikm = b""
    if w.mode.uses_classical:
        pair = X25519KeyPair.generate(rng)
        ikm += pair.exchange(w.peer_dh)
        w.own_dh, w.own_dh_key = pair.secret_bytes(), pair
    if w.mode is CryptoMode.PQ:  # hybrid: ML-KEM in epochs instead (core/ratchet/epochs.py)
        kem = MlKemKeyPair.generate(rng)
        if w.peer_kem is not None:
            shared, w.send_ct = mlkem_encapsulate(w.peer_kem)
            w.send_kid = kem_key_id(w.peer_kem)
            ikm += shared
        else:
            w.send_ct = w.send_kid = None
        w.prev_kem, w.prev_kem_key, w.prev_kem_id = w.own_kem, w.own_kem_key, w.own_kem_id
        w.own_kem, w.own_kem_key, w.own_kem_id = kem.seed_bytes(), kem, kem_key_id(kem.public)
    w.root_key, w.send_ck = _kdf_rk(w.mode, w.root_key, ikm)
    w.prev_send_n, w.send_n = w.send_n, 0


def _receive_turn(w: types.SimpleNamespace, header: dict[str, Any], new_chain: bytes) -> None:
    """Derive the receiving chain the peer started with ``header``."""
    ikm = b""
    if w.mode.uses_classical:
        ikm += w.own_dh_key.exchange(header["dh"])
    if w.mode is CryptoMode.PQ:
        kid = header["kid"]
        if kid is None and w.own_kem is not None:
            # Only the initiator's first chain comes without an encapsulation: a stripped one
            # (or a replayed first-chain message) does not decrypt.
            raise DecryptError()
        if kid is not None:
            if kid == w.own_kem_id:
                key = w.own_kem_key
            elif w.prev_kem is not None and kid == w.prev_kem_id:
                key = w.prev_kem_key
            else:
                raise DecryptError()
            ikm += key.decapsulate(header["ct"])
    w.root_key, w.recv_ck = _kdf_rk(w.mode, w.root_key, ikm)
    w.recv_n, w.recv_chain = 0, new_chain
    w.peer_dh, w.peer_kem = header["dh"], header["kem"]


def _skip(w: types.SimpleNamespace, until: int) -> None:
    """Store the message keys of the current receiving chain up to (excluding) ``until``."""
    if w.recv_ck is None or until <= w.recv_n:
        return
    if until - w.recv_n > limits.MAX_SKIP:
        raise RemoteProtocolError(
            f"too many skipped messages: the header skips {until - w.recv_n} messages, at most {limits.MAX_SKIP} allowed"
        )
    skipped = w.skipped
    while w.recv_n < until:
        w.recv_ck, skipped[(w.recv_chain, w.recv_n)] = _kdf_ck(w.recv_ck)
        w.recv_n += 1
    while len(skipped) > limits.MAX_SKIPPED_KEYS:
        del skipped[next(iter(skipped))]


# Session setup (used by core/ratchet/pqxdh.py) -----------------------------------------------


def initiator_state(
    *,
    mode: CryptoMode,
    ad: bytes,
    root_key: bytes,
    prekey_header: bytes,
    peer_identity: VerifyKey,
    peer_identity_dh: bytes | None,
    peer_ratchet_dh: bytes | None,
    rng: Rng,
) -> SessionState:
    """Alice after PQXDH: RK = SK, peer ratchet key = Bob's signed prekey, no peer ML-KEM key
    yet; she makes her first sending turn (which therefore carries no encapsulation)."""
    w = _work(
        _blank(mode, INITIATOR, ad, root_key, session_id_of(prekey_header), peer_identity, peer_identity_dh, prekey_header)
    )
    w.peer_dh = peer_ratchet_dh
    _send_turn(w, rng)
    return _freeze(w)


def responder_state(
    *,
    mode: CryptoMode,
    ad: bytes,
    root_key: bytes,
    prekey_header: bytes,
    peer_identity: VerifyKey,
    peer_identity_dh: bytes | None,
    own_ratchet_dh: bytes | None,
) -> SessionState:
    """Bob after PQXDH: RK = SK, his signed prekey as current ratchet key, no ML-KEM key of his
    own yet. He can send only after decrypting Alice's first message (his first turn)."""
    state = _blank(mode, RESPONDER, ad, root_key, session_id_of(prekey_header), peer_identity, peer_identity_dh, None)
    own_dh_key = X25519KeyPair(own_ratchet_dh) if own_ratchet_dh is not None else None
    return dataclasses.replace(state, own_dh=own_ratchet_dh, own_dh_key=own_dh_key)


def _blank(
    mode: CryptoMode,
    role: str,
    ad: bytes,
    root_key: bytes,
    session_id: bytes,
    peer_identity: VerifyKey,
    peer_identity_dh: bytes | None,
    prekey_header: bytes | None,
) -> SessionState:
    return SessionState(
        mode=mode, role=role, session_id=session_id, ad=ad, peer_identity=peer_identity,
        peer_identity_dh=peer_identity_dh, root_key=root_key, own_dh=None, own_kem=None, prev_kem=None,
        peer_dh=None, peer_kem=None, send_ck=None, send_n=0, prev_send_n=0, send_ct=None, send_kid=None,
        recv_ck=None, recv_n=0, recv_chain=None, skipped=types.MappingProxyType({}), prekey_header=prekey_header,
        epoch_key=epochs.first_epoch_key(root_key) if mode is CryptoMode.HYBRID else None,
    )  # fmt: skip


# Messages ----------------------------------------------------------------------------------


def _decode(message: bytes) -> tuple[dict[str, Any] | None, dict[str, Any], bytes]:
    """Structure only: (prekey header map or None, header map, ciphertext)."""
    if type(message) is not bytes:
        raise RemoteProtocolError("ratchet message must be bytes")
    if len(message) > limits.MAX_RATCHET_MESSAGE_BYTES:
        raise RemoteProtocolError(f"ratchet message of {len(message)} bytes exceeds {limits.MAX_RATCHET_MESSAGE_BYTES}")
    value = canonical.loads(message, max_bytes=limits.MAX_RATCHET_MESSAGE_BYTES)
    prekey = None
    if type(value) is dict and "prekey" in value:
        check_map(value, _INITIAL, "prekey message")
        if value["v"] != VERSION:
            raise RemoteProtocolError(f"unsupported ratchet message version {value['v']}")
        prekey, value = value["prekey"], value["m"]
    check_map(value, _MESSAGE, "ratchet message")
    if value["v"] != VERSION:
        raise RemoteProtocolError(f"unsupported ratchet message version {value['v']}")
    return prekey, check_map(value["h"], _HEADER, "ratchet header"), value["c"]


def _check_header(h: dict[str, Any], mode: CryptoMode) -> None:
    per_turn, sparse = mode is CryptoMode.PQ, mode is CryptoMode.HYBRID
    if (h["dh"] is not None) != mode.uses_classical or (h["kem"] is not None) != per_turn:
        raise RemoteProtocolError(f"ratchet header does not have the ratchet keys of {mode.value} mode")
    if (h["ep"] is not None) != sparse:
        raise RemoteProtocolError(f"ratchet header {'lacks' if sparse else 'has'} the post-quantum epoch of {mode.value} mode")
    if (h["ct"] is None) != (h["kid"] is None) or (h["ct"] is not None and not per_turn):
        raise RemoteProtocolError("ratchet header has an incomplete or unexpected ML-KEM encapsulation")
    if h["pq"] is not None:
        if not sparse:
            raise RemoteProtocolError(f"ratchet header has a post-quantum chunk, which {mode.value} mode does not use")
        epochs.check_chunk(h["pq"], h["ep"])
    for name, length, what in _HEADER_LENGTHS:
        need_len(h[name], length, what)
    need_range(h["ep"], 0, limits.MAX_CHAIN_INDEX, "ratchet header 'ep'")
    need_range(h["pn"], 0, limits.MAX_CHAIN_INDEX, "ratchet header 'pn'")
    need_range(h["n"], 0, limits.MAX_CHAIN_INDEX, "ratchet header 'n'")


def prekey_part(message: bytes) -> bytes | None:
    """The encoded prekey header a message is wrapped with, or None. Structure only: nothing
    in it is verified (see core.ratchet.pqxdh.respond)."""
    prekey, _, _ = _decode(message)
    return canonical.dumps(prekey) if prekey is not None else None


def is_initial(message: bytes) -> bool:
    """True for a message wrapped with a prekey header (one that may start a session)."""
    return prekey_part(message) is not None


#: canonical CBOR of ``{m, v, prekey}``: a 3-entry map whose first key is "m" (a message that
#: is not wrapped, ``{c, h, v}``, starts with key "c")
_WRAPPED_PREFIX = b"\xa3\x61m"


def looks_initial(message: bytes) -> bool:
    """:func:`is_initial` by the first three bytes, without decoding: exact for every
    message :func:`decrypt` accepts (they are canonical CBOR), so a box can be checked and
    built around a message without decoding it twice."""
    return message[:3] == _WRAPPED_PREFIX


def encrypt(state: SessionState, plaintext: bytes) -> tuple[bytes, SessionState]:
    """Encrypt one message: ``(message bytes, new state)``; ``state`` stays unchanged."""
    if type(plaintext) is not bytes or len(plaintext) > limits.MAX_RATCHET_PLAINTEXT:
        raise LocalProtocolError(f"plaintext must be bytes of at most {limits.MAX_RATCHET_PLAINTEXT}")
    if state.send_ck is None:
        raise LocalProtocolError("this session cannot send before it has received the initiator's first message")
    if state.send_n >= limits.MAX_CHAIN_INDEX:
        raise LocalProtocolError("sending chain exhausted; the peer must reply before more can be sent")
    send_ck, message_key = _kdf_ck(state.send_ck)
    sparse = state.mode is CryptoMode.HYBRID
    chunk = epochs.next_chunk(state) if sparse else None
    # maps in canonical key order: encoded with _codec.dumps_ordered
    header = {
        "n": state.send_n,
        "ct": state.send_ct,
        "dh": state.own_dh_pub if state.mode.uses_classical else None,
        "ep": state.epoch if sparse else None,
        "pn": state.prev_send_n,
        "pq": chunk,
        "kem": state.own_kem_pub if state.mode is CryptoMode.PQ else None,
        "kid": state.send_kid,
    }
    aead, nonce = _aead(message_key, state.epoch_key)
    body: dict[str, Any] = {"c": aead.seal(nonce, plaintext, state.ad + dumps_ordered(header)), "h": header, "v": VERSION}
    if state.prekey_header is not None:
        body = {"m": body, "v": VERSION, "prekey": canonical.loads(state.prekey_header)}
    successor = state_values(state)
    successor.update(send_ck=send_ck, send_n=state.send_n + 1)
    if sparse:
        successor.update(epoch_msgs=state.epoch_msgs + 1, pq_sent=state.pq_sent + (chunk is not None))
    return dumps_ordered(body), state_from_values(successor)


def _open(message_key: bytes, state: SessionState, header: dict[str, Any], ciphertext: bytes) -> bytes:
    epoch = header["ep"]
    aead, nonce = _aead(message_key, epochs.epoch_key_for(state, epoch) if epoch is not None else None)
    # ``header`` was decoded from canonical CBOR, so it is in canonical key order
    return aead.open(nonce, ciphertext, state.ad + dumps_ordered(header))


def decrypt(state: SessionState, message: bytes, rng: Rng) -> tuple[bytes, SessionState]:
    """Decrypt one message: ``(plaintext, new state)``; ``state`` stays unchanged and valid
    whatever happens. ``rng`` supplies the new ratchet keys when the message starts a new chain.

    Raises DecryptError (opaque) when authentication fails, for replays and unknown ratchet
    keys; RemoteProtocolError for malformed messages and skip bounds."""
    prekey, header, ciphertext = _decode(message)
    if prekey is not None and (state.role != RESPONDER or session_id_of(canonical.dumps(prekey)) != state.session_id):
        raise RemoteProtocolError("prekey message belongs to another session")
    _check_header(header, state.mode)
    if state.recv_chain is not None and header["dh"] == state.peer_dh and header["kem"] == state.peer_kem:
        chain = state.recv_chain  # its id, set with these keys (_receive_turn): no hash per message
    else:
        chain = chain_id(header["dh"], header["kem"])
    key = (chain, header["n"])
    message_key = state.skipped.get(key)
    if message_key is None and header["ep"] is not None:
        epochs.check_not_late(state, header["ep"])  # a stolen old epoch key forges nothing
    if message_key is None and chain == state.recv_chain and header["n"] == state.recv_n and state.recv_ck is not None:
        # the next message of the current chain (the common case): no turn, nothing skipped,
        # so the successor differs in the chain key and counter only and shares ``skipped``
        recv_ck, message_key = _kdf_ck(state.recv_ck)
        plaintext = _open(message_key, state, header, ciphertext)
        successor = state_values(state)
        successor.update(recv_ck=recv_ck, recv_n=state.recv_n + 1)
        if state.role == INITIATOR:
            successor["prekey_header"] = None  # the responder has the session
        if header["ep"] is not None:
            epochs.received(successor, header["ep"], header["pq"], rng)
        return plaintext, state_from_values(successor)
    if message_key is not None:
        plaintext = _open(message_key, state, header, ciphertext)
        w = _work(state)
        del w.skipped[key]
    else:
        w = _work(state)
        if chain != w.recv_chain:
            _skip(w, header["pn"])
            _receive_turn(w, header, chain)
            _send_turn(w, rng)
        elif header["n"] < w.recv_n:
            raise DecryptError()  # already used (replay) or evicted
        _skip(w, header["n"])
        w.recv_ck, message_key = _kdf_ck(w.recv_ck)
        w.recv_n += 1
        plaintext = _open(message_key, state, header, ciphertext)
    if w.role == INITIATOR:
        w.prekey_header = None  # the responder has the session: stop attaching the header
    if header["ep"] is not None:
        epochs.received(vars(w), header["ep"], header["pq"], rng)
    return plaintext, _freeze(w)
