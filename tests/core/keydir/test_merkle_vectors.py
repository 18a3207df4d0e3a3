"""The transparency-dev Merkle vectors (RFC 6962/9162 hashing) through core.keydir.merkle.

Every JSON file of testdata/inclusion and testdata/consistency (the "additional" and
"single-entry" folders included, the subtree* folders not) is one case: ``wantErr`` cases must
raise VerifyError, the others must verify. The numbered folders are built over the 8 classic
RFC 6962 leaves, so our MerkleTree must also reproduce their roots and proofs.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sonet.core.errors import VerifyError
from sonet.core.keydir import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from tests.vectors import transparency_dev

INCLUSION = transparency_dev("inclusion")
CONSISTENCY = transparency_dev("consistency")

#: the leaves of RFC 6962's reference tree, used by every numbered vector folder
CLASSIC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CLASSIC = MerkleTree(leaf_hash(leaf) for leaf in CLASSIC_LEAVES)


def b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def proof_of(case: dict[str, Any]) -> list[bytes]:
    return [b64(h) for h in case["proof"] or []]


def run_inclusion(case: dict[str, Any]) -> None:
    verify_inclusion(
        leaf_hash=b64(case["leafHash"]),
        index=case["leafIdx"],
        size=case["treeSize"],
        proof=proof_of(case),
        root=b64(case["root"]),
    )


def run_consistency(case: dict[str, Any]) -> None:
    verify_consistency(
        first=case["size1"],
        second=case["size2"],
        first_root=b64(case["root1"]),
        second_root=b64(case["root2"]),
        proof=proof_of(case),
    )


def check(run: Any, case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(VerifyError) as info:
            run(case)
        assert info.value.code in ("bad_inclusion_proof", "bad_consistency_proof")
    else:
        run(case)


def test_every_vector_file_is_here() -> None:
    assert len(INCLUSION) == 98 and len(CONSISTENCY) == 98
    assert {name.split("/")[0] for name, _ in INCLUSION} == {"0", "1", "2", "3", "4", "additional", "single-entry"}
    assert sum(not case["wantErr"] for _, case in INCLUSION + CONSISTENCY) == 12


@pytest.mark.parametrize("case", [c for _, c in INCLUSION], ids=[n for n, _ in INCLUSION])
def test_inclusion_vector(case: dict[str, Any]) -> None:
    check(run_inclusion, case)


@pytest.mark.parametrize("case", [c for _, c in CONSISTENCY], ids=[n for n, _ in CONSISTENCY])
def test_consistency_vector(case: dict[str, Any]) -> None:
    check(run_consistency, case)


def classic_happy_paths(vectors: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [case for name, case in vectors if name.split("/")[0].isdigit() and name.endswith("/happy-path.json")]


def test_classic_tree_reproduces_the_inclusion_vectors() -> None:
    cases = classic_happy_paths(INCLUSION)
    assert len(cases) == 5
    for case in cases:
        index, size = case["leafIdx"], case["treeSize"]
        assert CLASSIC.root(size) == b64(case["root"])
        assert leaf_hash(CLASSIC_LEAVES[index]) == b64(case["leafHash"])
        assert CLASSIC.inclusion_proof(index, size) == proof_of(case)


def test_classic_tree_reproduces_the_consistency_vectors() -> None:
    cases = classic_happy_paths(CONSISTENCY)
    assert len(cases) == 5
    for case in cases:
        first, second = case["size1"], case["size2"]
        assert CLASSIC.root(first) == b64(case["root1"])
        assert CLASSIC.root(second) == b64(case["root2"])
        assert CLASSIC.consistency_proof(first, second) == proof_of(case)


def test_classic_tree_root() -> None:
    # RFC 6962's reference tree root (also in the certificate-transparency test data).
    assert CLASSIC.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
