"""Hostile input to every MLS decoder, through the fuzz targets of fuzz/mls_targets.py (the list
``python -m fuzz`` runs for long; tests/fuzz runs them with generic byte mutations too).

Here, with inputs aimed at the TLS codec: random bytes, and valid encodings with length prefixes,
optional flags and enum values overwritten or inserted (the largest varint, non-minimal forms, the
invalid 0b11 prefix, a presence flag of 2, 0xFFFF types). Each input either decodes to a value
that encodes back to the same bytes or is refused with DecodeError (mls_malformed): the target
raises on anything else. And the cost is linear: what a decode allocates is bounded by a
multiple of the input's size, a length prefix larger than the input allocates nothing, and the
work (Python calls, counted, never timed) for an input four times larger is at most four times
as much, plus a constant.
"""

from __future__ import annotations

import dataclasses
import sys
import tracemalloc
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core.limits import MLS_MAX_MESSAGE_BYTES
from sonet.core.mls.codec import DecodeError, Writer
from sonet.core.mls.extensions import Capabilities, Extension, write_extensions
from sonet.core.mls.framing import ContentType, FramedContentAuthData, MLSMessage, PrivateMessageContent, WireFormat
from sonet.core.mls.key_package import Credential, KeyPackage, LeafNode
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import (
    Commit,
    EncryptedGroupSecrets,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    Remove,
    UpdatePath,
    UpdatePathNode,
    Welcome,
)
from sonet.core.mls.psk import PreSharedKeyID
from sonet.core.mls.tree import decode_tree_nodes, encode_tree_nodes
from fuzz.mls_targets import MLS_TARGETS
from fuzz.target import Target

TARGETS = {t.name: t for t in MLS_TARGETS}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: what a decode may allocate per input byte (Python objects for 2-byte vector items cost ~50),
#: plus a constant
BYTES_PER_INPUT_BYTE = 256
ALLOCATION_CONSTANT = 512 * 1024

#: tokens the codec must handle at any position: varints (63, 64 as two bytes, the largest,
#: non-minimal 0 in two and four bytes, the invalid 0b11 prefix), presence flags, large enums
TOKENS = [
    b"\x3f",
    b"\x40\x40",
    b"\xbf\xff\xff\xff",
    b"\x40\x00",
    b"\x80\x00\x00\x00",
    b"\xc0",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00",
    b"\x01",
    b"\x02",
    b"\xff\xff",
    b"\x00\x00",
]


def run(target: Target, data: bytes) -> Any:
    """One input through ``target`` (which raises on a broken contract), allocation bounded."""
    tracemalloc.start()
    try:
        result = target(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= BYTES_PER_INPUT_BYTE * len(data) + ALLOCATION_CONSTANT, f"{target.name}: {len(data)} bytes allocated {peak}"
    return result


@st.composite
def hostile(draw: st.DrawFn, target: Target) -> bytes:
    data = bytearray(draw(st.sampled_from(target.corpus())))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        token = draw(st.sampled_from(TOKENS))
        if draw(st.booleans()):
            data[at : at + len(token)] = token  # overwrite
        else:
            data[at:at] = token
    return bytes(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_seeds_decode(name: str) -> None:
    corpus = TARGETS[name].corpus()
    assert corpus and all(run(TARGETS[name], seed) is not None for seed in corpus)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_hostile_input_is_refused_or_canonical(name: str) -> None:
    target = TARGETS[name]

    @FUZZ
    @given(st.one_of(st.binary(max_size=200), hostile(target)))
    def check(data: bytes) -> None:
        run(target, data)

    check()


def _largest_varint_at_each_prefix(seed: bytes) -> list[bytes]:
    """The seed with each byte, in turn, replaced by the largest varint (2^30 - 1)."""
    return [seed[:i] + b"\xbf\xff\xff\xff" + seed[i + 1 :] for i in range(len(seed))]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_length_larger_than_the_input_allocates_nothing_big(name: str) -> None:
    """A length prefix of 2^30 - 1 anywhere in a valid encoding: refused (or, where it is no
    length, decoded canonically) within the allocation bound of the input's own size."""
    seed = min(TARGETS[name].corpus(), key=len)[:300]
    for data in _largest_varint_at_each_prefix(seed):
        run(TARGETS[name], data)


def test_an_input_over_the_cap_is_refused_before_it_is_copied() -> None:
    data = bytes(MLS_MAX_MESSAGE_BYTES + 1)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="over the cap"):
            MLSMessage.from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


# Linear work ----------------------------------------------------------------------------------


def _seed(name: str) -> bytes:
    return TARGETS[name].corpus()[0]


def _extensions(k: int) -> tuple[Extension, ...]:
    return tuple(Extension(0x1000 + i, b"e") for i in range(k))


def _encoded_extensions(k: int) -> bytes:
    w = Writer()
    write_extensions(w, _extensions(k))
    return w.bytes()


def _leaf(k: int) -> LeafNode:
    leaf = LeafNode.from_bytes(_seed("mls-leaf-node"))
    # capability lists are capped at MLS_MAX_CAPABILITY_ITEMS: the extensions scale
    return dataclasses.replace(leaf, capabilities=Capabilities(cipher_suites=(1, 2, 3)), extensions=_extensions(k))


def _welcome(k: int) -> Welcome:
    entry = EncryptedGroupSecrets(bytes(32), HPKECiphertext(bytes(32), bytes(48)))
    return Welcome(1, (entry,) * k, bytes(64))


#: target -> a valid input whose size grows with k (a vector with k items, k-byte padding...)
SCALABLE: dict[str, Callable[[int], bytes]] = {
    "mls-message": lambda k: MLSMessage(WireFormat.WELCOME, _welcome(k)).to_bytes(),
    "mls-welcome": lambda k: _welcome(k).to_bytes(),
    "mls-key-package": lambda k: dataclasses.replace(KeyPackage.from_bytes(_seed("mls-key-package")), extensions=_extensions(k)).to_bytes(),
    "mls-leaf-node": lambda k: _leaf(k).to_bytes(),
    "mls-ratchet-tree": lambda k: encode_tree_nodes([_leaf(1) if i % 2 == 0 else None for i in range(2 * k + 1)]),
    "mls-group-info": lambda k: dataclasses.replace(GroupInfo.from_bytes(_seed("mls-group-info")), extensions=_extensions(k)).to_bytes(),
    "mls-group-context": lambda k: GroupContext(1, b"g", 1, bytes(32), bytes(32), _extensions(k)).to_bytes(),
    "mls-group-secrets": lambda k: GroupSecrets(bytes(32), None, tuple(PreSharedKeyID.external(bytes([i % 256]), bytes(32)) for i in range(k))).to_bytes(),
    "mls-proposal": lambda k: GroupContextExtensions(_extensions(k)).to_bytes(),
    "mls-commit": lambda k: Commit(tuple(Remove(i) for i in range(k))).to_bytes(),
    "mls-update-path": lambda k: UpdatePath(
        LeafNode.from_bytes(_seed("mls-leaf-node")), (UpdatePathNode(bytes(32), (HPKECiphertext(bytes(32), bytes(48)),) * 3),) * k
    ).to_bytes(),
    "mls-private-content": lambda k: bytes([ContentType.APPLICATION])
    + PrivateMessageContent(ContentType.APPLICATION, b"x" * k, FramedContentAuthData(bytes(64)), 64 * k).to_bytes(),
    "mls-extensions": _encoded_extensions,
    # (capability lists are capped at MLS_MAX_CAPABILITY_ITEMS: an X.509 chain scales instead)
    "mls-extension-payloads": lambda k: b"\x06" + Credential.x509(tuple(b"cert %d" % i for i in range(k))).to_bytes(),
}


def _calls(target: Target, data: bytes) -> int:
    """The Python and C calls one decode makes: a measure of its work that does not depend on
    the machine or its load (a C function's own cost is not in it: the codec's slices take only
    the bytes they read, never the rest of the buffer)."""
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        target(data)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("name", sorted(SCALABLE))
def test_four_times_the_input_is_at_most_four_times_the_work(name: str) -> None:
    target, build = TARGETS[name], SCALABLE[name]
    small, large = build(250), build(1000)
    assert len(large) > 3 * len(small)
    assert target(small) is not None and target(large) is not None, "the scaled input does not decode"
    work_small, work_large = _calls(target, small), _calls(target, large)
    assert work_large <= 4 * work_small + 1000, (work_small, work_large)
    run(target, large)  # and the allocation bound holds at that size


def test_the_scalable_inputs_cover_the_structures_with_vectors() -> None:
    """Every target except the fixed-size ones and the flat envelopes has a scaled input."""
    flat = {"mls-sender-data", "mls-psk-id", "mls-public-message", "mls-private-message", "mls-authenticated-content"}
    assert set(SCALABLE) == set(TARGETS) - flat


def test_the_bounds_are_not_vacuous() -> None:
    """A decoder that does quadratic work or allocates per claimed byte fails the checks."""

    def quadratic(data: bytes) -> None:
        for i in range(len(data)):
            for _ in range(i):
                len(data)

    slow = dataclasses.replace(TARGETS["mls-sender-data"], decode=quadratic, returns=object)
    assert _calls(slow, bytes(400)) > 4 * _calls(slow, bytes(100)) + 1000
    greedy = dataclasses.replace(TARGETS["mls-sender-data"], decode=lambda data: bytes(2**24), returns=object)
    with pytest.raises(AssertionError, match="allocated"):
        run(greedy, b"x")
