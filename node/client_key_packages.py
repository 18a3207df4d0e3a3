"""PublishKeyPackages: a device hands its node MLS KeyPackages for others to add it to groups
(docs/groups.md). Fetching them (``FetchKeyPackages``) is a key lookup like ``FetchBundles``
and lives with the others in node/client_keys.py.

The node stores a KeyPackage only when it is one this device could use in a Sonet group: an
MLSMessage holding a KeyPackage (at most limits.MAX_KEY_PACKAGE_BYTES) of suite 0x004D that is
valid by RFC 9420 §10.1 (``check_key_package``: init and encryption keys of the suite, the leaf's
and the KeyPackage's signatures, and the capabilities every Sonet group requires, as
core/groups/state.py sets them), not expired, whose leaf credential
(core/groups/credential.py) names this account, this device and this device's identity key,
with a binding that key signed over the leaf's MLS signature key. Anything else is refused
``bad_input`` with one line naming the KeyPackage and the reason, and nothing of the request is
stored. A device holds at most limits.MAX_ONE_TIME_KEY_PACKAGES one-time KeyPackages (more:
``too_many_key_packages``) and one last-resort KeyPackage, replaced by a newer one.

The checks (three signatures and two X-Wing key parses per KeyPackage) run off the event loop
and are paid for up front from the device's cost budget (node/cost_budget.py), like prekeys.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from sonet.core import limits
from sonet.core.client_api import KeyPackagesPublished, PublishKeyPackages
from sonet.core.crypto import VerifyKey
from sonet.core.errors import ProtocolError
from sonet.core.groups.credential import SUITE_ID, leaf_member, verify_binding
from sonet.core.groups.state import EXTENSION_TYPE
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions.required_capabilities import RequiredCapabilities
from sonet.core.mls.framing.enums import WireFormat
from sonet.core.mls.framing.mls_message import MLSMessage
from sonet.core.mls.key_package import CredentialType, KeyPackage, check_key_package

from .client_checks import RequestError
from .client_context import Session, require_registered
from .client_keys import _stored_identity
from .cost_budget import VERIFY_COST, admit
from .store import StoreError

__all__ = ["publish_key_packages", "check_key_packages", "Device"]

_SUITE = cipher_suite(SUITE_ID)
#: what every Sonet group requires of its members (core/groups/state.py group_context_extensions)
_REQUIRED = RequiredCapabilities(extension_types=(EXTENSION_TYPE,), credential_types=(int(CredentialType.BASIC),))
#: signature checks per KeyPackage: the leaf's, the KeyPackage's and the credential binding
_CHECKS_PER_KEY_PACKAGE = 3


@dataclass(frozen=True, slots=True)
class Device:
    """The publishing device, as its KeyPackages' credentials must name it."""

    account: str
    device: int
    identity: VerifyKey


async def publish_key_packages(session: Session, req: PublishKeyPackages) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    cap = limits.MAX_ONE_TIME_KEY_PACKAGES
    if len(req.key_packages) > cap:
        raise RequestError("too_many_key_packages", f"at most {cap} one-time KeyPackages per device")
    count = len(req.key_packages) + (req.last_resort is not None)
    admit(session, upfront=VERIFY_COST * _CHECKS_PER_KEY_PACKAGE * count)
    me = Device(account, device, await _stored_identity(ctx, account, device))
    now_s = ctx.clock_ms() // 1000
    one_time, last_resort = await trio.to_thread.run_sync(check_key_packages, req, me, now_s)
    try:
        left = await ctx.store.publish_key_packages(account, device, one_time=one_time, last_resort=last_resort, max_one_time=cap)
    except StoreError as exc:  # over the cap, or the device was removed meanwhile, or the disk
        message = str(exc) if exc.code == "too_many_key_packages" else "the node could not store the KeyPackages; try again later"
        raise RequestError(exc.code, message) from None
    await session.send(KeyPackagesPublished(request=req.request, left=left))


def check_key_packages(
    req: PublishKeyPackages, me: Device, now_s: int
) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes] | None]:
    """The (KeyPackageRef, blob) of each one-time KeyPackage and of the last-resort one, all
    checked (module docstring); RequestError ``bad_input`` for the first that is not usable."""
    one_time = [(_checked(blob, me, now_s, f"KeyPackage {n}"), blob) for n, blob in enumerate(req.key_packages, 1)]
    last_resort = None
    if req.last_resort is not None:
        ref = _checked(req.last_resort, me, now_s, "the last-resort KeyPackage")
        if any(ref == r for r, _ in one_time):  # it would be handed out again after its one-time use
            raise RequestError("bad_input", "the last-resort KeyPackage is also one of the one-time ones")
        last_resort = (ref, req.last_resort)
    return one_time, last_resort


def _checked(blob: bytes, me: Device, now_s: int, what: str) -> bytes:
    """``blob``'s KeyPackageRef once it passed every check."""
    if len(blob) > limits.MAX_KEY_PACKAGE_BYTES:
        raise RequestError("bad_input", f"{what} is {len(blob)} bytes; at most {limits.MAX_KEY_PACKAGE_BYTES}")
    try:
        message = MLSMessage.from_bytes(blob)
    except ProtocolError as exc:
        raise RequestError("bad_input", f"{what} does not decode: {exc}") from None
    key_package = message.body
    if message.wire_format != WireFormat.KEY_PACKAGE or not isinstance(key_package, KeyPackage):
        raise RequestError("bad_input", f"{what} is an MLS {message.wire_format.name.lower()}, not a KeyPackage")
    if key_package.cipher_suite != SUITE_ID:
        raise RequestError("bad_input", f"{what} is for cipher suite {key_package.cipher_suite:#06x}; Sonet groups use {SUITE_ID:#06x}")
    leaf = key_package.leaf_node
    try:
        check_key_package(_SUITE, key_package, required=_REQUIRED)
        credential = leaf_member(leaf)
    except ProtocolError as exc:
        raise RequestError("bad_input", f"{what} is not valid: {exc}") from None
    if leaf.lifetime is not None and leaf.lifetime.not_after < now_s:
        raise RequestError("bad_input", f"{what} has expired")
    if (credential.account, credential.device) != (me.account, me.device):
        raise RequestError(
            "bad_input", f"{what} names device {credential.device} of {credential.account}, not this device ({me.device} of {me.account})"
        )
    try:
        verify_binding(credential, identity_public=me.identity.to_bytes(), signature_key=leaf.signature_key)
    except ProtocolError as exc:
        raise RequestError("bad_input", f"{what}: {exc}") from None
    return key_package.ref(_SUITE)
