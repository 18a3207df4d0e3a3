"""The checks the node makes on what a device submits about its account (no I/O).

A node never signs device lists or prekeys: it stores what the account or device key signed,
after checking that the signature holds and that the list describes exactly the change being
made (register: version 1 with just this device; link: the stored list's successor plus the new
device; remove: the successor without the removed one). Every refusal is a ``RequestError``
whose code the device sees in the ErrorFrame; codes of the core checks pass through unchanged
(``device_list_forged``, ``verify_failed``, ``crypto_mode_refused``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sonet.core import limits
from sonet.core.address import Address, parse_address
from sonet.core.client_api import DeviceKeys, PublishPrekeys
from sonet.core.crypto import CryptoPolicy, VerifyKey
from sonet.core.device import DeviceRecord, verify_device_record
from sonet.core.device_list import DeviceList, decode_account_identity, verify_device_list
from sonet.core.errors import ProtocolError, Refusal, RemoteProtocolError
from sonet.core.ratchet.prekeys import MLKEM768, X25519, verify_prekey

from .store import AccountRow, DeviceKeySet

__all__ = [
    "RequestError",
    "refused",
    "parse_or_refuse",
    "check_new_account",
    "check_linked_record",
    "check_next_list",
    "check_prekeys",
    "check_device_keys",
    "check_first_prekey_counts",
]


class RequestError(Refusal):
    """A request the node refuses (a registered code, core/errors.py); the connection stays open."""


@contextmanager
def refused() -> Iterator[None]:
    """Turn a ProtocolError from a core check into a RequestError with the same code."""
    try:
        yield
    except ProtocolError as exc:
        raise RequestError(exc.code, str(exc)) from None


def parse_or_refuse(text: str) -> Address:
    try:
        return parse_address(text, remote=True)
    except RemoteProtocolError as exc:
        raise RequestError("bad_address", str(exc)) from None


def _same_device(record: DeviceRecord, peer: VerifyKey) -> None:
    if record.identity != peer:
        raise RequestError("wrong_identity", "the device record is not for the key this device authenticated with")


def check_new_account(
    *, account: str, record: bytes, account_identity: bytes, device_list: bytes, peer: VerifyKey, policy: CryptoPolicy
) -> tuple[DeviceRecord, VerifyKey]:
    """Register: the record is this device's, for ``account``; the account key meets the
    policy and signed version 1 of a list holding exactly this device."""
    with refused():
        verified = verify_device_record(record, policy=policy, account=account)
    _same_device(verified, peer)
    with refused():
        account_key = decode_account_identity(account_identity, policy=policy)
        listed = verify_device_list(device_list, account_key=account_key, account=account)
    if listed.version != 1 or listed.devices != (verified.fingerprint,):
        raise RequestError("bad_device_list", "a new account's device list is version 1 and holds exactly this device")
    return verified, account_key


def check_linked_record(record: bytes, *, account: str, peer: VerifyKey, policy: CryptoPolicy) -> DeviceRecord:
    """LinkComplete: the record is this device's and names the account that approved the link."""
    with refused():
        verified = verify_device_record(record, policy=policy)
    if verified.account != account:
        raise RequestError("wrong_account", f"the device record names {verified.account}, but {account} approved the link")
    _same_device(verified, peer)
    return verified


def check_next_list(row: AccountRow, raw: bytes, expected: set[str]) -> DeviceList:
    """``raw`` must be the account key's signature on the stored list's successor (version + 1)
    holding exactly the fingerprints ``expected``."""
    with refused():
        account_key = decode_account_identity(row.account_identity)
        new = verify_device_list(raw, account_key=account_key, account=row.account)
    if new.version != row.device_list_version + 1:
        raise RequestError(
            "stale_device_list", f"the new device list must be version {row.device_list_version + 1}, not {new.version}"
        )
    if set(new.devices) != expected:
        raise RequestError("bad_device_list", "the new device list does not hold exactly the account's devices after this change")
    return new


#: PublishPrekeys field -> (kind, last_resort) each prekey in it must have
_SLOTS = {
    "signed_prekey": (X25519, False),
    "pq_last_resort": (MLKEM768, True),
    "one_time": (X25519, False),
    "pq_one_time": (MLKEM768, False),
}


def check_prekeys(
    req: PublishPrekeys | DeviceKeys, identity: VerifyKey
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """Verify every prekey of ``req`` against the device ``identity`` and its slot; return the
    one-time keys as (key id, blob) for the store. A device publishes only the kinds its crypto
    mode uses (X25519 for classical and hybrid, ML-KEM for hybrid and pq): a bundle never offers
    a part its device could not have made. CPU-bound: callers run it off the event loop."""
    mode = identity.mode

    def check(raw: bytes, slot: str) -> int:
        kind, last_resort = _SLOTS[slot]
        if not (mode.uses_classical if kind == X25519 else mode.uses_pq):
            raise RequestError("wrong_prekey_kind", f"a {mode.value}-mode device publishes no {kind} prekeys ({slot})")
        with refused():
            prekey = verify_prekey(raw, identity)
        if prekey.kind != kind or prekey.last_resort != last_resort:
            wanted = f"{'a last-resort' if last_resort else 'a non-last-resort'} {kind} prekey"
            raise RequestError("wrong_prekey_kind", f"{slot} must be {wanted}")
        return prekey.key_id

    signed_id = None if req.signed_prekey is None else check(req.signed_prekey, "signed_prekey")
    if req.pq_last_resort is not None:
        check(req.pq_last_resort, "pq_last_resort")
    one_time = [(check(raw, "one_time"), raw) for raw in req.one_time]
    pq_one_time = [(check(raw, "pq_one_time"), raw) for raw in req.pq_one_time]
    if signed_id is not None and any(key_id == signed_id for key_id, _ in one_time):
        # X25519 ids are one space: a bundle whose one-time key has the signed prekey's id does
        # not verify on the sender (core/ratchet/prekeys.py verify_bundle).
        raise RequestError("bad_prekey_id", "a one-time prekey has the signed prekey's id")
    return one_time, pq_one_time


def check_first_prekey_counts(keys: DeviceKeys) -> None:
    """Register / LinkComplete: no more one-time prekeys than a new device needs to start
    (cheap: before any signature is checked)."""
    cap = limits.MAX_FIRST_ONE_TIME_PREKEYS
    if len(keys.one_time) > cap or len(keys.pq_one_time) > cap:
        raise RequestError(
            "too_many_prekeys",
            f"a new device brings at most {cap} one-time prekeys of each kind (it publishes more once registered)",
        )


def check_device_keys(keys: DeviceKeys, identity: VerifyKey) -> DeviceKeySet:
    """Register / LinkComplete: the new device's first prekeys, checked as ``check_prekeys``
    does, and complete: the signed prekey and the last-resort key its mode uses are there, so
    that anyone can start a session with the device from the moment it exists. CPU-bound."""
    mode = identity.mode
    if mode.uses_classical and keys.signed_prekey is None:
        raise RequestError("prekeys_missing", f"a new {mode.value}-mode device brings its signed X25519 prekey")
    if mode.uses_pq and keys.pq_last_resort is None:
        raise RequestError("prekeys_missing", f"a new {mode.value}-mode device brings its ML-KEM last-resort prekey")
    one_time, pq_one_time = check_prekeys(keys, identity)
    return DeviceKeySet(
        signed_prekey=keys.signed_prekey, pq_last_resort=keys.pq_last_resort, one_time=one_time, pq_one_time=pq_one_time
    )
