"""prm_core.checks, and one table of the bad arguments every public function of the numeric modules refuses.

Issue 13 ("no silent wrong number"): a NaN threshold, a bool used as an index, a float where a count
is meant, a seed ``random.Random`` would hash without a word. Each must raise a ValueError that
names the argument.
"""

import json
import re
from dataclasses import asdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.checks import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_int,
    check_probability,
    check_real,
    check_real_array,
    check_seed,
)

NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------- the checks themselves
def test_argument_type_error_is_both_a_type_error_and_a_value_error():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


@pytest.mark.parametrize("value", [3, np.int64(3)], ids=["int", "numpy-int"])
def test_check_int_returns_a_python_int_inside_the_interval(value):
    out = check_int(value, "n_bins", "[1, inf)")
    assert out == 3 and type(out) is int


CHECK_INT_TYPES = {"bool": True, "float": 3.0, "str": "3", "none": None}


@pytest.mark.parametrize("value", CHECK_INT_TYPES.values(), ids=CHECK_INT_TYPES.keys())
def test_check_int_refuses_what_is_not_an_int_with_an_argument_type_error(value):
    with pytest.raises(ArgumentTypeError, match=r"n_bins=.* must be an int in \[1, inf\)"):
        check_int(value, "n_bins", "[1, inf)")


@pytest.mark.parametrize("value,interval", [(0, "[1, inf)"), (5, "[1, 4]"), (4, "[1, 4)"), (-1, "[0, 2**63)")],
                         ids=["below", "above-closed", "open-end", "negative-seed"])
def test_check_int_outside_the_interval_raises_value_error_with_the_fix(value, interval):
    with pytest.raises(ValueError, match=r"k=.* must be an int in .*; draw more"):
        check_int(value, "k", interval, "draw more")


@pytest.mark.parametrize("value,interval,expected", [(0.5, "[0, 1]", 0.5), (1, "[0, 1]", 1.0), (INF, "[0, inf]", INF),
                                                     (-2.5, "(-inf, inf)", -2.5), (np.float32(0.25), "[0, 1]", 0.25)],
                         ids=["inside", "int", "closed-at-inf", "any", "numpy-float"])
def test_check_real_returns_a_float_inside_the_interval(value, interval, expected):
    out = check_real(value, "x", interval)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value,interval", [(NAN, "[0, 1]"), (NAN, "(-inf, inf)"), (INF, "(-inf, inf)"),
                                            (INF, "[0, inf)"), (-INF, "(-inf, inf)"), (0.0, "(0, inf)"), (1.5, "[0, 1]")],
                         ids=["nan", "nan-anywhere", "inf-anywhere", "inf-open-end", "-inf", "open-start", "above"])
def test_check_real_refuses_nan_and_what_lies_outside(value, interval):
    with pytest.raises(ValueError, match="x="):
        check_real(value, "x", interval)


@pytest.mark.parametrize("value", [True, "0.5", None, [0.5]], ids=["bool", "str", "none", "list"])
def test_check_real_refuses_what_is_not_a_real_number(value):
    with pytest.raises(ArgumentTypeError, match="threshold="):
        check_real(value, "threshold", "[0, 1]")


def test_check_real_number_as_text_says_how_yaml_reads_it():
    with pytest.raises(ArgumentTypeError, match="YAML"):
        check_real("3e-3", "learning_rate", "(0, inf)")


@pytest.mark.parametrize("text,written", [("1e-4", "1.0e-4"), ("3e-3", "3.0e-3"), ("-2E+5", "-2.0E+5")],
                         ids=["1e-4", "3e-3", "signed-upper"])
def test_check_real_exponent_text_gets_the_yaml_hint_with_its_own_digits(text, written):
    with pytest.raises(ArgumentTypeError, match=rf"in YAML, {re.escape(text)} without a dot is read as text: write "
                                                rf"{re.escape(written)}, not {re.escape(text)}"):
        check_real(text, "learning_rate")


@pytest.mark.parametrize("text", ["0.5", "3", "nan"], ids=["decimal", "int", "nan"])
def test_check_real_other_number_text_says_pass_a_number_without_the_yaml_hint(text):
    with pytest.raises(ArgumentTypeError, match="pass a number, not text") as caught:
        check_real(text, "threshold", "[0, 1]")
    assert "YAML" not in str(caught.value)


@pytest.mark.parametrize("value,written", [("1e3", "1000"), (1000.0, "1000"), ("3", "3"), (np.float64(-2.0), "-2")],
                         ids=["exponent-text", "whole-float", "int-text", "numpy-float"])
def test_check_int_whole_number_as_float_or_text_says_which_int_to_write(value, written):
    with pytest.raises(ArgumentTypeError, match=rf"must be an int, not .*; write {written} \(an int\)"):
        check_int(value, "max_steps")


def test_check_int_fraction_keeps_the_callers_fix():
    with pytest.raises(ArgumentTypeError, match="pass e.g. seed=0"):
        check_seed(0.5)


@settings(max_examples=100, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_check_probability_accepts_exactly_the_numbers_in_the_unit_interval(value):
    if 0.0 <= value <= 1.0:
        assert check_probability(value, "p") == value
    else:
        with pytest.raises(ValueError, match="p="):
            check_probability(value, "p")


@pytest.mark.parametrize("seed", [-1, 2**63, 0.5, True, "0"], ids=["negative", "too-large", "float", "bool", "str"])
def test_check_seed_refuses_what_an_rng_would_alias_or_hash(seed):
    # random.Random(-1) is random.Random(1), and random.Random(0.5) hashes the float without a word
    with pytest.raises(ValueError, match="seed="):
        check_seed(seed)


def test_check_seed_accepts_the_full_range():
    assert check_seed(0) == 0 and check_seed(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize("value", [True, False, np.bool_(True)], ids=["true", "false", "numpy"])
def test_check_bool_accepts_bools(value):
    assert check_bool(value, "is_ended") is bool(value)


@pytest.mark.parametrize("value", [1, 0, "false", None], ids=["one", "zero", "str", "none"])
def test_check_bool_refuses_what_only_looks_like_a_bool(value):
    with pytest.raises(ArgumentTypeError, match="is_ended="):
        check_bool(value, "is_ended")


@pytest.mark.parametrize("value", ["median", True, 1], ids=["unknown", "bool", "int"])
def test_check_choice_refuses_anything_not_listed_naming_the_choices(value):
    with pytest.raises(ValueError, match=r"rule=.* must be one of \['min', 'last'\]") as caught:
        check_choice(value, "rule", ["min", "last"])
    assert "YAML" not in str(caught.value)  # no choice here is a word YAML reads as a boolean


@pytest.mark.parametrize("text,quoted", [("mixed_precision: no", "'no'"), ("mixed_precision: NO", "'no'")],
                         ids=["no", "upper-case"])
def test_check_choice_yaml_boolean_for_a_word_choice_says_to_quote_it(text, quoted):
    import yaml

    from prm_core.config_checks import config_from_mapping
    from prm_core.training import TrainConfig

    values = yaml.safe_load(text)  # PyYAML reads an unquoted no as False
    with pytest.raises(ValueError, match=rf"prm: mixed_precision=False must be one of .*; quote it in YAML \({quoted}\)"):
        config_from_mapping(TrainConfig, values, "prm")


def test_check_choice_yaml_boolean_names_the_word_of_the_same_truth_value():
    with pytest.raises(ValueError, match=r"quote it in YAML \('on'\)"):
        check_choice(True, "switch", ["off", "on"])


ARRAYS = {
    "list": ([0.5, 1], [0.5, 1.0]),
    "nested": ([[0.5], [1]], [[0.5], [1.0]]),
    "numpy-int": (np.array([1, 2]), [1.0, 2.0]),
    "numpy-float16": (np.array([0.25], dtype=np.float16), [0.25]),
    "tensor-bf16": (torch.tensor([0.001], dtype=torch.bfloat16), [0.00099945068359375]),  # exact, widened
    "list-of-bf16-tensors": ([torch.tensor(0.001, dtype=torch.bfloat16), torch.tensor(0.5, dtype=torch.bfloat16)],
                             [0.00099945068359375, 0.5]),
    "nested-bf16-rows": ([torch.tensor([0.5], dtype=torch.bfloat16), [torch.tensor(0.25, dtype=torch.float16)]],
                         [[0.5], [0.25]]),
    "none-is-nan": ([None], [NAN]),
}


@pytest.mark.parametrize("values,expected", ARRAYS.values(), ids=ARRAYS.keys())
def test_check_real_array_returns_float64_values_exactly(values, expected):
    out = check_real_array(values, "scores", allow_nan=True)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.array(expected))


NOT_REAL_ARRAYS = {
    "bool-list": [True, False],
    "bool-mixed": [0.5, True],
    "bool-nested": [[0.5], [False]],
    "bool-numpy": np.array([True]),
    "bool-tensor": torch.tensor([True, False]),
    "bool-tensor-in-list": [torch.tensor(0.5), torch.tensor(True)],
    "str": ["0.5"],
    "str-numpy": np.array(["0.5"]),
    "complex": np.array([1j]),
}


@pytest.mark.parametrize("values", NOT_REAL_ARRAYS.values(), ids=NOT_REAL_ARRAYS.keys())
def test_check_real_array_refuses_bools_and_text(values):
    with pytest.raises(ArgumentTypeError, match="scores must hold real numbers"):
        check_real_array(values, "scores")


def test_check_real_array_bools_only_where_allowed():
    np.testing.assert_array_equal(check_real_array(np.array([True, False]), "labels", allow_bool=True), [1.0, 0.0])


@pytest.mark.parametrize("bad,label", [(NAN, "NaN"), (INF, "infinity"), (-INF, "infinity")], ids=["nan", "inf", "-inf"])
def test_check_real_array_non_finite_raises_naming_the_position_unless_allowed(bad, label):
    with pytest.raises(ValueError, match=rf"scores holds \[.*\] at positions \[\[0, 1\]\]; {label} is not allowed"):
        check_real_array([[0.5, bad]], "scores")
    assert check_real_array([[0.5, bad]], "scores", allow_nan=True, allow_inf=True).shape == (1, 2)


# ---------------------------------------------------------------- numpy scalars act as Python numbers
def _numpy_scalar_calls(int_wraps=(np.int64, np.int32, np.uint8), float_wraps=(np.float64, np.float32)):
    """(id, call): ``call(wrap)`` passes ``wrap(number)`` for the seed, size or threshold arguments of one
    public function or the fields of one config, and returns something comparable (JSON for configs)."""
    from prm_core.encoding import bucket_batches
    from prm_core.labeling import rollout_successes
    from prm_core.lm_policy import SamplingConfig, SFTConfig
    from prm_core.metrics import first_error_index
    from prm_core.model import HeadConfig
    from prm_core.policy_runs import PolicyRunConfig
    from prm_core.sweeps import SweepConfig
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy
    from prm_core.training import TrainConfig

    problems = make_problems(2, seed=0)
    samples = NoisyPolicy().sample_many(problems, 1, seed=0)

    def config(value):  # json.dumps raises on a numpy int or float32; repr shows a stored np.float64
        return json.dumps(asdict(value), sort_keys=True, default=str), repr(asdict(value))

    ints = {
        "make_problems": lambda w: [p.text for p in make_problems(w(2), seed=w(1))],
        "NoisyPolicy.sample_many": lambda w: [s.steps for s in NoisyPolicy().sample_many(problems, w(2), seed=w(3))],
        "bucket_batches": lambda w: bucket_batches([1, 2, 3], w(2), seed=w(1), pool_batches=w(2)),
        "rollout_successes": lambda w: [h.tolist() for h in rollout_successes(samples, problems, NoisyPolicy(), w(2),
                                                                              seed=w(3), show_progress=False)],
        "TrainConfig": lambda w: config(TrainConfig(max_steps=w(5), batch_size=w(4), warmup_steps=w(1), seed=w(2))),
        "HeadConfig": lambda w: config(HeadConfig(hidden_size=w(32), mlp_size=w(8))),
        "SweepConfig": lambda w: config(SweepConfig(train_sizes=(w(2), w(4)), seeds=(w(0), w(1)), max_steps=w(3))),
        "PolicyRunConfig": lambda w: config(PolicyRunConfig(seeds=(w(0), w(1)), n_rl_problems=w(10),
                                                            sft=SFTConfig(max_steps=w(40), seed=w(4)))),
    }
    floats = {
        "first_error_index": lambda w: first_error_index([0.9, 0.25, 0.75], w(0.5)),
        "TrainConfig": lambda w: config(TrainConfig(learning_rate=w(0.5), grad_clip=w(0.25), pos_weight=w(0.5))),
        "HeadConfig": lambda w: config(HeadConfig(hidden_size=32, dropout=w(0.25))),
        "PolicyRunConfig": lambda w: config(PolicyRunConfig(sampling=SamplingConfig(temperature=w(0.5)))),
    }
    return ([pytest.param(call, int, wrap, id=f"{name}-{wrap.__name__}") for name, call in ints.items()
             for wrap in int_wraps]
            + [pytest.param(call, float, wrap, id=f"{name}-{wrap.__name__}") for name, call in floats.items()
               for wrap in float_wraps])


@pytest.mark.parametrize("call,python,wrap", _numpy_scalar_calls())
def test_numpy_scalar_argument_or_field_gives_the_python_number_result(call, python, wrap):
    # 0.5 and 0.25 are exact in float32, so the numpy value is the Python one
    assert call(wrap) == call(python)


def int_array_0d(number):
    return np.array(number)  # int64


def int_tensor_0d(number):
    return torch.tensor(number)  # torch.int64


def float_array_0d(number):
    return np.array(number)  # float64


def float_tensor_0d(number):
    return torch.tensor(number)  # torch.float32


def bf16_tensor_0d(number):
    return torch.tensor(number, dtype=torch.bfloat16)


@pytest.mark.parametrize("call,python,wrap", _numpy_scalar_calls(
    int_wraps=(int_array_0d, int_tensor_0d), float_wraps=(float_array_0d, float_tensor_0d, bf16_tensor_0d)))
def test_0d_array_or_tensor_argument_or_field_gives_the_python_number_result(call, python, wrap):
    # before: refused with "not ndarray" / "not Tensor"; 0.5 and 0.25 are exact in bf16 too
    assert call(wrap) == call(python)


@pytest.mark.parametrize("value,expected", [(np.array(3), 3), (torch.tensor(3), 3), (np.array(3, dtype=np.uint8), 3)],
                         ids=["numpy-0d", "tensor-0d", "numpy-0d-uint8"])
def test_check_int_0d_integer_array_or_tensor_gives_a_python_int(value, expected):
    out = check_int(value, "n_bins", "[1, inf)")
    assert out == expected and type(out) is int


@pytest.mark.parametrize("value", [np.array(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float16),
                                   np.array(1)], ids=["numpy-0d", "tensor-0d", "tensor-0d-fp16", "numpy-0d-int"])
def test_check_real_0d_real_array_or_tensor_gives_a_python_float(value):
    out = check_real(value, "threshold", "[0, 1]")
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [np.array(True), torch.tensor(True), np.array([0.5]), torch.tensor([0.5]),
                                   np.array(1 + 2j), torch.tensor(1 + 2j)],
                         ids=["numpy-0d-bool", "tensor-0d-bool", "numpy-1d", "tensor-1d", "numpy-complex",
                              "tensor-complex"])
def test_check_real_array_or_tensor_that_is_not_one_real_number_is_still_refused(value):
    with pytest.raises(ArgumentTypeError, match="threshold="):
        check_real(value, "threshold", "[0, 1]")
    with pytest.raises(ArgumentTypeError, match="n="):
        check_int(value, "n")


def test_check_real_0d_tensor_outside_the_interval_raises_naming_the_value():
    with pytest.raises(ValueError, match=r"threshold=1.5 must be a finite number in \[0, 1\]"):
        check_real(torch.tensor(1.5), "threshold", "[0, 1]")


def test_check_int_0d_float_tensor_is_refused_as_the_float_it_holds():
    with pytest.raises(ArgumentTypeError, match=r"n=2.0 must be an int, not float; write 2 \(an int\)"):
        check_int(torch.tensor(2.0), "n")


def test_train_config_0d_tensor_learning_rate_is_stored_as_a_python_float():
    from prm_core.training import TrainConfig

    config = TrainConfig(learning_rate=torch.tensor(1e-3, dtype=torch.float64))
    assert config.learning_rate == 1e-3 and type(config.learning_rate) is float
    json.dumps(asdict(config))  # a tensor would not serialise


def test_sft_config_0d_tensor_max_steps_bounds_warmup_as_its_number():
    from prm_core.lm_policy import SFTConfig

    assert SFTConfig(max_steps=torch.tensor(40), warmup_steps=5).max_steps == 40
    with pytest.raises(ValueError, match=r"warmup_steps=50 must be an int in \[0, 40\]"):
        SFTConfig(max_steps=torch.tensor(40), warmup_steps=50)


def test_check_fields_stores_numpy_scalars_as_the_annotation_type_and_keeps_a_python_int_in_a_float_field():
    from prm_core.training import TrainConfig

    config = TrainConfig(max_steps=np.int64(5), learning_rate=np.float32(0.5), grad_clip=1, pos_weight=np.float64(2.0),
                         show_progress=np.bool_(False), lm_loss_weight=np.int64(0))
    assert [type(getattr(config, name)) for name in ("max_steps", "learning_rate", "grad_clip", "pos_weight",
                                                     "show_progress", "lm_loss_weight")] == [int, float, int, float,
                                                                                             bool, int]
    # a numpy int in a float field hashes as the Python int a YAML file or a user would write
    assert TrainConfig(lm_loss_weight=np.int64(0)) == TrainConfig(lm_loss_weight=0)


# ---------------------------------------------------------------- one table over the public functions
def _table():
    """(id, call, name, bad): ``call(bad)`` passes ``bad`` as argument ``name`` of one public function."""
    from matplotlib.figure import Figure

    from prm_core import (
        aggregation,
        comparison,
        data,
        encoding,
        evaluation,
        labeling,
        lm_policy,
        losses,
        metrics,
        policy_runs,
        published,
        rl,
        search,
        verification,
        viz,
        viz_rl,
        voting,
    )
    from prm_core.tasks import arithmetic, arithmetic_policy, error_kinds

    problem = arithmetic.make_problems(1, seed=0)[0]
    sample = data.StepSample("q", ["a", "b"], labels=[1.0, 0.0], meta={"problem_id": 0})
    scored = verification.StepScores(torch.tensor([[0.9, 0.2]]), torch.ones(1, 2, dtype=torch.bool))
    mask = torch.ones(1, 2, dtype=torch.bool)
    answers, correct, scores = np.array([[1, 2]]), np.array([[True, False]]), np.array([[0.9, 0.1]])
    hits = [np.array([[True, False], [True, True]])]
    z = torch.zeros(1, 2)
    run = {"evals": [{"update": 0, "per_problem": [0.5, 1.0]}], "updates": []}

    rows = [
        # metrics
        ("step_accuracy", lambda v: metrics.step_accuracy([0.9, 0.1], [1, 0], v), "threshold", [NAN, True, "0.5"]),
        ("step_auroc", lambda v: metrics.step_auroc(v, [1, 0]), "scores", [np.array([True, False]), ["0.9", "0.1"]]),
        ("reliability_bins", lambda v: metrics.reliability_bins([0.9], [1], v), "n_bins", [2.0, True, 0, "10"]),
        ("expected_calibration_error", lambda v: metrics.expected_calibration_error([0.9], [1], v), "n_bins", [2.5]),
        ("first_error_index", lambda v: metrics.first_error_index([0.9, 0.1], v), "threshold", [NAN, True, INF]),
        ("first_error_index", lambda v: metrics.first_error_index(v), "step_scores", [[True, False], [0.9, NAN]]),
        ("first_error_f1", lambda v: metrics.first_error_f1(v, [-1, 1]), "pred", [[False, True], [1.5, 1], [INF, 1]]),
        ("first_error_f1", lambda v: metrics.first_error_f1([-1, 1], v), "true", [np.array([False, True])]),
        ("threshold_sweep", lambda v: metrics.threshold_sweep([[0.9, 0.1]], [1], v), "thresholds", [[NAN], [True], 0.5]),
        ("threshold_sweep", lambda v: metrics.threshold_sweep([[0.9, 0.1]], v, [0.5]), "true_first_errors", [[True]]),
        ("best_threshold", lambda v: metrics.best_threshold([[0.9, 0.1]], [1], v), "thresholds", [[0.5, NAN]]),
        ("detection_rate_by_kind", lambda v: metrics.detection_rate_by_kind([[0.9, 0.1]], [1], ["slip"], v),
         "threshold", [NAN, True]),
        ("bootstrap_ci", lambda v: metrics.bootstrap_ci(v), "per_problem", [[True, False], ["1"]]),
        ("bootstrap_ci", lambda v: metrics.bootstrap_ci([1.0, 0.0], v), "n_bootstrap", [2.5, True, 0]),
        ("bootstrap_ci", lambda v: metrics.bootstrap_ci([1.0, 0.0], 10, v), "seed", [-1, 0.5, True, "0"]),
        ("bootstrap_statistic_ci", lambda v: metrics.bootstrap_statistic_ci(lambda i: 0.0, [0, 1], 10, v), "seed",
         [-1, 1.5]),
        ("bootstrap_statistic_ci", lambda v: metrics.bootstrap_statistic_ci(lambda i: 0.0, [0, 1], v), "n_bootstrap",
         [1.0]),
        ("best_of_n_curve", lambda v: metrics.best_of_n_curve(answers, correct, scores, "best_of_n", seed=v), "seed",
         [-1, 0.5]),
        ("best_of_n_curve", lambda v: metrics.best_of_n_curve(answers, correct, scores, "best_of_n", n_bootstrap=v),
         "n_bootstrap", [True]),
        ("best_of_n_curve", lambda v: metrics.best_of_n_curve(answers, correct, scores, "best_of_n", ns=v), "ns",
         [[1.5], [True]]),
        ("best_of_n_curve", lambda v: metrics.best_of_n_curve(answers, correct, scores, v), "method", [True, "max"]),
        ("per_problem_accuracy", lambda v: metrics.per_problem_accuracy(answers, correct, v, "weighted"), "scores",
         [np.array([[True, False]]), np.array([[INF, 0.1]]), np.array([[NAN, 0.1]])]),
        ("paired_difference", lambda v: metrics.paired_difference([1.0], [0.0], 10, v), "seed", [-1]),
        ("paired_difference", lambda v: metrics.paired_difference(v, [0.0]), "a", [[True]]),
        # aggregation and voting
        ("aggregate", lambda v: aggregation.aggregate(torch.rand(1, 2), mask, v), "rule", [True, "median"]),
        ("aggregate", lambda v: aggregation.aggregate(v, mask, "min"), "step_scores",
         [torch.tensor([[True, False]]), torch.tensor([[0.5, NAN]])]),
        ("aggregate", lambda v: aggregation.aggregate(torch.rand(1, 2), v, "min"), "mask", [torch.ones(1, 2)]),
        ("best_of_n", lambda v: voting.best_of_n(v), "scores", [[0.1, NAN], [INF, 0.2], [-INF, 0.2], [True, False]]),
        ("weighted_vote", lambda v: voting.weighted_vote([1, 1, 2], v), "scores", [[INF, -INF, 0.5], [True, 1, 0]]),
        ("select_many", lambda v: voting.select_many(answers, v, "weighted"), "scores", [np.array([[INF, 0.5]])]),
        ("select_many", lambda v: voting.select_many(answers, scores, v), "method", [True, "oracle"]),
        # verification and evaluation
        ("StepScores.first_error_predictions", lambda v: scored.first_error_predictions(v), "threshold",
         [NAN, True, 1.5, "0.5"]),
        ("StepScores.solution_scores", lambda v: scored.solution_scores("min", v), "truncated", [True, "drop"]),
        ("StepScores.solution_scores", lambda v: scored.solution_scores(v), "rule", [True]),
        ("processbench_report", lambda v: evaluation.processbench_report(None, [sample], v), "threshold", [NAN, True]),
        ("processbench_report", lambda v: evaluation.processbench_report(None, [sample], batch_size=v), "batch_size",
         [0, 2.0, True]),
        ("processbench_report", lambda v: evaluation.processbench_report(None, [sample], truncated=v), "truncated",
         ["lowest", True]),
        ("first_error_report", lambda v: evaluation.first_error_report(scored, [sample], v), "threshold", [NAN, True]),
        ("answer_arrays", lambda v: evaluation.answer_arrays([sample], v), "n_candidates", [0, 1.0, True]),
        ("padded_labels", lambda v: evaluation.padded_labels([sample], v), "n_steps", [1, 2.0, True]),
        ("candidates_per_problem", lambda v: evaluation.candidates_per_problem(v), "bon",
         [[sample, sample, data.StepSample("q", ["a"], meta={"problem_id": 1})], []]),
        ("best_of_n_report", lambda v: evaluation.best_of_n_report(None, None, [], 1, n_bootstrap=v), "n_bootstrap",
         [0, 1.5]),
        ("best_of_n_report", lambda v: evaluation.best_of_n_report(None, None, [], 1, seed=v), "seed", [-1, 0.5]),
        ("flag_rate_by_kind", lambda v: evaluation.flag_rate_by_kind(scored, [sample], ["min"], v), "threshold",
         [NAN, True]),
        ("search_vs_best_of_n", lambda v: evaluation.search_vs_best_of_n({}, scored, [], seed=v), "seed", [0.5]),
        ("scoring_throughput", lambda v: evaluation.scoring_throughput(None, [], 8, v), "repeats", [0, 1.5]),
        ("score_datasets", lambda v: evaluation.score_datasets({}, None, v), "batch_size", [0, True]),
        ("comparison_metrics", lambda v: comparison.comparison_metrics(None, None, "prm", threshold=v), "threshold",
         [NAN, True, 5.0]),
        ("comparison_metrics", lambda v: comparison.comparison_metrics(None, None, v), "kind", [True, "both"]),
        ("comparison_metrics", lambda v: comparison.comparison_metrics(None, None, "prm", n_bootstrap=v),
         "n_bootstrap", [0, 2.0]),
        ("prm_minus_orm", lambda v: comparison.prm_minus_orm(None, None, seed=v), "seed", [-1, 0.5]),
        ("baselines_by_rows", lambda v: comparison.baselines_by_rows(None, None, n_bootstrap=v), "n_bootstrap", [True]),
        ("by_n_operations", lambda v: comparison.by_n_operations(None, None, seed=v), "seed", [1.5]),
        ("separation", lambda v: comparison.separation({"ci_low": v, "ci_high": 1.0}, {"ci_low": 0.0, "ci_high": 0.1}),
         "ci_low", [NAN, True]),
        # search, labeling, rl, losses, data, encoding
        ("keep_top", lambda v: search.keep_top(["a", "b"], v, 1), "scores", [[0.2, NAN], [True, False]]),
        ("keep_top", lambda v: search.keep_top(["a", "b"], [0.2, 0.9], v), "beam_width", [True, 2.0, 0]),
        ("beam_search", lambda v: search.beam_search([problem], None, None, show_progress=v), "show_progress", ["no"]),
        ("rollout_successes", lambda v: labeling.rollout_successes([], [], None, v), "n_rollouts", [0, True, 2.0]),
        ("rollout_successes", lambda v: labeling.rollout_successes([], [], None, 2, seed=v), "seed", [0.5, -1, "a"]),
        ("monte_carlo_labels", lambda v: labeling.monte_carlo_labels(hits, v, "soft"), "k", [True, 1.0, 3]),
        ("monte_carlo_labels", lambda v: labeling.monte_carlo_labels(hits, 1, v), "kind", [True, "mean"]),
        ("monte_carlo_labels", lambda v: labeling.monte_carlo_labels(v, 1, "soft"), "successes",
         [[np.array([[0.3, 0.9]])]]),
        ("label_agreement", lambda v: labeling.label_agreement(v, [[1.0]]), "labels", [[[NAN]], [[True]], [[1.5]]]),
        ("group_advantages", lambda v: rl.group_advantages(v), "rewards", [[True, False], [1.0, NAN]]),
        ("process_advantages", lambda v: rl.process_advantages(v), "step_rewards", [[[True]], [[INF]]]),
        ("token_advantages", lambda v: rl.token_advantages([0.5], v, 3), "step_ends", [[1.0], [True], [-1]]),
        ("token_advantages", lambda v: rl.token_advantages([0.5], [0], v), "n_tokens", [True, 2.0]),
        ("token_advantages", lambda v: rl.token_advantages(v, [0], 2), "step_advantages", [[INF], [True]]),
        ("batch_advantages", lambda v: rl.batch_advantages("outcome", rl.Rewards([]), [], v), "group_size",
         [True, 0, 2.0]),
        ("batch_advantages", lambda v: rl.batch_advantages(v, rl.Rewards([]), [], 1), "reward", ["score"]),
        ("compute_rewards", lambda v: rl.compute_rewards(v, [], {}), "reward", [True, "score"]),
        ("grpo_loss", lambda v: rl.grpo_loss(z, z, z, z, z, v, 0.04), "clip_eps", [NAN, 1.0, True]),
        ("grpo_loss", lambda v: rl.grpo_loss(z, z, z, z, z, 0.2, v), "kl_coef", [NAN, -1.0, True]),
        ("evaluate_policy", lambda v: rl.evaluate_policy(None, [problem], 0, v), "n_samples", [0, True]),
        ("evaluate_policy", lambda v: rl.evaluate_policy(None, [problem], v), "seed", [-1, 0.5]),
        ("train_rl", lambda v: rl.train_rl(None, [], [], rl.RLConfig(), eval_samples=v), "eval_samples", [0, 1.0]),
        ("step_bce_loss", lambda v: losses.step_bce_loss(z, z, mask, pos_weight=v), "pos_weight", [NAN, True, 0.0, INF]),
        ("step_bce_loss", lambda v: losses.step_bce_loss(z, v, mask), "labels",
         [torch.tensor([[NAN, 1.0]]), torch.tensor([[1.5, 1.0]])]),
        ("step_bce_loss", lambda v: losses.step_bce_loss(z, z, v), "label_mask", [torch.ones(1, 2)]),
        ("step_bce_loss", lambda v: losses.step_bce_loss(z, z, mask, use_mask_after_first_error=v),
         "use_mask_after_first_error", [1, "yes"]),
        ("mask_after_first_error", lambda v: losses.mask_after_first_error(z, mask, v), "threshold", [NAN, True, 2.0]),
        ("outcome_sample", lambda v: losses.outcome_sample(sample, v), "is_correct", [1.0, "yes"]),
        ("StepSample.first_error_index", lambda v: sample.first_error_index(v), "threshold", [NAN, True, 1.5]),
        ("bucket_batches", lambda v: encoding.bucket_batches([3, 1, 2], v), "batch_size", [True, 2.0, 0]),
        ("bucket_batches", lambda v: encoding.bucket_batches([3, 1, 2], 2, seed=v), "seed", [-1, 0.5, True]),
        ("bucket_batches", lambda v: encoding.bucket_batches([3, 1, 2], 2, seed=0, pool_batches=v), "pool_batches",
         [0, 1.5]),
        # tasks
        ("make_problems", lambda v: arithmetic.make_problems(v, seed=0), "n", [True, 2.0, 0]),
        ("make_problems", lambda v: arithmetic.make_problems(1, seed=v), "seed", [0.5, -1, "a", True]),
        ("make_problems", lambda v: arithmetic.make_problems(1, seed=0, split=v), "split", [True, "val"]),
        ("make_splits", lambda v: arithmetic.make_splits(v, 1, seed=0), "n_train", [True, 1.0]),
        ("make_splits", lambda v: arithmetic.make_splits(1, 1, seed=v), "seed", [0.5]),
        ("apply_op", lambda v: arithmetic.apply_op(12, "+", v), "operand", [0.5, True]),
        ("apply_op", lambda v: arithmetic.apply_op(12, "÷", v), "operand", [0]),
        ("apply_op", lambda v: arithmetic.apply_op(v, "+", 1), "value", [1.5, True]),
        ("format_step", lambda v: arithmetic.format_step(v, "+", 2, 3), "a", [True, 1.0]),
        ("NoisyPolicy.sample_many", lambda v: arithmetic_policy.NoisyPolicy().sample_many([problem], v, 0),
         "n_samples", [True, 1.0]),
        ("NoisyPolicy.sample_many", lambda v: arithmetic_policy.NoisyPolicy().sample_many([problem], 1, v), "seed",
         [0.5, -1]),
        ("NoisyPolicy.sample", lambda v: arithmetic_policy.NoisyPolicy().sample(problem, __import__("random").Random(0),
                                                                               max_ops=v), "max_ops", [True, 1.5, 0]),
        ("first_error_kind", lambda v: error_kinds.first_error_kind(problem, ["1 + 1 = 2."], v), "is_ended",
         ["False", 1]),
        # figures
        ("plot_step_scores", lambda v: viz.plot_step_scores(["a"], [0.5], threshold=v, ax=Figure().subplots()),
         "threshold", [NAN, True, 1.5]),
        ("plot_step_scores", lambda v: viz.plot_step_scores(["a"], [0.5], max_chars=v, ax=Figure().subplots()),
         "max_chars", [2.5, 1, True]),
        ("plot_step_scores", lambda v: viz.plot_step_scores(["a", "b"], v, ax=Figure().subplots()), "scores",
         [[True, False]]),
        ("plot_detection_by_kind", lambda v: viz.plot_detection_by_kind({"slip": v}, ax=Figure().subplots()),
         "count", [(0.5, 2.7), (0.5, True)]),
        ("plot_detection_by_kind", lambda v: viz.plot_detection_by_kind({"slip": v}, ax=Figure().subplots()),
         "rate", [(True, 3), ("0.5", 3)]),
        ("plot_rl_curves", lambda v: viz_rl.plot_rl_curves({"prm": {"update": [0], "accuracy": [0.5]}}, baseline=v,
                                                           ax=Figure().subplots()), "baseline", [NAN, True, INF]),
        # the LM policy's functions, summaries of RL runs, a published PRM's batch size
        ("labelled_sample", lambda v: lm_policy.labelled_sample(problem, ["1 + 1 = 2."], v), "is_ended", ["yes", 1]),
        ("labelled_sample", lambda v: lm_policy.labelled_sample(problem, ["1 + 1 = 2."], True, v), "n_prefix_steps",
         [-1, 1.0]),
        ("sft_batch", lambda v: lm_policy.sft_batch([([7, 8], 1)], v), "pad_id", [True, -1, 0.0]),
        ("split_completion", lambda v: lm_policy.split_completion([5, 9, 1], v, 1), "step_tag_id", [9.0, True]),
        ("split_completion", lambda v: lm_policy.split_completion([5, 9, 1], 9, v), "eos_id", [1.0]),
        ("sft_batch", lambda v: lm_policy.sft_batch([([7, 8], v)], 0), "solution_start", [3, 1.0]),
        ("rl_gain", lambda v: policy_runs.rl_gain(v, "prm"), "results", [{}, []]),
        ("rl_gain", lambda v: policy_runs.rl_gain({"outcome": [run]}, v), "reward", ["prm"]),
        ("rl_gain", lambda v: policy_runs.rl_gain({"prm": [run]}, "prm", v), "key", ["accuracy"]),
        ("rl_gain", lambda v: policy_runs.rl_gain({"prm": v}, "prm"), r"results\['prm'\]", [[], [{"evals": []}]]),
        ("rl_difference", lambda v: policy_runs.rl_difference({"prm": [run]}, "prm", v), "reward", ["orm"]),
        ("rl_curves", lambda v: policy_runs.rl_curves(v), "results", [{}, None]),
        ("step_auroc_ci", lambda v: policy_runs.step_auroc_ci(scored, v), "samples", [[], [sample, sample]]),
        ("step_auroc_ci", lambda v: policy_runs.step_auroc_ci(v, [sample]), "scores", [[[0.9, 0.2]]]),
        ("PublishedPRM.score_steps", lambda v: published.PublishedPRM.score_steps(object(), [sample], batch_size=v),
         "batch_size", [0, True, 8.0]),  # the check comes before the scorer (here a bare object) is used
    ]
    out = []
    for function, call, name, bads in rows:
        for bad in bads:
            label = repr(bad) if not hasattr(bad, "shape") else f"{type(bad).__name__}-{bad.dtype}"
            out.append(pytest.param(call, name, bad, id=f"{function}-{name}-{label}"[:80]))
    return out


@pytest.mark.parametrize("call,name,bad", _table())
def test_public_function_bad_argument_raises_value_error_naming_it(call, name, bad):
    with pytest.raises(ValueError, match=name):
        call(bad)


# ---------------------------------------------------------------- a wrong type is an ArgumentTypeError everywhere
def _wrong_type_calls():
    """name -> call(tiny_backbone) passing one argument of the wrong type to a public constructor or function."""
    import copy
    import random

    from prm_core.data import StepSample
    from prm_core.encoding import StepEncoder
    from prm_core.model import ProcessRewardModel
    from prm_core.tasks import arithmetic, arithmetic_policy, error_kinds

    problem = arithmetic.make_problems(1, seed=0)[0]
    return {
        "ProcessRewardModel-encoder": lambda tiny: ProcessRewardModel(tiny[0], {"step_tag": "<|step|>"}),
        "StepEncoder.encode_many-samples": lambda tiny: StepEncoder(copy.deepcopy(tiny[1])).encode_many(
            [{"problem": "q", "steps": ["a"]}]),
        "NoisyPolicy-config": lambda tiny: arithmetic_policy.NoisyPolicy({"p_slip": 0.1}),
        "NoisyPolicy.sample-prefix": lambda tiny: arithmetic_policy.NoisyPolicy().sample(
            problem, random.Random(0), prefix="12 + 5 = 17."),
        "first_error_kind-steps": lambda tiny: error_kinds.first_error_kind(problem, "12 + 5 = 17."),
        "answer_value-answer": lambda tiny: arithmetic.answer_value(14.0),
        "grade_answer-answer": lambda tiny: arithmetic.grade_answer(14.0, problem),
        "StepSample-problem": lambda tiny: StepSample(5, ["a"]),
    }


@pytest.mark.parametrize("name", list(_wrong_type_calls()))
def test_wrong_type_raises_argument_type_error_so_except_value_error_catches_it(name, tiny_backbone):
    # before: a plain TypeError, which the module docstring's `except ValueError` would not catch
    with pytest.raises(ArgumentTypeError, match="type|must be"):
        _wrong_type_calls()[name](tiny_backbone)


# ---------------------------------------------------------------- the message shape, public; bools by dtype
def test_bad_value_message_gives_name_value_rule_and_fix_in_one_shape():
    from prm_core.checks import bad_value_message

    assert bad_value_message("n_bins", 0, "must be an int in [1, inf)", "pass e.g. n_bins=10") == \
        "n_bins=0 must be an int in [1, inf); pass e.g. n_bins=10."
    assert bad_value_message("x", "a", "must be None", "") == "x='a' must be None."


def test_check_real_array_number_whose_dtype_text_mentions_bool_is_still_a_number():
    class LabelledFloat(float):
        dtype = "float64 (not a boolean)"  # before: '"bool" in str(dtype)' read it as a bool

    assert check_real_array([LabelledFloat(0.5)], "scores").tolist() == [0.5]


@pytest.mark.parametrize("value", [np.bool_(True), np.array([True]), torch.tensor([False]), [torch.tensor(True)]],
                         ids=["numpy-bool", "numpy-bool-array", "torch-bool-tensor", "list-of-torch-bool"])
def test_check_real_array_numpy_and_torch_bools_are_refused_by_their_dtype(value):
    with pytest.raises(ArgumentTypeError, match="not bools"):
        check_real_array(value, "scores")
