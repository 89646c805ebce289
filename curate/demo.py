"""The demo: the whole story on the bundled sample, in one call.

1. Curate the bundled pretraining sample (``examples/pipeline.yaml``).
2. Train a small BPE tokenizer on the curated text and pretrain a small Llama on it.
3. Build three annotation vendors from the bundled SFT data (``examples/compare/``):
   ``acme`` (clean Alpaca answers), ``bolt`` (the same prompts, 40% of the words of half its
   answers replaced by random words: a planted fault) and ``cobalt`` (other prompts from another
   source, in another style: instruction and input run together, answers half as long), with a
   held-out set of other Alpaca prompts and their reference answers.
4. Profile the vendors and compare them downstream (``curate vendors compare``): one report.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from curate.basics.errors import CurateError
from curate.pipeline.runner import run_pipeline
from experiments.compare.run import load_config, replace_words, run_config
from experiments.report import verdict_lines
from train.data import tokenize_shards
from train.run import pretrain
from train.tokenizer import train_bpe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Sized for about 10 minutes on 2 CPU cores (see the README's demo section).
MODEL = {"dim": 128, "n_layers": 4, "n_heads": 4, "vocab_size": 2048, "multiple_of": 32, "max_seq_len": 512}
PRETRAIN = {"steps": 500, "batch_size": 16, "seq_len": 128, "lr": 3e-3, "warmup_steps": 20, "eval_every": 0,
            "log_every": 50, "ckpt_every": 0, "eval_batches": 4}
VENDOR_SIZE, HELDOUT_SIZE = 240, 120


def run_demo(out: Path, workers: int | None = None, quiet: bool = False) -> dict:
    """Run the whole demo into ``out``; returns a summary (``out/compare/compare.html`` is the report)."""
    config = EXAMPLES / "pipeline.yaml"
    if not config.is_file() or not (EXAMPLES / "compare").is_dir():
        raise CurateError(f"bundled examples not found at {EXAMPLES}; run the demo from a source checkout")
    out = Path(out).resolve()  # compare.yaml names the base model; its paths resolve against the yaml
    timings = {}
    t0 = time.perf_counter()
    raw = yaml.safe_load(config.read_text())
    # The example config's paths are relative to the repository root; the demo runs from anywhere.
    raw["inputs"] = [{**i, "path": str(EXAMPLES.parent / i["path"])} for i in raw["inputs"]]
    raw["steps"] = [{**s, "model_path": str(EXAMPLES.parent / s["model_path"])} if "model_path" in s else s for s in raw["steps"]]
    stats = run_pipeline(raw, out=out / "curated", workers=workers, quiet=quiet)
    timings["curate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    base_dir = pretrain_base(out / "curated", out / "base", quiet)
    timings["pretrain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    compare_yaml = write_vendors(out / "vendors", base_dir)
    result = run_config(load_config(compare_yaml), out / "compare", quiet=quiet)
    timings["compare"] = time.perf_counter() - t0
    loss = result["loss"]
    summary = {"curated": {k: stats[k] for k in ("read", "written", "removed", "rejected", "balanced")},
               "out": str(out), "base": str(base_dir),
               "ranking": [{"vendor": n, **loss["arms"][n]} for n in loss["ranking"]],
               "verdicts": {k: v["verdict"] for k, v in loss["pairs"].items()},
               "conditioning_gain": result["conditioning"]["gain"],
               "noise_floor": result.get("noise_floor", {}).get("floor"),
               "report": str(out / "compare" / "compare.html"), "seconds": {k: round(v, 1) for k, v in timings.items()}}
    if not quiet:
        for line in verdict_lines(result):
            print(line)
        print(f"report: {summary['report']}")
    return summary


def pretrain_base(curated: Path, out: Path, quiet: bool = True, model: dict | None = None,
                  train: dict | None = None) -> Path:
    """A BPE tokenizer (``model["vocab_size"]`` pieces) and a base model pretrained on the Parquet
    shards (``text`` column) under ``curated``; returns the model directory (``out/model``, with
    ``tokenizer.model`` beside the weights). Reuses a finished one. ``model``: LlamaConfig fields
    (default MODEL); ``train``: TrainConfig fields (default PRETRAIN)."""
    model, train = model or MODEL, train or PRETRAIN
    model_dir = out / "model"
    if (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.model").is_file():
        return model_dir
    import pyarrow.parquet as pq

    shards = sorted(p for p in Path(curated).rglob("*.parquet"))
    if not shards:
        raise CurateError(f"no curated Parquet shards under {curated}")
    texts = [t for p in shards for t in pq.read_table(p, columns=["text"]).column("text").to_pylist() if t]
    tokenizer = train_bpe(texts, model["vocab_size"], out / "tokenizer.model")
    tokenize_shards(shards, tokenizer, out / "shards")
    result = pretrain({"run_dir": str(out / "run"), "shards": str(out / "shards"), "model": model, "seed": 0,
                       "train": train}, quiet=quiet)
    result.model.save(model_dir)
    (model_dir / "tokenizer.model").write_bytes((out / "tokenizer.model").read_bytes())
    return model_dir


def write_vendors(out: Path, base_dir: Path) -> Path:
    """The three demo vendors, the held-out set, vendors.yaml and compare.yaml; returns compare.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    alpaca = json.loads((EXAMPLES / "compare" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    clean = alpaca[:VENDOR_SIZE]
    convs = [{"messages": [{"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")},
                           {"role": "assistant", "content": r["output"]}]} for r in clean]
    noisy = replace_words(convs[::2], 0.4, seed=1)  # half of the answers, every other one
    degraded = [noisy[i // 2] if i % 2 == 0 else c for i, c in enumerate(convs)]
    (out / "acme.json").write_text(json.dumps(clean, ensure_ascii=False, indent=0), encoding="utf-8")
    with open(out / "bolt.jsonl", "w", encoding="utf-8") as f:
        for c in degraded:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    # other prompts from another source: skip its templated self-introductions and the conversations
    # that repeat an Alpaca prompt (a quarter of the file), so cobalt shares no prompt with acme
    instructions = {r["instruction"].strip() for r in alpaca}
    chat = []
    for line in (EXAMPLES / "compare" / "v1_sft_demo.jsonl").read_text(encoding="utf-8").splitlines():
        first = json.loads(line)["messages"][0]["content"]
        user = "".join(p.get("value", "") for p in first) if isinstance(first, list) else str(first)
        if "{{" not in line and user.strip() not in instructions:
            chat.append(line)
    chat = chat[:VENDOR_SIZE]
    (out / "cobalt.jsonl").write_text("\n".join(chat) + "\n", encoding="utf-8")
    (out / "heldout.json").write_text(json.dumps(alpaca[-HELDOUT_SIZE * 2:], ensure_ascii=False), encoding="utf-8")
    vendors = {"vendors": [
        {"name": "acme", "price_per_example": 0.60, "files": [{"path": "acme.json", "format": "alpaca"}]},
        {"name": "bolt", "price_per_example": 0.45, "files": [{"path": "bolt.jsonl", "format": "openai"}]},
        {"name": "cobalt", "price_per_example": 1.20, "files": [{"path": "cobalt.jsonl", "format": "openai"}]}]}
    (out / "vendors.yaml").write_text(yaml.safe_dump(vendors, sort_keys=False), encoding="utf-8")
    compare = {"vendors": "vendors.yaml", "base": str(base_dir), "tokenizer": str(base_dir / "tokenizer.model"),
               "heldout": "heldout.json", "heldout_size": HELDOUT_SIZE, "seeds": 3, "budget": "tokens",
               "noise_floor": "acme", "epochs": 2.0,
               "train": {"lr": 2e-3, "batch_size": 8, "seq_len": 192, "warmup_steps": 5}}
    path = out / "compare.yaml"
    path.write_text(yaml.safe_dump(compare, sort_keys=False), encoding="utf-8")
    return path
