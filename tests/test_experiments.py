import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prm_core import experiments, score_files
from prm_core.evaluation import answer_arrays, first_errors, padded_labels, summarize_best_of_n
from prm_core.experiments import (
    ExperimentConfig,
    load_profile,
    make_datasets,
    pretraining_corpus,
    run_standard,
)
from prm_core.tasks.arithmetic import split_of
from prm_core.tasks.arithmetic_policy import NoisyPolicy

SMOKE = {
    "n_train_problems": 60, "samples_per_train_problem": 2, "n_val_problems": 12, "n_test_problems": 12,
    "samples_per_test_problem": 2, "n_bon_problems": 6, "n_bon_samples": 8, "pretrain_problems": 30,
    "pretrain": {"max_steps": 3, "show_progress": False}, "prm": {"max_steps": 3, "show_progress": False},
    "orm": {"max_steps": 3, "show_progress": False},
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("experiments")
    config = ExperimentConfig.from_dict(SMOKE)
    return config, cache, run_standard(config, "smoke", cache_dir=cache)


def test_a_pretraining_seed_is_another_pretraining_run_and_leaves_the_default_keys_as_they_were(tmp_path):
    from dataclasses import asdict, replace

    from safetensors.torch import load_file

    config = ExperimentConfig.from_dict(SMOKE)
    assert experiments.config_key(config) == {k: v for k, v in asdict(config).items() if k != "pretrain_seed"}
    other = replace(config, pretrain_seed=1)
    assert experiments._pretrain_key(other) != experiments._pretrain_key(config)
    assert experiments._pretrain_key(replace(config, pretrain_seed=None)) == experiments._pretrain_key(config)
    weights = {}
    for name, c in (("default", config), ("seed 1", other), ("seed 1 again", other)):
        path, info = experiments.pretrained_backbone(c, tmp_path)
        weights[name] = load_file(str(Path(path) / "model.safetensors"))
    assert weights["seed 1"].keys() == weights["default"].keys()
    assert any(not torch.equal(weights["seed 1"][k], weights["default"][k]) for k in weights["default"])
    assert all(torch.equal(weights["seed 1"][k], weights["seed 1 again"][k]) for k in weights["default"])


@pytest.mark.parametrize("value", [-1, 1.5, "1", True])
def test_pretrain_seed_that_is_not_a_seed_raises_naming_it(value):
    with pytest.raises(ValueError, match="pretrain_seed.*pretrain_seed=0"):
        ExperimentConfig(pretrain_seed=value)


def test_pretrain_seed_on_a_backbone_the_course_does_not_pretrain_raises():
    with pytest.raises(ValueError, match="pretrain_seed=1 pretrains the course backbone.*pretrain_seed=None"):
        ExperimentConfig(backbone="/some/local/model", pretrain_seed=1)


def test_load_profile_unknown_name_raises_listing_profiles():
    with pytest.raises(ValueError, match=r"profile='tpu'.*\['cpu', 'gpu'\]"):
        load_profile("tpu")


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_load_profile_reads_the_params_file(profile):
    config = load_profile(profile)
    assert config.backbone_profile == profile
    assert config.prm.max_steps > 0 and config.n_bon_samples == 64
    assert config.n_test_problems * config.samples_per_test_problem == 2000


def test_experiment_config_unknown_setting_raises_naming_it_and_the_closest_field():
    with pytest.raises(ValueError, match=r"experiment: unknown setting 'n_train_problem' \(did you mean 'n_train_problems'"):
        ExperimentConfig.from_dict({"n_train_problem": 3})


def test_experiment_config_zero_size_raises_naming_field():
    with pytest.raises(ValueError, match="n_test_problems=0"):
        ExperimentConfig(n_test_problems=0)


def test_datasets_keep_test_problems_off_every_training_set():
    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    train_texts = {s.problem for s in data.train + data.val + pretraining_corpus(config)}
    assert not train_texts & {s.problem for s in data.test + data.bon}
    assert len(data.test) == 24 and len(data.bon) == 48


def test_pretraining_corpus_is_correct_solutions_of_train_side_problems():
    from prm_core.tasks.arithmetic import check_steps, make_problems

    config = ExperimentConfig.from_dict(SMOKE)
    problems = {p.text: p for p in make_problems(config.pretrain_problems, seed=config.seed + 100, split="train")}
    corpus = pretraining_corpus(config)
    assert len(corpus) == 2 * config.pretrain_problems
    for sample in corpus:
        problem = problems[sample.problem]
        assert split_of(problem) == "train"
        assert set(check_steps(problem, sample.steps)) == {1.0}


def test_run_standard_report_has_the_required_fields(smoke_run):
    _, _, metrics = smoke_run
    json.dumps(metrics)  # the CLI writes it as JSON
    assert 0.0 <= metrics["step_auroc"] <= 1.0 or np.isnan(metrics["step_auroc"])
    assert "first_error_f1" in metrics and isinstance(metrics["detection_by_kind"], dict)
    assert set(metrics["best_of_n"]) == {"1", "2", "4", "8"}
    point = metrics["best_of_n"]["8"]["prm_min"]
    assert point["ci_low"] <= point["accuracy"] <= point["ci_high"]
    assert {"majority", "oracle", "orm", "prm_weighted_min"} <= set(metrics["best_of_n"]["8"])
    assert metrics["training"]["prm"]["train_seconds"] > 0 and metrics["training"]["prm"]["tokens_per_second"] > 0
    assert metrics["device"] == "cpu"


def test_run_standard_second_call_reuses_cached_models(smoke_run, monkeypatch):
    config, cache, first = smoke_run

    def fail(*args, **kwargs):
        raise AssertionError("a cached model was retrained")

    monkeypatch.setattr(experiments, "train", fail)
    again = run_standard(config, "smoke", cache_dir=cache)
    assert again["step_auroc"] == first["step_auroc"]
    assert again["best_of_n"] == first["best_of_n"]


def test_padded_labels_marks_padding_and_unlabelled_steps_nan():
    from prm_core.data import StepSample

    labels = padded_labels([StepSample("q", ["a"], labels=[1.0]), StepSample("q", ["a", "b"], labels=[None, 0.0])], 3)
    assert np.isnan(labels).tolist() == [[False, True, True], [True, False, True]]


def test_first_errors_reads_index_and_policy_kind():
    from prm_core.tasks.arithmetic import make_problems

    samples = NoisyPolicy().sample_many(make_problems(30, seed=4), 4, seed=4)
    index, kinds = first_errors(samples)
    for sample, i, kind in zip(samples, index, kinds, strict=True):
        assert i == sample.first_error_index()
        assert (kind is None) == (i == -1)


def test_answer_arrays_reshape_problem_major():
    from prm_core.tasks.arithmetic import make_problems

    samples = NoisyPolicy().sample_many(make_problems(3, seed=1), 4, seed=1)
    answers, correct = answer_arrays(samples, 4)
    assert answers.shape == correct.shape == (3, 4)
    assert answers[1, 2] == int(samples[6].answer) and correct[1, 2] == samples[6].meta["is_correct_answer"]


def test_summarize_best_of_n_picks_best_prm_method_at_largest_n():
    point = lambda a: {"accuracy": a, "ci_low": a, "ci_high": a}  # noqa: E731
    table = {"1": {"prm_min": point(0.5), "prm_last": point(0.5), "majority": point(0.5), "orm": point(0.5),
                   "orm_weighted": point(0.5), "oracle": point(0.5)},
             "4": {"prm_min": point(0.9), "prm_last": point(0.7), "majority": point(0.6), "orm": point(0.65),
                   "orm_weighted": point(0.7), "oracle": point(1.0)}}
    summary = summarize_best_of_n(table)
    assert summary["n"] == 4 and summary["best_prm_method"] == "prm_min"
    assert summary["best_orm_method"] == "orm_weighted" and summary["majority_accuracy"] == 0.6


def test_flag_rate_by_kind_counts_solutions_below_threshold_per_first_error_kind():
    import torch

    from prm_core.data import StepSample
    from prm_core.evaluation import flag_rate_by_kind
    from prm_core.verification import StepScores

    samples = [StepSample("q", ["a", "b"], labels=[1.0, 0.0], meta={"step_kinds": ["ok", "slip"]}),
               StepSample("q", ["a", "b"], labels=[0.0, 0.0], meta={"step_kinds": ["trap", "after_error"]}),
               StepSample("q", ["a", "b"], labels=[1.0, 1.0], meta={"step_kinds": ["ok", "ok"]})]
    scores = StepScores(torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.8, 0.4]]), torch.ones(3, 2, dtype=torch.bool))
    rates = flag_rate_by_kind(scores, samples, ["min", "last"])
    # min: 0.2 (slip) flagged, 0.6 (trap) not, 0.4 (no error) flagged; last: 0.2, 0.7, 0.4
    assert rates["min"] == {"none": 1.0, "slip": 1.0, "trap": 0.0}
    assert rates["last"] == {"none": 1.0, "slip": 1.0, "trap": 0.0}


@pytest.mark.parametrize("labels", ["outcome", "mc_soft"])
def test_trained_model_on_other_labels_caches_a_separate_model(smoke_run, labels, monkeypatch):
    config, cache, _ = smoke_run
    data = make_datasets(config)
    seen = {}
    real_train = experiments.train

    def spy(model, train_samples, *args, **kwargs):
        seen["sources"] = {s.meta.get("label_source") for s in train_samples}
        return real_train(model, train_samples, *args, **kwargs)

    monkeypatch.setattr(experiments, "train", spy)
    experiments.trained_model(config, "prm", data, cache, labels=labels, n_rollouts=2)
    assert seen["sources"] == {labels}  # trained on relabelled samples, not on the cached exact-label model
    folders = sorted(p.name for p in (cache / "experiments").glob("prm-*"))
    assert len(folders) >= 2


def test_relabelled_outcome_gives_every_step_the_outcome():
    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    out = experiments.relabelled(config, data.train, "outcome")
    for before, after in zip(data.train, out, strict=True):
        assert set(after.labels) == {1.0 if before.meta["is_correct_answer"] else 0.0}
        assert after.meta["exact_labels"] == list(before.labels)


def test_relabelled_unknown_source_raises_listing_sources():
    config = ExperimentConfig.from_dict(SMOKE)
    with pytest.raises(ValueError, match="labels='human'.*exact"):
        experiments.relabelled(config, [], "human")


def test_held_out_and_selection_reports_match_the_standard_report(smoke_run):
    from prm_core.evaluation import held_out_report, score_datasets, selection_report

    config, cache, metrics = smoke_run
    data = make_datasets(config)
    prm, _ = experiments.trained_model(config, "prm", data, cache)
    scored = score_datasets({"prm": prm}, data)["prm"]
    report = held_out_report(scored, data)
    assert report["first_error"]["f1"] == pytest.approx(metrics["first_error_f1"], nan_ok=True)
    selection = selection_report(scored, data)
    for n, accuracy in selection["best_of_n"].items():
        assert accuracy == pytest.approx(metrics["best_of_n"][n]["prm_min"]["accuracy"])
        assert selection["weighted"][n] == pytest.approx(metrics["best_of_n"][n]["prm_weighted_min"]["accuracy"])


def test_search_vs_best_of_n_rows_at_equal_policy_calls(smoke_run):
    from prm_core.evaluation import score_datasets, search_vs_best_of_n
    from prm_core.search import BeamSearchConfig, beam_search
    from prm_core.verification import Verifier

    config, cache, _ = smoke_run
    data = make_datasets(config)
    prm, _ = experiments.trained_model(config, "prm", data, cache)
    bon_scores = score_datasets({"prm": prm}, data)["prm"]["bon"]
    problems = experiments.bon_problems(config)[:4]
    searched = {4: beam_search(problems, NoisyPolicy(), Verifier(prm), BeamSearchConfig(2, 2), show_progress=False)}
    rows = search_vs_best_of_n(searched, bon_scores, data.bon)
    assert [r["method"] for r in rows] == ["beam search (min)", "beam search + weighted vote (min)",
                                           "best-of-N (min)", "PRM-weighted vote (min)", "majority vote"]
    for r in rows:
        assert r["budget"] == 4 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    assert rows[0]["accuracy"] == np.mean([r.solution.meta["is_correct_answer"] for r in searched[4]])
    assert rows[1]["accuracy"] == np.mean([r.voted().meta["is_correct_answer"] for r in searched[4]])
    assert rows[1]["generated_steps"] == rows[0]["generated_steps"]  # the vote costs no extra policy call
    with pytest.raises(ValueError, match="budget <= 8"):
        search_vs_best_of_n({16: searched[4]}, bon_scores, data.bon)


def test_bon_problems_are_the_problems_of_the_best_of_n_set():
    config = ExperimentConfig.from_dict(SMOKE)
    texts = [p.text for p in experiments.bon_problems(config)]
    data = make_datasets(config)
    assert [s.problem for s in data.bon[:: config.n_bon_samples]] == texts


def test_model_scores_are_cached_beside_the_model(smoke_run, monkeypatch):
    import prm_core.evaluation as evaluation

    config, cache, _ = smoke_run
    data = make_datasets(config)
    first = experiments.model_scores(config, "prm", data, cache)

    def fail(*args, **kwargs):
        raise AssertionError("cached scores were recomputed")

    monkeypatch.setattr(evaluation, "score_datasets", fail)
    again = experiments.model_scores(config, "prm", data, cache)
    assert set(first) == {"val", "test", "bon"}
    assert all((first[part].scores == again[part].scores).all() for part in first)


def test_relabelled_monte_carlo_hard_and_soft_share_one_cached_set_of_rollouts(tmp_path, monkeypatch):
    from prm_core import labeling

    config = ExperimentConfig.from_dict(SMOKE)
    samples = make_datasets(config).train[:20]
    soft = experiments.relabelled(config, samples, "mc_soft", n_rollouts=3, show_progress=False, cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("rollouts were drawn again")

    monkeypatch.setattr(labeling, "rollout_successes", fail)
    hard = experiments.relabelled(config, samples, "mc_hard", n_rollouts=3, show_progress=False, cache_dir=tmp_path)
    for s, h in zip(soft, hard, strict=True):
        assert [float(x > 0) for x in s.labels] == list(h.labels)  # hard = any rollout right = soft > 0


@pytest.mark.slow
def test_gpu_profile_runs_end_to_end_on_cpu_at_smoke_size(tmp_path, monkeypatch):
    """The gpu profile's model (hidden 384, 6 layers) and settings, with smoke-sized data and steps,
    so the profile cannot rot on machines without a GPU."""
    import yaml

    from prm_core import evaluation
    from prm_core.experiments import PARAMS_DIR

    measure = evaluation.scoring_throughput  # the real one, on 8 solutions once: a 14M model is slow on CPU
    monkeypatch.setattr(evaluation, "scoring_throughput", lambda model, samples, batch: measure(model, samples[:8], 8, 1))

    values = yaml.safe_load((PARAMS_DIR / "gpu.yaml").read_text())["experiment"]
    values |= {k: v for k, v in SMOKE.items() if k not in ("pretrain", "prm", "orm")}
    for stage in ("pretrain", "prm", "orm"):
        values[stage] = values[stage] | SMOKE[stage] | {"batch_size": 16, "eval_batch_size": 32}
    config = ExperimentConfig.from_dict(values)
    report = run_standard(config, "gpu", cache_dir=tmp_path)
    assert report["config"]["backbone_profile"] == "gpu"
    assert report["training"]["prm"]["max_steps"] == 3
    assert 0.0 <= report["step_auroc"] <= 1.0
    assert report["throughput"]["bare_forward_solutions_per_second"] > 0


# ---------------------------------------------------------------- cache entries: rebuilt once when damaged; files whole


@pytest.fixture
def fast_models(tiny_backbone, monkeypatch):
    """Experiments on private copies of the tiny backbone, with a training loop that does nothing, so
    cache tests train nothing; the list it returns records each ``train`` call's kind."""
    from prm_core.training import TrainResult
    from tests.conftest import build_tiny_prm

    calls = []

    def new_model(backbone_path, config, kind, seed=None):
        return build_tiny_prm(tiny_backbone, kind=kind, seed=config.seed if seed is None else seed)

    def train(model, samples, *args, kind="prm", **kwargs):
        calls.append(kind)
        return TrainResult(train_seconds=0.01, tokens_per_second=1.0)

    monkeypatch.setattr(experiments, "new_model", new_model)
    monkeypatch.setattr(experiments, "train", train)
    return calls


@pytest.fixture
def count_scoring(monkeypatch):
    """The number of ``evaluation.score_datasets`` calls from now on (it still scores)."""
    import prm_core.evaluation as evaluation

    calls, real = [], evaluation.score_datasets
    monkeypatch.setattr(evaluation, "score_datasets", lambda *args, **kwargs: (calls.append(1), real(*args, **kwargs))[1])
    return calls


def test_trained_model_incomplete_entry_is_rebuilt_once_and_repaired(fast_models, tmp_path, caplog):
    import logging

    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    experiments.trained_model(config, "prm", data, tmp_path)
    assert fast_models == ["lm", "prm"]
    folder = experiments._model_folder(config, "prm", "exact", 8, tmp_path)
    (folder / experiments.TRAIN_INFO).unlink()  # an entry cut before its marker
    with caplog.at_level(logging.WARNING, logger="prm_core.files"):
        model, info = experiments.trained_model(config, "prm", data, tmp_path)
    assert fast_models == ["lm", "prm", "prm"] and "incomplete" in caplog.text
    assert (folder / experiments.TRAIN_INFO).is_file() and info["train_seconds"] == 0.01
    experiments.trained_model(config, "prm", data, tmp_path)
    assert fast_models == ["lm", "prm", "prm"]  # repaired: loaded, not trained again


def test_trained_model_head_header_claiming_i32_is_rebuilt_once(fast_models, tmp_path):
    from tests.test_files import lie_about_dtype, rewrite_header

    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    experiments.trained_model(config, "orm", data, tmp_path)
    folder = experiments._model_folder(config, "orm", "exact", 8, tmp_path)
    rewrite_header(folder / "head.safetensors", lie_about_dtype("1.weight"))
    experiments.trained_model(config, "orm", data, tmp_path)
    experiments.trained_model(config, "orm", data, tmp_path)
    assert fast_models == ["lm", "orm", "orm"]


def test_trained_model_failure_while_saving_installs_no_entry(fast_models, tmp_path, monkeypatch):
    from tests.test_files import leftovers

    config = ExperimentConfig.from_dict(SMOKE)
    experiments.pretrained_backbone(config, tmp_path)  # built before the disk fills

    def fail(*args, **kwargs):  # the train info is written last, after the checkpoint
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(experiments, "write_json", fail)
    with pytest.raises(OSError, match="No space"):
        experiments.trained_model(config, "prm", make_datasets(config), tmp_path)
    assert not experiments._model_folder(config, "prm", "exact", 8, tmp_path).exists()
    assert leftovers(tmp_path / "experiments") == []


def test_model_scores_damaged_file_is_rebuilt_once(fast_models, count_scoring, tmp_path):
    import torch

    config = ExperimentConfig.from_dict(SMOKE)
    data = make_datasets(config)
    first = experiments.model_scores(config, "prm", data, tmp_path)
    path = experiments._model_folder(config, "prm", "exact", 8, tmp_path) / "scores.safetensors"
    cut = path.read_bytes()[:100]
    path.unlink()  # a new file: ``first`` still maps the old one's bytes
    path.write_bytes(cut)
    again = experiments.model_scores(config, "prm", data, tmp_path)
    experiments.model_scores(config, "prm", data, tmp_path)
    assert len(count_scoring) == 2
    assert all(torch.equal(first[part].scores, again[part].scores) for part in first)


def _score_parts():
    from prm_core.data import StepSample

    sample = StepSample("q", ["a", "b"], labels=[1.0, 0.0])
    return {"val": [sample] * 2, "test": [sample] * 3, "bon": [sample] * 2}


def _saved_scores(path, edit=None):
    import torch

    from prm_core.verification import StepScores

    scores = {"prm": {part: StepScores(torch.rand(len(s), 2), torch.ones(len(s), 2, dtype=torch.bool))
                      for part, s in _score_parts().items()}}
    score_files.save_scores(scores, path)
    if edit is not None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        edit(tensors)
        save_file(tensors, str(path))
    return path


SCORE_FAULTS = {
    "float-mask": (lambda t: t.update({"prm.val.mask": t["prm.val.mask"].float()}), "prm.val.mask is torch.float32"),
    "rows-of-other-data": (lambda t: t.update({"prm.test.scores": t["prm.test.scores"][:2],
                                               "prm.test.mask": t["prm.test.mask"][:2]}),
                           r"one row per sample \(3\)"),
    "missing-part": (lambda t: [t.pop(k) for k in list(t) if k.startswith("prm.bon.")], r"no prm scores for \['bon'\]"),
    "missing-mask": (lambda t: t.pop("prm.val.mask"), "prm.val lacks its scores or mask"),
    "bad-key": (lambda t: t.update({"prm.val": t["prm.val.scores"].clone()}), "key 'prm.val' is not"),
    "float-counts": (lambda t: t.update({"prm.val.n_dropped_steps": t["prm.val.n_dropped_steps"].float()}),
                     "must hold one int count per row"),
    "int-scores": (lambda t: t.update({"prm.val.scores": t["prm.val.scores"].int()}), "must be a float matrix"),
    # the same number of rows, of samples with other step counts: 1 scored step where the sample has 2
    "steps-of-other-samples": (lambda t: t["prm.test.mask"][:, 1].fill_(False),
                               r"prm.test row 0 holds 1 \+ 0 dropped steps, but its sample has 2 steps \(3 rows"),
    "mask-with-a-hole": (lambda t: t.update({"prm.val.mask": torch.tensor([[False, True], [True, True]])}),
                         "prm.val row 0 holds a mask with holes"),
    "not-a-probability": (lambda t: t["prm.val.scores"].fill_(1.5), r"scores outside \[0, 1\]"),
}


@pytest.mark.parametrize(("edit", "match"), SCORE_FAULTS.values(), ids=SCORE_FAULTS.keys())
def test_load_scores_damaged_file_raises_corrupt_file_error_naming_it(tmp_path, edit, match):
    from prm_core.files import CorruptFileError

    path = _saved_scores(tmp_path / "scores.safetensors", edit)
    with pytest.raises(CorruptFileError, match=match) as info:
        score_files.load_scores(path, _score_parts(), encoder=None, models=("prm",))
    assert str(path) in str(info.value)


def test_load_scores_valid_file_gives_the_saved_scores(tmp_path):
    path = _saved_scores(tmp_path / "scores.safetensors")
    loaded = score_files.load_scores(path, _score_parts(), encoder=None, models=("prm",))
    assert {part: tuple(s.scores.shape) for part, s in loaded["prm"].items()} == {"val": (2, 2), "test": (3, 2),
                                                                               "bon": (2, 2)}


def test_rollouts_damaged_cache_file_is_rebuilt_once(tmp_path, monkeypatch):
    from prm_core import labeling

    config = ExperimentConfig.from_dict(SMOKE)
    samples = make_datasets(config).train[:6]
    first = experiments.relabelled(config, samples, "mc_soft", n_rollouts=2, show_progress=False, cache_dir=tmp_path)
    (path,) = (tmp_path / "experiments").glob("rollouts-*.npz")
    path.write_bytes(b"PK\x03\x04 cut")
    calls, real = [], labeling.rollout_successes
    monkeypatch.setattr(labeling, "rollout_successes", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    again = experiments.relabelled(config, samples, "mc_soft", n_rollouts=2, show_progress=False, cache_dir=tmp_path)
    experiments.relabelled(config, samples, "mc_soft", n_rollouts=2, show_progress=False, cache_dir=tmp_path)
    assert len(calls) == 1 and [s.labels for s in again] == [s.labels for s in first]


def test_load_rollouts_file_for_other_samples_raises_corrupt_file_error(tmp_path):
    from prm_core.files import CorruptFileError

    samples = make_datasets(ExperimentConfig.from_dict(SMOKE)).train[:3]
    path = tmp_path / "rollouts.npz"
    np.savez(path, hits=np.zeros((2, 2), dtype=bool), n_steps=np.array([1, 1]))
    with pytest.raises(CorruptFileError, match=rf"rollouts cache {path} holds hits .* for 2 samples"):
        experiments._load_rollouts(path, samples, 2)


def test_standard_run_incomplete_report_entry_is_rebuilt_once_and_repaired(fast_models, count_scoring, tmp_path):
    config = ExperimentConfig.from_dict(SMOKE)
    first = experiments.standard_run(config, "smoke", tmp_path)
    (folder,) = (tmp_path / "experiments").glob("report-*")
    (folder / "report.json").unlink()  # before: the scores were written there first, non-atomically
    again = experiments.standard_run(config, "smoke", tmp_path)
    experiments.standard_run(config, "smoke", tmp_path)
    assert len(count_scoring) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "scores.safetensors"]
    assert again.report["best_of_n"] == first.report["best_of_n"]


def test_standard_run_failure_while_reporting_keeps_the_old_entry(fast_models, tmp_path, monkeypatch):
    from tests.test_files import leftovers, snapshot

    config = ExperimentConfig.from_dict(SMOKE)
    experiments.standard_run(config, "smoke", tmp_path)
    (folder,) = (tmp_path / "experiments").glob("report-*")
    (folder / "report.json").unlink()
    before = snapshot(folder)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "_report", fail)
    with pytest.raises(KeyboardInterrupt):
        experiments.standard_run(config, "smoke", tmp_path)
    assert snapshot(folder) == before and leftovers(tmp_path / "experiments") == []


@pytest.mark.parametrize("writer", ["record_metrics", "emit_json"])
def test_metrics_writer_full_disk_half_way_keeps_the_old_file(writer, tmp_path, monkeypatch, capsys):
    from tests.test_files import fill_disk_half_way, leftovers

    path = tmp_path / "nb01.json"
    write = {"record_metrics": lambda m: experiments.record_metrics("nb01", m, tmp_path),
             "emit_json": lambda m: experiments.emit_json(m, path)}[writer]
    write({"auroc": 0.5})
    before = path.read_bytes()
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write({"auroc": 0.75, "f1": np.float32(0.5)})
    monkeypatch.undo()
    assert path.read_bytes() == before and json.loads(before) == {"auroc": 0.5} and leftovers(tmp_path) == []


def test_pretrained_backbone_weights_header_claiming_i32_are_rebuilt_once(fast_models, tmp_path):
    from tests.test_files import lie_about_dtype, rewrite_header

    config = ExperimentConfig.from_dict(SMOKE)
    path, _ = experiments.pretrained_backbone(config, tmp_path)
    rewrite_header(Path(path) / "model.safetensors", lie_about_dtype("norm.weight"))
    experiments.pretrained_backbone(config, tmp_path)
    experiments.pretrained_backbone(config, tmp_path)
    assert fast_models == ["lm", "lm"]


def test_pretrained_backbone_missing_a_weight_is_rebuilt_once_not_trained_on(fast_models, tmp_path):
    from tests.test_backbones import _drop_weight

    config = ExperimentConfig.from_dict(SMOKE)
    path, _ = experiments.pretrained_backbone(config, tmp_path)
    _drop_weight(Path(path))  # loaded as is, transformers would set norm.weight at random
    experiments.pretrained_backbone(config, tmp_path)
    experiments.pretrained_backbone(config, tmp_path)
    assert fast_models == ["lm", "lm"]


def test_another_train_seed_is_another_model_on_the_same_backbone_and_data(smoke_run):
    config, cache, _ = smoke_run
    data = make_datasets(config)
    default = experiments.model_scores(config, "prm", data, cache)
    same = experiments.model_scores(config, "prm", data, cache, train_seed=config.seed)
    other = experiments.model_scores(config, "prm", data, cache, train_seed=config.seed + 1)
    assert (same["test"].scores == default["test"].scores).all()  # the standard entry, not a new one
    assert not (other["test"].scores == default["test"].scores).all()
    folders = {p.name for p in (cache / "experiments").glob("prm-*")}
    assert experiments._model_folder(config, "prm", "exact", 0, cache).name in folders
    assert experiments._model_folder(config, "prm", "exact", 0, cache, config.seed + 1).name in folders
    with pytest.raises(ValueError, match="train_seed"):
        experiments.trained_model(config, "prm", data, cache, train_seed=-1)


def test_standard_over_seeds_pairs_each_seeds_prm_with_its_orm_and_reuses_the_standard_scores(smoke_run):
    config, cache, _ = smoke_run
    run = experiments.standard_run(config, "smoke", cache)
    seeds = [config.seed, config.seed + 1]
    scores = experiments.seed_scores(run, "prm", seeds, cache)
    assert scores[0] is run.scores["prm"]  # the standard run's own, not scored again
    assert not (scores[1]["test"].scores == scores[0]["test"].scores).all()
    out = experiments.standard_over_seeds(run, seeds, cache)
    assert out["train_seeds"] == seeds
    for kind in ("prm", "orm"):
        assert out[kind]["n_seeds"] == 2 and len(out[kind]["step_auroc"]["per_seed"]) == 2
    diff = out["prm_minus_orm"]["step_auroc"]
    expected = [p - o for p, o in zip(out["prm"]["step_auroc"]["per_seed"], out["orm"]["step_auroc"]["per_seed"],
                                      strict=True)]
    assert diff["per_seed"] == pytest.approx(expected)
    assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]
    with pytest.raises(ValueError, match="kind"):
        experiments.seed_scores(run, "lm", seeds, cache)
    for bad, match in ((config.seed, "non-empty list"), ("01", "non-empty list"), ([], "non-empty list"),
                       ([config.seed, config.seed], "repeats a seed"), ([config.seed, -1], r"train_seeds\[1\]")):
        with pytest.raises(ValueError, match=match):
            experiments.standard_over_seeds(run, bad, cache)


def _params(tmp_path, standard):
    import yaml

    folder = tmp_path / "params"
    folder.mkdir(exist_ok=True)
    (folder / "p.yaml").write_text(yaml.safe_dump({"experiment": {"seed": 3}, "standard": standard}))
    return folder


@pytest.mark.parametrize("standard, match", [
    ({"train_seeds": [1, 2]}, "include experiment.seed=3"),
    ({"train_seeds": [3, 3]}, "distinct"),
    ({"train_seeds": 3}, "non-empty list"),
    ({"train_seeds": []}, "non-empty list"),
    ({"train_seeds": [3, -1]}, r"standard.train_seeds\[1\]"),
    ({"train_seeds": [3], "seeds": [1]}, "unknown keys"),
])
def test_load_train_seeds_names_the_key_and_the_fix(tmp_path, standard, match):
    with pytest.raises(ValueError, match=match):
        experiments.load_train_seeds("p", _params(tmp_path, standard))


def test_load_train_seeds_reads_each_profile_and_defaults_to_the_experiment_seed(tmp_path):
    for profile in ("cpu", "gpu"):
        seeds = experiments.load_train_seeds(profile)
        assert len(seeds) >= 3 and experiments.load_profile(profile).seed in seeds
    assert experiments.load_train_seeds("p", _params(tmp_path, None)) == (3,)


def test_standard_run_of_another_train_seed_reports_that_seeds_models_and_keeps_the_default_entry(smoke_run):
    config, cache, _ = smoke_run
    default = experiments.standard_run(config, "smoke", cache)
    other = experiments.standard_run(config, "smoke", cache, train_seed=config.seed + 1)
    expected = experiments.model_scores(config, "prm", default.data, cache, train_seed=config.seed + 1)
    assert torch.equal(other.scores["prm"]["test"].scores, expected["test"].scores)
    assert not torch.equal(other.scores["prm"]["test"].scores, default.scores["prm"]["test"].scores)
    assert other.report["train_seed"] == config.seed + 1
    again = experiments.standard_run(config, "smoke", cache, train_seed=config.seed)  # the default's entry
    assert torch.equal(again.scores["orm"]["bon"].scores, default.scores["orm"]["bon"].scores)
    with pytest.raises(ValueError, match="train_seed"):
        experiments.standard_run(config, "smoke", cache, train_seed=-3)


@pytest.mark.parametrize("text", ["-1", "abc", "1.5"])
def test_pretrain_seed_option_that_is_not_a_seed_is_a_usage_error(text, capsys):
    with pytest.raises(SystemExit) as stop:
        experiments.main(["--pretrain-seed", text])
    assert stop.value.code == 2
    assert f"argument --pretrain-seed: {text!r} is not a seed" in capsys.readouterr().err
