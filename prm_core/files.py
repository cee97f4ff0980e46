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

Reads are checked before any value is used: ``read_json`` here (cut or undecodable JSON, missing
keys), and weights in ``prm_core.checkpoints``. A file that is not what it claims raises
``CorruptFileError`` (a ValueError), which names the path and the fix, and which ``cached`` answers
with one rebuild. Builds of one entry take a lock (``entry_lock``), so two processes
that want the same missing entry (two notebooks, the workers of ``prm_core.prebuild``) build it once:
the second waits and loads what the first built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent builds of one entry then both run
    fcntl = None

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # mkstemp/mkdtemp create private (0600/0700) files; installed ones get the usual mode


class CorruptFileError(ValueError):
    """A file or folder on disk is incomplete, unreadable or not what it claims to be."""


def _make_parent(final: Path) -> None:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise NotADirectoryError(f"cannot write {final}: a part of {final.parent} is a file, not a folder; pass a "
                                 "path inside a folder.") from err


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``final`` to write into, renamed over ``final`` when the block succeeds.

    The temporary file has ``final``'s suffix (numpy's ``savez`` adds ``.npz`` to a path without
    it) and, once installed, ``final``'s old permissions (or the usual ones for a new file). When
    the block raises, the temporary file is removed and ``final`` is left exactly as it was.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_file(path) as tmp:
    ...     _ = tmp.write_text("whole")
    >>> path.read_text()
    'whole'
    """
    final = Path(os.path.realpath(final)) if Path(final).is_symlink() else Path(final)  # write the link's target
    if final.is_file() and not os.access(final, os.W_OK):
        raise PermissionError(f"{final} is read-only; make it writable (chmod u+w) or write elsewhere.")
    _make_parent(final)
    handle, name = tempfile.mkstemp(prefix=".writing-", suffix=final.suffix, dir=final.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        mode = stat.S_IMODE(final.stat().st_mode) if final.is_file() else 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a failure part-way leaves the old file as it was.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> path = write_text(Path(tempfile.mkdtemp()) / "a.txt", "x = 1\\n")
    >>> path.read_text()
    'x = 1\\n'
    """
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(data, **dumps_kwargs)`` written atomically; it is serialised in full before any
    file is touched, so a value JSON cannot hold raises with the old file intact.

    Examples
    --------
    >>> import tempfile
    >>> path = write_json(Path(tempfile.mkdtemp()) / "a.json", {"n": 1})
    >>> read_json(path)
    {'n': 1}
    """
    return write_text(path, json.dumps(data, **dumps_kwargs))


def read_json(path: str | os.PathLike, what: str = "file", required: Iterable[str] = ()) -> Any:
    """The JSON in ``path``, checked to be readable (and, with ``required``, a dict holding those keys).

    Parameters
    ----------
    path : path
    what : str, default "file"
        What the file is, for the error message (e.g. "train info").
    required : iterable of str, default ()
        Keys the file must hold; when given, the JSON must be an object.

    Raises
    ------
    CorruptFileError
        When the file is missing, cut short, not UTF-8 JSON, or lacks a required key.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "cut.json"
    >>> _ = path.write_text('{"n": 1')
    >>> read_json(path, "train info")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prm_core.files.CorruptFileError: train info .../cut.json is not valid UTF-8 JSON ...
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as err:
        raise CorruptFileError(f"{what} {path} is missing; write it again (delete its folder if it is a cache "
                               "entry, and it is rebuilt).") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{what} {path} is not valid UTF-8 JSON ({err}); it was cut short or overwritten: "
                               "write it again (delete it if it is a cache file, and it is rebuilt).") from err
    required = list(required)
    if required:
        missing = [key for key in required if not isinstance(data, dict) or key not in data]
        if missing:
            found = sorted(data) if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise CorruptFileError(f"{what} {path} lacks the keys {missing} (it holds {found}); it was written by "
                                   "something else or edited: write it again.")
    return data


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
    NotADirectoryError
        When ``final`` is a file (checked before the block runs).

    Examples
    --------
    >>> import tempfile
    >>> final = Path(tempfile.mkdtemp()) / "entry"
    >>> with atomic_folder(final, "done.json") as tmp:
    ...     _ = (tmp / "weights.bin").write_bytes(b"...")
    ...     _ = (tmp / "done.json").write_text("{}")
    >>> sorted(p.name for p in final.iterdir()), is_complete(final, "done.json")
    (['done.json', 'weights.bin'], True)
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final} is a file; pass a folder path to save into.")
    _make_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    try:
        yield tmp
        if marker is not None and not (tmp / marker).is_file():
            raise RuntimeError(f"the block wrote no {marker} into the folder for {final}; nothing was installed.")
        if merge:
            _merge_into(tmp, final, marker)
        else:
            os.chmod(tmp, 0o777 & ~_UMASK)
            _install(tmp, final, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, final: Path, marker: str | None) -> None:
    """Rename ``tmp`` to ``final``; a complete ``final`` installed meanwhile wins, an incomplete one is swapped out."""
    for attempt in range(5):  # each retry means another process moved ``final`` meanwhile
        try:
            os.replace(tmp, final)  # an absent or empty final is replaced at once
            return
        except OSError:
            if not final.exists():
                if attempt == 4:
                    raise
                continue  # it was swapped out between our rename and this check: rename again
        if marker is None or is_complete(final, marker):
            return  # another process installed a complete copy first: ours came from the same recipe
        stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=final.parent))
        try:
            os.replace(final, stale / final.name)
            if is_complete(stale / final.name, marker):  # completed by another process since our check: put it back
                with contextlib.suppress(OSError):
                    os.replace(stale / final.name, final)
                    return
        except FileNotFoundError:
            pass  # another process swapped it out first
        finally:
            shutil.rmtree(stale, ignore_errors=True)
        logger.info("swapped out the incomplete folder %s (it had no %s)", final, marker)
    raise RuntimeError(f"could not install {final}: other processes kept replacing it; run again.")


# Weight files a save writes: one that the new save did not write is an old one, and would load in
# its place (transformers reads model.safetensors before the shards of a newer sharded save).
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")


def _merge_into(tmp: Path, final: Path, marker: str | None) -> None:
    """Rename every file of ``tmp`` into ``final``; the old marker goes first and the new one last, so a
    crash part-way leaves a folder that says it is incomplete, never a mix that claims to be whole.
    Old weight files (``WEIGHT_PATTERNS``) in a folder the new save wrote weights into are removed
    before the marker goes in; other files there are kept."""
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(tmp).as_posix() == marker)
    if marker is not None:
        (final / marker).unlink(missing_ok=True)
    new = {p.relative_to(tmp) for p in files}
    for folder in {p.parent for p in new if any(p.match(pattern) for pattern in WEIGHT_PATTERNS)}:
        for pattern in WEIGHT_PATTERNS:
            for stale in (final / folder).glob(pattern):
                if stale.relative_to(final) not in new:
                    stale.unlink()
    for path in files:
        target = final / path.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _warn_unreadable(what: str, where: Path, err: CorruptFileError) -> None:
    logger.warning("%s %s is unreadable (%s); rebuilding it once", what, where, err)


def cached(folder: str | os.PathLike, marker: str, build: Callable[[Path], None], load: Callable[[Path], T],
           what: str = "cache entry") -> T:
    """``load(folder)`` of a cache entry, built first by ``build(tmp)`` when it is missing.

    An entry without its marker (an interrupted build, files removed by hand), or one whose ``load``
    raises ``CorruptFileError``, is rebuilt once (with a warning) and installed over the damaged
    folder, so the next call loads it; a second failure raises.

    Parameters
    ----------
    folder : path
        The entry's folder; its name is the cache key.
    marker : str
        The file ``build`` writes that marks the entry complete (e.g. ``"train_result.json"``).
    build : callable
        ``build(tmp)`` writes the entry into the empty folder ``tmp``.
    load : callable
        ``load(folder)`` reads it back; it raises ``CorruptFileError`` when it finds it damaged.
    what : str, default "cache entry"
        What the entry is, for the log.

    Raises
    ------
    CorruptFileError
        When the freshly built entry cannot be loaded either.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "entry-1a2b"
    >>> build = lambda tmp: (tmp / "done.json").write_text('{"n": 3}')
    >>> cached(folder, "done.json", build, lambda f: read_json(f / "done.json"))
    {'n': 3}
    """
    folder = Path(folder)
    if is_complete(folder, marker):
        try:
            return load(folder)
        except CorruptFileError as err:
            _warn_unreadable(what, folder, err)
    with entry_lock(folder):
        if is_complete(folder, marker):  # another process may have built or repaired it meanwhile
            try:
                return load(folder)
            except CorruptFileError:
                pass  # warned above, or built damaged by the other process: rebuild it here
            (folder / marker).unlink(missing_ok=True)  # now incomplete: the install below swaps it out
        elif folder.exists():
            logger.warning("%s %s is incomplete (no %s); rebuilding it once", what, folder, marker)
        with atomic_folder(folder, marker) as tmp:
            build(tmp)
    return load(folder)


def _lock_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / f"prm-course-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


_HELD_LOCKS: set[Path] = set()  # entries this process is building: asking for one again is a cycle
_LOCK_WAIT_SECONDS = [0.0]  # how long this process has waited for entries other processes were building


def lock_wait_seconds() -> float:
    """Seconds this process has spent in ``entry_lock`` waiting for another process's build (what
    ``prm_core.prebuild`` reports as a task's wait, apart from its own work)."""
    return _LOCK_WAIT_SECONDS[0]


@contextlib.contextmanager
def entry_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on cache entry ``path`` while building it.

    Another process of this user that asks for the same entry waits here until the build is done,
    then finds it complete. Advisory (``fcntl.flock``) on a file named by a hash of the entry's path
    in the user's temporary folder (so the cache holds nothing but entries), released when the holder
    exits or dies; a no-op where ``fcntl`` is missing (Windows).

    Raises
    ------
    RuntimeError
        When this process asks for an entry it is already building (a build that needs itself).
    """
    path = Path(path).absolute()
    if path in _HELD_LOCKS:
        raise RuntimeError(f"cache entry {path} is needed by its own build; a builder must not ask for "
                           "the entry it builds.")
    lock = _lock_dir() / f"{hashlib.sha1(str(path).encode()).hexdigest()[:20]}.lock"
    with open(lock, "a") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process builds it: wait, and count the wait
                start = time.monotonic()
                fcntl.flock(handle, fcntl.LOCK_EX)
                _LOCK_WAIT_SECONDS[0] += time.monotonic() - start
        _HELD_LOCKS.add(path)
        try:
            yield
        finally:
            _HELD_LOCKS.discard(path)
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def cached_file(path: str | os.PathLike, build: Callable[[Path], None], load: Callable[[Path], T],
                what: str = "cache file") -> T:
    """``cached`` for one file: ``build(tmp)`` writes it, ``load(path)`` reads it; a file that ``load``
    finds damaged (it raises ``CorruptFileError``) is rebuilt once, with a warning.

    Raises
    ------
    CorruptFileError
        When the freshly built file cannot be loaded either.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "eval-1a2b.json"
    >>> cached_file(path, lambda tmp: write_json(tmp, {"accuracy": 0.5}), read_json)
    {'accuracy': 0.5}
    """
    path = Path(path)
    if path.is_file():
        try:
            return load(path)
        except CorruptFileError as err:
            _warn_unreadable(what, path, err)
    with entry_lock(path):
        if path.is_file():  # another process may have built it meanwhile
            try:
                return load(path)
            except CorruptFileError:
                pass
        with atomic_file(path) as tmp:
            build(tmp)
    return load(path)
