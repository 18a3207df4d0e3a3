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

from .render import safe

__all__ = ["RingingScreen", "call_notice", "ACCEPTED", "REJECTED"]

ACCEPTED, REJECTED = "accept", "reject"


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
        return f"the call with {sender} ended ({call.get('data', '')})"
    return None
