"""The ``select`` step: keep the best-scoring examples, skipping ones too close to those already
chosen (Deita's score-first, diversity-aware selection, Liu et al. 2023).

    - step: select
      key: ifd                     # a numeric meta field; or weights: {ifd: 1.0, quality: 0.5}
      top_fraction: 0.05           # or top_n: 1000
      radius: 0.6                  # optional: skip a candidate closer than this to a chosen one
      text_key: prompt_text        # what closeness compares (default text)
      ngram: 3                     # MinHash word n-grams (prompts are short)
      model: runs/sft/model        # optional: cosine of mean hidden states instead of MinHash

Candidates are taken by score, highest first; ties go to the earlier document in input order
(shard, then position), so the result is deterministic. A candidate whose closeness to any
already chosen example exceeds ``radius`` is skipped; selection stops when ``top_n`` (or
``top_fraction`` of all documents) are chosen. Closeness is the MinHash estimate of the Jaccard
similarity of word n-gram sets (:mod:`curate.dedup.minhash`), or with ``model`` the cosine of
the model's mean final hidden states: ``select`` builds the registered ``embed`` step
(``experiments/scoring/embed.py``, loaded with ``experiments.steps``, as the CLI does) and asks it
for the vectors, so this core module never imports a model. Every
candidate is compared with every chosen example (no LSH), so no close pair slips through.

Removed documents carry ``score`` in ``extra``; skipped ones also ``close_to`` (the id of the
chosen example) and ``closeness``. Documents without a numeric score are removed as missing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from curate.dedup.minhash import jaccard, minhash_signatures
from curate.dedup.normalize import normalize_words
from curate.pipeline.params import number
from curate.pipeline.step import GlobalStep, build_step, register
from curate.record import Document, Removed


def numeric(value: Any) -> float:
    """``value`` as a float, or NaN when it is not a (non-boolean) number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def greedy_select(scores: np.ndarray, sketches: np.ndarray, n_keep: int, radius: float | None,
                  closeness) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deita's selection over all documents: ``(chosen, close_to, closeness)``.

    ``chosen``: bool per document. ``close_to``: for a skipped candidate, the index of the
    chosen document it was too close to (the closest one), else -1; ``closeness`` its value.
    Candidates are visited by descending score, ties by index; NaN scores are never chosen.
    ``closeness(sketch, chosen_sketches)`` returns one value per chosen row."""
    chosen = np.zeros(len(scores), bool)
    close_to = np.full(len(scores), -1, np.int64)
    how_close = np.full(len(scores), np.nan)
    valid = np.flatnonzero(~np.isnan(scores))
    picked: list[int] = []
    bank = np.empty((max(min(n_keep, len(valid)), 1),) + sketches.shape[1:], sketches.dtype)  # the chosen ones
    for i in valid[np.argsort(-scores[valid], kind="stable")]:
        if len(picked) >= n_keep:
            break
        if radius is not None and picked:
            sims = closeness(sketches[i], bank[:len(picked)])
            j = int(np.argmax(sims))
            if sims[j] > radius:
                close_to[i], how_close[i] = picked[j], float(sims[j])
                continue
        bank[len(picked)] = sketches[i]
        picked.append(int(i))
        chosen[i] = True
    return chosen, close_to, how_close


def cosine(vec: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Cosine of unit vector ``vec`` with each unit row of ``bank``."""
    return bank @ vec


@register("select")
class Select(GlobalStep):
    """Keep the top N by a score, skipping candidates too close to ones already chosen (Deita).

    ``top_n`` or ``top_fraction`` (0-1, of all documents) by ``key`` or by
    ``sum(weight * meta[field])`` over ``weights``, skipping candidates closer than
    ``radius`` (0-1) to an already chosen one. MinHash settings: ``ngram`` (default 3),
    ``num_perm`` (128), ``seed`` (1). ``model`` (our checkpoint or a Hugging Face Llama folder),
    ``tokenizer`` (default: the model folder), ``batch_size`` (16), ``max_tokens`` (256),
    ``device`` (cpu | cuda | auto) for cosine closeness."""

    def __init__(self, key: str | None = None, weights: dict[str, float] | None = None, top_n: int | None = None,
                 top_fraction: float | None = None, radius: float | None = None, text_key: str = "text",
                 ngram: int = 3, num_perm: int = 128, seed: int = 1, model: str | None = None,
                 tokenizer: str | None = None, batch_size: int = 16, max_tokens: int = 256, device: str = "cpu"):
        super().__init__()
        if (key is None) == (weights is None):
            raise ValueError("select needs exactly one of key or weights")
        if weights is not None and (not isinstance(weights, dict) or not weights):
            raise ValueError("select: weights must map meta fields to numbers")
        for field_name, w in (weights or {}).items():
            number(f"select.weights.{field_name}", w)
        if (top_n is None) == (top_fraction is None):
            raise ValueError("select needs exactly one of top_n or top_fraction")
        number("select.top_n", top_n, lo=0, integer=True, optional=True)
        if top_fraction is not None and number("select.top_fraction", top_fraction, lo=0, hi=1) == 0:
            raise ValueError("select: top_fraction in (0, 1] is needed, got 0")
        if radius is not None and number("select.radius", radius, lo=0, hi=1) == 1:
            raise ValueError("select: radius must be in [0, 1) (1 would keep every candidate)")
        for name, value in (("ngram", ngram), ("num_perm", num_perm), ("batch_size", batch_size), ("max_tokens", max_tokens)):
            number(f"select.{name}", value, lo=1, integer=True)
        if model is not None and not (Path(model) / "config.json").is_file():
            raise ValueError(f"select: {model} is not a model folder (no config.json)")
        self.weights = {key: 1.0} if key is not None else {k: float(w) for k, w in weights.items()}
        self.key_name = key or " + ".join(f"{w:g}*{k}" for k, w in self.weights.items())
        self.top_n, self.top_fraction, self.radius, self.text_key = top_n, top_fraction, radius, text_key
        self.ngram, self.num_perm, self.seed = ngram, num_perm, seed
        self.model_path, self.tokenizer_path = model, tokenizer or model
        self.batch_size, self.max_tokens, self.device = batch_size, max_tokens, device
        self.embedder = None

    def setup(self) -> None:
        if self.model_path is not None and self.embedder is None:
            self.embedder = build_step({"step": "embed", "model": self.model_path, "tokenizer": self.tokenizer_path,
                                        "batch_size": self.batch_size, "max_tokens": self.max_tokens,
                                        "device": self.device})

    def score(self, doc: Document) -> float:
        """The document's selection score (NaN when any weighted field is missing)."""
        return float(sum(w * numeric(doc.get(k)) for k, w in self.weights.items()))

    def sketch(self, texts: list[str]) -> np.ndarray:
        """What closeness compares: MinHash signatures, or unit mean hidden states with a model."""
        if self.model_path is None:
            return minhash_signatures([normalize_words(t) for t in texts], self.num_perm, self.ngram, self.seed,
                                      normalized=True)
        self.setup()
        return self.embedder.embed(texts)

    def index(self, docs, shard, workdir):
        workdir = Path(workdir)
        np.save(workdir / f"{shard:05d}.score.npy", np.array([self.score(d) for d in docs], np.float64))
        if self.radius is not None:
            texts = [t if isinstance(t, str) else "" for t in (d.get(self.text_key) for d in docs)]
            np.save(workdir / f"{shard:05d}.sketch.npy", self.sketch(texts))
        (workdir / f"{shard:05d}.ids.json").write_text(json.dumps([d.id for d in docs]))

    def reduce(self, workdir, n_shards):
        workdir = Path(workdir)
        scores = [np.load(workdir / f"{s:05d}.score.npy") for s in range(n_shards)]
        flat = np.concatenate(scores) if scores else np.zeros(0)
        n_keep = self.top_n if self.top_n is not None else int(round(self.top_fraction * len(flat)))
        if self.radius is not None and len(flat):
            sketches = np.concatenate([np.load(workdir / f"{s:05d}.sketch.npy") for s in range(n_shards)])
        else:
            sketches = np.zeros((len(flat), 1), np.uint32)
        measure = jaccard if self.model_path is None else cosine
        chosen, close_to, closeness = greedy_select(flat, sketches, n_keep, self.radius, measure)
        ids = [i for s in range(n_shards) for i in json.loads((workdir / f"{s:05d}.ids.json").read_text())]
        start = 0
        for s, part in enumerate(scores):
            end = start + len(part)
            decisions = {"chosen": chosen[start:end].tolist(),
                         "close_to": [ids[j] if j >= 0 else None for j in close_to[start:end]],
                         "closeness": [None if np.isnan(c) else round(float(c), 4) for c in closeness[start:end]]}
            (workdir / f"{s:05d}.decisions.json").write_text(json.dumps(decisions))
            start = end
        cutoff = float(flat[chosen].min()) if chosen.any() else None
        return {"documents": int(len(flat)), "kept": int(chosen.sum()), "skipped_too_close": int((close_to >= 0).sum()),
                "missing_score": int(np.isnan(flat).sum()), "cutoff": cutoff}

    def apply(self, docs, shard, workdir):
        d = json.loads((Path(workdir) / f"{shard:05d}.decisions.json").read_text())
        if len(d["chosen"]) != len(docs):
            raise RuntimeError(f"select: shard {shard} has {len(docs)} documents, index saw {len(d['chosen'])}")
        kept, removed = [], []
        for doc, chosen, near, closeness in zip(docs, d["chosen"], d["close_to"], d["closeness"]):
            score = self.score(doc)
            if chosen:
                kept.append(doc)
            elif np.isnan(score):
                removed.append(Removed(doc, self.name, f"{self.key_name} missing", {"score": None}))
            elif near is not None:
                removed.append(Removed(doc, self.name, f"too close to {near}: {closeness:.3f} > {self.radius}",
                                       {"score": round(score, 6), "close_to": near, "closeness": closeness}))
            else:
                removed.append(Removed(doc, self.name, f"{self.key_name} {score:.4g} not in the top {self._top()}",
                                       {"score": round(score, 6)}))
        return kept, removed

    def _top(self) -> str:
        return str(self.top_n) if self.top_n is not None else f"{self.top_fraction:g}"
