"""What binds a reinitialised or branched group to the group it comes from (RFC 9420 §8.4,
§11.2, §11.3): the resumption PSK of usage reinit or branch its first commit injects, and the
checks a member makes on the Welcome into it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError
from ..codec import DecodeError
from ..crypto import cipher_suite
from ..key_package import LeafNode, ValidationError
from ..key_schedule import MLS10
from ..messages import ReInit
from ..psk import PreSharedKeyID, PSKType, ResumptionPSKUsage
from .proposals import PSKLookup

if TYPE_CHECKING:
    from ..crypto import CipherSuite
    from ..key_schedule import GroupContext

__all__ = ["check_branch_members", "check_reinit_group", "reinit_suite", "resumption_lookup"]


def reinit_suite(reinit: ReInit) -> CipherSuite:
    """The cipher suite of the group ``reinit`` names; one we cannot run is our LocalProtocolError."""
    if reinit.version != MLS10:
        raise LocalProtocolError(f"MLS: a ReInit to protocol version {reinit.version}, which this implementation does not speak")
    try:
        return cipher_suite(reinit.cipher_suite)
    except DecodeError:
        raise LocalProtocolError(f"MLS: a ReInit to cipher suite {reinit.cipher_suite}, which this implementation does not have") from None


def resumption_lookup(
    usage: ResumptionPSKUsage,
    group_id: bytes,
    epoch: int,
    resumption: Mapping[int, bytes],
    external_psks: Mapping[bytes, bytes],
) -> PSKLookup:
    """The PSKs a Welcome into the group a ReInit (of the old group's last epoch, ``epoch``) or
    a branch (of one of its recent epochs, ``resumption``: epoch -> resumption PSK) leads to may
    name: the old group's resumption PSK of that usage, and our external PSKs."""

    def lookup(psk_id: PreSharedKeyID) -> bytes | None:
        if psk_id.psktype == PSKType.EXTERNAL:
            return external_psks.get(psk_id.psk_id)
        if psk_id.usage != usage or psk_id.psk_group_id != group_id:
            return None
        if usage is ResumptionPSKUsage.REINIT and psk_id.psk_epoch != epoch:
            return None
        return resumption.get(psk_id.psk_epoch)

    return lookup


def check_reinit_group(context: GroupContext, reinit: ReInit) -> None:
    """§11.2: the group the Welcome starts is the one the ReInit named."""
    wanted = (reinit.group_id, reinit.version, reinit.cipher_suite, reinit.extensions)
    if (context.group_id, context.version, context.cipher_suite, context.extensions) != wanted:
        raise ValidationError("the Welcome's group is not the one the ReInit named (group id, version, cipher suite or extensions)")


def check_branch_members(leaves: Iterable[tuple[int, LeafNode]], members: Iterable[LeafNode]) -> None:
    """§11.3: every leaf of a subgroup matches a member of the group it branches from (the same
    credential; which identities match is otherwise the application's call)."""
    credentials = {member.credential for member in members}
    for index, leaf in leaves:
        if leaf.credential not in credentials:
            raise ValidationError(f"leaf {index} of the branched group is not a member of the group it branches from")
