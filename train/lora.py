"""LoRA (Hu et al. 2021): low-rank adapters on chosen projections of a frozen Llama.

API
    LoRAConfig(rank=8, alpha=16, dropout=0.0, targets=("q", "k", "v", "o"))
    apply_lora(model, cfg, seed=0, base_dtype=None) -> model   adapters added in place, base frozen
    merge(model) / unmerge(model)        fold W += B A * alpha/rank into the weights, or take it out
    merged_copy(model) -> Llama          a plain Llama with the adapters folded in (for save / save_hf)
    save_adapter(model, dir) / load_adapter(model, dir)   PEFT's layout (see below)

A LoRALinear is an nn.Linear (same ``weight``, so state-dict names of the base stay ours) with two
more parameters, ``lora_A`` [rank, in] and ``lora_B`` [out, rank]: y = W x + B A dropout(x) * alpha/rank.
A starts as PEFT's kaiming-uniform draw and B at zero, so a fresh adapter leaves the model unchanged.

Targets name projections as PEFT does for a transformers Llama: q, k, v, o (attention) and gate, up,
down (SwiGLU), with or without the ``_proj`` suffix. Saved adapters are what PEFT writes:
``adapter_config.json`` + ``adapter_model.safetensors`` with keys
``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight``; ``peft.PeftModel.from_pretrained``
loads them onto the same base exported with ``train.hf.save_hf``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# PEFT / transformers projection name -> (our submodule, our attribute)
PROJECTIONS = {"q": ("attention", "wq"), "k": ("attention", "wk"), "v": ("attention", "wv"),
               "o": ("attention", "wo"), "gate": ("feed_forward", "w1"), "up": ("feed_forward", "w3"),
               "down": ("feed_forward", "w2")}
_HF_PARENT = {"attention": "self_attn", "feed_forward": "mlp"}
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


@dataclass
class LoRAConfig:
    """rank: adapter rank r; alpha: the update is scaled by alpha / rank; dropout: on the adapter's
    input only (training); targets: projections to adapt (q k v o gate up down)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "k", "v", "o")

    def __post_init__(self):
        self.targets = tuple(t.removesuffix("_proj") for t in self.targets)
        unknown = [t for t in self.targets if t not in PROJECTIONS]
        if unknown or not self.targets:
            raise ValueError(f"lora targets {list(unknown) or '[]'}: choose from {', '.join(PROJECTIONS)}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"lora rank must be an integer >= 1, got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < math.inf:
            raise ValueError(f"lora alpha must be a positive number, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout!r}")


class LoRALinear(nn.Linear):
    """nn.Linear plus a low-rank update; ``merged`` says whether the update is inside ``weight``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float, generator=None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=device))
        bound = 1 / math.sqrt(self.in_features)  # kaiming_uniform_(a=sqrt(5)), PEFT's and nn.Linear's init
        with torch.no_grad():
            a = torch.rand(self.lora_A.shape, generator=generator) * 2 * bound - bound
            self.lora_A.copy_(a)
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta(self) -> torch.Tensor:
        """The update B A * scaling, [out, in], in float32."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        a = self.dropout(x).to(self.lora_A.dtype)  # a bf16 base feeds float32 adapters (autocast recasts)
        return y + F.linear(F.linear(a, self.lora_A), self.lora_B).to(y.dtype) * self.scaling

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.weight.copy_((self.weight.float() + self.delta()).to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.weight.copy_((self.weight.float() - self.delta()).to(self.weight.dtype))
            self.merged = False


def lora_modules(model):
    """(block index, target name, LoRALinear) for every adapter in ``model``."""
    for i, block in enumerate(model.layers):
        for name, (parent, attr) in PROJECTIONS.items():
            mod = getattr(getattr(block, parent), attr)
            if isinstance(mod, LoRALinear):
                yield i, name, mod


def apply_lora(model, cfg: LoRAConfig, seed: int = 0, base_dtype: torch.dtype | None = None):
    """Add adapters to ``cfg.targets`` of every block and freeze everything else, in place.
    ``base_dtype`` casts the frozen weights (bf16 on a GPU halves their memory); adapters stay
    float32. A (seeded by ``seed``) is drawn block by block in PROJECTIONS order. Returns ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    if base_dtype is not None:
        model.to(base_dtype)
    gen = torch.Generator().manual_seed(seed)
    for block in model.layers:
        for name in cfg.targets:
            parent, attr = PROJECTIONS[name]
            owner = getattr(block, parent)
            setattr(owner, attr, LoRALinear(getattr(owner, attr), cfg.rank, cfg.alpha, cfg.dropout, gen))
    model.lora_config = cfg
    return model


def merge(model) -> None:
    """Fold every adapter into its weight (inference at base speed); undo with :func:`unmerge`."""
    for _, _, mod in lora_modules(model):
        mod.merge()


def unmerge(model) -> None:
    for _, _, mod in lora_modules(model):
        mod.unmerge()


def merged_copy(model):
    """A plain Llama (no adapters, our state-dict names) with every adapter folded in."""
    out = copy.deepcopy(model)
    for i, name, mod in list(lora_modules(out)):
        mod.merge()
        parent, attr = PROJECTIONS[name]
        plain = nn.Linear(mod.in_features, mod.out_features, bias=False, device="meta")
        plain.weight = nn.Parameter(mod.weight.detach(), requires_grad=True)
        setattr(getattr(out.layers[i], parent), attr, plain)
    for p in out.parameters():
        p.requires_grad_(True)
    if hasattr(out, "lora_config"):
        del out.lora_config
    return out


def peft_key(layer: int, name: str, matrix: str) -> str:
    """PEFT's tensor name for our adapter ``matrix`` ("A" or "B") on projection ``name`` of ``layer``."""
    parent = _HF_PARENT[PROJECTIONS[name][0]]
    return f"base_model.model.model.layers.{layer}.{parent}.{name}_proj.lora_{matrix}.weight"


def save_adapter(model, path, base_name: str | None = None) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (PEFT's layout) to ``path``."""
    from safetensors.torch import save_file

    cfg: LoRAConfig = model.lora_config
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, name, mod in lora_modules(model):
        tensors[peft_key(i, name, "A")] = mod.lora_A.detach().float().contiguous().cpu()
        tensors[peft_key(i, name, "B")] = mod.lora_B.detach().float().contiguous().cpu()
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
              "r": cfg.rank, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout,
              "target_modules": [f"{t}_proj" for t in cfg.targets], "bias": "none",
              "fan_in_fan_out": False, "inference_mode": True, "use_rslora": False, "use_dora": False,
              "init_lora_weights": True, "modules_to_save": None}
    tmp = path / (ADAPTER_WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(path / ADAPTER_WEIGHTS)
    (path / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_adapter(model, path, base_dtype: torch.dtype | None = None):
    """Add the adapters saved in ``path`` (ours or PEFT's, plain LoRA only) to ``model``; returns it."""
    from safetensors.torch import load_file

    path = Path(path)
    d = json.loads((path / ADAPTER_CONFIG).read_text())
    if d.get("peft_type", "LORA") != "LORA" or d.get("use_dora") or d.get("use_rslora"):
        raise ValueError(f"{path}: only plain LoRA adapters are supported")
    targets = d["target_modules"]
    targets = [targets] if isinstance(targets, str) else targets
    cfg = LoRAConfig(rank=d["r"], alpha=d["lora_alpha"], dropout=d.get("lora_dropout", 0.0),
                     targets=tuple(targets))
    apply_lora(model, cfg, base_dtype=base_dtype)
    tensors = load_file(str(path / ADAPTER_WEIGHTS))
    with torch.no_grad():
        for i, name, mod in lora_modules(model):
            mod.lora_A.copy_(tensors[peft_key(i, name, "A")])
            mod.lora_B.copy_(tensors[peft_key(i, name, "B")])
    return model


def trainable_parameters(model) -> int:
    """Number of parameters that require gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
