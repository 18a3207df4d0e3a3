"""Review of account administration against linking: a link cannot give a disabled account a
device with a live session, whether the account was disabled before the new device completes
its link or while its commit was under way (when the admin watcher had no device to close)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

from sonet.core.client_api import LinkApprove, LinkApproved, LinkBegin, LinkComplete, LinkFetch, LinkOffer, LinkPending, LinkSlot, Ping, Pong
from sonet.node import admin
from sonet.node.admin_watch import POLL_S
from sonet.node.app import now_ms
from sonet.node.store import SqliteStore

from .conftest import HANG_S, RunningNode
from .kit import Account, Member, NodeError


async def _approved_link(running: RunningNode, alice: Account, member: Member, new: Any) -> LinkSlot:
    async with running.raw(alice.first) as old:
        slot = await new.request(lambda n: LinkBegin(request=n, ephemeral=os.urandom(1200)))
        assert isinstance(slot, LinkSlot)
        assert isinstance(await old.request(lambda n: LinkFetch(request=n, slot=slot.slot)), LinkPending)
        assert isinstance(await old.request(lambda n: LinkApprove(request=n, slot=slot.slot, provisioning=b"p" * 300)), LinkApproved)
    assert isinstance(await new.next_push(), LinkOffer)
    return slot


def _complete(slot: LinkSlot, alice: Account, member: Member) -> Any:
    return lambda n: LinkComplete(request=n, slot=slot.slot, record=member.record, device_list=alice.list_with(member), keys=member.keys)


async def test_a_link_completed_after_the_account_was_disabled_is_refused(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(alice.address)
        async with running.raw(member) as new:
            slot = await _approved_link(running, alice, member, new)
            async with running.store() as store:
                await admin.disable_account(store, alice.address, now=now_ms())
            with pytest.raises(NodeError) as refused:
                await new.request(_complete(slot, alice, member))
        assert refused.value.code == "account_disabled"
        async with running.store() as store:
            assert await store.device_by_fingerprint(member.fingerprint) is None


async def test_a_disable_during_the_links_commit_closes_the_new_session(running: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    original = SqliteStore.add_device

    async def disabled_meanwhile(self: SqliteStore, **kwargs: Any) -> Any:
        # the operator disables the account after the link's check, and the admin watcher runs
        # before the device is committed: it finds nothing of this device to close
        await admin.disable_account(self, kwargs["account"], now=now_ms())  # type: ignore[arg-type]
        await trio.sleep(3 * POLL_S)
        return await original(self, **kwargs)

    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        member = Member.new(alice.address)
        async with running.raw(member) as new:
            slot = await _approved_link(running, alice, member, new)
            monkeypatch.setattr(SqliteStore, "add_device", disabled_meanwhile)
            with pytest.raises(Exception):
                await new.request(_complete(slot, alice, member))
            await new.closed.wait()
        assert isinstance(new.error, NodeError) and new.error.code == "account_disabled", new.error
        async with running.store() as store:
            await admin.enable_account(store, alice.address, now=now_ms())
        async with running.raw(member) as enabled:  # committed: once enabled, a device like the others
            assert isinstance(await enabled.request(lambda n: Ping(request=n)), Pong)
