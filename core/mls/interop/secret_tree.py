"""Kind ``secret-tree``: the sender-data key and nonce of a ciphertext sample, and the handshake
and application keys and nonces of every listed generation of every leaf of a secret tree."""

from __future__ import annotations

from typing import Any

from ..crypto import cipher_suite
from ..key_schedule import sender_data_key_nonce
from ..secret_tree import MAX_GENERATION, RatchetKey, RatchetKind, SecretTree
from .expect import expect_equal, hex_field

__all__ = ["check"]


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])
    sender_data = case["sender_data"]
    key, nonce = sender_data_key_nonce(cs, hex_field(sender_data, "sender_data_secret"), hex_field(sender_data, "ciphertext"))
    expect_equal("sender_data key", key, hex_field(sender_data, "key"))
    expect_equal("sender_data nonce", nonce, hex_field(sender_data, "nonce"))
    encryption_secret = hex_field(case, "encryption_secret")
    leaves = case["leaves"]
    for leaf, generations in enumerate(leaves):
        for entry in generations:
            generation = entry["generation"]
            # a fresh tree per entry: the vector's generations may come in any order and be far
            # apart, which a group's bounded window would (rightly) refuse
            tree = SecretTree(cs, encryption_secret, len(leaves), window=0, max_skipped=MAX_GENERATION)
            for kind in RatchetKind:
                name = kind.value.decode()
                got: RatchetKey = tree.open_with(leaf, kind, generation, lambda k: k)
                expect_equal(f"leaf {leaf} generation {generation} {name}_key", got.key, hex_field(entry, f"{name}_key"))
                expect_equal(f"leaf {leaf} generation {generation} {name}_nonce", got.nonce, hex_field(entry, f"{name}_nonce"))
