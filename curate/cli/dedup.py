"""`curate dedup`: exact + MinHash dedup of input files, the same run as `curate run`
with a two-step config (so the outputs are the same: kept shards, removed/, stats.json)."""
from __future__ import annotations

from pathlib import Path

import click

from curate.basics.errors import CurateError
from curate.pipeline.runner import run_pipeline


def dedup_config(inputs: list[str], out: str, text_field: str = "text", exact: bool = True, near: bool = True,
                 threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, keep: str = "first",
                 score_key: str | None = None, index_dir: str | None = None, against: str | None = None,
                 eval_files: tuple[str, ...] = ()) -> dict:
    """The pipeline config ``curate dedup`` runs."""
    common = {"keep": keep, **({"score_key": score_key} if score_key else {})}
    steps = []
    if eval_files:
        steps.append({"step": "decontaminate", "eval_files": list(eval_files)})
    if exact:
        steps.append({"step": "exact_dedup", **common})
    if near:
        extra = {k: v for k, v in (("index_dir", index_dir), ("against", against)) if v}
        steps.append({"step": "minhash_dedup", "threshold": threshold, "num_perm": num_perm, "ngram": ngram,
                      **common, **extra})
    if not steps:
        raise CurateError("nothing to do: both --no-exact and --no-near given")
    return {"inputs": [{"path": p, "text_field": text_field} for p in inputs], "steps": steps, "output": {"dir": out}}


@click.command("dedup")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="Jaccard similarity of word n-gram sets that makes a near-duplicate.")
@click.option("--num-perm", type=click.IntRange(min=2), default=128, show_default=True, help="MinHash permutations.")
@click.option("--ngram", type=click.IntRange(min=1), default=5, show_default=True, help="Words per shingle.")
@click.option("--keep", type=click.Choice(["first", "longest", "score"]), default="first", show_default=True,
              help="Which document of a cluster stays.")
@click.option("--score-key", default=None, help="Meta field to maximise with --keep score.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text in JSON inputs.")
@click.option("--exact/--no-exact", default=True, show_default=True, help="Remove exact duplicates first.")
@click.option("--near/--no-near", default=True, show_default=True, help="Remove MinHash near-duplicates.")
@click.option("--index-dir", default=None, help="Save an index of the kept documents here (for --against later).")
@click.option("--against", default=None, help="A saved index: also remove near-duplicates of an earlier run.")
@click.option("--decontaminate", "eval_files", multiple=True, type=click.Path(dir_okay=False),
              help="Evaluation file (JSONL/JSON/text); drop documents sharing a 13-gram with it. Repeatable.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")
@click.option("--overwrite", is_flag=True, help="Delete the output folder first instead of resuming into it.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def dedup(inputs, out, threshold, num_perm, ngram, keep, score_key, text_field, exact, near, index_dir, against,
          eval_files, workers, overwrite, quiet):
    """Deduplicate INPUT files (JSONL, Parquet, text, ...): exact duplicates on
    normalised text, then MinHash near-duplicates. Writes OUT/data (kept),
    OUT/removed (with cluster_id and kept_id) and OUT/stats.json.

    \b
    Example:
      curate dedup data/*.jsonl --out out/dedup --threshold 0.8
      curate dedup new.jsonl --out out/new --against out/old_index
    """
    if keep == "score" and not score_key:
        raise CurateError("--keep score needs --score-key")
    config = dedup_config(list(inputs), out, text_field, exact, near, threshold, num_perm, ngram, keep, score_key,
                          index_dir, against, eval_files)
    stats = run_pipeline(config, workers=workers, quiet=quiet, overwrite=overwrite)
    if not quiet:
        for line in summary_lines(stats):
            click.echo(line)
        click.echo(f"output: {Path(out) / 'data'}  (removed/, stats.json beside it)")


def summary_lines(stats: dict) -> list[str]:
    """Documents in, exact duplicates, near-duplicate clusters, removed, kept."""
    by_step = {s["step"]: s for s in stats["steps"]}
    lines = [f"documents in:            {stats['read']}"]
    if "decontaminate" in by_step:
        lines.append(f"contaminated:            {by_step['decontaminate']['removed']}")
    if "exact_dedup" in by_step:
        lines.append(f"exact duplicates:        {by_step['exact_dedup']['removed']}")
    if "minhash_dedup" in by_step:
        g = by_step["minhash_dedup"].get("global", {})
        lines.append(f"near-duplicate clusters: {g.get('clusters', 0)}  "
                     f"(removed {by_step['minhash_dedup']['removed']})")
    lines.append(f"removed:                 {stats['removed']}")
    if stats["rejected"]:
        lines.append(f"rejected (unreadable):   {stats['rejected']}")
    lines.append(f"kept:                    {stats['written']}")
    return lines
