"""The small windows of the chat app's message cursor (client/chat/actions.py): confirm a
delete, pick a reaction, pick a poll's option. Keyboard first; each returns None when closed."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from sonet.core.poll import Poll, Tally

from .actions import QUICK_REACTIONS
from .render import safe

__all__ = ["ConfirmScreen", "ReactScreen", "VoteScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or Enter yes, n or Esc no."""

    BINDINGS = [Binding("y,enter", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self._question = question
        self._detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="small"):
            yield Static(Text(self._question, style="bold"), classes="title")
            if self._detail:
                yield Static(Text(safe(self._detail), style="italic"))
            yield Static(Text("y yes · n or Esc no", style="dim"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ReactScreen(ModalScreen[str | None]):
    """1..8 picks one of :data:`QUICK_REACTIONS`; Tab goes to a box where any other emoji can
    be typed and Enter'd. Picking one of your own reactions takes it back (the app decides)."""

    #: the digits pick at once: nothing has the keyboard until Tab
    AUTO_FOCUS = ""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        *(Binding(str(n), f"pick({n - 1})", show=False) for n in range(1, len(QUICK_REACTIONS) + 1)),
    ]

    def __init__(self, mine: set[str]) -> None:
        super().__init__()
        self._mine = mine

    def compose(self) -> ComposeResult:
        row = Text()
        for n, emoji in enumerate(QUICK_REACTIONS, start=1):
            row.append(f"{n} ", style="dim")
            row.append(emoji, style="reverse" if emoji in self._mine else "")
            row.append("  ")
        with Vertical(id="dialog", classes="small"):
            yield Static(Text("React", style="bold"), classes="title")
            yield Static(row)
            yield Input(placeholder="or Tab, type an emoji and Enter", id="emoji")
            yield Static(Text("yours are highlighted: picking one takes it back · Esc cancels", style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_pick(self, index: int) -> None:
        self.dismiss(QUICK_REACTIONS[index])

    def action_cancel(self) -> None:
        self.dismiss(None)


class VoteScreen(ModalScreen[int | None]):
    """A poll's options with their counts (yours marked ✓); Enter votes for the highlighted one,
    or takes your vote back from it; digits jump to an option."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        *(Binding(str(n), f"jump({n - 1})", show=False) for n in range(1, 10)),
    ]

    def __init__(self, poll: Poll, result: Tally | None, mine: set[int]) -> None:
        super().__init__()
        self._poll = poll
        self._result = result
        self._mine = mine

    def compose(self) -> ComposeResult:
        counts = self._result.counts if self._result is not None else (0,) * len(self._poll.options)
        options = []
        for n, (text, count) in enumerate(zip(self._poll.options, counts)):
            line = Text(f"{n + 1:>2}. ", style="dim")
            line.append(safe(text), style="bold" if n in self._mine else "")
            line.append(f"  {count} vote{'s' if count != 1 else ''}", style="dim")
            if n in self._mine:
                line.append("  ✓ yours", style="green")
            options.append(Option(line, id=str(n)))
        kind = "pick any" if self._poll.multiple else "pick one"
        with Vertical(id="dialog"):
            yield Static(Text(safe(self._poll.question), style="bold"), classes="title")
            yield OptionList(*options, id="options")
            yield Static(Text(f"{kind}: ↑ ↓ and Enter (on yours: take it back) · Esc cancels", style="dim"))

    def action_jump(self, index: int) -> None:
        if index < len(self._poll.options):
            self.query_one("#options", OptionList).highlighted = index

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(int(event.option.id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)
