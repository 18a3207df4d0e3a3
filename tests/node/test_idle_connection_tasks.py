"""An idle device connection keeps no task of its session (issue 14 item 3): the node holds
only the connection's own task for it (its WebSocket is read on that task: no reader task,
transport/websocket.py). The delivery task is
started when the mailbox is woken and ends once the device is drained; the registration
deadline, removals and supersessions are watched without a task each (their closes are
tested in tests/transport/test_node_connections.py and tests/node/test_linking.py)."""

from __future__ import annotations

import trio

from sonet.core.client_api import Ack, Deliver, Ping, Pong, SendBatch

from .conftest import HANG_S, RunningNode, next_deliver
from .kit import new_identity, opaque_envelope


def _tasks_under(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    found = [task]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.extend(_tasks_under(child))
    return found


def _connection_tasks() -> list[list[str]]:
    """For each connection the node's server serves: the names of its tasks' coroutines."""
    served = [t for t in _tasks_under(trio.lowlevel.current_root_task()) if t.coro.__qualname__ == "_Server._serve"]
    return [[t.coro.__qualname__ for t in _tasks_under(conn)] for conn in served]


async def _settled(running: RunningNode, connections: int) -> list[list[str]]:
    """The connection tasks once ``connections`` are served and no session task is left
    (the delivery task ends after its Drained; tasks end at their next scheduling)."""
    while True:
        tasks = _connection_tasks()
        if len(tasks) == connections and all(len(t) == 1 for t in tasks):
            return tasks
        await trio.sleep(0.01)


async def test_an_idle_connection_holds_its_own_task_only(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(new_identity()) as stranger, running.raw(bob.first) as conn:
            # one unregistered and one registered connection, both idle
            tasks = await _settled(running, 2)
            assert sorted(tasks) == [["_Server._serve"]] * 2
            assert not any("ClientSession" in name for t in tasks for name in t)
            # a delivery starts the delivery task; acknowledged, it ends
            env = opaque_envelope(bob.first)
            async with running.raw(alice.first) as sender:
                await sender.request(lambda n: SendBatch(request=n, envelopes=(env,)))
            frame = await next_deliver(conn)
            assert isinstance(frame, Deliver) and [d.envelope.id for d in frame.items] == [env.id]
            await conn.send(Ack(ids=(env.id,)))
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
            assert isinstance(await stranger.request(lambda n: Ping(request=n)), Pong)
            await _settled(running, 2)
        assert await running.pending("bob") == []

