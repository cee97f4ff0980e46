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
                                               ({"sft": 5}, "rl.sft"), ({"seeds": [0, 0]}, "repeat")],
                         ids=["nested-typo", "typo", "reward", "ops", "reward-steps", "bool-seed", "per-run-seed",
                              "seeds-int", "sft-int", "repeated-seed"])
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
