"""Access tokens through the SDK (client/access.py): a device shares its account's token in the
texts its user writes, never in automatic receipts; the recipient then writes back as a contact.
A stranger's texts past its small allowance of message requests wait on its device."""

from __future__ import annotations

import pytest
import trio

from sonet.federation.message_requests import PER_DEVICE
from tests.node.conftest import RunningNode

from .conftest import ALICE, BOB, CAROL, HANG_S, texts

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (tests/conftest.py)

BURST = int(PER_DEVICE.burst)


async def test_writing_to_someone_makes_them_a_contact_and_receipts_do_not(alpha: RunningNode, register) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        # alice is a stranger to bob: a few message requests, then her texts wait
        for n in range(BURST):
            assert (await alice.send_text(BOB, f"request {n}")).state != "pending"
        waiting = await alice.send_text(BOB, "one too many")
        assert (waiting.state, waiting.code) == ("pending", "message_request_limit")
        # bob reads them: his delivery receipts do not make alice his contact ...
        assert len(texts(bob, await bob.receive())) == BURST
        assert (await alice.send_text(BOB, "still waiting")).state == "pending"
        # ... but his answer does: it carries his token, and alice's waiting texts go
        await bob.send_text(ALICE, "hi alice")
        assert texts(alice, await alice.receive()) == [(BOB, "hi alice")]
        for n in range(BURST + 2):
            assert (await alice.send_text(BOB, f"as a contact {n}")).state != "pending"
        got = texts(bob, await bob.receive())
        assert got[:2] == [(ALICE, "one too many"), (ALICE, "still waiting")] and len(got) == BURST + 4
        # bob learned alice's token from her first text: he was her contact all along
        for n in range(BURST + 1):
            assert (await bob.send_text(ALICE, f"reply {n}")).state != "pending"
        # carol, who never heard from bob, is still a stranger to him
        for n in range(BURST):
            await carol.send_text(BOB, f"carol {n}")
        assert (await carol.send_text(BOB, "carol again")).code == "message_request_limit"
        assert CAROL not in {sender for sender, _ in texts(alice, await alice.receive())}
