"""A group leaf's credential: which device of which account it is (docs/groups.md, "Credentials").

The MLS BasicCredential's identity is canonical CBOR ``{v: 1, account, device, fingerprint,
binding}``. ``binding`` is the device identity key's signature (label
``sonet-mls-credential-v1``) over ``CBOR{account, device, suite, signature_key}``: it ties the
leaf's MLS signature key to the device record that the account's signed device list names, so
safety numbers and key transparency cover group members too. Decoding here checks structure
only; :func:`verify_binding` checks the signature against the device record's identity key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import canonical
from ..address import parse_address
from ..crypto import CryptoMode, SigningKey, VerifyKey
from ..crypto.sign import signature_length
from ..errors import LocalProtocolError, RemoteProtocolError
from ..mls.key_package import CredentialType, LeafNode

__all__ = ["SUITE_ID", "MemberCredential", "make_credential", "verify_binding", "leaf_member"]

#: MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519: the one suite of every Sonet group
SUITE_ID = 0x004D

_LABEL = b"sonet-mls-credential-v1"
_FIELDS = {"v": int, "account": str, "device": int, "fingerprint": str, "binding": bytes}
_FINGERPRINT = re.compile("[a-z2-7]{32}")
#: the longest identity signature (hybrid mode)
_MAX_BINDING = max(signature_length(mode) for mode in CryptoMode)
#: an identity is a few hundred bytes at most (a hybrid binding is ~3.4 KiB)
_MAX_IDENTITY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class MemberCredential:
    account: str
    device: int
    fingerprint: str
    binding: bytes

    def to_identity(self) -> bytes:
        """The BasicCredential identity: canonical CBOR of the fields (module docstring)."""
        _check(self, remote=False)
        return canonical.dumps(
            {"v": 1, "account": self.account, "device": self.device, "fingerprint": self.fingerprint, "binding": self.binding}
        )

    @classmethod
    def from_identity(cls, data: bytes) -> MemberCredential:
        """Strict: canonical CBOR, exactly the fields, version 1, a normalised account, a device
        id in range, a normal fingerprint; else ``group_malformed``."""
        try:
            fields = canonical.loads_map(data, _FIELDS, max_bytes=_MAX_IDENTITY_BYTES)
        except RemoteProtocolError as exc:
            raise _malformed(str(exc)) from None
        if fields["v"] != 1:
            raise _malformed(f"version {fields['v']}")
        credential = cls(fields["account"], fields["device"], fields["fingerprint"], fields["binding"])
        _check(credential, remote=True)
        return credential


def _malformed(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"group member credential is malformed: {reason}", code="group_malformed")


def _check(credential: MemberCredential, *, remote: bool) -> None:
    """The fields' own rules; a remote credential breaking one is ``group_malformed``."""
    problem = None
    try:
        if str(parse_address(credential.account, remote=True)) != credential.account:
            problem = "account is not in normal form"
    except RemoteProtocolError as exc:
        problem = str(exc)
    if problem is None and not (type(credential.device) is int and 0 < credential.device < 2**31):
        problem = "device id out of range"
    if problem is None and not (type(credential.fingerprint) is str and _FINGERPRINT.fullmatch(credential.fingerprint)):
        problem = "fingerprint is not 32 base32 characters"
    if problem is None and not (type(credential.binding) is bytes and 0 < len(credential.binding) <= _MAX_BINDING):
        problem = "binding has the wrong length"
    if problem is not None:
        raise _malformed(problem) if remote else LocalProtocolError(f"group member credential: {problem}")


def _binding_message(account: str, device: int, signature_key: bytes) -> bytes:
    return canonical.dumps({"account": account, "device": device, "suite": SUITE_ID, "signature_key": signature_key})


def make_credential(*, account: str, device: int, fingerprint: str, identity: SigningKey, signature_key: bytes) -> MemberCredential:
    """The credential of this device's leaf whose MLS signature public key is ``signature_key``."""
    if fingerprint != identity.public.fingerprint:
        raise LocalProtocolError("group member credential: the fingerprint is not the identity key's")
    binding = identity.sign(_LABEL, _binding_message(account, device, signature_key))
    credential = MemberCredential(account, device, fingerprint, binding)
    _check(credential, remote=False)
    return credential


def verify_binding(cred: MemberCredential, *, identity_public: bytes, signature_key: bytes) -> None:
    """Check ``cred`` against the device record's identity key (``identity_public``, its
    encoding as the record holds it) and the leaf's MLS signature key: the fingerprint is that
    key's and the binding verifies; else ``group_credential``."""
    try:
        identity = VerifyKey.from_bytes(identity_public)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"group member credential: the device identity key is malformed: {exc}", code="group_credential") from None
    if identity.fingerprint != cred.fingerprint:
        raise RemoteProtocolError(
            f"group member credential of device {cred.device} of {cred.account} names another identity key", code="group_credential"
        )
    try:
        identity.verify(_LABEL, _binding_message(cred.account, cred.device, signature_key), cred.binding)
    except RemoteProtocolError:
        raise RemoteProtocolError(
            f"group member credential of device {cred.device} of {cred.account} is not signed by its identity key", code="group_credential"
        ) from None


def leaf_member(leaf: LeafNode) -> MemberCredential:
    """The member credential of a leaf (structure only: see :func:`verify_binding`)."""
    if leaf.credential.credential_type != CredentialType.BASIC:
        raise _malformed(f"credential type {leaf.credential.credential_type}, not basic")
    return MemberCredential.from_identity(leaf.credential.identity)
