"""Training speed: our Llama (train.model + train.trainer.train_step) vs transformers.LlamaForCausalLM.

Both train the same shape with the same AdamW (betas 0.9/0.95, eps 1e-5, weight decay 0.1 on
matrices), the same token-weighted cross-entropy, clipping at 1.0, on the same random batches:
fp32 on a CPU, bf16 autocast with float32 master weights on a GPU, SDPA attention in both.
Prints training tokens per second for each, their ratio, and the machine; then generation
tokens per second, our KV-cache generate against transformers' generate on the same weights.

With CUDA it also measures MFU (model FLOPs per token from Llama.flops_per_token: 6N plus
attention, against the GPU's dense bf16 peak) for a ~1B-parameter model at sequence length
4096, eager and with per-block torch.compile, next to transformers on the same shape.

    python benchmarks/train_bench.py                         # "small" config, seq 256, CPU
    python benchmarks/train_bench.py --config base --seq-len 512 --batch 4
    python benchmarks/train_bench.py --skip-cpu              # on a GPU machine: the 1B MFU run only
"""
from __future__ import annotations

import argparse
import gc
import time

import torch

from train.config import TrainConfig
from train.distributed import World
from train.model import Llama, get_config
from train.trainer import build_optimizer, peak_flops, prepare_model, train_step
from _common import machine
from generate_bench import compare_generation

# ~1.06B parameters: Llama 2's layout at dim 2048 (head_dim 128), 18 layers.
ONE_B = {"dim": 2048, "n_layers": 18, "n_heads": 16, "vocab_size": 32000, "max_seq_len": 4096}


def hf_model(cfg):
    """transformers.LlamaForCausalLM of the same shape (SDPA attention)."""
    import transformers

    from train.hf import hf_config

    conf = transformers.LlamaConfig(**{k: v for k, v in hf_config(cfg).items() if k not in ("dtype", "torch_dtype")})
    conf._attn_implementation = "sdpa"
    return transformers.LlamaForCausalLM(conf)


class HFLogits(torch.nn.Module):
    """Calls LlamaForCausalLM like our model, so that train_step runs the same loss on both."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, tokens, positions=None, doc_ids=None):
        return self.hf(input_ids=tokens, use_cache=False).logits


def tokens_per_s(model, tc: TrainConfig, world: World, batch: int, seq: int, vocab: int, steps: int,
                 warmup: int) -> float:
    """Training tokens per second over `steps` timed optimizer steps after `warmup` ones."""
    optimizer = build_optimizer(model, tc)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(0, vocab, (batch, seq + 1), generator=g) for _ in range(4)]
    batches = [{"inputs": d[:, :-1].to(world.device), "targets": d[:, 1:].to(world.device)} for d in data]
    sync = torch.cuda.synchronize if world.device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        train_step(model, optimizer, [batches[i % 4]], world, tc, lr=1e-4)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        train_step(model, optimizer, [batches[i % 4]], world, tc, lr=1e-4)
    sync()
    return batch * seq * steps / (time.perf_counter() - t0)


def compare(name: str, cfg_name, device: str, batch: int, seq: int, steps: int, warmup: int,
            contenders=("ours", "transformers"), rounds: int = 1) -> dict:
    """Tokens/s of each contender ("ours", "ours+compile", "transformers") on one shape;
    prints them, MFU when the GPU's peak is known, and each ratio to transformers."""
    world = World(device=torch.device(device))
    cfg = get_config(cfg_name, max_seq_len=max(seq, 16))
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):  # alternate, best of rounds: a shared machine's load drifts
        for who in contenders:
            tc = TrainConfig(seq_len=seq, batch_size=batch, compile=who == "ours+compile")
            torch.manual_seed(0)
            if who.startswith("ours"):
                model = prepare_model(Llama(cfg), tc, world)
            else:
                model = HFLogits(hf_model(cfg)).to(world.device)
            best[who] = max(best[who], tokens_per_s(model, tc, world, batch, seq, cfg.vocab_size,
                                                    steps, warmup + 3 * (who == "ours+compile")))
            del model
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
    fpt = 6 * cfg.num_params(exclude_embeddings=True) + 12 * cfg.n_layers * cfg.dim * seq  # = Llama.flops_per_token
    peak = peak_flops(world.device)
    print(f"{name}: {cfg.num_params() / 1e6:.1f}M params, batch {batch} x seq {seq}, {device}")
    for who, tps in best.items():
        mfu = f"  MFU {tps * fpt / peak:.1%}" if peak else ""
        ratio = f"  ({tps / best['transformers']:.2f}x transformers)" if "transformers" in best else ""
        print(f"  {who:<14}{tps:>12,.0f} tok/s{mfu}{ratio}", flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", help="named model config for the CPU comparison")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--gpu-batch", type=int, default=2, help="sequences of 4096 per step in the 1B run")
    ap.add_argument("--gpu-steps", type=int, default=10)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("machine:", machine(), flush=True)
    if not args.skip_cpu:
        compare(f"CPU '{args.config}'", args.config, "cpu", args.batch, args.seq_len, args.steps, 2,
                rounds=args.rounds)
    if not args.skip_cpu:
        compare_generation(args.config, batches=(1, 8), repeats=args.rounds)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        compare("GPU ~1B bf16", ONE_B, "cuda", args.gpu_batch, 4096, args.gpu_steps, 3,
                contenders=("ours", "ours+compile", "transformers"))
    else:
        print("no CUDA device: skipped the ~1B / seq 4096 bf16 MFU run")


if __name__ == "__main__":
    main()
