"""JSONL -> Parquet throughput: `curate run` against plain pyarrow
(`pyarrow.json.read_json` + `pq.write_table`) on the same file, one run:

- with no steps (the fast reader hands Arrow tables straight to the writer);
- with the four heuristic filters (gopher_quality, gopher_repetition, c4_quality,
  fineweb_quality), counting only input and output, two ways:
  * as the workers timed it: each task's seconds less its steps' seconds (stats.json
    ``io_seconds``: reading, making Documents, writing kept and removed rows, bookkeeping),
    summed over tasks and divided by the workers;
  * the whole run: its wall time less the filters' seconds divided by the workers, which
    adds the fixed costs (starting worker processes and their imports, the report) and any
    worker left idle at the end;
- with no steps and the fast reader off (line-by-line JSON), for reference.

    python benchmarks/io_bench.py [--mb 200] [--workers 2]

Input: the real C4 sample (../shared/data/pretrain/c4_demo.jsonl, or the bundled
copy in examples/data) repeated to about --mb megabytes, cut into 4 shards per worker
so that the workers finish together.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq

import curate.report.run_report  # noqa: F401  (the runner imports it at a run's end: paid here once, not by the first run measured)
from curate.pipeline.runner import run_pipeline
from _common import machine

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (worker processes), all threads."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--no-filters", action="store_true", help="skip the (slow) run with the four heuristic filters")
    args = ap.parse_args()
    sample = ROOT.parent / "shared/data/pretrain/c4_demo.jsonl"
    if not sample.exists():
        sample = ROOT / "examples/data/c4_demo.jsonl"
    raw = sample.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="io_bench-"))
    try:
        src = tmp / "in.jsonl"
        with open(src, "wb") as f:
            for _ in range(max(1, args.mb * 1_000_000 // len(raw))):
                f.write(raw)
        mb = src.stat().st_size / 1e6
        # Warm up both sides alike: the file in the page cache, pyarrow's JSON reader and Parquet writer
        # used once (the first call in a process pays ~0.5 s that the timed pyarrow run would otherwise carry).
        src.read_bytes()
        pq.write_table(pj.read_json(sample), tmp / "warm.parquet", compression="zstd")

        t0, c0 = time.perf_counter(), cpu_seconds()
        table = pj.read_json(src, read_options=pj.ReadOptions(block_size=1 << 24))
        pq.write_table(table, tmp / "pyarrow.parquet", compression="zstd")
        t_pa, c_pa = time.perf_counter() - t0, cpu_seconds() - c0

        shard_bytes = src.stat().st_size // (4 * args.workers) + 1

        def curate(name, steps, fast=True):
            t0, c0 = time.perf_counter(), cpu_seconds()
            stats = run_pipeline({"inputs": [{"path": str(src), "shard_bytes": shard_bytes, "fast_jsonl": fast}], "steps": steps,
                                  "output": {"dir": str(tmp / name)}}, workers=args.workers, quiet=True)
            assert stats["read"] == table.num_rows and stats["balanced"]
            return time.perf_counter() - t0, sum(s["seconds"] for s in stats["steps"]), cpu_seconds() - c0, stats["io_seconds"]

        t_slow, _, _, _ = curate("slow", [], fast=False)
        t_cu, _, c_cu, _ = curate("none", [])
        if not args.no_filters:
            filters = [{"step": s} for s in ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")]
            t_f, step_s, _, io_s = curate("filters", filters)
            t_io, t_tasks = t_f - step_s / args.workers, io_s / args.workers

        print(f"machine: {machine()}")
        print(f"input: {mb:.0f} MB, {table.num_rows} documents")
        print(f"pyarrow read_json + write_table : {mb / t_pa:7.1f} MB/s  ({t_pa:.2f} s, CPU {c_pa:.2f} s, 1 process, Arrow's own threads)")
        print(f"curate run, no steps, {args.workers} workers: {mb / t_cu:7.1f} MB/s  ({t_cu:.2f} s, CPU {c_cu:.2f} s)   "
              f"ratio to pyarrow {t_pa / t_cu:.2f}, in CPU time {c_pa / c_cu:.2f}")
        if not args.no_filters:
            print(f"curate run, 4 heuristic filters: {t_f:.1f} s, filters {step_s:.1f} s over {args.workers} workers")
            print(f"  input+output as the workers timed it: {t_tasks:.2f} s = {mb / t_tasks:.1f} MB/s   ratio to pyarrow {t_pa / t_tasks:.2f}")
            print(f"  input+output of the whole run (adds start-up, report, idle): {t_io:.2f} s = {mb / t_io:.1f} MB/s   "
                  f"ratio to pyarrow {t_pa / t_io:.2f}")
        print(f"curate run, no steps, fast reader off: {mb / t_slow:7.1f} MB/s  ({t_slow:.1f} s)   ratio to pyarrow {t_pa / t_slow:.2f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
