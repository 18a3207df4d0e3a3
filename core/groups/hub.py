"""The hub of a group (docs/groups.md): orders the group's messages, one commit per epoch.

``HubGroup`` is the hub's state of one hosted group: the public MLS view (``PublicGroup``, no
secrets), the last sequence number it gave, and, after a hand-over, where the group went.
``order`` takes one SUBMIT item and answers with an outcome: "ok" and one ORDERED copy per
participating node, or a refusal code of GROUP_REFUSALS and no change at all. It never raises on
what a device or another node sent: everything it refuses is an outcome.

- A commit or proposal is a member's PublicMessage: checked by ``PublicGroup`` and by the
  group's rules (policy.py) before anything changes. A commit goes to the nodes of the members
  before and after it (removed devices see their removal), each copy naming that node's member
  devices after it; a commit that adds members carries their Welcome, which must name exactly
  the added KeyPackages.
- An application message is a PrivateMessage: the hub sees its group, epoch and size only, and
  takes it for the current epoch only. A timed one carries its expiry in its authenticated
  data (core/groups/expiry.py), which the SUBMIT item's ``expires`` must repeat; a commit or
  proposal with an expiry is refused (``timed_change``). The hub keeps ``floor``, the last
  sequence number it gave an item that does not expire, and ``gap_expires``, the latest expiry
  of the timed items since: every ORDERED copy names both as they were before it, so a device
  that finds timed items missing below it knows it may skip them once they expired (and no
  others: docs/groups.md "Disappearing messages on nodes").
- After a commit that changes the hub, ``moved_to`` is set, the outcome carries the HANDOVER
  items with ``to_bytes()`` in parts for the new hub (core/groups/handover.py; ``adopt`` takes
  them all), and this state orders nothing more (the node
  forwards later submissions; called anyway, ``order`` answers ``unknown_group``). Every
  ORDERED copy's ``hub`` names the hub of the next item, so the hand-over commit's copies name
  the new hub: a member node takes the group's later items only from it.

A HubGroup is as large as the group's ratchet tree; a hand-over's state is bounded by
``MAX_HANDOVER_STATE_BYTES`` (12 MiB, in parts of 1 MiB; a filled 2,000-device state is ~5.6 MB),
so a hand-over of a larger state is refused when the commit is ordered (``too_large``). A commit
that moves the hub adds no one (policy.py: its joiners would fetch their tree from the new hub,
which has none).
So is a commit that would make the group more than ``MAX_GROUP_DEVICES`` devices, or a node's
ORDERED copy larger than ``MAX_GROUP_ITEM_BYTES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import canonical, limits
from ..address import parse_address, validate_node_name
from ..errors import ProtocolError, RemoteProtocolError
from ..mls.extensions import ExtensionType, RequiredCapabilities, find_extension
from ..mls.framing import ContentType, MLSMessage, PrivateMessage, PublicMessage, SenderType, WireFormat
from ..mls.group.public import PublicCommit, PublicGroup
from ..mls.messages import Add, Update, Welcome
from .expiry import read_expiry_aad
from .handover import assemble, split_state
from .credential import SUITE_ID, MemberCredential, leaf_member
from .items import GROUP_ID_LEN, MAX_GROUP_DEVICES, MAX_GROUP_ITEM_BYTES, MAX_GROUP_MESSAGE_BYTES, MAX_GROUP_WELCOME_BYTES, MAX_HANDOVER_STATE_BYTES
from .items import MAX_NODE_MEMBERS, GroupItem, GroupMember, ItemKind, item_size
from .policy import PolicyError, check_commit, check_proposal
from .state import EXTENSION_TYPE, GroupExtension, extension_in, group_extension

__all__ = ["HubGroup", "HubOutcome", "HUB_STATE_FORMAT"]

#: the version of ``HubGroup.to_bytes``
HUB_STATE_FORMAT = 1
_STATE_FIELDS = {"v": int, "hub": str, "seq": int, "moved_to": str, "public": bytes}
_MAX_STATE_BYTES = limits.MLS_MAX_MESSAGE_BYTES + 4096

_OK = "ok"


@dataclass(frozen=True)
class HubOutcome:
    #: "ok" or a code of GROUP_REFUSALS
    code: str
    #: the group's epoch after this
    epoch: int
    #: (node, ORDERED item) for each participating node
    ordered: tuple[tuple[str, GroupItem], ...] = ()
    #: (new hub, its HANDOVER items: the state in parts, in order) after a commit that changed
    #: the hub
    handover: tuple[str, tuple[GroupItem, ...]] | None = None


class _Refused(Exception):
    """One refusal inside ``order``: its GROUP_REFUSALS code."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class HubGroup:
    __slots__ = ("hub", "seq", "moved_to", "floor", "gap_expires", "_public", "_members", "_who")

    def __init__(
        self, *, hub: str, seq: int, moved_to: str | None, public: PublicGroup, floor: int | None = None, gap_expires: int = 0
    ) -> None:
        #: the node that orders the group's messages with this state
        self.hub = hub
        #: the last sequence number given (0: none yet)
        self.seq = seq
        #: the new hub after a hand-over, else None
        self.moved_to = moved_to
        #: the last sequence number given to an item that does not expire; not in ``to_bytes``
        #: (the state is written at such items only, and a hand-over is one): the node keeps it
        #: beside ``seq`` for the timed messages between
        self.floor = seq if floor is None else floor
        #: the latest expiry of the items given a sequence number after ``floor`` (0: none)
        self.gap_expires = gap_expires
        self._public = public
        #: leaf index -> credential; every leaf passed leaf_member when it came in
        self._members = {index: leaf_member(leaf) for index, leaf in public.members()}
        #: the member nodes and devices, found once per member list (``_member_index``)
        self._who: tuple[frozenset[str], frozenset[tuple[str, int]]] | None = None

    # ---- creating, saving, handing over ------------------------------------------------------

    @classmethod
    def create(cls, *, node: str, group: bytes, group_info: bytes, ratchet_tree: bytes) -> HubGroup:
        """A new group registered by its creator's device with its home node ``node``: one
        member of this node at epoch 0, the Sonet suite, sonet_group naming ``node`` as hub and
        the creator's account as the only admin and required by the group. ``invalid`` else."""
        try:
            public = PublicGroup.from_group_info(group_info, ratchet_tree)
            members = public.members()
            if public.group_id != group or len(group) != GROUP_ID_LEN:
                raise _invalid("the GroupInfo is of another group")
            if public.cs.id != SUITE_ID or public.epoch != 0 or len(members) != 1:
                raise _invalid(f"a new group is of suite {SUITE_ID:#06x}, at epoch 0, with its creator only")
            creator = leaf_member(members[0][1])
            extension = group_extension(public.context)
            if extension.hub != node or parse_address(creator.account).node != node:
                raise _invalid(f"a new group's hub is its creator's home node {node}")
            if extension.admins != (creator.account,):
                raise _invalid("a new group's only admin is its creator")
            required = find_extension(public.context.extensions, ExtensionType.REQUIRED_CAPABILITIES)
            if required is None or EXTENSION_TYPE not in RequiredCapabilities.from_bytes(required.extension_data).extension_types:
                raise _invalid("a new group requires the sonet_group extension")
        except ProtocolError as exc:
            if exc.code == "invalid":
                raise
            raise _invalid(f"the new group does not verify: {exc}") from None
        return cls(hub=node, seq=0, moved_to=None, public=public)

    def to_bytes(self) -> bytes:
        return canonical.dumps(
            {"v": HUB_STATE_FORMAT, "hub": self.hub, "seq": self.seq, "moved_to": self.moved_to or "", "public": self._public.to_bytes()}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> HubGroup:
        """Strict; ``group_malformed`` for anything ``to_bytes`` did not write."""
        try:
            fields = canonical.loads_map(data, _STATE_FIELDS, max_bytes=_MAX_STATE_BYTES)
            if fields["v"] != HUB_STATE_FORMAT:
                raise RemoteProtocolError(f"format {fields['v']}")
            hub, moved_to, seq = fields["hub"], fields["moved_to"] or None, fields["seq"]
            for name in (hub, moved_to):
                if name is not None and validate_node_name(name, remote=True) != name:
                    raise RemoteProtocolError("a node name not in normal form")
            if not 0 <= seq < 2**63:
                raise RemoteProtocolError("sequence number out of range")
            public = PublicGroup.from_bytes(fields["public"])
            if public.cs.id != SUITE_ID or len(public.group_id) != GROUP_ID_LEN:
                raise RemoteProtocolError("not a Sonet group")
            group_extension(public.context)
            return cls(hub=hub, seq=seq, moved_to=moved_to, public=public)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"hub group state is malformed: {exc}", code="group_malformed") from None

    @classmethod
    def adopt(cls, *, node: str, item: GroupItem | Iterable[GroupItem]) -> HubGroup:
        """The state a hand-over brings to the new hub ``node``, which continues the sequence:
        ``item`` is its one HANDOVER item, or all its parts in any order (handover.py).
        ``invalid`` if a part is missing or the parts are not a hand-over of that group to
        ``node`` at the hand-over commit's epoch and sequence number."""
        item, state = assemble([item] if isinstance(item, GroupItem) else item)
        if item.hub != node:
            raise _invalid(f"not a hand-over to {node}")
        try:
            old = cls.from_bytes(state)
        except RemoteProtocolError as exc:
            raise _invalid(str(exc)) from None
        if (old.group, old.seq, old.epoch, old.moved_to) != (item.group, item.seq, item.epoch, node) or group_extension(old._public.context).hub != node:
            raise _invalid("the HANDOVER items do not match the group state they carry")
        return cls(hub=node, seq=old.seq, moved_to=None, public=old._public)

    # ---- what the group is now ---------------------------------------------------------------

    @property
    def group(self) -> bytes:
        return self._public.group_id

    @property
    def epoch(self) -> int:
        return self._public.epoch

    @property
    def public(self) -> PublicGroup:
        """The public MLS view (do not change it)."""
        return self._public

    def members(self) -> dict[int, MemberCredential]:
        return dict(self._members)

    def nodes(self) -> tuple[str, ...]:
        """The participating nodes (those with a member device), sorted."""
        return tuple(sorted(_by_node(self._members)))

    # ---- ordering ----------------------------------------------------------------------------

    def order(self, item: GroupItem, *, node: str | None = None, device: tuple[str, int] | None = None) -> HubOutcome:
        """Order one SUBMIT item (module docstring); a refusal changes nothing. ``node``: the
        submitting device's home node, ``device``: that device when the hub's node is its home;
        a submission from a node (device) that is not a member's, or a commit or proposal whose
        sender leaf is another node's (device's), is refused ``not_member`` (None: unchecked)."""
        try:
            return self._order(item, node, device)
        except _Refused as refused:
            return HubOutcome(refused.outcome, self.epoch)

    def _member_index(self) -> tuple[frozenset[str], frozenset[tuple[str, int]]]:
        if self._who is None:
            devices = frozenset((m.account, m.device) for m in self._members.values())
            self._who = (frozenset(parse_address(account).node for account, _ in devices), devices)
        return self._who

    def _check_submitter(self, node: str | None, device: tuple[str, int] | None, sender: int | None) -> None:
        """``not_member`` unless ``node`` and ``device`` (those given) are a member's, and the
        sender leaf ``sender`` (a PublicMessage's; None for a PrivateMessage, which hides it) theirs."""
        nodes, devices = self._member_index()
        if (node is not None and node not in nodes) or (device is not None and device not in devices):
            raise _Refused("not_member")
        if sender is not None:
            leaf = self._members[sender]
            if (node is not None and parse_address(leaf.account).node != node) or (device is not None and (leaf.account, leaf.device) != device):
                raise _Refused("not_member")

    def _order(self, item: GroupItem, node: str | None, device: tuple[str, int] | None) -> HubOutcome:
        _check_submit(item)
        if item.group != self.group or self.moved_to is not None:
            raise _Refused("unknown_group")
        self._check_submitter(node, device, None)
        try:
            message = MLSMessage.from_bytes(item.message)
        except ProtocolError:
            raise _Refused("invalid") from None
        body = message.body
        if isinstance(body, PrivateMessage):
            return self._order_application(item, body)
        if not isinstance(body, PublicMessage):
            raise _Refused("invalid")
        content = body.content
        if item.expires or content.authenticated_data:
            raise _Refused("timed_change")  # only application messages may expire
        self._check_epoch(content.group_id, content.epoch, item)
        if content.sender.sender_type is not SenderType.MEMBER or content.sender.index not in self._members:
            raise _Refused("not_member")
        self._check_submitter(node, device, content.sender.index)
        if content.content_type is ContentType.PROPOSAL:
            return self._order_proposal(item, message, content.sender.index)
        return self._order_commit(item, message)

    def _check_epoch(self, group: bytes, epoch: int, item: GroupItem) -> None:
        if group != self.group or epoch != item.epoch:
            raise _Refused("invalid")
        if epoch < self.epoch:
            raise _Refused("stale_epoch")
        if epoch > self.epoch:
            raise _Refused("invalid")

    def _order_application(self, item: GroupItem, body: PrivateMessage) -> HubOutcome:
        if body.content_type is not ContentType.APPLICATION or item.welcome:
            raise _Refused("invalid")  # handshake messages are PublicMessages in Sonet groups
        self._check_epoch(body.group_id, body.epoch, item)
        try:
            expires = read_expiry_aad(body.authenticated_data)
        except ValueError:
            raise _Refused("invalid") from None
        if item.expires != (expires or 0):
            raise _Refused("invalid")  # the item's expiry is the one its sender authenticated
        return self._accept(item, {node: () for node in self.nodes()})

    def _order_proposal(self, item: GroupItem, message: MLSMessage, proposer: int) -> HubOutcome:
        if item.welcome:
            raise _Refused("invalid")
        assert isinstance(message.body, PublicMessage)
        try:
            # the rules first: PublicGroup keeps a proposal it takes as pending
            check_proposal(extension=self._extension(), members=self._members, proposal=message.body.content.proposal(), proposer=proposer)
            self._public.process(message)
        except PolicyError:
            raise _Refused("not_allowed") from None
        except ProtocolError:
            raise _Refused("invalid") from None
        return self._accept(item, {node: () for node in self.nodes()})

    def _order_commit(self, item: GroupItem, message: MLSMessage) -> HubOutcome:
        before = self._extension()
        try:
            commit = self._public.process(message)
            assert isinstance(commit, PublicCommit)
            after = before if commit.extensions is None else extension_in(commit.extensions)
            check_commit(before=before, members=self._members, commit=commit, after=after)
        except PolicyError:
            raise _Refused("not_allowed") from None
        except ProtocolError:
            raise _Refused("invalid") from None
        self._check_welcome(item, commit)
        members_after = dict(self._members)
        for index, _ in commit.removed:
            del members_after[index]
        for index, leaf in commit.added:
            members_after[index] = leaf_member(leaf)  # the same credential check_commit read
        for index in {commit.sender} | {proposer for p, proposer in commit.proposals if isinstance(p, Update)}:
            changed = commit.staged.tree.leaf(index)
            if changed is not None:  # a new leaf of the same device (policy): its binding may be new
                members_after[index] = leaf_member(changed)
        nodes_before, by_node = _by_node(self._members), _by_node(members_after)
        if len(members_after) > MAX_GROUP_DEVICES or any(len(devices) > MAX_NODE_MEMBERS for devices in by_node.values()):
            raise _Refused("too_large")
        if any(item_size(item.message, item.welcome, devices) > MAX_GROUP_ITEM_BYTES for devices in by_node.values()):
            raise _Refused("too_large")  # a node's ORDERED copy would not fit one item
        moved_to = after.hub if after.hub != before.hub else None
        if moved_to is not None and self._state_size_after(commit) > MAX_HANDOVER_STATE_BYTES:
            raise _Refused("too_large")
        # accepted: from here on nothing refuses
        self._public.merge(commit)
        self._members, self._who = members_after, None
        outcome = self._accept(item, {node: by_node.get(node, ()) for node in set(nodes_before) | set(by_node)}, next_hub=moved_to)
        if moved_to is None:
            return outcome
        self.moved_to = moved_to
        handover = split_state(group=self.group, epoch=self.epoch, seq=self.seq, hub=moved_to, state=self.to_bytes())
        return HubOutcome(_OK, self.epoch, outcome.ordered, (moved_to, handover))

    def _state_size_after(self, commit: PublicCommit) -> int:
        """About the size of ``to_bytes`` once ``commit`` is merged (it decides a hand-over)."""
        return len(PublicGroup(self._public.cs, commit.staged).to_bytes()) + 256

    def _check_welcome(self, item: GroupItem, commit: PublicCommit) -> None:
        """A commit that adds carries one Welcome of the group's suite for exactly its new
        members' KeyPackages; any other commit carries none."""
        added = [p.key_package.ref(self._public.cs) for p, _ in commit.proposals if isinstance(p, Add)]
        if not added:
            if item.welcome:
                raise _Refused("invalid")
            return
        try:
            welcome = MLSMessage.from_bytes(item.welcome).body
        except ProtocolError:
            raise _Refused("invalid") from None
        if not isinstance(welcome, Welcome) or welcome.cipher_suite != SUITE_ID:
            raise _Refused("invalid")
        if sorted(s.new_member for s in welcome.secrets) != sorted(added):
            raise _Refused("invalid")

    def _accept(self, item: GroupItem, members: dict[str, tuple[GroupMember, ...]], *, next_hub: str | None = None) -> HubOutcome:
        """Give ``item`` the next sequence number; each copy names the hub that orders the
        item after it (``next_hub`` after a hand-over commit, else this one): member nodes take
        later items only from that node."""
        self.seq += 1
        ordered = tuple(
            (
                node,
                GroupItem(
                    kind=ItemKind.ORDERED, ref=item.ref, group=item.group, epoch=item.epoch, seq=self.seq, message=item.message,
                    welcome=item.welcome, members=members[node], outcome="", hub=next_hub or self.hub,
                    expires=item.expires, floor=self.floor, gap_expires=self.gap_expires,
                ),  # fmt: skip
            )
            for node in sorted(members)
        )
        if item.expires:
            self.gap_expires = max(self.gap_expires, item.expires)
        else:
            self.floor, self.gap_expires = self.seq, 0
        return HubOutcome(_OK, self.epoch, ordered)

    def _extension(self) -> GroupExtension:
        return group_extension(self._public.context)


def _check_submit(item: GroupItem) -> None:
    """A SUBMIT item as the struct allows it; oversized parts are ``too_large``."""
    if len(item.message) > MAX_GROUP_MESSAGE_BYTES or len(item.welcome) > MAX_GROUP_WELCOME_BYTES or item.size() > MAX_GROUP_ITEM_BYTES:
        raise _Refused("too_large")
    try:
        item.check()
    except (ValueError, TypeError):
        raise _Refused("invalid") from None
    if item.kind != ItemKind.SUBMIT:
        raise _Refused("invalid")


def _by_node(members: dict[int, MemberCredential]) -> dict[str, tuple[GroupMember, ...]]:
    """The member devices of each participating node, sorted and unique."""
    found: dict[str, set[tuple[str, int]]] = {}
    for member in members.values():
        found.setdefault(parse_address(member.account).node, set()).add((member.account, member.device))
    return {node: tuple(GroupMember(account=a, device=d) for a, d in sorted(devices)) for node, devices in found.items()}


def _invalid(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, code="invalid")
