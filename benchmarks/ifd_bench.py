"""IFD throughput: train.ifd.ifd_scores (batched) vs transformers' LlamaForCausalLM in a plain loop.

Both score the same real examples (the bundled Alpaca sample, examples/compare/alpaca_en_demo.json)
on the same weights (random init; speed does not depend on them) with the same token ids: the
peer runs one forward pass per example for the loss given the prompt and one for the answer alone,
as Cherry_LLM's scoring script does, reading transformers' own `loss` over the answer labels.
Prints examples per second for each, their ratio, and the largest IFD difference between them.

    python benchmarks/ifd_bench.py                         # small (~15M) and base (~110M) on CPU
    python benchmarks/ifd_bench.py --configs 1b --device cuda --examples 512 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from _common import machine
from train.hf import save_hf
from train.ifd import ifd_rows, ifd_scores
from train.model import Llama, LlamaConfig, get_config
from train.sft import to_messages
from train.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
# TinyLlama-1.1B's shape: 22 layers, 2048 wide, 4 KV heads, 5632 hidden.
CONFIGS = {"1b": LlamaConfig(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, multiple_of=256, max_seq_len=2048)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def transformers_loop(hf, rows) -> list[float]:
    """IFD of each example, one example and one forward pass at a time."""
    device = hf.device
    out = []
    for ids, spans, alone in rows:
        given_sum = alone_sum = 0.0
        for (a, b), solo in zip(spans, alone):
            x = torch.tensor([ids[:b]], device=device)
            y = torch.full_like(x, -100)
            y[0, a:b] = x[0, a:b]
            xs = torch.tensor([solo], device=device)
            ys = xs.clone()
            ys[0, 0] = -100
            given_sum += hf(input_ids=x, labels=y).loss.float().item() * (b - a)
            alone_sum += hf(input_ids=xs, labels=ys).loss.float().item() * (b - a)
        out.append(given_sum / alone_sum)
    return out


def bench(config: str, examples: list, tok: Tokenizer, batch_size: int, device: str, dtype: str,
          max_len: int, peer: bool, repeats: int = 2) -> None:
    import transformers

    cfg = CONFIGS[config] if config in CONFIGS else get_config(config)
    cfg = get_config(cfg, vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    ours = Llama(cfg).to(device=device, dtype=getattr(torch, dtype)).eval()
    rows = [ifd_rows(ex, tok, max_len=max_len) for ex in examples]
    n_tok = sum(len(r[0]) + sum(len(s) for s in r[2]) for r in rows)
    ifd_scores(ours, tok, examples[:batch_size], batch_size=batch_size, max_len=max_len)  # warm-up
    hf = None
    if peer:
        with tempfile.TemporaryDirectory() as d:
            save_hf(ours.float().cpu(), d)
            hf = transformers.LlamaForCausalLM.from_pretrained(d, torch_dtype=getattr(torch, dtype)).eval().to(device)
        ours.to(device=device, dtype=getattr(torch, dtype))
        transformers_loop(hf, rows[:2])  # warm-up
    t_ours = t_hf = float("inf")
    for _ in range(repeats):  # alternate, keep the best of each: load from other jobs hits both sides
        start = time.perf_counter()
        got = ifd_scores(ours, tok, examples, batch_size=batch_size, max_len=max_len)
        sync(device)
        t_ours = min(t_ours, time.perf_counter() - start)
        if hf is not None:
            start = time.perf_counter()
            ref = transformers_loop(hf, rows)
            sync(device)
            t_hf = min(t_hf, time.perf_counter() - start)
    line = (f"  {config:>5} ({cfg.num_params() / 1e6:6.1f}M, {dtype}, {device}): ours {len(examples) / t_ours:8.2f} ex/s "
            f"({n_tok / t_ours:9.0f} tok/s, batch {batch_size})")
    if hf is not None:
        diff = max(abs(g.ifd - r) for g, r in zip(got, ref))
        line += f"   transformers loop {len(examples) / t_hf:8.2f} ex/s   ratio {t_hf / t_ours:5.2f}x   max |IFD diff| {diff:.1e}"
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["small", "base"], help="named configs, or 1b")
    ap.add_argument("--examples", type=int, default=64, help="Alpaca examples to score")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512, help="tokens per conversation")
    ap.add_argument("--tokenizer", default=str(ROOT.parent / "shared/models/sentencepiece-32k-llama-style.model"),
                    help="a Llama-style tokenizer (default: ../shared's 32k SentencePiece)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-peer", action="store_true", help="skip the transformers loop")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side, alternating; the best counts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(args.tokenizer)
    records = json.loads((ROOT / "examples/compare/alpaca_en_demo.json").read_text())
    examples = [to_messages(r) for r in records[: args.examples]]
    print(f"machine: {machine()}")
    print(f"IFD on {len(examples)} Alpaca examples (llama2 template, up to {args.max_len} tokens), "
          f"tokenizer vocab {tok.vocab_size}")
    for config in args.configs:
        bench(config, examples, tok, args.batch_size, args.device, args.dtype, args.max_len, not args.no_peer,
              args.repeats)


if __name__ == "__main__":
    main()
