"""The training loop and its parts: optimizer, schedule, one accumulated step, evaluation.

The parts are functions so that other trainers (SFT, reward models) reuse them:

* ``build_optimizer`` -- AdamW (betas 0.9/0.95, eps 1e-5, weight decay 0.1 on matrices only);
* ``lr_at`` / ``set_lr`` -- linear warmup, then cosine down to ``min_lr_ratio`` of the peak;
* ``train_step`` -- gradient accumulation over micro-batches and ranks, clipping, one update;
* ``evaluate`` -- token-weighted held-out loss;
* ``train_loop`` -- logging (terminal + JSONL), periodic eval, checkpoints, exact resume.

The loss of a step is the sum of per-token losses over every loss-bearing token
of every micro-batch on every rank, divided by the number of those tokens: each
token weighs the same however the batch is cut (a mean of per-micro-batch means
would not).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from train import distributed
from train.checkpoint import save_checkpoint
from train.config import TrainConfig
from train.sft import IGNORE

# Dense bf16 tensor-core peaks (FLOP/s) for MFU; substrings of torch.cuda.get_device_name().
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                 "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "4090": 165e12}


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on >=2-D weights (matmuls, embeddings) and none on norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = bool(params) and params[0].device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             fused=fused or None)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based ``step``: linear warmup to ``cfg.lr`` over
    ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast(device: torch.device, dtype: str = "auto"):
    """bf16 autocast on GPU (``dtype`` "auto" or "bf16"), nothing (fp32) otherwise."""
    if device.type == "cuda" and dtype in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lm_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy (nats) over targets != -100, and their count.
    ``batch``: ``inputs``, ``targets`` [B,T], optional ``positions``/``doc_ids`` (packed SFT)."""
    logits = model(batch["inputs"], positions=batch.get("positions"), doc_ids=batch.get("doc_ids"))
    targets = batch["targets"]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                           reduction="sum")
    return loss, (targets != IGNORE).sum()


def as_batch(b, device) -> dict[str, torch.Tensor]:
    """A batch dict on ``device`` from a dict or an ``(inputs, targets)`` pair."""
    b = b if isinstance(b, dict) else {"inputs": b[0], "targets": b[1]}
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def _no_sync(model, last: bool):
    if hasattr(model, "no_sync") and not last:  # DDP: reduce gradients once, after the last micro-batch
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def count_loss_tokens(micro_batches, world: distributed.World, device) -> torch.Tensor:
    """Loss-bearing tokens over all micro-batches and ranks (float64 scalar)."""
    n = sum(int((b["targets"] != IGNORE).sum()) for b in micro_batches)
    return distributed.all_reduce_sum(torch.tensor(float(n), dtype=torch.float64, device=device), world)


def train_step(model, optimizer, micro_batches: list[dict], world: distributed.World, cfg: TrainConfig,
               lr: float, loss_fn: Callable = lm_loss_sum) -> dict:
    """One optimizer update from this rank's ``micro_batches`` (dicts of tensors on the device).

    ``loss_fn(model, batch) -> (summed loss, count)``. Every micro-batch's summed loss is
    divided by the count over all micro-batches and ranks (and multiplied by the world
    size, because DDP/FSDP average gradients over ranks), so the gradient is that of the
    global token-mean loss. Clips to ``cfg.grad_clip`` and steps. Returns ``loss``
    (global token mean), ``tokens`` (loss-bearing, global), ``grad_norm`` and ``lr``.
    """
    device = world.device
    total = count_loss_tokens(micro_batches, world, device)
    scale = world.world_size / max(total.item(), 1.0)
    set_lr(optimizer, lr)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i, batch in enumerate(micro_batches):
        with _no_sync(model, i == len(micro_batches) - 1):
            with autocast(device, cfg.dtype):
                loss, _ = loss_fn(model, batch)
            (loss * scale).backward()
        loss_sum += loss.detach().double()
    grad_norm = torch.tensor(0.0)
    if cfg.grad_clip and cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    distributed.all_reduce_sum(loss_sum, world)
    return {"loss": loss_sum.item() / max(total.item(), 1.0), "tokens": int(total.item()),
            "grad_norm": float(grad_norm), "lr": lr}


@torch.no_grad()
def evaluate(model, batches, world: distributed.World, cfg: TrainConfig,
             loss_fn: Callable = lm_loss_sum) -> float:
    """Token-weighted mean loss over ``batches`` (an iterable of dicts), summed over ranks."""
    was_training = model.training
    model.eval()
    acc = torch.zeros(2, dtype=torch.float64, device=world.device)
    for batch in batches:
        batch = as_batch(batch, world.device)
        with autocast(world.device, cfg.dtype):
            loss, n = loss_fn(model, batch)
        acc += torch.stack([loss.double(), n.double()])
    distributed.all_reduce_sum(acc, world)
    model.train(was_training)
    return (acc[0] / acc[1]).item() if acc[1] > 0 else float("nan")


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)


def prepare_model(model, cfg: TrainConfig, world: distributed.World):
    """Move to the device; optional activation checkpointing and per-block
    ``torch.compile`` (state-dict names unchanged); DDP/FSDP2 under torchrun."""
    model.to(world.device)
    for block in getattr(model, "layers", []):
        if cfg.activation_checkpointing:
            inner = block.forward
            block.forward = lambda *a, _f=inner, **k: torch.utils.checkpoint.checkpoint(
                _f, *a, use_reentrant=False, **k)
        if cfg.compile:
            block.compile()
    bf16 = world.device.type == "cuda" and cfg.dtype in ("auto", "bf16")
    return distributed.wrap(model, world, cfg.distributed, bf16=bf16)


@dataclass
class LoopState:
    """What a run carries between steps and across resumes."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0


def train_loop(model, optimizer, data, cfg: TrainConfig, world: distributed.World, *,
               state: LoopState, run_dir: str | Path | None = None, val_batches: Callable | None = None,
               flops_per_token: float | None = None, ckpt_extra: Callable[[], dict] | None = None,
               loss_fn: Callable = lm_loss_sum, stop_after: int | None = None, quiet: bool = False) -> LoopState:
    """Run from ``state.step`` to ``cfg.steps``. ``data.next_batch()`` gives this rank's
    micro-batch (a dict, or an ``(inputs, targets)`` pair); ``val_batches()`` an iterable of
    held-out batches. Writes ``run_dir/metrics.jsonl`` and checkpoints (with
    ``data.state_dict()`` and ``ckpt_extra()``) when ``run_dir`` is given.
    ``stop_after``: return after that many steps of this call, checkpointed, as if
    the run had been killed just after a checkpoint."""
    metrics = open(Path(run_dir) / "metrics.jsonl", "a") if run_dir and world.is_main else None
    peak = peak_flops(world.device)
    started, t0, done = state.step, time.perf_counter(), 0

    def log(record: dict, line: str):
        if metrics:
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
        if world.is_main and not quiet:
            print(line, flush=True)

    def checkpoint():
        if run_dir:
            extra = {"data": data.state_dict(), "losses": state.losses, "val_losses": state.val_losses,
                     "tokens": state.tokens, **(ckpt_extra() if ckpt_extra else {})}
            save_checkpoint(run_dir, state.step, model, optimizer, extra, world.rank, cfg.keep_checkpoints)

    while state.step < cfg.steps:
        micro = [as_batch(data.next_batch(), world.device) for _ in range(cfg.grad_accum)]
        out = train_step(model, optimizer, micro, world, cfg, lr_at(state.step, cfg), loss_fn)
        state.step += 1
        done += 1
        state.losses.append(out["loss"])
        state.tokens += out["tokens"]
        if state.step % cfg.log_every == 0 or state.step == cfg.steps:
            if world.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            seq_tokens = sum(b["inputs"].numel() for b in micro) * world.world_size
            tps = seq_tokens * done / dt
            mfu = tps * flops_per_token / (peak * world.world_size) if peak and flops_per_token else None
            rec = {"step": state.step, "loss": out["loss"], "lr": out["lr"], "grad_norm": out["grad_norm"],
                   "tokens_per_s": tps, "mfu": mfu, "loss_tokens": state.tokens}
            log(rec, f"step {state.step}/{cfg.steps} | loss {out['loss']:.4f} | lr {out['lr']:.2e} | "
                     f"grad {out['grad_norm']:.2f} | {tps:,.0f} tok/s" + (f" | mfu {mfu:.1%}" if mfu else ""))
            t0, done = time.perf_counter(), 0
        last = state.step == cfg.steps
        if val_batches and ((cfg.eval_every and state.step % cfg.eval_every == 0) or last):
            val = evaluate(model, val_batches(), world, cfg, loss_fn)
            state.val_losses.append((state.step, val))
            log({"step": state.step, "val_loss": val}, f"step {state.step} | val loss {val:.4f}")
        stopping = stop_after is not None and state.step - started >= stop_after
        if last or stopping or (cfg.ckpt_every and state.step % cfg.ckpt_every == 0):
            checkpoint()
        if stopping:
            break
    if metrics:
        metrics.close()
    return state
