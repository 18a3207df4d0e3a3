"""Fault harness: real ``sonet-node`` processes and real devices, one fault per run, under load.

Three federated nodes share the module (tests/e2e/faults.py): alpha dials beta through a
TCP proxy, gamma is reached through beta (the relay), beta's data directory is on a small
tmpfs where the test may mount one. Each run sends unique texts from devices of alpha (and
beta) while the fault happens, heals it, drains the recipients' inboxes (receiving as
``sonet recv`` does, in this process: a run pays for node start-ups, not an interpreter per
message) and prints one line:

    fault=<name> seed=<n> sent=.. acked=.. delivered=.. duplicated=.. lost=.. <observed>

(collected and printed again as a table at the end of the pytest run). Every run asserts
lost == 0 (nothing a node acknowledged is missing), duplicated == 0 (no text shown twice),
acked > 0, no traceback anywhere, and that the fault really happened (a node killed, the
proxy dropped/duplicated/cut, the disk filled). Faults are placed by ``random.Random(seed)``;
the seed is printed. To replay the same choices, set ``SONET_FAULT_SEED=<n>`` (the timing
of real processes still varies).

Group runs (``group_sigkill_*``): alice@alpha's group with bob@beta and carol@gamma
(``make_group``; alpha is its hub), all three sending to it, while the hub, a member's node
(gamma) or the relay (beta) is SIGKILLed and restarted; each other member must be shown every
acknowledged text once (delivered and lost count per recipient).

Bugs these faults found (and that stay fixed): a dial into a black hole (TCP accepted, the
upgrade never answered) hung every push to that peer; an Ack on a full disk killed the node;
writing run.json on a full disk ended the node.

Environment:
- ``SONET_FAULT_ROUNDS=<n>`` (default 1) makes longer runs: each run repeats its fault ``n``
  times (kills and restarts, proxy fault bursts, disk fills) under continuing load.
- ``SONET_FAULT_SEED=<n>``: the seed of every run (default: a new random one per run).
- ``SONET_FAULT_DISK=quota``: no tmpfs even where the test could mount one; the disk is
  "filled" with the RLIMIT_FSIZE quota (what happens in CI without root anyway).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from .faults import ROUNDS, FaultNet, FaultRun, fault_net, fill_disk, limit_file_size, make_group, run_under_load

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

Event = Callable[[], Awaitable[None]]
Record = Callable[[dict[str, object]], None]

#: hang guard (never a performance threshold)
HANG_GUARD_S = 60.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultNet]:
    with fault_net(tmp_path_factory.mktemp("faults"), tmpfs=os.environ.get("SONET_FAULT_DISK") != "quota") as net:
        yield net


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("SONET_FAULT_SEED") or random.randrange(1 << 32))
    print(f"random seed {value}")
    return value


def check(run: FaultRun, record_fault_run: Record) -> None:
    record_fault_run(run.row())
    assert not run.problems, "\n\n".join(run.problems)
    assert run.acked > 0, run.line()
    assert run.lost == 0, run.line()
    assert run.duplicated == 0, run.line()


# 1. SIGKILL of the sender's, the receiver's and the relay node, restarted ------------------

KILLS = {
    # victim node, routes (sender, recipient)
    "sender": ("alpha", [("alice@alpha", "bob@beta"), ("ann@alpha", "bob@beta")]),
    "receiver": ("beta", [("alice@alpha", "bob@beta"), ("ann@alpha", "bob@beta")]),
    "relay": ("beta", [("alice@alpha", "carol@gamma"), ("ann@alpha", "carol@gamma")]),
}


def _kill_and_restart(net: FaultNet, victim: str, rng: random.Random) -> Callable[[], Awaitable[dict[str, int]]]:
    async def kill_and_restart() -> dict[str, int]:
        kills = 0
        for _ in range(ROUNDS):
            await trio.sleep(rng.uniform(0.3, 1.0))
            node = net.nodes[victim]
            node.kill()
            assert node.proc.returncode == -signal.SIGKILL
            kills += 1
            await trio.sleep(rng.uniform(0.1, 0.5))
            await trio.to_thread.run_sync(net.restart, victim)
            await trio.sleep(rng.uniform(0.3, 1.0))  # load goes on against the restarted node
        return {"kills": kills}

    return kill_and_restart


@pytest.mark.parametrize("role", list(KILLS))
async def test_sigkill_under_load(net: FaultNet, seed: int, role: str, record_fault_run: Record) -> None:
    victim, routes = KILLS[role]
    act = _kill_and_restart(net, victim, random.Random(seed))
    run = await run_under_load(net, fault=f"sigkill_{role}", seed=seed, routes=routes, act=act)
    check(run, record_fault_run)
    assert run.observed["kills"] == ROUNDS


#: a group of alice@alpha (so alpha is its hub), bob@beta and carol@gamma, all three sending:
#: the hub, a member's node (carol's), the relay between them (beta, also bob's node)
GROUP_KILLS = {"hub": "alpha", "member": "gamma", "relay": "beta"}
GROUP_MEMBERS = ["alice@alpha", "bob@beta", "carol@gamma"]


@pytest.fixture(scope="module")
def group(net: FaultNet) -> str:
    return trio.run(make_group, net, "faults", GROUP_MEMBERS[0], GROUP_MEMBERS[1:])


@pytest.mark.parametrize("role", list(GROUP_KILLS))
async def test_group_sigkill_under_load(net: FaultNet, group: str, seed: int, role: str, record_fault_run: Record) -> None:
    """Every member sends to the group while a node is SIGKILLed and restarted: each other
    member is shown every acknowledged text once."""
    victim = GROUP_KILLS[role]
    routes = [(member, group) for member in GROUP_MEMBERS]
    act = _kill_and_restart(net, victim, random.Random(seed))
    run = await run_under_load(net, fault=f"group_sigkill_{role}", seed=seed, routes=routes, act=act)
    check(run, record_fault_run)
    assert run.observed["kills"] == ROUNDS


# 2. A faulty TCP link between alpha and beta (bob's and, relayed, carol's traffic) ----------

PROXY_ROUTES = [("alice@alpha", "bob@beta"), ("ann@alpha", "carol@gamma")]


def _proxy_events(net: FaultNet, rng: random.Random, fault: str) -> list[Event]:
    """The fault's injections (each an async callable), for ROUNDS rounds; random picks by the seeded RNG."""
    proxy = net.proxy

    async def drop() -> None:
        proxy.drop()

    async def delay() -> None:  # a while of slow link: fixed latency plus jitter
        proxy.delay(rng.uniform(0.01, 0.05), rng.uniform(0.05, 0.3))
        await trio.sleep(rng.uniform(0.5, 1.0))
        proxy.delay(0, 0)

    async def duplicate() -> None:
        proxy.duplicate_next()

    async def replay() -> None:
        await trio.to_thread.run_sync(proxy.replay)

    async def cut_down() -> None:  # beta's answers stop; alpha's request deadline notices
        proxy.cut_next("down", mid_frame=False)

    async def cut_up_mid_frame() -> None:  # beta sees FIN in the middle of a frame
        proxy.cut_next("up", mid_frame=True)

    async def stall() -> None:  # bytes stop in both directions, then go on
        proxy.stall()
        await trio.sleep(rng.uniform(0.2, 1.0))
        proxy.resume()

    if fault == "random":
        return [rng.choice([drop, delay, duplicate, replay, cut_down, cut_up_mid_frame, stall]) for _ in range(4 * ROUNDS)]
    per_round = {"drop": [drop] * 3, "delay": [delay] * 2, "duplicate": [duplicate, replay], "cut": [cut_down, cut_up_mid_frame]}
    return per_round[fault] * ROUNDS


@pytest.mark.parametrize("fault", ["drop", "delay", "duplicate", "cut", "random"])
async def test_faulty_link_under_load(net: FaultNet, seed: int, fault: str, record_fault_run: Record) -> None:
    rng = random.Random(seed)
    proxy = net.proxy
    proxy.rng.seed(seed)  # the delay jitter
    before, closes_before = Counter(proxy.stats), len(proxy.target_closes)

    async def inject() -> dict[str, int]:
        for event in _proxy_events(net, rng, fault):
            await trio.sleep(rng.uniform(0.3, 0.9))
            await event()
        with trio.fail_after(HANG_GUARD_S):
            while proxy.pending:  # duplicates and cuts act on the next frame that passes
                await trio.sleep(0.05)
            # The senders keep sending, so a cut link must be dialled again; its backoff may
            # outlast the half second below, so wait for the new connection (or the guard).
            while fault == "cut" and proxy.stats["connections"] == before["connections"]:
                await trio.sleep(0.05)
        await trio.sleep(0.5)  # beta's answer to the last one
        closes = proxy.target_closes[closes_before:]
        print("Close frames beta sent:", closes)
        return dict(proxy.stats - before) | {"refused_tampered": sum(c.tampered and c.code in (1002, 1008) for c in closes)}

    run = await run_under_load(net, fault=f"link_{fault}", seed=seed, routes=PROXY_ROUTES, act=inject)
    check(run, record_fault_run)
    seen = run.observed
    # the fault happened: the proxy did it (random: some of it)
    done = {"drop": ["drops"], "delay": ["delayed"], "duplicate": ["doubled", "replays", "refused_tampered"], "cut": ["cuts"]}
    if fault == "random":
        assert any(seen.get(key) for key in ("drops", "delayed", "doubled", "replays", "cuts", "stalls")), seen
    else:
        assert all(seen.get(key, 0) >= 1 for key in done[fault]), seen
    if fault == "duplicate":  # the secure channel refused every replayed record and every replayed handshake
        assert seen["refused_tampered"] >= seen["doubled"] + seen["replays"], seen
    if fault == "cut":
        assert seen["cuts"] >= 2 and seen["connections"] >= 1, seen  # the link came back


async def test_link_into_a_black_hole_recovers(net: FaultNet, seed: int, record_fault_run: Record) -> None:
    """A middlebox that accepts connections and then neither answers nor closes them: alpha's
    dial must give up (limits.HANDSHAKE_DEADLINE_S) and the next one, which gets through,
    delivers everything."""
    rng = random.Random(seed)
    proxy = net.proxy
    holes = proxy.stats["blackholed"]

    async def black_hole() -> dict[str, int]:
        await trio.sleep(rng.uniform(0.3, 0.9))
        proxy.blackhole(True)
        proxy.drop()  # alpha dials again, into the hole
        with trio.fail_after(HANG_GUARD_S):
            while proxy.stats["blackholed"] == holes:
                await trio.sleep(0.05)
        proxy.blackhole(False)  # the next dial gets through
        await trio.sleep(rng.uniform(0.3, 0.9))
        return {"blackholed": proxy.stats["blackholed"] - holes}

    try:
        # a dial that gives up after HANDSHAKE_DEADLINE_S (10 s) has delivered long before
        run = await run_under_load(net, fault="link_black_hole", seed=seed, routes=PROXY_ROUTES, act=black_hole, drain_guard_s=20.0)
    finally:
        proxy.drop()  # a dial still waiting in the hole sees a reset: the tests after this one get a link
    check(run, record_fault_run)


# 3. A full disk on the receiving node ----------------------------------------------------

DISK_ROUTES = [("alice@alpha", "bob@beta"), ("dave@beta", "bob@beta")]
#: how long the disk stays full while messages keep coming
FULL_S = 2.0


def _disk_filler(net: FaultNet, how: str) -> tuple[Callable[[], Awaitable[dict[str, int]]], Event]:
    """(fill, free): beta's tmpfs written full (ENOSPC), or a file-size quota of 0 bytes on
    beta (RLIMIT_FSIZE: every write fails with EFBIG)."""
    if how == "tmpfs":
        filler = net.disk / "filler"

        async def fill() -> dict[str, int]:
            return {"filled_bytes": await trio.to_thread.run_sync(fill_disk, filler)}

        async def free() -> None:
            filler.unlink()

        return fill, free

    limited: list[tuple[int, int]] = []  # (pid, the limit it had)

    async def limit() -> dict[str, int]:
        pid = net.nodes["beta"].pid
        limited.append((pid, limit_file_size(pid, 0)))
        return {"file_size_limit": 0}

    async def lift() -> None:
        pid, before = limited.pop()
        with contextlib.suppress(ProcessLookupError):  # beta exited: nothing to lift
            limit_file_size(pid, before)

    return limit, lift


async def _full_disk_run(net: FaultNet, seed: int, *, how: str, recipient_online: bool) -> FaultRun:
    """Load on DISK_ROUTES; bob's device is off while beta's disk fills; with
    ``recipient_online`` it comes back while the disk is still full (and acknowledges)."""
    rng = random.Random(seed)
    fill, free = _disk_filler(net, how)
    bob = net.inboxes["bob@beta"]

    async def fill_then_free() -> dict[str, int]:
        seen: Counter[str] = Counter()
        for _ in range(ROUNDS):
            bob.offline = True  # beta keeps what arrives for bob meanwhile
            await trio.sleep(rng.uniform(0.5, 1.0))
            seen.update(await fill())
            seen["fills"] += 1
            await trio.sleep(FULL_S)
            if recipient_online:  # one `recv` (and its acknowledgements) on the full disk
                bob.offline, done = False, bob.fetches
                with trio.fail_after(HANG_GUARD_S):
                    while bob.fetches == done:
                        await trio.sleep(0.05)
            await free()
            bob.offline = False
            if (state := await net.settle("beta")) != "up":
                seen[f"beta_{state}"] += 1  # and restarted
            await trio.sleep(rng.uniform(0.5, 1.0))
        return dict(seen)

    return await run_under_load(net, fault=f"full_disk_{how}", seed=seed, routes=DISK_ROUTES, act=fill_then_free)


async def test_full_disk_on_the_receiving_node(net: FaultNet, seed: int, record_fault_run: Record) -> None:
    """beta refuses what it cannot store and stays up or fails cleanly (no traceback; it is then
    restarted); once there is room again everything acknowledged arrives, once. A tmpfs where
    the test may mount one, else (CI without root, or SONET_FAULT_DISK=quota) the quota, which
    also silences the node's own log file while it lasts."""
    how = "tmpfs" if net.disk is not None else "quota"
    run = await _full_disk_run(net, seed, how=how, recipient_online=False)
    check(run, record_fault_run)
    assert run.observed["fills"] == ROUNDS and "beta_hung" not in run.observed, run.line()
    if how == "quota":  # nothing can be written: what reached beta meanwhile was refused
        assert run.observed["refused_sends"] >= 1, run.line()


async def test_full_disk_while_the_recipient_acknowledges(net: FaultNet, seed: int, record_fault_run: Record) -> None:
    """docs/operations.md: when the database cannot be used (a full disk) the node keeps running."""
    run = await _full_disk_run(net, seed, how="quota", recipient_online=True)
    check(run, record_fault_run)
    assert "beta_exited" not in run.observed and "beta_hung" not in run.observed, run.line()
