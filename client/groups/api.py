"""What a device does with groups (docs/groups.md): create one, add and remove members, leave,
name admins, move the hub, send; list them and show one. ``Device`` (client/sdk.py) exposes
these as ``group_*`` methods; they return the plain dataclasses below (ready for ``--json``).

Every change follows one path: bring the device up to date with its mailbox (so it changes the
newest epoch), make the change (client/groups/ops.py), keep it as the group's outstanding
submission with the state it leads to, send it to the home node (``GroupSubmit``) and wait up
to ``SETTLE_S`` for the hub's order to come back through the mailbox (client/groups/engine.py
redoes it on top if another commit came first). A change still on its way then is "queued":
the next ``receive`` finishes it. One commit or proposal per group at a time.

Messages (``send``, and the name and topic an admin sends) are independent submissions: any
number may be on their way at once, each made when it is sent, in the order written (after this
device's own commit or proposal, if one is on its way). ``send`` waits only
``SEND_SETTLE_S`` for the hub's order. When the home node cannot be reached, the text is kept
sealed on the device ("pending", like a 1:1 text: client/pending.py) and sent, encrypted at the
then-current epoch, by the next command that connects (client/groups/waiting.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import trio

from sonet.core import limits
from sonet.core.address import parse_address, validate_node_name
from sonet.core.client_api import CreateGroup, GroupCreated
from sonet.core.content import MAX_GROUP_NAME_LEN, MAX_GROUP_TOPIC_LEN, Content, encode_content
from sonet.core.crypto import CryptoPolicy
from sonet.core.device_list import DeviceList
from sonet.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sonet.core.groups.credential import SUITE_ID, leaf_member
from sonet.core.groups.items import GROUP_ID_LEN, GROUP_REFUSALS, MAX_ADDS_PER_COMMIT, group_hex
from sonet.core.groups.policy import PolicyError
from sonet.core.groups.state import GroupExtension, group_context_extensions, group_extension
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.group import Group, PublicGroup

from ..connection import ConnectError, Connection, NodeError
from ..pending import MAX_PENDING, waits
from ..replies import expect_reply
from ..state import DeviceState, Profile
from ..state_history import content_fields
from ..timer import timed
from .engine import ORDERED, GroupEngine, send_failed, submit_own
from .keys import SUITE, maintain_key_packages, own_key_package, signature_key
from .members import fetch_key_packages
from .ops import make, member_devices
from .own_devices import follow_device_list
from .rules import check_message, public_view
from .sent import PENDING, note_sent
from .store import GroupRecord, Outstanding

__all__ = ["GroupView", "GroupMemberView", "GroupInfoView", "GroupSendResult", "Groups", "find_group", "SETTLE_S", "SEND_SETTLE_S"]

#: how long a change waits for the hub's order before it is reported "queued"
SETTLE_S = 15.0
#: how long a message waits for it (the home node holds it already: nothing is lost after)
SEND_SETTLE_S = 1.5


@dataclass(frozen=True, kw_only=True)
class GroupView:
    id: str  # 32 hex digits
    name: str
    topic: str
    epoch: int
    hub: str
    members: tuple[str, ...]  # accounts, sorted
    admins: tuple[str, ...]
    #: False once this device was removed (or left)
    active: bool
    #: a change of this device is still on its way to the hub
    waiting: bool


@dataclass(frozen=True, kw_only=True)
class GroupMemberView:
    account: str
    devices: tuple[int, ...]
    admin: bool


@dataclass(frozen=True, kw_only=True)
class GroupInfoView:
    id: str
    name: str
    topic: str
    epoch: int
    hub: str
    suite: str  # "0x004d"
    members: tuple[GroupMemberView, ...]
    admins: tuple[str, ...]
    active: bool
    waiting: bool


@dataclass(frozen=True, kw_only=True)
class GroupSendResult:
    id: bytes  # the message's content id
    group: str
    #: "ordered" (the hub put it in the group's order), "queued" (the home node holds it, on
    #: its way to the hub) or "pending" (kept on this device: ``code``/``message`` say why)
    state: str
    code: str = ""
    message: str = ""


class _Receiver(Protocol):
    async def run(
        self, conn: Connection, *, wait: float | None, read_receipts: bool, keys: bool = True, after_drained: bool = False
    ) -> None: ...


class Groups:
    """The group operations of one device (see the module docstring)."""

    def __init__(
        self,
        state: DeviceState,
        *,
        clock: Callable[[], int],
        rng: Callable[[int], bytes],
        policy: Callable[[], CryptoPolicy],
        connect: Callable[[Profile], AbstractAsyncContextManager[Connection]],
        receiver: Callable[[Profile, GroupEngine], _Receiver],
    ) -> None:
        self._state = state
        self._clock = clock
        self._rng = rng
        self._policy = policy
        self._connect = connect
        self._receiver = receiver
        self.settle_s = SETTLE_S

    # Reading -----------------------------------------------------------------------------

    def groups(self) -> list[GroupView]:
        return [_view(record) for record in self._state.group_records()]

    def info(self, group: str) -> GroupInfoView:
        record = self.find(group)
        mls = Group.from_bytes(record.mls)
        ext = group_extension(mls.context)
        devices: dict[str, list[int]] = {}
        for account, device in member_devices(mls):
            devices.setdefault(account, []).append(device)
        members = tuple(
            GroupMemberView(account=a, devices=tuple(sorted(d)), admin=ext.is_admin(a)) for a, d in sorted(devices.items())
        )
        return GroupInfoView(
            id=group_hex(record.id), name=record.name, topic=record.topic, epoch=mls.epoch, hub=ext.hub, suite=f"{SUITE_ID:#06x}",
            members=members, admins=ext.admins, active=record.active, waiting=record.own is not None or bool(record.sends),
        )  # fmt: skip

    def find(self, group: str) -> GroupRecord:
        return find_group(self._state, group)

    # Changing ----------------------------------------------------------------------------

    async def create(self, name: str, members: list[str]) -> GroupView:
        _check_name(name)
        profile = self._state.profile()
        accounts = _accounts(members, me=profile.address)
        async with self._connect(profile) as conn:
            await self._sync(conn, profile)
            now = self._clock()
            key_packages = await self._key_packages(conn, profile, accounts + [profile.address], skip={profile.address: {profile.device_id}})
            own = own_key_package(self._state, profile, self._rng, now)
            ext = GroupExtension(conn.welcome.node, (profile.address,))
            group_id = self._rng(GROUP_ID_LEN)
            mls = Group.create(
                SUITE, group_id, own.key_package.leaf_node, signature_priv=signature_key(self._state, self._rng),
                encryption_priv=own.encryption_priv, rng=self._rng, extensions=group_context_extensions(ext),
            )  # fmt: skip
            info = MLSMessage(WireFormat.GROUP_INFO, mls.group_info(with_ratchet_tree=False, external_pub=False)).to_bytes()
            reply = await conn.request(lambda n: CreateGroup(request=n, group=group_id, group_info=info, ratchet_tree=mls.ratchet_tree_bytes()))
            if expect_reply(reply, GroupCreated).group != group_id:
                raise RemoteProtocolError("the node created another group than the one asked for")
            self._state.save_group(GroupRecord(id=group_id, next_seq=1, created=now, mls=mls.to_bytes(), public=public_view(mls), name=name))
            for start in range(0, len(key_packages), MAX_ADDS_PER_COMMIT):  # so that each commit fits an item
                await self._change(conn, profile, group_id, {"op": "add", "key_packages": key_packages[start : start + MAX_ADDS_PER_COMMIT]})
            await self._announce(conn, profile, group_id, name, "")
        return _view(self._record(group_id))

    async def add(self, group: str, members: list[str]) -> GroupView:
        profile = self._state.profile()
        async with self._connect(profile) as conn:
            await self._sync(conn, profile)
            record = self.find(group)
            present: dict[str, set[int]] = {}
            for account, device in member_devices(Group.from_bytes(record.mls)):
                present.setdefault(account, set()).add(device)
            accounts = _accounts(members, me=profile.address, allow_me=True)
            key_packages = await self._key_packages(conn, profile, accounts, skip=present)
            if not key_packages:
                raise LocalProtocolError("nothing to add: those devices are in the group already, or have no KeyPackages", code="nothing_to_do")
            for start in range(0, len(key_packages), MAX_ADDS_PER_COMMIT):  # so that each commit fits an item
                await self._change(conn, profile, record.id, {"op": "add", "key_packages": key_packages[start : start + MAX_ADDS_PER_COMMIT]})
            record = self._record(record.id)
            if record.name and group_extension(Group.from_bytes(record.mls).context).is_admin(profile.address):
                await self._announce(conn, profile, record.id, record.name, record.topic)  # the new members learn the name
        return _view(self._record(record.id))

    async def remove(self, group: str, member: str) -> GroupView:
        account = str(parse_address(member))
        if account == self._state.profile().address:
            raise LocalProtocolError("to take this account out of the group, use `group leave`", code="bad_input")
        return await self._simple(group, {"op": "remove", "account": account}, member_of=account)

    async def admin(self, group: str, member: str) -> GroupView:
        account = str(parse_address(member))
        return await self._simple(group, {"op": "admin", "account": account}, member_of=account)

    async def hub(self, group: str, node: str) -> GroupView:
        return await self._simple(group, {"op": "hub", "node": validate_node_name(node)})

    async def leave(self, group: str) -> bool:
        """This account leaves: a commit removes its other devices (if any are in the group),
        then this device proposes its own removal, which the first member staying commits
        (client/groups/engine.py). The group stays listed here, inactive once that commit came.
        When no other account is a member nobody would commit it: the group is closed here at
        once (inactive; True is returned)."""
        profile = self._state.profile()
        async with self._connect(profile) as conn:
            await self._sync(conn, profile)
            record = self.find(group)
            mls = Group.from_bytes(record.mls)
            others = {a for a, _d in member_devices(mls)} - {profile.address}
            if record.active and others and not others & set(group_extension(mls.context).admins):
                raise LocalProtocolError(
                    "not allowed: the last admin cannot leave while other members stay: name another admin first (`group admin`)",
                    code="not_allowed",
                )  # fmt: skip
            mine = [d for a, d in member_devices(mls) if a == profile.address and d != profile.device_id]
            if mine:
                await self._change(conn, profile, record.id, {"op": "remove", "account": profile.address})
            if record.active and not others:
                # Found by cli10: a proposal nobody stays to commit changed nothing, and the
                # group went on taking this device's messages as before.
                with self._state.transaction():
                    closing = self._record(record.id)
                    for send in closing.sends:  # never to be sent now: failed, as a removed member's are
                        send_failed(self._state, send, "not_member")
                    self._state.save_group(closing.but(active=False, own=None, sends=()))
                return True
            await self._change(conn, profile, record.id, {"op": "leave"})
            return False

    async def set_state(self, group: str, *, name: str | None = None, topic: str | None = None) -> GroupView:
        """Rename the group or set its topic (admins): a ``group_state`` message with both,
        the one not given kept as this device knows it."""
        if name is None and topic is None:
            raise LocalProtocolError("nothing to change: give a name or a topic", code="nothing_to_do")
        if name is not None:
            _check_name(name)
        if topic is not None and len(topic.encode()) > MAX_GROUP_TOPIC_LEN:
            raise LocalProtocolError(f"a group topic is at most {MAX_GROUP_TOPIC_LEN} bytes (UTF-8)", code="bad_input")
        profile = self._state.profile()
        async with self._connect(profile) as conn:
            await self._sync(conn, profile)
            record = self.find(group)
            if not group_extension(Group.from_bytes(record.mls).context).is_admin(profile.address):
                raise LocalProtocolError("not allowed: only an admin renames the group or sets its topic", code="not_allowed")
            new_name, new_topic = name if name is not None else record.name, topic if topic is not None else record.topic
            if not new_name:
                raise LocalProtocolError("this device does not know the group's name yet: give it one (`group rename`)", code="bad_input")
            if (new_name, new_topic) == (record.name, record.topic):
                raise LocalProtocolError("nothing to change: the group is already so", code="nothing_to_do")
            await self._announce(conn, profile, record.id, new_name, new_topic)
        return _view(self._record(record.id))

    async def follow_devices(self, conn: Connection, profile: Profile, listed: DeviceList) -> list[str]:
        """After this device changed the account's device list to ``listed`` (``devices
        remove``): take the devices it no longer names out of every group (submitted, not waited
        for: the next receive sees it ordered). One line for what could not be done now."""
        engine = GroupEngine(self._state, profile, rng=self._rng, clock=self._clock)
        try:
            await follow_device_list(conn, self._state, profile, policy=self._policy(), now=self._clock(), rng=self._rng, listed=listed)
            await engine.flush(conn)
        except (NodeError, ProtocolError) as exc:
            return [f"could not take the device out of this account's groups now (the next receive does): {exc}"]
        return engine.rejected

    async def send(self, group: str, text: str, *, settle: bool = True) -> GroupSendResult:
        """``settle=False``: on a live session's connection (client/live.py), which processes
        its deliveries itself: no catching up first, no wait for the order ("queued")."""
        if not text:
            raise LocalProtocolError("refusing to send an empty message", code="bad_input")
        if len(text.encode()) > limits.MAX_TEXT_LEN:
            raise LocalProtocolError(f"message is longer than {limits.MAX_TEXT_LEN} bytes (UTF-8)", code="bad_input")
        content_id, now = self._rng(limits.CONTENT_ID_LEN), self._clock()
        return await self.send_content(group, Content.make_text(id=content_id, sent_at=now, text=text), settle=settle)

    async def send_content(self, group: str, message: Content, *, settle: bool = True) -> GroupSendResult:
        """Send a text, reply, reaction, edit or delete (client/gestures.py), as ``send``.
        While the group's timer is on it carries its expiry (client/timer.py), noted first: it
        is erased here at its time even if it never goes."""
        profile = self._state.profile()
        group_id = self.find(group).id
        message = timed(self._state, group_hex(group_id), message)
        if message.expires is not None:
            self._state.note_expiry(message.id, message.expires)
        content_id, now, kept = message.id, message.sent_at, content_fields(message)
        content = encode_content(message)
        origin = self._rng(16)
        queued = False
        try:
            async with self._connect(profile) as conn:
                if settle:
                    await self._sync(conn, profile)
                self._queue_message(group_id, content, origin, text_id=content_id, sent_at=now, kind=message.type, fields=kept)
                queued = True
                state = await self._send_message(conn, profile, group_id, origin, wait=min(self.settle_s, SEND_SETTLE_S) if settle else 0)
        except ConnectError as exc:  # the home node cannot be reached (or the connection dropped)
            if not queued:
                self._queue_message(group_id, content, origin, text_id=content_id, sent_at=now, kind=message.type, fields=kept)
            if self._on_device(group_id, origin):
                return GroupSendResult(id=content_id, group=group_hex(group_id), state=PENDING, code="unreachable", message=str(exc))
            state = "queued"  # the home node holds it
        except (NodeError, ProtocolError) as exc:
            if queued and self._on_device(group_id, origin):
                if waits(exc):  # not now: kept, and sent by the next command that connects
                    return GroupSendResult(id=content_id, group=group_hex(group_id), state=PENDING, code=exc.code, message=str(exc))
                self._drop_message(group_id, origin, content_id)
            raise
        if state == PENDING:
            return GroupSendResult(
                id=content_id, group=group_hex(group_id), state=PENDING, code="group_busy",
                message="this device's change to the group is still on its way to the hub: the message goes once it is ordered",
            )  # fmt: skip
        return GroupSendResult(id=content_id, group=group_hex(group_id), state=state)

    def _queue_message(
        self, group: bytes, content: bytes, origin: bytes, *, text_id: bytes | None = None, sent_at: int = 0, kind: str = "text",
        fields: dict | None = None,
    ) -> None:
        """Keep a message to send (made when it is sent, in the order written), and a text's
        delivery status rows and ``text`` for the history (client/groups/sent.py); nothing is
        kept when refused."""
        with self._state.transaction():
            record = self._record(group)
            if not record.active:
                raise LocalProtocolError("this device is no longer a member of the group", code="not_member")
            if self._state.unsent_group_messages() >= MAX_PENDING:
                raise LocalProtocolError(
                    f"not sent: {MAX_PENDING} group messages already wait on this device for the home node", code="pending_full"
                )  # fmt: skip
            epoch = Group.from_bytes(record.mls).epoch
            send = Outstanding(
                ref=b"", origin=origin, kind="message", epoch=epoch, message=b"", welcome=b"", after=None,
                op={"op": "send", "content": content}, submitted=False, redo=True, redo_epoch=epoch,
            )  # fmt: skip
            if text_id is not None:
                note_sent(self._state, text_id, record, self._state.profile().address, sent_at, kind=kind, fields=fields)  # its receipts count from now
            self._state.save_group(record.but(sends=record.sends + (send,)))

    def _on_device(self, group: bytes, origin: bytes) -> bool:
        """The message ``origin`` has not reached the home node yet."""
        record = self._state.group_record(group)
        return record is not None and any(s.origin == origin and not s.submitted for s in record.sends)

    def _drop_message(self, group: bytes, origin: bytes, text_id: bytes) -> None:
        with self._state.transaction():
            record = self._record(group)
            self._state.save_group(record.but(sends=tuple(s for s in record.sends if s.origin != origin)))
            self._state.forget_group_sent(text_id)

    async def _send_message(self, conn: Connection, profile: Profile, group: bytes, origin: bytes, *, wait: float) -> str:
        """Send what is due (the message ``origin`` among it) and wait up to ``wait`` for its
        order: "ordered", "queued", or "pending" when it waits for this device's own change."""
        engine = GroupEngine(self._state, profile, rng=self._rng, clock=self._clock)
        await engine.flush(conn)
        if self._on_device(group, origin):
            return PENDING
        return await self._settle(conn, profile, group, origin, wait=wait, engine=engine)

    async def _simple(self, group: str, op: dict, *, member_of: str | None = None) -> GroupView:
        profile = self._state.profile()
        async with self._connect(profile) as conn:
            await self._sync(conn, profile)
            record = self.find(group)
            if member_of is not None and member_of not in {a for a, _d in member_devices(Group.from_bytes(record.mls))}:
                raise LocalProtocolError(f"{member_of} is not a member of the group", code="not_member")
            await self._change(conn, profile, record.id, op)
        return _view(self._record(record.id))

    async def _announce(self, conn: Connection, profile: Profile, group: bytes, name: str, topic: str) -> None:
        content = Content.make_group_state(id=self._rng(limits.CONTENT_ID_LEN), sent_at=self._clock(), name=name, topic=topic)
        origin = self._rng(16)
        self._queue_message(group, encode_content(content), origin)
        await self._send_message(conn, profile, group, origin, wait=self.settle_s)

    async def _change(self, conn: Connection, profile: Profile, group: bytes, op: dict) -> str:
        """Make ``op``, submit it and wait for its outcome: "ordered" or "queued"; a refusal by
        the hub is an error (its GROUP_REFUSALS line)."""
        record = self._record(group)
        if record.own is not None and record.own.submitted:
            # an earlier change (or the commit of a member's leaving) is on its way: see it through
            try:
                await self._settle(conn, profile, group, record.own.origin)
            except LocalProtocolError:
                pass  # its refusal is that change's, not this one's
            record = self._record(group)
        if not record.active:
            raise LocalProtocolError("this device is no longer a member of the group", code="not_member")
        if record.own is not None:
            raise LocalProtocolError(
                "an earlier change of this device to the group is still on its way to the hub: try again once `sonet receive` "
                "has seen it ordered", code="group_busy",
            )  # fmt: skip
        before = Group.from_bytes(record.mls)
        hub = group_extension(before.context).hub
        public = PublicGroup.from_bytes(record.public)
        made = make(before, op, self._rng)
        if made.kind != "message":
            try:  # the group's rules, as the hub and every member will check them: a refusal needs no round trip
                check_message(public, made.message)
            except PolicyError as exc:
                raise LocalProtocolError(f"not allowed: {exc}", code="not_allowed") from None
        origin = self._rng(16)
        own = Outstanding(
            ref=origin, origin=origin, kind=made.kind, epoch=made.epoch, message=made.message, welcome=made.welcome,
            after=made.after, op=op, submitted=False,
        )  # fmt: skip
        # kept before it is sent: whatever happens next, the device knows what it submitted
        self._state.save_group(record.but(own=own, mls=made.now if made.now is not None else record.mls))
        await submit_own(conn, self._state, group, own, hub)
        return await self._settle(conn, profile, group, origin)

    async def _settle(
        self, conn: Connection, profile: Profile, group: bytes, origin: bytes, *, wait: float | None = None, engine: GroupEngine | None = None
    ) -> str:
        engine = engine or GroupEngine(self._state, profile, rng=self._rng, clock=self._clock)
        wait = self.settle_s if wait is None else wait
        # _sync saw the node's Drained on this connection: from now on each run ends with the
        # first batch that brings something (or the time left). The time bounds the waits, not
        # the runs: a run cancelled mid-send would leave the connection unable to send.
        deadline = trio.current_time() + wait
        while origin not in engine.outcomes and (left := deadline - trio.current_time()) > 0:
            await self._receiver(profile, engine).run(conn, wait=left, read_receipts=False, keys=False, after_drained=True)
        outcome = engine.outcomes.get(origin)
        if outcome is None:
            return "queued"
        if outcome != ORDERED:
            code = outcome if outcome in ("not_allowed", "not_member", "unknown_group") else "group_refused"
            raise LocalProtocolError(f"the group's hub refused it ({outcome}): {GROUP_REFUSALS.get(outcome, outcome)}", code=code)
        return ORDERED

    # Helpers -----------------------------------------------------------------------------

    async def _sync(self, conn: Connection, profile: Profile) -> None:
        """Publish KeyPackages if due, and process what waits in the mailbox (so a change is
        made on the newest epoch, and earlier changes are finished)."""
        await maintain_key_packages(conn, self._state, profile, self._rng, self._clock())
        engine = GroupEngine(self._state, profile, rng=self._rng, clock=self._clock)
        await self._receiver(profile, engine).run(conn, wait=None, read_receipts=False, keys=False)

    async def _key_packages(
        self, conn: Connection, profile: Profile, accounts: list[str], *, skip: dict[str, set[int]]
    ) -> list[bytes]:
        found: list[bytes] = []
        for account in accounts:
            found += await fetch_key_packages(
                conn, self._state, parse_address(account), policy=self._policy(), now=self._clock(), skip=skip.get(account, set())
            )  # fmt: skip
        return found

    def _record(self, group: bytes) -> GroupRecord:
        record = self._state.group_record(group)
        if record is None:
            raise LocalProtocolError(f"no group {group_hex(group)} on this device", code="unknown_group")
        return record


def find_group(state: DeviceState, group: str) -> GroupRecord:
    """A group by its id (32 hex digits) or by its name on this device."""
    if len(group) == 2 * GROUP_ID_LEN:
        try:
            record = state.group_record(bytes.fromhex(group))
        except ValueError:
            record = None
        if record is not None:
            return record
    named = [r for r in state.group_records() if r.name == group]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(group_hex(r.id) for r in named)
        raise LocalProtocolError(f"{len(named)} groups are named {group!r}: use the id ({ids})", code="ambiguous_group")
    raise LocalProtocolError(f"no group {group!r} on this device (`sonet group list` shows them)", code="unknown_group")


def _check_name(name: str) -> None:
    if not 0 < len(name.encode()) <= MAX_GROUP_NAME_LEN:
        raise LocalProtocolError(f"a group name is 1 to {MAX_GROUP_NAME_LEN} bytes (UTF-8)", code="bad_input")


def _accounts(members: list[str], *, me: str, allow_me: bool = False) -> list[str]:
    """The normalised, unique accounts of ``members`` (this account only with ``allow_me``:
    its other devices are in every group of it anyway)."""
    accounts: list[str] = []
    for member in members:
        account = str(parse_address(member))
        if account == me and not allow_me:
            continue
        if account not in accounts:
            accounts.append(account)
    return accounts


def _view(record: GroupRecord) -> GroupView:
    mls = Group.from_bytes(record.mls)
    ext = group_extension(mls.context)
    return GroupView(
        id=group_hex(record.id), name=record.name, topic=record.topic, epoch=mls.epoch, hub=ext.hub,
        members=tuple(sorted({leaf_member(leaf).account for _i, leaf in mls.members()})), admins=ext.admins,
        active=record.active, waiting=record.own is not None or bool(record.sends),
    )  # fmt: skip
