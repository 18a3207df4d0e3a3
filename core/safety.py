"""Safety numbers: what two people compare to rule out a man in the middle.

Signal's numeric fingerprint (libsignal ``NumericFingerprintGenerator``, 5200 iterations) over
Sonet encodings. Per party, with ``key`` the account identity key's ``VerifyKey`` encoding and
``id`` the normalised address in UTF-8::

    h = version (2 bytes, 0) || key || id
    repeat 5200 times: h = SHA-512(h || key)

The party's 30 digits are the first 30 bytes of ``h`` read as six 5-byte big-endian integers,
each mod 100000 as 5 digits; the safety number is both parties' digits, the smaller string
first, so both sides display the same 60 digits (shown as 12 groups of 5). It is computed from
ACCOUNT identity keys, so adding or removing a device does not change it (device changes are
visible through the key directory instead).

The QR payload is ``"sonet-safety:1:" + base64url(local[:32] || remote[:32])`` (no padding).
Scanning the peer's code succeeds when its local half equals our remote half and vice versa,
as in libsignal's ``ScannableFingerprint.compare``; a scan of our own code does not verify.
"""

from __future__ import annotations

import base64
import binascii

from .address import Address, parse_address
from .crypto import VerifyKey, ct_equal
from .crypto.kdf import sha512
from .errors import LocalProtocolError

__all__ = [
    "safety_number",
    "qr_payload",
    "verify_qr_payload",
    "numeric_fingerprint",
    "party_fingerprint",
    "fingerprint_digits",
    "ITERATIONS",
    "QR_PREFIX",
]

ITERATIONS = 5200
_HASH_VERSION = b"\x00\x00"
QR_PREFIX = "sonet-safety:1:"
_QR_HALF = 32


def numeric_fingerprint(stable_id: bytes, public_key: bytes, *, iterations: int = ITERATIONS) -> bytes:
    """The iterated SHA-512 of one party (64 bytes), over raw bytes."""
    if not 1 < iterations <= 1_000_000:
        raise LocalProtocolError("fingerprint iterations out of range")
    h = _HASH_VERSION + public_key + stable_id
    for _ in range(iterations):
        h = sha512(h, public_key)
    return h


def party_fingerprint(address: str | Address, key: VerifyKey) -> bytes:
    """One party's fingerprint from its address and account identity key."""
    return numeric_fingerprint(str(parse_address(str(address))).encode(), key.to_bytes())


def fingerprint_digits(fingerprint: bytes) -> str:
    """30 decimal digits from the first 30 bytes of a party fingerprint."""
    if len(fingerprint) < 30:
        raise LocalProtocolError("fingerprint too short")
    return "".join(f"{int.from_bytes(fingerprint[i:i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))


def safety_number(my_address: str | Address, my_key: VerifyKey, their_address: str | Address, their_key: VerifyKey) -> str:
    """60 digits as 12 space-separated groups of 5, the same on both sides."""
    mine = fingerprint_digits(party_fingerprint(my_address, my_key))
    theirs = fingerprint_digits(party_fingerprint(their_address, their_key))
    digits = mine + theirs if mine < theirs else theirs + mine
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def qr_payload(my_address: str | Address, my_key: VerifyKey, their_address: str | Address, their_key: VerifyKey) -> str:
    """What this side shows as a QR code for the other side to scan."""
    local = party_fingerprint(my_address, my_key)[:_QR_HALF]
    remote = party_fingerprint(their_address, their_key)[:_QR_HALF]
    return QR_PREFIX + base64.urlsafe_b64encode(local + remote).decode().rstrip("=")


def _decode_qr(payload: str) -> bytes:
    if type(payload) is not str or not payload.startswith(QR_PREFIX):
        raise LocalProtocolError("not a Sonet safety-number code (expected sonet-safety:1:...)", code="safety_code_malformed")
    text = payload[len(QR_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 2 * _QR_HALF or base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
        raise LocalProtocolError("safety-number code is damaged or incomplete", code="safety_code_malformed")
    return raw


def verify_qr_payload(
    payload: str, my_address: str | Address, my_key: VerifyKey, their_address: str | Address, their_key: VerifyKey
) -> bool:
    """True iff ``payload`` is the peer's code (scanned from their screen) for the same two
    identities we hold. A payload that is not a Sonet safety code at all raises
    LocalProtocolError (code ``safety_code_malformed``)."""
    raw = _decode_qr(payload)
    local = party_fingerprint(my_address, my_key)[:_QR_HALF]
    remote = party_fingerprint(their_address, their_key)[:_QR_HALF]
    # Evaluate both comparisons; the peer's "local" half is our "remote" one.
    same_remote = ct_equal(raw[:_QR_HALF], remote)
    same_local = ct_equal(raw[_QR_HALF:], local)
    return same_remote and same_local
