"""Attack round 10: a member node notes which of its devices an ORDERED item still has to reach
(``group_waiting``, until the item expires) when they are at their allowance of group items.
Any pinned peer may start a group naming a device of the node (its first commit makes it the
group's hub: trust on first use), and once that device is full every later item it pushed was
one more row, counted towards nothing: 18,999 rows from 38 pushes in 1.5 s of CPU. Now the rows
count towards the pushing hub's relay budget (``relay_full`` past it, the push not taken)."""

from __future__ import annotations

from sonet.core import limits
from sonet.core.client_api import ErrorFrame
from sonet.core.federation_api import Push, PushResult, Transit
from sonet.core.groups.items import GroupItem, GroupMember
from sonet.federation.records import STORED_ROW_OVERHEAD
from sonet.node.budget_settings import BudgetSettings
from tests.node.conftest import StartNode
from tests.node.group_kit import mls_device
from tests.node.test_groups_robust import ordered

from .net import BETA, ask, new_key, peer_link, pin

MIB = 1 << 20
MALLORY = "mallory.example"
PER_PUSH = 500


def pushed(item: GroupItem) -> Transit:
    return Transit(origin=MALLORY, dest=BETA, hops=limits.MAX_HOPS, envelope=None, report=None, group=item)


async def test_a_full_devices_waiting_rows_count_towards_the_hub_that_pushed_the_items(start_node: StartNode) -> None:
    budgets = BudgetSettings(message_requests_per_mailbox=1_000_000, group_items_per_device=2)
    beta = await start_node(name=BETA, budgets=budgets, storage_relay_origin_max_bytes=MIB)
    bob = await beta.enroll("bob")
    device = mls_device(bob.first)
    device.create(hub=MALLORY)
    _, commit, _ = device.g.commit(device.rng.randbytes)
    group, app = device.g.group_id, device.g.encrypt(b"x", device.rng.randbytes).to_bytes()
    key = new_key()
    await pin(beta, MALLORY, fingerprint=key.public.fingerprint)
    first = ordered(group, 1, commit.to_bytes(), hub=MALLORY, members=(GroupMember(account=bob.address, device=1),))
    refusal, seq = "", 2
    async with peer_link(beta, key, MALLORY) as link:
        assert await ask(link, Push(request=1, items=(pushed(first),))) == PushResult(request=1, outcomes=("ok",))
        for n in range(2, 40):
            answer = await ask(link, Push(request=n, items=tuple(pushed(ordered(group, seq + i, app, hub=MALLORY)) for i in range(PER_PUSH))))
            seq += PER_PUSH
            if isinstance(answer, ErrorFrame):
                refusal = answer.code
                break
    async with beta.store() as store:
        rows = await store._read(lambda conn: conn.execute("SELECT count(*) FROM group_waiting").fetchone()[0])
    assert refusal == "relay_full" and rows <= MIB // STORED_ROW_OVERHEAD, f"{rows} rows kept for bob, refusal {refusal!r}"
