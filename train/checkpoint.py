"""Training checkpoints: everything needed to continue a run exactly.

A checkpoint is a directory ``RUN/checkpoints/step_00000100/`` holding

* ``config.json`` + ``model.safetensors`` -- the model, loadable on its own with
  ``train.model.Llama.load`` (so ``curate generate`` and ``export-hf`` take it);
* ``optimizer.safetensors`` -- AdamW moments and step counts, keyed by parameter name;
* ``rng.safetensors`` -- torch CPU (and CUDA) generator states;
* ``state.json`` -- step, optimizer hyperparameters, data position, run config, metrics.

It is written under a temporary name and renamed into place, so a run killed
mid-save leaves the previous checkpoint intact. Nothing is pickled. Under DDP
or FSDP2 every rank gathers full (unsharded) tensors and rank 0 writes.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from curate.basics.errors import CurateError

CKPT_DIR = "checkpoints"


def _unwrap(model):
    for attr in ("module", "_orig_mod"):  # DDP, torch.compile
        while hasattr(model, attr) and isinstance(getattr(model, attr), torch.nn.Module):
            model = getattr(model, attr)
    return model


def model_config(model) -> dict:
    """The model's LlamaConfig as a plain dict (for ``config.json``)."""
    base = _unwrap(model)
    cfg = getattr(base, "cfg", None) or getattr(base, "config", None)
    return asdict(cfg)


def save_checkpoint(run_dir: str | Path, step: int, model, optimizer, state: dict,
                    rank: int = 0, keep: int | None = None) -> Path | None:
    """Write ``run_dir/checkpoints/step_{step:08d}``; ``state`` is extra JSON
    (data position, config, metrics). Collective under DDP/FSDP: call on every
    rank. Keeps the newest ``keep`` checkpoints when given. Returns the path on rank 0."""
    msd, osd = get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                          cpu_offload=True))
    if rank != 0:
        return None
    root = Path(run_dir) / CKPT_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in msd.items()}, tmp / "model.safetensors",
              metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(model_config(model), indent=1))
    tensors = {}
    for name, st in osd["state"].items():
        for key, value in st.items():
            tensors[f"{name}::{key}"] = torch.as_tensor(value).contiguous()
    save_file(tensors, tmp / "optimizer.safetensors")
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, tmp / "rng.safetensors")
    np_state = np.random.get_state()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in osd["param_groups"]]
    meta = {
        "step": step,
        "param_groups": groups,
        "python_random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **state,
    }
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: str | Path, model, optimizer=None, restore_rng: bool = True) -> dict:
    """Load weights (and optimizer state and RNG states when given/asked) from a
    checkpoint directory into ``model`` (plain, DDP, compiled or FSDP2-sharded:
    every rank reads the full tensors and keeps its shard). Returns ``state.json``."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise CurateError(f"{path}: not a checkpoint (no state.json)")
    meta = json.loads((path / "state.json").read_text())
    msd = load_file(path / "model.safetensors")
    osd = None
    if optimizer is not None:
        flat = load_file(path / "optimizer.safetensors")
        state: dict[str, dict] = {}
        for key, value in flat.items():
            name, field = key.split("::")
            state.setdefault(name, {})[field] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                  for g in meta["param_groups"]]
        osd = {"state": state, "param_groups": groups}
    opts = StateDictOptions(full_state_dict=True, strict=True)
    if optimizer is None:
        set_state_dict(model, [], model_state_dict=msd, optim_state_dict={}, options=opts)
    else:
        set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd, options=opts)
    if restore_rng:
        rng = load_file(path / "rng.safetensors")
        torch.set_rng_state(rng["torch_cpu"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        v, state_list, gauss = meta["python_random"]
        random.setstate((v, tuple(state_list), gauss))
        n = meta["numpy_random"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    return meta
