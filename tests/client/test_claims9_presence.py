"""docs/security.md, Federation, "Presence is opt-in": "Turning it off sends nothing more (no
"offline"): contacts see the last one go stale." tests/client/test_presence.py turns it on and
off with no session open, and shows the "offline" a session sends as it closes while presence is
on; nothing showed that turning it off DURING a session leaves the contact with the "online" it
had and no "offline" at the close."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.live import Online, Received
from sonet.client.presence import PRESENCE_FRESH_MS
from sonet.client.sdk import Device
from tests.node.conftest import RunningNode

from .conftest import ALICE, HANG_S, Clock
from .test_live import Events
from .test_presence import contacts, presences, record_pushes

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


async def test_turning_presence_off_during_a_session_sends_no_offline(alpha: RunningNode, register: Register, clock: Clock) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        await contacts(alice, bob)
        alice.set_presence(True)
        pushed = record_pushes(alpha)
        async with bob.live() as watching:
            events = Events(watching)
            await events.until(Online)
            async with alice.live() as session:
                await Events(session).until(Online)
                online = await events.until(Received, lambda e: bool(presences(e)))  # type: ignore[arg-type]
                assert presences(online) == [(ALICE, "online")]  # type: ignore[arg-type]
                assert len(pushed) == 1
                alice.set_presence(False)
            # the session closed after presence went off: nothing more left alice's device
            assert len(pushed) == 1, pushed
        at = clock()
        assert bob.last_presence(ALICE) == ("online", at)
        clock.advance(PRESENCE_FRESH_MS + 1)  # the last one goes stale
        assert bob.last_presence(ALICE) == ("offline", at)
        # control: with presence on, the close does send its "offline"
        alice.set_presence(True)
        async with alice.live() as session:
            await Events(session).until(Online)
            while len(pushed) < 2:  # its "online" (the session's first round; hang guard above)
                await trio.sleep(0.02)
        assert len(pushed) == 3  # and, at the close, its "offline"
