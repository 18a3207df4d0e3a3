"""A registration or link that this device started and the node may have completed.

Before a new device sends ``Register`` (or ``LinkComplete``) it saves everything the request
and its answer need — its keys, the account key, the first prekeys' secrets, the account, the
node's URL and fingerprint, and the request itself (with the invite or the link slot) — in one
transaction of its state (``state.db``, 0600, sealed by the vault like every other secret;
SQLite with ``synchronous=FULL`` makes the commit durable before anything is sent). Once the
node answered, the profile is saved and this record deleted in one transaction.

So a process that dies in between (SIGKILL, power loss) loses nothing: the next command finds
the record and sends the very same request again with the very same device key, which the node
answers as it answered the first (node/client_registration.py), or runs now if the first never
arrived. A record the node refuses for good (the name taken by another key, the invite used by
another device, a link slot that ended with the process) stays until the user discards it
(``sonet register --discard-pending``); discarding deletes the keys, which were never used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sonet.core import canonical
from sonet.core.client_api import CLIENT_FRAMES, LinkComplete, Register
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.errors import ProtocolError
from sonet.core.wire import decode_frame, encode_frame, packb, unpackb

from .prekeys import FirstPrekeys
from .state import DeviceState, StateError

__all__ = [
    "PendingRegistration", "save_pending_registration", "load_pending_registration", "has_pending_registration",
    "clear_pending_registration", "DISCARD_HINT",
]

_KEY = "pending_registration"
_REQUEST = "pending_registration/request"
_PREKEYS = "pending_registration/prekeys"

#: how the user drops a pending registration or link (the refusals say it)
DISCARD_HINT = "`sonet register --discard-pending` deletes it (its keys were never used) so this home can register or link anew"


@dataclass(frozen=True, kw_only=True)
class PendingRegistration:
    #: "register" or "link"
    kind: str
    #: the account: the one being created, or the one the approving device provisioned
    address: str
    node_url: str
    node_fingerprint: str
    mode: CryptoMode
    minimum: CryptoMode
    identity: SigningKey = field(repr=False)
    identity_dh: bytes | None = field(repr=False)
    hpke: HpkePrivateKey = field(repr=False)
    account_key: SigningKey = field(repr=False)
    #: the request exactly as sent (``request`` number 0; each try numbers it anew)
    request: Register | LinkComplete = field(repr=False)
    prekeys: FirstPrekeys = field(repr=False)

    @property
    def what(self) -> str:
        return "registration" if self.kind == "register" else "link"

    def build(self, number: int) -> Register | LinkComplete:
        return replace(self.request, request=number)


def save_pending_registration(state: DeviceState, pending: PendingRegistration) -> None:
    """Keep ``pending`` durably (one committed transaction) before its request is sent."""
    head = {
        "kind": pending.kind,
        "address": pending.address,
        "node_url": pending.node_url,
        "node_fingerprint": pending.node_fingerprint,
        "mode": pending.mode.value,
        "minimum": pending.minimum.value,
        "identity": pending.identity.private_bytes(),
        "identity_dh": pending.identity_dh or b"",
        "hpke": pending.hpke.private_bytes(),
        "account_key": pending.account_key.private_bytes(),
    }
    secrets = [[kind, key_id, secret, one_time] for kind, key_id, secret, one_time in pending.prekeys.secrets]
    with state.transaction():
        state.put(_KEY, canonical.dumps(head))
        state.put(_REQUEST, encode_frame(pending.request))
        state.put(_PREKEYS, packb(secrets))


def load_pending_registration(state: DeviceState) -> PendingRegistration | None:
    """The pending registration or link of this home, if any."""
    raw = state.get(_KEY)
    if raw is None:
        return None
    try:
        head = canonical.loads_map(raw, _HEAD_FIELDS)
        request = decode_frame(state.get(_REQUEST) or b"", CLIENT_FRAMES)
        if not isinstance(request, (Register, LinkComplete)) or head["kind"] != ("register" if isinstance(request, Register) else "link"):
            raise ValueError("its request does not match it")
        secrets = tuple(
            (str(kind), int(key_id), bytes(secret), bool(one_time)) for kind, key_id, secret, one_time in unpackb(state.get(_PREKEYS) or b"")
        )
        return PendingRegistration(
            kind=head["kind"],
            address=head["address"],
            node_url=head["node_url"],
            node_fingerprint=head["node_fingerprint"],
            mode=CryptoMode(head["mode"]),
            minimum=CryptoMode(head["minimum"]),
            identity=SigningKey.from_private_bytes(head["identity"]),
            identity_dh=head["identity_dh"] or None,
            hpke=HpkePrivateKey.from_private_bytes(head["hpke"]),
            account_key=SigningKey.from_private_bytes(head["account_key"]),
            request=request,
            prekeys=FirstPrekeys(keys=request.keys, secrets=secrets),
        )
    except (ProtocolError, ValueError, TypeError) as exc:
        raise StateError(f"the interrupted registration saved in {state.home} is unreadable ({exc}); {DISCARD_HINT}") from None


def clear_pending_registration(state: DeviceState) -> None:
    """Forget the pending record (in the caller's transaction when there is one)."""
    with state.transaction():
        for key in (_KEY, _REQUEST, _PREKEYS):
            state.delete(key)


_HEAD_FIELDS: dict[str, type] = {
    "kind": str, "address": str, "node_url": str, "node_fingerprint": str, "mode": str, "minimum": str,
    "identity": bytes, "identity_dh": bytes, "hpke": bytes, "account_key": bytes,
}  # fmt: skip


def has_pending_registration(state: DeviceState) -> bool:
    """Whether this home holds a pending record (readable or not)."""
    return state.get(_KEY) is not None
