"""Signed device records: what a device publishes in its home node's directory.

``record = CBOR{"body": CBOR{v, account, identity, hpke, created}, "sig"}``, signed by the
device identity key itself. (The account identity key that certifies device lists comes with
the E2EE-sessions issue.) Only :func:`verify_device_record` yields a trusted ``DeviceRecord``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import canonical
from .address import parse_address
from .crypto import CryptoPolicy, HpkePublicKey, SigningKey, VerifyKey
from .errors import RemoteProtocolError

__all__ = ["DeviceRecord", "make_device_record", "verify_device_record"]

_LABEL = b"sonet-device-record-v1"


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRecord:
    account: str
    identity: VerifyKey
    hpke: HpkePublicKey
    created: int
    raw: bytes

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


def make_device_record(*, account: str, identity: SigningKey, hpke: HpkePublicKey, created: int) -> bytes:
    body = canonical.dumps(
        {"v": 1, "account": account, "identity": identity.public.to_bytes(), "hpke": hpke.to_bytes(), "created": created}
    )
    return canonical.dumps({"body": body, "sig": identity.sign(_LABEL, body)})


def verify_device_record(raw: bytes, *, policy: CryptoPolicy, account: str | None = None) -> DeviceRecord:
    """Check structure, self-signature and crypto policy; optionally that it names ``account``."""
    outer = canonical.loads_map(raw, {"body": bytes, "sig": bytes})
    body = canonical.loads_map(outer["body"], {"v": int, "account": str, "identity": bytes, "hpke": bytes, "created": int})
    if body["v"] != 1:
        raise RemoteProtocolError("unsupported device record version")
    address = str(parse_address(body["account"], remote=True))
    if account is not None and address != account:
        raise RemoteProtocolError(f"device record names {address}, expected {account}")
    identity = VerifyKey.from_bytes(body["identity"])
    hpke = HpkePublicKey.from_bytes(body["hpke"])
    policy.require(identity.mode, "device identity key")
    policy.require(hpke.mode, "device encryption key")
    identity.verify(_LABEL, outer["body"], outer["sig"])
    return DeviceRecord(account=address, identity=identity, hpke=hpke, created=body["created"], raw=raw)
