"""``curate vendors compare CONFIG``: which vendor's data trains the better model."""
from __future__ import annotations

from pathlib import Path

import click

from experiments.compare.run import load_config, run_config
from experiments.report import verdict_lines


@click.command("compare")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (resumable) for compare.json and compare.html [default: the config's out, "
                   "else out/compare].")
@click.option("--seeds", type=int, help="Override the config's number of paired seeds.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def compare_cmd(config, out, seeds, quiet):
    """Fine-tune the same base model on each vendor's SFT data (equal budgets, paired seeds),
    score a shared held-out set, and report the ranking with 95% intervals.

    Rerunning with the same CONFIG and --out resumes: finished (vendor, seed) runs are kept.

    \b
    Example:
      curate demo --out out/demo       # writes out/demo/vendors/compare.yaml and a base model
      curate vendors compare out/demo/vendors/compare.yaml --out out/compare
    """
    cfg = load_config(config)
    if seeds is not None:
        cfg.seeds = seeds
    result = run_config(cfg, out, quiet=quiet)
    for k, name in enumerate(result["loss"]["ranking"], 1):
        v = result["loss"]["arms"][name]
        click.echo(f"{k}. {name}: held-out loss {v['mean']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]")
    for line in verdict_lines(result):
        click.echo(line)
    click.echo(f"wrote {Path(out or cfg.out or 'out/compare') / 'compare.html'}")
