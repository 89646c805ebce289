"""The `curate` command line: a thin click layer over the Python API.

Each package adds its commands through a module-level ``COMMANDS`` list in its
own ``cli.py`` (for example ``curate/dedup/cli.py``); this file mounts them.
User errors print one line and exit with code 2.
"""
from __future__ import annotations

import importlib
import sys

import click

from curate import __version__
from curate.errors import CurateError

CLI_MODULES = [
    "curate.pipeline.cli",
    "curate.dedup.cli",
    "curate.filters.cli",
    "train.cli",
    "train.reward_cli",
    "train.ablate_cli",
    "annotations.cli",
]


class OneLineErrors(click.Group):
    """Print usage errors and CurateError as a single line, exit 2."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
            return rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("curate: aborted", err=True)
            sys.exit(130)
        except click.UsageError as e:
            cmd = e.ctx.command_path if e.ctx else "curate"
            click.echo(f"{cmd}: error: {e.format_message()}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"curate: error: {e.format_message()}", err=True)
            sys.exit(2)
        except CurateError as e:
            click.echo(f"curate: error: {e}", err=True)
            sys.exit(2)


class OneLineSubgroup(click.Group):
    """A nested group (``curate train ...``); errors bubble up to OneLineErrors."""


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def cli():
    """curate: clean, deduplicate, filter and score LLM training data, compare
    annotation vendors, and train Llama 2 models on the result.

    \b
    Example:
      curate demo --out out/demo
      curate run examples/pipeline.yaml --workers 2
    """


def _mount() -> None:
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that package has no commands yet
            raise
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_mount()


def main() -> None:
    cli.main(prog_name="curate")
