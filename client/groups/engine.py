"""The device's side of group ordering (docs/groups.md, "Ordering on the device").

Group items reach the device as mailbox envelopes of kind GROUP. ``GroupEngine.accept`` takes
one and, in one transaction, either processes it, holds it (sealed) until the items before it
came, or drops it as a duplicate; the caller acknowledges it only afterwards, so nothing the
node stops holding is lost. Items of a group are processed strictly in sequence order:

- an ORDERED item with the next sequence number is processed: another member's commit or
  proposal is checked against the group's rules first (client/groups/rules.py); the device's own submission
  coming back (its ref) adopts the group state kept for it; another commit for the epoch of the
  device's own outstanding submission makes the device drop that state, process the commit and
  make its change again on top (``redo``); a commit, proposal or application message of another
  member is processed by MLS; an application message's content (core/content.py) is kept
  (``text``) or sets the group's name and topic (``group_state`` from an admin);
- an ORDERED item for a group the device is not in yet is held, unless its Welcome names one of
  the device's KeyPackages: then the device joins and continues with the next sequence number;
- a VERDICT for the device's own outstanding submission: ``stale_epoch`` makes it redo it on
  top of the epoch the hub names (once the device has reached it), any other refusal drops it.

The device has at most one commit or proposal outstanding per group (``own``) but any number
of application messages (``sends``), each its own submission: made again, in the order they
were written, after a ``stale_epoch`` or a commit that came first, so that the group's order
keeps them in the order sent. Messages written while an own commit or proposal is on its way are
made once it is ordered (they belong to its epoch). Another member's commit and the Welcome that
added this device are noted as membership events for ``recv`` (client/groups/events.py).

A message MLS refuses (it does not verify for this device) is skipped with a line in
``rejected``: the hub ordered it for everyone, so the sequence moves on.

Timed messages (docs/groups.md "Disappearing messages on nodes"): nodes drop a timed item at its
expiry, perhaps before this device fetched it. A held item whose ``floor`` is below the next
sequence number says every item missing before it was timed; once its ``gap_expires`` has passed
on this device's clock, and it is of the epoch this device is in (a missing commit is never
skipped), the device skips the missing ones (``_skip_expired``) and goes on; otherwise it keeps
waiting. Each timed message it does process must carry, in its MLS-authenticated data, the
expiry its item names (core/groups/expiry.py), and its content the same one.

``submissions`` gives what must be sent now (remade first where due); ``flush`` sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sonet.core.client_api import GroupQueued, GroupSubmit
from sonet.core.content import GROUP_STATE, SYNCABLE, decode_content
from sonet.core.crypto import CryptoPolicy
from sonet.core.envelope import Envelope
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.groups.credential import leaf_member
from sonet.core.groups.expiry import read_expiry_aad
from sonet.core.groups.items import GROUP_REFUSALS, GroupItem, ItemKind, group_hex
from sonet.core.groups.policy import PolicyError
from sonet.core.groups.state import group_extension
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.framing.public_message import PublicMessage
from sonet.core.mls.group import ApplicationMessage, Group, PublicCommit, PublicGroup, QueuedProposal, StagedCommit
from sonet.core.mls.messages import Remove, Welcome
from sonet.core.wire import decode_struct

from ..connection import Connection, NodeError
from ..deletes import after_group_message
from ..replies import expect_reply
from ..state import ALERT, DeviceState, Profile
from ..state_history import READ_TYPES, content_fields
from ..timer import after_stored
from . import leaving
from .keys import SUITE, OwnKeyPackage, signature_key
from .ops import NothingToDo, make
from .own_devices import follow_device_list
from .rules import check_message, public_view
from .events import ADDED, RENAMED, TOPIC, GroupEvent, commit_events
from .sent import note_ordered
from .verify import check_noted, note_members
from .store import GroupMessage, GroupRecord, HeldFull, Outstanding

__all__ = ["GroupEngine", "ORDERED", "send_failed", "submit_own"]

#: the outcome of an own submission that came back ordered (else a GROUP_REFUSALS code)
ORDERED = "ordered"


class GroupEngine:
    def __init__(self, state: DeviceState, profile: Profile, *, rng: Callable[[int], bytes], clock: Callable[[], int]) -> None:
        self._state = state
        self._profile = profile
        self._rng = rng
        self._clock = clock
        #: one line per group item dropped or message skipped
        self.rejected: list[str] = []
        #: own submissions settled while this engine ran, by their origin: ORDERED or a refusal
        self.outcomes: dict[bytes, str] = {}
        #: ratchet trees fetched for Welcomes that go without one, by item ref (tree_fetch.py)
        self.trees: dict[bytes, bytes] = {}
        #: per sender account, the content ids of its texts stored and not yet receipted
        #: (``take_received``; client/receiving.py sends the receipts, client/groups/sent.py)
        self.received: dict[str, list[bytes]] = {}

    # Accepting items ---------------------------------------------------------------------

    def accept(self, envelope: Envelope, received_at: int) -> bool:
        """Take one GROUP envelope; True when it may be acknowledged (processed, held, a
        duplicate, or junk dropped), False when it must stay in the mailbox (no room to hold)."""
        try:
            item = decode_struct(GroupItem, envelope.body)
            if item.ref != envelope.id:
                raise RemoteProtocolError("the envelope's id is not the item's ref", code="group_malformed")
        except ProtocolError as exc:
            self.rejected.append(f"dropped group item {envelope.id.hex()}: {exc}")
            return True
        try:
            with self._state.transaction():
                if item.kind == ItemKind.ORDERED:
                    self._ordered(item, envelope.body, received_at)
                elif item.kind == ItemKind.VERDICT:
                    self._verdict(item)
                else:
                    self.rejected.append(f"dropped group item {envelope.id.hex()}: a {ItemKind(item.kind).name} item is not for a device")
        except HeldFull as exc:
            self.rejected.append(f"kept group item {envelope.id.hex()} of group {group_hex(item.group)} in the mailbox: {exc}")
            return False
        return True

    def _ordered(self, item: GroupItem, raw: bytes, received_at: int) -> None:
        record = self._state.group_record(item.group)
        if record is None or not record.active:
            # not (or no longer) a member: only a Welcome naming this device matters (added again)
            joinable = item.welcome and (record is None or item.seq >= record.next_seq)
            if not (joinable and self._join(item, received_at)):
                if record is None:
                    self._state.hold_group_item(item.group, item.seq, raw)
                return
        elif item.seq < record.next_seq:
            return  # a duplicate (the node sent it again after a lost acknowledgement)
        elif item.seq > record.next_seq:
            self._state.hold_group_item(item.group, item.seq, raw)
            if not self._skip_expired(record):
                return
        else:
            self._apply(record, item, received_at)
        self._drain(item.group, received_at)

    def _drain(self, group: bytes, received_at: int) -> None:
        """Process the held items that are next in order now."""
        while True:
            record = self._state.group_record(group)
            if record is None or not record.active:
                return
            self._state.drop_held_group_items(group, below=record.next_seq)
            raw = self._state.held_group_item(group, record.next_seq)
            if raw is None:
                if not self._skip_expired(record):
                    return
                continue
            self._apply(record, decode_struct(GroupItem, raw), received_at)

    def _skip_expired(self, record: GroupRecord) -> bool:
        """Skip the items missing before the first held one of ``record``'s group when that
        item says they were all timed and the latest of them has expired (module docstring);
        True when it did (the caller goes on processing)."""
        seqs = [seq for seq in self._state.held_group_seqs(record.id) if seq > record.next_seq]
        if not seqs:
            return False
        raw = self._state.held_group_item(record.id, seqs[0])
        if raw is None:
            return False
        item = decode_struct(GroupItem, raw)
        now = self._clock()
        if item.floor >= record.next_seq or not item.gap_expires or item.gap_expires > now:
            return False  # an item that does not expire is missing, or one may still come: wait
        where = f"items {record.next_seq}..{item.seq - 1} of group {group_hex(record.id)}"
        epoch = Group.from_bytes(record.mls).epoch
        if item.epoch != epoch:  # a commit is among them: never skipped
            self._state.add_alert(ALERT, f"{where} are said to have expired, but a change of the group is among them: waiting for it", now)
            return False
        self._state.save_group(record.but(next_seq=item.seq))
        self.rejected.append(f"skipped {where}: timed messages that expired before this device fetched them")
        return True

    def _join(self, item: GroupItem, received_at: int) -> bool:
        """Join by the item's Welcome if it names one of this device's KeyPackages."""
        try:
            welcome = MLSMessage.from_bytes(item.welcome).body
            if not isinstance(welcome, Welcome):
                raise RemoteProtocolError("the Welcome of a group item is not a Welcome", code="group_malformed")
            for secrets in welcome.secrets:
                found = self._state.key_package_secret(secrets.new_member)
                if found is None:
                    continue
                own, last_resort = OwnKeyPackage.from_bytes(found[0]), found[1]
                group = Group.join(
                    SUITE, welcome, own.key_package, init_priv=own.init_priv, encryption_priv=own.encryption_priv,
                    signature_priv=signature_key(self._state, self._rng), ratchet_tree=self.trees.get(item.ref),
                )  # fmt: skip
                if group.group_id != item.group:
                    raise RemoteProtocolError("the Welcome is for another group than its item names", code="group_malformed")
                group_extension(group.context)  # a Sonet group: it names its hub and admins
                me = (self._profile.address, self._profile.device_id)
                note_members(self._state, item.group, [
                    (c, leaf.signature_key) for _i, leaf in group.members() for c in (leaf_member(leaf),) if (c.account, c.device) != me
                ])  # fmt: skip
                self._state.save_group(
                    GroupRecord(id=item.group, next_seq=item.seq + 1, created=received_at, mls=group.to_bytes(), public=public_view(group))
                )
                self._state.store_group_events(
                    [GroupEvent(group=item.group, seq=item.seq, event=ADDED, by=_committer(group, item.message), member=me[0], received_at=received_at)]
                )  # fmt: skip
                if not last_resort:
                    self._state.delete_key_package_secret(secrets.new_member)
                return True
        except ProtocolError as exc:
            self.rejected.append(f"could not join group {group_hex(item.group)} by its Welcome (item {item.seq}): {exc}")
        return False

    def _apply(self, record: GroupRecord, item: GroupItem, received_at: int) -> None:
        """Process ``item``, the next one of ``record``'s group, and save the group after it."""
        own = record.own
        done = record.but(next_seq=item.seq + 1)
        mine = next((s for s in record.sends if s.ref == item.ref and not s.redo), None)
        if mine is not None:  # one of this device's messages came back ordered
            self.outcomes[mine.origin] = ORDERED
            done = self._own_message(done.but(sends=tuple(s for s in record.sends if s is not mine)), mine)
            if own is None and leaving.overdue(self._state, item.group, seq=item.seq, now=self._clock()):
                own = self._commit_leaving(Group.from_bytes(record.mls), None)
            self._state.save_group(done.but(own=own))
            return
        if own is not None and item.ref == own.ref and not own.redo:
            self.outcomes[own.origin] = ORDERED
            if own.op["op"] == "send":
                done = self._own_message(done, own)
            after = own.after if own.after is not None else record.mls
            if own.kind == "commit":  # messages still on their way from the epoch it ended are refused stale: made again
                done = done.but(sends=_redo_sends(done.sends, Group.from_bytes(after).epoch))
            follow = self._then(own)
            if own.kind == "commit":  # it took every pending proposal
                leaving.forget(self._state, item.group)
            if own.op["op"] == "commit":  # members' leavings it committed: news here too (nobody asked for it)
                try:
                    committed = PublicGroup.from_bytes(record.public).process(own.message)
                except ProtocolError:
                    committed = None
                if isinstance(committed, PublicCommit):
                    self._commit_events(item, Group.from_bytes(record.mls), PublicGroup.from_bytes(record.public), committed, received_at)
            elif follow is None and leaving.overdue(self._state, item.group, seq=item.seq, now=self._clock()):
                follow = self._commit_leaving(Group.from_bytes(after), None)
            self._state.save_group(done.but(mls=after, public=self._own_public(record, own), own=follow))
            return
        group = Group.from_bytes(record.mls)
        public = PublicGroup.from_bytes(record.public)
        try:
            checked = check_message(public, item.message)  # the group's rules, as the hub checked them
            result = group.process(item.message)
            if checked is None and not isinstance(result, ApplicationMessage):
                # the hub cannot check an encrypted change, nor can the rules here: refused
                group = Group.from_bytes(record.mls)
                raise RemoteProtocolError("a group change sent as a PrivateMessage", code="group_malformed")
        except ProtocolError as exc:
            self.rejected.append(f"skipped message {item.seq} of group {group_hex(item.group)}: {exc}")
            self._state.save_group(done.but(mls=group.to_bytes()))  # a message that decrypted used its key
            return
        active: bool = record.active
        if isinstance(result, StagedCommit):
            if own is not None and own.epoch == group.epoch:
                # another commit came first: our change is made again on top of it
                own = replace(own, redo=True, redo_epoch=result.epoch, after=None)
            done = done.but(sends=_redo_sends(done.sends, result.epoch))  # and our messages of the epoch it ends
            assert isinstance(checked, PublicCommit)  # a PublicMessage commit (checked above)
            self._commit_events(item, group, public, checked, received_at)
            group.merge(result)
            leaving.forget(self._state, item.group)  # a commit takes every pending proposal
            public.merge(checked)
            note_members(self._state, item.group, [(leaf_member(leaf), leaf.signature_key) for _i, leaf in checked.added])
            active = not result.removes_us
            if not active:
                own = None
                for send in done.sends:  # never to be sent now
                    self._failed(send, "not_member")
                done = done.but(sends=())
        elif isinstance(result, ApplicationMessage):
            try:  # the expiry its sender authenticated is the one the nodes drop it at
                expires = read_expiry_aad(result.authenticated_data)
            except ValueError as exc:
                expires, wrong = None, str(exc)
            else:
                wrong = "" if (expires or 0) == item.expires else f"its sender set it to expire at {expires}, its item says {item.expires}"
            if wrong:
                self.rejected.append(f"skipped message {item.seq} of group {group_hex(item.group)}: {wrong}")
            else:
                done = self._message(done, group, item, result, received_at, expires=expires)
        elif isinstance(result, QueuedProposal):
            own = self._self_removal(group, result, own, item.seq)
        if not isinstance(result, StagedCommit) and leaving.overdue(self._state, item.group, seq=item.seq, now=self._clock()):
            own = self._commit_leaving(group, own)  # the member who should have committed it did not
        self._state.save_group(done.but(mls=group.to_bytes(), public=public.to_bytes(), active=active, own=own))

    def _own_public(self, record: GroupRecord, own: Outstanding) -> bytes:
        """The public view once the device's own submission is ordered: after a commit that of
        the new epoch; a proposal is kept pending in it as in the Group."""
        if own.kind == "commit" and own.after is not None:
            return public_view(Group.from_bytes(own.after))
        if own.kind == "proposal":
            public = PublicGroup.from_bytes(record.public)
            public.process(own.message)
            return public.to_bytes()
        return record.public

    def _own_message(self, record: GroupRecord, own: Outstanding) -> GroupRecord:
        """This device's application message came back ordered: its own name and topic take
        effect in order, as everyone's; a text is marked ordered (client/groups/sent.py)."""
        content = decode_content(own.op["content"])
        if content.type == GROUP_STATE and content.name is not None and content.topic is not None:
            return record.but(name=content.name, topic=content.topic)
        if content.type in SYNCABLE:  # a text, or a reply, reaction, edit, delete (client/gestures.py)
            note_ordered(self._state, content.id, own.epoch, record.mls, self._profile.address)
            # a timer takes effect in the group's order, here as on every member's device
            after_stored(self._state, content, conversation=group_hex(record.id), now=self._clock())
        return record

    def _failed(self, own: Outstanding, code: str) -> None:
        self.outcomes[own.origin] = code
        send_failed(self._state, own, code)

    def _commit_events(self, item: GroupItem, group: Group, public: PublicGroup, commit: PublicCommit, received_at: int) -> None:
        """Note what another member's commit changed, for ``recv`` (client/groups/events.py)."""
        try:
            after = group_extension(commit.staged.context) if commit.extensions is not None else group_extension(public.context)
            events = commit_events(
                group=item.group, seq=item.seq, before=public.members(), commit=commit, ext_before=group_extension(public.context),
                ext_after=after, me=self._profile.address, my_leaf=group.leaf_index, received_at=received_at,
            )  # fmt: skip
        except ProtocolError as exc:  # the rules checked it: only a malformed credential gets here
            self.rejected.append(f"could not tell what commit {item.seq} of group {group_hex(item.group)} changed: {exc}")
            return
        self._state.store_group_events(events)

    def _message(
        self, record: GroupRecord, group: Group, item: GroupItem, message: ApplicationMessage, received_at: int, *, expires: int | None
    ) -> GroupRecord:
        where = f"message {item.seq} of group {group_hex(item.group)}"
        try:
            leaf = group.tree.leaf(message.sender)
            assert leaf is not None  # MLS verified the sender is a member
            sender = leaf_member(leaf)
            content = decode_content(message.data)
            if content.expires != expires:
                raise RemoteProtocolError("its content expires at another time than its sender authenticated", code="content_malformed")
        except ProtocolError as exc:
            self.rejected.append(f"skipped {where}: {exc}")
            return record
        if content.type in SYNCABLE:  # a text, or a reply, reaction, edit, delete (client/gestures.py)
            if content.type in READ_TYPES and sender.account != self._profile.address:  # as for 1:1: no receipts to the own account
                self.received.setdefault(sender.account, []).append(content.id)
            fields = content_fields(content)
            stored = GroupMessage(
                group=item.group, seq=item.seq, sender=sender.account, device=sender.device, id=content.id,
                sent_at=content.sent_at, received_at=received_at, text=fields.pop("text", ""), type=content.type, fields=fields,
            )  # fmt: skip
            self._state.store_group_message(stored)
            after_group_message(self._state, self._profile.address, stored)
            # a timer (any member may set it), or a timed message: erased at its time (client/timer.py)
            after_stored(self._state, content, conversation=group_hex(item.group), now=self._clock())
        elif content.type == GROUP_STATE and content.name is not None and content.topic is not None:
            if group_extension(group.context).is_admin(sender.account):
                events = []
                # not the name a joiner learns first, unless a line of this group was shown by its id
                # before it came (`group create` names the group in a message after the Welcome)
                if (record.name or self._state.group_events_shown(item.group)) and content.name != record.name:
                    events.append(GroupEvent(group=item.group, seq=item.seq, event=RENAMED, by=sender.account, name=content.name,
                                             before=record.name, received_at=received_at))  # fmt: skip
                if record.name and content.topic != record.topic:
                    events.append(GroupEvent(group=item.group, seq=item.seq, event=TOPIC, by=sender.account, topic=content.topic,
                                             received_at=received_at))  # fmt: skip
                self._state.store_group_events(events)
                return record.but(name=content.name, topic=content.topic)
            self.rejected.append(f"ignored {where}: {sender.account} is not an admin and may not rename the group")
        else:
            self.rejected.append(f"ignored {where}: a {content.type} message has no meaning in a group")
        return record

    def _self_removal(self, group: Group, queued: QueuedProposal, own: Outstanding | None, seq: int) -> Outstanding | None:
        """A member proposed to remove its own leaf (it leaves): the member with the lowest leaf
        index among those staying commits it (docs/groups.md "Rules"), unless busy; the others
        note it, to commit it if that does not happen (client/groups/leaving.py)."""
        proposal = queued.proposal
        if not (isinstance(proposal, Remove) and queued.sender.index == proposal.removed):
            return own
        leaving.note(self._state, group.group_id, seq, self._clock())
        staying = leaving.staying_leaves(group)
        if not staying or staying[0] != group.leaf_index:
            return own
        return self._commit_leaving(group, own)

    def _commit_leaving(self, group: Group, own: Outstanding | None) -> Outstanding | None:
        """A commit of the pending proposals as this device's own submission (made when it is
        sent), unless it has one on its way already or leaves itself."""
        if own is not None or group.leaf_index not in leaving.staying_leaves(group):
            return own
        return Outstanding(
            ref=b"", origin=self._rng(16), kind="commit", epoch=group.epoch, message=b"", welcome=b"", after=None,
            op={"op": "commit"}, submitted=False, redo=True, redo_epoch=group.epoch,
        )  # fmt: skip

    def _then(self, own: Outstanding) -> Outstanding | None:
        """What follows ``own`` once it is ordered (its op's ``then``, e.g. the group's name for
        devices it added), as a new submission made when it is sent; else None."""
        then = own.op.get("then")
        if then is None:
            return None
        return Outstanding(
            ref=b"", origin=self._rng(16), kind="message", epoch=own.epoch, message=b"", welcome=b"", after=None,
            op=then, submitted=False, redo=True, redo_epoch=own.epoch,
        )  # fmt: skip

    def _verdict(self, item: GroupItem) -> None:
        record = self._state.group_record(item.group)
        if record is None:
            return
        send = next((s for s in record.sends if s.ref == item.ref), None)
        if send is not None:  # one of this device's messages
            if item.outcome == "stale_epoch":
                sends = _redo_sends(record.sends, max(item.epoch, send.epoch + 1), only=send)
            else:
                self._failed(send, item.outcome)
                self.rejected.append(f"the hub refused this device's message to group {group_hex(item.group)}: {GROUP_REFUSALS[item.outcome]}")
                sends = tuple(s for s in record.sends if s is not send)
            self._state.save_group(record.but(sends=sends))
            return
        if record.own is None or record.own.ref != item.ref:
            return  # for a submission already redone or dropped
        own: Outstanding | None = record.own
        assert own is not None
        if item.outcome == "stale_epoch":
            own = replace(own, redo=True, redo_epoch=max(item.epoch, own.epoch + 1), after=None)
        else:
            self.outcomes[own.origin] = item.outcome
            if own.op["op"] == "send":
                self._state.group_sent_failed(decode_content(own.op["content"]).id, item.outcome)
            self.rejected.append(f"the hub refused this device's change of group {group_hex(item.group)}: {GROUP_REFUSALS[item.outcome]}")
            own = None
        self._state.save_group(record.but(own=own))

    def take_received(self) -> dict[str, list[bytes]]:
        """The texts stored since the last call, by sender account (to send receipts for)."""
        received, self.received = self.received, {}
        return received

    # Sending -----------------------------------------------------------------------------

    def submissions(self) -> list[tuple[GroupRecord, Outstanding, str]]:
        """(group, own submission, hub) for every submission to send now: not sent yet, or due
        to be made again (remade here and saved before it is returned); a group's commit or
        proposal first, then its messages in the order they were written."""
        self._leaving_overdue()
        self._skip_expired_gaps()
        due = []
        for record in self._state.group_records_with_own():
            if not record.active:
                continue
            with self._state.transaction():
                record, own = self._due_own(record)
                if own is not None:
                    due.append((record, own, group_extension(Group.from_bytes(record.mls).context).hub))
                record, sends = self._due_sends(record)
                hub = group_extension(Group.from_bytes(record.mls).context).hub
                due += [(record, send, hub) for send in sends]
        return due

    def _due_own(self, record: GroupRecord) -> tuple[GroupRecord, Outstanding | None]:
        """The group's commit or proposal if it is to be sent now (remade first if due)."""
        own = record.own
        if own is None:
            return record, None
        if not own.redo:
            return record, None if own.submitted else own
        group = Group.from_bytes(record.mls)
        if group.epoch < own.redo_epoch:
            return record, None  # the commit that came first is not processed yet
        try:
            made = make(group, own.op, self._rng)
        except NothingToDo:
            self.outcomes[own.origin] = ORDERED
            record = record.but(own=None)
            self._state.save_group(record)
            return record, None
        except ProtocolError as exc:
            self.outcomes[own.origin] = "invalid"
            self.rejected.append(f"could not make this device's change of group {group_hex(record.id)} again: {exc}")
            record = record.but(own=None)
            self._state.save_group(record)
            return record, None
        if made.kind != "message":
            try:  # the rules may not allow it any more (or never did): the hub would refuse it
                check_message(PublicGroup.from_bytes(record.public), made.message)
            except PolicyError as exc:
                self.outcomes[own.origin] = "not_allowed"
                self.rejected.append(f"this device's change of group {group_hex(record.id)} is not allowed: {exc}")
                if own.op["op"] == "commit":
                    leaving.forget(self._state, record.id)  # committing it stays refused: stop trying
                record = record.but(own=None)
                self._state.save_group(record)
                return record, None
        own = Outstanding(
            ref=self._rng(16), origin=own.origin, kind=made.kind, epoch=made.epoch, message=made.message,
            welcome=made.welcome, after=made.after, op=own.op, submitted=False,
        )  # fmt: skip
        record = record.but(own=own, mls=made.now if made.now is not None else record.mls)
        self._state.save_group(record)
        return record, own

    def _due_sends(self, record: GroupRecord) -> tuple[GroupRecord, list[Outstanding]]:
        """The group's messages to send now, in the order written: made (again) on the current
        epoch where due. One that must wait (for the epoch a commit that came first starts, or,
        never made yet, for this device's own commit or proposal to be ordered) holds back those
        written after it."""
        if not record.sends:
            return record, []
        group: Group | None = None
        sends: list[Outstanding] = []
        due: list[Outstanding] = []
        waiting = False
        for send in record.sends:
            if not waiting and send.redo:
                group = group or Group.from_bytes(record.mls)
                if group.epoch < send.redo_epoch or (not send.ref and record.own is not None and record.own.kind != "message"):
                    waiting = True
                else:  # encrypted at the current epoch (the ratchet moves on: the group is saved below)
                    made = make(group, send.op, self._rng)
                    send = replace(send, ref=self._rng(16), kind=made.kind, epoch=made.epoch, message=made.message, submitted=False,
                                   redo=False, redo_epoch=0)  # fmt: skip
            if not waiting and not send.redo and not send.submitted:
                due.append(send)
            sends.append(send)
        if group is not None:
            record = record.but(sends=tuple(sends), mls=group.to_bytes())
            self._state.save_group(record)
        return record, due

    def _skip_expired_gaps(self) -> None:
        """At every receive, with nothing new too: go on in the groups whose missing items
        expired meanwhile (``_skip_expired``)."""
        for group_id in self._state.groups_with_held():
            with self._state.transaction():
                record = self._state.group_record(group_id)
                if record is not None and record.active and self._skip_expired(record):
                    self._drain(group_id, self._clock())

    def _leaving_overdue(self) -> None:
        """Commit the members' leavings that waited too long for the member who should have
        committed them (client/groups/leaving.py), by time: at a receive with nothing new."""
        for group_id in leaving.noted(self._state):
            if not leaving.overdue(self._state, group_id, seq=0, now=self._clock()):  # seq 0: by time only
                continue
            with self._state.transaction():
                record = self._state.group_record(group_id)
                if record is None or not record.active:
                    leaving.forget(self._state, group_id)
                    continue
                if record.own is not None:
                    continue
                group = Group.from_bytes(record.mls)
                if not group.pending_proposals():
                    leaving.forget(self._state, group_id)
                    continue
                own = self._commit_leaving(group, None)
                if own is not None:
                    self._state.save_group(record.but(own=own))

    async def follow_devices(self, conn: Connection, policy: CryptoPolicy) -> None:
        """Bring the account's devices in its groups in line with its device list
        (client/groups/own_devices.py); the changes go with the next ``flush``."""
        try:
            await follow_device_list(conn, self._state, self._profile, policy=policy, now=self._clock(), rng=self._rng)
        except (NodeError, ProtocolError) as exc:
            self.rejected.append(f"could not bring this account's devices in its groups up to date now: {exc}")

    async def check_members(self, conn: Connection, policy: CryptoPolicy) -> None:
        """Check the devices that joined the device's groups against their accounts' device
        lists (client/groups/verify.py)."""

        def name(group: bytes) -> str:
            record = self._state.group_record(group)
            return record.name if record is not None else ""

        self.rejected += await check_noted(conn, self._state, policy=policy, now=self._clock(), group_name=name)

    async def flush(self, conn: Connection) -> None:
        """Send every due submission (see ``submissions``)."""
        for record, own, hub in self.submissions():
            await submit_own(conn, self._state, record.id, own, hub)


def send_failed(state: DeviceState, own: Outstanding, code: str) -> None:
    """An own submission that will never be ordered: its text (or gesture), if it is one, failed."""
    if own.op["op"] == "send":
        content = decode_content(own.op["content"])
        if content.type in SYNCABLE:
            state.group_sent_failed(content.id, code)


async def submit_own(conn: Connection, state: DeviceState, group: bytes, own: Outstanding, hub: str) -> None:
    """Send one own submission and note that the home node queued it. Sent again after a lost
    answer, it is the same ref: the hub orders it once."""
    reply = await conn.request(
        lambda n: GroupSubmit(request=n, ref=own.ref, group=group, hub=hub, message=own.message, welcome=own.welcome)
    )
    reply = expect_reply(reply, GroupQueued)
    if reply.ref != own.ref:
        raise RemoteProtocolError("the node queued another submission than the one sent")
    with state.transaction():
        record = state.group_record(group)
        if record is not None and record.own is not None and record.own.ref == own.ref:
            state.save_group(record.but(own=replace(record.own, submitted=True)))
        elif record is not None and any(s.ref == own.ref for s in record.sends):
            state.save_group(record.but(sends=tuple(replace(s, submitted=True) if s.ref == own.ref else s for s in record.sends)))
        if own.op["op"] == "send":  # a text the home node holds now: "queued" (client/groups/sent.py)
            state.group_sent_submitted(decode_content(own.op["content"]).id)


def _redo_sends(sends: tuple[Outstanding, ...], epoch: int, *, only: Outstanding | None = None) -> tuple[Outstanding, ...]:
    """Mark this device's messages (``only`` that one) to be made again once the group has
    reached ``epoch``: the hub refuses (or will refuse) them as of an older epoch."""
    return tuple(
        replace(s, redo=True, redo_epoch=max(epoch, s.redo_epoch), submitted=False) if s.ref and (only is None or s is only) else s
        for s in sends
    )


def _committer(group: Group, message: bytes) -> str | None:
    """The account whose device made the commit ``message`` (a PublicMessage), if it says."""
    try:
        body = MLSMessage.from_bytes(message).body
        leaf = group.tree.leaf(body.content.sender.index) if isinstance(body, PublicMessage) else None
        return leaf_member(leaf).account if leaf is not None else None
    except ProtocolError:
        return None

