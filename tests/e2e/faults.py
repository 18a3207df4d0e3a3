"""The fault harness: three federated ``sonet-node`` processes, real devices under load, counts.

``fault_net(tmp, tmpfs=...)`` starts alpha, beta and gamma (alpha dials beta through a
``TcpProxy``; alpha reaches gamma only through beta; beta's data directory sits on a small
tmpfs when asked and the test may mount one) and registers the accounts of ``ACCOUNTS`` with one warm-up message per
route, so sessions and device-list caches exist before any fault.

``run_under_load(net, fault, seed, routes, act)`` runs the load while ``act()`` injects the
fault: one ``Sender`` per route, the real client SDK (what ``sonet send`` runs), sends unique
texts; a send that returned is *acknowledged* (the home node answered Accepted: durably
stored). A route to a group (``make_group``: its id instead of an address) sends with
``group_send`` (acknowledged: ordered by the hub, or queued towards it by the home node), and
every other member is a recipient of it; a member that sends receives between its sends (one
device never receives on two connections at once). Each recipient's ``Inbox`` receives over and over as ``sonet recv`` does (a fresh
``Device`` on the home's state each time, the messages marked shown after they are taken): what
one receive returns is what the user was shown. The devices run in this process, in the run's
trio loop, so a run costs the nodes' start-ups and the fault, not an interpreter per message;
the nodes are real processes. When ``act`` returns (the fault healed), the senders stop, the
inboxes drain, and the run is counted:
sent, acknowledged, delivered (unique texts shown, per recipient; each text is sent once, under
one message id), duplicated (shows beyond the first), lost (acknowledged, never shown to a
recipient) and whatever
``act`` observed, plus any traceback of a node, a ``recv`` or the SDK, and any node that
died unasked. The nodes are set up with the CLIs' ``main`` in this process (``here``).
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio
from sonet.transport.ws_errors import HandshakeError

from sonet.client.connection import ConnectError, NodeError
from sonet.client.sdk import Device
from sonet.client.state import DeviceState, StateError
from sonet.client.vault import VaultError
from sonet.core import limits
from sonet.core.errors import ProtocolError

from ..node.kit import ConnectError as RawConnectError
from ..node.kit import connect_raw, new_identity
from .conftest import NodeProcess, Processes, init_node, node_here, ok, register, set_listen
from .proxy import TcpProxy

__all__ = ["ROUNDS", "FaultNet", "FaultRun", "fault_net", "fill_disk", "limit_file_size", "make_group", "run_under_load"]

#: the failures ``sonet send`` and ``sonet recv`` report as one clear line (client/cli.py);
#: anything else would be a traceback
CLEAN_ERRORS = (NodeError, ConnectError, StateError, VaultError, ProtocolError)
#: short retry cap and request deadline, so a run does not wait out production back-offs
#: (no disk reserve: beta's disk is a 32 MiB tmpfs, which the full-disk runs fill for real)
REQUEST_TIMEOUT_S = 2.0
FEDERATION_CONFIG = f"\n[federation]\nretry_max_s = 0.5\nrequest_timeout_s = {REQUEST_TIMEOUT_S}\n\n[storage]\nreserve_bytes = 0\n"
#: size of the tmpfs beta's data directory lives on
DISK_BYTES = 32 << 20
#: account -> its home node; the routes of a run are (sender, recipient) pairs of these
ACCOUNTS = {"alice@alpha": "alpha", "ann@alpha": "alpha", "dave@beta": "beta", "bob@beta": "beta", "carol@gamma": "gamma"}
WARM_UP_ROUTES = [("alice@alpha", "bob@beta"), ("ann@alpha", "bob@beta"), ("alice@alpha", "carol@gamma"),
                  ("ann@alpha", "carol@gamma"), ("dave@beta", "bob@beta")]
#: pause after a refused send before the next one (a node that is down refuses at once)
RETRY_PAUSE_S = 0.05
WARM_UP_TRIES = 20
#: between two receives of a recipient during the load (each connects anew, as `sonet recv`)
POLL_PAUSE_S = 0.5
#: hang guards (never performance thresholds). A send may wait out two dials (the device's to
#: its node, and, for a remote recipient whose device list is older than
#: limits.REMOTE_DEVICES_TTL_MS, its node's to the next hop while the link is down: up to
#: limits.HANDSHAKE_DEADLINE_S each) and the node's request deadline before it fails or goes
#: on with the cached list: 22 s on an idle machine, so three times that on a loaded one
SEND_GUARD_S = 3 * (2 * limits.HANDSHAKE_DEADLINE_S + REQUEST_TIMEOUT_S)
#: a group send waits this long for the hub's order before it is "queued" (and once more for
#: an earlier one still on its way: client/groups/api.py), within its own hang guard
GROUP_SETTLE_S = 4.0
GROUP_SEND_GUARD_S = SEND_GUARD_S + 2 * GROUP_SETTLE_S
RECV_GUARD_S = 60.0
PROBE_GUARD_S = 5.0
#: how long a node that stopped answering may take to exit
EXIT_GUARD_S = 30.0
DRAIN_GUARD_S = 90.0
#: how many times each run repeats its fault (see tests/e2e/test_faults.py)
ROUNDS = max(1, int(os.environ.get("SONET_FAULT_ROUNDS", "1")))
RUN_GUARD_S = 240.0 + 60.0 * ROUNDS


# Nodes and accounts -----------------------------------------------------------------------


@dataclass
class FaultNet:
    procs: Processes
    nodes: dict[str, NodeProcess]
    #: alpha dials beta through this proxy
    proxy: TcpProxy
    homes: dict[str, Path]
    inboxes: dict[str, Inbox]
    #: the tmpfs beta's data directory is on (None: mounting was not permitted)
    disk: Path | None
    #: every node process started, restarts included (their logs are checked for tracebacks)
    started: list[NodeProcess] = field(default_factory=list)
    #: group id (hex) -> its member accounts (``make_group``)
    groups: dict[str, list[str]] = field(default_factory=dict)
    _reported: set[int] = field(default_factory=set)

    def restart(self, name: str) -> NodeProcess:
        node = self.nodes[name] = self.procs.start_node(self.nodes[name].data)
        self.started.append(node)
        return node

    async def settle(self, name: str) -> str:
        """After a fault: "up" if node ``name`` answers a device; else "exited" or "hung"
        (neither answering nor exiting within a hang guard: killed), and restarted."""
        node = self.nodes[name]
        if await _answers(node):
            return "up"
        with trio.move_on_after(EXIT_GUARD_S):
            while node.alive():
                await trio.sleep(0.1)
        state = "hung" if node.alive() else "exited"
        node.kill()
        await trio.to_thread.run_sync(self.restart, name)
        return state

    def tracebacks(self) -> list[str]:
        """The logs of node processes with a traceback (each process once)."""
        found = [n for n in self.started if n.pid not in self._reported and "Traceback" in n.stderr()]
        self._reported.update(n.pid for n in found)
        return [f"{n.name} (pid {n.pid}): {n.stderr()[-3000:]}" for n in found]


async def _answers(node: NodeProcess) -> bool:
    """Whether ``node`` completes a device's handshake (a throwaway key) within a hang guard."""
    with trio.move_on_after(PROBE_GUARD_S):
        try:
            async with connect_raw(node.url, identity=new_identity(), node_fingerprint=node.fingerprint):
                return True
        except (RawConnectError, HandshakeError, OSError, ProtocolError):
            return False
    return False


def _init(data: Path, name: str) -> None:
    init_node(data, name=name)
    with open(data / "node.toml", "a") as f:
        f.write(FEDERATION_CONFIG)


def _start(procs: Processes, data: Path) -> NodeProcess:
    node = procs.start_node(data)
    set_listen(data, f"127.0.0.1:{node.port}")  # a restart comes back on the same URL
    return node


def _pin(node: NodeProcess, other: NodeProcess, *, url: str | None = None, via: str | None = None) -> None:
    args = ["peer", "add", "--data", node.data, "--name", other.name, "--url", url or other.url, "--fingerprint", other.fingerprint]
    ok(node_here(*args, *(["--via", via] if via else [])))


def _mount_tmpfs(path: Path) -> bool:
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)], capture_output=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


@contextmanager
def fault_net(tmp: Path, *, tmpfs: bool) -> Iterator[FaultNet]:
    """The three nodes and five accounts; with ``tmpfs``, beta's data on a tmpfs if the test
    may mount one."""
    procs = Processes(tmp)
    disk = tmp / "beta-disk"
    disk.mkdir()
    mounted = tmpfs and _mount_tmpfs(disk)
    proxy = None
    try:
        data = {"alpha": tmp / "alpha", "beta": disk / "beta", "gamma": tmp / "gamma"}
        for name, path in data.items():
            _init(path, name)
        nodes = {name: _start(procs, path) for name, path in data.items()}
        alpha, beta, gamma = nodes["alpha"], nodes["beta"], nodes["gamma"]
        proxy = TcpProxy(beta.port)
        _pin(alpha, beta, url=proxy.url)
        _pin(beta, alpha)
        _pin(beta, gamma)
        _pin(gamma, beta)
        _pin(alpha, gamma, via="beta")  # a via must be pinned first
        _pin(gamma, alpha, via="beta")
        homes = {address: tmp / address for address in ACCOUNTS}
        for address, home in homes.items():
            register(home, address, nodes[ACCOUNTS[address]])
        net = FaultNet(procs, nodes, proxy, homes, {a: Inbox(h) for a, h in homes.items()}, disk if mounted else None, list(nodes.values()))
        trio.run(_warm_up, net)
        yield net
    finally:
        procs.cleanup()
        if proxy is not None:
            proxy.close()
        if mounted:
            subprocess.run(["umount", str(disk)], check=True, timeout=30)


async def _warm_up(net: FaultNet) -> None:
    """One message per route first, and an answer back: sessions and the home nodes'
    device-list caches exist, and each sender is a contact of its recipient (it holds the
    recipient's access token, so the load is not a stranger's capped message requests)."""
    for routes, prefix in ((WARM_UP_ROUTES, "warm-up"), ([(to, sender) for sender, to in WARM_UP_ROUTES], "warm-up reply")):
        expected: dict[str, set[str]] = {}
        for sender, to in routes:
            device = Sender(net.homes[sender], to, f"{prefix} {sender}>{to}")
            # until one is accepted: a new directory head may wait a moment for its witness
            await device.run(until=lambda: bool(device.acked) or device.sent >= WARM_UP_TRIES)
            assert device.acked, f"{prefix} {sender} -> {to} refused: {device.refusals} {device.crashes}"
            expected.setdefault(to, set()).update(device.acked)
        for to, texts in expected.items():
            await net.inboxes[to].receive(texts)
            assert texts <= set(net.inboxes[to].texts(prefix)), net.inboxes[to].failures


async def make_group(net: FaultNet, name: str, creator: str, members: list[str]) -> str:
    """``creator`` makes group ``name`` with ``members`` (its node is the hub); each member's
    device joins by receiving. Returns the group's id; routes to it send to the group."""
    state = DeviceState(net.homes[creator])
    try:
        view = await Device(state).group_create(name, members)
    finally:
        state.close()
    assert sorted(view.members) == sorted([creator, *members]), view
    for member in members:
        with trio.fail_after(DRAIN_GUARD_S):  # hang guard
            while not await _in_group(net.homes[member], view.id):
                await net.inboxes[member].fetch(wait=1)
    net.groups[view.id] = [creator, *members]
    return view.id


async def _in_group(home: Path, group: str) -> bool:
    state = DeviceState(home)
    try:
        return any(g.id == group and g.active for g in await Device(state).groups())
    finally:
        state.close()


# Devices ----------------------------------------------------------------------------------


class Sender:
    """One device sending unique texts ``PREFIX #n`` to ``to`` (an address, or a group's id),
    back to back until stopped; with ``inbox`` (its own), receiving after each send."""

    def __init__(self, home: Path, to: str, prefix: str, *, inbox: Inbox | None = None) -> None:
        self.home, self.to, self.prefix, self.inbox = home, to, prefix, inbox
        self.sent = 0
        self.acked: set[str] = set()
        self.refusals: Counter[str] = Counter()  # clean failures, by code
        self.crashes: list[str] = []  # anything else: a traceback in `sonet send`
        self.slowest_s = 0.0  # the longest a send took (printed: how close to its hang guard)

    async def run(self, until: Callable[[], bool]) -> None:
        state = DeviceState(self.home)
        try:
            device = Device(state)
            device.group_settle_s = GROUP_SETTLE_S
            while not until():
                await self._send(device)
                if self.inbox is not None:
                    await self.inbox.fetch()
        finally:
            state.close()

    async def _send(self, device: Device) -> None:
        text = f"{self.prefix} #{self.sent}"
        self.sent += 1
        to_group = "@" not in self.to
        guard = GROUP_SEND_GUARD_S if to_group else SEND_GUARD_S
        started = trio.current_time()
        try:
            with trio.fail_after(guard):
                if to_group:
                    await device.group_send(self.to, text)
                else:
                    await device.send_text(self.to, text)
        except trio.TooSlowError:
            self.crashes.append(f"`send {text}` did not return within {guard:g} s")
        except CLEAN_ERRORS as exc:
            self.refusals[getattr(exc, "code", type(exc).__name__)] += 1
            await trio.sleep(RETRY_PAUSE_S)
        except Exception:
            self.crashes.append(traceback.format_exc())
            await trio.sleep(RETRY_PAUSE_S)
        else:
            self.acked.add(text)
        finally:
            self.slowest_s = max(self.slowest_s, trio.current_time() - started)


class Inbox:
    """What a recipient's user was shown: every text a receive returned, in order."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.shown: list[dict] = []  # {"id", "from", "text"} of each text shown
        self.failures: list[str] = []  # clean one-line errors of a receive
        self.tracebacks: list[str] = []
        self.offline = False
        self.fetches = 0  # receives completed

    def texts(self, prefix: str) -> list[str]:
        return [m["text"] for m in self.shown if m["text"].startswith(prefix)]

    async def fetch(self, wait: float | None = None) -> None:
        """One ``sonet recv --json [--wait WAIT]``: a new Device on the home's state, the texts
        it returns shown, then marked shown (client/cli.py ``cmd_recv``)."""
        state = DeviceState(self.home)
        try:
            with trio.fail_after(RECV_GUARD_S):
                result = await Device(state).receive(wait=wait)
            self.shown += [{"id": m.id.hex(), "from": m.sender, "text": m.fields.get("text", "")} for m in result.messages if m.type == "text"]
            self.shown += [{"id": m.id.hex(), "from": m.sender, "text": m.text} for m in result.group_messages]
            state.mark_shown([m.id for m in result.messages])
            state.mark_group_messages_shown([(m.group, m.seq) for m in result.group_messages])
        except trio.TooSlowError:
            self.tracebacks.append(f"a receive did not return within {RECV_GUARD_S:g} s")
        except CLEAN_ERRORS as exc:
            self.failures.append(str(exc))
        except Exception:
            self.tracebacks.append(traceback.format_exc())
        finally:
            state.close()
        self.fetches += 1

    async def poll(self, stop: trio.Event) -> None:
        """Receive during the load, except while ``offline`` (the user's device is off)."""
        while not stop.is_set():
            if not self.offline:
                await self.fetch(wait=1)
            await trio.sleep(POLL_PAUSE_S)

    async def receive(self, expected: set[str], guard_s: float = DRAIN_GUARD_S) -> None:
        """Fetch until every text of ``expected`` was shown (or the hang guard ran out), then
        look once more: a duplicate would show there."""
        with trio.move_on_after(guard_s):
            while not expected <= set(self.texts("")):
                await self.fetch(wait=2)
        await self.fetch()


# Runs -------------------------------------------------------------------------------------


@dataclass
class FaultRun:
    fault: str
    seed: int
    sent: int
    acked: int
    delivered: int
    duplicated: int
    lost: int
    #: what the fault did, as the harness observed it (kills, drops, refusals, ...)
    observed: dict[str, int]
    #: tracebacks (nodes, recv, SDK), unexpected send errors, duplicates of earlier runs
    problems: list[str]

    def counts(self) -> dict[str, object]:
        return {"fault": self.fault, "seed": self.seed, "sent": self.sent, "acked": self.acked, "delivered": self.delivered,
                "duplicated": self.duplicated, "lost": self.lost}

    def line(self) -> str:
        """``fault=.. seed=.. sent=.. acked=.. delivered=.. duplicated=.. lost=..`` and what was observed."""
        return " ".join(f"{k}={v}" for k, v in (self.counts() | self.observed).items())

    def row(self) -> dict[str, object]:
        """For the table at the end of the pytest run."""
        return self.counts() | {"observed": " ".join(f"{k}={v}" for k, v in self.observed.items())}


Act = Callable[[], Awaitable[dict[str, int]]]


async def run_under_load(
    net: FaultNet, *, fault: str, seed: int, routes: list[tuple[str, str]], act: Act, drain_guard_s: float = DRAIN_GUARD_S
) -> FaultRun:
    """Load on ``routes`` while ``act()`` runs the fault (and heals it before returning); then
    drain (at most ``drain_guard_s`` per recipient) and count."""
    tag = f"{fault}/{seed}"
    # a group's members that send receive in their sender's loop; the other recipients poll
    senders = [Sender(net.homes[s], to, f"{tag} {s}>{to}", inbox=net.inboxes[s] if to in net.groups else None) for s, to in routes]
    audiences = [[a for a in net.groups[to] if a != s] if to in net.groups else [to] for s, to in routes]
    recipients = list(dict.fromkeys(a for audience in audiences for a in audience))
    receiving = {s for s, to in routes if to in net.groups}

    def expected(to: str) -> set[str]:
        return set().union(*(sender.acked for sender, audience in zip(senders, audiences, strict=True) if to in audience))

    marks = {inbox: (len(inbox.shown), len(inbox.tracebacks)) for inbox in net.inboxes.values()}
    with trio.fail_after(RUN_GUARD_S):
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for sender in senders:
                nursery.start_soon(sender.run, stop.is_set)
            for to in recipients:
                if to not in receiving:
                    nursery.start_soon(net.inboxes[to].poll, stop)
            observed = await act()
            stop.set()
        problems = [f"{n.name} exited ({n.proc.returncode}) during the run" for n in net.nodes.values() if not n.alive()]
        for name in [n.name for n in net.nodes.values() if not n.alive()]:
            await trio.to_thread.run_sync(net.restart, name)  # for the runs after this one
        async with trio.open_nursery() as nursery:
            for to in recipients:
                nursery.start_soon(net.inboxes[to].receive, expected(to), drain_guard_s)

    # per recipient (a group text has several): each text shown once to each of them
    shown = {to: Counter(net.inboxes[to].texts(tag + " ")) for to in recipients}
    acked = set().union(*(s.acked for s in senders))
    refusals = sum((s.refusals for s in senders), Counter())
    observed |= {"refused_sends": sum(refusals.values()), "slowest_send_ms": round(1000 * max(s.slowest_s for s in senders))}
    problems += [*(c for s in senders for c in s.crashes), *net.tracebacks()]
    for inbox, (shown_before, tracebacks_before) in marks.items():
        problems += inbox.tracebacks[tracebacks_before:]
        earlier = {m["text"] for m in inbox.shown[:shown_before]}
        late = Counter(m["text"] for m in inbox.shown[shown_before:] if not m["text"].startswith(tag + " "))
        problems += [f"{text!r} (not of this run) shown again" for text, n in late.items() if n > 1 or text in earlier]
    run = FaultRun(
        fault=fault, seed=seed, sent=sum(s.sent for s in senders), acked=len(acked), delivered=sum(len(c) for c in shown.values()),
        duplicated=sum(sum(c.values()) - len(c) for c in shown.values()), lost=sum(len(expected(to) - set(shown[to])) for to in recipients),
        observed=observed, problems=problems,
    )
    print(run.line(), f"refusals={dict(refusals)}")
    return run


# A full disk ------------------------------------------------------------------------------


def fill_disk(path: Path) -> int:
    """Write ``path`` until the file system is full (ENOSPC); return the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    written += f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return written


def limit_file_size(pid: int, limit: int) -> int:
    """A quota any process may set on its child: process ``pid`` cannot write files beyond
    ``limit`` bytes (RLIMIT_FSIZE; Python ignores SIGXFSZ, so its writes fail with EFBIG).
    Returns the limit it replaced, to lift the quota again with."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
    return soft
