"""The group context extension ``sonet_group`` (docs/groups.md): the group's hub and admins.

Canonical CBOR ``{v: 1, hub: node, admins: [accounts, sorted, unique, 1..64]}`` in an extension
of type 0xF5A0. It is in the group context, so the hub (which has no secrets) can enforce the
admin rules and hand-over; every group requires it (RequiredCapabilities), so a device that
does not know it cannot join. Name and topic are not here: they are end-to-end encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import canonical
from ..address import parse_address, validate_node_name
from ..errors import LocalProtocolError, RemoteProtocolError
from ..mls.extensions import Capabilities, Extension, ExtensionType, RequiredCapabilities, find_extension
from ..mls.key_package import CredentialType
from ..mls.key_schedule import GroupContext
from .credential import SUITE_ID

__all__ = [
    "EXTENSION_TYPE",
    "MAX_ADMINS",
    "GroupExtension",
    "group_extension",
    "extension_in",
    "group_context_extensions",
    "leaf_capabilities",
]

#: the sonet_group extension's type (private use range of RFC 9420 §17.3)
EXTENSION_TYPE = 0xF5A0
#: admins named in one group
MAX_ADMINS = 64

_FIELDS = {"v": int, "hub": str, "admins": list}
_MAX_BYTES = 8 * 1024  # 64 admins of the longest addresses fit


@dataclass(frozen=True, slots=True)
class GroupExtension:
    hub: str
    admins: tuple[str, ...]

    def __post_init__(self) -> None:
        problem = _problem(self.hub, self.admins)
        if problem is not None:
            raise LocalProtocolError(f"sonet_group extension: {problem}")

    def to_extension(self) -> Extension:
        data = canonical.dumps({"v": 1, "hub": self.hub, "admins": list(self.admins)})
        return Extension(EXTENSION_TYPE, data)

    @classmethod
    def from_extension(cls, ext: Extension) -> GroupExtension:
        """Strict; anything else is ``group_malformed``."""
        if ext.extension_type != EXTENSION_TYPE:
            raise _malformed(f"extension type {ext.extension_type:#x}")
        try:
            fields = canonical.loads_map(ext.extension_data, _FIELDS, max_bytes=_MAX_BYTES)
        except RemoteProtocolError as exc:
            raise _malformed(str(exc)) from None
        if fields["v"] != 1:
            raise _malformed(f"version {fields['v']}")
        admins = tuple(fields["admins"])
        problem = _problem(fields["hub"], admins)
        if problem is not None:
            raise _malformed(problem)
        return cls(fields["hub"], admins)

    def is_admin(self, account: str) -> bool:
        return account in self.admins


def _malformed(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"sonet_group extension is malformed: {reason}", code="group_malformed")


def _problem(hub: object, admins: tuple[object, ...]) -> str | None:
    """What breaks the extension's rules, or None: a normal node name, 1..64 normal account
    addresses, sorted and unique."""
    try:
        if type(hub) is not str or validate_node_name(hub, remote=True) != hub:
            return "hub is not a node name in normal form"
        if not 1 <= len(admins) <= MAX_ADMINS:
            return f"1 to {MAX_ADMINS} admins"
        names: list[str] = []
        for admin in admins:
            if not isinstance(admin, str) or str(parse_address(admin, remote=True)) != admin:
                return "an admin is not an account address in normal form"
            names.append(admin)
    except RemoteProtocolError as exc:
        return str(exc)
    if names != sorted(set(names)):
        return "admins must be sorted and unique"
    return None


def extension_in(extensions: tuple[Extension, ...]) -> GroupExtension:
    """The sonet_group extension of a list of group context extensions; ``group_malformed`` if
    it is missing or malformed."""
    ext = find_extension(extensions, EXTENSION_TYPE)
    if ext is None:
        raise RemoteProtocolError("the group has no sonet_group extension", code="group_malformed")
    return GroupExtension.from_extension(ext)


def group_extension(context: GroupContext) -> GroupExtension:
    """The group's sonet_group extension (see :func:`extension_in`)."""
    return extension_in(context.extensions)


def group_context_extensions(ext: GroupExtension) -> tuple[Extension, ...]:
    """The group context extensions of a new Sonet group (for ``Group.create``): sonet_group and
    the RequiredCapabilities that make every member support it and basic credentials."""
    required = RequiredCapabilities(extension_types=(EXTENSION_TYPE,), credential_types=(int(CredentialType.BASIC),))
    return (ext.to_extension(), Extension(ExtensionType.REQUIRED_CAPABILITIES, required.to_bytes()))


def leaf_capabilities() -> Capabilities:
    """What a Sonet leaf (a KeyPackage's) advertises: MLS 1.0, the one suite, sonet_group and
    basic credentials."""
    return Capabilities(versions=(1,), cipher_suites=(SUITE_ID,), extensions=(EXTENSION_TYPE,), proposals=(), credentials=(int(CredentialType.BASIC),))
