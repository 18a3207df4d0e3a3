"""The device side of a lost registration answer (client/sdk.py ``register`` / ``link_begin``):
when the connection drops after the request went out, the device connects again with the same
keys and sends the same request; the node's answer completes the same registration.

A lost answer is made by wrapping ``Connection.request``: the wrapped call raises the
ConnectError a dropped connection raises, either before the request reached the node or after
the node answered it (committed, answer lost).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.connection import ConnectError, Connection, NodeError
from sonet.client.monitor import _START as AUDIT_START
from sonet.client.sdk import Device
from sonet.core.client_api import FetchDevices, LinkComplete, Register
from sonet.core.errors import sole_exception

from tests.few_prekeys import FEW_PREKEYS
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, link_device, texts

#: devices register with FEW_PREKEYS one-time prekeys of each kind (tests/conftest.py); the
#: counts below are that number
pytestmark = pytest.mark.usefixtures("few_prekeys")

#: no waiting between tries in these tests (the node is up all along)
NO_PAUSE = (0.0, 0.0)


def lose_answer(
    monkeypatch: pytest.MonkeyPatch, frame: type, *, when: str, times: int = 1, meanwhile: Callable[[], object] | None = None
) -> list[str]:
    """The next ``times`` requests of ``frame`` lose their answer: ``when`` "before" the node
    got them or "after" it answered; ``meanwhile`` runs at the loss (what else happened to
    the node; awaited if it returns an awaitable). Returns the list that records each loss."""
    real = Connection.request
    lost: list[str] = []

    async def request(self: Connection, build: Callable) -> object:  # type: ignore[type-arg]
        if isinstance(build(0), frame) and len(lost) < times:
            lost.append(when)
            if when == "after":
                await real(self, build)
            if meanwhile is not None:
                happened = meanwhile()
                if inspect.isawaitable(happened):  # the node's link slots are in its store
                    await happened
            raise ConnectError("the connection to the node was lost")
        return await real(self, build)

    monkeypatch.setattr(Connection, "request", request)
    return lost


async def _exchange(a: Device, b: Device, text: str) -> None:
    """``a`` sends ``text`` to ``b``'s account, which receives it: both are usable devices."""
    await a.send_text(b.state.profile().address, text)
    got = texts(b, await b.receive())
    assert (a.state.profile().address, text) in got


@pytest.mark.parametrize("when", ["before", "after"])
async def test_register_completes_after_a_lost_answer(
    alpha: RunningNode, make_device: Callable[..., Device], register: Callable[..., Awaitable[Device]],
    monkeypatch: pytest.MonkeyPatch, when: str,
) -> None:
    with trio.fail_after(HANG_S):
        bob = await register(alpha, "bob")
        alice = make_device("alice")
        alice.answer_retry_delays = NO_PAUSE
        said: list[str] = []
        lost = lose_answer(monkeypatch, Register, when=when)
        profile = await alice.register(ALICE, alpha.url, await alpha.mint_invite(), say=said.append)

        assert lost == [when] and len(said) == 1
        assert "dropped before its answer to Register" in said[0] and "try 2 of 3" in said[0]
        assert (profile.address, profile.device_id) == (ALICE, 1)
        async with alpha.store() as store:
            stats = await store.stats()
            assert (stats["accounts"], stats["devices"], stats["invites_open"]) == (2, 2, 0)
            # its first prekeys came with it, and the device holds their secrets
            assert await store.prekey_counts(ALICE, 1) == (FEW_PREKEYS, FEW_PREKEYS)
        await _exchange(bob, alice, "hello after a lost answer")
        await _exchange(alice, bob, "and back")


async def test_link_completes_after_a_lost_answer(
    alpha: RunningNode, make_device: Callable[..., Device], register: Callable[..., Awaitable[Device]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        bob = await register(alpha, "bob")
        phone = make_device("alice-phone")
        phone.answer_retry_delays = NO_PAUSE
        lost = lose_answer(monkeypatch, LinkComplete, when="after")
        device_id = await link_device(phone, alice, alpha.url)

        assert lost == ["after"] and device_id == 2
        assert phone.state.profile().device_id == 2
        await _exchange(bob, phone, "to both of alice's devices")
        assert (BOB, "to both of alice's devices") in texts(alice, await alice.receive())
        await _exchange(phone, bob, "from the linked phone")


async def test_link_lost_before_the_node_had_it_completes_while_the_slot_lives(
    alpha: RunningNode, make_device: Callable[..., Device], register: Callable[..., Awaitable[Device]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node still holds the first connection and its slot: the retry from a new connection
    of the same device key completes the link."""
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        phone = make_device("alice-phone")
        phone.answer_retry_delays = NO_PAUSE
        lost = lose_answer(monkeypatch, LinkComplete, when="before")
        assert await link_device(phone, alice, alpha.url) == 2
        assert lost == ["before"] and phone.state.profile().device_id == 2


async def test_link_lost_before_the_node_had_it_says_to_begin_again(
    alpha: RunningNode, make_device: Callable[..., Device], register: Callable[..., Awaitable[Device]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node forgot the slot meanwhile (it expired): the retry finds it unknown, and the
    device says what to do; no device was added."""
    with trio.fail_after(HANG_S):
        alice = await register(alpha, "alice")
        phone = make_device("alice-phone")
        phone.answer_retry_delays = NO_PAUSE
        lose_answer(monkeypatch, LinkComplete, when="before", meanwhile=lambda: alpha.node.links.purge(2**62))
        with pytest.raises(BaseExceptionGroup) as group:  # from link_device's nursery
            await link_device(phone, alice, alpha.url)
        err = sole_exception(group.value)
        assert isinstance(err, NodeError) and err.code == "link_unknown"
        assert f"run `sonet link begin --node {alpha.url}` again (it discards this link" in str(err)
        assert not phone.state.registered()
        async with alpha.store() as store:
            assert len(await store.devices(ALICE)) == 1


async def test_a_node_that_is_not_there_is_not_retried(make_device: Callable[..., Device], alpha: RunningNode) -> None:
    """Nothing was sent: the first connection failing is reported at once, without a retry."""
    with trio.fail_after(HANG_S):
        alice = make_device("alice")
        said: list[str] = []
        invite = await alpha.mint_invite()
        port = alpha.url.rsplit(":", 1)[1]
        with pytest.raises(ConnectError):
            await alice.register(ALICE, alpha.url.replace(port, "9"), invite, say=said.append)
        assert said == [] and not alice.state.registered()


async def test_retries_end_with_a_clear_error(
    alpha: RunningNode, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trio.fail_after(HANG_S):
        alice = make_device("alice")
        alice.answer_retry_delays = NO_PAUSE
        said: list[str] = []
        lose_answer(monkeypatch, Register, when="after", times=3)
        with pytest.raises(ConnectError) as err:
            await alice.register(ALICE, alpha.url, await alpha.mint_invite(), say=said.append)
        assert "answer to Register was lost" in str(err.value) and "3 tries" in str(err.value)
        assert "keeps the request and its keys" in str(err.value)
        assert len(said) == 2 and not alice.state.registered()
        # the node did register it, and the device kept the request with its keys: sent again, it completes
        async with alpha.store() as store:
            assert [d.device_id for d in await store.devices(ALICE)] == [1]
        profile = await alice.resume_registration()
        assert (profile.address, profile.device_id) == (ALICE, 1) and alice.state.registered()


async def test_a_connection_lost_right_after_the_answer_still_finishes_the_set_up(
    alpha: RunningNode, make_device: Callable[..., Device], register: Callable[..., Awaitable[Device]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node answered and the device saved its profile, then the connection dropped before
    the device noted where its audit of its account begins: it does that on a new connection."""
    with trio.fail_after(HANG_S):
        bob = await register(alpha, "bob")
        alice = make_device("alice")
        alice.answer_retry_delays = NO_PAUSE
        said: list[str] = []
        lost = lose_answer(monkeypatch, FetchDevices, when="before")
        profile = await alice.register(ALICE, alpha.url, await alpha.mint_invite(), say=said.append)

        assert lost == ["before"] and profile.device_id == 1
        assert len(said) == 1 and "finish setting it up" in said[0]
        assert alice.state.get(AUDIT_START) is not None
        await _exchange(bob, alice, "set up after all")
        assert alice.monitor_error is None
