import math
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prm_core.metrics import (
    UndefinedMetricWarning,
    best_of_n_curve,
    best_threshold,
    bootstrap_ci,
    detection_rate_by_kind,
    expected_calibration_error,
    first_error_f1,
    first_error_index,
    reliability_bins,
    step_accuracy,
    step_auroc,
    threshold_sweep,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
NAN = float("nan")
grid_scores = st.integers(0, 8).map(lambda k: k / 8)  # coarse: many exact ties between steps
label_values = st.sampled_from([0.0, 1.0, 0.3, 0.7, NAN])  # hard, soft and unlabelled


def _slow_auroc(scores, labels) -> float:
    """Pairwise definition: share of (positive, negative) pairs ranked right, ties count 1/2."""
    pairs = [(s, y >= 0.5) for s, y in zip(scores, labels, strict=True) if not math.isnan(y)]
    pos = [s for s, is_pos in pairs if is_pos]
    neg = [s for s, is_pos in pairs if not is_pos]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_step_accuracy_soft_and_nan_labels_binarised_and_ignored():
    scores = [0.9, 0.2, 0.7, 0.4, 0.1]
    labels = [1.0, 0.0, 0.3, 0.8, NAN]
    # labelled: (0.9, 1) right, (0.2, 0) right, (0.7, 0.3 -> 0) wrong, (0.4, 0.8 -> 1) wrong -> 2 / 4
    assert step_accuracy(scores, labels) == pytest.approx(0.5)


def test_step_accuracy_threshold_moves_the_decision():
    # threshold 0.8: 0.9 -> 1 right, 0.7 -> 0 wrong, 0.2 -> 0 right -> 2 / 3
    assert step_accuracy([0.9, 0.7, 0.2], [1, 1, 0], threshold=0.8) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "convert", [list, np.asarray, torch.tensor, lambda x: torch.tensor(x).bfloat16()],
    ids=["list", "numpy", "torch", "torch-bf16"],
)
def test_step_metrics_accept_lists_arrays_and_tensors(convert):
    scores, labels = [0.125, 0.75, 0.5, 0.25], [0.0, 1.0, 1.0, 0.0]  # exact in bfloat16
    assert step_accuracy(convert(scores), convert(labels)) == pytest.approx(1.0)
    assert step_auroc(convert(scores), convert(labels)) == pytest.approx(1.0)


def test_step_metrics_padded_2d_arrays_with_nan_labels_ignore_padding():
    scores = np.array([[0.9, 0.1, np.nan], [0.8, 0.7, 0.6]])  # NaN score under a NaN label is fine
    labels = np.array([[1.0, 0.0, np.nan], [1.0, 1.0, 0.0]])
    # pairs: pos {0.9, 0.8, 0.7} vs neg {0.1, 0.6}: all 6 ordered right
    assert step_auroc(scores, labels) == pytest.approx(1.0)
    assert step_accuracy(scores, labels) == pytest.approx(4 / 5)  # 0.6 -> 1 but label 0


def test_step_auroc_ties_count_one_half():
    # pos {0.5, 0.8} vs neg {0.5, 0.2}: (0.5, 0.5) 1/2, (0.5, 0.2) 1, (0.8, *) 2 -> 3.5 / 4
    assert step_auroc([0.5, 0.5, 0.2, 0.8], [1, 0, 0, 1]) == pytest.approx(0.875)


@PROPERTY_SETTINGS
@given(pairs=st.lists(st.tuples(st.one_of(grid_scores, st.floats(-5, 5)), label_values), min_size=2, max_size=40))
def test_step_auroc_matches_slow_pairwise_reference(pairs):
    scores, labels = zip(*pairs, strict=True)
    is_pos = [y >= 0.5 for y in labels if not math.isnan(y)]
    assume(any(is_pos) and not all(is_pos))
    assert step_auroc(list(scores), list(labels)) == pytest.approx(_slow_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("transform", [lambda p: 100 * p, lambda p: p - 10, np.log], ids=["times-100", "minus-10", "log"])
def test_step_auroc_monotone_transform_of_scores_keeps_value(transform):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200).astype(float)
    scores = np.clip(0.3 * labels + 0.7 * rng.random(200), 1e-3, 1.0)
    assert step_auroc(transform(scores), labels) == pytest.approx(step_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize(
    "labels", [[1.0, 1.0, 0.9], [0.0, 0.2, NAN], [NAN, NAN, NAN]], ids=["all-positive", "all-negative", "unlabelled"]
)
def test_step_auroc_one_class_warns_and_returns_nan(labels):
    with pytest.warns(UndefinedMetricWarning, match="step_auroc is undefined"):
        assert math.isnan(step_auroc([0.1, 0.5, 0.9], labels))


def test_step_accuracy_no_labelled_step_warns_and_returns_nan():
    with pytest.warns(UndefinedMetricWarning, match="every label is NaN"):
        assert math.isnan(step_accuracy([0.1, 0.9], [NAN, NAN]))


STEP_ERRORS = {
    "empty": (step_accuracy, [], [], "scores is empty"),
    "shape-mismatch": (step_auroc, [0.1, 0.2], [1.0], "labels.shape"),
    "nan-score-at-labelled-step": (step_auroc, [0.1, NAN], [1.0, 0.0], "NaN at labelled steps"),
    "label-out-of-range": (step_accuracy, [0.1, 0.2], [1.0, 2.0], "labels hold \\[2.0\\]"),
    "score-above-one": (reliability_bins, [0.1, 1.2], [1.0, 0.0], "probabilities"),
}


@pytest.mark.parametrize("metric,scores,labels,match", STEP_ERRORS.values(), ids=STEP_ERRORS.keys())
def test_step_metrics_bad_input_raise_value_error(metric, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        metric(scores, labels)


CAL_SCORES = [0.05, 0.15, 0.12, 0.95, 1.0, 0.55]
CAL_LABELS = [0, 1, 0, 1, 1, 0]


def test_reliability_bins_hand_case_fills_expected_bins():
    bins = reliability_bins(CAL_SCORES, CAL_LABELS, n_bins=10)
    # bin 0: {0.05: 0}; bin 1: {0.15: 1, 0.12: 0}; bin 5: {0.55: 0}; bin 9: {0.95: 1, 1.0: 1} (last bin closed)
    assert bins.count.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 2]
    filled = bins.count > 0
    np.testing.assert_allclose(bins.confidence[filled], [0.05, 0.135, 0.55, 0.975])
    np.testing.assert_allclose(bins.accuracy[filled], [0.0, 0.5, 0.0, 1.0])
    assert np.isnan(bins.confidence[~filled]).all() and np.isnan(bins.accuracy[~filled]).all()
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 11))


def test_expected_calibration_error_hand_case_matches_weighted_gaps():
    # (1 * |0 - 0.05| + 2 * |0.5 - 0.135| + 1 * |0 - 0.55| + 2 * |1 - 0.975|) / 6 = 1.38 / 6 = 0.23
    assert expected_calibration_error(CAL_SCORES, CAL_LABELS) == pytest.approx(0.23)


def test_expected_calibration_error_calibrated_scores_give_zero():
    # bin 2: four steps at 0.25, one correct; bin 9: two at 1.0, both correct
    scores, labels = [0.25] * 4 + [1.0, 1.0], [1, 0, 0, 0, 1, 1]
    assert expected_calibration_error(scores, labels) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_bins", [0, 2.5, True], ids=["zero", "float", "bool"])
def test_reliability_bins_bad_n_bins_raises_value_error(n_bins):
    with pytest.raises(ValueError, match="n_bins="):
        reliability_bins([0.1], [1.0], n_bins=n_bins)


FIRST_ERROR_CASES = {
    "second-step": ([0.9, 0.3, 0.1], 0.5, 1),
    "no-error": ([0.9, 0.8], 0.5, -1),
    "first-step": ([0.2], 0.5, 0),
    "score-equal-to-threshold-passes": ([0.5, 0.49], 0.5, 1),
    "high-threshold": ([0.9, 0.8], 0.85, 1),
}


@pytest.mark.parametrize("scores,threshold,expected", FIRST_ERROR_CASES.values(), ids=FIRST_ERROR_CASES.keys())
def test_first_error_index_hand_cases(scores, threshold, expected):
    assert first_error_index(scores, threshold) == expected
    assert first_error_index(torch.tensor(scores), threshold) == expected


def test_first_error_f1_hand_case_matches_harmonic_mean():
    result = first_error_f1(pred=[0, -1, 2, -1, 1], true=[0, 1, 2, -1, -1])
    # erroneous (true != -1): right, wrong, right -> 2/3; correct (true == -1): right, wrong -> 1/2
    # f1 = 2 * 2/3 * 1/2 / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert (result.n_error, result.n_correct) == (3, 2)
    assert result.error_accuracy == pytest.approx(2 / 3)
    assert result.correct_accuracy == pytest.approx(1 / 2)
    assert result.f1 == pytest.approx(4 / 7)


def test_first_error_f1_both_parts_zero_gives_zero_f1():
    assert first_error_f1([-1, 0], [1, -1]).f1 == 0.0


@pytest.mark.parametrize(
    "true,undefined_part", [([-1, -1], "error_accuracy"), ([0, 2], "correct_accuracy")], ids=["no-errors", "no-correct"]
)
def test_first_error_f1_missing_subset_warns_and_returns_nan(true, undefined_part):
    with pytest.warns(UndefinedMetricWarning, match=f"{undefined_part} and f1 are undefined"):
        result = first_error_f1([-1, 0], true)
    assert math.isnan(getattr(result, undefined_part)) and math.isnan(result.f1)


@pytest.mark.parametrize(
    "pred,true,match",
    [([0], [0, 1], "one prediction per sample"), ([-2], [0], "-1 for no error"), ([0.5], [0], "whole step indices"),
     ([], [], "pred is empty")],
    ids=["length-mismatch", "below-minus-one", "fractional", "empty"],
)
def test_first_error_f1_bad_input_raises_value_error(pred, true, match):
    with pytest.raises(ValueError, match=match):
        first_error_f1(pred, true)


def test_first_error_f1_large_integer_indices_are_compared_exactly():
    # float64 rounds 2**62 + 1 to 2**62, so a float round trip counted these two as equal
    with pytest.warns(UndefinedMetricWarning):
        result = first_error_f1(np.array([2**62 + 1, 3]), np.array([2**62, 3]))
    assert result.error_accuracy == 0.5  # 1 of 2 right: only the 3


@pytest.mark.parametrize("pred", [[2**63], np.array([2**63], dtype=np.uint64), [2**70]], ids=["list", "uint64", "huge"])
def test_first_error_f1_index_beyond_int64_raises_naming_it(pred):
    with pytest.raises(ValueError, match=r"pred holds \d+, beyond int64"):
        first_error_f1(pred, [1])


@pytest.mark.parametrize("pred,true,name", [([[1, 2]], [1, 2], "pred"), ([1, 2], np.array([[1], [2]]), "true"),
                                            (np.float64(1.0), [1], "pred")], ids=["2d-pred", "2d-true", "0d-pred"])
def test_first_error_f1_indices_that_are_not_1d_raise_naming_the_argument(pred, true, name):
    with pytest.raises(ValueError, match=rf"{name} has shape .*; pass one step index per solution \(1-D\)"):
        first_error_f1(pred, true)


def test_threshold_sweep_row_that_first_error_index_refuses_raises_naming_it():
    row = np.array([[0.9], [0.2]])  # shape (2, 1): first_error_index refuses it, so must the sweep
    with pytest.raises(ValueError, match="step_scores has shape"):
        first_error_index(row)
    with pytest.raises(ValueError, match=r"step_scores_list\[1\] has shape \(2, 1\); pass each solution's 1-D"):
        threshold_sweep([[0.9, 0.2], row], [1, 1], [0.5])


SWEEP_SCORES = [[0.9, 0.4, 0.8], [0.95, 0.7], [0.3, 0.9], [0.6, 0.85, 0.9]]
SWEEP_TRUE = [1, -1, 0, -1]


def test_threshold_sweep_matches_loop_over_first_error_index():
    thresholds = np.linspace(0.0, 1.0, 21)
    for th, result in threshold_sweep(SWEEP_SCORES, SWEEP_TRUE, thresholds):
        pred = [first_error_index(s, th) for s in SWEEP_SCORES]
        assert result == first_error_f1(pred, SWEEP_TRUE)


def test_best_threshold_hand_case_picks_earliest_best():
    # 0.2: preds [-1, -1, -1, -1] -> err 0/2, ok 2/2 -> f1 0
    # 0.5: preds [1, -1, 0, -1] -> all right -> f1 1;  0.65: preds [1, -1, 0, 0] -> ok 1/2 -> f1 2/3
    # 0.35: preds [-1, -1, 0, -1] -> err 1/2, ok 1 -> f1 2/3;  0.55 also gives f1 1 but comes later
    threshold, result = best_threshold(SWEEP_SCORES, SWEEP_TRUE, [0.2, 0.35, 0.5, 0.55, 0.65])
    assert threshold == 0.5 and result.f1 == pytest.approx(1.0)


def test_best_threshold_no_correct_samples_raises_value_error():
    with pytest.raises(ValueError, match="undefined at every threshold"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        best_threshold([[0.1], [0.2]], [0, 0], [0.5])


def test_threshold_sweep_true_index_past_last_step_raises_value_error():
    with pytest.raises(ValueError, match="past its 2 steps"):
        threshold_sweep([[0.9, 0.9]], [2], [0.5])


def test_detection_rate_by_kind_hand_case_groups_erroneous_samples():
    scores = [[0.9, 0.2], [0.1, 0.9], [0.8, 0.9], [0.9, 0.9, 0.3], [0.4, 0.9]]
    true = [1, 1, -1, 2, 0]
    kinds = ["calc", "calc", None, "logic", "logic"]
    # calc: found at 1 (right), found at 0 (wrong) -> 1/2; logic: found at 2 (right), found at 0 (right) -> 2/2
    assert detection_rate_by_kind(scores, true, kinds) == {"calc": (0.5, 2), "logic": (1.0, 2)}


def test_detection_rate_by_kind_no_erroneous_sample_warns_and_returns_empty():
    with pytest.warns(UndefinedMetricWarning, match="no sample has an error"):
        assert detection_rate_by_kind([[0.9]], [-1], [None]) == {}


def _random_candidates(n_problems: int, m: int, seed: int = 0):
    """Answers 0..3 with gold 0, and PRM-like scores that lean towards correct candidates."""
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, 4, size=(n_problems, m))
    is_correct = answers == 0
    scores = 0.6 * rng.random((n_problems, m)) + 0.4 * is_correct
    return answers, is_correct, scores


HAND_ANSWERS = np.array([[1, 2, 2, 3], [5, 5, 7, 5]])
HAND_CORRECT = HAND_ANSWERS == np.array([[1], [7]])  # gold answers 1 and 7
HAND_SCORES = np.array([[0.9, 0.2, 0.4, 0.1], [0.3, 0.3, 0.5, 0.3]])
# n=2 groups: p0 [1, 2] / [2, 3], p1 [5, 5] / [7, 5]; every method gets [1, 2]->1, [2, 3]->2, [5, 5]->5, [7, 5]->7
# n=4: best_of_n 0.9 -> 1 right, 0.5 -> 7 right; majority 2 and 5 wrong;
#      weighted p0 1: 0.9 > 2: 0.6 right, p1 5: 0.9 > 7: 0.5 wrong; oracle both right
HAND_CURVES = {
    "best_of_n": [0.25, 0.5, 1.0],
    "majority": [0.25, 0.5, 0.0],
    "weighted": [0.25, 0.5, 0.5],
    "oracle": [0.25, 0.5, 1.0],
}


@pytest.mark.parametrize("method,expected", HAND_CURVES.items(), ids=HAND_CURVES.keys())
def test_best_of_n_curve_two_problem_hand_case(method, expected):
    points = best_of_n_curve(HAND_ANSWERS, HAND_CORRECT, HAND_SCORES, method, n_bootstrap=200)
    assert [p.n for p in points] == [1, 2, 4] and [p.n_groups for p in points] == [4, 2, 1]
    assert [p.accuracy for p in points] == pytest.approx(expected)


def test_best_of_n_curve_oracle_bounds_every_method_at_every_n():
    answers, is_correct, scores = _random_candidates(30, 16)
    oracle = best_of_n_curve(answers, is_correct, scores, "oracle", n_bootstrap=10)
    for method in ("best_of_n", "majority", "weighted"):
        curve = best_of_n_curve(answers, is_correct, scores, method, n_bootstrap=10)
        assert all(o.accuracy >= p.accuracy for o, p in zip(oracle, curve, strict=True)), method


@pytest.mark.parametrize("method", list(HAND_CURVES), ids=list(HAND_CURVES))
def test_best_of_n_curve_single_candidate_equals_mean_correctness(method):
    answers, is_correct, scores = _random_candidates(25, 8, seed=1)
    (point,) = best_of_n_curve(answers, is_correct, scores, method, ns=[1], n_bootstrap=10)
    assert point.accuracy == pytest.approx(is_correct.mean())


def test_best_of_n_curve_ci_contains_accuracy_and_narrows_with_more_problems():
    widths = []
    for n_problems in (20, 400):
        answers, is_correct, scores = _random_candidates(n_problems, 8, seed=2)
        for p in best_of_n_curve(answers, is_correct, scores, "weighted"):
            assert p.ci_low - 1e-12 <= p.accuracy <= p.ci_high + 1e-12
        widths.append(np.mean([p.ci_high - p.ci_low for p in best_of_n_curve(answers, is_correct, scores, "weighted")]))
    assert widths[1] < 0.5 * widths[0]  # sqrt(20 / 400) ~ 0.22, loose


def test_best_of_n_curve_same_seed_same_result_other_seed_other_ci():
    answers, is_correct, scores = _random_candidates(40, 8, seed=3)
    first, again, other = (best_of_n_curve(answers, is_correct, scores, "majority", seed=s) for s in (7, 7, 8))
    assert first == again
    assert [p.accuracy for p in first] == [p.accuracy for p in other]
    assert [(p.ci_low, p.ci_high) for p in first] != [(p.ci_low, p.ci_high) for p in other]


def test_best_of_n_curve_default_ns_end_at_m_when_m_is_not_a_power_of_two():
    answers, is_correct, scores = _random_candidates(3, 6)
    assert [p.n for p in best_of_n_curve(answers, is_correct, scores, "oracle", n_bootstrap=5)] == [1, 2, 4, 6]


def test_best_of_n_curve_accepts_torch_tensors():
    points = best_of_n_curve(torch.tensor(HAND_ANSWERS), torch.tensor(HAND_CORRECT), torch.tensor(HAND_SCORES),
                             "weighted", n_bootstrap=10)
    assert [p.accuracy for p in points] == pytest.approx(HAND_CURVES["weighted"])


def test_best_of_n_curve_inconsistent_correctness_warns():
    with pytest.warns(UserWarning, match="both correct and incorrect"):
        best_of_n_curve(np.array([[1, 1]]), np.array([[True, False]]), None, "majority", n_bootstrap=5)


CURVE_ERRORS = {
    "n-larger-than-m": (dict(ns=[128]), "n=128 is larger than the 64 candidates per problem"),
    "unknown-method": (dict(method="median"), "method='median'"),
    "missing-scores": (dict(scores=None), "scores is None"),
    "zero-n": (dict(ns=[0]), "n in ns=0 must be an int in \\[1, inf\\)"),
    "zero-bootstrap": (dict(n_bootstrap=0), "n_bootstrap=0"),
    "float-answers": (dict(answers=np.zeros((2, 64))), "pass \\(P, M\\) integers"),
    "int-correctness": (dict(is_correct=np.ones((2, 64), dtype=int)), "must be bool"),
    "empty": (dict(answers=np.zeros((0, 64), dtype=int)), "answers is empty"),
}


@pytest.mark.parametrize("overrides,match", CURVE_ERRORS.values(), ids=CURVE_ERRORS.keys())
def test_best_of_n_curve_bad_input_raises_value_error(overrides, match):
    answers, is_correct, scores = _random_candidates(2, 64)
    kwargs = dict(answers=answers, is_correct=is_correct, scores=scores, method="weighted") | overrides
    with pytest.raises(ValueError, match=match):
        best_of_n_curve(**kwargs)


def test_bootstrap_ci_brackets_the_mean_and_collapses_for_constant_values():
    from prm_core.metrics import bootstrap_ci

    low, high = bootstrap_ci(np.array([0.0, 1.0] * 20))
    assert low < 0.5 < high
    assert bootstrap_ci(np.ones(7)) == (1.0, 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_bootstrap_ci_non_finite_value_raises_naming_it(bad):
    from prm_core.metrics import bootstrap_ci

    # bootstrap_ci([1.0, nan]) returned (nan, nan) and [1.0, inf] returned (1.0, nan), silently
    with pytest.raises(ValueError, match=r"per_problem holds \[-?(nan|inf)\] at positions \[\[1\]\]"):
        bootstrap_ci([1.0, bad])


@pytest.mark.parametrize("returned", ["0.5", True, np.bool_(False)], ids=["str", "bool", "numpy-bool"])
def test_bootstrap_statistic_ci_statistic_returning_no_real_number_raises_naming_it(returned):
    from prm_core.metrics import bootstrap_statistic_ci

    with pytest.raises(ValueError, match=rf"statistic returned {re.escape(repr(returned))} \(\w+\); it must return "
                                         "a real number"):
        bootstrap_statistic_ci(lambda idx: returned, [0, 1], 10)


@pytest.mark.parametrize("returned", [0.5, np.float32(0.5), np.array(0.5), torch.tensor(0.5, dtype=torch.bfloat16)],
                         ids=["float", "numpy-float32", "numpy-0d", "tensor-bf16"])
def test_bootstrap_statistic_ci_statistic_returning_a_real_number_is_used(returned):
    from prm_core.metrics import bootstrap_statistic_ci

    assert bootstrap_statistic_ci(lambda idx: returned, [0, 1], 10) == (0.5, 0.5)


def test_bootstrap_ci_empty_raises():
    from prm_core.metrics import bootstrap_ci

    with pytest.raises(ValueError, match="per_problem"):
        bootstrap_ci([])


@given(values=st.lists(st.floats(0, 1), min_size=1, max_size=30), seed=st.integers(0, 100))
@PROPERTY_SETTINGS
def test_bootstrap_statistic_ci_one_item_per_group_equals_bootstrap_ci_of_the_mean(values, seed):
    from prm_core.metrics import bootstrap_ci, bootstrap_statistic_ci

    values = np.array(values)
    # with one item per group, resampling groups draws the same indices bootstrap_ci draws
    ours = bootstrap_statistic_ci(lambda idx: values[idx].mean(), np.arange(values.size), 200, seed)
    assert ours == pytest.approx(bootstrap_ci(values, 200, seed))


def test_bootstrap_statistic_ci_resamples_whole_groups():
    from prm_core.metrics import bootstrap_statistic_ci

    # groups 0 and 1 each hold a 0 and a 1: any resample of whole groups has mean exactly 0.5,
    # while resampling items one by one would spread the mean.
    values = np.array([0.0, 1.0, 1.0, 0.0])
    seen = []
    low, high = bootstrap_statistic_ci(lambda idx: seen.append(len(idx)) or values[idx].mean(), [0, 0, 1, 1], 50)
    assert (low, high) == (0.5, 0.5)
    assert set(seen) == {4}


def test_bootstrap_statistic_ci_skips_undefined_resamples_and_is_nan_when_all_are():
    from prm_core.metrics import bootstrap_statistic_ci

    assert all(math.isnan(x) for x in bootstrap_statistic_ci(lambda idx: float("nan"), [0, 1, 2], 20))
    values = np.array([1.0, 0.0, 1.0])
    # nan whenever group 1 is missing from the resample: the rest still bracket the values seen
    low, high = bootstrap_statistic_ci(lambda idx: values[idx].mean() if 1 in idx else float("nan"), [0, 1, 2], 200)
    assert 0.0 <= low <= high <= 1.0


@pytest.mark.parametrize("groups", [[], [[0, 1]]], ids=["empty", "two-dimensional"])
def test_bootstrap_statistic_ci_bad_groups_raise(groups):
    from prm_core.metrics import bootstrap_statistic_ci

    with pytest.raises(ValueError, match="groups has shape"):
        bootstrap_statistic_ci(lambda idx: 0.0, groups)


@pytest.mark.parametrize("method", ["majority", "best_of_n", "weighted", "oracle"])
def test_per_problem_accuracy_averages_to_the_curve(method):
    from prm_core.metrics import per_problem_accuracy

    answers, is_correct, scores = _random_candidates(30, 16)
    per_problem = per_problem_accuracy(answers, is_correct, scores, method, ns=[1, 4, 16])
    curve = best_of_n_curve(answers, is_correct, scores, method, ns=[1, 4, 16])
    assert [p.accuracy for p in curve] == pytest.approx([per_problem[n].mean() for n in (1, 4, 16)])
    assert all(per_problem[n].shape == (30,) for n in (1, 4, 16))


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    from prm_core.metrics import paired_difference

    values = np.random.default_rng(0).random(40)
    assert paired_difference(values, values) == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_paired_difference_separates_a_small_consistent_gain_that_marginal_intervals_hide():
    from prm_core.metrics import bootstrap_ci, paired_difference

    rng = np.random.default_rng(1)
    b = rng.random(100)  # problems of very different difficulty
    a = np.clip(b + 0.05, 0, 1)  # a is right a little more often on every problem
    low_a, _ = bootstrap_ci(a)
    _, high_b = bootstrap_ci(b)
    assert low_a < high_b  # the two intervals overlap
    assert paired_difference(a, b)["ci_low"] > 0  # the paired interval does not include 0


def test_paired_difference_different_problem_counts_raise():
    from prm_core.metrics import paired_difference

    with pytest.raises(ValueError, match="same problems"):
        paired_difference([1.0, 0.0], [1.0])


@pytest.mark.parametrize("a,b,match", [([NAN, 1.0], [0.0, 1.0], "finite"), ([float("inf"), 1.0], [0.0, 1.0], "finite"),
                                       ([], [], "at least one")], ids=["nan", "inf", "empty"])
def test_paired_difference_bad_values_raise(a, b, match):
    from prm_core.metrics import paired_difference

    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)


def test_bootstrap_statistic_ci_statistic_returning_an_array_raises():
    from prm_core.metrics import bootstrap_statistic_ci

    x = np.array([0.1, 0.2, 0.8, 0.9])
    with pytest.raises(ValueError, match="one number per resample"):
        bootstrap_statistic_ci(lambda idx: x[idx], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="groups holds nan"):
        bootstrap_statistic_ci(lambda idx: 0.0, [NAN, NAN])


def test_per_problem_accuracy_single_int_ns_raises_with_the_fix():
    from prm_core.metrics import per_problem_accuracy

    answers, is_correct, scores = _random_candidates(3, 4)
    with pytest.raises(ValueError, match=r"ns=\[2\]"):
        per_problem_accuracy(answers, is_correct, scores, "best_of_n", ns=2)


# ---------------------------------------------------------------- issue 13: no silent wrong number
def test_first_error_index_nan_threshold_raises():
    # issue 13: every comparison with NaN is False, so no step was "below" it and the answer was -1
    with pytest.raises(ValueError, match="threshold=nan"):
        first_error_index([0.9, 0.1], threshold=float("nan"))


def test_first_error_f1_bool_indices_raise():
    # issue 13: [False, True] read as step indices [0, 1] and gave f1 = 0.0
    with pytest.raises(ValueError, match="pred must hold real numbers, not bools"):
        first_error_f1([False, True], [-1, 2])


def test_first_error_f1_infinite_index_raises_instead_of_wrapping_to_int64_min():
    # inf passed the whole-number check (inf == round(inf)) and became -2**63, a silent wrong prediction
    with pytest.raises(ValueError, match=r"pred\[0\]=inf is not one"):
        first_error_f1([float("inf"), -1], [1, -1])


@pytest.mark.parametrize("threshold", [True, "0.5", float("inf")], ids=["bool", "str", "inf"])
def test_first_error_functions_refuse_a_threshold_that_is_not_a_finite_number(threshold):
    for call in (lambda: first_error_index([0.9, 0.1], threshold),
                 lambda: detection_rate_by_kind([[0.9, 0.1]], [1], ["slip"], threshold),
                 lambda: threshold_sweep([[0.9, 0.1]], [1], [0.5, threshold]),
                 lambda: step_accuracy([0.9, 0.1], [1.0, 0.0], threshold)):
        with pytest.raises(ValueError, match="threshold"):
            call()


def test_step_metrics_refuse_bool_scores_but_read_bool_labels_as_correct():
    with pytest.raises(ValueError, match="scores must hold real numbers"):
        step_auroc(np.array([True, False]), [1.0, 0.0])
    assert step_auroc([0.9, 0.2, 0.6], np.array([True, False, True])) == 1.0  # True: a correct step


step_rows = st.lists(st.lists(st.one_of(grid_scores, st.sampled_from([-math.inf, math.inf, -2.0, 3.0])),
                              min_size=1, max_size=6), min_size=1, max_size=8)
thresholds = st.one_of(grid_scores, st.floats(-3.0, 3.0, allow_nan=False))


@PROPERTY_SETTINGS
@given(rows=step_rows, threshold=thresholds)
def test_first_error_index_agrees_with_the_batched_first_errors_of_threshold_sweep(rows, threshold):
    from prm_core.metrics_first_error import _first_errors, _padded_scores

    true = np.full(len(rows), -1)
    batched = _first_errors(_padded_scores(rows, true), threshold).tolist()
    assert batched == [first_error_index(r, threshold) for r in rows]


@PROPERTY_SETTINGS
@given(rows=step_rows, threshold=thresholds, data=st.data())
def test_threshold_sweep_and_detection_rate_agree_with_a_loop_over_first_error_index(rows, threshold, data):
    true = [data.draw(st.integers(-1, len(r) - 1)) for r in rows]
    kinds = [data.draw(st.sampled_from(["slip", "trap"])) for _ in rows]
    pred = [first_error_index(r, threshold) for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ((th, swept),) = threshold_sweep(rows, true, [threshold])
        assert th == threshold and repr(swept) == repr(first_error_f1(pred, true))  # repr: nan == nan
        found: dict = {}
        for p, t, k in zip(pred, true, kinds, strict=True):
            if t != -1:
                found.setdefault(k, []).append(p == t)
        assert detection_rate_by_kind(rows, true, kinds, threshold) == {
            k: (float(np.mean(hits)), len(hits)) for k, hits in found.items()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@PROPERTY_SETTINGS
@given(pairs=st.lists(st.tuples(st.one_of(grid_scores, st.floats(1e-3, 1.0)), st.sampled_from([0.0, 1.0, NAN])),
                     min_size=2, max_size=30))  # >= 1e-3: the rescalings below keep every gap in float64
def test_step_auroc_and_accuracy_of_a_low_precision_tensor_are_those_of_its_values(dtype, pairs):
    scores = torch.tensor([s for s, _ in pairs]).to(dtype)
    labels = np.array([y for _, y in pairs])
    held = scores.double().numpy()  # what the tensor holds; the metric must not round it further
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        assert repr(step_auroc(scores, labels)) == repr(step_auroc(held, labels))
        # AUROC is rank-based: a monotone rescaling of the same values leaves it unchanged
        assert repr(step_auroc(scores, labels)) == repr(step_auroc(100 * held - 10, labels))
        assert repr(step_auroc(scores, labels)) == repr(step_auroc(np.exp(held), labels))
        assert repr(step_accuracy(scores, labels)) == repr(step_accuracy(held, labels))


def _loop_per_problem(answers, is_correct, scores, method, n):
    """Slow reference: each problem's disjoint groups of n, one select_many call per group."""
    from prm_core.voting import select_many

    out = []
    for p in range(answers.shape[0]):
        right = []
        for g in range(answers.shape[1] // n):
            cols = slice(g * n, (g + 1) * n)
            if method == "oracle":
                right.append(bool(is_correct[p, cols].any()))
                continue
            group_scores = None if scores is None else scores[p : p + 1, cols]
            (chosen,) = select_many(answers[p : p + 1, cols], group_scores, method)
            right.append(bool(is_correct[p][answers[p] == chosen].any()))
        out.append(np.mean(right))
    return np.array(out)


@PROPERTY_SETTINGS
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 9)), data=st.data())
def test_per_problem_accuracy_and_curve_agree_with_a_loop_over_select_many(shape, data):
    from prm_core.metrics import per_problem_accuracy

    n_problems, m = shape
    answers = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n_problems * m, max_size=n_problems * m)))
    answers = answers.reshape(shape)
    is_correct = answers == 0
    scores = np.array(data.draw(st.lists(st.one_of(grid_scores, st.floats(-5, 5)), min_size=answers.size,
                                         max_size=answers.size))).reshape(shape)
    ns = sorted(set(data.draw(st.lists(st.integers(1, m), min_size=1, max_size=3))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # negative weighted scores warn
        for method in ("best_of_n", "majority", "weighted", "oracle"):
            per_problem = per_problem_accuracy(answers, is_correct, scores, method, ns)
            curve = best_of_n_curve(answers, is_correct, scores, method, ns, n_bootstrap=20, seed=3)
            for n, point in zip(ns, curve, strict=True):
                expected = _loop_per_problem(answers, is_correct, scores, method, n)
                np.testing.assert_array_equal(per_problem[n], expected)
                assert point.accuracy == pytest.approx(expected.mean(), abs=1e-12)
                # the docstring's promise: the curve's interval is bootstrap_ci's, same resamples and seed
                assert (point.ci_low, point.ci_high) == bootstrap_ci(per_problem[n], 20, 3)


BAD_BOOTSTRAP = {
    "bool-values": (lambda: bootstrap_ci([True, False]), "per_problem"),
    "float-seed": (lambda: bootstrap_ci([1.0, 0.0], 10, 0.5), "seed"),
    "negative-seed": (lambda: best_of_n_curve(np.array([[1, 2]]), np.array([[True, False]]), None, "majority",
                                              seed=-1), "seed"),
    "bool-n-bootstrap": (lambda: bootstrap_ci([1.0], True), "n_bootstrap"),
}


@pytest.mark.parametrize("call,name", BAD_BOOTSTRAP.values(), ids=BAD_BOOTSTRAP.keys())
def test_bootstrap_intervals_refuse_bools_and_bad_seeds_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("dtype", [None, np.float64], ids=["any-dtype", "float64"])
def test_metric_inputs_widen_a_bf16_tensor_as_check_real_array_does(dtype):
    from prm_core.checks import check_real_array
    from prm_core.metrics_base import _as_array

    tensor = torch.tensor([0.001, 0.3], dtype=torch.bfloat16)  # one widening (checks.tensor_to_numpy) for both
    np.testing.assert_array_equal(_as_array(tensor, "scores", dtype=dtype), check_real_array(tensor, "scores"))
