"""prm_core.files: whole-or-nothing writes, cache entries rebuilt once, checked reads; plus the writers
and loaders whose own test modules are owned elsewhere (LMPolicy checkpoints, scripts/run_notebooks.py).

The helpers at the top (``snapshot``, ``leftovers``, ``fill_disk_half_way``, ``rewrite_header``) are
shared by the writer and loader tests of the other modules."""

import errno
import importlib.util
import json
import logging
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prm_core import files
from prm_core.checkpoints import load_pretrained, load_tensors, safetensors_header
from prm_core.files import (
    CorruptFileError,
    atomic_file,
    atomic_folder,
    cached,
    cached_file,
    is_complete,
    read_json,
    write_json,
    write_text,
)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- shared helpers


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself, under the key "") -> its bytes."""
    path = Path(path)
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of prm_core.files left in ``folder`` (there should be none)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith((".writing-", ".building-", ".stale-")))


def fill_disk_half_way(monkeypatch) -> None:
    """From now on every ``Path.write_text``/``write_bytes`` writes half its data, then fails as a full disk does."""
    real_text, real_bytes = Path.write_text, Path.write_bytes

    def text(self, data, *args, **kwargs):
        real_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(self))

    def raw(self, data):
        real_bytes(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(self))

    monkeypatch.setattr(Path, "write_text", text)
    monkeypatch.setattr(Path, "write_bytes", raw)


def fail_safetensors_save(monkeypatch) -> None:
    """From now on ``safetensors.torch.save_file`` writes half a file, then fails."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def half(tensors, filename, metadata=None):
        real(tensors, filename, metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:20])
        raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(filename))

    monkeypatch.setattr(safetensors.torch, "save_file", half)


def edit_json(path: Path, **values) -> None:
    """Overwrite some top-level values of a JSON file (a config.json), keeping the rest."""
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


def rewrite_header(path: Path, edit) -> None:
    """Rewrite a safetensors file's JSON header in place (``edit(header)``), keeping its length and data."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    path.write_bytes(data[:8] + text.ljust(n, b" ") + data[8 + n :])


def lie_about_dtype(name: str, dtype: str = "I32"):
    """A header edit: tensor ``name`` claims ``dtype`` (same byte length as F32 for I32)."""
    return lambda header: header[name].update(dtype=dtype)


# ---------------------------------------------------------------- atomic_file, write_text, write_json, read_json


def test_atomic_file_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "sub" / "hits.npz"
    with atomic_file(final) as tmp:
        np.savez(tmp, x=np.arange(3))  # numpy keeps a path that already ends in .npz
        assert not final.exists()
    assert np.load(final)["x"].tolist() == [0, 1, 2]
    broken = tmp_path / "sub" / "broken.npz"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_file(broken) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not broken.exists()
    assert sorted(p.name for p in final.parent.iterdir()) == ["hits.npz"]  # no temporary left behind


def test_atomic_file_failure_part_way_keeps_the_old_file_byte_identical(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"old": 1}')
    with pytest.raises(OSError, match="No space"), atomic_file(path) as tmp:
        tmp.write_text('{"new": ')
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == '{"old": 1}' and leftovers(tmp_path) == []


def test_atomic_file_keeps_the_old_files_permissions_and_gives_a_new_one_the_usual_ones(tmp_path):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("x")
    os.chmod(old, 0o640)
    write_text(old, "y")
    write_text(new, "z")
    umask = os.umask(0)
    os.umask(umask)
    assert (old.stat().st_mode & 0o777, new.stat().st_mode & 0o777) == (0o640, 0o666 & ~umask)  # not mkstemp's 0600


def test_write_text_unencodable_text_raises_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("old tables\n")
    with pytest.raises(UnicodeEncodeError):
        write_text(path, "new tables \ud800\n")  # a lone surrogate cannot be UTF-8
    assert path.read_text() == "old tables\n" and leftovers(tmp_path) == []


def test_write_text_full_disk_half_way_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "notes.txt"
    path.write_text("the old notes")
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        write_text(path, "the new notes, longer than the old")
    monkeypatch.undo()
    assert path.read_text() == "the old notes" and leftovers(tmp_path) == []


def test_write_json_unserialisable_value_raises_before_touching_the_file(tmp_path):
    path = tmp_path / "info.json"
    write_json(path, {"n": 1})
    with pytest.raises(TypeError, match="int64"):
        write_json(path, {"n": 2, "m": np.int64(3)})
    assert read_json(path) == {"n": 1} and leftovers(tmp_path) == []


def _write_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


READ_JSON_FAULTS = {
    "missing": (lambda p: p, {}, "is missing"),
    "cut-short": (lambda p: _write_raw(p, b'{"kind": "prm", "he'), {}, "not valid UTF-8 JSON"),
    "latin-1": (lambda p: _write_raw(p, b'{"name": "caf\xe9"}'), {}, "not valid UTF-8 JSON"),
    "missing-key": (lambda p: _write_raw(p, b'{"kind": "prm"}'), {"required": ("kind", "head")}, r"lacks the keys \['head'\]"),
    "not-an-object": (lambda p: _write_raw(p, b"[1, 2]"), {"required": ("kind",)}, "a JSON list"),
}


@pytest.mark.parametrize(("damage", "kwargs", "match"), READ_JSON_FAULTS.values(), ids=READ_JSON_FAULTS.keys())
def test_read_json_damaged_file_raises_corrupt_file_error_naming_it(tmp_path, damage, kwargs, match):
    path = damage(tmp_path / "train_result.json")
    with pytest.raises(CorruptFileError, match=match) as info:
        read_json(path, "train info", **kwargs)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


# ---------------------------------------------------------------- atomic_folder


def _build(tmp: Path, tag: str = "new", marker: str = "done.json") -> None:
    (tmp / "data.txt").write_text(tag)
    (tmp / marker).write_text("{}")


def test_atomic_folder_failure_in_the_block_installs_nothing_and_leaves_no_temporary(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_folder(final, "done.json") as tmp:
        (tmp / "data.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert not final.exists() and leftovers(tmp_path) == []


def test_atomic_folder_block_without_its_marker_raises_and_installs_nothing(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError, match="wrote no done.json"), atomic_folder(final, "done.json") as tmp:
        (tmp / "data.txt").write_text("no marker")
    assert not final.exists() and leftovers(tmp_path) == []


def test_atomic_folder_over_an_incomplete_folder_swaps_it_out(tmp_path):
    final = tmp_path / "entry"
    final.mkdir()
    (final / "half.bin").write_bytes(b"cut")
    with atomic_folder(final, "done.json") as tmp:
        _build(tmp)
    assert sorted(p.name for p in final.iterdir()) == ["data.txt", "done.json"] and leftovers(tmp_path) == []


def test_atomic_folder_installed_folder_has_the_usual_permissions(tmp_path):
    with atomic_folder(tmp_path / "entry", "done.json") as tmp:
        _build(tmp)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "entry").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


@pytest.mark.parametrize("before", ["absent", "incomplete"])
def test_atomic_folder_concurrent_installs_leave_one_complete_copy(tmp_path, before):
    for round_ in range(10):  # races differ from round to round
        final = tmp_path / f"entry-{round_}"
        if before == "incomplete":
            final.mkdir()
            (final / "half.bin").write_bytes(b"cut")
        barrier, errors = threading.Barrier(3), []

        def install(tag: str, final=final, barrier=barrier, errors=errors) -> None:
            try:
                with atomic_folder(final, "done.json") as tmp:
                    _build(tmp, tag)
                    barrier.wait(timeout=30)  # every copy is whole before any is installed
            except Exception as err:  # noqa: BLE001 - reported by the assert below
                errors.append(err)

        threads = [threading.Thread(target=install, args=(tag,)) for tag in "abc"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert is_complete(final, "done.json") and (final / "data.txt").read_text() in {"a", "b", "c"}
        assert sorted(p.name for p in final.iterdir()) == ["data.txt", "done.json"]
    assert leftovers(tmp_path) == []  # no temporary or stale folder left


def test_atomic_folder_merge_keeps_other_files_and_renames_the_marker_last(tmp_path, monkeypatch):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "notes.txt").write_text("kept")
    (final / "config.json").write_text("old")
    moved, real_replace = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b)))
    with atomic_folder(final, "config.json", merge=True) as tmp:
        (tmp / "config.json").write_text("new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(b"w")
    assert moved[-1] == "config.json" and set(moved) == {"config.json", "weights.bin"}
    assert snapshot(final) == {"config.json": b"new", "notes.txt": b"kept", "sub/weights.bin": b"w"}
    assert leftovers(tmp_path) == []


def test_atomic_folder_merge_crash_between_renames_leaves_a_folder_without_its_marker(tmp_path, monkeypatch):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "config.json").write_text("old")
    (final / "weights.bin").write_text("old")

    def crash(a, b):
        raise OSError(errno.EIO, "I/O error (simulated)")

    with pytest.raises(OSError, match="I/O error"), atomic_folder(final, "config.json", merge=True) as tmp:
        (tmp / "weights.bin").write_text("new")
        (tmp / "config.json").write_text("new")
        monkeypatch.setattr(files.os, "replace", crash)
    monkeypatch.undo()
    assert not is_complete(final, "config.json")  # never an old config over new weights
    assert leftovers(tmp_path) == []


def test_atomic_folder_onto_a_file_raises_before_the_block_runs(tmp_path):
    final = tmp_path / "ckpt"
    final.write_text("a file")
    ran = []
    with pytest.raises(NotADirectoryError, match="is a file"), atomic_folder(final, merge=True):
        ran.append(True)
    assert ran == [] and final.read_text() == "a file"


# ---------------------------------------------------------------- cached, cached_file


def _read_data(folder: Path) -> str:
    text = (folder / "data.txt").read_text()
    if text == "bad":
        raise CorruptFileError(f"{folder}/data.txt is bad")
    return text


def test_cached_missing_entry_is_built_once_then_loaded(tmp_path):
    builds = []
    build = lambda tmp: (builds.append(tmp), _build(tmp))  # noqa: E731
    assert cached(tmp_path / "entry", "done.json", build, _read_data) == "new"
    assert cached(tmp_path / "entry", "done.json", build, _read_data) == "new"
    assert len(builds) == 1 and leftovers(tmp_path) == []


def test_cached_incomplete_entry_is_rebuilt_exactly_once_and_the_folder_repaired(tmp_path, caplog):
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "data.txt").write_text("half")  # an interrupted build: no marker
    builds = []
    build = lambda tmp: (builds.append(tmp), _build(tmp))  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="prm_core.files"):
        assert cached(folder, "done.json", build, _read_data) == "new"
    assert len(builds) == 1 and "incomplete (no done.json); rebuilding it once" in caplog.text
    assert snapshot(folder) == {"data.txt": b"new", "done.json": b"{}"}  # repaired in place
    assert cached(folder, "done.json", build, _read_data) == "new" and len(builds) == 1
    assert leftovers(tmp_path) == []


def test_cached_complete_but_unreadable_entry_is_rebuilt_exactly_once(tmp_path, caplog):
    folder = tmp_path / "entry"
    folder.mkdir()
    _build(folder, "bad")
    builds = []
    build = lambda tmp: (builds.append(tmp), _build(tmp))  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="prm_core.files"):
        assert cached(folder, "done.json", build, _read_data) == "new"
    assert len(builds) == 1 and "is unreadable" in caplog.text
    assert cached(folder, "done.json", build, _read_data) == "new" and len(builds) == 1


def test_cached_entry_still_unreadable_after_one_rebuild_raises(tmp_path):
    builds = []
    build = lambda tmp: (builds.append(tmp), _build(tmp, "bad"))  # noqa: E731
    with pytest.raises(CorruptFileError, match="is bad"):
        cached(tmp_path / "entry", "done.json", build, _read_data)
    assert len(builds) == 1


def test_cached_build_failure_leaves_the_incomplete_entry_and_no_temporary(tmp_path):
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "data.txt").write_text("half")

    def build(tmp):
        (tmp / "data.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached(folder, "done.json", build, _read_data)
    assert snapshot(folder) == {"data.txt": b"half"} and leftovers(tmp_path) == []


def test_cached_file_damaged_file_is_rebuilt_exactly_once(tmp_path, caplog):
    path = tmp_path / "eval-1a2b.json"
    path.write_text('{"accuracy": 0.')  # cut short
    builds = []
    build = lambda tmp: (builds.append(tmp), write_json(tmp, {"accuracy": 0.5}))  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="prm_core.files"):
        assert cached_file(path, build, read_json) == {"accuracy": 0.5}
    assert cached_file(path, build, read_json) == {"accuracy": 0.5}
    assert len(builds) == 1 and "is unreadable" in caplog.text and leftovers(tmp_path) == []


# ---------------------------------------------------------------- safetensors_header, load_tensors


@pytest.fixture
def tensor_file(tmp_path):
    path = tmp_path / "ckpt" / "head.safetensors"
    path.parent.mkdir()
    save_file({"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}, str(path))
    return path


EXPECTED = {"w": torch.zeros(2, 3), "b": torch.zeros(3)}


def _resave(path: Path, tensors: dict) -> None:
    save_file(tensors, str(path))


TENSOR_FAULTS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-5]), "cut short"),
    "not-safetensors": (lambda p: p.write_bytes(b"PK\x03\x04 a zip, not a checkpoint"), "not a valid safetensors"),
    "header-longer-than-file": (lambda p: p.write_bytes(struct.pack("<Q", 10**6) + b"{}"), "claims 1000000 bytes"),
    "lying-dtype": (lambda p: rewrite_header(p, lie_about_dtype("w")), "'w' is stored as I32"),
    "wrong-shape": (lambda p: _resave(p, {"w": torch.zeros(3, 2), "b": torch.ones(3)}), r"'w' has shape \(3, 2\)"),
    "missing-tensor": (lambda p: _resave(p, {"w": torch.zeros(2, 3)}), r"missing \['b'\]"),
    "extra-tensor": (lambda p: _resave(p, {**EXPECTED, "x": torch.zeros(1)}), r"unexpected \['x'\]"),
    "missing-file": (lambda p: p.unlink(), "is missing"),
}


@pytest.mark.parametrize(("damage", "match"), TENSOR_FAULTS.values(), ids=TENSOR_FAULTS.keys())
def test_load_tensors_damaged_file_raises_corrupt_file_error_naming_it(tensor_file, damage, match):
    damage(tensor_file)
    with pytest.raises(CorruptFileError, match=match) as info:
        load_tensors(tensor_file, EXPECTED, "PRM checkpoint head")
    assert str(tensor_file.parent) in str(info.value)


def test_load_tensors_valid_file_gives_its_values(tensor_file):
    tensors = load_tensors(tensor_file, EXPECTED)
    assert tensors["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and tensors["b"].tolist() == [1.0, 1.0, 1.0]


def test_safetensors_header_reads_dtypes_and_shapes_without_the_data(tensor_file):
    assert safetensors_header(tensor_file) == {"w": ("F32", (2, 3)), "b": ("F32", (3,))}


# ---------------------------------------------------------------- load_pretrained (a transformers folder)


@pytest.fixture
def hf_folder(tiny_backbone, tmp_path):
    folder = tmp_path / "backbone"
    tiny_backbone[0].save_pretrained(folder)
    return folder


def _drop_last_weight(folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["norm.weight"]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _add_weight(folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    save_file({**tensors, "extra.weight": torch.zeros(2)}, str(folder / "model.safetensors"), metadata={"format": "pt"})


PRETRAINED_FAULTS = {
    "missing-weight": (_drop_last_weight, r"missing keys \['norm.weight'\]"),
    "unexpected-weight": (_add_weight, r"unexpected keys \['extra.weight'\]"),
    "lying-dtype": (lambda f: rewrite_header(f / "model.safetensors", lie_about_dtype("norm.weight")),
                    "'norm.weight' is stored as I32"),
    "truncated": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-7]),
                  "cut short"),
    "no-weights": (lambda f: (f / "model.safetensors").unlink(), r"holds no \*.safetensors weights"),
    # offsets that overlap: safetensors itself raises its own SafetensorError (an Exception, not a ValueError)
    "overlapping-offsets": (lambda f: rewrite_header(f / "model.safetensors", _overlap_first_two), "overlap or leave a gap"),
}


def _overlap_first_two(header: dict) -> None:
    first, second = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])[:2]
    header[second]["data_offsets"] = list(header[first]["data_offsets"])
    header[second]["shape"], header[second]["dtype"] = header[first]["shape"], header[first]["dtype"]


@pytest.mark.parametrize(("damage", "match"), PRETRAINED_FAULTS.values(), ids=PRETRAINED_FAULTS.keys())
def test_load_pretrained_damaged_folder_raises_corrupt_file_error_naming_it(hf_folder, damage, match):
    from transformers import AutoModel

    damage(hf_folder)
    with pytest.raises(CorruptFileError, match=match) as info:
        load_pretrained(AutoModel, hf_folder, "backbone")
    assert str(hf_folder) in str(info.value)


def test_load_pretrained_uniform_dtype_refuses_bf16_bytes_relabelled_as_f16(tmp_path, tiny_backbone):
    import copy

    from transformers import AutoModel

    folder = tmp_path / "bf16"
    copy.deepcopy(tiny_backbone[0]).to(torch.bfloat16).save_pretrained(folder)
    load_pretrained(AutoModel, folder, "backbone", uniform_dtype=True)  # as saved: fine
    rewrite_header(folder / "model.safetensors",
                   lambda header: [entry.update(dtype="F16") for k, entry in header.items() if k != "__metadata__"])
    load_pretrained(AutoModel, folder, "backbone")  # float for float, the same width: only the record tells
    with pytest.raises(CorruptFileError, match=r"config.json records dtype bfloat16 \(BF16\) but the weights' header "
                                               r"says .*'F16'"):
        load_pretrained(AutoModel, folder, "backbone", uniform_dtype=True)


def test_load_tokenizer_config_without_a_vocabulary_raises_naming_the_folder(tmp_path, tiny_backbone):
    from prm_core.checkpoints import load_tokenizer

    tiny_backbone[1].save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()  # tokenizer_config.json alone loads as a 3-token tokenizer
    with pytest.raises(CorruptFileError, match=rf"{tmp_path} holds no tokenizer vocabulary"):
        load_tokenizer(tmp_path, "backbone")


def test_atomic_file_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    target, link = tmp_path / "data.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    write_text(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file: a read-only mode stops no one")
def test_atomic_file_onto_a_read_only_file_raises_and_keeps_it(tmp_path):
    path = tmp_path / "frozen.json"
    path.write_text("old")
    path.chmod(0o444)
    with pytest.raises(PermissionError, match="is read-only"):
        write_text(path, "new")
    assert path.read_text() == "old"


def test_atomic_file_under_a_file_raises_naming_the_path(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"cannot write .*a-file/sub/out.json: a part of .* is a file"):
        write_text(tmp_path / "a-file" / "sub" / "out.json", "{}")


def test_load_pretrained_valid_folder_loads_the_same_weights(hf_folder, tiny_backbone):
    from transformers import AutoModel

    model, info = load_pretrained(AutoModel, hf_folder, "backbone")
    assert not any(info.values())
    for (name, p), (_, q) in zip(tiny_backbone[0].state_dict().items(), model.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------- LMPolicy checkpoints (lm_policy.py)


@pytest.fixture
def policy_folder(tiny_backbone, tmp_path):
    """An LMPolicy on the tiny course backbone, saved with LMPolicy.save_pretrained."""
    from prm_core.backbones import CourseTinyConfig, course_tiny_dir
    from prm_core.lm_policy import LMPolicy
    from tests.conftest import TINY_PROFILE_KWARGS

    source = course_tiny_dir(CourseTinyConfig(**TINY_PROFILE_KWARGS), tiny_backbone[2])
    return LMPolicy.from_pretrained(source).save_pretrained(tmp_path / "policy")


def test_lm_policy_save_pretrained_failure_part_way_keeps_the_old_folder(policy_folder, monkeypatch):
    from prm_core.lm_policy import LMPolicy

    before = snapshot(policy_folder)
    policy = LMPolicy.from_pretrained(policy_folder)
    with torch.no_grad():
        policy.model.get_input_embeddings().weight.add_(1.0)  # a new save would differ in every byte of the weights

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(policy.tokenizer, "save_pretrained", fail)  # the model is already written by then
    with pytest.raises(OSError, match="No space"):
        policy.save_pretrained(policy_folder)
    assert snapshot(policy_folder) == before and leftovers(policy_folder.parent) == []
    LMPolicy.from_pretrained(policy_folder)  # still loads


def test_lm_policy_from_pretrained_header_claiming_i32_raises_naming_the_folder(policy_folder):
    from prm_core.lm_policy import LMPolicy

    rewrite_header(policy_folder / "model.safetensors", lie_about_dtype("model.norm.weight"))
    with pytest.raises(CorruptFileError, match=r"LM policy .*'model.norm.weight' is stored as I32"):
        LMPolicy.from_pretrained(policy_folder)


def test_lm_policy_from_pretrained_missing_tokenizer_raises_naming_the_folder(policy_folder):
    from prm_core.lm_policy import LMPolicy

    for path in policy_folder.glob("tokenizer*"):
        path.unlink()
    with pytest.raises(CorruptFileError, match=f"LM policy {policy_folder} holds no tokenizer"):
        LMPolicy.from_pretrained(policy_folder)


# ---------------------------------------------------------------- scripts/run_notebooks.py


def _run_notebooks_script():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def executed_notebook(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"papermill": {"input_path": "/home/me/01.ipynb"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"execution": {"iopub.status.busy": "2024"}})]
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_notebooks_strip_metadata_writes_what_nbformat_write_writes(executed_notebook, tmp_path):
    import nbformat

    _run_notebooks_script()._strip_run_metadata(executed_notebook)
    expected = nbformat.read(executed_notebook, as_version=4)
    nbformat.write(expected, tmp_path / "reference.ipynb")
    assert executed_notebook.read_bytes() == (tmp_path / "reference.ipynb").read_bytes()
    assert "papermill" not in expected.metadata and "execution" not in expected.cells[0].metadata


def test_run_notebooks_strip_metadata_full_disk_keeps_the_notebook(executed_notebook, monkeypatch):
    script, before = _run_notebooks_script(), executed_notebook.read_bytes()
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        script._strip_run_metadata(executed_notebook)
    monkeypatch.undo()
    assert executed_notebook.read_bytes() == before and leftovers(executed_notebook.parent) == []


def test_run_notebooks_in_place_failed_run_keeps_the_committed_notebook(executed_notebook, monkeypatch, capsys):
    import papermill

    def half_run(input_path, output_path, **kwargs):
        Path(output_path).write_text('{"cells": [')  # papermill writes its output as it goes
        raise papermill.PapermillExecutionError(3, 3, "assert x", "AssertionError", "boom", [])

    monkeypatch.setattr(papermill, "execute_notebook", half_run)
    before = executed_notebook.read_bytes()
    assert _run_notebooks_script().main(["--in-place", str(executed_notebook)]) == 1
    assert executed_notebook.read_bytes() == before and leftovers(executed_notebook.parent) == []
    assert "FAILED" in capsys.readouterr().err


# ---------------------------------------------------------------- missing folders


@pytest.mark.parametrize("loader", ["load_pretrained", "load_tokenizer"])
def test_loader_absent_local_folder_raises_corrupt_file_error_naming_it(tmp_path, loader):
    from transformers import AutoModel

    from prm_core.checkpoints import load_tokenizer

    folder = tmp_path / "deleted-entry"
    load = {"load_pretrained": lambda: load_pretrained(AutoModel, folder, "LM policy"),
            "load_tokenizer": lambda: load_tokenizer(folder, "LM policy")}[loader]
    with pytest.raises(CorruptFileError, match=f"LM policy {folder} is missing or not a folder"):
        load()


def test_lm_policy_from_pretrained_mistyped_relative_path_says_it_is_no_folder(tmp_path, monkeypatch):
    from prm_core.lm_policy import LMPolicy

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorruptFileError, match="LM policy runs/polcy is not a folder; check the path"):
        LMPolicy.from_pretrained("runs/polcy")


def test_save_scores_failure_part_way_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch

    from prm_core.score_files import save_scores
    from prm_core.verification import StepScores

    path = tmp_path / "scores.safetensors"
    scores = {"prm": {"val": StepScores(torch.full((1, 1), 0.5), torch.ones(1, 1, dtype=torch.bool))}}
    save_scores(scores, path)
    before = path.read_bytes()

    def fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with pytest.raises(OSError, match="No space"):
        save_scores(scores, path)
    assert path.read_bytes() == before and leftovers(tmp_path) == []
