"""The chat app's screens over the main one: help, a new conversation, a contact (safety number
and its QR code, key-directory status), a group's members, and the identity-change warning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ..groups.api import GroupInfoView
from .actions import ACTIONS_HELP
from .commands import COMMANDS_HELP
from .qr import qr_text
from .render import TICKS, safe
from .session import ContactInfo

if TYPE_CHECKING:
    from .app import ChatApp

__all__ = ["HelpScreen", "AskScreen", "ContactScreen", "GroupScreen", "IdentityChangedScreen"]

HELP = [
    ("Enter", "open the highlighted conversation · send what you typed"),
    ("Tab", "switch between the conversation list and the compose box"),
    ("Esc", "back to the list · close a window"),
    ("PgUp PgDn", "scroll the messages"),
    ("Ctrl+N", "new conversation: user@node, or a group's name"),
    COMMANDS_HELP,
    *ACTIONS_HELP,
    ("F2", "contact: safety number, QR code, key directory; group: members"),
    ("F1 ?", "this help"),
    ("Ctrl+Q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,question_mark,q", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, what in HELP:
            keys.add_row(key, what)
        ticks = Table.grid(padding=(0, 2))
        ticks.add_column(no_wrap=True)
        ticks.add_column()
        for state, why in (
            ("pending", "waits on this device; goes by itself when the node is back"),
            ("sent", "a node holds it"),
            ("delivered", "a device of the recipient has it"),
            ("read", "the recipient read it"),
            ("failed", "not sent: the reason is shown under it"),
        ):
            glyph, style = TICKS[state]
            ticks.add_row(Text(glyph, style=style), why)
        with Vertical(id="dialog"):
            yield Static(Text("Sonet chat: keys", style="bold"), classes="title")
            yield Static(keys)
            yield Static(Text("\nTicks on your messages", style="bold"))
            yield Static(ticks, classes="title")
            yield Static(Text("Esc closes this help", style="dim"))


class AskScreen(ModalScreen[str | None]):
    """One line of input (a new conversation, a member to add); None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, placeholder: str, *, value: str = "") -> None:
        super().__init__()
        self._title = title
        self._placeholder = placeholder
        self._value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="small"):
            yield Static(Text(self._title, style="bold"), classes="title")
            yield Input(self._value, placeholder=self._placeholder, id="answer")
            yield Static(Text("Enter to confirm, Esc to cancel", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ContactScreen(ModalScreen[None]):
    """The safety number with a contact, as digits and as the QR code their device scans, and
    what the key directory says about their key."""

    BINDINGS = [Binding("escape,f2", "app.pop_screen", "close"), Binding("t", "trust", "trust the new key", show=False)]

    def __init__(self, info: ContactInfo) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        info = self.info
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text(f"Contact {info.address}", style="bold"), classes="title")
            if info.safety is None:
                yield Static(Text(safe(f"could not fetch their keys: {info.error}"), style="red"))
                yield Static(Text("Esc closes", style="dim"))
                return
            with Horizontal():
                yield Static(qr_text(info.safety.qr), id="qr")
                yield Static(self._details(), id="details")

    def _details(self) -> Text:
        info = self.info
        assert info.safety is not None
        groups = info.safety.number.split()
        out = Text("Safety number\n", style="bold")
        for i in range(0, len(groups), 4):
            out.append(" ".join(groups[i : i + 4]) + "\n")
        out.append("Compare it with theirs in person or on a call, or let them scan the code.\n\n", style="dim")
        lookup = info.lookup
        out.append("Key directory\n", style="bold")
        if lookup is None:
            out.append(safe(f"not checked: {info.error}\n"), style="yellow")
        else:
            proven = lookup.checked.proven
            out.append(f"identity {lookup.view.identity.fingerprint[:16]}…\n")
            out.append(f"leaf {proven.index} of {proven.head.node}'s log (size {proven.head.size})\n")
            witnesses = ", ".join(lookup.checked.witnesses) or "none"
            out.append(safe(f"witnesses: {witnesses}\n"))
            count = len(lookup.view.devices)
            out.append(f"{count} device{'s' if count != 1 else ''}\n")
        if info.safety.changed or (lookup is not None and lookup.identity_changed):
            out.append("\n⚠ their identity key changed since you trusted it.\n", style="bold red")
            out.append("Press t to trust the new key once the numbers match.\n", style="red")
        out.append("\nEsc closes", style="dim")
        return out

    def action_trust(self) -> None:
        app: ChatApp = self.app  # type: ignore[assignment]
        if self.info.safety is not None and self.info.safety.changed:
            app.trust(self.info.address)
            self.dismiss(None)


class GroupScreen(ModalScreen[None]):
    """A group's members; admins add (a) and remove (d) members."""

    BINDINGS = [
        Binding("escape,f2", "app.pop_screen", "close"),
        Binding("a", "add", "add a member"),
        Binding("d,delete", "remove", "remove the highlighted member"),
    ]

    def __init__(self, info: GroupInfoView, me: str) -> None:
        super().__init__()
        self.info = info
        self.me = me

    @property
    def is_admin(self) -> bool:
        return self.me in self.info.admins

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self._heading(), classes="title")
            yield OptionList(*self._members(), id="members")
            hint = "a add · d remove · Esc close" if self.is_admin else "only an admin can add or remove members · Esc closes"
            yield Static(Text(hint, style="dim"), id="hint")

    def _heading(self) -> Text:
        info = self.info
        out = Text(f"# {safe(info.name)}", style="bold")
        if info.topic:
            out.append(f"  {safe(info.topic)}", style="italic")
        out.append(safe(f"\nhosted by {info.hub} · {len(info.members)} members"), style="dim")
        if not info.active:
            out.append(" · you are no longer a member", style="yellow")
        return out

    def _members(self) -> list[Option]:
        rows = []
        for m in self.info.members:
            line = Text(safe(m.account).ljust(32), style="bold" if m.account == self.me else "")
            line.append("admin  " if m.admin else "       ", style="cyan")
            line.append(f"{len(m.devices)} device{'s' if len(m.devices) != 1 else ''}", style="dim")
            rows.append(Option(line, id=m.account))
        return rows

    def show(self, info: GroupInfoView) -> None:
        self.info = info
        self.query_one(".title", Static).update(self._heading())
        members = self.query_one("#members", OptionList)
        members.clear_options()
        members.add_options(self._members())

    def say(self, text: str, *, error: bool = False) -> None:
        self.query_one("#hint", Static).update(Text(safe(text), style="red" if error else "dim"))

    def action_add(self) -> None:
        if not self.is_admin:
            self.say("only an admin can add members", error=True)
            return
        app: ChatApp = self.app  # type: ignore[assignment]

        def add(who: str | None) -> None:
            if who:
                app.group_change(self, "add", who)

        self.app.push_screen(AskScreen(f"Add a member to {safe(self.info.name)}", "user@node"), add)

    def action_remove(self) -> None:
        if not self.is_admin:
            self.say("only an admin can remove members", error=True)
            return
        option = self.query_one("#members", OptionList).highlighted_option
        if option is None or option.id is None:
            return
        app: ChatApp = self.app  # type: ignore[assignment]
        app.group_change(self, "remove", option.id)


class IdentityChangedScreen(ModalScreen[bool]):
    """Sending to a contact whose identity key changed is blocked until the user confirms, as
    `sonet send` refuses until `sonet trust`: True to trust the new key (and send), False not."""

    BINDINGS = [
        Binding("t", "confirm", "trust and send"),
        Binding("v", "view", "view the safety number"),
        Binding("escape,n", "cancel", "do not send"),
    ]

    def __init__(self, address: str, text: str) -> None:
        super().__init__()
        self.address = address
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="warning"):
            yield Static(Text(safe(f"⚠ The identity key of {self.address} changed"), style="bold red"), classes="title")
            yield Static(
                Text(
                    "Someone may be pretending to be them, or they set up their account again. Your message was not "
                    "sent. Compare the safety number with them (v) before you trust the new key.\n"
                )
            )
            with VerticalScroll(id="held"):
                yield Static(Text(safe(self.text), style="italic"))
            yield Static(Text("t trust the new key and send · v safety number · Esc keep it unsent", style="bold"))

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_view(self) -> None:
        app: ChatApp = self.app  # type: ignore[assignment]
        app.open_contact(self.address)
