"""Sealed-sender boxes (core.sealed_sender): only the recipient device can open them and learn
the sender; the certificate inside is verified against the sender node's key."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from sonet.core import canonical, limits
from sonet.core.certs import issue_certificate
from sonet.core.crypto import CryptoMode, HpkePrivateKey, SigningKey, VerifyKey
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.padding import pad, unpad
from sonet.core.sealed_sender import INFO_PREFIX, OpenedSealed, Unsealed, open_sealed, seal, sealed_info, unseal

from .pairs import flip_bit, identity, rng
from .ratchet.helpers import initial

HYBRID = CryptoMode.HYBRID
MODES = list(CryptoMode)
NODE = "alpha.example"
SENDER = "alice@alpha.example"
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
MESSAGE = b"\x01opaque ratchet message bytes"


def node_key(name: str = NODE) -> SigningKey:
    return identity(HYBRID, f"node {name}")


def sender_device(mode: CryptoMode = HYBRID) -> SigningKey:
    return identity(mode, "alice phone")


@functools.cache
def recipient(mode: CryptoMode = HYBRID, name: str = "bob phone") -> tuple[HpkePrivateKey, str]:
    """(sealed-sender private key, identity fingerprint) of one recipient device."""
    return HpkePrivateKey.generate(mode, rng(("sealed-sender", mode.value, name))), identity(mode, name).public.fingerprint


@functools.cache
def certificate(mode: CryptoMode = HYBRID, node: str = NODE, account: str = SENDER) -> bytes:
    return issue_certificate(
        node_key(node), node=node, account=account, device=3, identity=sender_device(mode).public, now=NOW, validity_ms=DAY
    )


def box(mode: CryptoMode = HYBRID, **kw: Any) -> bytes:
    key, fp = recipient(mode)
    args: dict[str, Any] = dict(certificate=certificate(mode), message=MESSAGE, msg_type=2, to_key=key.public, recipient_fp=fp)
    args.update(kw)
    return seal(**args)


def keys(name: str) -> VerifyKey | None:
    return {NODE: node_key().public, "beta.example": node_key("beta.example").public}.get(name)


def open_(body: bytes, mode: CryptoMode = HYBRID, **kw: Any) -> OpenedSealed:
    key, fp = recipient(mode)
    args: dict[str, Any] = dict(my_key=key, my_fp=fp, node_keys=keys, now=NOW + 1000)
    args.update(kw)
    return open_sealed(body, **args)


def raw_box(inner: Any, mode: CryptoMode = HYBRID) -> bytes:
    """A box around an arbitrary inner value (a malicious sender's tool)."""
    key, fp = recipient(mode)
    plaintext = inner if isinstance(inner, bytes) else canonical.dumps(inner)
    return key.public.seal(pad(plaintext), sealed_info(fp))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_round_trip(mode: CryptoMode) -> None:
    key, fp = recipient(mode)
    body = box(mode)
    assert unseal(body, my_key=key, my_fp=fp) == Unsealed(certificate_raw=certificate(mode), message=MESSAGE, msg_type=2)
    cert, message, msg_type = open_(body, mode)
    assert (message, msg_type) == (MESSAGE, 2)
    assert (cert.node, cert.account, cert.device) == (NODE, SENDER, 3)
    assert cert.matches(sender_device(mode).public, SENDER)
    assert not cert.matches(identity(mode, "mallory phone").public, SENDER)


def test_empty_message_and_type_bounds_round_trip() -> None:
    for msg_type in (0, limits.MAX_SEALED_MESSAGE_TYPE):
        opened = open_(box(message=b"", msg_type=msg_type))
        assert (opened.message, opened.msg_type) == (b"", msg_type)


def test_largest_message_fits_in_an_envelope_body() -> None:
    message = b"m" * limits.MAX_SEALED_MESSAGE_BYTES
    body = box(message=message)
    assert len(body) <= limits.MAX_ENVELOPE_BODY
    assert open_(body).message == message


def test_info_binds_the_recipient_fingerprint() -> None:
    _, fp = recipient()
    assert sealed_info(fp) == b"sonet-sealed-sender-v2 to " + fp.encode() == INFO_PREFIX + fp.encode()
    assert sealed_info(fp.upper()) == sealed_info(fp)


def test_nothing_in_the_box_names_the_sender() -> None:
    body = box()
    secrets = [
        SENDER.encode(),
        b"alice",
        NODE.encode(),
        sender_device().public.to_bytes(),
        sender_device().public.fingerprint.encode(),
        certificate(),
        MESSAGE,
    ]
    for secret in secrets:
        assert secret not in body
    # Also no recognisable slice of the sender's identity key.
    ident = sender_device().public.to_bytes()
    assert all(ident[i : i + 16] not in body for i in range(0, len(ident) - 16, 64))


def test_boxes_are_randomised() -> None:
    assert box() != box()


# Wrong recipient, tampering ------------------------------------------------------------


def test_box_for_another_device_does_not_open() -> None:
    other_key, other_fp = recipient(HYBRID, "carol phone")
    with pytest.raises(DecryptError):
        unseal(box(), my_key=other_key, my_fp=other_fp)


def test_box_readdressed_to_another_fingerprint_does_not_open() -> None:
    # Right private key, but the box was sealed for another device fingerprint (info).
    key, _ = recipient()
    _, other_fp = recipient(HYBRID, "carol phone")
    with pytest.raises(DecryptError):
        unseal(box(recipient_fp=other_fp), my_key=key, my_fp=recipient()[1])
    with pytest.raises(DecryptError):
        unseal(box(), my_key=key, my_fp=other_fp)


def test_box_of_another_mode_does_not_open() -> None:
    key, fp = recipient(CryptoMode.CLASSICAL)
    with pytest.raises(DecryptError):
        unseal(box(HYBRID), my_key=key, my_fp=fp)


@pytest.mark.parametrize("where", [0, 1, 100, 1119, 1120, 1200, -17, -1])
def test_tampered_box_does_not_open(where: int) -> None:
    # X-Wing encapsulation is 1120 bytes: flip bits in it, in the ciphertext and in the tag.
    body = box()
    index = where % len(body)
    with pytest.raises(DecryptError):
        unseal(flip_bit(body, index * 8 + 3), my_key=recipient()[0], my_fp=recipient()[1])


@pytest.mark.parametrize("cut", [1, 16, 17, 1000])
def test_truncated_or_extended_box_does_not_open(cut: int) -> None:
    body = box()
    key, fp = recipient()
    with pytest.raises(DecryptError):
        unseal(body[:-cut], my_key=key, my_fp=fp)
    with pytest.raises(DecryptError):
        unseal(body + b"\0" * cut, my_key=key, my_fp=fp)
    with pytest.raises(DecryptError):
        unseal(body[:cut], my_key=key, my_fp=fp)


def test_box_sealed_for_another_purpose_does_not_open_as_sealed_sender() -> None:
    key, fp = recipient()
    other_context = key.public.seal(b"\xa0", b"sonet-provisioning-v1" + fp.encode())  # same key, other info
    with pytest.raises(DecryptError):
        unseal(other_context, my_key=key, my_fp=fp)


def test_oversized_box_is_refused_before_decryption() -> None:
    key, fp = recipient()
    with pytest.raises(RemoteProtocolError) as info:
        unseal(b"\0" * (limits.MAX_ENVELOPE_BODY + 1), my_key=key, my_fp=fp)
    assert not isinstance(info.value, DecryptError)


# Certificate checks in open_sealed -----------------------------------------------------


def test_unknown_sender_node_is_refused() -> None:
    body = box(certificate=certificate(HYBRID, "gamma.example", "alice@gamma.example"))
    with pytest.raises(VerifyError) as info:
        open_(body)
    assert info.value.code == "unknown_node_key"


def test_node_keys_is_asked_for_the_certificates_node() -> None:
    asked: list[str] = []

    def lookup(name: str) -> VerifyKey | None:
        asked.append(name)
        return keys(name)

    cert = open_(box(certificate=certificate(HYBRID, "beta.example", "alice@beta.example")), node_keys=lookup).certificate
    assert asked == ["beta.example"]
    assert cert.account == "alice@beta.example"


def test_certificate_forged_by_another_node_key_is_refused() -> None:
    forged = issue_certificate(
        node_key("mallory.example"), node=NODE, account=SENDER, device=3, identity=identity(HYBRID, "mallory").public, now=NOW
    )
    with pytest.raises(VerifyError) as info:
        open_(box(certificate=forged))
    assert info.value.code == "certificate_forged"


def test_expired_certificate_is_refused() -> None:
    body = box()
    assert open_(body, now=NOW + DAY - 1).certificate.expires == NOW + DAY
    with pytest.raises(VerifyError) as info:
        open_(body, now=NOW + DAY)
    assert info.value.code == "certificate_expired"


def test_garbage_certificate_is_malformed() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        open_(box(certificate=b"not a certificate"))
    assert info.value.code == "certificate_malformed"


def test_certificate_for_another_identity_does_not_match() -> None:
    other = issue_certificate(node_key(), node=NODE, account="carol@alpha.example", device=1, identity=identity(HYBRID, "carol").public, now=NOW)
    cert = open_(box(certificate=other)).certificate
    assert not cert.matches(sender_device().public, SENDER)
    assert not cert.matches(sender_device().public, "carol@alpha.example")
    assert cert.matches(identity(HYBRID, "carol").public, "carol@alpha.example")


# Malformed contents (a malicious sender can box anything) -------------------------------


def good_inner(**changes: Any) -> dict[str, Any]:
    inner: dict[str, Any] = {"v": 1, "cert": certificate(), "msg": MESSAGE, "type": 2}
    inner.update(changes)
    return inner


def test_box_plaintext_is_padded_canonical_cbor_of_its_fields() -> None:
    # seal lists the fields in canonical key order instead of letting cbor2 sort them
    first = initial(HYBRID)[3]  # a message that starts a session: the box carries the record
    key, fp = recipient()
    access = b"a" * ACCESS_TOKEN_LEN
    for extra in ({}, {"sender_access": access}, {"sender_record": b"record"}, {"sender_access": access, "sender_record": b"record"}):
        inner = good_inner(msg=first, cert=certificate(HYBRID))  # the one box() seals
        inner.update({"access": access} if "sender_access" in extra else {}, **({"record": b"record"} if "sender_record" in extra else {}))
        plaintext = unpad(key.open(box(message=first, **extra), sealed_info(fp)))
        assert plaintext == canonical.dumps(inner)


def test_hand_built_box_matches_the_format() -> None:
    key, fp = recipient()
    assert unseal(raw_box(good_inner()), my_key=key, my_fp=fp).message == MESSAGE


@pytest.mark.parametrize(
    "inner",
    [
        good_inner(v=2),
        good_inner(extra=1),
        {k: v for k, v in good_inner().items() if k != "cert"},
        {k: v for k, v in good_inner().items() if k != "type"},
        good_inner(type=-1),
        good_inner(type=limits.MAX_SEALED_MESSAGE_TYPE + 1),
        good_inner(type="2"),
        good_inner(msg="text"),
        good_inner(cert=b""),
        good_inner(cert=b"c" * (limits.MAX_SENDER_CERT_BYTES + 1)),
        good_inner(msg=b"m" * (limits.MAX_SEALED_MESSAGE_BYTES + 1)),
        [1, 2],
        b"not cbor",
        canonical.dumps(good_inner()) + b"\0",
    ],
    ids=[
        "version",
        "extra",
        "no-cert",
        "no-type",
        "type-negative",
        "type-big",
        "type-str",
        "msg-str",
        "cert-empty",
        "cert-big",
        "msg-big",
        "list",
        "garbage",
        "trailing",
    ],
)
def test_malformed_contents_are_refused(inner: Any) -> None:
    key, fp = recipient()
    with pytest.raises(RemoteProtocolError) as info:
        unseal(raw_box(inner), my_key=key, my_fp=fp)
    assert not isinstance(info.value, (DecryptError, VerifyError))


@pytest.mark.parametrize(
    "kw",
    [
        {"msg_type": -1},
        {"msg_type": 256},
        {"msg_type": "1"},
        {"message": "text"},
        {"message": b"m" * (limits.MAX_SEALED_MESSAGE_BYTES + 1)},
        {"certificate": b""},
        {"certificate": b"c" * (limits.MAX_SENDER_CERT_BYTES + 1)},
        {"recipient_fp": "not a fingerprint"},
    ],
    ids=["type-negative", "type-big", "type-str", "message-str", "message-big", "cert-empty", "cert-big", "fp"],
)
def test_seal_refuses_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        box(**kw)
