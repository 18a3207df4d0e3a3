"""When a sender may name its certificate by reference (client/cert_refs.py plan_send and
after_receive), on real ratchet sessions: only after the peer answered a chain every message
of which carried the certificate in full, never in pq mode, and anew for a new session or a
new certificate."""

from __future__ import annotations

import pytest

from sonet.client.cert_refs import SentCertificate, after_receive, plan_send
from sonet.core.crypto import CryptoMode
from sonet.core.ratchet import SessionState, decrypt, encrypt
from tests.core.ratchet.helpers import Pair, start

REF, OTHER_REF = b"r" * 32, b"o" * 32


class Sender:
    """alice's side: her session with bob and what she knows bob holds."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.sent: SentCertificate | None = None

    def send(self, ref: bytes = REF) -> bool:
        """alice sends bob one message; True if it went by reference."""
        by_ref, self.sent = plan_send(self.sent, self.pair.alice, ref)
        self.pair.a2b(b"text")
        return by_ref

    def reply(self) -> None:
        """bob answers; alice decrypts it."""
        before = self.pair.alice
        message, self.pair.bob = encrypt(self.pair.bob, b"reply")
        _plain, self.pair.alice = decrypt(before, message, self.pair.a_rng)
        self.sent = after_receive(self.sent, before, self.pair.alice)


def test_the_full_certificate_until_an_answer_to_a_clean_chain() -> None:
    alice = Sender(start(CryptoMode.HYBRID))  # bob answered once: alice's next send starts a chain
    assert [alice.send(), alice.send()] == [False, False]
    alice.reply()  # answers the chain that carried the certificate from its first message
    assert [alice.send(), alice.send()] == [True, True]
    alice.reply()
    assert alice.send()


def test_a_chain_that_started_without_the_certificate_is_not_enough() -> None:
    pair = start(CryptoMode.HYBRID)
    pair.a2b(b"sent before the certificate was tracked")  # n = 0 of alice's chain
    alice = Sender(pair)
    assert not alice.send()  # n = 1: bob may have read only n = 0
    alice.reply()
    assert not alice.send()  # the answered chain was not clean; this one (n = 0 after the turn) is
    alice.reply()
    assert alice.send()


def test_a_late_message_of_an_older_peer_chain_proves_nothing() -> None:
    """bob writes twice before reading alice's clean chain: his second message arrives after
    alice started that chain, but bob had not seen it."""
    alice = Sender(start(CryptoMode.HYBRID))
    pair = alice.pair
    pair.a2b(b"n=0 without tracking")
    first, pair.bob = encrypt(pair.bob, b"bob 1")  # bob's new chain
    second, pair.bob = encrypt(pair.bob, b"bob 2")  # the same chain
    before = pair.alice
    _plain, pair.alice = decrypt(before, first, pair.a_rng)  # alice turns
    alice.sent = after_receive(alice.sent, before, pair.alice)
    assert not alice.send()  # n = 0 of alice's new chain: clean from here
    before = pair.alice
    _plain, pair.alice = decrypt(before, second, pair.a_rng)
    assert pair.alice.recv_chain == before.recv_chain
    alice.sent = after_receive(alice.sent, before, pair.alice)
    assert alice.sent is not None and alice.sent.clean and not alice.sent.known
    assert not alice.send()


def test_a_new_certificate_or_session_starts_over() -> None:
    alice = Sender(start(CryptoMode.HYBRID))
    alice.send()
    alice.reply()
    assert alice.send()
    assert not alice.send(OTHER_REF)  # renewed: in full again (mid-chain: not clean yet)
    assert alice.sent is not None and alice.sent.ref == OTHER_REF and not alice.sent.known
    other = start(CryptoMode.HYBRID, seed=1).alice
    by_ref, sent = plan_send(alice.sent, other, OTHER_REF)
    assert not by_ref and sent.session_id == other.session_id and not sent.known


@pytest.mark.parametrize("mode", [CryptoMode.CLASSICAL, CryptoMode.HYBRID])
def test_both_modes_with_x25519_use_references(mode: CryptoMode) -> None:
    alice = Sender(start(mode))
    alice.send()
    alice.reply()
    assert alice.send()


def test_pq_mode_always_sends_the_full_certificate() -> None:
    """Without an X25519 exchange a turn may answer the previous chain: no proof."""
    alice = Sender(start(CryptoMode.PQ))
    for _ in range(3):
        assert not alice.send()
        alice.reply()
    assert alice.sent is not None and not alice.sent.known


def test_a_damaged_record_counts_as_absent() -> None:
    state: SessionState = start(CryptoMode.HYBRID).alice
    good = SentCertificate(state.session_id, REF, clean=True, known=True)
    assert SentCertificate.from_bytes(good.to_bytes()) == good
    for damaged in (b"", good.to_bytes()[:-1], good.to_bytes()[:-1] + b"\x04", None):
        assert SentCertificate.from_bytes(damaged) is None
