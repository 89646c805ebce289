"""Near-duplicate prompts between and within vendors, on curate.dedup's MinHash.

Signatures, LSH band keys and candidate pairs come from :mod:`curate.dedup`
(word n-grams of ``normalize_words`` text, datasketch's affine32 scheme). Prompts
are short, so the default shingle is a word 3-gram, not the 5-gram used for
documents; a prompt with fewer words is one shingle.

Rows with identical signatures are folded together before LSH, so a prompt sent
a thousand times costs one bucket entry, not half a million candidate pairs.
"""
from __future__ import annotations

import numpy as np

from curate.dedup.lsh import candidate_pairs
from curate.dedup.minhash import band_keys, jaccard, minhash_signatures, optimal_bands
from curate.dedup.normalize import normalize_exact
from curate.dedup.unionfind import UnionFind

NGRAM = 3  # words


def normalize(text: str) -> str:
    """Lowercase, NFC, whitespace collapsed: what "the same prompt" means for exact duplicates."""
    return normalize_exact(text)


def signatures(texts: list[str], num_perm: int = 128, seed: int = 1, ngram: int = NGRAM) -> np.ndarray:
    """MinHash signatures, uint32 ``(len(texts), num_perm)`` (curate.dedup.minhash_signatures)."""
    return minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed)


def similar_pairs(sigs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(unique, inverse, pairs)``: the distinct signature rows, the index into them of
    every input row, and the pairs ``(u, v)`` of distinct rows whose estimated Jaccard
    similarity is at least ``threshold`` (LSH candidates, then verified)."""
    unique, inverse = np.unique(sigs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    bands, rows = optimal_bands(threshold, sigs.shape[1], 0.1, 0.9)  # verified, so lean to recall
    pairs = np.array(sorted(candidate_pairs(band_keys(unique, bands, rows))), dtype=np.int64).reshape(-1, 2)
    pairs = pairs[jaccard(unique[pairs[:, 0]], unique[pairs[:, 1]]) >= threshold]
    return unique, inverse, pairs


def clusters(sigs: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """Cluster id per row: rows joined (also through chains) when their estimated
    Jaccard similarity is at least ``threshold``. The id is the smallest row index in
    the cluster, so rows where ``cluster == arange(n)`` are the first of each."""
    if not len(sigs):
        return np.zeros(0, np.int64)
    unique, inverse, pairs = similar_pairs(sigs, threshold)
    uf = UnionFind(len(unique))
    uf.union(pairs[:, 0], pairs[:, 1])
    label = uf.roots()[inverse]
    first = np.full(len(unique), len(sigs), np.int64)
    np.minimum.at(first, label, np.arange(len(sigs)))
    return first[label]


def overlap_matrix(sigs: np.ndarray, groups: list[str], names: list[str], threshold: float = 0.8) -> np.ndarray:
    """``M[a, b]``: the fraction of group ``a``'s rows with a near-duplicate (estimated
    Jaccard >= threshold, directly, not through chains) among group ``b``'s rows. The
    diagonal counts partners other than the row itself: the within-group duplicate rate."""
    index = {name: k for k, name in enumerate(names)}
    group_of = np.array([index[g] for g in groups], dtype=np.int64)
    if not len(sigs):
        return np.zeros((len(names), len(names)))
    unique, inverse, pairs = similar_pairs(sigs, threshold)
    members = np.zeros((len(unique), len(names)))  # rows of each group per distinct signature
    np.add.at(members, (inverse, group_of), 1)
    reach = members.copy()  # rows of each group within reach of a distinct signature, itself included
    np.add.at(reach, pairs[:, 0], members[pairs[:, 1]])
    np.add.at(reach, pairs[:, 1], members[pairs[:, 0]])
    partners = reach[inverse]
    partners[np.arange(len(sigs)), group_of] -= 1  # not the row itself
    hits = np.zeros((len(names), len(names)))
    np.add.at(hits, group_of, partners > 0)
    sizes = np.bincount(group_of, minlength=len(names)).astype(float)
    return hits / np.maximum(sizes, 1)[:, None]
