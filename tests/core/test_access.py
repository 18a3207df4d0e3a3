"""Access tokens (core/access.py) and their place in the sealed box (core/sealed_sender.py)."""

from __future__ import annotations

import os

import pytest

from sonet.core.access import ACCESS_EPOCH_MS, ACCESS_TOKEN_LEN, access_secret, access_token_valid, issue_access_token
from sonet.core.client_api import AccessToken, SendBatch
from sonet.core.crypto import CryptoMode, HpkePrivateKey
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import Report, Transit
from sonet.core.sealed_sender import seal, unseal
from sonet.core.wire import decode_frame, encode_frame
from tests.node.kit import opaque_envelope

SECRET = access_secret(b"\x01" * 32)
OTHER_NODE = access_secret(b"\x02" * 32)
ALICE, BOB = "alice@alpha.example", "bob@alpha.example"
NOW = 1_700_000_000_000


def test_a_token_verifies_for_its_account_only() -> None:
    token = issue_access_token(SECRET, ALICE, now_ms=NOW)
    assert len(token) == ACCESS_TOKEN_LEN
    assert access_token_valid(SECRET, ALICE, token, now_ms=NOW)
    # replayed towards another recipient, or checked by another node: refused
    assert not access_token_valid(SECRET, BOB, token, now_ms=NOW)
    assert not access_token_valid(OTHER_NODE, ALICE, token, now_ms=NOW)


@pytest.mark.parametrize("position", [0, 3, 4, ACCESS_TOKEN_LEN - 1])
def test_a_tampered_token_is_refused(position: int) -> None:
    token = bytearray(issue_access_token(SECRET, ALICE, now_ms=NOW))
    token[position] ^= 1
    assert not access_token_valid(SECRET, ALICE, bytes(token), now_ms=NOW)


@pytest.mark.parametrize("token", [b"", b"x" * (ACCESS_TOKEN_LEN - 1), b"x" * (ACCESS_TOKEN_LEN + 1), "text"])
def test_a_malformed_token_is_refused(token: object) -> None:
    assert not access_token_valid(SECRET, ALICE, token, now_ms=NOW)  # type: ignore[arg-type]


def test_a_token_lives_its_epoch_and_the_next() -> None:
    token = issue_access_token(SECRET, ALICE, now_ms=NOW)
    assert access_token_valid(SECRET, ALICE, token, now_ms=NOW + ACCESS_EPOCH_MS)
    assert not access_token_valid(SECRET, ALICE, token, now_ms=NOW + 2 * ACCESS_EPOCH_MS)
    # one from the future (a later epoch) is not accepted early
    later = issue_access_token(SECRET, ALICE, now_ms=NOW + ACCESS_EPOCH_MS)
    assert not access_token_valid(SECRET, ALICE, later, now_ms=NOW)


def test_the_box_carries_the_senders_token_end_to_end() -> None:
    key = HpkePrivateKey.generate(CryptoMode.CLASSICAL, os.urandom)
    token = issue_access_token(SECRET, ALICE, now_ms=NOW)
    fp = "ab" * 16
    box = seal(certificate=b"cert", message=b"msg", msg_type=1, to_key=key.public, recipient_fp=fp, sender_access=token)
    assert unseal(box, my_key=key, my_fp=fp).access == token
    plain = seal(certificate=b"cert", message=b"msg", msg_type=1, to_key=key.public, recipient_fp=fp)
    assert unseal(plain, my_key=key, my_fp=fp).access is None
    with pytest.raises(LocalProtocolError):
        seal(certificate=b"cert", message=b"msg", msg_type=1, to_key=key.public, recipient_fp=fp, sender_access=b"short")


def _batch(*tokens: bytes) -> SendBatch:
    envelopes = (opaque_envelope((ALICE, 1)), opaque_envelope((ALICE, 2)))
    return SendBatch(request=1, envelopes=envelopes, access=tuple(AccessToken(account=ALICE, token=t) for t in tokens))


def test_wire_fields_refuse_malformed_tokens() -> None:
    token = issue_access_token(SECRET, ALICE, now_ms=NOW)
    decoded = decode_frame(encode_frame(_batch(token)))
    assert isinstance(decoded, SendBatch) and decoded.access == (AccessToken(account=ALICE, token=token),)
    for bad in (_batch(token[:-1]), _batch(token, token)):  # truncated; two for one account
        with pytest.raises(LocalProtocolError):
            encode_frame(bad)
    report = Report(id=b"i" * 16, account=ALICE, device=1, outcome="ok", at=NOW)
    Transit(origin="beta.example", dest="alpha.example", hops=1, envelope=None, report=report).check()
    with pytest.raises(ValueError, match="only with an envelope"):
        Transit(origin="beta.example", dest="alpha.example", hops=1, envelope=None, report=report, access=token).check()


def test_unseal_refuses_a_malformed_token_in_the_box() -> None:
    import sonet.core.canonical as canonical
    from sonet.core.sealed_sender import sealed_info

    key = HpkePrivateKey.generate(CryptoMode.CLASSICAL, os.urandom)
    fp = "ab" * 16
    box = seal(certificate=b"cert", message=b"msg", msg_type=1, to_key=key.public, recipient_fp=fp)
    inner = canonical.loads(_unpadded(key.open(box, sealed_info(fp))))
    inner["access"] = b"short"
    forged = key.public.seal(_padded(canonical.dumps(inner)), sealed_info(fp))
    with pytest.raises(RemoteProtocolError):
        unseal(forged, my_key=key, my_fp=fp)


def _padded(data: bytes) -> bytes:
    try:
        from sonet.core.padding import pad
    except ImportError:  # boxes are not padded in this version
        return data
    return pad(data)


def _unpadded(data: bytes) -> bytes:
    try:
        from sonet.core.padding import unpad
    except ImportError:
        return data
    return unpad(data)
