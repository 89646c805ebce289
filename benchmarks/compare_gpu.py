"""Vendor comparison on a GPU: fine-tuning speed and memory per method, and whether Llama-2-7B fits.

1. SFT throughput on a ~1B Llama (TinyLlama's shape) for method full and lora, on packed rows of the
   bundled Alpaca conversations: tokens/s, MFU (Llama.flops_per_token: 6N, or 4N with frozen
   weights, plus attention, against the GPU's dense bf16 peak), peak memory next to the estimate
   train.memory prints. Then the same full fine-tuning on unpacked causal windows of the same tokens:
   the packed/unpacked ratio (the target is >= 90%: FlexAttention's block mask skips what the
   document mask hides, where a dense mask sends SDPA to its slow kernels).
2. Llama-2-7B shapes with LoRA in bf16: the largest batch x seq the estimate fits in 80 GB, and on a
   GPU with the memory to try it, one training step at that size with the measured peak.
3. The wall time of a whole comparison (experiments.compare.run.compare): 3 vendors x 2 seeds,
   for each method, one worker process per GPU.

    python benchmarks/compare_gpu.py                 # on a GPU (about 5 minutes on an H100/H200)
    python benchmarks/compare_gpu.py --tiny          # on CPU: a small model, a few steps, to show it runs
"""
from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import torch

from _common import machine
from train.config import TrainConfig
from train.distributed import World
from train.lora import LoRAConfig, apply_lora
from train.memory import estimate_memory, largest_batch, size
from train.model import Llama, get_config
from train.sft import SFTBatches, encode_all, load_examples
from train.tokenizer import train_bpe
from train.trainer import build_optimizer, peak_flops, prepare_model, train_step

ROOT = Path(__file__).resolve().parents[1]
# ~1.1B parameters: TinyLlama-1.1B's shape (grouped-query attention, 4 kv heads)
ONE_B = dict(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_hidden_dim=5632, vocab_size=32000,
             max_seq_len=4096)
TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, max_seq_len=256)
LORA = LoRAConfig(rank=16, alpha=32, targets=("q", "k", "v", "o", "gate", "up", "down"))


def demo_tokens(vocab: int, tmp: Path):
    """Alpaca demo conversations encoded with a BPE trained on them (llama2 template)."""
    examples = load_examples(ROOT / "examples/compare/alpaca_en_demo.json")
    tok = train_bpe([m["content"] for ex in examples for m in ex["messages"]], min(vocab, 8000), tmp / "tok.model")
    return encode_all(examples, tok, "llama2")[0], tok


class Windows:
    """Unpacked causal windows over all the examples' tokens (no document mask): pretraining's path."""

    def __init__(self, encoded, seq: int, batch: int):
        stream = torch.tensor([t for e in encoded for t in e.ids])
        n = (len(stream) - 1) // seq
        self.x, self.y = stream[: n * seq].view(n, seq), stream[1: n * seq + 1].view(n, seq)
        self.batch, self.i = batch, 0

    def next_batch(self):
        idx = torch.arange(self.i, self.i + self.batch) % len(self.x)
        self.i += self.batch
        return {"inputs": self.x[idx], "targets": self.y[idx]}


def build(cfg, method: str, device: torch.device):
    """A randomly initialised model: float32 for full fine-tuning; for "lora" (adapters added) and
    "base-bf16" (none) a base created directly in bf16 on a GPU, never in float32."""
    gpu = device.type == "cuda"
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    if method != "full" and gpu:
        torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = Llama(cfg)
    torch.set_default_dtype(old)
    return apply_lora(model, LORA) if method == "lora" else model


def throughput(cfg, method: str, data, batch: int, seq: int, steps: int, warmup: int, device: torch.device,
               compile_: bool) -> dict:
    """Tokens/s over ``steps`` timed steps after ``warmup``; MFU; peak memory and the estimate."""
    world = World(device=device)
    tc = TrainConfig(batch_size=batch, seq_len=seq, compile=compile_, lr=1e-4)
    model = prepare_model(build(cfg, method, device), tc, world)
    optimizer = build_optimizer(model, tc)
    gpu = device.type == "cuda"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    batches = [{k: v.to(device) for k, v in data.next_batch().items()} for _ in range(warmup + steps)]
    for b in batches[:warmup]:
        train_step(model, optimizer, [b], world, tc, lr=1e-4)
    sync()
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        train_step(model, optimizer, [b], world, tc, lr=1e-4)
    sync()
    tps = batch * seq * steps / (time.perf_counter() - t0)
    peak = peak_flops(device)
    fpt = model.flops_per_token(seq, frozen_weights=method == "lora")
    est = estimate_memory(cfg, method, batch, seq, gpu=gpu, lora_rank=LORA.rank, lora_targets=LORA.targets)
    out = {"tps": tps, "mfu": tps * fpt / peak if peak else None,
           "peak": torch.cuda.max_memory_allocated() if gpu else None, "estimate": est.total}
    del model, optimizer, batches
    gc.collect()
    if gpu:
        torch.cuda.empty_cache()
    return out


def show(name: str, r: dict) -> None:
    mfu = f"  MFU {r['mfu']:.1%}" if r["mfu"] else ""
    peak = f"  peak {size(r['peak'])}" if r["peak"] else ""
    print(f"  {name:<22}{r['tps']:>12,.0f} tok/s{mfu}{peak}  (estimate {size(r['estimate'])})", flush=True)


def speed(cfg, encoded, args, device) -> None:
    """Part 1: full vs lora on packed rows, and full on unpacked windows."""
    gpu = device.type == "cuda"
    print(f"SFT on {cfg.num_params() / 1e6:,.1f}M params, batch {args.batch} x seq {args.seq}, "
          f"{'bf16, per-block compile, FlexAttention' if gpu else 'fp32 eager, dense mask'}:")
    results = {}
    for method in ("full", "lora"):
        data = SFTBatches(encoded, args.seq, args.batch, seed=0, fixed_length=True)
        results[method] = throughput(cfg, method, data, args.batch, args.seq, args.steps, args.warmup,
                                     device, gpu)
        show(f"{method} (packed)", results[method])
    unpacked = throughput(cfg, "full", Windows(encoded, args.seq, args.batch), args.batch, args.seq,
                          args.steps, args.warmup, device, gpu)
    show("full (unpacked)", unpacked)
    print(f"  packed / unpacked tokens/s: {results['full']['tps'] / unpacked['tps']:.0%} (target >= 90%)")


def seven_b(device) -> None:
    """Part 2: Llama-2-7B shapes with LoRA in bf16 against 80 GB."""
    cfg = get_config("llama2-7b")
    budget = 80 * 10**9
    print("Llama-2-7B, LoRA r16 on q,k,v,o,gate,up,down, bf16 base, in 80 GB (estimate):")
    fits = {}
    for seq in (4096, 2048):
        for ckpt in (False, True):
            b = largest_batch(cfg, "lora", seq, budget, lora_rank=LORA.rank, lora_targets=LORA.targets,
                              activation_checkpointing=ckpt)
            est = estimate_memory(cfg, "lora", max(b, 1), seq, lora_rank=LORA.rank, lora_targets=LORA.targets,
                                  activation_checkpointing=ckpt)
            fits[(seq, ckpt)] = b
            print(f"  seq {seq}{' + activation checkpointing' if ckpt else '':<27} largest batch {b:>3}"
                  f"  ({est.describe()})")
    if device.type != "cuda" or torch.cuda.get_device_properties(device).total_memory < budget:
        print("  (no GPU with 80 GB here: the 7B step itself was not run)")
        return
    b = fits[(4096, False)]
    r = throughput(cfg, "lora", RandomWindows(cfg.vocab_size, 4096, b), b, 4096, 2, 1, device, True)
    ok = "fits" if r["peak"] < budget else "DOES NOT FIT"
    print(f"  measured: batch {b} x seq 4096, peak {size(r['peak'])} ({ok} in 80 GB), "
          f"{r['tps']:,.0f} tok/s, MFU {r['mfu']:.1%}")


class RandomWindows:
    """Batches of random tokens (the 7B step: speed and memory do not depend on the text)."""

    def __init__(self, vocab: int, seq: int, batch: int):
        self.vocab, self.seq, self.batch = vocab, seq, batch
        self.g = torch.Generator().manual_seed(0)

    def next_batch(self):
        d = torch.randint(0, self.vocab, (self.batch, self.seq + 1), generator=self.g)
        return {"inputs": d[:, :-1], "targets": d[:, 1:]}


def comparison_wall(cfg, tok, args, device) -> None:
    """Part 3: the wall time of a whole comparison (3 vendors x 2 seeds) for each method, on the
    bundled Alpaca data: clean, 30% of answer words replaced, answers shuffled between prompts.
    The base is randomly initialised (this measures time; its verdicts mean nothing)."""
    from experiments.compare import run as C
    from experiments.compare.arms import Settings

    examples = load_examples(ROOT / "examples/compare/alpaca_en_demo.json")
    clean = examples[: args.vendor_size]
    vendors = {"clean": clean, "noisy30": C.replace_words(clean, 0.3, seed=1),
               "shuffled": C.shuffle_answers(clean, seed=1)}
    heldout = C.sample(C.decontaminate(examples[-300:], vendors)[0], args.heldout, seed=0)
    import tempfile

    for method in ("lora", "full"):
        base = build(cfg, "full" if method == "full" else "base-bf16", device)
        # eager blocks (FlexAttention itself is compiled once per process): compiling every block in each
        # of the 12 runs would cost more than the runs at this size
        train = {"lr": 1e-3 if method == "lora" else 1e-4, "batch_size": args.batch, "seq_len": args.seq,
                 "warmup_steps": 2}
        settings = Settings(seeds=2, budget="examples", steps=args.compare_steps, train=train, method=method,
                            lora={"rank": LORA.rank, "alpha": LORA.alpha, "targets": list(LORA.targets)})
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            result = C.compare(vendors, base, tok, heldout, settings, out, n_boot=500,
                               workers=max(1, torch.cuda.device_count()))
        wall = time.perf_counter() - t0
        ranks = ", ".join(result["loss"]["ranking"])
        print(f"  {method}: 3 vendors x 2 seeds x {args.compare_steps} steps (batch {args.batch} x seq {args.seq}), "
              f"{len(heldout)} held-out prompts: {wall:.0f} s wall (ranking by loss: {ranks})", flush=True)
        del base
        gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU-sized model and a few steps")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--compare-steps", type=int, default=None, help="SFT steps per (vendor, seed) run")
    ap.add_argument("--vendor-size", type=int, default=None, help="examples per vendor")
    ap.add_argument("--heldout", type=int, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    defaults = (dict(batch=2, seq=128, steps=3, warmup=1, compare_steps=2, vendor_size=24, heldout=12) if args.tiny
                else dict(batch=8, seq=2048, steps=10, warmup=4, compare_steps=40, vendor_size=300, heldout=100))
    for k, v in defaults.items():
        setattr(args, k, getattr(args, k) or v)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    print("machine:", machine(), flush=True)
    t0 = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = get_config(TINY if args.tiny else ONE_B)
        encoded, tok = demo_tokens(cfg.vocab_size, Path(tmp))
        speed(cfg, encoded, args, device)
        seven_b(device)
        print("Whole comparison (experiments.compare, one worker per GPU):")
        comparison_wall(cfg, tok, args, device)
    print(f"total wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
