"""First-error kinds read back from a solution's text agree with the kinds the noisy policy recorded."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.data import StepSample
from prm_core.tasks.arithmetic import MISREAD_OPS, make_problems, reference_solution
from prm_core.tasks.arithmetic_policy import NoisyPolicy
from prm_core.tasks.error_kinds import FIRST_ERROR_KINDS, error_profile, first_error_kind

RECORDED = {"slip": "slip", "wrong_operand": "wrong_operand", "wrong_operation": "wrong_operation",
            "miscopy": "miscopy", "trap": "trap", "recheck_broke": "bad_recheck"}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_first_error_kind_names_the_noisy_policys_recorded_first_mistake(seed):
    problems = make_problems(20, seed=seed)
    for sample in NoisyPolicy().sample_many(problems, 3, seed=seed):
        problem = problems[sample.meta["problem_id"]]
        kinds = sample.meta["step_kinds"]
        first = next((k for k, label in zip(kinds, sample.labels, strict=True) if label == 0.0), None)
        got = first_error_kind(problem, sample.steps)
        if first is None:
            assert got == "none"
        elif first == "wrong_operation" and got == "trap":  # the other symbol may be the misreading itself
            j = sample.labels.index(0.0)
            assert problem.trap_index is not None and MISREAD_OPS[problem.operations[problem.trap_index].symbol] in sample.steps[j]
        elif first in RECORDED:
            assert got == RECORDED[first], (sample.steps, kinds)


def test_first_error_kind_right_steps_that_stop_early_or_run_on():
    problem = make_problems(1, seed=0)[0]
    steps = reference_solution(problem)
    assert first_error_kind(problem, steps) == "none"
    assert first_error_kind(problem, steps[:-1]) == "too_few_steps"
    assert first_error_kind(problem, steps, is_ended=False) == "malformed"
    assert first_error_kind(problem, [*steps[:-1], "the answer is 3"]) == "malformed"


def test_error_profile_shares_sum_to_one_over_every_kind():
    problems = make_problems(30, seed=1)
    profile = error_profile(NoisyPolicy().sample_many(problems, 2, seed=0), problems)
    assert list(profile) == list(FIRST_ERROR_KINDS) and sum(profile.values()) == pytest.approx(1.0)


def test_error_profile_unknown_problem_raises_naming_the_sample():
    sample = StepSample("q", ["1 + 1 = 2."], meta={"problem_id": 99})
    with pytest.raises(ValueError, match=r"samples\[0\]\.meta\['problem_id'\]=99"):
        error_profile([sample], make_problems(2, seed=0))


def test_error_profile_two_problems_with_one_id_raise():
    a, b = make_problems(2, seed=0)
    twin = dataclasses.replace(b, problem_id=a.problem_id)
    with pytest.raises(ValueError, match=f"problem_id={a.problem_id!r}"):
        error_profile(NoisyPolicy().sample_many([a], 1, seed=0), [a, twin])
