"""Review of migration 20 (92399b4, issue 14 item 1) on a populated version-19 database, on
BOTH backends: version 19 wrote an envelope's delivery row at enqueue ("queued", beside its
outbox item) and updated it at the settle; version 20 writes it when the item leaves the outbox,
with INSERT ... ON CONFLICT on the re-keyed primary key. So the rows version 19 left for items
still queued must meet those upserts (PostgreSQL's ON CONFLICT needs the new key to exist as a
unique index, under its new column order), and answer as before.

Three envelopes of alice's, queued at version 19: 1 is settled by the push's status, 2 gets an
early report while queued and is then handed to a relay, 3 is handed on and settled by a
report later; and 4, final already at version 19."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store import StatusUpdate, Store

from .old_versions import at_version
from .test_contract import ALICE, DAY, NOW, ROOMY, mid

BETA = "beta.example"
RITA = "rita@beta.example"

#: what version 19 held: outbox items 1-3 (tracked) with their "queued" rows, and 4's final row
_OUTBOX = [(BETA, b"k%d" % n, NOW + DAY, b"transit %d" % n, NOW, 9, None, ALICE, 1, mid(n), RITA, 1) for n in (1, 2, 3)]
_DELIVERIES = [(ALICE, 1, mid(n), BETA, 1, "queued", "", NOW, NOW + DAY) for n in (1, 2, 3)] + [
    (ALICE, 1, mid(4), BETA, 1, "failed", "mailbox_full", NOW + 1, NOW + 1)
]
_INSERT_OUTBOX = (
    "INSERT INTO outbox (dest, key, expires, data, queued_at, size, origin, sender_account, sender_device, id, account, device)"
    " VALUES ({marks})"
)
_INSERT_DELIVERY = (
    "INSERT INTO deliveries (sender_account, sender_device, id, dest, device, state, code, updated_at, expires) VALUES ({marks})"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v19(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens (and so migrates) a database version 19 left populated."""
    return at_version(request, tmp_path, 19, [(_INSERT_OUTBOX, _OUTBOX), (_INSERT_DELIVERY, _DELIVERIES)], backend=request.param)


def status(n: int, state: str, code: str = "", *, at: int) -> StatusUpdate:
    return StatusUpdate(id=mid(n), account=RITA, device=1, state=state, code=code, at=at)


async def answers(store: Store) -> list[tuple[int, str, str, int, int]]:
    rows = await store.deliveries(ALICE, 1, [mid(n) for n in (1, 2, 3, 4)])
    return [(int.from_bytes(r.id, "big"), r.state, r.code, r.updated_at, r.expires) for r in rows]


async def test_rows_version_19_left_meet_version_20s_upserts(open_v19: Callable[[], Any]) -> None:
    async with await open_v19() as store:
        assert await answers(store) == [
            (1, "queued", "", NOW, NOW + DAY),
            (2, "queued", "", NOW, NOW + DAY),
            (3, "queued", "", NOW, NOW + DAY),
            (4, "failed", "mailbox_full", NOW + 1, NOW + 1),
        ]
        # 2: a report while still queued is kept aside (an upsert on its version-19 row)
        await store.receive([status(2, "failed", "unknown_device", at=NOW + 2)], now=NOW + 2, quota=ROOMY)
        assert (await answers(store))[1] == (2, "queued", "", NOW, NOW + DAY)

        one, two, three = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
        # 1 settled by the push's status (an upsert on its version-19 row); 2 and 3 handed on
        await store.outbox_done(BETA, [one.seq, two.seq, three.seq], now=NOW + 3, statuses=[status(1, "accepted", at=NOW + 3)])
        assert await answers(store) == [
            (1, "accepted", "", NOW + 3, NOW + 3),
            (2, "failed", "unknown_device", NOW + 2, NOW + 2),  # the report kept aside, now applied
            (3, "queued", "", NOW, NOW + DAY),
            (4, "failed", "mailbox_full", NOW + 1, NOW + 1),
        ]
        await store.receive([status(3, "accepted", at=NOW + 4), status(4, "accepted", at=NOW + 4)], now=NOW + 4, quota=ROOMY)
        assert await answers(store) == [
            (1, "accepted", "", NOW + 3, NOW + 3),
            (2, "failed", "unknown_device", NOW + 2, NOW + 2),
            (3, "accepted", "", NOW + 4, NOW + 4),
            (4, "failed", "mailbox_full", NOW + 1, NOW + 1),  # final states stay final
        ]
        assert await store.outbox_counts() == {}
