"""sonet.transport.Mux over a real SecureSocket (channel and records) on a fake WebSocket:
answers matched by number in any order, pushes handed over, and every way the connection ends
(refusal, close, protocol error, an interrupted send, close()) failing the pending requests and
every later one at once."""

from __future__ import annotations

import pytest
import trio
from sonet.transport.ws_errors import CloseReason

from sonet.core.client_api import Deliver, ErrorFrame, Ping, Pong
from sonet.core.errors import RemoteProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Push
from sonet.core.wire import Frame
from sonet.transport import LinkLost, Mux

from .fake_ws import FakeWs, pair

HANG_S = 20  # hang guard, never a performance threshold


async def started(nursery: trio.Nursery, **options: object) -> tuple[Mux, FakeWs]:
    sock, ws = pair()
    mux = Mux(sock, peer="node", **options)  # type: ignore[arg-type]
    nursery.start_soon(mux.run)
    return mux, ws


async def test_answers_reach_their_requests_in_any_order_and_late_ones_are_dropped(nursery: trio.Nursery) -> None:
    mux, ws = await started(nursery)
    results: dict[str, Frame] = {}

    async def call(label: str) -> None:
        results[label] = await mux.request(lambda n: Ping(request=n))

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as callers:
            callers.start_soon(call, "first")
            first = await ws.sent.receive()
            callers.start_soon(call, "second")
            second = await ws.sent.receive()
            await ws.push(Pong(request=second.request))  # type: ignore[attr-defined]
            await ws.push(Pong(request=999))  # nobody asked (or gave up): dropped
            await ws.push(ErrorFrame(request=first.request, code="nope", message="no"))  # type: ignore[attr-defined]
    assert results == {"first": ErrorFrame(request=first.request, code="nope", message="no"), "second": Pong(request=second.request)}  # type: ignore[attr-defined]
    assert mux.lost is None and mux.heard == 3


async def test_pushes_go_to_on_push_and_a_refused_one_ends_the_connection(nursery: trio.Nursery) -> None:
    pushed: list[Frame] = []

    async def on_push(frame: Frame) -> None:
        if not isinstance(frame, Deliver):
            raise RemoteProtocolError(f"no {type(frame).__name__} without a number", code="unexpected_frame")
        pushed.append(frame)

    mux, ws = await started(nursery, on_push=on_push)
    with trio.fail_after(HANG_S):
        await ws.push(Deliver(items=()))
        await ws.push(Pong(request=0))  # no number: a push, which this on_push refuses
        await mux.stopped.wait()
    assert pushed == [Deliver(items=())]
    assert mux.lost is not None and str(mux.lost) == "protocol error from the node: no Pong without a number"


async def test_a_push_nobody_takes_is_a_protocol_error(nursery: trio.Nursery) -> None:
    mux, ws = await started(nursery)
    with trio.fail_after(HANG_S):
        await ws.push(Deliver(items=()))
        await mux.stopped.wait()
    assert mux.lost is not None and mux.lost.code == "unexpected_frame"
    assert str(mux.lost) == "protocol error from the node: unexpected Deliver from the node"


async def test_a_refusal_fails_every_pending_request_and_keeps_the_close(nursery: trio.Nursery) -> None:
    mux, ws = await started(nursery)
    failures: list[LinkLost] = []

    async def call() -> None:
        with pytest.raises(LinkLost) as info:
            await mux.request(lambda n: Ping(request=n))
        failures.append(info.value)

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as callers:
            for _ in range(3):
                callers.start_soon(call)
                await ws.sent.receive()
            await ws.push(ErrorFrame(request=0, code="device_removed", message="this device was removed"))
            await ws.hang_up(1008, "device_removed")
        await mux.stopped.wait()
    assert len(failures) == 3
    assert all(f.refusal is not None and f.refusal.code == "device_removed" for f in failures)
    assert str(failures[0]) == "the node ended the connection (device_removed: this device was removed)"
    assert mux.lost is not None and mux.lost.close is not None and mux.lost.close.reason == "device_removed"


@pytest.mark.parametrize(
    "ending, why",
    [
        ("close", "the node closed the connection (going away)"),
        ("garbage", "protocol error from the node: decryption failed"),
        ("text", "protocol error from the node: records must be binary messages"),
        ("local", "given up"),
    ],
)
async def test_a_request_after_the_end_fails_at_once(nursery: trio.Nursery, ending: str, why: str) -> None:
    mux, ws = await started(nursery)
    with trio.fail_after(HANG_S):
        if ending == "close":
            await ws.hang_up(1001, "going away")
        elif ending == "garbage":
            await ws.push_raw(b"\x00" * 40)
        elif ending == "text":
            await ws.push_raw("hello")
        else:
            mux.close("given up")
        await mux.stopped.wait()
        # before the shared Mux, the test kit's connection waited here for good
        with pytest.raises(LinkLost, match=f"^{why.replace('(', '[(]').replace(')', '[)]')}$"):
            await mux.request(lambda n: Ping(request=n))
    assert ws.sent.statistics().current_buffer_used == 0  # nothing was sent after the end


async def test_an_interrupted_send_stops_all_sending(nursery: trio.Nursery) -> None:
    mux, ws = await started(nursery)
    sock = mux.sock
    with trio.fail_after(HANG_S):
        ws.stall = True
        with trio.move_on_after(0.05):  # cancels the request while its sealed record is on its way
            await mux.request(lambda n: Ping(request=n))
        ws.stall = False
        assert sock.send_broken is not None
        assert mux.lost is not None and "cannot send any more" in str(mux.lost)
        with pytest.raises(LinkLost, match="cannot send any more"):
            await mux.request(lambda n: Ping(request=n))
        # the socket itself refuses too: the far end's counter is behind for good
        with pytest.raises(Exception, match="cannot send any more"):
            await sock.send(Ping(request=1))
    assert ws.sent.statistics().current_buffer_used == 0


async def test_a_send_waiting_behind_an_interrupted_one_fails_as_a_lost_link(nursery: trio.Nursery) -> None:
    """Several requests in flight (a file's chunks): when one is cancelled while its record is on
    its way, the ones queued behind it end as LinkLost, which callers dial again after, not as
    the socket's own LocalProtocolError."""
    mux, ws = await started(nursery)
    with trio.fail_after(HANG_S):
        ws.stall = True
        errors: list[BaseException] = []

        async def second() -> None:
            try:
                await mux.request(lambda n: Ping(request=n))
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)

        async with trio.open_nursery() as inner:
            with trio.move_on_after(0.05):  # cancels the first while its record is on its way
                inner.start_soon(second)
                await mux.request(lambda n: Ping(request=n))
            ws.stall = False
        assert len(errors) == 1 and isinstance(errors[0], LinkLost), errors
        assert "cannot send any more" in str(errors[0])


async def test_a_device_channel_cannot_decode_a_federation_push(nursery: trio.Nursery) -> None:
    mux, ws = await started(nursery)
    with trio.fail_after(HANG_S):
        await ws.push_raw(ws.far.seal(_encoded_push()))
        await mux.stopped.wait()
    assert mux.lost is not None and mux.lost.code == "unexpected_frame"
    assert str(mux.lost) == "protocol error from the node: Push (frame tag 60) is not a /client frame"


def _encoded_push() -> bytes:
    from fuzz.samples import frame_samples

    assert Push in FEDERATION_FRAMES
    return frame_samples()[Push.TAG]  # a valid Push, as a peer node would send it


async def test_a_send_that_meets_the_close_reports_the_refusal_read_behind_it(nursery: trio.Nursery) -> None:
    """The node refuses (ErrorFrame, then close) while this side is sending: the send fails on
    the closed socket before the reader got to the refusal. The error is the refusal, not a
    bare "closed the connection" (a removed device's `sonet sent` said the latter at random)."""
    mux, ws = await started(nursery)
    failures: list[LinkLost] = []

    async def send() -> None:
        with pytest.raises(LinkLost) as info:
            await mux.send(Ping(request=0))
        failures.append(info.value)

    with trio.fail_after(HANG_S):
        ws.closed = CloseReason(1008, "device_removed")  # the close reached the socket first
        async with trio.open_nursery() as senders:
            senders.start_soon(send)
            await trio.sleep(0.01)  # the send has failed and waits for the reader
            await ws.push(ErrorFrame(request=0, code="device_removed", message="this device was removed"))
            await ws.hang_up(1008, "device_removed")
    [lost] = failures
    assert lost.refusal is not None and lost.refusal.code == "device_removed"
    assert str(lost) == "the node ended the connection (device_removed: this device was removed)"
