"""Review of hybrid mode's sparse post-quantum ratchet (issue 14): attacks on the chunked
ML-KEM exchange of core/ratchet/epochs.py that the first tests did not try."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from sonet.core import canonical
from sonet.core.crypto import CryptoMode
from sonet.core.errors import DecryptError, RemoteProtocolError
from sonet.core.ratchet import SessionState, decrypt, encrypt, epochs

from .helpers import Pair, start

HYBRID = CryptoMode.HYBRID


def _chunk(message: bytes) -> dict[str, Any] | None:
    return canonical.loads(message, max_bytes=1 << 20)["h"]["pq"]  # type: ignore[no-any-return]


def _talk_through(pair: Pair, drop: Callable[[dict[str, Any]], bool], rounds: int) -> int:
    """Alternate one message each way for ``rounds``; the network drops each message whose
    chunk ``drop`` picks. The number of messages dropped."""
    dropped = 0
    for i in range(rounds):
        for sender in ("a", "b"):
            message = pair.seal(sender, b"%s%d" % (sender.encode(), i))
            chunk = _chunk(message)
            if chunk is not None and drop(chunk):
                dropped += 1
                continue
            pair.open(sender, message)
    return dropped


@pytest.mark.parametrize("kind", ["ek", "ct"])
def test_a_network_that_drops_every_message_with_one_chunk_index_does_not_stall_the_epochs(kind: str) -> None:
    """Round robin over three plain chunks let a dropper that sees headers (or counts
    messages) keep the session in its epoch for ever by dropping one chunk in three: the
    attacker holding every X25519 secret then reads on. Chunks are erasure coded, so any
    three distinct ones rebuild the whole (as Signal's SPQR), and the epochs move on."""
    pair = start(HYBRID)
    dropped = _talk_through(pair, lambda c: c["k"] == kind and c["i"] % 3 == 2, 150)
    assert dropped > 0
    assert min(pair.alice.epoch, pair.bob.epoch) >= 3


def test_any_three_distinct_chunks_rebuild_the_key_and_the_ciphertext() -> None:
    """Only coded chunks (none of the plain first three) reach the peer: the exchange completes."""
    pair = start(HYBRID)
    _talk_through(pair, lambda c: c["i"] < 3, 150)
    assert min(pair.alice.epoch, pair.bob.epoch) >= 3


def test_coded_chunks_that_do_not_agree_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A faulty peer's chunks under one id that are not of one whole: refused, state unchanged."""
    pair = start(HYBRID)
    while pair.alice.pq_seed is None:
        pair.a2b(b"a")
        pair.b2a(b"b")
    real = epochs.next_chunk
    for _ in range(2):
        pair.a2b(b"chunks 0 and 1")
    bad = lambda s: {**real(s), "i": 7, "d": bytes(range(200)) * 2}  # noqa: E731
    monkeypatch.setattr(epochs, "next_chunk", bad)
    message, _ = encrypt(pair.alice, b"a chunk 7 of nothing")
    monkeypatch.setattr(epochs, "next_chunk", real)
    before = pair.bob.to_bytes()
    with pytest.raises(RemoteProtocolError, match="do not agree|does not match its id"):
        decrypt(pair.bob, message, pair.b_rng)
    assert pair.bob.to_bytes() == before


def test_records_keep_coded_chunks_of_any_index() -> None:
    pair = start(HYBRID)
    while pair.alice.pq_seed is None:
        pair.a2b(b"a")
        pair.b2a(b"b")
    for _ in range(200):  # Bob hears nothing of these: Alice's next chunk is number 200
        _, pair.alice = encrypt(pair.alice, b"lost")
    pair.a2b(b"chunk 200")
    assert list(pair.bob.pq_in) == [200]
    loaded = SessionState.from_bytes(pair.bob.to_bytes())
    assert loaded == pair.bob
    pair.bob = loaded
    while pair.alice.epoch == 0 or pair.bob.epoch == 0:
        pair.a2b(b"a")
        pair.b2a(b"b")


def _both_in_epoch(pair: Pair, epoch: int) -> None:
    while not pair.alice.epoch == pair.bob.epoch == epoch:
        pair.a2b(b"a")
        pair.b2a(b"b")


def _forged_in_previous_epoch(state: SessionState) -> bytes:
    """What an attacker who stole the previous epoch's key, and computes every DH ratchet key
    (it holds every X25519 secret), can send: a message at the sender's next position, under
    the previous epoch's key."""
    assert state.prev_epoch_key is not None
    old = dataclasses.replace(state, epoch=state.epoch - 1, epoch_key=state.prev_epoch_key)
    message, _ = encrypt(old, b"forged")
    return message


@pytest.mark.parametrize("switched_first", ["alice", "bob"])
def test_the_previous_epoch_key_forges_nothing_once_the_peer_has_left_that_epoch(switched_first: str) -> None:
    """The previous epoch's key stays for late messages only: once a message of the new epoch
    came from the peer, a message of the old epoch must be one sent before it, so its key is
    a skipped one. Else the epoch key stolen before the exchange still forged messages for a
    whole epoch after recovery."""
    pair = start(HYBRID)
    _both_in_epoch(pair, 1)
    pair.a2b(b"alice in epoch 1")
    pair.b2a(b"bob in epoch 1")  # each has now heard the other in epoch 1
    for sender, receiver, rng in ((pair.alice, pair.bob, pair.b_rng), (pair.bob, pair.alice, pair.a_rng)):
        before = receiver.to_bytes()
        with pytest.raises(DecryptError):
            decrypt(receiver, _forged_in_previous_epoch(sender), rng)
        assert receiver.to_bytes() == before


def test_late_messages_of_the_previous_epoch_still_open_in_any_order() -> None:
    pair = start(HYBRID)
    while pair.alice.pq_seed is None:
        pair.a2b(b"a")
        pair.b2a(b"b")
    late = []
    for i in range(3):  # Bob's messages of epoch 0, held back by the network
        message, pair.bob = encrypt(pair.bob, b"late %d" % i)
        late.append(message)
    _both_in_epoch(pair, 1)
    pair.b2a(b"bob in epoch 1")
    for i in (2, 0, 1):
        plaintext, pair.alice = decrypt(pair.alice, late[i], pair.a_rng)
        assert plaintext == b"late %d" % i
