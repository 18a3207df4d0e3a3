"""How the chat app draws one message, one conversation in the list, a state as ticks."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from sonet.cli_output import terminal_safe

__all__ = ["safe", "TICKS", "tick", "short_name", "clock_time", "message_row", "conversation_entry", "transfer_line"]

#: text from the network fit for the terminal (sonet/cli_output.py): rich keeps ESC, so control
#: characters and bidirectional overrides are shown as U+FFFD
safe = terminal_safe


#: a sent message's state (client/state.py SentMessage, client/history.py HistoryItem) as ticks:
#: ◷ still on this device, ✓ a node holds it, ✓✓ a device of the recipient has it, read in colour
TICKS: dict[str, tuple[str, str]] = {
    "pending": ("◷", "yellow"),
    "sent": ("✓", "grey70"),
    "queued": ("✓", "grey70"),
    "accepted": ("✓", "grey70"),
    "ordered": ("✓", "grey70"),
    "delivered": ("✓✓", "grey85"),
    "read": ("✓✓", "bold cyan"),
    "failed": ("✗", "bold red"),
}


def tick(state: str) -> Text:
    glyph, style = TICKS.get(state, ("?", "magenta"))
    return Text(glyph, style=style)


def short_name(address: str, me: str) -> str:
    """``bob`` for bob@ on this account's node, the whole address for anyone elsewhere."""
    if address == me:
        return "you"
    user, _, node = address.partition("@")
    return user if node == me.partition("@")[2] else address


def clock_time(ms: int, *, now_ms: int | None = None) -> str:
    """14:02 today, else 3 Dec (local time)."""
    if ms <= 0:
        return ""
    at = time.localtime(ms / 1000)
    today = time.localtime((now_ms if now_ms is not None else time.time_ns() // 1_000_000) / 1000)
    if (at.tm_year, at.tm_yday) == (today.tm_year, today.tm_yday):
        return time.strftime("%H:%M", at)
    return time.strftime("%-d %b", at)


def presence_words(seen: tuple[str, int] | None, *, now_ms: int | None = None) -> str:
    """The header's word on a contact's presence (client/presence.py ``last_presence``):
    ``online``, ``last seen 14:02``, or nothing when the contact shares none."""
    if seen is None:
        return ""
    presence, at = seen
    return "online" if presence == "online" else f"last seen {clock_time(at, now_ms=now_ms)}"


_NAME_STYLES = ("green", "magenta", "blue", "yellow", "cyan", "bright_red")


def _name_style(address: str) -> str:
    return _NAME_STYLES[sum(address.encode()) % len(_NAME_STYLES)]


def message_row(
    *, at: int, sender: str, me: str, mine: bool, text: str, state: str, note: str, quote: str = "", edited: int = 0,
    deleted: bool = False, reactions: Sequence[tuple[str, int, bool]] = (),
) -> RenderableType:
    """One message: time, who, the text (wrapped), and for own messages the ticks; a failed
    message says why on the line below. Issue 17: a reply's quote above the text, "(edited)"
    after it, the reactions below it (yours in bold), a deleted message as a placeholder."""
    who = Text(safe(short_name(sender, me)), style="bold" if mine else f"bold {_name_style(sender)}")
    body = Text()
    if quote:
        body.append(f"↪ {safe(quote)}\n", style="dim italic")
    if deleted:
        body.append("message deleted", style="dim italic")
    else:
        body.append(safe(text))
        if edited:
            body.append(" (edited)", style="dim")
    for n, (emoji, count, by_me) in enumerate(reactions):
        body.append("\n" if n == 0 else "  ")
        body.append(f"{safe(emoji)} {count}", style="bold" if by_me else "dim")
    when, ticks = Text(clock_time(at), style="dim"), tick(state) if mine else Text("")
    why = None
    if mine and state in ("failed", "pending") and note:
        why = Text(safe(f"not sent: {note}" if state == "failed" else f"waiting on this device: {note}"))
        why.stylize("red" if state == "failed" else "yellow italic")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(width=6, no_wrap=True)
    grid.add_column(max_width=14, no_wrap=True, overflow="ellipsis")
    grid.add_column(ratio=1, overflow="fold")
    grid.add_column(width=2, no_wrap=True, justify="right")
    grid.add_row(when, who, body, ticks)
    if why is not None:
        grid.add_row("", "", why, "")
    # a narrow terminal: time and sender on a line of their own, the text under them at full width
    head = Table.grid(expand=True, padding=(0, 1))
    head.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    head.add_column(width=2, no_wrap=True, justify="right")
    head.add_row(Text.assemble(when, " ", who), ticks)
    body.overflow = "fold"
    return _Fitted(grid, Group(head, body, *([why] if why is not None else [])))


#: below this many columns a message's text would get a sliver beside its time and sender
NARROW_ROW = 50


class _Fitted:
    """``wide`` when the width it is drawn at has room for it, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType) -> None:
        self.wide, self.narrow = wide, narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= NARROW_ROW else self.narrow


def conversation_entry(*, title: str, is_group: bool, last_text: str, unread: int, width: int) -> Text:
    """Two lines of the conversation list: the title with the unread count, the last text."""
    title, last_text = safe(title), safe(last_text)
    mark = "# " if is_group else ""
    badge = f" {unread}" if unread else ""
    # fitted in cells, not characters: an emoji or CJK text takes two each
    name = Text(title, style="bold" if unread else "")
    name.truncate(max(4, width - len(badge) - len(mark)), overflow="ellipsis")
    line = Text(mark, style="dim")
    line.append_text(name)
    if badge:
        line.append(" " * max(1, width - len(mark) - name.cell_len - len(badge)))
        line.append(badge.strip(), style="bold reverse green")
    preview = Text(" ".join(last_text.split()) or "—", style="dim")
    preview.truncate(width, overflow="ellipsis")
    line.append("\n")
    line.append_text(preview)
    return line


def transfer_line(verb: str, name: str, done: int, total: int, *, width: int) -> Text:
    """A file on its way: ``sending 'a.jpg' ▕████░░░░▏ 45% 1.2/2.6 MiB``, fitted to ``width``."""
    share = done / total if total > 0 else 1.0
    share = min(1.0, max(0.0, share))
    numbers = f" {share:4.0%} {_mib(done)}/{_mib(total)} MiB"
    bar_width = 10
    room = max(4, width - len(verb) - len(numbers) - bar_width - 6)
    shown = Text(safe(name))
    shown.truncate(room, overflow="ellipsis")  # in cells: wide characters count twice
    filled = round(share * bar_width)
    line = Text(f"{verb} '")
    line.append_text(shown)
    line.append("' ")
    line.append("▕")
    line.append("█" * filled, style="green")
    line.append("░" * (bar_width - filled), style="dim")
    line.append("▏")
    line.append(numbers, style="dim")
    return line


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"
