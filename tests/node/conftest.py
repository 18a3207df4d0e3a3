"""Fixtures for node-level tests: a real ``Node`` running in-process on 127.0.0.1.

``start_node(**config)`` writes a fresh data directory (``node.toml`` from ``NodeConfig`` and a
``node.key`` from ``create_node_key``), starts ``Node.run`` in the test's nursery and returns a
``RunningNode`` handle: its ws URL, fingerprint, a way to mint invites through the store (the
way ``sonet-node invite`` does), to peek at mailboxes, and whether the node task is still alive.
What a node takes besides its config (clock, federation tunables, per-device limits, what its
device handlers reach other nodes through) comes from the ``node_params`` fixture: a test sets
it before it starts nodes.
``RunningNode.enroll(user)`` registers an account (account identity key, signed device list
version 1, first device) and ``RunningNode.link(account)`` links one more device, both over raw
connections (tests/node/kit.py), so node tests do not depend on the client SDK.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from sonet.core.client_api import Deliver, Delivery, Drained, LinkApprove, LinkApproved, LinkBegin, LinkComplete, LinkFetch, LinkOffer, LinkPending, LinkSlot, Register, Registered
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.invite import SECRET_BYTES, hash_invite_secret, make_invite, parse_invite
from sonet.federation.ratelimit import Rate
from sonet.node.app import DB_FILE, Node, federation_settings, now_ms
from sonet.node.budget_settings import BudgetSettings
from sonet.node.client_context import ClientContext, ClientFederation
from sonet.node.client_limits import ClientLimits
from sonet.node.config import CONFIG_FILE, NodeConfig
from sonet.node.identity import create_node_key
from sonet.node.store import MailboxItem, SqliteStore

from .kit import Account, Member, RawConnection, connect_raw

__all__ = [
    "HANG_S",
    "NODE_NAME",
    "NodeParams",
    "RunningNode",
    "collect_until_drained",
    "init_node_dir",
    "next_deliver",
    "node_in_thread",
    "shared_node",
]

#: hang guard for whole tests (never a performance threshold)
HANG_S = 20
NODE_NAME = "alpha.example"
_DAY_MS = 24 * 3600 * 1000


@dataclass
class NodeParams:
    """What ``start_node`` gives every ``Node`` it starts besides its config."""

    #: the node's clock (ms since the epoch)
    clock_ms: Callable[[], int] = now_ms
    #: FederationSettings fields that replace what the node's config sets (shorter intervals)
    federation: dict[str, Any] = field(default_factory=dict)
    #: per-device rate limits; None: the production ones
    client_limits: ClientLimits | None = None
    #: what the device handlers reach other nodes through; None: the node's own federation
    client_federation: Callable[[ClientContext], ClientFederation | None] | None = None


@dataclass
class RunningNode:
    node: Node
    url: str
    data_dir: Path
    config: NodeConfig
    identity: SigningKey
    stopped: trio.Event
    failures: list[BaseException] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.identity.public.fingerprint

    @property
    def alive(self) -> bool:
        """True while ``Node.run`` has neither returned nor raised."""
        return not self.stopped.is_set() and not self.failures

    @property
    def active_sessions(self) -> int:
        return self.node.client_sessions

    async def settle(self) -> None:
        """Wait until every device connection has been fully served (a device acknowledges
        without waiting for an answer, so its last Ack may still be in flight when it returns)."""
        while self.active_sessions:
            await trio.sleep(0.01)

    @asynccontextmanager
    async def store(self) -> AsyncIterator[SqliteStore]:
        """A second connection to the node's database (as the CLI opens while it runs)."""
        store = await SqliteStore.open(self.data_dir / DB_FILE)
        try:
            yield store
        finally:
            await store.close()

    async def mint_invite(self, *, expires_in_ms: int = _DAY_MS) -> str:
        """A one-time token, stored by hash, exactly like ``sonet-node invite``."""
        token = make_invite(self.fingerprint, os.urandom(SECRET_BYTES))
        secret = token.split(".", 1)[1]
        now = self.node.clock_ms()
        async with self.store() as store:
            await store.add_invite(hash_invite_secret(secret), now=now, expires_at=now + expires_in_ms)
        return token

    async def pending(self, account: str, device: int = 1, *, now: int | None = None) -> list[MailboxItem]:
        """Everything deliverable in one mailbox right now, in delivery order."""
        now = self.node.clock_ms() if now is None else now
        async with self.store() as store:
            return await store.pending(account, device, after_seq=0, limit=100_000, now=now)

    def raw(self, identity: SigningKey | Member):  # noqa: ANN201 - async context manager
        """An authenticated ``RawConnection`` for ``identity`` (a key, or a device's key)."""
        key = identity.identity if isinstance(identity, Member) else identity
        return connect_raw(self.url, identity=key, node_fingerprint=self.fingerprint)

    async def enroll(self, user: str, *, invite: bool = True) -> Account:
        """Register ``user@<node>`` with a fresh account key and a first device (device 1)."""
        account = Account(address=f"{user}@{self.config.name}")
        member = Member.new(account.address)
        secret = parse_invite(await self.mint_invite())[1] if invite else ""
        device_list = account.sign_list([member.fingerprint], version=1)
        async with self.raw(member) as conn:
            reply = await conn.request(
                lambda n: Register(
                    request=n,
                    user=user,
                    invite=secret,
                    record=member.record,
                    account_identity=account.identity_bytes,
                    device_list=device_list,
                    keys=member.keys,
                )
            )
        assert isinstance(reply, Registered) and reply.account == account.address, reply
        member.device_id = reply.device
        account.devices[reply.device] = member
        account.version = 1
        return account

    async def link(self, account: Account, *, approver: Member | None = None) -> Member:
        """Link a new device to ``account`` the way devices do: slot, fetch, approve, offer,
        complete (the provisioning payload is opaque to the node: random bytes here)."""
        member = Member.new(account.address)
        provisioning = os.urandom(300)
        async with self.raw(member) as new, self.raw(approver or account.first) as old:
            slot = await new.request(lambda n: LinkBegin(request=n, ephemeral=os.urandom(1200)))
            assert isinstance(slot, LinkSlot)
            assert isinstance(await old.request(lambda n: LinkFetch(request=n, slot=slot.slot)), LinkPending)
            approved = await old.request(lambda n: LinkApprove(request=n, slot=slot.slot, provisioning=provisioning))
            assert isinstance(approved, LinkApproved)
            offer = await new.next_push()
            assert isinstance(offer, LinkOffer) and offer.provisioning == provisioning
            reply = await new.request(
                lambda n: LinkComplete(request=n, slot=slot.slot, record=member.record, device_list=account.list_with(member), keys=member.keys)
            )
        assert isinstance(reply, Registered) and reply.account == account.address, reply
        member.device_id = reply.device
        account.devices[reply.device] = member
        account.version += 1
        return member

    def file_contents(self) -> dict[str, bytes]:
        """Every file under the data directory (node.db, -wal, -shm, keys, config, ...)."""
        return {str(p.relative_to(self.data_dir)): p.read_bytes() for p in sorted(self.data_dir.rglob("*")) if p.is_file()}


StartNode = Callable[..., Awaitable[RunningNode]]


@pytest.fixture
def make_node_dir(tmp_path: Path) -> Callable[..., tuple[Path, NodeConfig]]:
    """Create a data directory the way ``sonet-node init`` does; config fields as overrides."""
    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> tuple[Path, NodeConfig]:
        return init_node_dir(tmp_path / f"node{next(counter)}", **overrides)

    return make


def init_node_dir(data: Path, **overrides: Any) -> tuple[Path, NodeConfig]:
    """``make_node_dir``'s work on the new directory ``data``."""
    data.mkdir(mode=0o700)
    settings: dict[str, Any] = {"name": NODE_NAME, "listen": "127.0.0.1:0"}
    settings.update(overrides)
    config = NodeConfig(**settings)
    create_node_key(data, CryptoMode.HYBRID)
    (data / CONFIG_FILE).write_text(config.to_toml())
    return data, config


def _new_node(data: Path, config: NodeConfig, params: NodeParams) -> Node:
    return Node(
        data,
        config,
        clock_ms=params.clock_ms,
        federation=dataclasses.replace(federation_settings(config), **params.federation),
        client_limits=params.client_limits,
        client_federation=params.client_federation,
    )


def _serve(app: Node, stopped: trio.Event, failures: list[BaseException]) -> Callable[..., Awaitable[None]]:
    """The task that runs ``app``: ``failures`` gets what ended it, ``stopped`` is set then."""

    async def run(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await app.run(task_status=task_status)
        except trio.Cancelled:
            raise
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            stopped.set()

    return run


@pytest.fixture
def node_params() -> NodeParams:
    """What the nodes a test starts get besides their config; set it before starting them."""
    return NodeParams()


@pytest.fixture
def start_node(nursery: trio.Nursery, make_node_dir: Callable[..., tuple[Path, NodeConfig]], node_params: NodeParams) -> StartNode:
    """``await start_node(**config_overrides)`` -> a RunningNode serving on 127.0.0.1:0, with
    what ``node_params`` holds when it starts."""

    async def start(**overrides: Any) -> RunningNode:
        data, config = make_node_dir(**overrides)
        app = _new_node(data, config, node_params)
        stopped = trio.Event()
        failures: list[BaseException] = []
        url = await nursery.start(_serve(app, stopped, failures))
        assert url.startswith("ws://127.0.0.1:") and not url.endswith(":0")
        return RunningNode(
            node=app, url=url, data_dir=data, config=config, identity=app.identity, stopped=stopped, failures=failures
        )

    return start


@pytest.fixture
async def running(start_node: StartNode) -> RunningNode:
    """A node with default settings (invite-only registration)."""
    return await start_node()


@contextmanager
def node_in_thread(data: Path, config: NodeConfig, params: NodeParams | None = None) -> Iterator[RunningNode]:
    """``start_node``'s node, for a whole module: pytest-trio gives each test a trio loop of its
    own, so the node runs in a thread with its own loop, and the tests reach it over TCP and its
    store as they reach any ``RunningNode``. Stopped (cancelled) when the block ends."""
    app = _new_node(data, config, params or NodeParams())
    started: queue.Queue[tuple[str, trio.Event, list[BaseException], trio.lowlevel.TrioToken, trio.CancelScope] | BaseException] = queue.Queue()

    async def main() -> None:
        stopped = trio.Event()
        failures: list[BaseException] = []
        async with trio.open_nursery() as nursery:
            url = await nursery.start(_serve(app, stopped, failures))
            started.put((url, stopped, failures, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    def thread() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting test (before start) or in failures
            started.put(exc)

    runner = threading.Thread(target=thread, name=f"node {data.name}", daemon=True)
    runner.start()
    first = started.get(timeout=HANG_S)
    if isinstance(first, BaseException):
        raise first
    url, stopped, failures, token, scope = first
    try:
        yield RunningNode(node=app, url=url, data_dir=data, config=config, identity=app.identity, stopped=stopped, failures=failures)
    finally:
        try:
            trio.from_thread.run_sync(scope.cancel, trio_token=token)
        except trio.RunFinishedError:  # the node had already ended (its failure is in failures)
            pass
        runner.join(timeout=HANG_S)
        assert not runner.is_alive(), "the node's thread did not stop"


# Building and reading frames -------------------------------------------------------------


async def next_deliver(conn: RawConnection) -> Deliver:
    """The next Deliver pushed on ``conn`` (Drained markers are skipped)."""
    async for frame in conn.deliveries:
        if isinstance(frame, Deliver):
            return frame
    raise AssertionError(f"connection ended without a delivery: {conn.error!r}")


async def collect_until_drained(conn: RawConnection) -> list[Delivery]:
    """Everything pushed on a fresh connection before the node says Drained."""
    items: list[Delivery] = []
    async for frame in conn.deliveries:
        if isinstance(frame, Drained):
            return items
        assert isinstance(frame, Deliver)
        items.extend(frame.items)
    raise AssertionError(f"connection ended before Drained: {conn.error!r}")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Put the root logger's handlers and level back after every test: a node command run
    in-process (cli.main) configures logging onto the test's captured stderr, which is closed
    after it, and a later test's node would log into the closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


#: What a node that a whole module's tests share (``shared_node``) counts across the tests,
#: against one address and the same accounts, made so large that no test finds it drained by
#: the tests before it, as each found a new node's full: the handshake guard's buckets,
#: registrations per address, message requests per mailbox. Not what such a module tests.
_SHARED_CONFIG: dict[str, Any] = {
    "handshake_load_per_second": 100_000,
    "handshake_per_address_per_second": 100_000,
    "handshake_per_address_burst": 1_000_000,
    "budgets": BudgetSettings(message_requests_per_mailbox=1_000_000),
}
_SHARED_LIMITS = ClientLimits(registrations_per_address=Rate(per_second=1e6, burst=1e6))


@contextmanager
def shared_node(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[RunningNode]:
    """A node for a whole module's tests (``node_in_thread``; a new node for every test was
    most of such a module's CPU), with ``_SHARED_CONFIG``'s budgets."""
    data, config = init_node_dir(tmp_path_factory.mktemp(name) / "node", **_SHARED_CONFIG)
    with node_in_thread(data, config, NodeParams(client_limits=_SHARED_LIMITS)) as node:
        yield node
