"""The store methods of operator administration (node/store/base.py "Operator administration"),
on every backend: disable/enable, offboarding with its tombstone leaf, removed addresses, invites."""

from __future__ import annotations

import pytest

from sonet.core.keydir import decode_entry
from sonet.node.store import InviteInvalid, Store

NOW = 1_800_000_000_000
ALICE = "alice@alpha.example"


async def register(store: Store, account: str = ALICE, fingerprint: str = "fp-1", invite: bytes | None = None) -> None:
    await store.register_account(
        account=account, fingerprint=fingerprint, record=b"r", account_identity=b"k", device_list=b"l", invite_hash=invite, now=NOW
    )


async def test_disable_and_enable_change_only_the_state_and_move_the_version(store: Store) -> None:
    await register(store)
    v0 = await store.admin_version()
    assert await store.set_account_disabled(ALICE, disabled=True, now=NOW + 1)
    assert await store.set_account_disabled(ALICE, disabled=True, now=NOW + 2)  # kept: the first time stays
    assert await store.account_disabled(ALICE)
    summary = await store.account_summary(ALICE)
    assert summary is not None and summary.disabled_at == NOW + 1 and summary.devices == 1
    assert await store.admin_version() > v0
    assert await store.set_account_disabled(ALICE, disabled=False, now=NOW + 3)
    assert not await store.account_disabled(ALICE)
    assert (await store.account(ALICE)) is not None
    v1 = await store.admin_version()
    assert not await store.set_account_disabled("nobody@alpha.example", disabled=True, now=NOW)
    assert await store.admin_version() == v1  # nothing changed, nothing to re-check
    assert not await store.account_disabled("nobody@alpha.example")


async def test_remove_account_leaves_a_tombstone_and_the_address_needs_an_invite(store: Store) -> None:
    await register(store)
    await register(store, "bob@alpha.example", "fp-bob")
    first, _ = await store.directory_latest(ALICE)  # type: ignore[misc]
    v0 = await store.admin_version()
    assert await store.remove_account(ALICE, now=NOW + 5) == ["fp-1"]
    assert await store.admin_version() > v0
    assert await store.account(ALICE) is None and await store.devices(ALICE) == []
    assert await store.device_by_fingerprint("fp-1") is None
    removed = await store.removed_device("fp-1")
    assert removed is not None and (removed.account, removed.device_id, removed.removed_at) == (ALICE, 1, NOW + 5)
    assert await store.account_removed(ALICE) == NOW + 5
    index, leaf = await store.directory_latest(ALICE)  # type: ignore[misc]
    entry = decode_entry(leaf)
    assert (entry.identity, entry.device_list, entry.prev, entry.at) == (b"", b"", first, NOW + 5)
    assert [s.account for s in await store.account_summaries()] == ["bob@alpha.example"]
    assert await store.remove_account(ALICE, now=NOW + 6) is None  # nothing left to remove
    assert await store.directory_latest(ALICE) == (index, leaf)  # and nothing written
    # without an invite the address stays removed; with one it is registered again
    with pytest.raises(InviteInvalid):
        await register(store, fingerprint="fp-2")
    assert await store.account(ALICE) is None
    await store.add_invite(b"h" * 32, now=NOW, expires_at=NOW + 10_000)
    await register(store, fingerprint="fp-2", invite=b"h" * 32)
    assert await store.account_removed(ALICE) is None
    again, leaf = await store.directory_latest(ALICE)  # type: ignore[misc]
    assert again > index and decode_entry(leaf).prev == index


async def test_invites_are_listed_by_hash_and_only_unused_ones_revoked(store: Store) -> None:
    await store.add_invite(b"a" * 32, now=NOW, expires_at=NOW + 10_000)
    await store.add_invite(b"b" * 32, now=NOW + 1, expires_at=NOW + 10_000)
    await register(store, invite=b"b" * 32)
    rows = await store.invites()
    assert [(r.token_hash, r.used_by) for r in rows] == [(b"a" * 32, None), (b"b" * 32, ALICE)]
    assert not await store.revoke_invite(b"b" * 32)  # used: the account exists, nothing to revoke
    assert await store.revoke_invite(b"a" * 32)
    assert not await store.revoke_invite(b"a" * 32)
    assert [r.token_hash for r in await store.invites()] == [b"b" * 32]
    assert not await store.invite_usable(b"a" * 32, account="x@alpha.example", now=NOW)


async def test_mailbox_usage_is_per_device(store: Store) -> None:
    await register(store)
    assert await store.mailbox_usage(ALICE) == {}
    summary = await store.account_summary(ALICE)
    assert summary is not None and (summary.envelopes, summary.envelope_bytes) == (0, 0)
