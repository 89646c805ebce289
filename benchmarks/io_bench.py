"""JSONL -> Parquet throughput: `curate run` against plain pyarrow (`pyarrow.json.read_json`
+ `pq.write_table`, zstd) on the same file, measured in the same run, two ways:

- as a command each, in a fresh process (interpreter, imports and first memory allocations
  included on both sides: what a user timing the two would see); best of --repeat;
- in steady state (the run with filters): pyarrow called again in this process once its
  imports, memory pool and the page cache are warm (``pyarrow warm``), against the part of
  curate's run that is reading and writing as its worker processes timed it (stats.json
  ``io_seconds``: each task's seconds less its set-up and its steps' seconds, summed over
  tasks, divided by the workers). Not for the run with no steps: its shards run on threads
  that share pyarrow's thread pool, so their times overlap.

Runs measured:
- no steps (the fast reader hands Arrow tables straight to the writer);
- the four heuristic filters (gopher_quality, gopher_repetition, c4_quality, fineweb_quality),
  counting only input and output: the command's wall time less the filters' seconds divided by
  the workers (which keeps worker start-up, the report and any idle worker at the end), and the
  steady-state part above;
- no steps with the fast reader off (line by line), for reference.

    python benchmarks/io_bench.py [--mb 200] [--workers 2] [--repeat 3] [--no-filters]

Input: the real C4 sample (../shared/data/pretrain/c4_demo.jsonl, or the bundled copy in
examples/data) repeated to about --mb megabytes, cut into 4 shards per worker so that the
workers finish together.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq

from _common import machine

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-c", "import sys; from curate.cli import main; sys.argv[0] = 'curate'; sys.exit(main())"]  # the `curate` command
PYARROW = ("import sys, pyarrow.json as pj, pyarrow.parquet as pq; "
           "pq.write_table(pj.read_json(sys.argv[1], read_options=pj.ReadOptions(block_size=1 << 24)), sys.argv[2], compression='zstd')")
FILTERS = ("gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def command(*args: str) -> None:
    subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL)


def curate_run(tmp: Path, src: Path, name: str, steps: list, workers: int, shard_bytes: int, fast: bool = True) -> tuple[float, dict]:
    """Wall seconds of ``curate run`` (a fresh process) and its stats.json."""
    config = tmp / f"{name}.yaml"  # JSON is YAML
    config.write_text(json.dumps({"inputs": [{"path": str(src), "shard_bytes": shard_bytes, "fast_jsonl": fast}],
                                  "steps": steps, "output": {"dir": str(tmp / name)}}))
    wall = timed(lambda: command(*CURATE, "run", str(config), "--workers", str(workers), "--quiet", "--overwrite"))
    return wall, json.loads((tmp / name / "stats.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=positive, default=200)
    ap.add_argument("--workers", type=positive, default=os.cpu_count())
    ap.add_argument("--repeat", type=positive, default=3, help="best of this many runs, for the runs without filters")
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
        rows = pq.read_metadata(_pyarrow_file(src, tmp)).num_rows  # also puts the file in the page cache
        shard_bytes = src.stat().st_size // (4 * args.workers) + 1
        out = tmp / "pyarrow.parquet"

        pa_cold = min(timed(lambda: command(sys.executable, "-c", PYARROW, str(src), str(out))) for _ in range(args.repeat))
        pa_warm = min(timed(lambda: pq.write_table(pj.read_json(src, read_options=pj.ReadOptions(block_size=1 << 24)), out,
                                                   compression="zstd")) for _ in range(args.repeat + 1))
        none = [curate_run(tmp, src, "none", [], args.workers, shard_bytes) for _ in range(args.repeat)]
        cu_cold = min(wall for wall, _ in none)
        assert all(stats["read"] == rows and stats["balanced"] for _, stats in none)

        print(f"machine: {machine()}")
        print(f"input: {mb:.0f} MB, {rows} documents; {args.workers} workers; best of {args.repeat} unless said")
        print(f"pyarrow read_json + write_table, a fresh process: {mb / pa_cold:6.1f} MB/s  ({pa_cold:.2f} s)")
        print(f"pyarrow read_json + write_table, warm           : {mb / pa_warm:6.1f} MB/s  ({pa_warm:.2f} s)")
        print(f"curate run, no steps, a fresh process           : {mb / cu_cold:6.1f} MB/s  ({cu_cold:.2f} s)   "
              f"ratio to pyarrow (fresh process) {pa_cold / cu_cold:.2f}")
        if not args.no_filters:
            wall, stats = curate_run(tmp, src, "filters", [{"step": s} for s in FILTERS], args.workers, shard_bytes)
            step_s = sum(s["seconds"] for s in stats["steps"])
            whole, steady = wall - step_s / args.workers, stats["io_seconds"] / args.workers
            print(f"curate run, 4 heuristic filters (once): {wall:.1f} s, filters {step_s:.1f} s over {args.workers} workers, "
                  f"set-up {stats['setup_seconds']:.1f} s over the workers")
            print(f"  input+output of the command (start-up, report, idle included): {whole:.2f} s = {mb / whole:.1f} MB/s   "
                  f"ratio to pyarrow (fresh process) {pa_cold / whole:.2f}")
            print(f"  input+output as the workers timed it: {steady:.2f} s = {mb / steady:.1f} MB/s   "
                  f"ratio to pyarrow (warm) {pa_warm / steady:.2f}")
        slow, _ = curate_run(tmp, src, "slow", [], args.workers, shard_bytes, fast=False)
        print(f"curate run, no steps, fast reader off (once)    : {mb / slow:6.1f} MB/s  ({slow:.2f} s)   "
              f"ratio to pyarrow (fresh process) {pa_cold / slow:.2f}")
    finally:
        shutil.rmtree(tmp)


def _pyarrow_file(src: Path, tmp: Path) -> Path:
    """Parquet of ``src`` written once by pyarrow (its row count checks curate's)."""
    out = tmp / "check.parquet"
    command(sys.executable, "-c", PYARROW, str(src), str(out))
    return out


if __name__ == "__main__":
    main()
