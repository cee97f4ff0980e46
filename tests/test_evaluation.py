"""prm_core.evaluation: the best-of-N list layout it relies on, and the graded flag it reads."""

import pytest
import torch

from prm_core.data import StepSample
from prm_core.evaluation import answer_arrays, candidates_per_problem, search_vs_best_of_n
from prm_core.search import SearchResult
from prm_core.verification import StepScores


def _bon(problem_ids, flags=None, answers=None):
    flags = flags or [True] * len(problem_ids)
    answers = answers or ["14"] * len(problem_ids)
    return [StepSample("q", ["12 + 2 = 14."], labels=[1.0], answer=a, meta={"problem_id": p, "is_correct_answer": f})
            for p, f, a in zip(problem_ids, flags, answers, strict=True)]


# ---------------------------------------------------------------- candidates_per_problem

@pytest.mark.parametrize("ids, expected", [(["A", "A", "B", "B"], 2), (["A", "B", "C"], 1), ([7, 7, 7], 3)],
                         ids=["two-each", "one-each", "one-problem"])
def test_candidates_per_problem_problem_major_list_gives_its_run_length(ids, expected):
    assert candidates_per_problem(_bon(ids)) == expected


@pytest.mark.parametrize("ids, match", [
    (["A", "A", "A", "B"], r"bon\[3:4\] holds 1 candidates of problem_id='B', but the first problem has 3"),  # before: 2
    (["A", "B", "A", "B"], r"bon\[2\] starts a second run of problem_id='A'"),  # before: 2, rows mixing A and B
    (["A", "A", "B", "C"], r"bon\[2:3\] holds 1 candidates of problem_id='B'"),
    (["A", "A", "B", "B", "A", "A"], r"bon\[4\] starts a second run of problem_id='A'"),
    (["A", "A", "B", "B", "B", "B"], r"bon\[2:6\] holds 4 candidates of problem_id='B'"),  # before: 3
], ids=["uneven", "interleaved", "short-run", "repeated-run", "long-run"])
def test_candidates_per_problem_uneven_or_interleaved_list_raises_naming_the_first_bad_position(ids, match):
    with pytest.raises(ValueError, match=match):
        candidates_per_problem(_bon(ids))


def test_candidates_per_problem_empty_list_raises():
    with pytest.raises(ValueError, match="bon is empty"):
        candidates_per_problem([])


# ---------------------------------------------------------------- the graded flag is read as a bool

@pytest.mark.parametrize("flag", ["False", None, float("nan")], ids=["text-false", "none", "nan"])
def test_answer_arrays_flag_that_is_not_a_bool_raises_naming_the_sample(flag):
    with pytest.raises(ValueError, match=r"samples\[1\]\.meta\['is_correct_answer'\]=.* must be True or False"):
        answer_arrays(_bon(["A", "A"], flags=[True, flag]), 2)


def test_answer_arrays_numpy_bool_flags_read_as_bools():
    import numpy as np

    _, correct = answer_arrays(_bon(["A", "A"], flags=[np.bool_(True), np.bool_(False)]), 2)
    assert correct.tolist() == [[True, False]]


def test_search_vs_best_of_n_search_flag_that_is_not_a_bool_raises_naming_the_result():
    bon = _bon(["A", "A", "B", "B"])
    prm_bon = StepScores(torch.full((4, 1), 0.5), torch.ones(4, 1, dtype=torch.bool))
    found = StepSample("q", ["12 + 2 = 14."], labels=[1.0], answer="14",
                       meta={"is_correct_answer": "False", "search_score": 0.5})  # bool("False") would count a hit
    search = {2: [SearchResult(found, 2, 2, (found,))]}
    with pytest.raises(ValueError, match=r"search\[2\]\[0\]\.solution\.meta\['is_correct_answer'\]='False'"):
        search_vs_best_of_n(search, prm_bon, bon, n_bootstrap=10)


def test_answer_arrays_read_answers_as_the_benchmark_grades_them():
    from prm_core.data import StepSample
    from prm_core.evaluation import NO_ANSWER, answer_arrays

    samples = [StepSample("q", ["a"], answer=a, meta={"is_correct_answer": False}) for a in ("14.0", "3,000", "14.5", None)]
    answers, _ = answer_arrays(samples, 4)
    assert answers.tolist() == [[14, 3000, NO_ANSWER, NO_ANSWER]]  # "14.0" once crashed int()
