"""A scriptable key directory and home-node connection for the client's transparency tests.

``FakeLog`` is one node's directory log built from core/keydir (leaves, Merkle tree, signed
heads, witness cosignatures) that a test can also fork or rewrite, as a lying node would.
``PaddedTree`` is what a lying node can claim without storing anything: a head of any size,
consistent with its real log, whose leaves beyond it are made-up subtree hashes.
``FakeConnection`` stands in for client/connection.py's Connection: it answers the directory
requests (FetchConsistency, FetchNodeKey, FetchLeaves, FetchDevices) from the logs it is given
and records every request, so a test sees what the device asked and that nothing was sent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from collections.abc import Callable
from typing import Any

from sonet.client.connection import NodeError
from sonet.core.client_api import (
    Consistency,
    DeviceEntry,
    Devices,
    DirectoryProof,
    FetchConsistency,
    FetchDevices,
    FetchLeaves,
    FetchNodeKey,
    Leaves,
    NodeKey,
    SignedHead,
)
from sonet.core.crypto import CryptoMode, SigningKey, VerifyKey
from sonet.core.device_list import sign_device_list
from sonet.core.keydir import MerkleTree, cosign, decode_entry, decode_head, encode_entry, leaf_hash, node_hash, sign_head
from sonet.core.wire import Frame

__all__ = ["FakeLog", "PaddedTree", "FakeConnection", "new_key", "T0"]

T0 = 1_700_000_000_000


def new_key() -> SigningKey:
    return SigningKey.generate(CryptoMode.CLASSICAL, os.urandom)


@dataclass
class FakeLog:
    name: str
    key: SigningKey = field(default_factory=new_key)
    leaves: list[bytes] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    #: size -> cosignatures served with the head of that size
    cosignatures: dict[int, list[bytes]] = field(default_factory=dict)
    #: account -> the device records its Devices answers carry
    records: dict[str, tuple[DeviceEntry, ...]] = field(default_factory=dict)

    @property
    def tree(self) -> MerkleTree:
        return MerkleTree(leaf_hash(leaf) for leaf in self.leaves)

    @property
    def size(self) -> int:
        return len(self.leaves)

    def latest(self, account: str) -> int:
        return max(i for i, a in enumerate(self.accounts) if a == account)

    def append(
        self, account: str, identity: SigningKey, *, devices: tuple[str, ...] = (), version: int = 1, prev: int | None = None,
        list_key: SigningKey | None = None,
    ) -> int:
        """A new leaf for ``account``, chained to its previous one (or to ``prev``), its device
        list signed by ``identity`` (or by ``list_key``); its index."""
        if prev is None:
            prev = self.latest(account) if account in self.accounts else -1
        listing = sign_device_list(list_key or identity, account=account, version=version, devices=devices, now=T0)
        self.leaves.append(encode_entry(account=account, identity=identity.public.to_bytes(), device_list=listing, prev=prev, at=T0))
        self.accounts.append(account)
        return self.size - 1

    def filler(self, count: int = 1) -> None:
        """Leaves of other accounts, so that the tree grows."""
        for _ in range(count):
            self.append(f"u{self.size}@{self.name}", new_key())

    def head(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return sign_head(self.key, node=self.name, size=size, root=self.tree.root(size), at=T0 + size)

    def cosign_by(self, witness: str, key: SigningKey, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        raw = cosign(key, witness=witness, head=decode_head(self.head(size)), now=T0 + size)
        self.cosignatures.setdefault(size, []).append(raw)
        return raw

    def proof(self, index: int, size: int | None = None) -> DirectoryProof:
        size = self.size if size is None else size
        signed = SignedHead(head=self.head(size), cosignatures=tuple(self.cosignatures.get(size, ())))
        return DirectoryProof(leaf=self.leaves[index], index=index, path=tuple(self.tree.inclusion_proof(index, size)), head=signed)

    def devices(self, account: str, size: int | None = None, *, index: int | None = None) -> Devices:
        """A Devices answer (with ``records``) carrying the proof of the newest leaf (or of
        leaf ``index``)."""
        index = self.latest(account) if index is None else index
        entry = decode_entry(self.leaves[index])
        return Devices(
            request=1, account=account, account_identity=entry.identity, device_list=entry.device_list, devices=self.records.get(account, ()),
            proof=self.proof(index, size),
        )


class PaddedTree:
    """``log``'s leaves, then leaves up to ``size`` that exist only as made-up subtree hashes:
    the node signs a head of that size and builds the inclusion and consistency proofs of the
    RFC 9162 recursion (§2.1.3.1, §2.1.4.1) from them, which verify like real ones."""

    def __init__(self, log: FakeLog, size: int) -> None:
        self.log, self.size = log, size
        self._hashes = [leaf_hash(leaf) for leaf in log.leaves]

    def _mth(self, lo: int, hi: int) -> bytes:
        if lo >= len(self._hashes):
            return hashlib.sha256(b"junk %d %d" % (lo, hi)).digest()
        if hi - lo == 1:
            return self._hashes[lo]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def devices(self, account: str) -> Devices:
        """A Devices answer proving ``account``'s newest leaf against the padded head."""
        index = self.log.latest(account)
        path, lo, hi = [], 0, self.size
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if index < lo + k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo += k
        head = sign_head(self.log.key, node=self.log.name, size=self.size, root=self._mth(0, self.size), at=T0 + self.size)
        proof = DirectoryProof(leaf=self.log.leaves[index], index=index, path=tuple(reversed(path)), head=SignedHead(head=head, cosignatures=()))
        answer = self.log.devices(account)
        return Devices(
            request=1, account=account, account_identity=answer.account_identity, device_list=answer.device_list, devices=answer.devices, proof=proof
        )

    def consistency(self, first: int) -> tuple[bytes, ...]:
        """The consistency proof from the log's real tree of size ``first`` to the padded one."""
        path, lo, hi, m, whole = [], 0, self.size, first, True
        while m != hi - lo:
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if m <= k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            path.append(self._mth(lo, hi))
        return tuple(reversed(path))


class FakeConnection:
    """What client/transparency.py and client/monitor.py use of a Connection."""

    def __init__(self, home: FakeLog, *others: FakeLog, keys: dict[str, VerifyKey] | None = None) -> None:
        self.logs = {log.name: log for log in (home, *others)}
        self.welcome = SimpleNamespace(node=home.name, witnesses=0)
        self.node_key = home.key.public
        self.node_keys: dict[str, Any] = {}
        #: node keys the home node hands out (default: each log's own)
        self.keys = {name: log.key.public for name, log in self.logs.items()} | (keys or {})
        self.requests: list[Frame] = []
        #: FetchDevices answers to serve instead of the log's (one per request, in order)
        self.devices_answers: list[Devices] = []
        #: (first, second) -> consistency proof to serve instead of the log's
        self.consistency_override: dict[tuple[int, int], tuple[bytes, ...]] = {}
        #: at most this many leaves per Leaves answer (a node may send fewer than asked)
        self.leaves_page = 1 << 20
        #: what a lying node does to each Leaves answer before it is sent
        self.tamper_leaves: Callable[[Leaves], Leaves] | None = None
        #: FetchNodeKey fails with this NodeError instead of answering
        self.node_key_error: NodeError | None = None

    async def request(self, build: Any) -> Frame:
        frame = build(len(self.requests) + 1)
        self.requests.append(frame)
        if isinstance(frame, FetchNodeKey):
            if self.node_key_error is not None:
                raise self.node_key_error
            if frame.node not in self.keys:
                raise NodeError("unknown_node", f"{frame.node} is not a configured peer")
            return NodeKey(request=frame.request, node=frame.node, key=self.keys[frame.node].to_bytes())
        if isinstance(frame, FetchConsistency):
            log = self.logs[frame.node]
            pair = (frame.first, frame.second)
            if pair not in self.consistency_override and frame.second > log.size:
                raise NodeError("bad_request", "no tree of that size")
            proof = self.consistency_override.get(pair) or tuple(log.tree.consistency_proof(*pair))
            return Consistency(request=frame.request, node=frame.node, first=frame.first, second=frame.second, proof=proof)
        if isinstance(frame, FetchDevices):
            if self.devices_answers:
                return self.devices_answers.pop(0)
            return self.logs[frame.account.split("@", 1)[1]].devices(frame.account)
        if isinstance(frame, FetchLeaves):
            home = self.logs[self.welcome.node]
            if not 0 <= frame.start < frame.end <= home.size:
                raise NodeError("bad_request", "no such leaves")
            end = min(frame.end, frame.start + self.leaves_page)
            answer = Leaves(
                request=frame.request, start=frame.start, frontier=tuple(home.tree.frontier(frame.start)), leaves=tuple(home.leaves[frame.start:end])
            )
            return self.tamper_leaves(answer) if self.tamper_leaves else answer
        raise AssertionError(f"unexpected request {frame!r}")

    def asked(self, kind: type) -> list[Frame]:
        return [f for f in self.requests if isinstance(f, kind)]
