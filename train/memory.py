"""How much memory a training run needs, from the shapes alone, before anything is allocated.

    estimate_memory(cfg, method, batch_size, seq_len, ...) -> MemoryEstimate
    device_memory(device) -> bytes the device has (GPU memory, or the machine's RAM for CPU)
    check_fits(estimate, budget, ...) raises CurateError naming what to change
    largest_batch(cfg, method, seq_len, budget, ...) -> the biggest micro-batch that fits

Counts (bytes):
* full fine-tuning: float32 weights (4/param), gradients (4), AdamW's two moments (8);
* lora: the frozen base in its own dtype (2 on a GPU: bf16; 4 on CPU), and for the adapters
  weights + gradients + moments (16/param);
* activations saved for the backward pass, per token per layer: the block input and norm outputs,
  q, k, v, the attention output (4 dim + 2 kv), the SwiGLU's two projections, their product and
  the activation (2 dim + 4 hidden), in bf16 on a GPU (float32 on CPU); a dense-mask attention
  (CPU) also keeps the n_heads x seq_len scores. Activation checkpointing keeps one dim per layer
  plus one layer's worth;
* logits: batch x seq x vocab at 10 bytes (bf16 logits, their float32 copy for the loss, its gradient);
* 1 GiB of CUDA context and allocator slack on a GPU.
It is an estimate from these counts (benchmarks/compare_gpu.py prints it beside the measured peak
on a GPU); the check leaves 10% headroom.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from curate.basics.errors import CurateError
from train.model import LlamaConfig

GB = 1e9
CUDA_OVERHEAD = 2 ** 30


@dataclass
class MemoryEstimate:
    """Bytes per part; ``total`` adds them up."""

    method: str
    batch_size: int
    seq_len: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.activations + self.logits
                + self.overhead)

    def describe(self, budget: int | None = None) -> str:
        """One line: the total and each part, and the device's memory when given."""
        parts = ", ".join(f"{k} {size(getattr(self, k))}" for k in
                          ("weights", "gradients", "optimizer", "activations", "logits", "overhead"))
        where = f" of {size(budget)}" if budget else ""
        return (f"memory estimate ({self.method}, batch {self.batch_size} x seq {self.seq_len}): "
                f"{size(self.total)}{where} = {parts}")


def size(n: float) -> str:
    """Bytes as GB (or MB below 1 GB), decimal units."""
    return f"{n / GB:.2f} GB" if n >= GB else f"{n / 1e6:.1f} MB"


def lora_param_count(cfg: LlamaConfig, rank: int, targets) -> int:
    """Adapter parameters: rank * (in + out) per adapted projection per layer."""
    kv = cfg.kv_heads * cfg.head_dim
    shapes = {"q": (cfg.dim, cfg.dim), "k": (cfg.dim, kv), "v": (cfg.dim, kv), "o": (cfg.dim, cfg.dim),
              "gate": (cfg.dim, cfg.hidden_dim), "up": (cfg.dim, cfg.hidden_dim), "down": (cfg.hidden_dim, cfg.dim)}
    return cfg.n_layers * sum(rank * sum(shapes[t.removesuffix("_proj")]) for t in targets)


def estimate_memory(cfg: LlamaConfig, method: str = "full", batch_size: int = 8, seq_len: int = 512,
                    gpu: bool = True, lora_rank: int = 8, lora_targets=("q", "k", "v", "o"),
                    activation_checkpointing: bool = False) -> MemoryEstimate:
    """Memory of one training run of a ``cfg``-shaped model; ``gpu``: bf16 activations and frozen
    base, flash/flex attention and CUDA overhead; else float32 and a dense attention mask."""
    if method not in ("full", "lora"):
        raise CurateError(f"method {method!r}: choose full or lora")
    n = cfg.num_params()
    act_bytes = 2 if gpu else 4
    if method == "full":
        weights, trainable = 4 * n, n
    else:
        trainable = lora_param_count(cfg, lora_rank, lora_targets)
        weights = act_bytes * n + 4 * trainable
    kv = cfg.kv_heads * cfg.head_dim
    per_layer = 6 * cfg.dim + 2 * kv + 4 * cfg.hidden_dim + (0 if gpu else 2 * cfg.n_heads * seq_len)
    tokens = batch_size * seq_len
    if activation_checkpointing:
        act = tokens * (cfg.n_layers * cfg.dim + per_layer) * act_bytes
    else:
        act = tokens * cfg.n_layers * per_layer * act_bytes
    return MemoryEstimate(method, batch_size, seq_len, weights, 4 * trainable, 8 * trainable, act,
                          tokens * cfg.vocab_size * 10, CUDA_OVERHEAD if gpu else 0)


ASSUMED_MFU = 0.3  # for time estimates only: what per-block compiled bf16 training reaches on H100-class GPUs


def estimate_seconds(cfg: LlamaConfig, method: str, tokens: int, seq_len: int, peak_flops: float,
                     mfu: float = ASSUMED_MFU) -> float:
    """Seconds to train on ``tokens`` tokens at ``mfu`` of ``peak_flops`` (FLOP/s): Llama's training
    FLOPs per token, 6N (full) or 4N (LoRA: no weight gradients) plus 12 * layers * dim * seq_len."""
    per_token = ((6 if method == "full" else 4) * cfg.num_params(exclude_embeddings=True)
                 + 12 * cfg.n_layers * cfg.dim * seq_len)
    return tokens * per_token / (peak_flops * mfu)


def device_memory(device) -> int:
    """Total bytes of ``device``: the GPU's memory, or the machine's physical RAM for CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def largest_batch(cfg: LlamaConfig, method: str, seq_len: int, budget: int, **kw) -> int:
    """The biggest micro-batch (sequences of ``seq_len``) whose estimate fits in 90% of ``budget``; 0 if none."""
    fits = lambda b: estimate_memory(cfg, method, b, seq_len, **kw).total <= 0.9 * budget  # noqa: E731
    lo, hi = 0, 1
    while fits(hi) and hi < 1 << 20:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def check_fits(est: MemoryEstimate, budget: int, cfg: LlamaConfig, **kw) -> None:
    """Raise a one-line CurateError when ``est`` exceeds 90% of ``budget``, naming what to change:
    a smaller batch_size (the largest that fits), shorter seq_len, method: lora, activation
    checkpointing, or (when weights and optimizer state alone do not fit) LoRA or FSDP."""
    if est.total <= 0.9 * budget:
        return
    hints = []
    fixed = est.weights + est.gradients + est.optimizer + est.overhead
    if fixed > 0.9 * budget:  # no batch fits: the model and its optimizer state alone are too big
        hints.append("method: lora" if est.method == "full" else "a smaller model")
        hints.append("distributed: fsdp across several GPUs")
    else:
        b = largest_batch(cfg, est.method, est.seq_len, budget, **kw)
        hints.append(f"batch_size {b} (with grad_accum to keep the batch)" if b else "a shorter seq_len")
        if est.method == "full":
            hints.append("method: lora")
        if not kw.get("activation_checkpointing"):
            hints.append("activation_checkpointing: true")
    raise CurateError(f"training will not fit: needs ~{size(est.total)}, the device has "
                      f"{size(budget)}; try {', or '.join(hints) or 'a smaller model'}")
