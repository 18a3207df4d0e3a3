"""Sender certificates by reference: when a sealed box may carry 32 bytes instead of ~5.5 KB.

A hybrid sender certificate (an ML-DSA-65 key and signature) is most of a short message's
envelope. Once the recipient device holds it, a box names it by ``certificate_ref``
(core/certs.py, core/sealed_sender.py). Both halves live in the device state, next to the
sessions, and are written in the same transactions as the session records.

**Sender** (``cert_sent/<address>/<device>``, :class:`SentCertificate`): per peer device, the
session and the certificate it tracks, whether every message of our sending chains since a
chain's first one carried that certificate in full (``clean``), and whether the peer holds it
(``known``). The ratchet says when: a message that starts a new receiving chain proves the
peer decrypted a message of our current sending chain (its turn's X25519 exchange is with that
chain's ratchet key, which only our messages of that chain showed it), and a device commits a
decrypted message only together with the certificate it carried. So once a clean chain is
answered, ``known``; from then on the session's messages go by reference until the certificate
changes (renewed daily) or the session does. Without X25519 (pq mode) a turn may answer our
previous chain, so such sessions keep sending the full certificate.

**Recipient** (``peer_cert/<ref hex>`` and ``peer_cert_refs/<address>/<device>``): the
certificates a device verified and decrypted a message with, at most :data:`KEPT` per peer
device (the newest: a renewal's in-flight messages still resolve). A reference resolves only to
a certificate stored for the device of the session that then has to decrypt the message (the
check compares in constant time), the certificate is verified again at use (validity window,
device list), and the ratchet must decrypt under the session with the identity it names: a
reference can never let one sender pass for another. A reference this device does not hold
(its state was lost or restored from a backup) is a ``certificate_unknown`` error: the message
is dropped, never accepted from an unverified sender, and the sender, which cannot be told who
failed, recovers at its next new session. A damaged sender record counts as absent: the full
certificate goes out, which is always safe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sonet.core.certs import CERT_REF_LEN
from sonet.core.crypto import ct_equal
from sonet.core.ratchet import SessionState

from .state import DeviceState

__all__ = ["SentCertificate", "KEPT", "plan_send", "after_receive", "load_sent", "sent_key", "held_certificate", "is_bound", "hold"]

#: certificates kept per peer device
KEPT = 2
_SID_LEN = 16
_CLEAN, _KNOWN = 1, 2


@dataclass(frozen=True, slots=True)
class SentCertificate:
    session_id: bytes
    ref: bytes
    #: every message sent since the start of one of our sending chains carried it in full
    clean: bool
    #: the peer answered such a chain: it holds the certificate
    known: bool

    def to_bytes(self) -> bytes:
        return self.session_id + self.ref + bytes([_CLEAN * self.clean | _KNOWN * self.known])

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "SentCertificate | None":
        if raw is None or len(raw) != _SID_LEN + CERT_REF_LEN + 1 or raw[-1] > _CLEAN | _KNOWN:
            return None
        flags = raw[-1]
        return cls(raw[:_SID_LEN], raw[_SID_LEN:-1], clean=bool(flags & _CLEAN), known=bool(flags & _KNOWN))


def sent_key(address: str, device: int) -> str:
    return f"cert_sent/{address}/{device}"


def load_sent(state: DeviceState, address: str, device: int) -> SentCertificate | None:
    return SentCertificate.from_bytes(state.get(sent_key(address, device)))


def plan_send(sent: SentCertificate | None, session: SessionState, ref: bytes) -> tuple[bool, SentCertificate]:
    """Before encrypting the next message of ``session``: (whether it may carry ``ref``
    instead of the certificate, the record after it)."""
    if sent is None or not ct_equal(sent.session_id, session.session_id) or not ct_equal(sent.ref, ref):
        return False, SentCertificate(session.session_id, ref, clean=session.send_n == 0, known=False)
    if sent.known and session.mode.uses_classical and not session.needs_prekey_header:
        return True, sent
    if not sent.clean and session.send_n == 0:  # a chain starts with it: every message of the chain has it
        return False, dataclasses.replace(sent, clean=True)
    return False, sent


def after_receive(sent: SentCertificate | None, before: SessionState, after: SessionState) -> SentCertificate | None:
    """The record once ``before`` decrypted a message into ``after``: a new receiving chain
    answers our current sending chain (see the module docstring)."""
    if (
        sent is None
        or sent.known
        or not sent.clean
        or not after.mode.uses_classical
        or not ct_equal(sent.session_id, after.session_id)
        or after.recv_chain == before.recv_chain
    ):
        return sent
    return dataclasses.replace(sent, known=True)


# Recipient ---------------------------------------------------------------------------------


def _refs_key(address: str, device: int) -> str:
    return f"peer_cert_refs/{address}/{device}"


def _refs(state: DeviceState, address: str, device: int) -> list[bytes]:
    raw = state.get(_refs_key(address, device)) or b""
    return [raw[i : i + CERT_REF_LEN] for i in range(0, len(raw) - len(raw) % CERT_REF_LEN, CERT_REF_LEN)]


def held_certificate(state: DeviceState, ref: bytes) -> bytes | None:
    """The certificate this device stored under ``ref``, if any (unverified: verify it again)."""
    if type(ref) is not bytes or len(ref) != CERT_REF_LEN:
        return None
    return state.get(f"peer_cert/{ref.hex()}")


def is_bound(state: DeviceState, address: str, device: int, ref: bytes) -> bool:
    """Whether ``ref`` names a certificate stored for that peer device."""
    found = False
    for held in _refs(state, address, device):
        found |= ct_equal(held, ref)
    return found


def hold(state: DeviceState, address: str, device: int, certificate: bytes, ref: bytes) -> None:
    """Keep ``certificate`` (verified; a message decrypted with it) for that peer device, in
    the caller's transaction; the oldest beyond :data:`KEPT` goes."""
    refs = _refs(state, address, device)
    if refs and ct_equal(refs[0], ref):
        return
    kept = [ref, *(r for r in refs if r != ref)]
    with state.transaction():
        state.put(f"peer_cert/{ref.hex()}", certificate)
        for dropped in kept[KEPT:]:
            state.delete(f"peer_cert/{dropped.hex()}")
        state.put(_refs_key(address, device), b"".join(kept[:KEPT]))
