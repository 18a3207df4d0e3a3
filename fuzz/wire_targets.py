"""Targets for the codecs every message passes through: frames, envelopes, channel records,
canonical CBOR, message content and invite tokens."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sonet.core import canonical
from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Ping
from sonet.core.content import Content, decode_content
from sonet.core.envelope import Envelope, Kind
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError
from sonet.core.groups import expiry as group_expiry
from sonet.core.handshake import SessionKeys
from sonet.core.invite import make_invite, parse_invite
from sonet.core.wire import Frame, decode_frame, decode_struct, encode_frame, encode_struct

from . import material as m
from .samples import frame_samples
from .target import Finding, Target, register

__all__ = ["channel_keys"]


def _round_trip(decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], data: bytes) -> Any:
    """``decode(data)``, which the encoder must take back: it refuses only what the decoder
    would reject (core/wire.py), so it may not refuse what the decoder accepted."""
    value = decode(data)
    try:
        again = decode(encode(value))
    except LocalProtocolError as exc:
        raise Finding(f"the encoder refuses what the decoder accepted: {exc}") from None
    if again != value:
        raise Finding(f"{value!r} changed on its way through the encoder: {again!r}")
    return value


register(
    Target(
        name="frame",
        summary="core/wire decode_frame (and encode_frame back): every registered frame tag",
        decode=functools.partial(_round_trip, decode_frame, encode_frame),
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_input"}),
        returns=Frame,
        seeds=lambda: frame_samples().values(),
        codec="msgpack",
    )
)


register(
    Target(
        name="envelope",
        summary="core/envelope Envelope as a stored struct (decode_struct, and encode_struct back)",
        decode=functools.partial(_round_trip, functools.partial(decode_struct, Envelope), encode_struct),
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_input"}),
        returns=Envelope,
        seeds=lambda: [encode_struct(m.envelope()), encode_struct(m.envelope(kind=Kind.EPHEMERAL, body=b""))],
        codec="msgpack",
    )
)


def channel_keys(*, initiator: bool) -> SessionKeys:
    """Fixed traffic keys of one channel, from either end."""
    keys = {"i2r": (bytes(32), bytes(12)), "r2i": (bytes([1]) * 32, bytes([1]) * 12)}
    mine, theirs = ("i2r", "r2i") if initiator else ("r2i", "i2r")
    return SessionKeys(
        send_key=keys[mine][0], recv_key=keys[theirs][0], send_iv=keys[mine][1], recv_iv=keys[theirs][1], binding=b""
    )


def _open_record(data: bytes) -> Frame:
    channel = Channel(channel_keys(initiator=False), CLIENT_FRAMES)  # a node's /client end
    channel.receive_data(data)
    return channel.next_event()


def _record_seeds() -> list[bytes]:
    """The first record of a /client channel, carrying each sample frame of that endpoint."""
    samples = frame_samples()
    return [Channel(channel_keys(initiator=True), CLIENT_FRAMES).seal(samples[cls.TAG]) for cls in CLIENT_FRAMES] + [
        Channel(channel_keys(initiator=True), CLIENT_FRAMES).send(Ping(request=1))
    ]


register(
    Target(
        name="channel",
        summary="core/channel: the first record of a /client channel (AEAD open, then the frame inside, of the /client set)",
        decode=_open_record,
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_input", "unexpected_frame", DecryptError.code}),
        returns=Frame,
        seeds=_record_seeds,
    )
)


def _plain_samples() -> list[bytes]:
    return [
        m.certificate(),
        m.device_list(),
        m.directory().head,
        *m.contents(),
        canonical.dumps([0, -1, 2**64 - 1, -(2**64), True, None, "", b"", {"a": [1, {"b": b"c"}]}]),
    ]


register(
    Target(
        name="canonical",
        summary="core/canonical loads: deterministic CBOR of plain data only",
        decode=canonical.loads,
        errors=(RemoteProtocolError,),
        codes=frozenset({"bad_input"}),
        seeds=_plain_samples,
        codec="cbor",
    )
)


register(
    Target(
        name="content",
        summary="core/content decode_content: the plaintext inside a ratchet message",
        decode=decode_content,
        errors=(RemoteProtocolError,),
        codes=frozenset({"content_malformed"}),
        returns=Content,
        seeds=m.contents,
        codec="cbor",
    )
)


_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _parse_invite(data: bytes) -> tuple[str, str]:
    # Tokens are typed by users: bytes that are not UTF-8 reach us as surrogates (sys.argv).
    fingerprint, secret = parse_invite(data.decode("utf-8", "surrogateescape"))
    if len(secret) != 32 or not set(secret) <= _BASE32:
        raise Finding(f"invite: accepted a secret that is not 32 base32 characters: {secret!r}")
    return fingerprint, secret


register(
    Target(
        name="invite",
        summary="core/invite parse_invite: FINGERPRINT.SECRET as `sonet-node invite` prints it",
        decode=_parse_invite,
        errors=(LocalProtocolError,),
        returns=tuple,
        seeds=lambda: [make_invite(m.node_key().public.fingerprint, bytes(range(20))).encode()],
    )
)


def _group_expiry(data: bytes) -> int | None:
    """``read_expiry_aad``, whose answer must be what ``expiry_aad`` writes back to ``data``:
    it reads only what that wrote (a canonical map), so no two inputs mean one expiry."""
    expires = group_expiry.read_expiry_aad(data)
    if group_expiry.expiry_aad(expires) != data:
        raise Finding(f"read {expires!r} from {data!r}, which expiry_aad does not write")
    return expires


register(
    Target(
        name="group_expiry",
        summary="core/groups/expiry read_expiry_aad: the authenticated data of every group application message",
        decode=_group_expiry,
        errors=(ValueError,),
        returns=(int, type(None)),
        seeds=lambda: [group_expiry.expiry_aad(t) for t in (1, 1_800_000_000_000, 2**63 - 1)],
        codec="cbor",
    )
)
