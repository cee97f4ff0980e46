"""prm_core.prebuild: the task list covers what the notebooks train, a cache entry is built once however
many processes ask for it, and one thread gives the same bits as two (what makes prebuilding safe)."""

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
    assert listed[:2] == [Task("standard"), Task("policy")] and len(set(listed)) == len(listed)
    assert {t.args for t in listed if t.kind == "rl"} == {(r, s) for r in runs.rewards for s in runs.seeds}
    assert {t.args for t in listed if t.kind == "sweep"} == {
        (k, n, s) for k in ("prm", "orm") for n in sweep.train_sizes for s in sweep.seeds}
    assert {t.args[0] for t in listed if t.kind == "ablation"} == set(ABLATIONS)
    assert {t.args[0] for t in listed if t.kind == "labels"} == set(LABEL_SOURCES)
    rl = [t.args[0] for t in listed if t.kind == "rl"]  # runs that need no reward model start first
    assert rl[: len(runs.seeds)] == ["outcome"] * len(runs.seeds)


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
def test_jobs_that_is_not_a_positive_int_raises_naming_it(jobs):
    with pytest.raises((ValueError, TypeError), match="jobs"):
        prebuild("cpu", jobs=jobs, only=[])


def test_unknown_profile_and_task_kind_raise():
    with pytest.raises(ValueError, match="nope"):
        tasks("nope")
    with pytest.raises(ValueError, match="train"):
        run_task(Task("train"), "cpu")


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


def _with_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_training_and_sampling_give_the_same_bits_with_one_thread_as_with_two(course_backbone):
    """At the cpu profile's batch sizes (large enough that two threads split the work)."""
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from prm_core import experiments as E
    from prm_core.lm_policy import LMPolicy, SamplingConfig
    from prm_core.training import train

    cfg = E.load_profile("cpu")
    corpus = E.pretraining_corpus(replace(cfg, pretrain_problems=200))

    def lm_steps():
        model = E.new_model(cfg.backbone, cfg, "prm")
        train(model, corpus, config=replace(cfg.pretrain, seed=0, max_steps=3, show_progress=False), kind="lm")
        return {k: v.clone() for k, v in model.state_dict().items()}

    one, two = _with_threads(1, lm_steps), _with_threads(2, lm_steps)
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)

    tokenizer = copy.deepcopy(course_backbone[1])
    config = Qwen2Config(vocab_size=len(tokenizer) + 1, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    policy = LMPolicy(Qwen2ForCausalLM(config).eval(), tokenizer, SamplingConfig(max_new_tokens=32, max_step_tokens=12))
    problems = E.bon_problems(cfg)[:64]
    sample = lambda: [s.steps for s in policy.sample_many(problems, 4, seed=3)]  # noqa: E731
    assert _with_threads(1, sample) == _with_threads(2, sample)


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
