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

import pyarrow.parquet as pq

from curate import __version__
from curate.basics.errors import CurateError
from curate.basics.files import file_sha256, write_json
from curate.io.readers import read_shard
from curate.io.sources import Shard, fingerprint, plan_shards
from curate.io.writers import ShardWriter, remove_stale_tmp, removed_table, write_jsonl, write_parquet
from curate.pipeline.config import PipelineConfig, load_config, segments
from curate.pipeline.executor import Executor, LocalExecutor, report_progress
from curate.pipeline.progress import Progress
from curate.pipeline.step import REGISTRY
from curate.record import Document, from_table, to_table

_STEPS_CACHE: dict[str, list] = {}  # per worker process: config fingerprint -> set-up steps


def _worker_steps(cfg: PipelineConfig) -> list:
    key = cfg.fingerprint()
    if key not in _STEPS_CACHE:
        steps = cfg.build_steps()
        for s in steps:
            s.setup()
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
        self.counters: Counter[str] = Counter()
        self.seconds = 0.0

    def to_dict(self):
        return {"in": self.seen, "kept": self.kept, "removed": sum(self.removed.values()),
                "removed_by_rule": dict(self.removed), "counters": dict(self.counters), "seconds": round(self.seconds, 4)}


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
            from curate.pipeline.ray_executor import RayExecutor
        except ImportError:
            raise CurateError("the ray executor needs Ray: pip install 'curate[ray]'") from None
        return RayExecutor(workers=workers, address=address)
    raise CurateError(f"unknown executor {name!r}; use 'local' or 'ray'")


def run_task(task: dict) -> dict:
    """Run one segment of the pipeline on one shard. Top level so worker processes can import it."""
    for name in task["step_modules"]:  # the modules that registered the driver's steps (any layer)
        importlib.import_module(name)
    cfg = load_config(task["config"])
    out, stage, shard = cfg.out_dir, task["stage"], Shard.from_dict(task["shard"])
    steps = _worker_steps(cfg)
    step_ids, barrier = segments(steps)[stage]
    figures = {i: _StepFigures() for i in step_ids}
    for i in step_ids:
        steps[i].counters.clear()
    removed_all, rejects = [], []
    read = 0

    def batches():
        nonlocal read
        if stage == 0:
            for docs, rej in read_shard(shard, cfg.batch_size):
                read += len(docs) + len(rej)
                rejects.extend(rej)
                yield docs
            return
        prev_barrier = segments(steps)[stage - 1][1]
        docs = from_table(pq.read_table(_stage_docs(out, stage - 1, shard.index)))
        read = len(docs)
        g = steps[prev_barrier]
        t0 = time.perf_counter()
        kept, removed = g.apply(docs, shard.index, _step_workdir(out, prev_barrier, g.name))
        f = figures.setdefault(prev_barrier, _StepFigures())
        f.seen, f.kept, f.seconds = len(docs), len(kept), time.perf_counter() - t0
        f.removed.update(rule_of(r.reason) for r in removed)
        removed_all.extend(removed)
        for i in range(0, len(kept), cfg.batch_size):
            yield kept[i : i + cfg.batch_size]

    writer = None if barrier is not None else ShardWriter(out / "data", f"part-{shard.index:05d}", cfg.max_shard_bytes, cfg.out_format)
    survivors: list[Document] = []
    try:
        for docs in batches():
            n_in = len(docs)
            for i in step_ids:
                t0 = time.perf_counter()
                figures[i].seen += len(docs)
                docs, removed = steps[i].process(docs)
                figures[i].seconds += time.perf_counter() - t0
                figures[i].kept += len(docs)
                figures[i].removed.update(rule_of(r.reason) for r in removed)
                removed_all.extend(removed)
            if writer is not None:
                writer.write(docs)
            else:
                survivors.extend(docs)
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
        figures[i].counters.update(steps[i].counters)
    if removed_all:
        write_parquet(out / "removed" / f"stage{stage}-{shard.index:05d}.parquet", removed_table(removed_all))
    if rejects:
        write_jsonl(out / "rejects" / f"{shard.index:05d}.jsonl", [r.to_dict() for r in rejects])
    result = {
        "stage": stage, "shard": shard.index, "read": read, "rejected": len(rejects),
        "written": sum(f["rows"] for f in files), "files": files,
        "steps": {str(i): f.to_dict() for i, f in figures.items()},
    }
    write_json(_marker(out, stage, shard.index), result)
    return result


def _check_out_dir(cfg: PipelineConfig, overwrite: bool) -> None:
    out = cfg.out_dir
    stamp = _work(out) / "config.json"
    if overwrite and out.exists():
        shutil.rmtree(out)
    if stamp.exists():
        if json.loads(stamp.read_text()).get("fingerprint") != cfg.fingerprint():
            raise CurateError(f"{out} holds a run with a different config; use another --out or --overwrite")
    elif out.exists() and any(out.iterdir()):
        raise CurateError(f"{out} is not empty and holds no curate run; use another --out or --overwrite")
    write_json(stamp, {"fingerprint": cfg.fingerprint(), "config": cfg.raw})


def run_pipeline(config: str | Path | dict, out: str | Path | None = None, workers: int | None = None,
                 quiet: bool = False, executor: Executor | str = "local", overwrite: bool = False) -> dict[str, Any]:
    """Run a pipeline config end to end (resuming a previous run into the same folder)
    and return the figures also written to ``OUT/stats.json``."""
    cfg = load_config(config, out)
    out = cfg.out_dir
    _check_out_dir(cfg, overwrite)
    remove_stale_tmp(out)
    shards = plan_shards(cfg.inputs)
    steps = cfg.build_steps()
    # every module that registered a step here, so a worker's registry is the driver's (select builds embed)
    step_modules = sorted({cls.__module__ for cls in REGISTRY.values()} | {type(s).__module__ for s in steps})
    segs = segments(steps)
    ex = make_executor(executor, workers) if isinstance(executor, str) else executor
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
    return stats


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
    per_step = {i: {"step": s.name, "in": 0, "kept": 0, "removed": 0, "removed_by_rule": Counter(), "counters": Counter(), "seconds": 0.0}
                for i, s in enumerate(steps)}
    read = rejected = written = 0
    final_stage = len(segments(steps)) - 1
    for (stage, _), r in sorted(results.items()):
        if stage == 0:
            read += r["read"]
            rejected += r["rejected"]
        if stage == final_stage:
            written += r["written"]
        for i, f in r["steps"].items():
            agg = per_step[int(i)]
            for k in ("in", "kept", "removed", "seconds"):
                agg[k] += f[k]
            agg["removed_by_rule"].update(f["removed_by_rule"])
            agg["counters"].update(f["counters"])
    for i, figures in reduce_stats.items():
        per_step[i]["global"] = figures
        per_step[i]["seconds"] += figures.get("seconds", 0.0)
    removed = sum(s["removed"] for s in per_step.values())
    for s in per_step.values():
        s["removed_by_rule"], s["counters"], s["seconds"] = dict(s["removed_by_rule"]), dict(s["counters"]), round(s["seconds"], 3)
    return {
        "read": read, "written": written, "removed": removed, "rejected": rejected,
        "balanced": read == written + removed + rejected,
        "shards": len(shards), "seconds": round(seconds, 3),
        "steps": [per_step[i] for i in range(len(steps))],
    }


def _manifest(cfg, shards, results, final_stage) -> dict:
    files = []
    for shard in shards:
        for f in results[(final_stage, shard.index)]["files"]:
            path = cfg.out_dir / f["path"]
            files.append({**f, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    inputs = sorted({s.path for s in shards})
    return {"tool": "curate", "version": __version__, "config": cfg.raw, "config_fingerprint": cfg.fingerprint(),
            "inputs": [fingerprint(p) for p in inputs], "files": files}
