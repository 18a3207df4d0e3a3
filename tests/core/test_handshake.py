"""The secure-channel handshake (core.handshake) as paired sans-I/O machines (ARCHITECTURE §4).

Success in every mode and every policy combination, then everything an active attacker can do
to the four messages: rewrite, flip bits, truncate, reorder, replay, reflect, refuse. The
properties: both sides agree on the keys or at least one side fails with a ProtocolError (and
then refuses all further use); the mode cannot be downgraded; identities never cross the wire in
the clear.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode, CryptoPolicy, VerifyKey
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.handshake import (
    NEED_DATA,
    PROTOCOL_VERSION,
    Auth3,
    Done4,
    Handshake,
    HandshakeComplete,
    HandshakeError,
    Hello1,
    Hello2,
    PeerIdentified,
    Role,
    SessionKeys,
)
from sonet.core.wire import decode_frame, encode_frame, packb

from .pairs import Wire, flip_bit, identity, make_initiator, make_responder, reencode, run_handshake

CLASSICAL, HYBRID, PQ = CryptoMode.CLASSICAL, CryptoMode.HYBRID, CryptoMode.PQ
MODES = list(CryptoMode)

HYPOTHESIS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def pair(mode: CryptoMode = HYBRID, *, seed: object = 0, **kw):
    """An initiator and a responder that both demand ``mode`` and hold ``mode`` identities."""
    policy = CryptoPolicy(mode, mode)
    return (
        make_initiator(key=identity(mode, "initiator"), policy=policy, seed=("i", seed), **kw),
        make_responder(key=identity(mode, "responder"), policy=policy, seed=("r", seed)),
    )


def queued_error(hs: Handshake) -> HandshakeError:
    """The single HandshakeError a failed machine queued for its peer."""
    out = hs.data_to_send()
    assert len(out) == 1, out
    msg = decode_frame(out[0])
    assert isinstance(msg, HandshakeError)
    return msg


def assert_refuses_further_use(hs: Handshake, some_message: bytes) -> None:
    assert not hs.complete
    with pytest.raises(LocalProtocolError):
        hs.receive_data(some_message)
    with pytest.raises(LocalProtocolError):
        hs.accept()
    with pytest.raises(LocalProtocolError):
        hs.reject("x", "y")
    assert hs.next_event() is NEED_DATA
    assert hs.data_to_send() == []  # a second failure does not queue another error frame


def assert_keys_agree(a: HandshakeComplete, b: HandshakeComplete) -> None:
    assert a.keys.binding == b.keys.binding
    assert a.keys.send_key == b.keys.recv_key and a.keys.recv_key == b.keys.send_key
    assert a.keys.send_iv == b.keys.recv_iv and a.keys.recv_iv == b.keys.send_iv
    assert a.keys.send_key != a.keys.recv_key
    assert a.keys.send_iv != a.keys.recv_iv
    assert len(a.keys.send_key) == 32 and len(a.keys.send_iv) == 12 and len(a.keys.binding) == 32


# Success --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_handshake_succeeds_in_every_mode(mode: CryptoMode) -> None:
    i, r = pair(mode)
    events: list = []
    wire: Wire = []
    a, b = run_handshake(i, r, events=events, wire=wire)

    assert_keys_agree(a, b)
    assert a.mode is b.mode is mode
    assert a.peer == identity(mode, "responder").public and isinstance(a.peer, VerifyKey)
    assert b.peer == identity(mode, "initiator").public
    assert i.complete and r.complete
    # The responder saw PeerIdentified (then accepted) before its HandshakeComplete.
    assert [type(e) for e in events] == [PeerIdentified, HandshakeComplete, HandshakeComplete]
    assert events[0] == PeerIdentified(peer=identity(mode, "initiator").public, mode=mode)
    # Four messages, in the documented order and directions.
    assert [(role, type(decode_frame(m))) for role, m in wire] == [
        (Role.INITIATOR, Hello1),
        (Role.RESPONDER, Hello2),
        (Role.INITIATOR, Auth3),
        (Role.RESPONDER, Done4),
    ]
    hello2 = decode_frame(wire[1][1])
    assert hello2.mode == mode.value
    assert (hello2.x25519 is not None) is mode.uses_classical
    assert (hello2.mlkem_ct is not None) is mode.uses_pq
    # Nothing left over; a completed machine takes no more input.
    for hs in (i, r):
        assert hs.data_to_send() == [] and hs.next_event() is NEED_DATA
        with pytest.raises(LocalProtocolError):
            hs.receive_data(wire[0][1])
    assert repr(a.keys) == "SessionKeys(<secret>)"


def test_each_session_has_fresh_keys_and_binding() -> None:
    a1, _ = run_handshake(*pair(seed=1))
    a2, _ = run_handshake(*pair(seed=2))
    assert a1.keys.binding != a2.keys.binding
    assert a1.keys.send_key != a2.keys.send_key and a1.keys.recv_key != a2.keys.recv_key


def test_same_randomness_gives_same_session() -> None:
    # Hello1/Hello2 randomness is a parameter. (ML-KEM encapsulation draws from OpenSSL, so only
    # classical mode is fully reproducible.)
    a1, b1 = run_handshake(*pair(CLASSICAL, seed=7))
    a2, b2 = run_handshake(*pair(CLASSICAL, seed=7))
    assert a1.keys == a2.keys and b1.keys == b2.keys


def test_expected_peer_that_matches_completes() -> None:
    fp = identity(HYBRID, "responder").public.fingerprint
    i, r = pair(HYBRID, expected_peer=fp)
    a, b = run_handshake(i, r)
    assert a.peer.fingerprint == fp
    assert_keys_agree(a, b)


# (initiator minimum, initiator preferred, responder minimum) -> negotiated mode
NEGOTIATION = [
    (CLASSICAL, CLASSICAL, CLASSICAL, CLASSICAL),
    (CLASSICAL, HYBRID, CLASSICAL, HYBRID),
    (CLASSICAL, PQ, CLASSICAL, PQ),
    (HYBRID, HYBRID, CLASSICAL, HYBRID),
    (HYBRID, PQ, HYBRID, PQ),
    (PQ, PQ, CLASSICAL, PQ),
    # the initiator's preference is below what the responder accepts: the best acceptable one
    (CLASSICAL, CLASSICAL, HYBRID, PQ),
    (CLASSICAL, HYBRID, PQ, PQ),
    (CLASSICAL, CLASSICAL, PQ, PQ),
    (HYBRID, HYBRID, PQ, PQ),
]


@pytest.mark.parametrize(
    "i_min, i_pref, r_min, expected", NEGOTIATION, ids=lambda m: m.value if isinstance(m, CryptoMode) else m
)
def test_mode_negotiation(i_min: CryptoMode, i_pref: CryptoMode, r_min: CryptoMode, expected: CryptoMode) -> None:
    # Identities strong enough for both policies.
    id_mode = max(i_min, r_min, key=lambda m: m.rank)
    i = make_initiator(key=identity(id_mode, "initiator"), policy=CryptoPolicy(i_min, i_pref))
    r = make_responder(key=identity(id_mode, "responder"), policy=CryptoPolicy(r_min))
    wire: Wire = []
    a, b = run_handshake(i, r, wire=wire)
    assert a.mode is b.mode is expected
    assert decode_frame(wire[1][1]).mode == expected.value
    assert_keys_agree(a, b)


WEAK_IDENTITIES = [(CLASSICAL, HYBRID), (CLASSICAL, PQ), (HYBRID, PQ)]


@pytest.mark.parametrize("id_mode, minimum", WEAK_IDENTITIES, ids=lambda m: m.value)
def test_responder_refuses_initiator_identity_below_its_minimum(id_mode: CryptoMode, minimum: CryptoMode) -> None:
    i = make_initiator(key=identity(id_mode, "initiator"), policy=CryptoPolicy(CLASSICAL, minimum))
    r = make_responder(key=identity(minimum, "responder"), policy=CryptoPolicy(minimum))
    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r)
    assert info.value.code == "crypto_mode_refused"
    assert r.next_event() is NEED_DATA  # never PeerIdentified
    err = queued_error(r)
    assert err.code == "crypto_mode_refused"
    with pytest.raises(RemoteProtocolError) as remote:
        i.receive_data(encode_frame(err))
    assert remote.value.code == "crypto_mode_refused"
    assert not i.complete


@pytest.mark.parametrize("id_mode, minimum", WEAK_IDENTITIES, ids=lambda m: m.value)
def test_initiator_refuses_responder_identity_below_its_minimum(id_mode: CryptoMode, minimum: CryptoMode) -> None:
    i = make_initiator(key=identity(minimum, "initiator"), policy=CryptoPolicy(minimum))
    r = make_responder(key=identity(id_mode, "responder"), policy=CryptoPolicy(CLASSICAL))
    wire: Wire = []
    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r, wire=wire)
    assert info.value.code == "crypto_mode_refused"
    # The initiator's identity never left: it answered with an error, not Auth3.
    assert queued_error(i).code == "crypto_mode_refused"
    assert len(wire) == 2
    assert_refuses_further_use(i, wire[1][1])


# Wrong identity --------------------------------------------------------------------------


def test_initiator_pinned_to_another_fingerprint_fails_with_wrong_identity() -> None:
    other = identity(HYBRID, "someone else").public.fingerprint
    i, r = pair(HYBRID, expected_peer=other)
    wire: Wire = []
    with pytest.raises(VerifyError) as info:
        run_handshake(i, r, wire=wire)
    assert info.value.code == "wrong_identity"
    err = queued_error(i)
    assert err.code == "wrong_identity"
    # The responder learns why and fails too; nobody completed.
    with pytest.raises(RemoteProtocolError) as remote:
        r.receive_data(encode_frame(err))
    assert remote.value.code == "wrong_identity"
    assert not i.complete and not r.complete
    assert len(wire) == 2  # no Auth3: the initiator's identity was not revealed to the impostor
    assert_refuses_further_use(i, wire[1][1])


def test_wrong_identity_error_frame_names_no_fingerprint() -> None:
    """The HandshakeError travels in plaintext: it must not reveal who answered or who was
    expected (identity hiding from passive observers, §4)."""
    expected = identity(HYBRID, "someone else").public.fingerprint
    actual = identity(HYBRID, "responder").public.fingerprint
    i, r = pair(HYBRID, expected_peer=expected)
    with pytest.raises(VerifyError) as info:
        run_handshake(i, r)
    assert actual in str(info.value)  # the local exception keeps the detail for the operator
    err = i.data_to_send()[0]
    for fp in (expected, actual):
        assert fp.encode() not in err and fp.upper().encode() not in err


def test_responder_pinned_to_another_fingerprint_fails_with_wrong_identity() -> None:
    i = make_initiator(key=identity(HYBRID, "initiator"))
    r = make_responder(key=identity(HYBRID, "responder"), expected_peer=identity(HYBRID, "x").public.fingerprint)
    with pytest.raises(VerifyError) as info:
        run_handshake(i, r)
    assert info.value.code == "wrong_identity"
    assert r.next_event() is NEED_DATA
    assert queued_error(r).code == "wrong_identity"


# Downgrade -----------------------------------------------------------------------------


def strip_offer(offer: tuple[str, ...]):
    def tamper(n: int, role: Role, data: bytes) -> bytes:
        return reencode(data, offer=offer) if n == 0 else data

    return tamper


def test_mitm_stripping_the_offer_to_classical_is_detected() -> None:
    # Both sides would accept classical, so only the transcript can catch the rewrite.
    i = make_initiator(key=identity(HYBRID, "initiator"), policy=CryptoPolicy(CLASSICAL, HYBRID))
    r = make_responder(key=identity(HYBRID, "responder"), policy=CryptoPolicy(CLASSICAL))
    wire: Wire = []
    with pytest.raises(DecryptError):
        run_handshake(i, r, tamper=strip_offer(("classical",)), wire=wire)
    assert decode_frame(wire[0][1]).offer == ("classical",)
    assert decode_frame(wire[1][1]).mode == "classical"  # the responder was fooled ...
    assert not i.complete and len(wire) == 2  # ... but the initiator never sent Auth3
    assert queued_error(i).code == "decrypt_failed"


def test_mitm_stripping_the_offer_below_the_initiator_minimum_is_refused() -> None:
    i = make_initiator(key=identity(HYBRID, "initiator"), policy=CryptoPolicy(HYBRID))
    r = make_responder(key=identity(HYBRID, "responder"), policy=CryptoPolicy(CLASSICAL))
    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r, tamper=strip_offer(("classical",)))
    assert info.value.code == "crypto_mode_refused"
    assert not i.complete and not r.complete


def test_responder_choosing_a_mode_that_was_not_offered_is_refused() -> None:
    # A hybrid-minimum initiator offers hybrid and pq; a forged Hello2 picks classical (with a
    # key-exchange shape that fits classical) and must be refused before any key is derived.
    i = make_initiator(key=identity(HYBRID, "initiator"), policy=CryptoPolicy(HYBRID, HYBRID))
    r = make_responder(key=identity(HYBRID, "responder"), policy=CryptoPolicy(CLASSICAL))
    wire: Wire = []
    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r, wire=wire, tamper=lambda n, role, d: reencode(d, mode="classical", mlkem_ct=None) if n == 1 else d)
    assert decode_frame(wire[0][1]).offer == ("hybrid", "pq")
    assert info.value.code == "crypto_mode_refused"
    assert queued_error(i).code == "crypto_mode_refused"
    assert not i.complete


def test_hello2_mode_outside_the_offer_is_refused_before_key_exchange() -> None:
    i = make_initiator(key=identity(PQ, "initiator"), policy=CryptoPolicy(PQ))
    offer = decode_frame(i.data_to_send()[0]).offer
    assert offer == ("pq",)
    forged = encode_frame(
        Hello2(v=PROTOCOL_VERSION, mode="hybrid", x25519=bytes(32), mlkem_ct=bytes(1088), nonce=bytes(32), auth=b"")
    )
    with pytest.raises(RemoteProtocolError) as info:
        i.receive_data(forged)
    assert info.value.code == "crypto_mode_refused"
    assert queued_error(i).code == "crypto_mode_refused"


def test_responder_with_pq_minimum_refuses_an_offer_without_pq() -> None:
    i = make_initiator(key=identity(PQ, "initiator"), policy=CryptoPolicy(CLASSICAL, HYBRID))
    r = make_responder(key=identity(PQ, "responder"), policy=CryptoPolicy(PQ))
    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r, tamper=strip_offer(("hybrid", "classical")))
    assert info.value.code == "crypto_mode_refused"
    err = queued_error(r)
    assert err.code == "crypto_mode_refused"
    with pytest.raises(RemoteProtocolError) as remote:
        i.receive_data(encode_frame(err))
    assert remote.value.code == "crypto_mode_refused"
    assert not i.complete and not r.complete


@pytest.mark.parametrize("offer", [(), ("hybrid", "quantum"), ("hybrid",) * 9], ids=["empty", "unknown", "too-long"])
def test_malformed_offers_are_refused(offer: tuple[str, ...]) -> None:
    i, r = pair(HYBRID)
    with pytest.raises(RemoteProtocolError):
        run_handshake(i, r, tamper=strip_offer(offer))
    assert not r.complete
    assert queued_error(r).code in ("crypto_mode_refused", "bad_input")


# Field-level tampering --------------------------------------------------------------------


def field(name: str, fn):
    def mutate(data: bytes) -> bytes:
        return reencode(data, **{name: fn(getattr(decode_frame(data), name))})

    return mutate


FLIP_FIRST = lambda v: flip_bit(v, 0)  # noqa: E731
FLIP_LAST = lambda v: flip_bit(v, len(v) * 8 - 1)  # noqa: E731

# (message index, description, mutation, modes it applies to, failing side, error class)
TAMPERS = [
    (0, "hello1.v", field("v", lambda v: v + 1), MODES, Role.RESPONDER, RemoteProtocolError),
    (0, "hello1.x25519", field("x25519", FLIP_FIRST), MODES, Role.INITIATOR, DecryptError),
    (0, "hello1.mlkem-rho", field("mlkem", FLIP_LAST), MODES, Role.INITIATOR, DecryptError),
    (0, "hello1.mlkem-invalid", field("mlkem", lambda v: b"\xff" * len(v)), [HYBRID, PQ], Role.RESPONDER, RemoteProtocolError),
    (0, "hello1.mlkem-unused", field("mlkem", lambda v: b"\xff" * len(v)), [CLASSICAL], Role.INITIATOR, DecryptError),
    (0, "hello1.x25519-short", field("x25519", lambda v: v[:31]), [CLASSICAL, HYBRID], Role.RESPONDER, RemoteProtocolError),
    (0, "hello1.mlkem-short", field("mlkem", lambda v: v[:-1]), [HYBRID, PQ], Role.RESPONDER, RemoteProtocolError),
    (0, "hello1.nonce", field("nonce", FLIP_FIRST), MODES, Role.INITIATOR, DecryptError),
    (0, "hello1.nonce-short", field("nonce", lambda v: v[:31]), MODES, Role.RESPONDER, RemoteProtocolError),
    (1, "hello2.v", field("v", lambda v: v + 1), MODES, Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.mode-unknown", field("mode", lambda v: "quantum"), MODES, Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.mode-other", field("mode", lambda v: "pq" if v != "pq" else "hybrid"), MODES, Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.x25519", field("x25519", FLIP_FIRST), [CLASSICAL, HYBRID], Role.INITIATOR, DecryptError),
    (1, "hello2.x25519-missing", field("x25519", lambda v: None), [CLASSICAL, HYBRID], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.x25519-extra", field("x25519", lambda v: bytes(range(32))), [PQ], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.x25519-zero", field("x25519", lambda v: bytes(32)), [CLASSICAL, HYBRID], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.mlkem_ct", field("mlkem_ct", FLIP_FIRST), [HYBRID, PQ], Role.INITIATOR, DecryptError),
    (1, "hello2.mlkem_ct-last", field("mlkem_ct", FLIP_LAST), [HYBRID, PQ], Role.INITIATOR, DecryptError),
    (1, "hello2.mlkem_ct-missing", field("mlkem_ct", lambda v: None), [HYBRID, PQ], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.mlkem_ct-short", field("mlkem_ct", lambda v: v[:-1]), [HYBRID, PQ], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.mlkem_ct-extra", field("mlkem_ct", lambda v: bytes(1088)), [CLASSICAL], Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.nonce", field("nonce", FLIP_LAST), MODES, Role.INITIATOR, DecryptError),
    (1, "hello2.nonce-long", field("nonce", lambda v: v + b"\0"), MODES, Role.INITIATOR, RemoteProtocolError),
    (1, "hello2.auth", field("auth", FLIP_FIRST), MODES, Role.INITIATOR, DecryptError),
    (1, "hello2.auth-tag", field("auth", FLIP_LAST), MODES, Role.INITIATOR, DecryptError),
    (1, "hello2.auth-short", field("auth", lambda v: v[:15]), MODES, Role.INITIATOR, DecryptError),
    (2, "auth3.auth", field("auth", FLIP_FIRST), MODES, Role.RESPONDER, DecryptError),
    (2, "auth3.auth-tag", field("auth", FLIP_LAST), MODES, Role.RESPONDER, DecryptError),
    (2, "auth3.auth-empty", field("auth", lambda v: b""), MODES, Role.RESPONDER, DecryptError),
    (3, "done4.confirm", field("confirm", FLIP_FIRST), MODES, Role.INITIATOR, DecryptError),
    (3, "done4.confirm-tag", field("confirm", FLIP_LAST), MODES, Role.INITIATOR, DecryptError),
    (3, "done4.confirm-short", field("confirm", lambda v: v[:-1]), MODES, Role.INITIATOR, DecryptError),
]

TAMPER_CASES = [
    pytest.param(index, mutate, mode, side, error, id=f"{name}-{mode.value}")
    for index, name, mutate, modes, side, error in TAMPERS
    for mode in modes
]


@pytest.mark.parametrize("index, mutate, mode, side, error", TAMPER_CASES)
def test_tampered_field_fails_the_handshake(index, mutate, mode, side, error) -> None:
    i, r = pair(mode)
    machines = {Role.INITIATOR: i, Role.RESPONDER: r}
    original: list[bytes] = []

    def tamper(n: int, role: Role, data: bytes) -> bytes:
        if n == index:
            original.append(data)
            changed = mutate(data)
            assert changed != data
            return changed
        return data

    with pytest.raises(error) as info:
        run_handshake(i, r, tamper=tamper)
    failed = machines[side]
    assert queued_error(failed).code == info.value.code
    assert_refuses_further_use(failed, original[0])
    # Never completes with mismatched keys: the initiator, which completes last, never completes;
    # the responder completes only when the tampering hit Done4, after it had already accepted.
    assert not i.complete
    assert r.complete is (index == 3)


def assert_bit_flip_fails(mode: CryptoMode, index: int, choose_bit, seed: object) -> None:
    """Flip one bit (chosen by ``choose_bit(message)``) of message ``index``; the handshake must
    fail with a ProtocolError on exactly one side, which then refuses all further use."""
    i, r = pair(mode, seed=seed)
    flipped: list[bytes] = []

    def tamper(n: int, role: Role, data: bytes) -> bytes:
        if n == index:
            flipped.append(flip_bit(data, choose_bit(data)))
            return flipped[0]
        return data

    with pytest.raises(ProtocolError) as info:
        run_handshake(i, r, tamper=tamper)
    assert isinstance(info.value, RemoteProtocolError)
    assert not i.complete
    assert r.complete is (index == 3)
    outgoing = {hs: hs.data_to_send() for hs in (i, r)}
    failed = [hs for hs, out in outgoing.items() if out]
    assert len(failed) == 1
    [error] = outgoing[failed[0]]
    sent = decode_frame(error)
    assert isinstance(sent, HandshakeError) and sent.code == info.value.code
    with pytest.raises(LocalProtocolError):
        failed[0].receive_data(flipped[0])


@HYPOTHESIS
@given(mode=st.sampled_from(MODES), index=st.integers(0, 3), data=st.data())
def test_random_bit_flip_in_any_message_fails_the_handshake(mode: CryptoMode, index: int, data: st.DataObject) -> None:
    choose = lambda message: data.draw(st.integers(0, len(message) * 8 - 1), label="bit")  # noqa: E731
    assert_bit_flip_fails(mode, index, choose, seed=("flip", mode.value, index))


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_header_bit_matters(index: int) -> None:
    # Exhaustive over the first 8 bytes (frame tag, array and field headers) of each message.
    for bit in range(64):
        assert_bit_flip_fails(CLASSICAL, index, lambda message: bit, seed=("hdr", index, bit))


def test_every_bit_of_done4_matters() -> None:
    done4 = recorded(CLASSICAL)[3]
    for bit in range(len(done4) * 8):
        assert_bit_flip_fails(CLASSICAL, 3, lambda message: bit, seed=("done4", bit))


def test_every_bit_of_a_classical_hello2_matters() -> None:
    # The initiator's randomness is a parameter, so the same initiator can be rebuilt for every
    # flipped copy of one recorded Hello2: every bit is covered, none is malleable.
    def initiator() -> Handshake:
        return make_initiator(key=identity(CLASSICAL, "initiator"), policy=CryptoPolicy(CLASSICAL, CLASSICAL), seed="sweep")

    first = initiator()
    r = make_responder(key=identity(CLASSICAL, "responder"), policy=CryptoPolicy(CLASSICAL, CLASSICAL), seed="sweep")
    r.receive_data(first.data_to_send()[0])
    hello2 = r.data_to_send()[0]
    first.receive_data(hello2)  # the untouched message is accepted
    assert isinstance(decode_frame(first.data_to_send()[0]), Auth3)
    for bit in range(len(hello2) * 8):
        i = initiator()
        with pytest.raises(RemoteProtocolError):
            i.receive_data(flip_bit(hello2, bit))
        assert [type(decode_frame(m)) for m in i.data_to_send()] == [Hello1, HandshakeError]


# Structural errors ---------------------------------------------------------------------------


def recorded(mode: CryptoMode = HYBRID, seed: object = "rec") -> list[bytes]:
    """The four messages of one complete handshake."""
    wire: Wire = []
    run_handshake(*pair(mode, seed=seed), wire=wire)
    return [m for _, m in wire]


BAD_INPUT = {
    "empty": b"",
    "garbage": b"\xc1\x00garbage",
    "not-an-array": packb({"a": 1}),
    "unknown-tag": packb([99, 1]),
    "oversized": b"\x00" * (limits.MAX_HANDSHAKE_MESSAGE_BYTES + 1),
    "text-message": "hello",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_bad_input_is_a_remote_protocol_error(name: str, role: Role) -> None:
    i, r = pair(HYBRID)
    hs = i if role is Role.INITIATOR else r
    with pytest.raises(RemoteProtocolError) as info:
        hs.receive_data(BAD_INPUT[name])  # type: ignore[arg-type]
    if name == "oversized":
        assert "too large" in str(info.value)
    if role is Role.INITIATOR:
        assert decode_frame(hs.data_to_send()[-1]).code == info.value.code  # after its Hello1
    else:
        assert queued_error(hs).code == info.value.code
    assert_refuses_further_use(hs, b"")


def test_size_cap_is_checked_before_decoding() -> None:
    r = make_responder()
    big = encode_frame(Hello1(v=1, offer=("hybrid",), x25519=bytes(32), mlkem=bytes(limits.MAX_HANDSHAKE_MESSAGE_BYTES), nonce=bytes(32), cookie=b""))
    with pytest.raises(RemoteProtocolError, match="too large"):
        r.receive_data(big)


@pytest.mark.parametrize("cut", [1, 2, 10, "half", -1, -16])
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_truncated_messages_fail(index: int, cut: int | str) -> None:
    i, r = pair(HYBRID, seed=("cut", index, cut))

    def tamper(n: int, role: Role, data: bytes) -> bytes:
        if n != index:
            return data
        return data[: len(data) // 2 if cut == "half" else cut]

    with pytest.raises(RemoteProtocolError):
        run_handshake(i, r, tamper=tamper)
    assert not i.complete
    assert r.complete is (index == 3)


def test_dropped_message_stalls_without_completing() -> None:
    from .pairs import HandshakeStalled

    i, r = pair(HYBRID)
    with pytest.raises(HandshakeStalled):
        run_handshake(i, r, tamper=lambda n, role, d: None if n == 2 else d)
    assert not i.complete and not r.complete


def test_out_of_order_messages_fail() -> None:
    hello1, hello2, auth3, done4 = recorded()
    cases = [
        (make_responder, [auth3]),  # Auth3 first
        (make_responder, [done4]),
        (make_responder, [hello2]),
        (make_initiator, [hello1]),  # own Hello1 reflected
        (make_initiator, [auth3]),
        (make_initiator, [done4]),  # Done4 before Hello2
    ]
    for make, messages in cases:
        hs = make(key=identity(HYBRID, "initiator" if make is make_initiator else "responder"), policy=CryptoPolicy(HYBRID, HYBRID))
        hs.data_to_send()
        with pytest.raises(RemoteProtocolError, match="expected"):
            hs.receive_data(messages[0])
        assert queued_error(hs).code == "bad_input"
        assert_refuses_further_use(hs, messages[0])


def test_hello1_twice_fails() -> None:
    i, r = pair(HYBRID)
    hello1 = i.data_to_send()[0]
    r.receive_data(hello1)
    assert len(r.data_to_send()) == 1
    with pytest.raises(RemoteProtocolError, match="expected Auth3"):
        r.receive_data(hello1)
    assert queued_error(r).code == "bad_input"
    assert_refuses_further_use(r, hello1)


def test_hello2_twice_fails() -> None:
    i, r = pair(HYBRID)
    r.receive_data(i.data_to_send()[0])
    hello2 = r.data_to_send()[0]
    i.receive_data(hello2)
    assert isinstance(decode_frame(i.data_to_send()[0]), Auth3)
    with pytest.raises(RemoteProtocolError, match="expected Done4"):
        i.receive_data(hello2)
    assert queued_error(i).code == "bad_input"
    assert_refuses_further_use(i, hello2)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_handshake_error_from_peer_is_a_remote_protocol_error(role: Role) -> None:
    i, r = pair(HYBRID)
    hs = i if role is Role.INITIATOR else r
    if role is Role.INITIATOR:
        r.receive_data(i.data_to_send()[0])
    with pytest.raises(RemoteProtocolError) as info:
        hs.receive_data(encode_frame(HandshakeError(code="unavailable", message="try again later")))
    assert type(info.value) is RemoteProtocolError
    assert info.value.code == "unavailable"
    assert "try again later" in str(info.value)
    assert queued_error(hs).code == "unavailable"
    assert_refuses_further_use(hs, b"")


def test_a_refusal_code_this_version_does_not_know_is_bad_input() -> None:
    i, r = pair(HYBRID)
    r.receive_data(i.data_to_send()[0])
    with pytest.raises(RemoteProtocolError) as info:
        r.receive_data(encode_frame(HandshakeError(code="busy", message="try again later")))
    assert info.value.code == "bad_input"
    assert "'busy'" in str(info.value) and "try again later" in str(info.value)


def test_decrypt_failure_tells_the_peer_nothing_more() -> None:
    i, r = pair(HYBRID)
    with pytest.raises(DecryptError):
        run_handshake(i, r, tamper=lambda n, role, d: reencode(d, auth=flip_bit(decode_frame(d).auth, 9)) if n == 2 else d)
    err = queued_error(r)
    assert (err.code, err.message) == ("decrypt_failed", "decryption failed")


# accept() / reject() ------------------------------------------------------------------------


def test_accept_and_reject_only_in_await_decision() -> None:
    i, r = pair(HYBRID)
    for hs in (i, r):  # initiator at any time, responder before Hello1
        with pytest.raises(LocalProtocolError):
            hs.accept()
        with pytest.raises(LocalProtocolError):
            hs.reject("no", "no")
    r.receive_data(i.data_to_send()[0])
    with pytest.raises(LocalProtocolError):  # AWAIT_AUTH3
        r.accept()
    with pytest.raises(LocalProtocolError):
        r.reject("no", "no")
    i.receive_data(r.data_to_send()[0])
    r.receive_data(i.data_to_send()[0])
    assert isinstance(r.next_event(), PeerIdentified)
    # Misuse while deciding is refused but does not break the machine.
    with pytest.raises(LocalProtocolError):
        r.receive_data(b"")
    r.accept()
    with pytest.raises(LocalProtocolError):  # COMPLETE
        r.accept()
    with pytest.raises(LocalProtocolError):
        r.reject("no", "no")
    done4 = r.data_to_send()
    assert len(done4) == 1
    i.receive_data(done4[0])
    a, b = i.next_event(), r.next_event()
    assert isinstance(a, HandshakeComplete) and isinstance(b, HandshakeComplete)
    assert_keys_agree(a, b)


def test_reject_makes_the_initiator_fail_with_the_given_code() -> None:
    i, r = pair(HYBRID)
    seen: list[PeerIdentified] = []

    def decide(responder: Handshake, event: PeerIdentified) -> None:
        seen.append(event)
        responder.reject("not_registered", "unknown device")

    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(i, r, decide=decide)
    assert seen and seen[0].peer == identity(HYBRID, "initiator").public
    assert type(info.value) is RemoteProtocolError
    assert info.value.code == "not_registered"
    assert "unknown device" in str(info.value)
    assert not i.complete and not r.complete
    assert r.next_event() is NEED_DATA  # no HandshakeComplete after a rejection
    assert_refuses_further_use(r, b"")
    assert queued_error(i).code == "not_registered"
    with pytest.raises(LocalProtocolError):
        i.receive_data(b"")


# Identity hiding -------------------------------------------------------------------------------


def identity_needles(mode: CryptoMode, name: str) -> list[bytes]:
    public = identity(mode, name).public
    fields = canonical.loads(public.to_bytes())
    needles = [public.to_bytes(), public.fingerprint.encode()]
    needles += [fields[k] for k in ("ed25519", "mldsa65") if k in fields]
    return needles


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_identities_never_appear_on_the_wire(mode: CryptoMode) -> None:
    wire: Wire = []
    run_handshake(*pair(mode), wire=wire)
    assert len(wire) == 4
    for name in ("initiator", "responder"):
        for needle in identity_needles(mode, name):
            for _, message in wire:
                assert needle not in message


# Replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_replayed_hello2_fails_in_a_new_session(mode: CryptoMode) -> None:
    old = recorded(mode, seed="old")
    i, _ = pair(mode, seed="new")
    i.data_to_send()
    with pytest.raises(DecryptError):
        i.receive_data(old[1])
    assert i.data_to_send() and not i.complete
    assert_refuses_further_use(i, old[1])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_replayed_initiator_flight_fails_at_a_new_responder(mode: CryptoMode) -> None:
    old = recorded(mode, seed="old")
    _, r = pair(mode, seed="fresh responder")
    r.receive_data(old[0])  # a replayed Hello1 is answered (it is unauthenticated) ...
    r.data_to_send()
    with pytest.raises(DecryptError):  # ... but the old Auth3 does not fit the new keys
        r.receive_data(old[2])
    assert r.next_event() is NEED_DATA


def test_replayed_done4_fails_in_a_new_session() -> None:
    old = recorded(HYBRID, seed="old")
    i, r = pair(HYBRID, seed="new")
    with pytest.raises(DecryptError):
        run_handshake(i, r, tamper=lambda n, role, d: old[3] if n == 3 else d)
    assert r.complete and not i.complete


def test_prologue_mismatch_fails() -> None:
    i = make_initiator(prologue=b"/client")
    r = make_responder(prologue=b"/federation")
    with pytest.raises(DecryptError):
        run_handshake(i, r)
    assert not i.complete and not r.complete


def test_session_keys_are_frozen() -> None:
    keys = SessionKeys(send_key=b"a" * 32, recv_key=b"b" * 32, send_iv=b"c" * 12, recv_iv=b"d" * 12, binding=b"e" * 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        keys.send_key = b"x" * 32  # type: ignore[misc]


async def test_the_initiator_driver_completes_over_a_transport_and_refuses_text() -> None:
    from sonet.core.handshake import HandshakeComplete, PeerIdentified
    from sonet.transport import run_initiator

    initiator, responder = pair()
    replies: list[bytes] = []

    async def send(data: bytes) -> None:  # the responder answers at once, as a peer would
        responder.receive_data(data)
        if isinstance(responder.next_event(), PeerIdentified):
            responder.accept()
        replies.extend(responder.data_to_send())

    async def receive() -> bytes:
        return replies.pop(0)

    done = await run_initiator(initiator, send=send, receive=receive, peer="node")
    assert isinstance(done, HandshakeComplete) and responder.complete

    async def text() -> str:
        return "hello"

    async def discard(data: bytes) -> None:
        pass

    with pytest.raises(RemoteProtocolError, match="node sent a text message"):
        await run_initiator(pair()[0], send=discard, receive=text, peer="node")
