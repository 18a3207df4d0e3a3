"""What makes a live session state cheap to keep using (core/ratchet/state.py): ratchet key
objects are built once and handed on, and the fast encodings of the per-message path are
byte for byte the canonical CBOR that every strict decoder expects."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, MlKemKeyPair, X25519KeyPair
from sonet.core.errors import DecryptError
from sonet.core.ratchet import SessionState, decrypt, encrypt
from sonet.core.ratchet.session import _kdf_ck

from .helpers import MODE_IDS, MODES, initial, start


def _canonical(raw: bytes) -> bool:
    return canonical.dumps(canonical.loads(raw, max_bytes=1 << 20)) == raw


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_messages_and_records_are_canonical_cbor(mode: CryptoMode) -> None:
    _alice, _bob, alice, first, _rng = initial(mode)
    assert _canonical(first) and _canonical(alice.to_bytes())  # wrapped with the prekey header
    pair = start(mode, reply=False)
    skipped, pair.alice = encrypt(pair.alice, b"skipped")
    pair.a2b(b"leaves a skipped key behind")
    assert len(pair.bob.skipped) == 1
    for state in (pair.alice, pair.bob):
        raw = state.to_bytes()
        assert _canonical(raw) and SessionState.from_bytes(raw) == state
    assert _canonical(skipped)
    message = pair.b2a(b"a new chain")
    assert _canonical(message) and _canonical(pair.alice.to_bytes()) and _canonical(pair.bob.to_bytes())


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_ratchet_keys_are_built_once_per_turn(mode: CryptoMode, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = start(mode)
    built: list[str] = []
    for cls in (X25519KeyPair, MlKemKeyPair):
        original = cls.__init__

        def counting(self: object, secret: bytes, original=original, name=cls.__name__) -> None:  # noqa: ANN001
            built.append(name)
            original(self, secret)

        monkeypatch.setattr(cls, "__init__", counting)
    for _ in range(2):
        for n in range(3):
            pair.a2b(b"to bob %d" % n)
        for n in range(3):
            pair.b2a(b"to alice %d" % n)
    turns = 4  # every change of direction: the receiver starts a sending chain
    assert built.count("X25519KeyPair") == (turns if mode.uses_classical else 0)
    # hybrid: no ML-KEM key per turn, only one per post-quantum epoch (none within these 12)
    assert built.count("MlKemKeyPair") == (turns if mode is CryptoMode.PQ else 0)
    # a loaded record builds its own keys once (current and previous ML-KEM key)
    built.clear()
    SessionState.from_bytes(pair.alice.to_bytes())
    assert built.count("X25519KeyPair") == (1 if mode.uses_classical else 0)
    assert built.count("MlKemKeyPair") == (2 if mode is CryptoMode.PQ else 0)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("receiver", ["responder", "initiator"])
def test_the_next_message_of_a_chain_changes_only_its_chain_key_and_counter(mode: CryptoMode, receiver: str) -> None:
    # decrypt's common case builds the successor directly: the same state as the general path
    pair = start(mode, reply=receiver == "initiator")  # the receiver is on the sender's chain
    if receiver == "responder":
        message, pair.alice = encrypt(pair.alice, b"in order")
        before, rng = pair.bob, pair.b_rng
    else:
        message, pair.bob = encrypt(pair.bob, b"in order")
        before, rng = pair.alice, pair.a_rng
    plaintext, after = decrypt(before, message, rng)
    assert plaintext == b"in order"
    next_ck, _key = _kdf_ck(before.recv_ck)
    # (hybrid: the epoch counts the message too)
    epoch_msgs = before.epoch_msgs + (mode is CryptoMode.HYBRID)
    assert after == dataclasses.replace(before, recv_ck=next_ck, recv_n=before.recv_n + 1, epoch_msgs=epoch_msgs)
    assert after.skipped is before.skipped and after.own_kem_key is before.own_kem_key
    assert SessionState.from_bytes(after.to_bytes()) == after
    with pytest.raises(DecryptError):  # a replay takes the general path and fails
        decrypt(after, message, rng)
