"""Answers grouped by mathematical equivalence (math-verify), as the votes over MATH-style answers need."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.answers import answers_equivalent, group_answers, parse_answer, representative_answers
from prm_core.voting import majority_vote, select_many, weighted_vote

EQUIVALENT = [
    ("320,\\!000", "320,000"),
    ("\\frac{1}{2}", "0.5"),
    ("\\frac12", "\\dfrac{1}{2}"),
    ("14", "The answer is 14."),
    ("\\boxed{7}", "7"),
    ("$3\\sqrt{2}$", "3\\sqrt{2}"),
    ("x=3", "3"),
]
DIFFERENT = [
    ("40,\\!000", "320,\\!000"),  # read as 40 and 320 when only the last number counts
    ("\\frac{1}{2}", "\\frac{3}{2}"),  # both read as 2.0 by "the last number"
    ("14", "15"),
    ("\\sqrt{2}", "2"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_spellings_are_one_answer(a, b):
    assert answers_equivalent(a, b) and answers_equivalent(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_answers_stay_apart(a, b):
    assert not answers_equivalent(a, b)


def test_issue_12_input_4_majority_vote_returns_the_shared_answer():
    answers = ["40,\\!000", "320,\\!000", "320,000", "320,000"]
    assert group_answers(answers) == [0, 1, 1, 1]
    assert majority_vote(representative_answers(answers)) == "320,\\!000"
    # the codes feed the vectorised vote unchanged
    assert select_many(np.array([group_answers(answers)]), None, "majority").tolist() == [1]


def test_weighted_vote_adds_the_weights_of_equivalent_spellings():
    answers = ["\\frac{1}{2}", "0.5", "\\frac{3}{2}"]
    assert weighted_vote(representative_answers(answers), [0.3, 0.3, 0.5]) == "\\frac{1}{2}"


def test_unparseable_answers_group_by_their_stripped_text_and_none_with_none():
    assert group_answers(["", " ", None, None, "  "]) == [0, 0, 2, 2, 0]
    assert parse_answer("") == ()


def test_a_non_string_answer_raises_naming_its_position():
    with pytest.raises(ValueError, match=r"answers\[1\]=3"):
        group_answers(["3", 3])


SPELLINGS = ["1/2", "0.5", "\\frac{1}{2}", "2", "2.0", "\\frac{4}{2}", "3", "x", "\\sqrt{4}", None, "", "7"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SPELLINGS), min_size=1, max_size=12))
def test_group_codes_point_at_a_group_leader_equivalent_to_the_member(answers):
    codes = group_answers(answers)
    assert len(codes) == len(answers)
    for i, code in enumerate(codes):
        assert code <= i and codes[code] == code  # each code names the first member of its group
        if answers[i] is None or answers[code] is None:
            assert answers[i] is answers[code]
        else:
            assert answers_equivalent(answers[code], answers[i])
    leaders = sorted(set(codes))  # no two groups hold equivalent answers
    for x in leaders:
        for y in leaders:
            if x < y and answers[x] is not None and answers[y] is not None:
                assert not answers_equivalent(answers[x], answers[y])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(SPELLINGS), min_size=1, max_size=12), st.randoms())
def test_the_partition_does_not_depend_on_order(answers, rng):
    def partition(xs):
        codes = group_answers(xs)
        return {frozenset(x for x, c in zip(xs, codes, strict=True) if c == code) for code in set(codes)}

    shuffled = list(answers)
    rng.shuffle(shuffled)
    assert partition(answers) == partition(shuffled)


def test_escaped_dollar_is_currency_not_math_mode():
    assert answers_equivalent("\\$18.90", "18.90") and answers_equivalent("\\$18.90", "\\$ 18.90")


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="first=None must be a str"):
        answers_equivalent(None, "3")
    with pytest.raises(ValueError, match=r"answer=\[1\] must be a str"):
        parse_answer([1])
    with pytest.raises(ValueError, match="not a single str or an iterator"):
        group_answers("123")


def test_grouping_works_off_the_main_thread():
    import threading

    out = {}
    worker = threading.Thread(target=lambda: out.update(codes=group_answers(["\\frac12", "0.5", "3"])))
    worker.start()
    worker.join()
    assert out["codes"] == [0, 0, 2]
