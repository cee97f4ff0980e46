import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prm_core.voting import best_of_n, majority_vote, select_many, weighted_vote

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None)
# Few distinct values so groups repeat answers; the extremes check that codes never overflow.
answer_values = st.sampled_from([-(2**62), -3, 0, 1, 7, 2**40])
grid_scores = st.integers(0, 16).map(lambda k: k / 16)  # coarse grid: many exact ties
any_scores = st.one_of(grid_scores, st.floats(0.0, 1.0))


@st.composite
def groups(draw, max_n: int = 20):
    """(answers (G, N) int64, scores (G, N) float64) for G, N >= 1."""
    g, n = draw(st.integers(1, 5)), draw(st.integers(1, max_n))
    answers = np.array(draw(st.lists(answer_values, min_size=g * n, max_size=g * n)), dtype=np.int64)
    scores = np.array(draw(st.lists(any_scores, min_size=g * n, max_size=g * n)), dtype=np.float64)
    return answers.reshape(g, n), scores.reshape(g, n)


BEST_OF_N_CASES = {
    "single": ([0.3], 0),
    "clear-max": ([0.2, 0.1, 0.7], 2),
    "tie-goes-to-lowest-index": ([0.2, 0.9, 0.9, 0.1], 1),
    "negative-scores": ([-3.0, -1.0, -2.0], 1),
}


@pytest.mark.parametrize("scores,expected", BEST_OF_N_CASES.values(), ids=BEST_OF_N_CASES.keys())
def test_best_of_n_hand_cases_pick_expected_index(scores, expected):
    assert best_of_n(scores) == expected


MAJORITY_CASES = {
    "single": ([4], 4),
    "clear-winner": ([1, 2, 2, 3], 2),
    "tie-goes-to-first-occurrence": ([3, 5, 5, 3, 7], 3),  # 3 and 5 both twice; 3 appears first
    "strings": (["b", "a", "a"], "a"),
}


@pytest.mark.parametrize("answers,expected", MAJORITY_CASES.values(), ids=MAJORITY_CASES.keys())
def test_majority_vote_hand_cases_pick_expected_answer(answers, expected):
    assert majority_vote(answers) == expected


WEIGHTED_CASES = {
    "one-strong-beats-two-weak": ([3, 5, 5], [0.9, 0.3, 0.4], 3),  # 3: 0.9 > 5: 0.3 + 0.4 = 0.7
    "two-beat-one": ([3, 5, 5], [0.6, 0.3, 0.4], 5),  # 5: 0.7 > 3: 0.6
    "tie-goes-to-first-occurrence": ([2, 1, 1], [0.5, 0.25, 0.25], 2),  # 2: 0.5 == 1: 0.25 + 0.25
    "all-zero-scores": ([9, 8, 8], [0.0, 0.0, 0.0], 9),
}


@pytest.mark.parametrize("answers,scores,expected", WEIGHTED_CASES.values(), ids=WEIGHTED_CASES.keys())
def test_weighted_vote_hand_cases_pick_expected_answer(answers, scores, expected):
    assert weighted_vote(answers, scores) == expected


def test_weighted_vote_negative_scores_warn_about_rare_answers():
    with pytest.warns(UserWarning, match="negative scores"):
        weighted_vote([1, 2], [-0.5, 0.2])


@PROPERTY_SETTINGS
@given(answers=st.lists(st.integers(-3, 3), min_size=1, max_size=20), score=st.floats(0.01, 10.0))
def test_weighted_vote_equal_positive_scores_equals_majority_vote(answers, score):
    assert weighted_vote(answers, [score] * len(answers)) == majority_vote(answers)


@pytest.mark.parametrize(
    "rescale", [lambda x: 100 * x - 10, lambda x: x**3, np.exp], ids=["affine", "cube", "exp"]
)
@PROPERTY_SETTINGS
@given(scores=st.lists(grid_scores, min_size=1, max_size=12))
def test_best_of_n_monotone_rescaling_keeps_pick(rescale, scores):
    assert best_of_n(rescale(np.array(scores))) == best_of_n(scores)


@PROPERTY_SETTINGS
@given(answers=st.lists(st.integers(0, 3), min_size=1, max_size=15), data=st.data())
def test_majority_vote_permuted_candidates_keep_unique_winner(answers, data):
    counts = sorted((answers.count(a) for a in set(answers)), reverse=True)
    assume(len(counts) == 1 or counts[0] > counts[1])  # with a tie, the first occurrence decides
    permuted = data.draw(st.permutations(answers))
    assert majority_vote(permuted) == majority_vote(answers)


@PROPERTY_SETTINGS
@given(batch=groups())
def test_select_many_matches_loop_over_scalar_functions(batch):
    answers, scores = batch
    expected = {
        "best_of_n": [row_answers[best_of_n(row_scores)] for row_answers, row_scores in zip(answers, scores, strict=True)],
        "majority": [majority_vote(row.tolist()) for row in answers],
        "weighted": [weighted_vote(a.tolist(), s) for a, s in zip(answers, scores, strict=True)],
    }
    for method, picks in expected.items():
        chosen = select_many(answers, scores, method)
        assert chosen.dtype == answers.dtype
        assert chosen.tolist() == [int(p) for p in picks], method


def test_select_many_hand_case_covers_ties_per_method():
    answers = np.array([[3, 5, 5, 3], [-1, 10**12, 10**12, -1]])
    scores = np.array([[0.2, 0.3, 0.3, 0.9], [0.5, 0.5, 0.25, 0.25]])
    # row 0: counts 3:2, 5:2 -> first is 3; sums 3: 1.1 > 5: 0.6; best score 0.9 at index 3 -> 3
    # row 1: counts tie -> -1; sums -1: 0.75 == 1e12: 0.75 -> first is -1; best 0.5 at index 0 -> -1
    assert select_many(answers, None, "majority").tolist() == [3, -1]
    assert select_many(answers, scores, "weighted").tolist() == [3, -1]
    assert select_many(answers, scores, "best_of_n").tolist() == [3, -1]


def test_select_many_negative_weighted_scores_never_pick_a_missing_answer():
    answers, scores = np.array([[4, 6, 6]]), np.array([[-0.5, -0.1, -0.1]])
    # sums 4: -0.5, 6: -0.2 -> 6; an empty slot (sum 0) must not win
    with pytest.warns(UserWarning, match="negative scores"):
        assert select_many(answers, scores, "weighted").tolist() == [6]


SCALAR_ERRORS = {
    "best-of-n-empty": (lambda: best_of_n([]), "empty"),
    "best-of-n-nan": (lambda: best_of_n([0.1, math.nan]), "NaN"),
    "best-of-n-2d": (lambda: best_of_n([[0.1, 0.2]]), "1-D"),
    "majority-empty": (lambda: majority_vote([]), "empty"),
    "weighted-length-mismatch": (lambda: weighted_vote([1, 2], [0.5]), "one score per answer"),
    "weighted-nan": (lambda: weighted_vote([1, 2], [0.5, math.nan]), "NaN"),
}


@pytest.mark.parametrize("call,match", SCALAR_ERRORS.values(), ids=SCALAR_ERRORS.keys())
def test_scalar_votes_bad_input_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


ANSWERS = np.array([[1, 2], [3, 3]])
SCORES = np.array([[0.1, 0.2], [0.3, 0.4]])
SELECT_ERRORS = {
    "empty-group": (np.zeros((2, 0), dtype=np.int64), SCORES, "majority", "non-empty"),
    "one-dim": (np.array([1, 2]), SCORES, "majority", "\\(G, N\\)"),
    "float-answers": (ANSWERS.astype(float), SCORES, "majority", "integers"),
    "shape-mismatch": (ANSWERS, SCORES[:, :1], "weighted", "scores.shape"),
    "nan-score": (ANSWERS, np.array([[0.1, np.nan], [0.3, 0.4]]), "best_of_n", "NaN"),
    "missing-scores": (ANSWERS, None, "weighted", "scores is None"),
    "oracle-is-not-here": (ANSWERS, SCORES, "oracle", "prm_core.metrics"),
}


@pytest.mark.parametrize("answers,scores,method,match", SELECT_ERRORS.values(), ids=SELECT_ERRORS.keys())
def test_select_many_bad_input_raises_value_error(answers, scores, method, match):
    with pytest.raises(ValueError, match=match):
        select_many(answers, scores, method)


# ---------------------------------------------------------------- issue 13: one rule for scores, and agreement
# Finite scores only, everywhere: a -inf and a +inf for one answer have no sum (inf + -inf is NaN),
# which is how weighted_vote and select_many came to disagree on the input below.
wide_scores = st.one_of(
    grid_scores,  # exact ties
    st.integers(-16, 16).map(lambda k: k / 4),  # negative scores (sum_logit), ties too
    st.sampled_from([1e300, -1e300, 1e-300, -1e-300, 5e-324, 1.7e308]),  # sums that overflow, subnormals
    st.floats(-1e6, 1e6, allow_nan=False),
)


@st.composite
def wide_groups(draw):
    """(answers (G, N) int64, scores (G, N) float64): up to 40 groups, any finite scores."""
    g, n = draw(st.integers(1, 40)), draw(st.integers(1, 8))
    answers = np.array(draw(st.lists(answer_values, min_size=g * n, max_size=g * n)), dtype=np.int64)
    scores = np.array(draw(st.lists(wide_scores, min_size=g * n, max_size=g * n)), dtype=np.float64)
    return answers.reshape(g, n), scores.reshape(g, n)


@PROPERTY_SETTINGS
@given(batch=wide_groups())
def test_best_of_n_agrees_with_select_many_on_any_finite_scores(batch):
    answers, scores = batch
    expected = [int(row_answers[best_of_n(row_scores)]) for row_answers, row_scores in zip(answers, scores, strict=True)]
    assert select_many(answers, scores, "best_of_n").tolist() == expected


@PROPERTY_SETTINGS
@given(batch=wide_groups())
def test_majority_vote_agrees_with_select_many_on_many_groups(batch):
    answers, _ = batch
    assert select_many(answers, None, "majority").tolist() == [int(majority_vote(row.tolist())) for row in answers]


@PROPERTY_SETTINGS
@given(batch=wide_groups())
def test_weighted_vote_agrees_with_select_many_on_any_finite_scores(batch):
    answers, scores = batch
    with warnings.catch_warnings(), np.errstate(over="ignore"):  # sums of 1e300s overflow to inf in both
        warnings.simplefilter("ignore", UserWarning)  # negative scores warn in both; the picks are compared here
        expected = [int(weighted_vote(a.tolist(), s)) for a, s in zip(answers, scores, strict=True)]
        assert select_many(answers, scores, "weighted").tolist() == expected


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@pytest.mark.parametrize("method", ["best_of_n", "weighted"])
@pytest.mark.parametrize("bad", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_scalar_and_batched_selection_both_refuse_a_non_finite_score_naming_its_position(method, bad):
    answers, scores = [1, 2, 2], [0.5, bad, 0.25]
    scalar = (lambda: best_of_n(scores)) if method == "best_of_n" else (lambda: weighted_vote(answers, scores))
    for call in (scalar, lambda: select_many(np.array([answers]), np.array([scores]), method)):
        with pytest.raises(ValueError, match=r"scores holds .* at positions \[\[(0, )?1\]\]"):
            call()


def test_weighted_vote_infinite_scores_raise_instead_of_disagreeing_with_select_many():
    # issue 13: weighted_vote gave 2 (1's total inf + -inf is NaN, which never wins) and select_many 1
    # (argmax returns the first NaN); neither answer means anything, so both refuse.
    with pytest.raises(ValueError, match="scores"):
        weighted_vote([1, 1, 2], [math.inf, -math.inf, 0.5])
    with pytest.raises(ValueError, match="scores"):
        select_many(np.array([[1, 1, 2]]), np.array([[math.inf, -math.inf, 0.5]]), "weighted")


BOOL_SCORES = {
    "best_of_n": lambda: best_of_n([False, True]),
    "weighted_vote": lambda: weighted_vote([1, 2], np.array([True, False])),
    "select_many": lambda: select_many(np.array([[1, 2]]), np.array([[True, False]]), "best_of_n"),
    "bool-tensor": lambda: best_of_n(torch.tensor([True, False])),
    "text": lambda: best_of_n(["0.9", "0.1"]),
}


@pytest.mark.parametrize("call", BOOL_SCORES.values(), ids=BOOL_SCORES.keys())
def test_selection_refuses_bools_and_text_as_scores(call):
    with pytest.raises(ValueError, match="scores must hold real numbers"):
        call()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64],
                         ids=["bf16", "fp16", "fp32", "fp64"])
@PROPERTY_SETTINGS
@given(batch=groups(max_n=8))
def test_selection_on_tensor_scores_equals_selection_on_their_float64_values(dtype, batch):
    answers, scores = batch
    tensor = torch.tensor(scores).to(dtype)  # (G, N) in low precision: ties may appear, values must not move
    values = tensor.double().numpy()
    for method in ("best_of_n", "weighted"):
        assert select_many(answers, tensor, method).tolist() == select_many(answers, values, method).tolist()
    assert best_of_n(tensor[0]) == best_of_n(values[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_selection_on_a_list_of_0d_tensors_equals_selection_on_their_values(dtype):
    # numpy cannot read a bf16 tensor in a list ("Got unsupported ScalarType BFloat16"); the checks widen each one
    scores = [torch.tensor(0.2, dtype=dtype), torch.tensor(0.3, dtype=dtype), torch.tensor(0.25, dtype=dtype)]
    assert best_of_n(scores) == 1
    assert weighted_vote([7, 8, 7], scores) == 7  # 7: 0.2 + 0.25 beats 8: 0.3
