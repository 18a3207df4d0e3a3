"""Fixtures for the device SDK tests: a real node in the test's trio run on 127.0.0.1:0 and
real ``client.sdk.Device`` objects with their state under ``tmp_path``.

One ``Clock`` drives both sides: the node's clock (``Node(clock_ms=)``: certificate issue times,
``stored_at``, Welcome) and every device made here, so tests can move time forward (prekey
rotation, certificate expiry) without sleeping. It starts at the wall clock and only moves when
told to.

The node fixtures (``start_node``, ``RunningNode``, raw connections) come from tests/node;
``alpha_beta`` runs two nodes federated over tests/client/loopback.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.client import cli
from sonet.client.sdk import Device, ReceiveResult
from sonet.client.state import DeviceState
from sonet.core.client_api import Bundle, Bundles, FetchBundles
from sonet.core.crypto import SigningKey
from sonet.core.device_list import sign_device_list
from sonet.core.keydir import encode_entry, leaf_hash
from sonet.node.app import DB_FILE
from sonet.node.store.sqlite_keydir import _append_leaf
from tests.node.conftest import HANG_S, NODE_NAME, NodeParams, RunningNode, make_node_dir, node_params, start_node  # noqa: F401 - fixtures

from .loopback import Loopback

__all__ = [
    "ALICE",
    "BOB",
    "CAROL",
    "BETA",
    "DAY_MS",
    "HANG_S",
    "Clock",
    "shown",
    "texts",
    "link_device",
    "run_cli",
    "fetch_bundle",
    "node_db",
    "append_leaf",
    "append_rogue_leaf",
]

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"
CAROL = f"carol@{NODE_NAME}"
#: the second node of the federation tests
BETA = "beta.example"
DAY_MS = 24 * 3600 * 1000


class Clock:
    """Milliseconds since the epoch; starts at the wall clock, moves only on ``advance``."""

    def __init__(self) -> None:
        self.now_ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@pytest.fixture
def clock(node_params: NodeParams) -> Clock:
    c = Clock()
    node_params.clock_ms = c  # every node the test starts runs on it
    return c


@pytest.fixture
async def alpha(clock: Clock, start_node: Callable[..., Awaitable[RunningNode]]) -> RunningNode:
    """A node named alpha.example on the shared clock (invite-only registration)."""
    return await start_node()


@pytest.fixture
def loopback(clock: Clock, node_params: NodeParams) -> Loopback:
    """Federation between the nodes started after it (tests/client/loopback.py): each node's
    device handlers reach the others through a loopback federation service."""
    net = Loopback()
    node_params.client_federation = net.plug
    return net


@pytest.fixture
async def alpha_beta(loopback: Loopback, start_node: Callable[..., Awaitable[RunningNode]]) -> tuple[RunningNode, RunningNode]:
    """alpha.example and beta.example, federated over ``loopback``, on the shared clock."""
    return await start_node(), await start_node(name=BETA)


@pytest.fixture
def make_device(tmp_path: Path, clock: Clock) -> Iterator[Callable[..., Device]]:
    """``make_device(name, **kw)`` -> an unregistered Device in tmp_path/devices/name."""
    states: list[DeviceState] = []

    def make(name: str, **kwargs: Any) -> Device:
        state = DeviceState(tmp_path / "devices" / name)
        states.append(state)
        kwargs.setdefault("clock", clock)
        return Device(state, **kwargs)

    yield make
    for state in states:
        state.close()


@pytest.fixture
def register(make_device: Callable[..., Device]) -> Callable[..., Awaitable[Device]]:
    """``await register(node, "alice")`` -> a registered Device (home ``alice``)."""

    async def reg(at: RunningNode, user: str, *, home: str | None = None, **kwargs: Any) -> Device:
        device = make_device(home or user, **kwargs)
        profile = await device.register(f"{user}@{at.config.name}", at.url, await at.mint_invite())
        assert profile.address == f"{user}@{at.config.name}"
        return device

    return reg


def shown(device: Device, result: ReceiveResult) -> list[tuple[str, str, dict]]:
    """What ``sonet recv`` prints: (sender, type, fields) per message; marks them shown."""
    device.state.mark_shown([m.id for m in result.messages])
    return [(m.sender, m.type, m.fields) for m in result.messages]


def texts(device: Device, result: ReceiveResult) -> list[tuple[str, str]]:
    """(sender, text) of the text messages in ``result``; marks everything shown."""
    return [(sender, fields["text"]) for sender, kind, fields in shown(device, result) if kind == "text"]


async def link_device(new: Device, approver: Device, url: str) -> int:
    """Run ``link begin`` on ``new`` and ``link approve`` on ``approver`` concurrently, the
    code travelling from one to the other over a channel; returns the new device id."""
    send, receive = trio.open_memory_channel[str](1)
    profile_box: list[Any] = []

    async def begin() -> None:
        profile_box.append(await new.link_begin(url, send.send_nowait))

    async def approve() -> None:
        code = await receive.receive()
        await approver.link_approve(code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(begin)
        nursery.start_soon(approve)
    [profile] = profile_box
    assert profile.address == approver.state.profile().address
    return profile.device_id


async def fetch_bundle(at: RunningNode, as_identity: SigningKey, account: str, device: int = 1, *, times: int = 1) -> Bundle:
    """Take ``times`` bundles of one device (each takes one-time keys), the last fetched over a
    raw connection and returned. The others are taken straight from the node's store, as
    fetches by many different contacts would: one device alone may not drain them
    (node/client_limits.py)."""
    if times > 1:
        async with at.store() as store:
            for _ in range(times - 1):
                await store.take_bundle(account, device)
    async with at.raw(as_identity) as conn:
        reply = await conn.request(lambda n: FetchBundles(request=n, account=account, devices=(device,)))
        assert isinstance(reply, Bundles)
    [bundle] = reply.bundles
    return bundle


def node_db(at: RunningNode) -> sqlite3.Connection:
    """A plain sqlite3 connection to the node's database (to tamper with it, as an attacker
    with the node's disk would)."""
    return sqlite3.connect(at.data_dir / DB_FILE, isolation_level=None)


def append_leaf(db: sqlite3.Connection, account: str, now: int) -> None:
    """Log ``account``'s identity key and device list as the accounts table holds them now as
    a new key-directory leaf, the way the node records every change (after a test changed the
    table as a compromised node would: the node then serves and proves what it logged)."""
    db.execute("BEGIN IMMEDIATE")
    _append_leaf(db, account, now)
    db.execute("COMMIT")


def append_rogue_leaf(db: sqlite3.Connection, account: str, identity: SigningKey, devices: set[str], now: int, *, filed_under: str) -> int:
    """What a compromised node does to impersonate ``account`` towards others only: log an
    entry for it with ``identity`` (and a device list that key signed), chained to nothing and
    filed under another account, so the node keeps serving ``account`` its real newest entry.
    The leaf index; a head covers it from the node's next publish."""
    listing = sign_device_list(identity, account=account, version=1_000, devices=devices, now=now)
    leaf = encode_entry(account=account, identity=identity.public.to_bytes(), device_list=listing, prev=-1, at=now)
    db.execute("BEGIN IMMEDIATE")
    (index,) = db.execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM directory_leaves").fetchone()
    db.execute(
        "INSERT INTO directory_leaves (leaf_index, account, leaf, leaf_hash) VALUES (?, ?, ?, ?)", (index, filed_under, leaf, leaf_hash(leaf))
    )
    db.execute("COMMIT")
    return index


async def run_cli(capsys: pytest.CaptureFixture[str], device: Device, *argv: str, json_out: bool = True) -> tuple[int, list]:
    """``sonet --home DEVICE ARGV [--json]`` in a worker thread (its own trio loop; the node runs
    in the test's): (exit status, stdout's JSON objects, or its lines without ``json_out``)."""
    args = ["--home", str(device.state.home), *argv] + (["--json"] if json_out else [])

    def run() -> int:
        try:
            return cli.main(args)
        except SystemExit as exc:  # a usage error
            return int(exc.code or 0)

    rc = await trio.to_thread.run_sync(run)
    out = capsys.readouterr().out.splitlines()
    return rc, [json.loads(line) for line in out] if json_out else out
