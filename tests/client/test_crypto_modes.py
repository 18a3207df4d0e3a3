"""The three crypto modes end to end (client/crypto_modes.py, client/sessions.py): a real node
in the test's trio run and real devices.

Each mode carries messages both ways on a node whose minimum is that mode; ``send`` with a mode
starts a session in it, never below the device's own minimum (fixed at registration) nor its
node's; a device refuses a first message below its minimum; and a node that strips the ML-KEM
prekey from a hybrid device's bundle gets the send refused, never a classical session. Also:
sessions below a raised node minimum, the node refusing prekeys of kinds a mode never makes,
and ``register`` / ``send --crypto-mode`` through the CLI (in-process).
"""

from __future__ import annotations

import os

import pytest
import trio

from sonet.client import cli
from sonet.client.connection import ConnectError
from sonet.client.crypto_modes import device_minimum
from sonet.client.sdk import Device
from sonet.core.client_api import PublishPrekeys
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sonet.core.ratchet import SessionState, generate_prekey
from sonet.node.client_checks import RequestError, check_prekeys

from .conftest import ALICE, BOB, HANG_S, node_db, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

CLASSICAL, HYBRID, PQ = CryptoMode.CLASSICAL, CryptoMode.HYBRID, CryptoMode.PQ


async def _register(make_device, node, user: str, mode: CryptoMode, minimum: CryptoMode | None = None) -> Device:  # noqa: ANN001
    device = make_device(user)
    await device.register(f"{user}@{node.config.name}", node.url, await node.mint_invite(), mode=mode, minimum=minimum)
    return device


def _session_mode(device: Device, address: str, peer_device: int = 1) -> CryptoMode:
    raw = device.state.session(address, peer_device)
    assert raw is not None
    return SessionState.from_bytes(raw).mode


@pytest.mark.parametrize("mode", list(CryptoMode))
async def test_each_mode_carries_messages_both_ways_on_a_node_of_that_minimum(clock, start_node, make_device, mode) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=mode)
        alice = await _register(make_device, alpha, "alice", mode)
        bob = await _register(make_device, alpha, "bob", mode)
        assert device_minimum(alice.state) is mode and device_minimum(bob.state) is mode

        await alice.send_text(BOB, "first")
        received = await bob.receive()
        assert texts(bob, received) == [(ALICE, "first")] and received.rejected == []
        await bob.send_text(ALICE, "reply")
        received = await alice.receive()
        assert texts(alice, received) == [(BOB, "reply")] and received.rejected == []
        assert _session_mode(alice, BOB) is mode and _session_mode(bob, ALICE) is mode


async def test_send_with_a_mode_starts_a_session_in_it(clock, start_node, make_device) -> None:
    """Two hybrid devices whose minimum is classical: each --crypto-mode starts a new session in
    that mode; replies (on the newest session) and the earlier sessions keep working."""
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=CLASSICAL)
        bob = await _register(make_device, alpha, "bob", HYBRID, minimum=CLASSICAL)
        for mode in (PQ, CLASSICAL, HYBRID):
            await alice.send_text(BOB, f"in {mode.value}", mode=mode)
            received = await bob.receive()
            assert texts(bob, received) == [(ALICE, f"in {mode.value}")] and received.rejected == []
            assert _session_mode(alice, BOB) is mode and _session_mode(bob, ALICE) is mode
            await bob.send_text(ALICE, f"back in {mode.value}")
            received = await alice.receive()
            assert texts(alice, received) == [(BOB, f"back in {mode.value}")] and received.rejected == []
        # the same mode again reuses the session instead of starting another
        before = alice.state.previous_sessions(BOB, 1)
        await alice.send_text(BOB, "still hybrid", mode=HYBRID)
        assert alice.state.previous_sessions(BOB, 1) == before
        assert texts(bob, await bob.receive()) == [(ALICE, "still hybrid")]


async def test_send_refuses_a_mode_below_the_device_minimum(clock, start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID)
        bob = await _register(make_device, alpha, "bob", HYBRID, minimum=CLASSICAL)
        with pytest.raises(LocalProtocolError) as info:
            await alice.send_text(BOB, "weak", mode=CLASSICAL)
        assert info.value.code == "crypto_mode_refused"
        assert str(info.value) == "crypto mode classical is below this device's minimum (hybrid)"
        assert alice.state.session(BOB, 1) is None and alice.state.sent_messages(10) == []
        assert texts(bob, await bob.receive()) == []


async def test_send_refuses_a_mode_below_the_node_minimum(clock, start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=HYBRID)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=CLASSICAL)
        await _register(make_device, alpha, "bob", HYBRID)
        with pytest.raises(LocalProtocolError) as info:
            await alice.send_text(BOB, "weak", mode=CLASSICAL)
        assert info.value.code == "crypto_mode_refused"
        assert str(info.value) == f"crypto mode classical is below the minimum of {alpha.config.name} (hybrid)"
        await alice.send_text(BOB, "strong", mode=PQ)  # above both minimums
        assert _session_mode(alice, BOB) is PQ


async def test_registering_below_the_node_minimum_is_refused(clock, start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=HYBRID)
        device = make_device("alice")
        with pytest.raises(ConnectError, match="identity key uses crypto mode classical, below the minimum hybrid"):
            await device.register(ALICE, alpha.url, await alpha.mint_invite(), mode=CLASSICAL)
        assert not device.state.registered()
        with pytest.raises(LocalProtocolError, match="a device with classical keys cannot require crypto mode hybrid"):
            await make_device("bob").register(BOB, alpha.url, await alpha.mint_invite(), mode=CLASSICAL, minimum=HYBRID)


async def test_a_mode_the_keys_cannot_run_is_refused(clock, start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", CLASSICAL)
        bob = await _register(make_device, alpha, "bob", HYBRID, minimum=CLASSICAL)
        with pytest.raises(LocalProtocolError, match="this device has classical keys: it cannot run a pq session"):
            await alice.send_text(BOB, "x", mode=PQ)
        with pytest.raises(LocalProtocolError, match=f"{ALICE} device 1 has classical keys: it cannot run a hybrid session"):
            await bob.send_text(ALICE, "x", mode=HYBRID)
        # by default they meet in the mode both can run
        await bob.send_text(ALICE, "classical it is")
        assert texts(alice, await alice.receive()) == [(BOB, "classical it is")]


async def test_a_hybrid_minimum_device_refuses_a_classical_session_offered_by_a_peer(clock, start_node, make_device) -> None:
    """Alice (hybrid keys, minimum classical) starts a classical session with Bob, whose minimum
    is hybrid: Bob refuses the first message before any key agreement, stores nothing; a
    hybrid session afterwards goes through."""
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=CLASSICAL)
        bob = await _register(make_device, alpha, "bob", HYBRID)
        await alice.send_text(BOB, "downgraded", mode=CLASSICAL)
        received = await bob.receive()
        assert texts(bob, received) == []
        assert received.rejected and all("crypto mode classical, below this device's minimum (hybrid)" in r for r in received.rejected)
        assert bob.state.session(ALICE, 1) is None
        await alice.send_text(BOB, "properly", mode=HYBRID)
        received = await bob.receive()
        assert texts(bob, received) == [(ALICE, "properly")] and received.rejected == []


async def test_a_hybrid_device_refuses_classical_accounts(clock, start_node, make_device) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        carol = await _register(make_device, alpha, "carol", CLASSICAL)
        bob = await _register(make_device, alpha, "bob", HYBRID)
        with pytest.raises(ProtocolError) as info:
            await bob.send_text(f"carol@{alpha.config.name}", "hi")
        assert info.value.code == "crypto_mode_refused"
        await carol.send_text(BOB, "hi bob")  # carol accepts hybrid keys; bob refuses her classical ones
        received = await bob.receive()
        assert texts(bob, received) == [] and any("classical" in r and "hybrid" in r for r in received.rejected)


@pytest.mark.parametrize("minimum", [CLASSICAL, HYBRID])
async def test_a_node_stripping_the_pq_prekey_cannot_downgrade_two_hybrid_devices(clock, start_node, make_device, minimum) -> None:
    """The node (here: its disk) drops Bob's ML-KEM prekeys, so the bundles it serves hold only
    the X25519 parts. The mode comes from Bob's signed device record, so Alice refuses the
    bundle instead of falling back to classical, even where every minimum would allow it."""
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=minimum)
        bob = await _register(make_device, alpha, "bob", HYBRID, minimum=minimum)
        db = node_db(alpha)
        db.execute("DELETE FROM prekeys WHERE account = ? AND kind = 'mlkem768'", (BOB,))
        db.close()
        with pytest.raises(RemoteProtocolError, match="prekey bundle for hybrid mode lacks the ML-KEM prekey"):
            await alice.send_text(BOB, "secret")
        assert alice.state.session(BOB, 1) is None
        assert texts(bob, await bob.receive()) == []


async def _cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(cli.main, list(argv))


async def test_cli_register_and_send_with_a_crypto_mode(clock, start_node, capsys, tmp_path) -> None:
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice, bob = str(tmp_path / "alice"), str(tmp_path / "bob")
        for home, user in ((alice, "alice"), (bob, "bob")):
            assert await _cli("--home", home, "register", f"{user}@{alpha.config.name}", "--node", alpha.url,
                              "--invite", await alpha.mint_invite(), "--crypto-mode", "classical") == 0  # fmt: skip
        assert await _cli("--home", alice, "send", BOB, "classical hello", "--crypto-mode", "classical") == 0
        assert await _cli("--home", bob, "recv") == 0
        assert f"{ALICE}: classical hello" in capsys.readouterr().out
        assert await _cli("--home", bob, "send", ALICE, "and back") == 0
        assert await _cli("--home", alice, "recv") == 0
        assert f"{BOB}: and back" in capsys.readouterr().out

        capsys.readouterr()
        assert await _cli("--home", alice, "send", BOB, "x", "--crypto-mode", "hybrid") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["sonet: error: this device has classical keys: it cannot run a hybrid session"]

        carol = str(tmp_path / "carol")
        assert await _cli("--home", carol, "register", f"carol@{alpha.config.name}", "--node", alpha.url,
                          "--invite", await alpha.mint_invite()) == 0  # fmt: skip  (hybrid by default)
        capsys.readouterr()
        assert await _cli("--home", carol, "send", ALICE, "x", "--crypto-mode", "classical") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "crypto mode classical is below this device's minimum (hybrid)" in err[0]


async def test_sessions_below_a_raised_node_minimum_are_replaced_and_refused(clock, start_node, make_device) -> None:
    """The operator raises the node's minimum to hybrid: a classical session no longer decrypts
    (a message sent on it before is refused) and the next send starts a hybrid one."""
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=CLASSICAL)
        bob = await _register(make_device, alpha, "bob", HYBRID, minimum=CLASSICAL)
        await alice.send_text(BOB, "classical", mode=CLASSICAL)
        assert texts(bob, await bob.receive()) == [(ALICE, "classical")]
        await bob.send_text(ALICE, "sent before the change")
        alpha.node.policy.minimum = HYBRID  # the node's policy object, as a restart with the new setting would have it
        received = await alice.receive()
        assert texts(alice, received) == []
        assert any(f"runs in crypto mode classical, below the minimum of {alpha.config.name} (hybrid)" in r for r in received.rejected)
        await alice.send_text(BOB, "hybrid now")
        assert _session_mode(alice, BOB) is HYBRID
        assert texts(bob, await bob.receive()) == [(ALICE, "hybrid now")]


@pytest.mark.parametrize(
    "mode, slot, kind", [(CLASSICAL, "pq_one_time", "mlkem768"), (PQ, "one_time", "x25519"), (PQ, "signed_prekey", "x25519")]
)
def test_the_node_refuses_prekeys_a_device_of_that_mode_never_makes(mode, slot, kind) -> None:
    identity = SigningKey.generate(mode, os.urandom)
    _secret, prekey = generate_prekey(identity, kind, 7, os.urandom)
    fields = {"signed_prekey": None, "pq_last_resort": None, "one_time": (), "pq_one_time": ()}
    fields[slot] = prekey.to_bytes() if slot == "signed_prekey" else (prekey.to_bytes(),)
    with pytest.raises(RequestError) as info:
        check_prekeys(PublishPrekeys(request=1, **fields), identity.public)
    assert info.value.code == "wrong_prekey_kind"
    assert str(info.value) == f"a {mode.value}-mode device publishes no {kind} prekeys ({slot})"


async def test_a_file_is_sent_in_the_crypto_mode_asked_for(clock, start_node, make_device, capsys, tmp_path) -> None:
    """`send ADDRESS --file F --crypto-mode M` ignored M (the upload path never passed it): the
    file message's new session now runs in M, and an M below the minimum is refused before any
    upload, as a text's is."""
    with trio.fail_after(HANG_S):
        alpha = await start_node(minimum_crypto_mode=CLASSICAL)
        alice = await _register(make_device, alpha, "alice", HYBRID, minimum=CLASSICAL)
        await _register(make_device, alpha, "bob", HYBRID, minimum=CLASSICAL)
        photo = tmp_path / "photo.bin"
        photo.write_bytes(os.urandom(3000))
        await alice.send_file(BOB, photo, mode=CLASSICAL)
        assert _session_mode(alice, BOB) is CLASSICAL
        blobs = alpha.data_dir / "blobs"
        uploaded = sorted(p for p in blobs.rglob("*") if p.is_file())

        home = str(tmp_path / "carol")
        assert await _cli("--home", home, "register", f"carol@{alpha.config.name}", "--node", alpha.url,
                          "--invite", await alpha.mint_invite(), "--crypto-mode", "classical") == 0  # fmt: skip
        capsys.readouterr()
        assert await _cli("--home", home, "send", BOB, "--file", str(photo), "--crypto-mode", "hybrid") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["sonet: error: this device has classical keys: it cannot run a hybrid session"]
        assert sorted(p for p in blobs.rglob("*") if p.is_file()) == uploaded  # refused before any upload
        assert await _cli("--home", home, "send", BOB, "--file", str(photo), "--crypto-mode", "classical") == 0
