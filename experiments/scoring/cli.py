"""``curate score``: add model-backed scores to curated records in one pipeline run."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("score")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (a curate run).")
@click.option("--ifd", "ifd_model", required=True, type=click.Path(path_type=Path),
              help="Model folder for instruction-following difficulty: our checkpoint or a Hugging Face Llama.")
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None, help="Tokenizer (default: the model folder).")
@click.option("--template", type=click.Choice(["llama2", "plain"]), default="llama2", show_default=True,
              help="Chat template the model was tuned with.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Rows per forward pass.")
@click.option("--max-tokens", type=click.IntRange(min=2), default=1024, show_default=True,
              help="Conversations are cut to this many tokens.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (each loads the model).")
@click.option("--overwrite", is_flag=True, help="Delete the output folder first instead of resuming into it.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def score_cmd(inputs, out, ifd_model, tokenizer, template, batch_size, max_tokens, device, workers, overwrite, quiet):
    """Score SFT conversations in INPUTS (curated records: what `curate vendors export` or
    `curate run` writes) and write them with the scores in meta: for --ifd, ifd,
    ifd_loss_given_prompt, ifd_loss_alone, ifd_turns, and the flag prompt_does_not_help.

    \b
    Example:
      curate vendors export examples/vendors/vendors.yaml --out out/records
      curate score out/records/records.jsonl --ifd runs/sft/model --out out/ifd
    """
    from curate.pipeline.cli import print_summary
    from curate.pipeline.runner import run_pipeline

    step = {"step": "ifd", "model": str(ifd_model), "template": template, "batch_size": batch_size,
            "max_tokens": max_tokens, "device": device}
    if tokenizer is not None:
        step["tokenizer"] = str(tokenizer)
    stats = run_pipeline({"inputs": list(inputs), "steps": [step], "output": {"dir": out}}, workers=workers,
                         quiet=quiet, overwrite=overwrite)
    if not quiet:
        print_summary(stats, Path(out))


COMMANDS = [score_cmd]
