"""Post-handshake records (core.channel): one AEAD record per message, implicit counters.

Keys come from a real handshake (tests/core/pairs.py). Any modified, replayed, reordered, dropped,
truncated, oversized or reflected record is refused, and the channel then refuses all further use.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import limits
from sonet.core.channel import NEED_DATA, Channel
from sonet.core.client_api import CLIENT_FRAMES, Ack, Ping, Pong, SendBatch, Welcome
from sonet.core.crypto import CryptoMode
from sonet.core.envelope import Envelope
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError

from .pairs import session_keys

HYPOTHESIS = settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


def channels(mode: CryptoMode = CryptoMode.HYBRID, seed: object = 0) -> tuple[Channel, Channel]:
    ki, kr = session_keys(mode, seed)
    return Channel(ki, CLIENT_FRAMES), Channel(kr, CLIENT_FRAMES)


def drain(ch: Channel) -> list:
    out = []
    while (event := ch.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def assert_broken(ch: Channel, some_record: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        ch.receive_data(some_record)
    with pytest.raises(LocalProtocolError):
        ch.send(Ping(request=1))
    with pytest.raises(LocalProtocolError):
        ch.seal(b"anything")


ENVELOPE = Envelope(v=1, id=bytes(range(16)), to="bob@beta.example", device=1, expires=10**12, kind=1, body=b"\x00ciphertext")


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_round_trip_both_ways(mode: CryptoMode) -> None:
    a, b = channels(mode)
    assert a.binding == b.binding
    to_b = [Welcome(node="alpha.example", account=None, device=None, time=1, one_time_left=0, pq_one_time_left=0, witnesses=0, minimum_crypto_mode="hybrid"), Ping(request=1), SendBatch(request=2, envelopes=(ENVELOPE,))]
    to_a = [Pong(request=1), Ack(ids=(bytes(16), b"\x01" * 16))]
    for frame in to_b:
        b.receive_data(a.send(frame))
    for frame in to_a:
        a.receive_data(b.send(frame))
    assert drain(b) == to_b
    assert drain(a) == to_a
    # Interleaved traffic keeps both counters in step.
    for n in range(5):
        b.receive_data(a.send(Ping(request=n)))
        a.receive_data(b.send(Pong(request=n)))
    assert drain(b) == [Ping(request=n) for n in range(5)]
    assert drain(a) == [Pong(request=n) for n in range(5)]


def test_seal_sends_pre_encoded_frames() -> None:
    from sonet.core.wire import encode_frame

    a, b = channels()
    b.receive_data(a.seal(encode_frame(Ping(request=9))))
    assert drain(b) == [Ping(request=9)]


def test_identical_plaintexts_give_different_records() -> None:
    a, b = channels()
    records = [a.send(Ping(request=1)) for _ in range(3)]
    assert len(set(records)) == 3
    other, _ = channels(seed=1)  # another session, same plaintext
    assert other.send(Ping(request=1)) != records[0]
    for r in records:
        b.receive_data(r)
    assert drain(b) == [Ping(request=1)] * 3


def test_record_does_not_contain_the_plaintext() -> None:
    a, _ = channels()
    secret = b"plaintext-marker-" * 4
    record = a.send(SendBatch(request=1, envelopes=(Envelope(v=1, id=bytes(16), to="bob@beta.example", device=1, expires=1, kind=1, body=secret),)))
    assert secret not in record and b"bob@beta.example" not in record


@HYPOTHESIS
@given(position=st.integers(0, 10_000), xor=st.integers(1, 255))
def test_any_modified_byte_breaks_the_channel(position: int, xor: int) -> None:
    a, b = channels()
    good = a.send(Ping(request=1))
    bad = bytearray(good)
    bad[position % len(bad)] ^= xor
    with pytest.raises(DecryptError):
        b.receive_data(bytes(bad))
    assert drain(b) == []
    assert_broken(b, good)


def test_replayed_record_fails() -> None:
    a, b = channels()
    r0 = a.send(Ping(request=1))
    b.receive_data(r0)
    with pytest.raises(DecryptError):
        b.receive_data(r0)
    assert drain(b) == [Ping(request=1)]
    assert_broken(b, a.send(Ping(request=2)))


def test_reordered_records_fail() -> None:
    a, b = channels()
    r0, r1 = a.send(Ping(request=0)), a.send(Ping(request=1))
    with pytest.raises(DecryptError):
        b.receive_data(r1)
    assert drain(b) == []
    assert_broken(b, r0)


def test_dropped_record_fails() -> None:
    a, b = channels()
    r0, _r1, r2 = (a.send(Ping(request=n)) for n in range(3))
    b.receive_data(r0)
    with pytest.raises(DecryptError):
        b.receive_data(r2)
    assert drain(b) == [Ping(request=0)]
    assert_broken(b, _r1)


@pytest.mark.parametrize("cut", [0, 1, 15, 16, -1])
def test_truncated_record_fails(cut: int) -> None:
    a, b = channels()
    record = a.send(Ping(request=1))
    with pytest.raises(DecryptError):
        b.receive_data(record[:cut])
    assert_broken(b, record)


def test_extended_record_fails() -> None:
    a, b = channels()
    record = a.send(Ping(request=1))
    with pytest.raises(DecryptError):
        b.receive_data(record + b"\0")
    assert_broken(b, record)


def test_oversized_record_is_refused_before_decryption() -> None:
    a, b = channels()
    with pytest.raises(RemoteProtocolError, match="size limit") as info:
        b.receive_data(b"\0" * (limits.MAX_RECORD_BYTES + 1))
    assert not isinstance(info.value, DecryptError)
    assert_broken(b, a.send(Ping(request=1)))


@pytest.mark.parametrize("record", ["text", bytearray(32), memoryview(b"\0" * 32)], ids=["str", "bytearray", "memoryview"])
def test_non_bytes_record_is_refused(record: object) -> None:
    a, b = channels()
    with pytest.raises(RemoteProtocolError, match="binary"):
        b.receive_data(record)  # type: ignore[arg-type]
    assert_broken(b, a.send(Ping(request=1)))


def test_reflected_record_fails() -> None:
    a, b = channels()
    record = a.send(Ping(request=1))
    with pytest.raises(DecryptError):
        a.receive_data(record)  # our own record, bounced back
    assert_broken(a, b.send(Ping(request=1)))
    # The other direction, with counters in step, fails just the same.
    _, b2 = channels()
    with pytest.raises(DecryptError):
        b2.receive_data(b2.send(Ping(request=1)))


def test_record_from_another_session_fails() -> None:
    a1, _ = channels(seed=0)
    _, b2 = channels(seed=1)
    with pytest.raises(DecryptError):
        b2.receive_data(a1.send(Ping(request=1)))
    assert_broken(b2, b"")


def test_authentic_record_with_an_invalid_frame_breaks_the_channel() -> None:
    a, b = channels()
    with pytest.raises(RemoteProtocolError) as info:
        b.receive_data(a.seal(b"\xc1 not msgpack"))
    assert not isinstance(info.value, DecryptError)
    assert drain(b) == []
    assert_broken(b, a.send(Ping(request=1)))


def test_record_limit_forces_a_new_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_CHANNEL_RECORDS", 2)
    a, b = channels()
    records = [a.send(Ping(request=n)) for n in range(2)]
    with pytest.raises(LocalProtocolError, match="limit"):
        a.send(Ping(request=2))
    with pytest.raises(LocalProtocolError):
        a.send(Ping(request=3))
    for r in records:  # what was sent before the limit still arrives
        b.receive_data(r)
    assert drain(b) == [Ping(request=0), Ping(request=1)]
