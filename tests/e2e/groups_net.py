"""Shared by the group acceptance tests (tests/e2e/test_groups_acceptance*.py): three real nodes
(tests/e2e/test_federation.py's alpha, beta, gamma; gamma reached from alpha only through beta)
with alice@alpha, bob@beta on two devices (the second linked with ``link begin/approve``),
carol@gamma, and dave@alpha and erin@gamma to add later; every device has published its group
KeyPackages (``recv``). The ``sonet`` commands run in this process (``sonet_here``), the nodes
are real processes.

Helpers: send round-robin from several devices (an action, e.g. a SIGKILL, before one round),
receive a group's messages until the expected ones came (a hang guard, then one more look: a
duplicate would show there), check exactly-once and one order across devices, and scan every
node's data directory and log for a message text.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import SONET, NodeProcess, Processes, Result, link_device, ok, read_json_lines, register, sonet_here
from .proxy import TcpProxy
from .test_federation import POLL_GUARD_S, Federation, peer, start

ALICE, BOB, CAROL, DAVE, ERIN = "alice@alpha", "bob@beta", "carol@gamma", "dave@alpha", "erin@gamma"


@dataclass(frozen=True)
class Member:
    """One device: its account, device number, home directory and home node's name."""

    account: str
    device: int
    home: Path
    node: str

    @property
    def label(self) -> str:
        return f"{self.account}/{self.device}"


@dataclass
class GroupNet:
    procs: Processes
    fed: Federation
    #: beta dials alpha through this proxy (alpha dials beta directly): a test can hold back
    #: what beta pushes to alpha, e.g. a submission for alpha's groups
    beta_to_alpha: TcpProxy
    alice: Member
    bob1: Member
    bob2: Member
    carol: Member
    dave: Member
    erin: Member
    #: every text sent by any test of the module (scanned for in data dirs and logs)
    texts: list[str] = field(default_factory=list)

    def node(self, name: str) -> NodeProcess:
        return getattr(self.fed, name)

    def set_node(self, name: str, node: NodeProcess) -> None:
        setattr(self.fed, name, node)

    @property
    def members(self) -> list[Member]:
        """The devices of alice, bob and carol (the usual members of a test's group)."""
        return [self.alice, self.bob1, self.bob2, self.carol]


def group_net(procs: Processes, tmp: Path) -> GroupNet:
    """test_federation.py's ``federation()``, but beta dials alpha through a proxy. The caller
    closes ``beta_to_alpha``."""
    alpha, beta, gamma = (start(procs, tmp, n) for n in ("alpha", "beta", "gamma"))
    proxy = TcpProxy(alpha.port)
    peer(alpha, beta)
    peer(alpha, gamma, via=beta)
    peer(beta, alpha, url=proxy.url)
    peer(beta, gamma)
    peer(gamma, beta)
    peer(gamma, alpha, via=beta)
    fed = Federation(alpha, beta, gamma, tmp / "alice", tmp / "bob", tmp / "carol")
    register(fed.alice, ALICE, alpha)
    register(fed.bob, BOB, beta)
    register(fed.carol, CAROL, gamma)
    bob2 = tmp / "bob2"
    link_device(procs, fed.beta, bob2, fed.bob, BOB, 2)
    register(tmp / "dave", DAVE, fed.alpha)
    register(tmp / "erin", ERIN, fed.gamma)
    net = GroupNet(
        procs, fed, proxy, Member(ALICE, 1, fed.alice, "alpha"), Member(BOB, 1, fed.bob, "beta"), Member(BOB, 2, bob2, "beta"),
        Member(CAROL, 1, fed.carol, "gamma"), Member(DAVE, 1, tmp / "dave", "alpha"), Member(ERIN, 1, tmp / "erin", "gamma"),
    )  # fmt: skip
    for m in (net.alice, net.bob1, net.bob2, net.carol, net.dave, net.erin):
        ok(sonet_here(m.home, "recv"))  # publishes the device's KeyPackages
    return net


def create_group(net: GroupNet, name: str, members: list[Member]) -> str:
    """alice creates group ``name`` with the accounts of ``members``; each device joins (recv).
    Returns the group's id."""
    accounts = sorted({m.account for m in members} | {ALICE})
    [created] = read_json_lines(ok(sonet_here(net.alice.home, "group", "create", name, *[a for a in accounts if a != ALICE], "--json")).out)
    assert (created["members"], created["not_added"], created["hub"]) == (accounts, [], "alpha"), created
    for m in members:
        if m != net.alice:
            wait_for(m, created["id"], lambda info: info["active"] and info["epoch"] >= 1)
    return created["id"]


def info(m: Member, group: str) -> dict | None:
    """``group info GROUP --json`` on ``m``'s device (None: the device does not have the group)."""
    done = sonet_here(m.home, "group", "info", group, "--json")
    if done.rc != 0:
        assert '"unknown_group"' in done.out, done
        return None
    return json.loads(done.out)


def wait_for(m: Member, group: str, condition: Callable[[dict], bool]) -> dict:
    """``recv`` on ``m`` until its ``group info`` meets ``condition`` (or the hang guard ran
    out: the last info is asserted). The group messages this shows are kept on the side."""
    deadline = time.monotonic() + POLL_GUARD_S
    while True:
        got = info(m, group)
        if (got is not None and condition(got)) or time.monotonic() > deadline:
            assert got is not None and condition(got), f"{m.label}: {got}"
            return got
        # no --wait: a recv that brings only group changes (no text) would wait it out
        _stash(m, ok(sonet_here(m.home, "recv", "--json")))
        time.sleep(0.1)


#: group messages a ``recv`` of ``wait_for`` showed (per device home), read by ``receive``
_shown: dict[Path, list[dict]] = {}


def _stash(m: Member, result: Result) -> None:
    _shown.setdefault(m.home, []).extend(read_json_lines(result.out))


def new_texts(net: GroupNet, tag: str) -> Callable[[Member, int], str]:
    """``text(member, round)``: a new unique text, noted in ``net.texts`` (for the scans)."""

    def text(m: Member, r: int) -> str:
        t = f"{tag}-{uuid.uuid4().hex[:12]} {m.label} #{r}"
        net.texts.append(t)
        return t

    return text


def send(m: Member, group: str, text: str) -> Result:
    return sonet_here(m.home, "send", group, text, "--json")


@dataclass
class Sent:
    sender: Member
    text: str
    #: "ordered" / "queued" / "pending" (exit 0; pending: kept on the device, its home node
    #: unreachable, sent by its next command), or None: the send failed (one clean line)
    state: str | None
    error: str = ""


def send_rounds(
    group: str, senders: list[Member] | Callable[[int], list[Member]], texts: Callable[[Member, int], str], rounds: int, *,
    at: int | None = None, action: Callable[[], None] | None = None, in_order: bool = False,
) -> list[Sent]:  # fmt: skip
    """Round ``r`` sends ``texts(member, r)`` from each of ``senders`` (or ``senders(r)``) in
    turn; ``action`` runs once before round ``at``. A failed send must be one clean line. With
    ``in_order``, a send that returned "queued" (the hub's order did not come within the
    send's short wait, e.g. on a loaded machine) is seen ordered on its device before the next
    one goes, so the group's order is the order of the sends; its state is then "ordered"."""
    sent: list[Sent] = []
    for r in range(rounds):
        if r == at and action is not None:
            action()
        for m in senders(r) if callable(senders) else senders:
            text = texts(m, r)
            done = send(m, group, text)
            assert "Traceback" not in done.err, done
            if done.rc == 0:
                answer = json.loads(done.out)
                state = answer["state"]
                assert state in ("ordered", "queued", "pending"), done
                if in_order and state == "queued":
                    state = wait_ordered(m, answer["id"])
                sent.append(Sent(m, text, state))
            else:
                [error] = read_json_lines(done.out)
                assert set(error) == {"error"} and done.err == "", done
                sent.append(Sent(m, text, None, error["error"]["code"]))
    return sent


def wait_ordered(m: Member, message_id: str) -> str:
    """The state of ``m``'s group message ``message_id`` once it is no longer "queued": ``sent``
    (which asks the node) until the hub's order came (or the hang guard ran out)."""
    started = time.monotonic()
    while True:
        [state] = [s["state"] for s in read_json_lines(ok(sonet_here(m.home, "sent", "--json")).out) if s["id"] == message_id]
        if state != "queued" or time.monotonic() > started + POLL_GUARD_S:  # hang guard only
            print(f"{m.label}: a send returned queued, {state} {time.monotonic() - started:.1f} s later")
            return str(state)
        time.sleep(0.2)


def receive(m: Member, group: str, expected: Iterable[str]) -> list[tuple[str, int, str]]:
    """(from, device, text) of every message of ``group`` shown to ``m``'s user since the last
    call, until all of ``expected`` came (or the hang guard ran out); then one more ``recv``."""
    want = set(expected)
    got: list[dict] = []

    def take(result: Result) -> None:
        _stash(m, result)
        got.extend(msg for msg in _shown.pop(m.home) if msg.get("group", {}).get("id") == group and msg.get("type") == "text")

    take(Result(0, "", ""))
    deadline = time.monotonic() + POLL_GUARD_S
    while not want <= {msg["text"] for msg in got} and time.monotonic() < deadline:
        take(ok(sonet_here(m.home, "recv", "--wait", "2", "--json")))
    take(ok(sonet_here(m.home, "recv", "--json")))
    return [(msg["from"], msg["device"], msg["text"]) for msg in got]


def check_exactly_once(views: dict[Member, list[tuple[str, int, str]]], sent: list[Sent]) -> None:
    """Every device was shown each acknowledged message of every other device exactly once, a
    failed send at most once, none of its own, each with its true sender; and every two devices
    saw the messages they share in the same order."""
    by_text = {s.text: s for s in sent}
    for m, got in views.items():
        counts = Counter(text for _f, _d, text in got)
        assert [t for t, n in counts.items() if n > 1] == [], f"{m.label} was shown these twice"
        others = [s for s in sent if s.sender != m]
        missing = [s.text for s in others if s.state is not None and s.text not in counts]
        assert missing == [], f"{m.label} never got these acknowledged messages"
        foreign = [t for t in counts if t not in by_text or by_text[t].sender == m]
        assert foreign == [], f"{m.label} was shown messages it sent itself or nobody sent"
        wrong = [(f, d, t) for f, d, t in got if (by_text[t].sender.account, by_text[t].sender.device) != (f, d)]
        assert wrong == [], f"{m.label}: wrong sender shown"
    for a, seen_a in views.items():
        for b, seen_b in views.items():
            common = {t for *_x, t in seen_a} & {t for *_x, t in seen_b}
            order_a = [t for *_x, t in seen_a if t in common]
            order_b = [t for *_x, t in seen_b if t in common]
            assert order_a == order_b, f"{a.label} and {b.label} saw their common messages in another order"


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            found += [f"{p}: {n!r}" for n in needles if n in data]
    return found


def check_no_plaintext(net: GroupNet) -> None:
    """No message text in any node's data directory (every file's bytes) nor in any node log
    (the stderr of every node process the module started, restarts included); no traceback."""
    needles = [t.encode() for t in net.texts]
    assert needles
    found: list[str] = []
    for name in ("alpha", "beta", "gamma"):
        found += files_containing(net.node(name).data, needles)
    logs = sorted(net.procs.tmp.glob("node-*.stderr"))
    assert logs
    for log in logs:
        data = log.read_bytes()
        found += [f"{log}: {n!r}" for n in needles if n in data]
        assert b"Traceback" not in data, data.decode(errors="replace")[-3000:]
    assert found == []


def popen_sonet(net: GroupNet, m: Member, *args: str) -> subprocess.Popen[str]:
    """``sonet --home HOME ARGS`` as a process of its own (running alongside this one's)."""
    return net.procs.popen([SONET, "--home", str(m.home), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + POLL_GUARD_S  # hang guard only
    while not condition():
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


def submissions(net: GroupNet, group: str, account: str) -> int:
    """How many submissions of ``account``'s devices to ``group`` its home node noted
    (node/store/sqlite_groups.py's group_submissions; read-only)."""
    node = net.node({ALICE: "alpha", BOB: "beta", CAROL: "gamma"}[account])
    db = sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM group_submissions WHERE grp = ? AND account = ?", (bytes.fromhex(group), account)).fetchone()[0]
    finally:
        db.close()


def hub_outcomes(net: GroupNet, hub: str, group: str) -> Counter[str]:
    """What node ``hub`` answered each submission of ``group`` it judged as its hub ("ok" or a
    refusal; its dedup records, hub_refs; read-only)."""
    db = sqlite3.connect(f"file:{net.node(hub).data / 'node.db'}?mode=ro", uri=True)
    try:
        return Counter(row[0] for row in db.execute("SELECT outcome FROM hub_refs WHERE grp = ?", (bytes.fromhex(group),)))
    finally:
        db.close()


@contextmanager
def beta_cut_off_from_alpha(net: GroupNet) -> Iterator[None]:
    """While inside, beta's dials of alpha hang in the proxy (alpha's of beta go through), so
    what beta queues for alpha waits there. At the end the hanging dials are reset, which the
    dialer notices at once (a connection closed before the upgrade's answer would cost it its
    whole handshake deadline), and beta's next dial gets through."""
    proxy = net.beta_to_alpha
    proxy.blackhole(True)
    proxy.drop()
    try:
        yield
    finally:
        proxy.blackhole(False)
        proxy.drop()
