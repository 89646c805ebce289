"""Ray executor overhead: documents per second of the same pipeline on the local
executor and on a local Ray cluster, on the same cores, in one run.

    python benchmarks/ray_bench.py [--mb 40] [--workers 2] [--shard-mb 4]
                                   [--reduce-docs 1000000] [--uf-docs 20000000]

Input: about --mb megabytes of JSONL documents assembled from the real
paragraphs in ../shared/data/pretrain (C4, news, Wikipedia articles), with 10%
exact and 10% near copies planted (see write_corpus). Pipeline: the registered
heuristic filters, exact_dedup, minhash_dedup (threshold 0.8, 128
permutations). Each mode runs the whole pipeline into a fresh folder: the local
executor before and after Ray (the faster counts), Ray once with cold workers,
once warm, once warm with the dedup clustering as Ray tasks; cluster start
(``ray.init``) is timed apart, and so is an empty task on each executor.

Also printed, for sizing a cluster (README): dedup index bytes per document,
output bytes per input byte, MinHash clustering alone in process and as Ray
tasks on a synthetic index (--reduce-docs), and the driver's union-find over
--uf-docs documents (time, bytes per document).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from curate.pipeline.runner import run_pipeline
from _common import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")) / "data/pretrain"


def real_paragraphs() -> list[str]:
    """Paragraphs of the real texts; long one-line articles cut into 100-word pieces."""
    texts = [json.loads(l)["text"] for l in (SHARED / "c4_demo.jsonl").read_text().splitlines()]
    texts += (SHARED / "lee_background.cor").read_text(errors="replace").splitlines()
    texts += (SHARED / "wiki_demo.txt").read_text().splitlines()
    out = []
    for t in texts:
        for para in t.split("\n"):
            words = para.split()
            out += [" ".join(words[i:i + 100]) for i in range(0, len(words), 100)]
    return [p for p in out if len(p.split()) >= 5]


def write_corpus(folder: Path, mb: int, seed: int = 0) -> tuple[int, int]:
    """About ``mb`` MB of JSONL in 4 files; returns (documents, bytes). Each document is
    2-8 real paragraphs drawn at random (seeded); 10% are exact copies of an earlier
    document and 10% near copies (one paragraph swapped), for the dedup steps to find."""
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    paras = real_paragraphs()
    files = [open(folder / f"part{f}.jsonl", "w", encoding="utf-8") for f in range(4)]
    docs: list[list[str]] = []
    n_bytes = 0
    while n_bytes < mb * 1_000_000:
        roll = rng.random()
        if docs and roll < 0.1:
            doc = rng.choice(docs)
        elif docs and roll < 0.2:
            doc = list(rng.choice(docs))
            doc[rng.randrange(len(doc))] = rng.choice(paras)
        else:
            doc = rng.sample(paras, rng.randint(2, 8))
        docs.append(doc)
        line = json.dumps({"text": "\n".join(doc)}, ensure_ascii=False) + "\n"
        files[len(docs) % 4].write(line)
        n_bytes += len(line.encode())
    for f in files:
        f.close()
    return len(docs), n_bytes


def pipeline(data: Path, shard_mb: float) -> dict:
    from curate.steps import REGISTRY

    filters = [{"step": n} for n in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality") if n in REGISTRY]
    return {"inputs": [{"path": str(data), "shard_bytes": int(shard_mb * 1_000_000)}],
            "steps": [*filters, {"step": "exact_dedup"}, {"step": "minhash_dedup", "threshold": 0.8, "num_perm": 128}],
            "output": {"dir": "unused"}}


def timed_run(config: dict, out: Path, executor) -> tuple[float, dict]:
    t0 = time.perf_counter()
    stats = run_pipeline(config, out=out, quiet=True, executor=executor)
    return time.perf_counter() - t0, stats


def noop(payload: dict) -> dict:
    return payload


def per_task_seconds(executor, n_tasks: int = 200) -> float:
    """Wall seconds per empty task: the executor's own cost of shipping a task and its result."""
    payloads = [{"task": i} for i in range(n_tasks)]
    list(executor.map(noop, payloads[:8], lambda n: None))  # workers up
    t0 = time.perf_counter()
    assert len(list(executor.map(noop, payloads, lambda n: None))) == n_tasks
    return (time.perf_counter() - t0) / n_tasks


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=40, help="input size in MB (default 40)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="cores for both executors (default: all)")
    ap.add_argument("--shard-mb", type=float, default=4.0, help="input shard size in MB (default 4)")
    ap.add_argument("--uf-docs", type=int, default=20_000_000, help="documents in the driver union-find measurement")
    ap.add_argument("--reduce-docs", type=int, default=1_000_000, help="documents in the clustering measurement")
    args = ap.parse_args()
    import ray

    from curate.pipeline.executor import LocalExecutor
    from curate.pipeline.ray_executor import RayExecutor

    tmp = Path(tempfile.mkdtemp(prefix="ray_bench-"))
    try:
        n_docs, n_bytes = write_corpus(tmp / "in", args.mb)
        config = pipeline(tmp / "in", args.shard_mb)
        print(f"machine: {machine()}")
        print(f"input: {n_bytes / 1e6:.0f} MB, {n_docs} documents, steps: {[s['step'] for s in config['steps']]}")

        t_local, s_local = timed_run(config, tmp / "local", LocalExecutor(args.workers))
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        t_init = time.perf_counter() - t0
        t_cold, s_cold = timed_run(config, tmp / "ray-cold", RayExecutor())
        t_warm, s_warm = timed_run(config, tmp / "ray-warm", RayExecutor())
        rss_pipelines = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reduce_cost(args.reduce_docs)
        ray_task_s = per_task_seconds(RayExecutor())
        ray.shutdown()
        # local again, after Ray: the first run also paid for a cold page cache
        t_local2, _ = timed_run(config, tmp / "local2", LocalExecutor(args.workers))
        t_local = min(t_local, t_local2)
        local_ex = LocalExecutor(args.workers)
        local_task_s = per_task_seconds(local_ex)
        local_ex.close()
        same = all(sorted((tmp / m / "data").glob("*.parquet")) and
                   [p.read_bytes() for p in sorted((tmp / m / "data").glob("*.parquet"))] ==
                   [p.read_bytes() for p in sorted((tmp / "local/data").glob("*.parquet"))] for m in ("ray-cold", "ray-warm"))

        print(f"shards: {s_local['shards']}, kept {s_local['written']}, removed {s_local['removed']}; "
              f"Ray output files byte-identical to local: {same}")
        print(f"local executor, {args.workers} workers (best of 2): {n_docs / t_local:8.0f} docs/s  {n_bytes / 1e6 / t_local:6.2f} MB/s  ({t_local:.1f} s)")
        print(f"ray, cold workers                       : {n_docs / t_cold:8.0f} docs/s  {n_bytes / 1e6 / t_cold:6.2f} MB/s  ({t_cold:.1f} s)")
        print(f"ray, warm workers                       : {n_docs / t_warm:8.0f} docs/s  {n_bytes / 1e6 / t_warm:6.2f} MB/s  ({t_warm:.1f} s)")
        print(f"ray.init (local cluster start): {t_init:.1f} s, not counted above")
        print(f"per empty task: local {local_task_s * 1e3:.1f} ms, ray {ray_task_s * 1e3:.1f} ms "
              f"(a {args.shard_mb:g} MB shard takes about {args.shard_mb / (n_bytes / 1e6 / t_local / args.workers):.1f} s)")
        print(f"ratio ray / local (throughput): cold {t_local / t_cold:.2f}, warm {t_local / t_warm:.2f}")

        for step, dist in zip(s_local["steps"], s_warm["steps"]):  # with Ray, dedup clusters as Ray tasks
            if "global" in step:
                g = step["global"]
                idx = next((tmp / "local/_work").glob(f"step*-{step['step']}"))
                index_bytes = sum(p.stat().st_size for p in idx.iterdir() if not p.name.endswith("decisions.json"))
                print(f"{step['step']}: index {index_bytes / step['in']:.0f} bytes/doc ({index_bytes / n_bytes:.3f} x input), "
                      f"reduce {g['seconds']:.2f} s in process, {dist['global']['seconds']:.2f} s on Ray, for {step['in']} docs")
        out_bytes = folder_bytes(tmp / "local/data") + folder_bytes(tmp / "local/removed")
        print(f"output (kept + removed parquet): {out_bytes / n_bytes:.3f} x input bytes "
              f"(each stage between dedup steps writes about this much under _work/)")
        print(f"driver peak RSS over the pipeline runs: {rss_pipelines:.0f} MiB "
              f"(the reduces run here; includes the interpreter and imports)")
        union_find_cost(args.uf_docs)
    finally:
        shutil.rmtree(tmp)


def reduce_cost(n_docs: int, n_shards: int = 8, seed: int = 0) -> None:
    """MinHash clustering alone, in process (lsh.cluster) and as Ray tasks (spread_cluster over RayExecutor.map),
    on a synthetic index: random 128-value signatures, 10% of them near copies of
    another (10% of values changed: estimated Jaccard 0.9). Ray must be initialised."""
    import numpy as np

    from curate.dedup.lsh import ShardIndex, cluster, gather_rows, sorted_band_keys
    from curate.dedup.spread import spread_cluster
    from curate.pipeline.ray_executor import RayExecutor
    from experiments.steps import build_step

    step = build_step({"step": "minhash_dedup", "threshold": 0.8, "num_perm": 128})
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 1 << 32, (n_docs, 128), dtype=np.uint64).astype(np.uint32)
    copies = rng.choice(n_docs, n_docs // 10, replace=False)
    sig[copies] = sig[rng.integers(0, n_docs, len(copies))]
    changed = rng.random((len(copies), 128)) < 0.1
    sig[copies] = np.where(changed, rng.integers(0, 1 << 32, changed.shape, dtype=np.uint64).astype(np.uint32), sig[copies])
    folder = Path(tempfile.mkdtemp(prefix="ray_bench_reduce-"))
    try:
        shards, offset = [], 0
        for k, part in enumerate(np.array_split(sig, n_shards)):
            keys, rows = sorted_band_keys(step.band_keys(part), np.ones(len(part), bool))
            files = {w: folder / f"{k:05d}.{w}.npy" for w in ("sig", "keys", "rows")}
            for w, a in (("sig", part), ("keys", keys), ("rows", rows)):
                np.save(files[w], a)
            shards.append(ShardIndex(k, len(part), offset, files))
            offset += len(part)

        def verify(u, v):
            return step.verify(gather_rows(shards, "sig", u), gather_rows(shards, "sig", v))

        t0 = time.perf_counter()
        local, _ = cluster(shards, step.bands, verify)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        dist, _ = spread_cluster(shards, step.bands, verify, RayExecutor())
        t_ray = time.perf_counter() - t0
        same = bool((local.roots() == dist.roots()).all())
        index_mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        print(f"MinHash clustering, {n_docs / 1e6:.1f}M docs ({index_mb:.0f} MB of index, {step.bands} bands): "
              f"in process {t_local:.1f} s ({n_docs / t_local:.0f} docs/s), "
              f"Ray tasks {t_ray:.1f} s ({n_docs / t_ray:.0f} docs/s), same clusters: {same}")
    finally:
        shutil.rmtree(folder)


def union_find_cost(n_docs: int, dup_fraction: float = 0.3, seed: int = 0) -> None:
    """What the driver holds in a distributed reduce: a union-find over every document,
    fed forest edges (here: ``dup_fraction`` of documents joined to a random smaller id)."""
    import numpy as np

    from curate.dedup.unionfind import UnionFind

    rng = np.random.default_rng(seed)
    child = np.sort(rng.choice(np.arange(1, n_docs), int(n_docs * dup_fraction), replace=False))
    parent = (rng.random(len(child)) * child).astype(np.int64)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    t0 = time.perf_counter()
    uf = UnionFind(n_docs)
    for i in range(0, len(child), 4_000_000):  # forests arrive task by task
        uf.union(child[i : i + 4_000_000], parent[i : i + 4_000_000])
    roots = uf.roots()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"driver union-find: {n_docs / 1e6:.0f}M docs, {len(child) / 1e6:.1f}M edges: {dt:.1f} s, "
          f"peak {peak / (1 << 20):.0f} MiB allocated ({peak / n_docs:.1f} bytes/doc incl. temporaries), "
          f"{len(np.unique(roots)) / 1e6:.1f}M clusters")


if __name__ == "__main__":
    main()
