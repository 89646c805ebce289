"""Dedup clustering spread over the run's executor (``executor.map``), one task per
(band, key range): a drop-in for :func:`curate.dedup.lsh.cluster`, used when the executor
is distributed (Ray), where no one process should hold every band key.

The shuffle: each shard's index already holds its band keys sorted, so the
task for (band, key range) reads just that range from every shard's
memory-mapped ``keys.npy`` / ``rows.npy`` (``searchsorted``, on the shared
filesystem), groups equal keys into candidate pairs, verifies them (estimated
Jaccard) and returns a spanning forest of what it joined: at most one edge per
document it saw. Tasks run in parallel, one per (band, range).

The driver unions the forests as they arrive into one union-find over all
documents: 8 bytes per document (a billion documents: 8 GB), while the
candidate pairs, signatures and keys never come to it.

Connected components are the same as the local reducer's: both join exactly
the verified candidate pairs, except pairs already joined, which change
nothing. Figures differ: ``candidate_pairs`` here counts pairs not already
joined within a task, so it is at least the local figure.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Callable

import numpy as np

from curate.dedup.lsh import PARTITION_ROWS, ShardIndex, bucket_pairs
from curate.dedup.unionfind import UnionFind

VERIFY_CHUNK = 262_144  # candidate pairs verified at once: 2 x 256 Ki signatures in memory


def key_range_forest(shards: list[ShardIndex], band: int, lo: int, hi: int | None,
                     verify: Callable[[np.ndarray, np.ndarray], np.ndarray] | None, cwd: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Join the documents whose ``band`` key lies in ``[lo, hi)`` (``hi`` None: to the end).

    Returns ``(child, parent, candidate_pairs, rejected_pairs)``: dense ids where
    ``child[i]`` joins ``parent[i] < child[i]``, one edge per joined document."""
    if os.path.isdir(cwd):  # relative workdirs mean the driver's directory
        os.chdir(cwd)
    keys, ids = [], []
    for s in shards:
        k = s.load("keys")[band]
        a = int(np.searchsorted(k, np.uint64(lo))) if lo else 0
        b = int(np.searchsorted(k, np.uint64(hi))) if hi is not None else len(k)
        keys.append(np.asarray(k[a:b]))
        ids.append(np.asarray(s.load("rows")[band, a:b], np.int64) + s.offset)
    keys, ids = np.concatenate(keys), np.concatenate(ids)
    order = np.argsort(keys, kind="stable")
    u, v = bucket_pairs(keys[order], ids[order])
    if not len(u):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0
    nodes, local = np.unique(np.concatenate([u, v]), return_inverse=True)
    lu, lv = local[: len(u)], local[len(u):]
    uf = UnionFind(len(nodes))
    candidates = rejected = 0
    for i in range(0, len(u), VERIFY_CHUNK):
        cu, cv = lu[i : i + VERIFY_CHUNK], lv[i : i + VERIFY_CHUNK]
        apart = uf.find(cu) != uf.find(cv)
        cu, cv = cu[apart], cv[apart]
        candidates += len(cu)
        if verify is not None and len(cu):
            ok = verify(nodes[cu], nodes[cv])
            rejected += int((~ok).sum())
            cu, cv = cu[ok], cv[ok]
        uf.union(cu, cv)
    roots = uf.roots()
    joined = np.flatnonzero(roots != np.arange(len(nodes)))
    # local roots are the smallest local ids, and nodes are sorted: parents are smaller global ids
    return nodes[joined], nodes[roots[joined]], candidates, rejected


def range_task(shards: list[ShardIndex], verify, cwd: str, band_range: tuple[int, int, int | None]):
    """One task of :func:`spread_cluster`: :func:`key_range_forest` of ``(band, lo, hi)``."""
    band, lo, hi = band_range
    return key_range_forest(shards, band, lo, hi, verify, cwd)


def spread_cluster(shards: list[ShardIndex], bands: int, verify: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                   executor, partition_rows: int | None = None) -> tuple[UnionFind, dict[str, int]]:
    """:func:`curate.dedup.lsh.cluster` as ``executor.map`` tasks, one per (band, key range).

    ``verify(u, v)`` takes dense ids and runs inside the tasks, so it is shipped to
    them: it must not hold large arrays (memory-mapped files are fine once reopened).
    The index files must be on a filesystem every task sees."""
    bare = [ShardIndex(s.shard, s.n, s.offset, s.files) for s in shards]  # no cached arrays to ship
    n_keys = sum(np.load(s.files["keys"], mmap_mode="r").shape[1] for s in bare)
    parts = max(1, -(-n_keys // (partition_rows or PARTITION_ROWS)))
    bounds = [0] + [((1 << 64) * p) // parts for p in range(1, parts)] + [None]
    items = [(band, bounds[p], bounds[p + 1]) for band in range(bands) for p in range(parts)]
    uf = UnionFind(sum(s.n for s in shards))
    counts = {"candidate_pairs": 0, "rejected_pairs": 0}
    for child, parent, candidates, rejected in executor.map(partial(range_task, bare, verify, os.getcwd()), items):
        uf.union(child, parent)
        counts["candidate_pairs"] += candidates
        counts["rejected_pairs"] += rejected
    return uf, counts
