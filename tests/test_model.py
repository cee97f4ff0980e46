import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from prm_core.data import StepSample
from prm_core.files import CorruptFileError
from prm_core.model import BACKBONE_DIR, CONFIG_FILE, HEAD_FILE, HeadConfig, ProcessRewardModel
from tests.test_files import edit_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def _samples():
    """Three solutions of 1, 2 and 4 steps, so the batch pads steps and tokens."""
    return [
        StepSample("Mei has 12 coins. She finds 5 more.", ["12 + 5 = 17."], labels=[1.0]),
        StepSample("Omar has 9 shells.", ["9 × 2 = 18.", "Then 18 - 3 = 15."], labels=[1.0, 0.0]),
        StepSample("Yuki has 40 cards.", ["40 ÷ 4 = 10.", "Next, 10 + 7 = 17.", "Now 17 - 2 = 15.",
                                          "So 15 × 3 = 45."], labels=[1.0, 1.0, 1.0, 1.0]),
    ]


@torch.no_grad()
def _step_logits(model, samples):
    model.eval()
    return model(**model.encoder(samples)).logits


# ---------------------------------------------------------------- forward

def test_forward_batch_gives_one_logit_per_step_shape(make_tiny_prm):
    model = make_tiny_prm()
    out = model(**model.encoder(_samples()))
    assert out.logits.shape == (3, 4)  # B = 3 solutions, S = 4 steps in the longest
    assert out.mask.tolist() == [[True, False, False, False], [True, True, False, False], [True] * 4]


def test_forward_padded_steps_have_logit_exactly_zero(make_tiny_prm):
    model = make_tiny_prm()
    out = model(**model.encoder(_samples()))
    assert torch.equal(out.logits[~out.mask], torch.zeros(5))  # 3 + 2 + 0 padded steps
    assert (out.logits[out.mask] != 0).all()


@pytest.mark.parametrize("mlp_size", [0, 8], ids=["linear-head", "mlp-head"])
def test_forward_logit_at_tag_equals_head_on_backbone_hidden_state(make_tiny_prm, mlp_size):
    model = make_tiny_prm(head=HeadConfig(hidden_size=32, mlp_size=mlp_size)).eval()
    batch = model.encoder(_samples())
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    layers = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    for i, row in enumerate(batch["step_positions"].tolist()):
        for j, position in enumerate(p for p in row if p >= 0):
            h = hidden[i, position]  # (H,) the backbone's state at this step's tag
            if mlp_size:  # Linear -> GELU -> Linear, written out
                h = F.gelu(layers[0].weight @ h + layers[0].bias)
            expected = layers[-1].weight[0] @ h + layers[-1].bias[0]
            torch.testing.assert_close(logits[i, j], expected, rtol=1e-5, atol=1e-6)


def test_forward_reads_the_step_tag_positions(make_tiny_prm):
    model = make_tiny_prm()
    batch = model.encoder(_samples())
    ids = batch["input_ids"].gather(1, batch["step_positions"].clamp(min=0))
    assert (ids[batch["step_mask"]] == model.encoder.step_tag_id).all()


def test_forward_return_lm_logits_gives_vocab_logits_per_token(make_tiny_prm):
    model = make_tiny_prm()
    batch = model.encoder(_samples())
    out = model(**batch, return_lm_logits=True)
    assert out.lm_logits.shape == (*batch["input_ids"].shape, len(model.encoder.tokenizer))


def test_forward_without_lm_flag_returns_no_lm_logits(make_tiny_prm):
    model = make_tiny_prm()
    assert model(**model.encoder(_samples())).lm_logits is None


# ---------------------------------------------------------------- construction

@pytest.mark.parametrize("kind", ["prm", "orm"])
def test_model_kind_is_stored(make_tiny_prm, kind):
    assert make_tiny_prm(kind=kind).kind == kind


def test_model_orm_and_prm_share_architecture_and_same_seed_logits(make_tiny_prm):
    prm, orm = make_tiny_prm(kind="prm", seed=3), make_tiny_prm(kind="orm", seed=3)
    shapes = {name: p.shape for name, p in prm.named_parameters()}
    assert shapes == {name: p.shape for name, p in orm.named_parameters()}
    torch.testing.assert_close(_step_logits(prm, _samples()), _step_logits(orm, _samples()), rtol=0, atol=0)


def test_model_unknown_kind_raises(make_tiny_prm):
    with pytest.raises(ValueError, match=r"kind='rm' must be one of \('prm', 'orm'\)"):
        make_tiny_prm(kind="rm")


def test_model_head_hidden_size_mismatch_raises(make_tiny_prm):
    with pytest.raises(ValueError, match=r"head.hidden_size=16 does not match the backbone's hidden_size=32"):
        make_tiny_prm(head=HeadConfig(hidden_size=16))


def test_model_encoder_of_wrong_type_raises(tiny_backbone):
    with pytest.raises(TypeError, match="encoder has type dict"):
        ProcessRewardModel(tiny_backbone[0], {"step_tag": "<|step|>"})


HEAD_CONFIG_ERRORS = {
    "zero-hidden": (dict(hidden_size=0), r"hidden_size=0 must be an int in \[1, inf\)"),
    "negative-mlp": (dict(hidden_size=8, mlp_size=-1), r"mlp_size=-1 must be an int in \[0, inf\)"),
    "dropout-one": (dict(hidden_size=8, dropout=1.0), r"dropout=1.0 must be a finite number in \[0, 1\)"),
    "dropout-negative": (dict(hidden_size=8, dropout=-0.1), r"dropout=-0.1 must be a finite number in \[0, 1\)"),
}


@pytest.mark.parametrize(("kwargs", "message"), HEAD_CONFIG_ERRORS.values(), ids=HEAD_CONFIG_ERRORS.keys())
def test_head_config_bad_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeadConfig(**kwargs)


# ---------------------------------------------------------------- save_pretrained / from_pretrained

@pytest.fixture
def saved(make_tiny_prm, tmp_path):
    """(model, folder) of an ORM with an MLP head saved with save_pretrained."""
    model = make_tiny_prm(kind="orm", seed=1, head=HeadConfig(hidden_size=32, mlp_size=8))
    return model, model.save_pretrained(tmp_path / "ckpt")


def test_save_then_load_gives_identical_step_logits(saved):
    model, folder = saved
    loaded = ProcessRewardModel.from_pretrained(folder)
    torch.testing.assert_close(_step_logits(loaded, _samples()), _step_logits(model, _samples()), rtol=0, atol=0)


def test_save_then_load_keeps_kind_head_and_encoder_settings(saved):
    model, folder = saved
    loaded = ProcessRewardModel.from_pretrained(folder)
    assert (loaded.kind, loaded.head_config, loaded.encoder.config()) == ("orm", model.head_config,
                                                                          model.encoder.config())


def test_save_pretrained_writes_safetensors_and_json_only(saved):
    _, folder = saved
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {HEAD_FILE, CONFIG_FILE, f"{BACKBONE_DIR}/model.safetensors", f"{BACKBONE_DIR}/config.json",
            f"{BACKBONE_DIR}/tokenizer.json"} <= files
    assert not [f for f in files if any(f.endswith(suffix) for suffix in PICKLE_SUFFIXES)]
    assert json.loads((folder / CONFIG_FILE).read_text())["kind"] == "orm"


def test_from_pretrained_tokenizer_without_step_tag_raises(make_tiny_prm, tiny_backbone, tmp_path):
    # Train-time encoder uses its own tag, added to the tokenizer; then the saved tokenizer is swapped
    # for the plain course tokenizer, which has never heard of that tag.
    model = make_tiny_prm(step_tag="<|verify|>")
    folder = model.save_pretrained(tmp_path / "ckpt")
    for path in (folder / BACKBONE_DIR).iterdir():
        if "token" in path.name:
            path.unlink()
    tiny_backbone[1].save_pretrained(folder / BACKBONE_DIR)
    with pytest.raises(ValueError, match=r"tokenizer lacks its step tag '<\|verify\|>'"):
        ProcessRewardModel.from_pretrained(folder)


def test_from_pretrained_backbone_of_another_size_raises(saved, tiny_backbone):
    from transformers import Qwen2Config, Qwen2Model

    _, folder = saved
    tiny = tiny_backbone[0].config
    config = Qwen2Config(vocab_size=tiny.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tiny.pad_token_id)
    shutil.rmtree(folder / BACKBONE_DIR)
    torch.manual_seed(0)
    Qwen2Model(config).save_pretrained(folder / BACKBONE_DIR)
    tiny_backbone[1].save_pretrained(folder / BACKBONE_DIR)
    with pytest.raises(ValueError, match=r"is not the one this head was trained on.*'hidden_size': 32"):
        ProcessRewardModel.from_pretrained(folder)


def test_from_pretrained_folder_without_config_raises(saved):
    _, folder = saved
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(ValueError, match=rf"has no {CONFIG_FILE}"):
        ProcessRewardModel.from_pretrained(folder)


def test_step_surprise_matches_a_per_step_loop():
    from prm_core.model import step_surprise

    torch.manual_seed(0)
    lm_logits = torch.randn(2, 9, 7)
    input_ids = torch.randint(0, 7, (2, 9))
    step_positions = torch.tensor([[3, 6, 8], [4, 7, -1]])  # tags; row 1 has two steps
    steps_start = torch.tensor([1, 2])
    out = step_surprise(lm_logits, input_ids, step_positions, steps_start)
    log_probs = torch.log_softmax(lm_logits, dim=-1)
    for b in range(2):
        start = int(steps_start[b])
        for s, tag in enumerate(step_positions[b].tolist()):
            if tag < 0:
                assert out[b, s].tolist() == [0.0, 0.0]
                continue
            # token t is predicted by position t - 1; the step's tokens run from start to tag - 1
            lps = torch.stack([log_probs[b, t - 1, input_ids[b, t]] for t in range(start, tag)])
            torch.testing.assert_close(out[b, s], torch.stack([lps.min(), lps.mean()]))
            start = tag + 1


def test_lm_features_head_reads_two_more_inputs_and_needs_steps_start(make_tiny_prm):
    from prm_core.data import StepSample
    from prm_core.model import HeadConfig

    plain = make_tiny_prm()
    hidden = plain.head_config.hidden_size
    model = make_tiny_prm(head=HeadConfig(hidden_size=hidden, use_lm_features=True))
    assert model.head[-1].in_features == hidden + 2
    batch = model.encoder([StepSample("2 + 3?", ["2 + 3 = 5.", "5 × 2 = 10."])])
    assert model(**batch).logits.shape == (1, 2)
    batch.pop("steps_start")
    with pytest.raises(ValueError, match="steps_start"):
        model(**batch)


def test_lm_surprise_is_step_surprise_of_the_tied_lm_logits_and_zero_at_padding(make_tiny_prm):
    from prm_core.model import step_surprise

    model = make_tiny_prm().eval()
    batch = model.encoder(_samples())
    surprise = model.lm_surprise(**batch)  # extra batch keys (labels, masks) are ignored
    with torch.no_grad():
        lm_logits = model(**batch, return_lm_logits=True).lm_logits
    expected = step_surprise(lm_logits, batch["input_ids"], batch["step_positions"], batch["steps_start"])
    torch.testing.assert_close(surprise, expected)
    padded = batch["step_positions"] < 0
    assert surprise.shape == (3, 4, 2) and (surprise[padded] == 0).all() and (surprise[~padded] <= 0).all()


def test_lm_features_on_an_untied_backbone_raise_naming_the_fix(tiny_backbone):
    import copy

    from prm_core.encoding import StepEncoder

    backbone, tokenizer = copy.deepcopy(tiny_backbone[0]), copy.deepcopy(tiny_backbone[1])
    backbone.config.tie_word_embeddings = False  # as a hub model with its own lm_head, which AutoModel drops
    encoder = StepEncoder(tokenizer, model=backbone)
    with pytest.raises(ValueError, match="use_lm_features=False and lm_loss_weight=0"):
        ProcessRewardModel(backbone, encoder, head=HeadConfig(hidden_size=backbone.config.hidden_size,
                                                               use_lm_features=True))
    plain = ProcessRewardModel(backbone, encoder)  # without the features the head needs no LM
    batch = encoder(_samples())
    assert plain(**batch).logits.shape[0] == 3
    with pytest.raises(ValueError, match="does not tie"):
        plain(**batch, return_lm_logits=True)


# ---------------------------------------------------------------- checkpoints written whole, verified on load


def _logits_of(folder):
    return _step_logits(ProcessRewardModel.from_pretrained(folder), _samples())


def test_save_pretrained_failure_part_way_keeps_the_old_checkpoint(saved, make_tiny_prm, monkeypatch):
    from tests.test_files import fail_safetensors_save, leftovers, snapshot

    model, folder = saved
    before = snapshot(folder)
    fail_safetensors_save(monkeypatch)  # the head write fails after the backbone was written
    with pytest.raises(OSError, match="No space"):
        make_tiny_prm(kind="prm", seed=7, head=HeadConfig(hidden_size=32, mlp_size=8)).save_pretrained(folder)
    monkeypatch.undo()
    assert snapshot(folder) == before and leftovers(folder.parent) == []
    torch.testing.assert_close(_logits_of(folder), _step_logits(model, _samples()), rtol=0, atol=0)


def test_save_pretrained_over_an_old_checkpoint_replaces_it(saved, make_tiny_prm):
    _, folder = saved
    newer = make_tiny_prm(kind="prm", seed=7)
    newer.save_pretrained(folder)
    assert ProcessRewardModel.from_pretrained(folder).kind == "prm"
    torch.testing.assert_close(_logits_of(folder), _step_logits(newer, _samples()), rtol=0, atol=0)


def test_from_pretrained_head_header_claiming_i32_raises_naming_the_folder_and_tensor(saved):
    from tests.test_files import lie_about_dtype, rewrite_header

    _, folder = saved
    rewrite_header(folder / HEAD_FILE, lie_about_dtype("1.weight"))  # same bytes, read as ints: every score 0.0
    with pytest.raises(CorruptFileError, match=rf"{folder}.*tensor '1.weight' is stored as I32"):
        ProcessRewardModel.from_pretrained(folder)


def test_from_pretrained_bf16_head_relabelled_as_f16_raises_against_the_recorded_dtype(make_tiny_prm, tmp_path):
    from tests.test_files import rewrite_header

    folder = make_tiny_prm().to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert json.loads((folder / CONFIG_FILE).read_text())["head_dtype"] == "BF16"
    ProcessRewardModel.from_pretrained(folder, dtype=torch.bfloat16)  # as saved: fine
    rewrite_header(folder / HEAD_FILE, lambda h: [e.update(dtype="F16") for k, e in h.items() if k != "__metadata__"])
    with pytest.raises(CorruptFileError, match=r"is stored as F16 but was saved as BF16"):
        ProcessRewardModel.from_pretrained(folder, dtype=torch.bfloat16)


def test_from_pretrained_missing_head_raises_corrupt_file_error_naming_the_folder_and_fix(saved):
    _, folder = saved
    (folder / HEAD_FILE).unlink()
    with pytest.raises(CorruptFileError, match=rf"{folder}/{HEAD_FILE} is missing; save it again"):
        ProcessRewardModel.from_pretrained(folder)


def test_from_pretrained_invalid_config_raises_corrupt_file_error_naming_the_folder_and_fix(saved):
    _, folder = saved
    (folder / CONFIG_FILE).write_text('{"kind": "orm", "head": {')
    with pytest.raises(CorruptFileError, match=rf"{folder}/{CONFIG_FILE} is not valid UTF-8 JSON.*write it again"):
        ProcessRewardModel.from_pretrained(folder)


def _edit_config(folder, edit):
    config = json.loads((folder / CONFIG_FILE).read_text())
    edit(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def _resave_head(folder, edit):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / HEAD_FILE))
    edit(tensors)
    save_file(tensors, str(folder / HEAD_FILE))


def _drop_backbone_weight(folder):
    from safetensors.torch import load_file, save_file

    path = folder / BACKBONE_DIR / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["layers.0.mlp.up_proj.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-9])


def _lie(path, name):
    from tests.test_files import lie_about_dtype, rewrite_header

    rewrite_header(path, lie_about_dtype(name))


CHECKPOINT_FAULTS = {
    "truncated-head": (lambda f: _truncate(f / HEAD_FILE), "cut short"),
    "lying-head-dtype": (lambda f: _lie(f / HEAD_FILE, "3.bias"), "'3.bias' is stored as I32"),
    "wrong-head-shape": (lambda f: _resave_head(f, lambda t: t.update({"1.weight": torch.zeros(8, 31)})),
                         r"'1.weight' has shape \(8, 31\)"),
    "missing-head-tensor": (lambda f: _resave_head(f, lambda t: t.pop("3.bias")), r"missing \['3.bias'\]"),
    "extra-head-tensor": (lambda f: _resave_head(f, lambda t: t.update(extra=torch.zeros(1))), r"unexpected \['extra'\]"),
    "invalid-config-json": (lambda f: (f / CONFIG_FILE).write_bytes(b"\xff{"), "not valid UTF-8 JSON"),
    "missing-config-key": (lambda f: _edit_config(f, lambda c: c.pop("head")), r"lacks the keys \['head'\]"),
    "bad-head-setting": (lambda f: _edit_config(f, lambda c: c["head"].update(mlp_size=-1)), "cannot build"),
    "missing-backbone-weight": (_drop_backbone_weight, r"missing keys \['layers.0.mlp.up_proj.weight'\]"),
    "truncated-backbone": (lambda f: _truncate(f / BACKBONE_DIR / "model.safetensors"), "cut short"),
    "lying-backbone-dtype": (lambda f: _lie(f / BACKBONE_DIR / "model.safetensors", "norm.weight"),
                             "'norm.weight' is stored as I32"),
    "missing-tokenizer": (lambda f: [p.unlink() for p in (f / BACKBONE_DIR).glob("tokenizer*")], "holds no tokenizer"),
    "missing-backbone": (lambda f: shutil.rmtree(f / BACKBONE_DIR), f"has no {BACKBONE_DIR}/ folder"),
    "unknown-activation": (lambda f: edit_json(f / BACKBONE_DIR / "config.json", hidden_act="nope"),
                           "cannot be loaded"),
    "config-value-of-the-wrong-type": (lambda f: edit_json(f / BACKBONE_DIR / "config.json", hidden_size="32"),
                                       "expected int, got str"),
    "tokenizer-without-sections": (lambda f: (f / BACKBONE_DIR / "tokenizer.json").write_text(
        '{"version": "1.0", "model": {"type": "BPE"}}'), "tokenizer .* cannot be read"),
}


@pytest.mark.parametrize(("damage", "match"), CHECKPOINT_FAULTS.values(), ids=CHECKPOINT_FAULTS.keys())
def test_from_pretrained_damaged_checkpoint_raises_corrupt_file_error_naming_the_folder(saved, damage, match):
    _, folder = saved
    damage(folder)
    with pytest.raises(CorruptFileError, match=match) as info:
        ProcessRewardModel.from_pretrained(folder)
    assert str(folder) in str(info.value)


def test_training_checkpoint_failure_part_way_keeps_the_previous_checkpoint(make_tiny_prm, tmp_path, monkeypatch):
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy
    from prm_core.training import TrainConfig, train
    from tests.test_files import fail_safetensors_save, leftovers, snapshot

    samples = NoisyPolicy().sample_many(make_problems(4, seed=0), 2, seed=0)
    config = TrainConfig(max_steps=1, batch_size=4, warmup_steps=0, show_progress=False, checkpoint_dir=str(tmp_path))
    train(make_tiny_prm(), samples, config=config)
    before = snapshot(tmp_path / "step-1")
    fail_safetensors_save(monkeypatch)  # the rerun's checkpoint fails while its head is written
    with pytest.raises(OSError, match="No space"):
        train(make_tiny_prm(seed=3), samples, config=config)
    monkeypatch.undo()
    assert snapshot(tmp_path / "step-1") == before and leftovers(tmp_path) == []
    ProcessRewardModel.from_pretrained(tmp_path / "step-1")


def test_save_pretrained_sharded_over_a_single_file_removes_the_old_weights(make_tiny_prm, tmp_path):
    folder = make_tiny_prm(seed=0).save_pretrained(tmp_path / "ck")
    newer = make_tiny_prm(seed=1)
    with torch.no_grad():
        for p in newer.backbone.parameters():
            p.add_(1.0)
    real = newer.backbone.save_pretrained
    newer.backbone.save_pretrained = lambda out, **kw: real(out, max_shard_size="40KB", **kw)  # shards this time
    newer.save_pretrained(folder)
    assert not (folder / BACKBONE_DIR / "model.safetensors").exists()  # would load in place of the shards
    loaded = ProcessRewardModel.from_pretrained(folder)
    for a, b in zip(loaded.backbone.state_dict().values(), newer.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_from_pretrained_head_dtype_that_is_no_dtype_raises_naming_it(saved):
    _, folder = saved
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "head_dtype": 5}))
    with pytest.raises(CorruptFileError, match=r"head_dtype=5 must be one of \['F32'"):
        ProcessRewardModel.from_pretrained(folder)


def test_from_pretrained_caller_choosing_absent_files_is_the_callers_error(saved):
    _, folder = saved
    with pytest.raises(OSError, match="fp16") as info:
        ProcessRewardModel.from_pretrained(folder, variant="fp16")
    assert not isinstance(info.value, CorruptFileError)


def test_from_pretrained_checkpoint_from_before_head_dtype_was_recorded_loads_the_same_scores(saved):
    model, folder = saved  # cache entries written by earlier versions have no head_dtype: they must load, not rebuild
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["head_dtype"]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    loaded = ProcessRewardModel.from_pretrained(folder)
    torch.testing.assert_close(_step_logits(loaded, _samples()), _step_logits(model, _samples()), rtol=0, atol=0)
