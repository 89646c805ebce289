"""Generation speed: train.generate (our KV cache) vs transformers' generate on the same weights.

Greedy decoding, the same prompts (random token ids, equal lengths) and the same number of new
tokens for both; transformers loads the checkpoint our model writes with save_hf. Prints new tokens
per second for each, their ratio, whether the two produced the same tokens, and the machine.

    python benchmarks/generate_bench.py                      # "small" config, batch 1 and 8, CPU
    python benchmarks/generate_bench.py --config base --batch 1 --new-tokens 32
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import machine

from train.generate import generate
from train.hf import save_hf
from train.model import Llama, get_config


def best_time(fn, repeats: int):
    """Fastest of `repeats` timed calls after one warm-up; returns (seconds, last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), out


def compare_generation(config: str = "small", batches=(1, 8), prompt_len: int = 64, new_tokens: int = 64,
                       repeats: int = 3, device: str = "cpu") -> None:
    """Print new tokens per second, ours vs transformers' generate, for each batch size."""
    import transformers

    torch.manual_seed(0)
    cfg = get_config(config)
    ours = Llama(cfg).eval().to(device)
    with tempfile.TemporaryDirectory() as d:
        save_hf(ours, d)
        hf = transformers.LlamaForCausalLM.from_pretrained(d).eval().to(device)
    print(f"generation: {config} ({cfg.num_params() / 1e6:.1f}M params, fp32), greedy, prompt {prompt_len} "
          f"tokens, {new_tokens} new tokens, transformers {transformers.__version__}")
    for batch in batches:
        g = torch.Generator().manual_seed(batch)
        prompts = torch.randint(3, cfg.vocab_size, (batch, prompt_len), generator=g)
        n_new = batch * new_tokens
        t_ours, got = best_time(lambda: generate(ours, prompts.tolist(), new_tokens, temperature=0), repeats)

        def hf_generate():
            with torch.inference_mode():
                return hf.generate(prompts.to(device), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

        t_hf, ref = best_time(hf_generate, repeats)
        same = ref[:, prompt_len:].tolist() == got
        print(f"  batch {batch:3d}: ours {n_new / t_ours:9.1f} tok/s   transformers {n_new / t_hf:9.1f} tok/s   "
              f"ratio {t_hf / t_ours:5.2f}x   same tokens: {same}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", help="named config (train.model.CONFIGS)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    compare_generation(args.config, args.batch, args.prompt_len, args.new_tokens, args.repeats, args.device)


if __name__ == "__main__":
    main()
