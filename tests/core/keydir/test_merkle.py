"""core.keydir.merkle: MerkleTree against a naive RFC 9162 reference, proofs that verify, and
every tampering (one flipped bit, another index or size, a dropped or extra hash) refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonet.core import limits
from sonet.core.errors import VerifyError
from sonet.core.keydir import merkle
from sonet.core.keydir.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion

from ..pairs import flip_bit

MAX_SIZE = 80


def leaves(size: int, salt: bytes = b"") -> list[bytes]:
    """``size`` distinct leaf hashes (distinct, so no other index can share a leaf's proof)."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, word for word."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = split(len(hashes))
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def path(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1, word for word."""
    if len(hashes) == 1:
        return []
    k = split(len(hashes))
    if m < k:
        return path(m, hashes[:k]) + [mth(hashes[k:])]
    return path(m - k, hashes[k:]) + [mth(hashes[:k])]


def subproof(m: int, hashes: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1, word for word."""
    if m == len(hashes):
        return [] if whole else [mth(hashes)]
    k = split(len(hashes))
    if m <= k:
        return subproof(m, hashes[:k], whole) + [mth(hashes[k:])]
    return subproof(m - k, hashes[k:], False) + [mth(hashes[:k])]


trees = st.tuples(st.integers(1, MAX_SIZE), st.binary(max_size=4)).map(lambda t: leaves(*t))


def refused_inclusion(**kw: Any) -> None:
    with pytest.raises(VerifyError) as info:
        verify_inclusion(**kw)
    assert info.value.code == "bad_inclusion_proof"


def refused_consistency(**kw: Any) -> None:
    with pytest.raises(VerifyError) as info:
        verify_consistency(**kw)
    assert info.value.code == "bad_consistency_proof"


# The tree against the RFC's definitions -----------------------------------------------------


def check_against_rfc(tree: MerkleTree, hashes: list[bytes], size: int, index: int, first: int) -> None:
    assert tree.inclusion_proof(index, size) == path(index, hashes[:size])
    assert tree.consistency_proof(first, size) == subproof(first, hashes[:size], True)


@settings(max_examples=60, deadline=None)
@given(hashes=trees, data=st.data())
def test_roots_and_proofs_match_the_rfc_definitions(hashes: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(hashes)
    assert tree.size == len(hashes)
    assert tree.root() == mth(hashes)
    for size in range(len(hashes) + 1):
        assert tree.root(size) == mth(hashes[:size])
    for _ in range(4):
        size = data.draw(st.integers(1, len(hashes)), label="size")
        index = data.draw(st.integers(0, size - 1), label="index")
        first = data.draw(st.integers(1, size), label="first")
        check_against_rfc(tree, hashes, size, index, first)


def test_every_proof_of_a_small_tree_matches_the_rfc_definitions() -> None:
    hashes = leaves(17)
    tree = MerkleTree(hashes)
    for size in range(1, 18):
        for index in range(size):
            check_against_rfc(tree, hashes, size, index, index + 1)


def test_appending_keeps_earlier_roots() -> None:
    hashes = leaves(40)
    tree = MerkleTree()
    roots = [tree.root()]
    for i, h in enumerate(hashes):
        assert tree.append(h) == i
        roots.append(tree.root())
    assert roots[0] == EMPTY_ROOT
    assert [tree.root(size) for size in range(41)] == roots
    tree.extend(leaves(3, b"more"))
    assert tree.size == 43 and tree.root(40) == roots[40]


def test_extend_takes_all_or_nothing() -> None:
    tree = MerkleTree(leaves(3))
    with pytest.raises(ValueError):
        tree.extend(leaves(2, b"new") + [b"short"])
    assert tree.size == 3 and tree.root() == mth(leaves(3))
    with pytest.raises(ValueError):
        MerkleTree([b"\0" * 33])


def test_the_empty_tree() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    tree = MerkleTree()
    assert tree.size == 0 and tree.root() == tree.root(0) == EMPTY_ROOT
    with pytest.raises(ValueError):
        tree.inclusion_proof(0, 0)


def test_hashing_is_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)  # a leaf can never pose as an inner node
    assert len(a) == merkle.HASH_LEN == 32


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.root(11),
        lambda t: t.root(-1),
        lambda t: t.root(True),
        lambda t: t.inclusion_proof(10, 10),
        lambda t: t.inclusion_proof(-1, 5),
        lambda t: t.inclusion_proof(0, 11),
        lambda t: t.inclusion_proof(0, 0),
        lambda t: t.consistency_proof(0, 5),
        lambda t: t.consistency_proof(6, 5),
        lambda t: t.consistency_proof(5, 11),
        lambda t: t.append(b"short"),
        lambda t: t.append("x" * 32),
    ],
    ids=[
        "root-beyond",
        "root-negative",
        "root-bool",
        "index-equals-size",
        "index-negative",
        "size-beyond",
        "size-zero",
        "first-zero",
        "first-beyond-second",
        "second-beyond",
        "short-leaf-hash",
        "str-leaf-hash",
    ],
)
def test_out_of_range_arguments_are_refused(call: Any) -> None:
    tree = MerkleTree(leaves(10))
    with pytest.raises(ValueError):
        call(tree)
    assert tree.size == 10 and tree.root() == mth(leaves(10))


def test_proofs_do_not_rehash_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached subtrees make any root or proof O(log² n) hashes, not O(n)."""
    tree = MerkleTree(leaves(2**12 + 37))
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    depth = tree.size.bit_length()
    for size in (tree.size, tree.size - 1, 3000, 2**12 + 1, 1234):
        calls = 0
        tree.root(size)
        assert calls <= depth
        calls = 0
        tree.inclusion_proof(size // 3, size)
        tree.inclusion_proof(size - 1, size)
        tree.consistency_proof(size // 2 + 1, size)
        assert calls <= 3 * depth * depth


# Verification: honest proofs pass, any tampering fails ---------------------------------------


@st.composite
def inclusion_cases(draw: st.DrawFn) -> tuple[MerkleTree, dict[str, Any]]:
    hashes = draw(trees)
    tree = MerkleTree(hashes)
    size = draw(st.integers(1, tree.size))
    index = draw(st.integers(0, size - 1))
    case = dict(leaf_hash=hashes[index], index=index, size=size, proof=tree.inclusion_proof(index, size), root=tree.root(size))
    return tree, case


@st.composite
def consistency_cases(draw: st.DrawFn) -> tuple[MerkleTree, dict[str, Any]]:
    tree = MerkleTree(draw(trees))
    second = draw(st.integers(1, tree.size))
    first = draw(st.integers(1, second))
    case = dict(
        first=first,
        second=second,
        first_root=tree.root(first),
        second_root=tree.root(second),
        proof=tree.consistency_proof(first, second),
    )
    return tree, case


@settings(max_examples=150, deadline=None)
@given(drawn=inclusion_cases(), data=st.data())
def test_inclusion_proofs_verify_and_resist_tampering(drawn: tuple[MerkleTree, dict[str, Any]], data: st.DataObject) -> None:
    tree, case = drawn
    verify_inclusion(**case)
    proof, size, index = case["proof"], case["size"], case["index"]
    bit = data.draw(st.integers(0, 8 * 32 - 1), label="bit")
    for name in ("leaf_hash", "root"):
        refused_inclusion(**{**case, name: flip_bit(case[name], bit)})
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        refused_inclusion(**{**case, "proof": proof[:i] + [flip_bit(proof[i], bit)] + proof[i + 1 :]})
        refused_inclusion(**{**case, "proof": proof[:i] + proof[i + 1 :]})
    extra = data.draw(st.sampled_from([leaf_hash(b"extra"), case["root"], case["leaf_hash"]]), label="extra")
    at = data.draw(st.integers(0, len(proof)), label="extra at")
    refused_inclusion(**{**case, "proof": proof[:at] + [extra] + proof[at:]})
    other_index = data.draw(st.integers(0, size).filter(lambda i: i != index), label="other index")
    refused_inclusion(**{**case, "index": other_index})
    # Another size with that size's root. (With the same root, another size of the same shape
    # can verify, as in RFC 9162: the signed head is what binds a size to its root.)
    other_sizes = [s for s in range(index + 1, tree.size + 1) if s != size]
    if other_sizes:
        other_size = data.draw(st.sampled_from(other_sizes), label="other size")
        refused_inclusion(**{**case, "size": other_size, "root": tree.root(other_size)})


@settings(max_examples=150, deadline=None)
@given(drawn=consistency_cases(), data=st.data())
def test_consistency_proofs_verify_and_resist_tampering(drawn: tuple[MerkleTree, dict[str, Any]], data: st.DataObject) -> None:
    tree, case = drawn
    verify_consistency(**case)
    proof, first, second = case["proof"], case["first"], case["second"]
    bit = data.draw(st.integers(0, 8 * 32 - 1), label="bit")
    for name in ("first_root", "second_root"):
        refused_consistency(**{**case, name: flip_bit(case[name], bit)})
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        refused_consistency(**{**case, "proof": proof[:i] + [flip_bit(proof[i], bit)] + proof[i + 1 :]})
        refused_consistency(**{**case, "proof": proof[:i] + proof[i + 1 :]})
    extra = data.draw(st.sampled_from([leaf_hash(b"extra"), case["first_root"], case["second_root"]]), label="extra")
    at = data.draw(st.integers(0, len(proof)), label="extra at")
    refused_consistency(**{**case, "proof": proof[:at] + [extra] + proof[at:]})
    other_first = data.draw(st.integers(1, second).filter(lambda s: s != first), label="other first") if second > 1 else None
    if other_first is not None:
        refused_consistency(**{**case, "first": other_first, "first_root": tree.root(other_first)})
    if second < tree.size:
        other_second = data.draw(st.integers(first, tree.size).filter(lambda s: s != second), label="other second")
        refused_consistency(**{**case, "second": other_second, "second_root": tree.root(other_second)})


def test_a_log_that_rewrote_history_has_no_consistency_proof() -> None:
    honest = MerkleTree(leaves(20))
    forked = MerkleTree(leaves(9) + [leaf_hash(b"rewritten")] + leaves(20)[10:])
    for first in range(10, 21):
        refused_consistency(
            first=first,
            second=20,
            first_root=honest.root(first),
            second_root=forked.root(20),
            proof=forked.consistency_proof(first, 20),
        )
    verify_consistency(first=9, second=20, first_root=honest.root(9), second_root=forked.root(20), proof=forked.consistency_proof(9, 20))


# Malformed verifier input ---------------------------------------------------------------------

GOOD = MerkleTree(leaves(7))
INCLUSION = dict(leaf_hash=leaves(7)[3], index=3, size=7, proof=GOOD.inclusion_proof(3, 7), root=GOOD.root())
CONSISTENCY = dict(first=3, second=7, first_root=GOOD.root(3), second_root=GOOD.root(), proof=GOOD.consistency_proof(3, 7))


@pytest.mark.parametrize(
    "changes",
    [
        {"leaf_hash": b"\0" * 31},
        {"leaf_hash": "x" * 32},
        {"root": b"\0" * 33},
        {"root": None},
        {"index": -1},
        {"index": 7},
        {"index": True},
        {"index": 2**63},
        {"size": 0},
        {"size": 2**63},
        {"size": 7.0},
        {"proof": INCLUSION["proof"][:-1] + [b"\0" * 31]},
        {"proof": INCLUSION["proof"][:-1] + [bytearray(32)]},
        {"proof": b"".join(INCLUSION["proof"])},
        {"proof": [leaf_hash(b"x")] * (limits.MAX_PROOF_HASHES + 1)},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:12]}",
)
def test_malformed_inclusion_input_is_refused(changes: dict[str, Any]) -> None:
    verify_inclusion(**INCLUSION)
    refused_inclusion(**{**INCLUSION, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"first": 0, "first_root": EMPTY_ROOT},
        {"first": 8},
        {"first": -1},
        {"first": True},
        {"second": 2**63},
        {"first_root": GOOD.root(3)[:31]},
        {"second_root": "root"},
        {"proof": []},
        {"proof": CONSISTENCY["proof"][:-1] + [b"\0" * 33]},
        {"proof": [leaf_hash(b"x")] * (limits.MAX_PROOF_HASHES + 1)},
        {"proof": tuple(CONSISTENCY["proof"]) + (None,)},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:12]}",
)
def test_malformed_consistency_input_is_refused(changes: dict[str, Any]) -> None:
    verify_consistency(**CONSISTENCY)
    refused_consistency(**{**CONSISTENCY, **changes})


def test_equal_sizes_need_equal_roots_and_no_proof() -> None:
    root = GOOD.root(5)
    verify_consistency(first=5, second=5, first_root=root, second_root=root, proof=[])
    verify_consistency(first=5, second=5, first_root=root, second_root=root, proof=())
    refused_consistency(first=5, second=5, first_root=root, second_root=GOOD.root(6), proof=[])
    refused_consistency(first=5, second=5, first_root=root, second_root=root, proof=[root])
    refused_consistency(first=0, second=0, first_root=EMPTY_ROOT, second_root=EMPTY_ROOT, proof=[])
