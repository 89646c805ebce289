"""JSONL -> Parquet throughput: `curate run` with no steps against plain
pyarrow (`pyarrow.json.read_json` + `pq.write_table`) on the same file, one run.

    python benchmarks/io_bench.py [--mb 200] [--workers 2]

Input: the real C4 sample (../shared/data/pretrain/c4_demo.jsonl, or the bundled
copy in examples/data) repeated to about --mb megabytes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq

from curate.pipeline.runner import run_pipeline
from _common import machine

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
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

        t0 = time.perf_counter()
        table = pj.read_json(src, read_options=pj.ReadOptions(block_size=1 << 24))
        pq.write_table(table, tmp / "pyarrow.parquet", compression="zstd")
        t_pa = time.perf_counter() - t0

        t0 = time.perf_counter()
        stats = run_pipeline({"inputs": [{"path": str(src), "shard_bytes": 32_000_000}], "steps": [], "output": {"dir": str(tmp / "curate")}},
                             workers=args.workers, quiet=True)
        t_cu = time.perf_counter() - t0
        assert stats["written"] == table.num_rows

        print(f"machine: {machine()}")
        print(f"input: {mb:.0f} MB, {table.num_rows} documents")
        print(f"pyarrow read_json + write_table : {mb / t_pa:7.1f} MB/s  ({t_pa:.1f} s, 1 process, Arrow's own threads)")
        print(f"curate run (no steps, {args.workers} workers): {mb / t_cu:7.1f} MB/s  ({t_cu:.1f} s)")
        print(f"ratio curate / pyarrow: {t_pa / t_cu:.2f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
