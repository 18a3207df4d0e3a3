"""``sonet chat``: a terminal app that stays connected (textual).

The main screen: the conversation list on the left (1:1 and groups, unread counts, the last
text), the open conversation on the right (the device's history, live as it arrives, ticks on
own messages), a typing line and the compose box; a status line on top, an offline banner when
the node cannot be reached. The device's live session runs as a trio guest on textual's loop
(client/chat/bridge.py, client/chat/session.py); what it brings is shown from the device's
history (client/history.py), the one record of what was said.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import Footer, Input, OptionList, Static

from sonet.core.call import why_ended
from sonet.core.errors import LocalProtocolError, ProtocolError, sole_exception

from ..cli_groups import group_event_line
from ..connection import ConnectError, NodeError
from ..directory import IdentityChanged
from ..groups.api import GroupInfoView
from ..attachments import Progress
from ..history import Conversation, HistoryItem
from ..rich_fields import poll_of
from ..live import Notice, Offline, Online, Received, SentChanged
from ..sdk import Device
from ..state import StateError
from .bridge import GuestEnded, TrioGuest
from .commands import ChatCommand, command_target, parse_command
from .actions import FileCommand, action_refusal, deletes_for_everyone, my_votes, parse_file_command
from .compose import Post, parse_post
from .ringing import ACCEPTED, RingingScreen, call_command, call_notice, open_call_with
from .pickers import ConfirmScreen, ReactScreen, VoteScreen
from .screens import AskScreen, ContactScreen, GroupScreen, HelpScreen, IdentityChangedScreen
from .render import presence_words, safe, short_name, transfer_line
from .session import ChatSession, LiveUpdate
from .widgets import ConversationList, MessageLog, StatusLine

__all__ = ["ChatApp", "run_chat"]

W = TypeVar("W", bound=Widget)

#: how long a "typing" notice shows without a new one (senders repeat it while they type)
TYPING_SHOWN_S = 6.0
#: how often this app repeats its own "typing" notice while the user types
TYPING_REPEAT_S = 4.0
#: how many messages of the open conversation are shown
MESSAGES_SHOWN = 200

#: what the user can get wrong or the network can refuse: one line in the app, never a traceback
USER_ERRORS = (ConnectError, NodeError, ProtocolError, StateError, GuestEnded)


class ChatApp(App[int]):
    TITLE = "Sonet"
    ENABLE_COMMAND_PALETTE = False
    #: below 80 columns the list is narrower (and messages put their text under time and sender: render.py)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-wide")]
    CSS = """
    Screen { layout: vertical; }
    #status { height: 1; background: $primary-background; padding: 0 1; }
    #banner { height: auto; background: $error; color: $text; padding: 0 1; display: none; }
    #banner.shown { display: block; }
    #main { height: 1fr; }
    ConversationList { width: 26; height: 1fr; border: none; border-right: vkey $surface-lighten-2; padding: 0; }
    Screen.-narrow ConversationList { width: 18; }
    ConversationList:focus { border: none; border-right: vkey $accent; }
    #pane { width: 1fr; }
    #title { height: 1; padding: 0 1; background: $boost; }
    #warning { height: auto; padding: 0 1; color: $text; background: $error 40%; display: none; }
    #warning.shown { display: block; }
    MessageLog { height: 1fr; padding: 0 1; }
    MessageLog:focus { background: $boost; }
    MessageRow.selected { background: $accent 40%; }
    #transfer { height: 1; padding: 0 1; display: none; }
    #transfer.shown { display: block; }
    #empty { color: $text-muted; padding: 1 2; }
    #typing { height: 1; padding: 0 1; color: $text-muted; text-style: italic; }
    #compose { height: 3; }
    ModalScreen { align: center middle; }
    #dialog { width: 76; max-width: 100%; height: auto; max-height: 22; padding: 0 2; border: thick $primary; background: $surface; }
    #dialog.small { width: 56; }
    #dialog.wide { width: 80; max-height: 24; padding: 0 1; border: none; }
    #dialog.wide .title { margin-bottom: 0; background: $primary; }
    #dialog.warning { border: thick $error; }
    #dialog .title { margin-bottom: 1; }
    #dialog Horizontal { height: auto; }
    #qr { width: 41; height: auto; margin-right: 1; }
    #details { width: 1fr; height: auto; }
    #members { height: auto; max-height: 14; }
    #held { height: auto; max-height: 5; margin-bottom: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("f1", "help", "help"),
        Binding("question_mark", "help", "help", show=False),
        Binding("ctrl+n", "new", "new chat"),
        Binding("f2", "info", "details"),
        Binding("escape", "to_list", "list", show=False),
        Binding("pageup", "scroll_log(-1)", "scroll up", show=False),
        Binding("pagedown", "scroll_log(1)", "scroll down", show=False),
        Binding("up", "cursor(-1)", "pick a message", show=False),  # the compose box's placeholder says it
    ]

    def __init__(self, device: Device, *, read_receipts: bool = True) -> None:
        super().__init__()
        self.device = device
        self.me = device.state.profile().address
        self.session = ChatSession(device, self.post_message, read_receipts=read_receipts)
        self.history = self.session.history
        self.guest = TrioGuest(self.session.run)
        #: the open conversation: its key (client/history.py), whether it is a group, its title
        self.current: str | None = None
        self.current_is_group = False
        self.current_title = ""
        #: None: not connected yet; else what the live session said last
        self.connection: Online | Offline | None = None
        self._offline_at = 0.0
        #: conversation -> sender -> when the "typing" notice stops showing (monotonic s)
        self.typing: dict[str, dict[str, float]] = {}
        self._typing_sent_at = 0.0
        #: contacts whose identity key changed since it was trusted (from received messages)
        self.changed_identities: set[str] = set()
        #: why the session ended by itself (the CLI says it on one line)
        self.final_error: BaseException | None = None
        self._quitting = False
        #: what Enter in the compose box does besides sending a text: ("reply"|"edit", message id)
        self.compose_mode: tuple[str, bytes] | None = None
        #: when the transfer line was last drawn (monotonic s): progress is drawn a few times a second
        self._transfer_drawn = 0.0

    # Layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static(id="banner")
        with Horizontal(id="main"):
            yield ConversationList(id="conversations")
            with Vertical(id="pane"):
                yield Static(id="title")
                yield Static(id="warning")
                yield MessageLog(id="log")
                yield Static(id="transfer")
                yield Static(id="typing")
                yield Input(placeholder="pick a conversation on the left, or Ctrl+N for a new one", id="compose", disabled=True, select_on_focus=False)
        yield Footer(compact=True, show_command_palette=False)

    async def on_mount(self) -> None:
        self.guest.start()
        self.run_worker(self._watch_guest(), exit_on_error=False)
        self.set_interval(1.0, self._every_second)
        self._draw_status()
        conversations = self._refresh_list()
        if conversations:
            await self.open(conversations[0].key)
        else:
            self._main(ConversationList).focus()
            await self._show_empty("No conversations yet. Ctrl+N starts one: type an address (user@node).")

    async def _show_empty(self, text: str) -> None:
        log = self._main(MessageLog)
        await log.remove_children()
        await log.mount(Static(Text(text), id="empty"))
        self._main("#title", Static).update(Text("Sonet", style="bold"))

    def say(self, text: str, *, severity: SeverityLevel = "information", timeout: float = 6) -> None:
        """A notification; what came from the network is shown as text (no markup, no
        control characters)."""
        self.notify(safe(text), severity=severity, timeout=timeout, markup=False)

    def _alive(self) -> bool:
        """False once the app is closing (its screens are going): nothing to draw on."""
        return not self._quitting and bool(self.screen_stack) and self.is_running

    def _main(self, selector: type[W] | str, expect: type[W] | None = None) -> W:
        """A widget of the main screen, also while another screen is over it."""
        base = self.screen_stack[0]
        if isinstance(selector, str):
            return base.query_one(selector, expect)  # type: ignore[arg-type]
        return base.query_one(selector)

    # The trio guest -----------------------------------------------------------------------

    async def _watch_guest(self) -> None:
        """The live session ends only when the app ends it, or on a final error (this device
        was removed): then the app ends, and the CLI says why on one line."""
        result = await self.guest.wait()
        if self._quitting or result is None:
            return
        try:
            result.unwrap()
        except BaseException as exc:
            self.final_error = sole_exception(exc)
            self.exit(1)
            return
        self.exit(0)

    async def action_quit(self) -> None:
        self._quitting = True
        await self.guest.stop()
        self.exit(0)

    async def on_unmount(self) -> None:
        # however the app ends (a test's pilot, an error), the trio run ends before the loop
        self._quitting = True
        await self.guest.stop()

    # Live events --------------------------------------------------------------------------

    async def on_live_update(self, message: LiveUpdate) -> None:
        if not self._alive():
            return
        event = message.event
        if isinstance(event, Online):
            self.connection = event
            self._draw_status()
        elif isinstance(event, Offline):
            self.connection = event
            self._offline_at = time.monotonic()  # the countdown to the next try starts now
            self._draw_status()
        elif isinstance(event, Received):
            self._note_received(event)
            await self.refresh_view()
        elif isinstance(event, SentChanged):
            await self.refresh_view()
        elif isinstance(event, Notice):
            self.say(event.text, timeout=8)

    def _note_received(self, event: Received) -> None:
        now = time.monotonic()
        for m in event.messages:
            if m.type == "typing":
                group = m.fields.get("group")
                key = group["id"] if isinstance(group, dict) else m.peer
                senders = self.typing.setdefault(key, {})
                if m.fields.get("typing") == "started":
                    senders[m.sender] = now + TYPING_SHOWN_S
                else:
                    senders.pop(m.sender, None)
            elif m.type in ("text", "reply"):  # a message ends its sender's typing
                self.typing.get(m.peer, {}).pop(m.sender, None)
            elif m.type == "call" and isinstance(m.fields.get("call"), dict):
                self._call_signal(m.sender, m.fields["call"])
        for g in event.group_messages:
            self.typing.get(g.group.hex(), {}).pop(g.sender, None)
        for address in event.identity_changes:
            self.changed_identities.add(address)
            self.say(f"the identity key of {address} changed: check the safety number (F2) before you trust it", severity="warning", timeout=10)
        for line in event.rejected:
            self.say(line, severity="warning", timeout=10)
        for group_event in event.group_events:  # joined, left, renamed: said once, as `recv` does
            self.say(group_event_line(group_event, self.me).partition("] ")[2], timeout=8)
        self._draw_typing()

    async def refresh_view(self) -> None:
        """Redraw the list and the open conversation from the history; what arrived in the open
        conversation is read now."""
        conversations = self._refresh_list()
        if self.current is None:
            if conversations and len(self.screen_stack) == 1:  # the first one that arrives opens
                await self.open(conversations[0].key)
            return
        found = [c for c in conversations if c.key == self.current]
        if found and found[0].title != self.current_title:  # a group renamed
            self.current_title = found[0].title
        self._draw_header()
        log = self._main(MessageLog)
        before = set(log.ids())
        items = self.history.messages(self.current, limit=MESSAGES_SHOWN)
        await log.show(items, self.me)
        if any(not i.mine and i.id not in before for i in items):
            self._mark_read()

    def _refresh_list(self) -> list[Conversation]:
        conversations = self.history.conversations()
        if self.current is not None and all(c.key != self.current for c in conversations):
            # a new conversation: listed from the start, before anything was said in it
            conversations.insert(0, Conversation(key=self.current, title=self.current_title, is_group=self.current_is_group, last_text="", last_at=0, unread=0))
        self._main(ConversationList).show(conversations, current=self.current if self.app_focus else None)
        return conversations

    def _mark_read(self) -> None:
        """Only while the terminal has the focus (when it reports it): a window in the
        background has not been read."""
        if self.current is not None and self.app_focus:
            self.run_worker(self._read(self.current), exit_on_error=False)

    def watch_app_focus(self, focused: bool) -> None:
        if focused and self._alive():
            self._mark_read()

    async def _read(self, key: str) -> None:
        """Mark ``key``'s conversation read (read receipts go from the trio side), then show it."""
        try:
            await self.guest.call(lambda: self.session.read(key))
        except USER_ERRORS:
            return  # the marks stay for the next time it is open
        if self._alive():
            await self.refresh_view()

    # Drawing ----------------------------------------------------------------------------

    def _draw_status(self) -> None:
        left = Text.assemble(("Sonet ", "bold"), (self.me, ""))
        if isinstance(self.connection, Online):
            right = Text.assemble(("● ", "green"), (f"online · {self.connection.node}", ""))
        elif isinstance(self.connection, Offline):
            right = Text.assemble(("○ ", "red"), ("offline", "bold red"))
        else:
            right = Text.assemble(("◌ ", "yellow"), ("connecting…", "yellow"))
        self._main(StatusLine).spread(left, right)
        banner = self._main("#banner", Static)
        if isinstance(self.connection, Offline):
            left_s = max(0, round(self.connection.retry_in_s - (time.monotonic() - self._offline_at)))
            banner.update(
                Text.assemble(
                    ("offline: ", "bold"), (safe(self.connection.reason), ""),
                    (f" · trying again in {left_s} s" if left_s else " · trying again now", ""),
                    ("\nwhat you send waits on this device (◷) and goes when the node is back", "italic"),
                )
            )
            banner.add_class("shown")
        else:
            banner.remove_class("shown")

    def _draw_header(self) -> None:
        title = Text()
        if self.current is None:
            title.append("Sonet", style="bold")
        elif self.current_is_group:
            title.append(f"# {safe(self.current_title)}", style="bold")
            title.append("  F2 members", style="dim")
        else:
            title.append(safe(self.current_title), style="bold")
            presence = presence_words(self.device.last_presence(self.current))  # opt-in on their side
            if presence:
                title.append(f"  {presence}", style="green" if presence == "online" else "dim")
            title.append("  F2 safety number", style="dim")
        self._main("#title", Static).update(title)
        warning = self._main("#warning", Static)
        if self.current is not None and self.current in self.changed_identities:
            warning.update(Text(f"⚠ the identity key of {self.current} changed: compare the safety number (F2)", style="bold"))
            warning.add_class("shown")
        else:
            warning.remove_class("shown")

    def _draw_typing(self) -> None:
        now = time.monotonic()
        senders = [s for s, until in self.typing.get(self.current or "", {}).items() if until > now]
        line = Text()
        if senders:
            names = ", ".join(short_name(s, self.me) for s in senders)
            line.append(f"{names} {'is' if len(senders) == 1 else 'are'} typing…")
        self._main("#typing", Static).update(line)

    def _every_second(self) -> None:
        if not self._alive():
            return
        self._draw_typing()
        if isinstance(self.connection, Offline):
            self._draw_status()

    # Opening conversations ------------------------------------------------------------------

    async def open(self, key: str, *, focus_compose: bool = True) -> None:
        known = {c.key: c for c in self.history.conversations()}
        found = known.get(key)
        if found is not None:
            self.current_is_group, self.current_title = found.is_group, found.title
        else:
            self.current_is_group, self.current_title = "@" not in key, key
        if key != self.current:
            self._leave_modes()
        self.current = key
        compose = self._main("#compose", Input)
        compose.disabled = False
        compose.placeholder = safe(f"message {'#' + self.current_title if self.current_is_group else self.current_title} · Enter sends · ↑ pick")
        self._draw_header()
        self._draw_typing()
        log = self._main(MessageLog)
        await log.remove_children()
        await self.refresh_view()
        self._mark_read()
        self._refresh_list()
        if focus_compose:
            compose.focus()

    @on(OptionList.OptionSelected, "#conversations")
    async def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            await self.open(event.option.id)

    def action_new(self) -> None:
        self.push_screen(AskScreen("New conversation", "user@node, or a group's name"), self._new_conversation)

    async def _new_conversation(self, name: str | None) -> None:
        if not name:
            return
        try:
            key = self.history.resolve(name)
        except (ProtocolError, StateError, LocalProtocolError) as exc:
            self.say(str(exc), severity="error")
            return
        await self.open(key)

    def action_to_list(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return
        if self.compose_mode is not None:  # Esc first cancels a reply or an edit
            self._set_compose_mode(None)
            return
        self._main(ConversationList).focus()

    def action_scroll_log(self, pages: int) -> None:
        log = self._main(MessageLog)
        if pages < 0:
            log.scroll_page_up()
        else:
            log.scroll_page_down()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # Sending ------------------------------------------------------------------------------

    @on(Input.Submitted, "#compose")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip() or self.current is None:
            return
        event.input.clear()
        self._typing_sent_at = 0.0
        if self.compose_mode is not None:  # a reply to, or an edit of, the message picked with ↑
            kind, target = self.compose_mode
            self._set_compose_mode(None)
            self.run_worker(self.act_on(target, kind, text), exit_on_error=False)
            return
        file_command = parse_file_command(text)
        if isinstance(file_command, str):
            self.say(file_command, severity="error")
            event.input.value = text
            return
        if file_command is not None:
            self.run_worker(self.send_file(self.current, file_command, is_group=self.current_is_group), exit_on_error=False)
            return
        calling = call_command(text)  # /call, /hangup (client/chat/ringing.py)
        if calling is not None:
            self.run_worker(self.call_action(self.current, calling, is_group=self.current_is_group), exit_on_error=False)
            return
        post = parse_post(text)  # /poll, /location, /event, /contact (client/chat/compose.py)
        if isinstance(post, str):
            self.say(post, severity="error", timeout=10)
            event.input.value = text
            return
        if post is not None:
            self.run_worker(self.post(self.current, post, text), exit_on_error=False)
            return
        command = parse_command(text)  # /reply, /react, /edit, /delete (client/chat/commands.py)
        if command is not None:
            self.run_worker(self.gesture(self.current, command), exit_on_error=False)
            return
        self.run_worker(self.send(self.current, text, is_group=self.current_is_group), exit_on_error=False)

    async def gesture(self, key: str, command: ChatCommand) -> None:
        """A reply, reaction, edit or delete of the newest message it is about; it shows on
        that message from the history. A refusal is one line."""
        target = command_target(self.history.messages(key, limit=MESSAGES_SHOWN), command)
        if target is None:
            whose = "of yours" if command.mine else "from the other side"
            self.say(f"nothing to {command.kind} here: no message {whose} yet", severity="warning")
            return
        await self.act_on(target.id, command.kind, command.arg)

    async def act_on(self, msg_id: bytes, kind: str, arg: str) -> None:
        """reply, react, unreact, edit, delete (for everyone) or delete-here ``msg_id``; it shows
        on that message from the history. A refusal is one line."""
        try:
            await self.guest.call(lambda: self.session.gesture(kind, msg_id, arg), serial=True)
        except (*USER_ERRORS, LocalProtocolError, IdentityChanged) as exc:
            self.say(f"not done: {exc}", severity="error", timeout=10)
        await self.refresh_view()

    async def send(self, key: str, text: str, *, is_group: bool) -> None:
        """Send ``text`` in ``key``'s conversation; it shows with its ticks from the history.
        An identity change holds it until the user confirms; a refusal is one line, and the
        text goes back into an empty compose box so nothing typed is lost."""
        try:
            await self.guest.call(lambda: self.session.send(key, text, is_group=is_group), serial=True)
        except IdentityChanged:
            self.push_screen(IdentityChangedScreen(key, text), lambda ok: self._after_identity_warning(ok, key, text))
            return
        except (*USER_ERRORS, LocalProtocolError) as exc:
            self.say(f"not sent: {exc}", severity="error", timeout=10)
            compose = self._main("#compose", Input)
            if key == self.current and not compose.value:
                compose.value = text
        await self.refresh_view()

    def _after_identity_warning(self, trusted: bool | None, key: str, text: str) -> None:
        if not trusted:
            compose = self._main("#compose", Input)
            if key == self.current and not compose.value:
                compose.value = text  # not sent: kept for the user
            return
        self.trust(key)
        self.run_worker(self.send(key, text, is_group=False), exit_on_error=False)

    def trust(self, address: str) -> None:
        self.device.trust(address)
        self.changed_identities.discard(address)
        self._draw_header()
        self.say(f"trusting the new identity key of {address}")

    # The message cursor (client/chat/actions.py) ----------------------------------------------

    def action_cursor(self, step: int) -> None:
        """↑ from the compose box picks the newest message; ↑ ↓ in the log move; ↓ past the
        newest goes back to the compose box."""
        if self.current is None or self.screen is not self.screen_stack[0]:
            return
        log = self._main(MessageLog)
        if not log.move(step):
            self.action_leave_cursor()
            return
        log.can_focus = True
        self._focus_now(log)

    def action_leave_cursor(self) -> None:
        log = self._main(MessageLog)
        log.select(None)
        log.can_focus = False
        compose = self._main("#compose", Input)
        if not compose.disabled:
            self._focus_now(compose)

    def _focus_now(self, widget: Widget) -> None:
        """Focus at once (``focus()`` waits a turn of the loop): keys typed quickly after ↑ or
        r go where the user sees them going."""
        self.screen_stack[0].set_focus(widget)

    def _leave_modes(self) -> None:
        self._set_compose_mode(None)
        log = self._main(MessageLog)
        log.select(None)
        log.can_focus = False

    def _set_compose_mode(self, mode: tuple[str, bytes] | None, *, title: str = "", value: str | None = None) -> None:
        self.compose_mode = mode
        compose = self._main("#compose", Input)
        compose.border_title = safe(title) if mode is not None else None
        if value is not None:
            compose.value = value

    def action_act(self, action: str) -> None:
        """What a key does to the picked message: one line when it cannot. A reaction, vote or
        delete once done (not cancelled) lets the cursor go, back to the compose box: else the
        next words typed would be taken letter by letter as r, e, d... on the message still
        picked. A save keeps it (the file is still on its way)."""
        item = self._main(MessageLog).selected_item()
        if item is None or self.current is None:
            return
        problem = action_refusal(item, action)
        if problem is not None:
            self.say(f"cannot {action}: {problem}", severity="warning")
            return
        first = (item.text.splitlines() or [""])[0]
        if action in ("reply", "edit"):
            who = short_name(item.sender, self.me)
            title = f"↪ reply to {who}: {first}" if action == "reply" else "✎ editing your message"
            self._set_compose_mode((action, item.id), title=f"{title[:60]} · Esc cancels", value=item.text if action == "edit" else "")
            self.action_leave_cursor()
            self._main("#compose", Input).action_end()
        elif action == "react":
            mine = {r.emoji for r in item.reactions if r.mine}
            self.push_screen(ReactScreen(mine), lambda emoji: self._reacted(item.id, emoji, mine))
        elif action == "delete":
            everyone = deletes_for_everyone(item, self.device._clock())
            question = "Delete this message for everyone?" if everyone else "Delete this message on this device only?"
            self.push_screen(ConfirmScreen(question, first[:200]), lambda yes: self._deleted(item.id, everyone, yes))
        elif action == "save":
            folder = str(self.download_folder)
            self.push_screen(AskScreen("Save the file in", "a folder", value=folder), lambda where: self._save(item.id, where))
        elif action == "vote":
            self._vote(item)

    def _reacted(self, msg_id: bytes, emoji: str | None, mine: set[str]) -> None:
        if emoji:
            self.action_leave_cursor()
            self.run_worker(self.act_on(msg_id, "unreact" if emoji in mine else "react", emoji), exit_on_error=False)

    def _deleted(self, msg_id: bytes, everyone: bool, yes: bool | None) -> None:
        if yes:
            self.action_leave_cursor()
            self.run_worker(self.act_on(msg_id, "delete" if everyone else "delete-here", ""), exit_on_error=False)

    def _vote(self, item: HistoryItem) -> None:
        poll = poll_of({"poll": item.data})
        if poll is None:
            self.say("cannot vote: that poll cannot be read", severity="warning")
            return
        mine = my_votes(item, self.me)

        def picked(option: int | None) -> None:
            if option is not None:
                self.action_leave_cursor()
                self.run_worker(self._send_vote(item.id, option, remove=option in mine), exit_on_error=False)

        self.push_screen(VoteScreen(poll, item.poll_result, mine), picked)

    async def _send_vote(self, poll_id: bytes, option: int, *, remove: bool) -> None:
        try:
            await self.guest.call(lambda: self.session.vote(poll_id, option, remove=remove), serial=True)
        except (*USER_ERRORS, LocalProtocolError, IdentityChanged) as exc:
            self.say(f"vote not sent: {exc}", severity="error", timeout=10)
        await self.refresh_view()

    # Polls, locations, events, contact cards ------------------------------------------------

    async def post(self, key: str, post: Post, typed: str) -> None:
        """Send what a /poll, /location, /event or /contact asked for; it shows from the history.
        A refusal is one line, and the command goes back into an empty compose box."""
        try:
            await self.guest.call(lambda: self.session.post(key, post), serial=True)
        except (*USER_ERRORS, LocalProtocolError, IdentityChanged) as exc:
            self.say(f"not sent: {exc}", severity="error", timeout=10)
            compose = self._main("#compose", Input)
            if key == self.current and not compose.value:
                compose.value = typed
        await self.refresh_view()

    # Calls (signalling only: client/chat/ringing.py) ----------------------------------------

    def _call_signal(self, sender: str, call: dict) -> None:
        """An offer for a call that still rings here opens the ringing window; a hang-up
        closes it; the rest is one line."""
        call_id = bytes.fromhex(call["id"])
        if call.get("signal") == "offer" and not call.get("note"):
            kept = self.device.state.kept_call(call_id)
            if kept is not None and kept.call.state == "incoming":
                self.push_screen(RingingScreen(sender, call_id), lambda choice: self._rung(choice, call_id))
            return
        if call.get("signal") == "hangup" and isinstance(self.screen, RingingScreen) and self.screen.call_id == call_id:
            self.screen.dismiss(None)
        notice = call_notice(sender, call)
        if notice is not None:
            self.say(notice, severity="warning" if call.get("note") else "information", timeout=10)

    async def call_action(self, key: str, action: str, *, is_group: bool) -> None:
        """/call the open conversation's contact, or /hangup the call with them; one line says what came of it."""
        if is_group:
            self.say("calls are between two people: open a 1:1 conversation", severity="error")
            return
        try:
            if action == "call":
                placed = await self.guest.call(lambda: self.session.call(key), serial=True)
                self.say(f"calling {key} (signalling only; /hangup to cancel); call {placed.call.id.hex()}", timeout=10)
                return
            current = open_call_with(self.device.calls(), key)
            if current is None:
                self.say(f"no call with {key} to hang up", severity="warning")
                return
            ended = await self.guest.call(lambda: self.session.hang_up(current.call.id), serial=True)
            self.say(f"hung up the call with {key}{why_ended(ended.call.reason)}", timeout=10)
        except (*USER_ERRORS, LocalProtocolError, IdentityChanged) as exc:
            self.say(f"not done: {exc}", severity="error", timeout=10)

    def _rung(self, choice: str | None, call_id: bytes) -> None:
        if choice is not None:
            self.run_worker(self.respond_to_call(call_id, accept=choice == ACCEPTED), exit_on_error=False)

    async def respond_to_call(self, call_id: bytes, *, accept: bool) -> None:
        try:
            if accept:
                await self.guest.call(lambda: self.session.answer_call(call_id), serial=True)
            else:
                await self.guest.call(lambda: self.session.reject_call(call_id), serial=True)
        except (*USER_ERRORS, LocalProtocolError, IdentityChanged) as exc:
            self.say(f"not {'accepted' if accept else 'rejected'}: {exc}", severity="error", timeout=10)
            return
        self.say("accepted (no media in this client)" if accept else "rejected the call", timeout=10)

    # Files ----------------------------------------------------------------------------------

    @property
    def download_folder(self) -> Path:
        """Where ``s`` offers to save a file: ~/Downloads when there is one, else the folder the app runs in."""
        downloads = Path.home() / "Downloads"
        return downloads if downloads.is_dir() else Path.cwd()

    def _save(self, msg_id: bytes, where: str | None) -> None:
        if where:
            self.run_worker(self.download(msg_id, Path(where).expanduser()), exit_on_error=False)

    async def download(self, msg_id: bytes, folder: Path) -> None:
        """Save a file message's file with a progress line; the saved path is said, and stays on the line."""
        item = next((i for i in self.history.messages(self.current or "", limit=MESSAGES_SHOWN) if i.id == msg_id), None)
        name = str(item.file.get("name", "file")) if item is not None and item.file else "file"
        progress = self._progress("saving", name)
        try:
            saved = await self.guest.call(lambda: self.session.download(msg_id, folder, progress=progress))
        except (*USER_ERRORS, LocalProtocolError, OSError) as exc:
            self._transfer_done(Text(safe(f"not saved: {exc}"), style="red"))
            self.say(f"not saved: {exc}", severity="error", timeout=10)
            return
        self._transfer_done(Text(safe(f"saved {saved}"), style="green"))
        self.say(f"saved {saved}", timeout=10)

    async def send_file(self, key: str, command: FileCommand, *, is_group: bool) -> None:
        """Upload and send a file with a progress line; it shows in the conversation from the history."""
        if not command.path.is_file():
            self.say(f"not sent: {command.path} is not a file", severity="error")
            return
        progress = self._progress("sending", command.path.name)
        try:
            await self.guest.call(
                lambda: self.session.send_file(key, command.path, command.caption, is_group=is_group, progress=progress), serial=True
            )
        except IdentityChanged as exc:
            self._transfer_done(Text(safe(f"not sent: {exc} (F2, then t to trust it)"), style="red"))
            return
        except (*USER_ERRORS, LocalProtocolError, OSError) as exc:
            self._transfer_done(Text(safe(f"not sent: {exc}"), style="red"))
            self.say(f"not sent: {exc}", severity="error", timeout=10)
            return
        self._transfer_done(Text(safe(f"sent {command.path.name}"), style="green"))
        await self.refresh_view()

    def _progress(self, verb: str, name: str) -> Progress:
        line = self._main("#transfer", Static)
        line.add_class("shown")

        def draw(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - self._transfer_drawn < 0.1 or not self._alive():
                return
            self._transfer_drawn = now
            width = line.size.width or self.size.width - 30
            line.update(transfer_line(verb, name, done, total, width=width))

        draw(0, 1)
        return draw

    def _transfer_done(self, text: Text) -> None:
        """The transfer line says how it ended until the next one."""
        if self._alive():
            self._main("#transfer", Static).update(text)

    @on(Input.Changed, "#compose")
    def _typed(self, event: Input.Changed) -> None:
        """Tell the other side while the user types (repeated every few seconds), and when
        they clear the box."""
        if self.current is None:
            return
        now = time.monotonic()
        key = self.current
        if event.value and now - self._typing_sent_at > TYPING_REPEAT_S:
            self._typing_sent_at = now
            self.guest.call(lambda: self.session.typing(key, started=True))
        elif not event.value and self._typing_sent_at:
            self._typing_sent_at = 0.0
            self.guest.call(lambda: self.session.typing(key, started=False))

    # Contact and group screens --------------------------------------------------------------

    def action_info(self) -> None:
        if self.current is None:
            return
        if self.current_is_group:
            self.run_worker(self._open_group(self.current), exit_on_error=False)
        else:
            self.open_contact(self.current)

    def open_contact(self, address: str) -> None:
        self.run_worker(self._open_contact(address), exit_on_error=False)

    async def _open_contact(self, address: str) -> None:
        try:
            info = await self.guest.call(lambda: self.session.contact(address))
        except USER_ERRORS as exc:
            self.say(str(exc), severity="error")
            return
        await self.push_screen(ContactScreen(info))

    async def _open_group(self, group: str) -> None:
        try:
            info: GroupInfoView = await self.guest.call(lambda: self.session.group_info(group))
        except (*USER_ERRORS, LocalProtocolError) as exc:
            self.say(str(exc), severity="error")
            return
        await self.push_screen(GroupScreen(info, self.me))

    def group_change(self, screen: GroupScreen, change: str, member: str) -> None:
        self.run_worker(self._group_change(screen, change, member), exit_on_error=False)

    async def _group_change(self, screen: GroupScreen, change: str, member: str) -> None:
        group = screen.info.id
        screen.say(f"{'adding' if change == 'add' else 'removing'} {member}…")
        try:
            if change == "add":
                await self.guest.call(lambda: self.session.group_add(group, member))
            else:
                await self.guest.call(lambda: self.session.group_remove(group, member))
            info = await self.guest.call(lambda: self.session.group_info(group))
        except (*USER_ERRORS, LocalProtocolError) as exc:
            screen.say(f"{change} {member}: {exc}", error=True)
            return
        screen.show(info)
        screen.say(f"{'added' if change == 'add' else 'removed'} {member} · a add · d remove · Esc close")
        await self.refresh_view()


def run_chat(device: Device, *, read_receipts: bool = True) -> None:
    """Run the app until the user quits; a final error of the session (this device was
    removed) is raised after the terminal is restored."""
    app = ChatApp(device, read_receipts=read_receipts)
    app.run()
    if app.final_error is not None:
        raise app.final_error
