"""Key transparency with real node processes: the acceptance walkthrough of the key directory.

alpha and beta peer with each other and witness each other's directory. alice@alpha looks up
bob@beta: the answer verifies on her device, and the inclusion proof it prints also verifies
with the small, separate RFC 9162 verifier below (written from the RFC, sharing no code with
core/keydir). Bob links a second device: alice's next lookup shows it in a larger tree that her
device checked to be consistent with the earlier head, and bob's first device reports it.
The one-shot commands run their ``main`` in this process (``sonet_here``, ``node_here``): the
head is polled, and an interpreter start per look is most of its cost.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from .conftest import NodeProcess, Processes, link_device, node_here, ok, register, sonet_here
from .test_federation import peer, start

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: hang guard while polling for a witness's cosignature (never a performance threshold)
POLL_GUARD_S = 60.0


def _rfc9162_root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, step by step."""
    assert index < size
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        assert sn != 0, "proof longer than the tree is deep"
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof shorter than the tree is deep"
    return r


def _head(node: NodeProcess) -> dict:
    return json.loads(ok(node_here("directory", "head", "--data", node.data, "--json")).out)


def _cosigned(node: NodeProcess, witness: str, *, larger_than: int = -1) -> dict:
    """Wait until ``node``'s newest head is larger than ``larger_than`` and cosigned by ``witness``."""
    deadline = time.monotonic() + POLL_GUARD_S
    while True:
        head = _head(node)
        if head["tree_size"] > larger_than and witness in {c["witness"] for c in head["cosignatures"]}:
            return head
        if time.monotonic() > deadline:
            pytest.fail(f"{witness} did not cosign {node.name}'s head: {head}")
        time.sleep(0.2)


def _lookup(home: Path, address: str) -> dict:
    return json.loads(ok(sonet_here(home, "lookup", address, "--json")).out)


def _check_inclusion(found: dict) -> None:
    leaf = bytes.fromhex(found["leaf"])
    path = [bytes.fromhex(h) for h in found["inclusion_proof"]]
    root = _rfc9162_root_from_inclusion(leaf, found["leaf_index"], found["tree_size"], path)
    assert root.hex() == found["root_hash"]


def test_lookup_verifies_and_a_linked_device_shows_up_in_a_consistent_larger_tree(procs: Processes, tmp_path: Path) -> None:
    alpha, beta = start(procs, tmp_path, "alpha"), start(procs, tmp_path, "beta")
    peer(alpha, beta)
    peer(beta, alpha)
    alice, bob, bob2 = tmp_path / "alice", tmp_path / "bob", tmp_path / "bob2"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)

    head = _cosigned(beta, "alpha")
    assert head["node"] == "beta" and len(bytes.fromhex(head["root_hash"])) == 32

    first = _lookup(alice, "bob@beta")
    assert first["address"] == "bob@beta" and first["verified"] is True
    assert first["entry"]["account"] == "bob@beta"
    assert len(first["entry"]["device_list"]["devices"]) == 1
    _check_inclusion(first)
    assert first["tree_head"]["tree_size"] == first["tree_size"]
    assert "alpha" in {c["witness"] for c in first["cosignatures"]}

    # bob links a second device: a new leaf, a larger tree, witnessed again by alpha
    link_device(procs, beta, bob2, bob, "bob@beta", 2)
    _cosigned(beta, "alpha", larger_than=first["tree_size"])
    second = _lookup(alice, "bob@beta")
    assert second["tree_size"] > first["tree_size"]
    assert second["leaf_index"] > first["leaf_index"]
    assert second["entry"]["prev"] == first["leaf_index"]
    assert len(second["entry"]["device_list"]["devices"]) == 2
    assert second["consistent_with"] == {"tree_size": first["tree_size"], "root_hash": first["root_hash"]}
    _check_inclusion(second)

    # bob's first device reports the addition (it approved the link itself)
    reported = [json.loads(line) for line in ok(sonet_here(bob, "alerts", "--json")).out.splitlines()]
    assert any("device 2" in a["text"] and "added" in a["text"] for a in reported), reported

    # and alpha's head carries beta's cosignature the same way
    assert "beta" in {c["witness"] for c in _cosigned(alpha, "beta")["cosignatures"]}
