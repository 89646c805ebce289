"""The shared index / reduce / apply machinery of the dedup steps.

A subclass says how to sketch a batch of texts (``sketch``: one row of
integers per document, e.g. a MinHash signature or a 128-bit hash), how to
turn sketches into band keys (``band_keys``) and how to verify a candidate
pair (``verify``). Files under ``workdir`` (one directory per step):

* ``NNNNN.sig.npy`` sketches, ``NNNNN.keys.npy`` / ``NNNNN.rows.npy`` sorted band
  keys and their rows, ``NNNNN.len.npy`` text lengths, ``NNNNN.score.npy``
  keep scores, ``NNNNN.ids.json`` document ids -- written by ``index``;
* ``NNNNN.decisions.json`` -- the removed rows of shard NNNNN, written by ``reduce``.

A saved index (``index_dir``) holds the sketches, lengths, scores and ids of
the documents a run kept, plus ``meta.json``; a later run passes it as
``against`` and its documents join the clustering as already-kept documents
that are never removed, without being hashed again.
"""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from curate.dedup.lsh import ShardIndex, cluster, gather_rows, pack_gid, sorted_band_keys
from curate.dedup.spread import spread_cluster
from curate.pipeline.step import GlobalStep
from curate.record import Document, Removed

KEEP_POLICIES = ("first", "longest", "score")
OLD_SHARD = 1 << 30  # shard numbers of an `against` index in packed ids


class DedupStep(GlobalStep):
    bands = 1
    reason_prefix = "duplicate of"

    def __init__(self, text_key: str = "text", keep: str = "first", score_key: str | None = None,
                 index_dir: str | None = None, against: str | None = None) -> None:
        super().__init__()
        if keep not in KEEP_POLICIES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_POLICIES)}, got {keep!r}")
        if keep == "score" and not score_key:
            raise ValueError("keep: score needs score_key (a meta key holding a number)")
        self.text_key, self.keep, self.score_key = text_key, keep, score_key
        self.index_dir = Path(index_dir) if index_dir else None
        self.against = Path(against) if against else None
        if self.against is not None and not (self.against / "meta.json").is_file():
            raise ValueError(f"against: no saved dedup index at {self.against} (meta.json missing)")

    # --- what a subclass provides -------------------------------------------------
    def sketch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(sketches (n, width), valid (n,) bool)``; invalid rows (no text) are never deduped."""
        raise NotImplementedError

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """uint64 ``(n, self.bands)`` bucket keys."""
        raise NotImplementedError

    def verify(self, sig_u: np.ndarray, sig_v: np.ndarray) -> np.ndarray:
        """Which candidate pairs are real duplicates (bool per pair)."""
        raise NotImplementedError

    def verify_rows(self, shards: list[ShardIndex], u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """:meth:`verify` for dense document ids ``u``, ``v`` of the index ``shards``."""
        return self.verify(gather_rows(shards, "sig", u), gather_rows(shards, "sig", v))

    def index_params(self) -> dict[str, Any]:
        """Parameters that must match between a saved index and a run using it."""
        raise NotImplementedError

    # --- index ----------------------------------------------------------------------
    def text_of(self, doc: Document) -> str:
        value = doc.get(self.text_key)
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)

    def score_of(self, doc: Document) -> float:
        try:
            return float(doc.get(self.score_key))
        except (TypeError, ValueError):
            return float("-inf")  # no usable score: never preferred

    def index(self, docs: list[Document], shard: int, workdir: Path) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        texts = [self.text_of(d) for d in docs]
        sig, valid = self.sketch(texts)
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        scores = np.array([self.score_of(d) for d in docs] if self.keep == "score" else [], np.float64)
        self._write_shard(workdir, f"{shard:05d}", sig, valid, lengths, scores, [d.id for d in docs])

    def _write_shard(self, root: Path, prefix: str, sig, valid, lengths, scores, ids) -> None:
        keys, rows = sorted_band_keys(self.band_keys(sig), valid)
        np.save(root / f"{prefix}.sig.npy", sig)
        np.save(root / f"{prefix}.keys.npy", keys)
        np.save(root / f"{prefix}.rows.npy", rows)
        np.save(root / f"{prefix}.len.npy", lengths)
        np.save(root / f"{prefix}.score.npy", scores if len(scores) else np.zeros(len(ids)))
        (root / f"{prefix}.ids.json").write_text(json.dumps(ids, ensure_ascii=False))

    # --- reduce ---------------------------------------------------------------------
    def _shards(self, workdir: Path, n_shards: int) -> tuple[list[ShardIndex], int]:
        shards, offset = [], 0
        if self.against is not None:
            meta = json.loads((self.against / "meta.json").read_text())
            if meta.get("step") != self.name or meta.get("params") != self.index_params():
                raise ValueError(f"against: index at {self.against} was built with {meta.get('step')} "
                                 f"{meta.get('params')}, this step has {self.index_params()}")
            for j, n in enumerate(meta["shards"]):
                src, prefix = self.against / f"{j:05d}", f"old{j:05d}"
                sig = np.load(f"{src}.sig.npy", allow_pickle=False)
                keys, rows = sorted_band_keys(self.band_keys(sig), np.ones(n, bool))
                np.save(workdir / f"{prefix}.keys.npy", keys)
                np.save(workdir / f"{prefix}.rows.npy", rows)
                files = {w: Path(f"{src}.{w}.npy") for w in ("sig", "len", "score")}
                files.update(keys=workdir / f"{prefix}.keys.npy", rows=workdir / f"{prefix}.rows.npy",
                             ids=Path(f"{src}.ids.json"))
                shards.append(ShardIndex(OLD_SHARD + j, n, offset, files))
                offset += n
        n_old = offset
        for s in range(n_shards):
            files = {w: workdir / f"{s:05d}.{w}.npy" for w in ("sig", "keys", "rows", "len", "score")}
            files["ids"] = workdir / f"{s:05d}.ids.json"
            n = int(np.load(files["len"], mmap_mode="r").shape[0])
            shards.append(ShardIndex(s, n, offset, files))
            offset += n
        return shards, n_old

    def reduce(self, workdir: Path, n_shards: int, executor=None) -> dict[str, Any]:
        workdir = Path(workdir)
        shards, n_old = self._shards(workdir, n_shards)
        verify = partial(self.verify_rows, shards)
        if executor is not None and executor.distributed:
            # spread over the cluster as tasks, one per (band, key range); same result as in-process
            uf, counts = spread_cluster(shards, self.bands, verify, executor)
        else:
            uf, counts = cluster(shards, self.bands, verify)
        roots = uf.roots()
        size = np.bincount(roots, minlength=len(roots))
        members = np.flatnonzero(size[roots] > 1)
        mroots = roots[members]
        # Sort each cluster by preference; its first member is kept. Old (already kept) first.
        prefer = [members]
        if self.keep == "longest":
            prefer.append(-gather_rows(shards, "len", members))
        elif self.keep == "score":
            prefer.append(-gather_rows(shards, "score", members))
        order = np.lexsort(prefer + [members >= n_old, mroots])
        members, mroots = members[order], mroots[order]
        head = np.concatenate([[True], mroots[1:] != mroots[:-1]]) if len(members) else np.zeros(0, bool)
        kept = members[np.flatnonzero(head)][np.cumsum(head) - 1]
        removed = (members != kept) & (members >= n_old)
        self._write_decisions(workdir, shards, members[removed], mroots[removed], kept[removed])
        cluster_sizes = np.bincount(size[size > 1])
        stats = {
            "documents": sum(s.n for s in shards) - n_old,
            "skipped_empty": sum(s.n - s.load("rows").shape[1] for s in shards[len(shards) - n_shards:]),
            **counts,
            "clusters": int(head.sum()),
            "removed": int(removed.sum()),
            "cluster_sizes": {str(k): int(c) for k, c in enumerate(cluster_sizes) if c},
        }
        if n_old:
            stats["against_documents"] = n_old
        if self.index_dir is not None:
            self._save_index(shards, n_old, members[removed])
        return stats

    def _packed(self, shards: list[ShardIndex], dense: np.ndarray) -> np.ndarray:
        offsets = np.array([s.offset for s in shards], np.int64)
        which = np.searchsorted(offsets, dense, side="right") - 1
        shard_no = np.array([s.shard for s in shards], np.int64)[which]
        return pack_gid(shard_no, dense - offsets[which])

    def _ids(self, shards: list[ShardIndex], dense: np.ndarray) -> list[str]:
        offsets = np.array([s.offset for s in shards], np.int64)
        which = np.searchsorted(offsets, dense, side="right") - 1
        out: list[str] = [""] * len(dense)
        for i in np.unique(which):
            ids = json.loads(shards[i].files["ids"].read_text())
            for j in np.flatnonzero(which == i):
                out[j] = ids[dense[j] - shards[i].offset]
        return out

    def _write_decisions(self, workdir: Path, shards, removed, roots, kept) -> None:
        cluster_ids = self._packed(shards, roots).tolist()
        kept_ids = self._ids(shards, kept)
        for s in shards:
            if s.shard >= OLD_SHARD:
                continue
            sel = np.flatnonzero((removed >= s.offset) & (removed < s.offset + s.n))
            decisions = {"n": s.n, "rows": (removed[sel] - s.offset).tolist(),
                         "cluster_id": [cluster_ids[i] for i in sel], "kept_id": [kept_ids[i] for i in sel]}
            (workdir / f"{s.shard:05d}.decisions.json").write_text(json.dumps(decisions, ensure_ascii=False))

    def _save_index(self, shards: list[ShardIndex], n_old: int, removed: np.ndarray) -> None:
        """Write the sketches of every kept, valid document (old ones included) to ``index_dir``."""
        out = self.index_dir
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        sizes = []
        for j, s in enumerate(shards):
            valid = np.zeros(s.n, bool)
            valid[np.asarray(s.load("rows")[0], np.int64)] = True
            gone = removed[(removed >= s.offset) & (removed < s.offset + s.n)] - s.offset
            valid[gone] = False
            rows = np.flatnonzero(valid)
            ids = json.loads(s.files["ids"].read_text())
            for what in ("sig", "len", "score"):
                np.save(out / f"{j:05d}.{what}.npy", np.asarray(s.load(what))[rows])
            (out / f"{j:05d}.ids.json").write_text(json.dumps([ids[r] for r in rows], ensure_ascii=False))
            sizes.append(len(rows))
        meta = {"step": self.name, "params": self.index_params(), "shards": sizes}
        (out / "meta.json").write_text(json.dumps(meta, indent=1))

    # --- apply ----------------------------------------------------------------------
    def apply(self, docs: list[Document], shard: int, workdir: Path) -> tuple[list[Document], list[Removed]]:
        decisions = json.loads((Path(workdir) / f"{shard:05d}.decisions.json").read_text())
        if decisions["n"] != len(docs):
            raise RuntimeError(f"{self.name}: shard {shard} had {decisions['n']} documents at index time, "
                               f"{len(docs)} now")
        gone = {r: (c, k) for r, c, k in zip(decisions["rows"], decisions["cluster_id"], decisions["kept_id"])}
        kept, removed = [], []
        for row, doc in enumerate(docs):
            if row in gone:
                cluster_id, kept_id = gone[row]
                removed.append(Removed(doc, self.name, f"{self.reason_prefix} {kept_id}",
                                       {"cluster_id": cluster_id, "kept_id": kept_id}))
            else:
                kept.append(doc)
        return kept, removed
