"""Choose one answer among the N sampled candidates of one problem.

Answers are already normalised (``"14"``, ``"14.0"`` and ``"\\boxed{14}"`` mapped to one value)
and hashable; scores are solution scores from ``prm_core.aggregation`` (higher is better). Every
tie goes to the candidate, or answer, that appears first, so results never depend on hash order.

The scalar functions (``best_of_n``, ``majority_vote``, ``weighted_vote``) are the readable
definitions; ``select_many`` runs the same rules on many groups at once for best-of-N curves and
gives the same answers on every input either accepts (the tests check it against a loop over the
scalar functions).

Scores are finite real numbers, compared and summed in float64 whatever their dtype (bf16 and fp16
are widened exactly). NaN, +-inf and bools raise, naming the position: an infinite score has no
sum with its opposite (``inf + -inf`` is NaN), so no vote could honour it. A candidate that must
never win (``StepScores.solution_scores(truncated="lowest")`` gives it -inf under ``sum_logit``) is
left out of the pick and the vote, as ``Verifier`` does (a weight of 0 would still beat negative totals).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

import numpy as np

from prm_core.checks import check_real_array

SELECTION_METHODS: tuple[str, ...] = ("best_of_n", "majority", "weighted")


def _check_scores(scores: Sequence[float] | np.ndarray, name: str = "scores") -> np.ndarray:
    """Scores as a float64 array of finite reals (lists, numpy arrays or torch tensors of any float
    dtype); NaN, +-inf and bools raise, naming the positions."""
    values = check_real_array(scores, name, fix="score every candidate with a finite number, and leave out "
                              "(or give weight 0) any candidate that must not win")
    if values.size == 0:
        raise ValueError(f"{name} is empty; a group needs at least one candidate.")
    return values


def _warn_if_negative(scores: np.ndarray) -> None:
    if (scores < 0).any():
        warnings.warn(
            f"weighted vote got negative scores (min {scores.min():.3g}): summing them favours rare answers. "
            "Pass probabilities, e.g. aggregate(..., rule='min') rather than 'sum_logit'.",
            stacklevel=3,
        )


def best_of_n(scores: Sequence[float] | np.ndarray) -> int:
    """Index of the highest-scoring candidate (ties go to the lowest index).

    Parameters
    ----------
    scores : sequence of float, shape (N,)
        One solution score per candidate: finite real numbers (any float dtype).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For no scores, NaN, +-inf or bool scores, or more than one dimension.

    Examples
    --------
    >>> best_of_n([0.2, 0.9, 0.9, 0.1])
    1
    """
    values = _check_scores(scores)
    if values.ndim != 1:
        raise ValueError(f"scores has shape {values.shape}; pass one 1-D group, or use select_many for many.")
    return int(np.argmax(values))  # np.argmax returns the first maximum


def majority_vote(answers: Sequence[Hashable]) -> Hashable:
    """The most frequent answer (ties go to the answer that appears first).

    Parameters
    ----------
    answers : sequence of hashable, shape (N,)
        One normalised final answer per candidate.

    Returns
    -------
    hashable
        One of ``answers``.

    Examples
    --------
    >>> majority_vote([3, 5, 5, 3, 7])
    3
    """
    answers = list(answers)
    if not answers:
        raise ValueError("answers is empty; a group needs at least one candidate.")
    counts: dict[Hashable, int] = {}  # dicts keep insertion order = order of first occurrence
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    best, best_count = answers[0], 0
    for answer, count in counts.items():
        if count > best_count:  # strict: a later answer must beat, not match, an earlier one
            best, best_count = answer, count
    return best


def weighted_vote(answers: Sequence[Hashable], scores: Sequence[float] | np.ndarray) -> Hashable:
    """The answer whose candidates' scores sum highest (ties go to the answer that appears first).

    Scores should be non-negative (probabilities); negative scores trigger a warning because
    their sums reward answers that few candidates share.

    Parameters
    ----------
    answers : sequence of hashable, shape (N,)
        One normalised final answer per candidate.
    scores : sequence of float, shape (N,)
        One solution score per candidate: finite real numbers (any float dtype).

    Returns
    -------
    hashable
        One of ``answers``.

    Raises
    ------
    ValueError
        For no candidates, NaN, +-inf or bool scores, or not one score per answer.

    Examples
    --------
    >>> weighted_vote([3, 5, 5], [0.9, 0.3, 0.4])  # 3: 0.9 beats 5: 0.3 + 0.4 = 0.7
    3
    """
    answers = list(answers)
    values = _check_scores(scores)
    if values.ndim != 1 or len(answers) != values.shape[0]:
        raise ValueError(
            f"answers has {len(answers)} entries but scores has shape {values.shape}; pass one score per answer."
        )
    _warn_if_negative(values)
    totals: dict[Hashable, float] = {}
    for answer, score in zip(answers, values.tolist(), strict=True):
        totals[answer] = totals.get(answer, 0.0) + score
    best, best_total = answers[0], -np.inf
    for answer, total in totals.items():
        if total > best_total:
            best, best_total = answer, total
    return best


def _first_occurrence(answers: np.ndarray) -> np.ndarray:
    """For each candidate, the index of the first candidate in its row with the same answer.

    This factorises each row without a Python loop: equal answers share one code, and the code is
    the position where that answer first appears, so argmax over codes breaks ties by first occurrence.
    """
    n_groups, n = answers.shape
    order = np.argsort(answers, axis=1, kind="stable")  # (G, N); stable keeps equal answers in index order
    sorted_answers = np.take_along_axis(answers, order, axis=1)
    is_run_start = np.ones((n_groups, n), dtype=bool)
    is_run_start[:, 1:] = sorted_answers[:, 1:] != sorted_answers[:, :-1]
    # Position (in sorted order) of the start of each element's run of equal answers: (G, N).
    run_start = np.maximum.accumulate(np.where(is_run_start, np.arange(n), 0), axis=1)
    first_sorted = np.take_along_axis(order, run_start, axis=1)  # original index of the run's first member
    first = np.empty_like(order)
    np.put_along_axis(first, order, first_sorted, axis=1)  # back to original candidate order
    return first


def select_many(answers: np.ndarray, scores: np.ndarray | None, method: str) -> np.ndarray:
    """Choose one answer per group for many groups at once.

    Parameters
    ----------
    answers : np.ndarray of int, shape (G, N)
        Normalised answers encoded as integers (any value, negative or large); row g is one group.
    scores : np.ndarray of float, shape (G, N), or None
        Solution scores, finite real numbers (any float dtype); required for ``"best_of_n"`` and
        ``"weighted"``, ignored by ``"majority"``.
    method : {"best_of_n", "majority", "weighted"}
        Same rules and tie-breaking as ``best_of_n``, ``majority_vote`` and ``weighted_vote``.

    Returns
    -------
    np.ndarray of shape (G,)
        The chosen answer of each group, same dtype as ``answers``.

    Raises
    ------
    ValueError
        For an unknown method, answers that are not a non-empty (G, N) integer array, or scores
        that are missing, of another shape, or hold NaN, +-inf or bools.

    Examples
    --------
    >>> answers = np.array([[3, 5, 5], [1, 2, 1]])
    >>> scores = np.array([[0.9, 0.3, 0.4], [0.1, 0.8, 0.2]])
    >>> select_many(answers, scores, "majority").tolist(), select_many(answers, scores, "best_of_n").tolist()
    ([5, 1], [3, 2])
    """
    if isinstance(method, bool) or method not in SELECTION_METHODS:
        raise ValueError(
            f"method={method!r} is not a selection method; use one of {list(SELECTION_METHODS)} "
            "(the oracle lives in prm_core.metrics.best_of_n_curve)."
        )
    answers = np.asarray(answers)
    if answers.ndim != 2 or answers.size == 0:
        raise ValueError(f"answers has shape {answers.shape}; pass a non-empty (G, N) array, one group per row.")
    if not np.issubdtype(answers.dtype, np.integer):
        raise ValueError(
            f"answers has dtype {answers.dtype}; encode answers as integers, e.g. with np.unique(..., return_inverse=True)."
        )
    rows = np.arange(answers.shape[0])[:, None]  # (G, 1), broadcasts against (G, N) codes
    first = _first_occurrence(answers)  # (G, N)
    if method == "majority":
        counts = np.zeros(answers.shape, dtype=np.int64)
        np.add.at(counts, (rows, first), 1)  # counts[g, j] > 0 only where j is a first occurrence
        return answers[rows[:, 0], counts.argmax(axis=1)]
    if scores is None:
        raise ValueError(f"scores is None but method={method!r} needs them; pass a (G, N) float array.")
    values = _check_scores(scores)
    if values.shape != answers.shape:
        raise ValueError(f"scores.shape={values.shape} must equal answers.shape={answers.shape}.")
    if method == "best_of_n":
        return answers[rows[:, 0], values.argmax(axis=1)]
    _warn_if_negative(values)
    # add.at is unbuffered and walks candidates in order, so each sum adds the same floats in the
    # same order as weighted_vote: ties are resolved identically, bit for bit.
    totals = np.zeros(answers.shape, dtype=np.float64)
    np.add.at(totals, (rows, first), values)
    totals[first != np.arange(answers.shape[1])] = -np.inf  # slots that are not an answer's first occurrence
    return answers[rows[:, 0], totals.argmax(axis=1)]
