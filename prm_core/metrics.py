"""Honest evaluation of a PRM: step scores, first-error detection and best-of-N curves.

Step level: ``step_accuracy``, ``step_auroc``, ``reliability_bins``, ``expected_calibration_error``.
First error, ProcessBench protocol (Zheng et al., 2024, arXiv:2412.06559): ``first_error_index``,
``first_error_f1``, ``threshold_sweep``, ``best_threshold``, ``detection_rate_by_kind``.
Answer level: ``best_of_n_curve`` with a bootstrap CI over problems.
Over training seeds: ``seed_bootstrap_ci``, ``seed_paired_difference``, ``seed_statistic_ci`` (two-level
intervals, seeds then problems, in ``metrics_seeds``).
The step-level metrics live here, the others in ``metrics_first_error`` and ``metrics_best_of_n``
(input checks in ``metrics_base``); import them all from this module.

Labels are 1.0 (correct), 0.0 (incorrect), soft floats (binarised at 0.5) or NaN (unlabelled,
ignored), so padded ``(N, S)`` arrays with NaN labels at padding work as is; bool labels read as
correct (True) and incorrect (False). Inputs may be lists, numpy arrays or torch tensors of any
float dtype: every metric computes in float64, so bf16 scores give the metric of their values.
Scores are never bools, and a NaN score at a labelled step raises. An undefined metric warns
with ``UndefinedMetricWarning`` and returns nan, never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prm_core.checks import check_real
from prm_core.metrics_base import UndefinedMetricWarning, _as_array, _check_positive_int, _undefined
from prm_core.metrics_best_of_n import (
    CURVE_METHODS,
    CurvePoint,
    best_of_n_curve,
    bootstrap_ci,
    bootstrap_statistic_ci,
    paired_difference,
    per_problem_accuracy,
)
from prm_core.metrics_first_error import (
    FirstErrorF1,
    best_threshold,
    detection_rate_by_kind,
    first_error_f1,
    first_error_index,
    threshold_sweep,
)
from prm_core.metrics_seeds import seed_bootstrap_ci, seed_paired_difference, seed_statistic_ci

__all__ = [
    "CURVE_METHODS",
    "CurvePoint",
    "FirstErrorF1",
    "ReliabilityBins",
    "UndefinedMetricWarning",
    "best_of_n_curve",
    "best_threshold",
    "bootstrap_ci",
    "bootstrap_statistic_ci",
    "detection_rate_by_kind",
    "expected_calibration_error",
    "first_error_f1",
    "first_error_index",
    "paired_difference",
    "per_problem_accuracy",
    "reliability_bins",
    "seed_bootstrap_ci",
    "seed_paired_difference",
    "seed_statistic_ci",
    "step_accuracy",
    "step_auroc",
    "threshold_sweep",
]


def _labelled_steps(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flatten, drop NaN-labelled steps, binarise labels: (scores (K,), is_positive (K,) bool)."""
    s, y = _as_array(scores, "scores"), _as_array(labels, "labels", allow_bool=True)  # True labels: correct
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
        A step is predicted correct when its score is ``>= threshold``; any finite number.

    Returns
    -------
    float
        nan, with a warning, when no step is labelled.

    Raises
    ------
    ValueError
        For a threshold that is not a finite number, bool scores, a NaN score at a labelled step,
        labels outside [0, 1], or shapes that differ.

    Examples
    --------
    >>> step_accuracy([0.9, 0.2, 0.7, 0.1], [1.0, 0.0, 0.3, float("nan")])  # 2 right of 3 labelled
    0.6666666666666666
    """
    threshold = check_real(threshold, "threshold", fix="pass e.g. threshold=0.5")
    s, is_positive = _labelled_steps(scores, labels)
    if s.size == 0:
        return _undefined("step_accuracy is undefined: every label is NaN; pass at least one labelled step.")
    return float(np.mean((s >= threshold) == is_positive))


def step_auroc(scores: Any, labels: Any) -> float:
    """Rank-based AUROC of step scores: Mann-Whitney U / (n_pos * n_neg), average ranks for ties.

    Parameters
    ----------
    scores, labels : array-like of the same shape, (n_steps,) or (N, S)
        Step scores (any reals, infinities included: only their order matters, so a monotone
        rescaling leaves the AUROC as it is), and labels (binarised at 0.5, NaN ignored).

    Returns
    -------
    float
        nan, with a warning, when the labelled steps hold only one class.

    Raises
    ------
    ValueError
        For bool scores, a NaN score at a labelled step, labels outside [0, 1], or shapes that differ.

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

    Raises
    ------
    ValueError
        When ``n_bins`` is not an int >= 1, or a labelled step's score lies outside [0, 1].

    Examples
    --------
    >>> bins = reliability_bins([0.1, 0.2, 0.9], [0, 1, 1], n_bins=2)
    >>> bins.count.tolist(), bins.accuracy.tolist()
    ([2, 1], [0.5, 1.0])
    """
    n_bins = _check_positive_int(n_bins, "n_bins")
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
