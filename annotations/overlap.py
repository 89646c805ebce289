"""Near-duplicate prompts: MinHash signatures over character shingles, LSH buckets,
and the clusters and vendor-by-vendor overlap built on them.

Character 5-grams (not word n-grams) because prompts are short: "hi" and "Who are
you?" must still get a signature. Signatures and LSH come from datasketch (the
reference implementation); curate.dedup had no MinHash API to reuse when this was
written.
"""
from __future__ import annotations

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

SHINGLE = 5  # characters
SCHEME = "affine32"  # datasketch 2.x hashing scheme; stored signatures are only comparable within one


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed: what "the same prompt" means here."""
    return " ".join(text.lower().split())


def shingles(text: str, size: int = SHINGLE) -> list[bytes]:
    text = normalize(text)
    if len(text) <= size:
        return [text.encode("utf-8")]
    return [text[i : i + size].encode("utf-8") for i in range(len(text) - size + 1)]


def signatures(texts: list[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signatures, shape ``(len(texts), num_perm)``, dtype uint64."""
    out = np.empty((len(texts), num_perm), dtype=np.uint64)
    template = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)  # permutations are drawn once, then copied
    for i, text in enumerate(texts):
        m = template.copy()
        m.update_batch(shingles(text))
        out[i] = m.hashvalues
    return out


def _lsh(sigs: np.ndarray, threshold: float, seed: int) -> tuple[MinHashLSH, list[LeanMinHash]]:
    num_perm = sigs.shape[1]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = [LeanMinHash(seed=seed, hashvalues=row, scheme=SCHEME) for row in sigs]
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    return lsh, hashes


def clusters(sigs: np.ndarray, threshold: float = 0.8, seed: int = 1) -> np.ndarray:
    """Cluster id per row: rows joined when their estimated Jaccard similarity is at
    least ``threshold``. The id is the smallest row index in the cluster, so keeping
    rows where ``cluster == arange`` keeps the first of each cluster."""
    lsh, hashes = _lsh(sigs, threshold, seed)
    parent = np.arange(len(sigs))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i and m.jaccard(hashes[j]) >= threshold:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(sigs))])


def overlap_matrix(sigs: np.ndarray, groups: list[str], names: list[str],
                   threshold: float = 0.8, seed: int = 1) -> np.ndarray:
    """``M[a, b]``: the fraction of group ``a``'s rows that have a near-duplicate
    (estimated Jaccard >= threshold) among group ``b``'s rows. The diagonal is the
    within-group duplicate rate: rows with a near-duplicate other than themselves."""
    lsh, hashes = _lsh(sigs, threshold, seed)
    index = {name: k for k, name in enumerate(names)}
    group_of = np.array([index[g] for g in groups])
    hits = np.zeros((len(names), len(names)))
    for i, m in enumerate(hashes):
        found = {group_of[j] for j in lsh.query(m) if j != i and m.jaccard(hashes[j]) >= threshold}
        for b in found:
            hits[group_of[i], b] += 1
    sizes = np.bincount(group_of, minlength=len(names)).astype(float)
    return hits / np.maximum(sizes, 1)[:, None]
