"""EncryptWithLabel with a large context (a Welcome's encrypted GroupInfo, sealed to every new
member): the context's encoding and its HPKE info_hash are made once and reused, which must
never make one context's ciphertext open under another context."""

from __future__ import annotations

import random

import pytest

from sonet.core.errors import DecryptError
from sonet.core.mls.crypto import cipher_suite


@pytest.mark.parametrize("suite", [1, 0x004D])
def test_a_large_context_sealed_to_many_recipients_opens_for_each_and_only_under_itself(suite: int) -> None:
    rng = random.Random(suite)
    cs = cipher_suite(suite)
    keys = [cs.hpke_key_pair(rng.randbytes) for _ in range(3)]
    context = rng.randbytes(100_000)
    same_length = bytes([context[0] ^ 1]) + context[1:]  # equal length, one byte apart
    sealed = [cs.encrypt_with_label(pub, b"Welcome", context, b"secrets %d" % i, rng.randbytes) for i, (_, pub) in enumerate(keys)]
    # an equal copy (another object) is the same context
    copy = bytes(bytearray(context))
    for i, ((priv, _), (kem_output, ciphertext)) in enumerate(zip(keys, sealed)):
        assert cs.decrypt_with_label(priv, b"Welcome", copy, kem_output, ciphertext) == b"secrets %d" % i
    # the other context, used last, must not be answered from what the first one left behind
    other = cs.encrypt_with_label(keys[0][1], b"Welcome", same_length, b"other", rng.randbytes)
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(keys[0][0], b"Welcome", context, *other)
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(keys[1][0], b"Welcome", same_length, *sealed[1])
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(keys[1][0], b"UpdatePathNode", context, *sealed[1])
    assert cs.decrypt_with_label(keys[0][0], b"Welcome", same_length, *other) == b"other"
