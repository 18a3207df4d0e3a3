"""Identity signatures in the three modes: Ed25519, ML-DSA-65, or both (hybrid).

Both components sign the same message ``M' = "sonet-sig-v1" || mode || len(label) || label || msg``
(ML-DSA additionally with context ``label``); a hybrid signature is the concatenation
``ed25519_sig (64) || mldsa65_sig (3309)`` and is valid only if both verify. Binding the mode
into ``M'`` means a hybrid signature cannot be stripped to a valid classical one.

Key encodings (canonical CBOR maps): public ``{"mode", "ed25519"?, "mldsa65"?}`` with raw public
keys; private ``{"mode", "ed25519"?, "mldsa65"?}`` with 32-byte seeds.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from .. import canonical
from ..errors import LocalProtocolError, RemoteProtocolError, VerifyError
from .kdf import sha256
from .modes import CryptoMode, Rng

__all__ = ["SigningKey", "VerifyKey", "signature_length", "fingerprint_of", "normalize_fingerprint"]

_ED_SIG = 64
_MLDSA_SIG = 3309
_ED_PUB = 32
_MLDSA_PUB = 1952
_SEED = 32
_PREFIX = b"sonet-sig-v1"
_NORMAL_FINGERPRINT = re.compile("[a-z2-7]{32}")


#: signatures that verified with ``remember``, by the exact bytes checked (VerifyKey.verify)
_verified: dict[tuple[bytes, bytes, bytes, bytes], None] = {}
#: at most this many, then forgotten all at once: each holds a hybrid key and signature (~5 KB)
_VERIFIED_MAX = 256


#: public keys parsed by :meth:`VerifyKey.from_bytes`, by their encoding; at most this many,
#: then forgotten all at once (a hybrid one holds its ~2 KB encoding and ~8.6 KB parsed ML-DSA)
_parsed: dict[bytes, "VerifyKey"] = {}
_PARSED_MAX = 128


def signature_length(mode: CryptoMode) -> int:
    return (_ED_SIG if mode.uses_classical else 0) + (_MLDSA_SIG if mode.uses_pq else 0)


def _message(mode: CryptoMode, label: bytes, msg: bytes) -> bytes:
    if not 0 < len(label) < 256:
        raise LocalProtocolError("signature label must be 1..255 bytes")
    mode_b = mode.value.encode()
    return b"".join((_PREFIX, bytes([len(mode_b)]), mode_b, bytes([len(label)]), label, msg))


class VerifyKey:
    """A public identity key. Construct with :meth:`from_bytes` (strict) or from a SigningKey."""

    __slots__ = ("mode", "_ed", "_mldsa", "_encoded", "_fingerprint")

    def __init__(self, mode: CryptoMode, ed: ed25519.Ed25519PublicKey | None, ml: mldsa.MLDSA65PublicKey | None) -> None:
        self.mode = mode
        self._ed = ed
        self._mldsa = ml
        fields: dict[str, Any] = {"mode": mode.value}
        if ed is not None:
            fields["ed25519"] = ed.public_bytes_raw()
        if ml is not None:
            fields["mldsa65"] = ml.public_bytes_raw()
        self._encoded = canonical.dumps(fields)
        self._fingerprint: str | None = None  # computed on first use (a hash per message otherwise)

    @classmethod
    def from_bytes(cls, data: bytes) -> "VerifyKey":
        """The key of its canonical encoding (RemoteProtocolError if malformed). A key read
        before is handed out again (``_parsed``): the same bytes parse to an equal key, and
        parsing a hybrid one (its ML-DSA-65 component) costs ~40 µs, for every device record
        and account key a send or receive looks up."""
        key = _parsed.get(data) if type(data) is bytes else None
        if key is None:
            key = cls._parse(data)
            if type(data) is bytes:
                if len(_parsed) >= _PARSED_MAX:
                    _parsed.clear()  # bounded; clear() is one step, safe beside another thread
                _parsed[data] = key
        return key

    @classmethod
    def _parse(cls, data: bytes) -> "VerifyKey":
        value = canonical.loads(data)
        if type(value) is not dict:
            raise RemoteProtocolError("identity key must be a CBOR map")
        mode = CryptoMode.parse(value.get("mode"))
        expected = {"mode"} | ({"ed25519"} if mode.uses_classical else set()) | ({"mldsa65"} if mode.uses_pq else set())
        if set(value) != expected:
            raise RemoteProtocolError("identity key has the wrong components for its mode")
        ed = ml = None
        try:
            if mode.uses_classical:
                raw = value["ed25519"]
                if type(raw) is not bytes or len(raw) != _ED_PUB:
                    raise ValueError
                ed = ed25519.Ed25519PublicKey.from_public_bytes(raw)
            if mode.uses_pq:
                raw = value["mldsa65"]
                if type(raw) is not bytes or len(raw) != _MLDSA_PUB:
                    raise ValueError
                ml = mldsa.MLDSA65PublicKey.from_public_bytes(raw)
        except ValueError:
            raise RemoteProtocolError("identity key component is malformed") from None
        return cls(mode, ed, ml)

    def to_bytes(self) -> bytes:
        return self._encoded

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(self._encoded)
        return self._fingerprint

    def verify(self, label: bytes, msg: bytes, signature: bytes, *, remember: bool = False) -> None:
        """Raise VerifyError unless ``signature`` is valid for every component. With
        ``remember``, a success is kept by the exact bytes checked (this key's encoding, the
        label, the message, the signature) and those same bytes pass again without the
        arithmetic: for signed records that are checked again at every lookup (device lists
        and records, tree heads). A failure is never kept."""
        if type(signature) is not bytes or len(signature) != signature_length(self.mode):
            raise VerifyError("signature has the wrong length")
        if remember and type(label) is bytes and type(msg) is bytes:
            seen = (self._encoded, label, msg, signature)
            if seen in _verified:
                return
            self._verify(label, msg, signature)
            if len(_verified) >= _VERIFIED_MAX:
                _verified.clear()  # bounded; clear() is one step, safe beside another thread
            _verified[seen] = None
            return
        self._verify(label, msg, signature)

    def _verify(self, label: bytes, msg: bytes, signature: bytes) -> None:
        m = _message(self.mode, label, msg)
        try:
            offset = 0
            if self._ed is not None:
                self._ed.verify(signature[:_ED_SIG], m)
                offset = _ED_SIG
            if self.mode.uses_pq:
                self._mldsa_key().verify(signature[offset:], m, label)
        except InvalidSignature:
            raise VerifyError("signature does not verify") from None

    def forget_parsed(self) -> None:
        """Drop the parsed ML-DSA component (about 8.6 KB of C memory), parsed again from the
        encoding at the next verify: for a key held long and seldom used, such as the peer of
        an authenticated connection, which is mostly asked its fingerprint."""
        self._mldsa = None

    def _mldsa_key(self) -> mldsa.MLDSA65PublicKey:
        if self._mldsa is None:
            raw = canonical.loads(self._encoded).get("mldsa65")
            if type(raw) is not bytes:
                raise VerifyError("the key has no ML-DSA component")
            self._mldsa = mldsa.MLDSA65PublicKey.from_public_bytes(raw)
        return self._mldsa

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other._encoded == self._encoded

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"VerifyKey({self.mode.value}, {self.fingerprint})"


class SigningKey:
    """A private identity key. Generation takes its randomness as a parameter."""

    __slots__ = ("mode", "_ed", "_mldsa", "_public")

    def __init__(self, mode: CryptoMode, ed_seed: bytes | None, mldsa_seed: bytes | None) -> None:
        if (ed_seed is not None) != mode.uses_classical or (mldsa_seed is not None) != mode.uses_pq:
            raise LocalProtocolError("signing key components do not match its mode")
        self.mode = mode
        self._ed = ed25519.Ed25519PrivateKey.from_private_bytes(ed_seed) if ed_seed is not None else None
        self._mldsa = mldsa.MLDSA65PrivateKey.from_seed_bytes(mldsa_seed) if mldsa_seed is not None else None
        self._public = VerifyKey(
            mode,
            self._ed.public_key() if self._ed else None,
            self._mldsa.public_key() if self._mldsa else None,
        )

    @classmethod
    def generate(cls, mode: CryptoMode, rng: Rng) -> "SigningKey":
        return cls(
            mode,
            rng(_SEED) if mode.uses_classical else None,
            rng(_SEED) if mode.uses_pq else None,
        )

    @classmethod
    def from_private_bytes(cls, data: bytes) -> "SigningKey":
        try:
            value = canonical.loads(data)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"private key file is malformed: {exc}") from None
        if type(value) is not dict or not set(value) <= {"mode", "ed25519", "mldsa65"}:
            raise LocalProtocolError("private key file is not a Sonet signing key")
        mode = CryptoMode.parse(value.get("mode"), remote=False)
        ed, ml = value.get("ed25519"), value.get("mldsa65")
        for seed in (ed, ml):
            if seed is not None and (type(seed) is not bytes or len(seed) != _SEED):
                raise LocalProtocolError("private key seed is malformed")
        return cls(mode, ed, ml)

    def private_bytes(self) -> bytes:
        fields: dict[str, Any] = {"mode": self.mode.value}
        if self._ed is not None:
            fields["ed25519"] = self._ed.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        if self._mldsa is not None:
            fields["mldsa65"] = self._mldsa.private_bytes_raw()
        return canonical.dumps(fields)

    @property
    def public(self) -> VerifyKey:
        return self._public

    def sign(self, label: bytes, msg: bytes) -> bytes:
        m = _message(self.mode, label, msg)
        parts = []
        if self._ed is not None:
            parts.append(self._ed.sign(m))
        if self._mldsa is not None:
            parts.append(self._mldsa.sign(m, label))
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"SigningKey({self.mode.value}, <secret>)"


def fingerprint_of(encoded_public_key: bytes) -> str:
    """Short, pinnable name of a public key: base32 of the first 20 bytes of its SHA-256."""
    digest = sha256(b"sonet-fingerprint-v1", encoded_public_key)[:20]
    return base64.b32encode(digest).decode().lower()


def normalize_fingerprint(text: str) -> str:
    """Accept fingerprints typed with spaces, dashes or upper case."""
    if _NORMAL_FINGERPRINT.fullmatch(text):
        return text  # already normal (the common case: every sealed box computes one)
    cleaned = "".join(ch for ch in text.lower() if ch not in " -:")
    if len(cleaned) != 32 or any(ch not in "abcdefghijklmnopqrstuvwxyz234567" for ch in cleaned):
        raise LocalProtocolError(f"not a Sonet fingerprint: {text!r} (expected 32 base32 characters)")
    return cleaned
