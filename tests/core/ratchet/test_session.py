"""The Double Ratchet with the PQ KEM ratchet (core/ratchet/session.py): conversations,
out-of-order delivery, skip bounds, tampering, replay, staged state and session records."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError
from sonet.core.ratchet import SessionState, decrypt, encrypt, read_prekey_header, respond
from sonet.core.ratchet.session import chain_id, kem_key_id

from .helpers import MODE_IDS, MODES, Pair, edit, flip, initial, inner, start


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def _spec_open(
    root_key: bytes, ikm: bytes, mode: CryptoMode, ad: bytes, message: bytes, epoch_key: bytes | None = None
) -> tuple[bytes, bytes]:
    """Decrypt the first message of a new chain following the module docstring, independently:
    returns (plaintext, new root key). ``epoch_key``: hybrid mode's post-quantum epoch key."""
    value = inner(canonical.loads(message, max_bytes=1 << 20))
    out = _hkdf(ikm, root_key, b"Sonet_Ratchet_Root_v1_" + mode.value.encode(), 64)
    chain_key = out[32:]
    assert value["h"]["n"] == 0
    okm = _hkdf(_hmac(chain_key, b"\x01"), epoch_key, b"Sonet_Message_Keys_v1", 44)
    return AESGCM(okm[:32]).decrypt(okm[32:], value["c"], ad + canonical.dumps(value["h"])), out[:32]


def _x(secret: bytes, public: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(secret).exchange(x25519.X25519PublicKey.from_public_bytes(public))


# Conversations -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_bidirectional_conversation(mode: CryptoMode) -> None:
    pair = start(mode)
    pattern = "aabbbababbaaab"
    for i, who in enumerate(pattern):
        (pair.a2b if who == "a" else pair.b2a)(f"message {i}".encode())
    assert pair.alice.skipped == {} and pair.bob.skipped == {}
    assert pair.alice.peer_identity == pair.bob_dev.identity.public


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_headers_carry_the_modes_ratchet_keys(mode: CryptoMode) -> None:
    pair = start(mode)
    message = pair.a2b(b"x")
    header = canonical.loads(message)["h"]
    per_turn = mode is CryptoMode.PQ  # hybrid: ML-KEM in sparse epochs, not in every header
    assert (header["dh"] is not None) == mode.uses_classical
    assert (header["kem"] is not None, header["ct"] is not None, header["kid"] is not None) == (per_turn,) * 3
    assert (header["ep"] is not None) == (mode is CryptoMode.HYBRID) and header["pq"] is None
    if per_turn:
        assert header["kid"] == kem_key_id(pair.bob.own_kem_pub) or header["kid"] == pair.bob.prev_kem_id


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_first_message_follows_the_spec(mode: CryptoMode) -> None:
    """Bob's first receiving chain recomputed independently: KDF_RK, KDF_CK, message keys, AD."""
    _, bob_dev, alice, message, _ = initial(mode)
    header = read_prekey_header(message)
    assert header is not None
    bob = respond(mode=mode, identity=bob_dev.identity, identity_dh_secret=bob_dev.dh_secret, header=header, prekey_secret=bob_dev.lookup)
    h = canonical.loads(message)["m"]["h"]
    assert h["ct"] is None and h["kid"] is None  # Alice knew no ML-KEM key of Bob's yet
    ikm = _x(bob.own_dh, h["dh"]) if mode.uses_classical else b""
    # hybrid: epoch 0's key comes from the PQXDH secret (the responder's first root key)
    epoch_key = _hkdf(bob.root_key, None, b"Sonet_PQ_Epoch0_v1", 32) if mode is CryptoMode.HYBRID else None
    assert (h["ep"] == 0) == (mode is CryptoMode.HYBRID)
    plaintext, _ = _spec_open(bob.root_key, ikm, mode, alice.ad, message, epoch_key)
    assert plaintext == b"hello"
    if epoch_key is not None:
        with pytest.raises(Exception):  # the DH ratchet's key alone does not open it
            _spec_open(bob.root_key, ikm, mode, alice.ad, message)


def test_kem_secret_is_mixed_into_each_turn_in_pq_mode() -> None:
    """Bob's reply in pq mode recomputed from Alice's secrets: the turn's ML-KEM secret."""
    pair = start(CryptoMode.PQ, reply=False)
    alice = pair.alice
    message, pair.bob = encrypt(pair.bob, b"reply")
    h = canonical.loads(message)["h"]
    assert h["kid"] == kem_key_id(alice.own_kem_pub)
    shared = mlkem.MLKEM768PrivateKey.from_seed_bytes(alice.own_kem).decapsulate(h["ct"])
    plaintext, _ = _spec_open(alice.root_key, shared, CryptoMode.PQ, alice.ad, message)
    assert plaintext == b"reply"
    with pytest.raises(Exception):  # without the KEM secret the same computation fails
        _spec_open(alice.root_key, b"", CryptoMode.PQ, alice.ad, message)
    assert chain_id(h["dh"], h["kem"]) != alice.recv_chain


# Out-of-order delivery and skip bounds ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_thousand_messages_in_random_order(mode: CryptoMode) -> None:
    pair = start(mode)
    messages = []
    for i in range(1000):
        message, pair.alice = encrypt(pair.alice, b"%d" % i)
        messages.append((i, message))
    random.Random(f"shuffle-{mode.value}").shuffle(messages)
    seen = []
    bob = pair.bob
    for i, message in messages:
        plaintext, bob = decrypt(bob, message, pair.b_rng)
        assert plaintext == b"%d" % i
        seen.append(i)
    assert sorted(seen) == list(range(1000)) and bob.skipped == {}
    for _, message in messages[:5]:  # every key was used exactly once
        with pytest.raises(DecryptError):
            decrypt(bob, message, pair.b_rng)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_late_messages_of_an_earlier_chain(mode: CryptoMode) -> None:
    pair = start(mode)
    first_chain = []
    for i in range(6):
        message, pair.alice = encrypt(pair.alice, b"A1-%d" % i)
        first_chain.append(message)
    plaintext, pair.bob = decrypt(pair.bob, first_chain[0], pair.b_rng)
    pair.b2a(b"reply")  # Alice turns: her next messages start a new chain
    second_chain = []
    for i in range(4):
        message, pair.alice = encrypt(pair.alice, b"A2-%d" % i)
        second_chain.append(message)
    order = [second_chain[2], first_chain[5], second_chain[0], first_chain[1], second_chain[3], first_chain[3]]
    order += [first_chain[2], second_chain[1], first_chain[4]]
    texts = set()
    for message in order:
        plaintext, pair.bob = decrypt(pair.bob, message, pair.b_rng)
        texts.add(plaintext)
    assert texts == {b"A1-%d" % i for i in range(1, 6)} | {b"A2-%d" % i for i in range(4)}
    assert pair.bob.skipped == {}


def _sent(pair: Pair, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        message, pair.alice = encrypt(pair.alice, b"%d" % i)
        out.append(message)
    return out


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_too_many_skipped_messages(mode: CryptoMode) -> None:
    pair = start(mode)
    messages = _sent(pair, limits.MAX_SKIP + 2)
    before = pair.bob.to_bytes()
    with pytest.raises(RemoteProtocolError, match="too many skipped messages"):
        decrypt(pair.bob, messages[limits.MAX_SKIP + 1], pair.b_rng)
    assert pair.bob.to_bytes() == before
    for n in (3, limits.MAX_SKIP, 0, limits.MAX_SKIP + 1):  # in-bound ones still decrypt
        plaintext, pair.bob = decrypt(pair.bob, messages[n], pair.b_rng)
        assert plaintext == b"%d" % n
    pair.b2a(b"and the session goes on")
    pair.a2b(b"both ways")


def test_skip_bound_applies_to_the_previous_chain_too() -> None:
    """A new chain's ``pn`` may not make the receiver derive more than MAX_SKIP keys of the
    chain it is leaving either."""
    pair = start(CryptoMode.CLASSICAL)
    message, _ = encrypt(pair.alice, b"x")  # n = 0 of a chain Bob has not seen yet
    assert canonical.loads(message)["h"]["n"] == 0
    forged = edit(message, lambda v: v["h"].update(pn=pair.bob.recv_n + limits.MAX_SKIP + 1))
    with pytest.raises(RemoteProtocolError, match="too many skipped messages"):
        decrypt(pair.bob, forged, pair.b_rng)
    assert decrypt(pair.bob, message, pair.b_rng)[0] == b"x"


def test_skipped_keys_are_capped_oldest_first() -> None:
    pair = start(CryptoMode.CLASSICAL)
    chains = []
    for _ in range(3):  # three chains, each leaving MAX_SKIP keys behind
        messages = _sent(pair, limits.MAX_SKIP + 1)
        plaintext, pair.bob = decrypt(pair.bob, messages[-1], pair.b_rng)
        chains.append(messages)
        pair.b2a(b"turn")
    assert len(pair.bob.skipped) == limits.MAX_SKIPPED_KEYS
    evicted = 3 * limits.MAX_SKIP - limits.MAX_SKIPPED_KEYS
    with pytest.raises(DecryptError):
        decrypt(pair.bob, chains[0][evicted - 1], pair.b_rng)
    plaintext, pair.bob = decrypt(pair.bob, chains[0][evicted], pair.b_rng)
    assert plaintext == b"%d" % evicted
    plaintext, pair.bob = decrypt(pair.bob, chains[2][0], pair.b_rng)
    assert plaintext == b"0"


# Tampering and replay -------------------------------------------------------------------------


def _header_changes(mode: CryptoMode, h: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = [{"n": h["n"] + 1}, {"pn": h["pn"] + 1}, {"n": h["n"] + 5}]
    if mode.uses_classical:
        changes += [{"dh": other["dh"]}, {"dh": flip(h["dh"], 7)}, {"dh": bytes(32)}]
    if mode is CryptoMode.HYBRID:  # the epoch, and the per-turn fields it must not have
        changes += [{"ep": h["ep"] + 1}, {"ep": None}, {"ep": -1}, {"kem": other["dh"] * 37}, {"kid": bytes(8)}]
    if mode is CryptoMode.PQ:
        changes += [
            {"ep": 0},
            {"kem": other["kem"]},
            {"ct": flip(h["ct"], 20)},
            {"kid": flip(h["kid"])},
            {"ct": None, "kid": None},  # strip the KEM part
            {"ct": None},
            {"kem": None},
        ]
    if not mode.uses_pq:
        changes += [{"kem": other["dh"] * 37}, {"ep": 0}]
    return changes


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("new_chain", [True, False], ids=["new-chain", "same-chain"])
def test_tampering_fails_and_leaves_the_state_intact(mode: CryptoMode, new_chain: bool) -> None:
    pair = start(mode)
    if not new_chain:
        pair.a2b(b"first of the chain")
    message, pair.alice = encrypt(pair.alice, b"genuine")
    other, _ = encrypt(start(mode, seed=1).alice, b"other session")
    h, oh = canonical.loads(message)["h"], canonical.loads(other)["h"]
    variants = [edit(message, lambda v, c=c: v["h"].update(c)) for c in _header_changes(mode, h, oh)]
    variants += [
        edit(message, lambda v: v.update(c=flip(v["c"], 3))),
        edit(message, lambda v: v.update(c=v["c"][:-1])),
        edit(message, lambda v: v.update(c=b"")),
        edit(message, lambda v: v.update(v=1)),  # the format before the post-quantum epochs
        edit(message, lambda v: v.update(v=3)),
        edit(message, lambda v: v.pop("c")),
        edit(message, lambda v: v["h"].pop("n")),
        edit(message, lambda v: v["h"].update(n=-1)),
        edit(message, lambda v: v["h"].update(n=True)),
        message[:-1],
        message + b"\x00",
        b"",
    ]
    before = pair.bob.to_bytes()
    for variant in variants:
        assert variant != message
        with pytest.raises(ProtocolError):
            decrypt(pair.bob, variant, pair.b_rng)
        assert pair.bob.to_bytes() == before  # nothing consumed, nothing half-updated
    plaintext, pair.bob = decrypt(pair.bob, message, pair.b_rng)
    assert plaintext == b"genuine"
    pair.b2a(b"still in sync")


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_associated_data_is_bound(mode: CryptoMode) -> None:
    """The same keys under another AD (as if the identities were swapped) do not decrypt."""
    pair = start(mode)
    message, pair.alice = encrypt(pair.alice, b"bound")
    swapped = canonical.dumps([*canonical.loads(pair.bob.ad)[2:], *canonical.loads(pair.bob.ad)[:2]])
    with pytest.raises(DecryptError):
        decrypt(dataclasses.replace(pair.bob, ad=swapped), message, pair.b_rng)
    assert decrypt(pair.bob, message, pair.b_rng)[0] == b"bound"


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_replays_are_rejected(mode: CryptoMode) -> None:
    pair = start(mode)
    m0 = pair.a2b(b"zero")
    with pytest.raises(DecryptError):
        decrypt(pair.bob, m0, pair.b_rng)
    m1, pair.alice = encrypt(pair.alice, b"one")
    m2, pair.alice = encrypt(pair.alice, b"two")
    _, pair.bob = decrypt(pair.bob, m2, pair.b_rng)  # m1's key is now a skipped key
    _, pair.bob = decrypt(pair.bob, m1, pair.b_rng)
    for old in (m1, m2):
        with pytest.raises(DecryptError):
            decrypt(pair.bob, old, pair.b_rng)
    pair.b2a(b"turn")
    pair.a2b(b"new chain")
    for old in (m0, m1, m2):  # messages of a finished chain
        with pytest.raises(DecryptError):
            decrypt(pair.bob, old, pair.b_rng)


def test_initiators_first_chain_replayed_after_turns() -> None:
    pair = start(CryptoMode.HYBRID, reply=False)
    first, pair.alice = encrypt(pair.alice, b"second of chain 0")
    _, pair.bob = decrypt(pair.bob, first, pair.b_rng)
    pair.b2a(b"turn")
    pair.a2b(b"turn back")
    with pytest.raises(DecryptError):
        decrypt(pair.bob, first, pair.b_rng)


# Staged state, records, limits ---------------------------------------------------------------


def test_operations_never_change_their_input() -> None:
    pair = start(CryptoMode.HYBRID)
    pair.a2b(b"open a chain")
    alice_before, bob_before = pair.alice.to_bytes(), pair.bob.to_bytes()
    message, alice_after = encrypt(pair.alice, b"x")
    plaintext, bob_after = decrypt(pair.bob, message, pair.b_rng)
    assert plaintext == b"x"
    assert pair.alice.to_bytes() == alice_before and pair.bob.to_bytes() == bob_before
    assert alice_after.send_n == pair.alice.send_n + 1 and bob_after.recv_n == pair.bob.recv_n + 1
    with pytest.raises(TypeError):
        pair.bob.skipped[(b"x", 1)] = b"y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.bob.root_key = b""  # type: ignore[misc]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_record_round_trip_mid_conversation(mode: CryptoMode) -> None:
    pair = start(mode, reply=False)
    pending = _sent(pair, 3)
    _, pair.bob = decrypt(pair.bob, pending[2], pair.b_rng)  # two skipped keys in Bob's record
    for side in ("alice", "bob"):
        state = getattr(pair, side)
        raw = state.to_bytes()
        loaded = SessionState.from_bytes(raw)
        assert loaded == state and loaded.to_bytes() == raw
        assert (loaded.own_dh_pub, loaded.own_kem_pub, loaded.own_kem_id) == (state.own_dh_pub, state.own_kem_pub, state.own_kem_id)
        setattr(pair, side, loaded)
    assert len(pair.bob.skipped) == 2 and pair.alice.needs_prekey_header
    for message in pending[:2]:
        _, pair.bob = decrypt(pair.bob, message, pair.b_rng)
    pair.b2a(b"after reload")
    pair.alice = SessionState.from_bytes(pair.alice.to_bytes())
    pair.a2b(b"and again")


def test_repr_shows_no_secrets() -> None:
    pair = start(CryptoMode.HYBRID, reply=False)
    _sent(pair, 2)
    text = repr(pair.bob) + repr(pair.alice)
    assert "hybrid" in text and pair.alice.peer_identity.fingerprint in text
    for secret in (pair.alice.root_key, pair.alice.send_ck, pair.alice.own_dh, pair.bob.recv_ck, pair.bob.epoch_key):
        assert secret is not None and secret.hex() not in text and repr(secret) not in text


def test_malformed_records_are_local_errors() -> None:
    state = start(CryptoMode.HYBRID).alice
    raw = canonical.loads(state.to_bytes())
    bad = [
        b"",
        b"not cbor",
        canonical.dumps({**raw, "v": 3}),
        canonical.dumps({**raw, "role": "bystander"}),
        canonical.dumps({**raw, "mode": "quantum"}),
        canonical.dumps({**raw, "rk": raw["rk"][:-1]}),
        canonical.dumps({**raw, "peer": b"junk"}),
        canonical.dumps({**raw, "epk": None}),  # hybrid without its epoch key
        canonical.dumps({**raw, "kem": bytes(64)}),  # hybrid with a per-turn ML-KEM key
        canonical.dumps({**raw, "epk": raw["epk"][:-1]}),
        canonical.dumps({**raw, "ep": -1}),
        canonical.dumps({**raw, "pqi": [[0, b"x"], [0, b"y"]]}),
        canonical.dumps({**raw, "pqi": [[256, b"x"]]}),
        canonical.dumps({**raw, "mode": "classical"}),
        canonical.dumps({**raw, "skipped": [[bytes(16), 1]]}),
        canonical.dumps({**raw, "skipped": [[bytes(16), i, bytes(32)] for i in range(limits.MAX_SKIPPED_KEYS + 1)]}),
        canonical.dumps({k: v for k, v in raw.items() if k != "ns"}),
    ]
    for record in bad:
        with pytest.raises(LocalProtocolError):
            SessionState.from_bytes(record)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_size_limits(mode: CryptoMode) -> None:
    pair = start(mode, reply=False)  # Alice still attaches her prekey header: the largest case
    message, _ = encrypt(pair.alice, bytes(limits.MAX_RATCHET_PLAINTEXT))  # the largest plaintext fits
    assert len(message) <= limits.MAX_RATCHET_MESSAGE_BYTES <= limits.MAX_SEALED_MESSAGE_BYTES
    assert decrypt(pair.bob, message, pair.b_rng)[0] == bytes(limits.MAX_RATCHET_PLAINTEXT)
    with pytest.raises(LocalProtocolError):
        encrypt(pair.alice, bytes(limits.MAX_RATCHET_PLAINTEXT + 1))
    with pytest.raises(LocalProtocolError):
        encrypt(pair.alice, "text")  # type: ignore[arg-type]
    huge = edit(message, lambda v: inner(v).update(c=inner(v)["c"] + bytes(limits.MAX_RATCHET_MESSAGE_BYTES)))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decrypt(pair.bob, huge, pair.b_rng)
    with pytest.raises(RemoteProtocolError):
        decrypt(pair.bob, "text", pair.b_rng)  # type: ignore[arg-type]


def test_responder_cannot_send_before_the_first_message() -> None:
    _, bob_dev, _, message, _ = initial(CryptoMode.CLASSICAL)
    header = read_prekey_header(message)
    assert header is not None
    bob = respond(mode=CryptoMode.CLASSICAL, identity=bob_dev.identity, identity_dh_secret=bob_dev.dh_secret, header=header, prekey_secret=bob_dev.lookup)
    with pytest.raises(LocalProtocolError, match="cannot send"):
        encrypt(bob, b"too early")
