"""Entry points: ``pretrain(cfg)`` and ``sft(...)``, the same under one process or torchrun.

Both take an explicit ``seed`` that fixes the model's initialisation and the
data order. With a ``run_dir`` they write ``metrics.jsonl`` and checkpoints there
and, when ``resume`` is set, continue exactly from the newest checkpoint.
``sft`` also runs fully in process on a model and examples already in memory
(what the vendor comparison calls many times): no files, no subprocess, and
examples already encoded with :func:`train.sft.encode_all` are not re-tokenised.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from curate.basics.errors import CurateError
from train import distributed
from train.checkpoint import latest_checkpoint, load_checkpoint
from train.config import PretrainConfig, SFTConfig, TrainConfig, load_config
from train.data import TokenWindows
from train.hf import load_hf
from train.lora import LoRAConfig, apply_lora, save_adapter
from train.memory import ASSUMED_MFU, check_fits, device_memory, estimate_memory, estimate_seconds
from train.model import Llama, get_config
from train.sft import SFTBatches, collate, encode_all, load_examples, pack, resolve_template
from train.tokenizer import Tokenizer
from train.trainer import LoopState, build_optimizer, peak_flops, prepare_model, train_loop


@dataclass
class RunResult:
    """What a run did. ``losses``: training loss per step (global token mean, nats);
    ``val_losses``: ``(step, held-out loss)`` pairs; ``model``: the trained model (unwrapped)."""

    run_dir: str | None
    steps: int
    losses: list[float]
    val_losses: list[tuple[int, float]]
    tokens: int
    model: torch.nn.Module | None = None
    skipped: list = field(default_factory=list)

    @property
    def final_val_loss(self) -> float | None:
        return self.val_losses[-1][1] if self.val_losses else None


def _device(cfg: TrainConfig) -> str | None:
    return None if cfg.device == "auto" else cfg.device


def resume_state(run_dir, resume: bool, model, optimizer, data) -> LoopState:
    """Load the newest checkpoint under ``run_dir`` into model, optimizer and data position
    (when ``resume``), and return the loop state to continue from; a fresh state otherwise."""
    ckpt = latest_checkpoint(run_dir) if run_dir and resume else None
    if ckpt is None:
        return LoopState()
    meta = load_checkpoint(ckpt, model, optimizer)
    data.load_state_dict(meta["data"])
    return LoopState(step=meta["step"], losses=meta["losses"],
                     val_losses=[tuple(v) for v in meta["val_losses"]], tokens=meta["tokens"])


def load_model(path: str | Path, device=None, dtype: torch.dtype = torch.float32) -> Llama:
    """A model from a checkpoint / ``Llama.save`` directory, or a Hugging Face one (sharded or not),
    in ``dtype`` (default float32) on ``device`` (default CPU). A Hugging Face folder is read tensor by
    tensor onto the device, so ``load_model(p, "cuda", torch.bfloat16)`` holds no float32 copy."""
    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise CurateError(f"{path}: no config.json (expected a checkpoint or Hugging Face model directory)")
    if "dim" in json.loads(config.read_text()):
        return Llama.load(path, device=device, dtype=dtype)
    try:
        return load_hf(path, device=device, dtype=dtype)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise CurateError(f"{path}: not a Llama checkpoint we can load: {e}") from None


def pretrain(cfg, stop_after: int | None = None, quiet: bool = False) -> RunResult:
    """Pretrain on token shards. ``cfg``: a :class:`PretrainConfig`, a dict or a YAML path.
    ``stop_after``: stop (checkpointed) after that many steps of this call."""
    cfg = load_config(cfg, PretrainConfig)
    tc = cfg.train
    world = distributed.init(_device(tc))
    run_dir = Path(cfg.run_dir)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    torch.manual_seed(cfg.seed)
    try:
        model_cfg = get_config(cfg.model)
    except (ValueError, TypeError) as e:
        raise CurateError(f"model: {e}") from None
    model = load_model(cfg.init_from) if cfg.init_from else Llama(model_cfg)
    data = TokenWindows(cfg.shards, tc.seq_len, tc.batch_size, cfg.seed, cfg.val_fraction,
                        world.rank, world.world_size)
    if data.shards.index["vocab_size"] > model.cfg.vocab_size:
        raise CurateError(f"{cfg.shards}: vocabulary {data.shards.index['vocab_size']} exceeds the "
                          f"model's {model.cfg.vocab_size}")
    flops = model.flops_per_token(tc.seq_len)
    net = prepare_model(model, tc, world)
    optimizer = build_optimizer(net, tc)
    state = resume_state(run_dir, cfg.resume, net, optimizer, data)
    state = train_loop(net, optimizer, data, tc, world, state=state, run_dir=run_dir,
                       val_batches=(lambda: data.val_batches(tc.eval_batches)) if len(data.val) else None,
                       flops_per_token=flops,
                       ckpt_extra=lambda: {"config": asdict(cfg)}, stop_after=stop_after, quiet=quiet)
    distributed.shutdown(world)
    return RunResult(str(run_dir), state.step, state.losses, state.val_losses, state.tokens, model)


def _val_batches(encoded, tc: TrainConfig, pad_id: int) -> list[dict]:
    """Held-out encoded examples, one per row, as a list of collated batches."""
    rows = pack(encoded, tc.seq_len, pack=False)
    return [collate(rows[i: i + tc.batch_size], pad_id) for i in range(0, len(rows), tc.batch_size)]


def sft(cfg=None, *, model: Llama | None = None, tokenizer=None, examples=None, hyperparams=None,
        seed: int = 0, template: str | None = None, pack_examples: bool = True, val_examples=None,
        run_dir: str | Path | None = None, resume: bool = True, copy_model: bool = True,
        method: str = "full", lora=None, stop_after: int | None = None,
        quiet: bool = True) -> tuple[Llama, RunResult]:
    """Supervised fine-tuning; returns ``(model, result)`` with ``result.losses`` the loss curve.

    Either ``cfg`` (an :class:`SFTConfig`, dict or YAML path, which names the model,
    tokenizer and data files), or in process: ``model``, ``tokenizer``, ``examples``
    (conversations, or :class:`train.sft.Encoded` to skip tokenising), ``hyperparams``
    (a TrainConfig or a dict of its fields over SFT defaults) and ``seed``. The model
    is copied first unless ``copy_model=False``. Malformed examples are listed in
    ``result.skipped`` as ``(index, reason)``. ``template``: llama2 | plain, default the
    tokenizer's chat template (else llama2).

    ``method``: "full" trains every weight; "lora" adds adapters (``lora``: a
    :class:`train.lora.LoRAConfig` or a dict of its fields, the adapter A drawn with ``seed``)
    and trains only them. A LoRA copy shares the base's (frozen) weight tensors, so a
    comparison holds one base however many arms it trains. A memory estimate is printed
    (unless ``quiet``) and checked against the device before training.
    """
    if cfg is not None:
        cfg = load_config(cfg, SFTConfig)
        tc = cfg.train
        method, lora = cfg.method, cfg.lora
        tokenizer = _sft_tokenizer(cfg)
        model, copy_model = load_model(cfg.init_from, **_base_placement(method, tc)), False
        examples = load_examples(cfg.data)
        val_examples = load_examples(cfg.val_data) if cfg.val_data else None
        seed, template, pack_examples = cfg.seed, cfg.template, cfg.pack
        run_dir, resume = cfg.run_dir, cfg.resume
        val_fraction = cfg.val_fraction
    else:
        if model is None or tokenizer is None or examples is None:
            raise ValueError("sft: give cfg, or model, tokenizer and examples")
        base = SFTConfig(run_dir=None, init_from="", tokenizer="", data="").train
        tc = hyperparams if isinstance(hyperparams, TrainConfig) else TrainConfig(
            **{**asdict(base), **(hyperparams or {})})
        val_fraction = 0.0
    try:
        template = resolve_template(template, tokenizer)
        lora_cfg = lora_config(method, lora)
    except ValueError as e:
        raise CurateError(f"sft: {e}") from None
    world = distributed.init(_device(tc))
    pad_id = getattr(tokenizer, "pad_id", 0)  # no tokenizer needed when every example is Encoded
    encoded, val_enc, skipped = _encode_split(examples, val_examples, tokenizer, template, tc.seq_len + 1,
                                              val_fraction, seed)
    if not encoded:
        raise CurateError(f"sft: no usable examples ({len(skipped)} skipped: {skipped[:1]})")
    check_memory(model.cfg, method, tc, world.device, lora_cfg, quiet)
    model = _trainable_copy(model, method, lora_cfg, seed, copy_model)
    if run_dir is not None and world.is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    data = SFTBatches(encoded, tc.seq_len, tc.batch_size, seed, pack_examples, pad_id,
                      world.rank, world.world_size, fixed_length=tc.compile)
    val = _val_batches(val_enc[world.rank:: world.world_size], tc, pad_id)
    torch.manual_seed(seed)
    net = prepare_model(model, tc, world)
    optimizer = build_optimizer(net, tc)
    state = resume_state(run_dir, resume, net, optimizer, data)
    state = train_loop(net, optimizer, data, tc, world, state=state, run_dir=run_dir,
                       val_batches=(lambda: val[: tc.eval_batches]) if val else None,
                       flops_per_token=model.flops_per_token(tc.seq_len, frozen_weights=method == "lora"),
                       stop_after=stop_after, quiet=quiet)
    if cfg is not None:
        if run_dir is not None and method == "lora" and world.is_main:
            save_adapter(model, Path(run_dir) / "adapter", base_name=cfg.init_from)
        distributed.shutdown(world)
    result = RunResult(str(run_dir) if run_dir else None, state.step, state.losses, state.val_losses,
                       state.tokens, model, skipped)
    return model, result


def _encode_split(examples, val_examples, tokenizer, template: str, max_len: int, val_fraction: float,
                  seed: int):
    """``(train, held-out, skipped)`` encoded examples: ``val_examples`` when given, else a seeded
    ``val_fraction`` of ``examples`` held out."""
    encoded, skipped = encode_all(examples, tokenizer, template, max_len)
    if val_examples is None and val_fraction > 0 and len(encoded) > 1:
        n_val = max(1, int(len(encoded) * val_fraction))
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed)).tolist()
        return [encoded[i] for i in sorted(order[n_val:])], [encoded[i] for i in order[:n_val]], skipped
    val_enc = encode_all(val_examples, tokenizer, template, max_len)[0] if val_examples else []
    return encoded, val_enc, skipped


def _sft_tokenizer(cfg: SFTConfig):
    source = cfg.tokenizer or cfg.init_from
    try:
        return Tokenizer.from_file(source)
    except (OSError, RuntimeError, ValueError) as e:
        raise CurateError(f"cannot load tokenizer {source}: {e}") from None


def _base_placement(method: str, tc: TrainConfig) -> dict:
    """Where and in what dtype to load a base: a LoRA base on a GPU is read as bf16 straight onto
    the device (it stays frozen); otherwise float32 on CPU (prepare_model moves it)."""
    gpu = torch.cuda.is_available() and tc.device in ("auto", "cuda")
    if method == "lora" and gpu and tc.dtype in ("auto", "bf16"):
        return {"device": "cuda", "dtype": torch.bfloat16}
    return {}


def lora_config(method: str, lora) -> LoRAConfig | None:
    """The LoRAConfig that ``method`` (full | lora) and ``lora`` (a dict of its fields) ask for;
    None for full fine-tuning. ValueError with one line for anything else."""
    if method not in ("full", "lora"):
        raise ValueError(f"method {method!r}: choose full or lora")
    if method == "full":
        return None
    if isinstance(lora, LoRAConfig):
        return lora
    known = {f.name for f in fields(LoRAConfig)}
    unknown = sorted(set(lora or {}) - known)
    if unknown:
        raise ValueError(f"lora: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(known))})")
    args = dict(lora or {})
    if "targets" in args:
        args["targets"] = tuple(args["targets"])
    return LoRAConfig(**args)


def _trainable_copy(model: Llama, method: str, lora_cfg: LoRAConfig | None, seed: int, copy_model: bool):
    """The model to train: for full, a deep copy (unless not copy_model) with every weight trainable;
    for LoRA, a copy that shares the base's weight tensors (never written; moved with the copy to
    the training device, so pass a base already there) plus seeded adapters."""
    if method == "full":
        model = copy.deepcopy(model) if copy_model else model
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if copy_model:
        model = copy.deepcopy(model, memo={id(p): p for p in model.parameters()})
    return apply_lora(model, lora_cfg, seed=seed)


def check_memory(model_cfg, method: str, tc: TrainConfig, device, lora_cfg=None, quiet: bool = True):
    """Print the memory estimate (unless ``quiet``); raise a one-line CurateError when it cannot fit."""
    kw = {"gpu": torch.device(device).type == "cuda", "activation_checkpointing": tc.activation_checkpointing}
    if lora_cfg is not None:
        kw.update(lora_rank=lora_cfg.rank, lora_targets=lora_cfg.targets)
    est = estimate_memory(model_cfg, method, tc.batch_size, tc.seq_len, **kw)
    budget = device_memory(device)
    if not quiet:
        print(est.describe(budget), flush=True)
        peak = peak_flops(torch.device(device))
        if peak:
            tokens = tc.steps * tc.grad_accum * tc.batch_size * tc.seq_len
            secs = estimate_seconds(model_cfg, method, tokens, tc.seq_len, peak)
            print(f"time estimate: {tokens:,} tokens at {ASSUMED_MFU:.0%} MFU of {peak / 1e12:.0f} TFLOP/s: "
                  f"~{secs / 60:.1f} min per device", flush=True)
    check_fits(est, budget, model_cfg, **kw)
    return est
