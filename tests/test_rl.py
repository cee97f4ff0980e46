"""RL: advantages (group-normalised, and DeepSeekMath's process suffix sums), the clipped GRPO loss
with its KL penalty, rewards from each source (malformed solutions earn nothing), and a short run."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.lm_policy import Completion, labelled_sample
from prm_core.rl import (
    REWARDS,
    RLConfig,
    batch_advantages,
    compute_rewards,
    group_advantages,
    grpo_loss,
    process_advantages,
    token_advantages,
    train_rl,
)
from prm_core.tasks.arithmetic import ArithmeticProblem, Operation, make_problems
from prm_core.verification import StepScores

rewards_lists = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=8)


@given(rewards_lists)
def test_group_advantages_have_mean_zero_and_unit_std_unless_all_equal(rewards):
    adv = np.array(group_advantages(rewards))
    if np.std(rewards) < 1e-6:
        assert (adv == 0).all()
    else:
        assert abs(adv.mean()) < 1e-9 and abs(adv.std() - 1) < 1e-6


def test_group_advantages_non_finite_reward_raises():
    with pytest.raises(ValueError, match="finite"):
        group_advantages([1.0, float("nan")])


@given(st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=6), min_size=1, max_size=6))
def test_process_advantages_are_suffix_sums_of_the_group_normalised_step_rewards(step_rewards):
    adv = process_advantages(step_rewards)
    flat = np.concatenate([np.array(r) for r in step_rewards])
    normalised = [np.zeros(len(r)) if flat.std() < 1e-6 else (np.array(r) - flat.mean()) / flat.std()
                  for r in step_rewards]
    for a, n in zip(adv, normalised, strict=True):
        assert len(a) == len(n)
        # step j's advantage minus step j+1's is step j's own normalised reward; the last is its own
        np.testing.assert_allclose([a[j] - a[j + 1] for j in range(len(a) - 1)], n[:-1], atol=1e-9)
        assert abs(a[-1] - n[-1]) < 1e-9


def test_process_advantages_of_one_step_solutions_equal_the_outcome_advantages():
    rewards = [0.9, 0.2, 0.5]
    np.testing.assert_allclose([a[0] for a in process_advantages([[r] for r in rewards])], group_advantages(rewards))


def test_process_advantages_credit_an_early_step_for_a_later_bad_one():
    good, bad_late = process_advantages([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert bad_late[0] < good[0]  # the same first step, but it led to a wrong step


def test_process_advantages_empty_solution_raises():
    with pytest.raises(ValueError, match="non-empty"):
        process_advantages([[1.0], []])


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(0, 3))
def test_token_advantages_give_each_token_its_steps_advantage(lengths, tail):
    ends = list(np.cumsum(lengths) - 1)
    step_adv = [float(i) for i in range(len(lengths))]
    out = token_advantages(step_adv, ends, int(sum(lengths)) + tail)
    assert out == [float(j) for j, n in enumerate(lengths) for _ in range(n)] + [step_adv[-1]] * tail


def test_grpo_loss_at_ratio_one_is_minus_the_mean_advantage_per_solution():
    z = torch.zeros(2, 3)
    adv = torch.tensor([[1.0, 1.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, kl = grpo_loss(z, z, z, adv, mask, clip_eps=0.2, kl_coef=0.1)
    assert float(loss) == pytest.approx(-(1.0 + -2.0) / 2)  # per solution: 1.0 and -2.0; then their mean
    assert float(kl) == 0.0


def test_grpo_loss_clipped_ratio_has_no_gradient_for_a_positive_advantage():
    logp = torch.tensor([[0.5]], requires_grad=True)  # ratio e^0.5 = 1.65 > 1.2
    loss, _ = grpo_loss(logp, torch.zeros(1, 1), logp.detach(), torch.ones(1, 1), torch.ones(1, 1), 0.2, 0.0)
    loss.backward()
    assert logp.grad.abs().item() == 0.0


@given(st.floats(-3, 3))
def test_grpo_kl_estimate_is_non_negative_and_grows_away_from_the_reference(delta):
    logp = torch.zeros(1, 1)
    _, kl = grpo_loss(logp, logp, torch.full((1, 1), delta), torch.zeros(1, 1), torch.ones(1, 1), 0.2, 1.0)
    _, kl_further = grpo_loss(logp, logp, torch.full((1, 1), 2 * delta), torch.zeros(1, 1), torch.ones(1, 1), 0.2, 1.0)
    assert 0 <= float(kl) <= float(kl_further)
    assert float(kl) > 0 or abs(delta) < 1e-3  # exp(d) - d - 1 ~ d^2 / 2 underflows only near 0


def _problem():
    return ArithmeticProblem(0, 12, (Operation("+", 2), Operation("×", 3)), "Mei has 12 coins. ...")


def _completion(steps, is_ended=True):
    sample = labelled_sample(_problem(), steps, is_ended)
    n = 3 * len(steps)
    return Completion(sample, [5, 6], list(range(n)), [3 * j + 2 for j in range(len(steps))])


class FixedScorer:
    """A verifier that gives every step the same score."""

    def __init__(self, value):
        self.value = value

    def score_steps(self, samples):
        n = max(s.n_steps for s in samples)
        mask = torch.tensor([[j < s.n_steps for j in range(n)] for s in samples])
        return StepScores(torch.full((len(samples), n), self.value) * mask, mask)


def test_outcome_reward_is_the_graded_answer():
    right = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."])
    wrong = _completion(["12 + 2 = 14.", "Then 14 × 3 = 43."])
    unended = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."], is_ended=False)
    assert compute_rewards("outcome", [right, wrong, unended], {}).solution == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("flag", ["False", None], ids=["text-false", "none"])
def test_outcome_reward_flag_that_is_not_a_bool_raises_naming_the_completion(flag):
    import dataclasses

    right = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."])
    odd = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."])
    odd = dataclasses.replace(odd, sample=dataclasses.replace(odd.sample, meta={**odd.sample.meta,
                                                                               "is_correct_answer": flag}))
    with pytest.raises(ValueError, match=r"completions\[1\]\.sample\.meta\['is_correct_answer'\]=.* must be True"):
        compute_rewards("outcome", [right, odd], {})


@pytest.mark.parametrize("reward", ["orm", "prm_min", "prm"])
def test_learned_rewards_give_a_malformed_solution_nothing(reward):
    ok = _completion(["12 + 2 = 14.", "Then 14 × 3 = 43."])
    unended = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."], is_ended=False)
    scorer = FixedScorer(0.8)
    got = compute_rewards(reward, [ok, unended], {"prm": scorer, "orm": scorer})
    assert got.solution == pytest.approx([0.8, 0.0])
    if reward == "prm":
        assert got.steps == [pytest.approx([0.8, 0.8]), pytest.approx([0.8, 0.0])]


def test_learned_reward_without_its_verifier_raises_naming_it():
    with pytest.raises(ValueError, match="verifiers\\['orm'\\]"):
        compute_rewards("orm", [_completion(["12 + 2 = 14."])], {"prm": FixedScorer(0.5)})


def test_outcome_advantage_is_shared_by_every_token_of_a_solution():
    group = [_completion(["12 + 2 = 14.", "Then 14 × 3 = 42."]), _completion(["12 + 2 = 15.", "Then 15 × 3 = 45."])]
    adv = batch_advantages("outcome", compute_rewards("outcome", group, {}), group, group_size=2)
    assert adv == [[1.0] * 6, [-1.0] * 6]


def test_batch_advantages_groups_must_divide_the_batch():
    group = [_completion(["12 + 2 = 14."])] * 3
    with pytest.raises(ValueError, match="groups of 2"):
        batch_advantages("outcome", compute_rewards("outcome", group, {}), group, group_size=2)


@pytest.mark.parametrize(("field", "value"), [("reward", "orm2"), ("group_size", 1), ("clip_eps", 0.0),
                                              ("kl_coef", -1.0), ("n_updates", 0), ("learning_rate", float("inf")),
                                              ("seed", 1.5), ("seed", True)],
                         ids=["reward", "group", "clip", "kl", "updates", "lr", "float-seed", "bool-seed"])
def test_rl_config_bad_value_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RLConfig(**{field: value})


@pytest.fixture(scope="module")
def tiny_policy(course_backbone):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from prm_core.lm_policy import LMPolicy, SamplingConfig

    _, tokenizer, _ = course_backbone
    config = Qwen2Config(vocab_size=len(tokenizer) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return LMPolicy(Qwen2ForCausalLM(config).eval(), copy.deepcopy(tokenizer), SamplingConfig(max_new_tokens=16))


@pytest.mark.parametrize("reward", REWARDS)
def test_train_rl_logs_every_update_and_all_malformed_batches_leave_the_policy_unchanged(tiny_policy, reward):
    policy = copy.deepcopy(tiny_policy)
    before = [p.detach().clone() for p in policy.model.parameters()]
    config = RLConfig(reward=reward, n_updates=2, problems_per_update=2, group_size=3, eval_every=1,
                      learning_rate=1e-2, show_progress=False)
    result = train_rl(policy, make_problems(4, seed=0), make_problems(3, seed=1), config,
                      {"prm": _RandomScorer(), "orm": _RandomScorer()})
    assert [e["update"] for e in result.evals] == [0, 1, 2] and len(result.updates) == 2
    assert result.n_generated_tokens > 0 and result.seconds > 0
    # An untrained model never ends within 16 tokens: every solution is malformed, every reward 0, so
    # every advantage is 0, the policy equals its reference (KL 0) and nothing moves.
    assert all(e["well_formed"] == 0.0 for e in result.evals) and all(u["reward"] == 0.0 for u in result.updates)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))


def test_train_rl_moves_the_policy_when_rewards_differ_and_reports_kl(tiny_policy, monkeypatch):
    import prm_core.rl as rl

    rng = np.random.default_rng(0)
    monkeypatch.setattr(rl, "compute_rewards", lambda reward, completions, verifiers: rl.Rewards(
        rng.random(len(completions)).tolist()))
    policy = copy.deepcopy(tiny_policy)
    before = [p.detach().clone() for p in policy.model.parameters()]
    config = RLConfig(n_updates=3, problems_per_update=2, group_size=3, learning_rate=1e-2, show_progress=False)
    result = train_rl(policy, make_problems(4, seed=0), make_problems(2, seed=1), config)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))
    assert result.updates[-1]["kl"] > 0  # after the first update the policy has left its reference


def test_one_epoch_skips_the_old_logprob_forward_and_takes_the_same_step(tiny_policy, monkeypatch):
    """With one gradient step per batch the sampling policy's log-probs are the first forward's own
    (ratio 1), so train_rl makes two forwards per update (reference, policy) instead of three, and
    lands on the weights that a separate no-grad forward for old_logp would have given."""
    import prm_core.rl as rl

    monkeypatch.setattr(rl, "compute_rewards", lambda reward, completions, verifiers: rl.Rewards(
        np.random.default_rng(len(completions)).random(len(completions)).tolist()))
    config = RLConfig(n_updates=2, problems_per_update=2, group_size=3, learning_rate=1e-2, epochs_per_batch=1,
                      eval_every=2, show_progress=False)
    forwards = []
    real = rl.token_logprobs
    monkeypatch.setattr(rl, "token_logprobs", lambda *a: forwards.append(1) or real(*a))
    saved = copy.deepcopy(tiny_policy)
    train_rl(saved, make_problems(4, seed=0), make_problems(2, seed=1), config)
    assert len(forwards) == 2 * config.n_updates

    def loss_with_a_separate_old_forward(logp, old_logp, *rest):  # what epochs_per_batch=2's first step sees
        return rl_grpo(logp, real_old.pop(0), *rest)

    rl_grpo, real_old = rl.grpo_loss, []
    monkeypatch.setattr(rl, "token_logprobs", lambda model, ids, mask: (
        real_old.append(real(model, ids, mask).detach()) if model.training else None) or real(model, ids, mask))
    monkeypatch.setattr(rl, "grpo_loss", loss_with_a_separate_old_forward)
    separate = copy.deepcopy(tiny_policy)
    train_rl(separate, make_problems(4, seed=0), make_problems(2, seed=1), config)
    assert not real_old  # every step used its separate forward
    for a, b in zip(saved.model.parameters(), separate.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


class _RandomScorer:
    def score_steps(self, samples):
        n = max(s.n_steps for s in samples)
        mask = torch.tensor([[j < s.n_steps for j in range(n)] for s in samples])
        return StepScores(torch.rand(len(samples), n, generator=torch.Generator().manual_seed(0)) * mask, mask)


@pytest.mark.parametrize(("reward", "needed"), [("orm", "orm"), ("prm", "prm"), ("prm_min", "prm")])
def test_train_rl_without_the_rewards_verifier_raises_before_any_work(tiny_policy, monkeypatch, reward, needed):
    import prm_core.rl as rl

    monkeypatch.setattr(rl, "evaluate_policy", lambda *a, **k: pytest.fail("evaluated before the check"))
    with pytest.raises(ValueError, match=rf"reward='{reward}' needs verifiers\['{needed}'\]"):
        train_rl(tiny_policy, make_problems(4, seed=0), make_problems(2, seed=1),
                 RLConfig(reward=reward, problems_per_update=2, show_progress=False), {"other": None})


def test_train_rl_too_few_problems_raises(tiny_policy):
    with pytest.raises(ValueError, match="problems_per_update"):
        train_rl(tiny_policy, make_problems(1, seed=0), make_problems(1, seed=1), RLConfig(problems_per_update=4))


@settings(deadline=None, max_examples=5)
@given(st.integers(0, 1000))
def test_train_rl_same_seed_same_run(tiny_policy, seed):
    runs = []
    for _ in range(2):
        policy = copy.deepcopy(tiny_policy)
        config = RLConfig(n_updates=1, problems_per_update=2, group_size=2, seed=seed, show_progress=False,
                          reward="prm")
        result = train_rl(policy, make_problems(4, seed=0), make_problems(2, seed=1), config, {"prm": _RandomScorer()})
        runs.append((result.updates, [p.detach().clone() for p in policy.model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


@pytest.mark.parametrize(("ends", "n_tokens"), [([2, 1], 4), ([0, 5], 4), ([-1], 2)], ids=["unsorted", "past-end", "negative"])
def test_token_advantages_bad_step_ends_raise(ends, n_tokens):
    with pytest.raises(ValueError, match="step_ends"):
        token_advantages([0.0] * len(ends), ends, n_tokens)


def test_token_advantages_equal_step_ends_raise_as_not_strictly_increasing():
    # two steps cannot both end at token 1: the second would hold no token of its own
    with pytest.raises(ValueError, match=r"step_ends=\[1, 1\] must strictly increase"):
        token_advantages([0.5, -1.0], [1, 1], 3)


@pytest.mark.parametrize("rewards", [[1e300, -1e300], [1.7e308, 1.7e308, -1.7e308]], ids=["std-overflows", "mean-overflows"])
def test_group_advantages_rewards_too_large_for_their_std_raise_instead_of_giving_zeros(rewards):
    with pytest.raises(ValueError, match="too wide for their mean and std in float64; rescale them"):
        group_advantages(rewards)


def test_process_advantages_step_rewards_too_large_for_their_std_raise():
    with pytest.raises(ValueError, match="step_rewards span .* too wide"):
        process_advantages([[1e300], [-1e300]])


def test_group_advantages_spread_below_the_absolute_floor_gives_zeros_at_any_scale():
    # std 5e-7 < 1e-6: no signal, although the rewards differ (the floor is absolute, not relative)
    assert group_advantages([1e-6, 0.0]) == [0.0, 0.0]
    assert group_advantages([1e-5, 0.0]) == pytest.approx([1.0, -1.0])  # std 5e-6 >= 1e-6: normalised


def test_token_advantages_non_finite_advantage_raises():
    with pytest.raises(ValueError, match="non-finite"):
        token_advantages([float("nan")], [0], 2)


def test_batch_tensors_refuse_an_advantage_list_of_the_wrong_length():
    from prm_core.rl import _batch_tensors

    c = _completion(["12 + 2 = 14."])
    with pytest.raises(ValueError, match="3 tokens but 1 advantages"):
        _batch_tensors([c], [[1.0]], pad_id=0, device=torch.device("cpu"))


def test_train_rl_initial_eval_without_per_problem_results_raises(tiny_policy):
    with pytest.raises(ValueError, match="initial_eval"):
        train_rl(tiny_policy, make_problems(4, seed=0), make_problems(1, seed=1),
                 RLConfig(problems_per_update=2, show_progress=False), initial_eval={})


class TruncatingScorer(FixedScorer):
    """Scores only each solution's first step, as a reward model whose window is too short."""

    def score_steps(self, samples):
        mask = torch.ones((len(samples), 1), dtype=torch.bool)
        return StepScores(torch.full((len(samples), 1), self.value), mask,
                          torch.tensor([s.n_steps - 1 for s in samples]))


@pytest.mark.parametrize("reward", ["orm", "prm_min", "prm"])
def test_a_solution_past_the_reward_models_window_earns_nothing_for_what_it_could_not_see(reward):
    long = _completion(["12 + 2 = 14.", "Then 14 × 3 = 42."])
    short = _completion(["12 + 2 = 14."])
    got = compute_rewards(reward, [long, short], {"prm": TruncatingScorer(0.8), "orm": TruncatingScorer(0.8)})
    assert got.solution == pytest.approx([0.0, 0.8])  # the run goes on; the unseen step earns nothing
    if reward == "prm":
        assert got.steps == [pytest.approx([0.8, 0.0]), pytest.approx([0.8])]


def test_group_advantages_bool_rewards_raise_naming_the_fix():
    with pytest.raises(ValueError, match=r"rewards must hold real numbers, not bools.*float\(is_correct\)"):
        group_advantages([True, False])


def test_grpo_loss_nan_clip_eps_raises_instead_of_a_nan_loss():
    from prm_core.rl import grpo_loss

    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="clip_eps=nan"):
        grpo_loss(z, z, z, torch.ones(1, 2), torch.ones(1, 2), float("nan"), 0.04)


def test_micro_batches_give_the_whole_batchs_update(tiny_policy, monkeypatch):
    """Grouped by length and weighted by their share, micro-batches step the policy as one batch does."""
    import prm_core.rl as rl

    def advantages(reward, rewards, completions, group_size):  # a signal even where every reward is 0
        generator = torch.Generator().manual_seed(len(completions))
        return [torch.randn(len(c.completion_ids), generator=generator).tolist() for c in completions]

    monkeypatch.setattr(rl, "batch_advantages", advantages)
    weights = {}
    for size in (3, 1000):
        policy = copy.deepcopy(tiny_policy)
        config = RLConfig(n_updates=2, problems_per_update=3, group_size=4, seed=1, show_progress=False,
                          reward="prm", epochs_per_batch=2, micro_batch_size=size, learning_rate=0.01)
        train_rl(policy, make_problems(6, seed=0), make_problems(2, seed=1), config, {"prm": _RandomScorer()})
        weights[size] = [p.detach().clone() for p in policy.model.parameters()]
    moved = [p.detach() for p in tiny_policy.model.parameters()]
    moved_by = max(float((a - b).abs().max()) for a, b in zip(weights[1000], moved, strict=True))
    apart = max(float((a - b).abs().max()) for a, b in zip(weights[3], weights[1000], strict=True))
    # the same update up to rounding (Adam divides each gradient by its own size, so rounding in a
    # near-zero gradient shows at the learning rate's scale; a thousandth of the distance moved is far below it)
    assert apart < 1e-3 * moved_by


def test_length_groups_cover_every_solution_once_shortest_first():
    from prm_core.lm_policy import Completion
    from prm_core.rl import length_groups

    completions = [Completion(prompt_ids=[1] * p, completion_ids=[2] * c, step_ends=[], sample=None)
                   for p, c in [(3, 5), (2, 1), (4, 9), (3, 2), (1, 1)]]
    groups = length_groups(completions, 2)
    assert [len(g) for g in groups] == [2, 2, 1]
    assert sorted(i for g in groups for i in g) == list(range(5))
    total = [len(completions[i].prompt_ids) + len(completions[i].completion_ids) for g in groups for i in g]
    assert total == sorted(total)


def test_micro_batch_size_below_one_raises_naming_it():
    with pytest.raises(ValueError, match="micro_batch_size"):
        RLConfig(micro_batch_size=0)
