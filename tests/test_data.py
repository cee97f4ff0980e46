import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.data import StepSample


def test_step_sample_valid_input_stores_steps_and_labels_as_tuples():
    s = StepSample("What is 2 + 3?", ["2 + 3 = 5."], labels=[1], answer="5")
    assert s.steps == ("2 + 3 = 5.",)
    assert s.labels == (1.0,)
    assert isinstance(s.labels[0], float)


def test_step_sample_soft_and_missing_labels_are_kept():
    s = StepSample("q", ["a", "b", "c"], labels=[0.25, None, np.float32(0.5)])
    assert s.labels == (0.25, None, 0.5)
    assert s.is_labelled


def test_step_sample_all_none_labels_is_not_labelled():
    assert not StepSample("q", ["a"], labels=[None]).is_labelled
    assert not StepSample("q", ["a"]).is_labelled


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"problem": "", "steps": ["a"]}, ValueError, "problem"),
        ({"problem": "   \n", "steps": ["a"]}, ValueError, "problem"),
        ({"problem": 3, "steps": ["a"]}, TypeError, "problem"),
        ({"problem": "q", "steps": []}, ValueError, "steps is empty"),
        ({"problem": "q", "steps": "one string"}, TypeError, "list of step strings"),
        ({"problem": "q", "steps": ["a", "  \n "]}, ValueError, r"steps\[1\]"),
        ({"problem": "q", "steps": ["a", 7]}, TypeError, r"steps\[1\]"),
        ({"problem": "q", "steps": ["a", "b"], "labels": [1.0]}, ValueError, "labels has 1 entries but steps has 2"),
        ({"problem": "q", "steps": ["a"], "labels": [math.nan]}, ValueError, r"labels\[0\]"),
        ({"problem": "q", "steps": ["a"], "labels": [1.5]}, ValueError, r"labels\[0\]=1.5"),
        ({"problem": "q", "steps": ["a"], "labels": [-0.1]}, ValueError, r"labels\[0\]"),
        ({"problem": "q", "steps": ["a"], "labels": [True]}, TypeError, r"labels\[0\]"),
        ({"problem": "q", "steps": ["a"], "labels": ["1"]}, TypeError, r"labels\[0\]"),
        ({"problem": "q", "steps": ["a"], "answer": 5}, TypeError, "answer"),
    ],
    ids=["empty-problem", "blank-problem", "non-str-problem", "no-steps", "steps-as-str", "blank-step",
         "non-str-step", "labels-wrong-length", "nan-label", "label-above-1", "label-below-0", "bool-label",
         "str-label", "non-str-answer"],
)
def test_step_sample_bad_input_raises_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        StepSample(**kwargs)


@pytest.mark.parametrize(("label", "fix"), [("1e-1", r"write 1.0e-1"), ("0.5", "pass a number, not text"),
                                            (1.5, "1.0 marks a correct step")], ids=["yaml-exponent", "text", "range"])
def test_step_sample_label_errors_give_the_checks_fix(label, fix):
    with pytest.raises(ValueError, match=rf"labels\[0\]={re.escape(repr(label))} must be a finite number in \[0, 1\].*{fix}"):
        StepSample("q", ["a"], labels=[label])


def test_first_error_index_finds_first_label_below_threshold():
    s = StepSample("q", ["a", "b", "c", "d"], labels=[1.0, None, 0.3, 0.0])
    assert s.first_error_index() == 2  # 0.3 < 0.5; None is skipped
    assert s.first_error_index(threshold=0.2) == 3


def test_first_error_index_all_correct_returns_minus_one():
    assert StepSample("q", ["a", "b"], labels=[1.0, 1.0]).first_error_index() == -1


def test_first_error_index_unlabelled_raises():
    with pytest.raises(ValueError, match="labels is None"):
        StepSample("q", ["a"]).first_error_index()


def test_to_dict_from_dict_round_trips():
    s = StepSample("q", ["a", "b"], labels=[1.0, None], answer="7", meta={"id": 3})
    assert StepSample.from_dict(s.to_dict()) == s


def test_from_dict_missing_steps_raises():
    with pytest.raises(ValueError, match="steps"):
        StepSample.from_dict({"problem": "q"})


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.sampled_from([0.0, 0.3, 0.5, 1.0]), min_size=1, max_size=8),
       threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_first_error_index_of_a_labelled_sample_equals_first_error_index_of_its_labels(labels, threshold):
    # the same rule (first value < threshold, else -1), read off labels instead of scores
    from prm_core.metrics import first_error_index

    sample = StepSample("q", ["step"] * len(labels), labels=labels)
    assert sample.first_error_index(threshold) == first_error_index(labels, threshold)


@pytest.mark.parametrize("threshold", [float("nan"), True, 1.5, "0.5"], ids=["nan", "bool", "above-1", "str"])
def test_first_error_index_bad_threshold_raises_naming_it(threshold):
    with pytest.raises(ValueError, match="threshold="):
        StepSample("q", ["a", "b"], labels=[1.0, 0.0]).first_error_index(threshold)


# ---------------------------------------------------------------- is_correct_answer: the flag read as a bool

@pytest.mark.parametrize("flag", ["False", None, float("nan"), 1], ids=["text-false", "none", "nan", "int-one"])
def test_is_correct_answer_flag_that_is_not_a_bool_raises_naming_the_sample_and_the_fix(flag):
    from prm_core.checks import ArgumentTypeError
    from prm_core.data import is_correct_answer

    sample = StepSample("q", ["a"], meta={"is_correct_answer": flag})
    with pytest.raises(ArgumentTypeError, match=r"samples\[3\]\.meta\['is_correct_answer'\]=.* must be True or False"
                                                r".*grade_answer"):
        is_correct_answer(sample, "samples[3]")


@pytest.mark.parametrize("flag", [True, False, np.bool_(True), np.bool_(False)],
                         ids=["true", "false", "numpy-true", "numpy-false"])
def test_is_correct_answer_python_or_numpy_bool_reads_as_a_python_bool(flag):
    from prm_core.data import is_correct_answer

    out = is_correct_answer(StepSample("q", ["a"], meta={"is_correct_answer": flag}))
    assert out is bool(flag)


def test_is_correct_answer_missing_flag_raises_naming_the_sample():
    from prm_core.data import is_correct_answer

    with pytest.raises(ValueError, match=r"samples\[0\]\.meta lacks 'is_correct_answer'"):
        is_correct_answer(StepSample("q", ["a"]), "samples[0]")


@pytest.mark.parametrize("kwargs", [{"problem": 5, "steps": ["a"]}, {"problem": "q", "steps": "a"},
                                    {"problem": "q", "steps": [1]}, {"problem": "q", "steps": ["a"], "labels": 1.0},
                                    {"problem": "q", "steps": ["a"], "answer": 14},
                                    {"problem": "q", "steps": ["a"], "meta": ["x"]}],
                         ids=["problem", "steps-str", "step-int", "labels", "answer", "meta"])
def test_step_sample_wrong_type_raises_argument_type_error_which_except_value_error_catches(kwargs):
    from prm_core.checks import ArgumentTypeError

    with pytest.raises(ArgumentTypeError, match="has type"):
        StepSample(**kwargs)
