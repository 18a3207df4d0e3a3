"""docs/security.md, "Local state": "... are sealed with AES-256-GCM under a key from
`SONET_PASSPHRASE` (Argon2id) or a 0600 key file, with the row name as associated data."
tests/client/test_state_vault.py shows values do not open elsewhere or altered, and that a
passphrase is needed; here the construction itself, checked with an independent implementation
(cryptography's AESGCM, libsodium's Argon2id): a row's sealed value is nonce || AES-256-GCM of it
under the key file's 32 bytes (or the Argon2id key of the passphrase and the stored salt), with
its row name as the associated data."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import nacl.pwhash
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sonet.client.state import DeviceState
from sonet.client.vault import PASSPHRASE_ENV

VALUE = b"what a device keeps" * 10


def _sealed(state: DeviceState, key: str) -> bytes:
    (value,) = state._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return bytes(value)


def test_a_key_file_home_seals_each_row_with_aes_256_gcm_and_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    state = DeviceState(tmp_path / "home")
    try:
        key_file = tmp_path / "home" / "state.key"
        key = key_file.read_bytes()
        assert len(key) == 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        state.put("claims9/row", VALUE)
        sealed = _sealed(state, "claims9/row")
        assert VALUE not in sealed
        nonce, body = sealed[:12], sealed[12:]
        assert AESGCM(key).decrypt(nonce, body, b"kv/claims9/row") == VALUE
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, body, b"kv/claims9/other")
        state.put("claims9/row", VALUE)  # a fresh nonce each time
        assert _sealed(state, "claims9/row")[:12] != nonce
    finally:
        state.close()


def test_a_passphrase_home_seals_with_the_argon2id_key_of_the_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    state = DeviceState(tmp_path / "home")
    try:
        home = tmp_path / "home"
        assert not (home / "state.key").exists()
        meta = json.loads((home / "vault.json").read_text())
        assert meta["kind"] == "passphrase" and len(bytes.fromhex(meta["salt"])) == 16
        key = nacl.pwhash.argon2id.kdf(
            32, b"correct horse battery staple", bytes.fromhex(meta["salt"]), opslimit=meta["ops"], memlimit=meta["mem"]
        )
        state.put("claims9/row", VALUE)
        sealed = _sealed(state, "claims9/row")
        assert AESGCM(key).decrypt(sealed[:12], sealed[12:], b"kv/claims9/row") == VALUE
    finally:
        state.close()
