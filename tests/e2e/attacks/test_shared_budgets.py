"""Attacks on budgets one actor could spend for everyone (issue 13, items 4 and 8), against a
real node process:

- inbox fill: strangers (freshly registered raw devices, no access token of the victim) flood a
  chosen user with 256 KiB envelopes. Measured before: the mailbox was full in 4.5 s, after
  which everyone got ``mailbox_full``. Now each stranger gets a few message requests, all of
  them together a bounded share of the mailbox (federation/message_requests.py), and a contact
  of the victim still gets through.
- prekey drain: one device fetches the victim's bundles as fast as it can. Measured before: 150
  one-time prekeys in 0.3 s. Now the device gets a bounded number of one-time prekeys, then
  bundles without them (node/client_limits.py), and a new contact still starts a session.

Legitimate users are the real CLI (``sonet``); the figures are printed.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import trio

from sonet.core import limits
from sonet.core.client_api import Accepted, Bundles, FetchBundles, Register, Registered, SendBatch
from sonet.core.invite import parse_invite
from sonet.federation.message_requests import MAILBOX_BURST, PER_DEVICE
from sonet.node.app import DB_FILE
from sonet.node.client_limits import BUNDLES_PER_ACCOUNT, ONE_TIME_PER_ACCOUNT
from tests.node.kit import Account, Member, NodeError, connect_raw, opaque_envelope

from ..conftest import NodeProcess, Processes, here, ok, read_texts, register, start_pinned_node

pytestmark = pytest.mark.slow

BOB = "bob@localhost"
STRANGERS = 12
#: bounds of each flood (it stops by itself at whichever comes first)
FLOOD_SECONDS = 4.0
MAX_ATTEMPTS = 200
DRAIN_ATTEMPTS = 300


async def _register(node: NodeProcess, address: str, token: str) -> Member:
    account = Account(address=address)
    member = Member.new(account.address)
    invite = parse_invite(token)[1]
    async with connect_raw(node.url, identity=member.identity, node_fingerprint=node.fingerprint) as conn:
        reply = await conn.request(
            lambda n: Register(
                request=n, user=address.split("@")[0], invite=invite, record=member.record,
                account_identity=account.identity_bytes, device_list=account.sign_list([member.fingerprint], version=1),
                keys=member.keys,
            )
        )  # fmt: skip
    assert isinstance(reply, Registered), reply
    return member


async def _flood(node: NodeProcess, stranger: Member) -> tuple[int, Counter[str]]:
    """Send 256 KiB envelopes to bob's device 1 without his token, until refused for good."""
    accepted, refused = 0, Counter[str]()
    start = time.monotonic()
    async with connect_raw(node.url, identity=stranger.identity, node_fingerprint=node.fingerprint) as conn:
        for _ in range(MAX_ATTEMPTS):
            if time.monotonic() - start > FLOOD_SECONDS or refused["message_request_limit"] >= 5:
                break
            env = opaque_envelope((BOB, 1), body=b"\x00" * limits.MAX_ENVELOPE_BODY)
            try:
                reply = await conn.request(lambda n, env=env: SendBatch(request=n, envelopes=(env,)))
            except NodeError as exc:
                refused[exc.code] += 1
                continue
            assert isinstance(reply, Accepted), reply
            accepted += 1
    return accepted, refused


async def _drain(node: NodeProcess, attacker: Member) -> tuple[int, int, Counter[str], float]:
    """Fetch bob's device-1 bundle as fast as possible: (with a one-time key, without, refused)."""
    with_key = without = 0
    refused = Counter[str]()
    start = time.monotonic()
    async with connect_raw(node.url, identity=attacker.identity, node_fingerprint=node.fingerprint) as conn:
        for _ in range(DRAIN_ATTEMPTS):
            try:
                reply = await conn.request(lambda n: FetchBundles(request=n, account=BOB, devices=(1,)))
            except NodeError as exc:
                refused[exc.code] += 1
                if refused[exc.code] >= 20:
                    break
                continue
            assert isinstance(reply, Bundles), reply
            if reply.bundles[0].one_time is not None:
                with_key += 1
            else:
                without += 1
    return with_key, without, refused, time.monotonic() - start


def _mailbox(node: NodeProcess, account: str) -> tuple[int, int]:
    with sqlite3.connect(node.data / DB_FILE) as db:
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM mailbox WHERE account = ?", (account,)).fetchone()
    return count, size


def _one_time_left(node: NodeProcess, account: str) -> int:
    with sqlite3.connect(node.data / DB_FILE) as db:
        [count] = db.execute(
            "SELECT COUNT(*) FROM prekeys WHERE account = ? AND one_time = 1 AND taken = 0 AND kind = 'x25519'", (account,)
        ).fetchone()
    return count


def _exchange(homes: dict[str, Path], sender: str, recipient: str, address: str, text: str) -> None:
    ok(here("sonet", "--home", homes[sender], "send", address, text))
    shown = [m["text"] for m in read_texts(ok(here("sonet", "--home", homes[recipient], "recv", "--json")).out)]
    assert text in shown, (text, shown)


def test_strangers_cannot_fill_a_mailbox_nor_drain_its_prekeys(procs: Processes, tmp_path: Path) -> None:
    node = start_pinned_node(procs, tmp_path / "node")
    homes = {name: tmp_path / name for name in ("alice", "bob", "carol")}
    for name, home in homes.items():
        register(home, f"{name}@localhost", node)
    # alice and bob write to each other: each now holds the other's access token
    _exchange(homes, "alice", "bob", BOB, "hello bob")
    _exchange(homes, "bob", "alice", "alice@localhost", "hello alice")

    # Inbox fill ---------------------------------------------------------------------------
    strangers = [trio.run(_register, node, f"s{n}@localhost", node.invite()) for n in range(STRANGERS)]
    before = _mailbox(node, BOB)
    started = time.monotonic()
    accepted, refused = 0, Counter[str]()
    for stranger in strangers:
        got, codes = trio.run(_flood, node, stranger)
        assert got <= PER_DEVICE.burst  # each stranger: a few message requests
        accepted += got
        refused.update(codes)
    count, size = _mailbox(node, BOB)
    print(
        f"\ninbox fill: {STRANGERS} strangers, {accepted} envelopes accepted ({accepted * limits.MAX_ENVELOPE_BODY >> 20} MiB),"
        f" refused {dict(refused)} in {time.monotonic() - started:.1f} s; bob's mailbox {before} -> ({count}, {size >> 20} MiB)"
    )
    assert accepted <= MAILBOX_BURST  # all strangers together: the mailbox's bounded share
    assert refused["message_request_limit"] > 0 and refused["mailbox_full"] == 0
    # the contact still gets through, and a stranger writing for the first time... waits
    _exchange(homes, "alice", "bob", BOB, "still here, bob?")
    _exchange(homes, "bob", "alice", "alice@localhost", "yes")

    # Prekey drain ------------------------------------------------------------------------
    left_before = _one_time_left(node, BOB)
    attacker = trio.run(_register, node, "drainer@localhost", node.invite())
    with_key, without, codes, seconds = trio.run(_drain, node, attacker)
    left_after = _one_time_left(node, BOB)
    print(
        f"prekey drain: {with_key} bundles with a one-time prekey, {without} without, refused {dict(codes)}"
        f" in {seconds:.2f} s; bob's one-time prekeys {left_before} -> {left_after}"
    )
    assert with_key <= ONE_TIME_PER_ACCOUNT.burst + 2  # a refill of a few seconds at most
    assert with_key + without <= BUNDLES_PER_ACCOUNT.burst + 2
    assert codes["rate_limited"] > 0
    assert left_before - left_after == with_key
    # a new contact still starts a session with bob, and bob answers
    _exchange(homes, "carol", "bob", BOB, "hi bob, I am new")
    _exchange(homes, "bob", "carol", "carol@localhost", "welcome carol")
