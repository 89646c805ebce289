"""`curate demo`: the whole story on the bundled sample."""
from __future__ import annotations

import json
from pathlib import Path

import click

from curate.demo import run_demo


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="out/demo", show_default=True, help="Output folder.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out, workers, quiet):
    """Run the whole story on the bundled sample in examples/data: clean and
    deduplicate pretraining text, and write curated shards, stats and a report.

    \b
    Example:
      curate demo --out out/demo
    """
    summary = run_demo(Path(out), workers=workers, quiet=quiet)
    click.echo(json.dumps(summary, indent=2))
