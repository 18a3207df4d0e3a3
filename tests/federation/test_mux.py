"""federation/link.py ``MuxLink`` (on the transport's Mux): several requests outstanding on one dialled link, answers
matched by number whatever their order, and a broken link failing every pending request.

The link under it is a fake with trio memory channels (no sockets, no crypto): what the
MuxLink sends is read back, what the "peer" answers is fed in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping, Pong
from sonet.core.errors import RemoteProtocolError
from sonet.core.wire import Frame, decode_frame, encode_frame
from sonet.federation.link import LinkLost, MuxLink
from sonet.federation.peers import Peer

PEER = Peer(name="beta.example", url="ws://127.0.0.1:1", fingerprint="a" * 32, via=None, added_at=0)


class FakeLink:
    """Stands in for PeerLink (a SecureSocket): frames go out on ``sent`` (through the codec),
    frames (or an error) come in."""

    peer_key = None
    send_broken = None

    def __init__(self) -> None:
        self.sent_in, self.sent = trio.open_memory_channel[Frame](16)
        self.incoming, self._incoming = trio.open_memory_channel[Frame | Exception](16)

    async def send(self, frame: Frame) -> None:
        await self.sent_in.send(decode_frame(encode_frame(frame)))

    async def send_built(self, build: Callable[[], Frame]) -> None:
        await self.send(build())

    async def receive(self) -> Frame:
        item = await self._incoming.receive()
        if isinstance(item, Exception):
            raise item
        return item


async def start(nursery: trio.Nursery) -> tuple[MuxLink, FakeLink]:
    fake = FakeLink()
    mux = MuxLink(fake, PEER)  # type: ignore[arg-type]
    nursery.start_soon(mux.run)
    return mux, fake


async def test_answers_reach_their_requests_in_any_order(nursery: trio.Nursery) -> None:
    mux, fake = await start(nursery)
    results: dict[str, Frame] = {}

    async def call(label: str) -> None:
        results[label] = await mux.request(Ping(request=0))

    async with trio.open_nursery() as callers:
        callers.start_soon(call, "first")
        first = await fake.sent.receive()
        callers.start_soon(call, "second")
        second = await fake.sent.receive()
        assert first.request != second.request and 0 not in (first.request, second.request)  # type: ignore[attr-defined]
        await fake.incoming.send(Pong(request=second.request))  # type: ignore[attr-defined]
        await fake.incoming.send(Pong(request=999))  # nobody asked: ignored
        await fake.incoming.send(Pong(request=first.request))  # type: ignore[attr-defined]
    assert results == {"first": Pong(request=first.request), "second": Pong(request=second.request)}  # type: ignore[attr-defined]
    assert mux.closed is None


@pytest.mark.parametrize(
    "breakage, reason",
    [
        (RemoteProtocolError("record failed to decrypt"), "protocol error"),
        (ErrorFrame(request=0, code="rate_limited", message="slow down"), "rate_limited: slow down"),
    ],
)
async def test_a_broken_link_fails_every_pending_request(nursery: trio.Nursery, breakage: object, reason: str) -> None:
    mux, fake = await start(nursery)
    failures: list[str] = []

    async def call() -> None:
        with pytest.raises(LinkLost) as info:
            await mux.request(Ping(request=0))
        failures.append(str(info.value))

    async with trio.open_nursery() as callers:
        for _ in range(3):
            callers.start_soon(call)
            await fake.sent.receive()
        await fake.incoming.send(breakage)  # type: ignore[arg-type]
    assert len(failures) == 3 and all(reason in f for f in failures)
    assert mux.closed is not None and reason in mux.closed
    with pytest.raises(LinkLost):  # and no new request is sent on it
        await mux.request(Ping(request=0))


async def test_close_ends_the_reader_and_the_waiting_requests(nursery: trio.Nursery) -> None:
    mux, fake = await start(nursery)

    async def call() -> None:
        with pytest.raises(LinkLost, match="no answer in time"):
            await mux.request(Ping(request=0))

    async with trio.open_nursery() as callers:
        callers.start_soon(call)
        await fake.sent.receive()
        mux.close("no answer in time")
