"""Decontamination: find evaluation-set text inside training documents.

Two methods, on words of :func:`~curate.dedup.normalize.normalize_words` text:

* ``ngram`` (simple): a document is contaminated when it shares a word
  ``ngram``-gram (default 13) with an evaluation sample.
* ``llama2`` (Llama 2 paper, appendix A.6): an evaluation token is contaminated
  when it lies in a matched span longer than ``min_len`` tokens (default 10)
  that occurs in both the sample and a training document, where the span may
  differ in at most ``skip_budget`` positions (default 4), never in its first
  ``min_len`` tokens and never at its end. Every token of such a span counts
  (mismatched positions inside it included). Each sample gets the fraction of
  its tokens contaminated and a bucket of the paper's split: Clean (< 20%),
  Not clean (>= 20%), Not dirty (< 80%), Dirty (>= 80%). A training document
  is contaminated when it holds at least one such span.

Spans are found from exact ``min_len``-gram seeds (64-bit hashes, binary
search in the sorted evaluation n-grams), then extended along their diagonal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate.basics.errors import CurateError
from curate.dedup.minhash import ngram_hashes
from curate.dedup.normalize import normalize_words

METHODS = ("ngram", "llama2")
CLEAN_BELOW, DIRTY_FROM = 0.2, 0.8


def load_eval_files(paths: list[str | Path], key: str | list[str] | None = None) -> tuple[list[str], list[str]]:
    """Read evaluation samples: ``.jsonl`` (one object a line), ``.json`` (a list of
    objects or strings) or any other file as text (one sample per non-empty line).
    From an object take ``key`` (a field name or a list of them, joined by a space),
    or all its string values when ``key`` is None. Returns ``(sample_ids, texts)``."""
    keys = [key] if isinstance(key, str) else key
    ids, texts = [], []

    def add(obj, where: str) -> None:
        if isinstance(obj, str):
            text = obj
        elif isinstance(obj, dict):
            values = [obj.get(k) for k in keys] if keys else list(obj.values())
            text = " ".join(v if isinstance(v, str) else json.dumps(v) for v in values if v is not None)
        else:
            raise CurateError(f"{where}: expected an object or a string, got {type(obj).__name__}")
        sample_id = obj.get("id") if isinstance(obj, dict) else None
        ids.append(str(sample_id) if sample_id is not None else where)
        texts.append(text)

    for path in map(Path, paths):
        if not path.is_file():
            raise CurateError(f"evaluation file not found: {path}")
        if path.suffix == ".jsonl":
            for n, line in enumerate(path.open(encoding="utf-8"), 1):
                if line.strip():
                    try:
                        add(json.loads(line), f"{path.name}:{n}")
                    except json.JSONDecodeError as e:
                        raise CurateError(f"{path}:{n}: bad JSON ({e.msg})") from None
        elif path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            for n, obj in enumerate(data if isinstance(data, list) else [data]):
                add(obj, f"{path.name}:{n}")
        else:
            for n, line in enumerate(path.open(encoding="utf-8"), 1):
                if line.strip():
                    add(line.strip(), f"{path.name}:{n}")
    return ids, texts


def _tokens(texts: list[str]) -> list[np.ndarray]:
    """Per text, the uint64 hash of each normalised word."""
    hashes, doc = ngram_hashes(texts, 1, normalized=True)
    return np.split(hashes, np.searchsorted(doc, np.arange(1, len(texts))))


def _grams(words: list[str], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, text index, start word) of every full word n-gram."""
    hashes, doc = ngram_hashes(words, n, normalized=True)
    counts = np.array([w.count(" ") + 1 if w else 0 for w in words], np.int64)
    full = counts[doc] >= n  # drop the single whole-text shingle of short texts
    hashes, doc = hashes[full], doc[full]
    first = np.searchsorted(doc, doc, side="left")
    return hashes, doc, np.arange(len(doc)) - first


@dataclass
class Scan:
    """What a scan of training texts found."""

    doc_samples: list[list[int]]  # per training text, the evaluation samples it matched
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (sample, start, end) token spans


class EvalIndex:
    """The evaluation samples, ready to scan training texts against.

    ``method``: ``"ngram"`` (``ngram``-gram overlap, default 13) or ``"llama2"``
    (spans > ``min_len`` tokens with up to ``skip_budget`` mismatches)."""

    def __init__(self, texts: list[str], method: str = "ngram", ngram: int = 13, min_len: int = 10,
                 skip_budget: int = 4) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method, self.skip_budget = method, skip_budget
        self.n = ngram if method == "ngram" else min_len
        words = [normalize_words(t) for t in texts]
        self.tokens = _tokens(words)
        hashes, sample, pos = _grams(words, self.n)
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.sample, self.pos = hashes[order], sample[order], pos[order]

    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens], np.int64)

    def scan(self, texts: list[str], batch_chars: int = 4_000_000) -> Scan:
        """Find the evaluation samples in ``texts``, about ``batch_chars`` characters at a time."""
        result, start, size = Scan([]), 0, 0
        for i, text in enumerate(texts):
            size += len(text)
            if size >= batch_chars or i == len(texts) - 1:
                part = self._scan(texts[start:i + 1])
                result.doc_samples += part.doc_samples
                result.spans += part.spans
                start, size = i + 1, 0
        return result

    def _scan(self, texts: list[str]) -> Scan:
        words = [normalize_words(t) for t in texts]
        hashes, doc, dpos = _grams(words, self.n)
        lo = np.searchsorted(self.hashes, hashes, side="left")
        hi = np.searchsorted(self.hashes, hashes, side="right")
        hit = np.flatnonzero(hi > lo)
        # one seed per (training n-gram, evaluation n-gram) with equal hashes
        reps = (hi - lo)[hit]
        eidx = np.repeat(lo[hit] - np.cumsum(reps) + reps, reps) + np.arange(reps.sum())
        seed_doc, seed_dpos = np.repeat(doc[hit], reps), np.repeat(dpos[hit], reps)
        seed_sample, seed_epos = self.sample[eidx], self.pos[eidx]
        result = Scan([[] for _ in texts])
        if self.method == "ngram":
            for d, s in set(zip(seed_doc.tolist(), seed_sample.tolist())):
                result.doc_samples[d].append(s)
            result.spans += [(s, 0, 0) for s in np.unique(seed_sample).tolist()]
            for samples in result.doc_samples:
                samples.sort()
            return result
        return self._extend(result, words, seed_doc, seed_dpos, seed_sample, seed_epos)

    def _extend(self, result: Scan, words, seed_doc, seed_dpos, seed_sample, seed_epos) -> Scan:
        if not len(seed_doc):
            return result
        doc_tokens = _tokens(words)
        diag = seed_epos - seed_dpos
        order = np.lexsort((seed_dpos, diag, seed_sample, seed_doc))
        d_, s_, g_, j_ = seed_doc[order], seed_sample[order], diag[order], seed_dpos[order]
        # A seed right after another on the same diagonal extends exactly as far
        # (the shared position matches), so only the first of each run is extended.
        follows = (d_[1:] == d_[:-1]) & (s_[1:] == s_[:-1]) & (g_[1:] == g_[:-1]) & (j_[1:] == j_[:-1] + 1)
        starts = order[np.flatnonzero(np.concatenate([[True], ~follows]))]
        for k in starts.tolist():
            d, s, i, j = int(seed_doc[k]), int(seed_sample[k]), int(seed_epos[k]), int(seed_dpos[k])
            ev, tr = self.tokens[s], doc_tokens[d]
            size = min(len(ev) - i, len(tr) - j)
            equal = ev[i:i + size] == tr[j:j + size]
            misses = np.cumsum(~equal)
            stop = int(np.searchsorted(misses, self.skip_budget + 1))  # first position over budget
            end = int(np.flatnonzero(equal[:stop])[-1]) + 1  # no trailing mismatches
            if end > self.n:  # longer than min_len
                result.spans.append((s, i, i + end))
                if s not in result.doc_samples[d]:
                    result.doc_samples[d].append(s)
        return result


def contamination_fractions(spans: list[tuple[int, int, int]] | np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Fraction of each evaluation sample's tokens covered by ``spans`` ``(sample, start, end)``."""
    covered = np.zeros(len(lengths), np.int64)
    spans = np.asarray(spans, np.int64).reshape(-1, 3)
    for s in np.unique(spans[:, 0]):
        mask = np.zeros(lengths[s], bool)
        for _, a, b in spans[spans[:, 0] == s]:
            mask[a:b] = True
        covered[s] = mask.sum()
    return covered / np.maximum(lengths, 1)


def contamination_split(fractions: np.ndarray) -> dict[str, int]:
    """The Llama 2 subsets: Clean (< 20%), Not clean, Not dirty (< 80%), Dirty (>= 80%) (they overlap)."""
    f = np.asarray(fractions)
    return {"clean": int((f < CLEAN_BELOW).sum()), "not_clean": int((f >= CLEAN_BELOW).sum()),
            "not_dirty": int((f < DIRTY_FROM).sum()), "dirty": int((f >= DIRTY_FROM).sum())}


@dataclass
class Contamination:
    doc_samples: list[list[int]]  # per training text, indices of the evaluation samples found in it
    fractions: np.ndarray  # per evaluation sample (llama2: token fraction; ngram: 1.0 if hit else 0.0)
    split: dict[str, int]


def decontaminate(train_texts: list[str], eval_texts: list[str], method: str = "ngram", ngram: int = 13,
                  min_len: int = 10, skip_budget: int = 4) -> Contamination:
    """Scan ``train_texts`` for ``eval_texts`` (see the module docstring for the methods)."""
    index = EvalIndex(eval_texts, method, ngram, min_len, skip_budget)
    scan = index.scan(train_texts)
    if method == "ngram":
        fractions = np.zeros(len(eval_texts))
        fractions[[s for s, _, _ in scan.spans]] = 1.0
    else:
        fractions = contamination_fractions(scan.spans, index.lengths())
    return Contamination(scan.doc_samples, fractions, contamination_split(fractions))
