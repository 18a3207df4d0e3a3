"""Forward secrecy and post-compromise recovery of the ratchet, in every mode; why the ML-KEM
part of each turn matters in pq mode, and what hybrid mode's post-quantum epochs
(core/ratchet/epochs.py) add against an attacker who holds every X25519 secret: recovery
after one complete epoch, and not before (the honest bound)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from sonet.core.crypto import CryptoMode, Rng
from sonet.core.errors import DecryptError, ProtocolError
from sonet.core.ratchet import SessionState, decrypt, encrypt
from sonet.core.ratchet import epochs
from sonet.core.ratchet import session as session_module

from .helpers import MODE_IDS, MODES, rng, start


def _message_key(chain_key: bytes) -> bytes:
    h = hmac.HMAC(chain_key, hashes.SHA256())
    h.update(b"\x01")
    return h.finalize()


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_forward_secrecy(mode: CryptoMode) -> None:
    """Once message n is decrypted, no later state holds MK_n or a chain key it derives from,
    and no later state decrypts the old ciphertext."""
    pair = start(mode)
    sent: list[tuple[bytes, bytes, bytes]] = []  # (message, MK_n, CK_n) taken from the sender
    for i in range(5):
        chain_key = pair.alice.send_ck
        assert chain_key is not None
        message, pair.alice = encrypt(pair.alice, b"%d" % i)
        sent.append((message, _message_key(chain_key), chain_key))
        assert _message_key(chain_key) not in pair.alice.to_bytes() and chain_key not in pair.alice.to_bytes()
    done: list[int] = []
    for index in (0, 1, 3, 2, 4):  # message 2 waits as a skipped key for a while
        message, _, _ = sent[index]
        plaintext, pair.bob = decrypt(pair.bob, message, pair.b_rng)
        assert plaintext == b"%d" % index
        done.append(index)
        record = pair.bob.to_bytes()
        if index == 3:  # a skipped key is kept until used, so the check below does see keys
            assert sent[2][1] in record
        for n in done:  # no 32-byte window of the record equals MK_n or CK_n
            assert sent[n][1] not in record and sent[n][2] not in record
            with pytest.raises(DecryptError):
                decrypt(pair.bob, sent[n][0], pair.b_rng)
    pair.b2a(b"turn")
    pair.a2b(b"turn back")
    for state in (pair.bob, SessionState.from_bytes(pair.bob.to_bytes())):
        record = state.to_bytes()
        for message, mk, ck in sent:
            assert mk not in record and ck not in record
            with pytest.raises(ProtocolError):
                decrypt(state, message, rng("later"))


def test_forward_secrecy_after_each_message() -> None:
    """Stricter, message by message: right after decrypting message n, MK_n and CK_n are gone."""
    pair = start(CryptoMode.HYBRID)
    for i in range(4):
        chain_key = pair.alice.send_ck
        assert chain_key is not None
        message, pair.alice = encrypt(pair.alice, b"%d" % i)
        _, pair.bob = decrypt(pair.bob, message, pair.b_rng)
        record = pair.bob.to_bytes()
        assert _message_key(chain_key) not in record and chain_key not in record
        with pytest.raises(DecryptError):
            decrypt(pair.bob, message, pair.b_rng)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_post_compromise_recovery(mode: CryptoMode) -> None:
    """An attacker with a copy of Alice's state follows the conversation passively; it loses
    track as soon as Alice and Bob have each made a ratchet turn with fresh randomness."""
    pair = start(mode)
    pair.a2b(b"before the compromise")
    attacker = SessionState.from_bytes(pair.alice.to_bytes())
    a_rng = rng("attacker")
    x, pair.bob = encrypt(pair.bob, b"X")
    plaintext, attacker = decrypt(attacker, x, a_rng)
    assert plaintext == b"X"  # not healed yet: Bob's chain derives from what was stolen
    _, pair.alice = decrypt(pair.alice, x, pair.a_rng)
    pair.a2b(b"Y")  # Alice's fresh ratchet key(s)
    for text in (b"Z1", b"Z2"):
        z, pair.bob = encrypt(pair.bob, text)
        with pytest.raises(ProtocolError):
            decrypt(attacker, z, a_rng)
        assert decrypt(pair.alice, z, pair.a_rng)[0] == text
        _, pair.alice = decrypt(pair.alice, z, pair.a_rng)


class KemTap:
    """Test hook around ML-KEM encapsulation: records Alice's encapsulations and lets the
    attacker replay them (an attacker who learned them) or encapsulate afresh (one who did not)."""

    def __init__(self, module: object = session_module) -> None:
        self.real = module.mlkem_encapsulate  # type: ignore[attr-defined]
        self.recorded: list[tuple[bytes, bytes]] = []
        self.mode = "pass"

    def __call__(self, public: bytes) -> tuple[bytes, bytes]:
        if self.mode == "replay":
            return self.recorded.pop(0)
        out = self.real(public)
        if self.mode == "record":
            self.recorded.append(out)
        return out


def _mirror(source: Rng, *, kem_seeds: bool) -> Rng:
    """The same future randomness as ``source`` (Alice's seeded generator) for X25519 secrets
    (32-byte draws), and for ML-KEM seeds (64-byte draws) only if ``kem_seeds``."""
    clone = random.Random()
    clone.setstate(source.__self__.getstate())  # type: ignore[attr-defined]

    def draw(n: int) -> bytes:
        data = clone.randbytes(n)
        return data if n == 32 or kem_seeds else hashlib.sha512(data).digest()[:n]

    return draw


@pytest.mark.parametrize(
    ("mode", "knows_kem", "reads_on"),
    [
        (CryptoMode.CLASSICAL, False, True),  # DH secrets are all there is: no recovery
        (CryptoMode.PQ, True, True),  # control: the hook reproduces Alice exactly
        (CryptoMode.PQ, False, False),  # the turn's ML-KEM part restores secrecy
    ],
    ids=["classical-dh-leaked", "pq-everything-leaked", "pq-randomness-leaked"],
)
def test_kem_part_of_the_turn_matters(monkeypatch: pytest.MonkeyPatch, mode: CryptoMode, knows_kem: bool, reads_on: bool) -> None:
    """The attacker holds Alice's state at time t and learns every X25519 ratchet secret she
    generates afterwards (and, in the control, her ML-KEM secrets too). pq mode turns with
    ML-KEM alone, so this is recovery at the next turn; hybrid's epochs are tested below."""
    tap = KemTap()
    monkeypatch.setattr(session_module, "mlkem_encapsulate", tap)
    pair = start(mode)
    pair.a2b(b"before the compromise")
    attacker = SessionState.from_bytes(pair.alice.to_bytes())
    leaked: Callable[[int], bytes] = _mirror(pair.a_rng, kem_seeds=knows_kem)

    x, pair.bob = encrypt(pair.bob, b"X")
    tap.mode = "record"
    _, pair.alice = decrypt(pair.alice, x, pair.a_rng)  # Alice's turn: new keys, encapsulation to Bob
    tap.mode = "replay" if knows_kem else "pass"
    plaintext, attacker = decrypt(attacker, x, leaked)
    assert plaintext == b"X"
    tap.mode = "pass"
    assert attacker.own_dh == pair.alice.own_dh  # the attacker has Alice's new X25519 secret
    if mode.uses_pq:
        assert (attacker.own_kem == pair.alice.own_kem) == knows_kem
    assert (attacker.root_key == pair.alice.root_key) == (knows_kem or not mode.uses_pq)

    pair.a2b(b"Y")
    z, pair.bob = encrypt(pair.bob, b"Z")
    if reads_on:
        assert decrypt(attacker, z, rng("attacker"))[0] == b"Z"
    else:
        with pytest.raises(DecryptError):
            decrypt(attacker, z, rng("attacker"))
        # not even with Alice's public ML-KEM key id planted in its state: it lacks the secrets
        planted = session_module.dataclasses.replace(attacker, own_kem_id=pair.alice.own_kem_id)
        with pytest.raises(DecryptError):
            decrypt(planted, z, rng("attacker"))
    assert decrypt(pair.alice, z, pair.a_rng)[0] == b"Z"


# Hybrid mode: post-quantum epochs against an attacker with every X25519 secret ----------------


class Stubborn:
    """The attacker's handling of chunks: an exchange it cannot complete (a ciphertext for a
    key pair it does not have) is ignored instead of refused, so it keeps reading what the
    epoch key it holds still opens. Honest parties are unaffected (``active`` only for it)."""

    def __init__(self) -> None:
        self.real = epochs._take_chunk
        self.active = False

    def __call__(self, v: dict, pq: dict) -> None:  # type: ignore[type-arg]
        try:
            self.real(v, pq)
        except ProtocolError:
            if not self.active:
                raise


def _talk(pair: object, attacker: SessionState | None, leaked: Rng, tap: KemTap, knows_kem: bool, rounds: int) -> list[tuple[int, bool]]:
    """``rounds`` of one message each way. The attacker follows Alice: it advances its copy of
    her state as she sends (encrypt needs no plaintext and no randomness), and tries each of
    Bob's messages with Alice's leaked randomness. Per message of Bob's: (its epoch, read?)."""
    seen: list[tuple[int, bool]] = []
    for i in range(rounds):
        message, pair.alice = encrypt(pair.alice, b"a%d" % i)  # type: ignore[attr-defined]
        if attacker is not None:
            _, attacker = encrypt(attacker, b"")
        _, pair.bob = decrypt(pair.bob, message, pair.b_rng)  # type: ignore[attr-defined]
        epoch = pair.bob.epoch  # type: ignore[attr-defined]
        z, pair.bob = encrypt(pair.bob, b"b%d" % i)  # type: ignore[attr-defined]
        tap.mode = "record"
        plaintext, pair.alice = decrypt(pair.alice, z, pair.a_rng)  # type: ignore[attr-defined]
        assert plaintext == b"b%d" % i
        if attacker is None:
            tap.mode, tap.recorded = "pass", []
            continue
        tap.mode = "replay" if knows_kem else "pass"
        stubborn.active = True
        try:
            plaintext, attacker = decrypt(attacker, z, leaked)
            seen.append((epoch, plaintext == b"b%d" % i))
        except ProtocolError:
            seen.append((epoch, False))
        tap.mode, stubborn.active = "pass", False
    return seen


def _steal(monkeypatch: pytest.MonkeyPatch, owner: str, knows_kem: bool) -> tuple[object, SessionState, Rng, KemTap]:
    """An established hybrid session whose next epoch is ``owner``'s, and a copy of Alice's
    state with her future randomness (X25519 only, or ML-KEM seeds too)."""
    tap = KemTap(epochs)
    monkeypatch.setattr(epochs, "mlkem_encapsulate", tap)
    monkeypatch.setattr(epochs, "_take_chunk", stubborn)
    pair = start(CryptoMode.HYBRID)
    if owner == "bob":  # let epoch 1 (Alice's key) complete first: epoch 2 is Bob's key
        while not pair.alice.epoch == pair.bob.epoch == 1:
            _talk(pair, None, rng("unused"), tap, False, 1)
    assert epochs.owner_of(pair.alice.epoch + 1) == ("initiator" if owner == "alice" else "responder")
    assert pair.alice.pq_seed is None and pair.alice.next_epoch_key is None  # no exchange under way
    # Alice's draws with a clone of her generator; the call above does not advance it
    return pair, SessionState.from_bytes(pair.alice.to_bytes()), _mirror(pair.a_rng, kem_seeds=knows_kem), tap


stubborn = Stubborn()

#: rounds within which the next epoch completes: the interval, then the key's and the
#: ciphertext's chunks, one per message, plus a round for each side to show the switch
_EPOCH_ROUNDS = epochs.EPOCH_INTERVAL + 2 * -(-1184 // epochs.CHUNK_LEN) + 2


@pytest.mark.parametrize("owner", ["alice", "bob"], ids=["alice-owns-the-epoch", "bob-owns-the-epoch"])
def test_one_complete_epoch_restores_secrecy_against_every_x25519_secret(monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    """Recovery needs the epoch's ML-KEM secret: Alice's key pair when the epoch is hers, her
    encapsulation (OpenSSL's randomness, not the leaked generator) when it is Bob's. From the
    first message of the new epoch on, the attacker reads nothing, and it does not catch up."""
    pair, attacker, leaked, tap = _steal(monkeypatch, owner, knows_kem=False)
    stolen = attacker.epoch
    seen = _talk(pair, attacker, leaked, tap, False, _EPOCH_ROUNDS + 10)
    assert pair.alice.epoch >= stolen + 1 and pair.bob.epoch >= stolen + 1  # the epoch completed
    assert all(not read for epoch, read in seen if epoch > stolen)
    assert any(epoch > stolen for epoch, _ in seen)
    healed = next(i for i, (epoch, _) in enumerate(seen) if epoch > stolen)
    assert healed <= _EPOCH_ROUNDS


@pytest.mark.parametrize("owner", ["alice", "bob"], ids=["alice-owns-the-epoch", "bob-owns-the-epoch"])
def test_until_the_epoch_completes_an_attacker_with_every_x25519_secret_still_reads(
    monkeypatch: pytest.MonkeyPatch, owner: str
) -> None:
    """The honest bound: the DH turns alone do not shut out an attacker who also learns every
    new X25519 secret, so every message of the epoch it stole is readable, however many turns
    (here one per message, EPOCH_INTERVAL and more) happen within it."""
    pair, attacker, leaked, tap = _steal(monkeypatch, owner, knows_kem=False)
    stolen = attacker.epoch
    seen = _talk(pair, attacker, leaked, tap, False, _EPOCH_ROUNDS + 10)
    within = [read for epoch, read in seen if epoch == stolen]
    assert len(within) >= epochs.EPOCH_INTERVAL // 2 and all(within)


def test_an_attacker_who_also_has_the_ml_kem_randomness_reads_on() -> None:
    """Control for the two tests above: with Alice's ML-KEM seeds and encapsulations as well,
    the attacker follows every epoch, so the recovery above is the ML-KEM part's doing."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        pair, attacker, leaked, tap = _steal(monkeypatch, "alice", knows_kem=True)
        stolen = attacker.epoch
        seen = _talk(pair, attacker, leaked, tap, True, 2 * _EPOCH_ROUNDS + 10)
    assert pair.alice.epoch >= stolen + 2  # one epoch of each side's key
    assert all(read for _, read in seen)
