"""RFC 9162 Merkle trees (§2.1): tree hashes, inclusion and consistency proofs.

:class:`MerkleTree` is an append-only, in-memory list of leaf hashes that also keeps the hash
of every complete, aligned subtree (one list per level), so the root of any prefix of the log
and any proof cost O(log² n) hashing, never a pass over the whole tree.

:class:`CompactRange` is the other end of that: the few hashes (the "frontier") that stand for
a whole prefix of the log, so that a monitor holding the frontier of one verified head can
append the leaves that follow and recompute the root of a later head without the rest of the
log.

The verifiers follow the RFC's algorithms (§2.1.3.2, §2.1.4.2) step by step, including the
checks that the path is used up exactly. Like the transparency-dev reference, they take only
32-byte hashes and treat a consistency check from the empty tree (``first == 0``) as an error:
there is nothing to prove, and callers skip it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import limits
from ..crypto import sha256
from ..errors import VerifyError

__all__ = [
    "HASH_LEN",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "MerkleTree",
    "CompactRange",
    "verify_inclusion",
    "verify_consistency",
]

HASH_LEN = 32
EMPTY_ROOT = sha256(b"")
_SIZE_MAX = 2**63 - 1


def leaf_hash(leaf: bytes) -> bytes:
    return sha256(b"\x00", leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01", left, right)


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return type(value) is bytes and len(value) == HASH_LEN


def _is_size(value: object) -> bool:
    return type(value) is int and 0 <= value <= _SIZE_MAX


class MerkleTree:
    """Append-only tree of leaf hashes. ``_levels[k][i]`` is the hash of the perfect subtree
    over leaves ``[i * 2**k, (i + 1) * 2**k)``."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash is {HASH_LEN} bytes")
        index = self.size
        self._levels[0].append(leaf_hash)
        level = 0
        # A complete pair at this level closes a perfect subtree one level up.
        while len(self._levels[level]) % 2 == 0:
            pair = self._levels[level][-2:]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(*pair))
            level += 1
        return index

    def extend(self, hashes: Iterable[bytes]) -> None:
        """Append all of ``hashes``, or none of them if one is not a hash."""
        hashes = list(hashes)
        if not all(_is_hash(h) for h in hashes):
            raise ValueError(f"a leaf hash is {HASH_LEN} bytes")
        for h in hashes:
            self.append(h)

    def _check_size(self, size: int, *, low: int) -> None:
        if type(size) is not int or not low <= size <= self.size:
            raise ValueError(f"tree size must be {low}..{self.size}, not {size!r}")

    def _hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi), 0 <= lo < hi <= size. Every range the RFC recursion visits
        starts at a multiple of its left part's width, so left parts are always cached."""
        n = hi - lo
        if n & (n - 1) == 0:
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._levels[k.bit_length() - 1][lo // k], self._hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """Root of the tree of the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        self._check_size(size, low=0)
        return self._hash(0, size) if size else EMPTY_ROOT

    def frontier(self, size: int) -> list[bytes]:
        """The roots of the perfect subtrees that make up the first ``size`` leaves (one per
        set bit of ``size``), largest and leftmost first: the hashes of a CompactRange."""
        self._check_size(size, low=0)
        hashes, lo = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                # lo is a sum of larger powers of two, so this subtree is aligned and cached.
                hashes.append(self._levels[level][lo >> level])
                lo += 1 << level
        return hashes

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, the sibling next to the leaf first."""
        self._check_size(size, low=1)
        if type(index) is not int or not 0 <= index < size:
            raise ValueError(f"leaf index must be 0..{size - 1}, not {index!r}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._hash(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]) of RFC 9162 §2.1.4.1 (empty when first == second)."""
        self._check_size(second, low=1)
        if type(first) is not int or not 0 < first <= second:
            raise ValueError(f"first tree size must be 1..{second}, not {first!r}")
        path: list[bytes] = []
        lo, hi, m, whole = 0, second, first, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                path.append(self._hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            path.append(self._hash(lo, hi))
        path.reverse()
        return path


class CompactRange:
    """The leaves [0, size) of a log, held as the roots of the perfect subtrees of the binary
    decomposition of ``size`` (largest first, as ``MerkleTree.frontier`` gives them). Leaves
    can be appended and the RFC 9162 root recomputed without the leaves themselves."""

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        if not _is_size(size):
            raise ValueError(f"a compact range size is 0..{_SIZE_MAX}, not {size!r}")
        hashes = list(hashes)
        if len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of {size} leaves has {size.bit_count()} hashes, not {len(hashes)}")
        if not all(_is_hash(h) for h in hashes):
            raise ValueError(f"compact range hashes are {HASH_LEN} bytes")
        self._size = size
        self._hashes = hashes

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash is {HASH_LEN} bytes")
        if self._size == _SIZE_MAX:
            raise ValueError("the compact range is full")
        merged, size = leaf_hash, self._size
        # Each low set bit of the size is a subtree on the right edge as wide as the one being
        # carried: the two become one perfect subtree, twice as wide.
        while size & 1:
            merged = node_hash(self._hashes.pop(), merged)
            size >>= 1
        self._hashes.append(merged)
        self._size += 1

    def root(self) -> bytes:
        """MTH of the range (RFC 9162 §2.1.1): the subtrees folded from the right, since the
        left part of every split is the largest power of two below the size."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            root = node_hash(h, root)
        return root


def _check_proof(proof: Sequence[bytes], code: str) -> list[bytes]:
    if not isinstance(proof, (list, tuple)) or len(proof) > limits.MAX_PROOF_HASHES:
        raise VerifyError(f"a proof is a list of at most {limits.MAX_PROOF_HASHES} hashes", code=code)
    if not all(_is_hash(p) for p in proof):
        raise VerifyError(f"proof hashes must be {HASH_LEN} bytes", code=code)
    return list(proof)


def verify_inclusion(*, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves whose
    root is ``root``. Raises VerifyError(code="bad_inclusion_proof") otherwise."""
    code = "bad_inclusion_proof"
    path = _check_proof(proof, code)
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_size(index) and _is_size(size)):
        raise VerifyError("inclusion proof arguments are malformed", code=code)
    if index >= size:
        raise VerifyError(f"leaf index {index} is outside a tree of {size} leaves", code=code)
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise VerifyError("inclusion proof is longer than the tree is deep", code=code)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerifyError("inclusion proof is shorter than the tree is deep", code=code)
    if r != root:
        raise VerifyError("inclusion proof does not lead to the tree root", code=code)


def verify_consistency(*, first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: the tree of ``first`` leaves (root ``first_root``) is a prefix of the
    tree of ``second`` leaves (root ``second_root``). Raises
    VerifyError(code="bad_consistency_proof") otherwise."""
    code = "bad_consistency_proof"
    path = _check_proof(proof, code)
    if not (_is_size(first) and _is_size(second) and type(first_root) is bytes and type(second_root) is bytes):
        raise VerifyError("consistency proof arguments are malformed", code=code)
    if first == 0:
        raise VerifyError("nothing to prove from the empty tree", code=code)
    if first > second:
        raise VerifyError(f"tree of {second} leaves cannot extend one of {first}", code=code)
    if first == second:
        # Nothing is proven here, the two roots are only compared (as transparency-dev does).
        if path or first_root != second_root:
            raise VerifyError("trees of the same size must have the same root and an empty proof", code=code)
        return
    if not (_is_hash(first_root) and _is_hash(second_root)) or not path:
        raise VerifyError("consistency proof arguments are malformed", code=code)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerifyError("consistency proof is longer than the tree is deep", code=code)
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerifyError("consistency proof is shorter than the tree is deep", code=code)
    if fr != first_root or sr != second_root:
        raise VerifyError("consistency proof does not lead to the two roots", code=code)
