"""Architecture ablations at equal parameter count (``curate ablate arch CONFIG``).

As in Llama 2's appendix A.2.1: multi-head attention (MHA), grouped-query attention (GQA, fewer
key/value heads, each shared by a group of query heads) and multi-query attention (MQA, one KV
head), with the SwiGLU width raised so that every variant has the parameters of the MHA model.
Each variant is pretrained the same way on the same token shards over paired seeds (seed i: the
same data order for every variant) and scored per held-out window, so variants are compared with
the paired bootstrap of :mod:`experiments.stats`. For inference it reports KV-cache bytes per
token, decode tokens/s at several batch sizes and context lengths, and the largest batch that fits
a memory budget.

Config (YAML, paths relative to it)::

    model: {dim: 256, n_layers: 4, n_heads: 8, vocab_size: 32000, multiple_of: 32, max_seq_len: 512}
    kv_heads: [8, 2, 1]          # first = baseline; n_heads is MHA, 1 is MQA
    shards: out/shards           # token shards (`curate shards tokenize`), or:
    text: [../data/c4_demo.jsonl] # .jsonl / .txt / .parquet, tokenized with `tokenizer`
    tokenizer: tok.model
    seeds: 3
    val_fraction: 0.05
    train: {steps: 200, batch_size: 8, seq_len: 256, lr: 1.0e-3, warmup_steps: 20}
    inference: {batch_sizes: [1, 8, 32], contexts: [128, 512], new_tokens: 32, memory_gib: 16}
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.basics.device import resolve_device
from curate.basics.errors import CurateError
from curate.basics.files import write_json
from curate.basics.texts import read_texts
from experiments import stats
from experiments.report import write_ablation_report
from experiments.compare.arms import fingerprint
from experiments.harness import Grid, safe_name
from train.api import doc_losses
from train.config import PretrainConfig, TrainConfig, load_config
from train.data import TokenWindows, tokenize_shards
from train.model import Llama, LlamaConfig, get_config
from train.run import pretrain
from train.tokenizer import Tokenizer

# --------------------------------------------------------------------------- variants

def variant_name(cfg: LlamaConfig) -> str:
    if cfg.kv_heads == cfg.n_heads:
        return f"MHA ({cfg.n_heads} kv heads)"
    if cfg.kv_heads == 1:
        return "MQA (1 kv head)"
    return f"GQA ({cfg.kv_heads} kv heads)"


def equal_param_variant(base: LlamaConfig, kv_heads: int, ffn_multiple: int = 1) -> LlamaConfig:
    """``base`` with ``kv_heads`` key/value heads and the SwiGLU width changed by the attention
    parameters that saves (2 * dim * (n_heads - kv_heads) * head_dim per layer, spread over the
    three FFN matrices of dim x hidden), rounded to ``ffn_multiple`` (default 1: exact)."""
    if base.n_heads % kv_heads:
        raise CurateError(f"kv_heads {kv_heads} does not divide n_heads {base.n_heads}")
    ref = replace(base, n_kv_heads=None)
    saved = 2 * ref.dim * (ref.n_heads - kv_heads) * ref.head_dim
    hidden = ref.hidden_dim + saved / (3 * ref.dim)
    hidden = max(ffn_multiple, int(round(hidden / ffn_multiple)) * ffn_multiple)
    return replace(base, n_kv_heads=kv_heads, ffn_hidden_dim=hidden)


def variants(base: LlamaConfig, kv_heads: list[int], ffn_multiple: int = 1) -> dict[str, LlamaConfig]:
    """Name -> config for each KV head count, all at the parameter count of ``base`` as MHA."""
    out = {}
    for kv in kv_heads:
        cfg = equal_param_variant(base, int(kv), ffn_multiple)
        out[variant_name(cfg)] = cfg
    return out


def kv_bytes_per_token(cfg: LlamaConfig, dtype=torch.bfloat16) -> int:
    """Bytes of keys + values one token of one sequence holds in the cache:
    2 (K and V) * n_layers * kv_heads * head_dim * bytes per element."""
    return 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * torch.empty((), dtype=dtype).element_size()


def mha_from_gqa(model: Llama) -> Llama:
    """The multi-head model that computes exactly what a grouped-query ``model`` does: each KV
    head's wk / wv rows copied to every query head of its group (query head h uses KV head
    h // (n_heads / kv_heads)). Used to check the grouping against plain MHA."""
    cfg = model.cfg
    group = cfg.n_heads // cfg.kv_heads
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, w in model.state_dict().items():
        if name.endswith(("attention.wk.weight", "attention.wv.weight")):
            heads = w.view(cfg.kv_heads, cfg.head_dim, cfg.dim)
            state[name] = heads.repeat_interleave(group, dim=0).reshape(cfg.n_heads * cfg.head_dim, cfg.dim)
    return Llama.from_state_dict(replace(cfg, n_kv_heads=None), state)


# --------------------------------------------------------------------------- inference

@torch.inference_mode()
def decode_speed(model: Llama, batch_size: int, context: int, new_tokens: int, seed: int = 0,
                 repeats: int = 1) -> dict:
    """Prefill ``context`` random tokens for ``batch_size`` sequences, then decode ``new_tokens``
    greedy steps with the KV cache. Returns prefill and decode tokens/s (the best of ``repeats``)
    and the bytes the cache allocated."""
    device = model.output.weight.device
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.cfg.vocab_size, (batch_size, context), generator=gen).to(device)
    best = {"prefill_tokens_per_s": 0.0, "decode_tokens_per_s": 0.0}
    model.eval()
    for _ in range(repeats):
        cache = model.new_cache(batch_size, context + new_tokens)
        t0 = _now(device)
        nxt = model(prompt, cache=cache)[:, -1].argmax(-1, keepdim=True)
        t1 = _now(device)
        for _ in range(new_tokens):
            nxt = model(nxt, cache=cache)[:, -1].argmax(-1, keepdim=True)
        t2 = _now(device)
        best["prefill_tokens_per_s"] = max(best["prefill_tokens_per_s"], batch_size * context / (t1 - t0))
        best["decode_tokens_per_s"] = max(best["decode_tokens_per_s"], batch_size * new_tokens / (t2 - t1))
    best["cache_bytes"] = cache.nbytes()
    return best


def _now(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def memory_per_sequence(cfg: LlamaConfig, context: int, new_tokens: int, dtype=torch.bfloat16) -> int:
    """Estimated bytes one more sequence adds at the peak of generation (the prefill): its KV cache
    for context + new_tokens, the prefill logits [context, vocab], and the widest per-layer
    activations (SwiGLU gate and up [context, hidden], the repeated K/V [context, n_heads*head_dim]
    each, the residual stream and its norm), all in ``dtype``."""
    item = torch.empty((), dtype=dtype).element_size()
    cache = kv_bytes_per_token(cfg, dtype) * (context + new_tokens)
    activations = context * (cfg.vocab_size + 3 * cfg.hidden_dim + 2 * cfg.n_heads * cfg.head_dim + 4 * cfg.dim) * item
    return cache + activations


def max_batch(cfg: LlamaConfig, budget_bytes: float, context: int, new_tokens: int, dtype=torch.bfloat16) -> int:
    """Largest batch whose weights + per-sequence memory (:func:`memory_per_sequence`) fit ``budget_bytes``."""
    item = torch.empty((), dtype=dtype).element_size()
    free = budget_bytes - cfg.num_params() * item
    return max(0, int(free // memory_per_sequence(cfg, context, new_tokens, dtype)))


def measured_max_batch(model: Llama, budget_bytes: float, context: int, new_tokens: int,
                       probe: tuple[int, int] = (1, 4)) -> int | None:
    """On CUDA: peak allocated memory of a generation at two batch sizes, fitted as a + b * batch
    (memory is linear in the batch), solved for the budget. None on other devices."""
    device = model.output.weight.device
    if device.type != "cuda":
        return None
    peaks = []
    for b in probe:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        decode_speed(model, b, context, min(new_tokens, 4))
        peaks.append(torch.cuda.max_memory_allocated(device))
    slope = (peaks[1] - peaks[0]) / (probe[1] - probe[0])
    fixed = peaks[0] - slope * probe[0]
    return max(0, int((budget_bytes - fixed) // slope)) if slope > 0 else None


def inference_report(cfg: LlamaConfig, batch_sizes: list[int], contexts: list[int], new_tokens: int,
                     memory_gib: float, device: str | None = None, seed: int = 0) -> dict:
    """KV bytes per token, decode speed per (batch, context) and the largest batch per context for
    a model of shape ``cfg`` with random weights (speed does not depend on the values)."""
    dev = torch.device(resolve_device(device))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(dev):  # initialised where it runs: a 7B model's init on a CPU takes minutes
        model = Llama(cfg).to(dtype)
    speed = []
    for ctx in contexts:
        for b in batch_sizes:
            if ctx + new_tokens > cfg.max_seq_len:
                raise CurateError(f"context {ctx} + {new_tokens} new tokens exceeds max_seq_len {cfg.max_seq_len}")
            r = decode_speed(model, b, ctx, new_tokens, seed, repeats=2)
            speed.append({"batch": b, "context": ctx, **r})
    budget = memory_gib * 2 ** 30
    fits = [{"context": ctx, "estimated": max_batch(cfg, budget, ctx, new_tokens, dtype),
             "measured": measured_max_batch(model, budget, ctx, new_tokens)} for ctx in contexts]
    return {"device": str(dev), "dtype": str(dtype).removeprefix("torch."),
            "kv_bytes_per_token": kv_bytes_per_token(cfg, dtype),
            "kv_bytes_per_token_bf16": kv_bytes_per_token(cfg, torch.bfloat16),
            "speed": speed, "memory_gib": memory_gib, "max_batch": fits}


# --------------------------------------------------------------------------- training

@dataclass
class InferenceSettings:
    batch_sizes: Any = field(default_factory=lambda: [1, 8, 32])
    contexts: Any = field(default_factory=lambda: [128, 512])
    new_tokens: int = 32
    memory_gib: float = 16.0
    device: str | None = None


@dataclass
class ArchConfig:
    model: Any = "small"                 # a CONFIGS name or a dict of LlamaConfig fields
    kv_heads: Any = None                 # list; default [n_heads, 8 (if it divides), 1]
    ffn_multiple: int = 1
    shards: str | None = None            # token shard directory, or `text` + `tokenizer`
    text: Any = None
    tokenizer: str | None = None
    out: str | None = None
    seeds: int = 3
    val_fraction: float = 0.05
    n_boot: int = 2000
    inference: Any = None                # InferenceSettings fields; null skips the inference part
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=200, batch_size=8, seq_len=256, lr=1e-3, warmup_steps=20, eval_every=50, ckpt_every=0, log_every=50))


def load_arch_config(path) -> ArchConfig:
    """An ArchConfig from YAML; relative paths resolve against the file's folder."""
    path = Path(path)
    cfg = load_config(path, ArchConfig)
    base = path.parent
    for key in ("shards", "tokenizer", "out"):
        if getattr(cfg, key):
            setattr(cfg, key, str((base / getattr(cfg, key)).resolve()))
    if cfg.text:
        texts = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text)
        cfg.text = [str((base / t).resolve()) for t in texts]
    return cfg


def base_config(cfg: ArchConfig) -> LlamaConfig:
    try:
        return get_config(cfg.model, n_kv_heads=None)
    except (ValueError, TypeError) as e:
        raise CurateError(f"model: {e}") from None


def prepare_shards(cfg: ArchConfig, out: Path) -> Path:
    """The token shard directory: ``cfg.shards``, or ``cfg.text`` tokenized into ``out/shards`` once."""
    if cfg.shards:
        return Path(cfg.shards)
    if not (cfg.text and cfg.tokenizer):
        raise CurateError("arch config: give `shards`, or `text` and `tokenizer`")
    target = out / "shards"
    if not (target / "index.json").is_file():
        write_text_shards(cfg.text, cfg.tokenizer, target)
    return target


def write_text_shards(paths: list[str], tokenizer: str, target: Path) -> dict:
    """Tokenize texts from .parquet / .jsonl (field ``text``) / plain text files (one per line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / "texts.parquet"
    pq.write_table(pa.table({"text": list(read_texts(paths, "text"))}), staging)
    return tokenize_shards([staging], Tokenizer.from_file(tokenizer), target)


def window_losses(model: Llama, windows, batch_size: int = 16) -> list[float]:
    """Mean next-token loss (nats) of every held-out window of a :class:`train.data.TokenWindows`."""
    return [round(x, 6) for x in doc_losses(model, windows.val_tokens(), batch_size)]


def train_variant(name: str, model_cfg: LlamaConfig, shards: Path, cfg: ArchConfig, seed: int, run_dir: Path) -> dict:
    """Pretrain one variant at one seed (resumable through train.run.pretrain) and score it."""
    tc = replace(cfg.train, ckpt_every=0)
    result = pretrain(PretrainConfig(run_dir=str(run_dir), shards=str(shards), model=asdict(model_cfg), seed=seed,
                                     val_fraction=cfg.val_fraction, train=tc), quiet=True)
    windows = TokenWindows(shards, tc.seq_len, tc.batch_size, seed, cfg.val_fraction)
    tokens_per_step = tc.batch_size * tc.grad_accum * tc.seq_len
    return {"variant": name, "seed": seed, "steps": result.steps, "tokens": result.tokens,
            "val_curve": [[s * tokens_per_step, round(v, 5)] for s, v in result.val_losses],
            "heldout_loss": window_losses(result.model, windows, tc.batch_size)}


def run_arch(cfg: ArchConfig, out: str | Path | None = None, quiet: bool = True) -> dict:
    """Everything `curate ablate arch` does; writes arch.json, arch.html and figures in ``out``."""
    out = Path(out or cfg.out or "out/ablate_arch")
    out.mkdir(parents=True, exist_ok=True)
    shards = prepare_shards(cfg, out)
    base = base_config(cfg)
    if isinstance(cfg.model, dict) and "vocab_size" not in cfg.model:  # size the embeddings to the tokenizer
        base = replace(base, vocab_size=json.loads((shards / "index.json").read_text())["vocab_size"])
    kv = cfg.kv_heads or [base.n_heads] + ([8] if base.n_heads % 8 == 0 and base.n_heads > 8 else []) + [1]
    specs = variants(base, list(kv), cfg.ffn_multiple)
    result = {"base": asdict(base), "variants": {}}
    ref = next(iter(specs.values()))
    for name, mcfg in specs.items():
        result["variants"][name] = {
            "config": asdict(mcfg), "kv_heads": mcfg.kv_heads, "ffn_hidden_dim": mcfg.hidden_dim,
            "params": mcfg.num_params(), "params_non_embedding": mcfg.num_params(exclude_embeddings=True),
            "params_vs_baseline": mcfg.num_params(exclude_embeddings=True) / ref.num_params(exclude_embeddings=True) - 1,
            "kv_bytes_per_token_bf16": kv_bytes_per_token(mcfg)}
    if cfg.seeds > 0 and cfg.train.steps > 0:
        plan = {"variants": {n: asdict(m) for n, m in specs.items()}, "train": asdict(cfg.train),
                "seeds": cfg.seeds, "val_fraction": cfg.val_fraction,
                "shards": fingerprint(json.loads((shards / "index.json").read_text()))}
        grid = Grid(out, plan, list(specs), cfg.seeds, label="ablate arch")
        runs = grid.run(lambda name, seed: train_variant(name, specs[name], shards, cfg, seed,
                                                         grid.path(name, seed).parent / f"run_{seed}"), quiet)
        losses = {n: np.array([r["heldout_loss"] for r in rs]) for n, rs in runs.items()}
        result["loss"] = stats.compare_arms(losses, higher_is_better=False, n_boot=cfg.n_boot)
        for name, rs in runs.items():
            v = result["variants"][name]
            v["val_curve"] = [[t, float(np.mean([r["val_curve"][i][1] for r in rs]))] for i, (t, _) in enumerate(rs[0]["val_curve"])]
            v["trained_tokens"] = rs[0]["tokens"]
    if cfg.inference is not None:
        inf = InferenceSettings(**(cfg.inference or {}))
        for name, mcfg in specs.items():
            if not quiet:
                print(f"[ablate arch] inference {name}", flush=True)
            path = out / "runs" / safe_name(name) / f"inference_{fingerprint(asdict(inf))}.json"
            if not path.is_file():
                write_json(path, inference_report(mcfg, list(inf.batch_sizes), list(inf.contexts),
                                                  inf.new_tokens, inf.memory_gib, inf.device), indent=None)
            result["variants"][name]["inference"] = json.loads(path.read_text())
    result["baseline"] = next(iter(specs))
    result["train"] = asdict(cfg.train)
    result["seeds"] = cfg.seeds
    write_ablation_report(result, out, kind="arch")
    return result
