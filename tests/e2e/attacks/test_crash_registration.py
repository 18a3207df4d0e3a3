"""Attack (issue 13, item 5): SIGKILL a real node 0-20 ms after a device's ``LinkComplete``
(20 tries) and after a ``Register`` (a few), restart it, and look at what is left.

Measured before the fix: a node killed 2-9 ms after a linked device was committed left a
phantom device with no prekeys (they were a separate request), so nobody could message the
account until `devices remove`; a lost Register answer spent the name and the invite for good.
Now a device is committed with its first prekeys in one transaction, and the device sends the
same request again after a lost answer, which the node answers as the first.

Half of the kills land 0-20 ms after the device sent the request (as the tester did); the
other half 0-20 ms after the node committed the device (the row shows up in its database), so
both sides of the commit are hit. After each restart: no device of the node lacks its signed
prekey or last-resort key; a committed link or registration was completed by the device's
retry (its profile names the committed device); one that was not committed left nothing (a
link then begins again: its slot died with the node). At the end a contact sends to every
device of the linked accounts (a phantom would make that fail) and the last linked device
reads it. The devices run in this process (client SDK); the node is a real process.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from sonet.client.connection import Connection, NodeError
from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.core.client_api import LinkComplete, Register
from sonet.node.app import DB_FILE

from ..conftest import NODE_NAME, NodeProcess, Processes, start_pinned_node

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

LINK_TRIES = 20
REGISTER_TRIES = 4
KILL_WINDOW_S = 0.020
#: the device's pauses between tries of a request whose answer was lost: short, so that the
#: retry follows the restart closely, and longer in all (28 s) than a node restart takes here
RETRY_DELAYS_S = (0.2,) * 40 + (1.0,) * 20
#: hang guard while waiting for a commit to show up (never a performance threshold)
POLL_GUARD_S = 30.0


def _db(node: NodeProcess) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{node.data / DB_FILE}?mode=ro", uri=True, timeout=10)


def phantom_devices(node: NodeProcess) -> list[tuple[str, int]]:
    """Devices without the signed X25519 prekey or the ML-KEM last-resort key (every device
    here is hybrid): nobody could start a session with them."""
    db = _db(node)
    try:
        return db.execute(
            "SELECT account, device_id FROM devices AS d WHERE"
            " (SELECT count(DISTINCT kind) FROM prekeys AS p WHERE p.account = d.account AND p.device_id = d.device_id"
            "  AND p.one_time = 0) < 2"
        ).fetchall()
    finally:
        db.close()


def device_of(node: NodeProcess, fingerprint: str) -> tuple[str, int] | None:
    db = _db(node)
    try:
        return db.execute("SELECT account, device_id FROM devices WHERE fingerprint = ?", (fingerprint,)).fetchone()
    finally:
        db.close()


def device_count(node: NodeProcess) -> int:
    db = _db(node)
    try:
        return db.execute("SELECT count(*) FROM devices").fetchone()[0]
    finally:
        db.close()


@dataclass
class Killer:
    """Kills the node once, 0-20 ms after the armed request went out ("sent") or after the
    node committed a new device ("committed"), then restarts it."""

    procs: Processes
    node: NodeProcess
    rng: random.Random
    nursery: trio.Nursery | None = None
    armed: tuple[type, str, float] | None = None
    restarted: trio.Event = field(default_factory=trio.Event)
    kill_ms: list[float] = field(default_factory=list)
    #: whether the node had committed the armed request's device when it was killed
    committed: bool = False

    def arm(self, frame: type, mode: str) -> float:
        delay = self.rng.uniform(0.0, KILL_WINDOW_S)
        self.armed = (frame, mode, delay)
        self.restarted = trio.Event()
        return delay

    def watch(self, frame: object) -> None:
        """Called with every request a device sends (Connection.request is wrapped)."""
        if self.armed is None or not isinstance(frame, self.armed[0]):
            return
        _, mode, delay = self.armed
        self.armed = None
        assert self.nursery is not None
        self.nursery.start_soon(self._kill_and_restart, mode, delay, device_count(self.node))

    async def _kill_and_restart(self, mode: str, delay: float, devices_before: int) -> None:
        if mode == "committed":
            def committed() -> None:
                # one connection asked again and again: a new one every millisecond took much
                # of a core from the node being watched
                db = _db(self.node)
                try:
                    deadline = time.monotonic() + POLL_GUARD_S
                    while db.execute("SELECT count(*) FROM devices").fetchone()[0] == devices_before and time.monotonic() < deadline:
                        time.sleep(0.001)
                finally:
                    db.close()
            await trio.to_thread.run_sync(committed)
        await trio.sleep(delay)
        os.kill(self.node.pid, signal.SIGKILL)
        self.kill_ms.append(delay * 1000)
        await trio.to_thread.run_sync(self.node.kill)  # reaps it
        assert self.node.proc.returncode == -signal.SIGKILL
        self.committed = device_count(self.node) > devices_before
        restarted = await trio.to_thread.run_sync(self.procs.start_node, self.node.data)
        assert restarted.url == self.node.url
        self.node = restarted
        self.restarted.set()


@dataclass
class Tally:
    """Where the kills landed, by what the node had committed and what the device saw."""

    before_commit: int = 0
    after_commit_retried: int = 0
    after_the_answer: int = 0

    def add(self, committed: bool, retried: bool) -> None:
        if not committed:
            self.before_commit += 1
        elif retried:
            self.after_commit_retried += 1
        else:
            self.after_the_answer += 1

    def __str__(self) -> str:
        return (f"{self.before_commit} before the commit, {self.after_commit_retried} after it with the answer lost "
                f"(completed by the retry), {self.after_the_answer} after the answer")


def new_device(tmp: Path, name: str) -> Device:
    device = Device(DeviceState(tmp / name))
    device.answer_retry_delays = RETRY_DELAYS_S
    return device


def test_sigkill_around_link_and_register_leaves_no_phantom_device(procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = random.randrange(1 << 32)
    print(f"\nrandom seed {seed}")
    node = start_pinned_node(procs, tmp_path / "node")
    invites = [node.invite() for _ in range(3 + REGISTER_TRIES + 1)]
    killer = Killer(procs, node, random.Random(seed))
    real_request = Connection.request

    async def watched_request(self: Connection, build):  # noqa: ANN001, ANN202
        killer.watch(build(0))
        return await real_request(self, build)

    monkeypatch.setattr(Connection, "request", watched_request)
    url = node.url
    started = time.monotonic()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            killer.nursery = nursery
            owners = [new_device(tmp_path, f"owner{i}") for i in range(2)]
            for i, owner in enumerate(owners):
                await owner.register(f"owner{i}@{NODE_NAME}", url, invites[i])
            contact = new_device(tmp_path, "contact")
            await contact.register(f"contact@{NODE_NAME}", url, invites[2])

            links, linked = Tally(), []
            for i in range(LINK_TRIES):
                owner, device = owners[i % 2], new_device(tmp_path, f"link{i}")
                mode = "sent" if i % 2 == 0 else "committed"
                killer.arm(LinkComplete, mode)
                said: list[str] = []
                send_code, codes = trio.open_memory_channel[str](1)
                result: list[int | NodeError] = []

                async def begin(device: Device = device, said: list[str] = said) -> None:
                    try:
                        result.append((await device.link_begin(url, send_code.send_nowait, say=said.append)).device_id)
                    except NodeError as exc:
                        assert exc.code == "link_unknown", exc  # not committed: begin again
                        result.append(exc)

                async def approve(owner: Device = owner) -> None:
                    await owner.link_approve(await codes.receive())

                async with trio.open_nursery() as attempt:
                    attempt.start_soon(begin)
                    attempt.start_soon(approve)
                await killer.restarted.wait()
                assert phantom_devices(killer.node) == [], f"try {i}: a device without keys"
                [outcome] = result
                if killer.committed:  # the device holds the committed device: the retry completed the same link
                    assert isinstance(outcome, int), outcome
                    fingerprint = device.state.profile().identity.public.fingerprint
                    assert device_of(killer.node, fingerprint) == (owner.state.profile().address, outcome)
                    linked.append(device)
                else:  # nothing was added, and the device says to begin again
                    assert isinstance(outcome, NodeError) and not device.state.registered(), outcome
                links.add(killer.committed, bool(said))

            registrations = Tally()
            for j in range(REGISTER_TRIES):
                device = new_device(tmp_path, f"register{j}")
                killer.arm(Register, "sent" if j % 2 == 0 else "committed")
                said = []
                profile = await device.register(f"user{j}@{NODE_NAME}", url, invites[3 + j], say=said.append)
                await killer.restarted.wait()
                # however the kill landed, the registration completed: the same device, with its keys
                assert device_of(killer.node, profile.identity.public.fingerprint) == (f"user{j}@{NODE_NAME}", 1)
                assert phantom_devices(killer.node) == []
                registrations.add(killer.committed, bool(said))

            # a used invite stays used for any other device key
            thief = new_device(tmp_path, "thief")
            with pytest.raises(NodeError) as err:
                await thief.register(f"thief@{NODE_NAME}", url, invites[3])
            assert err.value.code == "invite_invalid"

            # a contact reaches every device of both accounts, and a linked device reads it
            for i, owner in enumerate(owners):
                sent = await contact.send_text(f"owner{i}@{NODE_NAME}", f"to all of owner{i}'s devices")
                assert sent.devices == 1 + sum(1 for d in linked if d.state.profile().address == f"owner{i}@{NODE_NAME}")
            if linked:
                got = await linked[-1].receive()
                assert any(m.fields.get("text", "").startswith("to all of owner") for m in got.messages)
            nursery.cancel_scope.cancel()

            print(f"LinkComplete: {LINK_TRIES} SIGKILLs 0-20 ms after the request (even tries) or after the commit "
                  f"(odd tries): {links}; {len(linked)} devices linked, {LINK_TRIES - len(linked)} began again")
            print(f"Register: {REGISTER_TRIES} SIGKILLs: {registrations}; every registration completed")
            print(f"kill delays (ms): {', '.join(f'{d:.1f}' for d in killer.kill_ms)}; phantom devices: 0; "
                  f"{time.monotonic() - started:.1f} s")

    trio.run(main)
    assert killer.node.alive() and "Traceback" not in killer.node.stderr(), killer.node.stderr()[-3000:]
