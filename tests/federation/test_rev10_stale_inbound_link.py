"""Review round 10 (af5fc24: pushes go by the peer table federation read last): an inbound
link is checked against the peer table once, when it is served. A peer removed, or re-pinned
to a new key (`sonet-node peer remove` + `peer add`, e.g. after its old key leaked), kept the
link it had open and every push on it was taken as before, for as long as the link lived:
envelopes into local mailboxes, and group items in its name. Now a request on a link whose
peer's entry went or names another key closes the link (``unknown_peer``)."""

from __future__ import annotations

import pytest

from sonet.core.federation_api import Push, PushResult
from tests.node.conftest import StartNode

from .net import BETA, ask, mailbox_ids, new_key, peer_link, pin, transit

MALLORY = "mallory.example"


@pytest.mark.parametrize("sequenced", [False, True], ids=["unsequenced", "sequenced"])
@pytest.mark.parametrize("change", ["removed", "re-pinned"])
async def test_a_link_of_a_peer_removed_or_re_pinned_is_not_served_any_more(start_node: StartNode, change: str, sequenced: bool) -> None:
    beta = await start_node(name=BETA)
    bob = await beta.enroll("bob")
    old_key = new_key()
    await pin(beta, MALLORY, fingerprint=old_key.public.fingerprint)
    federation = beta.node.federation
    assert federation is not None
    before = transit(bob.address, origin=MALLORY)
    after = transit(bob.address, origin=MALLORY)
    async with peer_link(beta, old_key, MALLORY) as link:
        assert await ask(link, Push(request=1, items=(before,), seq=int(sequenced))) == PushResult(request=1, outcomes=("ok",))
        async with beta.store() as store:  # the operator, in another process
            assert await store.remove_peer(MALLORY)
        if change == "re-pinned":
            await pin(beta, MALLORY, fingerprint=new_key().public.fingerprint)
        await federation.routes()  # the running node has read the new table (the admin watcher's poll)
        try:
            answer = await ask(link, Push(request=2, items=(after,), seq=2 * int(sequenced)))
        except Exception as exc:  # noqa: BLE001 - the link closed: what the test wants
            answer = exc
    assert not isinstance(answer, PushResult), f"a push on the old link was answered {answer}"
    assert after.envelope is not None and before.envelope is not None
    assert await mailbox_ids(beta, bob.address) == [before.envelope.id]
