"""Honest evaluation of a PRM: step scores, first-error detection and best-of-N curves.

Step level: ``step_accuracy``, ``step_auroc``, ``reliability_bins``, ``expected_calibration_error``.
First error, ProcessBench protocol (Zheng et al., 2024, arXiv:2412.06559): ``first_error_index``,
``first_error_f1``, ``threshold_sweep``, ``best_threshold``, ``detection_rate_by_kind``.
Answer level: ``best_of_n_curve`` with a bootstrap CI over problems.

Labels are 1.0 (correct), 0.0 (incorrect), soft floats (binarised at 0.5) or NaN (unlabelled,
ignored), so padded ``(N, S)`` arrays with NaN labels at padding work as is. Inputs may be lists,
numpy arrays or torch tensors. An undefined metric warns with ``UndefinedMetricWarning`` and
returns nan, never a silent 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prm_core.voting import SELECTION_METHODS, select_many

CURVE_METHODS: tuple[str, ...] = (*SELECTION_METHODS, "oracle")


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this input (e.g. only one class) and was returned as nan."""


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _as_array(values: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()  # bf16 has no numpy
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value.")
    return array


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1.")


def _as_indices(values: Any, name: str) -> np.ndarray:
    array = _as_array(values, name).ravel()
    if np.isnan(array).any() or (array != np.round(array)).any() or (array < -1).any():
        raise ValueError(f"{name} must hold whole step indices >= 0, or -1 for no error; got {array[:5].tolist()}.")
    return array.astype(np.int64)


def _labelled_steps(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flatten, drop NaN-labelled steps, binarise labels: (scores (K,), is_positive (K,) bool)."""
    s, y = _as_array(scores, "scores"), _as_array(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores.shape={s.shape} must equal labels.shape={y.shape}; pass one label per step.")
    keep = ~np.isnan(y)
    s, y = s[keep], y[keep]
    if ((y < 0) | (y > 1)).any():
        raise ValueError(f"labels hold {y[(y < 0) | (y > 1)][:3].tolist()}; use values in [0, 1], or NaN to skip.")
    if np.isnan(s).any():
        raise ValueError("scores hold NaN at labelled steps; score every labelled step or set its label to NaN.")
    return s, y >= 0.5


def step_accuracy(scores: Any, labels: Any, threshold: float = 0.5) -> float:
    """Share of labelled steps where ``score >= threshold`` agrees with ``label >= 0.5``.

    Parameters
    ----------
    scores, labels : array-like of the same shape, (n_steps,) or (N, S)
        Step probabilities, and labels (soft ones binarised at 0.5, NaN ignored).
    threshold : float, default 0.5
        A step is predicted correct when its score is ``>= threshold``.

    Returns
    -------
    float
        nan, with a warning, when no step is labelled.

    Examples
    --------
    >>> step_accuracy([0.9, 0.2, 0.7, 0.1], [1.0, 0.0, 0.3, float("nan")])  # 2 right of 3 labelled
    0.6666666666666666
    """
    s, is_positive = _labelled_steps(scores, labels)
    if s.size == 0:
        return _undefined("step_accuracy is undefined: every label is NaN; pass at least one labelled step.")
    return float(np.mean((s >= threshold) == is_positive))


def step_auroc(scores: Any, labels: Any) -> float:
    """Rank-based AUROC of step scores: Mann-Whitney U / (n_pos * n_neg), average ranks for ties.

    Parameters
    ----------
    scores, labels : array-like of the same shape, (n_steps,) or (N, S)
        Step scores (any reals: only their order matters), and labels (binarised at 0.5, NaN ignored).

    Returns
    -------
    float
        nan, with a warning, when the labelled steps hold only one class.

    Examples
    --------
    >>> step_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])  # 3 of 4 (pos, neg) pairs ordered right
    0.75
    """
    s, is_positive = _labelled_steps(scores, labels)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        return _undefined(f"step_auroc is undefined with {n_pos} positive and {n_neg} negative labelled steps; "
                          "evaluate on data with both correct and incorrect steps.")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.ravel()]  # 1-based, ties share the mean rank
    u = ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin calibration of step scores over equal-width bins of [0, 1]."""

    edges: np.ndarray  # (n_bins + 1,); bin i is [edges[i], edges[i+1]), the last bin also holds 1.0
    confidence: np.ndarray  # (n_bins,) mean score in the bin, nan when empty
    accuracy: np.ndarray  # (n_bins,) fraction of positive labels in the bin, nan when empty
    count: np.ndarray  # (n_bins,) int, labelled steps in the bin


def reliability_bins(scores: Any, labels: Any, n_bins: int = 10) -> ReliabilityBins:
    """Bin labelled steps by score; per bin, mean score against the fraction of correct steps.

    Parameters
    ----------
    scores, labels : array-like of the same shape, (n_steps,) or (N, S)
        Step probabilities in [0, 1], and labels (binarised at 0.5, NaN ignored).
    n_bins : int, default 10
        Equal-width bins over [0, 1]; a score of exactly 1.0 goes to the last bin.

    Returns
    -------
    ReliabilityBins

    Examples
    --------
    >>> bins = reliability_bins([0.1, 0.2, 0.9], [0, 1, 1], n_bins=2)
    >>> bins.count.tolist(), bins.accuracy.tolist()
    ([2, 1], [0.5, 1.0])
    """
    _check_positive_int(n_bins, "n_bins")
    s, is_positive = _labelled_steps(scores, labels)
    if ((s < 0) | (s > 1)).any():
        raise ValueError(f"scores hold {s[(s < 0) | (s > 1)][:3].tolist()}; calibration needs probabilities "
                         "in [0, 1]: apply a sigmoid to logits first.")
    bin_index = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)  # floor, with 1.0 in the last bin
    count = np.bincount(bin_index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins become nan on purpose
        confidence = np.bincount(bin_index, weights=s, minlength=n_bins) / count
        accuracy = np.bincount(bin_index, weights=is_positive, minlength=n_bins) / count
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), confidence, accuracy, count)


def expected_calibration_error(scores: Any, labels: Any, n_bins: int = 10) -> float:
    """ECE: sum over bins of ``count / total * |accuracy - confidence|`` (lower is better).

    Parameters
    ----------
    scores, labels, n_bins
        As in ``reliability_bins``.

    Returns
    -------
    float
        In [0, 1]; nan, with a warning, when no step is labelled.

    Examples
    --------
    >>> ece = expected_calibration_error([0.1, 0.2, 0.9], [0, 1, 1], n_bins=2)
    >>> round(ece, 4)  # 2/3 * |0.5 - 0.15| + 1/3 * |1.0 - 0.9| = 0.2333 + 0.0333
    0.2667
    """
    bins = reliability_bins(scores, labels, n_bins)
    total = bins.count.sum()
    if total == 0:
        return _undefined("expected_calibration_error is undefined: every label is NaN; label some steps.")
    filled = bins.count > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.count[filled] / total * gaps))


def first_error_index(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored ``< threshold``, or -1 when every step passes.

    Parameters
    ----------
    step_scores : sequence of float, shape (n_steps,)
        One solution's step scores, in order; no NaN.
    threshold : float, default 0.5

    Returns
    -------
    int

    Examples
    --------
    >>> first_error_index([0.9, 0.3, 0.1]), first_error_index([0.9, 0.8])
    (1, -1)
    """
    s = _as_array(step_scores, "step_scores")
    if s.ndim != 1 or np.isnan(s).any():
        raise ValueError(f"step_scores has shape {s.shape} or holds NaN; pass one solution's 1-D scores, no NaN.")
    below = np.flatnonzero(s < threshold)
    return int(below[0]) if below.size else -1


@dataclass(frozen=True)
class FirstErrorF1:
    """ProcessBench scores: exact-match accuracy of the predicted first-error index."""

    error_accuracy: float  # on samples with an error (true index >= 0); nan if there are none
    correct_accuracy: float  # on fully correct samples (true index -1); nan if there are none
    f1: float  # harmonic mean of the two; 0 when both are 0, nan when either is nan
    n_error: int  # samples with an error
    n_correct: int  # fully correct samples


def first_error_f1(pred: Sequence[int], true: Sequence[int]) -> FirstErrorF1:
    """Score predicted first-error indices (-1: no error) against the true ones; right iff equal.

    Parameters
    ----------
    pred, true : sequence of int, shape (n_samples,)
        First-error step index per sample, or -1.

    Returns
    -------
    FirstErrorF1
        A part with no samples is nan, with a warning, and so is f1.

    Examples
    --------
    >>> first_error_f1([1, 2, -1, -1], [1, 0, -1, 3]).f1  # error acc 1/3, correct acc 1/1: 2 * 1/3 / (4/3)
    0.5
    """
    p, t = _as_indices(pred, "pred"), _as_indices(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} entries but true has {t.size}; pass one prediction per sample.")
    is_error, is_right = t != -1, p == t
    n_error, n_correct = int(is_error.sum()), int((~is_error).sum())
    error_acc = float(is_right[is_error].mean()) if n_error else _undefined(
        "error_accuracy and f1 are undefined: no sample has an error (every true index is -1).")
    correct_acc = float(is_right[~is_error].mean()) if n_correct else _undefined(
        "correct_accuracy and f1 are undefined: every sample has an error (no true index is -1).")
    if np.isnan(error_acc) or np.isnan(correct_acc):
        f1 = float("nan")
    else:
        f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc) if error_acc + correct_acc else 0.0
    return FirstErrorF1(error_acc, correct_acc, f1, n_error, n_correct)


def _padded_scores(step_scores_list: Sequence[Sequence[float]], true: np.ndarray) -> np.ndarray:
    """(n_samples, max_steps) scores padded with +inf, which is never below a threshold."""
    if len(step_scores_list) != true.size:
        raise ValueError(f"step_scores_list has {len(step_scores_list)} samples but there are {true.size} "
                         "true first errors; pass one per sample.")
    rows = [_as_array(s, f"step_scores_list[{i}]").ravel() for i, s in enumerate(step_scores_list)]
    lengths = np.array([r.size for r in rows])
    if (true >= lengths).any():
        i = int(np.argmax(true >= lengths))
        raise ValueError(f"true first error {true[i]} of sample {i} is past its {lengths[i]} steps; "
                         "use an index < n_steps, or -1 for a correct solution.")
    padded = np.full((len(rows), lengths.max()), np.inf)
    for i, r in enumerate(rows):
        padded[i, : r.size] = r
    if np.isnan(padded).any():
        raise ValueError("step_scores_list holds NaN scores; score every step.")
    return padded


def _first_errors(padded: np.ndarray, threshold: float) -> np.ndarray:
    below = padded < threshold  # (n_samples, max_steps)
    return np.where(below.any(axis=1), below.argmax(axis=1), -1)  # same rule as first_error_index


def threshold_sweep(
    step_scores_list: Sequence[Sequence[float]], true_first_errors: Sequence[int], thresholds: Sequence[float]
) -> list[tuple[float, FirstErrorF1]]:
    """``first_error_f1`` of ``first_error_index`` predictions, at each threshold.

    Parameters
    ----------
    step_scores_list : sequence of sequences of float
        Each sample's step scores; lengths may differ.
    true_first_errors : sequence of int, shape (n_samples,)
        True first-error index, -1 for a correct solution.
    thresholds : sequence of float

    Returns
    -------
    list of (threshold, FirstErrorF1)

    Examples
    --------
    >>> sweep = threshold_sweep([[0.9, 0.4], [0.8, 0.6]], [1, -1], [0.5, 0.7])
    >>> [(th, r.f1) for th, r in sweep]
    [(0.5, 1.0), (0.7, 0.0)]
    """
    true = _as_indices(true_first_errors, "true_first_errors")
    padded = _padded_scores(step_scores_list, true)
    if len(thresholds) == 0:
        raise ValueError("thresholds is empty; pass e.g. np.linspace(0.05, 0.95, 19).")
    return [(float(th), first_error_f1(_first_errors(padded, th), true)) for th in thresholds]


def best_threshold(
    step_scores_list: Sequence[Sequence[float]], true_first_errors: Sequence[int], thresholds: Sequence[float]
) -> tuple[float, FirstErrorF1]:
    """The ``threshold_sweep`` entry with the highest f1 (ties: earliest); tune it on validation data.

    Parameters
    ----------
    step_scores_list, true_first_errors, thresholds
        As in ``threshold_sweep``.

    Returns
    -------
    (threshold, FirstErrorF1)

    Examples
    --------
    >>> best_threshold([[0.9, 0.4], [0.8, 0.6]], [1, -1], [0.3, 0.5, 0.7])[0]
    0.5
    """
    sweep = threshold_sweep(step_scores_list, true_first_errors, thresholds)
    f1s = np.array([result.f1 for _, result in sweep])
    if np.isnan(f1s).all():
        raise ValueError("f1 is undefined at every threshold; true_first_errors needs both -1 and >= 0 entries.")
    return sweep[int(np.nanargmax(f1s))]


def detection_rate_by_kind(step_scores_list: Sequence[Sequence[float]], first_error_true: Sequence[int],
                           first_error_kinds: Sequence[Hashable], threshold: float = 0.5
                           ) -> dict[Hashable, tuple[float, int]]:
    """Per kind of first error, the share of erroneous samples whose first error is found exactly.

    Parameters
    ----------
    step_scores_list, first_error_true
        As in ``threshold_sweep``; correct samples (-1) are skipped.
    first_error_kinds : sequence of hashable, shape (n_samples,)
        Kind of each sample's first error (e.g. "arithmetic"); anything for correct samples.
    threshold : float, default 0.5

    Returns
    -------
    dict of kind -> (rate, count)
        In order of first appearance; empty, with a warning, when no sample has an error.

    Examples
    --------
    >>> detection_rate_by_kind([[0.9, 0.2], [0.1, 0.9], [0.8, 0.9]], [1, 1, -1], ["calc", "calc", None])
    {'calc': (0.5, 2)}
    """
    true = _as_indices(first_error_true, "first_error_true")
    if len(first_error_kinds) != true.size:
        raise ValueError(f"first_error_kinds has {len(first_error_kinds)} entries for {true.size} samples; "
                         "pass one kind per sample (e.g. None for correct ones).")
    is_found = _first_errors(_padded_scores(step_scores_list, true), threshold) == true
    by_kind: dict[Hashable, list[bool]] = {}
    for kind, t, found in zip(first_error_kinds, true.tolist(), is_found.tolist(), strict=True):
        if t != -1:
            by_kind.setdefault(kind, []).append(found)
    if not by_kind:
        _undefined("detection_rate_by_kind is undefined: no sample has an error; returning {}.")
    return {kind: (float(np.mean(hits)), len(hits)) for kind, hits in by_kind.items()}


def bootstrap_ci(per_problem: Any, n_bootstrap: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a mean over problems (the resamples ``best_of_n_curve``
    draws for the same number of problems and seed).

    Examples
    --------
    >>> low, high = bootstrap_ci([1.0, 0.0, 1.0, 1.0])
    >>> 0.0 <= low <= 0.75 <= high <= 1.0
    True
    """
    values = _as_array(per_problem, "per_problem")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per_problem has shape {values.shape}; pass one value per problem (1-D, non-empty).")
    _check_positive_int(n_bootstrap, "n_bootstrap")
    resamples = np.random.default_rng(seed).integers(0, values.size, size=(n_bootstrap, values.size))
    low, high = np.percentile(values[resamples].mean(axis=1), [2.5, 97.5])
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
        Solution scores; needed by "best_of_n" and "weighted".
    method : {"best_of_n", "majority", "weighted", "oracle"}
        See ``prm_core.voting.select_many``.
    ns : sequence of int, optional
        Group sizes in [1, M]; default 1, 2, 4, ... up to M, with M itself last.
    n_bootstrap : int, default 1000
    seed : int, default 0
        Seed of the numpy Generator drawing the bootstrap resamples.

    Returns
    -------
    list of CurvePoint, one per n

    Examples
    --------
    >>> answers = np.array([[1, 2, 2, 3], [5, 5, 7, 5]])
    >>> is_correct = answers == np.array([[1], [7]])
    >>> [p.accuracy for p in best_of_n_curve(answers, is_correct, None, "majority")]
    [0.25, 0.5, 0.0]
    """
    answers, ok = _as_array(answers, "answers", dtype=None), _as_array(is_correct, "is_correct", dtype=None)
    if answers.ndim != 2 or not np.issubdtype(answers.dtype, np.integer):
        raise ValueError(f"answers has shape {answers.shape}, dtype {answers.dtype}; pass (P, M) integers.")
    if ok.shape != answers.shape or ok.dtype != bool:
        raise ValueError(f"is_correct (shape {ok.shape}, dtype {ok.dtype}) must be bool of shape {answers.shape}.")
    if method not in CURVE_METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {list(CURVE_METHODS)}.")
    if scores is not None:
        scores = _as_array(scores, "scores")
        if scores.shape != answers.shape:
            raise ValueError(f"scores.shape={scores.shape} must equal answers.shape={answers.shape}.")
    elif method in ("best_of_n", "weighted"):
        raise ValueError(f"scores is None but method={method!r} needs them; pass (P, M) solution scores.")
    n_problems, m = answers.shape
    if ns is None:
        ns = [2**k for k in range(m.bit_length()) if 2**k <= m] + ([m] if m & (m - 1) else [])
    for n in ns:
        _check_positive_int(n, "n in ns")
        if n > m:
            raise ValueError(f"n={n} is larger than the {m} candidates per problem; drop it from ns.")
    _check_positive_int(n_bootstrap, "n_bootstrap")

    # One int key per (problem, answer) pair, so "is the pick a correct answer of its problem" is one np.isin.
    unique, codes = np.unique(answers, return_inverse=True)
    problem_base = np.arange(n_problems)[:, None] * unique.size  # (P, 1)
    keys = problem_base + codes.reshape(answers.shape)  # (P, M)
    correct_keys = np.unique(keys[ok])
    if np.isin(keys[~ok], correct_keys).any():
        warnings.warn("is_correct marks one answer both correct and incorrect within a problem; check answer "
                      "normalisation. A pick counts as right when any copy of its answer is correct.", stacklevel=2)
    resamples = np.random.default_rng(seed).integers(0, n_problems, size=(n_bootstrap, n_problems))
    points = []
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
        per_problem = group_right.mean(axis=1)  # (P,): every problem weighs the same
        low, high = np.percentile(per_problem[resamples].mean(axis=1), [2.5, 97.5])
        points.append(CurvePoint(int(n), float(per_problem.mean()), float(low), float(high), n_groups))
    return points
