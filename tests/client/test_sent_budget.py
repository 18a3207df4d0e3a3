"""`sonet sent --limit N` past the home node's budget for delivery status lookups (ux12): the
node answers 10,000 ids at once, then 500 a second per device (node/client_limits.py
STATUS_IDS), and keeps a message's delivery rows only so long (node/store/base.py
DELIVERY_GRACE_MS after the envelope's end). `sent --limit 12000` was refused part-way
("too many delivery status requests") and showed the last known state of everything.

client/delivery.py asks only about messages the node may still know of, paces its chunks to
the budget, retries a chunk refused because another command spent it, and keeps what was
answered; a refusal that lasts is one clear line. The node here is a fake connection that
counts with the node's own token bucket on trio's clock (autojumped: no real waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.client.connection import NodeError
from sonet.client.delivery import ROW_RETENTION_MS, STATUS_BURST_IDS, STATUS_IDS_PER_S, refresh_sent
from sonet.client.state import DeviceState
from sonet.core import limits
from sonet.core.client_api import EnvelopeStatus, FetchStatus, Statuses
from sonet.core.ratelimit import Bucket
from sonet.node.client_limits import STATUS_IDS
from sonet.node.store import DELIVERY_GRACE_MS

BOB = "bob@beta.example"
NOW = 1_800_000_000_000
DAY_MS = 24 * 3600 * 1000


def test_the_client_knows_the_nodes_budget_and_retention() -> None:
    assert (STATUS_BURST_IDS, STATUS_IDS_PER_S) == (STATUS_IDS.burst, STATUS_IDS.per_second)
    assert limits.MAX_ENVELOPE_TTL_MS + DELIVERY_GRACE_MS < ROW_RETENTION_MS <= limits.MAX_ENVELOPE_TTL_MS + DELIVERY_GRACE_MS + DAY_MS


class FakeNode:
    """A connection whose node answers FetchStatus as "accepted" for every id it holds rows of,
    within the node's per-device budget (a bucket that starts with ``tokens``)."""

    def __init__(self, known: set[bytes], *, tokens: float | None = None, refill: bool = True) -> None:
        self.known = known
        self.bucket = Bucket(STATUS_IDS, self._ms())
        if tokens is not None:
            self.bucket.tokens = tokens
        self.refill = refill
        self.asked: list[bytes] = []
        self.refused = 0

    @staticmethod
    def _ms() -> int:
        return int(trio.current_time() * 1000)

    async def request(self, build: Any) -> Statuses:
        frame = build(7)
        assert isinstance(frame, FetchStatus) and len(frame.ids) <= limits.MAX_STATUS_IDS
        if not self.refill:
            self.bucket._refill(self._ms())
            self.bucket.tokens = min(self.bucket.tokens, 0.0)
        if not self.bucket.take(self._ms(), len(frame.ids)):
            self.refused += 1
            raise NodeError("rate_limited", "too many delivery status requests from this device; try again in a moment")
        self.asked += frame.ids
        items = tuple(
            EnvelopeStatus(id=i, node="beta.example", device=1, state="accepted", code="", message="", at=NOW) for i in frame.ids if i in self.known
        )
        return Statuses(request=7, items=items)


def _connect(node: FakeNode) -> Any:
    @asynccontextmanager
    async def connect() -> AsyncIterator[FakeNode]:
        yield node

    return connect


def _state(tmp_path: Path, count: int, *, sent_at: int = NOW - 1000) -> tuple[DeviceState, list[bytes]]:
    state = DeviceState(tmp_path / "home")
    ids = [i.to_bytes(16, "big") for i in range(1, count + 1)]
    with state.transaction():
        for n, msg_id in enumerate(ids):
            state.record_sent(msg_id, BOB, sent_at - n, 1, state="sent", text="hi")
    return state, ids


async def test_twelve_thousand_open_messages_are_asked_about_paced_to_the_budget(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    state, ids = _state(tmp_path, 12_000)
    node = FakeNode(set(ids))
    said: list[str] = []
    started = trio.current_time()
    messages = await refresh_sent(state, _connect(node), 12_000, now=NOW, say=said.append)
    assert node.refused == 0 and sorted(node.asked) == sorted(ids)
    assert {m.state for m in messages} == {"accepted"} and len(messages) == 12_000
    took = trio.current_time() - started
    assert 3.5 <= took <= 5.0, took  # (12,000 - 10,000) / 500 a second
    assert said == []  # a few seconds: nothing to say
    state.close()


async def test_a_long_refresh_says_how_long_it_will_take(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    state, ids = _state(tmp_path, 14_000)
    said: list[str] = []
    await refresh_sent(state, _connect(FakeNode(set(ids))), 14_000, now=NOW, say=said.append)
    assert said == [
        "asking the home node where 14,000 sent messages are: it answers 10,000 at once, then 500 a second; about 8 s"
    ]
    state.close()


async def test_messages_older_than_the_nodes_delivery_rows_are_not_asked_about(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    state = DeviceState(tmp_path / "home")
    old, recent = b"\x01" * 16, b"\x02" * 16
    with state.transaction():
        state.record_sent(old, BOB, NOW - ROW_RETENTION_MS - 1, 1, state="sent", text="long ago")
        state.record_sent(recent, BOB, NOW - 10 * DAY_MS, 1, state="sent", text="this month")
    node = FakeNode({old, recent})
    messages = await refresh_sent(state, _connect(node), 20, now=NOW)
    assert node.asked == [recent]
    assert {m.id: m.state for m in messages} == {recent: "accepted", old: "sent"}  # the old one keeps its last known state

    # with nothing the node may still know of, no connection is opened at all
    @asynccontextmanager
    async def refused() -> AsyncIterator[FakeNode]:
        raise AssertionError("connected")
        yield node

    with state.transaction():
        state.update_sent([(recent, "accepted", "", "")])
    await refresh_sent(state, refused, 20, now=NOW)
    state.close()


async def test_a_budget_another_command_spent_is_waited_for(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    state, ids = _state(tmp_path, 600)
    node = FakeNode(set(ids), tokens=0)  # a `sent --limit 10000` just before
    messages = await refresh_sent(state, _connect(node), 600, now=NOW)
    assert node.refused == 1 and sorted(node.asked) == sorted(ids) and {m.state for m in messages} == {"accepted"}
    state.close()


async def test_a_budget_that_stays_spent_is_one_clear_error_and_what_came_is_kept(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    state, ids = _state(tmp_path, 600)
    node = FakeNode(set(ids))
    real = node.request

    async def first_chunk_then_none(build: Any) -> Statuses:
        if node.asked:
            node.refill = False  # e.g. other devices' commands keep spending it
        return await real(build)

    node.request = first_chunk_then_none  # type: ignore[method-assign]
    with pytest.raises(NodeError) as refused:
        await refresh_sent(state, _connect(node), 600, now=NOW)
    assert refused.value.code == "rate_limited"
    assert str(refused.value) == (
        "the home node refused more delivery status lookups (too many delivery status requests from this device; try again in a "
        "moment): it answers 10,000 at once, then 500 a second per device, and 600 were asked; try again in a minute, or with a "
        "smaller --limit"
    )
    answered = set(node.asked)
    assert 0 < len(answered) < 600
    assert {m.id for m in state.all_sent_messages(600) if m.state == "accepted"} == answered  # kept
    state.close()
