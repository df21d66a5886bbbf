"""The Merkle tree over the audit records: RFC 6962 (section 2.1) hashing, as RFC 9162 keeps it.

- leaf hash  = SHA-256(0x00 || leaf bytes)
- node hash  = SHA-256(0x01 || left || right)
- a tree of n > 1 leaves splits at k, the largest power of two smaller than n: the left subtree
  holds leaves [0, k), the right one [k, n); the empty tree's hash is SHA-256("").

``Frontier`` folds leaves in one at a time and gives the root of every prefix on the way (the
verifier's walk); ``inclusion_path`` is RFC 6962's PATH(m, D[n]) over a list of leaf hashes;
``root_from_inclusion`` is RFC 9162 section 2.1.3.2's verification loop. Written from the RFCs'
text; the tests check them against the RFC's published reference roots.
"""

from __future__ import annotations

import hashlib

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: list[bytes], lo: int = 0, hi: int | None = None) -> bytes:
    """MTH(D[lo:hi]) of a list of leaf hashes (recursive, as RFC 6962 defines it)."""
    if hi is None:
        hi = len(leaves)
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(root_of(leaves, lo, lo + k), root_of(leaves, lo + k, hi))


class Frontier:
    """The roots of the perfect subtrees a tree of ``size`` leaves decomposes into (largest
    first): enough to append a leaf and to give the root, in O(log n) each."""

    __slots__ = ("size", "stack")

    def __init__(self) -> None:
        self.size = 0
        self.stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        h = leaf
        n = self.size
        stack = self.stack
        while n & 1:  # merge equal-sized subtrees, as a binary counter carries
            h = node_hash(stack.pop(), h)
            n >>= 1
        stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the sibling hashes from the leaf ``index`` up to the root, leaf's first."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    # Walk down from the root, remembering the sibling subtree at each level.
    siblings: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo, m = lo + k, m - k
    for a, b in reversed(siblings):
        path.append(root_of(leaves, a, b))
    return path


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` at ``index`` into, for a tree of ``size`` leaves
    (RFC 9162 2.1.3.2), or None when the path cannot be one for that index and size."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return r
