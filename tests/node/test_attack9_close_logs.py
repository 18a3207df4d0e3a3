"""Attack round 9: a stranger (no account, no invite) who completes a handshake on ``/client``
and sends a malformed record is closed, and each such close was one INFO line naming it: ~30
lines a second from one address against a real node, more from many. Every close a device
connection gets is now counted in the node's one summary line per 10 s
(node/client_session.py ``closes_summary``); what each was is at DEBUG."""

from __future__ import annotations

import logging

import pytest
import trio

from sonet.node.client_session import closes_summary

from .conftest import HANG_S, RunningNode
from .kit import new_identity


async def test_malformed_records_from_a_stranger_are_counted_not_logged_one_by_one(
    running: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sonet.node.client")
    before = sum(closes_summary.totals.values())
    key = new_identity()
    with trio.fail_after(HANG_S):
        for _ in range(20):
            async with running.raw(key) as conn:
                await conn.send_encoded(b"\xc1 not msgpack")
                await conn.closed.wait()
            assert conn.error is not None
    lines = [r.getMessage() for r in caplog.records if r.name == "sonet.node.client"]
    assert len(lines) <= 1, lines[:3]
    assert sum(closes_summary.totals.values()) - before >= 20
