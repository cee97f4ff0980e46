"""The rl profile section, and the summaries of RL results (curves, paired gains) on hand-made results."""

import numpy as np
import pytest

from prm_core.policy_runs import PolicyRunConfig, load_policy_runs, rl_curves, rl_difference, rl_gain
from prm_core.viz_rl import plot_rl_curves


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_profile_has_a_valid_rl_section_with_four_rewards_and_three_seeds(profile):
    runs = load_policy_runs(profile)
    assert set(runs.rewards) == {"outcome", "orm", "prm", "prm_min"} and len(runs.seeds) >= 3
    assert runs.n_eval_problems >= 500


@pytest.mark.parametrize(("values", "match"), [({"rl": {"lr": 1.0}}, "rl.rl"), ({"seedz": [0]}, "seedz"),
                                               ({"rewards": ["outcome", "votes"]}, "rewards"),
                                               ({"min_ops": 6, "max_ops": 5}, "min_ops"),
                                               ({"reward_max_steps": 0}, "reward_max_steps"),
                                               ({"seeds": [0, True]}, "seeds"),
                                               ({"rl": {"seed": 4}}, "rl.seeds"), ({"seeds": 3}, "seeds"),
                                               ({"sft": 5}, "rl.sft"), ({"seeds": [0, 0]}, "repeat"),
                                               ({"reward_train_seeds": [0, 1]}, "one training seed per RL seed"),
                                               ({"reward_train_seeds": 1}, "reward_train_seeds"),
                                               ({"reward_train_seeds": [0, 1, -2]}, r"reward_train_seeds\[2\]"),
                                               ({"reward_train_seeds": None}, "reward_train_seeds=None must be a list")],
                         ids=["nested-typo", "typo", "reward", "ops", "reward-steps", "bool-seed", "per-run-seed",
                              "seeds-int", "sft-int", "repeated-seed", "reward-seeds-short", "reward-seeds-int",
                              "reward-seed-negative", "reward-seeds-null"])
def test_policy_run_config_bad_settings_raise_naming_them(values, match):
    with pytest.raises(ValueError, match=match):
        PolicyRunConfig.from_dict(values)


def _result(start, end, greedy_start, greedy_end, rewards=(0.1, 0.2)):
    return {"evals": [{"update": 0, "per_problem": start, "greedy_per_problem": greedy_start},
                      {"update": 2, "per_problem": end, "greedy_per_problem": greedy_end}],
            "updates": [{"update": u + 1, "reward": r, "train_accuracy": 0.5, "kl": 0.01 * u} for u, r in enumerate(rewards)],
            "seconds": 1.0, "generated_tokens_per_second": 100.0}


def test_rl_gain_is_the_paired_mean_over_seeds_of_end_minus_start():
    results = {"outcome": [_result([0.0, 0.5], [0.5, 1.0], [0, 0], [1, 0]), _result([0.5, 0.5], [0.5, 1.0], [0, 0], [0, 0])]}
    gain = rl_gain(results, "outcome")
    # seed means: start [0.25, 0.5], end [0.5, 1.0]; gains [0.25, 0.5] -> 0.375
    assert gain["value"] == pytest.approx(0.375) and gain["ci_low"] <= 0.375 <= gain["ci_high"]
    assert gain["per_seed"] == pytest.approx([0.5, 0.25]) and gain["n_seeds"] == 2  # the interval resamples seeds too
    assert rl_gain(results, "outcome", "greedy_per_problem")["value"] == pytest.approx(0.25)


def test_rl_difference_pairs_final_accuracies_by_problem():
    results = {"a": [_result([0, 0], [1.0, 0.5], [0, 0], [0, 0])], "b": [_result([0, 0], [0.5, 0.5], [0, 0], [0, 0])]}
    assert rl_difference(results, "a", "b")["value"] == pytest.approx(0.25)


def test_rl_curves_give_bands_around_the_seed_mean_and_per_update_logs():
    results = {"prm": [_result([0.0, 1.0], [1.0, 1.0], [0, 1], [1, 1]), _result([1.0, 0.0], [1.0, 1.0], [1, 0], [1, 1])]}
    curve = rl_curves(results)["prm"]
    assert curve["update"] == [0, 2] and curve["train_update"] == [1, 2]
    assert [p["value"] for p in curve["accuracy"]] == [0.5, 1.0]
    assert all(p["ci_low"] <= p["value"] <= p["ci_high"] for p in curve["accuracy"])
    assert curve["reward"] == pytest.approx([0.1, 0.2]) and curve["kl"] == pytest.approx([0.0, 0.01])


def test_plot_rl_curves_draws_one_line_per_reward_and_a_baseline():
    from matplotlib.figure import Figure

    results = {r: [_result([0.0, 1.0], [1.0, 1.0], [0, 1], [1, 1])] for r in ("outcome", "prm")}
    curves = rl_curves(results)
    ax = plot_rl_curves(curves, "accuracy", ax=Figure().subplots(), baseline=0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["outcome (exact grader)", "PRM steps (dense)", "SFT policy"]
    ax = plot_rl_curves(curves, "reward", ax=Figure().subplots())
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.1, 0.2])


def test_plot_rl_curves_unknown_key_raises_listing_the_keys():
    with pytest.raises(ValueError, match="has no 'loss'"):
        plot_rl_curves({"prm": {"update": [0], "accuracy": []}}, "loss")


@pytest.mark.parametrize("curve, match", [
    ({"accuracy": [{"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}]}, "has no 'update'"),
    ({"update": [0], "accuracy": [{"value": 0.5}]}, "'value', 'ci_low' and 'ci_high'"),
    ({"kl": [0.1]}, "has no 'train_update'"),
])
def test_plot_rl_curves_malformed_curve_raises_naming_what_is_missing(curve, match):
    key = "kl" if "kl" in curve else "accuracy"
    with pytest.raises(ValueError, match=match):
        plot_rl_curves({"prm": curve}, key)


# ---------------------------------------------------------------- cache entries: rebuilt once when damaged


@pytest.fixture
def fast_policies(tiny_backbone, monkeypatch):
    """Policy runs on the tiny course backbone with SFT, RL and evaluation that do nothing; returns the
    list of steps run ("sft", "rl", "eval")."""
    from prm_core import policy_runs
    from prm_core.backbones import CourseTinyConfig, course_tiny_dir
    from prm_core.rl import RLResult
    from tests.conftest import TINY_PROFILE_KWARGS

    calls, folder = [], course_tiny_dir(CourseTinyConfig(**TINY_PROFILE_KWARGS), tiny_backbone[2])
    monkeypatch.setattr(policy_runs, "pretrained_backbone", lambda experiment, cache_dir=None: (str(folder), {}))
    monkeypatch.setattr(policy_runs, "sft", lambda policy, samples, config: (calls.append("sft"),
                                                                              {"train_seconds": 0.5})[1])
    monkeypatch.setattr(policy_runs, "sft_samples", lambda experiment, runs: [])
    monkeypatch.setattr(policy_runs, "train_rl", lambda *args, **kwargs: (calls.append("rl"), RLResult(seconds=1.0))[1])
    monkeypatch.setattr(policy_runs, "evaluate_policy", lambda *args, **kwargs: (calls.append("eval"), EVAL)[1])
    monkeypatch.setattr(policy_runs, "rl_problems", lambda experiment, runs: [])
    monkeypatch.setattr(policy_runs, "eval_problems", lambda experiment, runs: [])
    return calls


# what evaluate_policy returns, in miniature: the keys a cached evaluation must hold
EVAL = {"accuracy": 0.25, "greedy_accuracy": 0.5, "well_formed": 1.0, "per_problem": [0.25], "greedy_per_problem": [0.5]}


def test_policy_profile_evaluation_without_its_keys_is_rebuilt_once(fast_policies, tmp_path):
    from prm_core.policy_runs import _policy_folder, policy_profile

    experiment, runs = _configs()
    policy_profile(experiment, runs, 0, tmp_path)
    (path,) = _policy_folder(experiment, runs, tmp_path).glob("eval-*.json")
    path.write_text("{}")  # valid JSON that the summaries would fail on with a KeyError later
    assert policy_profile(experiment, runs, 0, tmp_path)["greedy_accuracy"] == 0.5
    assert fast_policies == ["sft", "eval", "eval"]


def _configs():
    from prm_core.experiments import ExperimentConfig

    return ExperimentConfig(), PolicyRunConfig()


def test_sft_policy_incomplete_entry_is_rebuilt_once_and_repaired(fast_policies, tmp_path):
    from prm_core.policy_runs import _policy_folder, sft_policy

    experiment, runs = _configs()
    sft_policy(experiment, runs, tmp_path)
    folder = _policy_folder(experiment, runs, tmp_path)
    (folder / "sft_result.json").unlink()
    _, info = sft_policy(experiment, runs, tmp_path)
    sft_policy(experiment, runs, tmp_path)
    assert fast_policies == ["sft", "sft"] and info == {"train_seconds": 0.5}


def test_sft_policy_weights_header_claiming_i32_are_rebuilt_once(fast_policies, tmp_path):
    from prm_core.policy_runs import _policy_folder, sft_policy
    from tests.test_files import lie_about_dtype, rewrite_header

    experiment, runs = _configs()
    sft_policy(experiment, runs, tmp_path)
    rewrite_header(_policy_folder(experiment, runs, tmp_path) / "model.safetensors",
                   lie_about_dtype("model.norm.weight"))
    sft_policy(experiment, runs, tmp_path)
    sft_policy(experiment, runs, tmp_path)
    assert fast_policies == ["sft", "sft"]


def test_policy_profile_cut_eval_file_is_rebuilt_once(fast_policies, tmp_path):
    from prm_core.policy_runs import _policy_folder, policy_profile

    experiment, runs = _configs()
    assert policy_profile(experiment, runs, 0, tmp_path) == EVAL | {"sft_seconds": 0.5}
    (path,) = _policy_folder(experiment, runs, tmp_path).glob("eval-*.json")
    path.write_text('{"accuracy": 0.2')
    assert policy_profile(experiment, runs, 0, tmp_path) == EVAL | {"sft_seconds": 0.5}
    policy_profile(experiment, runs, 0, tmp_path)
    assert fast_policies == ["sft", "eval", "eval"]


def test_rl_run_incomplete_entry_is_rebuilt_once_and_repaired(fast_policies, tmp_path):
    from prm_core.policy_runs import rl_run

    experiment, runs = _configs()
    rl_run(experiment, runs, "outcome", 0, tmp_path)
    (folder,) = (tmp_path / "experiments").glob("rl-outcome-*")
    (folder / "rl_result.json").unlink()
    _, result = rl_run(experiment, runs, "outcome", 0, tmp_path)
    rl_run(experiment, runs, "outcome", 0, tmp_path)
    assert fast_policies == ["sft", "eval", "rl", "rl"] and result["seconds"] == 1.0
    assert (folder / "rl_result.json").is_file()


def test_on_policy_models_incomplete_entry_is_rebuilt_once_and_repaired(fast_policies, tiny_backbone, tmp_path,
                                                                         monkeypatch):
    from prm_core import experiments, policy_runs
    from prm_core.lm_policy import LMPolicy
    from prm_core.tasks.arithmetic_policy import NoisyPolicy
    from prm_core.training import TrainResult
    from tests.conftest import build_tiny_prm

    trained = []
    monkeypatch.setattr(experiments, "new_model", lambda path, config, kind, seed=None: build_tiny_prm(
        tiny_backbone, kind=kind))
    monkeypatch.setattr("prm_core.training.train", lambda model, *args, kind="prm", **kwargs: (
        trained.append(kind), TrainResult())[1])
    monkeypatch.setattr(LMPolicy, "sample_many", lambda self, problems, n, seed=0: NoisyPolicy().sample_many(
        problems, n, seed=seed))
    experiment, runs = _configs()
    runs = PolicyRunConfig(n_reward_problems=4, reward_samples_per_problem=1)
    policy_runs.on_policy_models(experiment, runs, tmp_path)
    (folder,) = (tmp_path / "experiments").glob("onpolicy-orm-*")
    (folder / "train_result.json").unlink()
    models = policy_runs.on_policy_models(experiment, runs, tmp_path)
    policy_runs.on_policy_models(experiment, runs, tmp_path)
    assert trained == ["prm", "orm", "orm"] and models["orm"].kind == "orm"


# ---------------------------------------------------------------- issue 13: summaries name what is missing
def test_rl_gain_of_no_results_raises_value_error_instead_of_key_error():
    with pytest.raises(ValueError, match=r"results=\{\} must be rl_results' non-empty dict"):
        rl_gain({}, "prm")


def test_rl_gain_of_a_reward_without_runs_names_the_rewards_there_are():
    with pytest.raises(ValueError, match=r"reward='prm' has no runs in results; it has \['outcome'\]"):
        rl_gain({"outcome": [_result([0.5], [1.0], [0], [1])]}, "prm")


def test_rl_curves_seeds_with_different_problem_counts_raise():
    results = {"prm": [_result([0, 0], [1.0, 0.5], [0, 0], [0, 0]), _result([0], [1.0], [0], [0])]}
    with pytest.raises(ValueError, match="the same problems for every seed"):
        rl_curves(results)


def test_step_auroc_ci_samples_that_do_not_match_the_scores_raise_value_error_not_a_zip_error():
    import torch

    from prm_core.data import StepSample
    from prm_core.policy_runs import step_auroc_ci
    from prm_core.verification import StepScores

    scores = StepScores(torch.tensor([[0.9, 0.2], [0.8, 0.7]]), torch.ones(2, 2, dtype=torch.bool))
    sample = StepSample("q", ["a", "b"], labels=[1.0, 0.0], meta={"problem_id": 0})
    with pytest.raises(ValueError, match="samples has 1 entries for 2 scored solutions"):
        step_auroc_ci(scores, [sample])
    with pytest.raises(ValueError, match=r"samples\[1\] has no labels"):
        step_auroc_ci(scores, [sample, StepSample("q", ["a", "b"], meta={"problem_id": 1})])


def test_rl_seeds_rotate_the_reward_models_training_seed_and_seed_0_keeps_its_entry(fast_policies, tmp_path,
                                                                                     make_tiny_prm, monkeypatch):
    from dataclasses import replace

    from prm_core import policy_runs

    asked = []
    monkeypatch.setattr(policy_runs, "trained_model", lambda experiment, kind, cache_dir=None, train_seed=None: (
        asked.append((kind, train_seed)), (make_tiny_prm(seed=0), {}))[1])
    experiment, plain = _configs()
    rotated = replace(plain, reward_train_seeds=(0, 5, 7))
    assert [policy_runs.reward_train_seed(experiment, rotated, s) for s in (0, 1, 2, 9)] == [0, 5, 7, experiment.seed]
    assert [policy_runs.reward_train_seed(experiment, plain, s) for s in (0, 1, 2)] == [experiment.seed] * 3
    for runs, seed in ((rotated, 0), (rotated, 1), (rotated, 2), (plain, 0), (plain, 1)):
        policy_runs.rl_run(experiment, runs, "prm", seed, tmp_path)
    # plain seed 0 found rotated seed 0's entry (the same reward model, the same key); plain seed 1 has seed 0's model
    assert asked == [("prm", 0), ("prm", 5), ("prm", 7), ("prm", 0)]
    assert len(list((tmp_path / "experiments").glob("rl-prm-*"))) == 4
