import math

import pytest
import torch

import prm_core.training as training
from prm_core.data import StepSample
from prm_core.losses import StepLoss, step_bce_loss
from prm_core.tasks.arithmetic import make_splits
from prm_core.tasks.arithmetic_policy import NoisyPolicy
from prm_core.training import TrainConfig, evaluate_loss, train, training_view
from tests.conftest import build_tiny_prm, single_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# About 1.5 s on one CPU core: 60 steps of 32 solutions on the 1-layer, 32-wide backbone.
LEARNING_CONFIG = TrainConfig(max_steps=60, batch_size=32, learning_rate=1e-2, warmup_steps=5, show_progress=False)


def _quick_config(**overrides):
    return TrainConfig(**{"max_steps": 4, "batch_size": 8, "warmup_steps": 1, "show_progress": False, **overrides})


@pytest.fixture(scope="module")
def arithmetic_data():
    """(train, held_out) policy samples: 150 x 4 and 40 x 4 solutions on disjoint problems."""
    train_problems, test_problems = make_splits(150, 40, seed=0)
    policy = NoisyPolicy()
    return policy.sample_many(train_problems, 4, seed=1), policy.sample_many(test_problems, 4, seed=2)


@pytest.fixture(scope="module")
def learning_run(tiny_backbone, arithmetic_data):
    """One short PRM run: (held-out loss before training, TrainResult, majority-label baseline BCE)."""
    train_samples, held_out = arithmetic_data
    with single_torch_thread():
        model = build_tiny_prm(tiny_backbone, seed=0)
        loss_before = evaluate_loss(model, [model.encoder(held_out)])["eval_loss"]
        result = train(model, train_samples, held_out, LEARNING_CONFIG)
    # Majority-label baseline: predict the training set's positive rate p for every held-out step.
    train_labels = [y for s in train_samples for y in s.labels]
    p = sum(train_labels) / len(train_labels)
    held_out_labels = [y for s in held_out for y in s.labels]
    baseline = -sum(y * math.log(p) + (1 - y) * math.log(1 - p) for y in held_out_labels) / len(held_out_labels)
    return loss_before, result, baseline


# ---------------------------------------------------------------- learning

def test_train_prm_short_run_lowers_held_out_loss(learning_run):
    loss_before, result, _ = learning_run
    assert result.eval_history[-1]["eval_loss"] < loss_before


def test_train_prm_short_run_beats_majority_label_baseline(learning_run):
    _, result, baseline = learning_run
    # The positive rate is near 0.5, so the baseline is near ln 2 = 0.693; runs reach about 0.65.
    assert result.eval_history[-1]["eval_loss"] < baseline - 0.01


def test_train_result_reports_throughput(learning_run):
    _, result, _ = learning_run
    assert result.tokens_per_second > 0
    assert result.n_train_tokens > 0
    assert result.train_seconds > 0


def test_train_history_logs_every_max_steps_over_20_steps(learning_run):
    _, result, _ = learning_run
    # log_every = max(1, min(50, 60 // 20)) = 3, so steps 3, 6, ..., 60: 20 entries
    assert [entry["step"] for entry in result.history] == list(range(3, 61, 3))
    assert all(math.isfinite(entry["train_loss"]) and entry["lr"] > 0 for entry in result.history)


def test_train_without_eval_every_evaluates_once_at_the_end(learning_run):
    _, result, _ = learning_run
    assert [entry["step"] for entry in result.eval_history] == [60]
    assert result.eval_history[0]["eval_n_labelled"] > 0


def test_train_same_seed_twice_gives_identical_history_and_eval(tiny_backbone, arithmetic_data):
    train_samples, held_out = arithmetic_data
    config = _quick_config(max_steps=12, learning_rate=1e-2)
    runs = []
    for _ in range(2):
        model = build_tiny_prm(tiny_backbone, seed=5)
        runs.append(train(model, train_samples[:48], held_out[:16], config))
    assert runs[0].history == runs[1].history  # exact equality, floats included
    assert runs[0].eval_history == runs[1].eval_history


# ---------------------------------------------------------------- ORM supervision

def test_training_view_orm_keeps_only_an_outcome_label_at_the_last_step():
    samples = [StepSample("q", ["a", "b", "c"], labels=[1.0, 0.0, 1.0], meta={"is_correct_answer": True}),
               StepSample("q", ["a", "b"], labels=[1.0, 1.0], meta={"is_correct_answer": False})]
    assert [s.labels for s in training_view(samples, "orm")] == [(None, None, 1.0), (None, 0.0)]


def test_training_view_prm_keeps_step_labels():
    samples = [StepSample("q", ["a", "b"], labels=[1.0, 0.0])]
    assert training_view(samples, "prm") == samples


def test_training_view_orm_sample_without_is_correct_answer_raises():
    samples = [StepSample("q", ["a"], labels=[1.0], meta={"is_correct_answer": True}),
               StepSample("q", ["a"], labels=[1.0])]
    with pytest.raises(ValueError, match=r"samples\[1\]\.meta lacks 'is_correct_answer'"):
        training_view(samples, "orm")


@pytest.mark.parametrize("flag", ["False", None, float("nan")], ids=["text-false", "none", "nan"])
def test_training_view_orm_flag_that_is_not_a_bool_raises_instead_of_training_its_truthiness(flag):
    # bool("False") is True and bool(None) is False: an ORM would learn the wrong outcome without a word
    samples = [StepSample("q", ["a"], labels=[1.0], meta={"is_correct_answer": True}),
               StepSample("q", ["a"], labels=[1.0], meta={"is_correct_answer": flag})]
    with pytest.raises(ValueError, match=r"samples\[1\]\.meta\['is_correct_answer'\]=.* must be True or False"):
        training_view(samples, "orm")


def test_training_view_orm_numpy_bool_flag_trains_as_that_bool():
    import numpy as np

    samples = [StepSample("q", ["a"], labels=[0.0], meta={"is_correct_answer": np.bool_(True)})]
    assert training_view(samples, "orm")[0].labels == (1.0,)


def test_train_orm_sample_without_is_correct_answer_raises(make_tiny_prm):
    samples = [StepSample("2 + 3?", ["2 + 3 = 5."], labels=[1.0])]
    with pytest.raises(ValueError, match=r"samples\[0\]\.meta lacks 'is_correct_answer'"):
        train(make_tiny_prm(kind="orm"), samples, config=_quick_config())


def test_train_orm_batches_label_only_each_solutions_last_step(make_tiny_prm, arithmetic_data, monkeypatch):
    model = make_tiny_prm(kind="orm")
    batches = []
    collate = model.encoder.collate

    def spy(encoded):
        batches.append(collate(encoded))
        return batches[-1]

    monkeypatch.setattr(model.encoder, "collate", spy)
    train(model, arithmetic_data[0][:24], config=_quick_config(max_steps=3))
    assert sum(len(b["labels"]) for b in batches) == 24  # 3 batches of 8: every sample seen once
    for batch in batches:
        last = batch["step_mask"].sum(dim=1) - 1  # index of each solution's last step
        expected = torch.zeros_like(batch["label_mask"])
        expected[torch.arange(len(last)), last] = True
        assert torch.equal(batch["label_mask"], expected)


def test_train_kind_argument_overrides_model_kind(make_tiny_prm, monkeypatch):
    masks = []

    def spy(logits, labels, label_mask, **kwargs):
        masks.append(label_mask.clone())
        return step_bce_loss(logits, labels, label_mask, **kwargs)

    monkeypatch.setattr(training, "step_bce_loss", spy)
    samples = [StepSample("2 + 3?", ["2 + 3 = 5.", "5 + 1 = 6."], labels=[1.0, 1.0],
                          meta={"is_correct_answer": True})]
    result = train(make_tiny_prm(kind="prm"), samples, config=_quick_config(max_steps=1), kind="orm")
    assert masks[0].tolist() == [[False, True]]
    assert result.config["kind"] == "orm"


# ---------------------------------------------------------------- non-finite loss

def _nan_from_step(monkeypatch, first_bad: int) -> list[int]:
    """Patch the training loss to turn NaN from optimizer step ``first_bad`` on (counted from 1)."""
    calls: list[int] = []

    def loss_turning_nan(logits, labels, label_mask, **kwargs):
        out = step_bce_loss(logits, labels, label_mask, **kwargs)
        calls.append(len(calls) + 1)
        return StepLoss(loss=out.loss * float("nan"), n_labelled=out.n_labelled) if calls[-1] >= first_bad else out

    monkeypatch.setattr(training, "step_bce_loss", loss_turning_nan)
    return calls


def test_train_nan_loss_stops_with_floating_point_error(make_tiny_prm, arithmetic_data, monkeypatch):
    calls = _nan_from_step(monkeypatch, first_bad=3)
    with pytest.raises(FloatingPointError, match="became NaN or infinite at step"):
        train(make_tiny_prm(), arithmetic_data[0][:48], config=_quick_config(max_steps=6))
    # log_every = max(1, min(50, 6 // 20)) = 1: the loop stops at the first bad step, running no more
    assert calls == [1, 2, 3]


def test_train_nan_loss_message_names_the_step_as_history_numbers_it(make_tiny_prm, arithmetic_data, monkeypatch):
    _nan_from_step(monkeypatch, first_bad=3)  # the 3rd optimizer step: history would log it as "step": 3
    with pytest.raises(FloatingPointError, match=r"at step 3;"):
        train(make_tiny_prm(), arithmetic_data[0][:48], config=_quick_config(max_steps=6))


# ---------------------------------------------------------------- evaluate_loss

def test_evaluate_loss_matches_step_bce_by_hand(make_tiny_prm):
    model = make_tiny_prm()
    samples = [StepSample("2 + 3?", ["2 + 3 = 5.", "5 × 2 = 11."], labels=[1.0, 0.0]),
               StepSample("4 + 4?", ["4 + 4 = 8."], labels=[None])]
    batch = model.encoder(samples)
    with torch.no_grad():
        p = torch.sigmoid(model.eval()(**batch).logits)
    # Two labelled steps (the None is skipped): (-ln p[0,0] - ln(1 - p[0,1])) / 2
    expected = (-torch.log(p[0, 0]) - torch.log(1 - p[0, 1])).item() / 2
    metrics = evaluate_loss(model, [batch])
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["eval_n_labelled"] == 2.0


def test_evaluate_loss_on_an_eval_mode_model_leaves_it_in_eval_mode(make_tiny_prm):
    model = make_tiny_prm().eval()
    evaluate_loss(model, [model.encoder([StepSample("2 + 3?", ["2 + 3 = 5.", "5 × 2 = 11."], labels=[1.0, 0.0])])])
    assert not model.training


def test_evaluate_loss_without_labelled_steps_gives_nan_loss(make_tiny_prm):
    model = make_tiny_prm()
    with pytest.warns(UserWarning, match="no labelled step"):
        metrics = evaluate_loss(model, [model.encoder([StepSample("2 + 3?", ["2 + 3 = 5."])])])
    assert math.isnan(metrics["eval_loss"])


# ---------------------------------------------------------------- TrainConfig

BAD_CONFIGS = {
    "max-steps-zero": ("max_steps", 0),
    "batch-size-zero": ("batch_size", 0),
    "eval-batch-size-zero": ("eval_batch_size", 0),
    "warmup-negative": ("warmup_steps", -1),
    "eval-every-negative": ("eval_every", -1),
    "lm-loss-weight-negative": ("lm_loss_weight", -0.5),
    "weight-decay-negative": ("weight_decay", -0.01),
    "grad-clip-negative": ("grad_clip", -1.0),
    "learning-rate-zero": ("learning_rate", 0.0),
    "learning-rate-nan": ("learning_rate", float("nan")),
    "min-lr-ratio-above-one": ("min_lr_ratio", 1.5),
    "min-lr-ratio-negative": ("min_lr_ratio", -0.1),
    "mixed-precision-unknown": ("mixed_precision", "fp16"),
}


@pytest.mark.parametrize(("name", "value"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_train_config_bad_value_raises_naming_the_field(name, value):
    with pytest.raises(ValueError, match=rf"^{name}="):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("value", [0.0, -1.0], ids=["zero", "negative"])
def test_train_config_non_positive_pos_weight_raises_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^pos_weight="):
        TrainConfig(pos_weight=value)


def test_train_empty_train_samples_raises(make_tiny_prm):
    with pytest.raises(ValueError, match="train_samples is empty"):
        train(make_tiny_prm(), [], config=_quick_config())


@pytest.mark.slow
def test_train_under_torchrun_keeps_two_cpu_replicas_identical(tiny_backbone, tmp_path):
    """Several processes (`accelerate launch`, or torchrun underneath it) train one model: each
    sees its own batches, and the synced gradients keep every replica's weights equal."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import TINY_PROFILE_KWARGS

    script = Path(__file__).with_name("torchrun_train.py")
    env = os.environ | {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tiny_backbone[2]), json.dumps(TINY_PROFILE_KWARGS), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [row["processes"] for row in rows] == [2, 2]  # so each trained on different batches
    assert rows[0]["before"] != rows[0]["after"]  # it trained
    assert rows[0]["after"] == rows[1]["after"]  # and the replicas agree


@pytest.mark.parametrize("value", ["Balanced", "auto", True], ids=["capitalised", "other-string", "bool"])
def test_train_config_pos_weight_other_than_a_number_or_balanced_raises(value):
    with pytest.raises(ValueError, match=r"^pos_weight=.*'balanced'"):
        TrainConfig(pos_weight=value)


def test_balanced_pos_weight_is_wrong_over_correct_steps_with_soft_labels_fractional():
    from prm_core.encoding import EncodedSample
    from prm_core.training import balanced_pos_weight

    encoded = [EncodedSample([1, 2, 3], [1, 2], [1.0, 0.0]), EncodedSample([1, 2], [1], [0.25]),
               EncodedSample([1, 2], [1], [None]), EncodedSample([1, 2], [1], None)]
    # correct mass 1 + 0.25 = 1.25, wrong mass 1 + 0.75 = 1.75; the unlabelled ones count for nothing
    assert balanced_pos_weight(encoded) == pytest.approx(1.75 / 1.25)


def test_balanced_pos_weight_one_class_only_raises():
    from prm_core.encoding import EncodedSample
    from prm_core.training import balanced_pos_weight

    with pytest.raises(ValueError, match="needs correct and wrong steps"):
        balanced_pos_weight([EncodedSample([1, 2], [1], [1.0])])


def test_train_balanced_pos_weight_is_resolved_and_reported(make_tiny_prm, arithmetic_data):
    train_samples, _ = arithmetic_data
    result = train(make_tiny_prm(), train_samples[:40], config=_quick_config(pos_weight="balanced"))
    labels = [y for s in train_samples[:40] for y in s.labels]
    assert result.pos_weight == pytest.approx(labels.count(0.0) / labels.count(1.0))
    assert result.config["pos_weight"] == "balanced"


def test_train_history_logs_the_supervised_bce_beside_the_total_loss(make_tiny_prm, arithmetic_data):
    train_samples, held_out = arithmetic_data
    config = _quick_config(max_steps=6, lm_loss_weight=0.5)
    result = train(make_tiny_prm(), train_samples[:64], held_out[:16], config)
    # the total adds 0.5 x a positive next-token loss to the BCE, so it is always the larger
    assert all(0 < row["train_bce"] < row["train_loss"] for row in result.history)
    # a PRM's own view of held-out solutions is their step labels: eval_bce is eval_loss
    assert result.eval_history[-1]["eval_bce"] == result.eval_history[-1]["eval_loss"]


def test_train_orm_held_out_bce_is_on_the_outcome_label_not_the_step_labels(make_tiny_prm, arithmetic_data):
    train_samples, held_out = arithmetic_data
    model = make_tiny_prm(kind="orm")
    result = train(model, train_samples[:64], held_out[:16], _quick_config(max_steps=6))
    last = result.eval_history[-1]
    outcome_batch = [model.encoder(training_view(held_out[:16], "orm"))]
    assert last["eval_bce"] == pytest.approx(evaluate_loss(model, outcome_batch)["eval_loss"], rel=1e-5)
    assert last["eval_bce"] != pytest.approx(last["eval_loss"])
    assert "train_bce" in result.history[-1]


def test_train_lm_history_has_no_bce(make_tiny_prm, arithmetic_data):
    result = train(make_tiny_prm(), arithmetic_data[0][:16], config=_quick_config(), kind="lm")
    assert all("train_bce" not in row for row in result.history)


@pytest.mark.parametrize("value", [None, [0.5], float("inf"), float("nan")], ids=["none", "list", "inf", "nan"])
def test_train_config_pos_weight_must_be_a_finite_positive_number(value):
    with pytest.raises(ValueError, match=r"^pos_weight=.*finite number"):
        TrainConfig(pos_weight=value)


def test_train_config_nan_lm_loss_weight_raises():
    with pytest.raises(ValueError, match=r"^lm_loss_weight=nan"):
        TrainConfig(lm_loss_weight=float("nan"))


@pytest.mark.parametrize("labels", [[3.0, 0.0], [float("nan"), 1.0, 0.0]], ids=["above-one", "nan"])
def test_balanced_pos_weight_labels_outside_0_1_raise(labels):
    from prm_core.encoding import EncodedSample
    from prm_core.training import balanced_pos_weight

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        balanced_pos_weight([EncodedSample(list(range(len(labels) + 1)), list(range(1, len(labels) + 1)), labels)])


# ---------------------------------------------------------------- refused before the first step

def _count_forwards(model, monkeypatch):
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    return calls


@pytest.mark.parametrize("kind", ["prm", "orm"])
def test_train_on_samples_without_labels_raises_before_any_step(make_tiny_prm, monkeypatch, kind):
    # the input: it "succeeded" with loss 0.0 at every step and n_batches_without_labels == max_steps
    samples = [StepSample("2 + 3?", ["2 + 3 = 5."]), StepSample("4 - 1?", ["4 - 1 = 3.", "3 × 2 = 6."],
                                                                  labels=[None, None])]
    model = make_tiny_prm()
    calls = _count_forwards(model, monkeypatch)
    if kind == "prm":
        with pytest.raises(ValueError, match=r"no labelled step .*2 samples, 1 with labels=None.*would learn nothing"):
            train(model, samples, config=_quick_config(), kind="prm")
    else:  # the ORM's view labels the last step from the outcome, so unlabelled steps are fine
        graded = [StepSample(s.problem, s.steps, meta={"is_correct_answer": True}) for s in samples]
        train(model, graded, config=_quick_config(max_steps=1), kind="orm")
    assert bool(calls) == (kind == "orm")


def test_train_lm_kind_needs_no_labels(make_tiny_prm):
    result = train(make_tiny_prm(), [StepSample("2 + 3?", ["2 + 3 = 5."])] * 4, config=_quick_config(max_steps=2),
                   kind="lm")
    assert len(result.history) == 2


def test_train_unwritable_checkpoint_dir_raises_before_any_step(make_tiny_prm, arithmetic_data, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    config = _quick_config(checkpoint_dir=str(blocker / "runs"))  # a folder under a file cannot exist
    model = make_tiny_prm()
    calls = _count_forwards(model, monkeypatch)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*runs.* cannot be written.*Nothing was trained"):
        train(model, arithmetic_data[0][:16], config=config)
    assert calls == []


def test_train_checkpoint_dir_is_created_before_the_first_step(make_tiny_prm, arithmetic_data, monkeypatch, tmp_path):
    folder = tmp_path / "runs" / "prm"
    model = make_tiny_prm()
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: seen.append(folder.is_dir()) or forward(*a, **k))
    result = train(model, arithmetic_data[0][:16], config=_quick_config(max_steps=1, checkpoint_dir=folder))
    assert seen and all(seen) and result.checkpoints == [str(folder / "step-1")]


def test_train_eval_every_without_eval_samples_warns_with_the_fix(make_tiny_prm, arithmetic_data):
    with pytest.warns(UserWarning, match=r"eval_every=2 but there is nothing to evaluate \(no eval_samples\)"):
        train(make_tiny_prm(), arithmetic_data[0][:16], config=_quick_config(max_steps=2, eval_every=2))


def test_train_next_token_loss_on_an_untied_backbone_raises_before_any_step(make_tiny_prm, arithmetic_data,
                                                                           monkeypatch):
    model = make_tiny_prm()
    monkeypatch.setattr(model.backbone.config, "tie_word_embeddings", False)
    calls = _count_forwards(model, monkeypatch)
    with pytest.raises(ValueError, match="does not tie it to its input embeddings"):
        train(model, arithmetic_data[0][:16], config=_quick_config(lm_loss_weight=0.5))
    assert calls == []


def test_train_config_of_another_type_raises(make_tiny_prm, arithmetic_data):
    with pytest.raises(ValueError, match="config has type dict; pass a TrainConfig"):
        train(make_tiny_prm(), arithmetic_data[0][:16], config={"max_steps": 2})


def test_train_checkpoint_path_that_is_a_file_raises_before_any_step(make_tiny_prm, arithmetic_data, monkeypatch,
                                                                     tmp_path):
    (tmp_path / "step-2").write_text("not a folder")  # where the last checkpoint of max_steps=2 goes
    model = make_tiny_prm()
    calls = _count_forwards(model, monkeypatch)
    with pytest.raises(ValueError, match=r"step-2 is a file where the checkpoint of step 2 goes"):
        train(model, arithmetic_data[0][:16], config=_quick_config(max_steps=2, checkpoint_dir=tmp_path))
    assert calls == []
