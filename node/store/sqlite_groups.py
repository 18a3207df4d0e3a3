"""The groups half of the SQLite backend (docs/groups.md "What each node keeps"): the groups
this node hosts (``hosted_groups``, the refs it ordered or refused in ``hub_refs``), the member
devices it holds per group (``member_groups``, ``group_members``), the ORDERED items it took
(``group_seen``) and its own devices' submissions (``group_submissions``, for verdicts).

Everything one request or one pushed item causes happens in the caller's transaction: ordering
at the hub (``HubGroup.order``, pure, run here on the store's thread so that reading the hub
state, ordering and writing it back cannot interleave with another submission), delivery into
member mailboxes as ``Kind.GROUP`` envelopes, and the outbox items for other nodes. Where items
go is node/group_routing.py's decision; this module does what it decides.

Exactly once: a SUBMIT is ordered once per (group, ref) at its hub, an ORDERED item is taken
once per (group, seq) at a member node, and a mailbox keeps one envelope per ref (its dedup by
id, as for sealed envelopes).

Never lost, never forged (node/group_budgets.py): group items count against each device's own
allowance, apart from its mailbox quota. A member node takes a group's ORDERED items only from
the hub it follows (``member_groups.hub``: set by the first commit that adds its devices, moved
by a hand-over commit's copy; another node's are ``invalid``, or ``hub_pending`` for now when
they could follow a hand-over still on its way). A pushed item some member devices have no
room for goes to the others, and the rest wait (``group_waiting``) for the hub to push it
again (``group_full``); at the hub, such a submission is not ordered now. The hub's own
fan-out (ORDERED copies, HANDOVER, verdicts, forwarded submissions) is not held to the
destination's outbox budget, only to the disk reserve: one member node that takes nothing does
not stop its groups (its items expire there with the envelope TTL). A device's own SUBMIT for
another node's hub counts towards its stored-bytes budget, like its envelopes; one ordered at
its own node counts with what it stores there (its body, once) and queues for other nodes.
A SUBMIT another node pushed counts the same towards the relay budget of the node that answers
for it (``GroupReceived.charged``: its origin, when the pusher is that node or its relay), and
its ``hub_refs`` row towards that node's records (sqlite_budgets.py ``ORIGIN_REFS_FACTOR``); one whose pusher may not speak for its origin is held back (``hub_pending``), and
the hub refuses (``not_member``) a submission from a node, or a local device, that is not a
member's. At a member node, the rows naming the devices a pushed item still has to reach
(``group_waiting``) count towards a cap of the pushing hub's (sqlite_budgets.py
``WAITING_FACTOR``): any peer can start a group naming a device here, and once it is full each
item was one more row. Past it an item still goes to the devices with room, in order, and is
answered ``group_full`` with no rows (the hub pushes it again: a first take once more); the
rest of the push is taken. One other node's hub holds at most its share of a device's allowance
(node/group_budgets.py ``HUB_SHARE``; its rows name it, ``mailbox.hub``): past it the device is
full for that hub's items only, which wait for it as above.

Timed items (docs/groups.md "Disappearing messages on nodes"): everything kept of an item that
carries an expiry (mailbox rows and with the last one its body, outbox items, ``hub_refs``,
``group_seen``, ``group_submissions``, ``group_waiting``, held submissions) expires at its time
(``lives_until``), and one pushed after it is dropped unread; the hub keeps ``floor`` and
``gap_expires`` beside ``seq`` (an application message does not rewrite the state).
"""

from __future__ import annotations

import logging

import msgspec

from sonet.core.address import parse_address
from sonet.core.errors import ProtocolError
from sonet.core.federation_api import OK
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.mls.framing import ContentType
from sonet.transport.log_summary import OncePer

from .dialect import Connection
from ..group_budgets import GROUP_FULL, group_allowance, hub_share
from ..group_routing import group_transit, is_commit, lives_until, mailbox_envelopes, message_header, plan, verdict_item
from ..hub_cache import HUBS, new_tag
from .base import GroupEffects, GroupReceived, OutboundItem, Quota, SenderRemoved, StoreError
from .sqlite_budgets import Charges, DiskFree, UsageChanges, device_key, enforce, waiting_room
from .sqlite_federation import _queue_outbound
from .sqlite_group_trees import _keep_tree
from .sqlite_group_bodies import _shared_body, _store_group_row
from .sqlite_handover import _awaits_handover, _drop_parts, _hold, _keep_part, _next_held, _release
from .sqlite_mailbox import _device_exists, _known, _mailbox_usage

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

log = logging.getLogger("sonet.node.groups")

Member = tuple[str, int]


class _Step:
    """One request's or pushed item's context: this node, the clock, where effects go.
    ``usage``: what the queued items add to storage_usage, written by the caller once for the
    whole write, in (scope, key) order (UsageChanges.apply): applied item by item, in the
    order the hub queued them, two writes at once on PostgreSQL could lock two destinations'
    counters in opposite orders and deadlock."""

    __slots__ = ("conn", "here", "now", "ttl_ms", "quota", "charges", "usage", "effects", "charged")

    def __init__(
        self, conn: Connection, here: str, now: int, ttl_ms: int, quota: Quota, charges: Charges, usage: UsageChanges, effects: GroupEffects
    ) -> None:
        self.conn, self.here, self.now, self.ttl_ms = conn, here, now, ttl_ms
        self.quota, self.charges, self.usage, self.effects = quota, charges, usage, effects
        #: the other node whose submission, ordered here, is charged for what it stores and
        #: queues (its relay budget: ``Charges.relayed``); None for this node's own
        self.charged: str | None = None

    def until(self, item: GroupItem) -> int:
        """When the records of ``item`` expire: a timed item's go at its expiry, no id stays."""
        return lives_until(item, now=self.now, ttl_ms=self.ttl_ms)

    def queue(self, item: GroupItem, *, dest: str, origin: str, sender: Member | None = None, submitter: Member | None = None) -> None:
        """``sender``: the local device whose own SUBMIT this is (its budgets and the outbox's
        apply); else the hub's fan-out, held to no outbox budget (module docstring), only to
        ``submitter``'s: the local device whose submission, ordered here, it is a copy of, or
        to the relay budget of ``charged``, the node that pushed it."""
        out: OutboundItem = group_transit(item, origin=origin, dest=dest, now=self.now, ttl_ms=self.ttl_ms)
        if sender is None:
            if submitter is None and self.charged is not None:  # the outbox row names it: counted until it goes
                out = msgspec.structs.replace(out, origin=self.charged)
            _queue_outbound(self.conn, out, self.now, sender=submitter, usage=self.usage)
            if submitter is not None:
                self.charges.sender(*submitter, len(out.data))
            elif self.charged is not None:
                self.charges.relayed(self.charged, len(out.data))
            else:
                self.charges.stored(len(out.data))
        else:
            _queue_outbound(self.conn, out, self.now, self.charges, sender=sender, usage=self.usage)
        self.effects.dests.add(dest)


class _Full(Exception):
    """A device of this node has no room for what ordering a submission here gives it."""


# Creating a group (its hub is this node) -------------------------------------------------------

def _create_group(conn: Connection, account: str, device_id: int, group: bytes, state: bytes, now: int) -> bool:
    """Host a new group whose only member is this device; False if the device created it
    already (a retry after a lost answer), StoreError ``group_exists`` if the id is taken."""
    if not _device_exists(conn, account, device_id):
        raise SenderRemoved(f"device {device_id} of {account!r} was removed from its account")
    row = conn.execute("SELECT seq FROM hosted_groups WHERE grp = ?", (group,)).fetchone()
    if row is not None or conn.execute("SELECT 1 FROM member_groups WHERE grp = ?", (group,)).fetchone():
        if row is not None and row[0] == 0 and _members(conn, group) == {(account, device_id)}:
            return False
        raise StoreError("a group with this id exists already", code="group_exists")
    conn.execute("INSERT INTO hosted_groups (grp, state, seq, moved_to, created_at) VALUES (?, ?, 0, NULL, ?)", (group, state, now))
    conn.execute("INSERT INTO member_groups (grp, applied_seq) VALUES (?, 0)", (group,))
    conn.execute("INSERT INTO group_members (grp, account, device_id) VALUES (?, ?, ?)", (group, account, device_id))
    return True


# A device's submission ---------------------------------------------------------------------------

def _group_submit(
    conn: Connection,
    item: GroupItem,
    account: str,
    device_id: int,
    hub: str,
    here: str,
    now: int,
    ttl_ms: int,
    quota: Quota,
    disk_free: DiskFree,
) -> GroupEffects:
    """Record which device sent ``item`` (a SUBMIT), then order it here (this node is
    ``hub``) or queue it for ``hub``."""
    if not _device_exists(conn, account, device_id):
        raise SenderRemoved(f"device {device_id} of {account!r} was removed from its account")
    row = conn.execute("SELECT account, device_id FROM group_submissions WHERE grp = ? AND ref = ?", (item.group, item.ref)).fetchone()
    if row is not None and tuple(row) != (account, device_id):
        raise StoreError("this submission ref is in use by another device", code="bad_input")
    if row is None:
        conn.execute(
            "INSERT INTO group_submissions (grp, ref, account, device_id, expires, hub) VALUES (?, ?, ?, ?, ?, ?)",
            (item.group, item.ref, account, device_id, lives_until(item, now=now, ttl_ms=ttl_ms), hub),
        )
    step = _Step(conn, here, now, ttl_ms, quota, Charges(), UsageChanges(), GroupEffects())
    if hub == here:
        try:
            _order(step, item, origin=here, submitter=(account, device_id))
        except _Full as full:  # the caller's transaction undoes everything: nothing was ordered
            raise StoreError(str(full), code=GROUP_FULL) from None
    else:
        step.queue(item, dest=hub, origin=here, sender=(account, device_id))
    step.usage.apply(conn)
    enforce(conn, quota, step.charges, disk_free)
    return step.effects


# What a peer pushed ----------------------------------------------------------------------------

def _receive_group(conn: Connection, rec: GroupReceived, now: int, quota: Quota, charges: Charges, usage: UsageChanges) -> str:
    """One pushed group item for this node, inside ``receive``'s transaction: its outcome.
    What it queues is added to ``usage`` (``receive`` applies it)."""
    step = _Step(conn, rec.node, now, rec.ttl_ms, quota, charges, usage, rec.effects)
    item = rec.item
    kind = ItemKind(item.kind)
    if item.expires and item.expires <= now:
        return OK  # a timed item past its time is gone everywhere: nothing of it is kept
    if kind == ItemKind.SUBMIT:
        if rec.charged is not None:  # pushed by a peer: it answers for what it stores here
            if not _vouched(conn, rec):
                # Its origin is the pusher's word, and the pusher is not that node's way here.
                # Held back, not refused: for a group not hosted here (yet) it may be the old
                # hub, its hand-over on its way; else a relay named --via on one side only (the
                # item is not lost: it comes again), or a forger (its item waits at its end).
                return "hub_pending"
            step.charged = rec.charged
        # (released only where the transaction goes on: after a database error, e.g. a
        # serialization failure, PostgreSQL refuses every statement, and a RELEASE would hide
        # that error behind its own, which is not retried)
        conn.execute("SAVEPOINT group_submit")
        step.usage = UsageChanges()  # what it queues counts only if it is kept
        try:
            _order(step, item, origin=rec.origin)
        except _Full:  # not ordered now: the submitter's node pushes it again later
            _undo(conn, "group_submit")
            return GROUP_FULL
        except _HubPending:
            _undo(conn, "group_submit")
            return "hub_pending"
        conn.execute("RELEASE group_submit")
        usage.add(step.usage)
    elif kind == ItemKind.ORDERED:
        return _take_ordered(step, item, origin=rec.origin)
    elif kind == ItemKind.VERDICT:
        return _verdict_refusal(conn, item, rec.origin) or _take_verdict(step, item)
    else:
        return _adopt(step, item, origin=rec.origin)
    return OK


def _vouched(conn: Connection, rec: GroupReceived) -> bool:
    """Whether the node that pushed a SUBMIT may speak for its origin (the submitter's home
    node, where its VERDICT goes and which must have a member device): it is that node or its
    relay (``rec.charged``), or the hub this group was handed over from, which forwards the
    submissions still sent to it."""
    if rec.charged == rec.origin:
        return True
    row = conn.execute("SELECT handed_over_by FROM member_groups WHERE grp = ?", (rec.item.group,)).fetchone()
    return row is not None and row[0] == rec.charged


def _undo(conn: Connection, savepoint: str) -> None:
    """Undo what was written since ``savepoint`` and go on without it."""
    conn.execute(f"ROLLBACK TO {savepoint}")
    conn.execute(f"RELEASE {savepoint}")


# The hub -----------------------------------------------------------------------------------------

def _order(step: _Step, item: GroupItem, *, origin: str, held: bool = False, submitter: Member | None = None) -> None:
    """Order a SUBMIT of a device of ``origin`` at this node and apply the outcome (``held``:
    one that waited for a hand-over and goes now; ``submitter``: this node's device that sent
    it, charged for what it stores here and queues for other nodes)."""
    conn = step.conn
    if not held and _held_back(step, item, origin=origin):
        return
    row = conn.execute("SELECT moved_to, state_tag, length(state), seq, floor, gap_expires FROM hosted_groups WHERE grp = ?", (item.group,)).fetchone()
    if row is None:
        if origin != step.here and conn.execute("SELECT 1 FROM member_groups WHERE grp = ?", (item.group,)).fetchone():
            raise _HubPending()  # a member node: the hand-over commit naming it may be on its way
        _send_verdict(step, verdict_item(item, code="unknown_group", epoch=0), to=origin)
        return
    moved_to, tag, size, seq = row[0], row[1] and bytes(row[1]), row[2], row[3]
    if moved_to is not None:  # handed over: the new hub judges it (its verdict goes to origin)
        step.queue(item, dest=moved_to, origin=origin, sender=submitter)
        return
    if conn.execute("SELECT 1 FROM hub_refs WHERE grp = ? AND ref = ?", (item.group, item.ref)).fetchone():
        return  # ordered or refused before: a retried push
    # the decoded state kept since the last submission, if it is the stored one (node/hub_cache.py)
    hub = HUBS.take(item.group, tag)
    if hub is None:
        (state,) = conn.execute("SELECT state FROM hosted_groups WHERE grp = ?", (item.group,)).fetchone()
        hub = HubGroup.from_bytes(bytes(state))
        # the columns': the state is not rewritten for an application message
        hub.seq, hub.floor, hub.gap_expires = seq, row[4], row[5]
    # a submission of a device (of a node) with no member device is refused (not_member); one
    # handed in by no peer nor device (in-process) is taken on its origin's word
    checked = submitter is not None or step.charged is not None
    outcome = hub.order(item, node=origin if checked else None, device=submitter)
    # kept until the item expires; another node's submission's row counts towards that node
    # (a peer pushes up to 20,000 items a second; this node's devices submit 1 a second)
    charged = None if submitter is not None else step.charged
    conn.execute(
        "INSERT INTO hub_refs (grp, ref, outcome, expires, origin) VALUES (?, ?, ?, ?, ?)",
        (item.group, item.ref, outcome.code, step.until(item), charged),
    )
    if charged is not None:
        step.charges.ref(charged)
    if outcome.code == OK and _only_seq_moved(item):
        tag = new_tag()
        conn.execute(
            "UPDATE hosted_groups SET seq = ?, floor = ?, gap_expires = ?, state_tag = ? WHERE grp = ?",
            (hub.seq, hub.floor, hub.gap_expires, tag, item.group),
        )
    elif outcome.code == OK:
        state, tag = hub.to_bytes(), new_tag()
        size = len(state)
        conn.execute(
            "UPDATE hosted_groups SET state = ?, seq = ?, floor = ?, gap_expires = ?, moved_to = ?, state_tag = ? WHERE grp = ?",
            (state, hub.seq, hub.floor, hub.gap_expires, hub.moved_to, tag, item.group),
        )
        if item.welcome:  # its joiners fetch the new epoch's tree here (Welcomes go without it)
            _keep_tree(conn, item.group, hub.epoch, hub.public.tree.to_bytes(), now=step.now, ttl_ms=step.ttl_ms, charges=step.charges)
    if hub.moved_to is None and tag is not None:  # (a refusal changed nothing: it stays current)
        HUBS.keep(item.group, tag, hub, size)
    decided = plan(outcome, here=step.here, submit=item, origin=origin)
    if decided.local is not None and _take_ordered(step, decided.local, origin=None, submitter=submitter) == GROUP_FULL:
        raise _Full(f"a member device on {step.here} has no room for more group items now; try again later")
    for node, onward in decided.remote:
        step.queue(onward, dest=node, origin=step.here, submitter=submitter)
    if decided.verdict is not None:
        _send_verdict(step, decided.verdict, to=decided.verdict_to, submitter=submitter)


def _only_seq_moved(item: GroupItem) -> bool:
    """Whether ordering ``item`` moved only the sequence number: an application message (the
    public group state is unchanged, so it is not written again: ~2.3 MB at 1,500 devices)."""
    return message_header(item.message)[2] is ContentType.APPLICATION


def _send_verdict(step: _Step, verdict: GroupItem, *, to: str, submitter: Member | None = None) -> None:
    if to == step.here:
        if _take_verdict(step, verdict, submitter) == GROUP_FULL:
            raise _Full("the submitting device has no room for more group items now; try again later")
    else:
        step.queue(verdict, dest=to, origin=step.here)


def _adopt(step: _Step, item: GroupItem, *, origin: str) -> str:
    """A HANDOVER part for this node: kept until every part is here (node/store/
    sqlite_handover.py), then host the group from the old hub's last sequence number on and
    order the submissions held for it meanwhile."""
    if item.hub != step.here:
        return "invalid"
    row = step.conn.execute("SELECT seq, moved_to FROM hosted_groups WHERE grp = ?", (item.group,)).fetchone()
    if row is not None and (row[1] is None or row[0] >= item.seq):
        return OK  # hosted here already: a retried push (or an older hand-over)
    followed = step.conn.execute("SELECT hub, handed_over_by, last_seq FROM member_groups WHERE grp = ?", (item.group,)).fetchone()
    if followed is None or (followed[0], followed[1]) != (step.here, origin):
        # only the hub this node follows hands it the group, after its hand-over commit's copy
        # named this node (a part may come before that copy: it waits in the old hub's outbox)
        return "hub_pending" if followed is not None and followed[0] == origin and item.seq > followed[2] else "invalid"
    parts = _keep_part(step.conn, item, origin=origin, now=step.now, ttl_ms=step.ttl_ms, charges=step.charges)
    if parts is None:
        return OK  # the other parts are on their way
    try:
        hub = HubGroup.adopt(node=step.here, item=parts)
    except (ProtocolError, ValueError) as exc:
        log.warning("refused a hand-over of group %s: %s", item.group.hex(), exc)
        _drop_parts(step.conn, item.group)
        return "invalid"
    _drop_parts(step.conn, item.group)
    state, tag = hub.to_bytes(), new_tag()
    step.conn.execute(
        "INSERT INTO hosted_groups (grp, state, seq, floor, gap_expires, moved_to, created_at, state_tag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (grp) DO UPDATE SET state = excluded.state, seq = excluded.seq, floor = excluded.floor,"
        " gap_expires = excluded.gap_expires, moved_to = excluded.moved_to, created_at = excluded.created_at, state_tag = excluded.state_tag",
        (item.group, state, hub.seq, hub.floor, hub.gap_expires, hub.moved_to, step.now, tag),
    )
    HUBS.keep(item.group, tag, hub, len(state))  # (decoded already: the next submission takes it)
    _order_held(step, item.group)
    return OK


class _HubPending(Exception):
    """A submission pushed to a member node that does not host its group: ``hub_pending``."""


def _held_back(step: _Step, item: GroupItem, *, origin: str) -> bool:
    """Whether ``item`` waits behind a hand-over to this node (held: node/store/
    sqlite_handover.py): the group is not adopted here yet, or submissions held for it could
    not all be ordered yet (they go first)."""
    hosted = step.conn.execute("SELECT moved_to IS NULL FROM hosted_groups WHERE grp = ?", (item.group,)).fetchone()
    if hosted is not None and hosted[0]:
        _order_held(step, item.group)
        if _next_held(step.conn, item.group, step.now) is None:
            return False
    elif not _awaits_handover(step.conn, item.group, step.here):
        return False
    _hold(step.conn, item, origin=origin, now=step.now, ttl_ms=step.until(item) - step.now, charges=step.charges)
    return True


def _order_held(step: _Step, group: bytes) -> None:
    """Order the submissions held for ``group``, in the order they came, until one has to
    wait for a member device's room (it and those after it stay held)."""
    while (held := _next_held(step.conn, group, step.now)) is not None:
        row, item, origin = held
        step.conn.execute("SAVEPOINT group_held")
        usage, step.usage = step.usage, UsageChanges()  # what it queues counts only if it is kept
        # its origin (vouched for when it was held) is charged, unless it is this node's own
        charged, step.charged = step.charged, (origin if origin != step.here else None)
        try:
            _order(step, item, origin=origin, held=True)
        except _Full:
            _undo(step.conn, "group_held")
            step.usage = usage
            return
        finally:
            step.charged = charged
        step.conn.execute("RELEASE group_held")  # (not after a database error: _receive_group)
        usage.add(step.usage)
        step.usage = usage
        _release(step.conn, row)


# A member node -----------------------------------------------------------------------------------

def _members(conn: Connection, group: bytes) -> set[Member]:
    rows = conn.execute("SELECT account, device_id FROM group_members WHERE grp = ?", (group,))
    return {(account, device) for account, device in rows}


def _hub_refusal(conn: Connection, item: GroupItem, origin: str) -> str:
    """Why ``origin`` may not hand this node ``item`` ("" if it may): only the hub this node
    follows for the group does. Without one yet, the first commit naming this node's devices
    sets it (from the node that ordered it: trust on first use)."""
    row = conn.execute("SELECT hub, last_seq FROM member_groups WHERE grp = ?", (item.group,)).fetchone()
    hub, last_seq = (None, 0) if row is None else (row[0], row[1])
    if hub is None and conn.execute("SELECT 1 FROM hosted_groups WHERE grp = ? AND moved_to IS NULL", (item.group,)).fetchone():
        return "invalid"  # hosted here: this node orders it (its own copies are not pushed)
    if hub is None and _members(conn, item.group):  # (a group joined before nodes followed hubs)
        return "" if origin == item.hub else "invalid"
    if hub is None:
        return "" if item.members and is_commit(item.message) else OK  # OK: nothing here for it
    if origin == hub:
        return ""
    # later than anything taken: it may follow a hand-over whose copy is still on its way
    return "hub_pending" if item.seq > last_seq else "invalid"


def _take_ordered(step: _Step, item: GroupItem, *, origin: str | None, submitter: Member | None = None) -> str:
    """An ORDERED item for this node's member devices, pushed by ``origin`` (None: ordered
    here): a commit's member list replaces the node's (when it is newer than the one applied),
    and the item goes to every member device before and after it (a removed device sees its
    removal). Devices without room wait for the hub to push it again (``group_full``)."""
    conn = step.conn
    waiting = conn.execute("SELECT account, device_id, origin FROM group_waiting WHERE grp = ? AND seq = ?", (item.group, item.seq)).fetchall()
    if waiting:  # taken before but not by every device: the rest get it now if they have room
        if origin is not None and origin != waiting[0][2]:
            return "invalid"
        return _deliver_taken(step, item, {(a, d) for a, d, _ in waiting}, origin or step.here, submitter)
    if origin is not None:
        refusal = _hub_refusal(conn, item, origin)
        if refusal:
            return refusal
    if conn.execute("SELECT 1 FROM group_seen WHERE grp = ? AND seq = ?", (item.group, item.seq)).fetchone():
        return OK  # taken before: a retried push
    commit = is_commit(item.message)
    after: set[Member] = set()
    for member in item.members:  # checked before anything is written: a refused item writes nothing
        try:
            address = parse_address(member.account, remote=True)
        except ProtocolError:
            return "invalid"
        if address.node != step.here:
            return "invalid"  # a node is told only its own member devices
        if _device_exists(conn, str(address), member.device):  # (one removed since has no mailbox)
            after.add((str(address), member.device))
    recipients = _members(conn, item.group) | after
    if commit:
        row = conn.execute("SELECT applied_seq FROM member_groups WHERE grp = ?", (item.group,)).fetchone()
        if row is None or item.seq > row[0]:
            conn.execute(
                "INSERT INTO member_groups (grp, applied_seq) VALUES (?, ?) ON CONFLICT (grp) DO UPDATE SET applied_seq = excluded.applied_seq",
                (item.group, item.seq),
            )
            conn.execute("DELETE FROM group_members WHERE grp = ?", (item.group,))
            conn.executemany(
                "INSERT INTO group_members (grp, account, device_id) VALUES (?, ?, ?)",
                [(item.group, account, device) for account, device in sorted(after)],
            )
    # the hub of the next item (a hand-over commit's copy names the new one); none once no
    # device here is a member: whoever adds one again is a first contact
    conn.execute(
        "UPDATE member_groups SET hub = CASE WHEN ? > last_seq THEN ? ELSE hub END,"
        " last_seq = CASE WHEN ? > last_seq THEN ? ELSE last_seq END WHERE grp = ?",
        (item.seq, item.hub if _members(conn, item.group) else None, item.seq, item.seq, item.group),
    )
    if origin is not None and item.hub == step.here != origin:
        # the hub this node followed named it the next one: only that hub's hand-over is taken
        conn.execute("UPDATE member_groups SET handed_over_by = ? WHERE grp = ? AND hub = ?", (origin, item.group, step.here))
    return _deliver_taken(step, item, recipients, origin or step.here, submitter, capped=origin is not None)


def _deliver_taken(
    step: _Step, item: GroupItem, recipients: set[Member], origin: str, submitter: Member | None = None, *, capped: bool = False
) -> str:
    """Deliver a taken ORDERED item; the devices without room wait for ``origin`` to push it
    again (``group_full``), the item is done once none waits. ``capped``: its first take from a
    pushing hub, whose rows are held to their cap (a later take only removes rows)."""
    conn, key = step.conn, (item.group, item.seq)
    full = _deliver(step, item, recipients, submitter, hub=None if origin == step.here else origin)
    room = waiting_room(conn, step.quota, step.charges, origin) if full and capped else None
    if room is not None and len(full) > room:
        # Past the cap: no rows, still group_full, so the hub pushes it again and its next push
        # is a first take once more (the member list and hub are not moved back, the devices
        # that have it are skipped by mailbox dedup, the full ones get it once they have room).
        # Refusing it for everyone instead would let a later item be taken first: a device a
        # refused commit adds would miss it, and a refused first commit's followers be dropped.
        _said_capped(origin, step.now)
        return GROUP_FULL
    conn.execute("DELETE FROM group_waiting WHERE grp = ? AND seq = ?", key)
    if full:
        conn.executemany(
            "INSERT INTO group_waiting (grp, seq, account, device_id, origin, expires) VALUES (?, ?, ?, ?, ?, ?)",
            [(*key, account, device, origin, step.until(item)) for account, device in sorted(full)],
        )
        # rows until the device is reached or the item expires: the pushing hub's, held to a
        # cap of their own (sqlite_budgets.py WAITING_FACTOR), or a stranger's new group's items
        # for a full device would add one each
        if room is not None:
            step.charges.waiting[origin] = room - len(full)
        for _ in full:
            step.charges.stored(0)
        return GROUP_FULL
    conn.execute("INSERT INTO group_seen (grp, seq, expires) VALUES (?, ?, ?)", (*key, step.until(item)))
    return OK


#: when each hub's cap of waiting rows was last said (once a minute each, in the store's ms: a
#: hub at its cap pushes every item again each expiry tick)
_CAPPED_SAID = OncePer(60_000)


def _said_capped(hub: str, now: int) -> None:
    if not _CAPPED_SAID.due(hub, now):
        return
    log.warning(
        "group items from %s wait for full devices here past its cap of waiting rows: they go to the devices with room, "
        "the full ones get them only at the hub's later pushes (devices that never read can be removed; [storage] relay_origin_max_bytes sets the cap)",
        hub,
    )


def _verdict_refusal(conn: Connection, item: GroupItem, origin: str) -> str:
    """Why ``origin`` may not hand this node ``item``, a VERDICT ("" if it may): only the hub
    the submission was sent to, or the hub this node follows for the group (one it was handed
    over to) refuses it; another, later (``hub_pending``: this node may not know of the
    hand-over yet). A member node knows the group's refs: it could make a device drop or redo
    a message the hub ordered."""
    row = conn.execute("SELECT hub FROM group_submissions WHERE grp = ? AND ref = ?", (item.group, item.ref)).fetchone()
    if row is None:
        return ""  # nobody here to tell (_take_verdict drops it)
    followed = conn.execute("SELECT hub FROM member_groups WHERE grp = ?", (item.group,)).fetchone()
    if origin == row[0] or (followed is not None and origin == followed[0]) or (row[0] is None and (followed is None or followed[0] is None)):
        return ""  # (a submission recorded before its hub was, of a group with no hub followed: as before)
    return "hub_pending"


def _take_verdict(step: _Step, item: GroupItem, submitter: Member | None = None) -> str:
    """A refusal of a submission of one of this node's devices: into that device's mailbox
    (nobody to tell when the submission is unknown here, e.g. its device was removed);
    ``group_full`` while it has no room."""
    row = step.conn.execute(
        "SELECT account, device_id FROM group_submissions WHERE grp = ? AND ref = ?", (item.group, item.ref)
    ).fetchone()
    if row is not None and _deliver(step, item, {(row[0], row[1])}, submitter):
        return GROUP_FULL
    return OK


def _deliver(
    step: _Step, item: GroupItem, recipients: set[Member], submitter: Member | None = None, *, hub: str | None = None
) -> set[Member]:
    """``item`` into each recipient's mailbox that does not hold it yet and has room within its
    allowance of group items; the recipients without room. ``submitter``: this node's device
    whose submission it is, charged for its body (sqlite_group_bodies.py). ``hub``: the other
    node whose hub pushed it, which may hold only its share of each device's allowance
    (group_budgets.py ``HUB_SHARE``): past it the device has no room for that hub's items."""
    envelopes = mailbox_envelopes(item, sorted(recipients), now=step.now, ttl_ms=step.ttl_ms)  # encoded once
    known = _known(step.conn, envelopes, step.now)
    max_count, max_bytes = group_allowance(step.quota)
    share_count, share_bytes = hub_share(step.quota)
    full: set[Member] = set()
    body_ref: int | None = None  # stored once, with the first row that takes it
    for env in envelopes:
        if (env.account, env.device_id, env.id) in known:
            continue
        count, size = _group_usage(step.conn, env.account, env.device_id, step.now)
        if count + 1 > max_count or size + len(env.body) > max_bytes:
            log.info(
                "group %s item %d waits for device %d of %s: its group items are at their allowance",
                item.group.hex(), item.seq, env.device_id, env.account,
            )
            full.add((env.account, env.device_id))
            continue
        if hub is not None:
            count, size = _hub_usage(step.conn, env.account, env.device_id, hub)
            if count + 1 > share_count or size + len(env.body) > share_bytes:
                log.info(
                    "group %s item %d waits for device %d of %s: it holds %s's share of its allowance of group items",
                    item.group.hex(), item.seq, env.device_id, env.account, hub,
                )
                full.add((env.account, env.device_id))
                continue
        if body_ref is None:
            body_ref = _shared_body(step.conn, env.body, step.charges, submitter, step.charged)
        _store_group_row(step.conn, env, body_ref, step.now, step.charges, hub)
        step.effects.mailboxes.add((env.account, env.device_id))
    return full


def _hub_usage(conn: Connection, account: str, device_id: int, hub: str) -> tuple[int, int]:
    """The count and body bytes of the device's group items pushed by ``hub`` (kept by the
    mailbox triggers, scope "group_hub"; rows expired but not purged yet count until they go)."""
    row = conn.execute(
        "SELECT count, bytes FROM storage_usage WHERE scope = 'group_hub' AND key = ?", (f"{device_key(account, device_id)}/{hub}",)
    ).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _group_usage(conn: Connection, account: str, device_id: int, now: int) -> tuple[int, int]:
    """The count and body bytes of the mailbox's unexpired group items (kind 3, Kind.GROUP)."""
    return _mailbox_usage(conn, account, device_id, now, group=True)
