"""Run configurations: YAML files read with ``yaml.safe_load`` into dataclasses.

Every key is checked: an unknown or misspelt key is a one-line error naming it
and the keys that are allowed. ``train:`` holds the optimisation settings that
pretraining, SFT and reward-model training share.
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from curate.basics.errors import CurateError
from curate.basics.yamlconfig import read_yaml_mapping


@dataclass
class TrainConfig:
    """Optimisation and loop settings. ``batch_size`` is sequences per micro-batch per
    rank; the global batch is ``batch_size * grad_accum * world_size`` sequences."""

    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    seq_len: int = 512
    lr: float = 3e-4             # peak learning rate
    min_lr_ratio: float = 0.1    # cosine decays to lr * min_lr_ratio at `steps`
    warmup_steps: int = 100      # linear warmup from lr / warmup_steps
    weight_decay: float = 0.1    # on matrices only, not on norms
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-5
    grad_clip: float = 1.0       # max global gradient norm; 0 disables
    eval_every: int = 100        # steps between held-out evaluations; 0 = only at the end
    eval_batches: int = 20       # held-out batches per evaluation
    log_every: int = 10
    ckpt_every: int = 500        # steps between checkpoints; 0 = only at the end
    keep_checkpoints: int = 2
    compile: bool = False        # torch.compile each transformer block
    activation_checkpointing: bool = False
    dtype: str = "auto"          # auto (bf16 autocast on GPU, fp32 on CPU) | bf16 | fp32
    device: str = "auto"         # auto | cpu | cuda
    distributed: str = "ddp"     # ddp | fsdp (used under torchrun)


@dataclass
class PretrainConfig:
    run_dir: str
    shards: str                          # token shard directory from `curate shards tokenize`
    model: Any = "tiny"                  # a named config or a dict of LlamaConfig fields
    seed: int = 0                        # model init and data order
    val_fraction: float = 0.01
    init_from: str | None = None         # checkpoint directory to start the weights from
    resume: bool = True                  # continue from the run's latest checkpoint
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class SFTConfig:
    run_dir: str | None
    init_from: str                       # checkpoint or Hugging Face directory
    tokenizer: str                       # tokenizer.model or tokenizer.json
    data: str                            # .jsonl / .json / .parquet of conversations
    val_data: str | None = None          # held-out conversations; else val_fraction of data
    val_fraction: float = 0.05
    template: str = "llama2"             # llama2 | plain
    pack: bool = True                    # pack several examples per row (block-diagonal attention)
    seed: int = 0
    resume: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=200, lr=2e-5, warmup_steps=10, eval_every=50, ckpt_every=0))


def build_config(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise CurateError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CurateError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(fields)})")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CurateError(f"{where}: missing required key {missing[0]!r}")
    kwargs = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            value = build_config(kind, value or {}, f"{where}.{name}")
        else:
            value = _check(kind, value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def _check(kind, value, where: str):
    options = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    if kind is Any or value is None and type(None) in options:
        return value
    for t in options:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t in (int, str, bool) and type(value) is t:
            return value
    names = "/".join(getattr(t, "__name__", str(t)) for t in options)
    raise CurateError(f"{where}: expected {names}, got {value!r}")


def read_config_source(source) -> tuple[dict, str]:
    """A config mapping from a YAML path (read with ``yaml.safe_load``) or a dict, and a
    name for it in error messages. Missing files and bad YAML are one-line CurateErrors."""
    if not isinstance(source, (str, Path)):
        return dict(source or {}), "config"
    data = read_yaml_mapping(source)
    return data, str(source)


def load_config(source, cls):
    """A ``cls`` (PretrainConfig or SFTConfig) from a YAML path, a dict, or itself.
    A ``train:`` section overrides only the keys it names."""
    if isinstance(source, cls):
        return source
    source, where = read_config_source(source)
    train = source.pop("train", None) or {}
    cfg = build_config(cls, source, where)
    base = dataclasses.asdict(cfg.train)
    unknown = sorted(set(train) - set(base)) if isinstance(train, dict) else []
    if unknown:
        raise CurateError(f"{where}.train: unknown key {unknown[0]!r} (allowed: {', '.join(base)})")
    cfg.train = build_config(TrainConfig, {**base, **train}, f"{where}.train")
    return cfg
