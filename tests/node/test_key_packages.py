"""MLS KeyPackages on the node (docs/groups.md): ``PublishKeyPackages`` stores only KeyPackages the
publishing device could join a Sonet group with, and ``FetchKeyPackages`` hands out one per
device of an account (a one-time one once, then the last-resort one), with the directory proof,
for accounts of this node and, through the federation (relays included), of others.

Real nodes run in-process (tests/node/conftest.py); KeyPackages are made with the real MLS code
(core/mls) for suite 0x004D and the real group credentials (core/groups/credential.py).
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from sonet.core import limits
from sonet.core.client_api import (
    Devices,
    ErrorFrame,
    FetchDevices,
    FetchKeyPackages,
    KeyPackages,
    KeyPackagesPublished,
    PublishKeyPackages,
    RemoveDevice,
)
from sonet.core.crypto import SigningKey
from sonet.core.groups.credential import SUITE_ID, make_credential
from sonet.core.groups.state import leaf_capabilities
from sonet.core.keydir import decode_entry
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions.capabilities import Capabilities
from sonet.core.mls.extensions.lifetime import Lifetime
from sonet.core.mls.framing.enums import WireFormat
from sonet.core.mls.framing.mls_message import MLSMessage
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode, LeafNodeSource
from sonet.federation.ratelimit import Rate
from sonet.node.client_limits import ClientLimits
from tests.federation.net import BETA, ask, new_key, peer_link, pin, triangle

from .conftest import NodeParams, RunningNode, StartNode
from .kit import Account, Member, NodeError, RawConnection, wall_ms

#: a lifetime that covers the tests
FOREVER = Lifetime(0, 2**64 - 1)


def key_package(
    member: Member,
    *,
    suite: int = SUITE_ID,
    account: str | None = None,
    device: int | None = None,
    identity: SigningKey | None = None,
    capabilities: Capabilities | None = None,
    lifetime: Lifetime = FOREVER,
    bound_key: bytes | None = None,
) -> bytes:
    """An MLSMessage holding a KeyPackage of ``member``'s device as a Sonet client makes it; the
    keyword arguments make it wrong in one way."""
    cs = cipher_suite(suite)
    signature_priv, signature_pub = cs.signature_key_pair(os.urandom)
    _, init_pub = cs.hpke_key_pair(os.urandom)
    _, encryption_pub = cs.hpke_key_pair(os.urandom)
    identity = identity or member.identity
    credential = make_credential(
        account=account or member.account,
        device=member.device_id if device is None else device,
        fingerprint=identity.public.fingerprint,
        identity=identity,
        signature_key=signature_pub if bound_key is None else bound_key,
    )
    caps = capabilities or replace(leaf_capabilities(), cipher_suites=(suite,))
    leaf = LeafNode(
        encryption_pub, signature_pub, Credential.basic(credential.to_identity()), caps, LeafNodeSource.KEY_PACKAGE, lifetime
    ).signed(cs, signature_priv)
    return MLSMessage(WireFormat.KEY_PACKAGE, KeyPackage(suite, init_pub, leaf).signed(cs, signature_priv)).to_bytes()


async def publish(conn: RawConnection, one_time: list[bytes], last_resort: bytes | None = None) -> int:
    reply = await conn.request(lambda n: PublishKeyPackages(request=n, key_packages=tuple(one_time), last_resort=last_resort))
    assert isinstance(reply, KeyPackagesPublished), reply
    return reply.left


async def fetch(conn: RawConnection, account: str) -> KeyPackages:
    reply = await conn.request(lambda n: FetchKeyPackages(request=n, account=account))
    assert isinstance(reply, KeyPackages) and reply.account == account, reply
    return reply


def items(answer: KeyPackages) -> list[tuple[int, bytes]]:
    return [(item.device, item.key_package) for item in answer.items]


async def two_device_alice(running: RunningNode) -> Account:
    alice = await running.enroll("alice")
    await running.link(alice)
    return alice


# Publish and fetch ----------------------------------------------------------------------------


async def test_one_per_device_one_time_first_each_once_then_the_last_resort(running: RunningNode) -> None:
    alice = await two_device_alice(running)
    bob = await running.enroll("bob")
    laptop, phone = alice.device(1), alice.device(2)
    first, second, last = key_package(laptop), key_package(laptop), key_package(laptop)
    on_phone = key_package(phone)
    async with running.raw(laptop) as conn:
        assert await publish(conn, [first, second], last) == 2
    async with running.raw(phone) as conn:
        assert await publish(conn, [on_phone]) == 1
        assert await publish(conn, [on_phone]) == 1  # the same one again is stored once

    async with running.raw(bob.first) as conn:
        devices = await conn.request(lambda n: FetchDevices(request=n, account=alice.address))
        assert isinstance(devices, Devices)
        answer = await fetch(conn, alice.address)
        assert items(answer) == [(1, first), (2, on_phone)]
        # the account as the directory proves it, like Devices and Bundles
        assert answer.proof == devices.proof and decode_entry(answer.proof.leaf).account == alice.address
        assert (answer.account_identity, answer.device_list) == (devices.account_identity, devices.device_list)
        assert items(await fetch(conn, alice.address)) == [(1, second)]  # the phone has no last-resort one
        assert items(await fetch(conn, alice.address)) == [(1, last)]
        assert items(await fetch(conn, alice.address)) == [(1, last)]  # the last-resort one stays
    async with running.store() as store:
        assert (await store.key_package_count(alice.address, 1), await store.key_package_count(alice.address, 2)) == (0, 0)


async def test_a_newer_last_resort_key_package_replaces_the_older(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    old, new = key_package(alice.first), key_package(alice.first)
    async with running.raw(alice.first) as conn:
        assert await publish(conn, [], old) == 0
        assert items(await fetch(conn, alice.address)) == [(1, old)]
        assert await publish(conn, [], new) == 0
        assert items(await fetch(conn, alice.address)) == [(1, new)]


async def test_an_account_without_key_packages_and_unknown_accounts(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    async with running.raw(alice.first) as conn:
        assert items(await fetch(conn, alice.address)) == []
        with pytest.raises(NodeError) as info:
            await fetch(conn, f"nobody@{running.config.name}")
        assert info.value.code == "unknown_account"
        with pytest.raises(NodeError) as info:
            await fetch(conn, "not an address")
        assert info.value.code == "bad_address"


async def test_past_the_one_time_allowance_only_last_resort_ones_are_handed_out(
    start_node: StartNode, node_params: NodeParams
) -> None:
    node_params.client_limits = ClientLimits(one_time_per_account=Rate(per_second=1 / 3600, burst=1))
    running = await start_node()
    alice, bob = await running.enroll("alice"), await running.enroll("bob")
    one_time, last = [key_package(alice.first) for _ in range(3)], key_package(alice.first)
    async with running.raw(alice.first) as conn:
        await publish(conn, one_time, last)
    async with running.raw(bob.first) as conn:
        assert items(await fetch(conn, alice.address)) == [(1, one_time[0])]
        assert items(await fetch(conn, alice.address)) == [(1, last)]
    async with running.store() as store:
        assert await store.key_package_count(alice.address, 1) == 2  # not drained by bob


# Refusals -------------------------------------------------------------------------------------


async def refused(conn: RawConnection, one_time: list[bytes], last_resort: bytes | None = None) -> NodeError:
    with pytest.raises(NodeError) as info:
        await publish(conn, one_time, last_resort)
    assert "\n" not in str(info.value)
    return info.value


async def test_key_packages_a_device_could_not_join_with_are_refused_and_nothing_is_stored(running: RunningNode) -> None:
    alice = await two_device_alice(running)
    laptop, phone = alice.device(1), alice.device(2)
    good = key_package(laptop)
    signed = bytearray(key_package(laptop))
    signed[-1] ^= 1  # the KeyPackage's signature is its last field
    cases = {
        "does not decode": [good, os.urandom(300)],
        "truncated": [good[:-10]],
        "trailing": [good + b"\x00"],
        "cipher suite 0x0001": [key_package(laptop, suite=1)],
        "signature does not verify": [bytes(signed)],
        "not this device": [key_package(phone)],  # the phone's own, valid KeyPackage
        "names device 2": [key_package(laptop, device=2)],  # signed by the laptop for device 2
        "names another identity key": [key_package(laptop, identity=phone.identity)],
        "not signed by its identity key": [key_package(laptop, bound_key=bytes(32))],  # bound to another leaf key
        "of bob@": [key_package(laptop, account=f"bob@{running.config.name}")],
        "does not support": [key_package(laptop, capabilities=replace(leaf_capabilities(), extensions=()))],
        "has expired": [key_package(laptop, lifetime=Lifetime(0, wall_ms() // 1000 - 60))],
        "at most 16384": [good, bytes(limits.MAX_KEY_PACKAGE_BYTES + 1)],
    }
    async with running.raw(laptop) as conn:
        for why, batch in cases.items():
            error = await refused(conn, batch)
            assert error.code == "bad_input", (why, error)
            assert why in str(error) or why in {"truncated", "trailing"}, (why, error)
            assert ("KeyPackage 2" if len(batch) == 2 else "KeyPackage 1") in str(error), (why, error)
        error = await refused(conn, [good], bytes(signed))
        assert error.code == "bad_input" and "the last-resort KeyPackage" in str(error)
        error = await refused(conn, [good], good)
        assert error.code == "bad_input" and "also one of the one-time ones" in str(error)
        assert items(await fetch(conn, alice.address)) == []  # nothing of any refused request
        assert await publish(conn, [good]) == 1  # the connection goes on


async def test_more_than_the_cap_per_device_is_refused(running: RunningNode) -> None:
    alice = await running.enroll("alice")
    cap = limits.MAX_ONE_TIME_KEY_PACKAGES
    batch = [key_package(alice.first) for _ in range(cap)]
    async with running.raw(alice.first) as conn:
        error = await refused(conn, [*batch, key_package(alice.first)])
        assert error.code == "too_many_key_packages"
        assert await publish(conn, batch[:-1]) == cap - 1
        error = await refused(conn, [batch[-1], key_package(alice.first)])
        assert error.code == "too_many_key_packages" and f"limit of {cap}" in str(error)
        assert await publish(conn, [batch[-1]]) == cap
        assert items(await fetch(conn, alice.address)) == [(1, batch[0])]
        assert await publish(conn, [key_package(alice.first)]) == cap  # room for one again


async def test_removing_a_device_deletes_its_key_packages(running: RunningNode) -> None:
    alice = await two_device_alice(running)
    laptop, phone = alice.device(1), alice.device(2)
    on_laptop = key_package(laptop)
    async with running.raw(phone) as conn:
        await publish(conn, [key_package(phone)], key_package(phone))
    async with running.raw(laptop) as conn:
        await publish(conn, [on_laptop])
        await conn.request(lambda n: RemoveDevice(request=n, device=2, device_list=alice.list_without(2)))
        assert items(await fetch(conn, alice.address)) == [(1, on_laptop)]
        assert items(await fetch(conn, alice.address)) == []
    async with running.store() as store:
        assert await store.key_package_count(alice.address, 2) == 0


# Other nodes ----------------------------------------------------------------------------------


async def test_key_packages_of_other_nodes_come_through_the_federation_and_relays(start_node: StartNode) -> None:
    net = await triangle(start_node)  # alpha reaches gamma only through beta
    bob_kp, bob_last = key_package(net.bob.first), key_package(net.bob.first)
    carol_kp = key_package(net.carol.first)
    async with net.beta.raw(net.bob.first) as conn:
        await publish(conn, [bob_kp], bob_last)
    async with net.gamma.raw(net.carol.first) as conn:
        await publish(conn, [carol_kp])

    async with net.alpha.raw(net.alice.first) as conn:
        answer = await fetch(conn, net.bob.address)
        assert items(answer) == [(1, bob_kp)] and decode_entry(answer.proof.leaf).account == net.bob.address
        assert items(await fetch(conn, net.bob.address)) == [(1, bob_last)]  # never cached
        assert items(await fetch(conn, net.carol.address)) == [(1, carol_kp)]  # relayed by beta
        assert items(await fetch(conn, net.carol.address)) == []
        with pytest.raises(NodeError) as info:
            await fetch(conn, f"nobody@{net.gamma.config.name}")
        assert info.value.code == "unknown_account"
        with pytest.raises(NodeError) as info:
            await fetch(conn, "zed@zeta.example")
        assert info.value.code == "unknown_node"


async def test_a_peer_gets_last_resort_ones_past_its_one_time_allowance_and_shares_the_bundle_bucket(
    start_node: StartNode, node_params: NodeParams
) -> None:
    node_params.federation.update(
        one_time_rate=Rate(per_second=0.001, burst=limits.MAX_DEVICES_PER_ACCOUNT),
        bundle_rate=Rate(per_second=0.001, burst=2),
    )
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    one_time, last = [key_package(bob.first) for _ in range(3)], key_package(bob.first)
    async with beta.raw(bob.first) as conn:
        await publish(conn, one_time, last)
    key = new_key()
    await pin(beta, "one.example", fingerprint=key.public.fingerprint)
    async with peer_link(beta, key, "one.example") as link:
        first = await ask(link, FetchKeyPackages(request=1, account=bob.address))
        assert isinstance(first, KeyPackages) and first.request == 1 and items(first) == [(1, one_time[0])]
        second = await ask(link, FetchKeyPackages(request=2, account=bob.address))
        assert isinstance(second, KeyPackages) and items(second) == [(1, last)]  # one-time allowance spent
        third = await ask(link, FetchKeyPackages(request=3, account=bob.address))
        assert isinstance(third, ErrorFrame) and third.code == "rate_limited"  # the bundle bucket
    async with beta.store() as store:
        assert await store.key_package_count(bob.address, 1) == 2
