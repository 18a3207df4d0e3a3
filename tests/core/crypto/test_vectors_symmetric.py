"""Wycheproof AES-GCM, ChaCha20-Poly1305, HKDF-SHA256 and HMAC-SHA256 through our wrappers.

Our ``Aead`` handles 256-bit keys, 96-bit nonces and 128-bit tags; AES-GCM vectors of other key or
IV sizes run through ``cryptography``'s AESGCM directly, except the IV sizes AESGCM refuses
(1, 2, 4, 6 and 257 bytes: outside its 8..128-byte nonce range), which are counted, not run.
"""

from __future__ import annotations

from collections import Counter

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sonet.core.crypto.aead import AES_256_GCM, CHACHA20_POLY1305, Aead
from sonet.core.crypto.kdf import ct_equal, hkdf, hmac_sha256
from sonet.core.errors import DecryptError, LocalProtocolError
from tests.vectors import unhex, wycheproof


def _aead_case(t: dict) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    return unhex(t["key"]), unhex(t["iv"]), unhex(t["aad"]), unhex(t["msg"]), unhex(t["ct"]), unhex(t["tag"])


def test_wycheproof_aes_gcm() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("aes_gcm"):
        key, iv, aad, msg, ct, tag = _aead_case(t)
        valid = t["result"] == "valid"
        assert t["result"] in ("valid", "invalid"), t["tcId"]
        if group["keySize"] == 256 and group["ivSize"] == 96 and group["tagSize"] == 128:
            aead = Aead(key, AES_256_GCM)
            if valid:
                assert aead.seal(iv, msg, aad) == ct + tag, t["tcId"]
                assert aead.open(iv, ct + tag, aad) == msg, t["tcId"]
            else:
                with pytest.raises(DecryptError):
                    aead.open(iv, ct + tag, aad)
            seen[f"ours {t['result']}"] += 1
            continue
        if not 8 <= len(iv) <= 128:
            if valid:  # AESGCM cannot take this nonce size at all: counted, not run
                with pytest.raises(ValueError):
                    AESGCM(key).encrypt(iv, msg, aad)
                seen["valid, IV size unsupported by AESGCM"] += 1
                continue
            with pytest.raises((ValueError, InvalidTag)):
                AESGCM(key).decrypt(iv, ct + tag, aad)
            seen["AESGCM invalid"] += 1
            continue
        cipher = AESGCM(key)
        if valid:
            assert cipher.encrypt(iv, msg, aad) == ct + tag, t["tcId"]
            assert cipher.decrypt(iv, ct + tag, aad) == msg, t["tcId"]
        else:
            with pytest.raises(InvalidTag):
                cipher.decrypt(iv, ct + tag, aad)
        seen[f"AESGCM {t['result']}"] += 1
    assert seen == {
        "ours valid": 39,
        "ours invalid": 27,
        "AESGCM valid": 163,
        "AESGCM invalid": 60,
        "valid, IV size unsupported by AESGCM": 27,
    }


def test_wycheproof_chacha20_poly1305() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("chacha20_poly1305"):
        key, iv, aad, msg, ct, tag = _aead_case(t)
        assert group["keySize"] == 256
        aead = Aead(key, CHACHA20_POLY1305)
        if t["result"] == "valid":
            assert (group["ivSize"], group["tagSize"]) == (96, 128)
            assert aead.seal(iv, msg, aad) == ct + tag, t["tcId"]
            assert aead.open(iv, ct + tag, aad) == msg, t["tcId"]
        else:
            assert t["result"] == "invalid"
            # Includes nonces of the wrong size (0..32 bytes but not 12): refused as DecryptError.
            with pytest.raises(DecryptError):
                aead.open(iv, ct + tag, aad)
        seen[t["result"]] += 1
    assert seen == {"valid": 256, "invalid": 69}


def test_aead_refuses_bad_key_and_nonce_sizes() -> None:
    with pytest.raises(LocalProtocolError):
        Aead(bytes(16))
    aead = Aead(bytes(32), CHACHA20_POLY1305)
    with pytest.raises(LocalProtocolError):
        aead.seal(bytes(8), b"x")
    with pytest.raises(DecryptError):
        aead.open(bytes(12), bytes(15))  # shorter than a tag
    assert "secret" in repr(aead) and "00" not in repr(aead)


def test_wycheproof_hkdf_sha256() -> None:
    seen: Counter[str] = Counter()
    for _, t in wycheproof("hkdf_sha256"):
        ikm, salt, info, size = unhex(t["ikm"]), unhex(t["salt"]), unhex(t["info"]), t["size"]
        if t["result"] == "valid":
            assert hkdf(ikm, salt=salt, info=info, length=size) == unhex(t["okm"]), t["tcId"]
        else:
            assert t["result"] == "invalid" and "SizeTooLarge" in t["flags"]
            assert size > 255 * 32
            with pytest.raises((ValueError, LocalProtocolError)):
                hkdf(ikm, salt=salt, info=info, length=size)
        seen[t["result"]] += 1
    assert seen == {"valid": 83, "invalid": 3}


def test_wycheproof_hmac_sha256() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("hmac_sha256"):
        key, msg, tag = unhex(t["key"]), unhex(t["msg"]), unhex(t["tag"])
        assert len(tag) * 8 == group["tagSize"]
        full = hmac_sha256(key, msg)
        assert len(full) == 32
        matches = ct_equal(full[: len(tag)], tag)
        assert matches == (t["result"] == "valid"), (t["tcId"], t["flags"])
        seen[t["result"]] += 1
    assert seen == {"valid": 66, "invalid": 108}
