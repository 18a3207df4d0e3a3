"""A node that answers a device's request with the wrong frame is a clear one-line error
(RemoteProtocolError ``unexpected_frame``), never an assertion or a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.replies import expect_reply
from sonet.client.sdk import Device
from sonet.core.client_api import Accepted, DeviceMismatch, GetSenderCertificate, Ping, Pong, Register, Registered
from sonet.core.errors import RemoteProtocolError
from sonet.node import client_session
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register_ = Callable[..., Awaitable[Device]]


async def answer_pong(session: client_session.ClientSession, req: Register | GetSenderCertificate) -> None:
    """A node gone wrong: whatever it is asked, it answers Pong."""
    await session.send(Pong(request=req.request))


def test_the_expected_frame_passes_and_another_is_refused_by_name() -> None:
    pong = Pong(request=3)
    assert expect_reply(pong, Pong) is pong
    assert expect_reply(pong, Accepted, Pong) is pong
    with pytest.raises(RemoteProtocolError) as info:
        expect_reply(pong, Accepted, DeviceMismatch)
    assert info.value.code == "unexpected_frame"
    assert str(info.value) == "the node answered with Pong where Accepted or DeviceMismatch was due"
    with pytest.raises(RemoteProtocolError, match="answered with Ping where Registered was due"):
        expect_reply(Ping(request=1), Registered)


async def test_a_node_answering_register_with_another_frame_is_a_clear_error(
    alpha: RunningNode, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(client_session._HANDLERS, Register, answer_pong)
    device = make_device("alice")
    with trio.fail_after(HANG_S), pytest.raises(RemoteProtocolError) as info:
        await device.register(ALICE, alpha.url, await alpha.mint_invite())
    assert info.value.code == "unexpected_frame"
    assert str(info.value) == "the node answered with Pong where Registered was due"


async def test_a_node_answering_a_certificate_request_with_another_frame_is_a_clear_error(
    alpha: RunningNode, register: Register_, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _ = await register(alpha, "alice"), await register(alpha, "bob")
    monkeypatch.setitem(client_session._HANDLERS, GetSenderCertificate, answer_pong)
    with trio.fail_after(HANG_S), pytest.raises(RemoteProtocolError) as info:
        await alice.send_text(BOB, "hi")
    assert info.value.code == "unexpected_frame"
    assert "where SenderCertificate was due" in str(info.value) and "\n" not in str(info.value)
