"""Sender certificates: a home node vouches that a device belongs to one of its accounts.

``certificate = CBOR{"body": CBOR{v, node, account, device, identity, issued, expires}, "sig"}``
signed by the node identity key under the label ``sonet-sender-cert-v1``. The node issues them
only to devices authenticated on its secure channel, for a short time (default a day, never more
than ``limits.MAX_SENDER_CERT_VALIDITY_MS``). A device puts its certificate inside every sealed
box (core/sealed_sender.py), so the recipient learns and can verify the sender while no node on
the way does — Signal's sealed sender, with the node key taking the role of Signal's server
certificate chain (node keys are pinned/learned through the directory instead).

``issued`` is not in Signal's certificate; it lets a recipient refuse certificates that are not
yet valid or that a node issued for too long. Only :func:`verify_certificate` yields a trusted
:class:`SenderCertificate`. Failures are ``VerifyError`` with codes ``certificate_forged``,
``certificate_mismatch``, ``certificate_expired``, ``certificate_not_yet_valid``,
``certificate_too_long``; malformed input is ``RemoteProtocolError`` (``certificate_malformed``).

``now`` for verification is the time at which the certificate must have been valid; like Signal
(which checks against the server's receipt timestamp), a device should pass the time its home
node stored the envelope (``Delivery.stored_at``), so messages that waited in a mailbox while
it was offline still verify.

:class:`CertificateCache` spares a recipient the signature check (an ML-DSA-65 verification in
hybrid mode) for every message: a sender puts the same certificate in each box for a day. It
remembers certificates whose signature verified, by their exact bytes together with the node
name and key they verified under; the validity window is still checked at every use.

:func:`certificate_ref` names a certificate in a sealed box once the recipient holds it
(core/sealed_sender.py): a domain-separated SHA-256 of its exact bytes, so a reference names
one certificate and nothing else (finding a second one with the same reference means breaking
SHA-256's second-preimage resistance).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from . import canonical, limits
from .address import parse_address, validate_node_name
from .crypto import SigningKey, VerifyKey, sha256
from .errors import LocalProtocolError, RemoteProtocolError, VerifyError
from .signed import sign_body, split_signed

__all__ = [
    "SenderCertificate", "CertificateCache", "issue_certificate", "verify_certificate", "certificate_node",
    "certificate_ref", "CERT_LABEL", "CERT_REF_LEN",
]  # fmt: skip

CERT_LABEL = b"sonet-sender-cert-v1"
_REF_LABEL = b"sonet-sender-cert-ref-v1"
#: bytes of a certificate reference (:func:`certificate_ref`)
CERT_REF_LEN = 32
_VERSION = 1
_BODY = {"v": int, "node": str, "account": str, "device": int, "identity": bytes, "issued": int, "expires": int}
_TIME_MAX = 2**63 - 1


@dataclass(frozen=True, kw_only=True, slots=True)
class SenderCertificate:
    """A verified certificate: ``node`` says device ``device`` of ``account`` holds ``identity``."""

    node: str
    account: str
    device: int
    identity: VerifyKey
    issued: int
    expires: int
    raw: bytes = field(repr=False)

    def matches(self, identity: VerifyKey, account: str) -> bool:
        """True iff this certificate names ``identity`` (e.g. the ratchet session's peer
        identity) and ``account``."""
        try:
            address = str(parse_address(account))
        except LocalProtocolError:
            return False
        return self.identity == identity and self.account == address


def certificate_ref(raw: bytes) -> bytes:
    """The reference a sealed box carries instead of certificate ``raw`` (its exact bytes,
    verified or not: the recipient resolves a reference only to a certificate it verified)."""
    return sha256(_REF_LABEL, raw)


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"sender certificate: {message}", code="certificate_malformed")


def issue_certificate(
    node_key: SigningKey,
    *,
    node: str,
    account: str,
    device: int,
    identity: VerifyKey,
    now: int,
    validity_ms: int = limits.DEFAULT_SENDER_CERT_VALIDITY_MS,
) -> bytes:
    """Sign a certificate valid from ``now`` for ``validity_ms`` (the node side)."""
    node = validate_node_name(node)
    address = parse_address(account)
    if address.node != node:
        raise LocalProtocolError(f"node {node} cannot certify {address}: not one of its accounts")
    if type(device) is not int or not 0 < device <= limits.MAX_DEVICE_ID:
        raise LocalProtocolError("device id out of range")
    if type(validity_ms) is not int or not 0 < validity_ms <= limits.MAX_SENDER_CERT_VALIDITY_MS:
        raise LocalProtocolError(f"certificate validity must be 1..{limits.MAX_SENDER_CERT_VALIDITY_MS} ms")
    if type(now) is not int or not 0 <= now <= _TIME_MAX - validity_ms:
        raise LocalProtocolError("certificate issue time out of range")
    return sign_body(
        node_key,
        CERT_LABEL,
        {
            "v": _VERSION,
            "node": node,
            "account": str(address),
            "device": device,
            "identity": identity.to_bytes(),
            "issued": now,
            "expires": now + validity_ms,
        },
    )


def _decode(raw: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """Structure only (nothing verified): (body bytes, signature, body fields)."""
    if type(raw) is not bytes or len(raw) > limits.MAX_SENDER_CERT_BYTES:
        raise _malformed(f"must be bytes of at most {limits.MAX_SENDER_CERT_BYTES}")
    try:
        body_raw, sig = split_signed(raw, max_bytes=limits.MAX_SENDER_CERT_BYTES)
        body = canonical.loads_map(body_raw, _BODY)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if body["v"] != _VERSION:
        raise _malformed(f"unsupported version {body['v']}")
    return body_raw, sig, body


def certificate_node(raw: bytes) -> str:
    """The node an (unverified) certificate claims to come from, to look up its key.
    Nothing about the certificate is trusted until :func:`verify_certificate` passes."""
    claimed = _decode(raw)[2]["node"]
    try:
        return validate_node_name(claimed, remote=True)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None


def verify_certificate(raw: bytes, *, node_key: VerifyKey, node: str, now: int) -> SenderCertificate:
    """Check structure, the signature by ``node_key`` (the key of ``node``), that the account
    belongs to ``node``, and the validity window at ``now`` (expired when ``now >= expires``)."""
    body_raw, sig, body = _decode(raw)
    try:
        node_key.verify(CERT_LABEL, body_raw, sig)
    except VerifyError:
        raise VerifyError("sender certificate signature does not verify", code="certificate_forged") from None
    expected = validate_node_name(node)
    if body["node"] != expected:
        raise VerifyError(f"sender certificate is from {body['node']!r}, expected {expected}", code="certificate_mismatch")
    try:
        address = parse_address(body["account"], remote=True)
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    if str(address) != body["account"]:
        raise _malformed("account is not in normal form")
    if address.node != expected:
        raise VerifyError(f"node {expected} certified {address}, an account of another node", code="certificate_mismatch")
    if not 0 < body["device"] <= limits.MAX_DEVICE_ID:
        raise _malformed("device id out of range")
    try:
        identity = VerifyKey.from_bytes(body["identity"])
    except RemoteProtocolError as exc:
        raise _malformed(str(exc)) from None
    issued, expires = body["issued"], body["expires"]
    if not 0 <= issued < expires <= _TIME_MAX:
        raise _malformed("validity window is empty or out of range")
    if expires - issued > limits.MAX_SENDER_CERT_VALIDITY_MS:
        raise VerifyError("sender certificate is valid for longer than allowed", code="certificate_too_long")
    _check_valid_at(issued, expires, now)
    return SenderCertificate(
        node=expected,
        account=str(address),
        device=body["device"],
        identity=identity,
        issued=issued,
        expires=expires,
        raw=raw,
    )


def _check_valid_at(issued: int, expires: int, now: int) -> None:
    if now < issued - limits.MAX_CERT_CLOCK_SKEW_MS:
        raise VerifyError("sender certificate is not valid yet", code="certificate_not_yet_valid")
    if now >= expires:
        raise VerifyError("sender certificate has expired", code="certificate_expired")


class CertificateCache:
    """:func:`certificate_node` and :func:`verify_certificate` with a bounded LRU of the
    certificates that verified (a certificate is public: no secret is kept)."""

    def __init__(self, size: int = 256) -> None:
        if size < 1:
            raise ValueError("a certificate cache holds at least one certificate")
        self._size = size
        self._verified: OrderedDict[bytes, tuple[VerifyKey, SenderCertificate]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    def node(self, raw: bytes) -> str:
        """:func:`certificate_node`, without decoding a certificate that verified before."""
        entry = self._verified.get(raw) if type(raw) is bytes else None
        return entry[1].node if entry is not None else certificate_node(raw)

    def verify(self, raw: bytes, *, node_key: VerifyKey, node: str, now: int) -> SenderCertificate:
        """:func:`verify_certificate`; the signature is checked once per certificate bytes,
        node name and node key, the validity window at ``now`` every time."""
        entry = self._verified.get(raw) if type(raw) is bytes else None
        if entry is not None and entry[0] == node_key and entry[1].node == node:
            cert = entry[1]
            _check_valid_at(cert.issued, cert.expires, now)
            self._verified.move_to_end(raw)
            return cert
        cert = verify_certificate(raw, node_key=node_key, node=node, now=now)
        self._verified[raw] = (node_key, cert)
        self._verified.move_to_end(raw)
        while len(self._verified) > self._size:
            self._verified.popitem(last=False)
        return cert
