"""VerifyKey.verify(remember=True): a success is kept by the exact bytes checked and passes again
without the arithmetic; anything that differs in one byte (key, label, message, signature) is
checked in full, and a failure is never kept."""

from __future__ import annotations

import os

import pytest

from sonet.core.crypto import CryptoMode, SigningKey, VerifyKey
from sonet.core.crypto import sign as sign_module
from sonet.core.errors import VerifyError


def flipped(data: bytes, at: int = -1) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 1
    return bytes(changed)


@pytest.mark.parametrize("mode", list(CryptoMode))
def test_a_remembered_success_passes_again_and_nothing_else_does(mode: CryptoMode, monkeypatch: pytest.MonkeyPatch) -> None:
    signer, other = SigningKey.generate(mode, os.urandom), SigningKey.generate(mode, os.urandom)
    signature = signer.sign(b"label", b"message")
    checked: list[bytes] = []
    real = VerifyKey._verify

    def counting(self: VerifyKey, label: bytes, msg: bytes, sig: bytes) -> None:
        checked.append(msg)
        real(self, label, msg, sig)

    monkeypatch.setattr(VerifyKey, "_verify", counting)
    key = VerifyKey.from_bytes(signer.public.to_bytes())  # another object, the same bytes
    signer.public.verify(b"label", b"message", signature, remember=True)
    key.verify(b"label", b"message", signature, remember=True)
    assert len(checked) == 1  # the second time from what was kept
    key.verify(b"label", b"message", signature)  # without remember: always checked
    assert len(checked) == 2

    for attempt in (
        lambda: key.verify(b"label", b"message", flipped(signature), remember=True),
        lambda: key.verify(b"label", b"message", flipped(signature, 0), remember=True),
        lambda: key.verify(b"label", b"massage", signature, remember=True),
        lambda: key.verify(b"lab3l", b"message", signature, remember=True),
        lambda: other.public.verify(b"label", b"message", signature, remember=True),
    ):
        for _ in range(2):  # a failure is not kept either: refused again, checked again
            before = len(checked)
            with pytest.raises(VerifyError):
                attempt()
            assert len(checked) == before + 1


def test_what_is_kept_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sign_module, "_verified", {})
    signer = SigningKey.generate(CryptoMode.CLASSICAL, os.urandom)
    for i in range(sign_module._VERIFIED_MAX + 5):
        message = i.to_bytes(4, "big")
        signer.public.verify(b"label", message, signer.sign(b"label", message), remember=True)
        assert 0 < len(sign_module._verified) <= sign_module._VERIFIED_MAX
