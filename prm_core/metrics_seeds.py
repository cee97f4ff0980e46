"""Intervals that include training variance: a two-level bootstrap over training seeds, then problems.

Why: a model trained with another seed, thread count or CPU kernel is another draw of the same
training procedure. An interval that resamples the problems of one trained model says how sure we
are about *that model*; a claim about the *method* ("a PRM ranks steps better than an ORM") must
also cover how far its result moves from one training run to the next. The two-level (nested)
bootstrap resamples the upper level first, then the lower level inside each pick: draw S training
seeds with replacement, then, for each drawn seed, its problems with replacement, and average
(Davison and Hinkley, 1997, *Bootstrap Methods and their Application*, section 3.8; Ren et al.,
2010, "Nonparametric bootstrapping for hierarchical data", J. Applied Statistics 37(9)).

With one seed the interval is ``bootstrap_ci``'s problem bootstrap, draw for draw: the seed's
spread is then unknown, not zero, and ``n_seeds`` travels with every result so the prose can say so.
With two or three seeds the seed level is coarse (three seeds have ten distinct resamples), which
widens the interval; that is the honest price of few training runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from prm_core.checks import check_real_array, check_seed
from prm_core.metrics_base import UndefinedMetricWarning, _check_positive_int
from prm_core.metrics_best_of_n import GroupMembers, percentile_interval, statistic_value

__all__ = ["seed_bootstrap_ci", "seed_paired_difference", "seed_statistic_ci", "seed_statistic_resamples"]


def _per_seed_problem(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite float64 (S, P) array: one row per training seed, one column per problem."""
    if isinstance(values, list | tuple) and values:
        lengths = {len(row) if isinstance(row, list | tuple | np.ndarray) else -1 for row in values}
        if len(lengths) > 1:
            raise ValueError(f"{name} has rows of different lengths; every training seed must be scored on the same "
                             "problems, in the same order (one row per seed, one column per problem).")
    if values is None:
        raise ValueError(f"{name} is None; pass (n_seeds, n_problems) per-problem values.")
    array = check_real_array(values, name, fix="pass finite per-problem values (e.g. 0/1 hits or accuracies), "
                             "one row per training seed")
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} has shape {array.shape}; pass (n_seeds, n_problems), at least one of each "
                         "(a single trained model is one row: values[None, :]).")
    return array


def seed_bootstrap_ci(per_problem: Any, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean over training seeds of a per-problem mean, with its two-level 95% bootstrap interval.

    Parameters
    ----------
    per_problem : array-like of shape (S, P)
        Row s: a per-problem value (a 0/1 hit, an accuracy, a paired difference) of the model trained
        with seed s; column p: the same held-out problem for every seed. Finite reals; bools raise.
    n_bootstrap : int, default 1000
    seed : int, default 0
        Seeds the resampling, in [0, 2**63).

    Returns
    -------
    dict
        ``value`` (the mean of the S per-seed means), ``ci_low``, ``ci_high`` (percentile interval),
        ``n_seeds`` (S), ``n_problems`` (P) and ``per_seed`` (the S per-seed means, a list).

    Raises
    ------
    ValueError
        For a shape other than (S, P) with S, P >= 1, rows of different lengths, NaN or infinity,
        or a bad ``n_bootstrap`` or ``seed``.
    ArgumentTypeError
        For bools or text.

    Examples
    --------
    Two seeds that disagree by 0.4 give a wide interval even though each has many problems:

    >>> hits = np.array([[1.0] * 90 + [0.0] * 10, [1.0] * 50 + [0.0] * 50])
    >>> out = seed_bootstrap_ci(hits)
    >>> out["value"], out["n_seeds"], out["ci_low"] < 0.55 and out["ci_high"] > 0.85
    (0.7, 2, True)
    """
    values = _per_seed_problem(per_problem, "per_problem")
    n_bootstrap = _check_positive_int(n_bootstrap, "n_bootstrap")
    rng = np.random.default_rng(check_seed(seed))
    n_seeds, n_problems = values.shape
    # problems first, in the order bootstrap_ci draws them, so one seed gives its interval exactly
    problems = rng.integers(0, n_problems, size=(n_bootstrap, n_seeds, n_problems))
    seeds = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds, 1))  # slot k of a resample: a drawn seed
    means = values[seeds, problems].mean(axis=(1, 2))  # every slot has P problems, so this is a mean of means
    low, high = percentile_interval(means)
    per_seed = values.mean(axis=1)
    return {"value": float(per_seed.mean()), "ci_low": low, "ci_high": high, "n_seeds": n_seeds,
            "n_problems": n_problems, "per_seed": per_seed.tolist()}


def seed_paired_difference(a: Any, b: Any, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``seed_bootstrap_ci(a - b)``: method A minus method B on the same problems, seed by seed.

    Row s of ``a`` and of ``b`` are resampled together, so pair rows that share what they share
    (the same training seed, the same RL seed and its reward model); both (S, P) of equal shape.
    "A above B across training seeds" means ``ci_low > 0`` here.

    Examples
    --------
    >>> d = seed_paired_difference([[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], n_bootstrap=200)
    >>> d["value"], d["per_seed"]
    (0.5, [0.5, 0.5])
    """
    a, b = _per_seed_problem(a, "a"), _per_seed_problem(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} must have equal shapes: the same seeds and problems.")
    return seed_bootstrap_ci(a - b, n_bootstrap, seed)


def seed_statistic_ci(statistic: Callable[[int, np.ndarray], float], groups: Any, n_seeds: int,
                      n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Two-level interval of any statistic of items (steps, solutions) grouped by problem.

    For statistics that are not a mean over problems, such as a step AUROC: each resample draws
    ``n_seeds`` seeds with replacement and, for each, whole problems with replacement, calls
    ``statistic(seed, item_indices)`` and averages the finite results (a resample where every call
    is undefined, nan, is left out, as in ``bootstrap_statistic_ci``).

    Parameters
    ----------
    statistic : callable (int, int array) -> float
        The statistic of the model trained with seed ``seed`` (0 .. n_seeds - 1) on the items given
        (indices with repeats into the items every seed was evaluated on); nan where undefined.
    groups : array-like, shape (n_items,)
        The problem of each item, the same for every seed.
    n_seeds : int
        Training seeds, >= 1.
    n_bootstrap : int, default 1000
    seed : int, default 0

    Returns
    -------
    dict
        ``value`` (mean over seeds of the statistic on all items), ``ci_low``, ``ci_high``,
        ``n_seeds``, ``per_seed``.

    Raises
    ------
    ValueError
        For groups that are not one id per item, a bad ``n_seeds``, ``n_bootstrap`` or ``seed``,
        or a statistic that returns more than one number.
    ArgumentTypeError
        For a statistic that returns text or a bool.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])  # two seeds, four items
    >>> out = seed_statistic_ci(lambda s, idx: x[s, idx].mean(), [0, 0, 1, 1], n_seeds=2, n_bootstrap=200)
    >>> out["per_seed"], out["ci_low"] <= out["value"] <= out["ci_high"]
    ([0.75, 0.5], True)
    """
    per_seed, resampled = seed_statistic_resamples(statistic, groups, n_seeds, n_bootstrap, seed)
    low, high = percentile_interval(resampled)
    return {"value": float(np.mean(per_seed)), "ci_low": low, "ci_high": high, "n_seeds": len(per_seed),
            "per_seed": per_seed}


def seed_statistic_resamples(statistic: Callable[[int, np.ndarray], float], groups: Any, n_seeds: int,
                             n_bootstrap: int = 1000, seed: int = 0) -> tuple[list[float], np.ndarray]:
    """``seed_statistic_ci``'s parts: the statistic of each seed on all items, and the (n_bootstrap,)
    resample means (nan where every slot was undefined). The draws depend only on ``groups``,
    ``n_seeds``, ``n_bootstrap`` and ``seed``, so two statistics resampled with the same arguments
    are paired draw by draw: the interval of their difference is the percentile interval of the
    difference of their resample means (``comparison_seeds`` uses this to compute each model once)."""
    if not callable(statistic):
        raise ValueError(f"statistic={statistic!r} must be a function (seed, item_indices) -> float.")
    group_ids = np.asarray(groups)
    if group_ids.ndim != 1 or group_ids.size == 0 or group_ids.dtype == object:
        raise ValueError(f"groups has shape {group_ids.shape} and dtype {group_ids.dtype}; pass one int or text "
                         "group id per item (1-D, non-empty, no None).")
    n_seeds = _check_positive_int(n_seeds, "n_seeds")
    n_bootstrap = _check_positive_int(n_bootstrap, "n_bootstrap")
    rng = np.random.default_rng(check_seed(seed))
    members = GroupMembers.of(group_ids)
    problems = rng.integers(0, members.n_groups, size=(n_bootstrap, n_seeds, members.n_groups))
    seeds = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds))
    everything = np.arange(group_ids.size)
    values = np.empty(n_bootstrap)
    with warnings.catch_warnings():  # a resample with one class only is expected, and left out
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        per_seed = [statistic_value(statistic, s, everything) for s in range(n_seeds)]
        for b in range(n_bootstrap):
            slots = np.array([statistic_value(statistic, int(seeds[b, k]), members.items(problems[b, k]))
                              for k in range(n_seeds)])
            values[b] = np.nanmean(slots) if np.isfinite(slots).any() else np.nan
    if not np.isfinite(per_seed).all():
        raise ValueError(f"statistic is undefined (nan or inf) on every item for seeds "
                         f"{[s for s, v in enumerate(per_seed) if not np.isfinite(v)]}: each seed's model needs a "
                         "finite value on the full data (e.g. both classes present for an AUROC).")
    return per_seed, values
