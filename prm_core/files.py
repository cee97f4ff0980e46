"""Every file ``prm_core`` writes lands whole or not at all, and every file it reads back is checked.

A write goes to a temporary sibling of its destination and is renamed over it only once it is
complete, so a failure half-way (a value JSON cannot hold in row 2, a full disk, an interrupted
run) leaves the old file exactly as it was, and a reader never sees half a file. Folders come in
two kinds:

* a *saved folder* (``atomic_folder(..., merge=True)``: a checkpoint) is written in full beside its
  destination, then each file is renamed into place, the ``marker`` (its config) last;
* a *cache entry* (``atomic_folder(..., marker=...)``) is complete exactly when its marker file is
  there. ``cached`` builds a missing entry, rebuilds once an incomplete or unreadable one (logging
  why) and puts the folder right, so a damaged cache never costs more than one rebuild.

A file that is not what it claims (a cut JSON file, a safetensors header that lies) raises
``CorruptFileError``, which names the path and the fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CorruptFileError(ValueError):
    """A file or folder on disk is incomplete, unreadable or not what it claims to be."""


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``final`` to write into (same suffix: numpy's savez would add its own
    otherwise), renamed over ``final`` when the block succeeds and removed when it fails."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".writing-", suffix=final.suffix, dir=final.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(data, **dumps_kwargs)`` written atomically: serialised in full before the file is touched."""
    return write_text(path, json.dumps(data, **dumps_kwargs))


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON in ``path``; a missing, cut or undecodable file raises ``CorruptFileError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as err:
        raise CorruptFileError(f"{what} {path} is missing.") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{what} {path} is not valid UTF-8 JSON ({err}); it was cut short or overwritten: "
                               "write it again (delete it if it is a cache file, and it is rebuilt).") from err


def is_complete(folder: str | os.PathLike, marker: str) -> bool:
    """True when the cache entry ``folder`` holds its marker file (it was installed whole)."""
    return (Path(folder) / marker).is_file()


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike, marker: str | None = None, *, merge: bool = False) -> Iterator[Path]:
    """A temporary sibling of ``final`` to write a folder into, installed when the block succeeds.

    Parameters
    ----------
    final : path
    marker : str, optional
        A file the block must write; its presence in ``final`` means "complete".
    merge : bool, default False
        False (a cache entry): the folder is renamed into place whole. If another process installed
        a complete copy first, ours is dropped (both came from one config); an incomplete ``final``
        is swapped out and deleted. True (a saved folder such as a checkpoint): each file is renamed
        into ``final`` (created if needed, other files there kept), ``marker`` last.

    Raises
    ------
    RuntimeError
        When the block wrote no ``marker`` (nothing is installed).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    try:
        yield tmp
        if marker is not None and not (tmp / marker).is_file():
            raise RuntimeError(f"the block wrote no {marker} into the folder for {final}; nothing was installed.")
        if merge:
            _merge_into(tmp, final, marker)
        else:
            _install(tmp, final, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, final: Path, marker: str | None) -> None:
    try:
        os.replace(tmp, final)  # an absent or empty final is replaced at once
        return
    except OSError:
        if not final.exists():
            raise
    if marker is None or is_complete(final, marker):
        return  # another process installed a complete copy first
    stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=final.parent))
    os.replace(final, stale / final.name)
    os.replace(tmp, final)
    shutil.rmtree(stale, ignore_errors=True)
    logger.warning("repaired the incomplete folder %s (it had no %s)", final, marker)


def _merge_into(tmp: Path, final: Path, marker: str | None) -> None:
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(tmp).as_posix() == marker)  # the marker last: complete means complete
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final} is a file; pass a folder path to save into.")
    for path in files:
        target = final / path.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def cached(folder: str | os.PathLike, marker: str, build: Callable[[Path], None], load: Callable[[Path], T],
           what: str = "cache entry") -> T:
    """``load(folder)`` of a cache entry, built first by ``build(tmp)`` when it is missing.

    An entry without its marker (an interrupted build, files removed by hand), or one whose ``load``
    raises ``CorruptFileError``, is rebuilt once and the folder put right; a second failure raises.
    """
    folder = Path(folder)
    if is_complete(folder, marker):
        try:
            return load(folder)
        except CorruptFileError as err:
            logger.warning("%s %s is unreadable (%s); rebuilding it once", what, folder, err)
            (folder / marker).unlink(missing_ok=True)  # now incomplete: the install below swaps it out
    elif folder.exists():
        logger.warning("%s %s is incomplete (no %s); rebuilding it once", what, folder, marker)
    with atomic_folder(folder, marker) as tmp:
        build(tmp)
    return load(folder)


def cached_file(path: str | os.PathLike, build: Callable[[Path], None], load: Callable[[Path], T],
                what: str = "cache file") -> T:
    """``cached`` for one file: ``build(tmp)`` writes it, ``load(path)`` reads it; an unreadable file
    (``load`` raises ``CorruptFileError``) is rebuilt once."""
    path = Path(path)
    if path.is_file():
        try:
            return load(path)
        except CorruptFileError as err:
            logger.warning("%s %s is unreadable (%s); rebuilding it once", what, path, err)
    with atomic_file(path) as tmp:
        build(tmp)
    return load(path)


def load_tensors(path: str | os.PathLike, expected: dict[str, Any], what: str = "tensor file") -> dict[str, Any]:
    """The tensors of a safetensors file, checked against ``expected`` (name -> the tensor each
    must fit) before any value is used: the same names, the same shapes, and a float dtype where a
    float is expected (a header that says I32 over float bytes is refused, not cast).

    Raises
    ------
    CorruptFileError
        When the file is missing, its header cannot be read, or a tensor is missing, extra, of
        another shape or of an integer dtype where a float one is expected.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {path} is missing; save the checkpoint again (save_pretrained writes it).")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError for a bad header
        raise CorruptFileError(f"{what} {path} cannot be read as safetensors ({err}); it is cut short or not a "
                               "safetensors file: save it again.") from err
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CorruptFileError(f"{what} {path} does not hold the expected tensors (missing {missing}, unexpected "
                               f"{extra}); it was written for another model: load the matching checkpoint.")
    for name, target in expected.items():
        found = tensors[name]
        if tuple(found.shape) != tuple(target.shape):
            raise CorruptFileError(f"{what} {path}: tensor {name!r} has shape {tuple(found.shape)} but the model "
                                   f"needs {tuple(target.shape)}; load the checkpoint saved for this model.")
        if found.dtype.is_floating_point != target.dtype.is_floating_point:
            raise CorruptFileError(f"{what} {path}: tensor {name!r} is stored as {found.dtype} but the model needs "
                                   f"{target.dtype}; the file's header is wrong: save the checkpoint again.")
    return tensors
