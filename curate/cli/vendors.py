"""``curate vendors ...``: profile annotation vendors."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from annotations.profile import ifd_model_scorer, profile_vendors, quality_model_scorer, reward_model_scorer
from annotations.records import to_document
from annotations.report import render_html
from annotations.vendors import load_config, read_vendor
from curate.basics.errors import CurateError
from curate.basics.files import write_json
from curate.cli.compare import compare_cmd


@click.group("vendors")
def vendors_group():
    """Compare annotation vendors (SFT, preference and KTO data)."""


@vendors_group.command("profile")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for vendors.json, vendors.html and rejects.jsonl.")
@click.option("--lid-model", envvar="CURATE_LID_MODEL", type=click.Path(dir_okay=False, path_type=Path),
              help="fastText lid.176 model for language checks [env CURATE_LID_MODEL].")
@click.option("--tokenizer", type=click.Path(dir_okay=False, path_type=Path),
              help="SentencePiece .model for token lengths.")
@click.option("--reward-model", type=click.Path(file_okay=False, path_type=Path),
              help="A train/reward.py model directory: adds reward score distributions.")
@click.option("--quality-model", type=click.Path(dir_okay=False, path_type=Path),
              help="A fastText quality classifier (curate classifier train): adds P(hq) distributions of answers.")
@click.option("--ifd-model", type=click.Path(file_okay=False, path_type=Path),
              help="A Llama folder (our checkpoint or Hugging Face): adds instruction-following difficulty "
                   "distributions of answers (its tokenizer, else --tokenizer).")
@click.option("--threshold", default=0.8, show_default=True, help="Near-duplicate Jaccard threshold.")
@click.option("--seed", default=1, show_default=True, help="MinHash seed.")
def profile_command(config, out, lid_model, tokenizer, reward_model, quality_model, ifd_model, threshold, seed):
    """Read every vendor in CONFIG, run the checks, and write the profile.

    \b
    Example:
      curate vendors profile examples/vendors/vendors.yaml --out out/vendors
    """
    # Imported here: datasketch and matplotlib take seconds, and every `curate` command loads this module.
    for option, path in (("--lid-model", lid_model), ("--tokenizer", tokenizer), ("--quality-model", quality_model)):
        if path is not None and not path.is_file():
            raise CurateError(f"{option}: file not found: {path}")
    if reward_model is not None and not reward_model.is_dir():
        raise CurateError(f"--reward-model: directory not found: {reward_model}")
    if ifd_model is not None and not (ifd_model / "config.json").is_file():
        raise CurateError(f"--ifd-model: {ifd_model} is not a model folder (no config.json)")
    if ifd_model is not None and tokenizer is None and not any((ifd_model / n).is_file()
                                                               for n in ("tokenizer.model", "tokenizer.json")):
        raise CurateError(f"--ifd-model: no tokenizer in {ifd_model}; give --tokenizer")
    datas = [read_vendor(v) for v in load_config(config)]
    scorers = {}
    if reward_model:
        scorers["reward"] = reward_model_scorer(reward_model)
    if quality_model:
        scorers["quality"] = quality_model_scorer(quality_model)
    if ifd_model:
        scorers["ifd"] = ifd_model_scorer(ifd_model, tokenizer)
    profile = profile_vendors(datas, lid_model=lid_model, tokenizer=tokenizer, threshold=threshold, seed=seed,
                              scorers=scorers or None)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "vendors.json", profile, indent=1, newline=False)
    (out / "vendors.html").write_text(render_html(profile, f"Vendor profile: {config.name}"), encoding="utf-8")
    _write_rejects(out / "rejects.jsonl", datas)
    for name, v in profile["vendors"].items():
        c = v["counts"]
        click.echo(f"{name}: read {c['read']}, kept {c['kept']}, removed {c['removed']}, rejected {c['rejected']}")
    click.echo(f"wrote {out / 'vendors.html'}")


@vendors_group.command("export")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for records.jsonl and rejects.jsonl.")
def export_command(config, out):
    """Write every vendor's records as JSONL that `curate run` reads (jsonl input: text
    in `text`, the record's structure as meta), and the rejects beside them.

    \b
    Example:
      curate vendors export examples/vendors/vendors.yaml --out out/records
      curate run examples/vendors/clean.yaml
    """
    datas = [read_vendor(v) for v in load_config(config)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for record in (r for d in datas for r in d.records):
            doc = to_document(record)
            f.write(json.dumps({"id": doc.id, "text": doc.text, **doc.meta}, ensure_ascii=False) + "\n")
    _write_rejects(out / "rejects.jsonl", datas)
    n_records, n_rejects = sum(len(d.records) for d in datas), sum(len(d.rejects) for d in datas)
    click.echo(f"wrote {n_records} records to {out / 'records.jsonl'} and {n_rejects} rejects")


def _write_rejects(path: Path, datas) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for data in datas:
            for reject in data.rejects:
                f.write(json.dumps(asdict(reject), ensure_ascii=False) + "\n")


vendors_group.add_command(compare_cmd)  # the downstream comparison has its own module
