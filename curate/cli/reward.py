"""Commands: ``curate train rm CONFIG`` (``rm_cmd``, mounted under ``curate train``) and
``curate sample CONFIG`` (``sample_cmd``, top level through ``curate.cli.COMMANDS``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from annotations.formats import read_file
from curate.basics.errors import CurateError
from curate.basics.files import write_json
from experiments.sample import load_sample_config, run_sampling
from train.config import TrainConfig, load_config
from train.reward import default_hyperparams, train_reward_model
from train.tokenizer import Tokenizer


def _default_hyperparams() -> TrainConfig:
    return default_hyperparams()


@dataclass
class RewardConfig:
    """``curate train rm`` settings. ``model``: a named config / LlamaConfig dict for a fresh
    backbone, ignored when ``init_from`` (a checkpoint or Hugging Face directory) is given.
    ``epochs`` (default 1, the paper's) sets ``train.steps``; ``warmup_ratio`` (3%) sets
    ``train.warmup_steps``; the cosine floor is ``train.min_lr_ratio`` (10%)."""

    run_dir: str
    tokenizer: str
    data: str                            # preference pairs, any format annotations reads
    init_from: str | None = None
    model: Any = "tiny"
    val_data: str | None = None
    val_fraction: float = 0.1
    template: str = "llama2"
    max_len: int = 512                   # tokens per (prompt, answer) row
    margin: str = "none"                 # none | small | large
    epochs: float | None = 1.0           # None: use train.steps as given
    warmup_ratio: float = 0.03
    seed: int = 0
    resume: bool = True
    train: TrainConfig = field(default_factory=_default_hyperparams)


def train_from_config(cfg) -> tuple:
    """``curate train rm CONFIG``: read the pairs and tokenizer the config names, train, and write
    ``run_dir/model`` (reward model + tokenizer) and ``run_dir/report.json``."""
    cfg = load_config(cfg, RewardConfig)
    for name in ("tokenizer", "data", "val_data", "init_from"):
        value = getattr(cfg, name)
        if value is not None and not Path(value).exists():
            raise CurateError(f"{name}: no such file or directory: {value}")
    tokenizer = Tokenizer.from_file(cfg.tokenizer)

    def read(path):
        records, rejects = read_file(path, fmt="preference")
        return records, [(f"{r.source}:{r.line}", f"{r.check}: {r.reason}") for r in rejects]

    pairs, rejected = read(cfg.data)
    val_pairs, val_rejected = read(cfg.val_data) if cfg.val_data else (None, [])
    rm, result = train_reward_model(
        pairs, tokenizer, cfg.init_from or cfg.model, val_pairs, val_fraction=cfg.val_fraction,
        template=cfg.template, max_len=cfg.max_len, margin=cfg.margin, epochs=cfg.epochs,
        warmup_ratio=cfg.warmup_ratio, hyperparams=cfg.train, seed=cfg.seed, run_dir=cfg.run_dir,
        resume=cfg.resume, quiet=False)
    result.skipped = rejected + val_rejected + result.skipped
    rm.save(Path(cfg.run_dir) / "model", tokenizer_path=cfg.tokenizer)
    report = {"config": asdict(cfg), **asdict(result)}
    write_json(Path(cfg.run_dir) / "report.json", report, indent=1, default=str)
    return rm, result


@click.command("rm")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def rm_cmd(config):
    """Train a reward model on preference pairs (Llama 2's margin ranking loss).

    Writes RUN_DIR/model (weights, reward.json, tokenizer) and RUN_DIR/report.json
    with held-out accuracy overall and by rating.

    \b
    Example:
      curate train rm examples/train/rm.yaml
    """
    rm, result = train_from_config(config)
    acc = result.accuracy
    click.echo(f"trained {result.steps} steps on {result.n_train} pairs ({len(result.skipped)} skipped); "
               f"held-out accuracy {acc['accuracy']:.3f} on {acc['n']} pairs")
    for rating, r in acc["by_rating"].items():
        click.echo(f"  {rating}: {r['accuracy']:.3f} ({r['n']})")


@click.command("sample")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--select-only", is_flag=True,
              help="Reselect from OUT_DIR/candidates.jsonl (and the pool) without generating.")
def sample_cmd(config, select_only):
    """Rejection sampling: K answers per prompt from each policy, scored by a reward
    model; the best per prompt become an SFT dataset (OUT_DIR/selected.jsonl).

    Also writes every candidate with its reward (OUT_DIR/candidates.jsonl) and a report
    of max and median reward against K per model (report.html, reward_vs_k.png).

    \b
    Example:
      curate sample examples/train/sample.yaml
    """
    cfg = load_sample_config(config)
    if select_only:
        if not (Path(cfg.out_dir) / "candidates.jsonl").is_file():
            raise CurateError(f"--select-only: no {Path(cfg.out_dir) / 'candidates.jsonl'}")
        cfg.reuse = True
    report = run_sampling(cfg, log=click.echo)
    click.echo(f"kept {report['kept']} answers for {report['prompts']} prompts; "
               f"wrote {Path(cfg.out_dir) / 'selected.jsonl'}")
