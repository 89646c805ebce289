"""Paired comparison of a clean vendor against a copy with answers shuffled between the same prompts.

The shuffled copy has the same prompts and the same answers, only paired wrongly, so the
held-out loss can tell them apart only through prompt conditioning: this measures how small
an alignment fault the comparison detects, next to the base model's conditioning gain and the
noise floor (two random halves of the clean vendor), all from one run.

    python benchmarks/compare_bench.py                      # CPU, ~0.2M params, a few minutes
    python benchmarks/compare_bench.py --dim 128 --layers 4 --vocab 2048 --pretrain-steps 1500 \\
        --n 280 --heldout 150                               # the issue's setting (~3M params)
    python benchmarks/compare_bench.py --device cuda --dim 512 --layers 8 --vocab 8192 ...

Peer: the issue's figure for the shuffled copy on CPU (0.012 nats, 95% interval 0.006 to 0.018,
~3M params, 7 minutes of pretraining); printed beside ours with the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISSUE_SHUFFLED = 0.012


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}){gpu}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--out", type=Path, default=Path("/tmp/compare_bench"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=200, help="examples per vendor")
    ap.add_argument("--heldout", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--sft-steps", type=int, default=None, help="default: 2 epochs")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from curate.demo import pretrain_base
    from experiments.compare import run as C
    from experiments.compare.arms import Settings
    from train.model import Llama
    from train.sft import to_messages
    from train.tokenizer import Tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    pre = args.shared / "data" / "pretrain"
    texts = [json.loads(line)["text"] for line in open(pre / "c4_demo.jsonl")]
    texts += [t for name in ("wiki_demo.txt", "lee_background.cor") for t in open(pre / name).read().splitlines()
              if t.strip()]
    tag = f"d{args.dim}l{args.layers}v{args.vocab}s{args.pretrain_steps}"
    text_dir = args.out / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), text_dir / "pretrain.parquet")
    model = dict(dim=args.dim, n_layers=args.layers, n_heads=args.heads, vocab_size=args.vocab, multiple_of=32,
                 max_seq_len=1024)
    train = dict(steps=args.pretrain_steps, batch_size=16, seq_len=args.seq_len, lr=3e-3, warmup_steps=20,
                 eval_every=0, log_every=100, ckpt_every=0, eval_batches=2, device=args.device)
    t0 = time.perf_counter()
    base_dir = pretrain_base(text_dir, args.out / f"base_{tag}", quiet=True, model=model, train=train)
    pretrain_s = time.perf_counter() - t0
    base, tok = Llama.load(base_dir), Tokenizer.from_file(base_dir / "tokenizer.model")
    print(f"base: {base.num_params() / 1e6:.2f}M params, pretrained {args.pretrain_steps} steps in {pretrain_s:.0f} s")

    alpaca = [to_messages(r) for r in json.loads((args.shared / "data" / "sft" / "alpaca_en_demo.json").read_text())]
    clean = alpaca[: args.n]
    vendors = {"clean": clean, "shuffled": C.shuffle_answers(clean, seed=1)}
    heldout, dropped = C.decontaminate(alpaca[-2 * args.heldout:], vendors)
    heldout = C.sample(heldout, args.heldout, seed=0)
    settings = Settings(seeds=args.seeds, budget="examples", steps=args.sft_steps,
                        train={"lr": 2e-3, "batch_size": 8, "seq_len": args.seq_len, "warmup_steps": 5,
                               "device": args.device})
    t0 = time.perf_counter()
    run = args.out / f"run_{tag}_n{args.n}_h{args.heldout}_s{args.seeds}_q{args.seq_len}"
    result = C.compare(vendors, base, tok, heldout, settings, run, noise_floor="clean")
    compare_s = time.perf_counter() - t0

    pair = result["loss"]["pairs"]["shuffled|clean"]
    cond, floor = result["conditioning"], result["noise_floor"]
    print(f"vendors: {args.n} examples each, {args.seeds} seeds, {result['heldout_scored']['prompts']} held-out "
          f"prompts ({dropped} dropped as contaminated), {result['plan']['steps']} SFT steps per run; "
          f"compare took {compare_s:.0f} s")
    for name in ("clean", "shuffled"):
        a = result["loss"]["arms"][name]
        print(f"  {name:<9} held-out loss {a['mean']:.4f} [{a['lo']:.4f}, {a['hi']:.4f}]")
    print(f"shuffled - clean: {pair['diff']:+.4f} nats [{pair['lo']:+.4f}, {pair['hi']:+.4f}] -> clean is "
          f"{result['loss']['pairs']['clean|shuffled']['verdict']}")
    print(f"base conditioning gain: {cond['gain']:+.4f} [{cond['lo']:+.4f}, {cond['hi']:+.4f}]"
          f"{' (ignores the prompt)' if cond['ignores_prompt'] else ''}")
    print(f"noise floor (halves of clean): diff {floor['diff']:+.4f} [{floor['lo']:+.4f}, {floor['hi']:+.4f}], "
          f"floor {floor['floor']:.4f}; effect / floor = {abs(pair['diff']) / max(floor['floor'], 1e-9):.2f}")
    print(f"peer (issue 7, ~3M params, CPU): shuffled - clean = {ISSUE_SHUFFLED:+.3f}; ours / peer = "
          f"{pair['diff'] / ISSUE_SHUFFLED:.2f}")
    from experiments.report import write_report

    print(f"report: {write_report(result, run / 'report', 'Clean vs shuffled answers')}")


if __name__ == "__main__":
    main()
