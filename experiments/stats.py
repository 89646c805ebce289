"""Paired statistics for comparing training arms (vendors, data recipes, model variants).

Every arm is scored on the same held-out prompts under the same seeds, so a metric is an
array ``[S seeds, P prompts]`` per arm and arms are compared cell by cell. Intervals come
from a two-stage bootstrap: resample the seeds with replacement, then the prompts with
replacement, and take the mean over the resampled grid. The same resampled indices serve
every arm in a replicate, so differences between arms keep their pairing.

Resampling a grid by indices is the same as weighting it by multinomial counts, so one
replicate's mean is ``ws @ X @ wp / (S * P)`` with ``ws``, ``wp`` the counts; all
replicates are computed at once with ``einsum``.

Verdicts are for a pair (a, b) and the difference a - b: "better" when the 95% interval
of the difference lies entirely on the good side of zero, "worse" when on the bad side,
"no significant difference" otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"


@dataclass(frozen=True)
class Resamples:
    """Bootstrap weights shared by every arm: ``seeds`` [B, S] and ``prompts`` [B, P]
    multinomial counts (each row sums to S, resp. P)."""

    seeds: np.ndarray
    prompts: np.ndarray

    @classmethod
    def draw(cls, n_seeds: int, n_prompts: int, n_boot: int = 2000, seed: int = 0) -> "Resamples":
        """``n_boot`` replicates of "resample the seeds, then the prompts" (default 2000)."""
        rng = np.random.default_rng(seed)
        seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot)
        prompts = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=n_boot)
        return cls(seeds.astype(np.float64), prompts.astype(np.float64))

    def means(self, x: np.ndarray) -> np.ndarray:
        """The mean of ``x`` [S, P] in every replicate: an array [B]."""
        x = np.asarray(x, dtype=np.float64)
        S, P = x.shape
        return np.einsum("bs,sp,bp->b", self.seeds, x, self.prompts) / (S * P)


def interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (default 95%: the 2.5th and 97.5th percentiles)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, higher_is_better: bool) -> str:
    """Verdict on a difference a - b from its interval [lo, hi]."""
    if lo > 0:
        return BETTER if higher_is_better else WORSE
    if hi < 0:
        return WORSE if higher_is_better else BETTER
    return NO_DIFFERENCE


def summarize(x: np.ndarray, resamples: Resamples, level: float = 0.95) -> dict:
    """Mean of ``x`` [S, P] and its bootstrap interval."""
    lo, hi = interval(resamples.means(x), level)
    return {"mean": float(np.mean(x)), "lo": lo, "hi": hi}


def compare_arms(scores: dict[str, np.ndarray], higher_is_better: bool = False, n_boot: int = 2000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """Per-arm means with intervals, and every ordered pair's difference with a verdict.

    ``scores``: arm name -> array [S, P] (the same seeds and prompts for all arms, e.g. held-out
    answer loss in nats, where lower is better). Prompt columns that are NaN for any arm or seed
    are dropped first and counted in ``dropped_prompts``. Returns ``{"arms": {name: {mean, lo, hi}},
    "pairs": {"a|b": {a, b, diff, lo, hi, verdict}}, "ranking": [names best first], ...}``.
    """
    names = list(scores)
    grid = np.stack([np.asarray(scores[n], dtype=np.float64) for n in names])  # [A, S, P]
    if grid.ndim != 3:
        raise ValueError("each arm's scores must be an array [seeds, prompts]")
    keep = ~np.isnan(grid).any(axis=(0, 1))
    grid = grid[:, :, keep]
    if grid.shape[2] == 0:
        raise ValueError("no prompt has a score for every arm and seed")
    rs = Resamples.draw(grid.shape[1], grid.shape[2], n_boot, seed)
    reps = {n: rs.means(grid[k]) for k, n in enumerate(names)}
    arms = {}
    for k, n in enumerate(names):
        lo, hi = interval(reps[n], level)
        arms[n] = {"mean": float(grid[k].mean()), "lo": lo, "hi": hi}
    pairs = {}
    for a in names:
        for b in names:
            if a == b:
                continue
            lo, hi = interval(reps[a] - reps[b], level)
            pairs[f"{a}|{b}"] = {"a": a, "b": b, "diff": arms[a]["mean"] - arms[b]["mean"], "lo": lo, "hi": hi,
                                 "verdict": verdict(lo, hi, higher_is_better)}
    ranking = sorted(names, key=lambda n: arms[n]["mean"], reverse=higher_is_better)
    return {"arms": arms, "pairs": pairs, "ranking": ranking, "higher_is_better": higher_is_better,
            "seeds": int(grid.shape[1]), "prompts": int(grid.shape[2]), "dropped_prompts": int((~keep).sum()),
            "n_boot": n_boot, "level": level}


def win_rates(scores: dict[str, np.ndarray], higher_is_better: bool = False, n_boot: int = 2000,
              seed: int = 0, level: float = 0.95) -> dict:
    """Pairwise win rate: the share of (seed, prompt) cells where arm a scores better than arm b,
    ties counting one half, with a bootstrap interval. ``matrix[i][j]`` is row arm i against
    column arm j (the diagonal is 0.5). NaN cells count as ties."""
    names = list(scores)
    grid = np.stack([np.asarray(scores[n], dtype=np.float64) for n in names])
    sign = 1.0 if higher_is_better else -1.0
    rs = Resamples.draw(grid.shape[1], grid.shape[2], n_boot, seed)
    matrix = np.full((len(names), len(names)), 0.5)
    lo_m, hi_m = matrix.copy(), matrix.copy()
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                continue
            d = sign * (grid[i] - grid[j])
            wins = np.where(np.isnan(d), 0.5, (d > 0) + 0.5 * (d == 0))
            matrix[i, j] = wins.mean()
            lo_m[i, j], hi_m[i, j] = interval(rs.means(wins), level)
    return {"arms": names, "matrix": matrix.round(4).tolist(), "lo": lo_m.round(4).tolist(),
            "hi": hi_m.round(4).tolist()}


def noise_floor(half_a: np.ndarray, half_b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict:
    """The difference between two arms trained on random halves of one source ([S, P] each).

    ``floor`` is the larger absolute end of the difference's interval: a difference between
    other arms smaller than that is one that two samples of the same data could also show."""
    grid_a, grid_b = np.asarray(half_a, dtype=np.float64), np.asarray(half_b, dtype=np.float64)
    keep = ~(np.isnan(grid_a) | np.isnan(grid_b)).any(axis=0)
    grid_a, grid_b = grid_a[:, keep], grid_b[:, keep]
    rs = Resamples.draw(grid_a.shape[0], grid_a.shape[1], n_boot, seed)
    lo, hi = interval(rs.means(grid_a) - rs.means(grid_b), level)
    return {"diff": float(grid_a.mean() - grid_b.mean()), "lo": lo, "hi": hi, "floor": max(abs(lo), abs(hi))}


def conditioning_gain(right: np.ndarray, mismatched: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """How much the right prompt helps a model predict the reference answer.

    ``right``, ``mismatched``: per-prompt answer loss (nats/token) with each answer after its own
    prompt, and after another prompt. ``gain`` = mean(mismatched - right), with a prompt bootstrap
    interval; ``ignores_prompt`` is True when the interval does not lie above zero, i.e. the model
    cannot be shown to read the prompt at all (then a held-out loss cannot see whether a vendor's
    answers fit their prompts)."""
    d = np.asarray(mismatched, dtype=np.float64) - np.asarray(right, dtype=np.float64)
    d = d[~np.isnan(d)][None, :]
    rs = Resamples.draw(1, d.shape[1], n_boot, seed)
    lo, hi = interval(rs.means(d), level)
    return {"gain": float(d.mean()), "lo": lo, "hi": hi, "prompts": int(d.shape[1]), "ignores_prompt": lo <= 0}
