"""A fastText quality classifier, trained the DCLM way (Li et al. 2024, "DataComp-LM"):
curated high-quality text (label ``hq``) against random web text (label ``lq``).

``train_classifier`` holds out a seeded fraction of both sets and reports accuracy and
ROC AUC on it; the ``quality`` step writes P(hq) to ``meta["quality"]``; the
``quality_filter`` step keeps documents by a threshold on a meta field or keeps the top
fraction of all documents (a global step: it needs every score before deciding).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from curate.basics.errors import CurateError
from curate.filters.text import split_words
from curate.pipeline.step import GlobalStep, Step, register
from curate.record import Document, Removed
from curate.scoring.models import load_fasttext

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"


def normalize(text: str) -> str:
    """The classifier's view of a text: lower-cased tokens joined by single spaces."""
    return " ".join(split_words(text.lower()))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative (ties count half), from average ranks (Mann-Whitney U)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    rank_sums = np.bincount(inverse, weights=ranks)
    ranks = (rank_sums / counts)[inverse]  # average rank within each group of ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _fit(train_path: str, params: dict, out: str) -> str | None:
    """Train and save a supervised fastText model (runs in a child process); the error text or None."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    try:
        fasttext.train_supervised(input=train_path, **params).save_model(out)
    except (RuntimeError, ValueError) as e:
        return str(e)
    return None


def train_classifier(positive: list[str], negative: list[str], out: str | Path, *, test_fraction: float = 0.2,
                     seed: int = 0, epoch: int = 25, lr: float = 0.5, word_ngrams: int = 2, dim: int = 64,
                     min_count: int = 2, bucket: int = 1_000_000) -> dict[str, Any]:
    """Train on ``positive`` (label hq) and ``negative`` (label lq) texts, write the model
    to ``out`` (fastText .bin) and ``out`` + ``.json`` (figures), and return the figures:
    held-out accuracy (at P(hq) >= 0.5) and ROC AUC, and the counts used. Single-threaded
    with a fixed seed, so the same inputs give the same model. ``bucket`` hashed word-bigram
    slots (the model holds ``bucket * dim`` floats: 256 MB at the defaults)."""
    import fasttext

    pos = [t for t in (normalize(x) for x in positive) if t]
    neg = [t for t in (normalize(x) for x in negative) if t]
    if len(pos) < 2 or len(neg) < 2:
        raise CurateError(f"need at least 2 non-empty positive and negative texts (got {len(pos)} and {len(neg)})")
    if not 0.0 < test_fraction < 1.0:
        raise CurateError("test_fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    rows = [(POSITIVE, t) for t in pos] + [(NEGATIVE, t) for t in neg]
    order = rng.permutation(len(rows))
    # Hold out the same fraction of each class so a skewed split cannot flatter accuracy.
    test_idx: set[int] = set()
    for label in (POSITIVE, NEGATIVE):
        members = [i for i in order if rows[i][0] == label]
        test_idx.update(members[: max(1, math.floor(len(members) * test_fraction))])
    train = [rows[i] for i in order if i not in test_idx]
    test = [rows[i] for i in order if i in test_idx]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.writelines(f"{label} {text}\n" for label, text in train)
        train_path = f.name
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".tmp-{os.getpid()}-{out.name}")  # renamed into place when complete
    params = {"epoch": epoch, "lr": lr, "wordNgrams": word_ngrams, "dim": dim, "minCount": min_count,
              "bucket": bucket, "thread": 1, "seed": seed, "verbose": 0}
    try:
        # A fresh process per fit: fastText's trainer came out NaN in long-lived test processes that
        # fit fine alone (state left by other native code), and a child also frees its memory.
        ctx = multiprocessing.get_context("spawn")
        for _ in range(4):  # fastText's SGD can diverge at a high rate: halve it and retrain
            with ctx.Pool(1) as pool:
                error = pool.apply(_fit, (train_path, params, str(tmp_out)))
            if error is None:
                break
            if "NaN" not in error:
                raise CurateError(f"fastText training failed: {error}")
            params["lr"] /= 2
        else:
            raise CurateError("fastText training diverged (NaN) even at an eighth of the learning rate; lower --lr")
        os.replace(tmp_out, out)
    finally:
        Path(train_path).unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    lr = params["lr"]
    model = fasttext.load_model(str(out))
    scores = hq_probability(model, [t for _, t in test])
    labels = np.array([label == POSITIVE for label, _ in test])
    figures = {
        "model": str(out), "train": len(train), "test": len(test),
        "train_positive": sum(lab == POSITIVE for lab, _ in train), "train_negative": sum(lab == NEGATIVE for lab, _ in train),
        "accuracy": float(((scores >= 0.5) == labels).mean()), "auc": roc_auc(scores, labels),
        "params": {"epoch": epoch, "lr": lr, "word_ngrams": word_ngrams, "dim": dim, "min_count": min_count, "bucket": bucket,
                   "test_fraction": test_fraction, "seed": seed},
    }
    Path(str(out) + ".json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def hq_probability(model, normalized_texts: list[str]) -> np.ndarray:
    """P(hq) for each already-normalized text."""
    labels, probs = model.predict(normalized_texts, k=-1)
    out = np.zeros(len(normalized_texts))
    for i, (labs, ps) in enumerate(zip(labels, probs)):
        for lab, p in zip(labs, ps):
            if lab == POSITIVE:
                out[i] = min(float(p), 1.0)
    return out


@register("quality")
class QualityScore(Step):
    """Write the classifier's P(hq) (0-1) to ``meta[key]`` (default ``quality``) for every
    document; removes nothing. ``model_path``: a model from ``curate classifier train``."""

    def __init__(self, model_path: str, key: str = "quality", text_key: str = "text"):
        super().__init__()
        if not Path(model_path).is_file():
            raise ValueError(f"quality: model file not found: {model_path}")
        self.model_path, self.key, self.text_key = model_path, key, text_key
        self.model = None

    def setup(self):
        self.model = load_fasttext(self.model_path)

    def process(self, docs):
        if self.model is None:
            self.setup()
        scores = hq_probability(self.model, [normalize(str(d.get(self.text_key) or "")) for d in docs])
        for doc, s in zip(docs, scores):
            doc.meta[self.key] = round(float(s), 5)
        return docs, []


@register("quality_filter")
class QualityFilter(GlobalStep):
    """Keep documents whose ``meta[key]`` is at least ``threshold``, or the ``top_fraction``
    (0-1) of all documents with the highest values (ties broken by input order). Documents
    without a numeric value are removed with the reason ``<key> missing``."""

    def __init__(self, key: str = "quality", threshold: float | None = None, top_fraction: float | None = None):
        super().__init__()
        if (threshold is None) == (top_fraction is None):
            raise ValueError("quality_filter needs exactly one of threshold or top_fraction")
        if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
            raise ValueError("top_fraction must be in (0, 1]")
        self.key, self.threshold, self.top_fraction = key, threshold, top_fraction

    def _values(self, docs: list[Document]) -> np.ndarray:
        vals = [d.get(self.key) for d in docs]
        return np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in vals],
                        dtype=np.float64)

    def index(self, docs, shard, workdir):
        if self.top_fraction is not None:
            np.save(Path(workdir) / f"values_{shard:06d}.npy", self._values(docs))

    def reduce(self, workdir, n_shards):
        if self.top_fraction is None:
            return {}
        workdir = Path(workdir)
        values = [np.load(workdir / f"values_{s:06d}.npy") for s in range(n_shards)]
        flat = np.concatenate(values) if values else np.zeros(0)
        valid = np.flatnonzero(~np.isnan(flat))
        n_keep = int(round(self.top_fraction * len(flat)))
        # Stable sort on -value: equal values keep input order (shard, position).
        best = valid[np.argsort(-flat[valid], kind="stable")][:n_keep]
        keep = np.zeros(len(flat), dtype=bool)
        keep[best] = True
        start = 0
        for s, v in enumerate(values):
            np.save(workdir / f"keep_{s:06d}.npy", keep[start:start + len(v)])
            start += len(v)
        cutoff = float(flat[best].min()) if len(best) else None
        return {"documents": int(len(flat)), "kept": int(len(best)), "cutoff": cutoff}

    def apply(self, docs, shard, workdir):
        values = self._values(docs)
        if self.top_fraction is not None:
            keep = np.load(Path(workdir) / f"keep_{shard:06d}.npy")
            if len(keep) != len(docs):
                raise RuntimeError(f"quality_filter: shard {shard} has {len(docs)} documents, index saw {len(keep)}")
        else:
            keep = values >= self.threshold  # NaN compares False
        kept, removed = [], []
        for doc, v, k in zip(docs, values, keep):
            if k:
                kept.append(doc)
            elif np.isnan(v):
                removed.append(Removed(doc, self.name, f"{self.key} missing"))
            elif self.threshold is not None:
                removed.append(Removed(doc, self.name, f"{self.key} {v:.4g} < {self.threshold}"))
            else:
                removed.append(Removed(doc, self.name, f"{self.key} {v:.4g} below top {self.top_fraction:g}"))
        return kept, removed
