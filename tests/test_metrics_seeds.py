"""Two-level intervals (training seeds, then problems): prm_core.metrics_seeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from prm_core.checks import ArgumentTypeError
from prm_core.metrics import (
    bootstrap_ci,
    bootstrap_statistic_ci,
    seed_bootstrap_ci,
    seed_paired_difference,
    seed_statistic_ci,
    step_auroc,
)

finite = st.floats(-5, 5, allow_nan=False, width=64)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 30), elements=finite), st.integers(1, 200), st.integers(0, 2**32))
def test_one_seed_is_the_problem_bootstrap_draw_for_draw(values, n_bootstrap, seed):
    out = seed_bootstrap_ci(values[None, :], n_bootstrap, seed)
    assert (out["ci_low"], out["ci_high"]) == bootstrap_ci(values, n_bootstrap, seed)
    assert out["n_seeds"] == 1 and out["value"] == pytest.approx(values.mean())


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(2, 6), elements=finite, unique=True), st.integers(1, 20),
       st.floats(1.1, 10), st.integers(0, 2**32))
def test_pure_seed_noise_widens_the_interval_with_the_seeds_spread(offsets, n_problems, factor, seed):
    """Every problem alike within a seed: the problem bootstrap of any one seed has width 0, and the
    two-level interval's width is proportional to how far the seeds lie apart."""
    narrow = seed_bootstrap_ci(np.repeat(offsets[:, None], n_problems, axis=1), 400, seed)
    wide = seed_bootstrap_ci(np.repeat(factor * offsets[:, None], n_problems, axis=1), 400, seed)
    width = lambda out: out["ci_high"] - out["ci_low"]  # noqa: E731
    assert bootstrap_ci(np.full(n_problems, offsets[0]), 400, seed) == pytest.approx((offsets[0], offsets[0]))
    assert width(narrow) > 0
    assert width(wide) == pytest.approx(factor * width(narrow), rel=1e-9, abs=1e-12)


def test_seed_spread_makes_the_interval_wider_than_any_one_seeds_problem_interval():
    rng = np.random.default_rng(0)
    hits = np.stack([rng.random(300) < p for p in (0.5, 0.6, 0.7)]).astype(float)
    two_level = seed_bootstrap_ci(hits)
    for row in hits:
        low, high = bootstrap_ci(row)
        assert two_level["ci_high"] - two_level["ci_low"] > high - low
    assert two_level["per_seed"] == pytest.approx(hits.mean(axis=1).tolist())


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=finite), finite)
def test_shifting_every_value_shifts_the_interval(values, shift):
    base, moved = seed_bootstrap_ci(values, 100, 3), seed_bootstrap_ci(values + shift, 100, 3)
    for key in ("value", "ci_low", "ci_high"):
        assert moved[key] == pytest.approx(base[key] + shift, abs=1e-9)
    assert base["ci_low"] <= base["ci_high"]


def test_paired_difference_is_the_interval_of_the_differences():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 50)), rng.random((3, 50))
    assert seed_paired_difference(a, b, 300, 2) == seed_bootstrap_ci(a - b, 300, 2)
    with pytest.raises(ValueError, match="equal shapes"):
        seed_paired_difference(a, b[:2])


@pytest.mark.parametrize("bad, match", [
    (np.ones(5), r"shape \(5,\); pass \(n_seeds, n_problems\)"),
    (np.ones((2, 0)), "at least one of each"),
    ([[1.0, 0.0], [1.0]], "same problems"),
    ([[1.0, np.nan]], "NaN is not allowed"),
])
def test_bad_per_problem_values_raise_naming_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        seed_bootstrap_ci(bad)


def test_bools_and_bad_counts_raise():
    with pytest.raises(ArgumentTypeError, match="not bools"):
        seed_bootstrap_ci(np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="n_bootstrap"):
        seed_bootstrap_ci(np.ones((2, 3)), n_bootstrap=0)
    with pytest.raises(ValueError, match="n_seeds"):
        seed_statistic_ci(lambda s, idx: 0.0, [0, 1], n_seeds=0)


def test_statistic_interval_with_one_seed_is_the_group_bootstrap():
    rng = np.random.default_rng(2)
    scores, labels, groups = rng.random(120), (rng.random(120) < 0.6).astype(float), np.repeat(np.arange(30), 4)
    auroc = lambda idx: step_auroc(scores[idx], labels[idx])  # noqa: E731
    out = seed_statistic_ci(lambda s, idx: auroc(idx), groups, n_seeds=1, n_bootstrap=200, seed=5)
    assert (out["ci_low"], out["ci_high"]) == bootstrap_statistic_ci(auroc, groups, 200, 5)
    assert out["value"] == pytest.approx(auroc(np.arange(120)))


def test_statistic_interval_covers_seeds_that_disagree():
    """Two seeds' models whose AUROCs differ by far more than either's problem interval."""
    rng = np.random.default_rng(3)
    labels, groups = (rng.random(400) < 0.5).astype(float), np.repeat(np.arange(100), 4)
    scores = [labels * 0.9 + rng.random(400), labels * 0.2 + rng.random(400)]  # a good and a weak model
    out = seed_statistic_ci(lambda s, idx: step_auroc(scores[s][idx], labels[idx]), groups, n_seeds=2,
                            n_bootstrap=300)
    low, high = sorted(out["per_seed"])
    assert out["ci_low"] < low + 0.05 and out["ci_high"] > high - 0.05
    with pytest.raises(ArgumentTypeError, match="not text or a bool"):
        seed_statistic_ci(lambda s, idx: "0.5", groups, n_seeds=2, n_bootstrap=2)


@pytest.mark.parametrize("bad, match", [
    ([[1.0, [2.0, 3.0]], [1.0, 2.0]], "must hold real numbers|different lengths|inhomogeneous"),
    (None, "is None"),
])
def test_malformed_rows_raise_naming_the_field(bad, match):
    with pytest.raises((ValueError, ArgumentTypeError), match=match):
        seed_bootstrap_ci(bad)


def test_a_statistic_that_is_not_a_function_or_undefined_everywhere_raises():
    with pytest.raises(ValueError, match="must be a function"):
        seed_statistic_ci(5, [0, 0, 1, 1], 2)
    with pytest.raises(ValueError, match="no None"):
        seed_statistic_ci(lambda s, idx: 0.0, [None, None, 1, 1], 2)
    with pytest.raises(ValueError, match=r"undefined \(nan or inf\) on every item for seeds \[0, 1\]"):
        seed_statistic_ci(lambda s, idx: float("nan"), [0, 0, 1, 1], 2, n_bootstrap=5)
