"""Session setup: PQXDH (Signal, revision 3) in the three crypto modes.

classical / hybrid, as in PQXDH §3.3 with X25519, SHA-256 and ML-KEM-768::

    DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)  [DH4 = DH(EK_A, OPK_B)]
    [SS = ML-KEM-768 encapsulation to PQPK_B]                                    (hybrid only)
    SK = HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] [|| SS],
                     info = "Sonet_PQXDH_" || mode || "_X25519_SHA-256_ML-KEM-768", 32)

``IK`` here is each device's X25519 *identity DH key* (listed in its signed device record):
Sonet identity keys are signing keys (Ed25519 / ML-DSA-65), not XEdDSA keys, so they cannot
take part in DH. Classical mode is X3DH with the same KDF. The mode is part of ``info``, so a
prekey message relabelled to another mode derives another key and fails to decrypt (and
:func:`respond` refuses a mode other than the one its caller expects before any of that).

pq mode has no DH at all, hence no implicit authentication of the initiator: ``SK`` comes from
``0xFF^32 || SS`` alone (SS: encapsulation to the responder's signed ML-KEM prekey, which
authenticates the responder), and the initiator **signs** the prekey header with its identity
key (label ``sonet-pqxdh-init-v1``) over the canonical CBOR of the header fields, the AD and the
hash of the responder's ML-KEM prekey. This is a deviation from PQXDH, which has no pq-only
mode. The price is deniability: a pq-mode session start is signed proof that the initiator
contacted the responder. classical and hybrid modes carry no signature, keeping PQXDH's
deniability (and, like PQXDH, rely on X25519 for mutual authentication).

``AD = CBOR[initiator identity, initiator identity DH or null, responder identity, responder
identity DH or null]`` (identity keys in their core/crypto/sign.py encoding); it is bound into
every ratchet message (core/ratchet/session.py).

The initiator keeps attaching its :class:`PrekeyHeader` to every message until it hears from
the responder. Replays: like PQXDH, a replayed prekey message that used only last-resort keys
recreates the same session on the responder; its first turn then uses fresh keys. One-time
prekeys are deleted by the caller once its store has committed the new session (:func:`respond`
and :func:`open_initial` only say which ones were used; they never delete anything).
Ephemeral secrets are dropped as soon as SK is derived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import canonical, limits
from ..crypto import CryptoMode, Rng, SigningKey, VerifyKey, X25519KeyPair, hkdf, mlkem_encapsulate, sha256
from ..errors import LocalProtocolError, RemoteProtocolError
from . import session
from ._codec import NONE, decode_map, need_len, need_range
from .prekeys import MLKEM768, X25519, PrekeyBundle, PrekeySecret
from .session import SessionState

__all__ = [
    "PrekeyHeader",
    "PrekeySecretLookup",
    "associated_data",
    "initiate",
    "respond",
    "open_initial",
    "read_prekey_header",
]

#: ``prekey_secret(kind, key_id)``: the device's secret for that prekey, or None if unknown
PrekeySecretLookup = Callable[[str, int], "PrekeySecret | None"]

_F = b"\xff" * 32
_SALT = bytes(32)
_SIGNATURE_LABEL = b"sonet-pqxdh-init-v1"
_MAX_IDENTITY_BYTES = 4096
_MAX_SIGNATURE_BYTES = 8192
_OB, _OI = (bytes, NONE), (int, NONE)
_FIELDS = {
    "mode": (str,), "identity": (bytes,), "identity_dh": _OB, "ephemeral": _OB, "pq_ct": _OB,
    "spk": _OI, "opk": _OI, "pqpk": _OI, "pq_last_resort": (bool,), "sig": _OB,
}  # fmt: skip


def _info(mode: CryptoMode) -> bytes:
    return b"Sonet_PQXDH_" + mode.value.encode() + b"_X25519_SHA-256_ML-KEM-768"


def _derive(mode: CryptoMode, secrets: list[bytes]) -> bytes:
    return hkdf(_F + b"".join(secrets), salt=_SALT, info=_info(mode), length=32)


def associated_data(initiator: VerifyKey, initiator_dh: bytes | None, responder: VerifyKey, responder_dh: bytes | None) -> bytes:
    return canonical.dumps([initiator.to_bytes(), initiator_dh, responder.to_bytes(), responder_dh])


@dataclass(frozen=True, kw_only=True, slots=True)
class PrekeyHeader:
    """What travels with the initiator's first messages. Decoded headers are untrusted until
    :func:`respond` accepts them."""

    mode: CryptoMode
    identity: bytes = field(repr=False)  # initiator's VerifyKey encoding
    identity_dh: bytes | None = field(repr=False)
    ephemeral: bytes | None = field(repr=False)
    pq_ciphertext: bytes | None = field(repr=False)
    spk_id: int | None
    opk_id: int | None
    pqpk_id: int | None
    pq_last_resort: bool
    signature: bytes | None = field(default=None, repr=False)

    def _map(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value, "identity": self.identity, "identity_dh": self.identity_dh,
            "ephemeral": self.ephemeral, "pq_ct": self.pq_ciphertext, "spk": self.spk_id, "opk": self.opk_id,
            "pqpk": self.pqpk_id, "pq_last_resort": self.pq_last_resort, "sig": self.signature,
        }  # fmt: skip

    def to_bytes(self) -> bytes:
        return canonical.dumps(self._map())

    def signed_payload(self, ad: bytes, pq_prekey_public: bytes) -> bytes:
        """What the initiator signs in pq mode: every field but the signature, AD and the hash
        of the ML-KEM prekey it encapsulated to."""
        fields = self._map()
        del fields["sig"]
        return canonical.dumps({"header": fields, "ad": ad, "pq_prekey": sha256(pq_prekey_public)})

    @property
    def one_time_prekeys(self) -> tuple[tuple[str, int], ...]:
        """``(kind, id)`` of the one-time prekeys this header consumed: the X25519 one-time
        prekey and the ML-KEM prekey unless it is the last-resort key. Trustworthy only after
        :func:`respond` accepted the header (it checks the last-resort flag against the secret)."""
        used = []
        if self.opk_id is not None:
            used.append((X25519, self.opk_id))
        if self.pqpk_id is not None and not self.pq_last_resort:
            used.append((MLKEM768, self.pqpk_id))
        return tuple(used)

    @classmethod
    def from_bytes(cls, data: bytes) -> "PrekeyHeader":
        """Strict structural decoding; see :func:`respond` for the checks that make it trusted."""
        v = decode_map(data, _FIELDS, "prekey header", max_bytes=limits.MAX_CBOR_BYTES)
        if len(v["identity"]) > _MAX_IDENTITY_BYTES or (v["sig"] is not None and len(v["sig"]) > _MAX_SIGNATURE_BYTES):
            raise RemoteProtocolError("prekey header field too large")
        need_len(v["identity_dh"], 32, "prekey header identity DH key")
        need_len(v["ephemeral"], 32, "prekey header ephemeral key")
        need_len(v["pq_ct"], 1088, "prekey header ML-KEM ciphertext")
        for name in ("spk", "opk", "pqpk"):
            need_range(v[name], 0, limits.MAX_PREKEY_ID, f"prekey header {name} id")
        return cls(
            mode=CryptoMode.parse(v["mode"]), identity=v["identity"], identity_dh=v["identity_dh"],
            ephemeral=v["ephemeral"], pq_ciphertext=v["pq_ct"], spk_id=v["spk"], opk_id=v["opk"],
            pqpk_id=v["pqpk"], pq_last_resort=v["pq_last_resort"], signature=v["sig"],
        )  # fmt: skip


def session_mode(a: CryptoMode, b: CryptoMode) -> CryptoMode:
    """The one mode two devices run PQXDH in, from their (authenticated) record modes: pq if
    either is pq (a hybrid device has ML-DSA and ML-KEM keys), classical if either is classical
    (a hybrid device has X25519 keys), else hybrid. classical and pq share nothing."""
    if CryptoMode.PQ in (a, b):
        if CryptoMode.CLASSICAL in (a, b):
            raise LocalProtocolError("a classical-mode device and a pq-mode device cannot start a session")
        return CryptoMode.PQ
    return CryptoMode.CLASSICAL if CryptoMode.CLASSICAL in (a, b) else CryptoMode.HYBRID


def initiate(
    *, mode: CryptoMode, identity: SigningKey, identity_dh_secret: bytes | None, bundle: PrekeyBundle, rng: Rng
) -> tuple[PrekeyHeader, SessionState]:
    """Start a session with the device of a verified ``bundle`` (Alice's side of PQXDH)."""
    if not isinstance(bundle, PrekeyBundle) or not bundle.verified:
        raise LocalProtocolError("initiate() needs a bundle returned by verify_bundle()")
    if bundle.mode is not mode:
        raise LocalProtocolError(f"bundle is for {bundle.mode.value} mode, not {mode.value}")
    if mode is CryptoMode.PQ and not identity.mode.uses_pq:
        raise LocalProtocolError("a pq-mode session needs an identity key with an ML-DSA component")
    own_ik = _identity_dh(mode, identity_dh_secret)
    ad = associated_data(identity.public, own_ik.public if own_ik else None, bundle.identity, bundle.identity_dh)
    secrets: list[bytes] = []
    ephemeral = pq_ciphertext = spk_public = pq_public = None
    if own_ik is not None:
        if bundle.signed_prekey is None or bundle.identity_dh is None:  # verify_bundle refuses it
            raise RemoteProtocolError(f"prekey bundle lacks the X25519 parts of {mode.value} mode")
        spk_public = bundle.signed_prekey.public
        ek = X25519KeyPair.generate(rng)
        secrets += [own_ik.exchange(spk_public), ek.exchange(bundle.identity_dh), ek.exchange(spk_public)]
        if bundle.one_time_prekey is not None:
            secrets.append(ek.exchange(bundle.one_time_prekey.public))
        ephemeral = ek.public
        del ek
    if mode.uses_pq:
        if bundle.pq_prekey is None:  # verify_bundle refuses it
            raise RemoteProtocolError(f"prekey bundle lacks the ML-KEM prekey of {mode.value} mode")
        pq_public = bundle.pq_prekey.public
        shared, pq_ciphertext = mlkem_encapsulate(pq_public)
        secrets.append(shared)
    root_key = _derive(mode, secrets)
    del secrets
    header = PrekeyHeader(
        mode=mode,
        identity=identity.public.to_bytes(),
        identity_dh=own_ik.public if own_ik else None,
        ephemeral=ephemeral,
        pq_ciphertext=pq_ciphertext,
        spk_id=bundle.signed_prekey.key_id if bundle.signed_prekey else None,
        opk_id=bundle.one_time_prekey.key_id if bundle.one_time_prekey else None,
        pqpk_id=bundle.pq_prekey.key_id if bundle.pq_prekey else None,
        pq_last_resort=bundle.pq_prekey.last_resort if bundle.pq_prekey else False,
    )
    if mode is CryptoMode.PQ:
        if pq_public is None:  # pq mode uses pq: set above
            raise LocalProtocolError("pq mode without an ML-KEM prekey")
        signature = identity.sign(_SIGNATURE_LABEL, header.signed_payload(ad, pq_public))
        header = dataclasses.replace(header, signature=signature)
    state = session.initiator_state(
        mode=mode,
        ad=ad,
        root_key=root_key,
        prekey_header=header.to_bytes(),
        peer_identity=bundle.identity,
        peer_identity_dh=bundle.identity_dh,
        peer_ratchet_dh=spk_public,
        rng=rng,
    )
    return header, state


def _identity_dh(mode: CryptoMode, secret: bytes | None) -> X25519KeyPair | None:
    """Our identity DH key pair when ``mode`` uses it (it is ignored in pq mode)."""
    if not mode.uses_classical:
        return None
    if secret is None:
        raise LocalProtocolError(f"{mode.value} mode needs this device's identity DH key")
    return X25519KeyPair(secret)


def _check_parts(header: PrekeyHeader) -> None:
    mode = header.mode
    classical = (header.identity_dh, header.ephemeral, header.spk_id)
    pq = (header.pq_ciphertext, header.pqpk_id)
    if any((p is None) == mode.uses_classical for p in classical) or (header.opk_id is not None and not mode.uses_classical):
        raise RemoteProtocolError(f"prekey header does not have the X25519 parts of {mode.value} mode")
    if any((p is None) == mode.uses_pq for p in pq) or (header.pq_last_resort and not mode.uses_pq):
        raise RemoteProtocolError(f"prekey header does not have the ML-KEM parts of {mode.value} mode")
    if (header.signature is None) == (mode is CryptoMode.PQ):
        raise RemoteProtocolError("prekey header must be signed in pq mode and only there")
    if header.opk_id is not None and header.opk_id == header.spk_id:
        raise RemoteProtocolError("prekey header names the same X25519 prekey twice")


def _lookup(prekey_secret: PrekeySecretLookup, kind: str, key_id: int, what: str) -> PrekeySecret:
    secret = prekey_secret(kind, key_id)
    if secret is None:
        raise RemoteProtocolError(f"prekey message uses an unknown {what} ({kind} id {key_id})")
    if not isinstance(secret, PrekeySecret) or secret.kind != kind or secret.key_id != key_id:
        raise LocalProtocolError(f"prekey store returned the wrong secret for {kind} id {key_id}")
    return secret


def respond(
    *,
    mode: CryptoMode,
    identity: SigningKey,
    identity_dh_secret: bytes | None,
    header: PrekeyHeader,
    prekey_secret: PrekeySecretLookup,
) -> SessionState:
    """Bob's side of PQXDH: check ``header`` and derive the session. Deletes nothing: the
    caller removes ``header.one_time_prekeys`` after its store committed the new session.
    Bob's first ratchet turn happens when :func:`session.decrypt` opens the first message."""
    if not isinstance(header, PrekeyHeader):
        raise LocalProtocolError("respond() needs a PrekeyHeader")
    if header.mode is not mode:
        raise RemoteProtocolError(
            f"prekey message uses crypto mode {header.mode.value}, expected {mode.value}", code="crypto_mode_refused"
        )
    _check_parts(header)
    initiator = VerifyKey.from_bytes(header.identity)
    if mode is CryptoMode.PQ and not initiator.mode.uses_pq:
        raise RemoteProtocolError("a pq-mode session needs an identity key with an ML-DSA component")
    own_ik = _identity_dh(mode, identity_dh_secret)
    ad = associated_data(initiator, header.identity_dh, identity.public, own_ik.public if own_ik else None)
    secrets: list[bytes] = []
    ratchet_secret = None
    if own_ik is not None:
        if header.spk_id is None or header.identity_dh is None or header.ephemeral is None:  # _check_parts refused it
            raise RemoteProtocolError(f"prekey header does not have the X25519 parts of {mode.value} mode")
        spk = _lookup(prekey_secret, X25519, header.spk_id, "signed prekey").x25519()
        secrets += [spk.exchange(header.identity_dh), own_ik.exchange(header.ephemeral), spk.exchange(header.ephemeral)]
        if header.opk_id is not None:
            secrets.append(_lookup(prekey_secret, X25519, header.opk_id, "one-time prekey").x25519().exchange(header.ephemeral))
        ratchet_secret = spk.secret_bytes()
    if mode.uses_pq:
        if header.pqpk_id is None or header.pq_ciphertext is None:  # _check_parts refused it
            raise RemoteProtocolError(f"prekey header does not have the ML-KEM parts of {mode.value} mode")
        pqpk = _lookup(prekey_secret, MLKEM768, header.pqpk_id, "ML-KEM prekey")
        if pqpk.last_resort != header.pq_last_resort:
            raise RemoteProtocolError("prekey message misstates whether its ML-KEM prekey is the last-resort key")
        if mode is CryptoMode.PQ:
            if header.signature is None:  # _check_parts refused it
                raise RemoteProtocolError("prekey header must be signed in pq mode")
            initiator.verify(_SIGNATURE_LABEL, header.signed_payload(ad, pqpk.public), header.signature)
        secrets.append(pqpk.mlkem().decapsulate(header.pq_ciphertext))
    root_key = _derive(mode, secrets)
    del secrets
    return session.responder_state(
        mode=mode,
        ad=ad,
        root_key=root_key,
        prekey_header=header.to_bytes(),
        peer_identity=initiator,
        peer_identity_dh=header.identity_dh,
        own_ratchet_dh=ratchet_secret,
    )


def read_prekey_header(message: bytes) -> PrekeyHeader | None:
    """The (unverified) prekey header a message carries, or None for a plain ratchet message."""
    raw = session.prekey_part(message)
    return PrekeyHeader.from_bytes(raw) if raw is not None else None


def open_initial(
    message: bytes,
    *,
    mode: CryptoMode,
    identity: SigningKey,
    identity_dh_secret: bytes | None,
    prekey_secret: PrekeySecretLookup,
    rng: Rng,
) -> tuple[bytes, SessionState, tuple[tuple[str, int], ...]]:
    """The responder's entry point for a message that starts a session: :func:`respond`, then
    :func:`session.decrypt`. Returns ``(plaintext, new state, one-time prekeys used)``; the
    caller checks ``state.peer_identity``, commits, and then deletes those prekeys."""
    header = read_prekey_header(message)
    if header is None:
        raise RemoteProtocolError("not a prekey message: no session to decrypt it with")
    state = respond(mode=mode, identity=identity, identity_dh_secret=identity_dh_secret, header=header, prekey_secret=prekey_secret)
    plaintext, state = session.decrypt(state, message, rng)
    return plaintext, state, header.one_time_prekeys
