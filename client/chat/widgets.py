"""The parts of the chat app's main screen: the conversation list and the message log."""

from __future__ import annotations

from collections.abc import Sequence

from textual.containers import VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from ..cli_rich import rich_history_text
from ..file_fields import file_summary
from ..history import Conversation, HistoryItem
from ..timer import timer_text
from .render import conversation_entry, message_row

__all__ = ["ConversationList", "MessageLog", "MessageRow"]


class ConversationList(OptionList):
    """1:1 conversations and groups, newest activity first, with unread counts and the last
    text; the option ids are the conversation keys (client/history.py)."""

    #: the text width of an entry (the list is 26 columns wide: border and padding take 4)
    TEXT_WIDTH = 22

    def show(self, conversations: Sequence[Conversation], *, current: str | None) -> None:
        """Redraw the entries, keeping the highlight on the conversation it was on."""
        keep = self.highlighted_option.id if self.highlighted_option is not None else current
        self.clear_options()
        entries: list[Option | None] = []
        for c in conversations:
            if entries:
                entries.append(None)  # a separator line between entries
            entry = conversation_entry(
                title=c.title, is_group=c.is_group, last_text=c.last_text, unread=c.unread if c.key != current else 0, width=self.TEXT_WIDTH
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


class MessageLog(VerticalScroll):
    """The open conversation's messages, oldest first; follows the newest unless the user
    scrolled up."""

    #: focus stays in the compose box (or the list): the app scrolls this with PgUp/PgDn
    can_focus = False

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
        if follow:
            self.scroll_end(animate=False)

    def ids(self) -> list[bytes]:
        return [child.item.id for child in self.children if isinstance(child, MessageRow)]

    def texts(self) -> list[tuple[str, str]]:
        """(text, state) of every row shown, oldest first (what the tests read)."""
        return [(child.item.text, child.item.state) for child in self.children if isinstance(child, MessageRow)]
