"""The ``/client`` API of a live in-process node: registration, sending, mailboxes, privacy.

Every test runs a real ``Node`` on 127.0.0.1 (see conftest) and talks to it with the device
SDK or with a raw ``client.connection.Connection`` where the test needs to build frames itself.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import trio

import node.app
from client.connection import ConnectError, NodeError
from client.sdk import Device
from client.state import StateError
from core.client_api import (
    Ack,
    Accepted,
    Devices,
    FetchDevices,
    Ping,
    Pong,
    Register,
    Registered,
    SendBatch,
)
from core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from core.device import make_device_record
from core.envelope import Kind
from core.errors import LocalProtocolError
from core.invite import SECRET_BYTES, make_invite, parse_invite

from .conftest import HANG_S, NODE_NAME, RunningNode, collect_until_drained, next_deliver, sealed_envelope

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"


def _identity() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


def _record_for(account: str, identity: SigningKey) -> bytes:
    hpke = HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom)
    return make_device_record(account=account, identity=identity, hpke=hpke.public, created=node.app.now_ms())


async def _stats(at: RunningNode) -> dict[str, int]:
    async with at.store() as store:
        return await store.stats()


async def _send(conn, *envelopes) -> Accepted:  # noqa: ANN001
    reply = await conn.request(lambda n: SendBatch(request=n, envelopes=tuple(envelopes)))
    assert isinstance(reply, Accepted)
    return reply


# Registration ---------------------------------------------------------------------------


async def test_register_with_valid_invite(running: RunningNode, make_device) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        assert (await _stats(running))["invites_open"] == 1
        alice: Device = make_device("alice")
        profile = await alice.register(ALICE, running.url, token)

        assert (profile.address, profile.device_id) == (ALICE, 1)
        assert profile.node_fingerprint == running.fingerprint
        assert alice.state.profile().identity.public.fingerprint == profile.identity.public.fingerprint
        stats = await _stats(running)
        assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 0)
        async with running.raw(profile.identity) as conn:
            assert (conn.welcome.node, conn.welcome.account, conn.welcome.device) == (NODE_NAME, ALICE, 1)
        with pytest.raises(StateError):
            await alice.register(ALICE, running.url, await running.mint_invite())


async def test_invite_cannot_be_reused(running: RunningNode, make_device) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        await make_device("alice").register(ALICE, running.url, token)
        carol = make_device("carol")
        with pytest.raises(NodeError) as err:
            await carol.register(f"carol@{NODE_NAME}", running.url, token)
        assert err.value.code == "invite_invalid"
        assert not carol.state.registered()
        async with running.store() as store:
            assert await store.devices(f"carol@{NODE_NAME}") == []


async def test_unknown_invite_is_invalid(running: RunningNode, make_device) -> None:
    with trio.fail_after(HANG_S):
        never_minted = make_invite(running.fingerprint, os.urandom(SECRET_BYTES))
        with pytest.raises(NodeError) as err:
            await make_device("carol").register(f"carol@{NODE_NAME}", running.url, never_minted)
        assert err.value.code == "invite_invalid"
        assert (await _stats(running))["accounts"] == 0


async def test_taken_account_is_refused_and_invite_kept(running: RunningNode, register, make_device) -> None:
    with trio.fail_after(HANG_S):
        await register(running, "alice")
        token = await running.mint_invite()
        impostor = make_device("alice-again")
        with pytest.raises(NodeError) as err:
            await impostor.register(ALICE, running.url, token)
        assert err.value.code == "account_exists"
        stats = await _stats(running)
        assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 1)
        # nothing was written: the same invite still registers another name
        await impostor.register(f"alice2@{NODE_NAME}", running.url, token)


async def test_wrong_node_name_in_address(running: RunningNode, make_device) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        carol = make_device("carol")
        # refused on the device before anything is sent
        with pytest.raises(LocalProtocolError, match="is alpha.example, not beta.example"):
            await carol.register("carol@beta.example", running.url, token)
        assert not carol.state.registered()
        # a raw Register cannot name another node either: the node builds user@its-name
        identity = _identity()
        async with running.raw(identity) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(
                    lambda n: Register(
                        request=n, user="carol@beta.example", invite=parse_invite(token)[1], record=_record_for("carol@beta.example", identity)
                    )
                )
            assert err.value.code == "bad_input"
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
        assert (await _stats(running))["invites_open"] == 1
        profile = await carol.register(f"carol@{NODE_NAME}", running.url, token)
        assert profile.address == f"carol@{NODE_NAME}"


async def test_open_registration_needs_no_valid_invite(start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(registration="open")
        never_minted = make_invite(at.fingerprint, os.urandom(SECRET_BYTES))
        profile = await make_device("alice").register(ALICE, at.url, never_minted)
        assert profile.address == ALICE
        identity = _identity()
        async with at.raw(identity) as conn:
            reply = await conn.request(lambda n: Register(request=n, user="bob", invite="", record=_record_for(BOB, identity)))
        assert isinstance(reply, Registered) and (reply.account, reply.device) == (BOB, 1)
        stats = await _stats(at)
        assert (stats["accounts"], stats["invites_open"]) == (2, 0)


async def test_invite_node_requires_an_invite(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        identity = _identity()
        async with running.raw(identity) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: Register(request=n, user="bob", invite="", record=_record_for(BOB, identity)))
        assert err.value.code == "invite_required"
        assert (await _stats(running))["accounts"] == 0


async def test_record_of_another_key_is_wrong_identity(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        secret = parse_invite(token)[1]
        me, other = _identity(), _identity()
        async with running.raw(me) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: Register(request=n, user="mallory", invite=secret, record=_record_for(f"mallory@{NODE_NAME}", other)))
            assert err.value.code == "wrong_identity"
            # a record naming another account than the requested user is refused as well
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: Register(request=n, user="mallory", invite=secret, record=_record_for(BOB, me)))
            assert err.value.code == "bad_input"
            stats = await _stats(running)
            assert (stats["accounts"], stats["invites_open"]) == (0, 1)
            # the connection is still usable, and the invite was not consumed
            reply = await conn.request(lambda n: Register(request=n, user="mallory", invite=secret, record=_record_for(f"mallory@{NODE_NAME}", me)))
            assert isinstance(reply, Registered) and reply.account == f"mallory@{NODE_NAME}"
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: Register(request=n, user="other", invite=secret, record=_record_for(f"other@{NODE_NAME}", me)))
            assert err.value.code == "already_registered"


# Sending and receiving ------------------------------------------------------------------


async def test_envelope_is_delivered_once_and_deleted_on_ack(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        env = sealed_envelope(alice, bob, "hello bob")
        async with running.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, env)).stored == 1
        bob_id = bob.state.profile().identity
        async with running.raw(bob_id) as conn:
            items = await collect_until_drained(conn)
            assert [(i.envelope.id, i.envelope.body, i.envelope.to, i.envelope.device) for i in items] == [(env.id, env.body, BOB, 1)]
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))  # requests are handled in order: the ack is done
        assert await running.pending(BOB) == []
        async with running.raw(bob_id) as conn:
            assert await collect_until_drained(conn) == []


async def test_live_push_to_a_waiting_device(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        async with running.raw(bob.state.profile().identity) as waiting:
            assert await collect_until_drained(waiting) == []
            env = sealed_envelope(alice, bob, "live")
            async with running.raw(alice.state.profile().identity) as conn:
                await _send(conn, env)
            pushed = await next_deliver(waiting)
            assert [i.envelope.id for i in pushed.items] == [env.id]


async def test_unknown_account_and_remote_node(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        async with running.raw(alice.state.profile().identity) as conn:
            for account, code in ((f"nobody@{NODE_NAME}", "unknown_account"), ("bob@beta.example", "unknown_node")):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: FetchDevices(request=n, account=account))
                assert err.value.code == code
            good = sealed_envelope(alice, bob, "good")
            for to, device, code in ((f"nobody@{NODE_NAME}", 1, "unknown_recipient"), (BOB, 2, "unknown_recipient"), ("bob@beta.example", 1, "unknown_node")):
                bad = replace(sealed_envelope(alice, bob, "bad"), to=to, device=device)
                with pytest.raises(NodeError) as err:
                    await _send(conn, good, bad)
                assert err.value.code == code
            # the refused batches stored nothing, not even their valid envelope
            assert await running.pending(BOB) == []
            reply = await conn.request(lambda n: FetchDevices(request=n, account=BOB))
            assert isinstance(reply, Devices) and [d.device for d in reply.devices] == [1]


async def test_unregistered_device_cannot_send_or_fetch(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        async with running.raw(_identity()) as conn:
            assert conn.welcome.account is None and conn.welcome.device is None
            with pytest.raises(NodeError) as err:
                await _send(conn, sealed_envelope(alice, bob, "from nobody"))
            assert err.value.code == "not_registered"
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchDevices(request=n, account=BOB))
            assert err.value.code == "not_registered"
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
        assert await running.pending(BOB) == []


async def test_mailbox_quota_refuses_whole_batches(start_node, register) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(mailbox_max_envelopes=3)
        alice, bob = await register(at, "alice"), await register(at, "bob")
        envs = [sealed_envelope(alice, bob, f"m{i}") for i in range(5)]
        async with at.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, envs[0], envs[1])).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[2], envs[3])  # 4 > 3: nothing of this batch is stored
            assert err.value.code == "mailbox_full"
            assert [i.id for i in await at.pending(BOB)] == [envs[0].id, envs[1].id]
            assert (await _send(conn, envs[2])).stored == 1
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[3])
            assert err.value.code == "mailbox_full"
            # a retransmission into the full mailbox is a duplicate, not an error
            assert (await _send(conn, envs[0])).stored == 0
        assert [i.id for i in await at.pending(BOB)] == [e.id for e in envs[:3]]


async def test_mailbox_byte_quota(start_node, register) -> None:
    with trio.fail_after(HANG_S):
        probe = await start_node()
        a, b = await register(probe, "alice"), await register(probe, "bob")
        size = len(sealed_envelope(a, b, "x" * 100).body)
        at = await start_node(mailbox_max_bytes=size * 2 + size // 2)
        alice, bob = await register(at, "alice"), await register(at, "bob")
        envs = [sealed_envelope(alice, bob, "x" * 100) for _ in range(3)]
        assert {len(e.body) for e in envs} == {size}
        async with at.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, *envs[:2])).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[2])
            assert err.value.code == "mailbox_full"
        assert [i.id for i in await at.pending(BOB)] == [e.id for e in envs[:2]]


async def test_duplicate_envelope_ids_are_stored_and_delivered_once(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        env = sealed_envelope(alice, bob, "only once")
        async with running.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, env)).stored == 1
            assert (await _send(conn, env)).stored == 0  # the same SendBatch again
            assert (await _send(conn, env, env)).stored == 0
        assert [i.id for i in await running.pending(BOB)] == [env.id]
        bob_id = bob.state.profile().identity
        async with running.raw(bob_id) as conn:
            items = await collect_until_drained(conn)
            assert [i.envelope.id for i in items] == [env.id]
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))
        # after the ack the id is remembered: a late retransmission is not stored again
        async with running.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, env)).stored == 0
        async with running.raw(bob_id) as conn:
            assert await collect_until_drained(conn) == []


async def test_unacked_envelope_is_redelivered_on_reconnect(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        envs = [sealed_envelope(alice, bob, f"m{i}") for i in range(3)]
        async with running.raw(alice.state.profile().identity) as conn:
            await _send(conn, *envs)
        bob_id = bob.state.profile().identity
        async with running.raw(bob_id) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [e.id for e in envs]
            await conn.send(Ack(ids=(envs[1].id,)))  # only the middle one
            await conn.request(lambda n: Ping(request=n))
        async with running.raw(bob_id) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [envs[0].id, envs[2].id]


class _Clock:
    def __init__(self) -> None:
        self.now = node.app.now_ms()

    def __call__(self) -> int:
        return self.now


async def test_expired_envelopes_are_not_delivered(start_node, register, monkeypatch) -> None:
    with trio.fail_after(HANG_S):
        clock = _Clock()
        monkeypatch.setattr(node.app, "now_ms", clock)  # the node's clock, read when it starts
        at = await start_node()
        alice, bob = await register(at, "alice"), await register(at, "bob")
        short = sealed_envelope(alice, bob, "short-lived", expires=clock.now + 60_000)
        long = sealed_envelope(alice, bob, "long-lived", expires=clock.now + 3_600_000)
        async with at.raw(alice.state.profile().identity) as conn:
            assert (await _send(conn, short, long)).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, sealed_envelope(alice, bob, "dead", expires=clock.now))
            assert err.value.code == "expired"
        clock.now += 120_000
        async with at.raw(bob.state.profile().identity) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [long.id]


async def test_node_ttl_caps_envelope_lifetime(start_node, register, monkeypatch) -> None:
    with trio.fail_after(HANG_S):
        clock = _Clock()
        monkeypatch.setattr(node.app, "now_ms", clock)
        at = await start_node(envelope_ttl_ms=60_000)
        alice, bob = await register(at, "alice"), await register(at, "bob")
        await alice.send_text(BOB, "asks for 30 days")  # the SDK asks for the default 30 days
        [item] = await at.pending(BOB)
        assert item.expires == clock.now + 60_000
        clock.now += 60_000
        assert await at.pending(BOB) == []
        result = await bob.receive()
        assert result.messages == [] and result.rejected == []


async def test_ephemeral_envelopes_are_pushed_never_stored(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        typing = replace(sealed_envelope(alice, bob, "typing"), kind=Kind.EPHEMERAL)
        async with running.raw(bob.state.profile().identity) as waiting:
            assert await collect_until_drained(waiting) == []
            async with running.raw(alice.state.profile().identity) as conn:
                assert (await _send(conn, typing)).stored == 0
            pushed = await next_deliver(waiting)
            assert [(i.envelope.id, i.envelope.kind) for i in pushed.items] == [(typing.id, Kind.EPHEMERAL)]
        assert await running.pending(BOB) == []


# Privacy --------------------------------------------------------------------------------


async def test_message_text_never_reaches_the_node_disk(running: RunningNode, register) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(running, "alice"), await register(running, "bob")
        text = "attack at dawn " + os.urandom(8).hex()
        sent = await alice.send_text(BOB, text)
        [item] = await running.pending(BOB)
        assert item.id == sent.id
        files = running.file_contents()
        assert {"node.db", "node.db-wal", "node.key", "node.toml"} <= set(files)
        everything = b"".join(files.values())
        assert sent.id in everything  # the check does read the database where the envelope is
        for needle in (text.encode(), text.encode("utf-16-le"), text.split()[-1].encode()):
            assert needle not in everything
        result = await bob.receive()
        assert [m.text for m in result.messages] == [text]
        everything = b"".join(running.file_contents().values())
        assert text.encode() not in everything
