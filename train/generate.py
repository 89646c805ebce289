"""Batched sampling from a Llama with a KV cache.

Prompts of different lengths are left-padded into one batch; padding gets its own document id so
real tokens never attend to it (train/model.py's doc_ids mask), and each row's rotary positions start
at 0 on its first real token, so a padded row computes what it would alone.
"""
from __future__ import annotations

import torch

from train.model import Llama


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids [B] from logits [B,V]: greedy when temperature == 0, else softmax(logits/temperature)
    restricted to the smallest set of tokens whose probability reaches top_p (nucleus sampling)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # mass before this token already reaches top_p
        sorted_p[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate(model: Llama, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, seed: int = 0, eos_id: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """Continue each prompt (a list of token ids) by up to max_new_tokens tokens.

    temperature: 0 is greedy; otherwise sample from softmax(logits / temperature) (default 1.0).
    top_p: nucleus sampling mass, 1.0 (default) keeps the whole distribution.
    seed: seeds the one torch.Generator all sampling draws from, so a call is reproducible.
    eos_id: a row stops after producing it (it is included in that row's output).
    use_cache: False recomputes the whole sequence every step (slow; the reference for the cache).
    Returns the new tokens only, one list per prompt, in prompt order.
    """
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if not prompts or max_new_tokens <= 0:
        return [[] for _ in prompts]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with BOS)")
    device = model.output.weight.device
    B, longest = len(prompts), max(len(p) for p in prompts)
    total = longest + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise ValueError(f"prompt ({longest}) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                         f"context of {model.cfg.max_seq_len} tokens")

    pad = torch.tensor([longest - len(p) for p in prompts], device=device)
    tokens = torch.zeros(B, total, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, longest - len(p):longest] = torch.tensor(p, dtype=torch.long)
    steps = torch.arange(total, device=device)[None, :]
    positions = (steps - pad[:, None]).clamp(min=0)
    doc_ids = (steps >= pad[:, None]).long() if bool(pad.any()) else None  # padding = document 0

    generator = torch.Generator(device=device).manual_seed(seed)
    cache = model.new_cache(B, total) if use_cache else None
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * B
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for end in range(longest, total):
                begin = cache.pos if use_cache else 0
                window = slice(begin, end)
                docs = doc_ids[:, window] if doc_ids is not None else None
                logits = model(tokens[:, window], positions[:, window], docs, cache=cache)[:, -1]
                nxt = sample_next(logits, temperature, top_p, generator)
                tokens[:, end] = nxt
                for i, t in enumerate(nxt.tolist()):
                    if not done[i]:
                        out[i].append(t)
                        done[i] = t == eos_id
                if all(done):
                    break
    finally:
        model.train(was_training)
    return out
