"""Session setup (core/ratchet/pqxdh.py): PQXDH in three modes, checks on the prekey header."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.ratchet import (
    MLKEM768,
    X25519,
    PrekeyHeader,
    associated_data,
    decrypt,
    encrypt,
    initiate,
    is_initial,
    open_initial,
    read_prekey_header,
    respond,
)

from .helpers import MODE_IDS, MODES, Device, device, edit, flip, identity, initial, rng, start


def _open(bob: Device, message: bytes, mode: CryptoMode | None = None) -> Any:
    return open_initial(
        message,
        mode=mode or bob.mode,
        identity=bob.identity,
        identity_dh_secret=bob.dh_secret,
        prekey_secret=bob.lookup,
        rng=rng("bob-open"),
    )


def _respond(bob: Device, header: PrekeyHeader, mode: CryptoMode | None = None) -> Any:
    return respond(mode=mode or bob.mode, identity=bob.identity, identity_dh_secret=bob.dh_secret, header=header, prekey_secret=bob.lookup)


def _prekey(message: bytes, **changes: Any) -> bytes:
    def change(value: dict[str, Any]) -> None:
        value["prekey"].update(changes)

    return edit(message, change)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_setup_and_first_message(mode: CryptoMode) -> None:
    alice_dev, bob_dev, alice, message, _ = initial(mode)
    assert is_initial(message) and alice.needs_prekey_header
    header = read_prekey_header(message)
    assert header is not None and header.mode is mode
    assert (header.ephemeral is not None, header.identity_dh is not None, header.spk_id is not None) == (mode.uses_classical,) * 3
    assert (header.pq_ciphertext is not None, header.pqpk_id is not None) == (mode.uses_pq,) * 2
    assert (header.signature is not None) == (mode is CryptoMode.PQ)
    plaintext, bob, used = _open(bob_dev, message)
    assert plaintext == b"hello"
    assert bob.session_id == alice.session_id and bob.ad == alice.ad
    assert bob.peer_identity == alice_dev.identity.public and alice.peer_identity == bob_dev.identity.public
    assert bob.peer_identity_dh == alice_dev.dh_public and alice.peer_identity_dh == bob_dev.dh_public
    assert alice.ad == associated_data(alice_dev.identity.public, alice_dev.dh_public, bob_dev.identity.public, bob_dev.dh_public)
    expected_used = ([(X25519, 100)] if mode.uses_classical else []) + ([(MLKEM768, 100)] if mode.uses_pq else [])
    assert list(used) == expected_used
    assert len(bob_dev.store) == (3 if mode.uses_classical else 0) + (3 if mode.uses_pq else 0)  # nothing deleted


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_session_key_follows_the_spec(mode: CryptoMode) -> None:
    """SK recomputed from Bob's secrets with cryptography directly, per the module docstring."""
    _, bob_dev, _, message, _ = initial(mode)
    header = read_prekey_header(message)
    assert header is not None
    state = _respond(bob_dev, header)
    ikm = b"\xff" * 32
    if mode.uses_classical:

        def dh(secret_key: tuple[str, int] | bytes, public: bytes) -> bytes:
            raw = secret_key if isinstance(secret_key, bytes) else canonical.loads(bob_dev.store[secret_key].to_bytes())["seed"]
            return x25519.X25519PrivateKey.from_private_bytes(raw).exchange(x25519.X25519PublicKey.from_public_bytes(public))

        assert header.identity_dh and header.ephemeral and bob_dev.dh_secret
        ikm += dh((X25519, 1), header.identity_dh) + dh(bob_dev.dh_secret, header.ephemeral) + dh((X25519, 1), header.ephemeral)
        ikm += dh((X25519, 100), header.ephemeral)
    if mode.uses_pq:
        seed = canonical.loads(bob_dev.store[(MLKEM768, 100)].to_bytes())["seed"]
        ikm += mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).decapsulate(header.pq_ciphertext)
    info = f"Sonet_PQXDH_{mode.value}_X25519_SHA-256_ML-KEM-768".encode()
    assert state.root_key == _hkdf(ikm, bytes(32), info, 32)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_prekey_exhaustion_falls_back_to_last_resort(mode: CryptoMode) -> None:
    pair = start(mode, one_time=False)
    assert pair.used == ()  # nothing one-time to delete
    pair.a2b(b"still works")
    pair.b2a(b"both ways")
    alice_dev, bob_dev, _, message, _ = initial(mode, one_time=False)
    header = read_prekey_header(message)
    assert header is not None and header.opk_id is None
    assert header.pq_last_resort == mode.uses_pq and header.one_time_prekeys == ()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_mode_relabel_is_refused(mode: CryptoMode) -> None:
    _, bob_dev, _, message, _ = initial(mode)
    for other in CryptoMode:
        if other is mode:
            continue
        relabelled = _prekey(message, mode=other.value)
        with pytest.raises(RemoteProtocolError, match=f"uses crypto mode {other.value}, expected {mode.value}"):
            _open(bob_dev, relabelled)
        with pytest.raises(ProtocolError):  # even a responder that would accept the other mode
            _open(bob_dev, relabelled, other)


def test_hybrid_stripped_to_classical_derives_another_key() -> None:
    """A downgrade that removes the ML-KEM part and the ratchet's KEM keys still fails: the
    mode is in the KDF info and SS is missing from SK."""
    _, bob_dev, _, message, _ = initial(CryptoMode.HYBRID)

    def downgrade(value: dict[str, Any]) -> None:
        value["prekey"].update(mode="classical", pq_ct=None, pqpk=None, pq_last_resort=False)
        value["m"]["h"].update(ep=None)  # the hybrid header's post-quantum epoch

    with pytest.raises(DecryptError):
        _open(bob_dev, edit(message, downgrade), CryptoMode.CLASSICAL)


def test_mode_is_bound_into_the_session_key() -> None:
    from sonet.core.ratchet import pqxdh

    secrets = [bytes(range(32))]
    keys = {pqxdh._derive(mode, secrets) for mode in CryptoMode}
    assert len(keys) == 3


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_tampered_prekey_header_fails_and_deletes_nothing(mode: CryptoMode) -> None:
    alice_dev, bob_dev, _, message, _ = initial(mode)
    header = read_prekey_header(message)
    assert header is not None
    carol = device(mode, "carol")
    changes: list[dict[str, Any]] = [{"identity": carol.identity.public.to_bytes()}]
    if mode.uses_classical:
        assert header.identity_dh and header.ephemeral
        changes += [
            {"identity_dh": carol.dh_public},
            {"ephemeral": flip(header.ephemeral, 3)},
            {"spk": 2},  # unknown
            {"opk": 101},  # another, still unused, one-time prekey
            {"opk": None},  # pretend no one-time prekey was used
            {"spk": 100},  # the one-time prekey named twice
            {"spk": 101},  # another one-time prekey as signed prekey
        ]
    if mode.uses_pq:
        assert header.pq_ciphertext
        changes += [
            {"pq_ct": flip(header.pq_ciphertext, 10)},
            {"pqpk": 1, "pq_last_resort": True},  # the last-resort key instead
            {"pq_last_resort": True},  # misstated flag
            {"pqpk": 7},  # unknown
        ]
    if mode is CryptoMode.PQ:
        assert header.signature
        changes += [{"sig": flip(header.signature, 1)}, {"sig": None}]
    store_before = dict(bob_dev.store)
    for change in changes:
        with pytest.raises(ProtocolError):
            _open(bob_dev, _prekey(message, **change))
    assert bob_dev.store == store_before
    assert _open(bob_dev, message)[0] == b"hello"  # the genuine message still opens


@pytest.mark.parametrize("mode", [CryptoMode.CLASSICAL, CryptoMode.HYBRID], ids=["classical", "hybrid"])
def test_identity_swap_breaks_decryption(mode: CryptoMode) -> None:
    _, bob_dev, _, message, _ = initial(mode)
    carol = device(mode, "carol")
    with pytest.raises(DecryptError):
        _open(bob_dev, _prekey(message, identity=carol.identity.public.to_bytes()))


def test_pq_identity_swap_fails_the_signature() -> None:
    _, bob_dev, _, message, _ = initial(CryptoMode.PQ)
    carol = device(CryptoMode.PQ, "carol")
    with pytest.raises(VerifyError):
        _open(bob_dev, _prekey(message, identity=carol.identity.public.to_bytes()))


def test_pq_forged_initiator_signature_fails() -> None:
    """Mallory starts a pq session claiming to be Alice: she cannot sign as Alice."""
    mode = CryptoMode.PQ
    bob_dev, alice_key, mallory_key = device(mode, "bob"), identity(mode, "alice"), identity(mode, "mallory")
    header, state = initiate(mode=mode, identity=mallory_key, identity_dh_secret=None, bundle=bob_dev.bundle(), rng=rng("m"))
    message, _ = encrypt(state, b"I am Alice")
    forged = _prekey(message, identity=alice_key.public.to_bytes())
    with pytest.raises(VerifyError):
        _open(bob_dev, forged)
    # re-signing with Mallory's own key over Alice's identity does not help either
    fake = dataclasses.replace(header, identity=alice_key.public.to_bytes(), signature=None)
    resigned = mallory_key.sign(b"sonet-pqxdh-init-v1", fake.signed_payload(state.ad, bob_dev.published["pq_last_resort"][0].public))
    with pytest.raises(VerifyError):
        _open(bob_dev, _prekey(message, identity=alice_key.public.to_bytes(), sig=resigned))


def test_signature_only_in_pq_mode() -> None:
    _, bob_dev, _, message, _ = initial(CryptoMode.HYBRID)
    with pytest.raises(RemoteProtocolError, match="signed in pq mode and only there"):
        _open(bob_dev, _prekey(message, sig=b"x" * 64))


def test_pq_mode_refuses_classical_identities() -> None:
    bob_dev = device(CryptoMode.PQ, "bob")
    ed_only = SigningKey.generate(CryptoMode.CLASSICAL, rng("ed"))
    with pytest.raises(LocalProtocolError, match="ML-DSA"):
        initiate(mode=CryptoMode.PQ, identity=ed_only, identity_dh_secret=None, bundle=bob_dev.bundle(), rng=rng("x"))
    _, _, _, message, _ = initial(CryptoMode.PQ)
    with pytest.raises(RemoteProtocolError, match="ML-DSA"):
        _open(bob_dev, _prekey(message, identity=ed_only.public.to_bytes()))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_missing_parts_are_refused(mode: CryptoMode) -> None:
    _, bob_dev, _, message, _ = initial(mode)
    fields = (["identity_dh", "ephemeral", "spk"] if mode.uses_classical else []) + (["pq_ct", "pqpk"] if mode.uses_pq else [])
    for name in fields:
        with pytest.raises(RemoteProtocolError, match="parts of"):
            _open(bob_dev, _prekey(message, **{name: None}))


def test_initiate_checks_its_inputs() -> None:
    mode = CryptoMode.HYBRID
    alice, bob = device(mode, "alice"), device(mode, "bob")
    with pytest.raises(LocalProtocolError, match="verify_bundle"):
        initiate(mode=mode, identity=alice.identity, identity_dh_secret=alice.dh_secret, bundle=bob.bundle(verify=False), rng=rng(1))
    with pytest.raises(LocalProtocolError, match="not classical"):
        initiate(mode=CryptoMode.CLASSICAL, identity=alice.identity, identity_dh_secret=alice.dh_secret, bundle=bob.bundle(), rng=rng(1))
    with pytest.raises(LocalProtocolError, match="identity DH key"):
        initiate(mode=mode, identity=alice.identity, identity_dh_secret=None, bundle=bob.bundle(), rng=rng(1))


def test_prekey_header_round_trip_and_peek() -> None:
    pair = start(CryptoMode.HYBRID)
    _, _, _, message, _ = initial(CryptoMode.HYBRID)
    header = read_prekey_header(message)
    assert header is not None and PrekeyHeader.from_bytes(header.to_bytes()) == header
    assert "identity=" not in repr(header) and "pq_ciphertext" not in repr(header)
    plain, pair.alice = encrypt(pair.alice, b"plain")
    assert not is_initial(plain) and read_prekey_header(plain) is None
    with pytest.raises(RemoteProtocolError, match="not a prekey message"):
        _open(pair.bob_dev, plain)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_prekey_header_attached_until_the_first_reply(mode: CryptoMode) -> None:
    pair = start(mode, reply=False)
    second = pair.a2b(b"second")
    assert is_initial(second) and pair.alice.needs_prekey_header  # Bob has not answered yet
    pair.b2a(b"reply")
    assert not pair.alice.needs_prekey_header
    assert not is_initial(pair.a2b(b"third"))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_prekey_message_of_another_session_is_refused_by_an_existing_session(mode: CryptoMode) -> None:
    pair = start(mode)
    # Alice (say, after a reinstall) starts a fresh session with Bob
    _, state = initiate(
        mode=mode, identity=pair.alice_dev.identity, identity_dh_secret=pair.alice_dev.dh_secret, bundle=pair.bob_dev.bundle(), rng=rng(9)
    )
    message, _ = encrypt(state, b"new session")
    before = pair.bob.to_bytes()
    with pytest.raises(RemoteProtocolError, match="another session"):
        decrypt(pair.bob, message, pair.b_rng)
    assert pair.bob.to_bytes() == before
    plaintext, fresh, _ = _open(pair.bob_dev, message)
    assert plaintext == b"new session" and fresh.session_id != pair.bob.session_id
    pair.a2b(b"the old session still works")


def test_initiator_refuses_prekey_messages() -> None:
    pair = start(CryptoMode.CLASSICAL, reply=False)
    _, _, _, message, _ = initial(CryptoMode.CLASSICAL)
    with pytest.raises(RemoteProtocolError, match="another session"):
        decrypt(pair.alice, message, pair.a_rng)


def test_store_returning_the_wrong_secret_is_a_local_error() -> None:
    _, bob_dev, _, message, _ = initial(CryptoMode.CLASSICAL)
    header = read_prekey_header(message)
    assert header is not None
    wrong = copy.copy(bob_dev)
    wrong.lookup = lambda kind, key_id: bob_dev.store[(X25519, 101)]  # type: ignore[method-assign]
    with pytest.raises(LocalProtocolError, match="wrong secret"):
        _respond(wrong, header)
