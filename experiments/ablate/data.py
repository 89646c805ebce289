"""Data-recipe ablations (``curate ablate data CONFIG``), on the vendor comparison's machinery.

Each arm is a recipe applied to one source (or a named dataset): a curate pipeline, the top
fraction by a score, a random draw of the same token budget as another arm, a size cap, a
degradation (answers shuffled between prompts, words replaced, answers cut). Every arm trains
the same model from the same start under paired seeds and is scored on one held-out set.

* ``kind: sft`` -- conversations; the arms run through :class:`experiments.compare.arms.Harness`
  (budgets in answer tokens, the same steps for all, seed i = same order and torch seed).
* ``kind: pretrain`` -- documents (``text``); each arm's documents are tokenized, laid end to
  end in a seeded order per seed and cut into windows; the held-out loss is per held-out document.

Modes: ``tokens`` -- every arm gets the same token budget (``budget``, default the smallest arm's
tokens), drawn afresh per seed; ``steps`` -- every arm trains ``steps`` steps on its whole pool.
The effects against ``baseline`` come from :func:`experiments.stats.compare_arms` (two-stage
bootstrap over seeds, then held-out items).

Config (YAML, paths relative to it)::

    kind: sft                       # sft | pretrain
    source: ../data/alpaca.json
    tokenizer: tok.model
    base: out/base                  # checkpoint; or `model:` (a config) for a fresh seeded init
    heldout_size: 150               # held out from the source first (or `heldout: file`)
    mode: tokens                    # tokens | steps
    seeds: 3
    baseline: all
    arms:
      - {name: all}
      - {name: top10, pipeline: score.yaml, top: {fraction: 0.1, by: reward}}
      - {name: random10, random: {like: top10}}
      - {name: dedup, pipeline: dedup.yaml}
      - {name: shuffled, degrade: {shuffle_answers: true}}
    train: {lr: 1.0e-3, batch_size: 8, seq_len: 256}
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from curate.basics.errors import CurateError
from curate.basics.yamlconfig import check_keys, read_yaml_mapping
from curate.pipeline.runner import run_pipeline
from experiments import steps as all_steps  # noqa: F401  (arm pipelines may name any layer's steps)
from experiments import stats
from experiments.ablate.pretrain import run_pretrain_arms
from experiments.compare.arms import Arm, Harness, Settings, fingerprint, metric, safe_name
from experiments.compare.run import (decontaminate, load_heldout, replace_words, sample, shuffle_answers,
                                     truncate_answers)
from experiments.report import write_ablation_report
from experiments.results import Ablation, ArmSummary
from train.api import answer_tokens
from train.model import Llama, get_config
from train.run import load_model
from train.tokenizer import Tokenizer

ARM_KEYS = {"name", "data", "pipeline", "top", "random", "size", "degrade"}


@dataclass
class AblateConfig:
    source: str
    tokenizer: str
    arms: Any
    kind: str = "sft"
    baseline: str | None = None
    base: str | None = None
    model: Any = "tiny"
    init_seed: int = 0
    heldout: str | None = None
    heldout_size: int = 150
    mode: str = "tokens"
    budget: int | None = None
    steps: int | None = None
    epochs: float = 1.0
    seeds: int = 3
    template: str = "llama2"
    train: dict = field(default_factory=dict)
    eval_points: int = 4
    noise_floor: str | None = None
    n_boot: int = 2000
    seed: int = 0
    out: str | None = None

    def __post_init__(self):
        if self.kind not in ("sft", "pretrain"):
            raise CurateError(f"kind must be sft or pretrain, got {self.kind!r}")
        if self.mode not in ("tokens", "steps"):
            raise CurateError(f"mode must be tokens or steps, got {self.mode!r}")
        if self.mode == "steps" and not self.steps:
            raise CurateError("mode: steps needs `steps`")
        if not isinstance(self.arms, list) or not self.arms:
            raise CurateError("arms: expected a non-empty list")
        for a in self.arms:
            if not isinstance(a, dict) or not a.get("name"):
                raise CurateError(f"every arm needs a name: {a!r}")
            unknown = sorted(set(a) - ARM_KEYS)
            if unknown:
                raise CurateError(f"arm {a['name']!r}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(ARM_KEYS))})")
        names = [a["name"] for a in self.arms]
        if len(set(names)) != len(names):
            raise CurateError(f"arm names must be distinct: {names}")
        if self.noise_floor and self.kind != "sft":
            raise CurateError("noise_floor is measured for sft ablations only")
        self.baseline = self.baseline or names[0]
        if self.baseline not in names:
            raise CurateError(f"baseline {self.baseline!r} is not an arm ({', '.join(names)})")


def load_config(path) -> AblateConfig:
    """An AblateConfig from YAML (``yaml.safe_load``); relative paths resolve against the file."""
    path = Path(path)
    return config_from_dict(read_yaml_mapping(path), path.parent)


def config_from_dict(raw, base_dir: Path = Path(".")) -> AblateConfig:
    check_keys(raw, AblateConfig, ("source", "tokenizer", "arms"), "ablation config")
    raw = copy.deepcopy(raw)
    resolve = lambda p: str((Path(base_dir) / p).resolve())  # noqa: E731
    for key in ("source", "tokenizer", "base", "heldout", "out"):
        if raw.get(key):
            raw[key] = resolve(raw[key])
    for arm in raw["arms"] if isinstance(raw["arms"], list) else []:
        for key in ("data", "pipeline"):
            if isinstance(arm, dict) and arm.get(key):
                arm[key] = resolve(arm[key])
    return AblateConfig(**raw)


# --------------------------------------------------------------------------- reading and recipes

def read_items(path: str, kind: str) -> list[dict]:
    """SFT conversations (``{"messages"}``, any format train.sft reads) or documents
    (``{"text", ...other fields}`` from .jsonl / .parquet / plain text, one per line)."""
    if not Path(path).is_file():
        raise CurateError(f"no such file: {path}")
    if kind == "sft":
        return load_heldout(path)
    if path.endswith(".jsonl"):
        rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    elif path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = [{"text": line} for line in open(path, encoding="utf-8") if line.strip()]
    return [r for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]


def item_text(item: dict) -> str:
    if "messages" in item:
        return "\n\n".join(m["content"] for m in item["messages"])
    return item["text"]


def run_pipeline_on(items: list[dict], pipeline: str, work: Path) -> list[dict]:
    """Apply the ``steps`` of a curate pipeline YAML to ``items``; return the kept items in
    order, each with the pipeline's ``meta`` fields merged in (scores such as ``reward``)."""

    steps = (yaml.safe_load(Path(pipeline).read_text(encoding="utf-8")) or {}).get("steps") or []
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i, it in enumerate(items):
            f.write(json.dumps({"id": str(i), "text": item_text(it), **({"messages": it["messages"]} if "messages" in it else {})},
                               ensure_ascii=False) + "\n")
    run_pipeline({"inputs": [{"path": str(src)}], "steps": steps, "output": {"dir": str(work / "out"), "format": "jsonl"}},
                 quiet=True, workers=1, overwrite=True)
    kept = {}
    for part in sorted((work / "out" / "data").glob("*.jsonl")):
        for line in open(part, encoding="utf-8"):
            row = json.loads(line)
            meta = {k: v for k, v in (row.get("meta") or {}).items() if k not in ("messages", "text")}
            kept[int(row["id"])] = meta if "messages" in items[int(row["id"])] else {**meta, "text": row["text"]}
    return [{**items[i], **kept[i]} for i in sorted(kept)]  # documents take the pipeline's (edited) text


def build_arms(specs: list[dict], source: list[dict], cfg: AblateConfig, sizes, work: Path) -> tuple[dict, dict]:
    """Arm name -> items, and arm name -> what the recipe did. ``sizes(items)``: token count of
    each item (answer tokens for SFT, document tokens for pretraining)."""
    arms, info = {}, {}
    for spec in specs:
        name, note = spec["name"], {}
        items = read_items(spec["data"], cfg.kind) if spec.get("data") else list(source)
        note["pool"] = len(items)
        if spec.get("pipeline"):
            items = run_pipeline_on(items, spec["pipeline"], work / "pipelines" / safe_name(name))
            note["after_pipeline"] = len(items)
        if spec.get("top"):
            frac, by = float(spec["top"].get("fraction", 0.1)), spec["top"].get("by")
            scored = [it for it in items if isinstance(it.get(by), (int, float)) and math.isfinite(it[by])]
            note["unscored"] = len(items) - len(scored)
            keep = max(1, int(round(len(scored) * frac)))
            order = sorted(range(len(scored)), key=lambda i: -scored[i][by])[:keep]
            items = [scored[i] for i in sorted(order)]
        if spec.get("random"):
            r = spec["random"]
            rng = np.random.default_rng([cfg.seed, len(arms)])
            order = rng.permutation(len(items))
            if r.get("like"):
                if r["like"] not in arms:
                    raise CurateError(f"arm {name!r}: random.like names {r['like']!r}, which must come earlier")
                target = int(sizes(arms[r["like"]]).sum())
                fits = np.cumsum(sizes([items[i] for i in order])) <= target
                order = order[fits]
                note["token_target"] = target
            else:
                order = order[: max(1, int(round(len(items) * float(r.get("fraction", 0.1)))))]
            items = [items[i] for i in np.sort(order)]
        if spec.get("size"):
            keep = np.sort(np.random.default_rng([cfg.seed, 7]).permutation(len(items))[: int(spec["size"])])
            items = [items[i] for i in keep]
        for key, value in (spec.get("degrade") or {}).items():
            if cfg.kind != "sft":
                raise CurateError(f"arm {name!r}: degrade applies to SFT arms only")
            if key == "shuffle_answers" and value:
                items = shuffle_answers(items, cfg.seed)
            elif key == "replace_words":
                items = replace_words(items, float(value), cfg.seed)
            elif key == "truncate":
                items = truncate_answers(items, float(value))
            elif key != "shuffle_answers":
                raise CurateError(f"arm {name!r}: unknown degrade {key!r} (shuffle_answers, replace_words, truncate)")
        if not items:
            raise CurateError(f"arm {name!r}: the recipe left no data")
        n = sizes(items)
        note.update(items=len(items), usable=int((n > 0).sum()), tokens=int(n.sum()), data=fingerprint(items))
        arms[name], info[name] = items, note
    return arms, info


# --------------------------------------------------------------------------- the ablation

def run_ablation(cfg: AblateConfig, out: str | Path | None = None, quiet: bool = True) -> dict:
    """Everything `curate ablate data` does; resumable in ``out``. Returns the result dict
    (also written as ablate.json, ablate.html and figures)."""
    import torch

    out = Path(out or cfg.out or "out/ablate")
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(cfg.tokenizer)
    if cfg.base:
        base = load_model(cfg.base)
    else:
        torch.manual_seed(cfg.init_seed)
        base = Llama(get_config(cfg.model, vocab_size=tok.vocab_size))
    max_len = int(cfg.train.get("seq_len", 256)) + 1
    source = read_items(cfg.source, cfg.kind)
    if cfg.heldout:
        heldout = read_items(cfg.heldout, cfg.kind)
    else:  # held out from the source before any recipe sees it
        pick = set(np.random.default_rng([cfg.seed, 3]).permutation(len(source))[: cfg.heldout_size].tolist())
        heldout = [x for i, x in enumerate(source) if i in pick]
        source = [x for i, x in enumerate(source) if i not in pick]

    if cfg.kind == "sft":
        def sizes(items):
            return np.array([answer_tokens(it, tok, cfg.template, max_len) for it in items], dtype=np.int64)
    else:
        def sizes(items):
            return np.array([len(x) for x in tok.encode_batch([it["text"] for it in items], eos=True)], dtype=np.int64)

    arms, info = build_arms(cfg.arms, source, cfg, sizes, out)
    if cfg.kind == "sft":
        heldout, dropped = decontaminate(heldout, arms)
        heldout = sample(heldout, cfg.heldout_size, cfg.seed)
        results, plan, harness = _run_sft(cfg, arms, base, tok, heldout, out, quiet)
        unscorable = getattr(harness, "heldout_unscorable", 0)  # no answer token fits seq_len
    else:
        texts = {" ".join(h["text"].split()) for h in heldout}
        dropped = unscorable = 0
        for name in arms:  # exact held-out texts never train
            before = len(arms[name])
            arms[name] = [it for it in arms[name] if " ".join(it["text"].split()) not in texts]
            info[name]["dropped_heldout"] = before - len(arms[name])
        results, plan = run_pretrain_arms(cfg, arms, base, tok, heldout, out, quiet)
    result = summarize(cfg, results, info).to_dict()
    result.update(plan=plan, heldout={"items": len(heldout) - unscorable, "dropped_contaminated": dropped,
                                      "dropped_unscorable": unscorable,
                                      "source": cfg.heldout or f"{cfg.heldout_size} held out of {cfg.source}"},
                  config=asdict(cfg), config_hash=fingerprint(asdict(cfg)))
    write_ablation_report(result, out, kind="data")
    return result


def _run_sft(cfg, arms, base, tok, heldout, out, quiet):
    tokens = cfg.mode == "tokens"
    settings = Settings(seeds=cfg.seeds, budget="tokens" if tokens else "all", max_budget=cfg.budget if tokens else None,
                        steps=cfg.steps, epochs=cfg.epochs, template=cfg.template,
                        train={**Settings().train, **cfg.train}, eval_points=cfg.eval_points)
    arm_list = [Arm(n, items) for n, items in arms.items()]
    if cfg.noise_floor:
        if cfg.noise_floor not in arms:
            raise CurateError(f"noise_floor: no arm named {cfg.noise_floor!r}")
        arm_list += [Arm(f"{cfg.noise_floor} (half {k + 1})", arms[cfg.noise_floor], group="noise", part=(k, 2))
                     for k in range(2)]
    harness = Harness(arm_list, base, tok, heldout, settings, out)
    results = harness.run(quiet=quiet)
    for name, runs in results.items():
        for r in runs:  # training tokens at each evaluation: loss tokens per step x step
            per_step = r["trained_tokens"] / max(1, r["steps"])
            r["val_curve"] = [[round(s * per_step), v] for s, v in r["val_curve"]]
            r["budget_tokens"] = harness.plan["budgets"].get("main")
    return results, {k: v for k, v in harness.plan.items() if not k.startswith("_")}, harness


def summarize(cfg: AblateConfig, results: dict, info: dict) -> Ablation:
    """Per arm: held-out loss with its interval and the effect against the baseline."""
    losses = metric(results)
    main = {n: losses[n] for n in info}
    comp = stats.compare_arms(main, higher_is_better=False, n_boot=cfg.n_boot, seed=cfg.seed)
    out = Ablation(kind=cfg.kind, mode=cfg.mode, baseline=cfg.baseline, loss=comp,
                   metric="held-out loss (nats/token, lower is better)")
    for name, runs in results.items():
        curve = [[t, float(np.mean([r["val_curve"][i][1] for r in runs]))] for i, (t, _) in enumerate(runs[0]["val_curve"])]
        out.arms[name] = ArmSummary(
            info=info.get(name, {}), curve=curve, trained_tokens=[r["trained_tokens"] for r in runs],
            budget_tokens=runs[0].get("budget_tokens"), answer_tokens=[r.get("answer_tokens") for r in runs],
            effect=None if name == cfg.baseline or name not in main else comp["pairs"][f"{name}|{cfg.baseline}"])
    if cfg.noise_floor:
        halves = [f"{cfg.noise_floor} (half {k + 1})" for k in range(2)]
        out.noise_floor = stats.noise_floor(losses[halves[0]], losses[halves[1]], cfg.n_boot, cfg.seed)
        for name in info:
            eff = out.arms[name].effect
            if eff:
                eff["below_noise_floor"] = abs(eff["diff"]) < out.noise_floor["floor"]
    return out
