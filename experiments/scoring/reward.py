"""The ``reward`` step: score SFT conversations with a reward model from ``curate train rm``.

Writes ``meta[key]`` (default ``reward``): the reward of the last assistant answer given the
turns before it. With ``min_reward`` it also removes the conversations scoring below it. Preference pairs
get ``meta["reward_chosen"]`` and ``meta["reward_rejected"]``. Documents that are not
conversations (no ``meta["messages"]`` ending in an answer) are kept unscored and counted
in ``counters["reward_unscored"]``.

    - step: reward
      model: runs/rm/model        # directory with reward.json and the tokenizer
      min_reward: 0.0             # optional filter
      batch_size: 16
      device: cpu                 # auto | cpu | cuda
"""
from __future__ import annotations

import math
from pathlib import Path

from curate.basics.device import resolve_device
from curate.pipeline.step import Step, register
from curate.record import Removed
from train.reward import RewardModel, score
from train.tokenizer import Tokenizer


@register("reward")
class RewardScore(Step):
    def __init__(self, model: str, min_reward: float | None = None, batch_size: int = 16, device: str = "cpu",
                 key: str = "reward"):
        super().__init__()
        if not (Path(model) / "reward.json").is_file():
            raise ValueError(f"reward: {model} is not a reward model directory (no reward.json)")
        self.path, self.min_reward, self.batch_size, self.device = model, min_reward, batch_size, device
        self.key = key
        self.rm = self.tokenizer = None

    def setup(self) -> None:
        device = resolve_device(self.device)
        self.rm = RewardModel.load(self.path, device=device)
        self.tokenizer = Tokenizer.from_file(self.path)

    def _items(self, doc) -> list[tuple[str, list, str]]:
        meta = doc.meta
        if meta.get("kind") == "preference" and isinstance(meta.get("prompt"), list):
            return [("reward_chosen", meta["prompt"], meta.get("chosen")),
                    ("reward_rejected", meta["prompt"], meta.get("rejected"))]
        msgs = meta.get("messages")
        if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
            return [(self.key, msgs[:-1], msgs[-1].get("content"))]
        return []

    def process(self, docs):

        if self.rm is None:
            self.setup()
        todo = [(doc, key, prompt, answer) for doc in docs for key, prompt, answer in self._items(doc)]
        rewards = score(self.rm, self.tokenizer, [t[2] for t in todo], [t[3] for t in todo],
                        batch_size=self.batch_size) if todo else []
        for (doc, key, _, _), r in zip(todo, rewards):
            doc.meta[key] = None if math.isnan(r) else r
            self.counters["reward_scored" if not math.isnan(r) else "reward_malformed"] += 1
        kept, removed = [], []
        for doc in docs:
            r = doc.meta.get(self.key)
            if not self._items(doc):
                self.counters["reward_unscored"] += 1
            if self.min_reward is not None and isinstance(r, float) and r < self.min_reward:
                removed.append(Removed(doc, self.name, f"reward {r:.4f} < {self.min_reward}"))
            else:
                kept.append(doc)
        return kept, removed
