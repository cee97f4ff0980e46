"""The sweeps behind "when does process supervision pay?": a PRM and an ORM at several training-set
sizes and seeds (data efficiency), and a PRM with one training choice changed at a time (ablations).

A CPU cannot train dozens of standard-size models, so sweep models are smaller runs
(``SweepConfig``: fewer optimizer steps and smaller batches, scored on the first best-of-N problems);
each starts from the standard pretrained backbone, is evaluated on the standard held-out sets with
``prm_core.comparison.comparison_metrics``, and is cached with its step scores by a hash of
everything that made it. The ``gpu`` profile runs the same sweeps at the standard size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from prm_core.checks import check_int, check_seed
from prm_core.config_checks import check_fields, config_from_mapping
from prm_core.data import StepSample
from prm_core.experiments import (
    PARAMS_DIR,
    Datasets,
    ExperimentConfig,
    _experiment_dir,
    _hash,
    _pretrain_key,
    config_key,
    new_model,
    pretrained_backbone,
    profile_section,
    relabelled,
)
from prm_core.files import cached, read_json, write_json
from prm_core.score_files import load_scores, save_scores

# name -> (side of the standard setting, side of the change, the change). A change names a field of
# ExperimentConfig (the head) or of TrainConfig (the loss).
ABLATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lm_features": ("on", "off", {"use_lm_features": False}),  # the head also reads the LM's surprise
    "mask_after_first_error": ("off", "on", {"use_mask_after_first_error": True}),
    "pos_weight": ("off", "on", {"pos_weight": "balanced"}),  # off: 1.0; on: n_wrong / n_correct
    "lm_loss": ("on", "off", {"lm_loss_weight": 0.0}),  # the auxiliary next-token loss
}


HEAD_FIELDS = frozenset({"use_lm_features", "head_mlp_size"})  # what a change may set in ExperimentConfig
SWEEP_SETS = frozenset({"max_steps", "batch_size", "eval_every", "checkpoint_dir", "seed", "show_progress"})


@dataclass(frozen=True)
class SweepConfig:
    """Size of the sweep models (``params/<profile>.yaml``, section ``sweeps``)."""

    train_sizes: tuple[int, ...] = (200, 500, 1000, 2000)  # training solutions per model, smallest first
    seeds: tuple[int, ...] = (0, 1, 2)  # each seed draws its own training problems, head init and batches
    max_steps: int = 120  # optimizer steps of every sweep model, whatever its data size
    batch_size: int = 32  # solutions per optimizer step
    n_bon_problems: int = 80  # the first problems of the standard best-of-N set
    ablation_train_size: int = 2000  # training solutions of the ablation models
    ablation_seeds: tuple[int, ...] = (0, 1, 2)  # training seeds of every ablation model (both sides)

    def __post_init__(self) -> None:
        for name, example in (("train_sizes", "(200, 500, 1000, 2000)"), ("seeds", "(0, 1, 2)"),
                              ("ablation_seeds", "(0, 1, 2)")):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not all(_is_int(v) for v in values):
                raise ValueError(f"{name}={values!r} must be a sequence of ints, e.g. {example}.")
            object.__setattr__(self, name, tuple(check_int(v, f"{name}[{i}]") for i, v in enumerate(values)))
        sizes = self.train_sizes
        if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"train_sizes={sizes!r} must be distinct positive ints, smallest first, "
                             "e.g. (200, 500, 1000, 2000).")
        for name in ("seeds", "ablation_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds):
                raise ValueError(f"{name}={seeds!r} must be distinct ints >= 0, at least one, e.g. (0, 1, 2).")
            for i, seed in enumerate(seeds):
                check_seed(seed, f"{name}[{i}]")
        for name in ("max_steps", "batch_size", "n_bon_problems", "ablation_train_size"):
            object.__setattr__(self, name, check_int(getattr(self, name), name, "[1, inf)"))
        check_fields(self)

    def check_fits(self, config: ExperimentConfig) -> None:
        """Raise now, not after the standard models have trained, when the sweep asks for more training
        solutions than the profile samples (``n_train_problems * samples_per_train_problem``)."""
        available = config.n_train_problems * config.samples_per_train_problem
        for name, size in (("train_sizes", max(self.train_sizes)), ("ablation_train_size", self.ablation_train_size)):
            if size > available:
                raise ValueError(f"sweeps.{name} asks for {size} training solutions but the experiment samples "
                                 f"{available} (n_train_problems={config.n_train_problems} x samples_per_train_problem="
                                 f"{config.samples_per_train_problem}); lower {name} or sample more.")

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str = "sweeps") -> SweepConfig:
        """The config from a params file's ``sweeps`` section; errors name the section and key."""
        return config_from_mapping(cls, values, section)


def _is_int(value: Any) -> bool:
    """Whether ``check_int`` takes ``value``: an int (numpy's, or a 0-d integer array or tensor), not a bool."""
    try:
        check_int(value, "value")
    except ValueError:
        return False
    return True


def load_sweep(profile: str, params_dir: Path = PARAMS_DIR) -> SweepConfig:
    """The ``sweeps`` section of ``params/<profile>.yaml`` (defaults where it is absent)."""
    return SweepConfig.from_dict(profile_section(profile, "sweeps", params_dir))


def train_subset(samples: list[StepSample], n_solutions: int, seed: int) -> list[StepSample]:
    """The first ``n_solutions`` solutions of the problems of ``samples`` in a seeded random order,
    whole problems first (their solutions stay together), the last problem cut to fit.

    Examples
    --------
    >>> pool = [StepSample(f"p{i}", ["1 + 1 = 2."], meta={"problem_id": i // 2}) for i in range(6)]
    >>> [s.problem for s in train_subset(pool, 3, seed=0)] == [s.problem for s in train_subset(pool, 3, seed=0)]
    True
    >>> len(train_subset(pool, 3, seed=0)), len({s.meta["problem_id"] for s in train_subset(pool, 4, seed=1)})
    (3, 2)
    """
    if not _is_int(n_solutions) or not 1 <= n_solutions <= len(samples):
        raise ValueError(f"n_solutions={n_solutions!r} must be an int in [1, {len(samples)}] (the training set's "
                         "size); lower train_sizes in the sweep settings.")
    by_problem: dict[Any, list[StepSample]] = {}
    for sample in samples:
        by_problem.setdefault(sample.meta.get("problem_id", sample.problem), []).append(sample)
    groups = list(by_problem.values())
    order = np.random.default_rng(seed).permutation(len(groups))
    return [s for g in order for s in groups[g]][: int(n_solutions)]


def _data_fingerprint(data: Datasets) -> str:
    """A hash of every sample's text and labels, so cached sweep scores never meet other data."""
    digest = hashlib.sha256()
    for part in ("train", "val", "test", "bon"):
        for sample in getattr(data, part):
            digest.update(repr((part, sample.problem, sample.steps, sample.labels)).encode())
    return digest.hexdigest()[:16]


def _sweep_dir(config: ExperimentConfig, sweep: SweepConfig, kind: str, n_train: int, seed: int,
               change: dict[str, Any], labels: str, n_rollouts: int, data: Datasets,
               cache_dir: str | os.PathLike | None) -> Path:
    key = {"pretrained": _pretrain_key(config), "config": config_key(config), "kind": kind, "n_train": n_train,
           "seed": seed, "change": change, "max_steps": sweep.max_steps, "batch_size": sweep.batch_size,
           "n_bon_problems": sweep.n_bon_problems, "data": _data_fingerprint(data)}
    if labels != "exact":
        key.update(labels=labels, n_rollouts=n_rollouts)
    return _experiment_dir(cache_dir) / f"sweep-{kind}-{_hash(key)}"


def sweep_scores(config: ExperimentConfig, sweep: SweepConfig, kind: str, data: Datasets, n_train: int, seed: int,
                 change: dict[str, Any] | None = None, cache_dir: str | os.PathLike | None = None,
                 labels: str = "exact", n_rollouts: int = 8) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or load) one sweep model and return its step scores ("val", "test", "bon") and train info.

    ``change`` overrides fields of ``ExperimentConfig`` (``use_lm_features``, ``head_mlp_size``) or of
    the model's ``TrainConfig`` (``pos_weight``, ``lm_loss_weight``, ...). ``labels`` relabels the
    training subset (``experiments.relabelled``: "outcome", "mc_hard", "mc_soft" with ``n_rollouts``);
    validation and test keep the exact labels. Only the scores and the train info are kept, not
    the weights. An entry that is incomplete, or whose files cannot be read back, is trained again
    once (``files.cached``).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or ``change`` field.
    CorruptFileError
        When the entry is still unreadable after it was rebuilt once.
    """
    from prm_core.training import TrainConfig, train
    from prm_core.verification import Verifier

    if kind not in ("prm", "orm"):
        raise ValueError(f"kind={kind!r} must be 'prm' or 'orm'.")
    change = dict(change or {})
    train_fields = {f.name for f in fields(TrainConfig)} - SWEEP_SETS
    unknown = set(change) - HEAD_FIELDS - train_fields
    if unknown:
        raise ValueError(f"change has unknown fields {sorted(unknown)}; a sweep model can change the head "
                         f"({sorted(HEAD_FIELDS)}) or the loss and optimiser ({sorted(train_fields)}); the sweep "
                         f"itself sets {sorted(SWEEP_SETS)}.")
    head_change = {k: v for k, v in change.items() if k in HEAD_FIELDS}
    train_change = {k: v for k, v in change.items() if k not in HEAD_FIELDS}
    if "use_lm_features" in head_change and not isinstance(head_change["use_lm_features"], bool):
        raise ValueError(f"change['use_lm_features']={head_change['use_lm_features']!r} must be True or False.")
    folder = _sweep_dir(config, sweep, kind, n_train, seed, change, labels, n_rollouts, data, cache_dir)
    n_bon = min(sweep.n_bon_problems, config.n_bon_problems) * config.n_bon_samples
    parts = {"val": data.val, "test": data.test, "bon": data.bon[:n_bon]}

    def build(tmp: Path) -> None:
        # the sweep's own loop shows the progress; one bar per short run would bury it
        train_config = replace(getattr(config, kind), max_steps=sweep.max_steps, batch_size=sweep.batch_size,
                               eval_every=0, checkpoint_dir=None, seed=seed, show_progress=False, **train_change)
        backbone_path, _ = pretrained_backbone(config, cache_dir)
        model = new_model(backbone_path, replace(config, **head_change), kind, seed=seed)
        subset = relabelled(config, train_subset(data.train, n_train, seed), labels, n_rollouts, show_progress=False,
                            cache_dir=cache_dir)
        result = train(model, subset, config=train_config, kind=kind)
        verifier = Verifier(model)
        save_scores({kind: {part: verifier.score_steps(samples) for part, samples in parts.items()}},
                     tmp / "scores.safetensors")
        info = {k: v for k, v in asdict(result).items() if k not in ("history", "eval_history")}
        write_json(tmp / "train_result.json", info, indent=2, default=str)

    def encoder() -> Any:  # only for a scores file from before truncation was recorded
        return new_model(pretrained_backbone(config, cache_dir)[0], config, kind).encoder

    def load(entry: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        return (load_scores(entry / "scores.safetensors", parts, encoder, (kind,))[kind],
                read_json(entry / "train_result.json", "sweep train info", ("pos_weight",)))

    return cached(folder, "train_result.json", build, load, f"sweep {kind} (n={n_train}, seed {seed})")


def _seed_models(config: ExperimentConfig, sweep: SweepConfig, kind: str, data: Datasets, n_train: int,
                 seeds: Sequence[int], change: dict[str, Any] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """``SeedModels`` of one sweep model trained with each of ``seeds``, and each seed's train info."""
    from prm_core.comparison_seeds import SeedModels

    runs = [sweep_scores(config, sweep, kind, data, n_train, seed, change, cache_dir) for seed in seeds]
    return SeedModels([scores for scores, _ in runs], data, kind), [info for _, info in runs]


def data_efficiency(config: ExperimentConfig, sweep: SweepConfig, data: Datasets,
                    cache_dir: str | os.PathLike | None = None, show_progress: bool = True) -> list[dict[str, Any]]:
    """PRM and ORM trained on each of ``sweep.train_sizes`` solutions with each of ``sweep.seeds``.

    Every metric is the mean over the seeds' models, with a two-level interval (seeds, then
    problems; ``prm_core.comparison_seeds``) and each seed's own value in ``per_seed``.

    Returns
    -------
    list of dict
        One per size, smallest first: ``{"n_train_solutions": n, "epochs": passes over the n
        solutions (every size gets the same optimizer steps), "seeds": [...], "prm": {...}, "orm":
        {...}, "prm_minus_orm": {...}}``, as ``comparison_over_seeds`` and ``difference_over_seeds``
        give them.
    """
    from tqdm.auto import tqdm

    from prm_core.comparison_seeds import comparison_over_seeds, difference_over_seeds

    rows = []
    for n in tqdm(sweep.train_sizes, desc="data-efficiency sweep", disable=not show_progress):
        models = {kind: _seed_models(config, sweep, kind, data, n, sweep.seeds, cache_dir=cache_dir)[0]
                  for kind in ("prm", "orm")}
        rows.append({"n_train_solutions": n, "epochs": sweep.max_steps * sweep.batch_size / n, "seeds": list(sweep.seeds),
                     **{kind: comparison_over_seeds(models[kind], data, kind) for kind in ("prm", "orm")},
                     "prm_minus_orm": difference_over_seeds(models["prm"], models["orm"], data)})
    return rows


def ablations(config: ExperimentConfig, sweep: SweepConfig, data: Datasets,
              cache_dir: str | os.PathLike | None = None, show_progress: bool = True) -> dict[str, dict[str, Any]]:
    """A PRM with each of ``ABLATIONS`` changed on its own, against the same PRM unchanged, each
    trained with every one of ``sweep.ablation_seeds``.

    Returns
    -------
    dict
        name -> {"on": metrics, "off": metrics, "changed_minus_standard": differences}: metrics as
        ``comparison_over_seeds`` gives them (plus each seed's ``pos_weight`` as used and the
        ``change``), differences as ``difference_over_seeds`` (the changed side minus the standard
        one, seed s paired with seed s). The unchanged PRM (the standard settings at the sweep's
        size) sits on the standard side of every row.
    """
    from tqdm.auto import tqdm

    from prm_core.comparison_seeds import comparison_over_seeds, difference_over_seeds

    def side(change: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        models, infos = _seed_models(config, sweep, "prm", data, sweep.ablation_train_size, sweep.ablation_seeds,
                                     change, cache_dir)
        return models, {**comparison_over_seeds(models, data, "prm"), "pos_weight": [i["pos_weight"] for i in infos],
                        "change": change, "seeds": list(sweep.ablation_seeds)}

    base_models, base = side({})
    table = {}
    for name, (standard_side, changed_side, change) in tqdm(ABLATIONS.items(), desc="ablations",
                                                             disable=not show_progress):
        models, metrics = side(change)
        table[name] = {standard_side: base, changed_side: metrics,
                       "changed_minus_standard": difference_over_seeds(models, base_models, data)}
    return table
