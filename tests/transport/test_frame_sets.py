"""One frame set per endpoint (core/wire.py FrameSet): a channel decodes only the frames of its
endpoint. A device channel refuses a federation ``Push`` (and a federation channel a device's
``SendBatch``) with ``unexpected_frame`` and a message naming the frame; a handshake refuses a
channel frame as ``bad_input``; frames both endpoints speak (errors, pings, lookups) decode on
both."""

from __future__ import annotations

import os

import pytest

from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Deliver, ErrorFrame, FetchDevices, Ping, Register, SendBatch
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Gossip, Push
from sonet.core.handshake import HANDSHAKE_FRAMES, Handshake, Hello1, Role
from sonet.core.wire import Frame, FrameSet, decode_frame, packb, registered_frames
from fuzz.samples import frame_samples
from fuzz.wire_targets import channel_keys

ENDPOINTS = (HANDSHAKE_FRAMES, CLIENT_FRAMES, FEDERATION_FRAMES)


def channel_pair(frames: FrameSet) -> tuple[Channel, Channel]:
    """(the sending end, the receiving end whose channel decodes ``frames``)"""
    return Channel(channel_keys(initiator=True), CLIENT_FRAMES), Channel(channel_keys(initiator=False), frames)


@pytest.mark.parametrize(
    "frames, foreign, words",
    [
        (CLIENT_FRAMES, Push, "Push (frame tag 60) is not a /client frame"),
        (CLIENT_FRAMES, Gossip, "Gossip (frame tag 63) is not a /client frame"),
        (CLIENT_FRAMES, Hello1, "Hello1 (frame tag 1) is not a /client frame"),
        (FEDERATION_FRAMES, SendBatch, "SendBatch (frame tag 15) is not a /federation frame"),
        (FEDERATION_FRAMES, Register, "Register (frame tag 11) is not a /federation frame"),
        (FEDERATION_FRAMES, Deliver, "Deliver (frame tag 17) is not a /federation frame"),
    ],
)
def test_a_channel_refuses_a_frame_of_another_endpoint(frames: FrameSet, foreign: type[Frame], words: str) -> None:
    sender, receiver = channel_pair(frames)
    with pytest.raises(RemoteProtocolError) as info:
        receiver.receive_data(sender.seal(frame_samples()[foreign.TAG]))
    assert (info.value.code, str(info.value)) == ("unexpected_frame", words)
    # like any record that does not decode: the channel is dead, but may still say why
    with pytest.raises(LocalProtocolError):
        receiver.receive_data(sender.send(Ping(request=1)))
    assert receiver.send_last(ErrorFrame(request=0, code="unexpected_frame", message=words))


def test_an_unknown_tag_stays_bad_input() -> None:
    sender, receiver = channel_pair(CLIENT_FRAMES)
    with pytest.raises(RemoteProtocolError) as info:
        receiver.receive_data(sender.seal(packb([99, 1])))
    assert (info.value.code, str(info.value)) == ("bad_input", "unknown frame tag 99")


@pytest.mark.parametrize("frames", [CLIENT_FRAMES, FEDERATION_FRAMES], ids=lambda f: f.name)
def test_a_channel_decodes_every_frame_of_its_endpoint(frames: FrameSet) -> None:
    sender, receiver = channel_pair(frames)
    for cls in frames:
        receiver.receive_data(sender.seal(frame_samples()[cls.TAG]))
        assert type(receiver.next_event()) is cls


@pytest.mark.parametrize("shared", [ErrorFrame, Ping, FetchDevices])
def test_what_both_endpoints_speak_is_in_both_sets(shared: type[Frame]) -> None:
    assert shared in CLIENT_FRAMES and shared in FEDERATION_FRAMES


def test_a_handshake_refuses_a_channel_frame_as_bad_input() -> None:
    key = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    responder = Handshake(Role.RESPONDER, identity=key, policy=CryptoPolicy(), rng=os.urandom, prologue=b"/client")
    with pytest.raises(RemoteProtocolError) as info:
        responder.receive_data(frame_samples()[Push.TAG])
    assert (info.value.code, str(info.value)) == ("bad_input", "Push (frame tag 60) is not a handshake frame")


def test_every_protocol_frame_belongs_to_an_endpoint_and_handshake_frames_to_no_channel() -> None:
    protocol = {cls for cls in registered_frames().values() if cls.__module__.startswith("sonet.core.")}
    assert protocol == {cls for frames in ENDPOINTS for cls in frames}
    assert not any(cls in CLIENT_FRAMES or cls in FEDERATION_FRAMES for cls in HANDSHAKE_FRAMES)


def test_decoding_without_an_endpoint_takes_any_registered_frame() -> None:
    # for tools and tests only: a channel always has its endpoint's set
    assert isinstance(decode_frame(frame_samples()[Push.TAG]), Push)


def test_a_set_takes_only_registered_frames() -> None:
    class Loose(Frame):
        pass

    with pytest.raises(TypeError, match="not a registered frame"):
        FrameSet("/nowhere", [Loose])
