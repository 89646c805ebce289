"""Typed results of the experiments: the vendor comparison and the data ablation. Each has a
``to_dict`` giving the JSON written to ``compare.json`` / ``ablate.json`` (keys and their order
as before the types existed; optional blocks are left out when absent). The statistics blocks
(``loss``, ``win_rate_loss``, ``conditioning`` ...) are the dicts of :mod:`experiments.stats`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class VendorSummary:
    """One arm of the comparison, averaged over its seeds. ``cost``: price x examples used;
    ``gain_over_base``: base loss minus the arm's loss (nats/token); ``cost_per_point``: cost per
    0.01 nats gained (None without a price or a gain)."""

    group: str
    pool: int
    skipped: int
    examples_used: float
    answer_tokens_used: float
    price_per_example: float | None
    cost: float | None
    gain_over_base: float
    cost_per_point: float | None
    train_seconds: float
    train_loss: list[float]
    val_curve: list[list[float]]


@dataclass
class Comparison:
    """The vendor comparison from finished runs (see experiments.compare.run)."""

    metric: str
    loss: dict
    win_rate_loss: dict
    conditioning: dict
    base_loss: float
    noise_floor: dict | None = None
    reward: dict | None = None
    win_rate_reward: dict | None = None
    vendors: dict[str, VendorSummary] = field(default_factory=dict)
    matched: dict[str, float] = field(default_factory=dict)
    heldout_scored: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("noise_floor", "reward", "win_rate_reward"):
            if out[key] is None:
                del out[key]
        return out


@dataclass
class ArmSummary:
    """One arm of a data ablation: ``info`` (what the recipe gave: pool, items, tokens ...,
    written first), the mean held-out loss curve, per-seed trained and answer tokens, and the
    effect against the baseline (None for the baseline itself)."""

    info: dict
    curve: list[list[float]]
    trained_tokens: list[int]
    budget_tokens: int | None
    answer_tokens: list[int | None]
    effect: dict | None

    def to_dict(self) -> dict:
        return {**self.info, "curve": self.curve, "trained_tokens": self.trained_tokens,
                "budget_tokens": self.budget_tokens, "answer_tokens": self.answer_tokens, "effect": self.effect}


@dataclass
class Ablation:
    """A data ablation's result (see experiments.ablate.data)."""

    kind: str
    mode: str
    baseline: str
    loss: dict
    metric: str
    arms: dict[str, ArmSummary] = field(default_factory=dict)
    noise_floor: dict | None = None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "mode": self.mode, "baseline": self.baseline, "loss": self.loss,
               "metric": self.metric, "arms": {n: a.to_dict() for n, a in self.arms.items()}}
        if self.noise_floor is not None:
            out["noise_floor"] = self.noise_floor
        return out
