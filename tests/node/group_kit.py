"""What the node's group tests use to act as member devices: the MLS side of a registered test
device (tests/node/kit.py ``Member``), built like tests/core/groups/devices.py ``Device`` but
with the device's own identity key in its credential (a node checks that a group's creator leaf
is the requesting device), and the frames a device sends for its groups."""

from __future__ import annotations

import os
import random

from sonet.core.client_api import CreateGroup, GroupCreated, GroupQueued, GroupSubmit
from sonet.core.envelope import Kind
from sonet.core.groups.credential import make_credential
from sonet.core.groups.items import GroupItem
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.messages import Welcome
from sonet.core.wire import decode_struct
from sonet.node.store import MailboxItem
from tests.core.groups.devices import CS, Device

from .kit import Member, RawConnection

__all__ = ["mls_device", "create_group", "submit", "group_items", "welcome_bytes"]


def mls_device(member: Member) -> Device:
    """The MLS keys and KeyPackage of registered device ``member``."""
    rng = random.Random(f"{member.account}/{member.device_id}")
    signature_priv, signature_pub = CS.signature_key_pair(rng.randbytes)
    credential = make_credential(
        account=member.account, device=member.device_id, fingerprint=member.fingerprint, identity=member.identity,
        signature_key=signature_pub,
    )  # fmt: skip
    device = Device(member.account, member.device_id, rng, member.identity, signature_priv, signature_pub, credential)
    device.fresh_key_package()
    return device


async def create_group(conn: RawConnection, device: Device) -> bytes:
    """``device`` creates its group with its home node (the hub); the group id."""
    info, tree = device.create()
    reply = await conn.request(lambda n: CreateGroup(request=n, group=device.g.group_id, group_info=info, ratchet_tree=tree))
    assert isinstance(reply, GroupCreated) and reply.group == device.g.group_id, reply
    return reply.group


def welcome_bytes(welcome: Welcome | None) -> bytes:
    return b"" if welcome is None else MLSMessage(WireFormat.WELCOME, welcome).to_bytes()


async def submit(
    conn: RawConnection, group: bytes, message: MLSMessage | bytes, *, hub: str, welcome: Welcome | None = None, ref: bytes | None = None
) -> bytes:
    """One GroupSubmit; its ref once the node answered GroupQueued."""
    ref = os.urandom(16) if ref is None else ref
    data = message if isinstance(message, bytes) else message.to_bytes()
    reply = await conn.request(
        lambda n: GroupSubmit(request=n, ref=ref, group=group, hub=hub, message=data, welcome=welcome_bytes(welcome))
    )
    assert isinstance(reply, GroupQueued) and reply.ref == ref, reply
    return ref


def group_items(items: list[MailboxItem]) -> list[GroupItem]:
    """The group items among mailbox envelopes, in delivery order (each named by its ref)."""
    found = []
    for item in items:
        if item.kind == Kind.GROUP:
            decoded = decode_struct(GroupItem, item.body)
            assert decoded.ref == item.id
            found.append(decoded)
    return found
