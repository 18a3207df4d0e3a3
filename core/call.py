"""Call signalling (no media engine): what a ``call`` message carries (core/content.py) and the
state machine of one call, as pure code (times are parameters; nothing here reads a clock).

``CallSignal`` ``{call: 16-byte call id, signal, data}``:

- ``offer``  ``data``: the caller's session description (SDP, 1..``MAX_SDP_BYTES``)
- ``answer`` ``data``: the callee's session description
- ``ice``    ``data``: one ICE candidate line (0..``MAX_CANDIDATE_BYTES``; empty: no more)
- ``hangup`` ``data``: why, one of ``HANGUP_REASONS``

One call: ``idle -> outgoing`` (we offered) or ``idle -> incoming`` (an offer came); ``outgoing
-> connected`` on the answer, ``incoming -> connected`` when we answer; any of them ``-> ended``
on a hang-up from either side, or when nobody answered within ``ring_ms`` (``tick``).
``ended`` is final. ``step`` returns the new call and what to do (signals to send, candidates
to hand to the media engine); a local action the state does not allow is a
``LocalProtocolError`` (code ``call_state``); a remote signal out of place (a late answer, a
second offer, another call's id) is dropped and said so in ``Step.note``: the peer's word
never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .content_map import check_map, failer, line_problem, ordered
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "CallSignal", "Call", "Step", "CallTimeouts", "step", "start_call", "incoming_call",
    "OFFER", "ANSWER", "ICE", "HANGUP", "SIGNALS", "HANGUP_REASONS", "IDLE", "OUTGOING", "INCOMING", "CONNECTED", "ENDED",
    "CALL_ID_LEN", "MAX_SDP_BYTES", "MAX_CANDIDATE_BYTES",
]  # fmt: skip

OFFER, ANSWER, ICE, HANGUP = "offer", "answer", "ice", "hangup"
SIGNALS = (OFFER, ANSWER, ICE, HANGUP)
#: ended: normal end; declined: the callee refused; busy: the callee is in another call;
#: cancelled: the caller gave up before an answer; timeout: nobody answered in time
HANGUP_REASONS = ("ended", "declined", "busy", "cancelled", "timeout", "failed")
IDLE, OUTGOING, INCOMING, CONNECTED, ENDED = "idle", "outgoing", "incoming", "connected", "ended"


def why_ended(reason: str) -> str:
    """What a line says after "ended" or "hung up": the reason in brackets, none for a normal end."""
    return "" if reason in ("", "ended") else f" ({reason})"

CALL_ID_LEN = 16
MAX_SDP_BYTES = 16 * 1024  # a browser's audio+video offer is 3-6 KiB
MAX_CANDIDATE_BYTES = 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class CallSignal:
    call: bytes
    signal: str
    data: str

    def to_map(self) -> dict[str, Any]:
        value = {"call": self.call, "signal": self.signal, "data": self.data}
        _check(value, LocalProtocolError)
        return ordered(value)

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "CallSignal":
        return cls(**_check(value, RemoteProtocolError if remote else LocalProtocolError))


def _check(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    fail = failer("call signal", err)
    check_map(value, {"call": bytes, "signal": str, "data": str}, fail)
    if len(value["call"]) != CALL_ID_LEN:
        raise fail(f"a call id is {CALL_ID_LEN} bytes")
    signal, data = value["signal"], value["data"]
    if signal not in SIGNALS:
        raise fail(f"unknown signal {signal!r}")
    if signal in (OFFER, ANSWER):
        if not 0 < len(data.encode()) <= MAX_SDP_BYTES:
            raise fail(f"a session description is 1..{MAX_SDP_BYTES} bytes")
        if "\x00" in data:
            raise fail("a session description holds no NUL")
    elif signal == ICE:
        problem = line_problem(data, "a candidate", max_bytes=MAX_CANDIDATE_BYTES)
        if problem is not None:
            raise fail(problem)
    elif data not in HANGUP_REASONS:
        raise fail(f"a hang-up's reason is one of {', '.join(HANGUP_REASONS)}")
    return dict(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class CallTimeouts:
    #: how long a call rings (either side) before it ends unanswered
    ring_ms: int = 60_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    id: bytes
    peer: str  # the other side's account
    state: str
    #: when it entered ``state`` (ms, the caller of ``step``'s clock)
    since: int
    #: ended: one of HANGUP_REASONS, or "missed" (an incoming call nobody answered)
    reason: str = ""
    #: the remote session description once known
    remote_sdp: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    call: Call
    #: signals to send to the peer, in order
    send: tuple[CallSignal, ...] = ()
    #: remote ICE candidates for the media engine
    candidates: tuple[str, ...] = ()
    #: why a remote signal was dropped ("" when it was not)
    note: str = ""


def start_call(call_id: bytes, peer: str, sdp: str, *, now: int) -> Step:
    """``idle -> outgoing``: we call ``peer`` with our session description."""
    offer = CallSignal(call=call_id, signal=OFFER, data=sdp)
    offer.to_map()  # refuses a bad id or description before anything changes
    return Step(call=Call(id=call_id, peer=peer, state=OUTGOING, since=now), send=(offer,))


def incoming_call(offer: CallSignal, peer: str, *, now: int, busy: bool = False) -> Step:
    """``idle -> incoming`` on ``peer``'s offer; ``busy`` (already in a call): it ends at once
    and the peer is told."""
    if offer.signal != OFFER:
        raise LocalProtocolError("a call starts with an offer", code="call_state")
    call = Call(id=offer.call, peer=peer, state=INCOMING, since=now, remote_sdp=offer.data)
    if busy:
        return Step(call=replace(call, state=ENDED, reason="busy"), send=(_hangup(call, "busy"),))
    return Step(call=call)


def _hangup(call: Call, reason: str) -> CallSignal:
    return CallSignal(call=call.id, signal=HANGUP, data=reason)


def _ended(call: Call, reason: str, now: int) -> Call:
    return replace(call, state=ENDED, reason=reason, since=now)


def step(call: Call, now: int, *, local: str | None = None, data: str = "", remote: CallSignal | None = None,
         timeouts: CallTimeouts = CallTimeouts()) -> Step:  # fmt: skip
    """One transition: a ``local`` action (``answer`` with our description in ``data``, ``ice``
    with a candidate, ``hangup``), a ``remote`` signal from the peer, or neither (a tick: the
    ring timeout)."""
    if local is not None and remote is not None:
        raise LocalProtocolError("one step takes a local action or a remote signal, not both", code="local_error")
    if local is not None:
        return _local(call, local, data, now)
    if remote is not None:
        return _remote(call, remote, now)
    if call.state in (OUTGOING, INCOMING) and now - call.since >= timeouts.ring_ms:
        if call.state == OUTGOING:
            return Step(call=_ended(call, "timeout", now), send=(_hangup(call, "timeout"),))
        return Step(call=_ended(call, "missed", now))
    return Step(call=call)


def _local(call: Call, action: str, data: str, now: int) -> Step:
    def refuse() -> LocalProtocolError:
        return LocalProtocolError(f"cannot {action} a call that is {call.state}", code="call_state")

    if action == ANSWER:
        if call.state != INCOMING:
            raise refuse()
        answer = CallSignal(call=call.id, signal=ANSWER, data=data)
        answer.to_map()
        return Step(call=replace(call, state=CONNECTED, since=now), send=(answer,))
    if action == ICE:
        if call.state not in (OUTGOING, INCOMING, CONNECTED):
            raise refuse()
        candidate = CallSignal(call=call.id, signal=ICE, data=data)
        candidate.to_map()
        return Step(call=call, send=(candidate,))
    if action == HANGUP:
        if call.state == ENDED:
            raise refuse()
        reason = {OUTGOING: "cancelled", INCOMING: "declined"}.get(call.state, "ended")
        return Step(call=_ended(call, reason, now), send=(_hangup(call, reason),))
    raise LocalProtocolError(f"unknown call action {action!r} (answer, ice, hangup)", code="local_error")


def _remote(call: Call, signal: CallSignal, now: int) -> Step:
    if signal.call != call.id:
        return Step(call=call, note="a signal of another call")
    if call.state == ENDED:
        return Step(call=call, note="the call has ended")
    if signal.signal == ANSWER:
        if call.state != OUTGOING:
            return Step(call=call, note=f"an answer to a call that is {call.state}")
        return Step(call=replace(call, state=CONNECTED, since=now, remote_sdp=signal.data))
    if signal.signal == ICE:
        return Step(call=call, candidates=(signal.data,) if signal.data else ())
    if signal.signal == HANGUP:
        return Step(call=_ended(call, signal.data, now))
    return Step(call=call, note="a second offer for the same call")
