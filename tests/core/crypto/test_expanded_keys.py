"""Private keys kept expanded (core/crypto/expanded.py): built once per seed while in use,
bounded, dropped on request, and never shown."""

from __future__ import annotations

import os

import pytest

from sonet.core.crypto import CryptoMode, HpkePrivateKey, MlKemKeyPair
from sonet.core.crypto.expanded import ExpandedKeys
from sonet.core.errors import LocalProtocolError
from sonet.core.ratchet import MLKEM768, X25519, PrekeySecret


def counting_builder() -> tuple[list[bytes], ExpandedKeys[MlKemKeyPair]]:
    built: list[bytes] = []

    def build(seed: bytes) -> MlKemKeyPair:
        built.append(seed)
        return MlKemKeyPair(seed)

    return built, ExpandedKeys(build, 2)


def test_a_seed_is_built_once_while_kept() -> None:
    built, keys = counting_builder()
    seed = os.urandom(64)
    first = keys.get(seed)
    assert keys.get(bytes(bytearray(seed))) is first and built == [seed]
    assert first.public == MlKemKeyPair(seed).public


def test_least_recently_used_out_and_forget() -> None:
    built, keys = counting_builder()
    a, b, c = (os.urandom(64) for _ in range(3))
    keys.get(a)
    keys.get(b)
    keys.get(a)  # a is now the most recently used
    keys.get(c)  # evicts b
    assert a in keys and c in keys and b not in keys and len(keys) == 2
    keys.forget(a)
    keys.forget(a)  # twice is fine
    keys.forget(None)
    assert a not in keys and len(keys) == 1
    keys.get(a)
    assert built.count(a) == 2  # forgotten: built again


def test_put_keeps_a_key_already_built() -> None:
    built, keys = counting_builder()
    seed = os.urandom(64)
    pair = MlKemKeyPair(seed)
    keys.put(seed, pair)
    assert keys.get(seed) is pair and built == []


def test_a_bad_seed_is_refused_and_nothing_kept() -> None:
    _built, keys = counting_builder()
    with pytest.raises(LocalProtocolError):
        keys.get(b"short")
    assert len(keys) == 0
    with pytest.raises(LocalProtocolError):
        keys.get(bytearray(64))  # type: ignore[arg-type]  # not bytes: built (and refused), never kept
    assert len(keys) == 0
    with pytest.raises(ValueError):
        ExpandedKeys(MlKemKeyPair, 0)


def test_repr_shows_no_secrets() -> None:
    _built, keys = counting_builder()
    seed = os.urandom(64)
    keys.get(seed)
    assert repr(keys) == "ExpandedKeys(1 keys)"
    assert seed.hex()[:8] not in repr(keys)


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_a_stored_hpke_key_read_again_is_the_expanded_one(mode: CryptoMode) -> None:
    key = HpkePrivateKey.generate(mode, os.urandom)
    stored = key.private_bytes()
    first = HpkePrivateKey.from_private_bytes(stored)
    assert HpkePrivateKey.from_private_bytes(bytes(bytearray(stored))) is first
    assert first.public == key.public
    box = key.public.seal(b"to the device", b"info")
    assert first.open(box, b"info") == b"to the device"


def test_the_same_seed_in_another_mode_is_another_key() -> None:
    seed = os.urandom(32)
    classical = HpkePrivateKey.from_private_bytes(HpkePrivateKey(CryptoMode.CLASSICAL, seed).private_bytes())
    hybrid = HpkePrivateKey.from_private_bytes(HpkePrivateKey(CryptoMode.HYBRID, seed).private_bytes())
    assert classical.mode is CryptoMode.CLASSICAL and hybrid.mode is CryptoMode.HYBRID
    assert classical.public != hybrid.public


@pytest.mark.parametrize("kind", [X25519, MLKEM768])
def test_a_prekey_secret_builds_its_key_once(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = PrekeySecret(kind, 7, os.urandom(32 if kind == X25519 else 64))
    monkeypatch.setattr(MlKemKeyPair, "__init__", lambda *a: pytest.fail("rebuilt"))
    pair = secret.x25519() if kind == X25519 else secret.mlkem()
    assert pair.public == secret.public
    with pytest.raises(LocalProtocolError):
        secret.mlkem() if kind == X25519 else secret.x25519()
