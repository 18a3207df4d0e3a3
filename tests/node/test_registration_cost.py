"""What a connection without an account can make the node spend on ``Register`` /
``LinkComplete`` (node/client_registration.py, node/client_limits.py ``admit_registration``):
the prekey counts are capped before any signature is checked, a taken name on an open node is
refused before the costly part, and the attempts that reach the signature checks are charged
per connection and per source address (count and checks), refused ``rate_limited`` past them
with nothing checked and nothing stored."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import os

import pytest
import trio

from sonet.client.prekeys import TARGET
from sonet.core import limits
from sonet.core.client_api import LinkApprove, LinkApproved, LinkBegin, LinkComplete, LinkOffer, LinkSlot, Register, Registered
from sonet.federation.ratelimit import Rate
from sonet.node import client_registration
from sonet.node.client_limits import ClientLimits

from .conftest import HANG_S, NODE_NAME, NodeParams, RunningNode, StartNode
from .kit import Account, Member, NodeError, first_keys, new_identity

#: no token comes back while a test runs
NEVER = 1e-9


def register(member: Member, **changes: Any):  # noqa: ANN201
    """``build`` for conn.request: Register ``member``'s account with it as the first device."""
    account = Account(address=member.account)
    frame = Register(
        request=0,
        user=member.account.partition("@")[0],
        invite="",
        record=member.record,
        account_identity=account.identity_bytes,
        device_list=account.sign_list([member.fingerprint], version=1),
        keys=member.keys,
    )
    return lambda n: replace(frame, request=n, **changes)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many prekeys each signature check of a new device's keys covered (in order)."""
    calls: list[int] = []
    check = client_registration.check_device_keys

    def counting(keys, identity):  # noqa: ANN001, ANN202
        calls.append(len(keys.one_time) + len(keys.pq_one_time))
        return check(keys, identity)

    monkeypatch.setattr(client_registration, "check_device_keys", counting)
    return calls


async def _accounts(at: RunningNode) -> int:
    async with at.store() as store:
        return (await store.stats())["accounts"]


def test_the_client_brings_no_more_first_prekeys_than_the_node_takes() -> None:
    assert TARGET <= limits.MAX_FIRST_ONE_TIME_PREKEYS


async def test_first_prekeys_are_capped_before_any_signature_is_checked(start_node: StartNode, checked: list[int]) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(registration="open")
        cap = limits.MAX_FIRST_ONE_TIME_PREKEYS
        for many in ({"one_time": cap + 1}, {"pq_one_time": cap + 1}):
            member = Member.new(f"alice@{NODE_NAME}")
            async with at.raw(member) as conn:
                with pytest.raises(NodeError) as err:
                    await conn.request(register(member, keys=first_keys(member.identity, **many)))
                assert err.value.code == "too_many_prekeys"
                assert f"at most {cap} one-time prekeys of each kind" in str(err.value)
        assert checked == [] and await _accounts(at) == 0
        member = Member.new(f"alice@{NODE_NAME}")
        async with at.raw(member) as conn:
            reply = await conn.request(register(member, keys=first_keys(member.identity, one_time=cap, pq_one_time=cap)))
        assert isinstance(reply, Registered)
        assert checked == [2 * cap]


async def test_registrations_are_charged_per_connection_and_address(
    start_node: StartNode, node_params: NodeParams, checked: list[int]
) -> None:
    node_params.client_limits = ClientLimits(
        registrations_per_address=Rate(per_second=NEVER, burst=5),
        registration_checks_per_address=Rate(per_second=NEVER, burst=10**6),
        registrations_per_connection=3,
    )
    with trio.fail_after(HANG_S):
        at = await start_node(registration="open")
        mallory = Member.new(f"mallory@{NODE_NAME}")
        # prekeys signed by another key: each attempt costs the node the signature checks
        forged = first_keys(new_identity(), one_time=4)
        async with at.raw(mallory) as conn:
            for _ in range(3):
                with pytest.raises(NodeError) as err:
                    await conn.request(register(mallory, keys=forged))
                assert err.value.code != "rate_limited"
            with pytest.raises(NodeError) as err:
                await conn.request(register(mallory, keys=forged))
            assert err.value.code == "rate_limited"
            assert str(err.value).endswith("too many registration attempts on this connection; reconnect to try again")
        assert len(checked) == 3
        # a new connection (even a new key) from the same address: what is left of its budget
        other = Member.new(f"mallory@{NODE_NAME}")
        async with at.raw(other) as conn:
            for _ in range(2):
                with pytest.raises(NodeError):
                    await conn.request(register(other, keys=forged))
            with pytest.raises(NodeError) as err:
                await conn.request(register(other, keys=forged))
            assert err.value.code == "rate_limited"
            assert "too many registrations from this address; try again in" in str(err.value)
        assert len(checked) == 5 and await _accounts(at) == 0
        # refused before anything is checked: a legitimate device from that address waits too
        alice = Member.new(f"alice@{NODE_NAME}")
        async with at.raw(alice) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register(alice))
            assert err.value.code == "rate_limited"
        assert len(checked) == 5 and await _accounts(at) == 0


async def test_a_taken_name_on_an_open_node_costs_no_signature_checks(start_node: StartNode, checked: list[int]) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(registration="open")
        alice = Member.new(f"alice@{NODE_NAME}")
        async with at.raw(alice) as conn:
            assert isinstance(await conn.request(register(alice)), Registered)
        assert len(checked) == 1
        for _ in range(5):
            squatter = Member.new(f"alice@{NODE_NAME}")
            async with at.raw(squatter) as conn:
                with pytest.raises(NodeError) as err:
                    await conn.request(register(squatter))
                assert err.value.code == "account_exists"
        assert len(checked) == 1
        # the same device asking again (its answer was lost) is answered as the first time
        async with at.raw(alice) as conn:
            assert isinstance(await conn.request(register(alice)), Registered)


async def test_a_link_complete_with_too_many_prekeys_is_refused_before_any_check(running: RunningNode, checked: list[int]) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        new = Member.new(alice.address)
        async with running.raw(new) as conn:
            slot = await conn.request(lambda n: LinkBegin(request=n, ephemeral=os.urandom(1200)))
            assert isinstance(slot, LinkSlot)
            async with running.raw(alice.first) as old:
                approved = await old.request(lambda n: LinkApprove(request=n, slot=slot.slot, provisioning=b"sealed"))
                assert isinstance(approved, LinkApproved)
            assert isinstance(await conn.next_push(), LinkOffer)
            device_list = alice.list_with(new)
            cap, before = limits.MAX_FIRST_ONE_TIME_PREKEYS, len(checked)
            keys = first_keys(new.identity, one_time=cap + 1)
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: LinkComplete(request=n, slot=slot.slot, record=new.record, device_list=device_list, keys=keys))
            assert err.value.code == "too_many_prekeys"
            assert len(checked) == before
            reply = await conn.request(lambda n: LinkComplete(request=n, slot=slot.slot, record=new.record, device_list=device_list, keys=new.keys))
            assert isinstance(reply, Registered) and reply.device == 2
        assert len(checked) == before + 1
