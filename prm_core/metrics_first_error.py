"""First-error detection, the ProcessBench protocol (Zheng et al., 2024, arXiv:2412.06559).

A solution's predicted first error is its first step scored below a threshold (-1: none), and a
prediction is right only when it equals the true index. The F1 is the harmonic mean of the
accuracy on erroneous and on correct samples, so "always -1" scores 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from prm_core.checks import check_real, check_real_array
from prm_core.metrics_base import _as_indices, _undefined

_THRESHOLD_FIX = "pass a finite number, e.g. threshold=0.5 or one picked on validation data (best_threshold)"


def _check_threshold(threshold: float, name: str = "threshold") -> float:
    return check_real(threshold, name, fix=_THRESHOLD_FIX)


def _step_scores(values: Sequence[float], name: str) -> np.ndarray:
    """Step scores as a float64 array (``check_real_array``): real numbers, never bools, no NaN;
    +-inf compare with a threshold as any number does."""
    s = check_real_array(values, name, allow_inf=True, fix="score every step, or leave the solution out")
    if s.size == 0:
        raise ValueError(f"{name} is empty; pass at least one step score.")
    return s


def first_error_index(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """Index of the first step scored ``< threshold``, or -1 when every step passes.

    Parameters
    ----------
    step_scores : sequence of float, shape (n_steps,)
        One solution's step scores, in order: real numbers, never bools, no NaN (+-inf compare
        with the threshold as any number does).
    threshold : float, default 0.5
        Any finite number.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For a threshold that is not a finite number (NaN would call every step correct), or
        scores that are not one solution's 1-D scores (bools, NaN, text).

    Examples
    --------
    >>> first_error_index([0.9, 0.3, 0.1]), first_error_index([0.9, 0.8])
    (1, -1)
    """
    threshold = _check_threshold(threshold)
    s = _step_scores(step_scores, "step_scores")
    if s.ndim != 1:
        raise ValueError(f"step_scores has shape {s.shape}; pass one solution's 1-D step scores.")
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
        First-error step index per sample, or -1; never bools (``[False, True]`` is not ``[0, 1]``).

    Returns
    -------
    FirstErrorF1
        A part with no samples is nan, with a warning, and so is f1.

    Raises
    ------
    ValueError
        For None predictions, entries that are not whole indices >= -1 (bools, NaN, fractions), or
        lengths that differ.

    Examples
    --------
    >>> first_error_f1([1, 2, -1, -1], [1, 0, -1, 3]).f1  # error acc 1/3, correct acc 1/1: 2 * 1/3 / (4/3)
    0.5
    """
    unknown = [i for i, x in enumerate(pred) if x is None] if isinstance(pred, Sequence) else []
    if unknown:
        raise ValueError(f"pred holds None (no prediction) at {len(unknown)} rows, e.g. {unknown[:5]}: a solution "
                         "scored on a truncated prefix that shows no error. Leave those rows out of pred and true "
                         "and report how many, or raise max_length so every step is scored.")
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
    rows = [_step_scores(s, f"step_scores_list[{i}]") for i, s in enumerate(step_scores_list)]
    for i, r in enumerate(rows):
        if r.ndim != 1:
            raise ValueError(f"step_scores_list[{i}] has shape {r.shape}; pass each solution's 1-D step scores, "
                             "as first_error_index takes them.")
    lengths = np.array([r.size for r in rows])
    if (true >= lengths).any():
        i = int(np.argmax(true >= lengths))
        raise ValueError(f"true first error {true[i]} of sample {i} is past its {lengths[i]} steps; "
                         "use an index < n_steps, or -1 for a correct solution.")
    padded = np.full((len(rows), lengths.max()), np.inf)
    for i, r in enumerate(rows):
        padded[i, : r.size] = r
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
        Each a finite number.

    Returns
    -------
    list of (threshold, FirstErrorF1)
        Each entry's predictions are ``first_error_index`` of each sample at that threshold.

    Raises
    ------
    ValueError
        For no thresholds or a non-finite one, NaN or bool step scores, or true indices that
        are not whole indices >= -1 within each sample's steps.

    Examples
    --------
    >>> sweep = threshold_sweep([[0.9, 0.4], [0.8, 0.6]], [1, -1], [0.5, 0.7])
    >>> [(th, r.f1) for th, r in sweep]
    [(0.5, 1.0), (0.7, 0.0)]
    """
    true = _as_indices(true_first_errors, "true_first_errors")
    padded = _padded_scores(step_scores_list, true)
    if isinstance(thresholds, str) or np.ndim(thresholds) != 1 or len(thresholds) == 0:
        raise ValueError(f"thresholds={thresholds!r} must be a non-empty 1-D sequence; pass e.g. "
                         "np.linspace(0.05, 0.95, 19).")
    checked = [_check_threshold(th, f"thresholds[{i}]") for i, th in enumerate(thresholds)]
    return [(th, first_error_f1(_first_errors(padded, th), true)) for th in checked]


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
        Any finite number; the predictions are ``first_error_index`` at it.

    Returns
    -------
    dict of kind -> (rate, count)
        In order of first appearance; empty, with a warning, when no sample has an error.

    Raises
    ------
    ValueError
        As ``threshold_sweep``, and when the kinds are not one per sample.

    Examples
    --------
    >>> detection_rate_by_kind([[0.9, 0.2], [0.1, 0.9], [0.8, 0.9]], [1, 1, -1], ["calc", "calc", None])
    {'calc': (0.5, 2)}
    """
    threshold = _check_threshold(threshold)
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
