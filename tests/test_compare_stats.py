"""experiments.stats against hand-computed values."""
import itertools

import numpy as np
import pytest

from experiments import stats


def test_replicate_mean_equals_mean_of_resampled_grid():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 7))
    rs = stats.Resamples.draw(3, 7, n_boot=50, seed=1)
    for b in range(50):
        rows = np.repeat(np.arange(3), rs.seeds[b].astype(int))
        cols = np.repeat(np.arange(7), rs.prompts[b].astype(int))
        assert rs.means(x)[b] == pytest.approx(x[rows][:, cols].mean())


def test_prompt_bootstrap_variance_is_population_variance_over_p():
    # one seed: the bootstrap mean of P values has variance var_pop / P
    x = np.array([[0.0, 1.0, 4.0, 9.0]])  # mean 3.5, var_pop = (12.25+6.25+0.25+30.25)/4 = 12.25
    reps = stats.Resamples.draw(1, 4, n_boot=200_000, seed=0).means(x)
    assert reps.mean() == pytest.approx(3.5, abs=0.02)
    assert reps.var() == pytest.approx(12.25 / 4, rel=0.02)


def test_seed_bootstrap_variance_is_population_variance_over_s():
    # one prompt: only the seeds vary; seed means 1, 2, 6 -> var_pop = 14/3, / S = 14/9
    x = np.array([[1.0], [2.0], [6.0]])
    reps = stats.Resamples.draw(3, 1, n_boot=200_000, seed=0).means(x)
    assert reps.var() == pytest.approx(14 / 9, rel=0.02)


def test_interval_of_two_values_matches_enumeration():
    # resampling [0, 1] twice: means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    outcomes = [np.mean(c) for c in itertools.product([0.0, 1.0], repeat=2)]
    assert sorted(outcomes) == [0.0, 0.5, 0.5, 1.0]
    lo, hi = stats.interval(stats.Resamples.draw(1, 2, 20_000, seed=5).means(np.array([[0.0, 1.0]])))
    assert (lo, hi) == (0.0, 1.0)


def test_verdicts_for_lower_is_better():
    base = np.array([[2.0, 2.1, 1.9], [2.0, 2.2, 1.8]])
    worse = base + 0.3  # a constant shift: every replicate of the difference is exactly 0.3
    same = base.copy()
    out = stats.compare_arms({"clean": base, "noisy": worse, "twin": same}, n_boot=500)
    assert out["ranking"][-1] == "noisy"
    pair = out["pairs"]["clean|noisy"]
    assert pair["diff"] == pytest.approx(-0.3)
    assert (pair["lo"], pair["hi"]) == pytest.approx((-0.3, -0.3))
    assert pair["verdict"] == stats.BETTER
    assert out["pairs"]["noisy|clean"]["verdict"] == stats.WORSE
    assert out["pairs"]["clean|twin"]["verdict"] == stats.NO_DIFFERENCE
    assert out["arms"]["clean"]["mean"] == pytest.approx(2.0)


def test_verdict_direction_for_higher_is_better():
    assert stats.verdict(0.1, 0.2, higher_is_better=True) == stats.BETTER
    assert stats.verdict(0.1, 0.2, higher_is_better=False) == stats.WORSE
    assert stats.verdict(-0.1, 0.2, higher_is_better=True) == stats.NO_DIFFERENCE


def test_nan_prompts_are_dropped_and_counted():
    a = np.array([[1.0, np.nan, 3.0]])
    b = np.array([[1.0, 5.0, 2.0]])
    out = stats.compare_arms({"a": a, "b": b}, n_boot=100)
    assert out["dropped_prompts"] == 1 and out["prompts"] == 2
    assert out["arms"]["a"]["mean"] == pytest.approx(2.0) and out["arms"]["b"]["mean"] == pytest.approx(1.5)


def test_win_rates_count_ties_as_half():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.array([[2.0, 2.0, 1.0, 5.0]])  # a has lower loss on prompts 0 and 3, ties prompt 1
    out = stats.win_rates({"a": a, "b": b}, n_boot=100)
    assert out["matrix"][0][1] == pytest.approx(2.5 / 4)
    assert out["matrix"][1][0] == pytest.approx(1.5 / 4)
    assert out["matrix"][0][0] == 0.5


def test_noise_floor_is_largest_interval_end():
    a = np.array([[1.0, 1.0], [1.0, 1.0]])
    b = a - 0.05
    out = stats.noise_floor(a, b, n_boot=100)
    assert out["diff"] == pytest.approx(0.05) and out["floor"] == pytest.approx(0.05)


def test_conditioning_gain_flags_a_model_that_ignores_the_prompt():
    right = np.array([3.0, 3.2, 2.9, 3.1])
    ignores = stats.conditioning_gain(right, right.copy(), n_boot=200)
    assert ignores["gain"] == 0.0 and ignores["ignores_prompt"]
    reads = stats.conditioning_gain(right, right + np.array([0.2, 0.1, 0.3, 0.2]), n_boot=200)
    assert reads["gain"] == pytest.approx(0.2) and not reads["ignores_prompt"]
    assert reads["lo"] >= 0.1 and reads["hi"] <= 0.3
