"""Array-tree math (core/mls/tree_math/) against the IETF tree-math vectors and against the
tree's definition, and the interop kinds tree-math and deserialization with tampered cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sonet.core.errors import LocalProtocolError
from sonet.core.mls import tree_math as tm
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.interop import deserialization, tree_math
from tests import vectors


def cases(kind: str) -> list[dict[str, Any]]:
    loaded = vectors.load_json(f"mls/{kind}.json")
    assert isinstance(loaded, list) and loaded
    return loaded


def test_every_tree_math_vector_passes() -> None:
    found = cases("tree-math")
    assert [c["n_leaves"] for c in found] == [1 << k for k in range(10)]
    for case in found:
        tree_math.check(case)


@pytest.mark.parametrize(
    ("field", "tamper"),
    [
        ("n_nodes", lambda c: c["n_nodes"] + 2),
        ("root", lambda c: c["root"] - 1),
        ("left", lambda c: [*c["left"][:3], 0, *c["left"][4:]]),
        ("right", lambda c: c["right"][:-1]),
        ("parent", lambda c: [None, *c["parent"][1:]]),
        ("sibling", lambda c: [*c["sibling"][:-1], 0]),
    ],
)
def test_a_tampered_tree_math_case_fails(field: str, tamper: Any) -> None:
    case = copy.deepcopy(cases("tree-math")[3])  # 8 leaves
    case[field] = tamper(case)
    with pytest.raises(AssertionError, match=field):
        tree_math.check(case)


def test_every_deserialization_vector_passes() -> None:
    found = cases("deserialization")
    assert len(found) == 14
    for case in found:
        deserialization.check(case)


@pytest.mark.parametrize(
    ("header", "length", "error"),
    [
        ("4040", 65, AssertionError),  # a wrong length
        ("404000", 64, DecodeError),  # trailing byte
        ("4000", 0, DecodeError),  # not minimal
        ("c0000000", 0, DecodeError),  # prefix 0b11
        ("80", 0, DecodeError),  # truncated
    ],
)
def test_a_tampered_deserialization_case_fails(header: str, length: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        deserialization.check({"vlbytes_header": header, "length": length})


# The definition: children, parents and paths agree with each other in trees of every size --


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64])
def test_relations_agree(n: int) -> None:
    width = tm.node_width(n)
    assert tm.leaf_width(width) == n
    r = tm.root(n)
    assert tm.direct_path(r, n) == [] and tm.copath(r, n) == []
    for x in range(width):
        if x != r:
            p = tm.parent(x, n)
            assert x in (tm.left(p), tm.right(p))
            assert {x, tm.sibling(x, n)} == {tm.left(p), tm.right(p)}
            path = tm.direct_path(x, n)
            assert path[0] == p and path[-1] == r
            assert [tm.level(y) for y in path] == list(range(tm.level(x) + 1, tm.level(r) + 1))
            assert tm.copath(x, n) == [tm.sibling(y, n) for y in [x, *path[:-1]]]
        if tm.is_leaf(x):
            assert tm.leaf_to_node(tm.node_to_leaf(x)) == x and tm.level(x) == 0


@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_common_ancestor_is_the_lowest_shared_node(n: int) -> None:
    width = tm.node_width(n)

    def up(x: int) -> list[int]:
        return [x, *tm.direct_path(x, n)]

    for x in range(width):
        for y in range(width):
            shared = [a for a in up(x) if a in up(y)]
            assert tm.common_ancestor(x, y) == shared[0], (x, y)


def test_the_rfc_example_tree() -> None:
    # RFC 9420 §4.1's tree of 8 leaves: root 7, leaf A (node 0) has direct path 1, 3, 7
    assert tm.root(8) == 7
    assert tm.direct_path(0, 8) == [1, 3, 7]
    assert tm.copath(0, 8) == [2, 5, 11]
    assert tm.common_ancestor(0, 6) == 3 and tm.common_ancestor(4, 10) == 7


@pytest.mark.parametrize(
    "call",
    [
        lambda: tm.left(4),  # a leaf has no children
        lambda: tm.right(0),
        lambda: tm.parent(7, 8),  # the root has no parent
        lambda: tm.sibling(3, 4),
        lambda: tm.parent(15, 8),  # outside the tree
        lambda: tm.direct_path(-1, 8),
        lambda: tm.copath(0, 3),  # 3 leaves: not a full tree
        lambda: tm.root(0),
        lambda: tm.node_to_leaf(3),  # a parent node
        lambda: tm.leaf_width(4),
        lambda: tm.level(-1),
    ],
)
def test_questions_without_an_answer_are_refused(call: Any) -> None:
    with pytest.raises(LocalProtocolError, match="MLS tree math"):
        call()
