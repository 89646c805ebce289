"""Llama 2 in plain PyTorch (the shapes, norms and rotary layout of Meta's llama/model.py).

API
    LlamaConfig(dim, n_layers, n_heads, n_kv_heads, vocab_size, multiple_of, ffn_dim_multiplier,
                norm_eps, rope_theta, max_seq_len, ffn_hidden_dim)   .hidden_dim, .head_dim, .kv_heads
    CONFIGS["llama2-7b" | "llama2-13b" | "llama2-70b" | "tiny" | "small" | "base"]
    get_config(name | dict | LlamaConfig, **overrides) -> LlamaConfig
    Llama(cfg)(tokens [B,T] long, positions=None, doc_ids=None, cache=None, return_hidden=False)
        -> logits [B,T,vocab]  (or final-norm hidden states [B,T,dim] with return_hidden=True)
    Llama.num_params / flops_per_token / kv_cache_bytes_per_token / new_cache
    Llama.save(dir) / Llama.load(dir)          our format: config.json + model.safetensors
    train.hf.load_hf(dir) / save_hf(model, dir) / load_meta(dir)   (converters; hf imports model, never the reverse)
    KVCache: preallocated keys/values for generation (train/generate.py drives it)

Conventions
    * Pre-norm RMSNorm computed in float32; SwiGLU FFN; no biases; untied embeddings and output.
    * Rotary embeddings use the rotate-half layout (Hugging Face's): the two halves of each head
      are the real and imaginary parts. Meta's checkpoints interleave them; train/hf.py permutes
      the q/k weights on load.
    * positions: per-token rotary positions, default 0..T-1 (after the cache's length when a cache
      is given). Packed examples pass positions that restart at 0 for each example.
    * doc_ids: token i attends to token j only if j <= i and doc_ids[i] == doc_ids[j] (block-diagonal
      causal mask for packed SFT; generation uses it to hide left padding).
    * Without doc_ids or cache, attention is SDPA with is_causal=True so GPUs take the flash kernel.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LlamaConfig:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None -> n_heads (multi-head attention)
    vocab_size: int = 32000
    multiple_of: int = 256  # SwiGLU width is rounded up to a multiple of this
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 4096
    ffn_hidden_dim: int | None = None  # explicit SwiGLU width (HF intermediate_size); None -> 8/3 rule

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads {self.kv_heads} does not divide n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: 2/3 of 4*dim, times ffn_dim_multiplier, rounded up to multiple_of (Meta's rule)."""
        if self.ffn_hidden_dim is not None:
            return self.ffn_hidden_dim
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count from the shapes alone (nothing allocated). Includes the input embedding
        table, the output projection and all RMSNorm weights; exclude_embeddings drops the input table
        only (a lookup costs no FLOPs, the output projection is a matmul)."""
        d, kv = self.dim, self.kv_heads * self.head_dim
        attention = d * d * 2 + d * kv * 2  # wq, wo, wk, wv
        ffn = 3 * d * self.hidden_dim  # w1, w2, w3
        per_layer = attention + ffn + 2 * d  # + two RMSNorm weights
        n = self.n_layers * per_layer + d + self.vocab_size * d  # + final norm + output
        return n if exclude_embeddings else n + self.vocab_size * d


# Sizes of the small configs are total parameters including both 32000 x dim embedding matrices
# (so at "tiny" the embeddings are nearly everything); the Llama 2 shapes are Meta's params.json.
CONFIGS: dict[str, LlamaConfig] = {
    "llama2-7b": LlamaConfig(dim=4096, n_layers=32, n_heads=32),
    "llama2-13b": LlamaConfig(dim=5120, n_layers=40, n_heads=40),
    "llama2-70b": LlamaConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8,
                              multiple_of=4096, ffn_dim_multiplier=1.3),
    "tiny": LlamaConfig(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, multiple_of=16, max_seq_len=512),  # ~1.03M
    "small": LlamaConfig(dim=192, n_layers=6, n_heads=6, n_kv_heads=2, multiple_of=64, max_seq_len=1024),  # ~14.6M
    "base": LlamaConfig(dim=768, n_layers=10, n_heads=12, n_kv_heads=4, max_seq_len=2048),  # ~112M
}


def get_config(name: str | dict | LlamaConfig, **overrides) -> LlamaConfig:
    """A config from a CONFIGS name, a dict of LlamaConfig fields, or a LlamaConfig; overrides replace fields."""
    if isinstance(name, LlamaConfig):
        cfg = name
    elif isinstance(name, dict):
        known = {f.name for f in fields(LlamaConfig)}
        unknown = set(name) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        cfg = LlamaConfig(**name)
    elif name in CONFIGS:
        cfg = CONFIGS[name]
    else:
        raise ValueError(f"unknown model config {name!r}; named configs: {', '.join(CONFIGS)}")
    return replace(cfg, **overrides)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = x.float()  # fp32 statistics even under bf16
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.type_as(x)


def rotary(positions: torch.Tensor, head_dim: int, theta: float):
    """cos, sin [B,1,T,head_dim] in float32 for the rotate-half layout."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv_freq  # [B,T,head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class KVCache:
    """Keys and values for every layer, preallocated as [n_layers, B, kv_heads, max_len, head_dim].

    `pos` is how many tokens are cached; doc_ids (allocated on first use) hold each cached token's
    document id so later queries can mask keys (left padding in batched generation)."""

    def __init__(self, cfg: LlamaConfig, batch_size: int, max_len: int, device=None, dtype=torch.bfloat16):
        shape = (cfg.n_layers, batch_size, cfg.kv_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.doc_ids: torch.Tensor | None = None
        self.max_len, self.pos = max_len, 0

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes + (self.doc_ids.nbytes if self.doc_ids is not None else 0)

    def update(self, layer: int, k, v):
        """Write k, v [B,kv_heads,T,head_dim] at the current position; return all cached keys/values."""
        end = self.pos + k.shape[2]
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask, is_causal, cache, layer):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        # grouped-query: each kv head serves n_heads/n_kv_heads query heads. Repeated here rather than with
        # SDPA's enable_gqa, which the memory-efficient kernel (the one that takes packed-SFT masks) lacks.
        if self.n_kv_heads != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)  # gate
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)  # down
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)  # up

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, cos, sin, mask, is_causal, cache, layer):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache, layer)
        return x + self.feed_forward(self.ffn_norm(x))


def attention_mask(T: int, start: int, doc_ids, cache: KVCache | None, device):
    """(mask, is_causal) for SDPA. mask is bool [B,1,T,start+T] or None."""
    if cache is not None and (doc_ids is not None or cache.doc_ids is not None):
        if cache.doc_ids is None:
            cache.doc_ids = torch.zeros(doc_ids.shape[0], cache.max_len, dtype=torch.long, device=device)
        if doc_ids is None:  # continue each row's last document
            doc_ids = cache.doc_ids[:, start - 1:start].expand(-1, T)
        cache.doc_ids[:, start:start + T] = doc_ids
        key_docs = cache.doc_ids[:, :start + T]
    elif doc_ids is not None:
        key_docs = doc_ids
    elif start == 0:
        return None, T > 1
    elif T == 1:
        return None, False  # one new token sees the whole cache
    else:
        key_docs = None
    q_idx = torch.arange(start, start + T, device=device)[:, None]
    k_idx = torch.arange(start + T, device=device)[None, :]
    mask = (k_idx <= q_idx)[None, None]
    if key_docs is not None:
        mask = mask & (doc_ids[:, None, :, None] == key_docs[:, None, None, :])
    return mask, False


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        # _weight skips nn.Embedding's own init, whose normal_ on the meta device imports torch._dynamo (~5 s)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim, _weight=torch.empty(cfg.vocab_size, cfg.dim))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if self.output.weight.device.type != "meta":  # meta: shapes only (FSDP, loading); call reset_parameters after to_empty
            self.reset_parameters()

    def reset_parameters(self, std: float = 0.02):
        """Normal(0, std) weights; the two residual projections (wo, w2) are scaled by 1/sqrt(2*n_layers)
        as in GPT-2, so the residual stream's variance does not grow with depth. Norm weights are 1."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def forward(self, tokens, positions=None, doc_ids=None, cache: KVCache | None = None, return_hidden=False):
        B, T = tokens.shape
        start = cache.pos if cache is not None else 0
        if cache is not None and start + T > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} tokens; {start}+{T} requested")
        if positions is None:
            positions = torch.arange(start, start + T, device=tokens.device)[None]  # broadcasts over the batch
        cos, sin = rotary(positions, self.cfg.head_dim, self.cfg.rope_theta)
        mask, is_causal = attention_mask(T, start, doc_ids, cache, tokens.device)
        h = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, is_causal, cache, i)
        if cache is not None:
            cache.pos += T
        h = self.norm(h)
        return h if return_hidden else self.output(h)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameters actually held; exclude_embeddings drops the input embedding table only
        (the output projection stays: it is a matmul). Same definition as LlamaConfig.num_params."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_embeddings.weight.numel() if exclude_embeddings else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 * N + 12 * n_layers * dim * seq_len.

        N excludes the input embedding table. The attention term is PaLM's convention (QK^T and AV,
        forward + backward, counted over the full seq_len x seq_len square, i.e. without halving
        for the causal mask), so MFU figures compare with PaLM / nanoGPT / torchtitan numbers."""
        return 6 * self.num_params(exclude_embeddings=True) + 12 * self.cfg.n_layers * self.cfg.dim * seq_len

    def kv_cache_bytes_per_token(self, dtype=torch.bfloat16) -> int:
        """Bytes of keys + values one token takes in the cache, per sequence: 2 * n_layers * kv_heads * head_dim * itemsize."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * self.cfg.n_layers * self.cfg.kv_heads * self.cfg.head_dim * itemsize

    def new_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        """An empty KVCache on the model's device, in the model's dtype unless given."""
        p = self.output.weight
        return KVCache(self.cfg, batch_size, max_len, device=p.device, dtype=dtype or p.dtype)

    # --- our own format: config.json + model.safetensors -------------------------------------------
    def save(self, path) -> None:
        """Write config.json and model.safetensors (names as in this module) to directory `path`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def load(cls, path, device=None, dtype=None) -> "Llama":
        """Read a directory written by save(). Weights keep their stored dtype unless `dtype` is given."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg = get_config(json.loads((path / "config.json").read_text()))
        return cls.from_state_dict(cfg, load_file(str(path / "model.safetensors")), device, dtype)

    @classmethod
    def from_state_dict(cls, cfg: LlamaConfig, state: dict, device=None, dtype=None) -> "Llama":
        """Build a model around `state` (names as in this module) without a random init first."""
        with torch.device("meta"):
            model = cls(cfg)
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device) if device is not None else model
