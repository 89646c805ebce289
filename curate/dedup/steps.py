"""The dedup pipeline steps: ``exact_dedup`` and ``minhash_dedup``.

Config examples::

    - step: exact_dedup            # NFC + lowercase + whitespace collapsed, 128-bit xxh3
    - step: minhash_dedup
      threshold: 0.8               # Jaccard of word 5-gram sets
      num_perm: 128
      keep: longest                # or first (default), or score with score_key: quality
      index_dir: out/minhash_index # save an index of the kept documents
      against: old/minhash_index   # dedup against an earlier run's index
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xxhash

from curate.dedup.base import DedupStep
from curate.dedup.minhash import band_keys, jaccard, ngram_hashes, optimal_bands, signatures_from_hashes
from curate.dedup.normalize import normalize_exact, normalize_words
from curate.pipeline.step import register


@register("exact_dedup")
class ExactDedup(DedupStep):
    """Remove documents whose normalised text is identical to an earlier one's.

    Documents are grouped by the first 64 bits of an xxh3-128 hash and, with
    ``bits=128`` (default), confirmed by the other 64; ``bits=64`` trusts the
    first 64 alone. Empty texts are never deduped."""

    reason_prefix = "exact duplicate of"

    def __init__(self, bits: int = 128, nfc: bool = True, lowercase: bool = True,
                 collapse_whitespace: bool = True, **common: Any) -> None:
        super().__init__(**common)
        if bits not in (64, 128):
            raise ValueError(f"bits must be 64 or 128, got {bits}")
        self.bits, self.nfc, self.lowercase, self.collapse_whitespace = bits, nfc, lowercase, collapse_whitespace

    def index_params(self) -> dict[str, Any]:
        return {"bits": self.bits, "nfc": self.nfc, "lowercase": self.lowercase,
                "collapse_whitespace": self.collapse_whitespace}

    def sketch(self, texts):
        normed = [normalize_exact(t, self.nfc, self.lowercase, self.collapse_whitespace) for t in texts]
        digests = b"".join(xxhash.xxh3_128_digest(t.encode()) for t in normed)
        sig = np.frombuffer(digests, dtype=">u8").astype(np.uint64).reshape(len(texts), 2)
        valid = np.fromiter((bool(t) for t in normed), bool, len(normed))
        return sig[:, : self.bits // 64].copy(), valid

    def band_keys(self, sig):
        return sig[:, :1]

    def verify(self, sig_u, sig_v):
        return (sig_u == sig_v).all(axis=1)


@register("minhash_dedup")
class MinHashDedup(DedupStep):
    """Remove near-duplicates: documents whose word n-gram sets have an estimated
    Jaccard similarity of at least ``threshold`` with a kept document (directly
    or through a chain of such pairs).

    ``num_perm`` MinHash permutations (datasketch affine32 scheme, ``seed``);
    ``bands`` x ``rows`` chosen by :func:`optimal_bands` unless both are given;
    candidate pairs from LSH are verified by estimated Jaccard unless
    ``verify: false``. Documents with no words are never deduped."""

    reason_prefix = "near-duplicate of"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1,
                 bands: int | None = None, rows: int | None = None, fp_weight: float = 0.5,
                 fn_weight: float = 0.5, verify: bool = True, **common: Any) -> None:
        super().__init__(**common)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if num_perm < 2 or ngram < 1:
            raise ValueError(f"need num_perm >= 2 and ngram >= 1, got {num_perm}, {ngram}")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is None:
            bands, rows = optimal_bands(threshold, num_perm, fp_weight, fn_weight)
        if bands * rows > num_perm:
            raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.bands, self.rows, self.do_verify = bands, rows, verify

    def index_params(self) -> dict[str, Any]:
        return {"num_perm": self.num_perm, "ngram": self.ngram, "seed": self.seed}

    def sketch(self, texts):
        words = [normalize_words(t) for t in texts]
        hashes, doc = ngram_hashes(words, self.ngram, normalized=True)
        sig = signatures_from_hashes(hashes, doc, len(texts), self.num_perm, self.seed)
        valid = np.fromiter((bool(w) for w in words), bool, len(words))
        return sig, valid

    def band_keys(self, sig):
        return band_keys(sig, self.bands, self.rows)

    def verify(self, sig_u, sig_v):
        if not self.do_verify:
            return np.ones(len(sig_u), bool)
        return jaccard(sig_u, sig_v) >= self.threshold
