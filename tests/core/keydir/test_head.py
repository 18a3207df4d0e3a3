"""Signed tree heads and witness cosignatures (core.keydir.head)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import (
    COSIGNATURE_LABEL,
    EMPTY_ROOT,
    TREE_HEAD_LABEL,
    Cosignature,
    TreeHead,
    cosign,
    decode_cosignature,
    decode_head,
    leaf_hash,
    sign_head,
    verify_cosignature,
    verify_head,
)
from sonet.core.signed import sign_body

from ..pairs import flip_bit, identity

HYBRID, CLASSICAL = CryptoMode.HYBRID, CryptoMode.CLASSICAL
NOW = 1_700_000_000_000
ROOT = leaf_hash(b"root")
ALPHA, BETA, GAMMA = "alpha.example", "beta.example", "gamma.example"


def key(name: str, mode: CryptoMode = HYBRID) -> SigningKey:
    return identity(mode, f"node {name}")


def head_raw(node: str = ALPHA, *, mode: CryptoMode = HYBRID, signer: SigningKey | None = None, **kw: Any) -> bytes:
    args: dict[str, Any] = dict(node=node, size=7, root=ROOT, at=NOW)
    args.update(kw)
    return sign_head(signer or key(node, mode), **args)


def head(node: str = ALPHA, *, mode: CryptoMode = HYBRID, **kw: Any) -> TreeHead:
    return verify_head(head_raw(node, mode=mode, **kw), node_key=key(node, mode).public, node=node)


def cosig_raw(witness: str = BETA, the_head: TreeHead | None = None, *, mode: CryptoMode = HYBRID, now: int = NOW + 9) -> bytes:
    return cosign(key(witness, mode), witness=witness, head=the_head or head(), now=now)


def expect(code: str, call: Any, *args: Any, **kw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        call(*args, **kw)
    assert info.value.code == code
    assert isinstance(info.value, VerifyError) == (code != "directory_malformed")


def head_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "node": ALPHA, "size": 7, "root": ROOT, "at": NOW}
    body.update(changes)
    return body


def cosig_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "witness": BETA, "node": ALPHA, "size": 7, "root": ROOT, "at": NOW}
    body.update(changes)
    return body


# Heads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_head_round_trip(mode: CryptoMode) -> None:
    raw = head_raw(mode=mode)
    verified = verify_head(raw, node_key=key(ALPHA, mode).public, node="Alpha.Example")
    assert verified == TreeHead(node=ALPHA, size=7, root=ROOT, at=NOW, raw=raw)
    assert decode_head(raw) == verified
    assert canonical.loads(canonical.loads(raw)["body"]) == head_body()


def test_empty_and_huge_trees() -> None:
    assert head(size=0, root=EMPTY_ROOT).size == 0
    assert head(size=2**63 - 1, at=2**63 - 1).size == 2**63 - 1


def test_head_signed_by_another_key_is_forged() -> None:
    expect("head_forged", verify_head, head_raw(signer=key(BETA)), node_key=key(ALPHA).public, node=ALPHA)
    expect("head_forged", verify_head, head_raw(), node_key=key(BETA).public, node=ALPHA)
    expect("head_forged", verify_head, head_raw(mode=CLASSICAL), node_key=key(ALPHA).public, node=ALPHA)


def test_head_of_another_node_is_refused() -> None:
    # Signed with alpha's key, but it names beta: it is not alpha's head.
    expect("head_mismatch", verify_head, head_raw(BETA, signer=key(ALPHA)), node_key=key(ALPHA).public, node=ALPHA)
    # decode_head reports what the head claims, nothing more
    assert decode_head(head_raw(BETA, signer=key(ALPHA))).node == BETA


def test_head_signed_under_another_label_is_forged() -> None:
    raw = sign_body(key(ALPHA), COSIGNATURE_LABEL, head_body())
    expect("head_forged", verify_head, raw, node_key=key(ALPHA).public, node=ALPHA)


@pytest.mark.parametrize("changes", [{"size": 8}, {"root": leaf_hash(b"other")}, {"at": NOW + 1}, {"node": BETA}])
def test_every_tampered_head_field_breaks_the_signature(changes: dict[str, Any]) -> None:
    outer = canonical.loads(head_raw())
    tampered = canonical.dumps({"body": canonical.dumps(head_body(**changes)), "sig": outer["sig"]})
    expect("head_forged", verify_head, tampered, node_key=key(ALPHA).public, node=ALPHA)


def flipped_everywhere(raw: bytes, step: int) -> list[bytes]:
    return [flip_bit(raw, bit) for bit in range(0, 8 * len(raw), step)]


def test_one_flipped_bit_anywhere_in_a_head_is_refused() -> None:
    # Every bit of a classical head, every 7th bit of a hybrid one (its signature is 3.4 KB).
    for mode, step in ((CLASSICAL, 1), (HYBRID, 7)):
        raw, public = head_raw(mode=mode), key(ALPHA, mode).public
        for bad in flipped_everywhere(raw, step):
            with pytest.raises(RemoteProtocolError) as info:
                verify_head(bad, node_key=public, node=ALPHA)
            assert info.value.code in ("head_forged", "directory_malformed")


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"extra": 0},
        {"node": "Alpha.example"},
        {"node": "alpha..example"},
        {"node": 3},
        {"size": -1},
        {"size": 2**63},
        {"size": True},
        {"size": 0},  # the empty tree has the empty root
        {"root": ROOT[:31]},
        {"root": ROOT + b"\0"},
        {"root": ROOT.hex()},
        {"at": -1},
        {"at": 2**63},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:10]}",
)
def test_malformed_head_body_is_refused(changes: dict[str, Any]) -> None:
    raw = sign_body(key(ALPHA), TREE_HEAD_LABEL, head_body(**changes))
    expect("directory_malformed", verify_head, raw, node_key=key(ALPHA).public, node=ALPHA)
    expect("directory_malformed", decode_head, raw)


def test_malformed_head_envelope_is_refused() -> None:
    raw = head_raw()
    outer = canonical.loads(raw)
    for bad in (
        raw + b"\0",
        raw[:-1],
        canonical.dumps({**outer, "x": 1}),
        canonical.dumps({"body": outer["body"]}),
        b"",
        b"\0" * (limits.MAX_TREE_HEAD_BYTES + 1),
        canonical.dumps({"body": outer["body"], "sig": b"\0" * limits.MAX_TREE_HEAD_BYTES}),
        cosig_raw(),  # a cosignature is not a head
        "text",
    ):
        expect("directory_malformed", decode_head, bad)
        expect("directory_malformed", verify_head, bad, node_key=key(ALPHA).public, node=ALPHA)


@pytest.mark.parametrize(
    "kw",
    [
        {"node": "not a name"},
        {"size": -1},
        {"size": 2**63},
        {"size": 0},
        {"root": b"short"},
        {"root": "x" * 32},
        {"at": -1},
        {"at": 2**63},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:10]}",
)
def test_sign_head_refuses_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        head_raw(**kw)


# Cosignatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_cosignature_round_trip(mode: CryptoMode) -> None:
    the_head = head()
    raw = cosig_raw(the_head=the_head, mode=mode)
    verified = verify_cosignature(raw, witness_key=key(BETA, mode).public, head=the_head)
    assert verified == Cosignature(witness=BETA, node=ALPHA, size=7, root=ROOT, at=NOW + 9, raw=raw)
    assert decode_cosignature(raw) == verified


def test_cosignature_vouches_for_the_tree_not_the_head_timestamp() -> None:
    raw = cosig_raw(the_head=head(at=NOW))
    resigned = head(at=NOW + 60_000)
    assert verify_cosignature(raw, witness_key=key(BETA).public, head=resigned).at == NOW + 9


def test_cosignature_by_another_key_is_forged() -> None:
    expect("cosignature_forged", verify_cosignature, cosig_raw(), witness_key=key(GAMMA).public, head=head())
    forged = cosign(key(GAMMA), witness=BETA, head=head(), now=NOW)
    expect("cosignature_forged", verify_cosignature, forged, witness_key=key(BETA).public, head=head())
    under_head_label = sign_body(key(BETA), TREE_HEAD_LABEL, cosig_body())
    expect("cosignature_forged", verify_cosignature, under_head_label, witness_key=key(BETA).public, head=head())


@pytest.mark.parametrize(
    "other",
    [
        {"size": 8},
        {"root": leaf_hash(b"forked")},
        {"node": GAMMA},
    ],
    ids=["size", "root", "node"],
)
def test_cosignature_of_another_tree_is_a_mismatch(other: dict[str, Any]) -> None:
    raw = cosig_raw(the_head=head())
    node = other.get("node", ALPHA)
    other_head = head(node, **{k: v for k, v in other.items() if k != "node"})
    expect("cosignature_mismatch", verify_cosignature, raw, witness_key=key(BETA).public, head=other_head)


@pytest.mark.parametrize("changes", [{"size": 8}, {"root": leaf_hash(b"x")}, {"witness": GAMMA}, {"node": GAMMA}, {"at": 1}])
def test_every_tampered_cosignature_field_breaks_the_signature(changes: dict[str, Any]) -> None:
    outer = canonical.loads(cosig_raw())
    tampered = canonical.dumps({"body": canonical.dumps(cosig_body(**changes)), "sig": outer["sig"]})
    expect("cosignature_forged", verify_cosignature, tampered, witness_key=key(BETA).public, head=head())


def test_one_flipped_bit_anywhere_in_a_cosignature_is_refused() -> None:
    for mode, step in ((CLASSICAL, 1), (HYBRID, 7)):
        the_head = head()
        raw, public = cosig_raw(the_head=the_head, mode=mode), key(BETA, mode).public
        for bad in flipped_everywhere(raw, step):
            with pytest.raises(RemoteProtocolError) as info:
                verify_cosignature(bad, witness_key=public, head=the_head)
            assert info.value.code in ("cosignature_forged", "cosignature_mismatch", "directory_malformed")


def test_a_node_cannot_witness_itself() -> None:
    with pytest.raises(LocalProtocolError):
        cosign(key(ALPHA), witness="ALPHA.example", head=head(), now=NOW)
    raw = sign_body(key(ALPHA), COSIGNATURE_LABEL, cosig_body(witness=ALPHA))
    expect("directory_malformed", decode_cosignature, raw)
    expect("directory_malformed", verify_cosignature, raw, witness_key=key(ALPHA).public, head=head())


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 0},
        {"witness": "Beta.example"},
        {"witness": ""},
        {"node": None},
        {"size": -1},
        {"root": b""},
        {"at": 2**63},
        {"extra": b""},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:10]}",
)
def test_malformed_cosignature_is_refused(changes: dict[str, Any]) -> None:
    raw = sign_body(key(BETA), COSIGNATURE_LABEL, cosig_body(**changes))
    expect("directory_malformed", decode_cosignature, raw)
    expect("directory_malformed", verify_cosignature, raw, witness_key=key(BETA).public, head=head())


def test_malformed_cosignature_envelope_is_refused() -> None:
    raw = cosig_raw()
    for bad in (raw + b"\0", b"", b"\0" * (limits.MAX_COSIGNATURE_BYTES + 1), head_raw(), None):
        expect("directory_malformed", decode_cosignature, bad)


def test_cosign_refuses_bad_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        cosign(key(BETA), witness="bad name!", head=head(), now=NOW)
    with pytest.raises(LocalProtocolError):
        cosign(key(BETA), witness=BETA, head=head(), now=-1)
    with pytest.raises(LocalProtocolError):
        cosign(key(BETA), witness=BETA, head=dataclasses.replace(head(), root=b"short"), now=NOW)


# Fuzzing: junk is always one clear RemoteProtocolError ------------------------------------------

values = st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
interesting = st.sampled_from([1, 0, 7, -1, 2**63, ALPHA, BETA, "Alpha.example", ROOT, EMPTY_ROOT, b"", NOW])
bodies = st.dictionaries(st.sampled_from(list(cosig_body()) + ["x"]), values | interesting, max_size=7)


def malformed_or_decoded(decode: Any, raw: bytes) -> None:
    try:
        decoded = decode(raw)
    except RemoteProtocolError as exc:
        assert exc.code == "directory_malformed" and not isinstance(exc, VerifyError)
        return
    assert decoded.raw == raw and len(decoded.root) == 32 and 0 <= decoded.size < 2**63


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoders(raw: bytes) -> None:
    malformed_or_decoded(decode_head, raw)
    malformed_or_decoded(decode_cosignature, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, sig=st.binary(max_size=80), whole=st.booleans())
def test_random_maps_never_crash_the_decoders(body: dict[str, Any], sig: bytes, whole: bool) -> None:
    for base in (head_body(), cosig_body()):
        fields = {**base, **body} if whole else body
        raw = canonical.dumps({"body": canonical.dumps(fields), "sig": sig})
        malformed_or_decoded(decode_head, raw)
        malformed_or_decoded(decode_cosignature, raw)
    malformed_or_decoded(decode_head, canonical.dumps(body))
