"""Sealed sender: the box one device sends another, naming the sender only inside.

``box = HPKE-Seal(recipient sealed-sender key, info = "sonet-sealed-sender-v1 to " || recipient
fingerprint, CBOR{v, cert, msg, type})``: the sender's certificate (core/certs.py) and one opaque
ratchet message of ratchet type ``type``. The envelope around it names only the recipient. As
in Signal's sealed sender, the box itself does not authenticate the sender: the certificate says
which identity key the sender holds, and the ratchet message decrypting under the session with
exactly that identity (checked with ``SenderCertificate.matches``) is what proves it. Binding the
recipient fingerprint into ``info`` means a box re-addressed to another device fails to open.

This supersedes the interim signing-and-sealing of core/sealed.py once the client moves over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from . import canonical, limits
from .certs import SenderCertificate, certificate_node, verify_certificate
from .crypto import HpkePrivateKey, HpkePublicKey, VerifyKey, normalize_fingerprint
from .errors import LocalProtocolError, RemoteProtocolError, VerifyError

__all__ = ["Unsealed", "OpenedSealed", "seal", "unseal", "open_sealed", "sealed_info", "INFO_PREFIX"]

INFO_PREFIX = b"sonet-sealed-sender-v1 to "
_VERSION = 1
_FIELDS = {"v": int, "cert": bytes, "msg": bytes, "type": int}


@dataclass(frozen=True, kw_only=True, slots=True)
class Unsealed:
    """The opened box. Nothing in it is verified yet: see :func:`open_sealed`."""

    certificate_raw: bytes
    message: bytes
    msg_type: int


class OpenedSealed(NamedTuple):
    """The opened box with a verified certificate. The caller must still check
    ``certificate.matches(session peer identity, peer account)`` after the ratchet decrypts."""

    certificate: SenderCertificate
    message: bytes
    msg_type: int


def sealed_info(recipient_fp: str) -> bytes:
    """HPKE ``info`` of a box for the device with fingerprint ``recipient_fp``."""
    return INFO_PREFIX + normalize_fingerprint(recipient_fp).encode()


def seal(*, certificate: bytes, message: bytes, msg_type: int, to_key: HpkePublicKey, recipient_fp: str) -> bytes:
    """Box ``message`` (an opaque ratchet message) with our ``certificate`` for one device."""
    if type(certificate) is not bytes or not 0 < len(certificate) <= limits.MAX_SENDER_CERT_BYTES:
        raise LocalProtocolError("sender certificate missing or too large")
    if type(message) is not bytes or len(message) > limits.MAX_SEALED_MESSAGE_BYTES:
        raise LocalProtocolError(f"sealed message must be bytes of at most {limits.MAX_SEALED_MESSAGE_BYTES}")
    if type(msg_type) is not int or not 0 <= msg_type <= limits.MAX_SEALED_MESSAGE_TYPE:
        raise LocalProtocolError(f"message type must be 0..{limits.MAX_SEALED_MESSAGE_TYPE}")
    inner = canonical.dumps({"v": _VERSION, "cert": certificate, "msg": message, "type": msg_type})
    return to_key.seal(inner, sealed_info(recipient_fp))


def unseal(body: bytes, *, my_key: HpkePrivateKey, my_fp: str) -> Unsealed:
    """Open a box addressed to this device. DecryptError if it is not for us or was altered;
    RemoteProtocolError if its contents are malformed."""
    if type(body) is not bytes or len(body) > limits.MAX_ENVELOPE_BODY:
        raise RemoteProtocolError("sealed box is too large")
    inner = canonical.loads_map(my_key.open(body, sealed_info(my_fp)), _FIELDS, max_bytes=limits.MAX_ENVELOPE_BODY)
    if inner["v"] != _VERSION:
        raise RemoteProtocolError(f"unsupported sealed box version {inner['v']}")
    if not 0 < len(inner["cert"]) <= limits.MAX_SENDER_CERT_BYTES:
        raise RemoteProtocolError("sender certificate in sealed box is empty or too large")
    if len(inner["msg"]) > limits.MAX_SEALED_MESSAGE_BYTES:
        raise RemoteProtocolError("message in sealed box is too large")
    if not 0 <= inner["type"] <= limits.MAX_SEALED_MESSAGE_TYPE:
        raise RemoteProtocolError("unknown message type in sealed box")
    return Unsealed(certificate_raw=inner["cert"], message=inner["msg"], msg_type=inner["type"])


def open_sealed(
    body: bytes,
    *,
    my_key: HpkePrivateKey,
    my_fp: str,
    node_keys: Callable[[str], VerifyKey | None],
    now: int,
) -> OpenedSealed:
    """:func:`unseal`, then verify the certificate against the key of the node it names
    (``node_keys(name)``; None -> VerifyError ``unknown_node_key``) at time ``now``."""
    opened = unseal(body, my_key=my_key, my_fp=my_fp)
    node = certificate_node(opened.certificate_raw)
    node_key = node_keys(node)
    if node_key is None:
        raise VerifyError(f"no known identity key for node {node}", code="unknown_node_key")
    cert = verify_certificate(opened.certificate_raw, node_key=node_key, node=node, now=now)
    return OpenedSealed(cert, opened.message, opened.msg_type)
