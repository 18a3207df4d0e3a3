"""The parts of the chat app's main screen: the conversation list and the message log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType

from textual.containers import VerticalScroll
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from ..cli_rich import rich_history_text
from ..file_fields import file_summary
from ..history import Conversation, HistoryItem
from ..timer import timer_text
from .render import conversation_entry, message_row

if TYPE_CHECKING:
    from .app import ChatApp

__all__ = ["ConversationList", "MessageLog", "MessageRow", "StatusLine"]


class StatusLine(Static):
    """The top line: ``left`` at the start, ``right`` at the end of its own width, spread again
    when that changes (a terminal resized)."""

    _parts: tuple[Text, Text] = (Text(), Text())

    def spread(self, left: Text, right: Text) -> None:
        self._parts = (left, right)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        left, right = self._parts
        width = self.content_size.width or self.app.size.width - 2  # without the padding
        self.update(Text.assemble(left, " " * max(1, width - left.cell_len - right.cell_len), right))


class ConversationList(OptionList):
    """1:1 conversations and groups, newest activity first, with unread counts and the last
    text; the option ids are the conversation keys (client/history.py)."""

    #: the text width of an entry before the list has a size (26 columns: border and padding take 4)
    TEXT_WIDTH = 22
    _shown: tuple[Sequence[Conversation], str | None] = ((), None)

    @property
    def text_width(self) -> int:
        return max(8, self.outer_size.width - 4) if self.outer_size.width else self.TEXT_WIDTH

    def on_resize(self) -> None:
        """Narrower below 80 columns (the app's CSS): the entries are fitted again."""
        conversations, current = self._shown
        if conversations:
            self.show(conversations, current=current)

    def show(self, conversations: Sequence[Conversation], *, current: str | None) -> None:
        """Redraw the entries, keeping the highlight on the conversation it was on."""
        self._shown = (conversations, current)
        keep = self.highlighted_option.id if self.highlighted_option is not None else current
        self.clear_options()
        entries: list[Option | None] = []
        for c in conversations:
            if entries:
                entries.append(None)  # a separator line between entries
            entry = conversation_entry(
                title=c.title, is_group=c.is_group, last_text=c.last_text, unread=c.unread if c.key != current else 0, width=self.text_width
            )
            entries.append(Option(entry, id=c.key))
        self.add_options(entries)
        if keep is not None:
            try:
                self.highlighted = self.get_option_index(keep)
            except OptionDoesNotExist:
                pass


class MessageRow(Static):
    """One message; redrawn in place when its state changes (ticks)."""

    def __init__(self, item: HistoryItem, me: str) -> None:
        super().__init__(classes="mine" if item.mine else "theirs")
        self.item = item
        self.me = me
        self.set_item(item)

    def set_item(self, item: HistoryItem) -> None:
        self.item = item
        self.update(message_row(
            at=item.at, sender=item.sender, me=self.me, mine=item.mine, state=item.state, note=item.note,
            # a timer message (client/timer.py); a poll with its result, a location, contact card or event (client/cli_rich.py);
            # a file: its name, size and caption (client/file_fields.py; `sonet download ID` saves it)
            text=file_summary({"file": item.file, "text": item.text}) if item.file and not item.deleted
            else timer_text(item.timer) if item.timer is not None else rich_history_text(item) or item.text,
            quote=item.quote, edited=item.edited, deleted=item.deleted, reactions=[(r.emoji, r.count, r.mine) for r in item.reactions],
        ))  # fmt: skip


#: the keys that act on a picked message (MessageLog.BINDINGS); any other printable key types
_ACTION_KEYS = frozenset({"r", "plus", "e", "d", "s", "v"})


class MessageLog(VerticalScroll):
    """The open conversation's messages, oldest first; follows the newest unless the user
    scrolled up. The message cursor (``selected``, a message id) picks one for the app's keys
    (client/chat/actions.py); the log has the keyboard only while one is picked."""

    #: focus stays in the compose box (or the list) until ↑ picks a message (the app sets it)
    can_focus = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "app.cursor(-1)", "older", show=False),
        Binding("down", "app.cursor(1)", "newer", show=False),
        Binding("escape", "app.leave_cursor", "back", show=False),
        Binding("r", "app.act('reply')", "reply"),
        Binding("plus", "app.act('react')", "react"),
        Binding("e", "app.act('edit')", "edit"),
        Binding("d", "app.act('delete')", "delete"),
        Binding("s", "app.act('save')", "save"),
        Binding("v", "app.act('vote')", "vote"),
    ]
    #: the picked message's id, or None
    selected: bytes | None = None

    async def show(self, items: Sequence[HistoryItem], me: str) -> None:
        rows = [child for child in self.children if isinstance(child, MessageRow)]
        follow = self.is_vertical_scroll_end or not rows
        if [r.item.id for r in rows] == [i.id for i in items[: len(rows)]]:
            for row, item in zip(rows, items):
                if row.item != item:
                    row.set_item(item)
            new = [MessageRow(i, me) for i in items[len(rows) :]]
            if new:
                await self.mount_all(new)
        else:  # another conversation, or older messages fell out of the window: start over
            await self.remove_children()
            await self.mount_all([MessageRow(i, me) for i in items])
            follow = True
        if self.selected is not None and self.selected not in {i.id for i in items}:
            self.selected = None  # gone (deleted here, expired): the cursor lets go
        self._mark_selected()
        if follow and self.selected is None:
            self.scroll_end(animate=False)

    def on_key(self, event: events.Key) -> None:
        """Typing while a message is picked goes to the compose box (the keys above act on the
        message): nothing typed is taken as a command by mistake, nor lost."""
        if event.is_printable and event.character is not None and event.key not in _ACTION_KEYS:
            event.stop()
            event.prevent_default()
            app: ChatApp = self.app  # type: ignore[assignment]
            app.action_leave_cursor()
            app.query_one("#compose", Input).insert_text_at_cursor(event.character)

    def rows(self) -> list[MessageRow]:
        return [child for child in self.children if isinstance(child, MessageRow)]

    def selected_item(self) -> HistoryItem | None:
        return next((r.item for r in self.rows() if r.item.id == self.selected), None)

    def select(self, msg_id: bytes | None) -> None:
        """Pick ``msg_id`` (None: let go) and bring it into view."""
        self.selected = msg_id
        self._mark_selected()

    def move(self, step: int) -> bool:
        """Move the cursor ``step`` messages (-1 older, 1 newer; from nothing, ↑ picks the
        newest); False when it would leave the log at the newest end (the cursor lets go)."""
        ids = [r.item.id for r in self.rows()]
        if not ids:
            self.select(None)
            return False
        if self.selected not in ids:
            self.select(ids[-1] if step < 0 else None)
            return self.selected is not None
        at = ids.index(self.selected) + step
        if at >= len(ids):
            self.select(None)
            return False
        self.select(ids[max(0, at)])
        return True

    def _mark_selected(self) -> None:
        for row in self.rows():
            picked = row.item.id == self.selected
            row.set_class(picked, "selected")
            if picked:
                self.scroll_to_widget(row, animate=False)

    def ids(self) -> list[bytes]:
        return [child.item.id for child in self.children if isinstance(child, MessageRow)]

    def texts(self) -> list[tuple[str, str]]:
        """(text, state) of every row shown, oldest first (what the tests read)."""
        return [(child.item.text, child.item.state) for child in self.children if isinstance(child, MessageRow)]
