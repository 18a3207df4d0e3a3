"""The storage contract every backend fulfils (SQLite by default; PostgreSQL later).

Every mutating method is one transaction that is durably committed (fsync) before it returns:
callers acknowledge to peers only after that. Methods are async; blocking backends run on a
worker thread. Times are integer milliseconds since the epoch, passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from sonet.federation.peers import Peer
from sonet.federation.ports import Page, Queued, StoreFailure
from sonet.core.groups.items import GroupItem
from sonet.federation.records import (
    DeliveryRow,
    GroupEffects,
    GroupReceived,
    NewEnvelope,
    OutboundItem,
    QueuedItem,
    BUDGET_CODES,
    Quota,
    STORED_ROW_OVERHEAD,
    SplitRow,
    StatusUpdate,
    Tracking,
    WitnessRow,
)

__all__ = [
    "Store",
    "StoreError",
    "QuotaExceeded",
    "OverBudget",
    "BUDGET_CODES",
    "STORED_ROW_OVERHEAD",
    "AccountExists",
    "SenderRemoved",
    "InviteInvalid",
    "StaleDeviceList",
    "AccountRow",
    "PrekeySet",
    "DeviceKeySet",
    "DeviceRow",
    "RemovedDeviceRow",
    "AccountSummary",
    "InviteRow",
    "MailboxItem",
    "NewEnvelope",
    "Quota",
    "Peer",
    "PeerExists",
    "PeerInvalid",
    "DeliveryRow",
    "OutboundItem",
    "QueuedItem",
    "StatusUpdate",
    "Tracking",
    "Inbound",
    "GroupEffects",
    "GroupReceived",
    "DELIVERY_GRACE_MS",
    "HeadRow",
    "WitnessRow",
    "SplitRow",
]

#: How long a delivery row outlives its envelope's expiry, or the moment it became final: the
#: sender may ask about an envelope late (a device that was offline for days still wants to
#: learn it failed). Every backend uses
#: this value in ``Store.expire_outbox``.
DELIVERY_GRACE_MS = 7 * 24 * 3600 * 1000


class StoreError(StoreFailure):
    """The store refuses or cannot do what it was asked; ``code`` says which (a subclass's)."""

    code = "store_error"


class QuotaExceeded(StoreError):
    """A mailbox would exceed its quota; nothing of the batch was stored."""

    code = "mailbox_full"


class OverBudget(StoreError):
    """Storing the batch would put an actor over its stored-bytes budget (``Quota``), or the
    node into its disk reserve; nothing of the batch was stored. ``code`` (one of
    ``BUDGET_CODES``) says which: "sender_full" (the sending device or account), "outbox_full"
    (the outbox towards one destination node), "relay_full" (what this node relays for one
    origin node), "disk_full" (the reserve, or the database's maximum size)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in BUDGET_CODES:
            raise ValueError(f"not a budget code: {code!r}")
        super().__init__(message, code=code)


class AccountExists(StoreError):
    code = "account_exists"


class SenderRemoved(StoreError):
    """The sending device is no longer one of its account's devices (its removal committed
    first); nothing of the batch was stored."""

    code = "device_removed"


class StaleDeviceList(StoreError):
    """The account's device list changed since the caller read it."""

    code = "stale_device_list"


class InviteInvalid(StoreError):
    """The invite token is unknown, already used or expired."""

    code = "invite_invalid"


class PeerExists(StoreError):
    """A peer with that name is already configured."""

    code = "peer_exists"


class PeerInvalid(StoreError):
    """The peer entry is malformed, or its ``via`` is not another configured peer, or a peer
    to be removed is still another peer's relay."""

    code = "peer_invalid"


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRow:
    account: str
    device_id: int
    fingerprint: str  # fingerprint of the device identity key (unique across the node)
    record: bytes  # the signed device record, opaque to the store
    created_at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RemovedDeviceRow:
    account: str
    device_id: int
    removed_at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AccountRow:
    account: str
    account_identity: bytes
    device_list: bytes
    device_list_version: int
    created_at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AccountSummary:
    """What the operator sees of an account (``sonet-node accounts``): never a key or a message."""

    account: str
    created_at: int
    disabled_at: int | None  # None: active
    devices: int
    envelopes: int  # stored for its devices, expired ones until purged
    envelope_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class InviteRow:
    """A stored invite: only the hash of its token is kept, so the token cannot be shown."""

    token_hash: bytes
    created_at: int
    expires_at: int
    used_at: int | None
    used_by: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class PrekeySet:
    signed_prekey: bytes | None
    pq_prekey: bytes | None
    one_time: bytes | None


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceKeySet:
    """A new device's first prekeys, stored in the transaction that creates the device (checked
    by the caller; one-time keys as (key id, blob))."""

    signed_prekey: bytes | None = None
    pq_last_resort: bytes | None = None
    one_time: Sequence[tuple[int, bytes]] = ()
    pq_one_time: Sequence[tuple[int, bytes]] = ()


class MailboxItem(msgspec.Struct, frozen=True, kw_only=True):
    seq: int  # strictly increasing per node; delivery order
    id: bytes
    expires: int
    kind: int
    body: bytes
    stored_at: int


@dataclass(frozen=True, kw_only=True, slots=True)
class HeadRow:
    """One signed tree head of this node's key directory, with the witnesses' cosignatures of
    (node, size, root) collected so far."""

    size: int
    root: bytes
    head: bytes  # the signed head (core/keydir/head.py)
    cosignatures: tuple[bytes, ...]


#: one item a peer pushed, as federation/ classified it for the store (see ``Store.receive``)
Inbound = NewEnvelope | OutboundItem | StatusUpdate | GroupReceived


class Store(Protocol):
    async def close(self) -> None: ...

    # Invites -------------------------------------------------------------------------
    async def add_invite(self, token_hash: bytes, *, now: int, expires_at: int) -> None:
        """Store an invite by the hash of its token; StoreError if that hash is already stored."""
        ...

    # Accounts and devices ------------------------------------------------------------
    async def register_account(
        self,
        *,
        account: str,
        fingerprint: str,
        record: bytes,
        account_identity: bytes,
        device_list: bytes,
        invite_hash: bytes | None,
        now: int,
        keys: DeviceKeySet | None = None,
    ) -> DeviceRow:
        """Create ``account`` with its first device (device_id 1), its identity key, its
        device list (version 1) and the device's first prekeys ``keys``, in one transaction.

        With ``invite_hash`` the invite is consumed in the same transaction (InviteInvalid if
        unknown, used or expired at ``now``, i.e. ``now >= expires_at``). AccountExists if the
        account, or a device with the same fingerprint, already exists; in every error case
        nothing is written. The invite is checked first, so without a valid invite the error
        is InviteInvalid and does not reveal whether the account exists.

        Idempotent for the device: when the device ``fingerprint`` is already the first device
        of ``account`` with the same identity key (and, with ``invite_hash``, that invite was
        used for ``account``), its row is returned and nothing is written — a retry after a
        lost answer. ``keys`` is None only in tests of other things.
        """
        ...

    async def invite_usable(self, token_hash: bytes, *, account: str, now: int) -> bool:
        """Whether ``register_account`` would accept this invite for ``account``: unused and
        unexpired at ``now``, or used for ``account`` already (a retry). A cheap early answer;
        ``register_account`` checks again in its transaction."""
        ...

    async def devices(self, account: str) -> list[DeviceRow]:
        """All devices of ``account`` ordered by device_id; [] when the account is unknown."""
        ...

    async def device_by_fingerprint(self, fingerprint: str) -> DeviceRow | None: ...

    async def removed_device(self, fingerprint: str) -> RemovedDeviceRow | None:
        """Which device the key ``fingerprint`` was, if that device has been removed."""
        ...

    async def account(self, account: str) -> AccountRow | None:
        """The account's identity key and current signed device list, or None."""
        ...

    async def add_device(
        self,
        *,
        account: str,
        fingerprint: str,
        record: bytes,
        device_list: bytes,
        expected_version: int,
        now: int,
        keys: DeviceKeySet | None = None,
    ) -> DeviceRow:
        """Add a device (next free device_id, never reused) with its first prekeys ``keys``
        and replace the device list, in one transaction. ``expected_version`` is the stored
        list version the caller checked the new list against (the new list's version is
        ``expected_version + 1``); if the stored list changed meanwhile, StaleDeviceList and
        nothing is written. When ``fingerprint`` is already a device of ``account``, its row is
        returned and nothing is written (a retry after a lost answer); AccountExists if it is
        a device of another account. ``keys`` is None only in tests of other things."""
        ...

    async def remove_device(
        self, *, account: str, device_id: int, device_list: bytes, expected_version: int, now: int
    ) -> bool:
        """Delete a device with its mailbox, prekeys and KeyPackages and replace the device list, in one
        transaction (StaleDeviceList as in add_device). False if there was no such device."""
        ...

    # Key directory (core/keydir) -------------------------------------------------------------
    # Operator administration (node/admin.py) ------------------------------------------------
    # disable/enable/remove bump ``admin_version`` in their transaction: a running node polls
    # it and re-checks its device connections when it moved (the CLI is another process).
    async def account_summaries(self) -> list[AccountSummary]:
        """Every account, ordered by address."""
        ...

    async def account_summary(self, account: str) -> AccountSummary | None:
        """One account's summary; None when there is no such account."""
        ...

    async def mailbox_usage(self, account: str) -> dict[int, tuple[int, int]]:
        """device_id -> (envelopes, bytes) stored for each device of ``account`` that has any."""
        ...

    async def account_disabled(self, account: str) -> bool:
        """Whether ``account`` exists and is disabled (its devices are refused)."""
        ...

    async def set_account_disabled(self, account: str, *, disabled: bool, now: int) -> bool:
        """Disable (``disabled_at = now``, kept if already disabled) or enable ``account``;
        nothing else changes (its mailbox keeps taking mail). False if there is no such account."""
        ...

    async def remove_account(self, account: str, *, now: int) -> list[str] | None:
        """Offboard ``account`` in one transaction: its devices are deleted with their mailboxes,
        dedup records, prekeys and KeyPackages, each noted in removed_devices; the account row
        goes (lookups and mail for it find no account); the address is noted in
        removed_accounts, so that only an invite registers it again (``register_account``
        refuses it without one, InviteInvalid); and a tombstone leaf (empty identity and device
        list, chained by ``prev``) is appended to the key directory. Returns the removed
        devices' fingerprints; None (nothing written) if there is no such account."""
        ...

    async def account_removed(self, account: str) -> int | None:
        """When ``account`` was removed (and not registered again since); None otherwise."""
        ...

    async def admin_version(self) -> int:
        """A counter that every disable, enable and removal of an account, and every peer
        added or removed, increases. (The node reads it every ``admin_watch.POLL_S``; a store
        that keeps its outboxes in memory also looks then whether another connection changed
        them, and tells ``on_outbox_changed``'s callback which.)"""
        ...

    def on_outbox_changed(self, wake: Callable[[set[str]], object]) -> None:
        """``wake(destinations)`` once this store has read again outboxes that another
        connection changed (a store that reads its outboxes from the database every time never
        calls it): the node wakes those destinations' workers."""
        ...

    async def invites(self) -> list[InviteRow]:
        """Every stored invite (used, unused or expired until purged), oldest first."""
        ...

    async def revoke_invite(self, token_hash: bytes) -> bool:
        """Delete an unused invite so that it can no longer register anyone; False if there is
        no unused invite with that hash."""
        ...

    # register_account, add_device and remove_device each append one leaf to the directory log
    # in their own transaction: core.keydir.entry.encode_entry(account=, identity=, device_list=,
    # prev=<index of the account's previous leaf, or -1>, at=now), leaf hash stored alongside.
    # Leaves are numbered from 0 and never change or go away.

    async def directory_hashes(self, start: int) -> list[bytes]:
        """The leaf hashes (RFC 9162 leaf hashes, 32 bytes) of leaves ``start`` .. end, in order."""
        ...

    async def directory_leaves(self, start: int, end: int) -> list[bytes]:
        """The leaf bytes of leaves ``start`` .. ``end - 1``, in order (fewer if the log ends
        before ``end``)."""
        ...

    async def directory_latest(self, account: str) -> tuple[int, bytes] | None:
        """(index, leaf bytes) of ``account``'s newest leaf, or None (no such account)."""
        ...

    async def directory_backfill(self, *, now: int) -> int:
        """Append a leaf (prev -1) for every account that has none (accounts created before
        the directory existed), in one transaction, in account-name order; how many."""
        ...

    async def put_head(self, *, size: int, root: bytes, head: bytes) -> None:
        """Store this node's signed head for ``size`` (replacing an earlier head of that size,
        which must have the same root: StoreError otherwise; cosignatures are kept)."""
        ...

    async def latest_head(self) -> HeadRow | None:
        """The head of the largest size, with its cosignatures; None before the first."""
        ...

    async def cosigned_head(self, *, min_size: int) -> HeadRow | None:
        """The largest head of size >= ``min_size`` that has at least one cosignature."""
        ...

    async def add_cosignature(self, *, size: int, witness: str, cosignature: bytes) -> None:
        """Keep ``witness``'s (verified) cosignature of this node's head of ``size`` (one per
        witness and size: a newer one replaces it). StoreError if there is no head of that size."""
        ...

    async def witnessed(self, node: str) -> WitnessRow | None:
        """The last head of ``node`` this node cosigned."""
        ...

    async def witnessed_all(self) -> list[WitnessRow]: ...

    async def set_witnessed(self, row: WitnessRow) -> None:
        """Replace the row for ``row.node``."""
        ...

    async def record_split(self, row: SplitRow) -> bool:
        """Keep the evidence; False (nothing written) if ``row.node`` already has a split."""
        ...

    async def splits(self) -> list[SplitRow]:
        """All recorded splits, oldest first."""
        ...

    # Prekeys (opaque signed blobs; the node verified them) ---------------------------------

    async def publish_prekeys(
        self,
        account: str,
        device_id: int,
        *,
        signed_prekey: bytes | None,
        pq_last_resort: bytes | None,
        one_time: Sequence[tuple[int, bytes]],
        pq_one_time: Sequence[tuple[int, bytes]],
        max_one_time: int,
    ) -> tuple[int, int]:
        """Replace the signed/last-resort prekeys when given; add one-time prekeys (key id,
        blob), ignoring ids already stored; refuse (StoreError code "too_many_prekeys", nothing
        written) if a kind would exceed ``max_one_time``. Returns the one-time counts (x25519, pq)."""
        ...

    async def take_bundle(self, account: str, device_id: int, *, one_time: bool = True) -> PrekeySet:
        """Atomically pop one one-time prekey of each kind (oldest first); the pq prekey falls
        back to the last-resort key when no one-time pq key is left. A popped key is never
        handed out again. ``one_time=False``: pop nothing (the signed and last-resort keys
        only; a requester over its one-time allowance, node/client_limits.py)."""
        ...

    async def prekey_counts(self, account: str, device_id: int) -> tuple[int, int]: ...

    # MLS KeyPackages (opaque blobs the node verified; docs/groups.md) -------------------------

    async def publish_key_packages(
        self,
        account: str,
        device_id: int,
        *,
        one_time: Sequence[tuple[bytes, bytes]],
        last_resort: tuple[bytes, bytes] | None,
        max_one_time: int,
    ) -> int:
        """Add one-time KeyPackages (KeyPackageRef, blob), ignoring refs already stored or
        handed out, and replace the device's last-resort KeyPackage when given; refuse
        (StoreError code "too_many_key_packages", nothing written) if the device would hold
        more than ``max_one_time`` one-time ones. StoreError if there is no such device.
        Returns the one-time KeyPackages the device now holds."""
        ...

    async def take_key_packages(self, account: str, *, one_time: bool = True) -> list[tuple[int, bytes]]:
        """One KeyPackage per device of ``account`` (ordered by device id), in one transaction:
        its oldest one-time KeyPackage, popped (never handed out again), else its last-resort
        one; devices with neither are left out. ``one_time=False``: last-resort ones only (a
        requester over its one-time allowance)."""
        ...

    async def key_package_count(self, account: str, device_id: int) -> int:
        """One-time KeyPackages the device holds."""
        ...

    # Groups (docs/groups.md; node/store/sqlite_groups.py) ------------------------------------

    async def create_group(self, *, account: str, device_id: int, group: bytes, state: bytes, now: int) -> bool:
        """Host a new group (``state``: its ``HubGroup.to_bytes()``) whose only member is this
        node's device; False if that device created it already (nothing written).
        StoreError "group_exists" if the id is taken, SenderRemoved without the device."""
        ...

    async def group_tree(self, group: bytes, epoch: int, *, offset: int, length: int, now: int) -> tuple[int, bytes] | None:
        """(total size, ``length`` bytes from ``offset`` on) of the ratchet tree this hub kept
        for ``group`` at ``epoch`` (node/store/sqlite_group_trees.py); None if it keeps none
        (or ``offset`` is not inside it)."""
        ...

    async def group_submit(
        self, item: GroupItem, *, account: str, device_id: int, hub: str, node: str, now: int, ttl_ms: int, quota: Quota
    ) -> GroupEffects:
        """In one transaction: note that the device sent SUBMIT ``item`` (for its verdict),
        then order it at once when ``hub`` is this node ``node`` (and deliver, queue or refuse
        what that decides), else queue it for ``hub``. Items travel and stay ``ttl_ms``.
        Returns the mailboxes and outbox destinations to wake after the commit. StoreError
        "bad_input" if another device used the ref, SenderRemoved, OverBudget as ``enqueue``."""
        ...

    # Mailboxes -----------------------------------------------------------------------
    async def enqueue(
        self,
        envelopes: Sequence[NewEnvelope],
        *,
        now: int,
        quota: Quota,
        outbound: Sequence[OutboundItem] = (),
        sender: tuple[str, int] | None = None,
    ) -> int:
        """Store a batch atomically; return how many mailbox envelopes were new.

        ``sender`` (account, device id) is the local device that sends the mailbox envelopes;
        it must still be one of its account's devices in this transaction (else SenderRemoved,
        nothing stored: its removal committed first); they count towards its stored-bytes budgets (``Quota``) until acknowledged, expired
        and purged, or deleted with their mailbox (outbound items count towards the sender
        their ``tracking`` names, and towards their destination's outbox budget). Over a budget,
        or into the disk reserve, OverBudget and nothing is stored; only actors that receive
        something new are checked (a retransmission is never refused).

        ``outbound`` items (envelopes for other nodes) are queued in the same transaction,
        with the deduplication and tracking rules of ``receive``; they do not count towards the
        return value or the mailbox quota. A QuotaExceeded/StoreError stores none of them.

        An envelope whose id is already in that mailbox, or was delivered and acknowledged
        there and is still remembered (see ``ack``), is silently skipped (deduplication). If any mailbox
        would exceed ``quota`` (envelope count or body bytes), QuotaExceeded is raised and
        nothing of the batch is stored.

        Clarifications: an envelope is expired when ``expires <= now``; one already expired on
        arrival is not stored and not counted as new. Several envelopes with the same id for
        one mailbox in a batch count once (the first wins). The quota counts the mailbox's
        unexpired envelopes plus the new ones, and only mailboxes that receive something new are
        checked (a retransmission into a full mailbox is a duplicate, not an error). An envelope
        for a device that does not exist raises StoreError and nothing of the batch is stored.
        """
        ...

    async def pending(
        self, account: str, device_id: int, *, after_seq: int, limit: int, now: int, max_bytes: int | None = None
    ) -> Page[MailboxItem]:
        """Unexpired envelopes of one mailbox with seq > after_seq, in seq order, at most
        ``limit`` of them (ValueError if ``limit < 1``) and, with ``max_bytes``, at most that
        many body bytes in total -- but always the first one if any (so they fit a frame).
        ``complete`` when neither cap stopped the read."""
        ...

    async def ack(self, account: str, device_id: int, ids: Sequence[bytes], *, now: int) -> int:
        """Delete acknowledged envelopes (returns how many existed); their ids stay known
        until the end of the UTC day their envelope expires, so a retransmission is not stored
        again (no finer time is kept: it would tell when each message arrived); a short-lived
        envelope's (a disappearing message's: node/store/vanishing.py) until its expiry. Envelopes already expired at
        ``now`` are deleted too but do not count (they no longer existed for the device); an id
        listed twice counts once."""
        ...

    async def purge_expired(self, *, now: int) -> int:
        """Drop expired envelopes and expired dedup records; return envelopes dropped.

        Expired invites are dropped as well (an unknown invite is as invalid as an expired
        one), which keeps ``stats()["invites_open"]`` accurate without a clock in ``stats``.
        """
        ...

    async def next_expiry(self, *, after: int) -> int | None:
        """The earliest ``expires`` above ``after`` of a stored envelope: in a mailbox or in the
        outbox (this node's own and relayed items), or of a record that names one (a dedup
        record, a disappearing message's delivery row); None if there is none (node/expiry.py)."""
        ...

    async def stats(self) -> dict[str, int]:
        """Counts for ``status``: accounts, devices, envelopes, envelope_bytes, invites_open.

        ``stats`` takes no ``now``, so it counts what is stored: expired envelopes and invites
        count until ``purge_expired`` removes them; ``invites_open`` is the unused invites.
        Backends may add keys (SQLite adds ``acked_ids``, the dedup records kept).
        """
        ...

    # Federation peers (ARCHITECTURE §6) ----------------------------------------------------
    async def add_peer(self, *, name: str, url: str, fingerprint: str, via: str | None, now: int) -> Peer:
        """Pin a peer node and return the stored row (fields normalised by
        ``federation.peers.validate_peer``: lower-case name, fingerprint without separators,
        URL without a trailing slash). PeerInvalid (nothing written) if a field is malformed, if
        ``via`` is the peer itself, or if ``via`` is not an already configured peer;
        PeerExists if the name is taken."""
        ...

    async def remove_peer(self, name: str) -> bool:
        """Forget a peer; False if there was none with that (normalised) name. PeerInvalid, and
        nothing removed, while another peer still names it as its ``via`` relay."""
        ...

    async def peers(self) -> list[Peer]:
        """Every configured peer, ordered by name."""
        ...

    # Federation: outboxes, deliveries, peer keys (ARCHITECTURE §6) --------------------------

    async def receive(
        self,
        items: Sequence[Inbound],
        *,
        now: int,
        quota: Quota,
        after: Queued | None = None,
        queued: Callable[[Queued], object] | None = None,
    ) -> list[str]:
        """Take what a peer pushed, in ONE durable transaction; one outcome per item, in order.
        In order with other pushes (a link's: federation/inbound.py): ``queued(turn)`` is called
        once the write has its place, before the first checkpoint; a write ``after`` such a turn
        commits after it (maybe in the same group commit), and raises NotApplied, nothing of it
        stored, if that one failed.

        - ``NewEnvelope`` (for a local mailbox): "ok" if stored or a duplicate (same rules as
          ``enqueue``); "unknown_account" / "unknown_device" if there is no such account /
          device; "mailbox_full" if this item would put its mailbox over ``quota`` (checked
          per item, in order, unlike ``enqueue``); "expired" if ``expires <= now``.
        - ``OutboundItem`` (to forward, as a relay): "ok" if queued or a duplicate (its
          (dest, key) is queued or was handed on and has not expired); "expired" if expired.
        - ``GroupReceived`` (a group item for this node): ordered at the hub, delivered to
          member devices, forwarded after a hand-over (``group_submit`` describes it); "ok"
          (a retransmission changes nothing), "invalid" for an item this node cannot take.
        - ``StatusUpdate`` (a report about an envelope this node sent): "ok" always. Applied
          to a "queued" delivery row whose item this node has handed on; while the item is
          still in this node's outbox (no one downstream can have received it from us) the
          report is only kept aside, and applied if the item later leaves the outbox handed on
          (``outbox_done`` without a status for it); ignored when there is no such row.
        Refused items write nothing; the others are all committed together. If what was taken
        would put an origin node over its relay budget, a destination's outbox over its budget
        or the node into its disk reserve, OverBudget and nothing of the push is stored (the
        peer keeps the items and tries again later).
        """
        ...

    async def outbox(self, dest: str, *, limit: int, max_bytes: int, now: int, after: int = 0) -> Page[QueuedItem]:
        """The oldest unexpired items queued for ``dest`` with a seq above ``after``, in queue
        order: at most ``limit`` items and at most ``max_bytes`` of ``data`` in total, but
        always the first one if any. (``after``: items already pushed whose ``outbox_done``
        is still being written are skipped.) ``complete`` when neither cap stopped the read."""
        ...

    async def expired_outbox(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[QueuedItem]:
        """The oldest items queued for ``dest`` that have expired (``expires <= now``), in queue
        order, capped like ``outbox``. Nothing is dropped: the caller settles them with
        ``outbox_done`` (the federation runtime: the destination's worker, the only task that
        pushes that destination's items, so an item is never expired while its push is in
        flight)."""
        ...

    async def outbox_done(
        self,
        dest: str,
        seqs: Sequence[int],
        *,
        now: int,
        statuses: Sequence[StatusUpdate] = (),
        reports: Sequence[OutboundItem] = (),
        failed: Mapping[int, str] | None = None,
    ) -> None:
        """In one transaction: delete the items ``seqs`` of ``dest``'s outbox (the keys of items
        that came from upstream stay known until they expire, so a retransmission is not queued
        again; those of this node's own devices' envelopes are forgotten), apply
        ``statuses`` to delivery rows and queue ``reports`` (for other nodes' outboxes; never
        refused for a budget: what they report on was taken already). A deleted item whose
        delivery row is still "queued" after ``statuses`` (it was handed to a relay) takes the
        report ``receive`` kept aside for it, if any. ``failed`` maps seqs (of ``seqs``) to a
        code: the delivery row of such an item, if it is tracked, is failed with that code
        whatever ``statuses`` say (an item whose stored bytes no longer decode: no status can
        name it, and it never went out)."""
        ...

    async def outbox_counts(self) -> dict[str, int]:
        """Items queued per destination (destinations with none are absent)."""
        ...

    async def outbox_destinations(self) -> list[str]:
        """Every destination with at least one queued item (sorted)."""
        ...

    async def deliveries(self, sender_account: str, sender_device: int, ids: Sequence[bytes]) -> list[DeliveryRow]:
        """The delivery rows of envelopes with these ids sent by that device, ordered by
        (id, dest, device). Only the sending device sees its rows. A row names the recipient's
        node and device number, never the recipient account."""
        ...

    async def set_peer_key(self, name: str, *, fingerprint: str, key: bytes) -> bool:
        """Remember the full identity key of peer ``name``, which the caller checked against
        ``fingerprint``; stored only if the peer is still pinned to that fingerprint (False if
        not). ``peers()`` returns it in ``Peer.key``."""
        ...

    async def expire_outbox(self, *, now: int) -> None:
        """Drop expired dedup keys (``outbox_sent``) and delivery rows ``DELIVERY_GRACE_MS``
        after their own expiry (``expires + DELIVERY_GRACE_MS <= now``; a row that became final
        expires when it did). Outbox items are left
        alone, expired or not: see ``expired_outbox``."""
        ...
