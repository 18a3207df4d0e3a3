"""Attack round 9: a registered device sending its Register (or LinkComplete) again is
answered again (a retry after a lost answer), and nothing bounded how often: one connection
against a real node got ~700 answers a second for 5 s, each a log line and a directory read
(3,747 log lines, the node at ~56% of a core). Answers again are now charged like any
registration attempt: a few per connection (``registrations_per_connection``), and the
address's registration budget."""

from __future__ import annotations

import logging

import pytest
import trio

from sonet.core.client_api import LinkComplete, Registered
from sonet.core.invite import parse_invite
from sonet.node.client_limits import REGISTRATIONS_PER_CONNECTION

from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import Account, Member, NodeError
from .test_registration_retry import _approved_slot, register_frame

ALICE = f"alice@{NODE_NAME}"


async def test_register_sent_again_and_again_is_refused_past_the_connection_allowance(
    running: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sonet.node.client")
    with trio.fail_after(HANG_S):
        account = Account(address=ALICE)
        member = Member.new(ALICE)
        build = register_frame(account, member, parse_invite(await running.mint_invite())[1])
        async with running.raw(member) as lost:
            assert isinstance(await lost.request(build), Registered)  # the answer never heard
        async with running.raw(member) as retry:  # a new connection: the retry is answered
            for _ in range(REGISTRATIONS_PER_CONNECTION):
                assert isinstance(await retry.request(build), Registered)
            with pytest.raises(NodeError) as refused:
                await retry.request(build)
            assert refused.value.code == "rate_limited" and "reconnect" in str(refused.value)
            for _ in range(100):  # over and over: refused, never answered nor logged each time
                with pytest.raises(NodeError):
                    await retry.request(build)
    again = [r for r in caplog.records if "asked again" in r.getMessage()]
    assert len(again) == REGISTRATIONS_PER_CONNECTION


async def test_link_complete_sent_again_and_again_is_refused_past_the_connection_allowance(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(ALICE)
        async with running.raw(member) as lost:
            slot = await _approved_slot(running, alice.first, lost)
            build = lambda n: LinkComplete(  # noqa: E731
                request=n, slot=slot, record=member.record, device_list=alice.list_with(member), keys=member.keys
            )
            assert isinstance(await lost.request(build), Registered)
        async with running.raw(member) as retry:
            for _ in range(REGISTRATIONS_PER_CONNECTION):
                assert isinstance(await retry.request(build), Registered)
            with pytest.raises(NodeError) as refused:
                await retry.request(build)
            assert refused.value.code == "rate_limited"
