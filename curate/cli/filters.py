"""`curate filter`, `curate score`, `curate classifier train`, `curate models fetch` and
`curate inspect`: shortcuts that build a pipeline config and run it with `curate run`'s runner."""
from __future__ import annotations

import json
import random
import textwrap
from collections import Counter
from pathlib import Path

import click
import yaml

from curate.basics.errors import CurateError
from curate.cli.pipeline import print_summary
from curate.io.readers import read_shard
from curate.io.sources import InputSpec, plan_shards
from curate.pipeline.runner import rule_of, run_pipeline
from curate.scoring.models import MODELS, fetch, model_path
from curate.scoring.quality import train_classifier

DEFAULT_RULES = "gopher_quality,gopher_repetition,c4_quality,fineweb_quality"


def _params(pairs: tuple[str, ...], steps: list[dict]) -> None:
    """Apply ``--param step.key=value`` (value read as YAML) to the matching step entries."""
    for pair in pairs:
        name_key, sep, value = pair.partition("=")
        name, dot, key = name_key.partition(".")
        if not sep or not dot or not key:
            raise CurateError(f"--param {pair!r}: expected STEP.KEY=VALUE, e.g. language.languages=[en,fr]")
        targets = [s for s in steps if s["step"] == name]
        if not targets:
            raise CurateError(f"--param {pair!r}: no step {name!r} in this run")
        for s in targets:
            s[key] = yaml.safe_load(value)


def _run(inputs: tuple[str, ...], steps: list[dict], out: str, workers, quiet: bool, overwrite: bool, text_field: str):
    config = {"inputs": [{"path": p, "text_field": text_field} for p in inputs], "steps": steps, "output": {"dir": out}}
    stats = run_pipeline(config, workers=workers, quiet=quiet, overwrite=overwrite)
    if not quiet:
        print_summary(stats, Path(out))


def _run_options(f):
    f = click.option("--quiet", is_flag=True, help="No progress bar or summary.")(f)
    f = click.option("--overwrite", is_flag=True, help="Delete the earlier run in the output folder (only what curate wrote there) instead of resuming it.")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")(f)
    f = click.option("--text-field", default="text", show_default=True, help="Field holding the text in JSONL/CSV/Parquet inputs.")(f)
    f = click.option("--param", "params", multiple=True, metavar="STEP.KEY=VALUE",
                     help="Set a step parameter (value read as YAML); repeatable.")(f)
    f = click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")(f)
    return f


@click.command("filter")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--rules", default=DEFAULT_RULES, show_default=True,
              help="Comma-separated steps to run in order (see `curate steps`).")
@_run_options
def filter_cmd(inputs, rules, out, params, text_field, workers, overwrite, quiet):
    """Filter INPUT files with heuristic rules; removed documents keep their reason.

    \b
    Example:
      curate filter data/c4.jsonl --out out/filtered --rules gopher_quality,c4_quality,language \\
          --param language.languages=[en] --param language.model_path=lid.176.ftz
      curate inspect out/filtered
    """
    steps = [{"step": r.strip()} for r in rules.split(",") if r.strip()]
    if not steps:
        raise CurateError("--rules is empty")
    _params(params, steps)
    _run(inputs, steps, out, workers, quiet, overwrite, text_field)


@click.command("score")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--lid", is_flag=True, help="Write lang and lang_score (fastText lid.176; nothing removed).")
@click.option("--lid-model", default=None, type=click.Path(dir_okay=False), help="lid model file (default: the cached one).")
@click.option("--quality-model", default=None, type=click.Path(dir_okay=False),
              help="Classifier from `curate classifier train`: writes quality.")
@click.option("--perplexity-model", default=None, type=click.Path(file_okay=False),
              help="Model folder from `curate train` (config.json + model.safetensors): writes perplexity.")
@click.option("--ifd", "ifd_model", default=None, type=click.Path(file_okay=False),
              help="Llama folder (our checkpoint or Hugging Face): writes ifd, its two losses and per-turn values "
                   "of SFT conversations, and flags prompt_does_not_help.")
@click.option("--template", type=click.Choice(["llama2", "plain"]), default="llama2", show_default=True,
              help="Chat template the --ifd model was tuned with.")
@click.option("--tokenizer", default=None, type=click.Path(),
              help="Tokenizer for --perplexity-model and --ifd (default: the model's folder).")
@_run_options
def score_cmd(inputs, lid, lid_model, quality_model, perplexity_model, ifd_model, template, tokenizer, out, params,
              text_field, workers, overwrite, quiet):
    """Add scores to each document's meta without removing any.

    \b
    Example:
      curate models fetch lid
      curate score data/c4.jsonl --out out/scored --lid --quality-model quality.bin
      curate filter out/scored/data --out out/best --rules keep_if --param 'keep_if.expr=quality > 0.5 and lang == "en"'
      curate score out/records/records.jsonl --out out/ifd --ifd runs/sft/model --param ifd.device=cuda
    """
    steps: list[dict] = []
    if lid or lid_model:
        steps.append({"step": "language", "min_score": 0.0, **({"model_path": lid_model} if lid_model else {})})
    if quality_model:
        steps.append({"step": "quality", "model_path": quality_model})
    if perplexity_model:
        steps.append({"step": "perplexity", "model": perplexity_model, **({"tokenizer": tokenizer} if tokenizer else {})})
    if ifd_model:
        steps.append({"step": "ifd", "model": ifd_model, "template": template, **({"tokenizer": tokenizer} if tokenizer else {})})
    if not steps:
        raise CurateError("nothing to score: give --lid, --quality-model, --perplexity-model or --ifd")
    _params(params, steps)
    _run(inputs, steps, out, workers, quiet, overwrite, text_field)


def read_texts(paths: tuple[str, ...], text_field: str, limit: int | None) -> list[str]:
    """Texts of every document in ``paths`` (any input format curate reads)."""
    texts: list[str] = []
    for shard in plan_shards([InputSpec.parse({"path": p, "text_field": text_field}) for p in paths]):
        for docs, _ in read_shard(shard):
            texts.extend(d.text for d in docs)
    if limit is not None and len(texts) > limit:
        texts = random.Random(0).sample(texts, limit)
    return texts


@click.group("classifier")
def classifier_group():
    """Train a fastText quality classifier (the DCLM recipe)."""


@classifier_group.command("train")
@click.option("--positive", multiple=True, required=True, help="High-quality documents (repeatable).")
@click.option("--negative", multiple=True, required=True, help="Random web documents (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (fastText .bin).")
@click.option("--text-field", default="text", show_default=True)
@click.option("--max-docs", type=click.IntRange(min=2), default=None, help="Sample at most this many per side (seeded).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True)
@click.option("--epoch", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True, help="Learning rate.")
@click.option("--bucket", type=click.IntRange(min=1000), default=1_000_000, show_default=True,
              help="Hashed word-bigram slots (model size is bucket x 64 floats).")
@click.option("--seed", type=int, default=0, show_default=True)
def classifier_train_cmd(positive, negative, out, text_field, max_docs, test_fraction, epoch, lr, bucket, seed):
    """Train on --positive against --negative and report held-out accuracy and AUC.

    \b
    Example:
      curate classifier train --positive wiki.jsonl --negative c4.jsonl --out quality.bin
      curate score c4.jsonl --out out/scored --quality-model quality.bin
    """
    figures = train_classifier(read_texts(positive, text_field, max_docs), read_texts(negative, text_field, max_docs),
                               out, test_fraction=test_fraction, epoch=epoch, lr=lr, bucket=bucket, seed=seed)
    click.echo(f"trained on {figures['train']} documents ({figures['train_positive']} positive, "
               f"{figures['train_negative']} negative); held out {figures['test']}")
    click.echo(f"held-out accuracy {figures['accuracy']:.3f}  AUC {figures['auc']:.3f}")
    click.echo(f"model: {out}  (figures in {out}.json)")


@click.group("models")
def models_group():
    """Download models curate uses (language ID) into ~/.cache/curate."""


@models_group.command("fetch")
@click.argument("name", type=click.Choice(["lid", "lid-bin"]))
def models_fetch_cmd(name):
    """Download model NAME (lid: fastText lid.176.ftz) into the cache folder.

    \b
    Example:
      curate models fetch lid
    """
    click.echo(f"{name}: {fetch(name)}")


@models_group.command("list")
def models_list_cmd():
    """Show the models curate knows, where they are cached, and whether they are there.

    \b
    Example:
      curate models list
    """
    for name, (_, url, what) in MODELS.items():
        p = model_path(name)
        click.echo(f"{name:<8} {'present' if p.is_file() else 'missing':<8} {p}  -- {what}")


@click.command("inspect")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--step", default=None, help="Only this step.")
@click.option("--rule", default=None, help="Only this rule (first word of the reason, e.g. stop_words).")
@click.option("-n", "--samples", type=click.IntRange(min=1), default=3, show_default=True, help="Documents shown per rule.")
@click.option("--width", type=click.IntRange(min=20), default=300, show_default=True, help="Characters of text shown.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which documents are sampled.")
def inspect_cmd(out, step, rule, samples, width, seed):
    """Show a sample of the documents each step and rule removed from a run in OUT,
    with how many of each language (meta.lang) where the run identified languages.

    \b
    Example:
      curate filter data/c4.jsonl --out out/filtered
      curate inspect out/filtered --rule stop_words -n 5
    """
    import pyarrow.parquet as pq


    files = sorted((Path(out) / "removed").glob("*.parquet"))
    if not files:
        raise CurateError(f"no removed documents under {out}/removed")
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in files:
        for row in pq.read_table(f, columns=["id", "text", "source", "step", "reason", "meta"]).to_pylist():
            key = (row["step"], rule_of(row["reason"] or ""))
            if (step is None or key[0] == step) and (rule is None or key[1] == rule):
                groups.setdefault(key, []).append(row)
    if not groups:
        raise CurateError("no removed documents match --step/--rule")
    rng = random.Random(seed)
    for (step_name, rule_name), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        langs = Counter(json.loads(r["meta"] or "{}").get("lang") for r in rows)
        by_lang = ", ".join(f"{k} {v}" for k, v in sorted(langs.items(), key=lambda kv: (-kv[1], str(kv[0]))) if k)
        click.secho(f"== {step_name} / {rule_name}: {len(rows)} removed" + (f" ({by_lang})" if by_lang else ""), bold=True)
        for row in rng.sample(rows, min(samples, len(rows))):
            text = " ".join((row["text"] or "").split())
            shown = text[:width] + (" ..." if len(text) > width else "")
            click.echo(f"  [{row['id']}] {click.style(row['reason'], fg='yellow')}  ({row['source']})")
            click.echo(textwrap.indent(textwrap.fill(shown, 100), "    "))
