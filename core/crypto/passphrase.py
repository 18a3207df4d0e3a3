"""Passphrase-derived keys for local state: Argon2id (libsodium via pynacl)."""

from __future__ import annotations

import nacl.pwhash

from ..errors import LocalProtocolError

__all__ = ["derive_key", "SALT_LEN", "DEFAULT_OPS", "DEFAULT_MEM"]

SALT_LEN = nacl.pwhash.argon2id.SALTBYTES
#: libsodium's "moderate" profile: about half a second and 256 MiB on this class of machine
DEFAULT_OPS = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
DEFAULT_MEM = nacl.pwhash.argon2id.MEMLIMIT_MODERATE


def derive_key(passphrase: bytes, salt: bytes, *, ops: int = DEFAULT_OPS, mem: int = DEFAULT_MEM) -> bytes:
    if len(salt) != SALT_LEN:
        raise LocalProtocolError("Argon2id salt must be 16 bytes")
    if not passphrase:
        raise LocalProtocolError("empty passphrase")
    return nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem)
