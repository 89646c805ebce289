"""Peak memory of the MinHash reduce on a pathological corpus: N tiny, near-identical
records (20 words, only the last differs: estimated Jaccard ~0.88), so every document
collides with every other in every band and candidate pairs are as many as LSH makes.

    python benchmarks/dedup_pathological.py build /tmp/patho --docs 1000000 --shards 8
    /usr/bin/time -v python benchmarks/dedup_pathological.py reduce /tmp/patho   # Maximum resident set size

``build`` writes the per-shard index (what ``minhash_dedup`` writes in a run), ``reduce``
clusters it and prints the figures, so that ``time -v`` measures the reduce alone.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from curate.dedup.steps import MinHashDedup
from curate.record import Document

BASE = "the committee met on tuesday to review the annual budget and approved every item on the list number"


def build(out: Path, docs: int, shards: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    step, per = MinHashDedup(), -(-docs // shards)
    for s in range(shards):
        batch = [Document(f"d{i}", f"{BASE} {i}") for i in range(s * per, min(docs, (s + 1) * per))]
        step.index(batch, s, out)
    (out / "bench.json").write_text(json.dumps({"docs": docs, "shards": shards}))


def reduce(out: Path) -> None:
    shards = json.loads((out / "bench.json").read_text())["shards"]
    t0 = time.perf_counter()
    stats = MinHashDedup().reduce(out, shards)
    stats.pop("cluster_sizes", None)
    print(json.dumps({**stats, "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["build", "reduce"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=8)
    a = ap.parse_args()
    build(a.out, a.docs, a.shards) if a.what == "build" else reduce(a.out)
