import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.data import StepSample
from prm_core.experiments import CLEAN_POLICY
from prm_core.labeling import (
    label_agreement,
    monte_carlo_labels,
    outcome_labels,
    rollout_successes,
    with_labels,
)
from prm_core.tasks.arithmetic import make_problems, track_steps
from prm_core.tasks.arithmetic_policy import NoisyPolicy

# Completions that never err and never land on the true value by luck (the pretraining policy).
FLAWLESS = CLEAN_POLICY


@pytest.fixture(scope="module")
def problems():
    return make_problems(40, seed=3)


@pytest.fixture(scope="module")
def samples(problems):
    return NoisyPolicy().sample_many(problems, n_samples=3, seed=4)


def test_outcome_labels_give_every_step_the_outcome_and_keep_exact_labels():
    s = StepSample("q", ["a", "b", "c"], labels=[1.0, 0.0, 1.0], answer="7", meta={"is_correct_answer": False})
    out = outcome_labels(s)
    assert out.labels == (0.0, 0.0, 0.0)
    assert out.meta["exact_labels"] == [1.0, 0.0, 1.0] and out.meta["label_source"] == "outcome"


def test_outcome_labels_without_graded_outcome_raises():
    with pytest.raises(ValueError, match="is_correct_answer"):
        outcome_labels(StepSample("q", ["a"]))


@pytest.mark.parametrize("flag", ["False", None, float("nan")], ids=["text-false", "none", "nan"])
def test_outcome_labels_flag_that_is_not_a_bool_raises_instead_of_labelling_by_truthiness(flag):
    s = StepSample("q", ["a", "b"], labels=[1.0, 0.0], meta={"is_correct_answer": flag})
    with pytest.raises(ValueError, match=r"sample\.meta\['is_correct_answer'\]=.* must be True or False"):
        outcome_labels(s)


def test_rollout_last_row_is_the_samples_own_outcome(samples, problems):
    hits = rollout_successes(samples[:20], problems, NoisyPolicy(), n_rollouts=3, show_progress=False)
    for sample, h in zip(samples[:20], hits, strict=True):
        assert h.shape == (sample.n_steps, 3)
        assert (h[-1] == sample.meta["is_correct_answer"]).all()


def test_rollouts_repeat_for_equal_seeds_and_differ_for_other_seeds(samples, problems):
    def run(seed):
        return rollout_successes(samples[:30], problems, NoisyPolicy(), 4, seed=seed, show_progress=False)

    first, again, other = run(0), run(0), run(1)
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
    assert any((a != b).any() for a, b in zip(first, other, strict=True))


def test_flawless_completions_label_every_prefix_holding_the_true_value_right(samples, problems):
    # Monte Carlo labels ask "can this prefix still reach the answer?", not "is this step right?".
    # With completions that never err, every prefix that carries the true value forward does: all
    # on-track prefixes, and wrong ones that landed on it (the next test). The converse does not
    # hold: a wrong value can still reach the answer later, e.g. when ÷ floors it onto the true one.
    by_text = {p.text: p for p in problems}
    hits = rollout_successes(samples, problems, NoisyPolicy(FLAWLESS), n_rollouts=2, show_progress=False)
    for sample, labels in zip(samples, monte_carlo_labels(hits, 2, "hard"), strict=True):
        problem = by_text[sample.problem]
        for j, label in enumerate(labels):
            track = track_steps(problem, sample.steps[: j + 1])
            holds_truth = track.last_value == problem.values[track.next_op_index]
            if holds_truth or sample.labels[j] == 1.0:
                assert label == 1.0


def test_monte_carlo_calls_a_compensating_step_right_although_it_is_wrong(samples, problems):
    # A compensating step is written wrong but lands on the true value: every later completion can
    # reach the right answer, so rollouts label it right (the exact checker does not).
    rescued = [s for s in samples if "compensating" in s.meta["step_kinds"]]
    hits = rollout_successes(rescued, problems, NoisyPolicy(FLAWLESS), n_rollouts=1, show_progress=False)
    for sample, labels in zip(rescued, monte_carlo_labels(hits, 1, "hard"), strict=True):
        j = sample.meta["step_kinds"].index("compensating")
        assert sample.labels[j] == 0.0 and labels[j] == 1.0
    assert rescued


def test_hard_labels_call_more_wrong_steps_right_as_k_grows(samples, problems):
    # Any-success labels can only flip from 0 to 1 when rollouts are added (the first k are nested).
    hits = rollout_successes(samples, problems, NoisyPolicy(), n_rollouts=8, show_progress=False)
    exact = [s.labels for s in samples]
    missed = [label_agreement(monte_carlo_labels(hits, k, "hard"), exact).wrong_called_right for k in (1, 2, 4, 8)]
    assert missed == sorted(missed) and missed[-1] > missed[0]


def test_unknown_problem_text_raises(problems):
    stray = StepSample("A problem nobody generated.", ["1 + 1 = 2."], answer="2")
    with pytest.raises(ValueError, match=r"samples\[0\]\.problem"):
        rollout_successes([stray], problems, NoisyPolicy(), 2, show_progress=False)


@pytest.mark.parametrize("n_rollouts", [0, -1, 2.0, True], ids=["zero", "negative", "float", "bool"])
def test_rollout_count_below_one_or_not_int_raises(samples, problems, n_rollouts):
    with pytest.raises(ValueError, match="n_rollouts"):
        rollout_successes(samples[:1], problems, NoisyPolicy(), n_rollouts, show_progress=False)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=6), st.integers(1, 4))
def test_hard_label_is_one_exactly_when_soft_label_is_positive(rows, k):
    hits = [np.array(rows)]
    hard, soft = monte_carlo_labels(hits, k, "hard")[0], monte_carlo_labels(hits, k, "soft")[0]
    assert all(h in (0.0, 1.0) and 0.0 <= s <= h for h, s in zip(hard, soft, strict=True))
    assert all((h == 1.0) == (s > 0.0) for h, s in zip(hard, soft, strict=True))


@pytest.mark.parametrize(("k", "kind", "match"), [(0, "hard", "k=0"), (3, "hard", "k=3"), (1, "mean", "kind")],
                         ids=["k-zero", "k-above-drawn", "unknown-kind"])
def test_monte_carlo_labels_bad_arguments_raise(k, kind, match):
    with pytest.raises(ValueError, match=match):
        monte_carlo_labels([np.ones((2, 2), dtype=bool)], k, kind)


def test_label_agreement_by_hand():
    # exact: R W W R | labels: R R W W -> agree on 2 of 4; 1 of 2 wrong steps called right; 1 of 2 right called wrong
    a = label_agreement([[1.0, 0.7, 0.2, 0.0]], [[1.0, 0.0, 0.0, 1.0]])
    assert (a.accuracy, a.wrong_called_right, a.right_called_wrong, a.n_steps) == (0.5, 0.5, 0.5, 4)


def test_label_agreement_skips_unlabelled_exact_steps():
    a = label_agreement([[1.0, 0.0]], [[1.0, None]])
    assert a.n_steps == 1 and a.accuracy == 1.0


def test_label_agreement_step_count_mismatch_raises():
    with pytest.raises(ValueError, match="never truncated"):
        label_agreement([[1.0, 1.0]], [[1.0]])


def test_with_labels_needs_one_list_per_sample():
    with pytest.raises(ValueError, match="one per sample"):
        with_labels([StepSample("q", ["a"])], [], "mc_soft")


def test_with_labels_wrong_step_count_raises_from_the_sample():
    with pytest.raises(ValueError, match="labels has 2 entries"):
        with_labels([StepSample("q", ["a"], labels=[1.0])], [[1.0, 0.0]], "mc_hard")


def test_rollouts_do_not_change_the_callers_random_state(samples, problems):
    random.seed(5)
    before = random.random()
    random.seed(5)
    rollout_successes(samples[:3], problems, NoisyPolicy(), 2, show_progress=False)
    assert random.random() == before


# ---------------------------------------------------------------- issue 13
@settings(max_examples=60, deadline=None)
@given(hits=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=5))
def test_monte_carlo_hard_label_is_soft_label_above_zero_and_grows_with_k(hits):
    successes = [np.array(hits)]
    for k in range(1, 5):
        (hard,), (soft,) = monte_carlo_labels(successes, k, "hard"), monte_carlo_labels(successes, k, "soft")
        assert hard == [float(s > 0) for s in soft]  # "any rollout right" is "a share above 0"
        if k > 1:  # nested rollouts: a prefix that can succeed with k - 1 draws still can with k
            (fewer,) = monte_carlo_labels(successes, k - 1, "hard")
            assert all(a <= b for a, b in zip(fewer, hard, strict=True))


def test_label_agreement_nan_label_raises_instead_of_counting_as_wrong():
    # NaN >= 0.5 is False: a NaN label used to count as a step labelled wrong (accuracy 0.5 here)
    with pytest.raises(ValueError, match=r"labels\[0\]\[0\]=nan"):
        label_agreement([[float("nan"), 1.0]], [[1.0, 1.0]])


def test_monte_carlo_labels_float_successes_raise_instead_of_averaging_into_labels():
    with pytest.raises(ValueError, match=r"successes\[0\] has dtype float64"):
        monte_carlo_labels([np.array([[0.3, 0.9]])], 2, "soft")  # gave the label 0.6, which no rollout drew
