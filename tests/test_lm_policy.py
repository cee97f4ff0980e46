"""LMPolicy: completions are split at step tags exactly, labelled and graded like the noisy policy's,
malformed ones are kept and counted, left padding does not change what a prompt generates, SFT
learns only the solution tokens, and the search takes the LM policy."""

import copy
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.lm_policy import (
    EMPTY_STEP,
    LMPolicy,
    SamplingConfig,
    SFTConfig,
    labelled_sample,
    sft,
    sft_batch,
    split_completion,
    well_formed_rate,
)
from prm_core.tasks.arithmetic import (
    ArithmeticProblem,
    Operation,
    check_steps,
    make_problems,
    reference_solution,
)

TAG, EOS = 9, 1


@pytest.fixture(scope="module")
def tiny_policy(course_backbone):
    """A small random Qwen2 causal LM on the course tokenizer (seeded)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _, tokenizer, _ = course_backbone
    tokenizer = copy.deepcopy(tokenizer)
    config = Qwen2Config(vocab_size=len(tokenizer) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return LMPolicy(Qwen2ForCausalLM(config).eval(), tokenizer, SamplingConfig(max_new_tokens=24, max_step_tokens=8))


@pytest.fixture(scope="module")
def problems():
    return make_problems(6, seed=3)


@given(st.lists(st.lists(st.integers(2, 8), min_size=1, max_size=4), min_size=1, max_size=5),
       st.booleans(), st.lists(st.integers(0, 8), max_size=3))
def test_split_completion_recovers_the_steps_and_ignores_what_follows_eos(steps, is_ended, after):
    ids = [t for step in steps for t in [*step, TAG]] + ([EOS, *after] if is_ended else [])
    got, ends, ended = split_completion(ids, TAG, EOS)
    assert got == steps and ended == is_ended
    assert all(ids[e] == TAG for e in ends[:-1])
    assert ends[-1] == (len(steps) + sum(map(len, steps)) if is_ended else len(ids) - 1)


def test_split_completion_keeps_an_unended_tail_as_a_step():
    assert split_completion([4, 5, TAG, 6, 7], TAG, EOS) == ([[4, 5], [6, 7]], [2, 4], False)


def test_split_completion_eos_first_is_one_empty_step_ending_at_eos():
    assert split_completion([EOS, 4], TAG, EOS) == ([[]], [0], True)


def test_labelled_sample_a_malformed_solution_states_no_answer():
    sample = labelled_sample(_problem(), ["12 + 2 = 14.", "Then 14 × 3 = 42."], is_ended=False)
    assert sample.answer is None  # no vote or best-of-N pick can credit it


def _problem() -> ArithmeticProblem:
    return ArithmeticProblem(0, 12, (Operation("+", 2), Operation("×", 3)), "Mei has 12 coins. ...")


def test_labelled_sample_an_unended_solution_is_wrong_even_on_the_right_value():
    sample = labelled_sample(_problem(), ["12 + 2 = 14.", "Then 14 × 3 = 42."], is_ended=False)
    assert sample.labels == (1.0, 1.0)  # the steps are right; the solution did not end
    assert not sample.meta["is_correct_answer"] and not sample.meta["is_well_formed"]


def test_labelled_sample_an_unparseable_step_is_labelled_wrong_and_malformed():
    sample = labelled_sample(_problem(), ["12 + 2 = 14.", "so it is 42"], is_ended=True)
    assert sample.labels == (1.0, 0.0) and not sample.meta["is_well_formed"]


def test_labelled_sample_blank_and_missing_steps_become_a_marked_wrong_step():
    assert labelled_sample(_problem(), [], is_ended=True).steps == (EMPTY_STEP,)
    sample = labelled_sample(_problem(), ["12 + 2 = 14.", "  "], is_ended=True)
    assert sample.steps[1] == EMPTY_STEP and sample.labels[1] == 0.0


def test_labelled_sample_the_reference_solution_is_right_and_well_formed():
    p = _problem()
    sample = labelled_sample(p, reference_solution(p), is_ended=True)
    assert sample.meta["is_correct_answer"] and sample.meta["is_well_formed"] and sample.labels == (1.0, 1.0)


def test_sample_many_keeps_every_sample_labels_them_exactly_and_counts_malformed(tiny_policy, problems):
    samples = tiny_policy.sample_many(problems, n_samples=3, seed=0)
    assert len(samples) == 18
    assert [s.meta["problem_id"] for s in samples] == [p.problem_id for p in problems for _ in range(3)]
    for s in samples:
        problem = problems[s.meta["problem_id"]]
        assert list(s.labels) == check_steps(problem, s.steps)
        assert not s.meta["is_correct_answer"] or s.meta["is_well_formed"]
    assert well_formed_rate(samples) == sum(s.meta["is_well_formed"] for s in samples) / 18


def test_sample_many_same_seed_same_samples_and_another_seed_differs(tiny_policy, problems):
    first = [s.steps for s in tiny_policy.sample_many(problems, 2, seed=4)]
    assert first == [s.steps for s in tiny_policy.sample_many(problems, 2, seed=4)]
    assert first != [s.steps for s in tiny_policy.sample_many(problems, 2, seed=5)]


def test_greedy_output_of_a_prompt_does_not_depend_on_the_longer_prompts_padded_beside_it(tiny_policy):
    short, long = make_problems(40, seed=1)[:2], sorted(make_problems(40, seed=1), key=lambda p: -len(p.text))[:3]
    prompts = [tiny_policy.prompt_ids(p) for p in short]
    alone = [tiny_policy.generate_ids([p], seed=0, greedy=True)[0] for p in prompts]
    batched = tiny_policy.generate_ids([*prompts, *[tiny_policy.prompt_ids(p) for p in long]], seed=0, greedy=True)
    assert batched[:2] == alone


def test_prompt_ids_with_prefix_end_with_the_step_tag_and_extend_the_bare_prompt(tiny_policy, problems):
    bare = tiny_policy.prompt_ids(problems[0])
    with_prefix = tiny_policy.prompt_ids(problems[0], ["1 + 1 = 2."])
    assert with_prefix[: len(bare)] == bare and with_prefix[-1] == tiny_policy.step_tag_id


def test_one_step_sample_adds_exactly_one_step_to_the_prefix(tiny_policy, problems):
    prefix = reference_solution(problems[0])[:1]
    sample = tiny_policy.sample(problems[0], random.Random(0), prefix=prefix, max_ops=1)
    assert sample.steps[:1] == tuple(prefix) and sample.n_steps == 2
    assert list(sample.labels) == check_steps(problems[0], sample.steps)


def test_sample_max_ops_other_than_one_raises(tiny_policy, problems):
    with pytest.raises(ValueError, match="max_ops=2"):
        tiny_policy.sample(problems[0], random.Random(0), max_ops=2)


@pytest.mark.parametrize("max_ops", [np.int64(1), np.array(1), torch.tensor(1)], ids=["numpy-int", "numpy-0d", "tensor-0d"])
def test_sample_max_ops_one_as_numpy_or_tensor_writes_one_step_as_max_ops_1_does(tiny_policy, problems, max_ops):
    # before: "max_ops=np.int64(1) must be None (a whole solution) or 1 (one step)"
    prefix = reference_solution(problems[0])[:1]
    sample = tiny_policy.sample(problems[0], random.Random(0), prefix=prefix, max_ops=max_ops)
    assert sample == tiny_policy.sample(problems[0], random.Random(0), prefix=prefix, max_ops=1)


@pytest.mark.parametrize("max_ops", [True, 1.0, 0], ids=["bool", "float", "zero"])
def test_sample_max_ops_that_is_not_the_int_one_raises_naming_it(tiny_policy, problems, max_ops):
    with pytest.raises(ValueError, match=r"max_ops=.* must be an int in \[1, 1\].*pass None \(a whole solution\) or 1"):
        tiny_policy.sample(problems[0], random.Random(0), max_ops=max_ops)


@pytest.mark.parametrize("kwargs", [{"sampling": "greedy"}, {"model": object()}], ids=["sampling", "model"])
def test_lm_policy_wrong_type_raises_argument_type_error_which_except_value_error_catches(tiny_policy, kwargs):
    from prm_core.checks import ArgumentTypeError

    args = {"model": tiny_policy.model, "tokenizer": tiny_policy.tokenizer, **kwargs}
    with pytest.raises(ArgumentTypeError, match="has type"):
        LMPolicy(**args)


@pytest.mark.parametrize("call, match", [
    (lambda pol, probs: pol.sample_many(["1 + 1"], 1, seed=0), r"problems\[0\] is a str"),
    (lambda pol, probs: pol.sample_many("1 + 1", 1, seed=0), "non-empty list of ArithmeticProblem"),
    (lambda pol, probs: pol.sample_many(probs[:1], 1, seed=2**70), r"seed=.* must be an int in \[0, 2\*\*63\)"),
    (lambda pol, probs: pol.sample_many(probs[:1], 1, seed=-1), "seed=-1"),
    (lambda pol, probs: pol.sample(probs[0], 0), "rng is a int; pass a random.Random"),
    (lambda pol, probs: pol.extend_many([probs[0]], [], seed=0), "prefixes has 0"),
])
def test_bad_sampling_input_raises_naming_the_argument(tiny_policy, problems, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_policy, problems)


def test_extend_many_with_no_requests_returns_nothing(tiny_policy):
    assert tiny_policy.extend_many([], [], seed=0) == []


def test_policy_without_an_lm_head_raises(course_backbone):
    model, tokenizer, _ = course_backbone
    with pytest.raises(TypeError, match="AutoModelForCausalLM"):
        LMPolicy(model, tokenizer)


@pytest.mark.parametrize(("field", "value"), [("temperature", 0.0), ("top_p", 1.5), ("max_new_tokens", 0),
                                              ("batch_size", True)], ids=["temperature", "top_p", "budget", "bool"])
def test_sampling_config_bad_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("noisy_share", 1.2), ("max_steps", 0), ("learning_rate", float("nan"))],
                         ids=["share", "steps", "nan-lr"])
def test_sft_config_bad_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_sft_batch_masks_the_problem_and_the_padding():
    batch = sft_batch([([7, 8, 9, 1], 2), ([7, 5, 1], 1)], pad_id=0)
    assert batch["labels"].tolist() == [[-100, -100, 9, 1], [-100, 5, 1, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_sft_lowers_the_loss_and_teaches_the_policy_to_stop(tiny_policy, problems):
    from prm_core.data import StepSample

    policy = copy.deepcopy(tiny_policy)
    policy.sampling = SamplingConfig(max_new_tokens=64)
    train = [StepSample(p.text, reference_solution(p)) for p in make_problems(30, seed=9, config=_short())]
    before = policy.sample_many(make_problems(10, seed=9, config=_short()), 1, seed=0, greedy=True)
    info = sft(policy, train, SFTConfig(max_steps=80, batch_size=16, learning_rate=1e-2, show_progress=False))
    assert info["history"][-1]["loss"] < 0.5 * info["history"][0]["loss"]
    after = policy.sample_many(make_problems(10, seed=9, config=_short()), 1, seed=0, greedy=True)
    # it learned the format: step tags and EOS after the last one
    assert sum(s.meta["is_ended"] for s in before) == 0 and sum(s.meta["is_ended"] for s in after) >= 5, \
        [s.steps for s in after]


def _short():
    from prm_core.tasks.arithmetic import ProblemConfig

    return ProblemConfig(min_ops=2, max_ops=2)


def test_beam_search_takes_the_lm_policy_and_grades_what_it_returns(tiny_policy, problems):
    from prm_core.search import BeamSearchConfig, beam_search

    class ByLength:  # a stand-in verifier: shorter last steps score higher
        def score_steps(self, samples):
            from prm_core.verification import StepScores

            n = max(s.n_steps for s in samples)
            scores = torch.zeros(len(samples), n)
            mask = torch.zeros(len(samples), n, dtype=torch.bool)
            for i, s in enumerate(samples):
                scores[i, : s.n_steps] = torch.tensor([1 / (1 + len(t)) for t in s.steps])
                mask[i, : s.n_steps] = True
            return StepScores(scores, mask)

    results = beam_search(problems[:3], tiny_policy, ByLength(), BeamSearchConfig(beam_width=2, expansions=2),
                          show_progress=False)
    assert len(results) == 3
    for problem, result in zip(problems[:3], results, strict=True):
        assert list(result.solution.labels) == check_steps(problem, result.solution.steps)
        assert 1 <= result.n_scored <= 4 * (2 * len(problem.operations) + 2)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31))
def test_extend_many_returns_one_result_per_request_that_starts_with_its_prefix(tiny_policy, seed):
    ps = make_problems(3, seed=seed % 50)
    prefixes = [(), tuple(reference_solution(ps[1])[:1]), ()]
    out = tiny_policy.extend_many(ps, prefixes, seed)
    assert len(out) == 3
    for prefix, (steps, is_finished) in zip(prefixes, out, strict=True):
        assert steps[: len(prefix)] == prefix and len(steps) >= max(1, len(prefix))
        assert isinstance(is_finished, bool)


def test_search_grades_an_unparseable_or_cut_off_solution_wrong_as_the_lm_policy_does():
    from prm_core.search import _labelled

    p = _problem()
    steps = ["12 + 2 = 14.", "(empty step)", "14 × 3 = 42."]
    assert not _labelled(p, steps, 0.5).meta["is_correct_answer"]
    assert not _labelled(p, reference_solution(p), 0.5, is_done=False).meta["is_correct_answer"]
    assert _labelled(p, reference_solution(p), 0.5).meta["is_correct_answer"]


@pytest.mark.parametrize(("field", "value"), [("warmup_steps", 700), ("seed", "a"), ("learning_rate", True)],
                         ids=["warmup-past-end", "str-seed", "bool-lr"])
def test_sft_config_more_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SFTConfig(**{field: value})


def test_a_control_token_generated_inside_a_step_stands_as_the_replacement_character(tiny_policy):
    from prm_core.lm_policy import CONTROL_STANDIN

    tok = tiny_policy.tokenizer
    ids = tok("12 + 2 = 1", add_special_tokens=False)["input_ids"] + [tok.pad_token_id] + \
        tok("4.", add_special_tokens=False)["input_ids"]
    (text,) = tiny_policy._steps_text([ids])
    assert text == f"12 + 2 = 1{CONTROL_STANDIN}4." and "<|pad|>" not in text
    tiny_policy.encoder.encode(labelled_sample(_problem(), [text], is_ended=True))  # a PRM can read it


LM_POLICY_BAD_ARGUMENTS = {
    "generate-greedy-str": (lambda pol, ps: pol.generate_ids([pol.prompt_ids(ps[0])], 0, greedy="no"), "greedy"),
    "generate-stop-at-step-int": (lambda pol, ps: pol.generate_ids([[1]], 0, stop_at_step=1), "stop_at_step"),
    "generate-negative-seed": (lambda pol, ps: pol.generate_ids([[1]], -1), "seed"),
    "generate-float-budget": (lambda pol, ps: pol.generate_ids([[1]], 0, max_new_tokens=8.0), "max_new_tokens"),
    "complete-float-n-samples": (lambda pol, ps: pol.complete(ps, 1.0, 0), "n_samples"),
    "complete-greedy-int": (lambda pol, ps: pol.complete(ps, 1, 0, greedy=1), "greedy"),
    "sample-many-bool-n-samples": (lambda pol, ps: pol.sample_many(ps, True, 0), "n_samples"),
    "extend-many-float-seed": (lambda pol, ps: pol.extend_many(ps[:1], [()], 0.5), "seed"),
    "sample-bool-max-ops": (lambda pol, ps: pol.sample(ps[0], random.Random(0), max_ops=True), "max_ops"),
    "sample-float-max-ops": (lambda pol, ps: pol.sample(ps[0], random.Random(0), max_ops=1.0), "max_ops"),
}


@pytest.mark.parametrize("call,name", LM_POLICY_BAD_ARGUMENTS.values(), ids=LM_POLICY_BAD_ARGUMENTS.keys())
def test_lm_policy_methods_refuse_bad_numbers_and_flags_before_generating(tiny_policy, problems, call, name):
    # True == 1 made max_ops=True one step, and greedy="no" (truthy) decoded greedily
    with pytest.raises(ValueError, match=name):
        call(tiny_policy, problems)
