"""Union-find over dense integer ids, vectorised with numpy.

Every root is the smallest id of its set, so the result does not depend on
the order in which edges arrive.
"""
from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets over ``0..n-1`` held in one int64 parent array (8 bytes per id)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: np.ndarray) -> np.ndarray:
        """Roots of the ids ``x``; compresses the paths of ``x`` as it goes."""
        x = np.asarray(x, dtype=np.int64)
        root = self.parent[x]
        while True:
            up = self.parent[root]
            if np.array_equal(up, root):
                break
            root = up
        self.parent[x] = root
        return root

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        """Join the sets of ``u[i]`` and ``v[i]`` for every ``i``."""
        u = np.asarray(u, dtype=np.int64)
        v = np.asarray(v, dtype=np.int64)
        while len(u):
            ru, rv = self.find(u), self.find(v)
            apart = ru != rv
            u, v, ru, rv = u[apart], v[apart], ru[apart], rv[apart]
            if not len(u):
                break
            # Hook the larger root under the smallest root it meets; edges that
            # lost a race for the same root go round again.
            np.minimum.at(self.parent, np.maximum(ru, rv), np.minimum(ru, rv))

    def roots(self) -> np.ndarray:
        """Root of every id (fully compresses the forest)."""
        parent = self.parent
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        self.parent = parent
        return parent
