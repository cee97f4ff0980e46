"""PRM against ORM on the same held-out sets: the metrics that answer "when does scoring each step
beat scoring the outcome?", each with a 95% bootstrap interval over problems.

One row of metrics per model (``comparison_metrics``): step AUROC, first-error F1 (threshold picked
on validation), and answer accuracy of best-of-N and of the weighted vote at a few N. The solution
score is fixed in advance, never picked on test data: the weakest step (``min``) for a PRM, the last
step's score (its outcome prediction) for an ORM. ``by_n_operations`` splits the same held-out sets
by the problems' chain length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prm_core.checks import check_choice, check_int, check_probability, check_seed
from prm_core.evaluation import (
    answer_arrays,
    candidates_per_problem,
    first_errors,
    padded_labels,
    pick_threshold,
)
from prm_core.metrics import (
    best_of_n_curve,
    bootstrap_statistic_ci,
    first_error_f1,
    first_error_index,
    paired_difference,
    per_problem_accuracy,
    step_auroc,
)
from prm_core.verification import StepScores

if TYPE_CHECKING:
    from prm_core.experiments import Datasets

SOLUTION_RULES = {"prm": "min", "orm": "last"}  # fixed before looking at any test number
COMPARISON_NS = (16, 64)


def _interval(value: float, ci: tuple[float, float]) -> dict[str, float]:
    return {"value": float(value), "ci_low": ci[0], "ci_high": ci[1]}


def _default_ns(ns: Sequence[int] | None, n_candidates: int) -> list[int]:
    """``ns``, or the ``COMPARISON_NS`` a set of ``n_candidates`` per problem holds (all of them, if none)."""
    if ns is not None:
        if isinstance(ns, (int, np.integer, str)) or not isinstance(ns, Sequence | np.ndarray):
            raise ValueError(f"ns={ns!r} must be a sequence of candidate counts, e.g. ns=(16, 64).")
        return list(ns)
    return [n for n in COMPARISON_NS if n <= n_candidates] or [n_candidates]


def _rows(rows: Sequence[int] | np.ndarray | None, n: int, name: str, of: str) -> np.ndarray:
    """``rows`` as distinct int indices in [0, n) (all of them when None); anything else raises."""
    if rows is None:
        return np.arange(n)
    array = np.asarray(rows)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        raise ValueError(f"{name} must be a non-empty 1-D list of int indices of {of} (not a mask, not floats); "
                         f"got dtype {array.dtype}, shape {array.shape}. For a mask m, pass np.flatnonzero(m).")
    if array.min() < 0 or array.max() >= n or np.unique(array).size != array.size:
        raise ValueError(f"{name} must hold distinct indices in [0, {n}) of {of}; got values from {array.min()} "
                         f"to {array.max()}{' with repeats' if np.unique(array).size != array.size else ''}.")
    return array.astype(np.int64)


def _check_bootstrap(n_bootstrap: int, seed: int) -> tuple[int, int]:
    """Fail before any work on a bad ``n_bootstrap`` (an int >= 1) or ``seed`` (an int in [0, 2**63));
    else both as Python ints."""
    return check_int(n_bootstrap, "n_bootstrap", "[1, inf)", "pass e.g. n_bootstrap=1000"), check_seed(seed)


def _check_scored(scored: dict[str, StepScores], name: str = "scored") -> None:
    missing = {"val", "test", "bon"} - set(scored) if isinstance(scored, dict) else {"val", "test", "bon"}
    if missing:
        raise ValueError(f"{name} must map 'val', 'test' and 'bon' to StepScores; missing {sorted(missing)}.")


def comparison_metrics(scored: dict[str, StepScores], data: Datasets, kind: str, *, threshold: float | None = None,
                       test_rows: Sequence[int] | np.ndarray | None = None,
                       bon_rows: Sequence[int] | np.ndarray | None = None, ns: Sequence[int] | None = None,
                       n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Held-out metrics of one PRM or ORM with 95% bootstrap CIs over problems.

    Parameters
    ----------
    scored : dict "val" / "test" / "bon" -> StepScores
        The model's step scores on ``data.val``, ``data.test`` and ``data.bon`` (``bon`` may cover
        only the first problems of ``data.bon``: its length decides how many).
    data : Datasets
    kind : {"prm", "orm"}
        Picks the solution score: ``SOLUTION_RULES[kind]``.
    threshold : float, optional
        First-error threshold; default: the best F1 on ``scored["val"]`` (never on test).
    test_rows : int array, optional
        Indices of ``data.test`` to evaluate on (default: all).
    bon_rows : int array, optional
        Indices of best-of-N *problems* (rows of the (P, M) candidate grid) to evaluate on.
    ns : sequence of int, optional
        Candidates per problem for best-of-N and the weighted vote; default ``COMPARISON_NS``
        (16, 64), those of them the best-of-N set holds.
    n_bootstrap, seed : int
        Bootstrap resamples (over problems) and their seed.

    Returns
    -------
    dict
        ``step_auroc`` and ``first_error_f1`` as {"value", "ci_low", "ci_high"}; ``best_of_n`` and
        ``weighted_vote`` as {str(N): {"accuracy", "ci_low", "ci_high"}}; and the ``rule``,
        ``threshold``, ``n_test_solutions`` and ``n_bon_problems`` they came from.

    Raises
    ------
    ValueError
        For an unknown ``kind``, rows that select nothing, a threshold outside [0, 1], or an
        ``n_bootstrap`` or ``seed`` that is not an int in range.
    """
    check_choice(kind, "kind", sorted(SOLUTION_RULES))
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    if threshold is not None:
        threshold = check_probability(threshold, "threshold", "pass None to pick it on validation")
    _check_scored(scored)
    rule = SOLUTION_RULES[kind]
    if threshold is None:
        threshold = pick_threshold(scored["val"], data.val)
    test_idx = _rows(test_rows, len(data.test), "test_rows", "data.test")
    n_bon = len(scored["bon"].scores)
    bon = data.bon[:n_bon]
    answers, correct = answer_arrays(bon, candidates_per_problem(data.bon))
    bon_idx = _rows(bon_rows, answers.shape[0], "bon_rows", "the scored best-of-N problems")

    test = [data.test[i] for i in test_idx]
    groups = np.array([s.meta["problem_id"] for s in test])
    probs = scored["test"].scores.numpy()[test_idx]
    labels = padded_labels(test, probs.shape[1])
    auroc = step_auroc(probs, labels)
    auroc_ci = bootstrap_statistic_ci(lambda i: step_auroc(probs[i], labels[i]), groups, n_bootstrap, seed)
    all_steps = scored["test"].per_sample()
    per_sample = [all_steps[i] for i in test_idx]
    true = np.array(first_errors(test)[0])
    pred = np.array([first_error_index(s, threshold) for s in per_sample])
    f1 = first_error_f1(pred, true).f1
    f1_ci = bootstrap_statistic_ci(lambda i: first_error_f1(pred[i], true[i]).f1, groups, n_bootstrap, seed)

    solution = scored["bon"].solution_scores(rule).numpy().reshape(answers.shape)[bon_idx]
    selection: dict[str, dict[str, dict[str, float]]] = {}
    for name, method in (("best_of_n", "best_of_n"), ("weighted_vote", "weighted")):
        points = best_of_n_curve(answers[bon_idx], correct[bon_idx], solution, method,
                                 ns=_default_ns(ns, answers.shape[1]),
                                 n_bootstrap=n_bootstrap, seed=seed)
        selection[name] = {str(p.n): {"accuracy": p.accuracy, "ci_low": p.ci_low, "ci_high": p.ci_high} for p in points}
    return {"step_auroc": _interval(auroc, auroc_ci), "first_error_f1": _interval(f1, f1_ci), **selection,
            "rule": rule, "threshold": float(threshold), "n_test_solutions": int(test_idx.size),
            "n_bon_problems": int(bon_idx.size)}


def prm_minus_orm(scored: dict[str, dict[str, StepScores]], data: Datasets, bon_rows: Sequence[int] | None = None,
                  ns: Sequence[int] | None = None, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Paired differences in answer accuracy, PRM minus ORM, on the same best-of-N problems:
    ``{"best_of_n": {str(N): {"value", "ci_low", "ci_high"}}, "weighted_vote": {...}}`` with each
    model's own solution score (``SOLUTION_RULES``). Overlapping intervals of the two models can
    hide a difference that this paired interval, which excludes 0, shows.

    ``scored`` maps "prm" and "orm" to their step scores; both must cover the same candidates.
    ``n_bootstrap`` is an int >= 1 and ``seed`` an int in [0, 2**63) (ValueError otherwise).
    """
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    if not isinstance(scored, dict) or {"prm", "orm"} - set(scored):
        raise ValueError("scored must map 'prm' and 'orm' to their step scores ('val', 'test', 'bon').")
    for kind in ("prm", "orm"):
        _check_scored(scored[kind], f"scored[{kind!r}]")
    n_bon = len(scored["prm"]["bon"].scores)
    if len(scored["orm"]["bon"].scores) != n_bon:
        raise ValueError("the PRM's and the ORM's best-of-N scores cover different candidates; score the same ones.")
    answers, correct = answer_arrays(data.bon[:n_bon], candidates_per_problem(data.bon))
    rows = _rows(bon_rows, answers.shape[0], "bon_rows", "the scored best-of-N problems")
    ns = _default_ns(ns, answers.shape[1])
    out: dict[str, Any] = {}
    for name, method in (("best_of_n", "best_of_n"), ("weighted_vote", "weighted")):
        right = {kind: per_problem_accuracy(answers[rows], correct[rows], scored[kind]["bon"].solution_scores(
                     SOLUTION_RULES[kind]).numpy().reshape(answers.shape)[rows], method, ns) for kind in ("prm", "orm")}
        out[name] = {str(n): paired_difference(right["prm"][n], right["orm"][n], n_bootstrap, seed) for n in ns}
    return out


def baselines_by_rows(data: Datasets, bon_rows: np.ndarray, ns: Sequence[int] | None = None,
                      n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Majority vote and the oracle on the same best-of-N problems, for reference (``n_bootstrap``,
    ``seed``: as in ``comparison_metrics``)."""
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    answers, correct = answer_arrays(data.bon, candidates_per_problem(data.bon))
    bon_rows = _rows(bon_rows, answers.shape[0], "bon_rows", "data.bon's problems")
    out = {}
    for method in ("majority", "oracle"):
        points = best_of_n_curve(answers[bon_rows], correct[bon_rows], None, method,
                                 ns=_default_ns(ns, answers.shape[1]),
                                 n_bootstrap=n_bootstrap, seed=seed)
        out[method] = {str(p.n): {"accuracy": p.accuracy, "ci_low": p.ci_low, "ci_high": p.ci_high} for p in points}
    return out


def by_n_operations(scored: dict[str, dict[str, StepScores]], data: Datasets, ns: Sequence[int] | None = None,
                    n_bootstrap: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """``comparison_metrics`` of the PRM and the ORM for each chain length the held-out sets hold.

    Parameters
    ----------
    scored : dict "prm" / "orm" -> dict "val" / "test" / "bon" -> StepScores
    data : Datasets
        Samples whose ``meta["n_operations"]`` gives their problem's chain length (the policy's
        samples carry it).

    Returns
    -------
    list of dict
        One per chain length, shortest first: ``{"n_operations": k, "prm": {...}, "orm": {...},
        "majority": {...}, "oracle": {...}, "prm_minus_orm": {...}}`` (``prm_minus_orm``). The first-error threshold of each model is picked
        once, on the whole validation set.
    """
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    for part in ("test", "bon"):
        if any("n_operations" not in s.meta for s in getattr(data, part)):
            raise ValueError(f"data.{part} has samples without meta['n_operations']; sample them with "
                             "NoisyPolicy, which records each problem's chain length.")
    test_ops = np.array([s.meta["n_operations"] for s in data.test])
    bon_ops = np.array([s.meta["n_operations"] for s in data.bon[:: candidates_per_problem(data.bon)]])
    thresholds = {kind: pick_threshold(scored[kind]["val"], data.val) for kind in ("prm", "orm")}
    rows = []
    for k in sorted(set(test_ops.tolist()) & set(bon_ops.tolist())):
        rows_k = {"test_rows": np.flatnonzero(test_ops == k), "bon_rows": np.flatnonzero(bon_ops == k)}
        row: dict[str, Any] = {"n_operations": int(k)}
        for kind in ("prm", "orm"):
            row[kind] = comparison_metrics(scored[kind], data, kind, threshold=thresholds[kind], ns=ns,
                                           n_bootstrap=n_bootstrap, seed=seed, **rows_k)
        row.update(baselines_by_rows(data, rows_k["bon_rows"], ns, n_bootstrap, seed))
        row["prm_minus_orm"] = prm_minus_orm(scored, data, rows_k["bon_rows"], ns, n_bootstrap, seed)
        rows.append(row)
    return rows


def separation(a: dict[str, float], b: dict[str, float]) -> int:
    """+1 when ``a``'s 95% interval lies wholly above ``b``'s, -1 when wholly below, 0 when the two
    overlap: the course calls two methods separable only when their intervals do not overlap (a
    conservative rule; a paired test on the same problems would separate some more).

    Examples
    --------
    >>> separation({"ci_low": 0.8, "ci_high": 0.9}, {"ci_low": 0.6, "ci_high": 0.75})
    1
    >>> separation({"ci_low": 0.7, "ci_high": 0.9}, {"ci_low": 0.6, "ci_high": 0.75})
    0
    """
    bounds = []
    for name, interval in (("a", a), ("b", b)):
        try:
            if any(isinstance(interval[k], bool | str) for k in ("ci_low", "ci_high")):
                raise ValueError("a bool or a text is not a bound")  # float("0.8") would read text as a number
            low, high = float(interval["ci_low"]), float(interval["ci_high"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a dict with numbers 'ci_low' and 'ci_high'; got {interval!r}.") from err
        if not low <= high:  # also False for nan
            raise ValueError(f"{name} has ci_low={low} and ci_high={high}; an interval needs ci_low <= ci_high, "
                             "both numbers (an undefined metric's nan interval separates nothing).")
        bounds.append((low, high))
    (a_low, a_high), (b_low, b_high) = bounds  # the checked floats, never the raw values
    if a_low > b_high:
        return 1
    if a_high < b_low:
        return -1
    return 0
