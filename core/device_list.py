"""The account's signed device list (ARCHITECTURE §3).

An account has one identity key (a ``SigningKey``, hybrid by default) whose public half is the
account identity: encoded as plain ``VerifyKey`` bytes (:func:`encode_account_identity`).
It signs ``list = CBOR{"body": CBOR{v, account, version, devices, issued}, "sig"}`` under the
label ``sonet-device-list-v1``: ``devices`` are the device identity fingerprints, sorted and
unique; ``version`` strictly increases with every change, so a node (or anyone else) cannot
roll a list back to one that still holds a removed device (:func:`check_successor`).

Version 2 of the body adds ``removed``: ``[[fingerprint, at], ...]`` sorted by fingerprint, the
devices removed within ``limits.REMOVED_DEVICE_GRACE_MS`` before ``issued`` (at most
``limits.MAX_REMOVED_DEVICES``, the newest) and when (``at``, the removing device's clock, at
most ``issued``). The account key thereby vouches that a device WAS on the list until ``at``, so
a message its home node accepted before then can still be delivered (:func:`removal_time`,
client/receiving.py); a list without removals is written as version 1, byte for byte as before.
:func:`next_device_list` signs a successor and carries the history over.

Failures: ``VerifyError`` (``device_list_forged``, ``device_list_mismatch``,
``device_list_rollback``, ``sender_removed``); malformed input ``RemoteProtocolError`` (``device_list_malformed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    "next_device_list",
    "removal_time",
    "check_listed_when_accepted",
    "encode_account_identity",
    "decode_account_identity",
    "DEVICE_LIST_LABEL",
]

DEVICE_LIST_LABEL = b"sonet-device-list-v1"
_BODY_V1 = {"v": int, "account": str, "version": int, "devices": list, "issued": int}
_BODY_V2 = {**_BODY_V1, "removed": list}


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceList:
    account: str
    version: int
    #: device identity fingerprints, sorted
    devices: tuple[str, ...]
    issued: int
    #: (fingerprint, removal time) of the devices removed recently, sorted by fingerprint
    removed: tuple[tuple[str, int], ...] = ()
    raw: bytes = field(repr=False)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self.devices

    def same_content(self, other: "DeviceList") -> bool:
        """Equal apart from the signature (ML-DSA signatures are randomised)."""
        return (self.account, self.version, self.devices, self.issued, self.removed) == (
            other.account,
            other.version,
            other.devices,
            other.issued,
            other.removed,
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


def sign_device_list(
    account_key: SigningKey,
    *,
    account: str,
    version: int,
    devices: Iterable[str],
    now: int,
    removed: Mapping[str, int] | None = None,
) -> bytes:
    """Sign version ``version`` of ``account``'s list of device fingerprints, with the recent
    removals ``removed`` (fingerprint -> removal time) if any."""
    address = str(parse_address(account))
    if type(version) is not int or not 0 < version <= limits.MAX_DEVICE_LIST_VERSION:
        raise LocalProtocolError("device list version out of range")
    if type(now) is not int or not 0 <= now < 2**63:
        raise LocalProtocolError("device list time out of range")
    fps = sorted({normalize_fingerprint(fp) for fp in devices})
    if len(fps) > limits.MAX_DEVICES_PER_ACCOUNT:
        raise LocalProtocolError(f"an account has at most {limits.MAX_DEVICES_PER_ACCOUNT} devices")
    gone = sorted((normalize_fingerprint(fp), at) for fp, at in (removed or {}).items())
    if len(gone) > limits.MAX_REMOVED_DEVICES:
        raise LocalProtocolError(f"a device list remembers at most {limits.MAX_REMOVED_DEVICES} removals")
    if any(type(at) is not int or not 0 <= at <= now for _fp, at in gone):
        raise LocalProtocolError("a removal time must lie between 0 and the list's issue time")
    if {fp for fp, _at in gone} & set(fps):
        raise LocalProtocolError("a device cannot be both listed and removed")
    if not gone:
        fields = {"v": 1, "account": address, "version": version, "devices": fps, "issued": now}
    else:
        fields = {"v": 2, "account": address, "version": version, "devices": fps, "issued": now, "removed": [list(r) for r in gone]}
    return sign_body(account_key, DEVICE_LIST_LABEL, fields)


def next_device_list(account_key: SigningKey, current: DeviceList, *, devices: Iterable[str], now: int) -> bytes:
    """Sign the successor of ``current`` holding ``devices``: the devices it drops are recorded
    as removed at ``now``; earlier removals are kept while younger than
    ``limits.REMOVED_DEVICE_GRACE_MS`` (the newest ``limits.MAX_REMOVED_DEVICES`` of them)."""
    fps = {normalize_fingerprint(fp) for fp in devices}
    history = {fp: at for fp, at in current.removed if fp not in fps and now - at < limits.REMOVED_DEVICE_GRACE_MS}
    history.update({fp: now for fp in current.devices if fp not in fps})
    newest = sorted(history.items(), key=lambda item: (item[1], item[0]), reverse=True)[: limits.MAX_REMOVED_DEVICES]
    return sign_device_list(account_key, account=current.account, version=current.version + 1, devices=fps, now=now, removed=dict(newest))


def removal_time(listed: DeviceList, fingerprint: str) -> int | None:
    """When the account removed the device ``fingerprint``, as ``listed`` remembers; None if it
    does not (never a device, or removed too long ago)."""
    for fp, at in listed.removed:
        if fp == fingerprint:
            return at
    return None


def verify_device_list(raw: bytes, *, account_key: VerifyKey, account: str) -> DeviceList:
    """Check structure, the signature by ``account_key`` and that the list is ``account``'s."""
    if type(raw) is not bytes or len(raw) > limits.MAX_DEVICE_LIST_BYTES:
        raise _malformed(f"must be bytes of at most {limits.MAX_DEVICE_LIST_BYTES}")
    try:
        body_raw, sig = split_signed(raw, max_bytes=limits.MAX_DEVICE_LIST_BYTES)
        body = canonical.loads(body_raw, max_bytes=limits.MAX_DEVICE_LIST_BYTES)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if type(body) is not dict:
        raise _malformed("the body is not a map")
    schema = _BODY_V2 if body.get("v") == 2 else _BODY_V1
    if set(body) != set(schema) or any(type(body[key]) is not tp for key, tp in schema.items()):
        raise _malformed("the body does not have the expected fields")
    if body["v"] not in (1, 2):
        raise _malformed(f"unsupported version {body['v']}")
    try:
        account_key.verify(DEVICE_LIST_LABEL, body_raw, sig, remember=True)
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
        _normal_fingerprint(fp)
    if any(a >= b for a, b in zip(devices, devices[1:])):
        raise _malformed("device fingerprints must be sorted and unique")
    if body["v"] == 2 and not body["removed"]:
        raise _malformed("a version 2 list names at least one removed device")  # else it is version 1
    removed = _removed(body.get("removed", []), issued=body["issued"], devices=set(devices))
    return DeviceList(
        account=expected, version=body["version"], devices=tuple(devices), issued=body["issued"], removed=removed, raw=raw
    )


def _removed(entries: list[object], *, issued: int, devices: set[str]) -> tuple[tuple[str, int], ...]:
    """The ``removed`` field of a version 2 body: 1..MAX_REMOVED_DEVICES ``[fingerprint, at]``
    pairs, sorted and unique by fingerprint, none listed, each at most ``issued``."""
    if len(entries) > limits.MAX_REMOVED_DEVICES:
        raise _malformed(f"more than {limits.MAX_REMOVED_DEVICES} removed devices")
    out: list[tuple[str, int]] = []
    for entry in entries:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str or type(entry[1]) is not int:
            raise _malformed("a removed device is a [fingerprint, time] pair")
        fp, at = entry
        _normal_fingerprint(fp)
        if not 0 <= at <= issued:
            raise _malformed("a removal time must lie between 0 and the list's issue time")
        if fp in devices:
            raise _malformed("a device cannot be both listed and removed")
        out.append((fp, at))
    if any(a[0] >= b[0] for a, b in zip(out, out[1:])):
        raise _malformed("removed devices must be sorted and unique")
    return tuple(out)


def _normal_fingerprint(fp: str) -> None:
    try:
        if normalize_fingerprint(fp) != fp:
            raise LocalProtocolError("not normalised")
    except LocalProtocolError:
        raise _malformed("device fingerprint is not in normal form") from None


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


def check_listed_when_accepted(listed: DeviceList, fingerprint: str, *, accepted_at: int, published_at: int, now: int) -> None:
    """Refuse a message of the device ``fingerprint`` unless it was on the account's list when
    the recipient's node accepted the message (``accepted_at``, the recipient's own node's
    time): it is listed now, or ``listed`` remembers its removal and the message was accepted
    before it. The removal time is the one the account key signed, plus the clock skew allowed,
    and never later than ``published_at`` (when the node published the list ``listed``, which
    came at or after the removal); and a removed device counts for no longer than
    ``limits.REMOVED_DEVICE_GRACE_MS`` after it (judged at ``now``, the recipient's clock), the
    longest an envelope accepted before the removal can live. VerifyError ``sender_removed``."""
    if fingerprint in listed:
        return
    removed = removal_time(listed, fingerprint)
    if removed is None:
        raise VerifyError(f"{listed.account} does not list the sender's device", code="sender_removed")
    until = min(removed + limits.MAX_CERT_CLOCK_SKEW_MS, published_at)
    if accepted_at > until:
        raise VerifyError(
            f"the sender's device was removed from {listed.account} before the message reached this device's node",
            code="sender_removed",
        )
    if now >= until + limits.REMOVED_DEVICE_GRACE_MS:
        raise VerifyError(f"the sender's device was removed from {listed.account} too long ago", code="sender_removed")
