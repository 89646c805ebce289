"""The dedup pipeline steps: ``exact_dedup`` and ``minhash_dedup``.

Config examples::

    - step: exact_dedup            # NFC + lowercase + whitespace collapsed, 128-bit xxh3
    - step: minhash_dedup
      threshold: 0.8               # Jaccard of word 5-gram sets
      num_perm: 128
      keep: longest                # or first (default), or score with score_key: quality
      index_dir: out/minhash_index # save an index of the kept documents
      against: old/minhash_index   # dedup against an earlier run's index
    - step: decontaminate
      eval_files: [evals/mmlu.jsonl]
      method: llama2               # or ngram (13-gram overlap)
      action: drop                 # or flag (meta["contamination"])
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from curate.dedup.base import DedupStep
from curate.dedup.decontam import EvalIndex, contamination_fractions, contamination_split, load_eval_files
from curate.dedup.minhash import band_keys, jaccard, minhash_signatures, optimal_bands
from curate.dedup.normalize import normalize_exact, normalize_words
from curate.pipeline.step import GlobalStep, register
from curate.record import Document, Removed


@register("exact_dedup")
class ExactDedup(DedupStep):
    """Remove documents whose normalised text is identical to an earlier one's.

    Documents are grouped by the first 64 bits of an xxh3-128 hash and, with
    ``bits=128`` (default), confirmed by the other 64; ``bits=64`` trusts the
    first 64 alone. Empty texts are never deduped."""

    reason_prefix = "exact_duplicate of"

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
    """Remove near-duplicates: estimated Jaccard of word n-gram sets >= threshold.

    A document goes when its similarity with a kept document reaches
    ``threshold`` (directly or through a chain of such pairs).

    ``num_perm`` MinHash permutations (datasketch affine32 scheme, ``seed``);
    ``bands`` x ``rows`` chosen by :func:`optimal_bands` unless both are given
    (weights ``fp_weight``/``fn_weight`` default to 0.05/0.95 when verifying,
    0.5/0.5 otherwise); candidate pairs from LSH are verified by estimated
    Jaccard unless ``verify: false``: a pair is joined when its estimate is at
    least ``threshold - verify_margin``, the margin defaulting to one standard
    error of the estimate at the threshold, sqrt(t(1-t)/num_perm) (0.035 at
    0.8 and 128 permutations), so that LSH false positives (far below the
    threshold) go while true pairs just above it survive estimator noise. Documents with no words are never deduped."""

    reason_prefix = "near_duplicate of"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1,
                 bands: int | None = None, rows: int | None = None, fp_weight: float | None = None,
                 fn_weight: float | None = None, verify: bool = True, verify_margin: float | None = None,
                 **common: Any) -> None:
        super().__init__(**common)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if num_perm < 2 or ngram < 1:
            raise ValueError(f"need num_perm >= 2 and ngram >= 1, got {num_perm}, {ngram}")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is None:
            # Verified candidates cost only a signature comparison, so by default lean
            # towards recall (16 x 8 at 0.8/128); unverified, balance both errors.
            default = (0.05, 0.95) if verify else (0.5, 0.5)
            weights = (default[0] if fp_weight is None else fp_weight, default[1] if fn_weight is None else fn_weight)
            bands, rows = optimal_bands(threshold, num_perm, *weights)
        if bands * rows > num_perm:
            raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.bands, self.rows, self.do_verify = bands, rows, verify
        # One standard error of the estimate at the threshold: a true pair just above the
        # threshold is not lost to estimator noise (at 0.8/128 the cut-off is 0.765).
        if verify_margin is None:
            verify_margin = (threshold * (1 - threshold) / num_perm) ** 0.5
        self.verify_margin = verify_margin

    def index_params(self) -> dict[str, Any]:
        return {"num_perm": self.num_perm, "ngram": self.ngram, "seed": self.seed}

    def sketch(self, texts):
        words = [normalize_words(t) for t in texts]
        sig = minhash_signatures(words, self.num_perm, self.ngram, self.seed, normalized=True)
        valid = np.fromiter((bool(w) for w in words), bool, len(words))
        return sig, valid

    def band_keys(self, sig):
        return band_keys(sig, self.bands, self.rows)

    def verify(self, sig_u, sig_v):
        if not self.do_verify:
            return np.ones(len(sig_u), bool)
        return jaccard(sig_u, sig_v) >= self.threshold - self.verify_margin


@register("decontaminate")
class Decontaminate(GlobalStep):
    """Drop or flag documents that contain evaluation-set text; report contamination.

    Reports each evaluation sample's contaminated fraction (see :mod:`curate.dedup.decontam`).

    ``eval_files``: JSONL/JSON/text files; ``eval_key``: the field(s) to read (all
    string fields by default). ``report``: optional path for a JSONL of per-sample
    contaminated fractions. A global step so that fractions cover every shard."""

    def __init__(self, eval_files: str | list[str], eval_key: str | list[str] | None = None,
                 method: str = "ngram", ngram: int = 13, min_len: int = 10, skip_budget: int = 4,
                 action: str = "drop", text_key: str = "text", report: str | None = None) -> None:
        super().__init__()
        if action not in ("drop", "flag"):
            raise ValueError(f"action must be drop or flag, got {action!r}")
        self.eval_files = [eval_files] if isinstance(eval_files, str) else list(eval_files)
        self.eval_key, self.action, self.text_key, self.report = eval_key, action, text_key, report
        self.params = {"method": method, "ngram": ngram, "min_len": min_len, "skip_budget": skip_budget}
        EvalIndex([], **self.params)  # validate the method now, not in a worker
        self.evals: EvalIndex | None = None

    def setup(self) -> None:
        if self.evals is None:
            self.sample_ids, texts = load_eval_files(self.eval_files, self.eval_key)
            self.evals = EvalIndex(texts, **self.params)

    def index(self, docs: list[Document], shard: int, workdir: Path) -> None:
        self.setup()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        texts = [d.get(self.text_key) for d in docs]
        scan = self.evals.scan([t if isinstance(t, str) else json.dumps(t) if t is not None else "" for t in texts])
        (workdir / f"{shard:05d}.hits.json").write_text(json.dumps(scan.doc_samples))
        np.save(workdir / f"{shard:05d}.spans.npy", np.asarray(scan.spans, np.int64).reshape(-1, 3))

    def reduce(self, workdir: Path, n_shards: int) -> dict[str, Any]:
        self.setup()
        spans = np.concatenate([np.load(Path(workdir) / f"{s:05d}.spans.npy") for s in range(n_shards)] or
                               [np.zeros((0, 3), np.int64)])
        if self.params["method"] == "ngram":
            fractions = np.zeros(len(self.sample_ids))
            fractions[spans[:, 0]] = 1.0
        else:
            fractions = contamination_fractions(spans, self.evals.lengths())
        hits = [json.loads((Path(workdir) / f"{s:05d}.hits.json").read_text()) for s in range(n_shards)]
        if self.report:
            with open(self.report, "w", encoding="utf-8") as f:
                for sid, frac in zip(self.sample_ids, fractions):
                    f.write(json.dumps({"id": sid, "contaminated": round(float(frac), 4)}) + "\n")
        return {"method": self.params["method"], "eval_samples": len(self.sample_ids),
                "contaminated_documents": sum(bool(h) for shard in hits for h in shard),
                "contaminated_samples": int((fractions > 0).sum()), "split": contamination_split(fractions)}

    def apply(self, docs: list[Document], shard: int, workdir: Path) -> tuple[list[Document], list[Removed]]:
        self.setup()
        hits = json.loads((Path(workdir) / f"{shard:05d}.hits.json").read_text())
        kept, removed = [], []
        for doc, samples in zip(docs, hits):
            ids = [self.sample_ids[s] for s in samples]
            if not ids:
                kept.append(doc)
            elif self.action == "flag":
                doc.meta["contamination"] = {"eval_samples": ids}
                kept.append(doc)
            else:
                how = f"{self.params['ngram']}-gram" if self.params["method"] == "ngram" else "llama2 span"
                removed.append(Removed(doc, self.name, f"{how} match with eval sample {ids[0]}",
                                       {"eval_samples": ids}))
        return kept, removed
