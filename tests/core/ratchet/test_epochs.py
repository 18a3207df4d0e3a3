"""Hybrid mode's sparse post-quantum ratchet (core/ratchet/epochs.py): epochs complete over
lost and reordered messages, every malformed or inconsistent chunk is refused with a clear
error and leaves the state as it was, and the exchange's secrets are deleted once used."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from sonet.core import canonical
from sonet.core.crypto import CryptoMode
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError
from sonet.core.ratchet import SessionState, decrypt, encrypt, epochs

from .helpers import Pair, edit, start

HYBRID = CryptoMode.HYBRID


def _until(pair: Pair, done: Callable[[], bool], limit: int = 200) -> None:
    """Talk (one message each way per round) until ``done``."""
    for i in range(limit):
        if done():
            return
        pair.a2b(b"a%d" % i)
        if done():
            return
        pair.b2a(b"b%d" % i)
    raise AssertionError("the condition was not reached")


def _exchanging() -> Pair:
    """A session in which Alice, owner of epoch 1, has generated her key and sends chunks."""
    pair = start(HYBRID)
    _until(pair, lambda: pair.alice.pq_seed is not None)
    return pair


def _chunk(message: bytes) -> dict[str, Any] | None:
    return canonical.loads(message, max_bytes=1 << 20)["h"]["pq"]  # type: ignore[no-any-return]


def _refused(state: SessionState, message: bytes, rng: Any, match: str) -> None:
    before = state.to_bytes()
    with pytest.raises(RemoteProtocolError, match=match):
        decrypt(state, message, rng)
    assert state.to_bytes() == before  # nothing consumed


def _sent_with(monkeypatch: pytest.MonkeyPatch, state: SessionState, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bytes:
    """An authentic message whose chunk the sender was made to change (a faulty or hostile peer)."""
    real = epochs.next_chunk
    monkeypatch.setattr(epochs, "next_chunk", lambda s: change(dict(real(s) or {})))
    message, _ = encrypt(state, b"with a bad chunk")
    monkeypatch.setattr(epochs, "next_chunk", real)
    return message


# Epochs complete, also over a lossy, reordering network --------------------------------------


def test_epochs_alternate_and_most_messages_carry_no_chunk() -> None:
    pair = start(HYBRID)
    sizes: list[int] = []
    for i in range(150):
        sizes.append(len(pair.a2b(b"x" * 100)))
        sizes.append(len(pair.b2a(b"y" * 100)))
    assert pair.alice.epoch == pair.bob.epoch >= 4  # keys of both sides' epochs were used
    with_chunk = [s for s in sizes if s > epochs.CHUNK_LEN]
    assert 0 < len(with_chunk) < len(sizes) // 3
    assert max(sizes) < epochs.CHUNK_LEN + 300 and min(sizes) < 300  # never a whole ML-KEM key or ciphertext


def test_lost_and_reordered_messages_delay_an_epoch_but_do_not_stall_it() -> None:
    pair = start(HYBRID)
    shuffle = random.Random("network")
    queues: dict[str, list[tuple[bytes, bytes]]] = {"a": [], "b": []}
    delivered = lost = 0
    for i in range(600):
        side = "a" if shuffle.random() < 0.5 else "b"
        text = b"%s%d" % (side.encode(), i)
        queues[side].append((pair.seal(side, text), text))
        for sender in ("a", "b"):
            queue = queues[sender]
            while queue and shuffle.random() < 0.6:
                message, text = queue.pop(shuffle.randrange(len(queue)))  # any order
                if shuffle.random() < 0.25:
                    lost += 1
                    continue
                assert pair.open(sender, message) == text
                delivered += 1
    assert lost > 50 and delivered > 300
    assert min(pair.alice.epoch, pair.bob.epoch) >= 3


def test_late_message_with_a_chunk_of_a_finished_exchange_still_decrypts() -> None:
    pair = _exchanging()
    late, pair.alice = encrypt(pair.alice, b"late, with a key chunk")
    assert _chunk(late) is not None and _chunk(late)["k"] == "ek"  # type: ignore[index]
    _until(pair, lambda: pair.alice.epoch == pair.bob.epoch == 1)
    plaintext, pair.bob = decrypt(pair.bob, late, pair.b_rng)  # epoch 0 is kept as previous
    assert plaintext == b"late, with a key chunk" and pair.bob.epoch == 1


def test_messages_older_than_the_previous_epoch_are_refused_clearly() -> None:
    pair = start(HYBRID)
    old, pair.alice = encrypt(pair.alice, b"epoch 0")
    _until(pair, lambda: pair.alice.epoch == pair.bob.epoch == 2)
    _refused(pair.bob, old, pair.b_rng, "older than this session keeps")


def test_a_message_naming_an_epoch_not_reached_is_refused() -> None:
    pair = start(HYBRID)
    message, _ = encrypt(pair.alice, b"x")
    _refused(pair.bob, edit(message, lambda v: v["h"].update(ep=1)), pair.b_rng, "has not reached")
    _refused(pair.bob, edit(message, lambda v: v["h"].update(ep=7)), pair.b_rng, "has not reached")


def test_the_ml_kem_secret_and_old_epoch_keys_are_deleted() -> None:
    pair = _exchanging()
    seed = pair.alice.pq_seed
    assert seed is not None
    key0 = pair.alice.epoch_key
    _until(pair, lambda: pair.alice.epoch == 1)
    assert pair.alice.pq_seed is None and pair.alice.pq_key is None and seed not in pair.alice.to_bytes()
    assert pair.alice.prev_epoch_key == key0  # kept for Bob's late messages of epoch 0
    _until(pair, lambda: pair.alice.epoch == pair.bob.epoch == 2)
    for state in (pair.alice, pair.bob):
        assert key0 not in state.to_bytes() and state.pq_ct is None and state.next_epoch_key is None


# Chunks refused before decryption (structure) ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n": 4}, "total of 4, expected 3"),
        ({"i": 256}, "index 256 is out of range"),
        ({"i": -1}, "index -1 is out of range"),
        ({"d": b"x" * 10}, "must be 400 bytes"),  # truncated
        ({"d": b"x" * 1184}, "must be 400 bytes"),  # oversized
        ({"id": bytes(9)}, "id must be 8 bytes"),
        ({"k": "sk"}, "unknown kind"),
        ({"e": 0}, "builds epoch 0, but its message is of epoch 0"),  # a chunk of a finished epoch
        ({"e": 5}, "builds epoch 5"),
        ({"x": 1}, "expected fields"),
    ],
)
def test_malformed_chunks_are_refused_before_decryption(change: dict[str, Any], match: str) -> None:
    pair = _exchanging()
    message, _ = encrypt(pair.alice, b"x")
    assert _chunk(message) is not None
    _refused(pair.bob, edit(message, lambda v: v["h"]["pq"].update(change)), pair.b_rng, match)


def test_a_tampered_or_replayed_chunk_does_not_count() -> None:
    pair = _exchanging()
    message, pair.alice = encrypt(pair.alice, b"x")
    tampered = edit(message, lambda v: v["h"]["pq"].update(d=bytes(len(v["h"]["pq"]["d"]))))
    before = pair.bob.to_bytes()
    with pytest.raises(DecryptError):  # the chunk is in the associated data
        decrypt(pair.bob, tampered, pair.b_rng)
    assert pair.bob.to_bytes() == before and not pair.bob.pq_in
    _, pair.bob = decrypt(pair.bob, message, pair.b_rng)
    assert len(pair.bob.pq_in) == 1
    with pytest.raises(DecryptError):
        decrypt(pair.bob, message, pair.b_rng)


def test_chunks_in_a_session_without_epochs_are_refused() -> None:
    hybrid = _exchanging()
    chunk = _chunk(encrypt(hybrid.alice, b"x")[0])
    for mode in (CryptoMode.CLASSICAL, CryptoMode.PQ):
        pair = start(mode)
        message, _ = encrypt(pair.alice, b"x")
        _refused(pair.bob, edit(message, lambda v: v["h"].update(pq=chunk)), pair.b_rng, "does not use|epoch")


# Authentic but inconsistent chunks (a faulty or hostile peer) ---------------------------------


def test_key_chunks_with_another_id_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _exchanging()
    pair.a2b(b"first chunk")
    bad = _sent_with(monkeypatch, pair.alice, lambda c: {**c, "id": bytes(8)})
    _refused(pair.bob, bad, pair.b_rng, "names another id")


def test_a_key_that_does_not_match_its_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _exchanging()
    zeros = lambda c: {**c, "d": bytes(len(c["d"])), "id": bytes(8)}  # noqa: E731
    for _ in range(2):
        message = _sent_with(monkeypatch, pair.alice, zeros)
        _, pair.alice = encrypt(pair.alice, b"")  # advance the round robin as the sender would
        _, pair.bob = decrypt(pair.bob, message, pair.b_rng)
    _refused(pair.bob, _sent_with(monkeypatch, pair.alice, zeros), pair.b_rng, "does not match its id")


def test_a_chunk_that_differs_from_its_earlier_copy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _exchanging()
    message, alice_next = encrypt(pair.alice, b"x")
    _, pair.bob = decrypt(pair.bob, message, pair.b_rng)
    again = _sent_with(monkeypatch, alice_next, lambda c: {**c, "i": 0, "d": bytes(epochs.CHUNK_LEN)})
    _refused(pair.bob, again, pair.b_rng, "differs from its earlier copy")


def test_a_key_chunk_from_the_side_that_does_not_own_the_epoch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _exchanging()  # epoch 1 is Alice's: Bob has no key to send
    ek = _chunk(encrypt(pair.alice, b"x")[0])
    bad = _sent_with(monkeypatch, pair.bob, lambda c: ek)
    _refused(pair.alice, bad, pair.a_rng, "whose key this side generates")


def test_a_ciphertext_for_a_key_not_sent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = start(HYBRID)  # no exchange under way: Alice has sent no key
    ct = {"d": bytes(epochs.CHUNK_LEN), "e": 1, "i": 0, "k": "ct", "n": 3, "id": bytes(8)}
    _refused(pair.alice, _sent_with(monkeypatch, pair.bob, lambda c: ct), pair.a_rng, "has not sent")


def test_a_ciphertext_for_another_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = _exchanging()
    _until(pair, lambda: pair.bob.pq_ct is not None)  # Bob has Alice's whole key and answers
    _, pair.alice = encrypt(pair.alice, b"")
    other = epochs.ct_id(bytes(8), pair.bob.pq_ct)  # type: ignore[arg-type]  # as if for another key
    n = epochs.CHUNK_LEN
    assert pair.bob.pq_ct is not None
    ciphertext = pair.bob.pq_ct.ljust(3 * n, b"\0")  # chunks 0..2 are the zero-padded whole
    bob, messages = pair.bob, []
    for i in range(3):
        messages.append(_sent_with(monkeypatch, bob, lambda c, i=i: {**c, "i": i, "d": ciphertext[i * n : (i + 1) * n], "id": other}))
        _, bob = encrypt(bob, b"")
    for message in messages[:2]:
        _, pair.alice = decrypt(pair.alice, message, pair.a_rng)
    _refused(pair.alice, messages[2], pair.a_rng, "does not match its id or the key this side sent")


# Downgrade and records -----------------------------------------------------------------------


def test_a_hybrid_header_without_its_epoch_or_with_per_turn_keys_is_refused() -> None:
    pair = start(HYBRID)
    message, _ = encrypt(pair.alice, b"x")
    _refused(pair.bob, edit(message, lambda v: v["h"].update(ep=None)), pair.b_rng, "lacks the post-quantum epoch")
    classical = start(CryptoMode.CLASSICAL)
    plain, _ = encrypt(classical.alice, b"x")
    _refused(classical.bob, edit(plain, lambda v: v["h"].update(ep=0)), classical.b_rng, "has the post-quantum epoch")


def test_a_record_of_the_format_before_epochs_is_refused_clearly() -> None:
    pair = start(HYBRID)
    raw = canonical.loads(pair.alice.to_bytes())
    old = {k: v for k, v in raw.items() if k not in ("ep", "epk", "epp", "epn", "epm", "pqs", "pqc", "pqn", "pqi", "pqid")}
    with pytest.raises(LocalProtocolError, match="format 1.*start a new session"):
        SessionState.from_bytes(canonical.dumps({**old, "v": 1}))


def test_records_keep_an_exchange_in_flight() -> None:
    pair = _exchanging()
    _until(pair, lambda: bool(pair.bob.pq_in))
    for side in ("alice", "bob"):
        state = getattr(pair, side)
        loaded = SessionState.from_bytes(state.to_bytes())
        assert loaded == state and loaded.to_bytes() == state.to_bytes() and loaded.pq_key_id == state.pq_key_id
        setattr(pair, side, loaded)
    _until(pair, lambda: pair.alice.epoch == pair.bob.epoch == 1)
