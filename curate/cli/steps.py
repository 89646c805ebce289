"""`curate steps`: every step a config can name, from every layer."""
from __future__ import annotations

import click

from curate.pipeline.step import GlobalStep
from experiments.steps import load_all_steps


@click.command("steps")
def steps_cmd():
    """List the steps a config can name, with the first line of each one's help.

    \b
    Example:
      curate steps
    """
    registry = load_all_steps()
    for name in sorted(registry):
        cls = registry[name]
        kind = "global" if issubclass(cls, GlobalStep) else "batch"
        doc = (cls.__doc__ or "").strip().splitlines()
        click.echo(f"{name:<22} {kind:<6} {doc[0] if doc else ''}")
