"""PRM against ORM over several training seeds: ``comparison_metrics`` with two-level intervals.

Why: one trained model is one draw of a training procedure, and another seed (or another CPU) draws
another. The course's claims are about the procedure, so each metric here is the mean over the
seeds' models, and its 95% interval resamples the seeds, then the problems within each
(``prm_core.metrics_seeds``). Every entry carries ``per_seed`` (each model's own value) and
``n_seeds``, so a reader sees the spread the interval is made of.

Seeds are paired across the models compared: row s of one list and row s of another are resampled
together (the same training subset and seed, e.g. an ablation's two sides).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prm_core.comparison import SOLUTION_RULES, _check_bootstrap, _check_scored, _default_ns
from prm_core.evaluation import (
    answer_arrays,
    candidates_per_problem,
    first_errors,
    padded_labels,
    pick_threshold,
)
from prm_core.metrics import (
    first_error_f1,
    first_error_index,
    per_problem_accuracy,
    seed_bootstrap_ci,
    seed_paired_difference,
    step_auroc,
)
from prm_core.metrics_best_of_n import percentile_interval
from prm_core.metrics_seeds import seed_statistic_resamples
from prm_core.verification import StepScores

if TYPE_CHECKING:
    from prm_core.experiments import Datasets

STEP_METRICS = ("step_auroc", "first_error_f1")
ANSWER_METRICS = (("best_of_n", "best_of_n"), ("weighted_vote", "weighted"))  # (name, best_of_n_curve method)


def _check_seeds(scored_per_seed: Sequence[dict[str, StepScores]], name: str) -> list[dict[str, StepScores]]:
    if isinstance(scored_per_seed, dict) or not isinstance(scored_per_seed, Sequence) or not scored_per_seed:
        raise ValueError(f"{name} must be a non-empty list with one dict 'val' / 'test' / 'bon' -> StepScores per "
                         "training seed (one model: [scored]).")
    for s, scored in enumerate(scored_per_seed):
        _check_scored(scored, f"{name}[{s}]")
        for part in ("val", "test", "bon"):
            if not isinstance(scored[part], StepScores):
                raise ValueError(f"{name}[{s}][{part!r}] is a {type(scored[part]).__name__}; pass the StepScores a "
                                 "Verifier or sweep_scores gives.")
    n_bon = {len(scored["bon"].scores) for scored in scored_per_seed}
    if len(n_bon) > 1:
        raise ValueError(f"{name}'s seeds scored different numbers of best-of-N candidates {sorted(n_bon)}; score "
                         "the same ones with every seed.")
    return list(scored_per_seed)


class SeedModels:
    """One kind of model trained with several seeds, prepared once for every metric: each seed's
    first-error threshold (picked on validation), first-error predictions and solution scores, and
    its resampled step metrics once computed. Pass it instead of the list to
    ``comparison_over_seeds`` and ``difference_over_seeds`` to compute each model's resamples once
    (their draws are shared, so the differences stay paired).

    Raises ``ValueError`` as ``comparison_over_seeds`` does.
    """

    def __init__(self, scored_per_seed: Sequence[dict[str, StepScores]], data: Datasets, kind: str,
                 name: str = "scored_per_seed"):
        if kind not in SOLUTION_RULES:
            raise ValueError(f"kind={kind!r} must be one of {sorted(SOLUTION_RULES)}.")
        if not all(hasattr(data, part) for part in ("val", "test", "bon")):
            raise ValueError(f"data={type(data).__name__} must be the Datasets the scores were computed on.")
        self.scored = _check_seeds(scored_per_seed, name)
        for s, scored in enumerate(self.scored):
            for part in ("val", "test"):
                if len(scored[part].scores) != len(getattr(data, part)):
                    raise ValueError(f"{name}[{s}][{part!r}] holds {len(scored[part].scores)} solutions but data.{part} "
                                     f"{len(getattr(data, part))}; score every solution of data.{part}, in order.")
        self.kind, self.data = kind, data
        self.groups = np.array([s.meta["problem_id"] for s in data.test])
        self.labels = padded_labels(data.test, self.scored[0]["test"].scores.shape[1])
        self.true = np.array(first_errors(data.test)[0])
        self.thresholds = [pick_threshold(scored["val"], data.val) for scored in self.scored]
        self.probs = [scored["test"].scores.numpy() for scored in self.scored]
        self.pred = [np.array([first_error_index(steps, t) for steps in scored["test"].per_sample()])
                     for scored, t in zip(self.scored, self.thresholds, strict=True)]
        n_bon = len(self.scored[0]["bon"].scores)
        self.answers, self.correct = answer_arrays(data.bon[:n_bon], candidates_per_problem(data.bon))
        self.solution = [scored["bon"].solution_scores(SOLUTION_RULES[kind]).numpy().reshape(self.answers.shape)
                         for scored in self.scored]

        self._resamples: dict[tuple[str, int, int], tuple[list[float], np.ndarray]] = {}

    def statistic(self, metric: str) -> Callable[[int, np.ndarray], float]:
        if metric not in STEP_METRICS:
            raise ValueError(f"metric={metric!r} must be one of {STEP_METRICS}.")
        if metric == "step_auroc":
            return lambda s, idx: step_auroc(self.probs[s][idx], self.labels[idx])
        return lambda s, idx: first_error_f1(self.pred[s][idx], self.true[idx]).f1

    def resamples(self, metric: str, n_bootstrap: int, seed: int) -> tuple[list[float], np.ndarray]:
        """Per-seed values and resample means of a step metric, computed once (the draws are shared by
        every model on the same test set, so two sides' resamples pair draw by draw)."""
        key = (metric, n_bootstrap, seed)
        if key not in self._resamples:
            self._resamples[key] = seed_statistic_resamples(self.statistic(metric), self.groups, len(self.scored),
                                                            n_bootstrap, seed)
        return self._resamples[key]

    def interval(self, metric: str, n_bootstrap: int, seed: int, minus: SeedModels | None = None) -> dict[str, Any]:
        per_seed, resampled = self.resamples(metric, n_bootstrap, seed)
        if minus is not None:
            other, other_resampled = minus.resamples(metric, n_bootstrap, seed)
            per_seed, resampled = [a - b for a, b in zip(per_seed, other, strict=True)], resampled - other_resampled
        low, high = percentile_interval(resampled)
        return {"value": float(np.mean(per_seed)), "ci_low": low, "ci_high": high, "per_seed": per_seed,
                "n_seeds": len(per_seed)}

    def hits(self, method: str, ns: Sequence[int]) -> dict[int, np.ndarray]:
        """N -> (S, P) per-problem accuracy of every seed's model."""
        per_seed = [per_problem_accuracy(self.answers, self.correct, solution, method, ns) for solution in self.solution]
        return {n: np.stack([row[n] for row in per_seed]) for n in ns}


def _check_same_data(seeds: SeedModels, data: Datasets) -> None:
    if seeds.data is not data:
        raise ValueError("the SeedModels passed were prepared on other Datasets than data; prepare them on the same "
                         "held-out sets, or pass the list of scores instead.")


def _check_ns(ns: Sequence[int] | None) -> None:
    if ns is not None and not isinstance(ns, str) and len(ns) == 0:
        raise ValueError("ns=() asks for no N; pass e.g. ns=(16, 64), or None for the default.")


def comparison_over_seeds(scored_per_seed: Sequence[dict[str, StepScores]] | SeedModels, data: Datasets, kind: str, *,
                          ns: Sequence[int] | None = None, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``comparison_metrics`` of one kind of model trained with several seeds, two-level intervals.

    Parameters
    ----------
    scored_per_seed : list of dict "val" / "test" / "bon" -> StepScores, or SeedModels
        One entry per training seed: that model's step scores on ``data.val``, ``data.test`` and the
        first best-of-N problems of ``data.bon`` (the same candidates for every seed).
    data : Datasets
    kind : {"prm", "orm"}
        Picks the solution score (``comparison.SOLUTION_RULES``).
    ns : sequence of int, optional
        As in ``comparison_metrics``.
    n_bootstrap, seed : int

    Returns
    -------
    dict
        ``step_auroc`` and ``first_error_f1`` as {"value", "ci_low", "ci_high", "per_seed",
        "n_seeds"}; ``best_of_n`` and ``weighted_vote`` as {str(N): {"accuracy", "ci_low",
        "ci_high", "per_seed", "n_seeds"}}; ``thresholds`` (each seed's, picked on validation),
        ``rule``, ``n_seeds``, ``n_test_solutions`` and ``n_bon_problems``.

    Raises
    ------
    ValueError
        For an empty list, a seed's scores missing a part, seeds that scored different candidates,
        an unknown ``kind``, or a bad ``n_bootstrap`` or ``seed``.
    """
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    _check_ns(ns)
    seeds = scored_per_seed if isinstance(scored_per_seed, SeedModels) else SeedModels(scored_per_seed, data, kind)
    if seeds.kind != kind:
        raise ValueError(f"kind={kind!r} but the SeedModels passed were prepared as {seeds.kind!r}.")
    _check_same_data(seeds, data)
    n_seeds = len(seeds.scored)
    out: dict[str, Any] = {}
    for metric in STEP_METRICS:
        out[metric] = seeds.interval(metric, n_bootstrap, seed)
    ns = _default_ns(ns, seeds.answers.shape[1])
    for name, method in ANSWER_METRICS:
        out[name] = {}
        for n, hits in seeds.hits(method, ns).items():
            interval = seed_bootstrap_ci(hits, n_bootstrap, seed)
            out[name][str(n)] = {"accuracy": interval["value"], **{k: interval[k] for k in
                                                                  ("ci_low", "ci_high", "per_seed", "n_seeds")}}
    return {**out, "thresholds": [float(t) for t in seeds.thresholds], "rule": SOLUTION_RULES[kind],
            "n_seeds": n_seeds, "n_test_solutions": len(data.test), "n_bon_problems": int(seeds.answers.shape[0])}


def difference_over_seeds(a: Sequence[dict[str, StepScores]] | SeedModels, b: Sequence[dict[str, StepScores]] | SeedModels,
                          data: Datasets,
                          kinds: tuple[str, str] | None = None, *, ns: Sequence[int] | None = None,
                          n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every metric of models ``a`` minus the same metric of models ``b``, seed s paired with seed s,
    on the same problems, with two-level intervals: "a above b across training seeds" means the
    difference's ``ci_low > 0``.

    ``kinds`` gives each side's kind ("prm" or "orm", for the solution score); by default a side
    passed as ``SeedModels`` keeps the kind it was prepared with and a list is a PRM's, and a kind
    given for a prepared side must be its own. ``a`` and ``b`` hold the same number of seeds. Returns ``step_auroc``, ``first_error_f1`` as {"value", "ci_low",
    "ci_high", "per_seed", "n_seeds"} and ``best_of_n``, ``weighted_vote`` as {str(N): the same}.

    Raises
    ------
    ValueError
        For lists of different lengths or different candidates, or anything ``comparison_over_seeds``
        refuses.
    """
    n_bootstrap, seed = _check_bootstrap(n_bootstrap, seed)
    _check_ns(ns)
    if kinds is None:  # a prepared side keeps its kind; a list is a PRM's
        kinds = tuple(x.kind if isinstance(x, SeedModels) else "prm" for x in (a, b))
    if isinstance(kinds, str) or len(kinds) != 2:
        raise ValueError(f"kinds={kinds!r} must name each side's kind, e.g. ('prm', 'orm').")
    side_a = a if isinstance(a, SeedModels) else SeedModels(a, data, kinds[0], "a")
    side_b = b if isinstance(b, SeedModels) else SeedModels(b, data, kinds[1], "b")
    for side, kind, name in ((side_a, kinds[0], "a"), (side_b, kinds[1], "b")):
        if side.kind != kind:
            raise ValueError(f"kinds names {kind!r} for {name}, but {name} was prepared as {side.kind!r}; pass "
                             f"kinds=({side_a.kind!r}, {side_b.kind!r}).")
        _check_same_data(side, data)
    if len(side_a.scored) != len(side_b.scored):
        raise ValueError(f"a has {len(side_a.scored)} seeds and b {len(side_b.scored)}; pair the same seeds.")
    if side_a.answers.shape != side_b.answers.shape:
        raise ValueError("a and b scored different best-of-N candidates; score the same ones.")
    out: dict[str, Any] = {}
    for metric in STEP_METRICS:
        out[metric] = side_a.interval(metric, n_bootstrap, seed, minus=side_b)
    ns = _default_ns(ns, side_a.answers.shape[1])
    for name, method in ANSWER_METRICS:
        hits_a, hits_b = side_a.hits(method, ns), side_b.hits(method, ns)
        out[name] = {str(n): {k: v for k, v in seed_paired_difference(hits_a[n], hits_b[n], n_bootstrap, seed).items()
                              if k != "n_problems"} for n in ns}
    return out


def prm_minus_orm_over_seeds(prm: Sequence[dict[str, StepScores]] | SeedModels, orm: Sequence[dict[str, StepScores]] | SeedModels,
                             data: Datasets, **kwargs: Any) -> dict[str, Any]:
    """``difference_over_seeds(prm, orm, data, ("prm", "orm"))``: the PRM's edge over the ORM, each
    with its own solution score, PRM seed s paired with ORM seed s."""
    return difference_over_seeds(prm, orm, data, ("prm", "orm"), **kwargs)
