"""A node that never answers a request (client/connection.py ``REQUEST_DEADLINE_S``): the
command ends with one clear error, and the device's next command, on a new connection, works.
Every other wait of the client has a deadline or a user to end it; this one had neither."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client import connection
from sonet.client.connection import ConnectError
from sonet.client.sdk import Device
from sonet.core.client_api import FetchDevices
from sonet.node import client_session

from .conftest import ALICE, BOB, HANG_S, RunningNode, shown

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")


async def test_a_request_the_node_never_answers_ends_the_command_with_one_line(
    alpha: RunningNode, register: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_answers(session: object, req: FetchDevices) -> None:
        await trio.sleep_forever()

    with trio.fail_after(HANG_S * 2):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        monkeypatch.setattr(connection, "REQUEST_DEADLINE_S", 0.5)
        monkeypatch.setitem(client_session._HANDLERS, FetchDevices, never_answers)
        with pytest.raises(ConnectError, match=r"the node did not answer a request within 0\.5 s") as raised:
            await alice.send_text(BOB, "anyone there?")
        assert raised.value.code == "unreachable"
        monkeypatch.undo()  # the node answers again: the next command goes on a new connection
        await alice.send_text(BOB, "there you are")
        assert [(s, f["text"]) for s, k, f in shown(bob, await bob.receive()) if k == "text"] == [(ALICE, "there you are")]
