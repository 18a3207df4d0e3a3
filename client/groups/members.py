"""Fetching an account's KeyPackages to add its devices to a group, each checked against the
account's verified device list (docs/groups.md, "Credentials").

The device list comes from ``fetch_account`` (client/directory.py): signed by the account key
the user pinned, proven in the key directory. The KeyPackages answer is proven like a Bundles
answer (client/transparency.py ``check_answer``: its identity key and device list are the proven
entry's), must be the same account key, and each KeyPackage must be of the Sonet suite, signed
by its leaf key, and carry a credential naming that account, a device the list names, that
device's fingerprint and a binding signed by that device's identity key. Any KeyPackage that
fails one of these refuses the whole answer: a node handing out a forged one is at fault.
"""

from __future__ import annotations

from sonet.core.address import Address
from sonet.core.client_api import FetchKeyPackages, KeyPackages
from sonet.core.crypto import CryptoPolicy
from sonet.core.errors import ProtocolError, RemoteProtocolError, VerifyError
from sonet.core.groups.credential import SUITE_ID, leaf_member, verify_binding
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.key_package import KeyPackage

from ..connection import Connection
from ..directory import fetch_account
from ..replies import expect_reply
from ..state import DeviceState
from ..transparency import check_answer
from .keys import SUITE

__all__ = ["fetch_key_packages"]


async def fetch_key_packages(
    conn: Connection, state: DeviceState, address: Address, *, policy: CryptoPolicy, now: int, skip: frozenset[int] | set[int] = frozenset()
) -> list[bytes]:
    """One checked KeyPackage (its MLSMessage) per device of ``address`` that has one, leaving
    out the devices in ``skip``."""
    account = str(address)
    view = await fetch_account(conn, state, address, policy=policy, now=now)
    reply = await conn.request(lambda n: FetchKeyPackages(request=n, account=account))
    reply = expect_reply(reply, KeyPackages)
    entry = (await check_answer(conn, state, reply, account=account, now=now)).proven.entry  # type: ignore[arg-type]
    if entry.identity != view.identity.to_bytes():
        raise VerifyError(f"the KeyPackages of {account} come with another identity key", code="directory_mismatch")
    found: list[bytes] = []
    for item in reply.items:
        record = view.devices.get(item.device)
        if record is None:
            raise VerifyError(f"a KeyPackage of {account} is for device {item.device}, which its device list does not name", code="unlisted_device")
        if item.device in skip:
            continue
        try:
            body = MLSMessage.from_bytes(item.key_package).body
            if not isinstance(body, KeyPackage):
                raise RemoteProtocolError("not a KeyPackage", code="group_malformed")
            _check(body, account, item.device, record.identity.to_bytes(), record.fingerprint)
        except ProtocolError as exc:
            raise VerifyError(f"the KeyPackage of device {item.device} of {account} is refused: {exc}", code="group_credential") from None
        found.append(item.key_package)
    return found


def _check(key_package: KeyPackage, account: str, device: int, identity: bytes, fingerprint: str) -> None:
    if key_package.cipher_suite != SUITE_ID:
        raise RemoteProtocolError(f"cipher suite {key_package.cipher_suite:#06x}, not {SUITE_ID:#06x}", code="group_malformed")
    if not key_package.verify_signature(SUITE) or not key_package.leaf_node.verify_signature(SUITE):
        raise RemoteProtocolError("its signature does not verify", code="group_credential")
    credential = leaf_member(key_package.leaf_node)
    if (credential.account, credential.device) != (account, device):
        raise RemoteProtocolError(f"its credential names device {credential.device} of {credential.account}", code="group_credential")
    if credential.fingerprint != fingerprint:
        raise RemoteProtocolError("its credential names another identity key than the device's record", code="group_credential")
    verify_binding(credential, identity_public=identity, signature_key=key_package.leaf_node.signature_key)
