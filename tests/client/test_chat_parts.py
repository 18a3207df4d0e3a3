"""The chat app's parts that need no node: the trio guest on asyncio (client/chat/bridge.py),
the QR code in half blocks (client/chat/qr.py), ticks and names (client/chat/render.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import segno
import trio

from sonet.client.chat.bridge import GuestEnded, TrioGuest
from sonet.client.chat.qr import qr_text
from rich.cells import cell_len
from rich.console import Console

from sonet.client.chat.render import NARROW_ROW, conversation_entry, message_row, safe, short_name, tick

# The bridge -------------------------------------------------------------------------------


def test_trio_runs_as_a_guest_on_the_asyncio_thread_and_hands_results_back() -> None:
    seen: dict[str, object] = {}

    async def main(guest: TrioGuest) -> None:
        seen["main_thread"] = threading.get_ident()
        await trio.sleep_forever()

    async def scenario() -> None:
        guest = TrioGuest(main)
        guest.start()

        async def in_trio() -> str:
            seen["call_thread"] = threading.get_ident()
            await trio.sleep(0)
            trio.lowlevel.current_task()  # only works inside trio
            return "from trio"

        assert await guest.call(in_trio) == "from trio"
        seen["asyncio_thread"] = threading.get_ident()

        async def fails() -> None:
            raise ValueError("a refusal")

        with pytest.raises(ValueError, match="a refusal"):
            await guest.call(fails)
        outcome = await guest.stop()
        assert outcome is not None and outcome.unwrap() is None  # cancelled cleanly, no error
        assert not guest.running
        with pytest.raises(GuestEnded):
            await guest.call(in_trio)

    asyncio.run(scenario())
    # one thread: the device's sqlite connection is only ever used from it
    assert seen["main_thread"] == seen["call_thread"] == seen["asyncio_thread"]


def test_serial_calls_run_one_after_the_other_in_the_order_handed_over() -> None:
    order: list[str] = []

    async def main(guest: TrioGuest) -> None:
        await trio.sleep_forever()

    def step(name: str, pause: float):  # noqa: ANN202
        async def run() -> None:
            order.append(f"{name} begins")
            await trio.sleep(pause)
            order.append(f"{name} ends")

        return run

    async def scenario() -> None:
        guest = TrioGuest(main)
        guest.start()
        futures = [guest.call(step("first", 0.05), serial=True), guest.call(step("second", 0), serial=True)]
        await asyncio.gather(*futures)
        await guest.stop()

    asyncio.run(scenario())
    assert order == ["first begins", "first ends", "second begins", "second ends"]


def test_stop_cancels_the_work_in_flight_and_waits_for_it() -> None:
    cleaned: list[str] = []

    async def main(guest: TrioGuest) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append("main")

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cleaned.append("call")

    async def scenario() -> None:
        guest = TrioGuest(main)
        guest.start()
        pending = guest.call(forever)
        await asyncio.sleep(0.05)
        await guest.stop()
        assert pending.cancelled()

    asyncio.run(scenario())
    assert sorted(cleaned) == ["call", "main"]


def test_an_error_of_the_main_task_ends_the_run_with_it() -> None:
    async def main(guest: TrioGuest) -> None:
        raise RuntimeError("this device was removed")

    async def scenario() -> BaseException:
        guest = TrioGuest(main)
        guest.start()
        outcome = await guest.wait()
        assert outcome is not None
        with pytest.raises(BaseException) as caught:
            outcome.unwrap()
        return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error, BaseExceptionGroup) and error.subgroup(RuntimeError) is not None


# The QR code ------------------------------------------------------------------------------


def test_the_half_block_qr_code_draws_exactly_segnos_modules() -> None:
    payload = "sonet-safety:1:" + "Ab-_" * 21 + "AB"
    text = qr_text(payload, border=2).plain.splitlines()
    drawn: list[list[bool]] = [[], []]
    rows: list[list[bool]] = []
    for line in text:
        upper = [c in "▀█" for c in line]
        lower = [c in "▄█" for c in line]
        assert set(line) <= {" ", "▀", "▄", "█"}
        rows += [upper, lower]
    drawn = rows
    expected = [[bool(m) for m in row] for row in segno.make(payload, error="l", boost_error=False).matrix_iter(border=2)]
    assert drawn[: len(expected)] == expected
    assert all(not any(row) for row in drawn[len(expected) :])  # the padding row is light
    assert len(text) <= 21 and len(text[0]) <= 41  # fits beside the number in 80x24


# Ticks and names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "glyph"),
    [("pending", "◷"), ("sent", "✓"), ("accepted", "✓"), ("queued", "✓"), ("ordered", "✓"), ("delivered", "✓✓"), ("read", "✓✓"), ("failed", "✗")],
)
def test_every_sent_state_has_its_tick(state: str, glyph: str) -> None:
    assert tick(state).plain == glyph


def test_read_is_drawn_unlike_delivered() -> None:
    assert tick("read").style != tick("delivered").style


def test_names_are_short_on_the_home_node_and_whole_elsewhere() -> None:
    me = "alice@alpha.example"
    assert short_name(me, me) == "you"
    assert short_name("bob@alpha.example", me) == "bob"
    assert short_name("bob@beta.example", me) == "bob@beta.example"


def drawn(renderable: object, width: int = 54) -> str:
    console = Console(width=width, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_a_failed_message_says_why_under_it_and_a_pending_one_what_it_waits_for() -> None:
    me = "alice@alpha.example"
    failed = drawn(message_row(at=0, sender=me, me=me, mine=True, text="hello", state="failed", note="no account bob@alpha.example"))
    first, second = failed.splitlines()[:2]
    assert "you" in first and "hello" in first and first.rstrip().endswith("✗")
    assert "not sent: no account bob@alpha.example" in second
    pending = drawn(message_row(at=0, sender=me, me=me, mine=True, text="hello", state="pending", note="the node cannot be reached"))
    assert pending.splitlines()[0].rstrip().endswith("◷") and "waiting on this device: the node cannot be reached" in " ".join(pending.split())
    theirs = drawn(message_row(at=0, sender="bob@alpha.example", me=me, mine=False, text="hi", state="received", note=""))
    assert theirs.splitlines() == [theirs.splitlines()[0]] and "bob" in theirs and "✓" not in theirs


def test_in_a_narrow_terminal_the_text_goes_under_time_and_sender_at_full_width() -> None:
    """Found by newbie10 in a 60-column tmux: beside the 26-column list the text had ~7 columns
    next to time and sender, a word a line. Below NARROW_ROW columns the row puts the text under
    them; at 54 (80 columns less the list) it stays one grid row, as before."""
    me = "alice@alpha.example"
    text = "the quick brown fox jumps over the lazy dog " * 3
    narrow = drawn(message_row(at=0, sender="bob@beta.example", me=me, mine=False, text=text, state="received", note=""), width=NARROW_ROW - 10)
    head, *lines = narrow.splitlines()
    assert head.strip() == "bob@beta.example" and len(lines) == 4, narrow
    assert " ".join(" ".join(lines).split()) == text.strip() and max(len(line.rstrip()) for line in lines) > NARROW_ROW - 14, narrow
    mine = drawn(message_row(at=0, sender=me, me=me, mine=True, text="hello", state="pending", note="the node cannot be reached"), width=40)
    assert mine.splitlines()[0].split() == ["you", "◷"] and mine.splitlines()[1].strip() == "hello", mine
    assert "waiting on this device: the node cannot be reached" in " ".join(mine.split()), mine
    wide = drawn(message_row(at=0, sender="bob@beta.example", me=me, mine=False, text="hi there", state="received", note=""))
    assert len(wide.splitlines()) == 1 and "bob@beta.exam" in wide and "hi there" in wide, wide


def test_a_conversation_entry_fits_its_width_in_cells() -> None:
    """Two lines whatever the text: an emoji takes two cells, so a preview of emoji cut at the
    width in characters was twice as wide and wrapped into a third line (newbie10)."""
    for title, last in (("bob@beta.example", "hello trio from the chat"), ("🎉" * 30, "👋" * 30), ("会議" * 10, "مرحبا بالعالم " * 4)):
        first, second = conversation_entry(title=title, is_group=True, last_text=last, unread=3, width=14).plain.split("\n")
        assert cell_len(first) == 14 and first.startswith("# ") and first.endswith(" 3") and 12 <= cell_len(second) <= 14, (first, second)


def test_safe_keeps_text_and_replaces_what_drives_a_terminal() -> None:
    assert safe("plain text, émoji 🎉\tand\nlines") == "plain text, émoji 🎉\tand\nlines"
    assert safe("a\x1b[2Jb\x07c\x9bd\u202ee\u2066f") == "a\ufffd[2Jb\ufffdc\ufffdd\ufffde\ufffdf"
