"""Signed device records: what a device publishes in its home node's directory.

``record = CBOR{"body": CBOR{v, account, identity, hpke, created, dh?}, "sig"}``, signed by the
device identity key itself. ``dh`` is the device's X25519 identity public key (32 bytes) for the
session key agreement; it is present only when the identity mode uses classical crypto (and
still optional there, so records made before it existed verify unchanged). The account identity
key certifies which devices belong to the account (core/device_list.py). Only
:func:`verify_device_record` yields a trusted ``DeviceRecord``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import canonical, limits
from .address import parse_address
from .crypto import CryptoPolicy, HpkePublicKey, SigningKey, VerifyKey
from .errors import LocalProtocolError, RemoteProtocolError
from .signed import sign_body, split_signed

__all__ = ["DeviceRecord", "make_device_record", "verify_device_record"]

_LABEL = b"sonet-device-record-v1"
_DH_LEN = 32
_BODY = {"v": int, "account": str, "identity": bytes, "hpke": bytes, "created": int}


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRecord:
    account: str
    identity: VerifyKey
    hpke: HpkePublicKey
    created: int
    raw: bytes
    #: X25519 identity public key, or None (pq mode, or a record without one)
    identity_dh: bytes | None = None

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


def make_device_record(
    *, account: str, identity: SigningKey, hpke: HpkePublicKey, created: int, identity_dh: bytes | None = None
) -> bytes:
    fields = {"v": 1, "account": account, "identity": identity.public.to_bytes(), "hpke": hpke.to_bytes(), "created": created}
    if identity_dh is not None:
        if type(identity_dh) is not bytes or len(identity_dh) != _DH_LEN:
            raise LocalProtocolError("X25519 identity key must be 32 bytes")
        if not identity.mode.uses_classical:
            raise LocalProtocolError(f"no X25519 identity key in {identity.mode.value} mode")
        fields["dh"] = identity_dh
    return sign_body(identity, _LABEL, fields)


def verify_device_record(raw: bytes, *, policy: CryptoPolicy, account: str | None = None) -> DeviceRecord:
    """Check structure, self-signature and crypto policy; optionally that it names ``account``."""
    body_raw, sig = split_signed(raw, max_bytes=limits.MAX_CBOR_BYTES)
    peek = canonical.loads(body_raw)
    has_dh = type(peek) is dict and "dh" in peek
    body = canonical.loads_map(body_raw, {**_BODY, "dh": bytes} if has_dh else _BODY)
    if body["v"] != 1:
        raise RemoteProtocolError("unsupported device record version")
    address = str(parse_address(body["account"], remote=True))
    if account is not None and address != account:
        raise RemoteProtocolError(f"device record names {address}, expected {account}")
    identity = VerifyKey.from_bytes(body["identity"])
    hpke = HpkePublicKey.from_bytes(body["hpke"])
    policy.require(identity.mode, "device identity key")
    policy.require(hpke.mode, "device encryption key")
    dh = body.get("dh")
    if dh is not None and (len(dh) != _DH_LEN or not identity.mode.uses_classical):
        raise RemoteProtocolError("device record has a malformed or unexpected X25519 identity key")
    identity.verify(_LABEL, body_raw, sig, remember=True)
    return DeviceRecord(account=address, identity=identity, hpke=hpke, created=body["created"], raw=raw, identity_dh=dh)
