"""Pipeline configs: YAML (read with ``yaml.safe_load``) or a dict of the same shape.

.. code-block:: yaml

    inputs:                       # files, directories or globs; see InputSpec
      - path: data/*.jsonl.gz
        text_field: text
    steps:                        # run in order; each names a registered step
      - step: gopher_quality
      - step: minhash_dedup
        threshold: 0.8
    output:
      dir: out/run1
      format: parquet             # or jsonl
      max_shard_bytes: 268435456  # start a new file after about this much text
    batch_size: 1000              # documents per batch handed to steps
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.basics.errors import CurateError
from curate.basics.yamlconfig import read_yaml_mapping
from curate.io.sources import InputSpec
from curate.pipeline.step import GlobalStep, Step
from curate.steps import build_step

TOP_KEYS = {"inputs", "steps", "output", "batch_size"}
OUTPUT_KEYS = {"dir", "format", "max_shard_bytes"}


@dataclass
class PipelineConfig:
    inputs: list[InputSpec]
    steps: list[dict[str, Any]]
    out_dir: Path
    out_format: str
    max_shard_bytes: int
    batch_size: int
    raw: dict[str, Any]

    def build_steps(self) -> list[Step]:
        return [build_step(s) for s in self.steps]

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not the output folder)."""
        body = {k: v for k, v in self.raw.items() if k != "output"}
        body["output"] = {k: v for k, v in self.raw.get("output", {}).items() if k != "dir"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config(source: str | Path | dict, out_dir: str | Path | None = None) -> PipelineConfig:
    """Read and validate a pipeline config; ``out_dir`` overrides ``output.dir``.
    Raises CurateError (one line) on any problem."""
    if isinstance(source, dict):
        raw = json.loads(json.dumps(source, default=str))
    else:
        raw = read_yaml_mapping(source)
    if not isinstance(raw, dict):
        raise CurateError("config must be a mapping with 'inputs', 'steps' and 'output'")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise CurateError(f"unknown config key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(TOP_KEYS))}")
    inputs = raw.get("inputs")
    if not inputs:
        raise CurateError("config needs at least one entry under 'inputs'")
    if not isinstance(inputs, list):
        inputs = [inputs]
    specs = [InputSpec.parse(i) for i in inputs]
    steps = raw.get("steps") or []
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise CurateError("'steps' must be a list of mappings, each with a 'step' key")
    output = raw.get("output") or {}
    if not isinstance(output, dict):
        raise CurateError("'output' must be a mapping")
    unknown = set(output) - OUTPUT_KEYS
    if unknown:
        raise CurateError(f"unknown output key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(OUTPUT_KEYS))}")
    if out_dir is not None:
        output["dir"] = str(out_dir)
        raw["output"] = output
    if not output.get("dir"):
        raise CurateError("no output folder: set output.dir in the config or pass --out")
    fmt = output.get("format", "parquet")
    if fmt not in ("parquet", "jsonl"):
        raise CurateError(f"output.format must be 'parquet' or 'jsonl', not {fmt!r}")
    batch_size = raw.get("batch_size", 1000)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CurateError("batch_size must be a positive integer")
    cfg = PipelineConfig(specs, steps, Path(output["dir"]), fmt, int(output.get("max_shard_bytes", 256 << 20)), batch_size, raw)
    for spec in steps:  # build once here so that a bad step or parameter fails before any work
        try:
            build_step(spec)
        except ValueError as e:
            raise CurateError(str(e)) from None
    return cfg


def segments(steps: list[Step]) -> list[tuple[list[int], int | None]]:
    """Split step indices at global steps: [(per-shard step indices, global step index or None)]."""
    out, current = [], []
    for i, step in enumerate(steps):
        if isinstance(step, GlobalStep):
            out.append((current, i))
            current = []
        else:
            current.append(i)
    out.append((current, None))
    return out
