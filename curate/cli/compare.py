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
@click.option("--method", type=click.Choice(["full", "lora"]), help="Override the config's method: full "
              "fine-tuning, or LoRA adapters on the frozen base.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="(vendor, seed) runs in parallel, one worker process per GPU (or CPU worker).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: each (vendor, seed) run is a Ray task asking for one GPU.")
@click.option("--address", help="Ray cluster address for --executor ray (default: start one here).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def compare_cmd(config, out, seeds, method, workers, executor, address, quiet):
    """Fine-tune the same base model on each vendor's SFT data (equal budgets, paired seeds),
    score a shared held-out set, and report the ranking with 95% intervals.

    Rerunning with the same CONFIG and --out resumes: finished (vendor, seed) runs are kept.
    Runs go one per GPU with --workers N (or as Ray tasks with --executor ray); a memory
    estimate is checked before each run.

    \b
    Example:
      curate demo --out out/demo       # writes out/demo/vendors/compare.yaml and a base model
      curate vendors compare out/demo/vendors/compare.yaml --out out/compare
    """
    cfg = load_config(config)
    if seeds is not None:
        cfg.seeds = seeds
    if method is not None:
        cfg.method = method
    result = run_config(cfg, out, quiet=quiet, workers=workers, executor=executor, address=address)
    follow = result.get("prompt_following")
    for k, name in enumerate(result["loss"]["ranking"], 1):
        v = result["loss"]["arms"][name]
        f = follow["arms"][name] if follow else None
        click.echo(f"{k}. {name}: held-out loss {v['mean']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]"
                   + (f", prompt-following {f['mean']:+.4f} [{f['lo']:+.4f}, {f['hi']:+.4f}]" if f else ""))
    for line in verdict_lines(result):
        click.echo(line)
    click.echo(f"wrote {Path(out or cfg.out or 'out/compare') / 'compare.html'}")
