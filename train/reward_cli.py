"""Commands: ``curate train rm CONFIG`` (``rm_cmd``, mounted under ``curate train``) and
``curate sample CONFIG`` (``sample_cmd``, top level through ``COMMANDS``)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("rm")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def rm_cmd(config):
    """Train a reward model on preference pairs (Llama 2's margin ranking loss).

    Writes RUN_DIR/model (weights, reward.json, tokenizer) and RUN_DIR/report.json
    with held-out accuracy overall and by rating.

    \b
    Example:
      curate train rm examples/reward.yaml
    """
    from train.reward import train_from_config

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
      curate sample examples/sample.yaml
    """
    from train.sample import load_sample_config, run_sampling

    cfg = load_sample_config(config)
    if select_only:
        if not (Path(cfg.out_dir) / "candidates.jsonl").is_file():
            from curate.errors import CurateError

            raise CurateError(f"--select-only: no {Path(cfg.out_dir) / 'candidates.jsonl'}")
        cfg.reuse = True
    report = run_sampling(cfg, log=click.echo)
    click.echo(f"kept {report['kept']} answers for {report['prompts']} prompts; "
               f"wrote {Path(cfg.out_dir) / 'selected.jsonl'}")


COMMANDS = [sample_cmd]
