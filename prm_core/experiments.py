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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prm_core.backbones import PROFILES, cache_root, load_backbone
from prm_core.checks import check_choice, check_int, check_seed
from prm_core.config_checks import check_fields, config_from_mapping
from prm_core.data import StepSample
from prm_core.encoding import StepEncoder
from prm_core.files import CorruptFileError, cached, cached_file, read_json, write_json, write_text
from prm_core.model import HeadConfig, ProcessRewardModel
from prm_core.score_files import load_scores, save_scores
from prm_core.tasks.arithmetic import ArithmeticProblem, ProblemConfig, make_problems, reference_solution
from prm_core.tasks.arithmetic_policy import NoisyPolicy, PolicyConfig
from prm_core.training import TrainConfig, TrainResult, train

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
# A policy that never errs: its solutions are the pretraining text, written in the policy's own style.
CLEAN_POLICY = PolicyConfig(p_slip=0.0, p_wrong_operand=0.0, p_wrong_operation=0.0, p_miscopy=0.0, p_trap=0.0,
                            p_compensate=0.0, p_needless_breaks=0.0)
# Bump when data, training or evaluation code changes what a cached model would be.
CACHE_VERSION = 2


# ExperimentConfig's counts of problems and samples: each an int >= 1.
COUNT_FIELDS: tuple[str, ...] = ("n_train_problems", "samples_per_train_problem", "n_val_problems", "n_test_problems",
                                 "samples_per_test_problem", "n_bon_problems", "n_bon_samples", "pretrain_problems")


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
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=1500))  # the course backbone only
    prm: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=500, lm_loss_weight=0.5))
    orm: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=500, lm_loss_weight=0.5))
    use_lm_features: bool = True  # the head also reads the backbone LM's surprise at each step
    head_mlp_size: int = 0  # 0: linear value head
    # Seeds the course backbone's pretraining run (its weights' initialisation and batch order) on the
    # same corpus; None: ``seed``'s batches from the built backbone's own initialisation (so
    # pretrain_seed=0 is not the default run). Another value is another draw of pretraining, under
    # everything else unchanged. The course backbone only.
    pretrain_seed: int | None = None

    def __post_init__(self) -> None:
        for name in COUNT_FIELDS:
            check_int(getattr(self, name), name, "[1, inf)")
        check_int(self.max_length, "max_length", "[2, inf)", "the longest benchmark solutions need about 300")
        check_int(self.head_mlp_size, "head_mlp_size", "[0, inf)", "0 gives a linear head")
        check_seed(self.seed)
        if self.pretrain_seed is not None:
            check_seed(self.pretrain_seed, "pretrain_seed")
            if self.backbone != "course-tiny":
                raise ValueError(f"pretrain_seed={self.pretrain_seed} pretrains the course backbone, but backbone="
                                 f"{self.backbone!r} is used as it is; pass pretrain_seed=None.")
        check_choice(self.backbone_profile, "backbone_profile", sorted(PROFILES))
        check_fields(self)
        if not self.backbone.strip():
            raise ValueError("backbone='' must name a backbone: 'course-tiny', a hub name or a local folder.")

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str = "experiment") -> ExperimentConfig:
        """The config from a mapping such as a params file's ``experiment`` section (its ``pretrain``,
        ``prm`` and ``orm`` are mappings of ``TrainConfig`` settings); errors name the section and key."""
        return config_from_mapping(cls, values, section)


def available_profiles(params_dir: Path = PARAMS_DIR) -> list[str]:
    return sorted(p.stem for p in params_dir.glob("*.yaml"))


def _params_loader() -> type:
    """PyYAML's safe loader without YAML 1.1's surprises for settings: a repeated key is an error (not
    the last one silently), and only plain decimal numbers are numbers (``3e-3`` included, as in YAML
    1.2), so ``seed: 017`` (octal 15) and ``max_steps: 1:30`` (base 60: 90) stay text, which the
    config then refuses by name."""
    import re

    import yaml

    class ParamsLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"keys {repeated} appear more than once",
                                                        node.start_mark)
            return super().construct_mapping(node, deep=deep)

    ParamsLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int",
                                                                          "tag:yaml.org,2002:float")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*)$"),
                                       list("-+0123456789"))
    ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(\.[0-9]+|[0-9][0-9_]*\.[0-9_]*)([eE][-+]?[0-9]+)?$"  # a dot, maybe an exponent
        r"|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),  # or an exponent alone
        list("-+0123456789."))
    return ParamsLoader


def profile_section(profile: str, section: str, params_dir: Path = PARAMS_DIR) -> dict[str, Any]:
    """One section of ``params/<profile>.yaml`` ({} when it is absent).

    Raises
    ------
    ValueError
        When the file is missing, is not valid YAML, or its top level or the section is not a mapping.
    """
    import yaml

    if not isinstance(profile, str) or not profile or "/" in profile:
        raise ValueError(f"profile={profile!r} must be the name of a file params/<profile>.yaml; use one of "
                         f"{available_profiles(params_dir)}.")
    path = Path(params_dir) / f"{profile}.yaml"
    if not path.exists():
        raise ValueError(f"profile={profile!r} has no file {path}; use one of {available_profiles(params_dir)}.")
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_params_loader())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid YAML ({err}); fix the file.") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a YAML {type(content).__name__}; it must be a mapping of sections "
                         "(experiment:, sweeps:, rl:).")
    values = content.get(section)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: section {section}={values!r} must be a mapping of settings.")
    return values


def load_profile(profile: str, params_dir: Path = PARAMS_DIR) -> ExperimentConfig:
    """The ``experiment`` section of ``params/<profile>.yaml`` as a config."""
    return ExperimentConfig.from_dict(profile_section(profile, "experiment", params_dir))


def _check_train_seeds(train_seeds: Any, name: str = "train_seeds") -> tuple[int, ...]:
    """``train_seeds`` as a tuple of distinct seeds, at least one; ValueError naming ``name`` otherwise."""
    if isinstance(train_seeds, str | bytes) or not isinstance(train_seeds, Sequence) or not train_seeds:
        raise ValueError(f"{name}={train_seeds!r} must be a non-empty list of training seeds, e.g. [0, 1, 2].")
    seeds = tuple(check_seed(seed, f"{name}[{i}]") for i, seed in enumerate(train_seeds))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name}={list(seeds)} repeats a seed; the seeds must be distinct: one training run counted "
                         "twice would hide the spread between runs.")
    return seeds


def load_train_seeds(profile: str, params_dir: Path = PARAMS_DIR) -> tuple[int, ...]:
    """Training seeds of the standard PRM and ORM: ``standard.train_seeds`` of ``params/<profile>.yaml``
    (default: the experiment's seed alone). Each seed is another training run on the same pretrained
    backbone and data (``trained_model``'s ``train_seed``); the experiment's own seed must be one of
    them, since its models are the ones every notebook loads.

    Raises
    ------
    ValueError
        When ``train_seeds`` is not a list of distinct seeds that includes ``experiment.seed``, or
        the section holds another key.
    """
    config = load_profile(profile, params_dir)
    section = profile_section(profile, "standard", params_dir)
    unknown = set(section) - {"train_seeds"}
    if unknown:
        raise ValueError(f"params/{profile}.yaml: section standard has unknown keys {sorted(unknown)}; it holds "
                         "train_seeds only, e.g. train_seeds: [0, 1, 2].")
    seeds = _check_train_seeds(section.get("train_seeds", [config.seed]), f"params/{profile}.yaml: standard.train_seeds")
    if config.seed not in seeds:
        raise ValueError(f"params/{profile}.yaml: standard.train_seeds={list(seeds)} must include "
                         f"experiment.seed={config.seed} (the models the notebooks load), e.g. [{config.seed}, 1, 2].")
    return seeds


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_key(config: ExperimentConfig) -> dict[str, Any]:
    """``asdict(config)`` for cache keys, without ``pretrain_seed`` when it is None (the keys written
    before it existed stay valid)."""
    return {k: v for k, v in asdict(config).items() if not (k == "pretrain_seed" and v is None)}


def _pretrain_key(config: ExperimentConfig) -> dict[str, Any]:
    # The policy's defaults shape every sampled set, so a retuned policy must not reuse old models.
    extra = {} if config.pretrain_seed is None else {"pretrain_seed": config.pretrain_seed}
    return extra | {"v": CACHE_VERSION, "policy": asdict(PolicyConfig()), "problems": asdict(ProblemConfig()), "backbone": config.backbone, "backbone_profile": config.backbone_profile,
            "max_length": config.max_length, "seed": config.seed, "pretrain_problems": config.pretrain_problems,
            "pretrain": asdict(config.pretrain)}


def _model_key(config: ExperimentConfig, kind: str, labels: str = "exact", n_rollouts: int = 0,
               train_seed: int | None = None) -> dict[str, Any]:
    key = {"pretrained": _pretrain_key(config), "kind": kind, "train": asdict(getattr(config, kind)),
           "n_train_problems": config.n_train_problems, "samples": config.samples_per_train_problem,
           "n_val_problems": config.n_val_problems, "lm_features": config.use_lm_features,
           "mlp": config.head_mlp_size}
    if labels != "exact":  # exact-label models keep the keys they were cached under
        key.update(labels=labels, n_rollouts=n_rollouts)
    if train_seed is not None and train_seed != config.seed:  # the standard models keep theirs too
        key.update(train_seed=train_seed)
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


TRAIN_INFO = "train_result.json"  # a model entry's marker: written last, so its presence means complete


def _save(model: ProcessRewardModel, result: TrainResult, folder: Path) -> None:
    """Save model and train info into ``folder`` (a cache entry's build folder), the train info last."""
    model.save_pretrained(folder)
    write_json(folder / TRAIN_INFO, asdict(result), indent=2, default=str)


def _train_info(folder: Path) -> dict[str, Any]:
    return read_json(folder / TRAIN_INFO, "train info")


def _load_model(folder: Path) -> tuple[ProcessRewardModel, dict[str, Any]]:
    """A cached model entry, verified (``ProcessRewardModel.from_pretrained``), and its train info."""
    return ProcessRewardModel.from_pretrained(folder).to(default_device()).eval(), _train_info(folder)


def _json_default(value: Any) -> Any:
    """numpy scalars as numbers, anything else JSON cannot hold as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _initialise(backbone: torch.nn.Module, seed: int) -> None:
    """Fresh weights for ``backbone`` under ``seed``: every matrix normal with the config's
    ``initializer_range`` (the embeddings' padding row too, which Qwen2's own initialisation zeroes;
    the tied LM head trains it like any other row), norms 1, biases 0; the tokenizer is kept."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name, parameter in backbone.named_parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, backbone.config.initializer_range)
            else:
                parameter.fill_(1.0 if "norm" in name else 0.0)


def pretrained_backbone(config: ExperimentConfig, cache_dir: str | os.PathLike | None = None) -> tuple[str, dict]:
    """Path of the backbone after LM pretraining (built and cached on first use) and its train info."""
    if config.backbone != "course-tiny":
        return config.backbone, {}  # load_backbone builds or loads it by name
    folder = _experiment_dir(cache_dir) / f"pretrained-{_hash(_pretrain_key(config))}"

    def build(tmp: Path) -> None:
        model = new_model(config.backbone, config, "prm")
        if config.pretrain_seed is not None:
            _initialise(model.backbone, config.pretrain_seed)
        seed = config.seed if config.pretrain_seed is None else config.pretrain_seed
        result = train(model, pretraining_corpus(config), config=replace(config.pretrain, seed=seed), kind="lm")
        _save(model, result, tmp)

    def load(entry: Path) -> dict[str, Any]:  # the verified load: a damaged backbone is rebuilt, never trained on
        load_backbone(str(entry / "backbone"))
        return _train_info(entry)

    return str(folder / "backbone"), cached(folder, TRAIN_INFO, build, load, "pretrained backbone")


def _rollouts(config: ExperimentConfig, samples: list[StepSample], n_rollouts: int, show_progress: bool,
              cache_dir: str | os.PathLike | None) -> list[np.ndarray]:
    """``labeling.rollout_successes`` of train-side ``samples``, cached: hard and soft labels share them."""
    from prm_core import labeling

    if not samples:
        return []
    key = {"v": CACHE_VERSION, "policy": asdict(PolicyConfig()), "seed": config.seed + 20, "k": n_rollouts,
           "samples": [[s.problem, s.steps] for s in samples]}
    path = _experiment_dir(cache_dir) / f"rollouts-{_hash(key)}.npz"

    def build(tmp: Path) -> None:
        train_problems, val_problems = train_side_problems(config)
        hits = labeling.rollout_successes(samples, train_problems + val_problems, NoisyPolicy(), n_rollouts,
                                          seed=config.seed + 20, show_progress=show_progress)
        np.savez(tmp, hits=np.concatenate(hits), n_steps=np.array([h.shape[0] for h in hits]))

    return cached_file(path, build, lambda p: _load_rollouts(p, samples, n_rollouts), "rollouts cache")


def _load_rollouts(path: Path, samples: list[StepSample], n_rollouts: int) -> list[np.ndarray]:
    """The saved rollout outcomes, split per sample, once they fit ``samples`` and ``n_rollouts``."""
    import zipfile
    import zlib

    try:
        with np.load(path) as stored:
            hits, n_steps = stored["hits"], stored["n_steps"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CorruptFileError(f"rollouts cache {path} cannot be read ({err}); delete it to draw them again.") from err
    expected = [s.n_steps for s in samples]
    if (hits.dtype != bool or hits.shape != (sum(expected), n_rollouts) or n_steps.dtype.kind not in "iu"
            or n_steps.tolist() != expected):
        raise CorruptFileError(f"rollouts cache {path} holds hits of dtype {hits.dtype} and shape {hits.shape} for "
                               f"{n_steps.size} samples, but these {len(samples)} samples need bool hits of shape "
                               f"({sum(expected)}, {n_rollouts}); delete it to draw them again.")
    return np.split(hits, np.cumsum(n_steps)[:-1])


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
                  cache_dir: str | os.PathLike | None, train_seed: int | None = None) -> Path:
    key = _model_key(config, kind, labels, n_rollouts if labels.startswith("mc_") else 0, train_seed)
    return _experiment_dir(cache_dir) / f"{kind}-{_hash(key)}"


def trained_model(config: ExperimentConfig, kind: str, data: Datasets | None = None,
                  cache_dir: str | os.PathLike | None = None, labels: str = "exact",
                  n_rollouts: int = 8, train_seed: int | None = None) -> tuple[ProcessRewardModel, dict]:
    """A PRM or ORM trained by the profile (from the cache when it exists) and its train info.

    ``labels`` picks the source of the training set's step labels ("exact", "outcome", "mc_hard",
    "mc_soft" with ``n_rollouts`` completions per step); validation keeps the exact labels.
    ``train_seed`` (default ``config.seed``) seeds the head's initialisation and the batches only:
    the pretrained backbone, the data and the sampled solutions stay those of ``config.seed``, so
    models of several training seeds differ by their training run alone (another draw of it).
    """
    train_seed = config.seed if train_seed is None else check_seed(train_seed, "train_seed")
    folder = _model_folder(config, kind, labels, n_rollouts, cache_dir, train_seed)

    def build(tmp: Path) -> None:
        sets = data or make_datasets(config)
        train_set = relabelled(config, sets.train, labels, n_rollouts, cache_dir=cache_dir)
        backbone_path, _ = pretrained_backbone(config, cache_dir)
        model = new_model(backbone_path, config, kind, seed=train_seed)
        result = train(model, train_set, sets.val, replace(getattr(config, kind), seed=train_seed), kind=kind)
        _save(model, result, tmp)

    return cached(folder, TRAIN_INFO, build, _load_model, f"trained {kind}" + (
        f" (train_seed {train_seed})" if train_seed != config.seed else ""))


def model_scores(config: ExperimentConfig, kind: str, data: Datasets, cache_dir: str | os.PathLike | None = None,
                 labels: str = "exact", n_rollouts: int = 8, train_seed: int | None = None) -> dict[str, Any]:
    """Step scores ("val", "test", "bon" -> StepScores) of a ``trained_model``, cached beside it."""
    from prm_core.evaluation import score_datasets

    model, _ = trained_model(config, kind, data, cache_dir, labels, n_rollouts, train_seed)
    path = _model_folder(config, kind, labels, n_rollouts, cache_dir, train_seed) / "scores.safetensors"
    return cached_file(path, lambda tmp: save_scores(score_datasets({kind: model}, data), tmp),
                       lambda p: load_scores(p, _parts(data), model.encoder, (kind,)), "step scores")[kind]


METRICS_DIR = PARAMS_DIR.parent / "build" / "metrics"


def record_metrics(name: str, metrics: dict[str, Any], out_dir: str | os.PathLike | None = None) -> None:
    """Write a notebook's headline numbers to ``build/metrics/<name>.json`` (``make run-notebooks``
    collects them there). Returns nothing, so a notebook cell ending with it displays no
    machine-specific path."""
    folder = Path(out_dir) if out_dir is not None else METRICS_DIR
    write_json(folder / f"{name}.json", metrics, indent=2, default=_json_default)


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


def _parts(data: Datasets) -> dict[str, Sequence[StepSample]]:
    return {part: getattr(data, part) for part in ("val", "test", "bon")}


def standard_run(config: ExperimentConfig, profile: str = "custom",
                 cache_dir: str | os.PathLike | None = None, train_seed: int | None = None) -> StandardRun:
    """Train (or load) the profile's PRM and ORM, score every held-out set, and report; all cached.

    ``train_seed`` (default ``config.seed``) picks another training run of both models on the same
    backbone and data (``trained_model``): a notebook run with another one checks that its claims
    hold for another draw of the training, not for one.

    Raises
    ------
    CorruptFileError
        When a cache entry is still unreadable after it was rebuilt once (``files.cached``).
    """
    from prm_core.evaluation import score_datasets

    train_seed = config.seed if train_seed is None else check_seed(train_seed, "train_seed")
    data = make_datasets(config)
    _, pretrain_info = pretrained_backbone(config, cache_dir)
    prm, prm_info = trained_model(config, "prm", data, cache_dir, train_seed=train_seed)
    orm, orm_info = trained_model(config, "orm", data, cache_dir, train_seed=train_seed)
    train_info = {"backbone_pretraining": pretrain_info, "prm": prm_info, "orm": orm_info}
    keys = [_model_key(config, kind, train_seed=train_seed) for kind in ("prm", "orm")]
    folder = _experiment_dir(cache_dir) / f"report-{_hash([*keys, config_key(config)])}"

    def build(tmp: Path) -> None:
        if train_seed == config.seed:
            scores = score_datasets({"prm": prm, "orm": orm}, data)
        else:  # another seed's scores are cached beside its models (prebuild's train_seed tasks)
            scores = {kind: model_scores(config, kind, data, cache_dir, train_seed=train_seed) for kind in ("prm", "orm")}
        save_scores(scores, tmp / "scores.safetensors")
        write_json(tmp / "report.json", _report(scores, data, profile, config, train_info) | {"train_seed": train_seed},
                   indent=2)

    def load(entry: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        return (load_scores(entry / "scores.safetensors", _parts(data), prm.encoder, ("prm", "orm")),
                read_json(entry / "report.json", "report"))

    scores, report = cached(folder, "report.json", build, load, "standard report")  # report.json: the marker
    return StandardRun(config, data, prm, orm, scores, report, train_info)


def _report(scores: dict[str, dict[str, Any]], data: Datasets, profile: str, config: ExperimentConfig,
            train_info: dict[str, dict]) -> dict[str, Any]:
    """The metrics JSON of ``standard_run``, with what produced it (host, config, training), as JSON values."""
    from prm_core.evaluation import build_report

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
    return json.loads(json.dumps(report, default=_json_default))


def seed_scores(run: StandardRun, kind: str, train_seeds: Sequence[int],
                cache_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Step scores ("val", "test", "bon") of the standard ``kind`` model of each training seed, in the
    order given: the run's own scores for ``run.config.seed``, ``model_scores`` (trained and cached on
    first use) for the others."""
    if kind not in ("prm", "orm"):
        raise ValueError(f"kind={kind!r} must be 'prm' or 'orm'.")
    train_seeds = _check_train_seeds(train_seeds)
    return [run.scores[kind] if seed == run.config.seed else
            model_scores(run.config, kind, run.data, cache_dir, train_seed=seed) for seed in train_seeds]


def standard_over_seeds(run: StandardRun, train_seeds: Sequence[int],
                        cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The standard PRM and ORM over training seeds: ``prm`` and ``orm`` (``comparison_over_seeds``)
    and ``prm_minus_orm`` (``prm_minus_orm_over_seeds``, seed s paired with seed s), every entry
    with its per-seed values and an interval that resamples the seeds, then the problems."""
    from prm_core.comparison_seeds import SeedModels, comparison_over_seeds, prm_minus_orm_over_seeds

    train_seeds = _check_train_seeds(train_seeds)
    seeds = {kind: SeedModels(seed_scores(run, kind, train_seeds, cache_dir), run.data, kind) for kind in ("prm", "orm")}
    return {"train_seeds": list(train_seeds),
            **{kind: comparison_over_seeds(seeds[kind], run.data, kind) for kind in ("prm", "orm")},
            "prm_minus_orm": prm_minus_orm_over_seeds(seeds["prm"], seeds["orm"], run.data)}


def run_standard(config: ExperimentConfig, profile: str = "custom", cache_dir: str | os.PathLike | None = None,
                 sweep: Any | None = None, show_progress: bool = True, rl: Any | None = None,
                 train_seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The metrics dict of ``standard_run`` plus the Verifier's throughput and, with a
    ``prm_core.sweeps.SweepConfig``, the comparison sections of the results file: ``prm_minus_orm``
    (paired differences of the standard models), ``by_n_operations``, ``data_efficiency`` and
    ``ablations``; with a ``prm_core.policy_runs.PolicyRunConfig``, ``rl`` (``policy_runs.rl_summary``);
    with ``train_seeds``, ``over_seeds`` (``standard_over_seeds``: the standard models of each seed)."""
    from prm_core.evaluation import scoring_throughput, throughput_batch_size

    if sweep is not None:
        sweep.check_fits(config)  # now, not after the standard models have trained
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
    if train_seeds is not None:
        report["over_seeds"] = standard_over_seeds(run, train_seeds, cache_dir)
    if rl is not None:
        from prm_core.policy_runs import rl_summary

        report["rl"] = rl_summary(config, rl, cache_dir)
    return json.loads(json.dumps(report, default=_json_default))


def _seed_argument(text: str) -> int:
    """A seed from the command line, or argparse's usage error naming what is wrong."""
    try:
        return check_seed(int(text), "--pretrain-seed")
    except ValueError as err:  # int('x') included
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (an int in [0, 2**63)); pass e.g. 1") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate the standard PRM and ORM of a profile.")
    parser.add_argument("--profile", default="cpu", help=f"one of {available_profiles()}")
    parser.add_argument("--out", type=Path, help="write the metrics JSON here (e.g. build/metrics/cpu.json)")
    parser.add_argument("--cache-dir", help="where trained models are cached (default: $PRM_COURSE_CACHE)")
    parser.add_argument("--no-sweeps", action="store_true",
                        help="skip by_n_operations, data_efficiency, ablations and rl (the standard models only)")
    parser.add_argument("--no-rl", action="store_true", help="skip rl (the LM policy and its RL runs)")
    parser.add_argument("--pretrain-seed", type=_seed_argument, default=None,
                        help="pretrain the course backbone with this seed (another pretraining draw; 0 is not "
                             "the default run) and report the standard models on it; implies --no-sweeps")
    args = parser.parse_args(argv)
    from prm_core.policy_runs import load_policy_runs
    from prm_core.sweeps import load_sweep

    start = time.perf_counter()
    config = load_profile(args.profile)
    if args.pretrain_seed is not None:
        config, args.no_sweeps = replace(config, pretrain_seed=args.pretrain_seed), True
    sweep = None if args.no_sweeps else load_sweep(args.profile)
    rl = None if args.no_sweeps or args.no_rl else load_policy_runs(args.profile)
    metrics = run_standard(config, args.profile, args.cache_dir, sweep, rl=rl,
                           train_seeds=None if args.no_sweeps else load_train_seeds(args.profile))
    metrics["wall_seconds"] = time.perf_counter() - start
    emit_json(metrics, args.out)
    return 0


def emit_json(data: dict[str, Any], out: Path | None) -> None:
    """Print ``data`` as JSON, and write it to ``out`` too when given (a CLI's ``--out``)."""
    text = json.dumps(data, indent=2, default=_json_default)
    if out:
        write_text(out, text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
