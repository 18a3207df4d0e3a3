"""Calls from this device (issue 17 item 6): core/call.py's state machine run on the device's
state (client/state_call.py), its signals carried end to end encrypted (client/polls.py
``call_signal``). There is no media engine: a session description and candidates are opaque
text the user (or the program driving the SDK) supplies; ``NO_MEDIA_SDP`` says "no media" for a
client that has none (the chat app, ``sonet call`` without ``--sdp``).

Each call is kept on the device, so ``sonet call answer`` / ``hangup`` in a later process
continue the call a ``recv`` learnt of; the ring timeout (``CallTimeouts.ring_ms``) is applied
whenever a call is read (``tick``): an incoming call nobody answered is ``missed``, an outgoing
one ``timeout`` (the peer's device times it out alike, so nothing is sent for it).

A local action is kept before its signal goes; if the signal cannot go, the call is put back
as it was (the peer was not told) and the error is the caller's. A remote signal (from
client/receiving.py, through ``on_call_signal``) never raises: one out of place (for an ended
call, from someone not in the call, for a call this device does not know) changes nothing and
says why, and that note is kept with the message, so ``recv`` shows it.

Not yet: a callee's other devices keep ringing after one of them answered (a signal goes to
the peer's devices only), and an offer while in another call rings too (no ``busy``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sonet.core.address import parse_address
from sonet.core.call import (
    ANSWER, CALL_ID_LEN, CONNECTED, ENDED, HANGUP, ICE, INCOMING, OFFER, Call, CallSignal, CallTimeouts, incoming_call, start_call, step,
)  # fmt: skip
from sonet.core.errors import LocalProtocolError

from .state_call import KeptCall

if TYPE_CHECKING:
    from .sdk import Device
    from .state import DeviceState, InboxMessage

__all__ = ["Calls", "NO_MEDIA_SDP", "parse_call_id", "on_call_signal", "after_call_message", "call_phase", "RINGING", "ACTIVE"]

#: a valid session description with no media section: what a client without media answers
NO_MEDIA_SDP = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=sonet (no media)\r\nt=0 0\r\n"
#: the peer's candidates kept per call (a browser gathers a handful; the rest is noise)
MAX_KEPT_CANDIDATES = 64
#: how a call is shown: ringing (either way), active (answered), ended
RINGING, ACTIVE = "ringing", "active"


def call_phase(call: Call) -> str:
    return {CONNECTED: ACTIVE, ENDED: ENDED}.get(call.state, RINGING)


def parse_call_id(text: str) -> bytes:
    """A call id as ``sonet call`` prints it (32 hex digits)."""
    try:
        call_id = bytes.fromhex(text.strip())
    except ValueError:
        call_id = b""
    if len(call_id) != CALL_ID_LEN:
        raise LocalProtocolError(f"{text!r} is not a call id ({CALL_ID_LEN * 2} hex digits, as `sonet call` prints it)", code="bad_input")
    return call_id


def _after(kept: KeptCall, call: Call, *, candidates: tuple[str, ...] = ()) -> KeptCall:
    """``kept`` with the call's new state, and when it was answered or ended."""
    answered, ended = kept.answered_at, kept.ended_at
    if call.state == CONNECTED and answered is None:
        answered = call.since
    if call.state == ENDED and ended is None:
        ended = call.since
    kept_candidates = (kept.candidates + candidates)[:MAX_KEPT_CANDIDATES]
    return replace(kept, call=call, answered_at=answered, ended_at=ended, candidates=kept_candidates)


def _tick(state: DeviceState, kept: KeptCall, now: int, timeouts: CallTimeouts) -> KeptCall:
    """The ring timeout applied (and kept, when it ended the call)."""
    ticked = step(kept.call, now, timeouts=timeouts).call
    if ticked == kept.call:
        return kept
    kept = _after(kept, ticked)
    state.keep_call(kept)
    return kept


def on_call_signal(state: DeviceState, sender: str, signal: CallSignal, *, now: int, timeouts: CallTimeouts = CallTimeouts()) -> str:
    """Apply a signal ``sender`` sent; "" when it was, else why it changed nothing."""
    with state.transaction():
        kept = state.kept_call(signal.call)
        if kept is None:
            if signal.signal != OFFER:
                return "a signal of a call this device does not know"
            state.keep_call(KeptCall(call=incoming_call(signal, sender, now=now).call, direction="incoming", started_at=now))
            return ""
        if kept.call.peer != sender:
            return f"a signal for a call with {kept.call.peer}, not {sender}"
        kept = _tick(state, kept, now, timeouts)
        done = step(kept.call, now, remote=signal, timeouts=timeouts)
        if done.note:
            return done.note
        state.keep_call(_after(kept, done.call, candidates=done.candidates))
        return ""


def after_call_message(state: DeviceState, stored: InboxMessage, *, now: int) -> InboxMessage:
    """A received ``call`` message applied to its call (client/receiving.py), with why it was
    ignored (``fields.call.note``) when it was."""
    raw = stored.fields.get("call")
    if not isinstance(raw, dict):
        return stored
    signal = CallSignal.from_map({"call": bytes.fromhex(raw["id"]), "signal": raw["signal"], "data": raw["data"]})
    note = on_call_signal(state, stored.sender, signal, now=now)
    if not note:
        return stored
    return replace(stored, fields={**stored.fields, "call": {**raw, "note": note}})


class Calls:
    """This device's calls: place, answer, send candidates, hang up, reject, list."""

    def __init__(self, device: Device, *, timeouts: CallTimeouts = CallTimeouts()) -> None:
        self._device = device
        self._state = device.state
        self._timeouts = timeouts

    def get(self, call_id: bytes) -> KeptCall:
        kept = self._state.kept_call(call_id)
        if kept is None:
            raise LocalProtocolError(f"this device knows no call {call_id.hex()} (`sonet call list` shows the calls it knows)", code="unknown_call")
        return _tick(self._state, kept, self._device._clock(), self._timeouts)

    def list(self, *, limit: int = 20) -> list[KeptCall]:
        """The newest ``limit`` calls, newest first, with their ring timeouts applied."""
        now = self._device._clock()
        return [_tick(self._state, k, now, self._timeouts) for k in self._state.kept_calls(limit=limit)]

    async def start(self, address: str, sdp: str) -> KeptCall:
        """Call ``address`` with our session description; the call as kept."""
        peer = str(parse_address(address))
        if peer == self._state.profile().address:
            raise LocalProtocolError("a call is made to someone else", code="bad_input")
        now = self._device._clock()
        started = start_call(self._device._rng(CALL_ID_LEN), peer, sdp, now=now)  # refuses a bad description first
        kept = KeptCall(call=started.call, direction="outgoing", started_at=now)
        self._state.keep_call(kept)
        try:
            await self._send(peer, started.send)
        except BaseException:
            # kept, so `call list` shows the attempt; ended, since the peer never heard of it
            self._state.keep_call(_after(kept, replace(kept.call, state=ENDED, reason="failed", since=self._device._clock())))
            raise
        return kept

    async def answer(self, call_id: bytes, sdp: str) -> KeptCall:
        return await self._act(call_id, ANSWER, sdp)

    async def ice(self, call_id: bytes, candidate: str) -> KeptCall:
        return await self._act(call_id, ICE, candidate)

    async def hangup(self, call_id: bytes) -> KeptCall:
        """End the call: cancelled (ours, still ringing), declined (theirs, ringing) or ended."""
        return await self._act(call_id, HANGUP, "")

    async def reject(self, call_id: bytes) -> KeptCall:
        """Decline a call that rings here."""
        kept = self.get(call_id)
        if kept.call.state != INCOMING:
            what = "our own call" if kept.direction == "outgoing" and kept.call.state != ENDED else f"a call that is {call_phase(kept.call)}"
            raise LocalProtocolError(f"cannot reject {what} (call {call_id.hex()}): only an incoming call that rings", code="call_state")
        return await self._act(call_id, HANGUP, "")

    async def _act(self, call_id: bytes, action: str, data: str) -> KeptCall:
        before = self.get(call_id)
        done = step(before.call, self._device._clock(), local=action, data=data, timeouts=self._timeouts)
        after = _after(before, done.call)
        self._state.keep_call(after)
        try:
            await self._send(after.call.peer, done.send)
        except BaseException:
            # the peer was not told: the call is as it was, unless a signal changed it meanwhile
            if self._state.kept_call(call_id) == after:
                self._state.keep_call(before)
            raise
        return after

    async def _send(self, peer: str, signals: tuple[CallSignal, ...]) -> None:
        for signal in signals:
            await self._device.send_call_signal(peer, signal, timeouts=self._timeouts)
