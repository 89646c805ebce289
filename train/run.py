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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from curate.basics.errors import CurateError
from train import distributed
from train.checkpoint import latest_checkpoint, load_checkpoint
from train.config import PretrainConfig, SFTConfig, TrainConfig, load_config
from train.data import TokenWindows
from train.hf import load_hf
from train.model import Llama, get_config
from train.sft import SFTBatches, collate, encode_all, load_examples, pack
from train.tokenizer import Tokenizer
from train.trainer import LoopState, build_optimizer, prepare_model, train_loop


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


def load_model(path: str | Path) -> Llama:
    """A model from a checkpoint / ``Llama.save`` directory, or a Hugging Face one."""
    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise CurateError(f"{path}: no config.json (expected a checkpoint or Hugging Face model directory)")
    if "dim" in json.loads(config.read_text()):
        return Llama.load(path, dtype=torch.float32)
    return load_hf(path, dtype=torch.float32)


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
        seed: int = 0, template: str = "llama2", pack_examples: bool = True, val_examples=None,
        run_dir: str | Path | None = None, resume: bool = True, copy_model: bool = True,
        stop_after: int | None = None, quiet: bool = True) -> tuple[Llama, RunResult]:
    """Supervised fine-tuning; returns ``(model, result)`` with ``result.losses`` the loss curve.

    Either ``cfg`` (an :class:`SFTConfig`, dict or YAML path, which names the model,
    tokenizer and data files), or in process: ``model``, ``tokenizer``, ``examples``
    (conversations, or :class:`train.sft.Encoded` to skip tokenising), ``hyperparams``
    (a TrainConfig or a dict of its fields over SFT defaults) and ``seed``. The model
    is copied first unless ``copy_model=False``. Malformed examples are listed in
    ``result.skipped`` as ``(index, reason)``.
    """
    if cfg is not None:
        cfg = load_config(cfg, SFTConfig)
        tokenizer = Tokenizer.from_file(cfg.tokenizer)
        model, copy_model = load_model(cfg.init_from), False
        examples = load_examples(cfg.data)
        val_examples = load_examples(cfg.val_data) if cfg.val_data else None
        tc, seed, template, pack_examples = cfg.train, cfg.seed, cfg.template, cfg.pack
        run_dir, resume = cfg.run_dir, cfg.resume
        val_fraction = cfg.val_fraction
    else:
        if model is None or tokenizer is None or examples is None:
            raise ValueError("sft: give cfg, or model, tokenizer and examples")
        base = SFTConfig(run_dir=None, init_from="", tokenizer="", data="").train
        tc = hyperparams if isinstance(hyperparams, TrainConfig) else TrainConfig(
            **{**asdict(base), **(hyperparams or {})})
        val_fraction = 0.0
    world = distributed.init(_device(tc))
    pad_id = getattr(tokenizer, "pad_id", 0)  # no tokenizer needed when every example is Encoded
    encoded, skipped = encode_all(examples, tokenizer, template, tc.seq_len + 1)
    if val_examples is None and val_fraction > 0 and len(encoded) > 1:
        n_val = max(1, int(len(encoded) * val_fraction))
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed)).tolist()
        val_enc = [encoded[i] for i in order[:n_val]]
        encoded = [encoded[i] for i in sorted(order[n_val:])]
    else:
        val_enc = encode_all(val_examples, tokenizer, template, tc.seq_len + 1)[0] if val_examples else []
    if not encoded:
        raise CurateError(f"sft: no usable examples ({len(skipped)} skipped: {skipped[:1]})")
    if copy_model:
        model = copy.deepcopy(model)
    if run_dir is not None and world.is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    data = SFTBatches(encoded, tc.seq_len, tc.batch_size, seed, pack_examples, pad_id,
                      world.rank, world.world_size)
    val = _val_batches(val_enc[world.rank:: world.world_size], tc, pad_id)
    torch.manual_seed(seed)
    net = prepare_model(model, tc, world)
    optimizer = build_optimizer(net, tc)
    state = resume_state(run_dir, resume, net, optimizer, data)
    state = train_loop(net, optimizer, data, tc, world, state=state, run_dir=run_dir,
                       val_batches=(lambda: val[: tc.eval_batches]) if val else None,
                       flops_per_token=model.flops_per_token(tc.seq_len), stop_after=stop_after,
                       quiet=quiet)
    if cfg is not None:
        distributed.shutdown(world)
    result = RunResult(str(run_dir) if run_dir else None, state.step, state.losses, state.val_losses,
                       state.tokens, model, skipped)
    return model, result
