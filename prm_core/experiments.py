"""The standard evaluation every notebook shares: pretrain the backbone, train a PRM and an ORM,
evaluate both on fixed held-out sets. Each trained model is cached by a hash of its config, so a
later notebook reuses what an earlier one trained, and any notebook still runs on its own.

CLI: ``python -m prm_core.experiments --profile cpu --out build/metrics/cpu.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prm_core.backbones import cache_root, load_backbone
from prm_core.data import StepSample
from prm_core.encoding import StepEncoder
from prm_core.files import atomic_file, atomic_folder
from prm_core.model import HeadConfig, ProcessRewardModel
from prm_core.tasks.arithmetic import ArithmeticProblem, ProblemConfig, make_problems, reference_solution
from prm_core.tasks.arithmetic_policy import NoisyPolicy, PolicyConfig
from prm_core.training import TrainConfig, TrainResult, train

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
# A policy that never errs: its solutions are the pretraining text, written in the policy's own style.
CLEAN_POLICY = PolicyConfig(p_slip=0.0, p_wrong_operand=0.0, p_wrong_operation=0.0, p_miscopy=0.0, p_trap=0.0,
                            p_compensate=0.0, p_needless_breaks=0.0)
# Bump when data, training or evaluation code changes what a cached model would be.
CACHE_VERSION = 2


@dataclass(frozen=True)
class ExperimentConfig:
    """One profile of the standard evaluation (``params/<profile>.yaml``, section ``experiment``)."""

    backbone: str = "course-tiny"  # "course-tiny", a hub name or a local folder
    backbone_profile: str = "cpu"  # size of the course backbone ("cpu" or "gpu")
    max_length: int = 384  # longest encoded solution in tokens (the longest benchmark solutions need ~300)
    seed: int = 0  # seeds problems, samples and training
    n_train_problems: int = 3000  # train-side problems whose policy samples train PRM and ORM
    samples_per_train_problem: int = 8  # policy samples per train problem
    n_val_problems: int = 200  # train-side problems (disjoint from the above) to pick the first-error threshold
    n_test_problems: int = 500  # test-side problems for step metrics
    samples_per_test_problem: int = 4  # 500 x 4 = 2,000 test solutions
    n_bon_problems: int = 200  # test-side problems for best-of-N
    n_bon_samples: int = 64  # candidates per best-of-N problem
    pretrain_problems: int = 20000  # train-side problems whose correct solutions pretrain the backbone LM
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=1500))  # 0 steps: skip
    prm: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=500, lm_loss_weight=0.5))
    orm: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=500, lm_loss_weight=0.5))
    use_lm_features: bool = True  # the head also reads the backbone LM's surprise at each step
    head_mlp_size: int = 0  # 0: linear value head

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(("n_", "samples_", "pretrain_problems", "max_length")) and value < 1:
                raise ValueError(f"{f.name}={value} must be >= 1.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        check_known_settings(cls, values, "experiment")
        base = cls()
        train_keys = {"pretrain", "prm", "orm"}
        overrides = {k: replace(getattr(base, k), **v) if k in train_keys else v for k, v in values.items()}
        return replace(base, **overrides)


def check_known_settings(config_class: type, values: dict[str, Any], what: str) -> None:
    """Raise naming any key of ``values`` that is not a field of the dataclass ``config_class``."""
    known = {f.name for f in fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}; known ones are {sorted(known)}.")


def available_profiles(params_dir: Path = PARAMS_DIR) -> list[str]:
    return sorted(p.stem for p in params_dir.glob("*.yaml"))


def profile_section(profile: str, section: str, params_dir: Path = PARAMS_DIR) -> dict[str, Any]:
    """One section of ``params/<profile>.yaml`` ({} when it is absent)."""
    import yaml

    path = Path(params_dir) / f"{profile}.yaml"
    if not path.exists():
        raise ValueError(f"profile={profile!r} has no file {path}; use one of {available_profiles(params_dir)}.")
    return (yaml.safe_load(path.read_text()) or {}).get(section) or {}


def load_profile(profile: str, params_dir: Path = PARAMS_DIR) -> ExperimentConfig:
    """The ``experiment`` section of ``params/<profile>.yaml`` as a config."""
    return ExperimentConfig.from_dict(profile_section(profile, "experiment", params_dir))


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _pretrain_key(config: ExperimentConfig) -> dict[str, Any]:
    # The policy's defaults shape every sampled set, so a retuned policy must not reuse old models.
    return {"v": CACHE_VERSION, "policy": asdict(PolicyConfig()), "problems": asdict(ProblemConfig()), "backbone": config.backbone, "backbone_profile": config.backbone_profile,
            "max_length": config.max_length, "seed": config.seed, "pretrain_problems": config.pretrain_problems,
            "pretrain": asdict(config.pretrain)}


def _model_key(config: ExperimentConfig, kind: str, labels: str = "exact", n_rollouts: int = 0) -> dict[str, Any]:
    key = {"pretrained": _pretrain_key(config), "kind": kind, "train": asdict(getattr(config, kind)),
           "n_train_problems": config.n_train_problems, "samples": config.samples_per_train_problem,
           "n_val_problems": config.n_val_problems, "lm_features": config.use_lm_features,
           "mlp": config.head_mlp_size}
    if labels != "exact":  # exact-label models keep the keys they were cached under
        key.update(labels=labels, n_rollouts=n_rollouts)
    return key


@dataclass
class Datasets:
    """The fixed data of one profile: train, validation, test and best-of-N candidates."""

    train: list[StepSample]
    val: list[StepSample]
    test: list[StepSample]
    bon: list[StepSample]  # n_bon_problems x n_bon_samples, problem-major


def train_side_problems(config: ExperimentConfig) -> tuple[list[ArithmeticProblem], list[ArithmeticProblem]]:
    """The train and validation problems of a profile (both on the train side of ``split_of``)."""
    train_side = make_problems(config.n_train_problems + config.n_val_problems, seed=config.seed, split="train")
    return train_side[: config.n_train_problems], train_side[config.n_train_problems :]


def bon_problems(config: ExperimentConfig) -> list[ArithmeticProblem]:
    """The test-side problems of the best-of-N set, in the order of ``Datasets.bon``."""
    return make_problems(config.n_bon_problems, seed=config.seed + 2, split="test")


def make_datasets(config: ExperimentConfig) -> Datasets:
    """Sample every set from the policy; train/val on train-side problems, test/bon on test-side ones."""
    policy, s = NoisyPolicy(), config.seed
    train_problems, val_problems = train_side_problems(config)
    test_problems = make_problems(config.n_test_problems, seed=s + 1, split="test")
    return Datasets(
        train=policy.sample_many(train_problems, config.samples_per_train_problem, seed=s + 10),
        val=policy.sample_many(val_problems, 4, seed=s + 11),
        test=policy.sample_many(test_problems, config.samples_per_test_problem, seed=s + 12),
        bon=policy.sample_many(bon_problems(config), config.n_bon_samples, seed=s + 13),
    )


def pretraining_corpus(config: ExperimentConfig) -> list[StepSample]:
    """Correct solutions of train-side problems: reference ones and the error-free policy's."""
    problems = make_problems(config.pretrain_problems, seed=config.seed + 100, split="train")
    clean = NoisyPolicy(CLEAN_POLICY).sample_many(problems, 1, seed=config.seed + 101)
    refs = [StepSample(p.text, reference_solution(p)) for p in problems]
    return [x for pair in zip(refs, clean, strict=True) for x in pair]


def _experiment_dir(cache_dir: str | os.PathLike | None) -> Path:
    return cache_root(cache_dir) / "experiments"


def new_model(backbone_path: str, config: ExperimentConfig, kind: str, seed: int | None = None) -> ProcessRewardModel:
    """An untrained PRM or ORM on ``backbone_path`` with the profile's head and encoder settings;
    ``seed`` (default ``config.seed``) seeds the head's initialisation."""
    backbone, tokenizer = load_backbone(backbone_path, profile=config.backbone_profile)
    encoder = StepEncoder(tokenizer, max_length=config.max_length, model=backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else seed)  # the head's initialisation
        head = HeadConfig(hidden_size=backbone.config.hidden_size, mlp_size=config.head_mlp_size,
                          use_lm_features=config.use_lm_features)
        return ProcessRewardModel(backbone, encoder, kind=kind, head=head)


def _save(model: ProcessRewardModel, result: TrainResult, folder: Path) -> None:
    """Save model and train info so that a reader never sees a half-written folder."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        (tmp / "train_result.json").write_text(json.dumps(asdict(result), indent=2, default=str))


def _json_default(value: Any) -> Any:
    """numpy scalars as numbers, anything else JSON cannot hold as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def pretrained_backbone(config: ExperimentConfig, cache_dir: str | os.PathLike | None = None) -> tuple[str, dict]:
    """Path of the backbone after LM pretraining (built and cached on first use) and its train info."""
    if config.pretrain.max_steps == 0 or config.backbone != "course-tiny":
        return config.backbone, {}  # load_backbone builds or loads it by name
    folder = _experiment_dir(cache_dir) / f"pretrained-{_hash(_pretrain_key(config))}"
    if not (folder / "train_result.json").exists():
        model = new_model(config.backbone, config, "prm")
        result = train(model, pretraining_corpus(config), config=replace(config.pretrain, seed=config.seed), kind="lm")
        _save(model, result, folder)
    info = json.loads((folder / "train_result.json").read_text())
    return str(folder / "backbone"), info


def _rollouts(config: ExperimentConfig, samples: list[StepSample], n_rollouts: int, show_progress: bool,
              cache_dir: str | os.PathLike | None) -> list[np.ndarray]:
    """``labeling.rollout_successes`` of train-side ``samples``, cached: hard and soft labels share them."""
    from prm_core import labeling

    if not samples:
        return []
    key = {"v": CACHE_VERSION, "policy": asdict(PolicyConfig()), "seed": config.seed + 20, "k": n_rollouts,
           "samples": [[s.problem, s.steps] for s in samples]}
    path = _experiment_dir(cache_dir) / f"rollouts-{_hash(key)}.npz"
    if path.exists():
        with np.load(path) as stored:
            return np.split(stored["hits"], np.cumsum(stored["n_steps"])[:-1])
    train_problems, val_problems = train_side_problems(config)
    hits = labeling.rollout_successes(samples, train_problems + val_problems, NoisyPolicy(), n_rollouts,
                                      seed=config.seed + 20, show_progress=show_progress)
    with atomic_file(path) as tmp:  # a reader never sees half a file
        np.savez(tmp, hits=np.concatenate(hits), n_steps=np.array([h.shape[0] for h in hits]))
    return hits


def relabelled(config: ExperimentConfig, samples: list[StepSample], labels: str, n_rollouts: int = 8,
               show_progress: bool = True, cache_dir: str | os.PathLike | None = None) -> list[StepSample]:
    """Train-side ``samples`` with labels from another source (``prm_core.labeling.LABEL_SOURCES``)."""
    from prm_core import labeling

    if labels not in labeling.LABEL_SOURCES:
        raise ValueError(f"labels={labels!r} must be one of {labeling.LABEL_SOURCES}.")
    if labels == "exact":
        return list(samples)
    if labels == "outcome":
        return [labeling.outcome_labels(s) for s in samples]
    hits = _rollouts(config, samples, n_rollouts, show_progress, cache_dir)
    kind = labels.removeprefix("mc_")
    return labeling.with_labels(samples, labeling.monte_carlo_labels(hits, n_rollouts, kind), labels)


def _model_folder(config: ExperimentConfig, kind: str, labels: str, n_rollouts: int,
                  cache_dir: str | os.PathLike | None) -> Path:
    key = _model_key(config, kind, labels, n_rollouts if labels.startswith("mc_") else 0)
    return _experiment_dir(cache_dir) / f"{kind}-{_hash(key)}"


def trained_model(config: ExperimentConfig, kind: str, data: Datasets | None = None,
                  cache_dir: str | os.PathLike | None = None, labels: str = "exact",
                  n_rollouts: int = 8) -> tuple[ProcessRewardModel, dict]:
    """A PRM or ORM trained by the profile (from the cache when it exists) and its train info.

    ``labels`` picks the source of the training set's step labels ("exact", "outcome", "mc_hard",
    "mc_soft" with ``n_rollouts`` completions per step); validation keeps the exact labels.
    """
    folder = _model_folder(config, kind, labels, n_rollouts, cache_dir)
    if not (folder / "train_result.json").exists():
        data = data or make_datasets(config)
        train_set = relabelled(config, data.train, labels, n_rollouts, cache_dir=cache_dir)
        backbone_path, _ = pretrained_backbone(config, cache_dir)
        model = new_model(backbone_path, config, kind)
        result = train(model, train_set, data.val, replace(getattr(config, kind), seed=config.seed), kind=kind)
        _save(model, result, folder)
    model = ProcessRewardModel.from_pretrained(folder).to(default_device()).eval()
    return model, json.loads((folder / "train_result.json").read_text())


def model_scores(config: ExperimentConfig, kind: str, data: Datasets, cache_dir: str | os.PathLike | None = None,
                 labels: str = "exact", n_rollouts: int = 8) -> dict[str, Any]:
    """Step scores ("val", "test", "bon" -> StepScores) of a ``trained_model``, cached beside it."""
    from prm_core.evaluation import score_datasets

    model, _ = trained_model(config, kind, data, cache_dir, labels, n_rollouts)
    path = _model_folder(config, kind, labels, n_rollouts, cache_dir) / "scores.safetensors"
    if not path.exists():
        scores = score_datasets({kind: model}, data)
        with atomic_file(path) as tmp:  # a reader never sees half a file
            _save_scores(scores, tmp)
    return _load_scores(path, _parts(data), model.encoder)[kind]


METRICS_DIR = PARAMS_DIR.parent / "build" / "metrics"


def record_metrics(name: str, metrics: dict[str, Any], out_dir: str | os.PathLike | None = None) -> None:
    """Write a notebook's headline numbers to ``build/metrics/<name>.json`` (``make run-notebooks``
    collects them there). Returns nothing, so a notebook cell ending with it displays no
    machine-specific path."""
    folder = Path(out_dir) if out_dir is not None else METRICS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(metrics, indent=2, default=_json_default))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_commit() -> str | None:
    """The checked-out commit of this code, None outside a git checkout."""
    return _git("rev-parse", "HEAD")


def git_dirty() -> bool | None:
    """True when tracked files differ from that commit (the numbers may come from uncommitted code)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class StandardRun:
    """Everything a notebook needs from the standard experiment of one profile."""

    config: ExperimentConfig
    data: Datasets
    prm: ProcessRewardModel
    orm: ProcessRewardModel
    scores: dict[str, dict[str, Any]]  # model -> "val" / "test" / "bon" -> StepScores
    report: dict[str, Any]  # the metrics JSON
    train_info: dict[str, dict]  # "backbone_pretraining" / "prm" / "orm" -> TrainResult as a dict


def _save_scores(scores: dict[str, dict[str, Any]], path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"{m}.{part}.{k}": getattr(s, k).contiguous() for m, parts in scores.items()
               for part, s in parts.items() for k in ("scores", "mask", "n_dropped_steps")}
    save_file(tensors, str(path))


def _load_scores(path: Path, parts: dict[str, Sequence[StepSample]],
                 encoder: StepEncoder | Callable[[], StepEncoder]) -> dict[str, dict[str, Any]]:
    """The saved step scores; a file written before truncation was recorded gets its
    ``n_dropped_steps`` counted again by encoding ``parts`` (part -> samples) with ``encoder``
    (or the encoder a callable builds, only then)."""
    from safetensors.torch import load_file

    from prm_core.verification import StepScores

    tensors, scores = load_file(str(path)), {}
    for key in tensors:
        model, part, _ = key.split(".")
        dropped = tensors.get(f"{model}.{part}.n_dropped_steps")
        if dropped is None:
            encoder = encoder if isinstance(encoder, StepEncoder) else encoder()
            dropped = torch.tensor([e.n_dropped_steps for e in encoder.encode_many(parts[part])], dtype=torch.long)
        scores.setdefault(model, {})[part] = StepScores(tensors[f"{model}.{part}.scores"],
                                                        tensors[f"{model}.{part}.mask"], dropped)
    return scores


def _parts(data: Datasets) -> dict[str, Sequence[StepSample]]:
    return {part: getattr(data, part) for part in ("val", "test", "bon")}


def standard_run(config: ExperimentConfig, profile: str = "custom",
                 cache_dir: str | os.PathLike | None = None) -> StandardRun:
    """Train (or load) the profile's PRM and ORM, score every held-out set, and report; all cached."""
    from prm_core.evaluation import build_report, score_datasets

    data = make_datasets(config)
    _, pretrain_info = pretrained_backbone(config, cache_dir)
    prm, prm_info = trained_model(config, "prm", data, cache_dir)
    orm, orm_info = trained_model(config, "orm", data, cache_dir)
    train_info = {"backbone_pretraining": pretrain_info, "prm": prm_info, "orm": orm_info}
    folder = _experiment_dir(cache_dir) / f"report-{_hash([_model_key(config, 'prm'), _model_key(config, 'orm'), asdict(config)])}"
    if (folder / "report.json").exists():
        return StandardRun(config, data, prm, orm, _load_scores(folder / "scores.safetensors", _parts(data), prm.encoder),
                           json.loads((folder / "report.json").read_text()), train_info)
    scores = score_datasets({"prm": prm, "orm": orm}, data)
    report = build_report(scores, data)
    report["device"] = str(default_device())
    report["profile"] = profile
    report["git_commit"] = git_commit()
    report["host"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                      "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    report["config"] = asdict(config)
    report["training"] = {
        name: {"train_seconds": info.get("train_seconds"), "tokens_per_second": info.get("tokens_per_second"),
               "device": info.get("device"), "max_steps": info.get("config", {}).get("max_steps")}
        for name, info in train_info.items() if info
    }
    report = json.loads(json.dumps(report, default=_json_default))
    folder.mkdir(parents=True, exist_ok=True)
    _save_scores(scores, folder / "scores.safetensors")
    with atomic_file(folder / "report.json") as tmp:  # its presence marks the run done, so never half of it
        tmp.write_text(json.dumps(report, indent=2))
    return StandardRun(config, data, prm, orm, scores, report, train_info)


def run_standard(config: ExperimentConfig, profile: str = "custom", cache_dir: str | os.PathLike | None = None,
                 sweep: Any | None = None, show_progress: bool = True, rl: Any | None = None) -> dict[str, Any]:
    """The metrics dict of ``standard_run`` plus the Verifier's throughput and, with a
    ``prm_core.sweeps.SweepConfig``, the comparison sections of the results file: ``prm_minus_orm``
    (paired differences of the standard models), ``by_n_operations``, ``data_efficiency`` and
    ``ablations``; with a ``prm_core.policy_runs.PolicyRunConfig``, ``rl`` (``policy_runs.rl_summary``)."""
    from prm_core.evaluation import scoring_throughput, throughput_batch_size

    run = standard_run(config, profile, cache_dir)
    report = dict(run.report)
    # the cached report keeps the commit that first evaluated these models; say which code wrote this one
    report["evaluated_at_commit"] = report.get("git_commit")
    report["git_commit"], report["git_dirty"] = git_commit(), git_dirty()
    batch = throughput_batch_size(default_device())
    report["throughput"] = scoring_throughput(run.prm, (run.data.bon * 2)[: 4 * batch], batch)
    if sweep is not None:
        from prm_core.comparison import by_n_operations, prm_minus_orm
        from prm_core.sweeps import ablations, data_efficiency

        report["prm_minus_orm"] = prm_minus_orm(run.scores, run.data)
        report["by_n_operations"] = by_n_operations(run.scores, run.data)
        report["data_efficiency"] = data_efficiency(config, sweep, run.data, cache_dir, show_progress)
        report["ablations"] = ablations(config, sweep, run.data, cache_dir, show_progress)
        report["sweep_config"] = asdict(sweep)
    if rl is not None:
        from prm_core.policy_runs import rl_summary

        report["rl"] = rl_summary(config, rl, cache_dir)
    return json.loads(json.dumps(report, default=_json_default))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate the standard PRM and ORM of a profile.")
    parser.add_argument("--profile", default="cpu", help=f"one of {available_profiles()}")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here (e.g. build/metrics/cpu.json)")
    parser.add_argument("--cache-dir", help="where trained models are cached (default: $PRM_COURSE_CACHE)")
    parser.add_argument("--no-sweeps", action="store_true",
                        help="skip by_n_operations, data_efficiency, ablations and rl (the standard models only)")
    parser.add_argument("--no-rl", action="store_true", help="skip rl (the LM policy and its RL runs)")
    args = parser.parse_args(argv)
    from prm_core.policy_runs import load_policy_runs
    from prm_core.sweeps import load_sweep

    start = time.perf_counter()
    sweep = None if args.no_sweeps else load_sweep(args.profile)
    rl = None if args.no_sweeps or args.no_rl else load_policy_runs(args.profile)
    metrics = run_standard(load_profile(args.profile), args.profile, args.cache_dir, sweep, rl=rl)
    metrics["wall_seconds"] = time.perf_counter() - start
    emit_json(metrics, args.out)
    return 0


def emit_json(data: dict[str, Any], out: Path | None) -> None:
    """Print ``data`` as JSON, and write it to ``out`` too when given (a CLI's ``--out``)."""
    text = json.dumps(data, indent=2, default=_json_default)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
