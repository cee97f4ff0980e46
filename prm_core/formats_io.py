"""Plumbing shared by the dataset-format readers and writers in ``prm_core.formats``.

Rows in (a path, JSON lines or dicts), samples out, with every row accounted for in a
``ReadResult`` (a line that is not UTF-8 is a malformed row like one that is not JSON); samples
in, JSONL out, with every sample checked and serialised before anything is written, and a path
written atomically (``prm_core.files``), so a failure leaves its old contents intact.
Import the readers and writers from ``prm_core.formats``; the ``_`` helpers here serve only the
``formats_*`` modules.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from prm_core.checks import check_real
from prm_core.data import StepSample
from prm_core.files import write_text

FIXTURE_NAMES: tuple[str, ...] = ("prm800k", "math_shepherd", "trl_stepwise", "processbench")
ON_ERROR = ("raise", "skip")

Source = str | os.PathLike | Iterable[str | Mapping[str, Any]]
Destination = str | os.PathLike | TextIO


class ReadResult(list):
    """The samples a reader built (it *is* that list), plus what it left out and why.

    Attributes
    ----------
    excluded : dict of str to int
        Rows left out on purpose, counted by reason, e.g. ``{"quality_control": 2}``.
    skipped : list of (int, str)
        ``(row number, reason)`` of each malformed row skipped under ``on_error="skip"``.
    cut : list of (int, int, str)
        ``(row number, steps cut, reason)`` of each row kept only up to a step the format could not
        give (e.g. a PRM800K step with no completion); the sample's ``meta["n_cut_steps"]`` says it too.

    Examples
    --------
    >>> result = ReadResult([StepSample("q", ["a"])], excluded={"screening": 2})
    >>> len(result), result.n_excluded, result.n_skipped
    (1, 2, 0)
    """

    def __init__(
        self,
        samples: Iterable[StepSample] = (),
        *,
        excluded: Mapping[str, int] | None = None,
        skipped: Iterable[tuple[int, str]] = (),
        cut: Iterable[tuple[int, int, str]] = (),
    ) -> None:
        super().__init__(samples)
        self.excluded: dict[str, int] = dict(excluded or {})
        self.skipped: list[tuple[int, str]] = list(skipped)
        self.cut: list[tuple[int, int, str]] = list(cut)

    @property
    def n_excluded(self) -> int:
        return sum(self.excluded.values())

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def n_cut_steps(self) -> int:
        return sum(n for _, n, _ in self.cut)


class WriteResult(int):
    """The number of rows a writer wrote (it *is* that int), plus what it had to leave out.

    Attributes
    ----------
    n_cut_steps : int
        Unlabelled trailing steps not written (``unlabelled="prefix"``).
    left_out : list of int
        Positions of samples not written at all (no labelled first step).
    """

    n_cut_steps: int
    left_out: list[int]

    def __new__(cls, n_rows: int, n_cut_steps: int = 0, left_out: Iterable[int] = ()) -> WriteResult:
        out = super().__new__(cls, n_rows)
        out.n_cut_steps, out.left_out = n_cut_steps, list(left_out)
        return out


class _RowError(ValueError):
    """A row breaks its format's schema; the reader adds the line number and the fix."""


class _SampleFieldError(ValueError):
    """A field of a sample (``meta['task']=...``) that its format's reader would refuse; the writer
    names it as ``samples[i].<field>``."""


def fixture_path(name: str) -> Path:
    """Path of the small hand-written sample file shipped for one format (offline, a few rows).

    Parameters
    ----------
    name : str
        One of ``FIXTURE_NAMES``: "prm800k", "math_shepherd", "trl_stepwise", "processbench".

    Returns
    -------
    pathlib.Path
        ``prm_core/fixtures/<name>_sample.jsonl``.

    Examples
    --------
    >>> fixture_path("math_shepherd").name
    'math_shepherd_sample.jsonl'
    """
    if name not in FIXTURE_NAMES:
        raise ValueError(f"name={name!r} is not a shipped fixture; pass one of {list(FIXTURE_NAMES)}.")
    return Path(__file__).resolve().parent / "fixtures" / f"{name}_sample.jsonl"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(row: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, name: str = "",
           optional: bool = False) -> Any:
    """``row[key]`` checked against ``kind``; a missing or null optional field gives None."""
    name = name or key
    if key not in row or (optional and row[key] is None):
        if optional:
            return None
        raise _RowError(f"field '{name}' is missing; add it (the reader's docstring lists the schema).")
    value = row[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
        raise _RowError(f"field '{name}'={_short(value)} has type {type(value).__name__}; it must be {expected}.")
    return value


def _str_list(row: Mapping[str, Any], key: str) -> list[str]:
    items = _field(row, key, list)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise _RowError(f"field '{key}[{i}]'={_short(item)} has type {type(item).__name__}; it must be str.")
    return items


def _extras(row: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    """Columns the format does not define, kept in ``meta`` so that nothing is lost."""
    return {k: v for k, v in row.items() if k not in known}


_REENCODE = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8` for Latin-1 text)"


def _undecodable(err: UnicodeDecodeError) -> str:
    return f"byte 0x{err.object[err.start]:02x} at byte {err.start + 1}"


def _byte_lines(stream: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a binary file split as text mode splits them: at \\n, \\r\\n and a lone \\r."""
    for raw in stream:
        yield from raw.splitlines() if b"\r" in raw else (raw,)


def _json_list(path: Path) -> list[Any]:
    data = path.read_bytes()
    try:
        items = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: {_undecodable(err)} of the file is not valid UTF-8; {_REENCODE}.") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); a .json "
                         "file must hold one list of rows (use .jsonl for one row per line).") from err
    if not isinstance(items, list):
        raise ValueError(f"{path} holds a JSON {type(items).__name__}; a .json file must hold a list "
                         "of rows (use .jsonl for one row per line).")
    return items


def _rows(source: Source) -> Iterator[tuple[int, str, Any]]:
    """Yield ``(number, "line" | "row", parsed row or _RowError)``; blank lines are passed over.

    A path is read as bytes and decoded line by line, so a line that is not UTF-8 is a malformed row
    like any other (named, and skipped under ``on_error="skip"``). An open text stream decodes
    itself: a bad byte there can only be reported after the last line it gave.
    """
    if isinstance(source, Mapping):
        raise ValueError("source is a single dict; wrap it in a list: read_...([row]).")
    if isinstance(source, str) and source.lstrip()[:1] in ("{", "[") and not Path(source).exists():
        raise ValueError(f"source={_short(source)} looks like JSON text, but a single str is read as a path; "
                         "pass JSON lines as a list: read_...([line]).")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix == ".json":
            yield from ((i, "row", item) for i, item in enumerate(_json_list(path), 1))
        else:
            with path.open("rb") as lines:
                yield from _rows(_byte_lines(lines))
        return
    i = 0
    try:
        for i, item in enumerate(source, 1):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield i, "line", _RowError(f"is not valid UTF-8 ({_undecodable(err)} of the line); {_REENCODE}.")
                    continue
            if not isinstance(item, str):
                yield i, "row", item
            elif item.strip():
                try:
                    yield i, "line", json.loads(item)
                except json.JSONDecodeError as err:
                    yield i, "line", _RowError(f"is not valid JSON ({err.msg} at column {err.colno}); "
                                               "each line must hold one JSON object.")
    except UnicodeDecodeError as err:  # raised by a text stream's own decoder, between two lines
        raise ValueError(f"the text stream cannot be decoded at line {i + 1} or a later one ({err.reason}: "
                         f"{_undecodable(err)} of its read-ahead buffer); {_REENCODE}, or pass the file's path to "
                         "have the bad line named and skippable.") from err


def _read(source: Source, parse: Callable[[Mapping[str, Any]], StepSample | str], on_error: str,
          reader: str) -> ReadResult:
    """Run ``parse`` on every row; it returns a sample, or an exclusion reason to count."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r} must be one of {list(ON_ERROR)}; pass on_error='skip' "
                         "to skip and count malformed rows.")
    result = ReadResult()
    for number, unit, row in _rows(source):
        try:
            if isinstance(row, _RowError):
                raise row
            if not isinstance(row, Mapping):
                raise _RowError(f"holds a {type(row).__name__}; each row must be a JSON object (a dict).")
            out = parse(row)
        except (ValueError, TypeError) as err:  # schema errors and StepSample's own checks
            if on_error == "raise":
                raise ValueError(f"{reader}: {unit} {number}: {err} Fix or drop that row, or pass "
                                 "on_error='skip' to skip and count malformed rows.") from err
            result.skipped.append((number, f"{unit} {number}: {err}"))
            continue
        if isinstance(out, str):
            result.excluded[out] = result.excluded.get(out, 0) + 1
        else:
            result.append(out)
            if out.meta.get("n_cut_steps"):
                result.cut.append((number, int(out.meta["n_cut_steps"]), f"{unit} {number}: {out.meta['cut_reason']}"))
    if result.skipped:
        warnings.warn(f"{reader} skipped {result.n_skipped} malformed row(s), the first at "
                      f"{result.skipped[0][1]} See result.skipped for every reason.", stacklevel=3)
    if result.cut:
        warnings.warn(f"{reader} kept {len(result.cut)} row(s) only up to a step it could not read "
                      f"({result.n_cut_steps} steps cut), the first at {result.cut[0][2]} See result.cut.", stacklevel=3)
    return result


UNLABELLED = ("raise", "prefix")


def _labelled_prefix(sample: StepSample, unlabelled: str) -> tuple[StepSample | None, int]:
    """The sample cut before its first unlabelled step (``unlabelled="prefix"``) and the steps cut;
    None when not even the first step is labelled. ``"raise"`` returns the sample unchanged."""
    labels = sample.labels
    if unlabelled == "raise":
        return sample, 0
    if labels is None:
        return None, sample.n_steps
    n_keep = next((k for k, x in enumerate(labels) if x is None), sample.n_steps)
    if n_keep == 0:
        return None, sample.n_steps
    if n_keep == sample.n_steps:
        return sample, 0
    kept = StepSample(sample.problem, sample.steps[:n_keep], labels=labels[:n_keep], answer=sample.answer,
                      meta=sample.meta)
    return kept, sample.n_steps - n_keep


def _first_unwritable(value: Any, where: str, seen: frozenset[int] = frozenset()) -> tuple[str, Any] | None:
    """(path, value) of the first value inside ``value`` that JSON cannot hold, None when all can."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return None
    if id(value) in seen:
        return where, value  # a container that holds itself
    if isinstance(value, (list, tuple)):
        items = [(f"{where}[{k}]", v) for k, v in enumerate(value)]
    elif isinstance(value, dict):
        bad_key = next((k for k in value if k is not None and not isinstance(k, (str, int, float))), None)
        if bad_key is not None:
            return f"{where} key {_short(bad_key)}", bad_key
        items = [(f"{where}[{k!r}]", v) for k, v in value.items()]
    else:
        return where, value
    for path, item in items:
        found = _first_unwritable(item, path, seen | {id(value)})
        if found is not None:
            return found
    return None


def _find(container: Any, target: Any, where: str, depth: int = 0) -> str | None:
    """The path of the very object ``target`` inside ``container`` (None when it is not there)."""
    if container is target:
        return where
    if depth > 20:  # deeper than any row, or a container that holds itself
        return None
    if isinstance(container, dict):
        items = [(f"{where}[{k!r}]", v) for k, v in container.items()]
    elif isinstance(container, (list, tuple)):
        items = [(f"{where}[{k}]", v) for k, v in enumerate(container)]
    else:
        return None
    return next((p for p in (_find(v, target, path, depth + 1) for path, v in items) if p is not None), None)


def _unwritable(sample: StepSample, row: dict[str, Any], index: int) -> str:
    """Why ``row`` (written from ``samples[index]``) cannot be JSON, naming the sample's own field."""
    found = _first_unwritable(row, "row")
    if found is None:
        return f"samples[{index}] cannot be written as JSON"
    path, value = found
    field = _find(sample.meta, value, f"samples[{index}].meta") or f"samples[{index}] ({path})"
    fix = ("convert numpy scalars with int()/float() or .item(), and arrays with .tolist()"
           if type(value).__module__ == "numpy" else "store only str, int, float, bool, None, lists and dicts")
    return f"{field}={_short(value)} has type {type(value).__name__}, which JSON cannot hold; {fix}"


def _write(samples: Iterable[StepSample], dest: Destination, to_row: Callable[[StepSample, int], dict],
           writer: str, unlabelled: str = "raise") -> WriteResult:
    """Convert every sample first (so a bad one writes nothing), then write JSONL or a JSON list."""
    if unlabelled not in UNLABELLED:  # checked once, before any sample (an empty list included)
        raise ValueError(f"unlabelled={unlabelled!r} must be one of {list(UNLABELLED)}: 'prefix' writes each "
                         "sample up to its first unlabelled step and counts the rest.")
    rows, lines, n_cut, left_out = [], [], 0, []
    for i, sample in enumerate(samples):
        if not isinstance(sample, StepSample):
            raise ValueError(f"{writer}: samples[{i}] has type {type(sample).__name__}; pass StepSample "
                             "objects (StepSample.from_dict converts dicts).")
        kept, cut = _labelled_prefix(sample, unlabelled)
        n_cut += cut
        if kept is None:
            left_out.append(i)
            continue
        try:
            rows.append(to_row(kept, i))
        except _SampleFieldError as err:
            raise ValueError(f"{writer}: samples[{i}].{err}") from err
        except ValueError as err:
            raise ValueError(f"{writer}: samples[{i}]: {err}") from err
        try:  # every row becomes text before the destination is touched
            lines.append(json.dumps(rows[-1], ensure_ascii=False) + "\n")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{writer}: {_unwritable(sample, rows[-1], i)}; nothing was written.") from err
    is_path = isinstance(dest, (str, os.PathLike))
    if is_path and Path(dest).suffix == ".json":
        write_text(dest, json.dumps(rows, ensure_ascii=False, indent=1))
    elif is_path:
        write_text(dest, "".join(lines))
    else:
        dest.write("".join(lines))
    if n_cut:
        warnings.warn(f"{writer} wrote {len(rows)} rows up to their first unlabelled step: {n_cut} unlabelled steps "
                      f"not written, {len(left_out)} samples left out (no labelled first step). The returned "
                      "count carries n_cut_steps and left_out.", stacklevel=3)
    return WriteResult(len(rows), n_cut, left_out)


def _check_threshold(threshold: float | None) -> float | None:
    """None, or ``threshold`` as a float in (0, 1] that rounds soft labels (``label >= threshold``)."""
    if threshold is None:
        return None
    return check_real(threshold, "threshold", "(0, 1]", "pass None (labels must then be exactly 0.0 or 1.0), or "
                      "e.g. threshold=0.5 to round soft labels")


def _is_correct(sample: StepSample, i: int, threshold: float | None, fmt: str) -> bool:
    """Step ``i``'s label as a bool: exact 1.0/0.0, or compared with ``threshold`` when one is given."""
    if sample.labels is None or sample.labels[i] is None:
        raise ValueError(f"labels[{i}] is None (unlabelled) but {fmt} needs a label on every step; "
                         "label the step or leave the sample out.")
    label = sample.labels[i]
    if threshold is not None:
        return label >= threshold
    if label not in (0.0, 1.0):
        raise ValueError(f"labels[{i}]={label!r} is a soft label but {fmt} holds only correct/incorrect; "
                         "pass threshold=0.5 to round soft labels, or leave the sample out.")
    return label == 1.0

