"""The `curate` command line: a thin click layer over the Python API, the top layer.

One module per command area in this package (``pipeline``, ``demo``, ``steps``, ``dedup``, ``filters``, ``report``, ``train``,
``reward``, ``ablate``, ``vendors``, ``compare``). :data:`COMMANDS` names each top-level command,
the module defining it and its one-line help; a command's module is imported only when that
command runs, so ``curate --version`` and ``curate --help`` load no torch, pyarrow or matplotlib.
User errors print one line and exit with code 2.
"""
from __future__ import annotations

import importlib
import sys

import click

from curate import __version__
from curate.basics.errors import CurateError

# name -> (module, attribute, one-line help shown by `curate --help`)
COMMANDS = {
    "run": ("curate.cli.pipeline", "run_cmd", "Run a pipeline config: read, filter, dedup, write shards."),
    "demo": ("curate.cli.demo", "demo_cmd", "The whole story on the bundled sample (~3 min on 2 CPU cores)."),
    "steps": ("curate.cli.steps", "steps_cmd", "List the pipeline steps a config can name."),
    "dedup": ("curate.cli.dedup", "dedup", "Exact + MinHash dedup of input files (and decontamination)."),
    "filter": ("curate.cli.filters", "filter_cmd", "Apply quality filters (Gopher, C4, FineWeb, ...) to input files."),
    "score": ("curate.cli.filters", "score_cmd", "Write language, quality or perplexity scores into meta."),
    "classifier": ("curate.cli.filters", "classifier_group", "Train a fastText quality classifier."),
    "models": ("curate.cli.filters", "models_group", "Fetch or list the fastText models curate uses."),
    "inspect": ("curate.cli.filters", "inspect_cmd", "Show a sample of what each rule removed, and why."),
    "report": ("curate.cli.report", "report_cmd", "Redraw OUT/report.html, the one-page report of a run."),
    "diff": ("curate.cli.report", "diff_cmd", "What one run keeps and another removes, by step and rule."),
    "train": ("curate.cli.train", "train_group", "Train Llama 2 models: pretrain, sft, rm, tokenizer, export-hf."),
    "generate": ("curate.cli.train", "generate_cmd", "Generate text from a checkpoint."),
    "shards": ("curate.cli.train", "shards_group", "Tokenize curated text into token shards for training."),
    "sample": ("curate.cli.reward", "sample_cmd", "Rejection sampling: best-of-k answers under a reward model."),
    "ablate": ("curate.cli.ablate", "ablate_group", "Data-recipe and architecture ablations."),
    "vendors": ("curate.cli.vendors", "vendors_group", "Profile, export and compare annotation vendors."),
}


class OneLineErrors(click.Group):
    """Print usage errors and CurateError as a single line, exit 2. Commands load lazily
    from :data:`COMMANDS`."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter) -> None:
        # the help table from COMMANDS, without importing any command's module
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])

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


def main() -> None:
    cli.main(prog_name="curate")
