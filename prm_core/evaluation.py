"""The held-out report of a trained PRM and ORM: step metrics, first-error F1, best-of-N curves.

Everything is computed on test-side problems that no model (nor the backbone's pretraining) saw;
the first-error threshold is picked on a train-side validation set, never on the test set.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from prm_core.aggregation import AGGREGATIONS
from prm_core.checks import check_choice, check_int, check_probability, check_real, check_seed
from prm_core.data import StepSample, is_correct_answer
from prm_core.metrics import (
    FirstErrorF1,
    best_of_n_curve,
    best_threshold,
    bootstrap_ci,
    detection_rate_by_kind,
    expected_calibration_error,
    first_error_f1,
    first_error_index,
    step_accuracy,
    step_auroc,
)
from prm_core.model import ProcessRewardModel
from prm_core.tasks.arithmetic import answer_value
from prm_core.verification import StepScores, Verifier, default_batch_size

if TYPE_CHECKING:
    from prm_core.experiments import Datasets

THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
WEIGHTED_RULES = ("min", "prod", "mean", "last", "geomean")  # sum_logit is negative: no vote weight
NO_ANSWER = -(10**9)  # stands for a missing answer in integer answer arrays; never correct


def padded_labels(samples: Sequence[StepSample], n_steps: int) -> np.ndarray:
    """(N, S) labels with NaN at padded or unlabelled steps; ``n_steps`` (an int) must cover every
    sample's steps (ValueError otherwise)."""
    n_steps = check_int(n_steps, "n_steps", f"[{max((s.n_steps for s in samples), default=0)}, inf)",
                        "pass the padded width of the scores, e.g. scores.scores.shape[1]")
    out = np.full((len(samples), n_steps), np.nan)
    for i, s in enumerate(samples):
        out[i, : s.n_steps] = [np.nan if x is None else x for x in (s.labels or [None] * s.n_steps)]
    return out


def step_report(scores: StepScores, samples: Sequence[StepSample]) -> dict[str, float]:
    """Step AUROC, accuracy at 0.5 and calibration error over every labelled step."""
    labels = padded_labels(samples, scores.scores.shape[1])
    probs = scores.scores.numpy()
    return {"step_auroc": step_auroc(probs, labels), "step_accuracy": step_accuracy(probs, labels),
            "ece": expected_calibration_error(probs, labels)}


def first_errors(samples: Sequence[StepSample]) -> tuple[list[int], list[str | None]]:
    """True first-error index (-1: none) of each sample and the policy's kind of that step."""
    index = [s.first_error_index() for s in samples]
    kinds = [s.meta["step_kinds"][i] if i >= 0 and "step_kinds" in s.meta else None for s, i in zip(samples, index, strict=True)]
    return index, kinds


def first_error_report(scores: StepScores, samples: Sequence[StepSample], threshold: float) -> dict[str, Any]:
    """ProcessBench-style first-error F1 at ``threshold`` (a finite number; ValueError otherwise) and
    detection rate per error kind."""
    threshold = check_real(threshold, "threshold", fix="pass e.g. pick_threshold(...) or 0.5")
    per_sample = scores.per_sample()
    true, kinds = first_errors(samples)
    f1 = first_error_f1([first_error_index(s, threshold) for s in per_sample], true)
    detection = detection_rate_by_kind(per_sample, true, kinds, threshold)
    return {"threshold": float(threshold), "f1": f1.f1, "error_accuracy": f1.error_accuracy,
            "correct_accuracy": f1.correct_accuracy,
            "detection_by_kind": {k: {"rate": r, "count": c} for k, (r, c) in sorted(detection.items())}}


@dataclass(frozen=True)
class ProcessBenchReport:
    """The ProcessBench protocol's result, with what it could not score said beside it."""

    f1: FirstErrorF1  # over the solutions with a known prediction
    threshold: float
    predicted: list[int | None]  # per solution: first step below threshold, -1 none, None unknown
    true: list[int]  # per solution: the labelled first error, -1 none
    n_truncated: int  # solutions that lost steps to max_length
    n_unknown: int  # truncated solutions whose kept steps show no error: left out of f1


def processbench_report(model: Any, samples: Sequence[StepSample], threshold: float = 0.5, *,
                        truncated: str = "unknown", batch_size: int = 8) -> ProcessBenchReport:
    """ProcessBench's protocol (Zheng et al. 2024, section 3): predict each solution's first wrong
    step as the first step scored below ``threshold``, and score it by exact match, as the harmonic
    mean of the accuracy on erroneous and on correct solutions.

    Parameters
    ----------
    model : Verifier, ProcessRewardModel or a published scorer
        Anything ``Verifier`` takes (``prm_core.published.load_published_prm`` included).
    samples : sequence of StepSample
        Labelled solutions, e.g. ``formats.read_processbench``; the true first error is
        ``StepSample.first_error_index``.
    threshold : float, default 0.5
        Pick it on held-out data with labels (``metrics.best_threshold``), never on the test rows.
    truncated : {"unknown", "prefix", "raise"}, default "unknown"
        A solution that lost steps to ``max_length`` keeps a prediction found in its kept steps,
        and is otherwise counted in ``n_unknown`` and left out of the F1 ("prefix" would read it
        as correct; "raise" refuses).

    batch_size : int, default 8
        Solutions per forward pass when ``model`` is not already a ``Verifier``.

    Returns
    -------
    ProcessBenchReport

    Raises
    ------
    ValueError
        Before any scoring: for a threshold outside [0, 1], an unknown ``truncated`` or a
        ``batch_size`` that is not an int >= 1; and for no samples.
    """
    threshold = check_probability(threshold, "threshold", "pass e.g. 0.5 or one picked on labelled validation rows")
    check_choice(truncated, "truncated", ("unknown", "prefix", "raise"))
    batch_size = check_int(batch_size, "batch_size", "[1, inf)", "pass e.g. batch_size=8")
    verifier = model if isinstance(model, Verifier) else Verifier(model, batch_size=batch_size)
    if len(samples) == 0:
        raise ValueError("samples is empty; pass ProcessBench rows (formats.read_processbench).")
    scores = verifier.score_steps(samples)
    predicted = scores.first_error_predictions(threshold, truncated)
    true = [s.first_error_index() for s in samples]
    known = [i for i, p in enumerate(predicted) if p is not None]
    if known:
        f1 = first_error_f1([predicted[i] for i in known], [true[i] for i in known])
    else:
        import warnings

        from prm_core.metrics_base import UndefinedMetricWarning

        warnings.warn("no solution has a known prediction (all were truncated before any error showed); F1 is "
                      "undefined. Raise max_length.", UndefinedMetricWarning, stacklevel=2)
        f1 = FirstErrorF1(math.nan, math.nan, math.nan, 0, 0)
    return ProcessBenchReport(f1, float(threshold), predicted, true, int(scores.is_truncated.sum()),
                              len(samples) - len(known))


def pick_threshold(scores: StepScores, samples: Sequence[StepSample]) -> float:
    """The first-error threshold with the best F1 on (validation) samples."""
    true, _ = first_errors(samples)
    threshold, _ = best_threshold(scores.per_sample(), true, THRESHOLDS)
    return float(threshold)


def answer_arrays(samples: Sequence[StepSample], n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, M) integer answers and correctness for problem-major candidate lists (``n_candidates``, an
    int >= 1, must divide the number of samples; ValueError otherwise)."""
    n_candidates = check_int(n_candidates, "n_candidates", "[1, inf)", "pass the candidates sampled per problem")
    if len(samples) % n_candidates:
        raise ValueError(f"n_candidates={n_candidates} does not divide the {len(samples)} samples; pass the "
                         "candidates per problem of a problem-major list.")
    values = [answer_value(s.answer) for s in samples]  # the benchmark's reading: "14.0" is 14, "14.5" no answer
    answers = np.array([NO_ANSWER if v is None else v for v in values], dtype=np.int64)
    correct = np.array([is_correct_answer(s, f"samples[{i}]") for i, s in enumerate(samples)])
    return answers.reshape(-1, n_candidates), correct.reshape(-1, n_candidates)


def best_of_n_report(prm_scores: StepScores, orm_scores: StepScores, samples: Sequence[StepSample],
                     n_candidates: int, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, dict]]:
    """Accuracy with 95% CI for every selection method and every N = 1, 2, 4, ..., n_candidates
    (``n_bootstrap`` an int >= 1, ``seed`` an int in [0, 2**63); ValueError otherwise)."""
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", "[1, inf)")
    seed = check_seed(seed)
    answers, correct = answer_arrays(samples, n_candidates)
    shape = answers.shape
    methods: dict[str, tuple[str, np.ndarray | None]] = {"majority": ("majority", None), "oracle": ("oracle", None)}
    for rule in AGGREGATIONS:
        methods[f"prm_{rule}"] = ("best_of_n", prm_scores.solution_scores(rule).numpy().reshape(shape))
    for rule in WEIGHTED_RULES:
        methods[f"prm_weighted_{rule}"] = ("weighted", prm_scores.solution_scores(rule).numpy().reshape(shape))
    orm = orm_scores.solution_scores("last").numpy().reshape(shape)
    methods["orm"], methods["orm_weighted"] = ("best_of_n", orm), ("weighted", orm)
    table: dict[str, dict[str, dict]] = {}
    for name, (method, scores) in methods.items():
        for point in best_of_n_curve(answers, correct, scores, method, n_bootstrap=n_bootstrap, seed=seed):
            table.setdefault(str(point.n), {})[name] = {"accuracy": point.accuracy, "ci_low": point.ci_low,
                                                        "ci_high": point.ci_high}
    return table


def summarize_best_of_n(table: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """At the largest N: the best PRM method against majority vote and the ORM."""
    n = max(table, key=int)
    at_n = table[n]
    best = max((m for m in at_n if m.startswith("prm_")), key=lambda m: at_n[m]["accuracy"])
    best_orm = max(("orm", "orm_weighted"), key=lambda m: at_n[m]["accuracy"])
    return {"n": int(n), "best_prm_method": best, "best_prm_accuracy": at_n[best]["accuracy"],
            "majority_accuracy": at_n["majority"]["accuracy"], "best_orm_method": best_orm,
            "best_orm_accuracy": at_n[best_orm]["accuracy"], "oracle_accuracy": at_n["oracle"]["accuracy"]}


def throughput_batch_size(device: torch.device | str) -> int:
    """Solutions per forward when measuring throughput: 4096 fills a GPU (the issue's reference
    figure is at that batch); on a CPU the Verifier's own default (``default_batch_size``)."""
    return 4096 if torch.device(device).type == "cuda" else default_batch_size(device)


@torch.inference_mode()
def scoring_throughput(model: ProcessRewardModel, samples: Sequence[StepSample], batch_size: int,
                       repeats: int = 3) -> dict[str, float]:
    """Solutions per second of the Verifier, from text and from encoded samples, against a bare
    backbone forward over the same length-sorted batches already on the device.

    ``verifier_share_of_bare`` (from encoded samples) is what the scoring loop itself costs beyond
    the backbone: the head, collation, copies and bookkeeping. ``end_to_end_share_of_bare`` adds the
    tokenizer, a one-off cost per candidate set that ``Verifier.score_encoded`` lets callers reuse.
    ``batch_size`` and ``repeats`` are ints >= 1 (ValueError otherwise).
    """
    repeats = check_int(repeats, "repeats", "[1, inf)")
    verifier = Verifier(model, batch_size=batch_size)
    samples = list(samples)
    verifier.score_steps(samples[:batch_size])  # warm-up

    def rate(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        if verifier.device.type == "cuda":
            torch.cuda.synchronize()
        return repeats * len(samples) / (time.perf_counter() - start)

    encoded = model.encoder.encode_many(samples)
    # The batches the Verifier builds, already on the device: what is left is the forward alone.
    batches = [{k: batch[k] for k in ("input_ids", "attention_mask")}
               for _, batch in model.encoder.iter_batches(encoded, batch_size, device=verifier.device)]

    def bare_forward() -> None:
        with torch.autocast(verifier.device.type, dtype=torch.bfloat16, enabled=verifier.device.type == "cuda"):
            for batch in batches:
                model.backbone(**batch)

    bare = rate(bare_forward)
    from_encoded = rate(lambda: verifier.score_encoded(encoded))
    end_to_end = rate(lambda: verifier.score_steps(samples))
    encoding = rate(lambda: model.encoder.encode_many(samples))
    return {"batch_size": batch_size, "bare_forward_solutions_per_second": bare,
            "verifier_solutions_per_second": from_encoded, "verifier_share_of_bare": from_encoded / bare,
            "end_to_end_solutions_per_second": end_to_end, "end_to_end_share_of_bare": end_to_end / bare,
            "encoding_solutions_per_second": encoding}


def score_datasets(models: dict[str, ProcessRewardModel], data: Datasets,
                   batch_size: int | None = None) -> dict[str, dict[str, StepScores]]:
    """Step scores of every model on the validation, test and best-of-N sets (``batch_size`` an int >= 1,
    or None for the Verifier's default)."""
    from tqdm import tqdm

    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", "[1, inf)", "pass e.g. batch_size=32, or None for the device's default")

    scored = {}
    for name, model in tqdm(models.items(), desc="score", leave=False):
        verifier = Verifier(model, batch_size=batch_size)
        scored[name] = {part: verifier.score_steps(getattr(data, part)) for part in ("val", "test", "bon")}
    return scored


def candidates_per_problem(bon: Sequence[StepSample]) -> int:
    """Candidates per problem of a problem-major best-of-N list (``Datasets.bon``): each problem's
    candidates in one contiguous run, every run of the same length M.

    Raises
    ------
    ValueError
        For an empty list, a problem with more or fewer than M candidates, or one whose candidates
        are not contiguous (``[A, B, A, B]``): reshaped to (P, M), such a list would mix problems
        within a row, and every later problem would be misaligned. The message names the first
        offending position.

    Examples
    --------
    >>> bon = [StepSample("q", ["a"], meta={"problem_id": p}) for p in (7, 7, 9, 9)]
    >>> candidates_per_problem(bon)
    2
    """
    if len(bon) == 0:
        raise ValueError("bon is empty; pass the best-of-N candidates, problem-major (Datasets.bon).")
    ids = [s.meta["problem_id"] for s in bon]
    runs, start = [], 0  # (start, length, problem_id) of each stretch of one problem's candidates
    for pid, group in itertools.groupby(ids):
        length = len(list(group))
        runs.append((start, length, pid))
        start += length
    n_candidates = runs[0][1]
    fix = (f"pass {n_candidates} candidates for every problem (as the first problem has), each problem's "
           "candidates together (problem-major)")
    seen = set()
    for start, length, pid in runs:
        if pid in seen:
            raise ValueError(f"bon[{start}] starts a second run of problem_id={pid!r}; {fix}.")
        if length != n_candidates:
            raise ValueError(f"bon[{start}:{start + length}] holds {length} candidates of problem_id={pid!r}, but the "
                             f"first problem has {n_candidates}; {fix}.")
        seen.add(pid)
    return n_candidates


def held_out_report(scored: dict[str, StepScores], data: Datasets) -> dict[str, Any]:
    """Step metrics and first-error F1 (threshold picked on validation) of one model on the test set."""
    threshold = pick_threshold(scored["val"], data.val)
    return {**step_report(scored["test"], data.test),
            "first_error": first_error_report(scored["test"], data.test, threshold)}


def selection_report(scored: dict[str, StepScores], data: Datasets, rule: str = "min") -> dict[str, dict[str, float]]:
    """Best-of-N and weighted-vote accuracy of one PRM (solution score ``rule``) at every N."""
    answers, correct = answer_arrays(data.bon, candidates_per_problem(data.bon))
    solution = scored["bon"].solution_scores(rule).numpy().reshape(answers.shape)
    return {method: {str(p.n): p.accuracy for p in best_of_n_curve(answers, correct, solution, method)}
            for method in ("best_of_n", "weighted")}


def build_report(scored: dict[str, dict[str, StepScores]], data: Datasets) -> dict[str, Any]:
    """The standard report from step scores: PRM and ORM step metrics, first-error F1, best-of-N."""
    report: dict[str, Any] = {name: held_out_report(scored[name], data) for name in ("prm", "orm")}
    labels = padded_labels(data.test, scored["prm"]["test"].scores.shape[1])
    positive_share = float(np.nanmean(labels))
    report["baselines"] = {"majority_label_step_accuracy": max(positive_share, 1 - positive_share),
                           "majority_label_step_auroc": 0.5,
                           "orm_as_step_scorer_auroc": report["orm"]["step_auroc"]}
    report["best_of_n"] = best_of_n_report(scored["prm"]["bon"], scored["orm"]["bon"], data.bon, candidates_per_problem(data.bon))
    report["best_of_n_summary"] = summarize_best_of_n(report["best_of_n"])
    report["step_auroc"] = report["prm"]["step_auroc"]
    report["first_error_f1"] = report["prm"]["first_error"]["f1"]
    report["detection_by_kind"] = report["prm"]["first_error"]["detection_by_kind"]
    return report


def flag_rate_by_kind(scores: StepScores, samples: Sequence[StepSample], rules: Sequence[str],
                      threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """For each aggregation rule and each kind of first error: the share of solutions whose
    solution score falls below ``threshold`` (the rule "notices" the error).

    Solutions with no wrong step are reported under ``"none"`` (there a low score is a false alarm).
    ``threshold`` is any finite number (solution scores need not be probabilities: ``sum_logit``).
    """
    threshold = check_real(threshold, "threshold", fix="pass e.g. threshold=0.5")
    _, kinds = first_errors(samples)
    kinds = ["none" if k is None else k for k in kinds]
    out: dict[str, dict[str, float]] = {}
    for rule in rules:
        flagged = (scores.solution_scores(rule) < threshold).numpy()
        out[rule] = {k: float(np.mean([f for f, kk in zip(flagged, kinds, strict=True) if kk == k]))
                     for k in sorted(set(kinds))}
    return out


def search_vs_best_of_n(search: dict[int, Sequence[Any]], prm_bon: StepScores, bon: Sequence[StepSample],
                        rule: str = "min", n_bootstrap: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Beam search (its best final solution, and a weighted vote over its last operation's
    candidates) against best-of-N, PRM-weighted vote and majority vote at equal policy calls.

    ``search`` maps a budget ``b`` (policy calls per operation, ``BeamSearchConfig.samples_per_operation``)
    to the ``SearchResult``s of the first ``P`` best-of-N problems, in order; the other methods pick
    among ``N = b`` candidates of the same problems, in disjoint groups. Each row holds the method,
    the budget, accuracy with a 95% bootstrap CI over problems, and the mean number of steps the policy
    wrote and the PRM scored per problem. ``n_bootstrap`` is an int >= 1 and ``seed`` an int in
    [0, 2**63) (ValueError otherwise).
    """
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", "[1, inf)")
    seed = check_seed(seed)
    n_candidates = candidates_per_problem(bon)
    answers, correct = answer_arrays(bon, n_candidates)
    solution = prm_bon.solution_scores(rule).numpy().reshape(answers.shape)
    steps_per_candidate = np.array([s.n_steps for s in bon]).reshape(answers.shape)
    rows = []
    for budget, results in sorted(search.items()):
        p = len(results)
        if not 1 <= p <= answers.shape[0] or budget > n_candidates:
            raise ValueError(f"search[{budget}] has {p} results for {answers.shape[0]} best-of-N problems of "
                             f"{n_candidates} candidates; search a prefix of those problems with a budget <= "
                             f"{n_candidates}.")
        for name, kind, picked in ((f"beam search ({rule})", "solution", [r.solution for r in results]),
                                   (f"beam search + weighted vote ({rule})", "voted()", [r.voted() for r in results])):
            hit = np.array([is_correct_answer(s, f"search[{budget}][{i}].{kind}") for i, s in enumerate(picked)],
                           dtype=float)
            low, high = bootstrap_ci(hit, n_bootstrap, seed)
            rows.append({"method": name, "budget": budget, "accuracy": float(hit.mean()), "ci_low": low,
                         "ci_high": high, "generated_steps": float(np.mean([r.n_generated_steps for r in results])),
                         "scored_solutions": float(np.mean([r.n_scored for r in results]))})
        whole = float(steps_per_candidate[:p].mean() * budget)  # N whole solutions per problem
        for name, method, scores, scored in ((f"best-of-N ({rule})", "best_of_n", solution, budget),
                                             (f"PRM-weighted vote ({rule})", "weighted", solution, budget),
                                             ("majority vote", "majority", None, 0)):
            (point,) = best_of_n_curve(answers[:p], correct[:p], None if scores is None else scores[:p], method,
                                       ns=[budget], n_bootstrap=n_bootstrap, seed=seed)
            rows.append({"method": name, "budget": budget, "accuracy": point.accuracy, "ci_low": point.ci_low,
                         "ci_high": point.ci_high, "generated_steps": whole, "scored_solutions": float(scored)})
    return rows
