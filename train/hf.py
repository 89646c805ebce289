"""Checkpoint interchange: Hugging Face LlamaForCausalLM directories and Meta's consolidated.*.pth.

Our parameter names are Meta's (tok_embeddings, layers.N.attention.wq, ...) but our rotary layout is
Hugging Face's rotate-half one, so HF weights map by name alone, while Meta's q/k weights (interleaved
rotary pairs) are permuted on load. transformers is not imported: the format is read and written
directly (config.json + safetensors, sharded with model.safetensors.index.json or not).
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from curate.basics.errors import CurateError

from train.model import Llama, LlamaConfig

# ours -> Hugging Face, per layer (prefix layers.N. <-> model.layers.N.)
_LAYER_NAMES = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}
_LAYER_KEY = re.compile(r"(model\.)?layers\.(\d+)\.(.+)\.weight$")


def to_hf_name(name: str) -> str:
    m = _LAYER_KEY.match(name)
    if m:
        return f"model.layers.{m.group(2)}.{_LAYER_NAMES[m.group(3)]}.weight"
    return _TOP_NAMES[name.removesuffix(".weight")] + ".weight"


_FROM_HF_LAYER = {v: k for k, v in _LAYER_NAMES.items()}
_FROM_HF_TOP = {v: k for k, v in _TOP_NAMES.items()}


def from_hf_name(name: str) -> str | None:
    """Our name for a Hugging Face tensor name; None for tensors we do not keep (rotary inv_freq)."""
    m = _LAYER_KEY.match(name)
    if m:
        if m.group(3) not in _FROM_HF_LAYER:
            return None if "rotary_emb" in name else _unknown(name)
        return f"layers.{m.group(2)}.{_FROM_HF_LAYER[m.group(3)]}.weight"
    if name.endswith("inv_freq"):
        return None
    top = name.removesuffix(".weight")
    return _FROM_HF_TOP[top] + ".weight" if top in _FROM_HF_TOP else _unknown(name)


def _unknown(name):
    raise ValueError(f"unexpected tensor {name!r} in a Llama checkpoint")


def hf_config(cfg: LlamaConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The config.json transformers writes for LlamaForCausalLM with this shape."""
    dtype_name = str(dtype).removeprefix("torch.")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": cfg.max_seq_len,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": dtype_name,  # transformers 4.x
        "dtype": dtype_name,  # transformers 5.x
    }


def config_from_hf(d: dict) -> LlamaConfig:
    """LlamaConfig from a Hugging Face config.json dict; raises ValueError for shapes Llama 2 lacks."""
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"rope scaling {rope} is not Llama 2's rotary embedding")
    for key in ("attention_bias", "mlp_bias"):
        if d.get(key):
            raise ValueError(f"{key}=true is not a Llama 2 checkpoint")
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {d['hidden_act']!r}: Llama 2 uses silu")
    dim, n_heads = d["hidden_size"], d["num_attention_heads"]
    if d.get("head_dim") not in (None, dim // n_heads):
        raise ValueError(f"head_dim {d['head_dim']} != hidden_size / num_attention_heads")
    cfg = LlamaConfig(
        dim=dim, n_layers=d["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=d.get("num_key_value_heads") or n_heads, vocab_size=d["vocab_size"],
        norm_eps=d.get("rms_norm_eps", 1e-5),
        rope_theta=float(d.get("rope_theta") or rope.get("rope_theta", 10000.0)),
        max_seq_len=d.get("max_position_embeddings", 4096),
    )
    if cfg.hidden_dim != d["intermediate_size"]:  # not the 8/3 rule with multiple_of 256: keep the width as given
        cfg.ffn_hidden_dim = d["intermediate_size"]
    return cfg


def _read_hf_tensors(path: Path, device=None):
    """Yield (name, tensor) from model.safetensors, its sharded index, or pytorch_model.bin files.
    Safetensors are read straight onto ``device`` (default CPU), one tensor at a time."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    for name in files:
        with safe_open(str(path / name), framework="pt", device=str(device or "cpu")) as f:
            for key in f.keys():
                yield key, f.get_tensor(key)
    if files:
        return
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"no safetensors or pytorch_model*.bin weights in {path}")
    for b in bins:
        yield from _load_pth(b).items()


def load_hf(path, device=None, dtype=None) -> Llama:
    """Llama from a Hugging Face checkpoint directory (what LlamaForCausalLM.save_pretrained writes).

    Each tensor is read onto ``device`` and cast to ``dtype`` as it arrives, so a bf16 checkpoint
    loaded as bf16 on a GPU never has a float32 (or second CPU) copy of the whole model."""
    path = Path(path)
    d = json.loads((path / "config.json").read_text())
    cfg = config_from_hf(d)
    state = {}
    for name, tensor in _read_hf_tensors(path, device):
        ours = from_hf_name(name)
        if ours is not None:
            state[ours] = tensor.to(device=device, dtype=dtype)
    if "output.weight" not in state and d.get("tie_word_embeddings"):
        state["output.weight"] = state["tok_embeddings.weight"].clone()  # ours are untied: train separately
    return Llama.from_state_dict(cfg, state, device=device)


def save_hf(model: Llama, path, max_shard_bytes: int | None = None) -> None:
    """Write config.json, generation_config.json and safetensors weights under HF names.

    With max_shard_bytes, weights are split into model-0000i-of-0000n.safetensors files of at most
    that size (a single tensor larger than it gets a file of its own) plus model.safetensors.index.json."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {to_hf_name(k): v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    dtype = next(iter(state.values())).dtype
    (path / "config.json").write_text(json.dumps(hf_config(model.cfg, dtype), indent=2) + "\n")
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2) + "\n")
    meta = {"format": "pt"}
    if max_shard_bytes is None:
        save_file(state, str(path / "model.safetensors"), metadata=meta)
        return
    shards, size = [{}], 0
    for name, t in state.items():
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata=meta)
        weight_map.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": sum(t.nbytes for t in state.values())}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# --- Meta's original checkpoints --------------------------------------------------------------------
# Model-parallel shards split these along dim 0 (column-parallel) or dim 1 (row-parallel / embedding).
_META_CONCAT_DIM = {"tok_embeddings": 1, "output": 0, "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Permute q/k projection rows from Meta's interleaved rotary pairs (re0, im0, re1, im1, ...)
    per head to the rotate-half layout (re0, re1, ..., im0, im1, ...)."""
    out, inp = w.shape
    return w.view(n_heads, out // n_heads // 2, 2, inp).transpose(1, 2).reshape(out, inp)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of interleaved_to_half."""
    out, inp = w.shape
    return w.view(n_heads, 2, out // n_heads // 2, inp).transpose(1, 2).reshape(out, inp)


def _load_pth(file: Path) -> dict:
    """Tensors of a torch checkpoint file; anything but plain tensors is refused
    (``weights_only``) with a one-line CurateError."""
    try:
        try:  # memory-mapped: a 70B shard is not read whole before the merge
            return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # pre-zip (legacy) torch.save files cannot be mapped
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CurateError(f"refused to load {file}: it holds more than tensors ({str(e).splitlines()[0][:120]})") from None


def load_meta(path, device=None, dtype=None) -> Llama:
    """Llama from Meta's params.json + consolidated.NN.pth (merged across model-parallel shards)."""
    path = Path(path)
    params = json.loads((path / "params.json").read_text())
    files = sorted(path.glob("consolidated.*.pth"))
    if not files:
        raise FileNotFoundError(f"no consolidated.*.pth in {path}")
    shards = [_load_pth(f) for f in files]
    state = {}
    for name in shards[0]:
        if name.startswith("rope."):  # precomputed frequencies, not weights
            continue
        kind = name.split(".")[-2]
        if len(shards) == 1 or kind not in _META_CONCAT_DIM:
            state[name] = shards[0][name]
        else:
            state[name] = torch.cat([s[name] for s in shards], dim=_META_CONCAT_DIM[kind])
    cfg = LlamaConfig(
        dim=params["dim"], n_layers=params["n_layers"], n_heads=params["n_heads"],
        n_kv_heads=params.get("n_kv_heads"), vocab_size=state["tok_embeddings.weight"].shape[0],
        multiple_of=params.get("multiple_of", 256), ffn_dim_multiplier=params.get("ffn_dim_multiplier"),
        norm_eps=params.get("norm_eps", 1e-5), rope_theta=float(params.get("rope_theta", 10000.0)),
        max_seq_len=params.get("max_seq_len", 4096),
    )
    for name in state:
        if name.endswith("attention.wq.weight"):
            state[name] = interleaved_to_half(state[name], cfg.n_heads)
        elif name.endswith("attention.wk.weight"):
            state[name] = interleaved_to_half(state[name], cfg.kv_heads)
    return Llama.from_state_dict(cfg, state, device=device, dtype=dtype)
