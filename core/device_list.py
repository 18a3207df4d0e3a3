"""The account's signed device list (ARCHITECTURE §3).

An account has one identity key (a ``SigningKey``, hybrid by default) whose public half is the
account identity: encoded as plain ``VerifyKey`` bytes (:func:`encode_account_identity`).
It signs ``list = CBOR{"body": CBOR{v, account, version, devices, issued}, "sig"}`` under the
label ``sonet-device-list-v1``: ``devices`` are the device identity fingerprints, sorted and
unique; ``version`` strictly increases with every change, so a node (or anyone else) cannot
roll a list back to one that still holds a removed device (:func:`check_successor`).

Failures: ``VerifyError`` (``device_list_forged``, ``device_list_mismatch``,
``device_list_rollback``); malformed input ``RemoteProtocolError`` (``device_list_malformed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import canonical, limits
from .address import parse_address
from .crypto import CryptoPolicy, SigningKey, VerifyKey, normalize_fingerprint
from .errors import LocalProtocolError, RemoteProtocolError, VerifyError
from .signed import sign_body, split_signed

__all__ = [
    "DeviceList",
    "sign_device_list",
    "verify_device_list",
    "check_successor",
    "encode_account_identity",
    "decode_account_identity",
    "DEVICE_LIST_LABEL",
]

DEVICE_LIST_LABEL = b"sonet-device-list-v1"
_VERSION = 1
_BODY = {"v": int, "account": str, "version": int, "devices": list, "issued": int}


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceList:
    account: str
    version: int
    #: device identity fingerprints, sorted
    devices: tuple[str, ...]
    issued: int
    raw: bytes = field(repr=False)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self.devices

    def same_content(self, other: "DeviceList") -> bool:
        """Equal apart from the signature (ML-DSA signatures are randomised)."""
        return (self.account, self.version, self.devices, self.issued) == (
            other.account,
            other.version,
            other.devices,
            other.issued,
        )


def encode_account_identity(key: VerifyKey | SigningKey) -> bytes:
    """The public account identity: just the ``VerifyKey`` encoding."""
    return (key.public if isinstance(key, SigningKey) else key).to_bytes()


def decode_account_identity(raw: bytes, *, policy: CryptoPolicy | None = None) -> VerifyKey:
    """Strictly decode an account identity key, optionally enforcing a crypto-mode policy."""
    key = VerifyKey.from_bytes(raw)
    if policy is not None:
        policy.require(key.mode, "account identity key")
    return key


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"device list: {message}", code="device_list_malformed")


def sign_device_list(account_key: SigningKey, *, account: str, version: int, devices: Iterable[str], now: int) -> bytes:
    """Sign version ``version`` of ``account``'s list of device fingerprints."""
    address = str(parse_address(account))
    if type(version) is not int or not 0 < version <= limits.MAX_DEVICE_LIST_VERSION:
        raise LocalProtocolError("device list version out of range")
    if type(now) is not int or not 0 <= now < 2**63:
        raise LocalProtocolError("device list time out of range")
    fps = sorted({normalize_fingerprint(fp) for fp in devices})
    if len(fps) > limits.MAX_DEVICES_PER_ACCOUNT:
        raise LocalProtocolError(f"an account has at most {limits.MAX_DEVICES_PER_ACCOUNT} devices")
    fields = {"v": _VERSION, "account": address, "version": version, "devices": fps, "issued": now}
    return sign_body(account_key, DEVICE_LIST_LABEL, fields)


def verify_device_list(raw: bytes, *, account_key: VerifyKey, account: str) -> DeviceList:
    """Check structure, the signature by ``account_key`` and that the list is ``account``'s."""
    if type(raw) is not bytes or len(raw) > limits.MAX_DEVICE_LIST_BYTES:
        raise _malformed(f"must be bytes of at most {limits.MAX_DEVICE_LIST_BYTES}")
    try:
        body_raw, sig = split_signed(raw, max_bytes=limits.MAX_DEVICE_LIST_BYTES)
        body = canonical.loads_map(body_raw, _BODY)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if body["v"] != _VERSION:
        raise _malformed(f"unsupported version {body['v']}")
    try:
        account_key.verify(DEVICE_LIST_LABEL, body_raw, sig)
    except VerifyError:
        raise VerifyError("device list signature does not verify", code="device_list_forged") from None
    expected = str(parse_address(account))
    if body["account"] != expected:
        raise VerifyError(f"device list is for {body['account']!r}, expected {expected}", code="device_list_mismatch")
    if not 0 < body["version"] <= limits.MAX_DEVICE_LIST_VERSION or not 0 <= body["issued"] < 2**63:
        raise _malformed("version or issue time out of range")
    devices = body["devices"]
    if len(devices) > limits.MAX_DEVICES_PER_ACCOUNT:
        raise _malformed(f"more than {limits.MAX_DEVICES_PER_ACCOUNT} devices")
    for fp in devices:
        if type(fp) is not str:
            raise _malformed("device fingerprints must be strings")
        try:
            if normalize_fingerprint(fp) != fp:
                raise LocalProtocolError("not normalised")
        except LocalProtocolError:
            raise _malformed("device fingerprint is not in normal form") from None
    if any(a >= b for a, b in zip(devices, devices[1:])):
        raise _malformed("device fingerprints must be sorted and unique")
    return DeviceList(account=expected, version=body["version"], devices=tuple(devices), issued=body["issued"], raw=raw)


def check_successor(old: DeviceList, new: DeviceList) -> None:
    """Refuse ``new`` unless it may replace ``old``: same account, and a higher version (or the
    same version with the same content — a re-delivery of the list we already hold)."""
    if new.account != old.account:
        raise VerifyError(f"device list for {new.account} cannot follow one for {old.account}", code="device_list_mismatch")
    if new.version < old.version:
        raise VerifyError(
            f"device list version {new.version} is older than version {old.version} already seen",
            code="device_list_rollback",
        )
    if new.version == old.version and not new.same_content(old):
        raise VerifyError(
            f"two different device lists carry version {new.version} (equivocation)", code="device_list_rollback"
        )
