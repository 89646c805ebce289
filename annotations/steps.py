"""Cleaning steps for annotation records in ``curate run`` configs.

* ``annotation_checks`` -- the checks of :mod:`annotations.checks` as a filter.
* ``prompt_dedup`` -- exact and near-duplicate prompts across every shard (so within
  and across vendors), keeping the first; a global step.
* ``prompt_decontaminate`` -- drops records that share a word n-gram with an evaluation set.

Documents that are not annotation records (no ``meta["kind"]``) pass through untouched
and are counted in ``counters["not_annotation"]``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from annotations import overlap
from annotations.checks import CHECKS, Checker
from annotations.records import KINDS, from_document, prompt_text
from curate.pipeline.step import GlobalStep, Step, register
from curate.record import Document, Removed

SEVERITIES = ("error", "warning")


def _is_record(doc: Document) -> bool:
    return doc.meta.get("kind") in KINDS


@register("annotation_checks")
class AnnotationChecks(Step):
    """Run the named checks (default: all record checks). A record failing a check whose
    severity is in ``remove`` (default ``["error"]``) is removed, with every failure in
    the reason; other failures are kept in ``meta["flags"]`` as ``{check: detail}``.
    ``lid_model`` is the fastText lid.176 path for ``language_mismatch``;
    ``max_turn_chars`` (default 16,000) bounds ``too_long``."""

    def __init__(self, checks: list[str] | None = None, remove: list[str] = ("error",),
                 lid_model: str | None = None, max_turn_chars: int = 16_000):
        super().__init__()
        bad = [s for s in remove if s not in SEVERITIES]
        if bad:
            raise ValueError(f"remove: unknown severities {bad}; use {SEVERITIES}")
        self.checker_args = dict(names=checks, lid_model=lid_model, max_turn_chars=max_turn_chars)
        self.remove = set(remove)
        self.checker: Checker | None = None
        Checker(**{**self.checker_args, "lid_model": None})  # validates check names now, loads nothing

    def setup(self) -> None:
        self.checker = Checker(**self.checker_args)

    def process(self, docs):
        if self.checker is None:
            self.setup()
        kept, removed = [], []
        for doc in docs:
            if not _is_record(doc):
                self.counters["not_annotation"] += 1
                kept.append(doc)
                continue
            failures = self.checker.run(from_document(doc))
            self.counters.update(f"failed_{name}" for name in failures)
            if any(CHECKS[name].severity in self.remove for name in failures):
                reason = "; ".join(f"{name}: {detail}" for name, detail in failures.items())
                removed.append(Removed(doc, self.name, reason, {"checks": sorted(failures)}))
            else:
                if failures:
                    doc.meta["flags"] = failures
                kept.append(doc)
        return kept, removed


@register("prompt_dedup")
class PromptDedup(GlobalStep):
    """Remove records whose prompt (last user turn) is an exact or near duplicate of an
    earlier record's, across all shards. ``threshold`` is the estimated Jaccard
    similarity of character 5-gram MinHash signatures (default 0.8); ``num_perm``
    (default 128) and ``seed`` (default 1) fix the signatures."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, seed: int = 1):
        super().__init__()
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed

    def index(self, docs, shard, workdir):
        rows = [i for i, d in enumerate(docs) if _is_record(d)]
        prompts = [prompt_text(from_document(docs[i])) for i in rows]
        np.save(Path(workdir) / f"prompt_dedup.{shard}.npy", overlap.signatures(prompts, self.num_perm, self.seed))
        info = {"rows": rows, "ids": [docs[i].id for i in rows], "norm": [overlap.normalize(p) for p in prompts]}
        (Path(workdir) / f"prompt_dedup.{shard}.index.json").write_text(json.dumps(info, ensure_ascii=False))

    def reduce(self, workdir, n_shards):
        workdir = Path(workdir)
        sigs = [np.load(workdir / f"prompt_dedup.{s}.npy") for s in range(n_shards)]
        infos = [json.loads((workdir / f"prompt_dedup.{s}.index.json").read_text()) for s in range(n_shards)]
        ids = [i for info in infos for i in info["ids"]]
        norm = [t for info in infos for t in info["norm"]]
        all_sigs = np.concatenate(sigs) if ids else np.empty((0, self.num_perm), np.uint64)
        cluster = overlap.clusters(all_sigs, self.threshold, self.seed) if ids else np.array([], int)
        start = 0
        for s, info in enumerate(infos):
            decisions = {}
            for k, row in enumerate(info["rows"]):
                g, first = start + k, int(cluster[start + k])
                if first != g:
                    decisions[row] = {"kept_id": ids[first], "exact": norm[g] == norm[first]}
            (workdir / f"prompt_dedup.{s}.json").write_text(json.dumps(decisions))
            start += len(info["rows"])
        removed = int((cluster != np.arange(len(cluster))).sum())
        return {"prompts": len(ids), "removed": removed, "clusters": len(set(cluster.tolist()))}

    def apply(self, docs, shard, workdir):
        decisions = json.loads((Path(workdir) / f"prompt_dedup.{shard}.json").read_text())
        kept, removed = [], []
        for i, doc in enumerate(docs):
            d = decisions.get(str(i))
            if d is None:
                kept.append(doc)
            else:
                what = "exact" if d["exact"] else "near"
                removed.append(Removed(doc, self.name, f"{what} duplicate prompt of {d['kept_id']}", d))
        return kept, removed


@register("prompt_decontaminate")
class PromptDecontaminate(Step):
    """Remove records that share a word ``n``-gram (default 13, as in GPT-3's
    decontamination) with any text of the evaluation files, in the prompt or an answer.
    Evaluation texts shorter than ``n`` words match when a turn contains them whole.
    ``eval_files``: JSONL / JSON (every string value counts) or plain text (one per line)."""

    def __init__(self, eval_files: list[str], n: int = 13):
        super().__init__()
        if not eval_files:
            raise ValueError("eval_files is empty")
        self.eval_files, self.n = [Path(f) for f in eval_files], n
        self.grams: set[int] | None = None
        self.short: list[str] = []

    def setup(self) -> None:
        self.grams = set()
        for text in (t for f in self.eval_files for t in _eval_texts(f)):
            words = overlap.normalize(text).split()
            if len(words) < self.n:
                if words:
                    self.short.append(" ".join(words))
            else:
                self.grams.update(hash(tuple(words[i : i + self.n])) for i in range(len(words) - self.n + 1))

    def process(self, docs):
        if self.grams is None:
            self.setup()
        kept, removed = [], []
        for doc in docs:
            hit = self._hit(from_document(doc)) if _is_record(doc) else None
            if hit is None:
                kept.append(doc)
            else:
                removed.append(Removed(doc, self.name, hit))
        return kept, removed

    def _hit(self, record) -> str | None:
        turns = [m["content"] for m in record.prompt_messages()] + record.answers()
        for turn in turns:
            words = overlap.normalize(turn).split()
            for i in range(len(words) - self.n + 1):
                if hash(tuple(words[i : i + self.n])) in self.grams:
                    return f"shares the {self.n}-gram {' '.join(words[i : i + self.n])!r} with an eval set"
            flat = " ".join(words)
            for short in self.short:
                if f" {short} " in f" {flat} ":
                    return f"contains the eval text {short[:80]!r}"
        return None


def _eval_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"eval file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix not in (".json", ".jsonl"):
        return [line for line in text.splitlines() if line.strip()]
    items: list[Any] = json.loads(text) if path.suffix == ".json" else [json.loads(l) for l in text.splitlines() if l.strip()]
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(items)
    return out
