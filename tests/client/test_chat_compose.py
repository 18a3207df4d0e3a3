"""`sonet chat`'s compose commands for polls, locations, events and contact cards
(client/chat/compose.py) and incoming calls (client/chat/ringing.py: a accept, r reject; the
peer's hang-up closes the window), driven by textual's pilot in 80x24 against a real in-process
node (as tests/client/test_chat_app.py) and checked on the other side's device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from sonet.client.chat.app import ChatApp
from sonet.client.chat.compose import COMPOSE_HELP, Post, parse_post
from sonet.client.chat.ringing import RingingScreen
from sonet.client.chat.screens import HELP
from sonet.client.sdk import Device
from sonet.client.state_call import KeptCall
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.poll import Poll
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, Clock, shown
from .test_chat_app import Others, online, opened, run_app, until

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")


def test_the_compose_commands_parse_or_say_what_is_wrong() -> None:
    assert COMPOSE_HELP in HELP  # F1 lists them
    assert parse_post("hello") is None and parse_post("/polling x") is None and parse_post("/reply hi") is None
    assert parse_post("/poll Lunch? | pizza | sushi ") == Post("poll", Poll(question="Lunch?", options=("pizza", "sushi")))
    assert parse_post("/poll+ Days? | mon | tue | wed") == Post("poll", Poll(question="Days?", options=("mon", "tue", "wed"), multiple=True))
    assert parse_post("/location 52.5163 13.3777 Brandenburg Gate") == Post(
        "location", Location(lat=525163000, lon=133777000, label="Brandenburg Gate")
    )
    assert parse_post("/event Party | 2026-12-24T18:00Z | the lake") == Post("event", Event(title="Party", start=1798135200000, place="the lake"))
    assert parse_post("/event Party | 2026-12-24T18:00Z") == Post("event", Event(title="Party", start=1798135200000))
    assert parse_post(f"/contact {CAROL} Carol C.") == Post("contact", ContactCard(name="Carol C.", addresses=(CAROL,)))

    for text, words in (
        ("/poll", "usage: /poll QUESTION"),
        ("/poll Lunch? | pizza", "at least two options"),
        ("/poll Lunch? | pizza | pizza", "/poll:"),
        ("/poll Lunch? | " + " | ".join(str(n) for n in range(11)), "/poll:"),
        ("/location 91 0", "within ±90"),
        ("/location north 0", "not a number of degrees"),
        ("/location 52.5", "latitude and a longitude"),
        ("/event Party | soon", "is not a time"),
        ("/event Party", "a title and a time"),
        ("/contact nobody", "/contact:"),
    ):
        problem = parse_post(text)
        assert isinstance(problem, str) and words in problem and "\n" not in problem, (text, problem)


async def test_poll_location_event_and_contact_typed_in_the_compose_box_reach_the_other_side(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "plans?")
    clock.advance(1000)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        said: list[str] = []
        app.say = lambda text, severity="information", timeout=6: said.append(text)  # type: ignore[method-assign]
        compose = app.query_one("#compose", Input)

        compose.value = "/poll Lunch? | pizza"  # refused in one line; the command stays to be fixed
        await pilot.press("enter")
        assert "at least two options" in said[-1] and compose.value == "/poll Lunch? | pizza"

        for text in ("/poll Lunch? | pizza | sushi", "/location 52.5163 13.3777 the gate", "/event Party | 2026-12-24T18:00Z | the lake",
                     f"/contact {CAROL} Carol"):  # fmt: skip
            count = len([i for i in app.history.messages(BOB) if i.mine])
            compose.value = text
            await pilot.press("enter")
            await until(pilot, lambda: len([i for i in app.history.messages(BOB) if i.mine]) == count + 1, text)
            clock.advance(1000)
        await until(pilot, lambda: [i.type for i in app.history.messages(BOB) if i.mine] == ["poll", "location", "event", "contact"], "all four sent")

    await run_app(alice, clock, scenario)
    got = [(kind, fields) for sender, kind, fields in shown(bob, await bob.receive()) if sender == ALICE and kind != "receipt"]
    assert [kind for kind, _ in got] == ["poll", "location", "event", "contact"]
    assert got[0][1]["poll"]["options"] == ["pizza", "sushi"]
    assert got[1][1]["location"] == {"lat": 525163000, "lon": 133777000, "accuracy": 0, "label": "the gate"}
    assert (got[2][1]["event"]["title"], got[2][1]["event"]["place"]) == ("Party", "the lake")
    assert got[3][1]["contact"] == {"name": "Carol", "addresses": [CAROL]}


async def test_an_incoming_call_rings_and_is_accepted_rejected_or_cancelled_by_the_caller(
    alpha: RunningNode, register: Register, clock: Clock
) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "calling you")
    clock.advance(1000)
    calls: list[bytes] = []

    async def call_alice() -> None:
        placed = await bob.call(ALICE, "v=0\r\ns=bob\r\n")
        calls.append(placed.call.id)

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        said: list[str] = []
        app.say = lambda text, severity="information", timeout=6: said.append(text)  # type: ignore[method-assign]

        await others.run(call_alice)
        await until(pilot, lambda: isinstance(app.screen, RingingScreen), "the first call rings")
        assert app.screen.peer == BOB and app.screen.call_id == calls[0]  # type: ignore[attr-defined]
        await pilot.press("a")
        await until(pilot, lambda: "accepted (no media in this client)" in said, "accepted")
        async def bobs_calls() -> list[KeptCall]:
            await bob.receive()
            return bob.calls()

        [first] = await others.run(bobs_calls)
        assert (first.call.state, first.call.remote_sdp.startswith("v=0")) == ("connected", True)
        await others.run(bob.hang_up, calls[0])
        await until(pilot, lambda: f"the call with {BOB} ended" in said, "bob's hang-up said")

        await others.run(call_alice)
        await until(pilot, lambda: isinstance(app.screen, RingingScreen) and app.screen.call_id == calls[1], "the second call rings")
        await pilot.press("r")
        await until(pilot, lambda: "rejected the call" in said, "rejected")

        await others.run(call_alice)
        await until(pilot, lambda: isinstance(app.screen, RingingScreen) and app.screen.call_id == calls[2], "the third call rings")
        await others.run(bob.hang_up, calls[2])  # bob gives up before alice picks up: the window goes
        await until(pilot, lambda: not isinstance(app.screen, RingingScreen), "the ringing window closed")
        await until(pilot, lambda: f"the call with {BOB} ended (cancelled)" in said, "the cancel said")

    await run_app(alice, clock, scenario)
    await bob.receive()
    assert [(c.call.state, c.call.reason) for c in bob.calls()] == [("ended", "cancelled"), ("ended", "declined"), ("ended", "ended")]


async def test_call_and_hang_up_from_the_compose_box(alpha: RunningNode, register: Register, clock: Clock) -> None:
    alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
    await bob.send_text(ALICE, "ring me")
    clock.advance(1000)

    async def bob_answers() -> None:
        shown(bob, await bob.receive())
        [ringing] = bob.calls()
        assert (ringing.call.peer, ringing.call.state) == (ALICE, "incoming")
        await bob.answer_call(ringing.call.id, "v=0\r\ns=bob\r\n")

    async def scenario(app: ChatApp, pilot: Pilot, others: Others) -> None:
        await online(app, pilot)
        await opened(app, pilot, BOB)
        said: list[str] = []
        app.say = lambda text, severity="information", timeout=6: said.append(text)  # type: ignore[method-assign]
        compose = app.query_one("#compose", Input)

        compose.value = "/hangup"
        await pilot.press("enter")
        await until(pilot, lambda: said and said[-1] == f"no call with {BOB} to hang up", "nothing to hang up")
        compose.value = "/call"
        await pilot.press("enter")
        await until(pilot, lambda: said and said[-1].startswith(f"calling {BOB}"), "calling")
        await others.run(bob_answers)
        await until(pilot, lambda: f"{BOB} answered the call (no media in this client)" in said, "the answer said")
        compose.value = "/hangup"
        await pilot.press("enter")
        await until(pilot, lambda: said[-1] == f"hung up the call with {BOB}", "hung up")

    await run_app(alice, clock, scenario)
    await bob.receive()
    [ended] = bob.calls()
    assert (ended.call.state, ended.call.reason) == ("ended", "ended")
