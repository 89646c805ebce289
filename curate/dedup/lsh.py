"""Bucket grouping and clustering across shards with bounded memory.

Each shard's index holds, per band, its band keys sorted ascending and the row
of each key (``keys.npy``, ``rows.npy``; shape ``(bands, n_valid)``). The
reducer walks band by band and, inside a band, through ranges of the uint64
key space (hash partitions): each range is a contiguous slice of every shard's
sorted keys, found with ``searchsorted`` on memory-mapped files, so only that
slice of integers is in RAM. Equal keys in a slice are candidate pairs; they
are checked against the union-find first (already joined: skipped), then
verified (e.g. by estimated Jaccard), then joined.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from curate.dedup.unionfind import UnionFind

PARTITION_ROWS = 4_000_000  # keys per hash partition: ~100 MB of working arrays


def pack_gid(shard: int | np.ndarray, row: int | np.ndarray) -> np.ndarray:
    """Global document id: shard in the high 32 bits, row in the low 32 bits."""
    return (np.asarray(shard, np.int64) << 32) | np.asarray(row, np.int64)


@dataclass
class ShardIndex:
    """One shard's spilled arrays, memory-mapped on first use: ``files`` maps a name
    (``keys``, ``rows``, ``sig``, ``len``, ``score``) to its ``.npy`` path."""

    shard: int  # the shard number packed into global ids
    n: int  # documents in the shard (valid or not)
    offset: int  # first dense id
    files: dict[str, Path]
    _cache: dict = field(default_factory=dict, repr=False)

    def load(self, what: str) -> np.ndarray:
        if what not in self._cache:
            self._cache[what] = np.load(self.files[what], mmap_mode="r", allow_pickle=False)
        return self._cache[what]

    def read_rows(self, what: str, rows: np.ndarray) -> np.ndarray:
        """Rows of array ``what`` read with ``pread``: random rows through a memory map
        would map whole files (the kernel faults in neighbouring cached pages)."""
        with open(self.files[what], "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            width = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            start, fd = f.tell(), f.fileno()
            data = b"".join(os.pread(fd, width, start + int(r) * width) for r in rows)
        return np.frombuffer(data, dtype).reshape((len(rows),) + tuple(shape[1:]))

    def release(self) -> None:
        """Unmap the pages read so far (they stay in the page cache), so that resident
        memory holds one band's slices, not whole files."""
        for array in self._cache.values():
            if isinstance(array, np.memmap) and array._mmap is not None:
                array._mmap.madvise(mmap.MADV_DONTNEED)


def sorted_band_keys(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From per-document keys ``(n, bands)`` make ``(bands, n_valid)`` arrays of sorted
    keys and their rows (rows ascending among equal keys)."""
    rows = np.flatnonzero(valid).astype(np.uint32)
    k = np.ascontiguousarray(keys[rows].T)
    order = np.argsort(k, axis=1, kind="stable")
    return np.take_along_axis(k, order, axis=1), rows[order]


def bucket_pairs(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``keys``: pair every bucket member with the bucket's first member
    and with its predecessor (enough to connect a bucket; 2 pairs per member)."""
    same = keys[1:] == keys[:-1]
    if not same.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    head = np.concatenate([[True], ~same])
    first = ids[np.flatnonzero(head)][np.cumsum(head) - 1]
    member = np.flatnonzero(~head)
    chain = member[~head[member - 1]]  # predecessor is not the bucket's first member
    u = np.concatenate([first[member], ids[chain - 1]])
    v = np.concatenate([ids[member], ids[chain]])
    return u, v


def cluster(shards: list[ShardIndex], bands: int,
            verify: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
            partition_rows: int | None = None) -> tuple[UnionFind, dict[str, int]]:
    """Join documents that share a band bucket (and pass ``verify(u, v)`` on dense ids).

    ``shards`` must have consecutive ``offset``s. Returns the union-find over dense
    ids and counts: ``candidate_pairs`` (bucket pairs checked because they were not
    joined yet; a pair rejected in one band is checked again in each later band it
    shares), ``rejected_pairs`` (checks that failed verification).
    """
    total = sum(s.n for s in shards)
    uf = UnionFind(total)
    counts = {"candidate_pairs": 0, "rejected_pairs": 0}
    n_keys = sum(s.load("keys").shape[1] for s in shards)
    parts = max(1, -(-n_keys // (partition_rows or PARTITION_ROWS)))
    bounds = [np.uint64(((1 << 64) * p) // parts) for p in range(1, parts)]
    for band in range(bands):
        cuts = [np.concatenate([[0], np.searchsorted(s.load("keys")[band], bounds), [s.load("keys").shape[1]]])
                for s in shards]
        for p in range(parts):
            keys = np.concatenate([s.load("keys")[band, c[p]:c[p + 1]] for s, c in zip(shards, cuts)])
            ids = np.concatenate([s.load("rows")[band, c[p]:c[p + 1]].astype(np.int64) + s.offset
                                  for s, c in zip(shards, cuts)])
            order = np.argsort(keys, kind="stable")
            u, v = bucket_pairs(keys[order], ids[order])
            if not len(u):
                continue
            apart = uf.find(u) != uf.find(v)
            u, v = u[apart], v[apart]
            counts["candidate_pairs"] += len(u)
            if verify is not None and len(u):
                ok = verify(u, v)
                counts["rejected_pairs"] += int((~ok).sum())
                u, v = u[ok], v[ok]
            uf.union(u, v)
        for s in shards:
            s.release()
    return uf, counts


def gather_rows(shards: list[ShardIndex], what: str, dense: np.ndarray) -> np.ndarray:
    """Rows of the per-shard array ``what`` (e.g. ``"sig"``) for dense ids, in order."""
    offsets = np.array([s.offset for s in shards], np.int64)
    which = np.searchsorted(offsets, dense, side="right") - 1
    out = None
    for i in np.unique(which):
        sel = np.flatnonzero(which == i)
        local = dense[sel] - shards[i].offset
        order = np.argsort(local)
        rows = shards[i].read_rows(what, local[order])
        if out is None:
            out = np.empty((len(dense),) + rows.shape[1:], rows.dtype)
        out[sel[order]] = rows
    if out is None:
        first = shards[0].load(what)
        out = np.empty((0,) + first.shape[1:], first.dtype)
    return out


def candidate_pairs(keys: np.ndarray) -> set[tuple[int, int]]:
    """Every pair of rows sharing a bucket in any band (``keys``: ``(n, bands)``).
    Quadratic in bucket size: for tests and small data."""
    pairs: set[tuple[int, int]] = set()
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        k = keys[order, band]
        for run in np.split(order, np.flatnonzero(k[1:] != k[:-1]) + 1):
            run = sorted(run.tolist())
            pairs.update((a, b) for i, a in enumerate(run) for b in run[i + 1:])
    return pairs
