"""A registration or link whose process stops between sending the request and saving the
answer (client/pending_registration.py): the request and its keys were saved first, and the
next command sends the same request with the same keys, which the node completes.

A process that stops is played by ``die_at``: the wrapped ``Connection.request`` raises
``ProcessDied`` (a BaseException nothing catches, as SIGKILL) before the request reached the
node or after the node answered it; the device that "died" is dropped and a new ``Device`` on
the same home carries on, as the next process would. tests/e2e/attacks/
test_client_crash_registration.py does the same with real processes and SIGKILL.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.connection import Connection, NodeError
from sonet.client.pending_registration import has_pending_registration, load_pending_registration
from sonet.client.sdk import Device
from sonet.client.state import DeviceState, StateError
from sonet.core.client_api import LinkComplete, Register
from sonet.core.crypto import CryptoPolicy
from sonet.core.device import verify_device_record
from sonet.core.invite import SECRET_BYTES, make_invite

from tests.few_prekeys import FEW_PREKEYS
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, HANG_S, texts

#: devices register with FEW_PREKEYS one-time prekeys of each kind (tests/conftest.py); the
#: counts below are that number
pytestmark = pytest.mark.usefixtures("few_prekeys")

Register_ = Callable[..., Awaitable[Device]]


class ProcessDied(BaseException):
    """The process stopped here (nothing below it runs, nothing catches it)."""


def die_at(monkeypatch: pytest.MonkeyPatch, frame: type, *, when: str) -> list[object]:
    """The next request of type ``frame`` kills the "process": ``when`` "before" it reached the
    node or "after" the node answered it. Returns the requests seen (the one that died)."""
    real = Connection.request
    seen: list[object] = []

    async def request(self: Connection, build: Callable) -> object:  # type: ignore[type-arg]
        sent = build(0)
        if isinstance(sent, frame) and not seen:
            seen.append(sent)
            if when == "after":
                await real(self, build)
            monkeypatch.setattr(Connection, "request", real)  # the next process sends normally
            raise ProcessDied
        return await real(self, build)

    monkeypatch.setattr(Connection, "request", request)
    return seen


async def dies(call: Awaitable[object]) -> None:
    """``call`` ends in ProcessDied (possibly inside trio's exception groups)."""
    with pytest.raises((ProcessDied, BaseExceptionGroup)) as err:
        await call
    if isinstance(err.value, BaseExceptionGroup):
        assert err.value.subgroup(ProcessDied) is not None, err.value


def next_process(make_device: Callable[..., Device], name: str) -> Device:
    """A new Device on the same home: what the next `sonet` process opens."""
    return make_device(name)


async def cli_run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = await trio.to_thread.run_sync(cli.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


async def exchange(a: Device, b: Device, text: str) -> None:
    await a.send_text(b.state.profile().address, text)
    assert (a.state.profile().address, text) in texts(b, await b.receive())


def record_fingerprint(record: bytes) -> str:
    return verify_device_record(record, policy=CryptoPolicy()).fingerprint


async def node_devices(node: RunningNode, account: str) -> list[tuple[int, str]]:
    async with node.store() as store:
        return [(d.device_id, d.fingerprint) for d in await store.devices(account)]


# Saved before sending ---------------------------------------------------------------------


async def test_the_request_and_its_keys_are_saved_durably_before_register_is_sent(
    alpha: RunningNode, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice = make_device("alice")
        invite = await alpha.mint_invite()
        real = Connection.request
        found: list[object] = []

        async def request(self: Connection, build: Callable) -> object:  # type: ignore[type-arg]
            sent = build(0)
            if isinstance(sent, Register):
                # read back through another connection to state.db: committed, not just buffered
                other = DeviceState(alice.state.home, create=False)
                try:
                    pending = load_pending_registration(other)
                finally:
                    other.close()
                assert pending is not None and pending.kind == "register" and pending.address == ALICE
                assert pending.node_url == alpha.url and pending.request == sent  # the very request, invite included
                assert record_fingerprint(sent.record) == pending.identity.public.fingerprint
                found.append(pending)
            return await real(self, build)

        monkeypatch.setattr(Connection, "request", request)
        profile = await alice.register(ALICE, alpha.url, invite)
        [pending] = found
        assert profile.identity.public.fingerprint == pending.identity.public.fingerprint  # type: ignore[attr-defined]
        # once answered, the profile replaced it
        assert not has_pending_registration(alice.state) and alice.state.registered()

        # the secrets were never in a file anyone else can read, nor in the clear
        secret = pending.identity.private_bytes()  # type: ignore[attr-defined]
        for path in alice.state.home.iterdir():
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            assert secret not in path.read_bytes(), path


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_register_whose_process_died_is_completed_with_the_same_keys(
    alpha: RunningNode, make_device: Callable[..., Device], register: Register_, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """``before``: the node never saw it (the invite is still open); ``after``: the node
    committed it and the answer was lost with the process. Either way the same `register`
    again completes the same registration: one device, whose keys this home holds."""
    with trio.fail_after(HANG_S):
        bob = await register(alpha, "bob")
        invite = await alpha.mint_invite()
        died = die_at(monkeypatch, Register, when=when)
        await dies(make_device("alice").register(ALICE, alpha.url, invite))
        [request] = died
        assert len(await node_devices(alpha, ALICE)) == (1 if when == "after" else 0)

        alice = next_process(make_device, "alice")
        assert not alice.state.registered() and has_pending_registration(alice.state)
        said: list[str] = []
        profile = await alice.register(ALICE, alpha.url, invite, say=said.append)
        assert said[0].startswith(f"completing an interrupted registration of {ALICE} on {alpha.url}"), said
        fingerprint = record_fingerprint(request.record)  # type: ignore[attr-defined]
        assert profile.identity.public.fingerprint == fingerprint
        assert await node_devices(alpha, ALICE) == [(1, fingerprint)]
        assert not has_pending_registration(alice.state)
        async with alpha.store() as store:
            assert await store.prekey_counts(ALICE, 1) == (FEW_PREKEYS, FEW_PREKEYS)  # the secrets of which alice holds
        await exchange(bob, alice, "hello after the crash")
        await exchange(alice, bob, "and back")


async def test_any_command_completes_it_and_register_needs_no_arguments(
    alpha: RunningNode, make_device: Callable[..., Device], register: Register_, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(HANG_S):
        bob = await register(alpha, "bob")
        for name, argv in (("carol", ["register"]), ("dave", ["recv"])):
            address = f"{name}@{alpha.config.name}"
            die_at(monkeypatch, Register, when="after")
            dead = make_device(name)
            await dies(dead.register(address, alpha.url, await alpha.mint_invite()))
            home = dead.state.home
            rc, out, err = await cli_run(capsys, "--home", home, *argv)
            assert rc == 0, err
            assert f"sonet: completing an interrupted registration of {address} on {alpha.url}" in err.splitlines()[0], err
            if argv == ["register"]:
                assert out.startswith(f"registered {address} (device 1) on {alpha.url}"), out
            device = next_process(make_device, name)
            assert device.state.profile().address == address
            await exchange(bob, device, f"hello {name}")


# Refused for good, and discarded ------------------------------------------------------------


async def test_a_pending_registration_whose_name_was_taken_meanwhile_is_refused_and_can_be_discarded(
    alpha: RunningNode, make_device: Callable[..., Device], register: Register_, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(HANG_S):
        die_at(monkeypatch, Register, when="before")
        await dies(make_device("alice").register(ALICE, alpha.url, await alpha.mint_invite()))
        thief = await register(alpha, "alice", home="thief")  # someone else's keys take the name

        alice = next_process(make_device, "alice")
        with pytest.raises(NodeError) as err:
            await alice.register(ALICE, alpha.url, "ignored: the saved request goes again")
        assert err.value.code == "account_exists"
        assert f"the node refused the interrupted registration of {ALICE}" in str(err.value)
        assert "`sonet register --discard-pending` deletes it" in str(err.value)
        assert has_pending_registration(alice.state) and not alice.state.registered()
        assert await node_devices(alpha, ALICE) == [(1, thief.state.profile().identity.public.fingerprint)]

        home = alice.state.home
        rc, out, err_text = await cli_run(capsys, "--home", home, "recv")  # what it tried, one clear error, and it stays
        trying, error = err_text.splitlines()
        assert rc == 1 and out == "" and trying.startswith("sonet: completing an interrupted registration"), err_text
        assert error.startswith(f"sonet: error: the node refused the interrupted registration of {ALICE}: ") and error.endswith(
            "`sonet register --discard-pending` deletes it (its keys were never used) so this home can register or link anew (account_exists)"
        ), error
        assert has_pending_registration(alice.state)

        rc, out, _ = await cli_run(capsys, "--home", home, "register", "--discard-pending")
        assert rc == 0 and out.strip() == (
            f"discarded the interrupted registration of {ALICE} on {alpha.url}: its keys are deleted; this home can register or link anew"
        ), out
        assert not has_pending_registration(alice.state)
        rc, _, err_text = await cli_run(capsys, "--home", home, "register", "--discard-pending")
        assert rc == 1 and err_text.strip() == f"sonet: error: no interrupted registration or link in {home}", err_text

        # the home registers anew, under another name
        profile = await next_process(make_device, "alice").register(f"alice2@{alpha.config.name}", alpha.url, await alpha.mint_invite())
        assert profile.device_id == 1


async def test_another_registration_is_refused_while_one_is_pending(
    alpha: RunningNode, make_device: Callable[..., Device], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S):
        die_at(monkeypatch, Register, when="before")
        await dies(make_device("alice").register(ALICE, alpha.url, await alpha.mint_invite()))
        alice = next_process(make_device, "alice")
        with pytest.raises(StateError) as err:
            await alice.register(BOB, alpha.url, await alpha.mint_invite())
        assert f"holds an interrupted registration of {ALICE} on {alpha.url}: `sonet register` (or any other command) completes it" in str(err.value)
        assert "`sonet register --discard-pending` deletes it" in str(err.value)
        # ... nor a link begun over it
        with pytest.raises(StateError):
            await alice.link_begin(alpha.url, lambda code: None)
        # without arguments on a home with nothing pending, register says what it needs
        rc, _, err_text = await cli_run(capsys, "--home", make_device("empty").state.home, "register")
        assert rc == 2 and "missing ADDRESS, --node, --invite" in err_text, err_text  # a usage error (05b7b76)


async def test_a_first_refusal_leaves_nothing_pending(alpha: RunningNode, make_device: Callable[..., Device]) -> None:
    """The only request this key ever sent was refused: nothing was committed, nothing to keep."""
    with trio.fail_after(HANG_S):
        alice = make_device("alice")
        with pytest.raises(NodeError) as err:
            await alice.register(ALICE, alpha.url, make_invite(alpha.fingerprint, os.urandom(SECRET_BYTES)))
        assert err.value.code == "invite_invalid" and not has_pending_registration(alice.state)
        profile = await alice.register(ALICE, alpha.url, await alpha.mint_invite())  # the home is free
        assert profile.device_id == 1


# Linking -------------------------------------------------------------------------------------


async def _link(new: Device, approver: Device, url: str, codes: list[str]) -> int:
    send, receive = trio.open_memory_channel[str](1)
    result: list[int] = []

    def show(code: str) -> None:
        codes.append(code)
        send.send_nowait(code)

    async def begin() -> None:
        result.append((await new.link_begin(url, show)).device_id)

    async def approve() -> None:
        await approver.link_approve(await receive.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(begin)
        nursery.start_soon(approve)
    return result[0]


async def test_a_link_whose_process_died_after_the_commit_is_completed_by_link_begin(
    alpha: RunningNode, make_device: Callable[..., Device], register: Register_, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        died = die_at(monkeypatch, LinkComplete, when="after")
        await dies(_link(make_device("phone"), alice, alpha.url, []))
        [request] = died
        fingerprint = record_fingerprint(request.record)  # type: ignore[attr-defined]
        assert (2, fingerprint) in await node_devices(alpha, ALICE)

        phone = next_process(make_device, "phone")
        said: list[str] = []
        profile = await phone.link_begin(alpha.url, lambda code: pytest.fail("no new code: the link is completed"), say=said.append)
        assert said[0].startswith(f"completing an interrupted link of {ALICE} on {alpha.url}"), said
        assert (profile.address, profile.device_id) == (ALICE, 2) and profile.identity.public.fingerprint == fingerprint
        assert len(await node_devices(alpha, ALICE)) == 2
        await exchange(bob, phone, "to both of alice's devices")
        await exchange(phone, bob, "from the phone")


async def test_a_link_the_node_never_completed_is_discarded_by_the_next_link_begin(
    alpha: RunningNode, make_device: Callable[..., Device], register: Register_, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process died before its LinkComplete reached the node: the slot ended with its
    connection. Another command says so; `link begin` drops it and links anew."""
    with trio.fail_after(HANG_S):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        die_at(monkeypatch, LinkComplete, when="before")
        await dies(_link(make_device("phone"), alice, alpha.url, []))
        assert len(await node_devices(alpha, ALICE)) == 1

        phone = next_process(make_device, "phone")
        with pytest.raises(NodeError) as err:
            await phone.resume_registration()
        assert err.value.code == "link_unknown" and f"run `sonet link begin --node {alpha.url}` again" in str(err.value)
        assert has_pending_registration(phone.state)

        said: list[str] = []
        codes: list[str] = []
        send, receive = trio.open_memory_channel[str](1)

        async def begin() -> None:
            await phone.link_begin(alpha.url, lambda code: (codes.append(code), send.send_nowait(code)), say=said.append)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(begin)
            await alice.link_approve(await receive.receive())
        assert any("discarded it, beginning a new link" in line for line in said), said
        assert len(codes) == 1 and phone.state.profile().device_id == 2
        assert not has_pending_registration(phone.state)
        await exchange(bob, phone, "hello phone")


# The key store itself ----------------------------------------------------------------------


async def test_a_home_whose_key_store_creation_was_cut_short_opens_afresh(alpha: RunningNode, tmp_path: Path) -> None:
    """A process killed while it made the vault leaves a key file (or a half-written temporary
    one) without vault.json: nothing was sealed with it yet, so the next start makes the vault
    anew instead of failing on the file that is there."""
    with trio.fail_after(HANG_S):
        home = tmp_path / "cut"
        home.mkdir(mode=0o700)
        (home / "state.key").write_bytes(b"half")
        (home / "vault.json.tmp").write_bytes(b"{")
        device = Device(DeviceState(home))
        try:
            profile = await device.register(ALICE, alpha.url, await alpha.mint_invite())
        finally:
            device.state.close()
        assert profile.device_id == 1 and sorted(p.name for p in home.iterdir() if "tmp" in p.name) == []
        for name in ("state.key", "vault.json"):
            assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600
        reopened = DeviceState(home, create=False)
        try:
            assert reopened.profile().address == ALICE
        finally:
            reopened.close()
