from dataclasses import replace

import pytest
import torch

from prm_core import backbones
from prm_core.backbones import MARKER, PROFILES, CourseTinyConfig, course_tiny_dir, load_backbone
from tests.test_files import edit_json


def test_course_tiny_is_a_qwen2_model_of_the_cpu_profile_size(course_backbone):
    model, tokenizer, _ = course_backbone
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size == PROFILES["cpu"].hidden_size
    assert model.config.num_hidden_layers == PROFILES["cpu"].num_layers
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_course_tiny_build_writes_safetensors_and_tokenizer(course_backbone):
    _, _, cache = course_backbone
    folder = course_tiny_dir(PROFILES["cpu"], cache)
    assert (folder / "model.safetensors").exists()
    assert (folder / "tokenizer.json").exists()
    assert not list(cache.glob(".building-*"))  # the temporary build folder was moved into place


def test_course_tokenizer_keeps_each_digit_a_single_token(course_backbone):
    tokenizer = course_backbone[1]
    tokens = tokenizer.tokenize("12 × 345 = 4140.")
    digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digits == list("123454140")


def test_course_tokenizer_merges_period_with_newline_like_qwen2(course_backbone):
    tokenizer = course_backbone[1]
    assert ".Ċ" in tokenizer.get_vocab()  # 'Ċ' is the byte-level symbol for '\n'
    assert tokenizer.tokenize("= 17.\nThen")[-2:] == [".Ċ", "Then"]


def test_load_backbone_second_call_reads_the_cache_without_building(course_backbone, monkeypatch):
    model, _, cache = course_backbone

    def fail(*args, **kwargs):
        raise AssertionError("the backbone was rebuilt instead of loaded from the cache")

    monkeypatch.setattr(backbones, "build_course_tiny", fail)
    again, _ = load_backbone("course-tiny", cache_dir=cache)
    for (name, p), (_, q) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def test_load_backbone_local_save_pretrained_folder_loads_by_path(course_backbone, tmp_path):
    model, tokenizer, _ = course_backbone
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_backbone(str(tmp_path))
    assert loaded_tok.tokenize("7 + 8 = 15.") == tokenizer.tokenize("7 + 8 = 15.")
    ids = torch.tensor([tokenizer("3 + 4 = 7.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)


def test_load_backbone_hub_name_offline_raises_oserror_naming_course_tiny():
    with pytest.raises(OSError, match="course-tiny"):
        load_backbone("prm-course-tests/no-such-model")


def test_load_backbone_unknown_profile_raises():
    with pytest.raises(ValueError, match="profile='tpu'"):
        load_backbone("course-tiny", profile="tpu")


def test_cache_key_differs_when_the_config_differs():
    assert CourseTinyConfig().cache_key() != CourseTinyConfig(hidden_size=32).cache_key()
    assert CourseTinyConfig().cache_key() == CourseTinyConfig().cache_key()


def test_cache_root_follows_prm_course_cache_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PRM_COURSE_CACHE", str(tmp_path))
    assert course_tiny_dir(PROFILES["cpu"]).parent == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"hidden_size": 0}, "hidden_size=0"), ({"hidden_size": 66, "num_heads": 4}, "divisible by num_heads"),
     ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads=3"), ({"vocab_size": 100}, "vocab_size=100")],
    ids=["zero-width", "heads-dont-divide", "kv-heads-dont-divide", "vocab-too-small"],
)
def test_course_tiny_config_bad_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CourseTinyConfig(**kwargs)


# ---------------------------------------------------------------- the course-tiny cache entry


@pytest.fixture
def tiny_cache(tiny_backbone, tmp_path):
    """(config, cache_dir, folder): a private copy of the session's tiny course backbone cache entry."""
    import shutil

    from tests.conftest import TINY_PROFILE_KWARGS

    config = CourseTinyConfig(**TINY_PROFILE_KWARGS)
    folder = course_tiny_dir(config, tmp_path)
    shutil.copytree(course_tiny_dir(config, tiny_backbone[2]), folder)
    return config, tmp_path, folder


@pytest.fixture
def count_builds(monkeypatch):
    """The list of folders ``build_course_tiny`` was called on from now on (it still builds)."""
    calls, real = [], backbones.build_course_tiny
    monkeypatch.setattr(backbones, "build_course_tiny", lambda config, out: (calls.append(out), real(config, out))[1])
    return calls


def test_load_backbone_cached_folder_without_marker_is_rebuilt_once_and_repaired(tiny_cache, count_builds, caplog):
    import logging

    config, cache, folder = tiny_cache
    (folder / MARKER).unlink()  # what an older, non-atomic build left when interrupted
    with caplog.at_level(logging.WARNING, logger="prm_core.files"):
        load_backbone("course-tiny", profile=config, cache_dir=cache)
    assert len(count_builds) == 1 and f"incomplete (no {MARKER})" in caplog.text
    assert (folder / MARKER).is_file()  # repaired, not dropped
    load_backbone("course-tiny", profile=config, cache_dir=cache)
    assert len(count_builds) == 1  # the second call loads without building
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary left


def test_ensure_course_tiny_cut_weights_are_rebuilt_once(tiny_cache, count_builds):
    config, cache, folder = tiny_cache
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    assert backbones.ensure_course_tiny(config, cache) == folder
    assert len(count_builds) == 1 and weights.read_bytes() == good  # the seeded build gives the same bytes
    backbones.ensure_course_tiny(config, cache)
    assert len(count_builds) == 1


def test_build_course_tiny_failure_part_way_keeps_the_old_folder(tiny_cache, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    from tests.test_files import leftovers, snapshot

    config, _, folder = tiny_cache
    before = snapshot(folder)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", fail)  # after the model is written
    with pytest.raises(OSError, match="No space"):
        backbones.build_course_tiny(replace(config, seed=1), folder)
    assert snapshot(folder) == before and leftovers(folder.parent) == []


def test_ensure_course_tiny_weights_header_claiming_i32_are_rebuilt_once(tiny_cache, count_builds):
    from tests.test_files import lie_about_dtype, rewrite_header

    config, cache, folder = tiny_cache
    rewrite_header(folder / "model.safetensors", lie_about_dtype("norm.weight"))
    backbones.ensure_course_tiny(config, cache)
    backbones.ensure_course_tiny(config, cache)
    assert len(count_builds) == 1


def _drop_weight(folder, name="norm.weight"):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    del tensors[name]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("damage", [
    _drop_weight,  # transformers would initialise norm.weight at random, with a log line only
    lambda folder: (folder / "config.json").unlink(),
    lambda folder: (folder / "tokenizer.json").write_text('{"version": '),
    lambda folder: (folder / "tokenizer.json").unlink(),  # tokenizer_config.json alone: a 3-token tokenizer
    lambda folder: edit_json(folder / "config.json", hidden_act="nope"),  # transformers: a raw KeyError
    lambda folder: edit_json(folder / "config.json", num_hidden_layers=2),  # huggingface_hub's validation error
    lambda folder: (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}'),
    lambda folder: edit_json(folder / "config.json", model_type="llama"),  # would load, dropping q/k/v biases
], ids=["missing-weight", "no-config", "cut-tokenizer", "no-tokenizer-vocabulary", "unknown-activation",
        "inconsistent-config", "tokenizer-without-sections", "another-architecture"])
def test_load_backbone_damaged_cache_entry_is_rebuilt_once_and_loads_whole(tiny_cache, count_builds, damage):
    config, cache, folder = tiny_cache
    damage(folder)
    model, tokenizer = load_backbone("course-tiny", profile=config, cache_dir=cache)
    assert len(count_builds) == 1 and len(tokenizer) > 256  # the whole BPE vocabulary, not a stub
    assert "norm.weight" in model.state_dict()
    load_backbone("course-tiny", profile=config, cache_dir=cache)
    assert len(count_builds) == 1  # repaired: the second call loads without building


@pytest.mark.parametrize("kwargs", [{"variant": "fp16"}, {"use_safetensors": False}], ids=["variant", "use_safetensors"])
def test_load_backbone_caller_choosing_absent_files_is_the_callers_error_and_keeps_the_entry(tiny_cache, count_builds,
                                                                                            kwargs):
    from prm_core.files import CorruptFileError

    config, cache, _ = tiny_cache
    with pytest.raises(OSError) as info:
        load_backbone("course-tiny", profile=config, cache_dir=cache, **kwargs)
    assert not isinstance(info.value, CorruptFileError) and count_builds == []  # the intact entry is not rebuilt


def test_load_backbone_local_folder_of_another_architecture_raises_naming_the_weights(tiny_backbone, tmp_path):
    from prm_core.files import CorruptFileError

    tiny_backbone[0].save_pretrained(tmp_path)
    tiny_backbone[1].save_pretrained(tmp_path)
    edit_json(tmp_path / "config.json", model_type="llama")  # Llama has no q/k/v biases: transformers drops them
    with pytest.raises(CorruptFileError, match=r"another architecture .*unexpected layers\.0\.self_attn\.[qkv]_proj\.bias"):
        load_backbone(str(tmp_path))


def test_load_backbone_local_folder_missing_a_weight_raises_naming_it(tiny_backbone, tmp_path):
    from prm_core.files import CorruptFileError

    tiny_backbone[0].save_pretrained(tmp_path)
    tiny_backbone[1].save_pretrained(tmp_path)
    _drop_weight(tmp_path)
    with pytest.raises(CorruptFileError, match=rf"backbone {tmp_path} lacks weights.*norm.weight"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("kwargs", [{"attn_implementation": "flash_attention_2"}, {"dtype": "float99"}],
                         ids=["missing-attention-backend", "unknown-dtype"])
def test_load_backbone_callers_bad_keyword_is_its_own_error_and_keeps_the_cache(tiny_cache, count_builds, kwargs):
    config, cache, folder = tiny_cache
    from prm_core.files import CorruptFileError

    with pytest.raises(Exception) as info:
        load_backbone("course-tiny", profile=config, cache_dir=cache, **kwargs)
    assert not isinstance(info.value, CorruptFileError)
    assert count_builds == []  # the good entry was not taken for a damaged one, nor rebuilt
