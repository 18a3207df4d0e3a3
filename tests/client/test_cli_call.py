"""Calls from the command line and the SDK (issue 17 item 6; client/calls.py, client/cli_call.py,
client/state_call.py): a call placed, answered, given a candidate and hung up across processes
(each step a `sonet` run of its own, the call kept on the device), the ring timeout, and the
refusals: a bad or unknown call id, an answer twice, a hang-up of an ended call, an oversized
session description; a peer's signal out of place changes nothing and recv says why. Real
devices against an in-process node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sonet.client.history import History
from sonet.client import state_call
from sonet.client.sdk import Device
from sonet.client.state import DeviceState
from sonet.client.state_call import KeptCall
from sonet.core.call import MAX_SDP_BYTES, Call, CallSignal
from sonet.core.errors import LocalProtocolError
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, Clock, run_cli, shown

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")

OFFER = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = "v=0\r\no=bob 2 2 IN IP4 192.0.2.2\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
CANDIDATE = "candidate:1 1 UDP 2122252543 192.0.2.1 54400 typ host"


async def refused(code: str, call: Awaitable[object]) -> str:
    with pytest.raises(LocalProtocolError) as info:
        await call
    assert info.value.code == code, info.value
    return str(info.value)


async def _calls(capsys: pytest.CaptureFixture[str], device: Device) -> list[dict]:
    rc, listed = await run_cli(capsys, device, "call", "list")
    assert rc == 0
    return listed


async def _recv(capsys: pytest.CaptureFixture[str], device: Device) -> list[dict]:
    rc, got = await run_cli(capsys, device, "recv")
    assert rc == 0
    return [o for o in got if o.get("type") == "call"]


async def test_a_call_placed_answered_and_hung_up_step_by_step_from_the_command_line(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    rc, [placed] = await run_cli(capsys, alice, "call", BOB, "--sdp", OFFER)
    assert rc == 0
    call_id = placed["id"]
    # the sides named as recv and history name them (cli10: was "peer")
    assert (placed["from"], placed["to"], placed["direction"], placed["state"], placed["reason"], placed["answered_at"]) == (
        ALICE, BOB, "outgoing", "ringing", "", None
    )

    [offer] = await _recv(capsys, bob)
    assert (offer["from"], offer["call"]["id"], offer["call"]["signal"], offer["call"]["data"]) == (ALICE, call_id, "offer", OFFER)
    [ringing] = await _calls(capsys, bob)
    assert (ringing["id"], ringing["from"], ringing["to"], ringing["direction"], ringing["state"], ringing["remote_sdp"]) == (
        call_id, ALICE, BOB, "incoming", "ringing", OFFER
    )

    rc, [answered] = await run_cli(capsys, bob, "call", "answer", call_id, "--sdp", ANSWER)
    assert rc == 0 and answered["state"] == "active" and answered["answered_at"] is not None
    rc, [again] = await run_cli(capsys, bob, "call", "answer", call_id)
    assert rc == 1 and again["error"]["code"] == "call_state"

    [answer] = await _recv(capsys, alice)
    assert answer["call"]["signal"] == "answer"
    [active] = await _calls(capsys, alice)
    assert (active["state"], active["remote_sdp"]) == ("active", ANSWER)

    rc, [sent] = await run_cli(capsys, alice, "call", "ice", call_id, CANDIDATE)
    assert rc == 0 and sent["state"] == "active"
    [candidate] = await _recv(capsys, bob)
    assert (candidate["call"]["signal"], candidate["call"]["data"]) == ("ice", CANDIDATE)
    [with_candidate] = await _calls(capsys, bob)
    assert with_candidate["candidates"] == [CANDIDATE]

    rc, [hung_up] = await run_cli(capsys, bob, "call", "hangup", call_id)
    assert rc == 0 and (hung_up["state"], hung_up["reason"]) == ("ended", "ended") and hung_up["ended_at"] is not None
    [hangup] = await _recv(capsys, alice)
    assert (hangup["call"]["signal"], hangup["call"]["data"]) == ("hangup", "ended")
    [ended] = await _calls(capsys, alice)
    assert (ended["state"], ended["reason"]) == ("ended", "ended")

    rc, [error] = await run_cli(capsys, alice, "call", "hangup", call_id)
    assert rc == 1 and error["error"]["code"] == "call_state" and "ended" in error["error"]["message"]
    rc, lines = await run_cli(capsys, alice, "call", "list", json_out=False)
    assert rc == 0 and lines == [f"{call_id} outgoing to {BOB}: ended at {ended['ended_at']}"]
    assert History(bob.state).messages(ALICE) == []  # signalling is no message of the conversation


async def test_refusals_name_the_problem_in_one_line_and_send_nothing(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    rc, [error] = await run_cli(capsys, alice, "call", "answer", "not-hex")
    assert rc == 2 and error["error"]["code"] == "usage" and "'not-hex' is not a call id" in error["error"]["message"]  # ux12: bad_input, exit 1
    rc, [error] = await run_cli(capsys, alice, "call", "hangup", "00" * 16)
    assert rc == 1 and error["error"]["code"] == "unknown_call"
    rc, [error] = await run_cli(capsys, alice, "call", "answer")
    assert rc == 2 and error["error"]["code"] == "usage"
    rc, [error] = await run_cli(capsys, alice, "call", "bob")
    assert rc == 2 and error["error"]["code"] == "usage"
    rc, [error] = await run_cli(capsys, alice, "call", ALICE)
    assert rc == 1 and error["error"]["code"] == "bad_input"

    big = tmp_path / "offer.sdp"
    big.write_text("a" * (MAX_SDP_BYTES + 1))
    rc, [error] = await run_cli(capsys, alice, "call", BOB, "--sdp-file", str(big))
    assert rc == 1 and error["error"]["code"] == "bad_input" and str(MAX_SDP_BYTES) in error["error"]["message"]
    rc, [error] = await run_cli(capsys, alice, "call", BOB, "--sdp-file", str(tmp_path / "missing.sdp"))
    assert rc == 1 and error["error"]["code"] == "bad_input"
    assert await _calls(capsys, alice) == []
    assert await _recv(capsys, bob) == []

    rc, [placed] = await run_cli(capsys, alice, "call", BOB)  # no --sdp: a description without media
    rc, [error] = await run_cli(capsys, alice, "call", "reject", placed["id"])
    assert rc == 1 and error["error"]["code"] == "call_state"  # one's own call is hung up, not rejected
    rc, [error] = await run_cli(capsys, alice, "call", "answer", placed["id"])
    assert rc == 1 and error["error"]["code"] == "call_state"
    [offer] = await _recv(capsys, bob)
    assert offer["call"]["data"].startswith("v=0")
    rc, [rejected] = await run_cli(capsys, bob, "call", "reject", placed["id"])
    assert rc == 0 and (rejected["state"], rejected["reason"]) == ("ended", "declined")
    [declined] = await _recv(capsys, alice)
    assert declined["call"]["data"] == "declined" and "note" not in declined["call"]
    assert [(c["state"], c["reason"]) for c in await _calls(capsys, alice)] == [("ended", "declined")]


async def test_a_call_nobody_answers_is_missed_on_one_side_and_timed_out_on_the_other(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    placed = await alice.call(BOB, OFFER)
    shown(bob, await bob.receive())
    [ringing] = bob.calls()
    assert (ringing.direction, ringing.call.state) == ("incoming", "incoming")
    clock.advance(60_000)
    [missed] = bob.calls()
    assert (missed.call.state, missed.call.reason, missed.ended_at) == ("ended", "missed", clock())
    [timed_out] = alice.calls()
    assert (timed_out.call.state, timed_out.call.reason) == ("ended", "timeout")
    await refused("call_state", bob.answer_call(placed.call.id, ANSWER))
    await refused("call_state", alice.hang_up(placed.call.id))


async def test_a_peer_signal_out_of_place_changes_nothing_and_recv_says_why(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
    placed = await alice.call(BOB, OFFER)
    call_id = placed.call.id
    await alice.hang_up(call_id)  # cancelled before bob saw it ring
    [offer, cancel] = await _recv(capsys, bob)
    assert (offer["call"]["signal"], cancel["call"]["data"]) == ("offer", "cancelled")
    assert [(c.call.state, c.call.reason) for c in bob.calls()] == [("ended", "cancelled")]

    # a late (or modified) client answers the ended call anyway: alice's device drops it, saying why
    await bob.send_call_signal(ALICE, CallSignal(call=call_id, signal="answer", data=ANSWER))
    # someone else signals on alice's call id, and on a call nobody placed
    await carol.send_call_signal(ALICE, CallSignal(call=call_id, signal="hangup", data="ended"))
    await carol.send_call_signal(ALICE, CallSignal(call=b"\x07" * 16, signal="ice", data=CANDIDATE))
    late, stranger, unknown = await _recv(capsys, alice)
    assert late["call"]["note"] == "the call has ended"
    assert stranger["call"]["note"] == f"a signal for a call with {BOB}, not carol@{BOB.split('@')[1]}"
    assert unknown["call"]["note"] == "a signal of a call this device does not know"
    [kept] = alice.calls()
    assert (kept.call.state, kept.call.reason, kept.call.remote_sdp) == ("ended", "cancelled", "")

    await bob.send_call_signal(ALICE, CallSignal(call=call_id, signal="answer", data=ANSWER))
    rc, lines = await run_cli(capsys, alice, "recv", json_out=False)
    assert rc == 0 and any(f"(call {call_id.hex()}; ignored: the call has ended)" in line for line in lines), lines


def test_the_device_keeps_the_newest_calls_sealed_and_drops_the_oldest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_call, "MAX_KEPT_CALLS", 3)
    state = DeviceState(tmp_path / "home")
    try:
        for n in range(5):
            call = Call(id=bytes([n]) * 16, peer=BOB, state="incoming", since=1_000 + n, remote_sdp=f"v=0 secret-{n}")
            state.keep_call(KeptCall(call=call, direction="incoming", started_at=1_000 + n))
        assert [k.call.id[0] for k in state.kept_calls(limit=10)] == [4, 3, 2]
        assert state.kept_call(bytes([0]) * 16) is None
        raw = b"".join(bytes(r[0]) for r in state._db.execute("SELECT body FROM calls"))
        assert b"secret" not in raw and BOB.encode() not in raw  # sealed by the vault
    finally:
        state.close()
