"""Answer-level evaluation: best-of-N curves over disjoint groups, with bootstrap CIs over problems."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prm_core.checks import ArgumentTypeError, check_choice, check_real_array, check_seed
from prm_core.metrics_base import UndefinedMetricWarning, _as_array, _check_positive_int
from prm_core.voting import SELECTION_METHODS, select_many

CURVE_METHODS: tuple[str, ...] = (*SELECTION_METHODS, "oracle")


def bootstrap_ci(per_problem: Any, n_bootstrap: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a mean over problems (the resamples ``best_of_n_curve``
    draws for the same number of problems and seed).

    ``per_problem`` holds one finite real number per problem (a 0/1 hit or an accuracy; bools raise:
    pass ``hits.astype(float)``); ``n_bootstrap`` is an int >= 1 and ``seed`` an int in [0, 2**63).

    Raises
    ------
    ValueError
        For bool, non-numeric or non-finite values (a NaN would make the interval NaN), a shape
        that is not (P,), or a bad ``n_bootstrap`` or ``seed``.

    Examples
    --------
    >>> low, high = bootstrap_ci([1.0, 0.0, 1.0, 1.0])
    >>> 0.0 <= low <= 0.75 <= high <= 1.0
    True
    """
    values = check_real_array(per_problem, "per_problem", fix="pass finite per-problem values (e.g. accuracies "
                              "in [0, 1]), leaving out problems without one")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per_problem has shape {values.shape}; pass one value per problem (1-D, non-empty).")
    n_bootstrap = _check_positive_int(n_bootstrap, "n_bootstrap")
    seed = check_seed(seed)
    resamples = np.random.default_rng(seed).integers(0, values.size, size=(n_bootstrap, values.size))
    low, high = np.percentile(values[resamples].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def bootstrap_statistic_ci(statistic: Callable[[np.ndarray], float], groups: Any, n_bootstrap: int = 1000,
                           seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of any statistic of items, resampling whole groups.

    Solutions of one problem are not independent (they share its difficulty), so the resampling unit
    is the problem: each resample draws problems with replacement and passes the indices of all
    their items to ``statistic``. Resamples where the statistic is undefined (nan: e.g. an AUROC
    drawn with one class only) are left out; their count shrinks the interval's support, never
    its value.

    Parameters
    ----------
    statistic : callable
        Maps an int array of item indices (with repeats) to a real number (nan where undefined);
        text or a bool raises.
    groups : array-like, shape (n_items,)
        The group (problem) of each item.
    n_bootstrap : int, default 1000
    seed : int, default 0
        In [0, 2**63).

    Returns
    -------
    (float, float)
        nan, nan when no resample gives a finite value.

    Raises
    ------
    ValueError
        For groups that are not one id per item (or hold nan), a bad ``n_bootstrap`` or ``seed``,
        or a statistic that returns more than one number, or something that is not a real number.

    Examples
    --------
    >>> values = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    >>> low, high = bootstrap_statistic_ci(lambda idx: values[idx].mean(), [0, 0, 1, 1, 2, 2])
    >>> 0.0 <= low <= values.mean() <= high <= 1.0
    True
    """
    group_ids = np.asarray(groups)
    if group_ids.ndim != 1 or group_ids.size == 0:
        raise ValueError(f"groups has shape {group_ids.shape}; pass one group id per item (1-D, non-empty).")
    if group_ids.dtype.kind == "f" and np.isnan(group_ids).any():
        raise ValueError("groups holds nan; give every item the id of its group (its problem).")
    n_bootstrap = _check_positive_int(n_bootstrap, "n_bootstrap")
    seed = check_seed(seed)
    members = GroupMembers.of(group_ids)
    rng = np.random.default_rng(seed)
    values = []
    with warnings.catch_warnings():  # a resample with one class only is expected, and left out below
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for picked in rng.integers(0, members.n_groups, size=(n_bootstrap, members.n_groups)):
            values.append(statistic_value(statistic, members.items(picked)))
    return percentile_interval(values)


@dataclass(frozen=True)
class GroupMembers:
    """The items of each group (problem), for resampling whole groups: group g holds
    ``order[starts[g]:starts[g + 1]]``."""

    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, group_ids: np.ndarray) -> GroupMembers:
        _, inverse = np.unique(group_ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        return cls(order, np.searchsorted(inverse[order], np.arange(inverse.max() + 2)))

    @property
    def n_groups(self) -> int:
        return self.starts.size - 1

    def items(self, picked: np.ndarray) -> np.ndarray:
        """The item indices of every picked group (with repeats), group after group."""
        lengths = np.diff(self.starts)[picked]
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # offset in its group
        return self.order[np.repeat(self.starts[picked], lengths) + within]


def statistic_value(statistic: Callable[..., Any], *args: Any) -> float:
    """``statistic(*args)`` as a float (nan or inf allowed); ArgumentTypeError for text or a bool,
    ValueError for more than one number."""
    returned = statistic(*args)
    try:  # not np.asarray: it would parse the text "0.5" and read True as 1.0
        value = check_real_array(returned, "statistic", allow_nan=True, allow_inf=True)
    except ArgumentTypeError as err:
        raise ArgumentTypeError(f"statistic returned {returned!r} ({type(returned).__name__}); it must return "
                                "a real number per resample (nan where undefined), not text or a bool.") from err
    if value.ndim != 0:
        raise ValueError(f"statistic returned shape {value.shape}; it must return one number per resample "
                         "(e.g. a mean over the indices it is given).")
    return float(value)


def percentile_interval(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the finite ``values`` (nan, nan when none is finite)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class CurvePoint:
    """Accuracy of choosing one answer from groups of ``n`` candidates, with a 95% bootstrap CI."""

    n: int  # candidates per group
    accuracy: float  # mean over problems of the share of their groups whose pick is correct
    ci_low: float  # 2.5th percentile of the bootstrap over problems
    ci_high: float  # 97.5th percentile
    n_groups: int  # disjoint groups per problem, M // n (leftover candidates unused)


def best_of_n_curve(answers: Any, is_correct: Any, scores: Any | None, method: str,
                    ns: Sequence[int] | None = None, n_bootstrap: int = 1000, seed: int = 0) -> list[CurvePoint]:
    """Accuracy of picking one answer from n candidates, for several n, with bootstrap CIs.

    Each problem's M candidates are cut into ``M // n`` disjoint groups of ``n`` consecutive ones
    (shuffle before calling). A group is right when its chosen answer is the answer of a correct
    candidate of that problem; for ``"oracle"``, when any of its candidates is correct. The CI is
    the percentile bootstrap over problems, with the same seeded resamples for every n.

    Parameters
    ----------
    answers : array-like of int, shape (P, M)
        Normalised answer of each candidate, encoded as integers.
    is_correct : array-like of bool, shape (P, M)
    scores : array-like of float, shape (P, M), or None
        Solution scores, finite and never bools (any float dtype: picks compare them in float64);
        needed by "best_of_n" and "weighted".
    method : {"best_of_n", "majority", "weighted", "oracle"}
        See ``prm_core.voting.select_many``.
    ns : sequence of int, optional
        Group sizes in [1, M]; default 1, 2, 4, ... up to M, with M itself last.
    n_bootstrap : int, default 1000
    seed : int, default 0
        Seed of the numpy Generator drawing the bootstrap resamples, in [0, 2**63).

    Returns
    -------
    list of CurvePoint, one per n
        ``accuracy`` is the mean over problems of ``per_problem_accuracy``, the share of each
        problem's groups whose ``select_many`` pick is right.

    Raises
    ------
    ValueError
        For answers that are not (P, M) integers, ``is_correct`` that is not bool of that shape,
        an unknown method, scores that are missing, bool or not finite, group sizes outside [1, M],
        or a bad ``n_bootstrap`` or ``seed``.

    Examples
    --------
    >>> answers = np.array([[1, 2, 2, 3], [5, 5, 7, 5]])
    >>> is_correct = answers == np.array([[1], [7]])
    >>> [p.accuracy for p in best_of_n_curve(answers, is_correct, None, "majority")]
    [0.25, 0.5, 0.0]
    """
    n_bootstrap = _check_positive_int(n_bootstrap, "n_bootstrap")
    seed = check_seed(seed)
    per_problem = per_problem_accuracy(answers, is_correct, scores, method, ns)
    n_problems, m = np.shape(answers)  # validated above
    resamples = np.random.default_rng(seed).integers(0, n_problems, size=(n_bootstrap, n_problems))
    points = []
    for n, right in per_problem.items():
        low, high = np.percentile(right[resamples].mean(axis=1), [2.5, 97.5])
        points.append(CurvePoint(n, float(right.mean()), float(low), float(high), m // n))
    return points


def per_problem_accuracy(answers: Any, is_correct: Any, scores: Any | None, method: str,
                         ns: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """For each n, the (P,) share of each problem's disjoint groups of n candidates whose pick is
    right: what ``best_of_n_curve`` averages, kept per problem for paired comparisons
    (``paired_difference``). Parameters as in ``best_of_n_curve``.

    Examples
    --------
    >>> answers = np.array([[1, 2, 2, 3], [5, 5, 7, 5]])
    >>> per_problem_accuracy(answers, answers == np.array([[1], [7]]), None, "oracle", ns=[2])[2].tolist()
    [0.5, 0.5]
    """
    answers, ok = _as_array(answers, "answers", dtype=None), _as_array(is_correct, "is_correct", dtype=None)
    if answers.ndim != 2 or not np.issubdtype(answers.dtype, np.integer):
        raise ValueError(f"answers has shape {answers.shape}, dtype {answers.dtype}; pass (P, M) integers.")
    if ok.shape != answers.shape or ok.dtype != bool:
        raise ValueError(f"is_correct (shape {ok.shape}, dtype {ok.dtype}) must be bool of shape {answers.shape}.")
    check_choice(method, "method", CURVE_METHODS)
    if scores is not None:
        scores = _as_array(scores, "scores")  # bools raise here, NaN and infinity in select_many
        if scores.shape != answers.shape:
            raise ValueError(f"scores.shape={scores.shape} must equal answers.shape={answers.shape}.")
    elif method in ("best_of_n", "weighted"):
        raise ValueError(f"scores is None but method={method!r} needs them; pass (P, M) solution scores.")
    n_problems, m = answers.shape
    if ns is None:
        ns = [2**k for k in range(m.bit_length()) if 2**k <= m] + ([m] if m & (m - 1) else [])
    elif isinstance(ns, (int, np.integer, str)):
        raise ValueError(f"ns={ns!r} must be a sequence of group sizes, e.g. ns=[{ns}].")
    ns = [_check_positive_int(n, "n in ns") for n in ns]
    for n in ns:
        if n > m:
            raise ValueError(f"n={n} is larger than the {m} candidates per problem; drop it from ns.")

    # One int key per (problem, answer) pair, so "is the pick a correct answer of its problem" is one np.isin.
    unique, codes = np.unique(answers, return_inverse=True)
    problem_base = np.arange(n_problems)[:, None] * unique.size  # (P, 1)
    keys = problem_base + codes.reshape(answers.shape)  # (P, M)
    correct_keys = np.unique(keys[ok])
    if np.isin(keys[~ok], correct_keys).any():
        warnings.warn("is_correct marks one answer both correct and incorrect within a problem; check answer "
                      "normalisation. A pick counts as right when any copy of its answer is correct.", stacklevel=3)
    out = {}
    for n in ns:
        n_groups = m // n
        used = slice(0, n_groups * n)
        if method == "oracle":
            group_right = ok[:, used].reshape(n_problems, n_groups, n).any(axis=2)  # (P, G)
        else:
            group_scores = None if scores is None else scores[:, used].reshape(-1, n)  # (P * G, n)
            chosen = select_many(answers[:, used].reshape(-1, n), group_scores, method)  # (P * G,)
            chosen_keys = problem_base + np.searchsorted(unique, chosen).reshape(n_problems, n_groups)
            group_right = np.isin(chosen_keys, correct_keys)  # (P, G)
        out[int(n)] = group_right.mean(axis=1)  # (P,): every problem weighs the same
    return out


def paired_difference(a: Any, b: Any, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over problems scored by both methods, with its 95% bootstrap interval:
    the paired comparison, which sees a difference that the two methods' own overlapping
    intervals can hide (both vary with the same hard and easy problems).

    Examples
    --------
    >>> d = paired_difference([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0])
    >>> d["value"], d["ci_low"] <= 0.25 <= d["ci_high"]
    (0.25, True)
    """
    a, b = _as_array(a, "a"), _as_array(b, "b")
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a {a.shape} and b {b.shape} must be one value per problem, the same problems, at least one.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite per-problem values (e.g. accuracies in [0, 1]); found nan or inf.")
    low, high = bootstrap_ci(a - b, n_bootstrap, seed)
    return {"value": float((a - b).mean()), "ci_low": low, "ci_high": high}
