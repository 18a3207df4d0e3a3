"""An "ok" to a pipelined push means its envelopes are committed (round 7 review of the
pipelined receiver): a real ``sonet-node run`` receiver takes a raw peer's sequenced pushes,
several on their way at once (their writes queued behind each other, sharing group commits),
and is SIGKILLed the moment some of the answers are in; every envelope of a push answered ok
is in the database afterwards, once. Pushes whose answers never came may or may not be there
(the pusher sends them again; the receiver deduplicates)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from sonet.core.federation_api import Push, PushResult
from sonet.federation.link import dial_peer
from sonet.node.store import SqliteStore
from tests.e2e.conftest import NodeProcess, Processes, here, ok, procs, register, start_pinned_node  # noqa: F401 - procs: the fixture
from tests.node.kit import wall_ms

from .net import new_key, transit

pytestmark = pytest.mark.slow

BETA = "beta.example"
PEER = "peer.example"
BOB = f"bob@{BETA}"
PUSHES = 60
#: answers read before the SIGKILL: the pushes after them are on their way or queued
ANSWERED = 40
HANG_S = 60.0


def test_every_push_answered_ok_survives_a_sigkill_right_after_the_answer(procs: Processes, tmp_path: Path) -> None:
    beta = start_pinned_node(procs, tmp_path / "beta", name=BETA)
    register(tmp_path / "bob", BOB, beta)
    key = new_key()
    ok(here("sonet-node", "peer", "add", "--data", beta.data, "--name", PEER, "--url", "ws://127.0.0.1:1", "--fingerprint", key.public.fingerprint))
    items = [transit(BOB, origin=PEER) for _ in range(PUSHES)]

    async def push_then_kill() -> list[int]:
        """Send every push at once, read ANSWERED answers, SIGKILL beta: the requests answered ok."""
        answered: list[int] = []
        with trio.fail_after(HANG_S):
            async with dial_peer(beta.url, identity=key, fingerprint=beta.fingerprint, name=PEER) as link:
                for n, item in enumerate(items, start=1):
                    await link.send(Push(request=n, items=(item,), seq=n))
                while len(answered) < ANSWERED:
                    answer = await link.receive()
                    assert answer == PushResult(request=len(answered) + 1, outcomes=("ok",)), answer
                    answered.append(answer.request)
                kill(beta)  # before anything else happens: the answers just read are all we know
        return answered

    answered = trio.run(push_then_kill)
    assert answered == list(range(1, ANSWERED + 1))

    async def stored() -> list[bytes]:
        async with await SqliteStore.open(beta.data / "node.db") as store:  # recovers the WAL
            return [m.id for m in await store.pending(BOB, 1, after_seq=0, limit=10_000, now=wall_ms())]

    ids = trio.run(stored)
    assert len(ids) == len(set(ids))  # nothing twice
    acknowledged = [i.envelope.id for i in items[:ANSWERED]]  # type: ignore[union-attr]
    assert ids[:ANSWERED] == acknowledged  # every push answered ok, in order
    assert ids[ANSWERED:] == [i.envelope.id for i in items[ANSWERED : len(ids)]]  # type: ignore[union-attr]  # then a prefix of the rest


def kill(node: NodeProcess) -> None:
    os.kill(node.pid, 9)
    node.proc.wait(timeout=HANG_S)
    assert node.proc.returncode == -9
