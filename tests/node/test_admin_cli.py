"""`sonet-node accounts ...` and `invites ...` against a real running node: the database is the
truth, the node notices (node/admin_watch.py). The CLI runs in-process on a worker thread, as a
second process would (its own trio run and its own connection to the database)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import trio

from sonet.core.client_api import Accepted, FetchBundles, FetchDevices, FetchKeyPackages, Ping, Pong, Register, Registered, SendBatch
from sonet.core.invite import hash_invite_secret, parse_invite
from sonet.core.keydir import decode_entry
from sonet.node.audit import read_entries
from sonet.node.cli import main

from .cli_kit import Result, error_line, json_error, json_lines, ok
from .conftest import HANG_S, NODE_NAME, RunningNode
from .kit import Account, Member, NodeError, opaque_envelope

ALICE = f"alice@{NODE_NAME}"


async def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    code = await trio.to_thread.run_sync(main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return Result(code, out, err)


async def register(running: RunningNode, user: str, invite: str = "") -> Account:
    """Register ``user`` with ``invite`` (a whole token, or none); NodeError when refused."""
    account = Account(address=f"{user}@{NODE_NAME}")
    member = Member.new(account.address)
    secret = parse_invite(invite)[1] if invite else ""
    async with running.raw(member) as conn:
        reply = await conn.request(
            lambda n: Register(
                request=n, user=user, invite=secret, record=member.record, account_identity=account.identity_bytes,
                device_list=account.sign_list([member.fingerprint], version=1), keys=member.keys,
            )
        )
    assert isinstance(reply, Registered)
    member.device_id = reply.device
    account.devices[reply.device] = member
    return account


async def refused_at_connect(running: RunningNode, member: Member) -> NodeError:
    async with running.raw(member) as conn:
        await conn.closed.wait()
        assert isinstance(conn.error, NodeError), conn.error
        return conn.error


async def test_disable_ends_sessions_refuses_devices_keeps_mail_and_enable_restores(running: RunningNode, capsys) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(alice.first) as live:
            [shown] = json_lines(await cli(capsys, "accounts", "list", "--data", running.data_dir, "--json"))[:1]
            assert shown["address"] == ALICE and shown["state"] == "active" and shown["devices"] == 1
            disabled = json_lines(await cli(capsys, "accounts", "disable", "--data", running.data_dir, "alice", "--json"))
            assert disabled[0]["state"] == "disabled" and disabled[0]["disabled_at"].endswith("Z")
            await live.closed.wait()  # within the watcher's poll, not at the next request
            assert isinstance(live.error, NodeError) and live.error.code == "account_disabled"
        error = await refused_at_connect(running, alice.first)
        assert error.code == "account_disabled" and ALICE in str(error)
        # mail for it is still accepted and kept
        async with running.raw(bob.first) as conn:
            sent = await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope(alice.first),)))
            assert isinstance(sent, Accepted) and sent.stored == 1
        assert len(await running.pending(ALICE)) == 1
        listed = ok(await cli(capsys, "accounts", "list", "--data", running.data_dir)).out.splitlines()
        assert listed[0].startswith(f"{ALICE}  disabled  1 device  created ") and listed[0].endswith("mailbox 1 (200 B)")
        text = ok(await cli(capsys, "accounts", "show", "--data", running.data_dir, "alice")).out
        assert text.startswith(f"{ALICE}: disabled since ") and f"device 1: {alice.first.fingerprint}  disabled" in text
        shown = json_lines(await cli(capsys, "accounts", "show", "--data", running.data_dir, ALICE, "--json"))[0]
        assert shown["state"] == "disabled" and shown["envelopes"] == 1
        assert [d["state"] for d in shown["device_list"]] == ["disabled"]
        assert shown["device_list"][0]["fingerprint"] == alice.first.fingerprint
        # enable: the device connects and gets what waited
        ok(await cli(capsys, "accounts", "enable", "--data", running.data_dir, ALICE))
        async with running.raw(alice.first) as conn:
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
            assert len((await conn.next_push()).items) == 1  # type: ignore[attr-defined]
        assert running.alive
        # each change is in the audit log; failures and reads are not
        audited = [(e.kind, e.fields) for e in read_entries(running.data_dir) if e.kind.startswith("account_")]
        assert audited == [("account_disabled", {"account": ALICE}), ("account_enabled", {"account": ALICE})]


async def test_remove_revokes_devices_purges_mailbox_and_records_it_in_the_key_directory(running: RunningNode, capsys) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(bob.first) as conn:
            await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope(alice.first),)))
        async with running.store() as store:
            before, _leaf = await store.directory_latest(ALICE)  # type: ignore[misc]
        async with running.raw(alice.first) as live:
            removal = json_lines(await cli(capsys, "accounts", "remove", "--data", running.data_dir, "alice", "--yes", "--json"))[0]
            assert removal["address"] == ALICE and removal["devices_removed"] == [alice.first.fingerprint]
            assert removal["envelopes_purged"] == 1
            await live.closed.wait()
            assert isinstance(live.error, NodeError) and live.error.code == "device_removed"
        assert (await refused_at_connect(running, alice.first)).code == "device_removed"
        async with running.store() as store:
            assert await store.account(ALICE) is None
            assert await store.pending(ALICE, 1, after_seq=0, limit=10, now=running.node.clock_ms()) == []
            assert await store.prekey_counts(ALICE, 1) == (0, 0)
            index, leaf = await store.directory_latest(ALICE)  # type: ignore[misc]
            entry = decode_entry(leaf)
            assert (entry.identity, entry.device_list, entry.prev) == (b"", b"", before)
        # the running node signs a head covering the tombstone without a restart
        while True:
            async with running.store() as store:
                head = await store.latest_head()
            if head is not None and head.size > index:
                break
            await trio.sleep(0.05)
        # later mail is refused as for an unknown account
        async with running.raw(bob.first) as conn:
            with pytest.raises(NodeError) as refused:
                await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope(alice.first),)))
            with pytest.raises(NodeError) as never:
                await conn.request(lambda n: SendBatch(request=n, envelopes=(opaque_envelope((f"nobody@{NODE_NAME}", 1)),)))
            assert refused.value.code == never.value.code == "unknown_recipient"
            # lookups too, for devices, bundles and KeyPackages: not its tombstone, which a
            # device cannot use (it decoded it as a key: "malformed CBOR")
            lookups = (
                lambda n, address: FetchDevices(request=n, account=address),
                lambda n, address: FetchBundles(request=n, account=address, devices=()),
                lambda n, address: FetchKeyPackages(request=n, account=address),
            )
            for lookup in lookups:
                # each names the node that answered: passed on to a device of another node, "this node" would be that one's
                for address, why in ((ALICE, f"{ALICE} was removed from {NODE_NAME}"), (f"nobody@{NODE_NAME}", f"no account nobody@{NODE_NAME} on {NODE_NAME}")):
                    with pytest.raises(NodeError) as unknown:
                        await conn.request(lambda n: lookup(n, address))
                    assert unknown.value.code == "unknown_account" and why in str(unknown.value), (lookup, unknown.value)
        listed = json_lines(await cli(capsys, "accounts", "list", "--data", running.data_dir, "--json"))
        assert [a["address"] for a in listed] == [f"bob@{NODE_NAME}"]
        error_line(await cli(capsys, "accounts", "show", "--data", running.data_dir, ALICE), "was removed", "invite")
        # re-registration only through a new invite; its first leaf chains to the tombstone
        again = await register(running, "alice", await running.mint_invite())
        async with running.store() as store:
            _index, leaf = await store.directory_latest(ALICE)  # type: ignore[misc]
        assert decode_entry(leaf).prev == index and decode_entry(leaf).identity == again.identity_bytes
        [removed] = [e for e in read_entries(running.data_dir) if e.kind == "account_removed"]
        assert removed.fields == {"account": ALICE, "devices": 1, "envelopes_purged": 1}


async def test_a_removed_address_needs_an_invite_even_on_an_open_node(start_node, capsys) -> None:
    with trio.fail_after(HANG_S):
        node = await start_node(registration="open")
        await register(node, "carol")
        ok(await cli(capsys, "accounts", "remove", "--data", node.data_dir, "carol", "--yes"))
        with pytest.raises(NodeError) as refused:
            await register(node, "carol")
        assert refused.value.code == "invite_required"
        await register(node, "dave")  # other names stay open
        await register(node, "carol", await node.mint_invite())


async def test_invites_list_never_shows_the_token_and_revoke_makes_it_unusable(running: RunningNode, capsys) -> None:
    with trio.fail_after(HANG_S):
        token = await running.mint_invite()
        used = await running.mint_invite()
        await register(running, "erin", used)
        result = ok(await cli(capsys, "invites", "list", "--data", running.data_dir, "--json"))
        secret = parse_invite(token)[1]
        assert secret not in result.out and parse_invite(used)[1] not in result.out
        invites = json_lines(result)
        by_prefix = {i["hash_prefix"]: i for i in invites}
        prefix = hash_invite_secret(secret).hex()[:8]
        [mine] = [i for p, i in by_prefix.items() if p.startswith(prefix)]
        assert mine["state"] == "unused" and mine["used_by"] is None and mine["expires_at"].endswith("Z")
        [spent] = [i for i in invites if i["state"] == "used"]
        assert spent["used_by"] == f"erin@{NODE_NAME}"
        # a used invite is not revoked (the account exists); the unused one is
        error_line(await cli(capsys, "invites", "revoke", "--data", running.data_dir, spent["hash_prefix"]), "already used")
        revoked = json_lines(await cli(capsys, "invites", "revoke", "--data", running.data_dir, prefix, "--json"))[0]
        assert revoked["state"] == "revoked"
        with pytest.raises(NodeError) as refused:
            await register(running, "frank", token)
        assert refused.value.code == "invite_invalid"
        text = ok(await cli(capsys, "invites", "list", "--data", running.data_dir)).out
        assert prefix not in text and spent["hash_prefix"] in text
        [entry] = [e for e in read_entries(running.data_dir) if e.kind.startswith("invite_r")]
        assert (entry.kind, entry.fields) == ("invite_revoked", {"hash_prefix": revoked["hash_prefix"]})
        assert secret not in (running.data_dir / "audit.log").read_text()


async def test_misuse_is_one_line(running: RunningNode, capsys) -> None:
    data = running.data_dir
    with trio.fail_after(HANG_S):
        async with running.store() as store:
            now = running.node.clock_ms()
            for tail in (b"\x01", b"\x02"):  # two invites whose hashes share the prefix abcd
                await store.add_invite(b"\xab\xcd" + tail + os.urandom(29), now=now, expires_at=now + 60_000)
        for action in ("show", "disable", "enable"):
            error_line(await cli(capsys, "accounts", action, "--data", data, "nobody"), f"no account nobody@{NODE_NAME}")
        assert json_error(await cli(capsys, "accounts", "remove", "--data", data, "nobody", "--yes", "--json"))["code"] == "unknown_account"
        assert json_error(await cli(capsys, "accounts", "show", "--data", data, "x@elsewhere.example", "--json"))["code"] == "unknown_account"
        assert json_error(await cli(capsys, "accounts", "disable", "--data", data, "Not Valid!", "--json"))["code"] == "bad_address"
        assert json_error(await cli(capsys, "accounts", "remove", "--data", data, "bob", "--json"), "--yes")["code"] == "not_confirmed"
        assert json_error(await cli(capsys, "invites", "revoke", "--data", data, "abcd", "--json"), "2 invites")["code"] == "ambiguous_prefix"
        assert json_error(await cli(capsys, "invites", "revoke", "--data", data, "zzzz", "--json"))["code"] == "invalid_prefix"
        assert json_error(await cli(capsys, "invites", "revoke", "--data", data, "ab", "--json"))["code"] == "invalid_prefix"
        assert json_error(await cli(capsys, "invites", "revoke", "--data", data, "0000000000", "--json"))["code"] == "unknown_invite"
        error_line(await cli(capsys, "accounts", "list", "--data", data / "missing"))
        error_line(await cli(capsys, "status", "--data", data, "--watch", "--interval", "0"), "--interval", "from 0.2 to 3600", code=2)
        # the two invites are still there: nothing was revoked by the ambiguous prefix
        assert sum(i["hash_prefix"].startswith("abcd") for i in json_lines(await cli(capsys, "invites", "list", "--data", data, "--json"))) == 2


def test_status_watch_prints_one_object_per_interval_and_ctrl_c_exits_0(tmp_path) -> None:
    data = tmp_path / "node"
    assert main(["init", "--data", str(data), "--name", NODE_NAME, "--listen", "127.0.0.1:0"]) == 0
    watch = subprocess.Popen(
        [sys.executable, "-m", "sonet.node.cli", "status", "--data", str(data), "--watch", "--interval", "0.2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert watch.stdout is not None
    lines = [json.loads(watch.stdout.readline()) for _ in range(3)]
    watch.send_signal(signal.SIGINT)
    rest, err = watch.communicate()
    assert watch.returncode == 0, err
    assert err == ""
    for line in lines + [json.loads(x) for x in rest.splitlines()]:
        assert line["name"] == NODE_NAME and line["running"] is False and "accounts" in line
