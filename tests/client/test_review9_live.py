"""Review of round 9 (rev9): the live session's shielded connection task (client/live.py
``open_live_session``, 73305d5). The task runs in a shielded scope that only the block's own
``finally`` cancels, after the goodbye; anything that left that ``finally`` early (a Ctrl-C
during the goodbye) left the task running and the nursery waiting for it for ever. The cancels
are now in a ``finally`` of their own.
Fixtures: tests/client/conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from sonet.client import live
from sonet.client.live import LiveSession, Online
from sonet.client.sdk import Device
from tests.node.conftest import RunningNode

from .conftest import BOB, HANG_S
from .test_live import Events
from .test_presence import contacts

pytestmark = pytest.mark.usefixtures("few_prekeys")

Register = Callable[..., Awaitable[Device]]


async def test_a_ctrl_c_during_the_goodbye_does_not_leave_the_block_hanging(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await contacts(alice, bob)
    alice.set_presence(True, to=[BOB])

    # the second Ctrl-C arrives while the goodbye waits on the node: trio raises it there
    # (as `trio.run(..., restrict_keyboard_interrupt_to_checkpoints=True)` in cli.py does)
    original = Device.send_presence

    async def send_presence(self: Device, *, online: bool = True) -> Any:
        if not online:
            await trio.sleep(0)
            raise KeyboardInterrupt
        return await original(self, online=online)

    monkeypatch.setattr(Device, "send_presence", send_presence)

    # only so the test can end the session if the block hangs (a scope inside the shielded one)
    release = trio.CancelScope()
    original_run = LiveSession.run

    async def run(self: LiveSession) -> None:
        with release:
            await original_run(self)

    monkeypatch.setattr(LiveSession, "run", run)

    left = trio.Event()
    interrupted: list[bool] = []

    async def follow() -> None:
        try:
            async with alice.live() as session:
                await Events(session).until(Online)
                raise KeyboardInterrupt  # the first Ctrl-C ends the block
        except KeyboardInterrupt:
            interrupted.append(True)
        finally:
            left.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        with trio.move_on_after(HANG_S + 4 * live.GOODBYE_S):
            await left.wait()
        hung = not left.is_set()
        release.cancel()  # a hung block ends now, so the test reports rather than hangs
    assert interrupted == [True]
    assert not hung, "the block did not end after a KeyboardInterrupt in its goodbye: the connection task ran on"
