import io
import json
import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.data import StepSample
from prm_core.formats import (
    FIXTURE_NAMES,
    TAG,
    ReadResult,
    fixture_path,
    read_math_shepherd,
    read_prm800k,
    read_processbench,
    read_trl_stepwise,
    write_math_shepherd,
    write_prm800k,
    write_processbench,
    write_trl_stepwise,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
READERS = {"prm800k": read_prm800k, "math_shepherd": read_math_shepherd,
           "trl_stepwise": read_trl_stepwise, "processbench": read_processbench}


def _lines(*rows):
    return [json.dumps(row, ensure_ascii=False) for row in rows]


def _round_trip(write, read, samples, **kwargs):
    buffer = io.StringIO()
    assert write(samples, buffer, **kwargs) == len(samples)
    buffer.seek(0)
    return read(buffer, **kwargs) if "neutral" in kwargs else read(buffer)


def _core(sample):
    return sample.problem, sample.steps, sample.labels, sample.answer


def _prm800k_row(steps, *, generation=None, pre=None, qc=False, screening=False, finish="solution"):
    """A PRM800K row; ``steps`` is a list of label.steps entries."""
    return {"labeler": "l", "timestamp": "t", "generation": generation, "is_quality_control_question": qc,
            "is_initial_screening_question": screening,
            "question": {"problem": "What is 2 + 2?", "ground_truth_answer": "4", "pre_generated_steps": pre,
                         "pre_generated_answer": None},
            "label": {"steps": steps, "total_time": 1, "finish_reason": finish}}


def _step(*ratings, chosen=0, human=None):
    completions = [{"text": f"try {j}: 2 + 2 = {4 + j}.", "rating": r, "flagged": None} for j, r in enumerate(ratings)]
    return {"completions": completions, "human_completion": human, "chosen_completion": chosen}


# ---------------------------------------------------------------------------------------------
# Shipped fixtures: each reads to the hand-computed samples.


def test_fixture_path_every_name_exists_and_reads():
    for name in FIXTURE_NAMES:
        assert fixture_path(name).is_file()
        assert len(READERS[name](fixture_path(name))) >= 3


def test_fixture_path_unknown_name_raises():
    with pytest.raises(ValueError, match=r"name='gsm8k' is not a shipped fixture"):
        fixture_path("gsm8k")


def test_read_prm800k_fixture_excludes_quality_control_and_screening_rows():
    result = read_prm800k(fixture_path("prm800k"))
    # 5 rows: 1 quality-control (row 3), 1 screening (row 5) -> 3 samples
    assert len(result) == 3
    assert result.excluded == {"quality_control": 1, "screening": 1}
    assert result.n_skipped == 0


def test_read_prm800k_fixture_phase1_row_follows_chosen_then_human_completion():
    sample = read_prm800k(fixture_path("prm800k"))[0]
    # step 0: chosen_completion 0 (+1); step 1: single completion rated 0 -> neutral 1.0;
    # step 2: both completions -1, chosen null, the human wrote the step (rating null -> human=1.0)
    assert sample.steps[0] == "4 notebooks cost 4 × 3 = 12 dollars."
    assert sample.steps[2].startswith("3 pens cost 3 × 2 = 6 dollars")
    assert sample.labels == (1.0, 1.0, 1.0)
    assert read_prm800k(fixture_path("prm800k"), human=None)[0].labels == (1.0, 1.0, None)
    assert sample.answer is None
    assert sample.meta["phase"] == "phase1"
    assert sample.meta["human_steps"] == [2]
    assert sample.meta["ratings"] == [1, 0, None]
    assert [len(a) for a in sample.meta["alternatives"]] == [1, 0, 2]  # the completions not followed
    assert sample.meta["alternatives"][0][0]["rating"] == -1


def test_read_prm800k_fixture_found_error_row_keeps_unlabelled_pre_generated_steps():
    sample = read_prm800k(fixture_path("prm800k"))[1]
    # 3 pre-generated steps, 2 labelled: +1, then a step with completions [-1, +1] and no choice
    # -> the first -1 (the pre-generated step); the third step was never labelled -> None
    assert sample.labels == (1.0, 0.0, None)
    assert sample.steps[1] == "Divide both sides by 2: x = 3."
    assert sample.answer == "3"
    assert sample.first_error_index() == 1
    assert sample.meta["finish_reason"] == "found_error"
    assert sample.meta["alternatives"][1] == [{"text": "Divide both sides by 2: x = 4.", "rating": 1, "flagged": False}]


@pytest.mark.parametrize(("neutral", "expected"), [(1.0, 1.0), (0.0, 0.0), (0.5, 0.5), (None, None)],
                         ids=["positive", "negative", "halfway", "unlabelled"])
def test_read_prm800k_neutral_choice_sets_label_of_zero_rating(neutral, expected):
    sample = read_prm800k(fixture_path("prm800k"), neutral=neutral)[2]  # ratings [0, +1]
    assert sample.labels == (expected, 1.0)
    assert sample.meta["neutral"] == neutral


@pytest.mark.parametrize("neutral", [1.5, -0.1, True, "yes", float("nan")], ids=["above", "below", "bool", "str", "nan"])
def test_read_prm800k_invalid_neutral_raises(neutral):
    with pytest.raises(ValueError, match="neutral=.* must be a float in"):
        read_prm800k(fixture_path("prm800k"), neutral=neutral)


@pytest.mark.parametrize(("phase", "n_samples", "n_other"), [("phase1", 1, 2), ("phase2", 2, 1)], ids=["phase1", "phase2"])
def test_read_prm800k_phase_filter_counts_other_phase(phase, n_samples, n_other):
    result = read_prm800k(fixture_path("prm800k"), phase=phase)
    assert len(result) == n_samples
    assert all(s.meta["phase"] == phase for s in result)
    assert result.excluded["other_phase"] == n_other  # QC and screening rows are counted as such first


def test_read_prm800k_invalid_phase_raises():
    with pytest.raises(ValueError, match="phase=2 must be None"):
        read_prm800k(fixture_path("prm800k"), phase=2)


def test_read_prm800k_exclusions_off_keeps_every_row():
    result = read_prm800k(fixture_path("prm800k"), exclude_quality_control=False, exclude_screening=False)
    assert len(result) == 5
    assert result.excluded == {}
    assert [s.meta["is_quality_control_question"] for s in result] == [False, False, True, False, False]


def test_read_prm800k_last_step_without_choice_takes_first_negative_completion():
    row = _prm800k_row([_step(1), _step(1, -1, -1, chosen=None)], finish="found_error")
    sample = read_prm800k([row])[0]
    assert sample.steps[1] == "try 1: 2 + 2 = 5."
    assert sample.labels == (1.0, 0.0)
    assert [c["text"] for c in sample.meta["alternatives"][1]] == ["try 0: 2 + 2 = 4.", "try 2: 2 + 2 = 6."]


def test_read_prm800k_last_step_without_choice_or_negative_takes_first_completion():
    sample = read_prm800k([_prm800k_row([_step(0, 1, chosen=None)], finish="give_up")])[0]
    assert sample.steps == ("try 0: 2 + 2 = 4.",)


def test_read_prm800k_human_completion_as_text_is_followed():
    sample = read_prm800k([_prm800k_row([_step(-1, chosen=None, human="2 + 2 = 4.")])])[0]
    assert sample.steps == ("2 + 2 = 4.",)
    assert sample.labels == (1.0,)


def test_read_prm800k_flagged_step_is_recorded():
    step = _step(1)
    step["completions"][0]["flagged"] = True
    assert read_prm800k([_prm800k_row([step, _step(1)])])[0].meta["flagged_steps"] == [0]


def test_read_prm800k_row_without_steps_is_counted_not_dropped():
    result = read_prm800k([_prm800k_row([], finish="bad_problem")])
    assert len(result) == 0
    assert result.excluded == {"no_steps": 1}


def test_read_prm800k_path_off_pre_generated_steps_keeps_both():
    row = _prm800k_row([_step(1)], generation=1, pre=["something else.", "and more."])
    sample = read_prm800k([row])[0]
    assert sample.steps == ("try 0: 2 + 2 = 4.",)
    assert sample.meta["pre_generated_steps"] == ["something else.", "and more."]


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        ([_step(1, 1, chosen=None), _step(1)], r"label.steps\[0\]' has 2 completions, chosen_completion null"),
        ([_step(2)], r"label.steps\[0\].completions\[0\].rating'=2 must be -1, 0, 1 or null"),
        ([_step(True)], r"rating'=True must be -1, 0, 1 or null"),
        ([_step(1, chosen=3)], r"chosen_completion'=3 is out of range for 1 completions"),
        ([{"completions": {"text": "a"}, "chosen_completion": None}], r"label.steps\[0\].completions'=.* must be a list"),
        (["not a step"], r"label.steps\[0\]'='not a step' must be an object"),
    ],
    ids=["no-choice-mid-path", "rating-2", "rating-bool", "chosen-out-of-range", "completions-not-list", "step-not-object"],
)
def test_read_prm800k_malformed_step_raises_with_line_and_field(steps, match):
    lines = _lines(_prm800k_row([_step(1)]), _prm800k_row(steps))
    with pytest.raises(ValueError, match=r"read_prm800k: line 2: .*" + match):
        read_prm800k(lines)


def test_read_prm800k_missing_question_raises_with_field():
    row = _prm800k_row([_step(1)])
    del row["question"]["problem"]
    with pytest.raises(ValueError, match=r"row 1: field 'question.problem' is missing"):
        read_prm800k([row])


# ---------------------------------------------------------------------------------------------
# Math-Shepherd


def test_read_math_shepherd_fixture_labels_answers_and_tasks():
    result = read_math_shepherd(fixture_path("math_shepherd"))
    # marks per row: +++, ---, +---, ++
    assert [s.labels for s in result] == [(1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), (1.0, 1.0)]
    assert [s.answer for s in result] == ["10", "5", "14", "150"]  # from "The answer is: ..."
    assert [s.meta["task"] for s in result] == ["GSM8K", "GSM8K", "MATH", "GSM8K"]
    assert result[0].problem == "Tom has 3 bags with 4 apples each. He eats 2 apples. How many apples are left?"
    assert result[0].steps[0] == "Tom starts with 3 × 4 = 12 apples."


def test_read_math_shepherd_step_spanning_lines_is_kept_whole():
    row = {"input": f"Q? Step 1: a = 1,\nb = 2 {TAG}\nStep 2: a + b = 3 {TAG}",
           "label": "Q? Step 1: a = 1,\nb = 2 -\nStep 2: a + b = 3 +"}
    sample = read_math_shepherd([row])[0]
    assert sample.steps == ("a = 1,\nb = 2", "a + b = 3")
    assert sample.labels == (0.0, 1.0)
    assert sample.answer is None


def test_read_math_shepherd_answer_column_overrides_last_step():
    row = {"input": f"Q? Step 1: The answer is: 3 {TAG}", "label": "Q? Step 1: The answer is: 3 +", "answer": "three"}
    assert read_math_shepherd([row])[0].answer == "three"


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"input": f"Q? Step 1: 1 {TAG}", "label": "Q? Step 1: 2 +"}, r"field 'label' does not match field 'input' at step 1"),
        ({"input": f"Q? Step 1: 1 {TAG}", "label": "Q? Step 1: 1 ?"}, r"field 'label' does not match field 'input' at step 1"),
        ({"input": f"Q? Step 1: 1 {TAG}", "label": "Q? Step 1: 1 + extra"}, r"field 'label' does not match field 'input' after the last step"),
        ({"input": "Q? Step 1: 1", "label": "Q? Step 1: 1"}, r"field 'input' holds no step tag"),
        ({"input": f"Q? Step 1: 1 {TAG} Step 2: 2", "label": "x"}, r"field 'input' has text after its last tag"),
        ({"input": f"Q? First: 1 {TAG}", "label": "Q? First: 1 +"}, r"field 'input' has no 'Step 1:' \(any case\) before its first tag"),
        ({"input": f"Q? Step 1: 1 {TAG}"}, r"field 'label' is missing"),
        ({"input": 3, "label": "x"}, r"field 'input'=3 has type int; it must be str"),
    ],
    ids=["text-differs", "bad-mark", "trailing-label", "no-tag", "text-after-tag", "no-step-1", "missing-label", "input-int"],
)
def test_read_math_shepherd_malformed_row_raises_with_line(row, match):
    good = {"input": f"Q? Step 1: 1 {TAG}", "label": "Q? Step 1: 1 +"}
    with pytest.raises(ValueError, match=r"read_math_shepherd: line 3: " + match):
        read_math_shepherd(_lines(good, good, row))


@pytest.mark.parametrize(
    ("sample", "match"),
    [
        (StepSample("Q?", [f"1 {TAG} 2"], labels=[1.0]), r"steps\[0\]=.* contains the step tag"),
        (StepSample("Do Step 1: add.", ["1"], labels=[1.0]), r"problem=.* contains"),
        (StepSample("Q?", ["a", "b"], labels=[1.0, 0.3]), r"labels\[1\]=0.3 is a soft label"),
        (StepSample("Q?", ["a", "b"], labels=[1.0, None]), r"labels\[1\] is None"),
        (StepSample("Q?", ["a"]), r"labels\[0\] is None"),
        (StepSample("q", ["Step 1: add", "b"], labels=[1, 0]), r"steps\[0\]=.* contains 'Step 1:'"),
        (StepSample("q", ["a", "b"], labels=[1, 0], meta={"task": 5}),
         r"\.meta\['task'\]=5 has type int, but Math-Shepherd's 'task' column holds a str or null"),
    ],
    ids=["tag-in-step", "step-1-in-problem", "soft-label", "unlabelled-step", "unlabelled-sample",
         "step-1-in-first-step", "int-task"],
)
def test_write_math_shepherd_unrepresentable_sample_raises_and_writes_nothing(sample, match, tmp_path):
    # before: the last two were written, and read_math_shepherd refused them ("2 'Step 1:' markers", "task")
    path = tmp_path / "out.jsonl"
    good = StepSample("Q?", ["a"], labels=[1.0])
    with pytest.raises(ValueError, match=r"write_math_shepherd: samples\[1\](: |)" + match):
        write_math_shepherd([good, sample], path)
    assert not path.exists()


def test_write_math_shepherd_threshold_rounds_soft_labels():
    sample = StepSample("Q?", ["a", "b", "c"], labels=[0.7, 0.5, 0.2])
    assert _round_trip(write_math_shepherd, read_math_shepherd, [sample], threshold=0.5)[0].labels == (1.0, 1.0, 0.0)


@pytest.mark.parametrize("threshold", [0.0, 1.5, True, float("nan")], ids=["zero", "above-one", "bool", "nan"])
def test_write_math_shepherd_invalid_threshold_raises(threshold):
    with pytest.raises(ValueError, match=r"threshold=.* must be a finite number in \(0, 1\].*; pass None"):
        write_math_shepherd([], io.StringIO(), threshold=threshold)


# ---------------------------------------------------------------------------------------------
# TRL stepwise supervision


def test_read_trl_stepwise_fixture_labels():
    result = read_trl_stepwise(fixture_path("trl_stepwise"))
    # 9 steps, 5 true: TT, FF, TFF, TT
    assert [s.labels for s in result] == [(1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0)]
    assert result[2].steps == ("12 ÷ 4 = 3.", "3 + 1 = 5.", "The result is 5.")


def test_read_trl_stepwise_integer_labels_and_extra_columns_are_accepted():
    sample = read_trl_stepwise([{"prompt": "Q?", "completions": ["a", "b"], "labels": [1, 0], "source": "x"}])[0]
    assert sample.labels == (1.0, 0.0)
    assert sample.meta == {"source": "x"}


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"prompt": "Q?", "completions": ["a", "b"], "labels": [True]}, r"field 'labels' has 1 entries but 'completions' has 2"),
        ({"prompt": "Q?", "completions": ["a"], "labels": [0.5]}, r"field 'labels\[0\]'=0.5 must be true or false"),
        ({"prompt": "Q?", "completions": ["a"], "labels": [None]}, r"field 'labels\[0\]'=None must be true or false"),
        ({"prompt": [{"role": "user", "content": "Q?"}], "completions": ["a"], "labels": [True]},
         r"field 'prompt'=.* has type list; it must be str"),
        ({"prompt": "Q?", "completions": ["a", 2], "labels": [True, True]}, r"field 'completions\[1\]'=2"),
        ({"prompt": "Q?", "labels": [True]}, r"field 'completions' is missing"),
        ({"prompt": "Q?", "completions": ["  "], "labels": [True]}, r"steps\[0\]='  ' is blank"),
    ],
    ids=["length-mismatch", "soft-label", "null-label", "conversational", "step-not-str", "missing-completions", "blank-step"],
)
def test_read_trl_stepwise_malformed_row_raises_with_line(row, match):
    good = {"prompt": "Q?", "completions": ["a"], "labels": [True]}
    with pytest.raises(ValueError, match=r"read_trl_stepwise: line 2: " + match):
        read_trl_stepwise(_lines(good, row))


@pytest.mark.parametrize(
    ("labels", "threshold", "match"),
    [([1.0, 0.3], None, r"labels\[1\]=0.3 is a soft label"), ([1.0, None], None, r"labels\[1\] is None"),
     ([1.0, None], 0.5, r"labels\[1\] is None")],
    ids=["soft", "unlabelled", "unlabelled-with-threshold"],
)
def test_write_trl_stepwise_unrepresentable_label_raises(labels, threshold, match):
    with pytest.raises(ValueError, match=r"write_trl_stepwise: samples\[0\]: " + match):
        write_trl_stepwise([StepSample("Q?", ["a", "b"], labels=labels)], io.StringIO(), threshold=threshold)


def test_write_trl_stepwise_threshold_rounds_soft_labels():
    sample = StepSample("Q?", ["a", "b"], labels=[0.5, 0.49])
    assert _round_trip(write_trl_stepwise, read_trl_stepwise, [sample], threshold=0.5)[0].labels == (1.0, 0.0)


# ---------------------------------------------------------------------------------------------
# ProcessBench


def test_read_processbench_fixture_labels_from_first_error():
    result = read_processbench(fixture_path("processbench"))
    # label -1 -> all 1.0; label 2 of 4 steps -> 1, 1, 0, None; label 0 of 2 -> 0, None
    assert [s.labels for s in result] == [(1.0, 1.0, 1.0), (1.0, 1.0, 0.0, None), (0.0, None), (1.0, 1.0)]
    assert [s.meta["first_error_index"] for s in result] == [-1, 2, 0, -1]
    assert [s.first_error_index() for s in result] == [-1, 2, 0, -1]
    assert [s.meta["final_answer_correct"] for s in result] == [True, False, False, True]
    assert result[1].meta["id"] == "gsm8k-demo-1"


@pytest.mark.parametrize(("label", "match"), [(-2, "'label'=-2 is out of range for 3 steps"),
                                              (3, "'label'=3 is out of range for 3 steps"),
                                              (True, "'label'=True has type bool"),
                                              ("1", "'label'='1' has type str")],
                         ids=["below-minus-one", "past-last-step", "bool", "str"])
def test_read_processbench_invalid_label_raises_with_line(label, match):
    row = {"id": "x", "problem": "Q?", "steps": ["a", "b", "c"], "label": label}
    good = {**row, "label": -1}
    with pytest.raises(ValueError, match=r"read_processbench: line 2: field " + match):
        read_processbench(_lines(good, row))


@pytest.mark.parametrize(
    ("labels", "match"),
    [([None, 0.0], r"labels\[0\] is None"), ([0.9, 0.0], r"labels\[0\]=0.9 is a soft label"), ([1.0, None], r"labels\[1\] is None")],
    ids=["unlabelled-before-error", "soft-before-error", "unlabelled-no-error"],
)
def test_write_processbench_labels_not_correct_then_error_raise(labels, match):
    with pytest.raises(ValueError, match=r"write_processbench: samples\[0\]: " + match):
        write_processbench([StepSample("Q?", ["a", "b"], labels=labels)], io.StringIO())


@pytest.mark.parametrize(("meta", "match"), [
    ({"generator": 7}, r"\.meta\['generator'\]=7 has type int, but ProcessBench's 'generator' column holds a str"),
    ({"final_answer_correct": "yes"},
     r"\.meta\['final_answer_correct'\]='yes' has type str, but ProcessBench's 'final_answer_correct' column holds "
     r"a bool or null"),
    ({"final_answer_correct": 1}, r"\.meta\['final_answer_correct'\]=1 has type int"),
], ids=["int-generator", "text-final-answer-correct", "int-final-answer-correct"])
def test_write_processbench_meta_its_reader_would_refuse_raises_naming_the_sample_and_field(meta, match, tmp_path):
    # before: written, then refused by read_processbench ("field 'generator'=7 has type int")
    path = tmp_path / "out.jsonl"
    samples = [StepSample("q", ["a"], labels=[1.0]), StepSample("q", ["a"], labels=[1.0], meta=meta)]
    with pytest.raises(ValueError, match=r"write_processbench: samples\[1\]" + match):
        write_processbench(samples, path)
    assert not path.exists()


@pytest.mark.parametrize("write, read, meta", [
    (write_math_shepherd, read_math_shepherd, {"task": "GSM8K"}),
    (write_processbench, read_processbench, {"generator": "me", "final_answer_correct": False, "id": 3}),
], ids=["math-shepherd", "processbench"])
def test_writer_meta_columns_of_the_right_type_read_back(write, read, meta):
    (back,) = _round_trip(write, read, [StepSample("q", ["a", "b"], labels=[1.0, 1.0], meta=meta)])
    assert {k: back.meta[k] for k in meta} == meta


def test_write_processbench_labels_after_first_error_are_not_needed():
    sample = StepSample("Q?", ["a", "b", "c"], labels=[1.0, 0.0, 0.7])
    buffer = io.StringIO()
    write_processbench([sample], buffer)
    row = json.loads(buffer.getvalue())
    assert row["label"] == 1
    assert row["id"] == "0"  # the sample's position when meta has no id
    assert row["final_answer_correct"] is None


def test_write_processbench_threshold_matches_first_error_index():
    sample = StepSample("Q?", ["a", "b", "c"], labels=[0.9, 0.6, 0.2])
    buffer = io.StringIO()
    write_processbench([sample], buffer, threshold=0.5)
    assert json.loads(buffer.getvalue())["label"] == sample.first_error_index() == 2


# ---------------------------------------------------------------------------------------------
# Inputs, errors and skip mode shared by every reader


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_str_path_file_object_lines_and_dicts_agree(name):
    path, read = fixture_path(name), READERS[name]
    lines = path.read_text(encoding="utf-8").splitlines()
    with path.open(encoding="utf-8") as handle:
        from_file = read(handle)
    variants = [read(str(path)), from_file, read(lines), read([json.loads(line) for line in lines])]
    assert all([_core(s) for s in v] == [_core(s) for s in read(path)] for v in variants)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_json_list_file_reads_like_jsonl(name, tmp_path):
    rows = [json.loads(line) for line in fixture_path(name).read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    read = READERS[name]
    assert [_core(s) for s in read(path)] == [_core(s) for s in read(fixture_path(name))]


def test_reader_json_file_not_a_list_raises(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"prompt": "Q?"}', encoding="utf-8")
    with pytest.raises(ValueError, match="holds a JSON dict; a .json file must hold a list"):
        read_trl_stepwise(path)


def test_reader_bad_json_raises_with_line_number_after_blank_lines():
    lines = ['{"prompt": "Q?", "completions": ["a"], "labels": [true]}', "", "  ", '{"prompt": "Q?",']
    with pytest.raises(ValueError, match=r"line 4: is not valid JSON"):
        read_trl_stepwise(lines)


def test_reader_non_object_row_raises():
    with pytest.raises(ValueError, match=r"line 1: holds a list; each row must be a JSON object"):
        read_processbench(["[1, 2]"])


def test_reader_single_dict_source_raises():
    with pytest.raises(ValueError, match=r"source is a single dict; wrap it in a list"):
        read_trl_stepwise({"prompt": "Q?", "completions": ["a"], "labels": [True]})


def test_reader_json_text_passed_as_path_raises():
    with pytest.raises(ValueError, match=r"looks like JSON text, but a single str is read as a path"):
        read_trl_stepwise('{"prompt": "Q?", "completions": ["a"], "labels": [true]}')


def test_reader_invalid_on_error_raises():
    with pytest.raises(ValueError, match=r"on_error='ignore' must be one of"):
        read_trl_stepwise([], on_error="ignore")


BAD_LINES = {
    "prm800k": _lines(_prm800k_row([_step(5)])),
    "math_shepherd": _lines({"input": f"Q? Step 1: a {TAG}", "label": "Q? Step 1: b +"}),
    "trl_stepwise": _lines({"prompt": "Q?", "completions": ["a"], "labels": ["yes"]}),
    "processbench": _lines({"problem": "Q?", "steps": ["a"], "label": 4}),
}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_reader_skip_mode_counts_malformed_rows_and_warns(name):
    lines = fixture_path(name).read_text(encoding="utf-8").splitlines()
    good = READERS[name](lines)
    mixed = ["{broken"] + lines[:2] + BAD_LINES[name] + lines[2:]  # bad rows at lines 1 and 4
    with pytest.warns(UserWarning, match=r"skipped 2 malformed row\(s\), the first at line 1"):
        result = READERS[name](mixed, on_error="skip")
    assert isinstance(result, list)
    assert [_core(s) for s in result] == [_core(s) for s in good]
    assert [number for number, _ in result.skipped] == [1, 4]
    assert result.n_skipped == 2
    assert result.excluded == good.excluded


def test_reader_skip_mode_without_bad_rows_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_trl_stepwise(fixture_path("trl_stepwise"), on_error="skip").n_skipped == 0


@PROPERTY_SETTINGS
@given(is_bad=st.lists(st.booleans(), max_size=12))
def test_reader_skip_mode_every_row_is_a_sample_or_skipped(is_bad):
    good = {"prompt": "Q?", "completions": ["a"], "labels": [True]}
    lines = ["{not json" if bad else json.dumps(good) for bad in is_bad]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = read_trl_stepwise(lines, on_error="skip")
    assert len(result) == is_bad.count(False)
    assert [number for number, _ in result.skipped] == [i for i, bad in enumerate(is_bad, 1) if bad]


def test_read_result_is_a_plain_list_of_samples():
    sample = StepSample("Q?", ["a"])
    result = ReadResult([sample], excluded={"screening": 2}, skipped=[(3, "line 3: bad")])
    assert result == [sample]
    assert (result.n_excluded, result.n_skipped) == (2, 1)


@pytest.mark.parametrize("write", [write_prm800k, write_math_shepherd, write_trl_stepwise, write_processbench],
                         ids=lambda f: f.__name__)
def test_writer_non_sample_raises(write):
    with pytest.raises(ValueError, match=r"samples\[0\] has type dict; pass StepSample objects"):
        write([{"problem": "Q?", "steps": ["a"]}], io.StringIO())


def test_writer_json_path_writes_a_list_that_reads_back(tmp_path):
    samples = read_trl_stepwise(fixture_path("trl_stepwise"))
    path = tmp_path / "out.json"
    assert write_trl_stepwise(samples, path) == 4
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), list)
    assert [_core(s) for s in read_trl_stepwise(path)] == [_core(s) for s in samples]


@pytest.mark.parametrize("name", ["math_shepherd", "trl_stepwise", "processbench"])
def test_writer_rewrites_fixture_byte_for_byte(name, tmp_path):
    writers = {"math_shepherd": write_math_shepherd, "trl_stepwise": write_trl_stepwise,
               "processbench": write_processbench}
    path = tmp_path / "out.jsonl"
    writers[name](READERS[name](fixture_path(name)), path)
    assert path.read_text(encoding="utf-8") == fixture_path(name).read_text(encoding="utf-8")


def test_write_prm800k_fixture_round_trip_keeps_meta():
    keep_all = {"exclude_quality_control": False, "exclude_screening": False}
    samples = read_prm800k(fixture_path("prm800k"), **keep_all)
    buffer = io.StringIO()
    write_prm800k(samples, buffer)
    again = read_prm800k(buffer.getvalue().splitlines(), **keep_all)
    assert [_core(s) for s in again] == [_core(s) for s in samples]
    assert [s.meta for s in again] == [s.meta for s in samples]  # alternatives, human steps, raw 0 ratings


def test_write_prm800k_soft_label_other_than_neutral_raises():
    with pytest.raises(ValueError, match=r"samples\[0\]: labels\[1\]=0.3 has no PRM800K rating"):
        write_prm800k([StepSample("Q?", ["a", "b"], labels=[1.0, 0.3])], io.StringIO(), neutral=0.5)


def test_write_prm800k_infers_finish_reason_from_ratings():
    buffer = io.StringIO()
    write_prm800k([StepSample("Q?", ["a"], labels=[0.0]), StepSample("Q?", ["a"], labels=[1.0])], buffer)
    rows = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [r["label"]["finish_reason"] for r in rows] == ["found_error", "solution"]


# ---------------------------------------------------------------------------------------------
# Round trips: write, then read, gives the same problem, steps, labels and answer.

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
answers = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
hard_labels = st.sampled_from([0.0, 1.0])


@st.composite
def samples(draw, labels=hard_labels, text=texts, problem=texts):
    n = draw(st.integers(1, 6))
    return StepSample(draw(problem), draw(st.lists(text, min_size=n, max_size=n)),
                      labels=draw(st.lists(labels, min_size=n, max_size=n)), answer=draw(answers))


def _no_tag(s):
    return TAG not in s


# Math-Shepherd strips the text it pads with spaces and cuts the problem at "Step 1:"; the tokens
# build texts that look like the format's own markers ("Step 2:", a lone "к", "The answer is:").
tricky = st.lists(st.sampled_from(["Step", " ", "1", "2", ":", "\n", "к", "и", "+", "-", "The answer is:", "x"]),
                  min_size=1, max_size=12).map("".join)
shepherd_texts = (texts | tricky).map(str.strip).filter(bool).filter(_no_tag)
shepherd_problems = shepherd_texts.filter(lambda s: not re.search(r"Step\s*1\s*:", s))


def _first_step_has_no_step_one(sample):  # the writer refuses one: the reader would find two starts of step 1
    return not re.search(r"\bstep\s*1\s*:", sample.steps[0], re.IGNORECASE)


@PROPERTY_SETTINGS
@given(batch=st.lists(samples(text=shepherd_texts, problem=shepherd_problems).filter(_first_step_has_no_step_one),
                      max_size=4))
def test_math_shepherd_write_then_read_round_trips(batch):
    assert [_core(s) for s in _round_trip(write_math_shepherd, read_math_shepherd, batch)] == [_core(s) for s in batch]


@PROPERTY_SETTINGS
@given(batch=st.lists(samples(text=shepherd_texts, problem=shepherd_problems), min_size=1, max_size=3))
def test_math_shepherd_what_the_writer_writes_the_reader_reads_back(batch):
    buffer = io.StringIO()
    try:
        write_math_shepherd(batch, buffer)
    except ValueError:  # refused at write time, naming the sample: fine; written but unreadable: not
        return
    buffer.seek(0)
    assert [_core(s) for s in read_math_shepherd(buffer)] == [_core(s) for s in batch]


@PROPERTY_SETTINGS
@given(batch=st.lists(samples(), max_size=4))
def test_trl_stepwise_write_then_read_round_trips(batch):
    assert [_core(s) for s in _round_trip(write_trl_stepwise, read_trl_stepwise, batch)] == [_core(s) for s in batch]


@st.composite
def processbench_samples(draw):
    n = draw(st.integers(1, 6))
    first_error = draw(st.integers(-1, n - 1))
    labels = [1.0] * n if first_error == -1 else [1.0] * first_error + [0.0] + [None] * (n - first_error - 1)
    return StepSample(draw(texts), draw(st.lists(texts, min_size=n, max_size=n)), labels=labels, answer=draw(answers))


@PROPERTY_SETTINGS
@given(batch=st.lists(processbench_samples(), max_size=4))
def test_processbench_write_then_read_round_trips(batch):
    assert [_core(s) for s in _round_trip(write_processbench, read_processbench, batch)] == [_core(s) for s in batch]


@PROPERTY_SETTINGS
@given(neutral=st.sampled_from([1.0, 0.0, 0.5, None]), generation=st.sampled_from([None, 4]), data=st.data())
def test_prm800k_write_then_read_round_trips(neutral, generation, data):
    labels = st.sampled_from([0.0, 1.0, None, neutral])
    batch = [StepSample(s.problem, s.steps, s.labels, s.answer, meta={"generation": generation})
             for s in data.draw(st.lists(samples(labels=labels), max_size=4))]
    again = _round_trip(write_prm800k, read_prm800k, batch, neutral=neutral)
    assert [_core(s) for s in again] == [_core(s) for s in batch]


# ---------------------------------------------------------------------------------------------
# Issue 12: rows as the released files write them.


ISSUE_12_NULL_STEP = ('{"question":{"problem":"p"},"label":{"steps":[{"completions":[{"text":"a","rating":1}],'
                      '"chosen_completion":0},{"completions":null,"chosen_completion":null,"human_completion":null}]}}')


def test_issue_12_input_1_a_null_step_ends_the_row_and_the_labelled_prefix_is_kept():
    with pytest.warns(UserWarning, match=r"kept 1 row\(s\) only up to a step it could not read \(1 steps cut\)"):
        result = read_prm800k([ISSUE_12_NULL_STEP])
    assert [(s.steps, s.labels) for s in result] == [(("a",), (1.0,))]
    assert result.cut[0][:2] == (1, 1) and "label.steps[1] has no completion" in result.cut[0][2]
    assert result.n_cut_steps == 1 and result[0].meta["n_cut_steps"] == 1 and result.n_skipped == 0


@pytest.mark.parametrize("empty", [{"completions": None, "chosen_completion": None, "human_completion": None},
                                   {"completions": [], "chosen_completion": None},
                                   {"completions": None}])
def test_a_null_step_in_the_middle_cuts_it_and_every_step_after(empty):
    row = _prm800k_row([_step(1), _step(-1), empty, _step(1)])
    with pytest.warns(UserWarning, match="2 steps cut"):
        result = read_prm800k([row])
    assert result[0].labels == (1.0, 0.0) and result.n_cut_steps == 2


def test_a_row_whose_first_step_is_null_is_excluded_as_no_steps():
    result = read_prm800k([_prm800k_row([{"completions": None, "chosen_completion": None}, _step(1)])])
    assert len(result) == 0 and result.excluded == {"no_steps": 1}


def test_issue_12_input_2_a_human_written_step_is_labelled_correct_and_converts_to_trl():
    row = _prm800k_row([_step(1), _step(-1, -1, chosen=None, human={"text": "2 + 2 = 4.", "rating": None})])
    sample = read_prm800k([row])[0]
    assert sample.labels == (1.0, 1.0) and sample.meta["human_steps"] == [1]
    out = io.StringIO()
    assert write_trl_stepwise([sample], out) == 1  # the reader's own output converts, as TRL labels it True
    assert json.loads(out.getvalue())["labels"] == [True, True]
    # an explicit rating on the human step wins; human=0.5 is a choice; a bad value names the option
    rated = _prm800k_row([_step(-1, chosen=None, human={"text": "x", "rating": -1})])
    assert read_prm800k([rated])[0].labels == (0.0,)
    assert read_prm800k([row], human=0.5)[0].labels == (1.0, 0.5)
    with pytest.raises(ValueError, match=r"human=2 must be a float in \[0, 1\] or None"):
        read_prm800k([row], human=2)


def test_a_human_step_read_and_written_keeps_its_null_rating():
    row = _prm800k_row([_step(1), _step(-1, -1, chosen=None, human={"text": "2 + 2 = 4.", "rating": None})])
    sample = read_prm800k([row])[0]
    out = io.StringIO()
    write_prm800k([sample], out)
    written = json.loads(out.getvalue())["label"]["steps"][1]
    assert written["human_completion"]["rating"] is None and written["chosen_completion"] is None
    out.seek(0)
    assert _core(read_prm800k(out)[0]) == _core(sample)


def test_issue_12_input_3_lower_case_step_markers_are_read():
    row = {"input": f"Q? step 1: a {TAG}\nstep 2: b {TAG}", "label": "Q? step 1: a +\nstep 2: b -"}
    sample = read_math_shepherd([row])[0]
    assert (sample.problem, sample.steps, sample.labels) == ("Q?", ("a", "b"), (1.0, 0.0))


@pytest.mark.parametrize("marker", ["Step 1:", "step 1:", "STEP 1:", "Step 1 :", "Step1:"])
def test_every_spelling_of_the_first_marker_splits_the_same(marker):
    row = {"input": f"Q? {marker} a {TAG}\nStep 2: b {TAG}", "label": f"Q? {marker} a +\nStep 2: b +"}
    assert read_math_shepherd([row])[0].steps == ("a", "b")


def test_an_ambiguous_first_marker_is_rejected_and_counted_under_skip():
    row = {"input": f"In step 1: add. Step 1: a {TAG}", "label": "In step 1: add. Step 1: a +"}
    with pytest.raises(ValueError, match=r"2 'Step 1:' markers before its first tag"):
        read_math_shepherd([row])
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        result = read_math_shepherd([row, {"input": f"Q? Step 1: a {TAG}", "label": "Q? Step 1: a +"}], on_error="skip")
    assert len(result) == 1 and result.n_skipped == 1


def test_writers_take_the_labelled_prefix_of_a_phase_2_row_and_count_the_rest():
    samples = read_prm800k(fixture_path("prm800k"))
    with pytest.raises(ValueError, match=r"samples\[1\]: labels\[2\] is None"):
        write_trl_stepwise(samples, io.StringIO())
    out = io.StringIO()
    with pytest.warns(UserWarning, match="1 unlabelled steps not written, 0 samples left out"):
        written = write_trl_stepwise(samples, out, unlabelled="prefix")
    assert written == 3 and written.n_cut_steps == 1 and written.left_out == []
    out.seek(0)
    back = read_trl_stepwise(out)
    assert back[1].labels == (1.0, 0.0) and back[1].steps == samples[1].steps[:2]
    unlabelled_first = StepSample("q", ["a", "b"], labels=[None, 1.0])
    with pytest.warns(UserWarning, match="1 samples left out"):
        written = write_math_shepherd([unlabelled_first, *samples], io.StringIO(), unlabelled="prefix")
    assert written == 3 and written.left_out == [0] and written.n_cut_steps == 3
    with pytest.raises(ValueError, match="unlabelled='drop' must be one of"):
        write_trl_stepwise(samples, io.StringIO(), unlabelled="drop")


def test_a_bad_unlabelled_value_raises_even_with_nothing_to_write():
    with pytest.raises(ValueError, match="unlabelled='bogus' must be one of"):
        write_trl_stepwise([], io.StringIO(), unlabelled="bogus")


# ---------------------------------------------------------------- writes are whole or nothing; bytes decoded per line

WRITERS = {"prm800k": write_prm800k, "math_shepherd": write_math_shepherd, "trl_stepwise": write_trl_stepwise,
           "processbench": write_processbench}


def test_write_processbench_numpy_integer_in_meta_raises_naming_the_field_and_keeps_the_old_file(tmp_path):
    import numpy as np

    path = tmp_path / "processbench.jsonl"
    old = [StepSample("3 + 4?", ["3 + 4 = 7."], labels=[1.0], meta={"id": "old-0"})]
    write_processbench(old, path)
    before = path.read_bytes()
    samples = [StepSample("1 + 2?", ["1 + 2 = 3."], labels=[1.0], meta={"id": "a"}),
               StepSample("2 + 2?", ["2 + 2 = 4."], labels=[1.0], meta={"id": np.int64(1)})]
    with pytest.raises(ValueError, match=r"write_processbench: samples\[1\]\.meta\['id'\]=np\.int64\(1\) has type "
                                         r"int64.*convert numpy scalars with int\(\)/float\(\) or \.item\(\)"):
        write_processbench(samples, path)
    assert path.read_bytes() == before  # before: only the first new row, the old contents gone


META_FIELD = {"prm800k": "labeler", "math_shepherd": "task", "processbench": "final_answer_correct"}


@pytest.mark.parametrize("name", sorted(META_FIELD))
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_writer_unserialisable_meta_value_raises_naming_it_and_keeps_the_old_file(name, suffix, tmp_path):
    import numpy as np

    samples = READERS[name](fixture_path(name))
    path = tmp_path / f"out{suffix}"
    WRITERS[name](samples, path)
    before = path.read_bytes()
    samples[1].meta[META_FIELD[name]] = np.bool_(True)
    with pytest.raises(ValueError, match=rf"samples\[1\]\.meta\['{META_FIELD[name]}'\]=np\.True_ has type bool"):
        WRITERS[name](samples, path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_writer_full_disk_half_way_keeps_the_old_file_byte_identical(name, tmp_path, monkeypatch):
    from tests.test_files import fill_disk_half_way, leftovers

    samples = READERS[name](fixture_path(name))
    path = tmp_path / "out.jsonl"
    WRITERS[name](samples[:1], path)
    before = path.read_bytes()
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        WRITERS[name](samples, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    assert len(READERS[name](path)) == 1  # and it still reads


def test_writer_text_stream_gets_one_write_of_every_row():
    class Recorder(io.StringIO):
        calls = 0

        def write(self, text):
            Recorder.calls += 1
            return super().write(text)

    out = Recorder()
    samples = read_trl_stepwise(fixture_path("trl_stepwise"))
    assert write_trl_stepwise(samples, out) == 4
    assert Recorder.calls == 1 and len(out.getvalue().splitlines()) == 4


def test_writer_value_json_cannot_hold_outside_meta_names_the_row_field():
    from prm_core.formats_io import _unwritable

    sample = StepSample("Q?", ["a"], labels=[1.0])
    message = _unwritable(sample, {"label": {"steps": [{"rating": {1, 2}}]}}, 3)
    assert message.startswith("samples[3] (row['label']['steps'][0]['rating'])={1, 2} has type set")


def _with_latin1_line(name, tmp_path, suffix=".jsonl"):
    lines = fixture_path(name).read_bytes().splitlines(keepends=True)
    path = tmp_path / f"latin1{suffix}"
    assert b'": "' in lines[1]
    path.write_bytes(lines[0] + lines[1].replace(b'": "', b'": "caf\xe9 ', 1) + b"".join(lines[2:]))  # Latin-1 é
    return path


def test_read_jsonl_latin1_byte_raises_naming_the_line_and_the_byte(tmp_path):
    path = _with_latin1_line("math_shepherd", tmp_path)
    with pytest.raises(ValueError, match=r"read_math_shepherd: line 2: is not valid UTF-8 \(byte 0xe9 at byte \d+ "
                                         r"of the line\); save the file as UTF-8"):
        read_math_shepherd(path)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_read_jsonl_latin1_byte_on_error_skip_skips_and_counts_that_line(name, tmp_path):
    path = _with_latin1_line(name, tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        result = READERS[name](path, on_error="skip")
    assert [n for n, _ in result.skipped] == [2] and "not valid UTF-8" in result.skipped[0][1]
    clean = READERS[name](fixture_path(name), on_error="skip")
    assert result.n_excluded + len(result) + 1 == clean.n_excluded + len(clean)  # only that line is lost


def test_read_json_list_with_bad_bytes_raises_naming_the_file_and_line(tmp_path):
    rows = [json.loads(line) for line in fixture_path("processbench").read_text(encoding="utf-8").splitlines()]
    path = tmp_path / "rows.json"
    path.write_bytes(json.dumps(rows, indent=1).encode().replace(b'"problem"', b'"probl\xe9m"', 1))
    with pytest.raises(ValueError, match=rf"{path}: line \d+: byte 0xe9 at byte \d+ of the file is not valid UTF-8"):
        read_processbench(path)


def test_read_json_list_invalid_json_raises_naming_the_file_and_position(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[{"prompt": "Q?",\n ]', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON \(.* at line 2, column 2\)"):
        read_trl_stepwise(path)


def test_read_text_stream_with_bad_bytes_raises_value_error_naming_where_it_stopped(tmp_path):
    path = _with_latin1_line("math_shepherd", tmp_path)
    with path.open(encoding="utf-8") as handle, pytest.raises(ValueError, match=r"cannot be decoded at line 1 or "
                                                                                r"a later one.*pass the file's path"):
        read_math_shepherd(handle)


def test_read_binary_lines_decode_like_text_lines():
    lines = fixture_path("trl_stepwise").read_bytes().splitlines(keepends=True)
    assert [_core(s) for s in read_trl_stepwise(lines)] == [_core(s) for s in read_trl_stepwise(fixture_path("trl_stepwise"))]


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_read_path_splits_lines_as_text_mode_does(newline, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(newline.join(fixture_path("processbench").read_bytes().splitlines()) + newline)
    with path.open(encoding="utf-8") as handle:
        as_text = [_core(s) for s in read_processbench(handle)]
    assert [_core(s) for s in read_processbench(path)] == as_text and len(as_text) == 4
