"""Pretraining arms of a data ablation (``kind: pretrain`` in :mod:`experiments.ablate.data`).

Each arm's documents are tokenized (BOS text EOS), laid end to end in a seeded order per seed
and cut into windows of ``seq_len + 1`` tokens; in ``tokens`` mode every arm uses exactly the same
number of windows (its token budget), in ``steps`` mode its whole pool, cycled. The held-out loss
is per held-out document (its first ``seq_len + 1`` tokens), so arms compare cell by cell
([seeds, documents]) in :func:`experiments.stats.compare_arms`.
"""
from __future__ import annotations

import copy

import numpy as np

from curate.basics.errors import CurateError
from experiments.compare.arms import fingerprint
from experiments.harness import Grid
from train import distributed
from train.api import doc_losses
from train.config import TrainConfig
from train.trainer import LoopState, build_optimizer, train_loop


class ArmStream:
    """One arm's documents laid end to end in a seeded order and cut into windows of
    ``seq_len + 1`` tokens. ``limit``: use only the first ``limit`` windows (the token budget),
    cycled in a fresh order each epoch when a run needs more. Counts what it hands out."""

    def __init__(self, docs: list[np.ndarray], seq_len: int, batch_size: int, seed: int, limit: int | None = None):
        order = np.random.default_rng([seed, 1]).permutation(len(docs))
        stream = np.concatenate([docs[i] for i in order]) if docs else np.zeros(0, np.int64)
        n = len(stream) // (seq_len + 1)
        if limit is not None and limit > n:
            raise CurateError(f"an arm has {n} windows of {seq_len + 1} tokens, fewer than the {limit} its budget needs")
        n = n if limit is None else limit
        self.windows = stream[: n * (seq_len + 1)].reshape(n, seq_len + 1).astype(np.int64)
        self.batch_size, self.seed, self.epoch, self.batch = batch_size, seed, 0, 0
        self.tokens_seen, self.windows_seen = 0, set()
        if n < batch_size:
            raise CurateError(f"an arm has {n} windows, fewer than one batch of {batch_size}")

    def next_batch(self):
        import torch

        per_epoch = len(self.windows) // self.batch_size
        if self.batch >= per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, 2, self.epoch]).permutation(len(self.windows))
        rows = order[self.batch * self.batch_size: (self.batch + 1) * self.batch_size]
        self.batch += 1
        self.tokens_seen += len(rows) * (self.windows.shape[1] - 1)
        self.windows_seen.update(rows.tolist())
        w = torch.from_numpy(self.windows[rows])
        return w[:, :-1], w[:, 1:]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}


def doc_batches(docs: list[np.ndarray], seq_len: int, batch_size: int, pad_id: int) -> list[dict]:
    """Held-out documents (first ``seq_len + 1`` tokens each) as padded batches; padding carries no loss."""
    import torch

    out = []
    for i in range(0, len(docs), batch_size):
        chunk = [d[: seq_len + 1] for d in docs[i: i + batch_size]]
        width = max(len(d) for d in chunk) - 1
        inputs = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        targets = torch.full((len(chunk), width), -100, dtype=torch.long)
        for r, d in enumerate(chunk):
            t = torch.as_tensor(d, dtype=torch.long)
            inputs[r, : len(d) - 1], targets[r, : len(d) - 1] = t[:-1], t[1:]
        out.append({"inputs": inputs, "targets": targets})
    return out


def pretrain_arm(base, docs: list[np.ndarray], heldout: list[np.ndarray], hp: dict, seed: int, steps: int,
                 limit: int | None, eval_points: int = 4, pad_id: int = 0) -> dict:
    """Train a copy of ``base`` for ``steps`` steps on one arm's windows at ``seed``; ``heldout``:
    token ids of the held-out documents (at most seq_len + 1 each)."""
    import torch

    tc = TrainConfig(**{**hp, "steps": steps, "ckpt_every": 0, "log_every": steps,
                        "eval_every": max(1, steps // max(1, eval_points))})
    data = ArmStream(docs, tc.seq_len, tc.batch_size, seed, limit)
    val = doc_batches(heldout, tc.seq_len, 16, pad_id)
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    world = distributed.World()
    state = train_loop(model, build_optimizer(model, tc), data, tc, world, state=LoopState(),
                       val_batches=lambda: val, quiet=True)
    per_step = tc.batch_size * tc.seq_len
    return {"seed": seed, "steps": state.step, "trained_tokens": state.tokens, "tokens_seen": data.tokens_seen,
            "distinct_tokens": len(data.windows_seen) * tc.seq_len, "budget_tokens": None if limit is None else limit * tc.seq_len,
            "train_loss": [round(x, 5) for x in state.losses],
            "val_curve": [[s * per_step, round(v, 5)] for s, v in state.val_losses],
            "heldout_loss": [round(x, 6) for x in doc_losses(model, heldout, 16, pad_id)]}




def run_pretrain_arms(cfg, arms: dict, base, tok, heldout: list[dict], out, quiet: bool = True):
    """Train every (arm, seed) not done yet in ``out/runs`` (resumable); return arm -> per-seed records and the plan."""
    hp = {**{"lr": 1e-3, "batch_size": 8, "seq_len": 256, "warmup_steps": 5, "min_lr_ratio": 0.1}, **cfg.train}
    seq, batch = int(hp["seq_len"]), int(hp["batch_size"])
    docs = {n: [np.asarray(x, np.int64) for x in tok.encode_batch([it["text"] for it in items], eos=True)]
            for n, items in arms.items()}
    held = [np.asarray(x, np.int64)[: seq + 1] for x in tok.encode_batch([h["text"] for h in heldout], eos=True)
            if len(x) >= 2]
    if cfg.mode == "tokens":
        most = min(sum(len(d) for d in ds) // (seq + 1) * seq for ds in docs.values())
        budget = cfg.budget or most
        steps = budget // (batch * seq)
        if steps < 1:
            raise CurateError(f"budget of {budget} tokens is less than one batch of {batch} x {seq}")
        limit = steps * batch
    else:
        steps, limit = cfg.steps, None
    plan = {"mode": cfg.mode, "steps": steps, "budget_tokens": None if limit is None else limit * seq,
            "train": hp, "seeds": cfg.seeds, "heldout": fingerprint([h["text"] for h in heldout]),
            "arms": {n: fingerprint([it["text"] for it in items]) for n, items in arms.items()}}
    results = Grid(out, plan, list(arms), cfg.seeds, label="ablate").run(
        lambda name, seed: {"arm": name, **pretrain_arm(base, docs[name], held, dict(hp), seed, steps, limit,
                                                        cfg.eval_points, tok.pad_id)}, quiet)
    return results, plan
