"""prm_core.prebuild: the task list covers what the notebooks train, a cache entry is built once however
many processes ask for it, a worker trains what one thread in a notebook trains, and it says where the
time went. Two threads may train other bits (they do on some CPUs): the claims must not depend on them,
which `make test-robust` checks, not a test here."""

import multiprocessing
import time
from dataclasses import replace

import pytest
import torch

from prm_core.files import cached, read_json, write_json
from prm_core.labeling import LABEL_SOURCES
from prm_core.policy_runs import load_policy_runs
from prm_core.prebuild import Task, prebuild, run_task, tasks
from prm_core.sweeps import ABLATIONS, load_sweep


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_tasks_cover_every_rl_run_sweep_model_ablation_and_label_source_once(profile):
    listed = tasks(profile)
    runs, sweep = load_policy_runs(profile), load_sweep(profile)
    assert listed[:3] == [Task("backbone"), Task("standard"), Task("policy")] and len(set(listed)) == len(listed)
    assert {t.args for t in listed if t.kind == "rl"} == {(r, s) for r in runs.rewards for s in runs.seeds}
    assert {t.args for t in listed if t.kind == "sweep"} == {
        (k, n, s) for k in ("prm", "orm") for n in sweep.train_sizes for s in sweep.seeds}
    assert {t.args for t in listed if t.kind == "ablation"} >= {(a, s) for a in ABLATIONS for s in sweep.ablation_seeds}
    assert len(sweep.seeds) >= 3 and len(sweep.ablation_seeds) >= 3  # claims are over training seeds

    assert {t.args[0] for t in listed if t.kind == "labels"} == set(LABEL_SOURCES)
    rl = [t.args[0] for t in listed if t.kind == "rl"]  # runs that need no reward model start first
    assert rl[: len(runs.seeds)] == ["outcome"] * len(runs.seeds)
    # the standard models of the other training seeds, before any RL run (the later seeds' rewards)
    from prm_core.experiments import load_profile, load_train_seeds

    other = [s for s in load_train_seeds(profile) if s != load_profile(profile).seed]
    seeded = [i for i, t in enumerate(listed) if t.kind == "train_seed"]
    assert {listed[i].args for i in seeded} == {(k, s) for k in ("prm", "orm") for s in other} and len(other) >= 2
    assert max(seeded) < min(i for i, t in enumerate(listed) if t.kind == "rl")
    assert set(runs.reward_train_seeds) <= set(load_train_seeds(profile))  # no RL run trains a reward model itself


def test_notebook_08_trains_on_the_rollout_count_prebuild_uses():
    import nbformat

    from prm_core.prebuild import MC_TRAIN_K
    from prm_core.results_table import ROOT

    nb = nbformat.read(ROOT / "notebooks" / "08_step_labels.ipynb", as_version=4)
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert f"TRAIN_K = {MC_TRAIN_K} " in params and "for source in tqdm(LABEL_SOURCES" in code
    assert "from prm_core.labeling import" in code and "LABEL_SOURCES" in code.split("from prm_core.labeling import")[1][:200]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_jobs_or_threads_that_is_not_a_positive_int_raises_naming_it(jobs):
    with pytest.raises((ValueError, TypeError), match="jobs"):
        prebuild("cpu", jobs=jobs, only=[])
    with pytest.raises((ValueError, TypeError), match="threads"):
        prebuild("cpu", jobs=1, threads=jobs, only=[])


def test_unknown_profile_and_task_kind_raise():
    with pytest.raises(ValueError, match="nope"):
        tasks("nope")
    with pytest.raises(ValueError, match="train"):
        run_task(Task("train"), "cpu")


@pytest.mark.parametrize("kinds", ["bogus", "standard,bogus", ","])
def test_the_command_refuses_unknown_kinds_naming_the_known_ones(kinds, capsys):
    from prm_core.prebuild import main

    with pytest.raises(SystemExit) as info:
        main(["--kinds", kinds])
    assert info.value.code == 2 and "standard, train_seed, policy, rl" in capsys.readouterr().err


def _build_slowly(folder, log):
    def build(tmp):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        write_json(tmp / "done.json", {"n": 7})

    return cached(folder, "done.json", build, lambda f: read_json(f / "done.json"))["n"]


def test_two_processes_asking_for_one_missing_entry_build_it_once(tmp_path):
    folder, log = tmp_path / "entry-1a2b", tmp_path / "builds.log"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        values = pool.starmap(_build_slowly, [(folder, log), (folder, log)])
    assert values == [7, 7] and log.read_text() == "built\n"


def _with_threads(n, fn, *args):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def _train_and_sample(cache_dir) -> tuple[int, str, list]:
    """Three steps of backbone training (the weights' hash) and sampled steps of a fresh LM policy, at
    the cpu profile's batch sizes (large enough that a second thread would split the work)."""
    import copy
    import hashlib

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from prm_core import experiments as E
    from prm_core.backbones import load_backbone
    from prm_core.lm_policy import LMPolicy, SamplingConfig
    from prm_core.training import train

    cfg = E.load_profile("cpu")
    corpus = E.pretraining_corpus(replace(cfg, pretrain_problems=200))
    _, tokenizer = load_backbone("course-tiny", cache_dir=cache_dir)
    model = E.new_model(cfg.backbone, cfg, "prm")
    train(model, corpus, config=replace(cfg.pretrain, seed=0, max_steps=3, show_progress=False), kind="lm")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    tokenizer = copy.deepcopy(tokenizer)
    config = Qwen2Config(vocab_size=len(tokenizer) + 1, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    policy = LMPolicy(Qwen2ForCausalLM(config).eval(), tokenizer, SamplingConfig(max_new_tokens=32, max_step_tokens=12))
    steps = [s.steps for s in policy.sample_many(E.bon_problems(cfg)[:64], 4, seed=3)]
    return torch.get_num_threads(), digest.hexdigest(), steps


@pytest.mark.slow
def test_a_prebuild_worker_trains_and_samples_what_one_thread_in_a_notebook_does(course_backbone):
    """What makes prebuilding safe: a worker's entry is the one a notebook would have built with one
    thread, bit for bit (the cache key names the config, never the threads)."""
    from concurrent.futures import ProcessPoolExecutor

    from prm_core.prebuild import _worker_setup

    cache = course_backbone[2]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup) as pool:
        in_worker = pool.submit(_train_and_sample, cache).result()
    here = _with_threads(1, _train_and_sample, cache)
    assert in_worker[0] == 1 and here[0] == 1
    assert in_worker[1] == here[1] and in_worker[2] == here[2]


def test_the_timing_report_splits_work_from_waiting_and_names_the_critical_path():
    from prm_core.prebuild import TaskTime, timing_report

    times = {"standard": TaskTime(7, 100.0, 500.0), "policy": TaskTime(8, 100.0, 520.0, waited=380.0),
             "rl outcome 0": TaskTime(7, 500.0, 620.0), "sweep prm 200 0": TaskTime(8, 520.0, 520.01)}
    report = timing_report(times, 100.0, 621.0).splitlines()
    assert report[0] == ("prebuilt 4 tasks in 521 s with 2 workers: 560 s of work, 380 s waiting for another "
                         "worker's entry, 102 s idle")
    assert report[1] == "  worker 1: standard 400 s, rl outcome 0 120 s"
    assert report[2] == "  worker 2: policy 40 s (+380 s waiting), 1 cached"
    assert report[3] == "critical path (worker 1, done at 520 s): standard 400 s -> rl outcome 0 120 s"
    assert timing_report({}, 0.0, 1.0) == "prebuilt nothing: no task"


def test_the_backbone_runs_first_and_alone_with_every_worker_s_threads(monkeypatch, tmp_path):
    from prm_core import prebuild as module

    calls = []
    monkeypatch.setattr(module, "_run_pool", lambda todo, profile, jobs, threads, cache_dir, bar: (
        calls.append(([str(t) for t in todo], jobs, threads)) or {}))
    monkeypatch.setattr(module.os, "cpu_count", lambda: 2)
    todo = [Task("standard"), Task("backbone"), Task("rl", ("outcome", 0)), Task("policy")]
    prebuild("cpu", 2, str(tmp_path), show_progress=False, only=todo, threads=1)
    assert calls == [(["backbone"], 1, 2), (["standard", "rl outcome 0", "policy"], 2, 1)]
    calls.clear()
    prebuild("cpu", 2, str(tmp_path), show_progress=False, only=todo, threads=2)  # never more threads than CPUs
    assert calls[0] == (["backbone"], 1, 2)
    calls.clear()
    prebuild("cpu", 2, str(tmp_path), show_progress=False, only=todo, threads=1, backbone_threads=1)  # a one-thread draw
    assert calls[0] == (["backbone"], 1, 1)
    calls.clear()
    prebuild("cpu", 2, str(tmp_path), show_progress=False, only=[Task("sweep", ("prm", 200, 0))], threads=3)
    assert calls == [(["sweep prm 200 0"], 1, 3)]  # no backbone task (--kinds): no first phase, one worker
    with pytest.raises(ValueError, match="backbone_threads"):
        prebuild("cpu", 2, str(tmp_path), show_progress=False, only=todo, backbone_threads=0)


def test_the_timing_report_lists_the_backbone_apart_and_on_the_critical_path():
    from prm_core.prebuild import TaskTime, timing_report

    times = {"backbone": TaskTime(5, 0.0, 300.0), "standard": TaskTime(7, 300.0, 700.0),
             "policy": TaskTime(8, 300.0, 650.0), "rl outcome 0": TaskTime(8, 650.0, 760.0)}
    report = timing_report(times, 0.0, 761.0).splitlines()
    assert report[0] == "prebuilt 4 tasks in 761 s with 2 workers: 1160 s of work, 0 s waiting for another worker's entry, 62 s idle"
    assert report[1] == "  first, alone with every worker's threads: backbone 300 s"
    assert report[-1] == "critical path (worker 2, done at 760 s): backbone 300 s -> policy 350 s -> rl outcome 0 110 s"


def test_the_command_writes_its_times_for_the_next_run_to_compare(tmp_path, monkeypatch):
    from prm_core import prebuild as module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, "prebuild", lambda *a, **k: {"backbone": module.TaskTime(1, 0.0, 2.0)})
    assert module.main(["--kinds", "backbone"]) == 0
    written = read_json(tmp_path / "build" / "prebuild-times.json")
    assert written["tasks"]["backbone"]["end"] - written["tasks"]["backbone"]["start"] == pytest.approx(2.0)
    assert written["jobs"] == 2 and written["report"][1].endswith("backbone 2 s")


def test_a_cached_backbone_is_counted_not_put_on_the_critical_path():
    from prm_core.prebuild import TaskTime, timing_report

    times = {"backbone": TaskTime(5, 0.0, 0.2), "policy": TaskTime(8, 0.2, 40.2)}
    report = timing_report(times, 0.0, 41.0).splitlines()
    assert report[1] == "  first, alone with every worker's threads: 1 cached"
    assert report[-1] == "critical path (worker 1, done at 40 s): policy 40 s"


def test_kinds_without_the_backbone_still_build_it_first(tmp_path, monkeypatch):
    from prm_core import prebuild as module

    asked = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, "prebuild", lambda *a, only=None, **k: asked.extend(map(str, only)) or {})
    assert module.main(["--kinds", "standard"]) == 0
    assert asked == ["backbone", "standard"]
    record = read_json(tmp_path / "build" / "prebuild-times.json")
    assert record["cache"] and record["aten_cpu_capability"]


def test_a_times_file_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    from prm_core import prebuild as module

    monkeypatch.chdir(tmp_path)
    (tmp_path / "build").write_text("a file where the folder should be")
    monkeypatch.setattr(module, "prebuild", lambda *a, **k: {"backbone": module.TaskTime(1, 0.0, 2.0)})
    assert module.main(["--kinds", "backbone"]) == 0
    assert "could not write build/prebuild-times.json" in capsys.readouterr().err


def test_a_wait_for_another_process_s_entry_is_counted(tmp_path):
    from prm_core.files import entry_lock, lock_wait_seconds

    before = lock_wait_seconds()
    with entry_lock(tmp_path / "entry-free"):
        pass
    assert lock_wait_seconds() == before  # nobody held it: no wait
    folder, log = tmp_path / "entry-5e6f", tmp_path / "builds.log"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pending = pool.apply_async(_build_slowly, (folder, log))
        deadline = time.monotonic() + 120
        while not log.exists() and time.monotonic() < deadline:  # until the other process holds the lock
            time.sleep(0.05)
        assert cached(folder, "done.json", lambda tmp: None, lambda f: read_json(f / "done.json"))["n"] == 7
        pending.get()
    assert lock_wait_seconds() - before > 0.1 and log.read_text() == "built\n"


def test_a_failing_task_raises_its_error_naming_the_task(tmp_path):
    with pytest.raises(ValueError, match="task kind 'bogus'") as info:
        prebuild("cpu", jobs=1, cache_dir=str(tmp_path), show_progress=False, only=[Task("bogus", (1,))])
    assert any("while prebuilding: bogus 1" in note for note in info.value.__notes__)


def test_a_build_that_asks_for_its_own_entry_raises_instead_of_waiting_forever(tmp_path):
    folder = tmp_path / "entry-3c4d"

    def build(tmp):
        cached(folder, "done.json", build, lambda f: read_json(f / "done.json"))

    with pytest.raises(RuntimeError, match="needed by its own build"):
        cached(folder, "done.json", build, lambda f: read_json(f / "done.json"))
    assert not (folder / "done.json").exists()
    assert cached(folder, "done.json", lambda tmp: write_json(tmp / "done.json", {"n": 1}),
                  lambda f: read_json(f / "done.json")) == {"n": 1}  # the lock was let go


@pytest.mark.parametrize("changed, expected", [({"seeds": (0, 1), "ablation_seeds": (0, 1, 2)}, [2]),
                                               ({"ablation_train_size": 1500}, [0, 1, 2]), ({}, [])],
                         ids=["seed-not-swept", "size-not-swept", "all-swept"])
def test_the_unchanged_ablation_side_is_built_for_every_seed_no_sweep_task_covers(changed, expected, monkeypatch):
    from dataclasses import replace as dc_replace

    import prm_core.sweeps as sweeps

    custom = dc_replace(load_sweep("cpu"), **changed)
    monkeypatch.setattr(sweeps, "load_sweep", lambda profile: custom)
    listed = tasks("cpu")
    assert [t.args[1] for t in listed if t.kind == "ablation" and t.args[0] == "none"] == expected


def test_tasks_refuse_rl_reward_seeds_that_no_standard_model_is_trained_for(monkeypatch):
    from dataclasses import replace as dc_replace

    from prm_core import policy_runs

    custom = dc_replace(load_policy_runs("cpu"), reward_train_seeds=(0, 1, 7))
    monkeypatch.setattr(policy_runs, "load_policy_runs", lambda profile: custom)
    with pytest.raises(ValueError, match=r"rl.reward_train_seeds names train seeds \[7\]"):
        tasks("cpu")
