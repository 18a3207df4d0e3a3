"""Lookup proofs (core.keydir.proof): a real directory of entries, every leaf proven, every
tampering refused, and witness counting."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sonet.core.client_api import DirectoryProof, SignedHead
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.device_list import encode_account_identity, sign_device_list
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import (
    COSIGNATURE_LABEL,
    MerkleTree,
    ProvenEntry,
    cosign,
    decode_entry,
    encode_entry,
    leaf_hash,
    sign_head,
    verify_directory_proof,
    verify_head,
    witnesses,
)
from sonet.core.signed import sign_body

from ..pairs import flip_bit, identity

HYBRID = CryptoMode.HYBRID
NOW = 1_700_000_000_000
ALPHA = "alpha.example"
WITNESSES = ("beta.example", "gamma.example", "delta.example")


def key(name: str) -> SigningKey:
    return identity(HYBRID, f"node {name}")


def account_entry(user: str, version: int, prev: int, at: int) -> bytes:
    account = f"{user}@{ALPHA}"
    account_key = identity(HYBRID, f"account {account}")
    devices = [identity(CryptoMode.CLASSICAL, f"{account} device {i}").public.fingerprint for i in range(version)]
    device_list = sign_device_list(account_key, account=account, version=version, devices=devices, now=at)
    return encode_entry(account=account, identity=encode_account_identity(account_key), device_list=device_list, prev=prev, at=at)


class Directory:
    """A node's log the way the node keeps it: leaves, their tree, one signed head."""

    def __init__(self, changes: list[str]) -> None:
        self.leaves: list[bytes] = []
        last: dict[str, int] = {}
        versions: dict[str, int] = {}
        for i, user in enumerate(changes):
            versions[user] = versions.get(user, 0) + 1
            self.leaves.append(account_entry(user, versions[user], last.get(user, -1), NOW + i))
            last[user] = i
        self.last = last
        self.tree = MerkleTree(leaf_hash(leaf) for leaf in self.leaves)
        self.head = sign_head(key(ALPHA), node=ALPHA, size=self.tree.size, root=self.tree.root(), at=NOW + 100)

    def proof(self, index: int, cosignatures: tuple[bytes, ...] = ()) -> DirectoryProof:
        return DirectoryProof(
            leaf=self.leaves[index],
            index=index,
            path=tuple(self.tree.inclusion_proof(index, self.tree.size)),
            head=SignedHead(head=self.head, cosignatures=cosignatures),
        )


CHANGES = ["alice", "bob", "alice", "carol", "dave", "bob", "alice", "erin", "frank", "carol", "alice"]
DIRECTORY = Directory(CHANGES)


def verify(proof: DirectoryProof, account: str = f"alice@{ALPHA}", **kw: Any) -> ProvenEntry:
    args: dict[str, Any] = dict(node=ALPHA, node_key=key(ALPHA).public, account=account)
    args.update(kw)
    return verify_directory_proof(proof, **args)


def refused(code: str, proof: DirectoryProof, **kw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        verify(proof, **kw)
    assert info.value.code == code


def test_every_leaf_of_a_real_directory_is_proven() -> None:
    head = verify_head(DIRECTORY.head, node_key=key(ALPHA).public, node=ALPHA)
    for index, user in enumerate(CHANGES):
        proven = verify(DIRECTORY.proof(index), account=f"{user.upper()}@{ALPHA}")
        assert proven == ProvenEntry(entry=decode_entry(DIRECTORY.leaves[index]), index=index, head=head)
        assert proven.entry.account == f"{user}@{ALPHA}"
    newest = verify(DIRECTORY.proof(DIRECTORY.last["alice"]))
    assert newest.entry.prev == 6 and newest.index == 10


def test_a_one_leaf_directory() -> None:
    single = Directory(["alice"])
    assert single.proof(0).path == ()
    assert verify(single.proof(0)).entry.prev == -1


def test_another_accounts_leaf_is_refused() -> None:
    refused("wrong_account", DIRECTORY.proof(1))  # bob's leaf, asked for alice
    refused("wrong_account", DIRECTORY.proof(0), account=f"alicia@{ALPHA}")


def test_an_account_of_another_node_is_a_caller_error() -> None:
    with pytest.raises(LocalProtocolError):
        verify(DIRECTORY.proof(0), account="alice@beta.example")
    with pytest.raises(LocalProtocolError):
        verify(DIRECTORY.proof(0), account="not an address")


@pytest.mark.parametrize("bit", [0, 7, 8 * 100 + 3, -1])
def test_a_flipped_bit_in_the_leaf_is_refused(bit: int) -> None:
    proof = DIRECTORY.proof(4)
    bad = flip_bit(proof.leaf, bit % (8 * len(proof.leaf)))
    refused("bad_inclusion_proof", dataclasses.replace(proof, leaf=bad), account=f"dave@{ALPHA}")


def test_a_flipped_bit_anywhere_in_the_path_is_refused() -> None:
    proof = DIRECTORY.proof(4)
    assert len(proof.path) == 4
    for i, h in enumerate(proof.path):
        for bit in range(0, 256, 5):
            path = proof.path[:i] + (flip_bit(h, bit),) + proof.path[i + 1 :]
            refused("bad_inclusion_proof", dataclasses.replace(proof, path=path), account=f"dave@{ALPHA}")


def test_a_flipped_bit_in_the_head_is_refused() -> None:
    proof = DIRECTORY.proof(4)
    for bit in range(0, 8 * len(DIRECTORY.head), 61):
        bad = dataclasses.replace(proof, head=SignedHead(head=flip_bit(DIRECTORY.head, bit), cosignatures=()))
        with pytest.raises(RemoteProtocolError) as info:
            verify(bad, account=f"dave@{ALPHA}")
        assert info.value.code in ("head_forged", "directory_malformed")


def test_a_changed_path_or_index_is_refused() -> None:
    proof = DIRECTORY.proof(4)
    for index in (3, 5, 11, 2**63 - 1, -1, True):
        refused("bad_inclusion_proof", dataclasses.replace(proof, index=index), account=f"dave@{ALPHA}")
    refused("bad_inclusion_proof", dataclasses.replace(proof, path=proof.path[:-1]), account=f"dave@{ALPHA}")
    refused("bad_inclusion_proof", dataclasses.replace(proof, path=proof.path + (proof.path[0],)), account=f"dave@{ALPHA}")
    refused("bad_inclusion_proof", dataclasses.replace(proof, path=DIRECTORY.proof(5).path), account=f"dave@{ALPHA}")


def test_a_leaf_proven_against_a_head_that_does_not_cover_it_is_refused() -> None:
    older = Directory(CHANGES[:5])
    proof = dataclasses.replace(DIRECTORY.proof(6), head=SignedHead(head=older.head, cosignatures=()))
    refused("bad_inclusion_proof", proof)


def test_a_head_of_another_node_or_key_is_refused() -> None:
    refused("head_forged", DIRECTORY.proof(0), node_key=key("beta.example").public)
    forged = sign_head(key("mallory.example"), node=ALPHA, size=DIRECTORY.tree.size, root=DIRECTORY.tree.root(), at=NOW)
    refused("head_forged", dataclasses.replace(DIRECTORY.proof(0), head=SignedHead(head=forged, cosignatures=())))


def test_a_leaf_that_is_not_an_entry_is_malformed() -> None:
    leaves = [b"junk", DIRECTORY.leaves[1]]
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    head = sign_head(key(ALPHA), node=ALPHA, size=2, root=tree.root(), at=NOW)
    proof = DirectoryProof(leaf=b"junk", index=0, path=tuple(tree.inclusion_proof(0, 2)), head=SignedHead(head=head, cosignatures=()))
    refused("directory_malformed", proof)


@pytest.mark.parametrize("prev", [3, 4], ids=["self", "later"])
def test_an_entry_whose_previous_leaf_is_not_earlier_is_refused(prev: int) -> None:
    leaves = [account_entry(user, 1, -1, NOW) for user in ("bob", "carol", "dave")] + [account_entry("alice", 1, prev, NOW)]
    tree = MerkleTree(leaf_hash(leaf) for leaf in leaves)
    head = sign_head(key(ALPHA), node=ALPHA, size=4, root=tree.root(), at=NOW)
    proof = DirectoryProof(leaf=leaves[3], index=3, path=tuple(tree.inclusion_proof(3, 4)), head=SignedHead(head=head, cosignatures=()))
    with pytest.raises(VerifyError) as info:
        verify(proof)
    assert info.value.code == "directory_malformed"


# Witnesses -------------------------------------------------------------------------------------

HEAD = verify_head(DIRECTORY.head, node_key=key(ALPHA).public, node=ALPHA)
KEYS = {name: key(name).public for name in WITNESSES} | {ALPHA: key(ALPHA).public}


def cosig(witness: str, *, signer: str | None = None, head: Any = HEAD, now: int = NOW + 1) -> bytes:
    return cosign(key(signer or witness), witness=witness, head=head, now=now)


def test_witnesses_counts_distinct_valid_cosignatures() -> None:
    beta, gamma = cosig("beta.example"), cosig("gamma.example")
    assert witnesses([beta, gamma], head=HEAD, keys=KEYS) == ["beta.example", "gamma.example"]
    assert witnesses([beta, cosig("beta.example", now=NOW + 2), beta], head=HEAD, keys=KEYS) == ["beta.example"]
    assert witnesses([], head=HEAD, keys=KEYS) == []
    assert witnesses(iter([gamma]), head=HEAD, keys=KEYS) == ["gamma.example"]


def test_witnesses_ignores_what_does_not_vouch_for_this_head() -> None:
    other_tree = Directory(CHANGES[:6])
    other_head = verify_head(other_tree.head, node_key=key(ALPHA).public, node=ALPHA)
    self_signed = sign_body(
        key(ALPHA),
        COSIGNATURE_LABEL,
        {"v": 1, "witness": ALPHA, "node": ALPHA, "size": HEAD.size, "root": HEAD.root, "at": NOW},
    )
    ignored = [
        cosig("epsilon.example"),  # a witness we have no key for
        cosig("delta.example", signer="gamma.example"),  # forged
        cosig("gamma.example", head=other_head),  # for another tree of the same node
        self_signed,  # the node vouching for itself
        b"junk",
        DIRECTORY.head,  # a head is not a cosignature
        flip_bit(cosig("delta.example"), 8 * 40),
    ]
    assert witnesses(ignored, head=HEAD, keys=KEYS) == []
    assert witnesses(ignored + [cosig("delta.example")], head=HEAD, keys=KEYS) == ["delta.example"]


def test_witnesses_of_a_re_signed_head_keep_counting() -> None:
    resigned = verify_head(
        sign_head(key(ALPHA), node=ALPHA, size=HEAD.size, root=HEAD.root, at=HEAD.at + 5), node_key=key(ALPHA).public, node=ALPHA
    )
    assert witnesses([cosig("beta.example")], head=resigned, keys=KEYS) == ["beta.example"]
