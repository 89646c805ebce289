"""Train arms from one start over paired seeds and score them on one held-out set.

An *arm* is a named pool of SFT conversations (a vendor's data, a data recipe, ...). Every
arm is fine-tuned from the same base model with the same tokenizer, template, hyperparameters
and number of steps; seed ``i`` gives every arm the same data-order generator (and, through
``train.run.sft``, the same torch seed). The held-out set is shared, so each (arm, seed) run
yields one answer loss per held-out prompt: the ``[S, P]`` arrays :mod:`experiments.stats`
compares.

Budget: every arm in a budget group is subsampled to the same number of answer tokens
(``budget="tokens"``, the default), of examples (``"examples"``), or takes its whole pool
(``"all"``). The subsample of seed ``s`` is a prefix of the arm's pool ordered by a hash of
``(s, prompt)``: arms that answered the same prompts draw the same prompts (a matched
comparison), arms with different prompts draw independent samples, and either way each
seed draws a fresh sample so the intervals include the sampling variance of the data.
An arm with ``part=(k, n)`` uses, at each seed, the k-th of n disjoint random parts of its
pool (the two halves behind the noise floor).

Resume: each finished (arm, seed) run is written to ``run_dir/runs/<arm>/seed_<s>.json``
(atomically); a rerun with the same plan skips them. ``plan.json`` fixes the plan; a run dir
holding a different plan is refused rather than mixed.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import xxhash

from curate.basics.errors import CurateError
from curate.basics.files import json_sha256
from experiments.harness import Grid, safe_name
from train.api import answer_ids, answer_losses, answer_tokens, finetune, packed_rows, prompt_ids

BUDGETS = ("tokens", "examples", "all")


@dataclass
class Arm:
    """A named pool of conversations (``{"messages": [...]}``). ``group``: arms are budget-equalised
    within their group; ``part``: (k, n) to train on the k-th of n random parts of the pool."""

    name: str
    examples: list[dict]
    group: str = "main"
    part: tuple[int, int] | None = None
    price_per_example: float | None = None


@dataclass
class Settings:
    """How every arm is trained and evaluated.

    seeds: paired seeds per arm (default 3). budget: tokens | examples | all; max_budget caps it
    (answer tokens or examples). steps: optimizer steps for every arm; None -> ``epochs`` passes over
    the mean packed subsample (default 2). train: TrainConfig fields (seq_len also caps every
    example's tokens). eval_points: held-out evaluations along training for the loss curves.
    """

    seeds: int = 3
    budget: str = "tokens"
    max_budget: int | None = None
    steps: int | None = None
    epochs: float = 2.0
    template: str = "llama2"
    train: dict = field(default_factory=lambda: {"lr": 1e-3, "batch_size": 8, "seq_len": 256,
                                                  "warmup_steps": 5, "min_lr_ratio": 0.1})
    eval_points: int = 4

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise CurateError(f"budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.seeds < 1:
            raise CurateError(f"seeds must be >= 1, got {self.seeds}")

    @property
    def max_len(self) -> int:
        return int(self.train.get("seq_len", 256)) + 1


def prompt_key(example: dict) -> str:
    """The prompt of a conversation (every turn but the last answer), lowercased with
    whitespace collapsed: what "the same prompt" means for matching arms."""
    turns = example.get("messages", [])[:-1]
    return " ".join(" ".join(f"{m.get('role')}: {m.get('content')}" for m in turns).lower().split())


fingerprint = json_sha256  # sha256 (first 16 hex digits) of the canonical JSON of an object


def _order(keys: list[str], seed: int, salt: str = "") -> np.ndarray:
    """Indices of ``keys`` sorted by a hash of (seed, salt, key); ties keep input order."""
    h = np.array([xxhash.xxh64_intdigest(f"{seed}\x00{salt}\x00{k}".encode()) for k in keys], dtype=np.uint64)
    return np.argsort(h, kind="stable")


def select(keys: list[str], sizes: np.ndarray, budget: float, seed: int, part: tuple[int, int] | None = None
           ) -> list[int]:
    """The subsample of one arm at one seed: pool indices in hash order, as many as fit in
    ``budget`` (in the units of ``sizes``: answer tokens, or 1 per example)."""
    pool = np.arange(len(keys))
    if part is not None:
        k, n = part
        pool = _order(keys, seed, "part")[k::n]
    pool = pool[sizes[pool] > 0]  # unusable examples (no answer token within seq_len) never count
    order = pool[_order([keys[i] for i in pool], seed)]
    fits = np.cumsum(sizes[order]) <= budget
    return order[fits].tolist()


class Harness:
    """Plans and runs the (arm, seed) grid. ``base``: the start model (a ``train.model.Llama``);
    ``heldout``: conversations with reference answers, shared by every arm."""

    def __init__(self, arms: list[Arm], base, tokenizer, heldout: list[dict], settings: Settings,
                 run_dir: str | Path):
        names = [a.name for a in arms]
        if len(set(names)) != len(names) or len({safe_name(n) for n in names}) != len(names):
            raise CurateError(f"arm names must be distinct (as file names too): {names}")
        self.arms, self.base, self.tokenizer = arms, base, tokenizer
        self.settings, self.run_dir = settings, Path(run_dir)
        # a held-out answer that starts beyond seq_len has no token to score: left out, and counted
        self.heldout = [ex for ex in heldout if _answer_tokens(ex, tokenizer, settings) > 0]
        self.heldout_unscorable = len(heldout) - len(self.heldout)
        if not self.heldout:
            raise CurateError(f"no held-out example has an answer token within seq_len {settings.max_len - 1}")
        self.keys, self.sizes, self.skipped = {}, {}, {}
        for arm in arms:
            keys, sizes, skipped = [], [], []
            for i, ex in enumerate(arm.examples):
                n = _answer_tokens(ex, tokenizer, settings)
                if n == 0:
                    skipped.append((i, f"malformed, or no answer token within seq_len {settings.max_len - 1}"))
                keys.append(prompt_key(ex) if isinstance(ex, dict) else "")
                sizes.append(n)
            self.keys[arm.name], self.sizes[arm.name], self.skipped[arm.name] = keys, np.array(sizes), skipped
        self.plan = self._plan()

    def _units(self, arm: Arm) -> np.ndarray:
        sizes = self.sizes[arm.name]
        if self.settings.budget == "tokens":
            return sizes.astype(float)
        return np.where(sizes > 0, 1.0, 0.0)  # 0: unusable (no answer token within seq_len)

    def _plan(self) -> dict:
        s = self.settings
        budgets = {}
        for group in dict.fromkeys(a.group for a in self.arms):
            members = [a for a in self.arms if a.group == group]
            totals = []
            for a in members:
                usable = self._units(a).sum()
                totals.append(usable / a.part[1] if a.part else usable)
            budget = math.inf if s.budget == "all" else min(totals)
            budgets[group] = min(budget, s.max_budget) if s.max_budget else budget
        subsets = {a.name: [select(self.keys[a.name], self._units(a), budgets[a.group], seed, a.part)
                            for seed in range(s.seeds)] for a in self.arms}
        for name, per_seed in subsets.items():
            if not all(per_seed):
                raise CurateError(f"arm {name!r}: no usable example fits the budget")
        steps = s.steps or self._default_steps(subsets)
        return {"settings": asdict(s), "steps": steps,
                "budgets": {g: (None if math.isinf(b) else b) for g, b in budgets.items()},
                "heldout": fingerprint(self.heldout), "base": _model_hash(self.base),
                "arms": {a.name: {"data": fingerprint(a.examples), "group": a.group, "part": a.part,
                                  "subsets": [fingerprint(x) for x in subsets[a.name]]} for a in self.arms},
                "_subsets": subsets}

    def _default_steps(self, subsets: dict) -> int:
        s = self.settings
        rows = [packed_rows([arm.examples[i] for i in subsets[arm.name][0]], self.tokenizer, s.template, s.max_len)
                for arm in self.arms]
        return max(1, round(s.epochs * float(np.mean(rows)) / int(s.train.get("batch_size", 8))))

    def grid(self) -> Grid:
        """The (arm, seed) grid in ``run_dir`` with this plan (the subsets themselves left out)."""
        plan = {k: v for k, v in self.plan.items() if not k.startswith("_")}
        return Grid(self.run_dir, plan, [a.name for a in self.arms], self.settings.seeds, label="compare")

    def check_run_dir(self) -> None:
        """Write plan.json, or refuse a run dir that holds a different plan."""
        self.grid().check_plan()

    def result_path(self, arm: str, seed: int) -> Path:
        return self.grid().path(arm, seed)

    def run(self, scorer: Callable | None = None, quiet: bool = True) -> dict[str, list[dict]]:
        """Train and evaluate every (arm, seed) not already done; return arm -> per-seed results."""
        arms = {a.name: a for a in self.arms}
        return self.grid().run(lambda name, seed: self.run_one(arms[name], seed, scorer), quiet)

    def run_one(self, arm: Arm, seed: int, scorer: Callable | None = None) -> dict:
        """Fine-tune the base on this arm's subsample at ``seed``; score the held-out set."""
        s = self.settings
        idx = self.plan["_subsets"][arm.name][seed]
        examples = [arm.examples[i] for i in idx]
        steps = self.plan["steps"]
        batch = int(s.train.get("batch_size", 8))
        hp = {**s.train, "steps": steps, "eval_every": max(1, steps // max(1, s.eval_points)),
              "eval_batches": math.ceil(len(self.heldout) / batch), "log_every": steps, "ckpt_every": 0}
        t0 = time.perf_counter()
        model, result = finetune(model=self.base, tokenizer=self.tokenizer, examples=examples, hyperparams=hp,
                            seed=seed, template=s.template, val_examples=self.heldout, quiet=True)
        seconds = time.perf_counter() - t0
        record = {"arm": arm.name, "seed": seed, "examples": len(examples),
                  "answer_tokens": int(self.sizes[arm.name][idx].sum()), "steps": result.steps,
                  "trained_tokens": result.tokens, "train_seconds": round(seconds, 2),
                  "subset": self.plan["arms"][arm.name]["subsets"][seed],
                  "train_loss": [round(x, 5) for x in result.losses],
                  "val_curve": [[st, round(v, 5)] for st, v in result.val_losses],
                  "heldout_loss": heldout_losses(model, self.tokenizer, self.heldout, s.template, s.max_len)}
        if scorer is not None:
            record.update(scorer(model, seed))
        return record

    def base_losses(self, model=None) -> dict:
        """Held-out answer loss of ``model`` (default the base): ``heldout``, scored as the arms are;
        and for the conditioning check ``right`` and ``mismatched``: with the right prompts and with
        mismatched ones (each answer after the prompt of another held-out example, a seeded
        derangement). Both score the same answer tokens: the first ones that fit in seq_len after
        either prompt, so a model that ignores the prompt has a gain of exactly zero."""
        s, tok = self.settings, self.tokenizer
        n = len(self.heldout)
        perm = np.random.default_rng(0).permutation(n)
        other = np.empty(n, dtype=int)
        other[perm] = np.roll(perm, 1)  # example i takes the prompt of example other[i] != i
        prompts = [prompt_ids(ex, tok, s.template) for ex in self.heldout]
        answers = [answer_ids(ex, tok, s.template) for ex in self.heldout]
        right, mismatched = [], []
        for i, j in enumerate(other):
            k = s.max_len - max(len(prompts[i]), len(prompts[j]))
            if k < 2:  # no answer token to score after one of the two prompts
                k = 0
            for out, p in ((right, prompts[i]), (mismatched, prompts[j])):
                a = answers[i][:k]
                out.append((p, a) if k else None)
        model = model if model is not None else self.base
        score = [x is not None for x in right]
        losses = [heldout_losses(model, tok, [x for x in enc if x is not None], s.template, s.max_len)
                  for enc in (right, mismatched)]
        out = {}
        for key, values in zip(("right", "mismatched"), losses):
            it = iter(values)
            out[key] = [next(it) if ok else float("nan") for ok in score]
        out["heldout"] = heldout_losses(model, tok, self.heldout, s.template, s.max_len)  # as the arms are scored
        return out


def _answer_tokens(example, tokenizer, settings: Settings) -> int:
    return answer_tokens(example, tokenizer, settings.template, settings.max_len)


def heldout_losses(model, tokenizer, heldout: list[dict], template: str, max_len: int) -> list[float]:
    """Answer-token loss (nats/token) per held-out conversation (NaN where none is left)."""
    return [round(x, 6) for x in answer_losses(model, tokenizer, heldout, template, max_len=max_len, batch_size=16)]


def metric(results: dict[str, list[dict]], key: str = "heldout_loss") -> dict[str, np.ndarray]:
    """arm -> array [seeds, prompts] of ``key`` from :meth:`Harness.run`'s results."""
    return {arm: np.array([r[key] for r in runs], dtype=np.float64) for arm, runs in results.items()
            if all(r.get(key) is not None for r in runs)}


def _model_hash(model) -> str:
    """A fingerprint of the start weights: names, shapes, each tensor's sum and first 1024 values
    (cheap at any model size; the plan only needs to notice a different base)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        flat = t.detach().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}{float(flat.double().sum()):.6e}".encode())
        h.update(flat[:1024].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
