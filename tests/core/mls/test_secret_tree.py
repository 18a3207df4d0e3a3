"""The secret tree of RFC 9420 §9 (sonet.core.mls.secret_tree): the secret-tree vectors, lazy
derivation at group size, the out-of-order window, refusals of generations too far ahead, too
old or used, and forward secrecy (a used key cannot be had again)."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.limits import MLS_MAX_SKIPPED_GENERATIONS, MLS_OUT_OF_ORDER_WINDOW
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.interop import secret_tree as secret_tree_kind
from sonet.core.mls.interop.expect import VectorMismatch
from sonet.core.mls.key_schedule import sender_data_key_nonce
from sonet.core.mls.secret_tree import GenerationError, RatchetKey, RatchetKind, SecretTree
from tests.vectors import load_json

H, A = RatchetKind.HANDSHAKE, RatchetKind.APPLICATION
SECRET = bytes(range(32))
SUITE1 = cipher_suite(1)
CASES: list[dict[str, Any]] = load_json("mls/secret-tree.json")


def _take(key: RatchetKey) -> RatchetKey:
    return key


class CountingSuite:
    """Suite 1, counting the derivations (each one ExpandWithLabel) the secret tree asks for."""

    def __init__(self) -> None:
        self.suite: CipherSuite = SUITE1
        self.expansions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.suite, name)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        self.expansions += 1
        return self.suite.expand_with_label(secret, label, context, length)

    def derive_tree_secret(self, secret: bytes, label: bytes, generation: int, length: int) -> bytes:
        self.expansions += 1
        return self.suite.derive_tree_secret(secret, label, generation, length)


def suite1_cases() -> list[dict[str, Any]]:
    cases = [c for c in CASES if c["cipher_suite"] == 1]
    assert cases
    return cases


# -- the vectors ------------------------------------------------------------------------------


def test_the_file_has_every_suite() -> None:
    assert {c["cipher_suite"] for c in CASES} == set(range(1, 8))


@pytest.mark.parametrize("case", CASES, ids=[f"suite{c['cipher_suite']}-{len(c['leaves'])}leaves" for c in CASES])
def test_vectors(case: dict[str, Any]) -> None:
    secret_tree_kind.check(case)


def test_the_vectors_leaves_in_one_tree_in_order() -> None:
    """The same keys from one tree used as a group uses it (generations ascending, skipped
    ones kept), not only from a fresh tree per generation."""
    for case in suite1_cases():
        tree = SecretTree(SUITE1, bytes.fromhex(case["encryption_secret"]), len(case["leaves"]))
        for leaf, generations in enumerate(case["leaves"]):
            for entry in generations:
                for kind in RatchetKind:
                    got = tree.open_with(leaf, kind, entry["generation"], _take)
                    assert got.key.hex() == entry[f"{kind.value.decode()}_key"]
        assert tree.held_node_secrets == 0  # every leaf split: no node secret left


@pytest.mark.parametrize(
    "path",
    [
        ("encryption_secret",),
        ("sender_data", "key"),
        ("sender_data", "nonce"),
        ("sender_data", "ciphertext"),
        ("leaves", 3, 1, "application_key"),
        ("leaves", 7, 0, "handshake_nonce"),
    ],
)
def test_a_tampered_vector_fails(path: tuple[Any, ...]) -> None:
    case = copy.deepcopy(suite1_cases()[1])
    holder = case
    for step in path[:-1]:
        holder = holder[step]
    value = bytearray.fromhex(holder[path[-1]])
    value[0] ^= 0x01  # the first byte: the sender-data sample is the ciphertext's first Nh bytes
    holder[path[-1]] = value.hex()
    with pytest.raises(VectorMismatch):
        secret_tree_kind.check(case)


def test_a_tampered_generation_fails() -> None:
    case = copy.deepcopy(suite1_cases()[0])
    case["leaves"][0][1]["generation"] = 14
    with pytest.raises(VectorMismatch):
        secret_tree_kind.check(case)


# -- sender data keys -------------------------------------------------------------------------


def test_sender_data_keys_use_only_the_first_nh_bytes_of_the_ciphertext() -> None:
    ct = bytes(range(100))
    key, nonce = sender_data_key_nonce(SUITE1, SECRET, ct)
    assert (len(key), len(nonce)) == (SUITE1.nk, SUITE1.nn)
    assert sender_data_key_nonce(SUITE1, SECRET, ct[:32] + bytes(68)) == (key, nonce)
    assert sender_data_key_nonce(SUITE1, SECRET, b"\xff" + ct[1:]) != (key, nonce)
    # shorter than Nh: the whole ciphertext is the sample
    assert sender_data_key_nonce(SUITE1, SECRET, ct[:5]) != sender_data_key_nonce(SUITE1, SECRET, ct[:6])


# -- lazy derivation at group size -------------------------------------------------------------


def test_a_1500_member_tree_derives_nothing_up_front_and_one_path_per_sender() -> None:
    cs = CountingSuite()
    tree = SecretTree(cast(CipherSuite, cs), SECRET, 1500)
    assert tree.leaf_count == 2048  # the full tree that holds 1,500 leaves
    assert cs.expansions == 0 and tree.held_node_secrets == 1
    tree.open_with(1234, A, 0, _take)
    # 11 levels: two children per level, two ratchet secrets, key + nonce + next secret
    assert cs.expansions == 2 * 11 + 2 + 3
    assert tree.held_node_secrets == 11  # the copath of leaf 1234, nothing else
    before = cs.expansions
    tree.open_with(1235, H, 0, _take)  # the sibling leaf: its secret was kept
    assert cs.expansions - before == 2 + 3
    assert tree.held_node_secrets == 10


def test_a_group_size_rounds_up_to_the_full_tree_with_the_same_keys() -> None:
    small, full = SecretTree(SUITE1, SECRET, 1500), SecretTree(SUITE1, SECRET, 2048)
    assert small.open_with(2047, A, 3, _take).key == full.open_with(2047, A, 3, _take).key
    with pytest.raises(RemoteProtocolError, match="leaf 2048 is outside a tree of 2048 leaves"):
        small.open_with(2048, A, 0, _take)
    with pytest.raises(RemoteProtocolError):
        small.next_key(-1, A)
    with pytest.raises(LocalProtocolError):
        SecretTree(SUITE1, SECRET, 0)
    with pytest.raises(LocalProtocolError, match="encryption_secret of 31 bytes"):
        SecretTree(SUITE1, SECRET[:31], 8)


def test_every_leaf_and_ratchet_has_its_own_keys() -> None:
    tree = SecretTree(SUITE1, SECRET, 8)
    keys = {tree.open_with(leaf, kind, 0, _take).key for leaf in range(8) for kind in RatchetKind}
    assert len(keys) == 16
    assert tree.held_node_secrets == 0


# -- sending and receiving ----------------------------------------------------------------------


def test_the_senders_keys_are_the_receivers_keys() -> None:
    sender, receiver = SecretTree(SUITE1, SECRET, 4), SecretTree(SUITE1, SECRET, 4)
    sent = [sender.next_key(2, A) for _ in range(3)]
    assert [k.generation for k in sent] == [0, 1, 2]
    assert sender.ratchet(2, A).next_generation == 3
    for k in sent:
        got = receiver.open_with(2, A, k.generation, _take)
        assert (got.key, got.nonce) == (k.key, k.nonce)
    assert sender.next_key(2, H).generation == 0  # the handshake ratchet is separate


def test_a_used_generation_cannot_be_had_again() -> None:
    tree = SecretTree(SUITE1, SECRET, 4)
    tree.open_with(1, A, 0, _take)
    with pytest.raises(GenerationError, match="generation 0 was used already") as e:
        tree.open_with(1, A, 0, _take)
    assert e.value.code == "mls_generation"


def test_a_skipped_generation_is_kept_and_deleted_once_used() -> None:
    tree = SecretTree(SUITE1, SECRET, 4)
    reference = SecretTree(SUITE1, SECRET, 4)
    expected = [reference.next_key(0, A) for _ in range(6)]
    assert tree.open_with(0, A, 5, _take).key == expected[5].key
    ratchet = tree.ratchet(0, A)
    assert ratchet.skipped_generations == (0, 1, 2, 3, 4)
    assert tree.open_with(0, A, 3, _take).key == expected[3].key
    assert ratchet.skipped_generations == (0, 1, 2, 4)
    with pytest.raises(GenerationError, match="used already"):
        tree.open_with(0, A, 3, _take)
    assert tree.open_with(0, A, 6, _take).generation == 6  # in order again


def test_keys_older_than_the_window_are_deleted() -> None:
    tree = SecretTree(SUITE1, SECRET, 2, window=4)
    tree.open_with(0, A, 10, _take)
    assert tree.ratchet(0, A).skipped_generations == (7, 8, 9)
    with pytest.raises(GenerationError, match="older than the out-of-order window"):
        tree.open_with(0, A, 5, _take)
    tree.open_with(0, A, 12, _take)
    assert tree.ratchet(0, A).skipped_generations == (9, 11)
    with pytest.raises(GenerationError, match="older than the out-of-order window"):
        tree.open_with(0, A, 8, _take)
    assert tree.open_with(0, A, 9, _take).generation == 9


def test_a_generation_too_far_ahead_is_refused_before_any_derivation() -> None:
    cs = CountingSuite()
    tree = SecretTree(cast(CipherSuite, cs), SECRET, 2)
    tree.open_with(0, A, 0, _take)
    before = cs.expansions
    with pytest.raises(GenerationError, match=f"at most {MLS_MAX_SKIPPED_GENERATIONS} may be skipped"):
        tree.open_with(0, A, 2 + MLS_MAX_SKIPPED_GENERATIONS, _take)
    assert cs.expansions == before
    assert tree.open_with(0, A, 1 + MLS_MAX_SKIPPED_GENERATIONS, _take).generation == 1 + MLS_MAX_SKIPPED_GENERATIONS
    # only the window's worth of the skipped keys is kept
    assert len(tree.ratchet(0, A).skipped_generations) == MLS_OUT_OF_ORDER_WINDOW - 1


@pytest.mark.parametrize("generation", [-1, 2**32])
def test_a_generation_that_is_no_uint32_is_refused(generation: int) -> None:
    with pytest.raises(GenerationError, match="not a uint32"):
        SecretTree(SUITE1, SECRET, 2).open_with(0, A, generation, _take)


def test_a_failed_decryption_uses_up_nothing() -> None:
    """A forged message whose decryption raises neither deletes its key nor moves the ratchet."""
    tree = SecretTree(SUITE1, SECRET, 2)

    def forged(key: RatchetKey) -> None:
        raise RemoteProtocolError("decryption failed")

    with pytest.raises(RemoteProtocolError, match="decryption failed"):
        tree.open_with(0, A, 40, forged)
    ratchet = tree.ratchet(0, A)
    assert ratchet.next_generation == 0 and ratchet.skipped_generations == ()
    tree.open_with(0, A, 3, _take)
    with pytest.raises(RemoteProtocolError):
        tree.open_with(0, A, 1, forged)
    assert ratchet.skipped_generations == (0, 1, 2)
    assert tree.open_with(0, A, 1, _take).generation == 1


def test_nothing_secret_in_reprs() -> None:
    tree = SecretTree(SUITE1, SECRET, 2)
    key = tree.next_key(0, A)
    assert key.key.hex() not in repr(key) and "secret" in repr(key)
    assert SECRET.hex() not in repr(tree)
