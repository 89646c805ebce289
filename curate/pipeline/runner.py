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
from curate.io.spool import split_shards
from curate.io.writers import ShardWriter, remove_stale_tmp, removed_table, write_jsonl, write_parquet
from curate.pipeline.config import PipelineConfig, load_config, segments
from curate.pipeline.executor import Executor, LocalExecutor, ThreadExecutor, report_progress
from curate.pipeline.progress import Progress
from curate.record import Document, from_table, text_bytes, to_table
from curate.report.run_report import write_run_report

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
    # Nothing to run on this segment's documents: Arrow tables go from the reader to the writer.
    arrow = stage == 0 and not step_ids and barrier is None and cfg.out_format == "parquet"

    def batches():
        nonlocal read
        if stage == 0:
            for docs, rej in read_shard(shard, cfg.batch_size, as_table=arrow):
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
        f.bytes_in, f.bytes_kept = text_bytes(docs), text_bytes(kept)
        f.count_removed(removed)
        removed_all.extend(removed)
        for i in range(0, len(kept), cfg.batch_size):
            yield kept[i : i + cfg.batch_size]

    writer = None if barrier is not None else ShardWriter(out / "data", f"part-{shard.index:05d}", cfg.max_shard_bytes, cfg.out_format)
    survivors: list[Document] = []
    try:
        for docs in batches():
            n_in, n_bytes = len(docs), text_bytes(docs) if step_ids else 0
            for i in step_ids:
                t0 = time.perf_counter()
                figures[i].seen += len(docs)
                docs, removed = steps[i].process(docs)
                figures[i].seconds += time.perf_counter() - t0
                figures[i].kept += len(docs)
                figures[i].bytes_in += n_bytes
                n_bytes = text_bytes(docs)
                figures[i].bytes_kept += n_bytes
                figures[i].count_removed(removed)
                removed_all.extend(removed)
            if arrow:
                writer.write_table(docs)
            elif writer is not None:
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


# Everything a run writes at the top of OUT: all that --overwrite may delete (report.html: the run report).
RUN_OUTPUTS = ("_work", "data", "removed", "rejects", "stats.json", "manifest.json", "report.html")


def _check_out_dir(cfg: PipelineConfig, shards: list[Shard], overwrite: bool) -> None:
    """Make OUT ready for this run (resuming, or emptied by ``overwrite``) and stamp it.
    One-line CurateErrors: OUT is a file, holds or lies inside an input, holds another
    config's run or files curate did not write, or its inputs changed since it began."""
    out = cfg.out_dir
    stamp = _work(out) / "config.json"
    if out.exists() and not out.is_dir():
        raise CurateError(f"output folder {out} is a file")
    _refuse_input_overlap(out, cfg, shards)
    if overwrite and out.exists():
        stray = sorted(p.name for p in out.iterdir() if p.name not in RUN_OUTPUTS)
        if stray:
            raise CurateError(f"--overwrite: {out} holds files curate did not write ({', '.join(stray[:3])}); "
                              "not deleting them: use another --out")
        for name in RUN_OUTPUTS:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    inputs = input_states(shards)
    if stamp.exists():
        old = json.loads(stamp.read_text())
        if old.get("fingerprint") != cfg.fingerprint():
            raise CurateError(f"{out} holds a run with a different config; use another --out or --overwrite")
        changed = changed_input(old.get("inputs"), inputs)
        if changed:
            raise CurateError(f"input {changed} changed since the run in {out} began; use --overwrite to redo it")
    elif out.exists() and any(out.iterdir()):
        raise CurateError(f"{out} is not empty and holds no curate run; use another --out or --overwrite")
    try:
        write_json(stamp, {"fingerprint": cfg.fingerprint(), "config": cfg.raw, "inputs": inputs})
    except OSError as e:
        raise CurateError(f"cannot write to output folder {out}: {e.strerror or e}") from None


def _refuse_input_overlap(out: Path, cfg: PipelineConfig, shards: list[Shard]) -> None:
    """OUT must neither hold an input (an --overwrite would delete it) nor lie inside an
    input folder (a rerun would read its own output)."""
    out_abs = out.resolve()
    for path in sorted({s.path for s in shards}):
        p = Path(path).resolve()
        if not p.exists():  # e.g. a Hugging Face hub dataset named by its id
            continue
        if out_abs == p or out_abs in p.parents:
            raise CurateError(f"output folder {out} holds the input {path}; use another --out")
        if p.is_dir() and p in out_abs.parents:
            raise CurateError(f"output folder {out} is inside the input folder {path}; use another --out")
    for spec in cfg.inputs:
        p = Path(spec.path).resolve()
        if p.is_dir() and (p == out_abs or p in out_abs.parents):
            raise CurateError(f"output folder {out} is inside the input folder {spec.path}; use another --out")


def input_states(shards: list[Shard]) -> dict[str, list[int]]:
    """``{path: [bytes, mtime_ns]}`` of every input file (folders: totals over their files),
    recorded when a run begins so that a resume notices a changed input."""
    states = {}
    for path in sorted({s.path for s in shards}):
        p = Path(path)
        if not p.exists():  # a hub dataset: nothing local to compare
            continue
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        stats = [f.stat() for f in files]
        states[path] = [sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)]
    return states


def changed_input(old: dict | None, new: dict) -> str | None:
    """The first input path that was added, removed or modified between two ``input_states``."""
    if old is None:  # a run stamped before inputs were recorded
        return None
    for path in sorted(set(old) | set(new)):
        if old.get(path) != new.get(path):
            return path
    return None


def run_pipeline(config: str | Path | dict, out: str | Path | None = None, workers: int | None = None,
                 quiet: bool = False, executor: Executor | str = "local", overwrite: bool = False) -> dict[str, Any]:
    """Run a pipeline config end to end (resuming a previous run into the same folder)
    and return the figures also written to ``OUT/stats.json``."""
    cfg = load_config(config, out)
    out = cfg.out_dir
    shards = plan_shards(cfg.inputs)  # a missing input fails here, before OUT is touched
    _check_out_dir(cfg, shards, overwrite)
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
    final_stage = len(segments(steps)) - 1
    for (stage, _), r in sorted(results.items()):
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
