"""Reward models (Llama 2 paper, section 3.2.2): a Llama backbone with a scalar head.

The reward of ``(prompt, answer)`` is a linear head on the final-norm hidden state
of the answer's last token (the EOS after it): the last non-pad token of the row.
Training minimises the binary ranking loss with a margin,

    loss = -log sigmoid(r_chosen - r_rejected - m(rating)),

where ``m`` comes from the paper's margin tables (``MARGINS``) keyed by the
annotator's rating, or is the pair's numeric ``margin`` when it has one.
The loop, optimizer (AdamW), warmup + cosine schedule, accumulation and
checkpoints are :mod:`train.trainer`'s; a step counts one loss unit per pair.

API (what the vendor comparison calls)::

    rm, result = train_reward_model(pairs, tokenizer, model="tiny" | Llama | path, ...)
    result.accuracy        {"accuracy", "n", "by_rating": {rating: {"accuracy", "n"}}}
    rewards = score(rm, tokenizer, prompts, answers)   # prompts: message lists
    rm.save(dir, tokenizer_path=...); rm = RewardModel.load(dir)
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate.basics.errors import CurateError
from train import distributed
from train.config import TrainConfig
from train.model import Llama, get_config
from train.run import load_model, resume_state
from train.sft import segments
from train.trainer import LoopState, build_optimizer, prepare_model, train_loop

# The paper's ratings, best first, and its two margin tables (Table 28); "none" is zero margin.
RATINGS = ("significantly better", "better", "slightly better", "negligibly better / unsure")
MARGINS: dict[str, dict[str, float]] = {
    "none": dict.fromkeys(RATINGS, 0.0),
    "small": dict(zip(RATINGS, (1.0, 2 / 3, 1 / 3, 0.0))),
    "large": dict(zip(RATINGS, (3.0, 2.0, 1.0, 0.0))),
}
UNRATED = "unrated"


def rating_key(rating: str | None) -> str:
    """Canonical rating name: case and spacing folded; "negligibly better" and "unsure" map
    to the paper's joint class; None or "" -> "unrated"."""
    if not rating:
        return UNRATED
    r = " ".join(str(rating).lower().replace("_", " ").split())
    if r in ("negligibly better", "unsure", "negligibly better/unsure"):
        return RATINGS[3]
    return r


def margin_for(rating: str | None, margin: float | None, table: str = "none") -> float:
    """m(rating): a numeric ``margin`` is used as given; else ``MARGINS[table][rating]``;
    0 for unrated pairs and ratings the table does not know."""
    if table not in MARGINS:
        raise ValueError(f"unknown margin table {table!r} (choose from {', '.join(MARGINS)})")
    if margin is not None:
        return float(margin)
    return MARGINS[table].get(rating_key(rating), 0.0)


def ranking_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margins: torch.Tensor | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin) per pair, averaged ("mean"), summed ("sum") or not ("none")."""
    diff = r_chosen.float() - r_rejected.float()
    if margins is not None:
        diff = diff - margins.float()
    loss = -F.logsigmoid(diff)
    return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()


class RewardModel(nn.Module):
    """A Llama backbone and ``score_head`` (dim -> 1, no bias) read at each row's last real token.
    ``cfg`` is the backbone's LlamaConfig; ``info`` is saved beside the weights (template, max_len)."""

    def __init__(self, backbone: Llama, info: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.cfg = backbone.cfg
        self.score_head = nn.Linear(backbone.cfg.dim, 1, bias=False)
        nn.init.normal_(self.score_head.weight, std=1 / math.sqrt(backbone.cfg.dim + 1))
        backbone.output.requires_grad_(False)  # the LM head is never used: no gradients, no decay
        self.info = {"template": "llama2", "max_len": 512, **(info or {})}

    @property
    def layers(self):  # the trainer's activation checkpointing / compile walk these
        return self.backbone.layers

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Rewards [B] for right-padded ``tokens`` [B,T] with ``lengths`` [B] real tokens each."""
        hidden = self.backbone(tokens, return_hidden=True)
        last = hidden[torch.arange(tokens.shape[0], device=tokens.device), lengths - 1]
        return self.score_head(last).squeeze(-1).float()

    def save(self, path, tokenizer_path=None) -> None:
        """Write config.json (the backbone's), model.safetensors (backbone names + ``score_head.weight``)
        and reward.json (``info``) to directory ``path``; copy the tokenizer file there when given."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.backbone.state_dict().items()}
        state["score_head.weight"] = self.score_head.weight.detach().contiguous().cpu()
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt", "kind": "reward"})
        (path / "reward.json").write_text(json.dumps(self.info, indent=2) + "\n")
        if tokenizer_path is not None:
            src = Path(tokenizer_path)
            shutil.copyfile(src, path / ("tokenizer.json" if src.suffix == ".json" else "tokenizer.model"))

    @classmethod
    def load(cls, path, device=None) -> "RewardModel":
        """Read a directory written by :meth:`save` (float32 weights)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "reward.json").is_file():
            raise CurateError(f"{path}: not a reward model directory (no reward.json)")
        state = load_file(str(path / "model.safetensors"))
        head = state.pop("score_head.weight")
        cfg = get_config(json.loads((path / "config.json").read_text()))
        rm = cls(Llama.from_state_dict(cfg, state, dtype=torch.float32),
                 json.loads((path / "reward.json").read_text()))
        rm.score_head.weight.data.copy_(head)
        return rm.to(device) if device is not None else rm


# --------------------------------------------------------------------------- encoding

def encode_answer(prompt: list[dict], answer: str, tokenizer, template: str = "llama2",
                  max_len: int = 512) -> list[int]:
    """Token ids of ``prompt`` (messages ending in a user turn) followed by ``answer`` and EOS,
    rendered with the SFT ``template``. Longer than ``max_len``: the prompt keeps its last
    tokens (at most a quarter of max_len when the answer needs the rest), the answer its first:
    the answer is what is judged, the prompt's end (the question) is its context. A cut answer
    still ends with its EOS, so the reward is always read at the same kind of token.
    Raises ValueError for a malformed conversation."""
    example = {"messages": list(prompt) + [{"role": "assistant", "content": answer}]}
    parts = segments(example, template)
    prompt_ids = [t for text, _, bos, eos in parts[:-1] for t in tokenizer.encode(text, bos=bos, eos=eos)]
    text, _, bos, eos = parts[-1]
    answer_ids = tokenizer.encode(text, bos=bos, eos=eos)
    if len(prompt_ids) + len(answer_ids) > max_len:
        keep_prompt = max(min(len(prompt_ids), max_len // 4), max_len - len(answer_ids))
        prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt:] if keep_prompt else []
        room = max_len - len(prompt_ids)
        if len(answer_ids) > room:
            answer_ids = answer_ids[: room - 1] + answer_ids[-1:]
    return prompt_ids + answer_ids


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into ``(tokens [B,T], lengths [B])``."""
    pad_id = pad_id if pad_id is not None and pad_id >= 0 else 0
    lengths = torch.tensor([len(r) for r in rows])
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return tokens, lengths


@dataclass
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    margin: float
    rating: str


def pair_fields(pair) -> tuple[list[dict], str, str, str | None, float | None]:
    """``(prompt, chosen, rejected, rating, margin)`` of an annotations PreferencePair or a dict with those keys."""
    get = (lambda k: pair.get(k)) if isinstance(pair, dict) else (lambda k: getattr(pair, k, None))
    prompt = get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return prompt, get("chosen"), get("rejected"), get("rating"), get("margin")


def encode_pairs(pairs, tokenizer, template: str = "llama2", max_len: int = 512, margin: str = "none"
                 ) -> tuple[list[EncodedPair], list[tuple[int, str]]]:
    """Encode preference pairs; returns ``(encoded, skipped)`` with ``(index, reason)`` for every
    pair that could not be encoded (reported, never silently dropped)."""
    out, skipped = [], []
    for i, pair in enumerate(pairs):
        prompt, chosen, rejected, rating, m = pair_fields(pair)
        if not isinstance(chosen, str) or not isinstance(rejected, str) or not isinstance(prompt, list):
            skipped.append((i, "needs prompt messages and string chosen/rejected answers"))
            continue
        try:
            c = encode_answer(prompt, chosen, tokenizer, template, max_len)
            r = encode_answer(prompt, rejected, tokenizer, template, max_len)
        except ValueError as e:
            skipped.append((i, str(e)))
            continue
        out.append(EncodedPair(c, r, margin_for(rating, m, margin), rating_key(rating)))
    return out, skipped


def collate_pairs(pairs: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch: chosen rows then rejected rows in ``tokens``/``lengths`` [2B], ``margins`` [B].
    ``targets`` [B] zeros tell the trainer there is one loss unit per pair."""
    tokens, lengths = pad_rows([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    return {"inputs": tokens, "lengths": lengths, "margins": torch.tensor([p.margin for p in pairs]),
            "targets": torch.zeros(len(pairs), dtype=torch.long)}


def pair_loss_sum(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's ``loss_fn``: summed ranking loss over the batch's pairs, and the pair count."""
    rewards = model(batch["inputs"], batch["lengths"])
    n = batch["margins"].shape[0]
    return ranking_loss(rewards[:n], rewards[n:], batch["margins"], "sum"), torch.tensor(n)


class PairBatches:
    """``batch_size`` pairs per batch and rank, reshuffled every epoch with ``[seed, epoch]`` (the
    ``data`` object :func:`train.trainer.train_loop` expects). A global batch of
    ``batch_size * world_size`` pairs is cut into one slice per ``rank``."""

    def __init__(self, pairs: list[EncodedPair], batch_size: int, seed: int = 0, pad_id: int = 0,
                 rank: int = 0, world_size: int = 1):
        if not pairs:
            raise ValueError("no usable preference pairs")
        self.pairs, self.batch_size, self.seed, self.pad_id = pairs, batch_size, seed, pad_id
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.pairs) / (self.batch_size * self.world_size)))

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pairs))
        start = (self.batch * self.world_size + self.rank) * self.batch_size
        picked = order[start: start + self.batch_size]
        if len(picked) == 0:  # a rank past the end of a short last batch repeats the epoch's first pairs
            picked = order[: self.batch_size]
        self.batch += 1
        return collate_pairs([self.pairs[i] for i in picked], self.pad_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


# --------------------------------------------------------------------------- scoring and accuracy

@torch.no_grad()
def score_ids(rm: RewardModel, rows: list[list[int]], pad_id: int, batch_size: int = 16) -> list[float]:
    """Rewards of already-encoded rows, in order. Rows are batched by length so padding stays small."""
    device = rm.score_head.weight.device
    was_training = rm.training
    rm.eval()
    out = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        tokens, lengths = pad_rows([rows[i] for i in idx], pad_id)
        for i, r in zip(idx, rm(tokens.to(device), lengths.to(device)).tolist()):
            out[i] = r
    rm.train(was_training)
    return out


def score(rm: RewardModel, tokenizer, prompts: list, answers: list[str], template: str | None = None,
          max_len: int | None = None, batch_size: int = 16) -> list[float]:
    """Reward of each ``(prompt, answer)``: ``prompts`` are message lists ending in a user turn
    (or plain strings, taken as one user turn). Template and max_len default to the model's
    training ones. A malformed conversation scores NaN rather than stopping the batch."""
    template = template or rm.info["template"]
    max_len = max_len or rm.info["max_len"]
    rows, bad = [], []
    for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        try:
            rows.append(encode_answer(prompt, answer, tokenizer, template, max_len))
        except (ValueError, TypeError, AttributeError):
            rows.append([tokenizer.bos_id if tokenizer.bos_id is not None else 0])
            bad.append(i)
    rewards = score_ids(rm, rows, tokenizer.pad_id, batch_size)
    for i in bad:
        rewards[i] = float("nan")
    return rewards


def accuracy(rm: RewardModel, pairs: list[EncodedPair], pad_id: int, batch_size: int = 16) -> dict[str, Any]:
    """Share of pairs where r_chosen > r_rejected, overall and by rating (ties count as wrong)."""
    rewards = score_ids(rm, [p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id, batch_size)
    n = len(pairs)
    right = [c > r for c, r in zip(rewards[:n], rewards[n:])]
    by: dict[str, list[bool]] = {}
    for p, ok in zip(pairs, right):
        by.setdefault(p.rating, []).append(ok)

    def summary(oks):
        return {"accuracy": sum(oks) / len(oks) if oks else float("nan"), "n": len(oks)}
    return {**summary(right), "by_rating": {k: summary(v) for k, v in sorted(by.items())}}


# --------------------------------------------------------------------------- training

def default_hyperparams() -> TrainConfig:
    """Reward-model training defaults: 16 pairs per batch, peak lr 1e-5 (the paper's for models
    below 70B), cosine down to 10%, no periodic evaluation or checkpoints (only at the end)."""
    return TrainConfig(batch_size=16, lr=1e-5, min_lr_ratio=0.1, eval_every=0, ckpt_every=0, log_every=10)


@dataclass
class RewardResult:
    """``accuracy``: held-out accuracy (see :func:`accuracy`), ``train_accuracy`` the same on
    the training pairs; ``losses`` per step; ``skipped``: ``(index, reason)`` of unusable pairs."""

    steps: int
    losses: list[float]
    val_losses: list[tuple[int, float]]
    accuracy: dict
    train_accuracy: dict
    skipped: list = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def split_pairs(pairs: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded held-out split: ``(train, val)``, val holding ``round(len * val_fraction)`` (at least 1 if > 0)."""
    n_val = 0 if val_fraction <= 0 else max(1, round(len(pairs) * val_fraction))
    order = np.random.default_rng(seed).permutation(len(pairs))
    val = set(order[:n_val].tolist())
    return [p for i, p in enumerate(pairs) if i not in val], [p for i, p in enumerate(pairs) if i in val]


def _backbone(model, seed: int) -> Llama:
    if isinstance(model, Llama):
        return model
    if isinstance(model, RewardModel):
        return model.backbone
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        return load_model(model)
    torch.manual_seed(seed)
    try:
        return Llama(get_config(model))
    except (ValueError, TypeError) as e:
        raise CurateError(f"model: {e}") from None


def train_reward_model(pairs, tokenizer, model="tiny", val_pairs=None, *, val_fraction: float = 0.1,
                       template: str = "llama2", max_len: int = 512, margin: str = "none",
                       epochs: float | None = 1.0, warmup_ratio: float = 0.03, hyperparams=None,
                       seed: int = 0, run_dir=None, resume: bool = True, quiet: bool = True
                       ) -> tuple[RewardModel, RewardResult]:
    """Train a reward model on preference ``pairs`` (annotations PreferencePairs or dicts with
    ``prompt``, ``chosen``, ``rejected``, optional ``rating``/``margin``).

    model: a Llama (trained in place: pass a copy to keep the original), a RewardModel (continued),
    a checkpoint / Hugging Face directory, or a config name/dict for a fresh backbone (seeded).
    val_pairs: held-out pairs; else ``val_fraction`` of ``pairs`` (seeded split).
    hyperparams: a TrainConfig, or a dict over :func:`default_hyperparams` (batch 16 pairs, lr 1e-5).
    epochs: passes over the training pairs (sets steps; None keeps hyperparams' steps);
    warmup_ratio: share of steps in linear warmup (3%). Returns ``(rm, result)``.
    """
    base = asdict(default_hyperparams())
    tc = replace(hyperparams) if isinstance(hyperparams, TrainConfig) else TrainConfig(**{**base, **(hyperparams or {})})
    if val_pairs is None:
        pairs, val_pairs = split_pairs(list(pairs), val_fraction, seed)
    train_enc, skipped = encode_pairs(pairs, tokenizer, template, max_len, margin)
    val_enc, val_skipped = encode_pairs(val_pairs, tokenizer, template, max_len, margin)
    skipped += [(f"val:{i}", why) for i, why in val_skipped]
    if not train_enc:
        raise CurateError(f"reward model: no usable preference pairs ({len(skipped)} skipped: {skipped[:1]})")
    world = distributed.init(None if tc.device == "auto" else tc.device)
    per_step = tc.batch_size * tc.grad_accum * world.world_size
    if epochs is not None:
        tc.steps = max(1, math.ceil(epochs * len(train_enc) / per_step))
        tc.warmup_steps = max(1, round(warmup_ratio * tc.steps))
    rm = model if isinstance(model, RewardModel) else RewardModel(_backbone(model, seed))
    if tokenizer.vocab_size > rm.cfg.vocab_size:
        raise CurateError(f"tokenizer has {tokenizer.vocab_size} tokens, the model's vocabulary {rm.cfg.vocab_size}")
    rm.info.update(template=template, max_len=max_len, margin=margin)
    data = PairBatches(train_enc, tc.batch_size, seed, tokenizer.pad_id, world.rank, world.world_size)
    val = [collate_pairs(val_enc[i: i + tc.batch_size], tokenizer.pad_id) for i in range(0, len(val_enc), tc.batch_size)]
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = prepare_model(rm, tc, world)
    optimizer = build_optimizer(net, tc)
    state = LoopState()
    if run_dir is not None and resume:
        state = resume_state(run_dir, True, net, optimizer, data)
    state = train_loop(net, optimizer, data, tc, world, state=state, run_dir=run_dir,
                       val_batches=(lambda: val) if val else None, loss_fn=pair_loss_sum, quiet=quiet)
    result = RewardResult(state.step, state.losses, state.val_losses,
                          accuracy(rm, val_enc, tokenizer.pad_id) if val_enc else {"accuracy": float("nan"), "n": 0, "by_rating": {}},
                          accuracy(rm, train_enc, tokenizer.pad_id), skipped, len(train_enc), len(val_enc))
    return rm, result
