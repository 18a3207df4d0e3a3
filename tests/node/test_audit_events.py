"""The security-events seam (transport/events.py): who hears an emitted event."""

from __future__ import annotations

import pytest
import trio

from sonet.transport import events


def test_nobody_listening_is_a_no_op() -> None:
    assert not events.listening()
    events.emit("handshake_refused", address="192.0.2.1", code="bad")  # nothing happens, no error


def test_a_subscriber_hears_named_kinds_and_unknown_kinds_are_refused() -> None:
    heard: list[tuple[str, dict[str, object]]] = []
    with events.subscribed(lambda kind, fields: heard.append((kind, dict(fields)))):
        assert events.listening()
        events.emit("wrong_identity", peer="beta")
        with pytest.raises(ValueError, match="unknown security event kind 'handshake_refsued'"):
            events.emit("handshake_refsued")
    events.emit("wrong_identity", peer="gamma")  # after exit: unheard
    assert heard == [("wrong_identity", {"peer": "beta"})]


async def test_each_context_hears_only_its_own_tasks() -> None:
    """Two nodes in one process: each subscribes in its own task, and the tasks it spawns
    inherit that; neither hears the other's events."""
    heard: dict[str, list[str]] = {"alpha": [], "beta": []}

    async def node(name: str) -> None:
        with events.subscribed(lambda kind, fields: heard[name].append(str(fields["who"]))):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_emit_later, name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(node, "alpha")
        nursery.start_soon(node, "beta")
    assert heard == {"alpha": ["alpha"], "beta": ["beta"]}


async def _emit_later(who: str) -> None:
    await trio.sleep(0)
    events.emit("rate_limited", who=who)
