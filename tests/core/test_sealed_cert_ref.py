"""Sealed boxes that name the sender certificate by reference (core/certs.py certificate_ref,
core/sealed_sender.py ``ref``): the format, what is refused, and that a reference is verified
exactly like a certificate in full."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core.certs import CERT_REF_LEN, certificate_ref
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.crypto import CryptoMode
from sonet.core.ratchet import is_initial, looks_initial
from sonet.core.sealed_sender import Unsealed, unseal

from .ratchet.helpers import edit, initial, start
from .test_sealed_sender import DAY, HYBRID, MESSAGE, NOW, box, certificate, open_, raw_box, recipient, sender_device

REF = certificate_ref(certificate())


def test_a_reference_names_exactly_one_certificate() -> None:
    assert len(REF) == CERT_REF_LEN
    assert certificate_ref(certificate()) == REF
    assert certificate_ref(certificate(account="carol@alpha.example")) != REF
    assert certificate_ref(certificate()[:-1] + bytes([certificate()[-1] ^ 1])) != REF


def test_a_box_by_reference_opens_to_the_reference_and_is_much_smaller() -> None:
    key, fp = recipient()
    by_ref = box(certificate=None, certificate_ref=REF)
    assert unseal(by_ref, my_key=key, my_fp=fp) == Unsealed(certificate_raw=None, certificate_ref=REF, message=MESSAGE, msg_type=2)
    assert len(box()) - len(by_ref) >= len(certificate()) - 200  # padding buckets aside
    assert REF not in by_ref  # inside the encryption


def test_a_reference_resolves_only_through_the_holder_and_is_verified_at_use() -> None:
    held = {REF: certificate()}
    opened = open_(box(certificate=None, certificate_ref=REF), held_certificate=held.get)
    assert opened.certificate.identity == sender_device().public and opened.message == MESSAGE
    with pytest.raises(VerifyError) as info:
        open_(box(certificate=None, certificate_ref=REF))  # nothing held
    assert info.value.code == "certificate_unknown"
    with pytest.raises(VerifyError) as info:  # the held certificate expired since
        open_(box(certificate=None, certificate_ref=REF), held_certificate=held.get, now=NOW + DAY)
    assert info.value.code == "certificate_expired"


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"certificate_ref": REF}, "not both"),
        ({"certificate": None, "certificate_ref": REF[:-1]}, "32 bytes"),
        ({"certificate": None, "certificate_ref": "x" * 32}, "32 bytes"),
        ({"certificate": None}, "missing"),
    ],
)
def test_seal_refuses_a_bad_reference(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        box(**kw)


def test_a_box_that_starts_a_session_always_carries_the_full_certificate() -> None:
    first = initial(HYBRID)[3]
    with pytest.raises(LocalProtocolError, match="full sender certificate"):
        box(certificate=None, certificate_ref=REF, message=first)
    key, fp = recipient()
    with pytest.raises(RemoteProtocolError, match="full sender certificate"):
        unseal(raw_box({"v": 1, "ref": REF, "msg": first, "type": 2}), my_key=key, my_fp=fp)


@pytest.mark.parametrize(
    "inner",
    [
        {"v": 1, "ref": REF[:-1], "msg": MESSAGE, "type": 2},
        {"v": 1, "ref": REF + b"\0", "msg": MESSAGE, "type": 2},
        {"v": 1, "ref": "r" * 32, "msg": MESSAGE, "type": 2},
        {"v": 1, "ref": REF, "cert": certificate(), "msg": MESSAGE, "type": 2},
        {"v": 1, "ref": REF, "msg": MESSAGE, "type": 2, "record": b"record"},
        {"v": 2, "ref": REF, "msg": MESSAGE, "type": 2},
    ],
    ids=["short", "long", "str", "both", "record", "version"],
)
def test_malformed_references_are_refused(inner: dict[str, Any]) -> None:
    key, fp = recipient()
    with pytest.raises(RemoteProtocolError) as info:
        unseal(raw_box(inner), my_key=key, my_fp=fp)
    assert not isinstance(info.value, (DecryptError, VerifyError))


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_the_cheap_initial_check_agrees_with_decoding(mode: CryptoMode) -> None:
    """seal and unseal tell a message that starts a session by its first bytes (looks_initial):
    the same answer as decoding it, for every message the ratchet makes."""
    pair = start(mode, reply=False)
    first = initial(mode)[3]
    wrapped = pair.a2b(b"still wrapped: bob has not answered")
    pair.b2a(b"answer")
    plain = pair.a2b(b"plain")
    for message, expected in ((first, True), (wrapped, True), (plain, False), (pair.b2a(b"from bob"), False)):
        assert is_initial(message) is expected and looks_initial(message) is expected
    assert not looks_initial(edit(plain, lambda value: value.update(x=1)))  # another shape: not a wrapped one
