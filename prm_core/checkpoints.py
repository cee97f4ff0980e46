"""Checked reads of saved weights: nothing is loaded on trust.

``safetensors_header`` and ``load_tensors`` refuse a cut file, a header whose dtype or shape lies
(I32 claimed over float bytes reads as garbage, not as an error, in safetensors itself) and missing
or extra tensors; ``load_pretrained`` and ``load_tokenizer`` refuse a transformers folder with a
missing, unexpected or mismatched weight, which transformers would fill at random with only a log
line, or with no tokenizer files. Each raises ``prm_core.files.CorruptFileError`` naming the path
and the fix, which ``prm_core.files.cached`` answers with one rebuild of a cache entry.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from prm_core.files import CorruptFileError, read_json

# bytes per element of each safetensors dtype; the F* and BF16 ones are floating point
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def safetensors_header(path: str | os.PathLike, what: str = "tensor file") -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of each tensor in a safetensors file, read from its header alone.

    The header (an 8-byte little-endian length, then JSON) must be whole, give each tensor as many
    bytes as its dtype and shape need, and point inside the file, so a cut file is caught without
    reading its data.

    Raises
    ------
    CorruptFileError
        When the file is missing, cut short, or its header is not valid safetensors.

    Examples
    --------
    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "head.safetensors"
    >>> save_file({"w": torch.zeros(2, 3)}, str(path))
    >>> safetensors_header(path)
    {'w': ('F32', (2, 3))}
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {path} is missing; save it again (save_pretrained writes it).")
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (n,) = struct.unpack("<Q", handle.read(8))
            if n > size - 8:
                raise ValueError(f"its header claims {n} bytes but only {size - 8} follow")
            header = json.loads(handle.read(n))
        if not isinstance(header, dict):
            raise ValueError(f"its header is a JSON {type(header).__name__}, not an object")
        tensors, spans = {}, []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, (begin, stop) = entry["dtype"], tuple(int(x) for x in entry["shape"]), entry["data_offsets"]
            width = _DTYPE_BYTES.get(dtype)
            if not (isinstance(begin, int) and isinstance(stop, int) and 0 <= begin <= stop):
                raise ValueError(f"tensor {name!r} has data_offsets {[begin, stop]}, not 0 <= begin <= end")
            if width is not None and stop - begin != math.prod(shape) * width:
                raise ValueError(f"tensor {name!r} is {dtype} of shape {shape} ({math.prod(shape) * width} bytes) "
                                 f"but the header gives it {stop - begin} bytes")
            tensors[name] = (dtype, shape)
            spans.append((begin, stop, name))
        end = 0
        for begin, stop, name in sorted(spans):  # the data is the tensors back to back, in offset order
            if begin != end:
                raise ValueError(f"tensor {name!r} starts at byte {begin} of the data, where the previous one ends at "
                                 f"{end} (tensors overlap or leave a gap)")
            end = stop
    except (struct.error, ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptFileError(f"{what} {path} is not a valid safetensors file ({err}); it was cut short or "
                               "overwritten: save it again.") from err
    if end > size - 8 - n:
        raise CorruptFileError(f"{what} {path} is cut short: its tensors need {end} bytes of data but the file holds "
                               f"{size - 8 - n}; save it again.")
    return tensors


def _is_local(folder: Path, what: str) -> bool:
    """True for a folder on disk; False for a hub name. An absolute path that is not a folder raises."""
    if folder.is_dir():
        return True
    if folder.is_absolute() or folder.exists():
        raise CorruptFileError(f"{what} {folder} is missing or not a folder; check the path, or save it there "
                               "again (a cache entry is rebuilt when its folder is deleted).")
    return False


def read_tensors(path: str | os.PathLike, what: str = "tensor file") -> dict[str, Any]:
    """Every tensor of a safetensors file (``safetensors.torch.load_file``), its header checked first.

    Raises
    ------
    CorruptFileError
        When the file is missing, cut short or not valid safetensors.
    """
    from safetensors.torch import load_file

    safetensors_header(path, what)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CorruptFileError(f"{what} {path} cannot be read as safetensors ({err}); save it again.") from err


def load_tensors(path: str | os.PathLike, expected: dict[str, Any], what: str = "tensor file",
                 stored_dtype: str | None = None) -> dict[str, Any]:
    """The tensors of a safetensors file, checked against ``expected`` (name -> the tensor each
    must fit) before any value is read: the same names, the same shapes, and a float dtype where a
    float is expected (a header that says I32 over float bytes is refused, not cast); with
    ``stored_dtype`` (a safetensors name such as "F32", recorded when the file was saved) every
    tensor must be stored in exactly that dtype (BF16 relabelled as F16 is refused too).

    Raises
    ------
    CorruptFileError
        When the file is missing, its header cannot be read, or a tensor is missing, extra, of
        another shape, of an integer dtype where a float one is expected (or the reverse), or not
        of ``stored_dtype``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "head.safetensors"
    >>> save_file({"w": torch.ones(2)}, str(path))
    >>> load_tensors(path, {"w": torch.zeros(2)})["w"].tolist()
    [1.0, 1.0]
    """
    path = Path(path)
    header = safetensors_header(path, what)
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        raise CorruptFileError(f"{what} {path} does not hold the expected tensors (missing {missing}, unexpected "
                               f"{extra}); it was written for another model: load the matching checkpoint.")
    for name, target in expected.items():
        _check_tensor(path, what, name, header[name], target)
        if stored_dtype is not None and header[name][0] != stored_dtype:
            raise CorruptFileError(f"{what} {path}: tensor {name!r} is stored as {header[name][0]} but was saved as "
                                   f"{stored_dtype}; the file's header is wrong: save the checkpoint again.")
    return read_tensors(path, what)


def _check_tensor(path: Path, what: str, name: str, found: tuple[str, tuple[int, ...]], target: Any) -> None:
    dtype, shape = found
    if shape != tuple(target.shape):
        raise CorruptFileError(f"{what} {path}: tensor {name!r} has shape {shape} but the model needs "
                               f"{tuple(target.shape)}; load the checkpoint saved for this model.")
    if _is_float(dtype) != target.dtype.is_floating_point:
        raise CorruptFileError(f"{what} {path}: tensor {name!r} is stored as {dtype} but the model needs "
                               f"{target.dtype}; the file's header is wrong: save the checkpoint again.")


def load_pretrained(model_class: Any, folder: str | os.PathLike, what: str, *, strict: bool = True,
                    uniform_dtype: bool = False, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``model_class.from_pretrained(folder, output_loading_info=True, **kwargs)``, verified.

    transformers initialises a weight missing from the checkpoint at random and casts a tensor
    whose header lies about its dtype, with only a log line, so a damaged folder would load and
    score noise. Here the weight files' headers are checked first (a cut file is refused), then,
    with ``strict``, any missing, unexpected or mismatched weight is refused, and every stored
    tensor must match its parameter's shape and float-ness.

    Parameters
    ----------
    model_class : a transformers auto or model class
    folder : path
        A ``save_pretrained`` folder (a hub name is loaded without the file checks).
    what : str
        What is loaded, for the error message (e.g. "the backbone of PRM checkpoint ...").
    strict : bool, default True
        False leaves missing and unexpected weights to the caller (``info`` lists them).
    uniform_dtype : bool, default False
        True for a folder whose weights were saved in one dtype (the course's own models): every
        stored float tensor must be of the dtype its ``config.json`` records, so a header that
        relabels bf16 bytes as fp16 (both floats, both two bytes) is caught too.

    Returns
    -------
    (model, info)
        The model and transformers' loading info.

    Raises
    ------
    CorruptFileError
        When a local folder has no safetensors weights (``strict``), a weight file is damaged, a
        weight is missing, unexpected or of another shape (``strict``), or a stored dtype lies.
    """
    folder = Path(folder)
    header: dict[str, tuple[str, tuple[int, ...]]] = {}
    local = _is_local(folder, what)
    if local:
        weights = sorted(folder.glob("*.safetensors"))
        if strict and not weights:
            raise CorruptFileError(f"{what} {folder} holds no *.safetensors weights; save it again with "
                                   "save_pretrained (which writes model.safetensors).")
        for path in weights:
            header.update(safetensors_header(path, f"{what}: weight file"))
        config = read_json(folder / "config.json", f"{what}: model config", required=("model_type",))
        if uniform_dtype:
            _check_uniform_dtype(folder, config, header, what)
    try:
        model, info = model_class.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except Exception as err:
        if not local or not is_file_error(err, kwargs):
            raise  # the caller's own mistake (an unknown dtype, a missing attention backend): the files are fine
        raise CorruptFileError(f"{what} {folder} cannot be loaded ({str(err)[:300]}); its files are damaged or "
                               "from another model: save it again.") from err
    problems = {kind: sorted(str(k) for k in info.get(kind) or ()) for kind in
                ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if strict and any(problems.values()):
        found = "; ".join(f"{kind.replace('_', ' ')} {keys[:4]}" for kind, keys in problems.items() if keys)
        raise CorruptFileError(f"{what} {folder} does not fit its model ({found}); transformers would fill them at "
                               "random: save the checkpoint again, or load the folder it came from.")
    state, prefix = model.state_dict(), getattr(model, "base_model_prefix", "")
    for name, found in header.items():
        target = next((state[k] for k in (name, f"{prefix}.{name}", name.removeprefix(f"{prefix}."))
                       if k in state), None)
        if target is not None:
            _check_tensor(folder, what, name, found, target)
    return model, info


# What a saved tokenizer's vocabulary lives in: fast (tokenizer.json), BPE (vocab.json + merges.txt),
# SentencePiece (tokenizer.model, spiece.model) or WordPiece (vocab.txt).
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")
_TORCH_TO_SAFETENSORS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


SAFETENSORS_FLOAT_DTYPES = tuple(_TORCH_TO_SAFETENSORS.values())


def safetensors_dtype(dtype: Any) -> str | None:
    """The safetensors name of a torch float dtype (``torch.bfloat16`` -> "BF16"), None for others."""
    return _TORCH_TO_SAFETENSORS.get(str(dtype).removeprefix("torch."))


# Arguments with which the caller picks which files to read: an OSError under them ("no file named
# model.fp16.safetensors") is the caller's choice of files, not a damaged folder.
_FILE_CHOOSING_KWARGS = frozenset({"variant", "use_safetensors", "subfolder", "revision", "gguf_file"})


def is_file_error(err: Exception, kwargs: dict[str, Any] | None = None) -> bool:
    """Whether an error of ``from_pretrained`` on a local folder says its files are damaged (rather
    than the call is wrong).

    File errors: an OS or decoding error; safetensors' own ``SafetensorError`` and the bare
    ``Exception`` the tokenizers library raises for a cut tokenizer.json; a ``KeyError`` (a config
    value such as ``hidden_act`` naming nothing, a tokenizer.json without its sections); the
    tokenizers library's "failed to extract" ``TypeError`` (a section of the wrong shape);
    huggingface_hub's ``StrictDataclass*`` validation errors (a config value of the wrong type or an
    inconsistent one); a weight of another size (older transformers say "size mismatch", 5.x ones
    name ``ignore_mismatched_sizes``). An ``OSError`` under a file-choosing argument (``variant``,
    ``use_safetensors``, ...) is the caller's.
    """
    if isinstance(err, OSError) and not _FILE_CHOOSING_KWARGS.isdisjoint(kwargs or ()):
        return False
    return (isinstance(err, OSError | UnicodeDecodeError | json.JSONDecodeError | KeyError) or type(err) is Exception
            or type(err).__name__ == "SafetensorError" or type(err).__name__.startswith("StrictDataclass")
            or (isinstance(err, TypeError) and str(err).startswith("failed to extract"))
            or (isinstance(err, RuntimeError) and any(s in str(err) for s in ("size mismatch",
                                                                               "ignore_mismatched_sizes"))))


def _check_uniform_dtype(folder: Path, config: dict[str, Any], header: dict[str, tuple[str, tuple[int, ...]]],
                         what: str) -> None:
    recorded = config.get("dtype") or config.get("torch_dtype")
    expected = safetensors_dtype(recorded) if isinstance(recorded, str) else None
    wrong = {name: dtype for name, (dtype, _) in header.items() if _is_float(dtype) and dtype != expected}
    if expected and wrong:
        raise CorruptFileError(f"{what} {folder}: its config.json records dtype {recorded} ({expected}) but the "
                               f"weights' header says {dict(list(wrong.items())[:3])}; the header is wrong: save "
                               "the folder again.")


def load_tokenizer(folder: str | os.PathLike, what: str, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained(folder, **kwargs)``, refused when a local folder holds no
    tokenizer files (transformers would build an empty one from the model's config) or they are damaged.

    Raises
    ------
    CorruptFileError
        Naming the folder, when its tokenizer files are missing or cannot be read.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not _is_local(folder, what):
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)  # a hub name: the hub's own errors
    if not any((folder / name).is_file() for name in TOKENIZER_VOCAB_FILES):
        raise CorruptFileError(f"{what} {folder} holds no tokenizer vocabulary (none of {list(TOKENIZER_VOCAB_FILES)}: "
                               "without one transformers builds a near-empty tokenizer from tokenizer_config.json); "
                               "save it again with the tokenizer's save_pretrained.")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # cut or overwritten: caught here, named
        if (folder / name).is_file():
            read_json(folder / name, f"the tokenizer of {what}")
    try:
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except Exception as err:
        if not is_file_error(err, kwargs):
            raise  # the caller's own mistake: the files are fine
        raise CorruptFileError(f"the tokenizer of {what} {folder} cannot be read with its config.json "
                               f"({str(err)[:200]}); save both again.") from err
