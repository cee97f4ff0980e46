"""The cached runs of notebook 14: the SFT policy, and RL from it with each reward source and seed.

Like ``prm_core.experiments``, every artifact is keyed by a hash of what made it (the standard
experiment, this profile's ``rl`` section, the reward and seed), so the notebook, the results CLI and
the GPU check share them and each still runs on its own.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from prm_core.checks import check_choice, check_int, check_real_array, check_seed
from prm_core.config_checks import check_fields, config_from_mapping
from prm_core.experiments import (
    CACHE_VERSION,
    CLEAN_POLICY,
    PARAMS_DIR,
    ExperimentConfig,
    _experiment_dir,
    _hash,
    _model_key,
    _pretrain_key,
    default_device,
    pretrained_backbone,
    profile_section,
    trained_model,
)
from prm_core.files import cached, cached_file, read_json, write_json
from prm_core.lm_policy import LMPolicy, SamplingConfig, SFTConfig, sft
from prm_core.rl import REWARDS, RLConfig, evaluate_policy, train_rl
from prm_core.tasks.arithmetic import ArithmeticProblem, ProblemConfig, make_problems
from prm_core.tasks.arithmetic_policy import NoisyPolicy


@dataclass(frozen=True)
class PolicyRunConfig:
    """One profile's LM policy and RL runs (``params/<profile>.yaml``, section ``rl``)."""

    min_ops: int = 2  # the policy's problems have min_ops..max_ops operations (the benchmark: 2-8)
    max_ops: int = 5  # 2-5 keeps a CPU RL run within its budget; the gpu profile uses the full range
    sft: SFTConfig = field(default_factory=SFTConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    rl: RLConfig = field(default_factory=RLConfig)  # reward and seed are set per run
    rewards: tuple[str, ...] = REWARDS
    seeds: tuple[int, ...] = (0, 1, 2)
    # The reward model of the i-th RL seed: the standard PRM or ORM of training seed
    # reward_train_seeds[i] (() : the experiment's own models for every RL seed). Rotating them with
    # the RL seeds makes the spread over RL seeds include the reward model's training run.
    reward_train_seeds: tuple[int, ...] = ()
    n_rl_problems: int = 2000  # train-side problems the RL updates draw from
    n_eval_problems: int = 500  # test-side problems of every held-out accuracy
    eval_samples: int = 1  # samples per held-out problem for the one-sample accuracy
    # The transfer check's other side: a PRM and an ORM trained on the SFT policy's own solutions.
    n_reward_problems: int = 1000  # train-side problems whose policy samples train them
    reward_samples_per_problem: int = 4
    reward_max_steps: int = 250  # optimizer steps of each (the standard models' other settings)

    def __post_init__(self) -> None:
        for name in ("min_ops", "max_ops", "n_rl_problems", "n_eval_problems", "eval_samples", "n_reward_problems",
                     "reward_samples_per_problem", "reward_max_steps"):
            check_int(getattr(self, name), name, "[1, inf)")
        if isinstance(self.seeds, int | str) or isinstance(self.rewards, int | str):
            raise ValueError(f"seeds={self.seeds!r} and rewards={self.rewards!r} must be lists, e.g. seeds=[0, 1, 2].")
        for i, seed in enumerate(self.seeds):
            check_seed(seed, f"seeds[{i}]")
        if not isinstance(self.reward_train_seeds, list | tuple):  # None (an empty YAML key), an int, text, an array
            raise ValueError(f"reward_train_seeds={self.reward_train_seeds!r} must be a list, e.g. [0, 1, 2], or [] for "
                             "the experiment's own reward models.")
        object.__setattr__(self, "reward_train_seeds", tuple(self.reward_train_seeds))
        for i, seed in enumerate(self.reward_train_seeds):
            check_seed(seed, f"reward_train_seeds[{i}]")
        if self.reward_train_seeds and len(self.reward_train_seeds) != len(self.seeds):
            raise ValueError(f"reward_train_seeds={list(self.reward_train_seeds)!r} must name one training seed per RL "
                             f"seed (seeds={list(self.seeds)!r}), or be empty for the experiment's own reward models.")
        check_fields(self)  # sft, sampling and rl are configs (from_dict builds them from mappings)
        if len(set(self.rewards)) != len(self.rewards) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"rewards={list(self.rewards)!r} and seeds={list(self.seeds)!r} must not repeat.")
        if not self.min_ops <= self.max_ops:
            raise ValueError(f"min_ops={self.min_ops!r} and max_ops={self.max_ops!r} must satisfy 1 <= min_ops <= max_ops.")
        unknown = set(self.rewards) - set(REWARDS)
        if unknown or not self.rewards:
            raise ValueError(f"rewards={list(self.rewards)!r} must be a non-empty subset of {REWARDS}.")
        if not self.seeds:
            raise ValueError("seeds=() must hold at least one seed, e.g. [0, 1, 2].")

    @property
    def problem_config(self) -> ProblemConfig:
        return ProblemConfig(min_ops=self.min_ops, max_ops=self.max_ops)

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str = "rl") -> PolicyRunConfig:
        """The config from a params file's ``rl`` section (``sft``, ``sampling`` and ``rl`` are mappings
        of their configs' settings; ``rewards`` and ``seeds`` lists); errors name the section and key."""
        inner = values.get("rl") if isinstance(values, dict) else None
        if isinstance(inner, dict) and {"reward", "seed"} & set(inner):
            raise ValueError(f"{section}.rl sets reward or seed, which every run overrides; list them in "
                             f"{section}.rewards and {section}.seeds instead.")
        return config_from_mapping(cls, values, section)


def load_policy_runs(profile: str, params_dir: Path = PARAMS_DIR) -> PolicyRunConfig:
    """The ``rl`` section of ``params/<profile>.yaml`` as a config (defaults where it is absent)."""
    return PolicyRunConfig.from_dict(profile_section(profile, "rl", params_dir))


def _key(config: PolicyRunConfig) -> dict[str, Any]:
    return {f.name: asdict(v) if hasattr(v, "__dataclass_fields__") else v
            for f in fields(config) for v in [getattr(config, f.name)]}


def _eval_key(runs: PolicyRunConfig) -> dict[str, Any]:
    """What a held-out measurement depends on besides the policy (not the list of rewards or seeds)."""
    return {"sampling": asdict(runs.sampling), "ops": [runs.min_ops, runs.max_ops],
            "n_eval_problems": runs.n_eval_problems, "eval_samples": runs.eval_samples}


def _without_progress(config: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k != "show_progress"}


def sft_problems(experiment: ExperimentConfig, runs: PolicyRunConfig) -> list[ArithmeticProblem]:
    return make_problems(runs.sft.n_problems, seed=experiment.seed + 200, config=runs.problem_config, split="train")


def rl_problems(experiment: ExperimentConfig, runs: PolicyRunConfig) -> list[ArithmeticProblem]:
    return make_problems(runs.n_rl_problems, seed=experiment.seed + 201, config=runs.problem_config, split="train")


def eval_problems(experiment: ExperimentConfig, runs: PolicyRunConfig) -> list[ArithmeticProblem]:
    """Held-out problems (the test side) of every policy measurement."""
    return make_problems(runs.n_eval_problems, seed=experiment.seed + 202, config=runs.problem_config, split="test")


def sft_samples(experiment: ExperimentConfig, runs: PolicyRunConfig):
    """One solution per SFT problem: the noisy policy's with probability ``noisy_share``, else error-free."""
    rng = random.Random(runs.sft.seed)
    noisy, clean = NoisyPolicy(), NoisyPolicy(CLEAN_POLICY)
    return [(noisy if rng.random() < runs.sft.noisy_share else clean).sample(p, rng)
            for p in sft_problems(experiment, runs)]


def on_policy_models(experiment: ExperimentConfig, runs: PolicyRunConfig,
                     cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A PRM and an ORM trained like the standard ones (same pretrained backbone, head and loss), but on
    the SFT policy's own exactly labelled solutions of train-side problems, for ``reward_max_steps``
    steps; validated on its solutions of other train-side problems. Cached like every model."""
    from prm_core.experiments import TRAIN_INFO, _load_model, _save, new_model
    from prm_core.training import train

    key = {"policy": _policy_key(experiment, runs), "n": runs.n_reward_problems, "k": runs.reward_samples_per_problem,
           "steps": runs.reward_max_steps, "sampling": asdict(runs.sampling)}
    models = {}
    data = []  # the policy's (train, validation) samples, drawn once for both kinds, only when one is built

    def build(tmp: Path, kind: str) -> None:
        if not data:
            policy, _ = sft_policy(experiment, runs, cache_dir)
            problems = make_problems(runs.n_reward_problems + 200, seed=experiment.seed + 203,
                                     config=runs.problem_config, split="train")
            data.extend([policy.sample_many(problems[:-200], runs.reward_samples_per_problem, seed=experiment.seed + 204),
                         policy.sample_many(problems[-200:], 2, seed=experiment.seed + 205)])
        backbone_path, _ = pretrained_backbone(experiment, cache_dir)
        model = new_model(backbone_path, experiment, kind)
        config = replace(getattr(experiment, kind), max_steps=runs.reward_max_steps, seed=experiment.seed)
        _save(model, train(model, data[0], data[1], config, kind=kind), tmp)

    for kind in ("prm", "orm"):
        folder = _experiment_dir(cache_dir) / f"onpolicy-{kind}-{_hash(key | {'train': _model_key(experiment, kind)})}"
        models[kind] = cached(folder, TRAIN_INFO, lambda tmp, kind=kind: build(tmp, kind), _load_model,
                              f"on-policy {kind}")[0]
    return models


def _policy_key(experiment: ExperimentConfig, runs: PolicyRunConfig) -> dict[str, Any]:
    return {"v": CACHE_VERSION, "pretrained": _pretrain_key(experiment), "ops": [runs.min_ops, runs.max_ops],
            "sft": _without_progress(runs.sft)}


def _policy_folder(experiment: ExperimentConfig, runs: PolicyRunConfig, cache_dir: str | os.PathLike | None) -> Path:
    return _experiment_dir(cache_dir) / f"policy-{_hash(_policy_key(experiment, runs))}"


def sft_policy(experiment: ExperimentConfig, runs: PolicyRunConfig,
               cache_dir: str | os.PathLike | None = None) -> tuple[LMPolicy, dict[str, Any]]:
    """The SFT policy of a profile (trained and cached on first use) and its training info.

    An entry that is incomplete, or whose policy or ``sft_result.json`` cannot be read back, is
    trained again once (``files.cached``).
    """

    def build(tmp: Path) -> None:
        backbone_path, _ = pretrained_backbone(experiment, cache_dir)
        policy = LMPolicy.from_pretrained(backbone_path, runs.sampling, default_device())
        info = sft(policy, sft_samples(experiment, runs), runs.sft)
        policy.save_pretrained(tmp)
        write_json(tmp / "sft_result.json", info, indent=2)

    return cached(_policy_folder(experiment, runs, cache_dir), "sft_result.json", build,
                  lambda entry: _load_policy(entry, runs, "sft_result.json", ("train_seconds",)), "SFT policy")


# What the summaries read of each cached result: a file without them is damaged, and rebuilt once.
RL_RESULT_KEYS = ("evals", "updates", "seconds", "generated_tokens_per_second")
POLICY_EVAL_KEYS = ("accuracy", "greedy_accuracy", "well_formed", "per_problem", "greedy_per_problem")


def _load_policy(folder: Path, runs: PolicyRunConfig, info_file: str,
                 required: Sequence[str] = ()) -> tuple[LMPolicy, dict[str, Any]]:
    """A cached policy entry, verified (``LMPolicy.from_pretrained``), and its result JSON."""
    return (LMPolicy.from_pretrained(folder, runs.sampling, default_device()),
            read_json(folder / info_file, "policy result", required))


def policy_profile(experiment: ExperimentConfig, runs: PolicyRunConfig, seed: int = 0,
                   cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The SFT policy's held-out accuracy and well-formed share (cached with the policy)."""
    policy, info = sft_policy(experiment, runs, cache_dir)
    path = _policy_folder(experiment, runs, cache_dir) / f"eval-{_hash([_eval_key(runs), seed])}.json"

    def build(tmp: Path) -> None:
        write_json(tmp, evaluate_policy(policy, eval_problems(experiment, runs), seed=_eval_seed(seed),
                                        n_samples=runs.eval_samples))

    return cached_file(path, build, lambda p: read_json(p, "policy evaluation", POLICY_EVAL_KEYS),
                       "policy evaluation") | {
        "sft_seconds": info["train_seconds"]}


def _eval_seed(seed: int) -> int:
    return seed * 7919 + 1  # the same held-out samples' seed as RLConfig(seed=seed) uses


def reward_train_seed(experiment: ExperimentConfig, runs: PolicyRunConfig, seed: int) -> int:
    """Training seed of the reward model an RL run of ``seed`` uses: ``runs.reward_train_seeds`` at
    ``seed``'s place in ``runs.seeds``; the experiment's own seed when that list is empty or ``seed``
    is not one of ``runs.seeds``."""
    if runs.reward_train_seeds and seed in runs.seeds:
        return runs.reward_train_seeds[runs.seeds.index(seed)]
    return experiment.seed


def rl_run(experiment: ExperimentConfig, runs: PolicyRunConfig, reward: str, seed: int,
           cache_dir: str | os.PathLike | None = None) -> tuple[LMPolicy, dict[str, Any]]:
    """One RL run from the SFT policy (trained and cached on first use): the trained policy and the
    ``RLResult`` as a dict. A learned reward is the standard model of ``reward_train_seed``."""
    if reward not in REWARDS:
        raise ValueError(f"reward={reward!r} must be one of {REWARDS}.")
    config = replace(runs.rl, reward=reward, seed=seed)
    key = {"policy": _policy_key(experiment, runs), "rl": _without_progress(config), "eval": _eval_key(runs),
           "n_rl_problems": runs.n_rl_problems}
    train_seed = reward_train_seed(experiment, runs, seed)
    if reward != "outcome":  # the experiment's own models keep the key they had before seeds rotated
        key["verifier"] = _model_key(experiment, "orm" if reward == "orm" else "prm", train_seed=train_seed)
    folder = _experiment_dir(cache_dir) / f"rl-{reward}-{_hash(key)}"

    def build(tmp: Path) -> None:
        from prm_core.verification import Verifier

        policy, _ = sft_policy(experiment, runs, cache_dir)
        verifiers = {}
        if reward != "outcome":
            kind = "orm" if reward == "orm" else "prm"
            verifiers[kind] = Verifier(trained_model(experiment, kind, cache_dir=cache_dir, train_seed=train_seed)[0])
        start = policy_profile(experiment, runs, seed, cache_dir)
        result = train_rl(policy, rl_problems(experiment, runs), eval_problems(experiment, runs), config, verifiers,
                          eval_samples=runs.eval_samples,
                          initial_eval={k: v for k, v in start.items() if k != "sft_seconds"})
        policy.save_pretrained(tmp)
        write_json(tmp / "rl_result.json", asdict(result))

    return cached(folder, "rl_result.json", build, lambda entry: _load_policy(entry, runs, "rl_result.json", RL_RESULT_KEYS),
                  f"RL run ({reward}, seed {seed})")


def rl_summary(experiment: ExperimentConfig, runs: PolicyRunConfig,
               cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``results``'s ``rl`` section: the policy's figures; per reward and seed the held-out curve
    (``update``, ``accuracy``, ``greedy_accuracy``, ``reward``, ``kl``) and the run's seconds; per reward
    the paired gains over the seeds (``gain``, ``greedy_gain``) and the final accuracy minus the
    outcome reward's (``minus_outcome``)."""
    start = policy_profile(experiment, runs, runs.seeds[0], cache_dir)
    out: dict[str, Any] = {"policy": {"well_formed": start["well_formed"], "accuracy": start["accuracy"],
                                      "greedy_accuracy": start["greedy_accuracy"], "sft_seconds": start["sft_seconds"],
                                      "ops": [runs.min_ops, runs.max_ops]},
                           "config": _key(runs)}
    results = rl_results(experiment, runs, cache_dir)
    for reward, per_seed in results.items():
        out[reward] = {str(seed): {"curve": [{k: row.get(k) for k in ("update", "accuracy", "greedy_accuracy", "reward", "kl")}
                                             for row in result["evals"]],
                                   "seconds": result["seconds"],
                                   "generated_tokens_per_second": result["generated_tokens_per_second"],
                                   "reward_train_seed": None if reward == "outcome" else reward_train_seed(experiment, runs, seed)}
                       for seed, result in zip(runs.seeds, per_seed, strict=True)}
        out[reward]["gain"] = rl_gain(results, reward)
        out[reward]["greedy_gain"] = rl_gain(results, reward, "greedy_per_problem")
        if "outcome" in results and reward != "outcome":
            out[reward]["minus_outcome"] = rl_difference(results, reward, "outcome")
    return out


def rl_results(experiment: ExperimentConfig, runs: PolicyRunConfig,
               cache_dir: str | os.PathLike | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every run of the profile (trained on first use): reward -> one ``RLResult`` dict per seed."""
    return {reward: [rl_run(experiment, runs, reward, seed, cache_dir)[1] for seed in runs.seeds]
            for reward in runs.rewards}


_PER_PROBLEM_KEYS = ("per_problem", "greedy_per_problem")


def _check_results(results: Any) -> None:
    if not isinstance(results, dict) or not results:
        raise ValueError(f"results={results!r} must be rl_results' non-empty dict of reward -> RLResult dicts.")


def _runs_of(results: dict[str, list[dict[str, Any]]], reward: str) -> list[dict[str, Any]]:
    """``results[reward]``: a non-empty list of ``RLResult`` dicts with evals, or a ValueError naming what is missing."""
    _check_results(results)
    if reward not in results:
        raise ValueError(f"reward={reward!r} has no runs in results; it has {sorted(results)}.")
    runs = results[reward]
    if isinstance(runs, dict) or not isinstance(runs, Sequence) or not runs:
        raise ValueError(f"results[{reward!r}] must be a non-empty list of RLResult dicts (one per seed).")
    for i, run in enumerate(runs):
        if not isinstance(run, dict) or not run.get("evals") or "updates" not in run:
            raise ValueError(f"results[{reward!r}][{i}] must be an RLResult dict with 'evals' (at least one row) "
                             "and 'updates'; pass asdict(train_rl(...)) or rl_results(...).")
        if len(run["evals"]) != len(runs[0]["evals"]):
            raise ValueError(f"results[{reward!r}] holds runs with {len(runs[0]['evals'])} and {len(run['evals'])} "
                             "eval rows; average seeds of one schedule only.")
    return list(runs)


def _seed_rows(results: list[dict[str, Any]], row: int, key: str) -> np.ndarray:
    """(S, P): per seed and held-out problem, the accuracy at eval row ``row``."""
    check_choice(key, "key", _PER_PROBLEM_KEYS)
    rows = [check_real_array(r["evals"][row].get(key, []), f"evals[{row}][{key!r}]",
                             fix="pass evaluate_policy's per-problem accuracies") for r in results]
    if any(r.ndim != 1 or r.size == 0 or r.shape != rows[0].shape for r in rows):
        raise ValueError(f"evals[{row}][{key!r}] must hold one accuracy per held-out problem, the same problems for "
                         f"every seed; got shapes {[r.shape for r in rows]}.")
    return np.stack(rows)


def _seed_mean(results: list[dict[str, Any]], row: int, key: str) -> np.ndarray:
    """(P,): per held-out problem, the accuracy at eval row ``row`` averaged over seeds."""
    return _seed_rows(results, row, key).mean(axis=0)


def rl_curves(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per reward: held-out accuracy and greedy accuracy against updates, the mean over seeds with a 95%
    bootstrap interval over problems; the training reward, training-batch accuracy and KL per update
    (mean over seeds).

    Raises
    ------
    ValueError
        For results that are not a non-empty dict of reward -> non-empty list of ``RLResult`` dicts
        with the same eval schedule and finite per-problem accuracies.
    """
    from prm_core.metrics import bootstrap_ci

    _check_results(results)
    out = {}
    for reward in results:
        per_seed = _runs_of(results, reward)
        curve: dict[str, Any] = {"update": [row["update"] for row in per_seed[0]["evals"]]}
        for name, key in (("accuracy", "per_problem"), ("greedy_accuracy", "greedy_per_problem")):
            points = []
            for j in range(len(curve["update"])):
                values = _seed_mean(per_seed, j, key)
                low, high = bootstrap_ci(values)
                points.append({"value": float(values.mean()), "ci_low": low, "ci_high": high})
            curve[name] = points
        curve["train_update"] = [u["update"] for u in per_seed[0]["updates"]]
        for key in ("reward", "train_accuracy", "kl"):
            curve[key] = np.mean([[u[key] for u in r["updates"]] for r in per_seed], axis=0).tolist()
        curve["seconds"] = [r["seconds"] for r in per_seed]
        curve["generated_tokens_per_second"] = [r["generated_tokens_per_second"] for r in per_seed]
        out[reward] = curve
    return out


def rl_gain(results: dict[str, list[dict[str, Any]]], reward: str, key: str = "per_problem") -> dict[str, Any]:
    """Held-out accuracy after the last update minus before the first, per problem and seed: the mean
    over seeds, each seed's own (``per_seed``), and a 95% interval that resamples the RL seeds, then
    the problems (``metrics.seed_paired_difference``), so it includes how far one run, with its own
    reward model, lands from another. ``key``: "per_problem" (one sample) or "greedy_per_problem".
    A ValueError names a reward without runs, a bad key, or runs whose evals do not line up."""
    from prm_core.metrics import seed_paired_difference

    runs = _runs_of(results, reward)
    return seed_paired_difference(_seed_rows(runs, -1, key), _seed_rows(runs, 0, key))


def rl_difference(results: dict[str, list[dict[str, Any]]], a: str, b: str, key: str = "per_problem") -> dict[str, Any]:
    """Final held-out accuracy of reward ``a``'s runs minus ``b``'s, RL seed s paired with seed s and
    problem with problem, with the two-level interval of ``rl_gain``. A ValueError names a reward
    without runs, a bad key, runs of another number of seeds, or held-out problems that differ."""
    from prm_core.metrics import seed_paired_difference

    return seed_paired_difference(_seed_rows(_runs_of(results, a), -1, key), _seed_rows(_runs_of(results, b), -1, key))


def step_auroc_ci(scores: Any, samples: Sequence[Any]) -> dict[str, float]:
    """Step AUROC of ``scores`` (a ``StepScores``) against the samples' exact labels, with a 95%
    bootstrap interval that resamples whole problems (``meta["problem_id"]``).

    Raises
    ------
    ValueError
        When ``scores`` is not a ``StepScores`` with one row per sample, or a sample lacks labels or
        ``meta["problem_id"]``.
    """
    from prm_core.metrics import bootstrap_statistic_ci, step_auroc
    from prm_core.verification import StepScores

    if not isinstance(scores, StepScores):
        raise ValueError(f"scores is a {type(scores).__name__}; pass the StepScores of Verifier.score_steps(samples).")
    if isinstance(samples, str) or not isinstance(samples, Sequence) or len(samples) != len(scores.scores):
        raise ValueError(f"samples has {len(samples) if isinstance(samples, Sequence) else 'no'} entries for "
                         f"{len(scores.scores)} scored solutions; pass the samples that were scored, in order.")
    for i, s in enumerate(samples):
        if getattr(s, "labels", None) is None or "problem_id" not in getattr(s, "meta", {}):
            raise ValueError(f"samples[{i}] has no labels or no meta['problem_id']; pass labelled policy samples.")
    per_sample = scores.per_sample()
    flat = np.concatenate([np.asarray(row) for row in per_sample])
    labels = np.concatenate([np.asarray(s.labels[: len(row)], dtype=float) for s, row in zip(samples, per_sample, strict=True)])
    owner = np.concatenate([[s.meta["problem_id"]] * len(row) for s, row in zip(samples, per_sample, strict=True)])
    low, high = bootstrap_statistic_ci(lambda index: step_auroc(flat[index], labels[index]), owner)
    return {"value": step_auroc(flat, labels), "ci_low": low, "ci_high": high}


def lm_best_of_n(policy: LMPolicy, problems: Sequence[ArithmeticProblem], verifiers: dict[str, Any],
                 n_candidates: int, seed: int) -> dict[str, Any]:
    """Notebook 06's best-of-N table (``evaluation.best_of_n_report``) on ``n_candidates`` samples of
    the LM policy per problem (problem-major), scored by ``verifiers["prm"]`` and ``verifiers["orm"]``:
    ``{"table": ..., "samples": [...], "scores": {"prm": StepScores, "orm": StepScores}}``."""
    from prm_core.evaluation import best_of_n_report

    samples = policy.sample_many(problems, n_candidates, seed)
    scores = {kind: verifiers[kind].score_steps(samples) for kind in ("prm", "orm")}
    return {"table": best_of_n_report(scores["prm"], scores["orm"], samples, n_candidates), "samples": samples,
            "scores": scores}


def main(argv: list[str] | None = None) -> int:
    """``python -m prm_core.policy_runs --profile gpu --out rl.json``: the ``rl`` section alone."""
    import argparse
    import time

    from prm_core.experiments import emit_json, load_profile

    parser = argparse.ArgumentParser(description="Fine-tune the LM policy and run RL with each reward source.")
    parser.add_argument("--profile", default="cpu", help="a file params/<profile>.yaml")
    parser.add_argument("--out", type=Path, help="write the rl section as JSON here")
    parser.add_argument("--cache-dir", help="where models are cached (default: $PRM_COURSE_CACHE)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = rl_summary(load_profile(args.profile), load_policy_runs(args.profile), args.cache_dir)
    summary["wall_seconds"] = time.perf_counter() - start
    emit_json(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
