"""Encryption at rest for a device's secrets (keys, session records, prekey secrets, messages).

The state key comes from ``SONET_PASSPHRASE`` through Argon2id (salt and cost parameters in
``vault.json``), or, when no passphrase is set, from a random key file ``state.key`` (0600).
Each value is sealed with AES-256-GCM under a fresh random nonce, with the value's table and
row name as associated data, so a value cannot be moved to another row unnoticed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sonet.core.crypto import Aead
from sonet.core.crypto.passphrase import DEFAULT_MEM, DEFAULT_OPS, SALT_LEN, derive_key
from sonet.core.errors import DecryptError

__all__ = ["Vault", "VaultError", "PASSPHRASE_ENV"]

PASSPHRASE_ENV = "SONET_PASSPHRASE"
_NONCE = 12


class VaultError(Exception):
    """The state key is missing or wrong (one clear line)."""


class Vault:
    def __init__(self, key: bytes) -> None:
        self._aead = Aead(key)

    @classmethod
    def open(cls, home: Path, *, create: bool) -> "Vault":
        meta_path, key_path = home / "vault.json", home / "state.key"
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta["kind"] == "passphrase":
                if not passphrase:
                    raise VaultError(f"{home} is protected by a passphrase: set {PASSPHRASE_ENV}")
                key = derive_key(passphrase.encode(), bytes.fromhex(meta["salt"]), ops=meta["ops"], mem=meta["mem"])
            else:
                try:
                    key = key_path.read_bytes()
                except FileNotFoundError:
                    raise VaultError(f"{key_path} is missing: the device state cannot be decrypted") from None
            vault = cls(key)
            vault._check(bytes.fromhex(meta["check"]), home)
            return vault
        if not create:
            raise VaultError(f"no device state in {home}")
        if passphrase:
            salt = os.urandom(SALT_LEN)
            key = derive_key(passphrase.encode(), salt)
            meta = {"kind": "passphrase", "salt": salt.hex(), "ops": DEFAULT_OPS, "mem": DEFAULT_MEM}
        else:
            key = os.urandom(32)
            _write_private(key_path, key)
            meta = {"kind": "keyfile"}
        vault = cls(key)
        meta["check"] = vault.seal(b"sonet-vault-check", b"vault").hex()
        _write_private(meta_path, json.dumps(meta).encode())
        return vault

    def _check(self, sealed: bytes, home: Path) -> None:
        try:
            self.open_value(sealed, b"vault")
        except DecryptError:
            raise VaultError(f"wrong passphrase or key file for {home}") from None

    def seal(self, value: bytes, where: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.seal(nonce, value, where)

    def open_value(self, sealed: bytes, where: bytes) -> bytes:
        return self._aead.open(sealed[:_NONCE], sealed[_NONCE:], where)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) all or nothing: a temporary file, fsynced, renamed over it, and the
    directory fsynced. ``vault.json`` is written last, so a process stopped half-way leaves no
    ``vault.json`` and the next start makes the vault afresh (nothing was sealed yet)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover of a stopped process: made anew, so 0600 for sure
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
