"""CertificateCache (core.certs): the node signature is checked once per certificate, node and
node key; the validity window on every use; nothing that failed is remembered."""

from __future__ import annotations

import pytest

from sonet.core.certs import CertificateCache, certificate_node
from sonet.core.crypto import VerifyKey
from sonet.core.errors import RemoteProtocolError, VerifyError

from .test_certs import ACCOUNT, DAY, NODE, NOW, SKEW, issue, node_key


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The labels of every signature verification made while the test runs."""
    calls: list[bytes] = []
    original = VerifyKey.verify

    def counting(self: VerifyKey, label: bytes, msg: bytes, signature: bytes) -> None:
        calls.append(label)
        original(self, label, msg, signature)

    monkeypatch.setattr(VerifyKey, "verify", counting)
    return calls


def _verify(cache: CertificateCache, raw: bytes, **kw: object):  # noqa: ANN202
    args: dict[str, object] = dict(node_key=node_key().public, node=NODE, now=NOW + 1)
    args.update(kw)
    return cache.verify(raw, **args)  # type: ignore[arg-type]


def test_the_signature_is_checked_once_per_certificate(signature_checks: list[bytes]) -> None:
    cache, raw = CertificateCache(), issue()
    first = _verify(cache, raw)
    for later in range(2, 6):
        assert _verify(cache, bytes(bytearray(raw)), now=NOW + later) is first  # equal bytes, another object
    assert len(signature_checks) == 1 and len(cache) == 1
    assert first.matches(first.identity, ACCOUNT)
    _verify(cache, issue(device=2))  # another certificate: checked
    assert len(signature_checks) == 2 and len(cache) == 2


def test_the_validity_window_is_checked_on_every_use() -> None:
    cache, raw = CertificateCache(), issue()
    _verify(cache, raw)
    with pytest.raises(VerifyError) as expired:
        _verify(cache, raw, now=NOW + DAY)
    assert expired.value.code == "certificate_expired"
    with pytest.raises(VerifyError) as early:
        _verify(cache, raw, now=NOW - SKEW - 1)
    assert early.value.code == "certificate_not_yet_valid"
    assert _verify(cache, raw, now=NOW + DAY - 1).expires == NOW + DAY


def test_a_cached_certificate_does_not_pass_under_another_node_key_or_name(signature_checks: list[bytes]) -> None:
    cache, raw = CertificateCache(), issue()
    _verify(cache, raw)
    with pytest.raises(VerifyError) as forged:
        _verify(cache, raw, node_key=node_key("beta.example").public)
    assert forged.value.code == "certificate_forged"
    with pytest.raises(VerifyError) as mismatch:
        _verify(cache, raw, node="beta.example")
    assert mismatch.value.code == "certificate_mismatch"
    assert len(signature_checks) == 3  # both were checked in full, not answered from the cache
    assert _verify(cache, raw).account == ACCOUNT


def test_a_certificate_that_fails_is_not_remembered(signature_checks: list[bytes]) -> None:
    cache = CertificateCache()
    forged = issue(key=node_key("beta.example"))
    for _ in range(2):
        with pytest.raises(VerifyError):
            _verify(cache, forged)
    expired = issue()
    with pytest.raises(VerifyError):
        _verify(cache, expired, now=NOW + DAY)
    assert len(cache) == 0 and len(signature_checks) == 3


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(signature_checks: list[bytes]) -> None:
    cache = CertificateCache(size=2)
    a, b, c = issue(device=1), issue(device=2), issue(device=3)
    _verify(cache, a)
    _verify(cache, b)
    _verify(cache, a)  # a is now the most recent
    _verify(cache, c)  # evicts b
    assert len(cache) == 2 and len(signature_checks) == 3
    _verify(cache, a)
    assert len(signature_checks) == 3
    _verify(cache, b)
    assert len(signature_checks) == 4
    with pytest.raises(ValueError):
        CertificateCache(size=0)


def test_node_is_certificate_node_with_or_without_a_cached_certificate() -> None:
    cache, raw = CertificateCache(), issue()
    assert cache.node(raw) == certificate_node(raw) == NODE
    _verify(cache, raw)
    assert cache.node(raw) == NODE
    for malformed in (b"", b"\xa0", "text"):
        with pytest.raises(RemoteProtocolError) as info:
            cache.node(malformed)  # type: ignore[arg-type]
        assert info.value.code == "certificate_malformed"
        with pytest.raises(RemoteProtocolError):
            _verify(cache, malformed)
