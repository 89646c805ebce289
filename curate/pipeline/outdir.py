"""The output folder of a run: made ready for it (resumed, or emptied by ``--overwrite``) and
stamped with the config and the inputs' sizes and times, so that a resume with another config
or changed inputs is refused in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from curate.basics.errors import CurateError
from curate.basics.files import write_json
from curate.io.sources import Shard
from curate.pipeline.config import PipelineConfig


# Everything a run writes at the top of OUT: all that --overwrite may delete (report.html: the run report).
RUN_OUTPUTS = ("_work", "data", "removed", "rejects", "stats.json", "manifest.json", "report.html")


def prepare_out_dir(cfg: PipelineConfig, shards: list[Shard], overwrite: bool) -> None:
    """Make OUT ready for this run (resuming, or emptied by ``overwrite``) and stamp it.
    One-line CurateErrors: OUT is a file, holds or lies inside an input, holds another
    config's run or files curate did not write, or its inputs changed since it began."""
    out = cfg.out_dir
    stamp = out / "_work" / "config.json"
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
