"""Sealed sender: the box one device sends another, naming the sender only inside.

``box = HPKE-Seal(recipient sealed-sender key, info = "sonet-sealed-sender-v2 to " || recipient
fingerprint, pad(CBOR{v, cert, msg, type}))``: the sender's certificate (core/certs.py) and one
opaque ratchet message of ratchet type ``type``, padded (core/padding.py: 160-byte buckets,
Padmé for long ones) so that the box's size does not tell the message's length, nor the length
of the sender's address in the certificate. The envelope around it names only the recipient. As
in Signal's sealed sender, the box itself does not authenticate the sender: the certificate says
which identity key the sender holds, and the ratchet message decrypting under the session with
exactly that identity (checked with ``SenderCertificate.matches``) is what proves it. Binding the
recipient fingerprint into ``info`` means a box re-addressed to another device fails to open.

A box whose ratchet message starts a session (``core.ratchet.is_initial``) also carries the
sender's self-signed device record (``record``, core/device.py): the recipient needs it to
check the session's identity keys, and once the account removed that device its node no longer
serves it (a message accepted before the removal is still delivered: core/device_list.py
``check_listed_when_accepted``). The record proves nothing by itself; the recipient checks that
it is signed by, and names, the identity the certificate names, and that the account's signed
device list lists that identity or remembers its removal.

A box may also carry the sender's account's access token (``access``, core/access.py): a
device shares it in the messages its user writes, so the recipient can write back as a contact
rather than as a message request. Like the rest of the box it is unverified until the sender
is; the recipient's node is what checks it, when the recipient presents it.

Once the recipient holds the sender's certificate (it decrypted a message carrying it in this
session), the box may carry ``ref`` (``certificate_ref``, 32 bytes, core/certs.py) instead of
``cert``: 32 bytes instead of ~5.5 KB in hybrid mode. Like ``cert`` it is inside the HPKE
encryption, so nodes see no more than before. A box that starts a session always carries the
full certificate. The reference proves nothing either: the recipient resolves it only to a
certificate it verified before, for the device whose session it arrived in
(client/cert_refs.py), verifies that certificate again at use time, and the ratchet message
must still decrypt under the session with exactly the identity it names.

This supersedes the interim signing-and-sealing of core/sealed.py once the client moves over.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from . import canonical, limits
from .access import ACCESS_TOKEN_LEN
from .certs import CERT_REF_LEN, SenderCertificate, certificate_node, verify_certificate
from .crypto import HpkePrivateKey, HpkePublicKey, VerifyKey, normalize_fingerprint
from .errors import LocalProtocolError, RemoteProtocolError, VerifyError
from .padding import pad, unpad
from .ratchet import is_initial, looks_initial

__all__ = ["Unsealed", "OpenedSealed", "seal", "unseal", "open_sealed", "sealed_info", "unknown_reference", "INFO_PREFIX"]

#: v2: the plaintext is padded (v1 boxes were not, and no longer open)
INFO_PREFIX = b"sonet-sealed-sender-v2 to "
_VERSION = 1
_FIELDS = {"v": int, "cert": bytes, "msg": bytes, "type": int}
_FIELDS_WITH_RECORD = {**_FIELDS, "record": bytes}
#: a box whose sender certificate goes by reference (never one that starts a session)
_FIELDS_BY_REF = {"v": int, "ref": bytes, "msg": bytes, "type": int}
#: optional: the sender's account's access token (core/access.py), so that the recipient can
#: write back at a contact's rate
_ACCESS = "access"


@dataclass(frozen=True, kw_only=True, slots=True)
class Unsealed:
    """The opened box. Nothing in it is verified yet: see :func:`open_sealed`. Exactly one of
    ``certificate_raw`` and ``certificate_ref`` is set."""

    certificate_raw: bytes | None
    message: bytes
    msg_type: int
    #: the sender's signed device record, in a box that starts a session; unverified
    record_raw: bytes | None = None
    #: the sender's account's access token (core/access.py), if it shared it; unverified
    access: bytes | None = None
    #: the reference (core/certs.py certificate_ref) of a certificate the recipient holds
    certificate_ref: bytes | None = None


class OpenedSealed(NamedTuple):
    """The opened box with a verified certificate. The caller must still check
    ``certificate.matches(session peer identity, peer account)`` after the ratchet decrypts."""

    certificate: SenderCertificate
    message: bytes
    msg_type: int


def unknown_reference() -> VerifyError:
    """The error for a box whose certificate reference this device cannot resolve."""
    return VerifyError(
        "the message names its sender's certificate by a reference this device does not hold (lost or restored state)",
        code="certificate_unknown",
    )


@functools.lru_cache(maxsize=256)  # every box computes one; a device writes to few devices
def sealed_info(recipient_fp: str) -> bytes:
    """HPKE ``info`` of a box for the device with fingerprint ``recipient_fp``."""
    return INFO_PREFIX + normalize_fingerprint(recipient_fp).encode()


def seal(
    *,
    certificate: bytes | None = None,
    certificate_ref: bytes | None = None,
    message: bytes,
    msg_type: int,
    to_key: HpkePublicKey,
    recipient_fp: str,
    sender_record: bytes | None = None,
    sender_access: bytes | None = None,
) -> bytes:
    """Box ``message`` (an opaque ratchet message) with our ``certificate`` for one device;
    ``sender_record`` (our signed device record) goes in only if the message starts a session.
    ``certificate_ref`` instead of ``certificate``: only once the recipient holds it."""
    if certificate_ref is not None:
        if certificate is not None:
            raise LocalProtocolError("a sealed box carries a sender certificate or its reference, not both")
        if type(certificate_ref) is not bytes or len(certificate_ref) != CERT_REF_LEN:
            raise LocalProtocolError(f"a certificate reference is {CERT_REF_LEN} bytes")
        if looks_initial(message):
            raise LocalProtocolError("a message that starts a session carries the full sender certificate")
    elif type(certificate) is not bytes or not 0 < len(certificate) <= limits.MAX_SENDER_CERT_BYTES:
        raise LocalProtocolError("sender certificate missing or too large")
    if type(message) is not bytes or len(message) > limits.MAX_SEALED_MESSAGE_BYTES:
        raise LocalProtocolError(f"sealed message must be bytes of at most {limits.MAX_SEALED_MESSAGE_BYTES}")
    if type(msg_type) is not int or not 0 <= msg_type <= limits.MAX_SEALED_MESSAGE_TYPE:
        raise LocalProtocolError(f"message type must be 0..{limits.MAX_SEALED_MESSAGE_TYPE}")
    # keys in canonical order (UTF-8 length, then bytes): encoded with canonical.dumps_ordered
    fields: dict[str, object]
    if certificate_ref is not None:
        fields = {"v": _VERSION, "msg": message, "ref": certificate_ref, "type": msg_type}
    else:
        fields = {"v": _VERSION, "msg": message, "cert": certificate, "type": msg_type}
    if sender_access is not None:
        if type(sender_access) is not bytes or len(sender_access) != ACCESS_TOKEN_LEN:
            raise LocalProtocolError(f"an access token is {ACCESS_TOKEN_LEN} bytes")
        fields[_ACCESS] = sender_access
    if sender_record is not None and looks_initial(message):  # our own message: no need to decode it
        if type(sender_record) is not bytes or not 0 < len(sender_record) <= limits.MAX_SENDER_RECORD_BYTES:
            raise LocalProtocolError(f"sender device record must be bytes of 1..{limits.MAX_SENDER_RECORD_BYTES}")
        fields["record"] = sender_record
    # padded (core/padding.py): the box's size, all that nodes see, must not tell the length
    box = to_key.seal(pad(canonical.dumps_ordered(fields)), sealed_info(recipient_fp))
    if len(box) > limits.MAX_ENVELOPE_BODY:
        raise LocalProtocolError(f"the sealed box does not fit in an envelope body ({limits.MAX_ENVELOPE_BODY} bytes)")
    return box


def unseal(body: bytes, *, my_key: HpkePrivateKey, my_fp: str) -> Unsealed:
    """Open a box addressed to this device. DecryptError if it is not for us or was altered;
    RemoteProtocolError if its contents are malformed."""
    if type(body) is not bytes or len(body) > limits.MAX_ENVELOPE_BODY:
        raise RemoteProtocolError("sealed box is too large")
    opened = unpad(my_key.open(body, sealed_info(my_fp)))
    inner = canonical.loads(opened, max_bytes=limits.MAX_ENVELOPE_BODY)
    if type(inner) is not dict:
        raise RemoteProtocolError("sealed box does not hold a map")
    access = inner.pop(_ACCESS, None)
    if access is not None and (type(access) is not bytes or len(access) != ACCESS_TOKEN_LEN):
        raise RemoteProtocolError("access token in sealed box is malformed")
    schema = _FIELDS_WITH_RECORD if "record" in inner else _FIELDS_BY_REF if "ref" in inner else _FIELDS
    if inner.keys() != schema.keys():
        raise RemoteProtocolError("sealed box does not have the expected fields")
    for key, tp in schema.items():
        if type(inner[key]) is not tp:
            raise RemoteProtocolError("sealed box does not have the expected fields")
    if inner["v"] != _VERSION:
        raise RemoteProtocolError(f"unsupported sealed box version {inner['v']}")
    ref = inner.get("ref")
    if ref is not None:
        if len(ref) != CERT_REF_LEN:
            raise RemoteProtocolError("certificate reference in sealed box is malformed")
    elif not 0 < len(inner["cert"]) <= limits.MAX_SENDER_CERT_BYTES:
        raise RemoteProtocolError("sender certificate in sealed box is empty or too large")
    if len(inner["msg"]) > limits.MAX_SEALED_MESSAGE_BYTES:
        raise RemoteProtocolError("message in sealed box is too large")
    if not 0 <= inner["type"] <= limits.MAX_SEALED_MESSAGE_TYPE:
        raise RemoteProtocolError("unknown message type in sealed box")
    record = inner.get("record")
    if record is not None and (not 0 < len(record) <= limits.MAX_SENDER_RECORD_BYTES or not is_initial(inner["msg"])):
        raise RemoteProtocolError("sender device record in sealed box is empty, too large, or in a box that starts no session")
    if ref is not None and looks_initial(inner["msg"]):  # the ratchet decodes it strictly
        raise RemoteProtocolError("a box that starts a session must carry the full sender certificate")
    return Unsealed(
        certificate_raw=inner.get("cert"), certificate_ref=ref, message=inner["msg"], msg_type=inner["type"],
        record_raw=record, access=access,
    )  # fmt: skip


def open_sealed(
    body: bytes,
    *,
    my_key: HpkePrivateKey,
    my_fp: str,
    node_keys: Callable[[str], VerifyKey | None],
    now: int,
    held_certificate: Callable[[bytes], bytes | None] = lambda _ref: None,
) -> OpenedSealed:
    """:func:`unseal`, then verify the certificate against the key of the node it names
    (``node_keys(name)``; None -> VerifyError ``unknown_node_key``) at time ``now``. A box
    with a reference takes the certificate from ``held_certificate(ref)`` (None -> VerifyError
    ``certificate_unknown``), and it is verified just the same."""
    opened = unseal(body, my_key=my_key, my_fp=my_fp)
    raw = opened.certificate_raw
    if raw is None:
        raw = held_certificate(opened.certificate_ref or b"")
        if raw is None:
            raise unknown_reference()
    node = certificate_node(raw)
    node_key = node_keys(node)
    if node_key is None:
        raise VerifyError(f"no known identity key for node {node}", code="unknown_node_key")
    cert = verify_certificate(raw, node_key=node_key, node=node, now=now)
    return OpenedSealed(cert, opened.message, opened.msg_type)
