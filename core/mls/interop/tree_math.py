"""Kind ``tree-math``: n_nodes, root, and left/right/parent/sibling of every node of a tree of
n_leaves leaves (null where the node has none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import LocalProtocolError
from .. import tree_math
from .expect import expect_equal

__all__ = ["check"]


def _or_none(f: Callable[[], int]) -> int | None:
    try:
        return f()
    except LocalProtocolError:  # a leaf's children, the root's parent and sibling
        return None


def check(case: dict[str, Any]) -> None:
    n = case["n_leaves"]
    width = tree_math.node_width(n)
    expect_equal("n_nodes", width, case["n_nodes"])
    expect_equal("root", tree_math.root(n), case["root"])
    relations: dict[str, Callable[[int], int]] = {
        "left": tree_math.left,
        "right": tree_math.right,
        "parent": lambda x: tree_math.parent(x, n),
        "sibling": lambda x: tree_math.sibling(x, n),
    }
    for name, relation in relations.items():
        expected = case[name]
        expect_equal(f"length of {name}", len(expected), width)
        for x in range(width):
            expect_equal(f"{name}[{x}]", _or_none(lambda: relation(x)), expected[x])
