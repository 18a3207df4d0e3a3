"""VerifyKey.forget_parsed (memory per idle connection, docs/performance.md): a key that
dropped its parsed ML-DSA component verifies exactly as before, parsing it again, and still
refuses what it refused."""

from __future__ import annotations

import os

import pytest

from sonet.core.crypto import CryptoMode, SigningKey, VerifyKey
from sonet.core.errors import VerifyError


@pytest.mark.parametrize("mode", list(CryptoMode))
def test_a_key_that_forgot_its_parsed_component_verifies_and_refuses_as_before(mode: CryptoMode) -> None:
    signer = SigningKey.generate(mode, os.urandom)
    key = VerifyKey.from_bytes(signer.public.to_bytes())
    signature = signer.sign(b"label", b"message")
    key.forget_parsed()
    assert key == signer.public and key.fingerprint == signer.public.fingerprint
    key.verify(b"label", b"message", signature)
    key.forget_parsed()
    with pytest.raises(VerifyError):
        key.verify(b"label", b"massage", signature)
    tampered = bytearray(signature)
    tampered[-1] ^= 1  # the ML-DSA part in hybrid and PQ modes
    key.forget_parsed()
    with pytest.raises(VerifyError):
        key.verify(b"label", b"message", bytes(tampered))
