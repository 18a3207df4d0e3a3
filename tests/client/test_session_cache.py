"""Live session states (client/session_cache.py): used only while the stored record is the one
they were saved as, so the store stays the source of truth; and the SDK keeps them between
messages instead of decoding every record again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

from sonet.client.sdk import Device
from sonet.client.session_cache import KEYS_PER_SESSION, SessionCache
from sonet.core.crypto import CryptoMode, MlKemKeyPair
from sonet.core.errors import LocalProtocolError
from sonet.core.ratchet import SessionState, decrypt, encrypt
from tests.core.ratchet.helpers import start
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]
PEER = ("bob@alpha.example", 1)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every session record decoded with SessionState.from_bytes while the test runs."""
    records: list[bytes] = []
    original = SessionState.from_bytes

    def counting(cls: type[SessionState], data: bytes, **kw: Any) -> SessionState:
        records.append(data)
        return original(data, **kw)

    monkeypatch.setattr(SessionState, "from_bytes", classmethod(counting))
    yield records


def _stored(state: SessionState) -> tuple[bytes, SessionState]:
    return state.to_bytes(), state


def test_the_remembered_state_is_used_while_the_record_is_the_same(decoded: list[bytes]) -> None:
    cache = SessionCache()
    record, state = _stored(start(CryptoMode.HYBRID).alice)
    cache.remember(*PEER, record, state)
    assert cache.load(*PEER, bytes(bytearray(record))) is state  # the store hands back a copy
    assert decoded == []


def test_another_record_is_decoded_and_the_stale_state_dropped(decoded: list[bytes]) -> None:
    cache = SessionCache()
    pair = start(CryptoMode.HYBRID)
    old_record, old_state = _stored(pair.alice)
    pair.a2b(b"advanced elsewhere")  # e.g. by another process on the same device state
    new_record = pair.alice.to_bytes()
    cache.remember(*PEER, old_record, old_state)
    loaded = cache.load(*PEER, new_record)
    assert loaded is not old_state and loaded == pair.alice and decoded == [new_record]
    assert len(cache) == 0  # the stale state (and its chain keys) is gone
    # the state really is the newer one: it continues the conversation
    message, _ = encrypt(loaded, b"next")
    assert decrypt(pair.bob, message, pair.b_rng)[0] == b"next"


def test_a_damaged_record_is_refused_even_with_a_state_cached() -> None:
    cache = SessionCache()
    record, state = _stored(start(CryptoMode.CLASSICAL).alice)
    cache.remember(*PEER, record, state)
    with pytest.raises(LocalProtocolError):
        cache.load(*PEER, record[:-1])
    with pytest.raises(LocalProtocolError):
        cache.load(*PEER, b"")


def test_the_cache_is_bounded_and_forgets_on_request(decoded: list[bytes]) -> None:
    cache = SessionCache(size=2)
    records = {}
    for device in (1, 2, 3):
        records[device] = _stored(start(CryptoMode.CLASSICAL, seed=device).alice)
        cache.remember("bob@alpha.example", device, *records[device])
    assert len(cache) == 2
    assert cache.load("bob@alpha.example", 3, records[3][0]) is records[3][1]
    assert cache.load("bob@alpha.example", 1, records[1][0]) == records[1][1]  # evicted: decoded
    assert decoded == [records[1][0]]
    cache.forget("bob@alpha.example", 3)
    assert len(cache) == 1
    with pytest.raises(ValueError):
        SessionCache(size=0)


# ML-KEM keys kept expanded -------------------------------------------------------------------


@pytest.fixture
def kem_builds(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The seed of every ML-KEM-768 key built from its seed while the test runs."""
    seeds: list[bytes] = []
    original = MlKemKeyPair.__init__

    def counting(self: MlKemKeyPair, seed: bytes) -> None:
        seeds.append(seed)
        original(self, seed)

    monkeypatch.setattr(MlKemKeyPair, "__init__", counting)
    return seeds


def test_a_record_decoded_again_reuses_the_keys_of_the_live_state(kem_builds: list[bytes]) -> None:
    cache = SessionCache()
    pair = start(CryptoMode.PQ)
    cache.remember(*PEER, *_stored(pair.alice))
    pair.a2b(b"advanced elsewhere")  # no turn: the same ML-KEM keys
    kem_builds.clear()
    loaded = cache.load(*PEER, pair.alice.to_bytes())
    assert loaded == pair.alice and kem_builds == []
    assert loaded.own_kem_key is pair.alice.own_kem_key
    message, _ = encrypt(loaded, b"next")
    assert decrypt(pair.bob, message, pair.b_rng)[0] == b"next"


def test_earlier_sessions_decoded_again_reuse_their_keys(kem_builds: list[bytes]) -> None:
    cache = SessionCache()
    old = start(CryptoMode.PQ, seed="earlier").alice.to_bytes()
    kem_builds.clear()
    first = cache.decode(old)
    assert len(kem_builds) == 2  # current and previous key, built once
    again = cache.decode(bytes(bytearray(old)))
    assert len(kem_builds) == 2 and again == first and again.own_kem_key is first.own_kem_key


def test_a_key_superseded_by_a_turn_leaves_the_cache(kem_builds: list[bytes]) -> None:
    cache = SessionCache()
    pair = start(CryptoMode.PQ)
    before = pair.alice
    cache.remember(*PEER, *_stored(before))
    pair.a2b(b"to bob")
    pair.b2a(b"a new chain from bob")  # alice turns: her previous key is dropped from the state
    cache.remember(*PEER, *_stored(pair.alice))
    assert before.prev_kem not in (pair.alice.own_kem, pair.alice.prev_kem)
    assert before.prev_kem not in cache._kem_keys
    assert pair.alice.own_kem in cache._kem_keys and pair.alice.prev_kem in cache._kem_keys
    cache.forget(*PEER)  # the session left the cache: so did its keys
    assert len(cache._kem_keys) == 0


def test_a_stale_or_damaged_record_leaves_no_keys_of_the_stale_state_behind() -> None:
    cache = SessionCache()
    pair = start(CryptoMode.PQ)
    cache.remember(*PEER, *_stored(pair.alice))
    with pytest.raises(LocalProtocolError):
        cache.load(*PEER, b"damaged")
    assert len(cache) == 0 and len(cache._kem_keys) == 0


def test_a_hybrid_sessions_epoch_key_pair_is_kept_until_its_epoch_completes(kem_builds: list[bytes]) -> None:
    # pq mode has ML-KEM keys in every turn (the tests above); hybrid one per post-quantum epoch
    cache = SessionCache()
    pair = start(CryptoMode.HYBRID)
    while pair.alice.pq_seed is None:
        pair.a2b(b"to bob")
        pair.b2a(b"to alice")
    seed = pair.alice.pq_seed
    cache.remember(*PEER, *_stored(pair.alice))
    kem_builds.clear()
    assert cache.decode(pair.alice.to_bytes()).pq_key is pair.alice.pq_key and kem_builds == []
    while pair.alice.epoch == 0:
        pair.a2b(b"to bob")
        pair.b2a(b"to alice")
    cache.remember(*PEER, *_stored(pair.alice))  # the epoch completed: its secret key is gone
    assert seed not in cache._kem_keys and len(cache._kem_keys) == 0


def test_the_key_cache_is_bounded_and_shows_no_secrets() -> None:
    cache = SessionCache(size=1)
    records = [start(CryptoMode.PQ, seed=n).alice.to_bytes() for n in range(4)]
    for record in records:
        cache.decode(record)
    assert len(cache._kem_keys) == KEYS_PER_SESSION  # 2 keys for each of the last 2 records
    states = [SessionState.from_bytes(r) for r in records]
    assert all(s.own_kem in cache._kem_keys for s in states[2:])
    assert not any(s.own_kem in cache._kem_keys for s in states[:2])
    shown = repr(cache._kem_keys)
    assert shown == f"ExpandedKeys({KEYS_PER_SESSION} keys)"
    assert not any(s.own_kem.hex()[:8] in shown for s in states)


# The SDK ------------------------------------------------------------------------------------


async def test_a_device_keeps_its_sessions_live_between_messages(alpha: RunningNode, register: Register, decoded: list[bytes]) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        for n in range(3):
            await alice.send_text(BOB, f"a{n}")
            result = await bob.receive()
            assert texts(bob, result) == [(ALICE, f"a{n}")]
            await bob.send_text(ALICE, f"b{n}")
            assert [t for _, t in texts(alice, await alice.receive())] == [f"b{n}"]
    assert decoded == []  # every session was created by the device and stayed live


async def test_two_processes_on_one_device_state_never_reuse_a_stale_session(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device]
) -> None:
    """A second Device on the same home (the CLI next to a running SDK client) advances the
    sessions in the store; the first one must notice and not send with its old chain keys."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        alice_cli, bob_cli = make_device("alice"), make_device("bob")
        await alice.send_text(BOB, "1")
        assert texts(bob, await bob.receive()) == [(ALICE, "1")]
        await alice_cli.send_text(BOB, "2")
        await alice.send_text(BOB, "3")
        assert texts(bob_cli, await bob_cli.receive()) == [(ALICE, "2"), (ALICE, "3")]
        await alice.send_text(BOB, "4")
        result = await bob.receive()
        assert texts(bob, result) == [(ALICE, "4")] and result.rejected == []
        await bob.send_text(ALICE, "5")
        await bob_cli.send_text(ALICE, "6")
        result = await alice_cli.receive()
        assert texts(alice_cli, result) == [(BOB, "5"), (BOB, "6")] and result.rejected == []
