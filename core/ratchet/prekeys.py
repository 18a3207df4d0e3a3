"""Signed prekeys and prekey bundles: what a device publishes so others can start sessions.

Follows PQXDH §3.2 ("Publishing keys") with these Sonet choices:

- Every prekey, one-time ones included, is signed by the device identity key (Signal signs only
  the signed prekey and the PQ prekeys): ``sig = identity.sign(b"sonet-prekey-v1",
  CBOR{kind, id, public, last_resort})``. The identity is a signing key (Ed25519, ML-DSA-65 or
  both, core/crypto/sign.py) rather than an XEdDSA-capable X25519 key, so the identity DH key
  that PQXDH needs is a separate X25519 key listed in the device's signed record.
- ``kind`` is ``"x25519"`` (signed prekey and one-time prekeys, SPK/OPK in PQXDH) or
  ``"mlkem768"`` (one-time PQ prekeys and the PQ last-resort prekey, PQPK). Key ids are per kind.
- ``last_resort`` marks an ML-KEM prekey that stays valid after use (PQXDH's "last-resort
  post-quantum prekey"). For X25519 keys the flag carries no meaning to this package: which
  X25519 prekey is the signed one is decided by the slot it is published in.
- A :class:`PrekeyBundle` is what a sender fetches for one recipient device. The parts the crypto
  mode needs: ``classical`` identity DH key + signed X25519 prekey (+ optional one-time X25519
  prekey); ``hybrid`` those + an ML-KEM prekey; ``pq`` only an ML-KEM prekey (and the identity
  key must then have an ML-DSA component, since signatures are all that authenticate a pq-mode
  session). Only :func:`verify_bundle` yields a bundle that :func:`core.ratchet.pqxdh.initiate`
  accepts.

Secrets are stored as the bytes their key pair is derived from (X25519 scalar, ML-KEM seed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import canonical, limits
from ..crypto import CryptoMode, MlKemKeyPair, Rng, SigningKey, VerifyKey, X25519KeyPair, check_mlkem_public
from ..errors import LocalProtocolError, RemoteProtocolError
from ._codec import decode_map, need_range

__all__ = [
    "X25519",
    "MLKEM768",
    "KINDS",
    "SignedPrekey",
    "PrekeySecret",
    "PrekeyBundle",
    "generate_prekey",
    "decode_prekey",
    "verify_prekey",
    "verify_bundle",
]

X25519 = "x25519"
MLKEM768 = "mlkem768"
#: kind -> (secret length, public key length)
KINDS = {X25519: (32, 32), MLKEM768: (64, 1184)}
_LABEL = b"sonet-prekey-v1"
_SIGNED_FIELDS = {"kind": (str,), "id": (int,), "public": (bytes,), "last_resort": (bool,), "sig": (bytes,)}
_SECRET_FIELDS = {"kind": (str,), "id": (int,), "seed": (bytes,), "last_resort": (bool,)}


def _check_kind_and_id(kind: str, key_id: int, err: type[LocalProtocolError] | type[RemoteProtocolError]) -> None:
    if type(kind) is not str or kind not in KINDS:
        raise err(f"unknown prekey kind {kind!r} (expected x25519 or mlkem768)")
    if type(key_id) is not int:
        raise err("prekey id must be an integer")
    need_range(key_id, 0, limits.MAX_PREKEY_ID, "prekey id", err)


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedPrekey:
    """A published prekey. Decoded ones (:func:`decode_prekey`) are trusted only as returned by
    :func:`verify_prekey` or inside a bundle returned by :func:`verify_bundle`."""

    kind: str
    key_id: int
    public: bytes = field(repr=False)
    last_resort: bool
    signature: bytes = field(repr=False)

    def signed_body(self) -> bytes:
        return canonical.dumps({"kind": self.kind, "id": self.key_id, "public": self.public, "last_resort": self.last_resort})

    def to_bytes(self) -> bytes:
        return canonical.dumps(
            {"kind": self.kind, "id": self.key_id, "public": self.public, "last_resort": self.last_resort, "sig": self.signature}
        )

    def check(self, identity: VerifyKey) -> None:
        """Raise RemoteProtocolError if malformed, VerifyError unless ``identity`` signed it."""
        _check_kind_and_id(self.kind, self.key_id, RemoteProtocolError)
        if type(self.public) is not bytes or len(self.public) != KINDS[self.kind][1]:
            raise RemoteProtocolError(f"{self.kind} prekey must be {KINDS[self.kind][1]} bytes")
        if type(self.last_resort) is not bool or type(self.signature) is not bytes:
            raise RemoteProtocolError("prekey fields have the wrong types")
        if self.kind == MLKEM768:
            check_mlkem_public(self.public)
        identity.verify(_LABEL, self.signed_body(), self.signature)


def decode_prekey(raw: bytes) -> SignedPrekey:
    """Decode a published prekey strictly, without checking its signature: for a bundle that
    :func:`verify_bundle` checks next (which verifies every prekey signature, once)."""
    value = decode_map(raw, _SIGNED_FIELDS, "signed prekey", max_bytes=limits.MAX_CBOR_BYTES)
    return SignedPrekey(
        kind=value["kind"], key_id=value["id"], public=value["public"], last_resort=value["last_resort"], signature=value["sig"]
    )


def verify_prekey(raw: bytes, identity: VerifyKey) -> SignedPrekey:
    """Decode a published prekey strictly and check its signature by ``identity``."""
    prekey = decode_prekey(raw)
    prekey.check(identity)
    return prekey


class PrekeySecret:
    """The private half of one prekey (kind + id), as the device stores it."""

    __slots__ = ("kind", "key_id", "last_resort", "_seed", "_pair", "public")

    def __init__(self, kind: str, key_id: int, seed: bytes, *, last_resort: bool = False) -> None:
        _check_kind_and_id(kind, key_id, LocalProtocolError)
        if type(seed) is not bytes or len(seed) != KINDS[kind][0]:
            raise LocalProtocolError(f"{kind} prekey secret must be {KINDS[kind][0]} bytes")
        self.kind = kind
        self.key_id = key_id
        self.last_resort = bool(last_resort)
        self._seed = seed
        # built once: the public key needs it, and so does the responder's key agreement
        self._pair: X25519KeyPair | MlKemKeyPair = X25519KeyPair(seed) if kind == X25519 else MlKemKeyPair(seed)
        self.public: bytes = self._pair.public

    def x25519(self) -> X25519KeyPair:
        if not isinstance(self._pair, X25519KeyPair):
            raise LocalProtocolError("not an X25519 prekey")
        return self._pair

    def mlkem(self) -> MlKemKeyPair:
        if not isinstance(self._pair, MlKemKeyPair):
            raise LocalProtocolError("not an ML-KEM-768 prekey")
        return self._pair

    def to_bytes(self) -> bytes:
        return canonical.dumps({"kind": self.kind, "id": self.key_id, "seed": self._seed, "last_resort": self.last_resort})

    @classmethod
    def from_bytes(cls, data: bytes) -> "PrekeySecret":
        value = decode_map(data, _SECRET_FIELDS, "prekey secret", max_bytes=1024, err=LocalProtocolError)
        return cls(value["kind"], value["id"], value["seed"], last_resort=value["last_resort"])

    def __repr__(self) -> str:
        return f"PrekeySecret({self.kind}, id={self.key_id}, last_resort={self.last_resort}, <secret>)"


def generate_prekey(
    identity: SigningKey, kind: str, key_id: int, rng: Rng, last_resort: bool = False
) -> tuple[PrekeySecret, SignedPrekey]:
    """A fresh prekey of ``kind``: the secret to keep and the signed public part to publish."""
    _check_kind_and_id(kind, key_id, LocalProtocolError)
    secret = PrekeySecret(kind, key_id, rng(KINDS[kind][0]), last_resort=last_resort)
    unsigned = SignedPrekey(kind=kind, key_id=key_id, public=secret.public, last_resort=secret.last_resort, signature=b"")
    signed = dataclasses.replace(unsigned, signature=identity.sign(_LABEL, unsigned.signed_body()))
    return secret, signed


@dataclass(frozen=True, kw_only=True, slots=True)
class PrekeyBundle:
    """Everything a sender needs to start a session with one device. ``identity`` and
    ``identity_dh`` come from the device's verified record; the prekeys from its node."""

    mode: CryptoMode
    identity: VerifyKey
    identity_dh: bytes | None
    signed_prekey: SignedPrekey | None
    pq_prekey: SignedPrekey | None
    one_time_prekey: SignedPrekey | None
    _verified: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def verified(self) -> bool:
        """True only for bundles returned by :func:`verify_bundle`."""
        return self._verified


def _require(part: object, wanted: bool, what: str, mode: CryptoMode) -> None:
    if wanted and part is None:
        raise RemoteProtocolError(f"prekey bundle for {mode.value} mode lacks the {what}")
    if not wanted and part is not None:
        raise RemoteProtocolError(f"prekey bundle for {mode.value} mode must not have a {what}")


def verify_bundle(bundle: PrekeyBundle) -> PrekeyBundle:
    """Check the parts ``bundle.mode`` needs and every prekey signature against
    ``bundle.identity``; return the bundle marked as verified."""
    mode, identity = bundle.mode, bundle.identity
    if not isinstance(mode, CryptoMode) or not isinstance(identity, VerifyKey):
        raise LocalProtocolError("prekey bundle needs a CryptoMode and a VerifyKey")
    if mode is CryptoMode.PQ and not identity.mode.uses_pq:
        raise RemoteProtocolError("a pq-mode session needs an identity key with an ML-DSA component")
    _require(bundle.identity_dh, mode.uses_classical, "identity DH key", mode)
    _require(bundle.signed_prekey, mode.uses_classical, "signed X25519 prekey", mode)
    _require(bundle.pq_prekey, mode.uses_pq, "ML-KEM prekey", mode)
    if not mode.uses_classical:
        _require(bundle.one_time_prekey, False, "one-time X25519 prekey", mode)
    if bundle.identity_dh is not None and (type(bundle.identity_dh) is not bytes or len(bundle.identity_dh) != 32):
        raise RemoteProtocolError("identity DH key must be 32 bytes")
    for prekey, kind, what in (
        (bundle.signed_prekey, X25519, "signed prekey"),
        (bundle.one_time_prekey, X25519, "one-time prekey"),
        (bundle.pq_prekey, MLKEM768, "ML-KEM prekey"),
    ):
        if prekey is None:
            continue
        if not isinstance(prekey, SignedPrekey) or prekey.kind != kind:
            raise RemoteProtocolError(f"the bundle's {what} must be a {kind} prekey")
        prekey.check(identity)
    if bundle.one_time_prekey is not None and bundle.signed_prekey is not None:
        if bundle.one_time_prekey.key_id == bundle.signed_prekey.key_id:
            raise RemoteProtocolError("the bundle's one-time prekey has the signed prekey's id")
    verified = dataclasses.replace(bundle)
    object.__setattr__(verified, "_verified", True)
    return verified
