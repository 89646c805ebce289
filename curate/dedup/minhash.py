"""MinHash signatures and LSH band keys, vectorised over a batch of documents.

The permutation scheme is datasketch's ``affine32`` (datasketch >= 2.0),
reproduced exactly: each 32-bit shingle hash ``h`` is pre-mixed with the
MurmurHash3 finalizer, then permutation ``k`` maps it to ``a_k * h + b_k mod
2^32`` with odd ``a_k``. The wraparound of uint32 arithmetic *is* the modulus,
so nothing overflows by accident, and with ``a_k`` odd every permutation is a
bijection (no collisions added). ``a_k, b_k`` are drawn from
``np.random.RandomState(seed)`` exactly as datasketch draws them, so a
signature here equals ``datasketch.MinHash(num_perm, seed,
hashfunc=shingle_hash32).update_batch(ngrams)``.

Shingles are word n-grams of :func:`~curate.dedup.normalize.normalize_words`
text (a document with fewer than ``ngram`` words is one shingle; an empty one
has none and an all-``0xFFFFFFFF`` signature). A shingle's hash is a 64-bit
polynomial hash of its UTF-8 bytes, finalised with MurmurHash3 and folded to
32 bits; computed for a whole batch at once with prefix sums over the joined
bytes, and for one string by :func:`shingle_hash32`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from curate.dedup.normalize import normalize_words

EMPTY = np.uint32(0xFFFFFFFF)
_BASE = 0x100000001B3  # odd, so it is invertible mod 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_LEN_MIX = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hash64(data: bytes | str) -> int:
    """64-bit hash of one shingle (the scalar twin of the batched hash)."""
    if isinstance(data, str):
        data = data.encode()
    poly = 0
    for j, byte in enumerate(data):
        poly = (poly + byte * pow(_BASE, j, 1 << 64)) & _M64
    h = np.array([(poly + len(data) * _LEN_MIX) & _M64], dtype=np.uint64)
    return int(_fmix64(h)[0])


def shingle_hash32(data: bytes | str) -> int:
    """32-bit hash of one shingle: the high half of :func:`shingle_hash64`."""
    return shingle_hash64(data) >> 32


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` uint32 arrays of length ``num_perm``, drawn as datasketch's affine32 draws them."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


class _Powers:
    """Powers of the polynomial base (and its inverse) mod 2^64, grown on demand."""

    def __init__(self) -> None:
        self.pow = np.ones(1, np.uint64)
        self.inv = np.ones(1, np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pow) < n:
            size = max(n, 2 * len(self.pow))
            self.pow, self.inv = np.ones(size, np.uint64), np.ones(size, np.uint64)
            with np.errstate(over="ignore"):
                np.cumprod(np.full(size - 1, _BASE, np.uint64), out=self.pow[1:])
                np.cumprod(np.full(size - 1, _BASE_INV, np.uint64), out=self.inv[1:])
        return self.pow[:n], self.inv[:n]


_POWERS = _Powers()


def word_spans(words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Join normalised texts; return ``(bytes, word_starts, word_ends, doc_of_word)``
    where starts/ends are byte offsets into ``bytes`` (an uint8 array)."""
    encoded = [w.encode() for w in words]
    buf = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
    if not len(buf):
        empty = np.zeros(0, np.int64)
        return buf, empty, empty, empty
    newline = buf == 10
    sep = (buf == 32) | newline
    edge = np.diff(np.concatenate([[0], (~sep).astype(np.int8), [0]]))
    starts = np.flatnonzero(edge == 1)
    ends = np.flatnonzero(edge == -1)
    doc_of_word = np.cumsum(newline)[starts]
    return buf, starts, ends, doc_of_word


def ngram_hashes(texts: list[str], ngram: int = 5, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram hashes of a batch of texts.

    Returns ``(hashes, doc)``: uint64 hashes, and the index of the text each came
    from (non-decreasing). A text with ``0 < words < ngram`` gives one shingle of
    all its words; an empty text gives none. ``normalized=True`` skips
    :func:`normalize_words` (the texts already went through it).
    """
    words = texts if normalized else [normalize_words(t) for t in texts]
    buf, starts, ends, doc_of_word = word_spans(words)
    n_words = np.bincount(doc_of_word, minlength=len(words))
    first_word = np.concatenate([[0], np.cumsum(n_words)[:-1]])
    # a full n-gram starts at word g when word g+ngram-1 is in the same document
    last = np.arange(len(starts)) + ngram - 1
    ok = last < len(starts)
    ok[ok] = doc_of_word[last[ok]] == doc_of_word[ok.nonzero()[0]]
    g = np.flatnonzero(ok)
    span_start, span_end, span_doc = starts[g], ends[g + ngram - 1], doc_of_word[g]
    short = np.flatnonzero((n_words > 0) & (n_words < ngram))
    if len(short):
        span_start = np.concatenate([span_start, starts[first_word[short]]])
        span_end = np.concatenate([span_end, ends[first_word[short] + n_words[short] - 1]])
        span_doc = np.concatenate([span_doc, short])
        order = np.argsort(span_doc, kind="stable")
        span_start, span_end, span_doc = span_start[order], span_end[order], span_doc[order]
    return _span_hashes(buf, span_start, span_end), span_doc


def _span_hashes(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    pw, inv = _POWERS.get(len(buf))
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(buf) + 1, np.uint64)
        np.cumsum(buf.astype(np.uint64) * pw, out=prefix[1:])
        poly = (prefix[end] - prefix[start]) * inv[start]
        return _fmix64(poly + (end - start).astype(np.uint64) * np.uint64(_LEN_MIX))


def signatures_from_hashes(hashes: np.ndarray, doc: np.ndarray, n_docs: int, num_perm: int = 128,
                           seed: int = 1, chunk: int = 16384) -> np.ndarray:
    """MinHash signatures (uint32, shape ``(n_docs, num_perm)``) from 64-bit shingle
    hashes and the (non-decreasing) document index of each."""
    a, b = permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    hv = _fmix32((hashes >> np.uint64(32)).astype(np.uint32))
    sig = np.full((n_docs, num_perm), EMPTY, np.uint32)
    for lo in range(0, len(hv), chunk):
        h, d = hv[lo:lo + chunk], doc[lo:lo + chunk]
        seg = np.flatnonzero(np.concatenate([[True], d[1:] != d[:-1]]))
        with np.errstate(over="ignore"):
            # (num_perm, shingles) layout: reduceat along the contiguous axis is ~20x faster
            mins = np.minimum.reduceat(a * h + b, seg, axis=1).T
        rows = d[seg]
        sig[rows] = np.minimum(sig[rows], mins)
    return sig


def minhash_signatures(texts: list[str], num_perm: int = 128, ngram: int = 5, seed: int = 1,
                       normalized: bool = False, batch_chars: int = 4_000_000) -> np.ndarray:
    """MinHash signatures of ``texts``: uint32 array ``(len(texts), num_perm)``.

    Word ``ngram``-shingles of normalised text (``normalized=True``: the texts
    already went through :func:`normalize_words`), datasketch affine32
    permutations drawn with ``seed``. Works through about ``batch_chars``
    characters at a time, so memory stays ~40 bytes per character of a batch.
    Equal rows estimate Jaccard similarity: see :func:`jaccard`.
    """
    sig = np.empty((len(texts), num_perm), np.uint32)
    start, size = 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= batch_chars or i == len(texts) - 1:
            hashes, doc = ngram_hashes(texts[start:i + 1], ngram, normalized)
            sig[start:i + 1] = signatures_from_hashes(hashes, doc, i + 1 - start, num_perm, seed)
            start, size = i + 1, 0
    return sig


def jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity: the fraction of equal signature entries (row-wise)."""
    return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 key per (document, band): a hash of that band's ``rows`` signature
    values. Shape ``(n_docs, bands)``; documents collide in a band when their
    values there are equal (up to 64-bit hash collisions)."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {sig.shape[1]}")
    keys = np.empty((sig.shape[0], bands), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(bands):
            acc = np.full(sig.shape[0], np.uint64(k + 1) * np.uint64(_LEN_MIX), np.uint64)
            for j in range(k * rows, (k + 1) * rows):
                acc = _fmix64(acc ^ sig[:, j].astype(np.uint64))
            keys[:, k] = acc
    return keys


def _false_positive(threshold: float, b: np.ndarray, r: np.ndarray, points: int = 2001) -> np.ndarray:
    s = np.linspace(0.0, threshold, points)[:, None]
    return _simpson(1 - (1 - s ** r) ** b, threshold / (points - 1))


def _false_negative(threshold: float, b: np.ndarray, r: np.ndarray, points: int = 2001) -> np.ndarray:
    s = np.linspace(threshold, 1.0, points)[:, None]
    return _simpson((1 - s ** r) ** b, (1.0 - threshold) / (points - 1))


def _simpson(y: np.ndarray, h: float) -> np.ndarray:
    return h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum(0) + 2 * y[2:-1:2].sum(0))


@lru_cache(maxsize=64)
def optimal_bands(threshold: float = 0.8, num_perm: int = 128, fp_weight: float = 0.5,
                  fn_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands*rows <= num_perm`` minimising
    ``fp_weight * P(false positive) + fn_weight * P(false negative)`` for a
    Jaccard ``threshold``, the probabilities being the areas under the LSH
    S-curve below / above the threshold (datasketch's criterion; first
    minimum in the order b = 1.., r = 1..)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], float)
    b, r = pairs[:, 0], pairs[:, 1]
    error = fp_weight * _false_positive(threshold, b, r) + fn_weight * _false_negative(threshold, b, r)
    best = int(np.argmin(error))
    return int(b[best]), int(r[best])
