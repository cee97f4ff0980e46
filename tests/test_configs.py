"""Every config dataclass refuses a bad value at construction, naming the field, and every params
section names itself and its key: no NaN, bool, YAML string or misspelt key reaches a run."""

import math
import typing
from dataclasses import fields

import pytest

from prm_core.backbones import CourseTinyConfig
from prm_core.checks import ArgumentTypeError
from prm_core.experiments import ExperimentConfig, load_profile, profile_section
from prm_core.lm_policy import SamplingConfig, SFTConfig
from prm_core.model import HeadConfig
from prm_core.policy_runs import PolicyRunConfig, load_policy_runs
from prm_core.rl import RLConfig
from prm_core.search import BeamSearchConfig
from prm_core.sweeps import SweepConfig, load_sweep
from prm_core.tasks.arithmetic import ProblemConfig
from prm_core.tasks.arithmetic_policy import PolicyConfig
from prm_core.training import TrainConfig

# HeadConfig has no default hidden_size: the backbone gives it.
CONFIGS = {TrainConfig: {}, HeadConfig: {"hidden_size": 64}, CourseTinyConfig: {}, ExperimentConfig: {},
           SweepConfig: {}, PolicyRunConfig: {}, SamplingConfig: {}, SFTConfig: {}, RLConfig: {},
           BeamSearchConfig: {}, ProblemConfig: {}, PolicyConfig: {}}

# What is wrong for a field of each annotation: numbers that are not, bools posing as numbers, text.
BAD = {
    int: [True, 1.5, 3.0, "3", None, math.nan],
    float: [True, math.nan, math.inf, -math.inf, "3e-3", None],
    bool: [1, 0, "false", None],
    str: [1, None, True],
}


def _field_cases():
    for cls, required in CONFIGS.items():
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            for bad in BAD.get(hints[f.name], []):
                yield pytest.param(cls, required, f.name, bad, id=f"{cls.__name__}.{f.name}={bad!r}")


@pytest.mark.parametrize(("cls", "required", "name", "bad"), list(_field_cases()))
def test_config_field_of_the_wrong_kind_raises_naming_the_field(cls, required, name, bad):
    with pytest.raises(ValueError, match=rf"\b{name}(\[\d+\])?="):
        cls(**{**required, name: bad})


@pytest.mark.parametrize("cls", list(CONFIGS), ids=lambda c: c.__name__)
def test_config_defaults_are_valid(cls):
    assert cls(**CONFIGS[cls]) == cls(**CONFIGS[cls])


def test_train_config_nan_grad_clip_raises_instead_of_turning_clipping_off():
    # the input: `nan > 0` is False, so clipping was silently off
    with pytest.raises(ValueError, match=r"^grad_clip=nan must be a finite number in \[0, inf\)"):
        TrainConfig(grad_clip=math.nan)


def test_train_config_checkpoint_dir_that_is_a_file_raises_at_construction(tmp_path):
    # the input: it failed only after the last step, losing the run
    existing = tmp_path / "model.bin"
    existing.write_text("not a folder")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*model\.bin.* is not a folder"):
        TrainConfig(checkpoint_dir=str(existing))


def test_train_config_checkpoint_every_without_a_folder_raises():
    with pytest.raises(ValueError, match="checkpoint_every=10 needs a checkpoint_dir"):
        TrainConfig(checkpoint_every=10)


def test_train_config_accepts_a_path_as_checkpoint_dir(tmp_path):
    assert TrainConfig(checkpoint_dir=tmp_path / "runs").checkpoint_dir == tmp_path / "runs"


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (TrainConfig, {"seed": -1}, r"seed=-1 must be an int in \[0, 2\*\*63\)"),
    (TrainConfig, {"min_lr_ratio": 1.5}, "min_lr_ratio=1.5"),
    (TrainConfig, {"mixed_precision": "fp16"}, "mixed_precision='fp16' must be one of"),
    (HeadConfig, {"hidden_size": 64, "dropout": 1.0}, r"dropout=1.0 must be a finite number in \[0, 1\)"),
    (CourseTinyConfig, {"seed": 2**63}, "seed="),
    (ExperimentConfig, {"backbone_profile": "tpu"}, "backbone_profile='tpu' must be one of"),
    (ExperimentConfig, {"max_length": 1}, "max_length=1"),
    (ExperimentConfig, {"backbone": "  "}, "backbone="),
    (SweepConfig, {"seeds": (-1,)}, r"seeds\[0\]=-1"),
    (PolicyRunConfig, {"seeds": (0, 2**63)}, r"seeds\[1\]="),
    (SFTConfig, {"warmup_steps": 601}, r"warmup_steps=601 must be an int in \[0, 600\]"),
    (SamplingConfig, {"temperature": 0.0}, "temperature=0.0"),
    (RLConfig, {"kl_coef": math.inf}, "kl_coef=inf"),
    (BeamSearchConfig, {"seed": -3}, "seed=-3"),
    (ProblemConfig, {"max_ops": "8"}, "max_ops='8'"),
], ids=["train-seed", "lr-ratio", "precision", "dropout", "tiny-seed", "backbone-profile", "max-length",
        "blank-backbone", "sweep-seed", "rl-seed", "sft-warmup", "temperature", "kl", "search-seed", "yaml-int"])
def test_config_value_out_of_range_raises_naming_field_and_rule(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_experiment_config_count_fields_are_listed_by_name_and_each_refuses_zero():
    from prm_core.experiments import COUNT_FIELDS

    int_fields = {f.name for f in fields(ExperimentConfig) if typing.get_type_hints(ExperimentConfig)[f.name] is int}
    assert set(COUNT_FIELDS) == int_fields - {"max_length", "head_mlp_size", "seed"}  # those have their own ranges
    for name in COUNT_FIELDS:
        with pytest.raises(ValueError, match=rf"{name}=0 must be an int in \[1, inf\)"):
            ExperimentConfig(**{name: 0})


def test_config_type_errors_are_both_type_and_value_errors():
    with pytest.raises(TypeError):
        TrainConfig(max_steps=True)
    with pytest.raises(ArgumentTypeError):
        TrainConfig(max_steps="600")


# ------------------------------------------------------------------ params sections

def test_experiment_misspelt_key_in_a_training_section_names_the_section_and_the_known_keys():
    # the input: it said only "unexpected keyword argument 'max_step'"
    with pytest.raises(ValueError, match=r"experiment\.prm: unknown setting 'max_step' \(did you mean "
                                         r"'max_steps'\?\); the known ones are \[.*'warmup_steps'"):
        ExperimentConfig.from_dict({"prm": {"max_step": 5}})


@pytest.mark.parametrize(("values", "match"), [
    ({"prm": {"learning_rate": "3e-3"}}, r"experiment\.prm: learning_rate='3e-3'.*in YAML, 3e-3 without a dot"),
    ({"orm": {"grad_clip": math.nan}}, r"experiment\.orm: grad_clip=nan"),
    ({"prm": 5}, r"experiment\.prm=5 must be a mapping"),
    ({"pretrain": {"max_steps": 0}}, r"experiment\.pretrain: max_steps=0"),
    ({"n_test_problems": True}, r"experiment: n_test_problems=True"),
], ids=["yaml-string-number", "nan", "not-a-mapping", "zero-steps", "bool-count"])
def test_experiment_bad_setting_raises_naming_its_section(values, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig.from_dict(values)


def test_sweep_and_rl_sections_name_themselves():
    with pytest.raises(ValueError, match=r"sweeps: max_steps=0"):
        SweepConfig.from_dict({"max_steps": 0})
    with pytest.raises(ValueError, match=r"rl\.sampling: unknown setting 'top_k'"):
        PolicyRunConfig.from_dict({"sampling": {"top_k": 5}})
    with pytest.raises(ValueError, match=r"rl\.rl: learning_rate=2"):
        PolicyRunConfig.from_dict({"rl": {"learning_rate": 2}})


def test_rl_section_lists_become_tuples():
    config = PolicyRunConfig.from_dict({"seeds": [3, 4], "rewards": ["outcome"]})
    assert config.seeds == (3, 4) and config.rewards == ("outcome",)


@pytest.mark.parametrize(("text", "match"), [
    ("experiment: [1, 2\n", "is not valid YAML"),
    ("- experiment\n", "holds a YAML list; it must be a mapping of sections"),
    ("experiment: 5\n", r"section experiment=5 must be a mapping"),
], ids=["syntax", "top-level-list", "section-scalar"])
def test_profile_file_that_is_not_a_mapping_of_sections_raises_naming_the_file(tmp_path, text, match):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        profile_section("mine", "experiment", tmp_path)


def test_profile_section_missing_from_the_file_gives_the_defaults(tmp_path):
    (tmp_path / "mine.yaml").write_text("PROFILE: mine\n")
    assert profile_section("mine", "rl", tmp_path) == {}
    assert load_policy_runs("mine", tmp_path) == PolicyRunConfig()


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_shipped_profiles_read_without_error(profile):
    assert load_profile(profile).backbone_profile == profile
    assert load_sweep(profile).train_sizes[0] >= 1
    assert load_policy_runs(profile).min_ops == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("seed: 017", {"seed": "017"}),  # YAML 1.1 would read octal 15
    ("max_steps: 1:30", {"max_steps": "1:30"}),  # YAML 1.1 would read base 60: 90
    ("learning_rate: 3e-3", {"learning_rate": 0.003}),  # YAML 1.1 would read text
    ("x: 1_000", {"x": 1000}), ("x: .5", {"x": 0.5}), ("x: -2", {"x": -2}), ("x: 0", {"x": 0}),
], ids=["octal", "sexagesimal", "exponent", "underscore", "leading-dot", "negative", "zero"])
def test_params_loader_reads_only_plain_decimal_numbers_as_numbers(text, expected):
    import yaml

    from prm_core.experiments import _params_loader

    assert yaml.load(text, Loader=_params_loader()) == expected


def test_profile_with_a_repeated_key_raises_naming_it(tmp_path):
    (tmp_path / "mine.yaml").write_text("experiment:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ValueError, match=r"mine.yaml is not valid YAML .*keys \['seed'\] appear more than once"):
        profile_section("mine", "experiment", tmp_path)


def test_profile_octal_seed_is_refused_by_name_not_read_as_15(tmp_path):
    (tmp_path / "mine.yaml").write_text("experiment:\n  seed: 017\n")
    with pytest.raises(ValueError, match=r"experiment: seed='017'"):
        load_profile("mine", tmp_path)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_shipped_profiles_read_as_pyyaml_reads_them(profile):
    import yaml

    from prm_core.experiments import PARAMS_DIR

    expected = yaml.safe_load((PARAMS_DIR / f"{profile}.yaml").read_text())
    for section in ("experiment", "sweeps", "rl"):
        assert profile_section(profile, section) == expected[section]
