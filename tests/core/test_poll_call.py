"""core/poll.py ``tally`` (the same result from the same votes in any order) and core/call.py's
call state machine (pure: times are parameters)."""

from __future__ import annotations

import itertools

import pytest

from sonet.core.call import (
    ANSWER, CONNECTED, ENDED, HANGUP, ICE, INCOMING, OUTGOING, CallSignal, CallTimeouts, incoming_call, start_call, step,
)  # fmt: skip
from sonet.core.errors import LocalProtocolError
from sonet.core.poll import Ballot, Close, Poll, tally

POLL = Poll(question="Lunch?", options=("pizza", "sushi", "salad"))
ALICE, BOB, CAROL = "alice@alpha", "bob@beta", "carol@gamma"


def _b(voter: str, at: int, option: int, remove: bool = False, n: int = 0) -> Ballot:
    return Ballot(voter=voter, at=at, id=bytes([at % 256, n]) * 8, option=option, remove=remove)


def test_two_votes_and_a_close_give_the_same_result_in_any_order() -> None:
    ballots = [_b(ALICE, 10, 0), _b(BOB, 11, 1), _b(BOB, 12, 2), _b(CAROL, 30, 0)]  # bob changed his mind; carol too late
    closes = [Close(by=ALICE, at=20)]
    results = {tally(POLL, ALICE, order, closes) for order in itertools.permutations(ballots)}
    assert len(results) == 1
    (result,) = results
    assert result.voters == ((ALICE,), (), (BOB,)) and result.counts == (1, 0, 1)
    assert result.closed and result.closed_at == 20 and result.ignored == 1


def test_single_choice_keeps_the_newest_and_remove_takes_back() -> None:
    assert tally(POLL, ALICE, [_b(BOB, 1, 0), _b(BOB, 2, 1)]).counts == (0, 1, 0)
    assert tally(POLL, ALICE, [_b(BOB, 1, 0), _b(BOB, 2, 0, remove=True)]).counts == (0, 0, 0)
    # taking back an option one did not choose changes nothing
    assert tally(POLL, ALICE, [_b(BOB, 1, 0), _b(BOB, 2, 1, remove=True)]).counts == (1, 0, 0)


def test_multiple_choice_keeps_each_option() -> None:
    poll = Poll(question="Days?", options=("mo", "tu", "we"), multiple=True)
    result = tally(poll, ALICE, [_b(BOB, 1, 0), _b(BOB, 2, 2), _b(CAROL, 3, 2), _b(BOB, 4, 0, remove=True)])
    assert result.voters == ((), (), (BOB, CAROL)) and not result.closed


def test_equal_times_are_ordered_by_id_not_by_arrival() -> None:
    first, second = _b(BOB, 5, 0, n=1), _b(BOB, 5, 1, n=2)
    assert tally(POLL, ALICE, [first, second]) == tally(POLL, ALICE, [second, first])


def test_what_is_not_counted() -> None:
    result = tally(POLL, ALICE, [_b(BOB, 1, 3), _b(BOB, 2, -1)], [Close(by=BOB, at=0)])
    assert result.counts == (0, 0, 0) and result.ignored == 3 and not result.closed
    # the earliest of the author's closes counts
    assert tally(POLL, ALICE, [_b(BOB, 15, 0)], [Close(by=ALICE, at=20), Close(by=ALICE, at=10)]).closed_at == 10


# Calls -------------------------------------------------------------------------------------

CALL = bytes(range(16))
SDP = "v=0\r\n"


def test_a_call_answered_and_hung_up() -> None:
    out = start_call(CALL, BOB, SDP, now=0)
    assert out.call.state == OUTGOING and [s.signal for s in out.send] == ["offer"]
    came = incoming_call(out.send[0], ALICE, now=5)
    assert came.call.state == INCOMING and came.call.remote_sdp == SDP and came.send == ()
    answered = step(came.call, 10, local=ANSWER, data="v=0 answer")
    assert answered.call.state == CONNECTED and answered.send[0].signal == ANSWER
    connected = step(out.call, 12, remote=answered.send[0])
    assert connected.call.state == CONNECTED and connected.call.remote_sdp == "v=0 answer"
    ice = step(connected.call, 13, local=ICE, data="candidate:1 1 udp 1 10.0.0.1 5000 typ host")
    got = step(answered.call, 14, remote=ice.send[0])
    assert got.candidates == ("candidate:1 1 udp 1 10.0.0.1 5000 typ host",) and got.call == answered.call
    ended = step(connected.call, 20, local=HANGUP)
    assert ended.call.state == ENDED and ended.call.reason == "ended" and ended.send[0].data == "ended"
    other = step(answered.call, 21, remote=ended.send[0])
    assert other.call.state == ENDED and other.call.reason == "ended"


def test_ring_timeouts_are_parameters() -> None:
    out = start_call(CALL, BOB, SDP, now=0)
    timeouts = CallTimeouts(ring_ms=30_000)
    assert step(out.call, 29_999, timeouts=timeouts).call.state == OUTGOING
    gave_up = step(out.call, 30_000, timeouts=timeouts)
    assert gave_up.call.reason == "timeout" and gave_up.send[0].signal == HANGUP
    came = incoming_call(out.send[0], ALICE, now=0)
    missed = step(came.call, 30_000, timeouts=timeouts)
    assert missed.call.state == ENDED and missed.call.reason == "missed" and missed.send == ()
    answered = step(came.call, 10, local=ANSWER, data=SDP)
    assert step(answered.call, 10**9, timeouts=timeouts).call.state == CONNECTED  # no timeout once connected


def test_declined_cancelled_busy() -> None:
    out = start_call(CALL, BOB, SDP, now=0)
    assert step(out.call, 1, local=HANGUP).call.reason == "cancelled"
    came = incoming_call(out.send[0], ALICE, now=0)
    assert step(came.call, 1, local=HANGUP).send[0].data == "declined"
    busy = incoming_call(out.send[0], ALICE, now=0, busy=True)
    assert busy.call.state == ENDED and busy.send[0].data == "busy"


def test_local_actions_out_of_state_are_refused() -> None:
    out = start_call(CALL, BOB, SDP, now=0)
    for call, action in [(out.call, ANSWER), (step(out.call, 1, local=HANGUP).call, HANGUP), (step(out.call, 1, local=HANGUP).call, ICE)]:
        with pytest.raises(LocalProtocolError) as info:
            step(call, 2, local=action, data=SDP)
        assert info.value.code == "call_state"
    with pytest.raises(LocalProtocolError):
        start_call(CALL[:4], BOB, SDP, now=0)  # a bad id refused before any state
    with pytest.raises(LocalProtocolError):
        step(out.call, 2, local="dance")


def test_remote_signals_out_of_place_are_dropped_not_raised() -> None:
    out = start_call(CALL, BOB, SDP, now=0)
    late = CallSignal(call=bytes(16), signal=ANSWER, data=SDP)
    assert step(out.call, 1, remote=late).note == "a signal of another call"
    came = incoming_call(out.send[0], ALICE, now=0)
    stray = step(came.call, 1, remote=CallSignal(call=CALL, signal=ANSWER, data=SDP))
    assert stray.call == came.call and "answer" in stray.note
    assert step(came.call, 1, remote=out.send[0]).note == "a second offer for the same call"
    ended = step(came.call, 1, local=HANGUP).call
    assert step(ended, 2, remote=CallSignal(call=CALL, signal=HANGUP, data="ended")).note == "the call has ended"
