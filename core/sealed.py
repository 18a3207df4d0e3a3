"""Interim end-to-end sealing: one HPKE box per recipient device (foundation issue).

The sender signs ``inner = CBOR{v, msg_id, from, to, to_fp, sent_at, type, text}`` (``to_fp``
is the recipient device's fingerprint) with its device identity key and HPKE-seals ``CBOR{inner, identity, sig}`` to the
recipient device's HPKE key with ``info = label || recipient fingerprint``. The node sees only
the box; the recipient learns and verifies the sender. ``msg_id`` equals the envelope id, so a
node cannot replay a box under a fresh id without the device noticing.

Not yet provided (the PQXDH/Double Ratchet issue replaces this): forward secrecy and
post-compromise security, and sender certificates issued by the home node.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import canonical, limits
from .address import parse_address
from .crypto import CryptoPolicy, HpkePrivateKey, HpkePublicKey, SigningKey, VerifyKey
from .errors import RemoteProtocolError

__all__ = ["Plain", "Opened", "seal_message", "open_message", "MESSAGE_TYPES"]

_SIG_LABEL = b"sonet-sealed-v1"
_INFO = b"sonet-sealed-v1 to "
MESSAGE_TYPES = ("text",)


@dataclass(frozen=True, kw_only=True, slots=True)
class Plain:
    msg_id: bytes
    sender: str
    recipient: str
    recipient_fp: str
    sent_at: int
    type: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Opened:
    """A message whose signature and addressing verified; the sender key still has to be
    matched against the sender's published devices by the caller."""

    plain: Plain
    sender_identity: VerifyKey


def seal_message(plain: Plain, *, sender_identity: SigningKey, to_key: HpkePublicKey) -> bytes:
    inner = canonical.dumps(
        {
            "v": 1,
            "msg_id": plain.msg_id,
            "from": plain.sender,
            "to": plain.recipient,
            "to_fp": plain.recipient_fp,
            "sent_at": plain.sent_at,
            "type": plain.type,
            "text": plain.text,
        }
    )
    signed = canonical.dumps(
        {"inner": inner, "identity": sender_identity.public.to_bytes(), "sig": sender_identity.sign(_SIG_LABEL, inner)}
    )
    return to_key.seal(signed, _INFO + plain.recipient_fp.encode())


def open_message(
    body: bytes, *, envelope_id: bytes, me: str, my_fp: str, my_key: HpkePrivateKey, policy: CryptoPolicy
) -> Opened:
    """Decrypt and verify. Raises DecryptError / VerifyError / RemoteProtocolError."""
    signed = canonical.loads_map(my_key.open(body, _INFO + my_fp.encode()), {"inner": bytes, "identity": bytes, "sig": bytes})
    identity = VerifyKey.from_bytes(signed["identity"])
    policy.require(identity.mode, "sender identity key")
    identity.verify(_SIG_LABEL, signed["inner"], signed["sig"])
    inner = canonical.loads_map(
        signed["inner"],
        {"v": int, "msg_id": bytes, "from": str, "to": str, "to_fp": str, "sent_at": int, "type": str, "text": str},
    )
    if inner["v"] != 1 or inner["type"] not in MESSAGE_TYPES or len(inner["text"]) > limits.MAX_TEXT_LEN:
        raise RemoteProtocolError("unsupported sealed message")
    if inner["to"] != me or inner["to_fp"] != my_fp:
        raise RemoteProtocolError("sealed message was addressed to someone else")
    if inner["msg_id"] != envelope_id:
        raise RemoteProtocolError("sealed message id does not match its envelope (replayed?)")
    plain = Plain(
        msg_id=inner["msg_id"],
        sender=str(parse_address(inner["from"], remote=True)),
        recipient=inner["to"],
        recipient_fp=inner["to_fp"],
        sent_at=inner["sent_at"],
        type=inner["type"],
        text=inner["text"],
    )
    return Opened(plain=plain, sender_identity=identity)
