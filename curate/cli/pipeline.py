"""`curate run`. (It loads no torch: `demo` and `steps`, which do, live in their own modules.)"""
from __future__ import annotations

from pathlib import Path

import click

from curate.basics.errors import CurateError
from curate.dedup.base import id_warnings
from curate.pipeline.config import load_config
from curate.pipeline.runner import make_executor
from curate.pipeline.runner import run_pipeline



def print_summary(stats: dict, out: Path) -> None:
    """The closing lines of a run: counts that add up, and each step's removals."""
    click.echo(f"read {stats['read']} = written {stats['written']} + removed {stats['removed']} + rejected {stats['rejected']}"
               f"{'' if stats['balanced'] else '  (MISMATCH)'}")
    for s in stats["steps"]:
        rules = ", ".join(f"{k} {v}" for k, v in sorted(s["removed_by_rule"].items(), key=lambda kv: -kv[1])[:5])
        click.echo(f"  {s['step']:<20} in {s['in']:>8}  removed {s['removed']:>7}  {s['seconds']:>7.2f}s  {rules}")
    for line in id_warnings(stats):
        click.echo(line, err=True)
    click.echo(f"output: {out}/data  (removed/, rejects/, stats.json, manifest.json beside it)")


def executor_options(f):
    f = click.option("--address", default=None, help="Ray cluster address (with --executor ray); default: start or join a local one.")(f)
    f = click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where shards run: worker processes here, or a Ray cluster.")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")(f)
    return f


def make_run_executor(executor: str, workers: int | None, address: str | None):
    return make_executor(executor, workers, address)


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (overrides output.dir).")
@executor_options
@click.option("--overwrite", is_flag=True, help="Delete the earlier run in the output folder (only what curate wrote there) instead of resuming it.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def run_cmd(config, out, workers, executor, address, overwrite, quiet):
    """Run the pipeline in CONFIG (YAML: inputs, steps, output).

    Rerunning the same command after a crash resumes: finished shards are skipped
    and the output is the same as a clean run's.

    \b
    Example:
      curate run examples/pipeline.yaml --out out/c4 --workers 2
    """
    if not Path(config).is_file():
        raise CurateError(f"config not found: {config}")
    stats = run_pipeline(config, out=out, workers=workers, quiet=quiet,
                         executor=make_run_executor(executor, workers, address), overwrite=overwrite)
    if not quiet:
        print_summary(stats, load_config(config, out).out_dir)
