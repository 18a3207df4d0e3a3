"""The ``/client`` API of a live in-process node: registration, sending, mailboxes, privacy.

Every test runs a real ``Node`` on 127.0.0.1 (see conftest) and talks to it over raw
connections (tests/node/kit.py), building the frames a device would send. Message bodies are
opaque to the node, so most tests use random bytes for them.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import trio

from sonet.core.client_api import (
    Ack,
    Accepted,
    DeviceMismatch,
    Devices,
    FetchDevices,
    Ping,
    Pong,
    Register,
    Registered,
    SendBatch,
)
from sonet.core import limits
from sonet.core.crypto import Aead
from sonet.core.envelope import Kind
from sonet.core.invite import SECRET_BYTES, make_invite, parse_invite
from sonet.node.app import now_ms
from sonet.node.store import StoreError

from .conftest import HANG_S, NODE_NAME, RunningNode, collect_until_drained, next_deliver
from .kit import Account, Member, NodeError, access_token, new_identity, opaque_envelope, record_for

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"


def register_frame(
    user: str, invite: str, member: Member, *, account: Account | None = None, record: bytes | None = None
):  # noqa: ANN201
    """``build`` for conn.request: Register ``user`` with ``member`` as its first device."""
    account = account or Account(address=member.account)
    device_list = account.sign_list([member.fingerprint], version=1)
    return lambda n: Register(
        request=n,
        user=user,
        invite=invite,
        record=member.record if record is None else record,
        account_identity=account.identity_bytes,
        device_list=device_list,
        keys=member.keys,
    )


async def _stats(at: RunningNode) -> dict[str, int]:
    async with at.store() as store:
        return await store.stats()


async def _send(conn, *envelopes, access=()) -> Accepted:  # noqa: ANN001
    reply = await conn.request(lambda n: SendBatch(request=n, envelopes=tuple(envelopes), access=tuple(access)))
    assert isinstance(reply, Accepted), reply
    return reply


# Registration ---------------------------------------------------------------------------


async def test_register_with_valid_invite(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        assert (await _stats(running))["invites_open"] == 1
        alice = Member.new(ALICE)
        async with running.raw(alice) as conn:
            assert (conn.welcome.account, conn.welcome.device) == (None, None)
            assert (conn.welcome.one_time_left, conn.welcome.pq_one_time_left) == (0, 0)
            reply = await conn.request(register_frame("alice", parse_invite(token)[1], alice))
            assert isinstance(reply, Registered) and (reply.account, reply.device) == (ALICE, 1)
            # the node is the one the token names
            assert parse_invite(token)[0] == running.fingerprint
            # once registered, the connection cannot register again
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("alice2", parse_invite(await running.mint_invite())[1], alice))
            assert err.value.code == "already_registered"
        stats = await _stats(running)
        assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 1)
        async with running.raw(alice) as conn:
            assert (conn.welcome.node, conn.welcome.account, conn.welcome.device) == (NODE_NAME, ALICE, 1)
            assert (conn.welcome.one_time_left, conn.welcome.pq_one_time_left) == (0, 0)


async def test_invite_cannot_be_reused(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        secret = parse_invite(await running.mint_invite())[1]
        alice = Member.new(ALICE)
        async with running.raw(alice) as conn:
            assert isinstance(await conn.request(register_frame("alice", secret, alice)), Registered)
        carol = Member.new(f"carol@{NODE_NAME}")
        async with running.raw(carol) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("carol", secret, carol))
            assert err.value.code == "invite_invalid"
        async with running.store() as store:
            assert await store.devices(f"carol@{NODE_NAME}") == []


async def test_unknown_invite_is_invalid(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        never_minted = make_invite(running.fingerprint, os.urandom(SECRET_BYTES))
        carol = Member.new(f"carol@{NODE_NAME}")
        async with running.raw(carol) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("carol", parse_invite(never_minted)[1], carol))
        assert err.value.code == "invite_invalid"
        assert (await _stats(running))["accounts"] == 0


async def test_taken_account_is_refused_and_invite_kept(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        await running.enroll("alice")
        secret = parse_invite(await running.mint_invite())[1]
        impostor = Member.new(ALICE)
        async with running.raw(impostor) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("alice", secret, impostor))
            assert err.value.code == "account_exists"
            stats = await _stats(running)
            assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (1, 1, 1)
            # nothing was written: the same invite still registers another name
            other = Member(account=f"alice2@{NODE_NAME}", identity=impostor.identity, record=record_for(f"alice2@{NODE_NAME}", impostor.identity))
            reply = await conn.request(register_frame("alice2", secret, other))
            assert isinstance(reply, Registered) and reply.account == f"alice2@{NODE_NAME}"


async def test_wrong_node_name_in_address(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        secret = parse_invite(token)[1]
        # a raw Register cannot name another node: the node builds user@its-name
        carol = Member.new("carol@beta.example")
        async with running.raw(carol) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("carol@beta.example", secret, carol))
            assert err.value.code == "bad_input"
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
        assert (await _stats(running))["invites_open"] == 1
        carol = Member.new(f"carol@{NODE_NAME}")
        async with running.raw(carol) as conn:
            reply = await conn.request(register_frame("carol", secret, carol))
        assert isinstance(reply, Registered) and reply.account == f"carol@{NODE_NAME}"


async def test_open_registration_needs_no_valid_invite(start_node) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(registration="open")
        never_minted = make_invite(at.fingerprint, os.urandom(SECRET_BYTES))
        alice = Member.new(ALICE)
        async with at.raw(alice) as conn:
            reply = await conn.request(register_frame("alice", parse_invite(never_minted)[1], alice))
        assert isinstance(reply, Registered) and reply.account == ALICE
        bob = Member.new(BOB)
        async with at.raw(bob) as conn:
            reply = await conn.request(register_frame("bob", "", bob))
        assert isinstance(reply, Registered) and (reply.account, reply.device) == (BOB, 1)
        stats = await _stats(at)
        assert (stats["accounts"], stats["invites_open"]) == (2, 0)


async def test_invite_node_requires_an_invite(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        bob = Member.new(BOB)
        async with running.raw(bob) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("bob", "", bob))
        assert err.value.code == "invite_required"
        assert (await _stats(running))["accounts"] == 0


async def test_record_of_another_key_is_wrong_identity(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        secret = parse_invite(token)[1]
        mallory = f"mallory@{NODE_NAME}"
        me, other = Member.new(mallory), Member.new(mallory)
        async with running.raw(me) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("mallory", secret, me, record=other.record))
            assert err.value.code == "wrong_identity"
            # a record naming another account than the requested user is refused as well
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("mallory", secret, me, record=record_for(BOB, me.identity)))
            assert err.value.code == "bad_input"
            stats = await _stats(running)
            assert (stats["accounts"], stats["invites_open"]) == (0, 1)
            # the connection is still usable, and the invite was not consumed
            reply = await conn.request(register_frame("mallory", secret, me))
            assert isinstance(reply, Registered) and reply.account == mallory
            with pytest.raises(NodeError) as err:
                await conn.request(register_frame("other", secret, Member.new(f"other@{NODE_NAME}")))
            assert err.value.code == "already_registered"


# Sending and receiving ------------------------------------------------------------------


async def test_envelope_is_delivered_once_and_deleted_on_ack(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        env = opaque_envelope(bob.first)
        async with running.raw(alice.first) as conn:
            assert (await _send(conn, env)).stored == 1
        async with running.raw(bob.first) as conn:
            items = await collect_until_drained(conn)
            assert [(i.envelope.id, i.envelope.body, i.envelope.to, i.envelope.device) for i in items] == [(env.id, env.body, BOB, 1)]
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))  # requests are handled in order: the ack is done
        assert await running.pending(BOB) == []
        async with running.raw(bob.first) as conn:
            assert await collect_until_drained(conn) == []


async def test_live_push_to_a_waiting_device(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(bob.first) as waiting:
            assert await collect_until_drained(waiting) == []
            env = opaque_envelope(bob.first)
            async with running.raw(alice.first) as conn:
                await _send(conn, env)
            pushed = await next_deliver(waiting)
            assert [i.envelope.id for i in pushed.items] == [env.id]


async def test_unknown_account_and_remote_node(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(alice.first) as conn:
            for account, code in ((f"nobody@{NODE_NAME}", "unknown_account"), ("bob@beta.example", "unknown_node")):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: FetchDevices(request=n, account=account))
                assert err.value.code == code
            good = opaque_envelope(bob.first)
            for to, device, code in ((f"nobody@{NODE_NAME}", 1, "unknown_recipient"), ("bob@beta.example", 1, "unknown_node")):
                bad = replace(opaque_envelope(bob.first), to=to, device=device)
                with pytest.raises(NodeError) as err:
                    await _send(conn, good, bad)
                assert err.value.code == code
            # a device bob does not have: the node answers which devices are wrong
            bad = replace(opaque_envelope(bob.first), device=2)
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(good, bad)))
            assert isinstance(reply, DeviceMismatch) and (reply.account, reply.missing, reply.extra) == (BOB, (), (2,))
            # the refused batches stored nothing, not even their valid envelope
            assert await running.pending(BOB) == []
            reply = await conn.request(lambda n: FetchDevices(request=n, account=BOB))
            assert isinstance(reply, Devices) and [d.device for d in reply.devices] == [1]


async def test_unregistered_device_cannot_send_or_fetch(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        await running.enroll("alice")
        bob = await running.enroll("bob")
        async with running.raw(new_identity()) as conn:
            assert conn.welcome.account is None and conn.welcome.device is None
            with pytest.raises(NodeError) as err:
                await _send(conn, opaque_envelope(bob.first))
            assert err.value.code == "not_registered"
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchDevices(request=n, account=BOB))
            assert err.value.code == "not_registered"
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
        assert await running.pending(BOB) == []


async def test_mailbox_quota_refuses_whole_batches(start_node) -> None:
    with trio.fail_after(HANG_S):
        at = await start_node(mailbox_max_envelopes=3)
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        envs = [opaque_envelope(bob.first) for _ in range(5)]
        async with at.raw(bob.first) as conn:
            token = (await access_token(conn, BOB),)  # alice is bob's contact
        async with at.raw(alice.first) as conn:
            assert (await _send(conn, envs[0], envs[1], access=token)).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[2], envs[3], access=token)  # 4 > 3: nothing of this batch is stored
            assert err.value.code == "mailbox_full"
            assert [i.id for i in await at.pending(BOB)] == [envs[0].id, envs[1].id]
            assert (await _send(conn, envs[2], access=token)).stored == 1
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[3], access=token)
            assert err.value.code == "mailbox_full"
            # a retransmission into the full mailbox is a duplicate, not an error
            assert (await _send(conn, envs[0], access=token)).stored == 0
        assert [i.id for i in await at.pending(BOB)] == [e.id for e in envs[:3]]


async def test_mailbox_byte_quota(start_node) -> None:
    with trio.fail_after(HANG_S):
        size = 300
        at = await start_node(mailbox_max_bytes=size * 2 + size // 2)
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        envs = [opaque_envelope(bob.first, body=os.urandom(size)) for _ in range(3)]
        assert {len(e.body) for e in envs} == {size}
        async with at.raw(alice.first) as conn:
            assert (await _send(conn, *envs[:2])).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, envs[2])
            assert err.value.code == "mailbox_full"
        assert [i.id for i in await at.pending(BOB)] == [e.id for e in envs[:2]]


async def test_duplicate_envelope_ids_are_stored_and_delivered_once(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        env = opaque_envelope(bob.first)
        async with running.raw(alice.first) as conn:
            assert (await _send(conn, env)).stored == 1
            assert (await _send(conn, env)).stored == 0  # the same SendBatch again
            assert (await _send(conn, env, env)).stored == 0
        assert [i.id for i in await running.pending(BOB)] == [env.id]
        async with running.raw(bob.first) as conn:
            items = await collect_until_drained(conn)
            assert [i.envelope.id for i in items] == [env.id]
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))
        # after the ack the id is remembered: a late retransmission is not stored again
        async with running.raw(alice.first) as conn:
            assert (await _send(conn, env)).stored == 0
        async with running.raw(bob.first) as conn:
            assert await collect_until_drained(conn) == []


async def test_unacked_envelope_is_redelivered_on_reconnect(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        envs = [opaque_envelope(bob.first) for _ in range(3)]
        async with running.raw(alice.first) as conn:
            await _send(conn, *envs)
        async with running.raw(bob.first) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [e.id for e in envs]
            await conn.send(Ack(ids=(envs[1].id,)))  # only the middle one
            await conn.request(lambda n: Ping(request=n))
        async with running.raw(bob.first) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [envs[0].id, envs[2].id]


class _Clock:
    def __init__(self) -> None:
        self.now = now_ms()

    def __call__(self) -> int:
        return self.now


async def test_expired_envelopes_are_not_delivered(start_node, node_params) -> None:
    with trio.fail_after(HANG_S):
        clock = _Clock()
        node_params.clock_ms = clock
        at = await start_node()
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        short = opaque_envelope(bob.first, expires=clock.now + 60_000)
        long = opaque_envelope(bob.first, expires=clock.now + 3_600_000)
        async with at.raw(alice.first) as conn:
            assert (await _send(conn, short, long)).stored == 2
            with pytest.raises(NodeError) as err:
                await _send(conn, opaque_envelope(bob.first, expires=clock.now))
            assert err.value.code == "expired"
        clock.now += 120_000
        async with at.raw(bob.first) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [long.id]


async def test_node_ttl_caps_envelope_lifetime(start_node, node_params) -> None:
    with trio.fail_after(HANG_S):
        clock = _Clock()
        node_params.clock_ms = clock
        at = await start_node(envelope_ttl_ms=60_000)
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        async with at.raw(alice.first) as conn:  # asks for the default 30 days
            await _send(conn, opaque_envelope(bob.first, expires=clock.now + 30 * 24 * 3600 * 1000))
        [item] = await at.pending(BOB)
        assert item.expires == clock.now + 60_000
        clock.now += 60_000
        assert await at.pending(BOB) == []
        async with at.raw(bob.first) as conn:
            assert await collect_until_drained(conn) == []


async def test_ephemeral_envelopes_are_pushed_never_stored(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        typing = opaque_envelope(bob.first, kind=Kind.EPHEMERAL)
        async with running.raw(bob.first) as waiting:
            assert await collect_until_drained(waiting) == []
            async with running.raw(alice.first) as conn:
                assert (await _send(conn, typing)).stored == 0
            pushed = await next_deliver(waiting)
            assert [(i.envelope.id, i.envelope.kind) for i in pushed.items] == [(typing.id, Kind.EPHEMERAL)]
        assert await running.pending(BOB) == []


# Privacy --------------------------------------------------------------------------------


async def test_message_text_never_reaches_the_node_disk(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        text = "attack at dawn " + os.urandom(8).hex()
        # what the node gets from a device: ciphertext under a key only the devices share
        key, nonce = os.urandom(32), os.urandom(12)
        sent = opaque_envelope(bob.first, body=nonce + Aead(key).seal(nonce, text.encode()))
        async with running.raw(alice.first) as conn:
            await _send(conn, sent)
        [item] = await running.pending(BOB)
        assert item.id == sent.id
        files = running.file_contents()
        assert {"node.db", "node.db-wal", "node.key", "node.toml"} <= set(files)
        everything = b"".join(files.values())
        assert sent.id in everything  # the check does read the database where the envelope is
        for needle in (text.encode(), text.encode("utf-16-le"), text.split()[-1].encode()):
            assert needle not in everything
        async with running.raw(bob.first) as conn:
            [delivered] = await collect_until_drained(conn)
            body = delivered.envelope.body
            assert Aead(key).open(body[:12], body[12:]).decode() == text
            await conn.send(Ack(ids=(sent.id,)))
            await conn.request(lambda n: Ping(request=n))
        everything = b"".join(running.file_contents().values())
        assert text.encode() not in everything


async def test_a_mailbox_of_large_envelopes_is_delivered_in_frames_under_the_cap(running: RunningNode) -> None:
    # 24 envelopes of MAX_ENVELOPE_BODY (6 MiB in all) are more than one frame may carry:
    # the node splits the delivery by size, so the device still gets every one.
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        envs = [replace(opaque_envelope(bob.first), body=bytes([n]) * limits.MAX_ENVELOPE_BODY) for n in range(24)]
        async with running.raw(bob.first) as conn:
            token = (await access_token(conn, BOB),)  # alice is bob's contact
        async with running.raw(alice.first) as conn:
            for start in range(0, len(envs), 8):  # 2 MiB per SendBatch
                assert (await _send(conn, *envs[start : start + 8], access=token)).stored == 8
        async with running.raw(bob.first) as conn:
            items = await collect_until_drained(conn)
            assert [i.envelope.id for i in items] == [e.id for e in envs]
            assert all(i.envelope.body == e.body for i, e in zip(items, envs))


async def test_large_ephemeral_envelopes_are_delivered_in_frames_under_the_cap(running: RunningNode) -> None:
    # Ephemeral envelopes are never stored; a burst of the largest allowed ones must not make
    # the node build a Deliver frame over the cap (that would close the recipient's connection).
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(bob.first) as waiting:
            assert await collect_until_drained(waiting) == []
            envs = [
                replace(opaque_envelope(bob.first, kind=Kind.EPHEMERAL), body=bytes([n]) * limits.MAX_EPHEMERAL_BODY)
                for n in range(24)
            ]
            async with running.raw(alice.first) as conn:
                for start in range(0, len(envs), 8):
                    await _send(conn, *envs[start : start + 8])
            got: list[bytes] = []
            while len(got) < len(envs):
                got += [i.envelope.id for i in (await next_deliver(waiting)).items]
            assert got == [e.id for e in envs]
            await waiting.request(lambda n: Ping(request=n))  # and the connection is alive


async def test_an_ack_the_store_cannot_record_closes_only_that_connection(running: RunningNode, monkeypatch) -> None:
    # e.g. a full disk: the envelope stays, the node keeps serving, the device gets it again.
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        env = opaque_envelope(bob.first)
        async with running.raw(alice.first) as conn:
            await _send(conn, env)
        store = running.node.federation._store

        async def full_disk(*args, **kwargs):
            raise StoreError("database error: database or disk is full")

        monkeypatch.setattr(store, "ack", full_disk)
        async with running.raw(bob.first) as conn:
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [env.id]
            await conn.send(Ack(ids=(env.id,)))
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: Ping(request=n))
            assert err.value.code == "unavailable"
        monkeypatch.undo()
        assert running.alive
        async with running.raw(bob.first) as conn:  # it comes again, and now the ack is kept
            assert [i.envelope.id for i in await collect_until_drained(conn)] == [env.id]
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))
        assert await running.pending(BOB) == []
