import numpy as np
import pytest
import torch

from prm_core.comparison import by_n_operations, comparison_metrics
from prm_core.data import StepSample
from prm_core.experiments import Datasets
from prm_core.verification import StepScores

N_CANDIDATES = 4


def _sample(problem_id: int, labels: list[float], answer: str, is_correct: bool, n_operations: int) -> StepSample:
    steps = [f"{j} + 1 = {j + 1}." for j in range(len(labels))]
    return StepSample(f"problem {problem_id}", steps, labels=labels, answer=answer,
                      meta={"problem_id": problem_id, "is_correct_answer": is_correct, "n_operations": n_operations})


def _data(seed: int = 0) -> Datasets:
    """Problems 0-39 with 2 or 3 operations; a wrong step always makes the answer wrong."""
    rng = np.random.default_rng(seed)
    sets = {}
    for part, n_per in (("val", 2), ("test", 2), ("bon", N_CANDIDATES)):
        samples = []
        for p in range(40):
            n_ops = 2 + p % 2
            for _ in range(n_per):
                first_error = int(rng.integers(-1, n_ops))  # -1: all steps right
                labels = [0.0 if first_error >= 0 and j >= first_error else 1.0 for j in range(n_ops)]
                right = first_error < 0
                samples.append(_sample(p, labels, "7" if right else str(int(rng.integers(8, 11))), right, n_ops))
        sets[part] = samples
    return Datasets(train=[], val=sets["val"], test=sets["test"], bon=sets["bon"])


def _scores(samples: list[StepSample], noise: float, seed: int = 0) -> StepScores:
    """Step scores near the labels: label * 0.8 + 0.1 plus uniform noise of width ``noise``."""
    rng = np.random.default_rng(seed)
    width = max(s.n_steps for s in samples)
    scores, mask = torch.zeros(len(samples), width), torch.zeros(len(samples), width, dtype=torch.bool)
    for i, s in enumerate(samples):
        values = np.clip(np.array(s.labels) * 0.8 + 0.1 + rng.uniform(-noise, noise, s.n_steps), 0.01, 0.99)
        scores[i, : s.n_steps] = torch.tensor(values, dtype=torch.float32)
        mask[i, : s.n_steps] = True
    return StepScores(scores, mask)


def _scored(data: Datasets, noise: float) -> dict[str, StepScores]:
    return {part: _scores(getattr(data, part), noise) for part in ("val", "test", "bon")}


def test_comparison_metrics_perfect_scorer_gets_every_metric_right():
    data = _data()
    out = comparison_metrics(_scored(data, noise=0.0), data, "prm", ns=(1, 4), n_bootstrap=50)
    assert out["step_auroc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert out["first_error_f1"]["value"] == 1.0
    # best-of-4 with the min rule picks an all-right candidate whenever one exists: the oracle
    oracle = np.mean([any(s.meta["is_correct_answer"] for s in data.bon[i:i + N_CANDIDATES])
                      for i in range(0, len(data.bon), N_CANDIDATES)])
    assert out["best_of_n"]["4"]["accuracy"] == pytest.approx(oracle)
    assert out["rule"] == "min" and out["n_test_solutions"] == 80 and out["n_bon_problems"] == 40


def test_comparison_metrics_intervals_bracket_their_values():
    data = _data()
    out = comparison_metrics(_scored(data, noise=0.45), data, "orm", ns=(2, 4), n_bootstrap=200)
    assert out["rule"] == "last"
    for metric in ("step_auroc", "first_error_f1"):
        assert out[metric]["ci_low"] <= out[metric]["value"] <= out[metric]["ci_high"]
    for method in ("best_of_n", "weighted_vote"):
        for point in out[method].values():
            assert point["ci_low"] <= point["accuracy"] <= point["ci_high"]


def test_comparison_metrics_rows_select_the_subset():
    data = _data()
    scored = _scored(data, noise=0.3)
    rows = np.arange(0, 20)
    out = comparison_metrics(scored, data, "prm", test_rows=rows, bon_rows=np.arange(5), ns=(4,), n_bootstrap=20)
    assert out["n_test_solutions"] == 20 and out["n_bon_problems"] == 5


def test_comparison_metrics_bad_kind_and_empty_rows_raise():
    data = _data()
    scored = _scored(data, noise=0.1)
    with pytest.raises(ValueError, match="kind='lm'"):
        comparison_metrics(scored, data, "lm")
    with pytest.raises(ValueError, match="non-empty"):
        comparison_metrics(scored, data, "prm", test_rows=[], ns=(4,))


def test_by_n_operations_splits_by_chain_length_and_counts_match():
    data = _data()
    scored = {"prm": _scored(data, 0.2), "orm": _scored(data, 0.4)}
    rows = by_n_operations(scored, data, ns=(4,), n_bootstrap=20)
    assert [r["n_operations"] for r in rows] == [2, 3]
    assert sum(r["prm"]["n_test_solutions"] for r in rows) == len(data.test)
    assert all(r["prm"]["n_bon_problems"] == 20 for r in rows)
    # one threshold per model, picked on the whole validation set
    assert len({r["prm"]["threshold"] for r in rows}) == 1
    assert {"majority", "oracle"} <= set(rows[0])


def test_by_n_operations_without_chain_length_raises_naming_the_fix():
    data = _data()
    data.test[0] = StepSample(data.test[0].problem, data.test[0].steps, labels=data.test[0].labels,
                              meta={"problem_id": 0, "is_correct_answer": True})
    scored = {"prm": _scored(data, 0.2), "orm": _scored(data, 0.4)}
    with pytest.raises(ValueError, match=r"meta\['n_operations'\]"):
        by_n_operations(scored, data)


@pytest.mark.parametrize("a,b,expected", [((0.8, 0.9), (0.6, 0.75), 1), ((0.6, 0.75), (0.8, 0.9), -1),
                                          ((0.7, 0.9), (0.6, 0.75), 0), ((0.7, 0.8), (0.8, 0.9), 0)],
                         ids=["above", "below", "overlap", "touching"])
def test_separation_only_counts_intervals_that_do_not_overlap(a, b, expected):
    from prm_core.comparison import separation

    assert separation({"ci_low": a[0], "ci_high": a[1]}, {"ci_low": b[0], "ci_high": b[1]}) == expected


def _random_scores(samples: list[StepSample], seed: int) -> StepScores:
    """Step scores that ignore the labels: a verifier that knows nothing."""
    rng = np.random.default_rng(seed)
    width = max(s.n_steps for s in samples)
    mask = torch.tensor([[j < s.n_steps for j in range(width)] for s in samples])
    return StepScores(torch.tensor(rng.uniform(0.01, 0.99, (len(samples), width)), dtype=torch.float32) * mask, mask)


def test_prm_minus_orm_of_a_scorer_that_knows_against_one_that_does_not_is_positive():
    from prm_core.comparison import prm_minus_orm

    data = _data()
    knows = _scored(data, noise=0.0)
    blind = {part: _random_scores(getattr(data, part), seed=3) for part in ("val", "test", "bon")}
    diff = prm_minus_orm({"prm": knows, "orm": blind}, data, ns=(4,), n_bootstrap=200)
    assert set(diff) == {"best_of_n", "weighted_vote"} and set(diff["best_of_n"]) == {"4"}
    for method in ("best_of_n", "weighted_vote"):
        point = diff[method]["4"]
        assert point["ci_low"] > 0 and point["ci_low"] <= point["value"] <= point["ci_high"]
    reverse = prm_minus_orm({"prm": blind, "orm": knows}, data, ns=(4,), n_bootstrap=200)
    assert reverse["best_of_n"]["4"]["value"] < 0


def test_prm_minus_orm_on_different_candidates_raises():
    from prm_core.comparison import prm_minus_orm
    from prm_core.verification import StepScores

    data = _data()
    scored = _scored(data, 0.1)
    short = dict(scored, bon=StepScores(scored["bon"].scores[:8], scored["bon"].mask[:8]))
    with pytest.raises(ValueError, match="different candidates"):
        prm_minus_orm({"prm": scored, "orm": short}, data)


@pytest.mark.parametrize("rows,match", [(np.ones(80, dtype=bool), "not a mask"), ([0.9, 1.9], "not a mask"),
                                        ([-1], r"in \[0, 80\)"), ([80], r"in \[0, 80\)"), ([3, 3], "repeats"),
                                        ([], "non-empty")],
                         ids=["bool-mask", "floats", "negative", "too-large", "repeated", "empty"])
def test_comparison_metrics_bad_test_rows_raise_naming_the_fix(rows, match):
    data = _data()
    with pytest.raises(ValueError, match=match):
        comparison_metrics(_scored(data, 0.1), data, "prm", test_rows=rows, ns=(4,), n_bootstrap=5)


@pytest.mark.parametrize("threshold", [float("nan"), 5.0, -0.1, True], ids=["nan", "above-1", "negative", "bool"])
def test_comparison_metrics_bad_threshold_raises(threshold):
    data = _data()
    with pytest.raises(ValueError, match="threshold="):
        comparison_metrics(_scored(data, 0.1), data, "prm", threshold=threshold, ns=(4,), n_bootstrap=5)


def test_comparison_metrics_missing_part_and_int_ns_raise():
    data = _data()
    scored = _scored(data, 0.1)
    with pytest.raises(ValueError, match=r"missing \['val'\]"):
        comparison_metrics({k: v for k, v in scored.items() if k != "val"}, data, "prm")
    with pytest.raises(ValueError, match=r"ns=\(16, 64\)"):
        comparison_metrics(scored, data, "prm", ns=4)


@pytest.mark.parametrize("a,match", [({"ci_low": 0.9, "ci_high": 0.1}, "ci_low <= ci_high"),
                                     ({"ci_low": float("nan"), "ci_high": 0.5}, "ci_low <= ci_high"),
                                     ({"value": 0.5}, "'ci_low' and 'ci_high'")],
                         ids=["swapped", "nan", "missing-keys"])
def test_separation_bad_interval_raises(a, match):
    from prm_core.comparison import separation

    with pytest.raises(ValueError, match=match):
        separation(a, {"ci_low": 0.3, "ci_high": 0.4})


def test_separation_text_bounds_raise_instead_of_comparing_as_text():
    from prm_core.comparison import separation

    # as text "10" < "4" and "20" < "3": before, these intervals came out as -1 (a wholly below b)
    with pytest.raises(ValueError, match="'ci_low' and 'ci_high'"):
        separation({"ci_low": "10", "ci_high": "20"}, {"ci_low": "3", "ci_high": "4"})


def test_separation_compares_the_checked_floats_of_any_real_number_type():
    from prm_core.comparison import separation

    # 0-d tensors compare as tensors, numpy scalars as numpy: the checked floats give the same verdicts
    a = {"ci_low": torch.tensor(0.8), "ci_high": np.float32(0.9)}
    assert separation(a, {"ci_low": 0.6, "ci_high": np.float64(0.75)}) == 1
    assert separation({"ci_low": 10, "ci_high": 20}, {"ci_low": 3, "ci_high": 4}) == 1
