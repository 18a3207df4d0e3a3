"""Claims of docs/security.md that no test held as stated:

- "Implementation rules": "key objects print as `<secret>`" (every key class, and the device
  profile that holds them all); "Commitments and MACs are compared in constant time
  (`core.crypto.ct_equal`)": the decision of each such check is the constant-time compare's
  (made to answer True, it lets a wrong value through; so no `==` decides beside it).
- "Message requests and access tokens": the token is exactly
  ``epoch || HMAC-SHA256(secret, "sonet-access-v1" || epoch || account)[:16]`` under a secret
  derived one-way from the node's identity key, with 30-day epochs, valid in its epoch and the
  next, "checked in constant time".
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import pytest

from sonet.client import cert_refs
from sonet.client.state import Profile
from sonet.core import handshake_guard, provisioning
from sonet.core.access import ACCESS_EPOCH_MS, access_secret, access_token_valid, issue_access_token
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey
from sonet.core.crypto.aead import Aead
from sonet.core.crypto.rfc9180 import KEMS
from sonet.core.crypto.stream import StreamOpener, StreamSealer
from sonet.core.handshake_guard import CookieJar

NODE_KEY = b"\x07" * 32
ACCOUNT = "alice@alpha.example"
DAY_MS = 86_400_000


# Access tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("now", [0, ACCESS_EPOCH_MS - 1, 1_700_000_000_000, 4_000_000_000_000])
def test_an_access_token_is_the_documented_mac(now: int) -> None:
    secret = access_secret(NODE_KEY)
    # "the secret derived one-way from the node's identity key": an HMAC of it, not the key
    assert secret == hmac.new(NODE_KEY, b"sonet-access-secret-v1", hashlib.sha256).digest() != NODE_KEY
    assert access_secret(b"\x08" * 32) != secret
    # "the epoch 30 days"
    epoch = now // (30 * DAY_MS)
    head = epoch.to_bytes(4, "big")
    expected = head + hmac.new(secret, b"sonet-access-v1" + head + ACCOUNT.encode(), hashlib.sha256).digest()[:16]
    assert issue_access_token(secret, ACCOUNT, now_ms=now) == expected
    # "valid in its epoch and the next (30 to 60 days after the account last wrote)"
    start = epoch * 30 * DAY_MS
    assert access_token_valid(secret, ACCOUNT, expected, now_ms=start)
    assert access_token_valid(secret, ACCOUNT, expected, now_ms=start + 60 * DAY_MS - 1)
    assert not access_token_valid(secret, ACCOUNT, expected, now_ms=start + 60 * DAY_MS)


def _decided_by(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, check: Callable[[], bool]) -> list[tuple[Any, ...]]:
    """Run ``check`` (which must be False: a wrong value) with ``owner.name`` answering True
    and recording its calls: True then shows the compare decides."""
    calls: list[tuple[Any, ...]] = []

    def always(*args: Any) -> bool:
        calls.append(args)
        return True

    assert not check()
    monkeypatch.setattr(owner, name, always)
    assert check(), f"{name} was not what decided"
    return calls


def test_access_tokens_are_checked_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = access_secret(NODE_KEY)
    token = bytearray(issue_access_token(secret, ACCOUNT, now_ms=1_700_000_000_000))
    token[-1] ^= 1
    calls = _decided_by(
        monkeypatch, hmac, "compare_digest", lambda: access_token_valid(secret, ACCOUNT, bytes(token), now_ms=1_700_000_000_000)
    )
    assert calls and calls[0][0] == bytes(token[4:])


def test_handshake_cookies_are_checked_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    jar = CookieJar(os.urandom)
    cookie = jar.mint(b"192.0.2.1", b"d" * 16, 0)
    wrong = bytes([cookie[0] ^ 1]) + cookie[1:]
    calls = _decided_by(monkeypatch, handshake_guard, "ct_equal", lambda: jar.valid(wrong, b"192.0.2.1", b"d" * 16, 0))
    assert all(args[0] == wrong for args in calls)


def test_link_commitments_are_checked_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ephemeral = HpkePrivateKey.generate(CryptoMode.HYBRID, os.urandom).public
    commitment = provisioning.link_commitment(ephemeral)
    wrong = bytes([commitment[0] ^ 1]) + commitment[1:]
    calls = _decided_by(monkeypatch, provisioning, "ct_equal", lambda: provisioning.check_commitment(wrong, ephemeral))
    assert calls[0][0] == wrong


class _Refs:
    """The one DeviceState read ``is_bound`` makes: the refs kept for a peer device."""

    def __init__(self, refs: list[bytes]) -> None:
        self._raw = b"".join(refs)

    def get(self, key: str) -> bytes:
        return self._raw


def test_certificate_references_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # "A recipient resolves a reference only to a certificate ... stored for the device it names (constant-time compare)"
    held = [os.urandom(32), os.urandom(32)]
    state: Any = _Refs(held)
    assert cert_refs.is_bound(state, ACCOUNT, 1, held[1])
    calls = _decided_by(monkeypatch, cert_refs, "ct_equal", lambda: cert_refs.is_bound(state, ACCOUNT, 1, os.urandom(32)))
    assert len(calls) == len(held)  # every held ref compared: no early exit on a match


# Key objects print as <secret> -----------------------------------------------------------


def _secret_views(secret: bytes) -> list[str]:
    """How a secret could show in a text: its hex, Python's bytes repr, a prefix of either."""
    return [secret.hex(), secret.hex()[:16], repr(secret)[:20]]


@pytest.mark.parametrize("mode", list(CryptoMode))
def test_key_objects_print_as_secret(mode: CryptoMode) -> None:
    signing = SigningKey.generate(mode, os.urandom)
    hpke = HpkePrivateKey.generate(mode, os.urandom)
    aead_key, stream_key = os.urandom(32), os.urandom(32)
    shown = {
        "SigningKey": (signing, signing.private_bytes()),
        "HpkePrivateKey": (hpke, hpke.private_bytes()),
        "Aead": (Aead(aead_key), aead_key),
        "StreamSealer": (StreamSealer(stream_key), stream_key),
        "StreamOpener": (StreamOpener(stream_key), stream_key),
    }
    for name, (key, secret) in shown.items():
        for text in (repr(key), str(key), f"{key!r:>10}"):
            assert "<secret>" in text, (name, text)
            for view in _secret_views(secret):
                assert view not in text, (name, text)


@pytest.mark.parametrize("kem_id", sorted(KEMS))
def test_rfc9180_private_keys_print_as_secret(kem_id: int) -> None:
    kem = KEMS[kem_id]
    sk, _pk = kem.derive_key_pair(os.urandom(64))
    key = kem.private_key(sk)
    assert repr(key) == f"KemPrivateKey(0x{kem_id:04x}, <secret>)"
    assert all(view not in repr(key) for view in _secret_views(sk))


@pytest.mark.parametrize("mode", list(CryptoMode))
def test_the_device_profile_prints_no_key(mode: CryptoMode) -> None:
    identity, account = SigningKey.generate(mode, os.urandom), SigningKey.generate(mode, os.urandom)
    hpke = HpkePrivateKey.generate(mode, os.urandom)
    identity_dh = os.urandom(32)
    profile = Profile(
        address=ACCOUNT,
        device_id=1,
        node_url="ws://127.0.0.1:1",
        node_fingerprint="f" * 32,
        mode=mode,
        identity=identity,
        identity_dh=identity_dh,
        hpke=hpke,
        account_key=account,
    )
    text = repr(profile)
    assert text.count("<secret>") == 3  # identity, hpke, account_key; identity_dh is not shown
    for secret in (identity.private_bytes(), account.private_bytes(), hpke.private_bytes(), identity_dh):
        for view in _secret_views(secret):
            assert view not in text
