import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core import sweeps
from prm_core.data import StepSample
from prm_core.experiments import ExperimentConfig, make_datasets
from prm_core.sweeps import ABLATIONS, SweepConfig, load_sweep, sweep_scores, train_subset
from tests.test_experiments import SMOKE

SMOKE_SWEEP = SweepConfig(train_sizes=(8, 24), seeds=(0, 1), max_steps=2, batch_size=4, n_bon_problems=3,
                          ablation_train_size=24, ablation_seeds=(0, 1))


def _pool(n_problems: int, per_problem: int) -> list[StepSample]:
    return [StepSample(f"p{p}", [f"{p} + {j} = {p + j}."], meta={"problem_id": p})
            for p in range(n_problems) for j in range(per_problem)]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    config = ExperimentConfig.from_dict(SMOKE)
    return config, make_datasets(config), tmp_path_factory.mktemp("sweeps")


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_load_sweep_reads_ten_fold_sizes_and_three_seeds_from_each_profile(profile):
    sweep = load_sweep(profile)
    assert len(sweep.train_sizes) >= 3 and sweep.train_sizes[-1] >= 10 * sweep.train_sizes[0]
    assert len(sweep.seeds) >= 3 and len(sweep.ablation_seeds) >= 3


@pytest.mark.parametrize("kwargs,match", [
    ({"train_sizes": (500, 200)}, "smallest first"), ({"train_sizes": ()}, "train_sizes"),
    ({"seeds": (0, 0)}, "distinct"), ({"max_steps": 0}, "max_steps=0"), ({"batch_size": 2.5}, "batch_size=2.5"),
], ids=["unsorted", "empty", "repeated-seed", "zero-steps", "float-batch"])
def test_sweep_config_bad_values_raise_naming_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(**kwargs)


def test_sweep_config_unknown_setting_raises_naming_the_section():
    with pytest.raises(ValueError, match="sweeps: unknown setting 'train_size'"):
        SweepConfig.from_dict({"train_size": [1]})


# ---------------------------------------------------------------- subsets


@given(n_problems=st.integers(1, 12), per_problem=st.integers(1, 4), seed=st.integers(0, 50), data=st.data())
@settings(max_examples=60, deadline=None)
def test_train_subset_is_nested_in_size_and_keeps_problems_whole(n_problems, per_problem, seed, data):
    pool = _pool(n_problems, per_problem)
    small, large = sorted(data.draw(st.lists(st.integers(1, len(pool)), min_size=2, max_size=2)))
    a, b = train_subset(pool, small, seed), train_subset(pool, large, seed)
    assert len(a) == small and len(b) == large
    assert b[:small] == a  # a larger subset extends the smaller one
    # whole problems: once the subset leaves a problem it never returns to it
    runs = [problem for problem, _ in itertools.groupby(s.meta["problem_id"] for s in b)]
    assert len(runs) == len(set(runs))


def test_train_subset_other_seed_draws_other_problems():
    pool = _pool(50, 2)
    assert [s.problem for s in train_subset(pool, 20, 0)] != [s.problem for s in train_subset(pool, 20, 1)]


@pytest.mark.parametrize("n", [0, 7, 2.0], ids=["zero", "too-many", "float"])
def test_train_subset_bad_size_raises_naming_the_limit(n):
    with pytest.raises(ValueError, match=r"n_solutions=.* must be an int in \[1, 6\]"):
        train_subset(_pool(3, 2), n, 0)


# ---------------------------------------------------------------- models


def test_sweep_scores_cover_val_test_and_the_first_bon_problems(smoke):
    config, data, cache = smoke
    scores, info = sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=cache)
    assert set(scores) == {"val", "test", "bon"}
    assert len(scores["test"].scores) == len(data.test)
    assert len(scores["bon"].scores) == SMOKE_SWEEP.n_bon_problems * config.n_bon_samples
    assert info["config"]["max_steps"] == SMOKE_SWEEP.max_steps and info["config"]["seed"] == 0


def test_sweep_scores_are_cached_and_not_retrained(smoke, monkeypatch):
    import prm_core.training

    config, data, cache = smoke
    first, _ = sweep_scores(config, SMOKE_SWEEP, "orm", data, 8, 1, cache_dir=cache)

    def fail(*args, **kwargs):
        raise AssertionError("a cached sweep model was trained again")

    monkeypatch.setattr(prm_core.training, "train", fail)
    again, _ = sweep_scores(config, SMOKE_SWEEP, "orm", data, 8, 1, cache_dir=cache)
    assert (first["test"].scores == again["test"].scores).all()


def test_sweep_scores_changes_reach_the_head_and_the_loss(smoke):
    config, data, cache = smoke
    _, info = sweep_scores(config, SMOKE_SWEEP, "prm", data, 24, 0, {"pos_weight": "balanced"}, cache)
    assert info["config"]["pos_weight"] == "balanced" and info["pos_weight"] != 1.0
    plain, _ = sweep_scores(config, SMOKE_SWEEP, "prm", data, 24, 0, cache_dir=cache)
    no_features, _ = sweep_scores(config, SMOKE_SWEEP, "prm", data, 24, 0, {"use_lm_features": False}, cache)
    assert not (plain["test"].scores == no_features["test"].scores).all()


def test_data_efficiency_rows_cover_every_size_with_every_seed_for_both_models(smoke):
    config, data, cache = smoke
    rows = sweeps.data_efficiency(config, SMOKE_SWEEP, data, cache, show_progress=False)
    assert [(r["n_train_solutions"], r["seeds"]) for r in rows] == [(8, [0, 1]), (24, [0, 1])]
    assert [r["epochs"] for r in rows] == [2 * 4 / 8, 2 * 4 / 24]
    assert all({"prm", "orm"} <= set(r) and r["prm"]["rule"] == "min" and r["orm"]["rule"] == "last" for r in rows)
    for row in rows:  # each seed's own model is in per_seed, and the difference pairs them
        per_seed = [sweep_scores(config, SMOKE_SWEEP, "prm", data, row["n_train_solutions"], s, cache_dir=cache)[0]
                    for s in (0, 1)]
        assert len(per_seed) == row["prm"]["step_auroc"]["n_seeds"] == len(row["prm"]["step_auroc"]["per_seed"])
        assert row["prm_minus_orm"]["step_auroc"]["per_seed"] == pytest.approx(
            [a - b for a, b in zip(row["prm"]["step_auroc"]["per_seed"], row["orm"]["step_auroc"]["per_seed"], strict=True)])
    json.dumps(rows)  # goes into the results file


def test_ablations_share_one_reference_model_on_the_standard_side(smoke):
    config, data, cache = smoke
    table = sweeps.ablations(config, SMOKE_SWEEP, data, cache, show_progress=False)
    assert set(table) == set(ABLATIONS)
    assert all(set(sides) == {"on", "off", "changed_minus_standard"} for sides in table.values())
    reference = [table[name][standard] for name, (standard, _, _) in ABLATIONS.items()]
    assert all(r == reference[0] for r in reference) and reference[0]["change"] == {}
    changed = [table[name][side]["change"] for name, (_, side, _) in ABLATIONS.items()]
    assert changed == [change for _, _, change in ABLATIONS.values()]
    assert all(w != 1.0 for w in table["pos_weight"]["on"]["pos_weight"]) and table["pos_weight"]["off"]["pos_weight"] == [1.0, 1.0]
    diff = table["lm_loss"]["changed_minus_standard"]["first_error_f1"]
    assert diff["per_seed"] == pytest.approx([a - b for a, b in zip(table["lm_loss"]["off"]["first_error_f1"]["per_seed"],
                                                                    table["lm_loss"]["on"]["first_error_f1"]["per_seed"], strict=True)])


def test_sweep_scores_unknown_change_raises_naming_it(smoke):
    config, data, cache = smoke
    with pytest.raises(ValueError, match=r"unknown fields \['use_lm_feature'\]"):
        sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, {"use_lm_feature": False}, cache)


@pytest.mark.parametrize("change,match", [({"max_steps": 5}, "the sweep itself sets"), ({"seed": 5}, "unknown fields"),
                                          ({"backbone": "x"}, "unknown fields"),
                                          ({"use_lm_features": "no"}, "True or False")],
                         ids=["set-by-the-sweep", "data-seed", "backbone", "non-bool-features"])
def test_sweep_scores_changes_it_would_ignore_or_collide_on_raise(smoke, change, match):
    config, data, cache = smoke
    with pytest.raises(ValueError, match=match):
        sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, change, cache)


def test_sweep_scores_unknown_kind_raises(smoke):
    config, data, cache = smoke
    with pytest.raises(ValueError, match="kind='PRM'"):
        sweep_scores(config, SMOKE_SWEEP, "PRM", data, 8, 0, cache_dir=cache)


def test_sweep_scores_other_data_is_not_served_from_the_cache(smoke):
    from dataclasses import replace as dc_replace

    config, data, cache = smoke
    first, _ = sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=cache)
    fewer = dc_replace(data, test=data.test[:4])
    again, _ = sweep_scores(config, SMOKE_SWEEP, "prm", fewer, 8, 0, cache_dir=cache)
    assert len(first["test"].scores) == len(data.test) and len(again["test"].scores) == 4


@pytest.mark.parametrize("kwargs,match", [({"seeds": (-1,)}, "seeds"), ({"seeds": ("a",)}, "seeds"),
                                          ({"seeds": (0.5,)}, "seeds"), ({"ablation_seeds": ("x",)}, "ablation_seeds"),
                                          ({"train_sizes": ("200", "500")}, "train_sizes"),
                                          ({"train_sizes": 200}, "train_sizes"), ({"train_sizes": (True, 5)}, "train_sizes"),
                                          ({"train_sizes": (200.5, 500)}, "train_sizes")],
                         ids=["negative-seed", "str-seed", "float-seed", "str-ablation-seed", "str-sizes", "int-sizes",
                              "bool-size", "float-size"])
def test_sweep_config_seeds_and_sizes_must_be_ints(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(**kwargs)


def test_sweep_config_and_train_subset_accept_numpy_ints():
    import numpy as np

    assert SweepConfig(train_sizes=(np.int64(10), 20), seeds=(np.int64(0),)).train_sizes == (10, 20)
    assert len(train_subset(_pool(3, 2), np.int64(3), 0)) == 3


def test_load_sweep_empty_section_gives_the_defaults(tmp_path):
    (tmp_path / "tiny.yaml").write_text("PROFILE: tiny\nsweeps:\n")
    assert load_sweep("tiny", params_dir=tmp_path) == SweepConfig()


def test_sweep_larger_than_the_training_set_raises_before_anything_trains():
    config = ExperimentConfig(n_train_problems=10, samples_per_train_problem=4)
    SweepConfig(train_sizes=(20, 40), ablation_train_size=40).check_fits(config)  # 40 = 10 x 4 fits
    with pytest.raises(ValueError, match=r"sweeps\.train_sizes asks for 41 training solutions but the experiment "
                                         r"samples 40"):
        SweepConfig(train_sizes=(20, 41), ablation_train_size=40).check_fits(config)
    with pytest.raises(ValueError, match=r"sweeps\.ablation_train_size asks for 50"):
        SweepConfig(train_sizes=(20,), ablation_train_size=50).check_fits(config)


# ---------------------------------------------------------------- cache entries: rebuilt once when damaged


@pytest.fixture
def fast_sweeps(tiny_backbone, monkeypatch):
    """Sweep models on the tiny backbone with a training loop that does nothing; returns the kinds trained."""
    import prm_core.training
    from prm_core.training import TrainResult
    from tests.conftest import build_tiny_prm

    calls = []
    monkeypatch.setattr(sweeps, "new_model", lambda path, config, kind, seed=None: build_tiny_prm(
        tiny_backbone, kind=kind, seed=seed or 0))
    monkeypatch.setattr(sweeps, "pretrained_backbone", lambda config, cache_dir=None: ("tiny", {}))
    monkeypatch.setattr(prm_core.training, "train", lambda model, samples, *args, kind="prm", **kwargs: (
        calls.append(kind), TrainResult(train_seconds=0.01))[1])
    return calls


def _entry(config, data, cache):
    return sweeps._sweep_dir(config, SMOKE_SWEEP, "prm", 8, 0, {}, "exact", 8, data, cache)


def test_sweep_scores_incomplete_entry_is_rebuilt_once_and_repaired(fast_sweeps, tmp_path):
    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    folder = _entry(config, data, tmp_path)
    (folder / "train_result.json").unlink()  # the scores are there, the marker is not
    sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    assert fast_sweeps == ["prm", "prm"]
    assert sorted(p.name for p in folder.iterdir()) == ["scores.safetensors", "train_result.json"]


def test_sweep_scores_damaged_scores_are_rebuilt_once(fast_sweeps, tmp_path):
    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    scores = _entry(config, data, tmp_path) / "scores.safetensors"
    cut = scores.read_bytes()[:64]
    scores.unlink()
    scores.write_bytes(cut)
    again, info = sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    sweep_scores(config, SMOKE_SWEEP, "prm", data, 8, 0, cache_dir=tmp_path)
    assert fast_sweeps == ["prm", "prm"] and len(again["test"].scores) == len(data.test)
