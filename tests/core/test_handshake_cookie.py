"""The cookie round of the handshake (core/handshake.py with a screen from
core/handshake_guard.py): a responder under load answers Hello1 with a Cookie, the initiator
sends the same Hello1 again carrying it, once; what both sides sign does not change."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.crypto import CryptoMode, CryptoPolicy
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.handshake import COOKIE_LEN, Cookie, Handshake, HandshakeError, Hello1, Hello2, Role, Screen
from sonet.core.handshake_guard import GuardSettings, HandshakeGuard
from sonet.core.wire import decode_frame, encode_frame, packb, unpackb

from .pairs import PROLOGUE, Wire, identity, make_initiator, make_responder, reencode, rng, run_handshake

ADDRESS = b"192.0.2.7"


def loaded_guard() -> HandshakeGuard:
    return HandshakeGuard(GuardSettings(max_in_progress=0), rng=rng("guard"))  # always under load


def screened_responder(screen: Screen, seed: object = "responder", mode: CryptoMode = CryptoMode.HYBRID) -> Handshake:
    return Handshake(
        Role.RESPONDER,
        identity=identity(mode, "responder"),
        policy=CryptoPolicy(mode, mode),
        rng=rng(("hs", seed)),
        prologue=PROLOGUE,
        screen=screen,
    )


def screen_of(guard: HandshakeGuard, address: bytes = ADDRESS) -> Screen:
    return lambda hello: guard.screen(address, hello, 1_000)


def test_under_load_the_handshake_completes_through_one_cookie_round() -> None:
    guard = loaded_guard()
    wire: Wire = []
    a, b = run_handshake(make_initiator(), screened_responder(screen_of(guard)), wire=wire)
    assert a.keys.binding == b.keys.binding and a.keys.send_key == b.keys.recv_key
    kinds = [type(decode_frame(data)).__name__ for _, data in wire]
    assert kinds == ["Hello1", "Cookie", "Hello1", "Hello2", "Auth3", "Done4"]
    first, retry = decode_frame(wire[0][1]), decode_frame(wire[2][1])
    assert isinstance(first, Hello1) and isinstance(retry, Hello1)
    assert first.cookie == b"" and len(retry.cookie) == COOKIE_LEN
    assert dataclasses.replace(retry, cookie=b"") == first  # the very same message
    assert guard.counts == {"proceeded": 1, "cookies": 1, "replayed": 0, "rate_limited": 0}


def test_the_cookie_round_changes_nothing_that_is_signed() -> None:
    """Same randomness with and without the cookie round: the same session (same transcript).
    Classical mode: only it is fully reproducible (ML-KEM and ML-DSA draw from OpenSSL)."""
    mode = CryptoMode.CLASSICAL
    policy = CryptoPolicy(mode, mode)

    def initiator() -> Handshake:
        return make_initiator(key=identity(mode, "initiator"), policy=policy)

    plain, _ = run_handshake(initiator(), make_responder(key=identity(mode, "responder"), policy=policy))
    cookied, _ = run_handshake(initiator(), screened_responder(screen_of(loaded_guard()), mode=mode))
    assert plain.keys == cookied.keys


def test_not_under_load_there_is_no_cookie_round() -> None:
    guard = HandshakeGuard(GuardSettings(), rng=rng("guard"))
    wire: Wire = []
    run_handshake(make_initiator(), screened_responder(screen_of(guard)), wire=wire)
    assert [type(decode_frame(data)).__name__ for _, data in wire] == ["Hello1", "Hello2", "Auth3", "Done4"]


def test_a_recorded_first_message_replayed_to_a_new_responder_is_refused() -> None:
    guard = HandshakeGuard(GuardSettings(), rng=rng("guard"))
    wire: Wire = []
    run_handshake(make_initiator(), screened_responder(screen_of(guard)), wire=wire)
    replay = screened_responder(screen_of(guard), seed="another")
    with pytest.raises(RemoteProtocolError) as info:
        replay.receive_data(wire[0][1])
    assert info.value.code == "replayed"
    refusal = decode_frame(replay.data_to_send()[-1])
    assert isinstance(refusal, HandshakeError) and refusal.code == "replayed"
    # and the recording's initiator hears why
    victim = make_initiator()
    with pytest.raises(RemoteProtocolError) as heard:
        victim.receive_data(encode_frame(refusal))
    assert heard.value.code == "replayed"


def test_a_replayed_cookie_retry_is_refused() -> None:
    guard = loaded_guard()
    wire: Wire = []
    run_handshake(make_initiator(), screened_responder(screen_of(guard)), wire=wire)
    with pytest.raises(RemoteProtocolError, match="replay"):
        screened_responder(screen_of(guard), seed="another").receive_data(wire[2][1])


def test_a_retry_with_a_rewritten_offer_is_refused_under_load() -> None:
    """A man in the middle who rewrites the offer in the retry: the cookie no longer verifies."""

    def strip(index: int, role: Role, data: bytes) -> bytes:
        return reencode(data, offer=("pq",)) if index == 2 else data

    with pytest.raises(RemoteProtocolError) as info:
        run_handshake(make_initiator(), screened_responder(screen_of(loaded_guard())), tamper=strip)
    assert info.value.code == "bad_input" and "cookie" in str(info.value)


def test_a_cookie_from_another_address_is_refused_on_retry() -> None:
    guard = loaded_guard()
    calls = iter([b"192.0.2.7", b"198.51.100.9"])  # the retry comes from elsewhere
    with pytest.raises(RemoteProtocolError, match="cookie"):
        run_handshake(make_initiator(), screened_responder(lambda hello: guard.screen(next(calls), hello, 0)))
    assert guard.counts["proceeded"] == 0


def test_the_initiator_answers_one_cookie_only() -> None:
    initiator = make_initiator()
    initiator.data_to_send()
    initiator.receive_data(encode_frame(Cookie(cookie=bytes(COOKIE_LEN))))
    assert len(initiator.data_to_send()) == 1
    with pytest.raises(RemoteProtocolError, match="twice"):
        initiator.receive_data(encode_frame(Cookie(cookie=bytes(COOKIE_LEN))))


def test_a_cookie_after_hello2_is_refused() -> None:
    initiator, responder = make_initiator(), make_responder()
    responder.receive_data(initiator.data_to_send()[0])
    initiator.receive_data(responder.data_to_send()[0])
    with pytest.raises(RemoteProtocolError, match="expected Done4, got Cookie"):
        initiator.receive_data(encode_frame(Cookie(cookie=bytes(COOKIE_LEN))))


def test_a_responder_refuses_a_cookie_and_a_malformed_one() -> None:
    with pytest.raises(RemoteProtocolError, match="expected Hello1, got Cookie"):
        make_responder().receive_data(encode_frame(Cookie(cookie=bytes(COOKIE_LEN))))
    fields = unpackb(make_initiator().data_to_send()[0])
    assert fields[0] == Hello1.TAG and fields[-1] == b""
    with pytest.raises(RemoteProtocolError, match="cookie must be empty or 16 bytes") as info:
        make_responder().receive_data(packb([*fields[:-1], bytes(COOKIE_LEN - 1)]))
    assert info.value.code == "bad_input"


def test_only_a_responder_screens() -> None:
    with pytest.raises(LocalProtocolError):
        Handshake(Role.INITIATOR, identity=identity(CryptoMode.HYBRID), policy=CryptoPolicy(), rng=rng(1), prologue=PROLOGUE, screen=lambda h: None)


def test_hello2_still_comes_only_after_the_retry() -> None:
    """The responder keeps nothing of a Hello1 it answered with a cookie: no Hello2 yet."""
    responder = screened_responder(screen_of(loaded_guard()))
    responder.receive_data(make_initiator().data_to_send()[0])
    out = [decode_frame(m) for m in responder.data_to_send()]
    assert len(out) == 1 and isinstance(out[0], Cookie) and not any(isinstance(m, Hello2) for m in out)
