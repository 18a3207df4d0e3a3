"""Every member device checks the credential of each device that joins a group it is in against
that account's signed device list (docs/groups.md, "Credentials"), as the adding device did
before adding it: so key transparency and safety numbers cover group members too.

Processing an item cannot wait for the network (it happens inside the transaction that is
committed before the item is acknowledged), so the devices to check are noted there, sealed in
the kv (``groups/unverified``), and checked once the batch is done (``check_noted``): the
account's devices as ``fetch_account`` verifies them (client/directory.py), the device's record
must have the credential's fingerprint and its identity key must have signed the binding. A
device that fails is an alert; a check that cannot be made now (a node unreachable) stays noted
for the next receive.
"""

from __future__ import annotations

from collections.abc import Callable

from sonet.core import canonical
from sonet.core.address import parse_address
from sonet.core.crypto import CryptoPolicy
from sonet.core.errors import ProtocolError, VerifyError
from sonet.core.groups.credential import MemberCredential, verify_binding
from sonet.core.groups.items import group_hex

from ..connection import TRANSIENT_LOOKUP_CODES, Connection, NodeError
from ..directory import IdentityChanged, fetch_account
from ..state import ALERT, DeviceState

__all__ = ["note_members", "check_noted", "MAX_NOTED"]

_KEY = "groups/unverified"
#: devices noted for a check at most (a group of that many joiners at once is checked in turns)
MAX_NOTED = 4096


def _noted(state: DeviceState) -> list[list]:
    raw = state.get(_KEY)
    return canonical.loads(raw, max_bytes=64 * 1024 * 1024) if raw is not None else []


def note_members(state: DeviceState, group: bytes, members: list[tuple[MemberCredential, bytes]]) -> None:
    """Note ``members`` (credential, leaf signature key) of ``group`` to check (in the caller's
    transaction)."""
    if not members:
        return
    noted = _noted(state)
    for credential, signature_key in members:
        entry = [group, credential.to_identity(), signature_key]
        if entry not in noted and len(noted) < MAX_NOTED:
            noted.append(entry)
    state.put(_KEY, canonical.dumps(noted))


async def check_noted(
    conn: Connection, state: DeviceState, *, policy: CryptoPolicy, now: int, group_name: Callable[[bytes], str]
) -> list[str]:
    """Check the noted devices; one line for each that failed or could not be checked now."""
    lines: list[str] = []
    left: list[list] = []
    for entry in _noted(state):
        group, identity, signature_key = entry
        credential = MemberCredential.from_identity(identity)
        where = f"group {group_name(group) or group_hex(group)}"
        who = f"device {credential.device} of {credential.account}"
        try:
            view = await fetch_account(conn, state, parse_address(credential.account), policy=policy, now=now)
            record = view.devices.get(credential.device)
            if record is None or record.fingerprint != credential.fingerprint:
                raise VerifyError(f"{credential.account} does not list it with that key", code="group_credential")
            verify_binding(credential, identity_public=record.identity.to_bytes(), signature_key=signature_key)
        except IdentityChanged as exc:
            left.append(entry)
            lines.append(f"{who} in {where} is not checked yet: {exc}")
        except (NodeError, ProtocolError) as exc:
            if exc.code in TRANSIENT_LOOKUP_CODES:
                left.append(entry)
                lines.append(f"{who} in {where} is not checked yet: {exc}")
            else:
                text = f"{who} in {where} is not one its account lists: {exc}"
                state.add_alert(ALERT, text, now)
                lines.append(text)
    if left:
        state.put(_KEY, canonical.dumps(left))
    else:
        state.delete(_KEY)
    return lines
