"""An incoming call in the chat app (client/calls.py): a small window over the conversation,
a to accept, r to reject, Esc to let it ring (it ends as missed after the ring time). The app
has no media engine: accepting answers the call's signalling with a description without media,
and says so. What the other side's signals do to a call is said in one line
(``call_notice``)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from sonet.core.call import ENDED, why_ended

from ..state_call import KeptCall
from .render import safe

__all__ = ["RingingScreen", "call_notice", "call_command", "open_call_with", "ACCEPTED", "REJECTED", "CALLS_HELP"]

ACCEPTED, REJECTED = "accept", "reject"
CALLS_HELP = ("/call /hangup", "call the open conversation's contact (signalling only) · hang up")


def call_command(text: str) -> str | None:
    """``/call`` -> "call", ``/hangup`` -> "hangup"; None for any other text."""
    return {"/call": "call", "/hangup": "hangup"}.get(text.strip())


def open_call_with(calls: list[KeptCall], peer: str) -> KeptCall | None:
    """The newest call with ``peer`` that has not ended (what ``/hangup`` ends)."""
    return next((k for k in calls if k.call.peer == peer and k.call.state != ENDED), None)


class RingingScreen(ModalScreen[str | None]):
    """``peer`` calls: dismissed with ACCEPTED, REJECTED, or None (Esc: let it ring)."""

    BINDINGS = [Binding("a", "answer('accept')", "accept"), Binding("r", "answer('reject')", "reject"), Binding("escape", "answer('')", "later")]

    def __init__(self, peer: str, call_id: bytes) -> None:
        super().__init__()
        self.peer = peer
        self.call_id = call_id

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="small"):
            yield Static(Text(f"{safe(self.peer)} is calling", style="bold"), classes="title")
            yield Static(Text("signalling only: this app carries no audio or video", style="italic"))
            yield Static(Text("a accept · r reject · Esc let it ring", style="dim"))

    def action_answer(self, choice: str) -> None:
        self.dismiss(choice or None)


def call_notice(sender: str, call: dict[str, Any]) -> str | None:
    """The line the app says for a call signal from ``sender`` (None: nothing worth saying: a
    candidate, or an offer, which opens a RingingScreen instead)."""
    if call.get("note"):
        return f"ignored a call signal from {sender}: {call['note']}"
    signal = call.get("signal")
    if signal == "answer":
        return f"{sender} answered the call (no media in this client)"
    if signal == "hangup":
        return f"the call with {sender} ended{why_ended(str(call.get('data', '')))}"
    return None
