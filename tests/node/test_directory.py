"""The node's key directory over ``/client``: every account change grows the signed log, lookups
carry proofs a device can verify with core/keydir, heads and consistency proofs are served, a
device audits stretches of the log between heads it verified (with the compact range before
them), Welcome counts the peers that witness the log, and the log survives restarts (no duplicate head;
accounts from before the directory are backfilled; a log that no longer matches its head stops
the node instead of being signed).

Real nodes run in-process (tests/node/conftest.py); what is committed is read back from the
store, and every proof is checked with the same core/keydir functions the client uses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
import trio

from sonet.core.client_api import (
    Bundles,
    Consistency,
    Devices,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchHead,
    FetchLeaves,
    Head,
    Leaves,
    RemoveDevice,
)
from sonet.core.errors import VerifyError
from sonet.core.keydir import (
    EMPTY_ROOT,
    CompactRange,
    DirectoryEntry,
    ProvenEntry,
    TreeHead,
    decode_entry,
    leaf_hash,
    verify_consistency,
    verify_directory_proof,
    verify_head,
)
from sonet.core import limits
from sonet.node.app import DB_FILE, Node
from sonet.node.config import NodeConfig
from sonet.node.store import StoreError

from tests.federation.net import pin, pin_node, until

from .conftest import HANG_S, NODE_NAME, RunningNode, StartNode
from .kit import Account, NodeError, RawConnection, new_identity

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"


def proven(at: RunningNode, answer: Devices | Bundles, account: str = ALICE) -> ProvenEntry:
    """The answer's proof, verified the way a device verifies it (raises if it does not)."""
    return verify_directory_proof(answer.proof, node=NODE_NAME, node_key=at.identity.public, account=account)


async def head_of(at: RunningNode, account: Account) -> TreeHead:
    """The node's current head as a device fetches it, verified with the node key."""
    async with at.raw(account.first) as conn:
        answer = await conn.request(lambda n: FetchHead(request=n, node=NODE_NAME))
    assert isinstance(answer, Head) and answer.node == NODE_NAME
    return verify_head(answer.head.head, node_key=at.identity.public, node=NODE_NAME)


async def devices_of(at: RunningNode, asking: Account, account: str = ALICE) -> Devices:
    async with at.raw(asking.first) as conn:
        answer = await conn.request(lambda n: FetchDevices(request=n, account=account))
    assert isinstance(answer, Devices)
    return answer


async def stored_heads(at: RunningNode) -> list[tuple[int, bytes]]:
    """Every head the node signed, as (size, signed head)."""
    with closing(sqlite3.connect(at.data_dir / DB_FILE)) as conn:
        return [(size, bytes(head)) for size, head in conn.execute("SELECT size, head FROM directory_heads ORDER BY size")]


# Growing the log ----------------------------------------------------------------------------


async def test_a_new_node_signs_an_empty_head_to_be_witnessed(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        async with running.store() as store:
            head = await store.latest_head()
        assert head is not None and (head.size, head.root, head.cosignatures) == (0, EMPTY_ROOT, ())
        verified = verify_head(head.head, node_key=running.identity.public, node=NODE_NAME)
        assert (verified.size, verified.root) == (0, EMPTY_ROOT)


async def test_register_grows_the_head_and_lookups_carry_a_proof_that_verifies(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        assert (await head_of(running, alice)).size == 1
        bob = await running.enroll("bob")
        assert (await head_of(running, alice)).size == 2

        devices = await devices_of(running, bob, ALICE)
        entry = proven(running, devices)
        assert (entry.index, entry.head.size, entry.entry.prev) == (0, 2, -1)
        # what the device uses is exactly what the proof covers
        assert (devices.account_identity, devices.device_list) == (entry.entry.identity, entry.entry.device_list)
        assert devices.account_identity == alice.identity_bytes
        assert [d.device for d in devices.devices] == [1]

        async with running.raw(bob.first) as conn:
            bundles = await conn.request(lambda n: FetchBundles(request=n, account=ALICE, devices=()))
        assert isinstance(bundles, Bundles)
        assert proven(running, bundles).entry == entry.entry
        assert (bundles.account_identity, bundles.device_list) == (entry.entry.identity, entry.entry.device_list)

        # another account's proof does not pass for alice's
        with pytest.raises(VerifyError) as wrong:
            proven(running, await devices_of(running, alice, BOB), ALICE)
        assert wrong.value.code == "wrong_account"


async def test_linking_and_removing_a_device_append_leaves_chained_to_the_previous_one(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        phone = await running.link(alice)
        linked = proven(running, await devices_of(running, alice))
        assert (linked.index, linked.entry.prev, linked.head.size) == (2, 0, 3)
        assert [d.device for d in (await devices_of(running, alice)).devices] == [1, phone.device_id]

        new_list = alice.list_without(phone.device_id)
        async with running.raw(alice.first) as conn:
            await conn.request(lambda n: RemoveDevice(request=n, device=phone.device_id, device_list=new_list))
        removed = proven(running, await devices_of(running, alice))
        assert (removed.index, removed.entry.prev, removed.head.size) == (3, 2, 4)
        assert removed.entry.device_list == new_list


async def test_consistency_proofs_between_old_and_new_heads_verify(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        old = await head_of(running, alice)
        await running.enroll("bob")
        await running.enroll("carol")
        await running.link(alice)
        new = await head_of(running, alice)
        assert (old.size, new.size) == (1, 4)

        async with running.raw(alice.first) as conn:
            answer = await conn.request(lambda n: FetchConsistency(request=n, node=NODE_NAME, first=1, second=4))
            assert isinstance(answer, Consistency) and (answer.node, answer.first, answer.second) == (NODE_NAME, 1, 4)
            verify_consistency(first=1, second=4, first_root=old.root, second_root=new.root, proof=answer.proof)
            same = await conn.request(lambda n: FetchConsistency(request=n, node=NODE_NAME, first=4, second=4))
            assert isinstance(same, Consistency) and same.proof == ()
            with pytest.raises(NodeError) as err:  # beyond the newest head
                await conn.request(lambda n: FetchConsistency(request=n, node=NODE_NAME, first=1, second=5))
            assert err.value.code == "bad_request"
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: FetchHead(request=n, node="not a node!"))
            assert err.value.code == "bad_address"
        # a wrong old root does not pass: the proof binds both heads
        with pytest.raises(VerifyError) as bad:
            verify_consistency(first=1, second=4, first_root=new.root, second_root=new.root, proof=answer.proof)
        assert bad.value.code == "bad_consistency_proof"


async def audit(conn: RawConnection, start: int, end: int, *, from_root: bytes, to: TreeHead) -> list[DirectoryEntry]:
    """Leaves ``start`` .. ``end - 1`` as a self-monitoring device checks them: the compact range
    folds to the root of the head of size ``start`` it audited before, and with the leaves
    appended gives the root of the verified head ``to``. Asks again while the answer is short."""
    entries: list[DirectoryEntry] = []
    compact: CompactRange | None = None
    while start < end:
        answer = await conn.request(lambda n: FetchLeaves(request=n, start=start, end=end))
        assert isinstance(answer, Leaves) and answer.start == start and answer.leaves
        here = CompactRange(start, answer.frontier)
        if compact is None:
            assert here.root() == from_root
        else:
            assert here.hashes == compact.hashes  # the same log as the previous answer
        compact = here
        for leaf in answer.leaves:
            compact.append(leaf_hash(leaf))
            entries.append(decode_entry(leaf))
        start += len(answer.leaves)
    assert compact is not None and (compact.size, compact.root()) == (to.size, to.root)
    return entries


async def test_a_device_audits_every_leaf_between_two_heads(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        first = await head_of(running, alice)
        bob = await running.enroll("bob")
        await running.link(alice)
        # the head a device audits up to is the one its own lookup was proven against
        newest = proven(running, await devices_of(running, alice)).head
        assert (first.size, newest.size) == (1, 3)
        async with running.raw(alice.first) as conn:
            # every account's leaves, not only alice's: a leaf the node slipped in for her is
            # seen wherever it is
            entries = await audit(conn, 1, 3, from_root=first.root, to=newest)
            assert [(e.account, e.prev) for e in entries] == [(BOB, -1), (ALICE, 0)]
            assert entries[0].identity == bob.identity_bytes
            entries = await audit(conn, 0, 3, from_root=EMPTY_ROOT, to=newest)
            assert [e.account for e in entries] == [ALICE, BOB, ALICE]
            # a tampered leaf does not lead to the signed root
            answer = await conn.request(lambda n: FetchLeaves(request=n, start=1, end=3))
            assert isinstance(answer, Leaves)
            compact = CompactRange(1, answer.frontier)
            compact.append(leaf_hash(answer.leaves[0] + b"\0"))
            compact.append(leaf_hash(answer.leaves[1]))
            assert compact.root() != newest.root


async def test_a_long_answer_is_cut_short_and_the_device_asks_for_the_rest(
    running: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        for user in ("bob", "carol", "dave"):
            await running.enroll(user)
        newest = proven(running, await devices_of(running, alice)).head
        async with running.raw(alice.first) as conn:
            answer = await conn.request(lambda n: FetchLeaves(request=n, start=0, end=4))
            assert isinstance(answer, Leaves) and len(answer.leaves) == 4
            # room for two leaves: real leaves are ~6 KB, the cap is there for the largest ones
            monkeypatch.setattr(limits, "MAX_LEAVES_BYTES", len(answer.leaves[0]) + len(answer.leaves[1]) + 10)
            short = await conn.request(lambda n: FetchLeaves(request=n, start=0, end=4))
            assert isinstance(short, Leaves) and short.leaves == answer.leaves[:2]
            entries = await audit(conn, 0, 4, from_root=EMPTY_ROOT, to=newest)
            assert [e.account for e in entries] == [ALICE, BOB, f"carol@{NODE_NAME}", f"dave@{NODE_NAME}"]
            # one leaf larger than the cap still comes, alone
            monkeypatch.setattr(limits, "MAX_LEAVES_BYTES", 1)
            single = await conn.request(lambda n: FetchLeaves(request=n, start=1, end=4))
            assert isinstance(single, Leaves) and single.leaves == answer.leaves[1:2]


async def test_leaf_ranges_beyond_the_newest_head_or_from_strangers_are_refused(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        async with running.store() as store:  # a leaf committed, its head not yet signed
            await store.add_device(
                account=BOB, fingerprint="f" * 32, record=b"r", device_list=b"v2", expected_version=1, now=1
            )
        async with running.raw(alice.first) as conn:
            for start, end in ((0, 3), (2, 3), (5, 9)):
                with pytest.raises(NodeError) as err:
                    await conn.request(lambda n: FetchLeaves(request=n, start=start, end=end))
                assert err.value.code == "bad_request" and "newest head" in str(err.value)
            answer = await conn.request(lambda n: FetchLeaves(request=n, start=0, end=2))
            assert isinstance(answer, Leaves) and len(answer.leaves) == 2  # the connection goes on
        async with running.raw(new_identity()) as stranger:
            for build in (
                lambda n: FetchLeaves(request=n, start=0, end=1),
                lambda n: FetchHead(request=n, node=NODE_NAME),
                lambda n: FetchConsistency(request=n, node=NODE_NAME, first=1, second=1),
            ):
                with pytest.raises(NodeError) as err:
                    await stranger.request(build)
                assert err.value.code == "not_registered"


async def test_welcome_counts_the_peers_that_witness_the_directory(running: RunningNode, start_node: StartNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with running.raw(alice.first) as conn:
            assert conn.welcome.witnesses == 0
        # a peer only configured (it never cosigned) is no witness devices could count on
        await pin(running, "gamma.example", url="ws://127.0.0.1:9", fingerprint="c" * 32)
        async with running.raw(alice.first) as conn:
            assert conn.welcome.witnesses == 0
        beta = await start_node(name="beta.example")
        await pin_node(running, beta)
        await pin_node(beta, running)

        async def witnesses() -> int:
            async with running.raw(new_identity()) as stranger:  # told before it registers, too
                return stranger.welcome.witnesses

        await until(lambda: witnesses(), "beta cosigned alpha's head")
        async with running.raw(alice.first) as conn:
            assert conn.welcome.witnesses == 1


async def test_a_change_whose_head_was_never_signed_is_published_by_the_next_lookup(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        await running.enroll("bob")
        # as if the node crashed between committing a change and signing its head
        async with running.store() as store:
            await store.add_device(
                account=BOB, fingerprint="f" * 32, record=b"r", device_list=b"v2", expected_version=1, now=1
            )
        entry = proven(running, await devices_of(running, alice, BOB), BOB)
        assert (entry.index, entry.head.size, entry.entry.device_list) == (2, 3, b"v2")
        assert [size for size, _ in await stored_heads(running)] == [0, 1, 2, 3]


# Restarts ------------------------------------------------------------------------------------


@pytest.fixture
def run_node() -> Callable[[Path, NodeConfig], object]:
    """``async with run_node(data, config) as node``: a RunningNode until the block ends."""

    @asynccontextmanager
    async def run(data: Path, config: NodeConfig) -> AsyncIterator[RunningNode]:
        app = Node(data, config)
        async with trio.open_nursery() as inner:
            url = await inner.start(app.run)
            yield RunningNode(node=app, url=url, data_dir=data, config=config, identity=app.identity, stopped=trio.Event())
            inner.cancel_scope.cancel()

    return run


async def test_a_restart_keeps_the_log_and_signs_no_duplicate_head(make_node_dir, run_node) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        data, config = make_node_dir()
        async with run_node(data, config) as first:
            alice = await first.enroll("alice")
            await first.enroll("bob")
            before = await stored_heads(first)
            proof_before = (await devices_of(first, alice)).proof
        async with run_node(data, config) as second:
            assert await stored_heads(second) == before  # not even re-signed with a new time
            devices = await devices_of(second, alice)
            assert devices.proof == proof_before
            await second.link(alice)
            assert (await head_of(second, alice)).size == 3
            assert proven(second, await devices_of(second, alice)).entry.prev == 0


async def test_accounts_without_leaves_are_backfilled_at_start(make_node_dir, run_node) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        data, config = make_node_dir()
        async with run_node(data, config) as first:
            alice = await first.enroll("alice")
            bob = await first.enroll("bob")
        # a database from before the directory: accounts, but no leaves and no heads
        with closing(sqlite3.connect(data / DB_FILE)) as conn, conn:
            conn.execute("DELETE FROM directory_leaves")
            conn.execute("DELETE FROM directory_heads")
        async with run_node(data, config) as second:
            assert [size for size, _ in await stored_heads(second)] == [2]
            for account, address in ((alice, ALICE), (bob, BOB)):
                entry = proven(second, await devices_of(second, alice, address), address)
                assert (entry.entry.prev, entry.head.size) == (-1, 2)
                assert entry.entry.identity == account.identity_bytes


async def test_a_log_that_no_longer_matches_its_head_stops_the_node(make_node_dir, run_node) -> None:  # noqa: ANN001
    with trio.fail_after(HANG_S):
        data, config = make_node_dir()
        async with run_node(data, config) as first:
            await first.enroll("alice")
            await first.enroll("bob")
        with closing(sqlite3.connect(data / DB_FILE)) as conn, conn:
            conn.execute("DELETE FROM directory_leaves WHERE leaf_index = 1")  # history rewritten
        with pytest.raises(StoreError, match="does not match"):
            await Node(data, config).run()
        with closing(sqlite3.connect(data / DB_FILE)) as conn:
            sizes = [size for (size,) in conn.execute("SELECT size FROM directory_heads ORDER BY size")]
        assert sizes == [0, 1, 2]  # nothing was signed over the damaged log
