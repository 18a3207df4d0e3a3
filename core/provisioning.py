"""Device linking: an existing device hands the account to a new one through the home node.

1. The NEW device makes an ephemeral HPKE key (hybrid by default) and opens a slot on the node
   (``LinkBegin``); the node answers with 16 random slot bytes. The device shows the link code
   ``base32(slot) "." base32(SHA-256("sonet-link-commitment-v1" || ephemeral public)[:16])``
   (lower case, no padding; :func:`make_link_code`), where "ephemeral public" is the
   ``HpkePublicKey.to_bytes()`` encoding (so the mode is committed to as well).
2. The user types the code on an OLD device, which fetches the ephemeral key waiting in the slot
   (``LinkFetch``), checks it against the code's commitment (:func:`check_commitment`, or pass
   ``commitment=`` to :func:`seal_provisioning`) — so a node that swaps in its own key learns
   nothing — and seals the :class:`Provisioning` payload to it. HPKE ``info`` is
   ``"sonet-provisioning-v1" || slot``.
3. The new device opens it (:func:`open_provisioning`): ``CBOR{v, account, account_key (the
   account identity PRIVATE key, ``SigningKey.private_bytes()``), node_url, node_fingerprint,
   device_list_version}``.

Failures: a malformed code is a LocalProtocolError (the user typed it); a key that does not
match the code is ``VerifyError`` ``link_code_mismatch``; a malformed payload is
``RemoteProtocolError`` ``provisioning_malformed``; a wrong key, slot or altered box DecryptError.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field

from . import canonical, limits
from .address import parse_address
from .crypto import CryptoPolicy, HpkePrivateKey, HpkePublicKey, SigningKey, ct_equal, normalize_fingerprint, sha256
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError

__all__ = [
    "Provisioning",
    "make_link_code",
    "parse_link_code",
    "link_commitment",
    "check_commitment",
    "seal_provisioning",
    "open_provisioning",
    "COMMITMENT_LABEL",
    "INFO_PREFIX",
]

COMMITMENT_LABEL = b"sonet-link-commitment-v1"
INFO_PREFIX = b"sonet-provisioning-v1"
_VERSION = 1
_FIELDS = {
    "v": int,
    "account": str,
    "account_key": bytes,
    "node_url": str,
    "node_fingerprint": str,
    "device_list_version": int,
}
_B32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")


@dataclass(frozen=True, kw_only=True, slots=True)
class Provisioning:
    """What the old device hands the new one. ``account_key`` is the account identity private
    key as ``SigningKey.private_bytes()``; :meth:`signing_key` parses it."""

    account: str
    account_key: bytes = field(repr=False)
    node_url: str
    node_fingerprint: str
    device_list_version: int

    def signing_key(self) -> SigningKey:
        return SigningKey.from_private_bytes(self.account_key)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _public_bytes(ephemeral_public: HpkePublicKey | bytes) -> bytes:
    if isinstance(ephemeral_public, HpkePublicKey):
        return ephemeral_public.to_bytes()
    if type(ephemeral_public) is not bytes:
        raise LocalProtocolError("ephemeral key must be an HpkePublicKey or its encoding")
    return ephemeral_public


def link_commitment(ephemeral_public: HpkePublicKey | bytes) -> bytes:
    """16-byte commitment to the new device's ephemeral key: an ``HpkePublicKey`` or its
    ``to_bytes()`` encoding (as carried in ``LinkBegin``/``LinkPending``)."""
    return sha256(COMMITMENT_LABEL, _public_bytes(ephemeral_public))[: limits.LINK_COMMITMENT_LEN]


def make_link_code(slot: bytes, ephemeral_public: HpkePublicKey | bytes) -> str:
    """The code the new device shows (``sonet link begin``, line 1)."""
    return f"{_b32(_check_slot(slot))}.{_b32(link_commitment(ephemeral_public))}"


def _parse_part(text: str, length: int, what: str) -> bytes:
    if not text or any(ch not in _B32_CHARS for ch in text):
        raise LocalProtocolError(f"link code: the {what} has characters other than a-z and 2-7", code="link_unknown")
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length or _b32(raw) != text:
        raise LocalProtocolError(f"link code: the {what} is not valid (was the code copied completely?)", code="link_unknown")
    return raw


def parse_link_code(code: str) -> tuple[bytes, bytes]:
    """(slot, commitment) from a code as printed by ``sonet link begin``."""
    if type(code) is not str:
        raise LocalProtocolError("link code must be text")
    parts = code.strip().lower().split(".")
    if len(parts) != 2:
        raise LocalProtocolError("malformed link code (expected SLOT.CHECK as printed by `sonet link begin`)", code="link_unknown")
    return (
        _parse_part(parts[0], limits.LINK_SLOT_LEN, "slot"),
        _parse_part(parts[1], limits.LINK_COMMITMENT_LEN, "check part"),
    )


def check_commitment(commitment: bytes, ephemeral_public: HpkePublicKey | bytes) -> bool:
    """Does ``ephemeral_public`` match the commitment from a link code? (constant time)"""
    if type(commitment) is not bytes or len(commitment) != limits.LINK_COMMITMENT_LEN:
        return False
    if not isinstance(ephemeral_public, HpkePublicKey) and type(ephemeral_public) is not bytes:
        return False
    return ct_equal(commitment, link_commitment(ephemeral_public))


def _info(slot: bytes) -> bytes:
    return INFO_PREFIX + slot


def _check_url(url: object, err: Callable[[str], ProtocolError]) -> str:
    if (
        type(url) is not str
        or len(url) > limits.MAX_URL_LEN
        or not url.startswith(("ws://", "wss://"))
        or url.split("://", 1)[1] == ""
        or any(ch.isspace() or not ch.isprintable() for ch in url)
    ):
        raise err("node URL must be ws://HOST:PORT or wss://...")
    return url


def _check_slot(slot: object) -> bytes:
    if type(slot) is not bytes or len(slot) != limits.LINK_SLOT_LEN:
        raise LocalProtocolError(f"link slot must be {limits.LINK_SLOT_LEN} bytes")
    return slot


def seal_provisioning(
    payload: Provisioning,
    *,
    to: HpkePublicKey,
    slot: bytes,
    commitment: bytes | None = None,
    policy: CryptoPolicy | None = None,
) -> bytes:
    """On the OLD device: seal ``payload`` to the new device's ephemeral key ``to`` for
    ``slot``. The caller must have checked ``to`` against the link code's commitment
    (:func:`check_commitment`); passing ``commitment=`` makes this function check it too.
    ``policy`` (default: hybrid minimum) bounds the ephemeral key's crypto mode, since the
    payload carries the account private key."""
    if not isinstance(payload, Provisioning):
        raise LocalProtocolError("seal_provisioning takes a Provisioning")
    _check_slot(slot)
    if not isinstance(to, HpkePublicKey):
        raise LocalProtocolError("the new device's key must be an HpkePublicKey")
    if commitment is not None and not check_commitment(commitment, to):
        raise VerifyError(
            "the new device's key does not match the link code (typo, or the node swapped it)", code="link_code_mismatch"
        )
    (policy or CryptoPolicy()).require(to.mode, "new device's linking key")
    try:
        SigningKey.from_private_bytes(payload.account_key)
    except (LocalProtocolError, TypeError):
        raise LocalProtocolError("account key is not a Sonet signing key") from None
    version = payload.device_list_version
    if type(version) is not int or not 0 <= version <= limits.MAX_DEVICE_LIST_VERSION:
        raise LocalProtocolError("device list version out of range")
    plaintext = canonical.dumps(
        {
            "v": _VERSION,
            "account": str(parse_address(payload.account)),
            "account_key": payload.account_key,
            "node_url": _check_url(payload.node_url, LocalProtocolError),
            "node_fingerprint": normalize_fingerprint(payload.node_fingerprint),
            "device_list_version": version,
        }
    )
    return to.seal(plaintext, _info(slot))


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"provisioning payload: {message}", code="provisioning_malformed")


def open_provisioning(body: bytes, *, key: HpkePrivateKey, slot: bytes) -> Provisioning:
    """On the NEW device: open the payload sealed to our ephemeral ``key`` for ``slot``."""
    _check_slot(slot)
    if type(body) is not bytes or len(body) > limits.MAX_PROVISIONING_BYTES:
        raise _malformed("too large")
    plain = key.open(body, _info(slot))
    try:
        value = canonical.loads_map(plain, _FIELDS, max_bytes=limits.MAX_PROVISIONING_BYTES)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if value["v"] != _VERSION:
        raise _malformed(f"unsupported version {value['v']}")
    try:
        address = str(parse_address(value["account"], remote=True))
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if address != value["account"]:
        raise _malformed("account is not in normal form")
    try:
        account_key = SigningKey.from_private_bytes(value["account_key"])
    except LocalProtocolError:
        raise _malformed("account key is malformed") from None
    if account_key.private_bytes() != value["account_key"]:
        raise _malformed("account key is not canonically encoded")
    url = _check_url(value["node_url"], _malformed)
    fp = value["node_fingerprint"]
    try:
        if normalize_fingerprint(fp) != fp:
            raise LocalProtocolError("not normalised")
    except LocalProtocolError:
        raise _malformed("node fingerprint is not a normalised fingerprint") from None
    if not 0 <= value["device_list_version"] <= limits.MAX_DEVICE_LIST_VERSION:
        raise _malformed("device list version out of range")
    return Provisioning(
        account=address,
        account_key=value["account_key"],
        node_url=url,
        node_fingerprint=fp,
        device_list_version=value["device_list_version"],
    )
