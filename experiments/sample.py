"""Rejection sampling (Llama 2 paper, section 3.2.3): best-of-K answers under a reward model.

For every prompt each policy draws K answers (temperature, top-p, a seed per batch) through
the KV-cache batched :func:`train.generate.generate`; a reward model scores each one; the
best (or the top ``keep``) per prompt become a new SFT dataset. Every candidate is written
to ``candidates.jsonl`` with its score, so selection reruns (:func:`select_from_files`)
without generating again, and a later round pools the candidates of earlier rounds
(``pool``): what is kept is the best over all rounds, so a prompt's kept reward never drops.

Outputs in ``out_dir``: ``candidates.jsonl`` (one row per answer: prompt_id, prompt, model,
round, sample, seed, answer, new_tokens, finished, reward), ``selected.jsonl`` (SFT records in
the annotations' canonical Document layout: ``id``, ``text``, ``kind``, ``messages``, ...,
plus ``provenance``; ``curate run`` and ``train.sft.load_examples`` read it), and
``report.json`` / ``report.html`` / ``reward_vs_k.png``: mean over prompts of the maximum and
median reward among K samples, and the best-of-K gain over one sample, per model.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from annotations.records import SFTConversation, to_document
from curate.basics.device import resolve_device
from curate.basics.errors import CurateError
from curate.basics.files import write_json
from train.api import RewardModel, generate, load_examples, load_model, prompt_ids, score
from train.checkpoint import latest_checkpoint
from train.config import build_config, read_config_source
from train.tokenizer import Tokenizer


@dataclass
class SampleConfig:
    """``curate sample CONFIG``. ``policies``: ``[{name, path, tokenizer}]`` (or one ``policy``
    path); a path is a ``Llama.save``/checkpoint directory, a training run directory (its
    newest checkpoint) or a Hugging Face Llama directory. A policy's tokenizer defaults to the
    one in its directory, then to ``tokenizer``. ``prompts``: conversations (.jsonl/.json/.parquet;
    a final assistant turn is dropped). ``reward_model``: a directory from ``curate train rm``."""

    out_dir: str
    prompts: str
    reward_model: str
    policy: str | None = None
    policies: Any = None
    tokenizer: str | None = None
    template: str = "llama2"
    k: int = 8                      # samples per prompt per policy
    keep: int = 1                   # answers kept per prompt (distinct texts, best first)
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 128
    batch_size: int = 32            # sequences per generate call
    max_prompts: int | None = None  # the first N prompts only
    seed: int = 0
    round: int = 1
    pool: Any = None                # candidates.jsonl files of earlier rounds to select over too
    rescore_pool: bool = True       # score pooled candidates with this round's reward model
    reuse: bool = False             # an existing out_dir/candidates.jsonl is reused: no generation
    ks: Any = None                  # K values for the report; default 1, 2, 4, ... up to k
    device: str = "auto"            # auto | cpu | cuda


def load_sample_config(source) -> SampleConfig:
    """A SampleConfig from a YAML path or a dict; unknown keys are one-line errors."""
    if isinstance(source, SampleConfig):
        return source
    data, where = read_config_source(source)
    cfg = build_config(SampleConfig, data, where)
    if cfg.k < 1 or cfg.keep < 1 or cfg.keep > cfg.k * max(1, len(policy_specs(cfg))):
        raise CurateError(f"{where}: need k >= 1 and 1 <= keep <= k * policies")
    return cfg


def policy_specs(cfg: SampleConfig) -> list[dict]:
    """``[{name, path, tokenizer}]`` from ``policies`` or ``policy``; names default to the directory name."""
    raw = cfg.policies if cfg.policies is not None else ([cfg.policy] if cfg.policy else [])
    specs = []
    for p in raw:
        p = {"path": p} if isinstance(p, str) else dict(p)
        if "path" not in p or set(p) - {"name", "path", "tokenizer"}:
            raise CurateError(f"policies: each entry needs 'path' (and optional 'name', 'tokenizer'), got {p}")
        specs.append({"name": p.get("name") or Path(p["path"]).name, "path": p["path"], "tokenizer": p.get("tokenizer")})
    if not specs:
        raise CurateError("config: give 'policy' or 'policies'")
    if len({s["name"] for s in specs}) != len(specs):
        raise CurateError("policies: names must differ")
    return specs


def load_policy(path, device=None):
    """A Llama from our directory, a run directory (newest checkpoint) or a Hugging Face one."""
    path = Path(path)
    ckpt = latest_checkpoint(path) if not (path / "config.json").is_file() else None
    model = load_model(ckpt or path)
    return model.to(device) if device is not None else model


def load_tokenizer_for(spec: dict, default: str | None):
    """The policy's tokenizer: its own ``tokenizer``, else one in its directory, else ``default``."""
    path = Path(spec["path"])
    here = [path / n for n in ("tokenizer.model", "tokenizer.json") if (path / n).is_file()]
    chosen = spec.get("tokenizer") or (here[0] if here else default)
    if chosen is None:
        raise CurateError(f"{spec['name']}: no tokenizer in {path}; set 'tokenizer' in the config")
    if not Path(chosen).exists():
        raise CurateError(f"{spec['name']}: no such tokenizer: {chosen}")
    return Tokenizer.from_file(chosen)


# --------------------------------------------------------------------------- prompts

def prompt_of(example) -> list[dict] | None:
    """The prompt messages of a conversation (a final assistant turn dropped); None if there is no user turn."""
    msgs = example.get("messages") if isinstance(example, dict) else example
    if not isinstance(msgs, list) or not msgs:
        return None
    if isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
        msgs = msgs[:-1]
    return msgs if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user" else None


def prompt_id(prompt: list[dict]) -> str:
    """A stable id for a prompt (so rounds and runs pool by prompt): sha1 of its canonical JSON."""
    return hashlib.sha1(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def encode_prompt(prompt: list[dict], tokenizer, template: str, max_len: int) -> list[int]:
    """Token ids the model continues with an answer: the template's prompt segments. Longer than
    ``max_len``: BOS and the last tokens are kept. Raises ValueError for a malformed prompt."""
    ids = prompt_ids({"messages": prompt + [{"role": "assistant", "content": "x"}]}, tokenizer, template)
    return ids if len(ids) <= max_len else ids[:1] + ids[len(ids) - max_len + 1:]


# --------------------------------------------------------------------------- generate and score

def generate_candidates(model, tokenizer, prompts: list[list[dict]], k: int, *, name: str = "policy",
                        template: str = "llama2", temperature: float = 1.0, top_p: float = 0.9,
                        max_new_tokens: int = 128, batch_size: int = 32, seed: int = 0, round: int = 1,
                        skipped: list | None = None) -> list[dict]:
    """K answers per prompt from ``model``. Each generate call holds ``batch_size // k`` prompts
    (at least one) times K copies; call ``c`` samples with seed ``SeedSequence([seed, round, c])``,
    so a run is reproducible and rounds draw differently. Rows: prompt_id, prompt, model, round,
    sample (0..k-1), seed, answer, new_tokens, finished (ended with EOS). A prompt the template
    rejects gets no rows; ``(prompt_id, reason)`` is appended to ``skipped`` when given."""
    per_call = max(1, batch_size // k)
    room = model.cfg.max_seq_len - max_new_tokens
    if room < 2:
        raise CurateError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in {name}'s "
                          f"context of {model.cfg.max_seq_len} tokens")
    encoded = []
    for p in prompts:
        try:
            encoded.append((p, encode_prompt(p, tokenizer, template, room)))
        except ValueError as e:
            if skipped is not None:
                skipped.append((prompt_id(p), f"{name}: {e}"))
    rows = []
    for c in range(0, len(encoded), per_call):
        chunk = encoded[c: c + per_call]
        call_seed = int(np.random.SeedSequence([seed, round, c // per_call]).generate_state(1)[0])
        outs = generate(model, [ids for _, ids in chunk for _ in range(k)], max_new_tokens, temperature,
                        top_p, call_seed, tokenizer.eos_id)
        for i, (prompt, _) in enumerate(chunk):
            for j in range(k):
                new = outs[i * k + j]
                finished = bool(new) and new[-1] == tokenizer.eos_id
                rows.append({"prompt_id": prompt_id(prompt), "prompt": prompt, "model": name, "round": round,
                             "sample": j, "seed": call_seed, "answer": tokenizer.decode(new),
                             "new_tokens": len(new), "finished": finished})
    return rows


def score_candidates(rows: list[dict], rm, tokenizer, batch_size: int = 16) -> list[dict]:
    """Set each row's ``reward`` (NaN when the conversation cannot be encoded) in place; returns rows."""
    rewards = score(rm, tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows], batch_size=batch_size)
    for r, v in zip(rows, rewards):
        r["reward"] = v
    return rows


def write_jsonl(path, rows: list[dict]) -> None:
    """Write rows atomically (a temporary file renamed into place). NaN rewards are written as null."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            if isinstance(r.get("reward"), float) and math.isnan(r["reward"]):
                r = {**r, "reward": None}
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def read_candidates(paths) -> list[dict]:
    """Rows of one or more candidates.jsonl files, in order. A null reward reads as NaN."""
    rows = []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        if not Path(path).is_file():
            raise CurateError(f"no such candidates file: {path}")
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise CurateError(f"{path}:{n}: not valid JSON") from None
                row["reward"] = float("nan") if row.get("reward") is None else float(row["reward"])
                rows.append(row)
    return rows


# --------------------------------------------------------------------------- selection

def select(rows: list[dict], keep: int = 1) -> list[dict]:
    """The ``keep`` best distinct answers per prompt, by reward (ties: earlier round, model name,
    sample index). Unscored (NaN) candidates are never kept. Prompts come out in order of first
    appearance; each kept row gains ``rank`` (0 = best) and ``candidates`` (how many it beat)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r)
    out = []
    for group in groups.values():
        scored = sorted((r for r in group if not math.isnan(r["reward"])),
                        key=lambda r: (-r["reward"], r["round"], r["model"], r["sample"]))
        seen: set[str] = set()
        for r in scored:
            if len(seen) == keep:
                break
            if r["answer"] not in seen:
                seen.add(r["answer"])
                out.append({**r, "rank": len(seen) - 1, "candidates": len(group)})
    return out


def to_sft_rows(selected: list[dict], source: str = "rejection_sampling", extra: dict | None = None) -> list[dict]:
    """Selected rows as SFT records in the annotations' canonical layout (a Document's id, text
    and meta flattened: kind "sft", messages, vendor, annotator = the policy, ...), with
    ``provenance``: model, round, sample, seed, reward, rank, candidates, plus ``extra``."""
    out = []
    for i, r in enumerate(selected):
        conv = SFTConversation(messages=r["prompt"] + [{"role": "assistant", "content": r["answer"]}],
                               vendor=source, annotator=r["model"], source=source, line=i)
        doc = to_document(conv)
        prov = {k: r[k] for k in ("prompt_id", "model", "round", "sample", "seed", "reward", "rank", "candidates")}
        out.append({"id": doc.id, "text": doc.text, **doc.meta, "provenance": {**prov, **(extra or {})}})
    return out


def select_from_files(paths, out_path, keep: int = 1) -> list[dict]:
    """Rerun selection on saved candidates (no generation) and write the SFT rows to ``out_path``."""
    rows = to_sft_rows(select(read_candidates(paths), keep))
    write_jsonl(out_path, rows)
    return rows


# --------------------------------------------------------------------------- report

def expected_max(values: np.ndarray, k: int) -> float:
    """E[max of k values drawn without replacement from ``values``]: with values sorted ascending,
    the i-th (1-based) is the maximum with probability C(i-1, k-1) / C(n, k)."""
    v = np.sort(values)
    n = len(v)
    weights = np.array([math.comb(i - 1, k - 1) for i in range(1, n + 1)], dtype=np.float64) / math.comb(n, k)
    return float(weights @ v)


def best_of_k_curves(rows: list[dict], ks: list[int]) -> dict[str, dict]:
    """Per model, for each K: ``max`` (mean over prompts of the expected best reward of K samples,
    exact over K-subsets), ``median`` (mean over prompts of the median of samples 0..K-1) and
    ``gain`` (max at K minus the mean single-sample reward). Only prompts with every sample scored count."""
    by_model: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {}).setdefault(r["prompt_id"], []).append((r["sample"], r["reward"]))
    curves = {}
    for model, prompts in by_model.items():
        samples = [np.array([v for _, v in sorted(s)]) for s in prompts.values()]
        samples = [s for s in samples if not np.isnan(s).any()]
        n = min((len(s) for s in samples), default=0)
        model_ks = [k for k in ks if 1 <= k <= n]
        if not model_ks:
            continue
        single = float(np.mean([s.mean() for s in samples]))
        mx = [float(np.mean([expected_max(s, k) for s in samples])) for k in model_ks]
        med = [float(np.mean([np.median(s[:k]) for s in samples])) for k in model_ks]
        curves[model] = {"k": model_ks, "max": mx, "median": med, "gain": [m - single for m in mx],
                         "prompts": len(samples), "mean_reward": single}
    return curves


def plot_curves(curves: dict, path) -> None:
    """Max (solid) and median (dashed) reward against K, one colour per model, log2 x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (model, c) in enumerate(curves.items()):
        colour = f"C{i}"
        ax.plot(c["k"], c["max"], "-o", color=colour, label=f"{model}: max")
        ax.plot(c["k"], c["median"], "--", color=colour, label=f"{model}: median")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K (samples per prompt)")
    ax.set_ylabel("reward (mean over prompts)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_html(report: dict) -> str:
    """A small page: the plot and one table per model of K, max, median and gain (all data escaped)."""
    e = html.escape
    parts = [f"<html><head><meta charset='utf-8'><title>Rejection sampling</title></head><body>",
             f"<h1>Rejection sampling, round {e(str(report['round']))}</h1>",
             f"<p>{report['prompts']} prompts, {report['candidates']} candidates, {report['kept']} kept; "
             f"reward model {e(str(report['reward_model']))}</p>", "<img src='reward_vs_k.png'>"]
    for model, c in report["curves"].items():
        parts.append(f"<h2>{e(model)}</h2><table border=1><tr><th>K</th><th>max</th><th>median</th><th>gain</th></tr>")
        parts += [f"<tr><td>{k}</td><td>{m:.4f}</td><td>{d:.4f}</td><td>{g:+.4f}</td></tr>"
                  for k, m, d, g in zip(c["k"], c["max"], c["median"], c["gain"])]
        parts.append("</table>")
    return "\n".join(parts + ["</body></html>"])


# --------------------------------------------------------------------------- the command

def run_sampling(cfg, log=print) -> dict:
    """``curate sample``: generate (or reuse), score, pool, select, write, report. Returns the report."""
    cfg = load_sample_config(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(resolve_device(cfg.device))
    rm_dir = Path(cfg.reward_model)
    rm = RewardModel.load(rm_dir, device=device)
    rm_tok = Tokenizer.from_file(rm_dir)
    cand_path = out / "candidates.jsonl"
    pool_paths = [cfg.pool] if isinstance(cfg.pool, str) else list(cfg.pool or [])
    if any(Path(p).resolve() == cand_path.resolve() for p in pool_paths):
        raise CurateError(f"pool: {cand_path} is this round's own output; give each round its own out_dir")
    if cfg.reuse and cand_path.is_file():
        rows = read_candidates(cand_path)
        log(f"reusing {len(rows)} candidates from {cand_path}")
    else:
        examples = load_examples(cfg.prompts)
        prompts = [p for p in (prompt_of(x) for x in examples) if p is not None]
        skipped = len(examples) - len(prompts)
        prompts = prompts[: cfg.max_prompts] if cfg.max_prompts else prompts
        if not prompts:
            raise CurateError(f"{cfg.prompts}: no prompts (conversations with a user turn)")
        if skipped:
            log(f"{skipped} records have no user turn to answer: not sampled")
        rows, skipped_prompts = [], []
        for spec in policy_specs(cfg):
            model = load_policy(spec["path"], device)
            tok = load_tokenizer_for(spec, cfg.tokenizer)
            if tok.vocab_size > model.cfg.vocab_size:
                raise CurateError(f"{spec['name']}: tokenizer has {tok.vocab_size} tokens, the model's "
                                  f"vocabulary {model.cfg.vocab_size}: not this model's tokenizer")
            log(f"{spec['name']}: {len(prompts)} prompts x {cfg.k} samples")
            rows += generate_candidates(model, tok, prompts, cfg.k, name=spec["name"], template=cfg.template,
                                        temperature=cfg.temperature, top_p=cfg.top_p,
                                        max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                                        seed=cfg.seed, round=cfg.round, skipped=skipped_prompts)
            del model
        if skipped_prompts:
            log(f"{len(skipped_prompts)} prompts the template rejects, not sampled; first: {skipped_prompts[0][1]}")
            write_jsonl(out / "skipped_prompts.jsonl", [{"prompt_id": i, "reason": r} for i, r in skipped_prompts])
        score_candidates(rows, rm, rm_tok)
        write_jsonl(cand_path, rows)
    pooled = read_candidates(pool_paths) if pool_paths else []
    if pooled and cfg.rescore_pool:
        score_candidates(pooled, rm, rm_tok)
    selected = select(pooled + rows, cfg.keep)
    extra = {"reward_model": str(rm_dir), "k": cfg.k, "temperature": cfg.temperature, "top_p": cfg.top_p}
    write_jsonl(out / "selected.jsonl", to_sft_rows(selected, extra=extra))
    ks = cfg.ks or [2 ** i for i in range(int(math.log2(cfg.k)) + 1)]
    curves = best_of_k_curves(rows, sorted(set(ks)))
    report = {"round": cfg.round, "prompts": len({r["prompt_id"] for r in rows}), "candidates": len(rows),
              "pooled": len(pooled), "kept": len(selected), "unscored": sum(math.isnan(r["reward"]) for r in rows),
              "reward_model": str(rm_dir), "curves": curves, "config": asdict(cfg),
              "kept_from": {m: sum(r["model"] == m for r in selected) for m in sorted({r["model"] for r in selected})}}
    write_json(out / "report.json", report, indent=1)
    if curves:
        plot_curves(curves, out / "reward_vs_k.png")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    for model, c in curves.items():
        log(f"{model}: mean reward {c['mean_reward']:.4f}; best-of-{c['k'][-1]} gain {c['gain'][-1]:+.4f}")
    return report
