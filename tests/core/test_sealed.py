"""Interim sealed messages (core.sealed): HPKE box to one device around a signed inner message.

Round trips in every mode, then what a node or another user can try: open with the wrong key
or identity, replay under a fresh envelope id, tamper with the box, forge or strip the
signature, forward a message to a third party, or exceed the limits.
"""

from __future__ import annotations

import functools
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import canonical, limits
from core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, SigningKey, VerifyKey
from core.errors import DecryptError, RemoteProtocolError, VerifyError
from core.sealed import MESSAGE_TYPES, Opened, Plain, open_message, seal_message

from .pairs import identity, rng

CLASSICAL, HYBRID, PQ = CryptoMode.CLASSICAL, CryptoMode.HYBRID, CryptoMode.PQ
MODES = list(CryptoMode)
HYPOTHESIS = settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])

# Pinned wire constants (changing them is a protocol change).
SIG_LABEL = b"sonet-sealed-v1"
INFO = b"sonet-sealed-v1 to "

ALICE = "alice@alpha.example"
BOB = "bob@beta.example"
MSG_ID = bytes(range(16))
TEXT = "meet me by the old oak tree at noon"


@functools.cache
def hpke(mode: CryptoMode, name: str) -> HpkePrivateKey:
    return HpkePrivateKey.generate(mode, rng(("hpke", mode.value, name)))


def alice(mode: CryptoMode) -> SigningKey:
    return identity(mode, "alice device")


def bob_fp(mode: CryptoMode) -> str:
    return identity(mode, "bob device").public.fingerprint


def plain(mode: CryptoMode, **changes: Any) -> Plain:
    fields: dict[str, Any] = dict(
        msg_id=MSG_ID, sender=ALICE, recipient=BOB, recipient_fp=bob_fp(mode), sent_at=1_700_000_000_000, type="text", text=TEXT
    )
    fields.update(changes)
    return Plain(**fields)


def seal(mode: CryptoMode, **changes: Any) -> bytes:
    return seal_message(plain(mode, **changes), sender_identity=alice(mode), to_key=hpke(mode, "bob").public)


def open_(mode: CryptoMode, body: bytes, **overrides: Any) -> Opened:
    kwargs: dict[str, Any] = dict(envelope_id=MSG_ID, me=BOB, my_fp=bob_fp(mode), my_key=hpke(mode, "bob"), policy=CryptoPolicy(mode))
    kwargs.update(overrides)
    return open_message(body, **kwargs)


def forge(
    mode: CryptoMode,
    *,
    inner: dict[str, Any] | None = None,
    raw_inner: bytes | None = None,
    signer: SigningKey | None = None,
    claimed: VerifyKey | None = None,
    sig: bytes | None = None,
    outer: dict[str, Any] | None = None,
    info_fp: str | None = None,
    **inner_changes: Any,
) -> bytes:
    """Build a sealed box by hand, exactly as seal_message does unless told otherwise."""
    fields: dict[str, Any] = {
        "v": 1,
        "msg_id": MSG_ID,
        "from": ALICE,
        "to": BOB,
        "to_fp": bob_fp(mode),
        "sent_at": 1_700_000_000_000,
        "type": "text",
        "text": TEXT,
    }
    fields.update(inner_changes)
    if inner is not None:
        fields = inner
    inner_bytes = raw_inner if raw_inner is not None else canonical.dumps(fields)
    signer = signer or alice(mode)
    signed = {
        "inner": inner_bytes,
        "identity": (claimed or signer.public).to_bytes(),
        "sig": sig if sig is not None else signer.sign(SIG_LABEL, inner_bytes),
    }
    if outer is not None:
        signed.update(outer)
    return hpke(mode, "bob").public.seal(canonical.dumps(signed), INFO + (info_fp or bob_fp(mode)).encode())


def rejects(mode: CryptoMode, body: bytes, error: type[Exception], match: str | None = None, **overrides: Any) -> Exception:
    with pytest.raises(error, match=match) as info:
        open_(mode, body, **overrides)
    return info.value


# Round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_round_trip(mode: CryptoMode) -> None:
    opened = open_(mode, seal(mode))
    assert opened.plain == plain(mode)
    assert opened.sender_identity == alice(mode).public


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_body_hides_text_sender_and_identity(mode: CryptoMode) -> None:
    body = seal(mode)
    assert TEXT.encode() not in body
    assert ALICE.encode() not in body
    assert alice(mode).public.to_bytes() not in body
    assert alice(mode).public.fingerprint.encode() not in body
    assert seal(mode) != body  # fresh HPKE encapsulation every time


def test_hand_built_box_matches_the_format() -> None:
    # Sanity check for the forgeries below: an unmodified hand-built box opens.
    assert open_(HYBRID, forge(HYBRID)).plain == plain(HYBRID)


def test_unicode_text_and_limits_round_trip() -> None:
    text = "Grüße, 你好 👋" * 10
    assert open_(CLASSICAL, seal(CLASSICAL, text=text)).plain.text == text
    longest = "x" * limits.MAX_TEXT_LEN
    assert open_(CLASSICAL, seal(CLASSICAL, text=longest)).plain.text == longest


# Wrong recipient ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_wrong_recipient_key_fails_to_decrypt(mode: CryptoMode) -> None:
    body = seal(mode)
    rejects(mode, body, DecryptError, my_key=hpke(mode, "carol"))
    other_mode = CLASSICAL if mode is not CLASSICAL else HYBRID
    rejects(mode, body, DecryptError, my_key=hpke(other_mode, "bob"))


def test_wrong_my_fp_fails_to_decrypt() -> None:
    # The recipient fingerprint is in the HPKE info: a box for another device does not open.
    rejects(HYBRID, seal(HYBRID), DecryptError, my_fp=identity(HYBRID, "bob laptop").public.fingerprint)


def test_wrong_me_is_refused() -> None:
    err = rejects(HYBRID, seal(HYBRID), RemoteProtocolError, "someone else", me="carol@beta.example")
    assert type(err) is RemoteProtocolError


def test_inner_to_fp_must_match_even_when_the_box_opens() -> None:
    other_fp = identity(HYBRID, "bob laptop").public.fingerprint
    err = rejects(HYBRID, forge(HYBRID, info_fp=bob_fp(HYBRID), to_fp=other_fp), RemoteProtocolError, "someone else")
    assert type(err) is RemoteProtocolError


def test_forwarding_a_signed_message_to_a_third_party_is_detected() -> None:
    # Bob unwraps Alice's message and re-seals her signed payload to Carol: the signature still
    # verifies, but the signed addressing names Bob.
    signed = hpke(HYBRID, "bob").open(seal(HYBRID), INFO + bob_fp(HYBRID).encode())
    carol_fp = identity(HYBRID, "carol device").public.fingerprint
    forwarded = hpke(HYBRID, "carol").public.seal(signed, INFO + carol_fp.encode())
    rejects(HYBRID, forwarded, RemoteProtocolError, "someone else", me="carol@beta.example", my_fp=carol_fp, my_key=hpke(HYBRID, "carol"))


# Replay and tampering ---------------------------------------------------------------------------


def test_replay_under_a_fresh_envelope_id_is_refused() -> None:
    body = seal(HYBRID)
    err = rejects(HYBRID, body, RemoteProtocolError, "replayed", envelope_id=bytes(16))
    assert type(err) is RemoteProtocolError
    assert open_(HYBRID, body).plain.msg_id == MSG_ID  # under its own id it still opens


@HYPOTHESIS
@given(mode=st.sampled_from(MODES), position=st.integers(0, 100_000), xor=st.integers(1, 255))
def test_tampered_body_fails_to_decrypt(mode: CryptoMode, position: int, xor: int) -> None:
    body = bytearray(seal(mode))
    body[position % len(body)] ^= xor
    rejects(mode, bytes(body), DecryptError)


@pytest.mark.parametrize("body", [b"", b"\0", b"\0" * 64, b"garbage" * 300], ids=["empty", "one", "zeros", "garbage"])
def test_garbage_body_fails_to_decrypt(body: bytes) -> None:
    rejects(HYBRID, body, DecryptError)


@pytest.mark.parametrize("cut", [1, 32, -1, -16])
def test_truncated_body_fails_to_decrypt(cut: int) -> None:
    rejects(HYBRID, seal(HYBRID)[:cut], DecryptError)


# Signatures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_signature_by_another_key_claiming_the_sender_is_refused(mode: CryptoMode) -> None:
    mallory = identity(mode, "mallory")
    rejects(mode, forge(mode, signer=mallory, claimed=alice(mode).public), VerifyError)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_modified_inner_under_the_original_signature_is_refused(mode: CryptoMode) -> None:
    original = canonical.dumps(
        {"v": 1, "msg_id": MSG_ID, "from": ALICE, "to": BOB, "to_fp": bob_fp(mode), "sent_at": 1, "type": "text", "text": "hi"}
    )
    sig = alice(mode).sign(SIG_LABEL, original)
    rejects(mode, forge(mode, sent_at=1, text="hi, send money", sig=sig), VerifyError)
    rejects(mode, forge(mode, sent_at=1, text="hi", sig=sig[:-1] + bytes([sig[-1] ^ 1])), VerifyError)
    rejects(mode, forge(mode, sent_at=1, text="hi", sig=sig + b"\0"), VerifyError)
    assert open_(mode, forge(mode, sent_at=1, text="hi", sig=sig)).plain.text == "hi"


def test_signature_with_another_label_is_refused() -> None:
    inner = canonical.dumps(
        {"v": 1, "msg_id": MSG_ID, "from": ALICE, "to": BOB, "to_fp": bob_fp(HYBRID), "sent_at": 1, "type": "text", "text": "x"}
    )
    sig = alice(HYBRID).sign(b"sonet-device-record-v1", inner)
    rejects(HYBRID, forge(HYBRID, raw_inner=inner, sig=sig), VerifyError)


def test_hybrid_signature_cannot_be_stripped_to_classical() -> None:
    # Present Alice's Ed25519 half as a classical identity with the Ed25519 half of her hybrid
    # signature: the mode is inside the signed message, so this does not verify.
    inner = canonical.dumps(
        {"v": 1, "msg_id": MSG_ID, "from": ALICE, "to": BOB, "to_fp": bob_fp(HYBRID), "sent_at": 1, "type": "text", "text": "x"}
    )
    sig = alice(HYBRID).sign(SIG_LABEL, inner)
    ed = canonical.loads(alice(HYBRID).public.to_bytes())["ed25519"]
    classical = VerifyKey.from_bytes(canonical.dumps({"mode": "classical", "ed25519": ed}))
    body = forge(HYBRID, raw_inner=inner, claimed=classical, sig=sig[:64])
    rejects(HYBRID, body, VerifyError, policy=CryptoPolicy(CLASSICAL))


def test_valid_signature_by_another_identity_is_reported_not_trusted() -> None:
    # Anyone can sign a message that *claims* to be from Alice with their own key; open_message
    # reports the key that signed, and the caller must match it against Alice's devices.
    mallory = identity(HYBRID, "mallory")
    opened = open_(HYBRID, forge(HYBRID, signer=mallory))
    assert opened.plain.sender == ALICE
    assert opened.sender_identity == mallory.public != alice(HYBRID).public


@pytest.mark.parametrize("id_mode, minimum", [(CLASSICAL, HYBRID), (CLASSICAL, PQ), (HYBRID, PQ)], ids=lambda m: m.value)
def test_sender_identity_below_the_policy_minimum_is_refused(id_mode: CryptoMode, minimum: CryptoMode) -> None:
    body = seal_message(plain(HYBRID), sender_identity=alice(id_mode), to_key=hpke(HYBRID, "bob").public)
    err = rejects(HYBRID, body, RemoteProtocolError, policy=CryptoPolicy(minimum))
    assert err.code == "crypto_mode_refused"


# Content checks ------------------------------------------------------------------------------


def test_unsupported_type_is_refused() -> None:
    assert "image" not in MESSAGE_TYPES
    rejects(HYBRID, seal(HYBRID, type="image"), RemoteProtocolError, "unsupported")


def test_unsupported_version_is_refused() -> None:
    rejects(HYBRID, forge(HYBRID, v=2), RemoteProtocolError, "unsupported")


def test_text_over_the_limit_is_refused() -> None:
    body = seal(CLASSICAL, text="x" * (limits.MAX_TEXT_LEN + 1))
    rejects(CLASSICAL, body, RemoteProtocolError, "unsupported")


@pytest.mark.parametrize("sender", ["alice", "alice@@alpha.example", "", "al ice@alpha.example", "alice@-alpha.example"])
def test_invalid_sender_address_is_refused(sender: str) -> None:
    err = rejects(HYBRID, seal(HYBRID, sender=sender), RemoteProtocolError, "invalid")
    assert type(err) is RemoteProtocolError


@pytest.mark.parametrize(
    "changes",
    [
        {"extra": 1},
        {"text": b"bytes, not text"},
        {"sent_at": "yesterday"},
        {"msg_id": "0123456789abcdef"},
    ],
    ids=["extra-field", "text-type", "sent_at-type", "msg_id-type"],
)
def test_malformed_inner_is_refused(changes: dict[str, Any]) -> None:
    err = rejects(HYBRID, forge(HYBRID, **changes), RemoteProtocolError)
    assert not isinstance(err, (DecryptError, VerifyError))


def test_inner_with_a_missing_field_is_refused() -> None:
    inner = {"v": 1, "msg_id": MSG_ID, "from": ALICE, "to": BOB, "to_fp": bob_fp(HYBRID), "sent_at": 1, "type": "text"}
    rejects(HYBRID, forge(HYBRID, inner=inner), RemoteProtocolError, "expected fields")


def test_non_canonical_inner_is_refused_even_when_signed() -> None:
    fields = {"v": 1, "msg_id": MSG_ID, "from": ALICE, "to": BOB, "to_fp": bob_fp(HYBRID), "sent_at": 1, "type": "text", "text": "x"}
    reordered = cbor2.dumps(dict(reversed(list(fields.items()))))
    assert reordered != canonical.dumps(fields)
    rejects(HYBRID, forge(HYBRID, raw_inner=reordered), RemoteProtocolError, "canonical")


@pytest.mark.parametrize("outer", [{"extra": b""}, {"identity": b"not a key"}, {"sig": "text"}], ids=["extra", "identity", "sig-type"])
def test_malformed_signed_wrapper_is_refused(outer: dict[str, Any]) -> None:
    err = rejects(HYBRID, forge(HYBRID, outer=outer), RemoteProtocolError)
    assert not isinstance(err, DecryptError)
