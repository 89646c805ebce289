"""The pipeline runner: shards in, curated shards out, resumable at shard granularity.

Layout of an output folder::

    OUT/data/part-SSSSS-KKK.parquet   kept documents (S: input shard, K: file within it)
    OUT/removed/stageG-SSSSS.parquet  removed documents with step, reason, extra
    OUT/rejects/SSSSS.jsonl           unreadable input records with source, line, reason
    OUT/stats.json, OUT/manifest.json figures per step; files, checksums, config, inputs
    OUT/_work/                        markers, intermediate shards and global-step state

Steps run in segments separated by global steps (dedup). Each (segment, shard)
task writes its files atomically and then a marker; a rerun skips tasks that
have markers, so a run killed at any moment resumes to the same output.
"""
from __future__ import annotations

import importlib
import inspect
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__
from curate.basics.errors import CurateError
from curate.basics.files import file_sha256, write_json
from curate.io.readers import read_shard
from curate.io.sources import Shard, fingerprint, plan_shards
from curate.io.spool import split_shards
from curate.io.writers import ShardWriter, remove_stale_tmp, removed_table, write_jsonl, write_parquet
from curate.pipeline.config import PipelineConfig, load_config, segments
from curate.pipeline.outdir import prepare_out_dir
from curate.pipeline.executor import Executor, LocalExecutor, ThreadExecutor, report_progress
from curate.pipeline.progress import Progress
from curate.record import Document, TableBatch, from_table, text_bytes, to_table
from curate.report.run_report import write_run_report

_STEPS_CACHE: dict[str, list] = {}  # per worker process: config fingerprint -> set-up steps


def _worker_steps(cfg: PipelineConfig) -> list:
    key = cfg.fingerprint()
    if key not in _STEPS_CACHE:
        steps = cfg.build_steps()
        for s in steps:
            s.setup()
        pa.array([""])  # pyarrow imports pandas on its first pa.array (~0.4 s): part of a worker's set-up, not of its first batch
        _STEPS_CACHE.clear()
        _STEPS_CACHE[key] = steps
    return _STEPS_CACHE[key]


def rule_of(reason: str) -> str:
    """The rule a reason names: its first word, e.g. 'stop_words' in 'stop_words 1 < 2'."""
    return reason.split(None, 1)[0].rstrip(":") if reason.strip() else "?"


class _StepFigures:
    def __init__(self):
        self.seen = 0
        self.kept = 0
        self.removed: Counter[str] = Counter()
        self.removed_by_lang: Counter[str] = Counter()  # meta.lang of removed documents, where known
        self.counters: Counter[str] = Counter()
        self.seconds = 0.0
        self.bytes_in = 0  # UTF-8 bytes of text, for the report's funnel
        self.bytes_kept = 0

    def count_removed(self, removed: list) -> None:
        self.removed.update(rule_of(r.reason) for r in removed)
        self.removed_by_lang.update(r.doc.meta["lang"] for r in removed if r.doc.meta.get("lang"))

    def to_dict(self):
        return {"in": self.seen, "kept": self.kept, "bytes_in": self.bytes_in, "bytes_kept": self.bytes_kept,
                "removed": sum(self.removed.values()), "removed_by_rule": dict(self.removed),
                "removed_by_lang": dict(self.removed_by_lang), "counters": dict(self.counters),
                "seconds": round(self.seconds, 4)}


def _work(out: Path) -> Path:
    return out / "_work"


def _marker(out: Path, stage: int, shard: int) -> Path:
    return _work(out) / "markers" / f"stage{stage}-{shard:05d}.json"


def _stage_docs(out: Path, stage: int, shard: int) -> Path:
    return _work(out) / f"stage{stage}" / f"{shard:05d}.parquet"


def _step_workdir(out: Path, index: int, name: str) -> Path:
    return _work(out) / f"step{index:02d}-{name}"


def make_executor(name: str = "local", workers: int | None = None, address: str | None = None) -> Executor:
    """The executor named ``local`` (worker processes) or ``ray`` (a Ray cluster at ``address``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        try:
            import ray  # noqa: F401  (checked here: ray_executor may already be imported without it)

            from curate.pipeline.ray_executor import RayExecutor
        except ImportError:
            raise CurateError("the ray executor needs Ray: pip install 'curate[ray]'") from None
        return RayExecutor(workers=workers, address=address)
    raise CurateError(f"unknown executor {name!r}; use 'local' or 'ray'")


def run_task(task: dict) -> dict:
    """Run one segment of the pipeline on one shard. Top level so worker processes can import it."""
    t_task = time.perf_counter()
    for name in task["step_modules"]:  # the modules that registered the driver's steps (any layer)
        importlib.import_module(name)
    cfg = load_config(task["config"])
    out, stage, shard = cfg.out_dir, task["stage"], Shard.from_dict(task["shard"])
    steps = _worker_steps(cfg)
    t_setup = time.perf_counter() - t_task
    step_ids, barrier = segments(steps)[stage]
    for i in step_ids:
        steps[i].counters.clear()
    seg = _Segment(steps, step_ids)
    parquet = cfg.out_format == "parquet"
    fast = stage == 0 and shard.format == "jsonl" and shard.spec.fast_jsonl and parquet and barrier is None
    arrow = fast and not step_ids  # nothing to run: Arrow tables go from the reader to the writer
    writer = None if barrier is not None else ShardWriter(out / "data", f"part-{shard.index:05d}", cfg.max_shard_bytes, cfg.out_format)
    survivors: list[Document] = []
    try:
        batches = _read_batches(shard, cfg.batch_size, seg, fast, arrow) if stage == 0 else _applied_batches(cfg, steps, stage, shard, seg)
        for batch in batches:
            n_in = batch.num_rows if arrow else len(batch.docs if isinstance(batch, TableBatch) else batch)
            if arrow:
                writer.write_table(batch)
            elif isinstance(batch, TableBatch):
                writer.write_table(batch.table_of(seg.run(batch.docs, batch)))
            elif writer is not None:
                writer.write(seg.run(batch))
            else:
                survivors.extend(seg.run(batch))
            report_progress(n_in)
        if barrier is not None:
            g = steps[barrier]
            workdir = _step_workdir(out, barrier, g.name)
            workdir.mkdir(parents=True, exist_ok=True)
            g.index(survivors, shard.index, workdir)
            write_parquet(_stage_docs(out, stage, shard.index), to_table(survivors))
            files = []
        else:
            paths = writer.close()
            files = [{"path": str(p.relative_to(out)), "rows": n} for p, n in zip(paths, writer.rows_per_file)]
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    for i in step_ids:
        seg.figures[i].counters.update(steps[i].counters)
    if seg.removed:
        write_parquet(out / "removed" / f"stage{stage}-{shard.index:05d}.parquet", pa.concat_tables(seg.removed).combine_chunks())
    if seg.rejects:
        write_jsonl(out / "rejects" / f"{shard.index:05d}.jsonl", [r.to_dict() for r in seg.rejects])
    result = {
        "stage": stage, "shard": shard.index, "read": seg.read, "rejected": len(seg.rejects),
        "written": sum(f["rows"] for f in files), "files": files,
        "steps": {str(i): f.to_dict() for i, f in seg.figures.items()},
        "seconds": round(time.perf_counter() - t_task, 4), "setup_seconds": round(t_setup, 4),
    }
    write_json(_marker(out, stage, shard.index), result)
    return result


class _Segment:
    """The steps of one segment run batch by batch over one shard, with their figures, the
    removed documents (as Arrow tables) and the input's rejects."""

    def __init__(self, steps: list, step_ids: list[int]):
        self.steps, self.step_ids = steps, step_ids
        self.figures = {i: _StepFigures() for i in step_ids}
        self.removed: list[pa.Table] = []
        self.rejects: list = []
        self.read = 0

    def run(self, docs: list[Document], batch: TableBatch | None = None) -> list[Document]:
        """The documents every step kept; ``batch``: the table they were read as, if any."""
        sizes = batch.text_bytes if batch is not None else text_bytes
        n_bytes = sizes(docs) if self.step_ids else 0
        removed_all = []
        for i in self.step_ids:
            f = self.figures[i]
            t0 = time.perf_counter()
            f.seen += len(docs)
            docs, removed = self.steps[i].process(docs)
            f.seconds += time.perf_counter() - t0
            f.kept += len(docs)
            f.bytes_in += n_bytes
            n_bytes = sizes(docs)
            f.bytes_kept += n_bytes
            f.count_removed(removed)
            removed_all.extend(removed)
        self.add_removed(removed_all, batch)
        return docs

    def add_removed(self, removed: list, batch: TableBatch | None = None) -> None:
        if removed:
            self.removed.append(removed_table(removed, batch))


def _read_batches(shard: Shard, batch_size: int, seg: _Segment, fast: bool, arrow: bool):
    """Stage 0's batches: lists of Documents, or, for fast JSONL into Parquet, TableBatches
    (``arrow``: bare tables, one per block read)."""
    for docs, rejects in read_shard(shard, batch_size, as_table=fast, whole_blocks=arrow):
        seg.read += (docs.num_rows if fast else len(docs)) + len(rejects)
        seg.rejects.extend(rejects)
        yield docs if arrow or not fast else TableBatch(docs)


def _applied_batches(cfg: PipelineConfig, steps: list, stage: int, shard: Shard, seg: _Segment):
    """A later stage's batches: the previous stage's survivors, less what its global step removed."""
    out = cfg.out_dir
    prev_barrier = segments(steps)[stage - 1][1]
    docs = from_table(pq.read_table(_stage_docs(out, stage - 1, shard.index)))
    seg.read = len(docs)
    g = steps[prev_barrier]
    t0 = time.perf_counter()
    kept, removed = g.apply(docs, shard.index, _step_workdir(out, prev_barrier, g.name))
    f = seg.figures.setdefault(prev_barrier, _StepFigures())
    f.seen, f.kept, f.seconds = len(docs), len(kept), time.perf_counter() - t0
    f.bytes_in, f.bytes_kept = text_bytes(docs), text_bytes(kept)
    f.count_removed(removed)
    seg.add_removed(removed)
    for i in range(0, len(kept), cfg.batch_size):
        yield kept[i : i + cfg.batch_size]


def run_pipeline(config: str | Path | dict, out: str | Path | None = None, workers: int | None = None,
                 quiet: bool = False, executor: Executor | str = "local", overwrite: bool = False) -> dict[str, Any]:
    """Run a pipeline config end to end (resuming a previous run into the same folder)
    and return the figures also written to ``OUT/stats.json``."""
    cfg = load_config(config, out)
    out = cfg.out_dir
    shards = plan_shards(cfg.inputs)  # a missing input fails here, before OUT is touched
    prepare_out_dir(cfg, shards, overwrite)
    remove_stale_tmp(out)
    shards = split_shards(shards, _work(out) / "spool")  # big compressed files: zstd pieces, a shard each
    steps = cfg.build_steps()
    step_modules = sorted({type(s).__module__ for s in steps})  # steps a step builds later load by entry point
    segs = segments(steps)
    ex = make_executor(executor, workers) if isinstance(executor, str) else executor
    if _arrow_only(cfg, steps, shards) and isinstance(ex, LocalExecutor) and ex.workers > 1:
        ex = ThreadExecutor(ex.workers)  # pyarrow's work from reader to writer: threads, no worker process to start
    results: dict[tuple[int, int], dict] = {}
    reduce_stats: dict[int, dict] = {}
    t_start = time.perf_counter()
    try:
        for stage, (_, barrier) in enumerate(segs):
            todo = []
            for shard in shards:
                marker = _marker(out, stage, shard.index)
                if marker.exists():
                    results[(stage, shard.index)] = json.loads(marker.read_text())
                else:
                    todo.append({"config": cfg.raw, "stage": stage, "shard": shard.to_dict(),
                                 "step_modules": step_modules})
            label = f"stage {stage + 1}/{len(segs)}" if len(segs) > 1 else "curate"
            with Progress(label, total_shards=len(shards), done_shards=len(shards) - len(todo), quiet=quiet or not todo) as bar:
                for r in ex.map(run_task, todo, bar.docs):
                    results[(stage, r["shard"])] = r
                    bar.shard_done()
            if barrier is not None:
                reduce_stats[barrier] = _reduce(out, steps[barrier], barrier, len(shards), quiet, ex)
    finally:
        ex.close()
    remove_stale_tmp(out)  # every task is done: temporary files left are a dead attempt's (Ray retries)
    stats = _aggregate(cfg, steps, shards, results, reduce_stats, time.perf_counter() - t_start)
    write_json(out / "stats.json", stats)
    write_json(out / "manifest.json", _manifest(cfg, shards, results, len(segs) - 1))
    for stage in range(len(segs) - 1):
        shutil.rmtree(_work(out) / f"stage{stage}", ignore_errors=True)
    shutil.rmtree(_work(out) / "spool", ignore_errors=True)
    write_run_report(out)
    return stats


def _arrow_only(cfg: PipelineConfig, steps: list, shards: list[Shard]) -> bool:
    """True when every task hands the fast JSONL reader's Arrow tables straight to the Parquet
    writer (no step): work that releases the GIL."""
    return not steps and cfg.out_format == "parquet" and all(s.format == "jsonl" and s.spec.fast_jsonl for s in shards)


def _reduce(out: Path, step, index: int, n_shards: int, quiet: bool, ex: Executor) -> dict:
    marker = _work(out) / "markers" / f"reduce{index:02d}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    if not quiet:
        print(f"[{step.name}] combining {n_shards} shard(s)...", flush=True)
    t0 = time.perf_counter()
    # A step whose reduce takes the executor may spread its work over it (dedup clustering on Ray).
    kw = {"executor": ex} if "executor" in inspect.signature(step.reduce).parameters else {}
    figures = step.reduce(_step_workdir(out, index, step.name), n_shards, **kw) or {}
    figures = {"seconds": round(time.perf_counter() - t0, 4), **figures}
    write_json(marker, figures)
    return figures


def _aggregate(cfg, steps, shards, results, reduce_stats, seconds) -> dict:
    per_step = {i: {"step": s.name, "in": 0, "kept": 0, "removed": 0, "removed_by_rule": Counter(),
                    "removed_by_lang": Counter(), "counters": Counter(), "seconds": 0.0, "bytes_in": 0, "bytes_kept": 0}
                for i, s in enumerate(steps)}
    read = rejected = written = 0
    task_seconds = setup_seconds = step_seconds = 0.0
    final_stage = len(segments(steps)) - 1
    for (stage, _), r in sorted(results.items()):
        if "seconds" in r:  # a marker written before tasks were timed has none
            task_seconds += r["seconds"]
            setup_seconds += r["setup_seconds"]
            step_seconds += sum(f["seconds"] for f in r["steps"].values())
        if stage == 0:
            read += r["read"]
            rejected += r["rejected"]
        if stage == final_stage:
            written += r["written"]
        for i, f in r["steps"].items():
            agg = per_step[int(i)]
            for k in ("in", "kept", "removed", "seconds", "bytes_in", "bytes_kept"):
                agg[k] += f.get(k, 0)
            agg["removed_by_rule"].update(f["removed_by_rule"])
            agg["removed_by_lang"].update(f.get("removed_by_lang", {}))
            agg["counters"].update(f["counters"])
    for i, figures in reduce_stats.items():
        per_step[i]["global"] = figures
        per_step[i]["seconds"] += figures.get("seconds", 0.0)
    removed = sum(s["removed"] for s in per_step.values())
    for s in per_step.values():
        s["removed_by_rule"], s["counters"], s["seconds"] = dict(s["removed_by_rule"]), dict(s["counters"]), round(s["seconds"], 3)
        s["removed_by_lang"] = dict(s["removed_by_lang"])
    return {
        "read": read, "written": written, "removed": removed, "rejected": rejected,
        "balanced": read == written + removed + rejected,
        "shards": len(shards), "seconds": round(seconds, 3),
        # The tasks' time summed over workers: setting up steps (once per worker), running them, and the
        # rest (io_seconds): reading, making Documents, writing kept and removed rows, bookkeeping.
        "task_seconds": round(task_seconds, 3), "setup_seconds": round(setup_seconds, 3),
        "io_seconds": round(task_seconds - setup_seconds - step_seconds, 3),
        "steps": [per_step[i] for i in range(len(steps))],
    }


def _manifest(cfg, shards, results, final_stage) -> dict:
    files = []
    for shard in shards:
        for f in results[(final_stage, shard.index)]["files"]:
            path = cfg.out_dir / f["path"]
            files.append({**f, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    inputs = sorted({s.origin or s.path for s in shards})
    return {"tool": "curate", "version": __version__, "config": cfg.raw, "config_fingerprint": cfg.fingerprint(),
            "inputs": [fingerprint(p) for p in inputs], "files": files}
