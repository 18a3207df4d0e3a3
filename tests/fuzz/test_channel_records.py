"""Sequences of channel records under an active attacker (core/channel.py).

The attacker sits between two ends of a channel and, record by record, passes it on, replays
an earlier one, drops it, swaps it with the next, flips a bit or injects garbage. The receiver
must yield exactly the frames of the records that arrived untouched and in order, refuse the
first record that did not (DecryptError, or RemoteProtocolError for a text message), and
refuse every record after that with LocalProtocolError: the channel is dead.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sonet.core.channel import NEED_DATA, Channel
from sonet.core.client_api import CLIENT_FRAMES
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError
from sonet.core.wire import decode_frame
from fuzz.samples import frame_samples
from fuzz.wire_targets import channel_keys

from .conftest import budget

ACTIONS = ["pass", "replay", "drop", "swap", "flip", "garbage"]


@budget()
@given(
    actions=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=12),
    picks=st.lists(st.integers(min_value=0), min_size=12, max_size=12),
)
def test_only_the_untouched_prefix_gets_through(actions: list[str], picks: list[int]) -> None:
    samples = [frame_samples()[cls.TAG] for cls in CLIENT_FRAMES]
    sender, receiver = Channel(channel_keys(initiator=True), CLIENT_FRAMES), Channel(channel_keys(initiator=False), CLIENT_FRAMES)
    plaintexts = [samples[p % len(samples)] for p in picks]
    records = [sender.seal(p) for p in plaintexts]
    wire: list[bytes] = []  # what the receiver gets
    delivered, position = [], 0
    for n, action in enumerate(actions):
        if position >= len(records):
            break
        record = records[position]
        if action == "pass":
            wire.append(record)
            position += 1
        elif action == "replay" and position:
            wire.append(records[picks[n] % position])
        elif action == "drop":
            position += 1
        elif action == "swap" and position + 1 < len(records):
            wire += [records[position + 1], record]
            position += 2
        elif action == "flip":
            bit = picks[n] % (len(record) * 8)
            wire.append(record[: bit // 8] + bytes([record[bit // 8] ^ 1 << bit % 8]) + record[bit // 8 + 1 :])
            position += 1
        elif action == "garbage":
            wire.append(bytes(picks[n] % 64))

    expected = 0  # the index of the record the receiver needs next
    for message in wire:
        if expected >= 0 and message == records[expected]:
            receiver.receive_data(message)
            frame = receiver.next_event()
            assert frame is not NEED_DATA and receiver.next_event() is NEED_DATA
            delivered.append(frame)
            expected += 1
        elif expected >= 0:
            with pytest.raises(DecryptError):
                receiver.receive_data(message)
            expected = -1
        else:
            with pytest.raises(LocalProtocolError):
                receiver.receive_data(message)
    assert delivered == [decode_frame(p) for p in plaintexts[: len(delivered)]]


def test_a_text_message_breaks_the_channel_too() -> None:
    receiver = Channel(channel_keys(initiator=False), CLIENT_FRAMES)
    with pytest.raises(RemoteProtocolError) as info:
        receiver.receive_data("a text message")  # type: ignore[arg-type]
    assert info.value.code == "bad_input"
    with pytest.raises(LocalProtocolError):
        receiver.receive_data(Channel(channel_keys(initiator=True), CLIENT_FRAMES).seal(next(iter(frame_samples().values()))))
