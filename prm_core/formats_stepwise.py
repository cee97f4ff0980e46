"""Math-Shepherd, TRL stepwise supervision and ProcessBench files <-> ``StepSample`` lists.

The three "flat" formats: one row per solution, its steps as strings, one mark per step (or,
for ProcessBench, only the first wrong step). Import them from ``prm_core.formats``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from prm_core.data import StepSample
from prm_core.formats_io import (
    Destination,
    ReadResult,
    Source,
    WriteResult,
    _check_threshold,
    _extras,
    _field,
    _is_correct,
    _read,
    _RowError,
    _SampleFieldError,
    _short,
    _str_list,
    _write,
)

TAG = "ки"  # Math-Shepherd's step tag ("ki" in Cyrillic): ends every step of `input`


def _meta_column(sample: StepSample, key: str, kind: type, column: str) -> Any:
    """``sample.meta.get(key)`` for a column its reader takes as ``kind`` or null, refused here when it
    is anything else, so that whatever a writer writes its reader reads back. A numpy scalar of that
    kind (``np.bool_``) is left to the JSON check, which names the conversion it needs."""
    value = sample.meta.get(key)
    if value is None or isinstance(value, kind):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and isinstance(value.item(), kind):
        return value
    raise _SampleFieldError(f"meta[{key!r}]={_short(value)} has type {type(value).__name__}, but {column} holds "
                            f"a {kind.__name__} or null; store a {kind.__name__} or None there.")


# ---------------------------------------------------------------------------------------------
# Math-Shepherd: {"input": "<problem> Step 1: ... ки\nStep 2: ... ки", "label": same with +/-, "task"}

# Where the problem ends and step 1 begins; the released data spells it "Step 1:" and "step 1:".
_STEP_ONE = re.compile(r"\bstep\s*1\s*:", re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*:\s*", re.IGNORECASE)  # "Step k: " at the start of each later step
_ANSWER = re.compile(r"The answer is:?\s*(.+?)\s*$", re.DOTALL)  # Math-Shepherd's last-step convention


def _shepherd_answer(last_step: str) -> str | None:
    match = _ANSWER.search(last_step)
    return match.group(1) if match else None


def _parse_shepherd(row: Mapping[str, Any]) -> StepSample:
    text, marked = _field(row, "input", str), _field(row, "label", str)
    parts = text.split(TAG)  # parts[k] holds step k (after the problem, for k = 0); parts[-1] is blank
    if len(parts) < 2:
        raise _RowError(f"field 'input' holds no step tag {TAG!r}; every step must end with ' {TAG}'.")
    if parts[-1].strip():
        raise _RowError(f"field 'input' has text after its last tag: {_short(parts[-1])}; end every step, "
                        f"the last included, with ' {TAG}'.")
    heads = list(_STEP_ONE.finditer(parts[0]))
    if not heads:
        raise _RowError("field 'input' has no 'Step 1:' (any case) before its first tag, so where the problem "
                        f"ends is unknown; write the problem, then 'Step 1: <text> {TAG}'.")
    if len(heads) > 1:
        raise _RowError(f"field 'input' has {len(heads)} 'Step 1:' markers before its first tag "
                        f"({', '.join(repr(h.group()) for h in heads)}), so where the problem ends is ambiguous; "
                        "keep one, before the first step.")
    head = heads[0]
    steps = [parts[0][head.end():].strip()] + [_STEP_PREFIX.sub("", p, count=1).strip() for p in parts[1:-1]]
    labels, pos = [], 0
    for k, part in enumerate(parts[:-1]):  # `label` must be `input` with each tag swapped for one mark
        end = pos + len(part)
        if marked[pos:end] != part or end >= len(marked) or marked[end] not in "+-":
            raise _RowError(f"field 'label' does not match field 'input' at step {k + 1} (character {pos}); "
                            f"'label' must repeat 'input' with each {TAG!r} replaced by '+' or '-'.")
        labels.append(1.0 if marked[end] == "+" else 0.0)
        pos = end + 1
    if marked[pos:] != parts[-1]:
        raise _RowError(f"field 'label' does not match field 'input' after the last step (character {pos}).")
    answer = _field(row, "answer", str, optional=True) if "answer" in row else _shepherd_answer(steps[-1])
    meta = {"task": _field(row, "task", str, optional=True), **_extras(row, {"input", "label", "task", "answer"})}
    return StepSample(parts[0][: head.start()].strip(), steps, labels=labels, answer=answer, meta=meta)


def read_math_shepherd(path_or_lines: Source, *, on_error: str = "raise") -> ReadResult:
    """Read Math-Shepherd rows ``{"input", "label", "task"}`` into samples with 1.0/0.0 labels.

    ``input`` is the problem, then ``Step 1: <text> ки``, a newline, ``Step 2: <text> ки``, and so
    on; ``label`` is the same text with each ``ки`` replaced by ``+`` (correct) or ``-``. The
    split: ``input`` is cut at every tag, so steps may span lines; the problem is the text before
    ``Step 1:`` (in any case: the released data also writes ``step 1:``); each step loses its
    ``Step k:`` prefix and surrounding whitespace. A row with no ``Step 1:`` before its first tag,
    or more than one, is malformed: where its problem ends is unknown or ambiguous. The
    answer is an ``answer`` column when present, else what follows ``The answer is:`` in the last
    step (Math-Shepherd's convention), else None. ``task`` and unknown columns go to ``meta``.

    Parameters
    ----------
    path_or_lines : str, path, or iterable of str or dict
        A ``.jsonl`` (or ``.json`` list) file, JSON lines, or parsed rows.
    on_error : {"raise", "skip"}, default "raise"
        What a malformed row does: raise ``ValueError`` naming its line, or be skipped and counted.

    Returns
    -------
    ReadResult
        One sample per row; ``skipped`` lists malformed rows under ``on_error="skip"``.

    Examples
    --------
    >>> row = {"input": "What is 2 + 3 × 4? Step 1: 3 × 4 = 12. ки\\nStep 2: The answer is: 14 ки",
    ...        "label": "What is 2 + 3 × 4? Step 1: 3 × 4 = 12. +\\nStep 2: The answer is: 14 +", "task": "GSM8K"}
    >>> sample = read_math_shepherd([row])[0]
    >>> sample.problem, sample.steps, sample.labels, sample.answer
    ('What is 2 + 3 × 4?', ('3 × 4 = 12.', 'The answer is: 14'), (1.0, 1.0), '14')
    """
    return _read(path_or_lines, _parse_shepherd, on_error, "read_math_shepherd")


def _shepherd_row(sample: StepSample, threshold: float | None) -> dict[str, Any]:
    problem = sample.problem.strip()
    if TAG in problem or _STEP_ONE.search(problem):
        raise ValueError(f"problem={_short(problem)} contains {TAG!r} or 'Step 1:', which would split it "
                         "wrongly on reading; rephrase the problem.")
    for i, step in enumerate(sample.steps):
        if TAG in step:
            raise ValueError(f"steps[{i}]={_short(step)} contains the step tag {TAG!r}, which Math-Shepherd "
                             "reads as the end of a step; remove it from the text.")
    if _STEP_ONE.search(sample.steps[0]):  # the reader finds where the problem ends by the one 'Step 1:'
        raise ValueError(f"steps[0]={_short(sample.steps[0])} contains 'Step 1:' (any case), which the reader would "
                         "take for a second start of step 1 and refuse as ambiguous; remove it from the step "
                         "(the writer adds 'Step 1: ' itself).")
    task = _meta_column(sample, "task", str, "Math-Shepherd's 'task' column")
    marks = ["+" if _is_correct(sample, i, threshold, "Math-Shepherd") else "-" for i in range(sample.n_steps)]
    bodies = [f"Step {i}: {step.strip()} " for i, step in enumerate(sample.steps, 1)]
    row = {"input": f"{problem} " + "\n".join(body + TAG for body in bodies),
           "label": f"{problem} " + "\n".join(body + mark for body, mark in zip(bodies, marks, strict=True)),
           "task": task}
    if sample.answer != _shepherd_answer(sample.steps[-1].strip()):
        row["answer"] = sample.answer  # only when the last step does not already say it
    return row


def write_math_shepherd(samples: Iterable[StepSample], path_or_file: Destination, *,
                        threshold: float | None = None, unlabelled: str = "raise") -> WriteResult:
    """Write samples as Math-Shepherd rows (``input``, ``label``, ``task`` from ``meta``).

    Surrounding whitespace of the problem and steps is not kept (the format pads with spaces). An
    ``answer`` column is added only when the answer differs from the last step's
    ``The answer is: ...``.

    Parameters
    ----------
    samples : iterable of StepSample
        Labelled samples; no ``ки`` in any text, no ``Step 1:`` in the problem or the first step,
        and ``meta["task"]`` a str or absent (None).
    path_or_file : str, path, or text file
        Destination; a ``.json`` path gets a JSON list, anything else JSONL.
    threshold : float, optional
        None (default): every label must be exactly 1.0 or 0.0. A float: labels >= it become ``+``.
    unlabelled : {"raise", "prefix"}, default "raise"
        What an unlabelled step does: raise naming the sample, or end the sample there ("prefix":
        its labelled first steps are written; a sample with an unlabelled first step is left out),
        as TRL's converters do with PRM800K's phase-2 rows. Counted in the result and warned about.

    Returns
    -------
    WriteResult
        Rows written (an int), with ``n_cut_steps`` and ``left_out``.

    Raises
    ------
    ValueError
        When a sample cannot be written: the format cannot hold it, or a value in it (e.g. a numpy
        scalar in ``meta``) is not JSON. Nothing is written then; a path keeps its old contents.

    Examples
    --------
    >>> import io, json
    >>> out = io.StringIO()
    >>> write_math_shepherd([StepSample("1 + 1?", ["1 + 1 = 3."], labels=[0.0])], out)
    1
    >>> json.loads(out.getvalue())["label"]
    '1 + 1? Step 1: 1 + 1 = 3. -'
    """
    threshold = _check_threshold(threshold)
    return _write(samples, path_or_file, lambda s, i: _shepherd_row(s, threshold), "write_math_shepherd", unlabelled)


# ---------------------------------------------------------------------------------------------
# TRL stepwise supervision: {"prompt": str, "completions": [str], "labels": [bool]}


def _parse_trl(row: Mapping[str, Any]) -> StepSample:
    prompt = _field(row, "prompt", str)
    steps, labels = _str_list(row, "completions"), _field(row, "labels", list)
    if len(labels) != len(steps):
        raise _RowError(f"field 'labels' has {len(labels)} entries but 'completions' has {len(steps)}; "
                        "give one label per completion.")
    for i, label in enumerate(labels):
        if not isinstance(label, bool) and label not in (0, 1):
            raise _RowError(f"field 'labels[{i}]'={_short(label)} must be true or false (0 or 1 also accepted).")
    answer = _field(row, "answer", str, optional=True)
    meta = _extras(row, {"prompt", "completions", "labels", "answer"})
    return StepSample(prompt, steps, labels=[float(x) for x in labels], answer=answer, meta=meta)


def read_trl_stepwise(path_or_lines: Source, *, on_error: str = "raise") -> ReadResult:
    """Read TRL "stepwise supervision" rows ``{"prompt", "completions", "labels"}``.

    TRL's ``PRMTrainer`` takes the standard (not conversational) form: ``prompt`` a str, the steps
    in ``completions``, and one bool per step in ``labels`` (true: correct). Labels of 0/1 are
    accepted too; they become 0.0/1.0. An optional ``answer`` column becomes the answer; other
    columns go to ``meta``.

    Parameters
    ----------
    path_or_lines : str, path, or iterable of str or dict
        A ``.jsonl`` (or ``.json`` list) file, JSON lines, or parsed rows.
    on_error : {"raise", "skip"}, default "raise"
        What a malformed row does: raise ``ValueError`` naming its line, or be skipped and counted.

    Returns
    -------
    ReadResult
        One sample per row.

    Examples
    --------
    >>> rows = ['{"prompt": "2 + 2?", "completions": ["2 + 2 = 4.", "So 5."], "labels": [true, false]}']
    >>> read_trl_stepwise(rows)[0].labels
    (1.0, 0.0)
    """
    return _read(path_or_lines, _parse_trl, on_error, "read_trl_stepwise")


def write_trl_stepwise(samples: Iterable[StepSample], path_or_file: Destination, *,
                       threshold: float | None = None, unlabelled: str = "raise") -> WriteResult:
    """Write samples as TRL stepwise-supervision rows (plus ``answer`` when a sample has one).

    Parameters
    ----------
    samples : iterable of StepSample
        Samples with a label on every step.
    path_or_file : str, path, or text file
        Destination; a ``.json`` path gets a JSON list, anything else JSONL.
    threshold : float, optional
        None (default): every label must be exactly 1.0 or 0.0. A float: labels >= it become true.
    unlabelled : {"raise", "prefix"}, default "raise"
        What an unlabelled step does: raise naming the sample, or end the sample there ("prefix":
        its labelled first steps are written, as TRL's own PRM800K converter keeps the prefix; a
        sample with an unlabelled first step is left out). Counted in the result and warned about.

    Returns
    -------
    WriteResult
        Rows written (an int), with ``n_cut_steps`` and ``left_out``.

    Raises
    ------
    ValueError
        When a sample cannot be written: the format cannot hold it, or a value in it (e.g. a numpy
        scalar in ``meta``) is not JSON. Nothing is written then; a path keeps its old contents.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> write_trl_stepwise([StepSample("2 + 2?", ["2 + 2 = 4."], labels=[0.8])], out, threshold=0.5)
    1
    >>> out.getvalue()
    '{"prompt": "2 + 2?", "completions": ["2 + 2 = 4."], "labels": [true]}\\n'
    """
    threshold = _check_threshold(threshold)

    def to_row(sample: StepSample, _: int) -> dict[str, Any]:
        labels = [_is_correct(sample, i, threshold, "TRL stepwise") for i in range(sample.n_steps)]
        row = {"prompt": sample.problem, "completions": list(sample.steps), "labels": labels}
        return row if sample.answer is None else {**row, "answer": sample.answer}

    return _write(samples, path_or_file, to_row, "write_trl_stepwise", unlabelled)


# ---------------------------------------------------------------------------------------------
# ProcessBench: {"id", "generator", "problem", "steps": [str], "final_answer_correct", "label": int}


def _parse_processbench(row: Mapping[str, Any]) -> StepSample:
    problem, steps = _field(row, "problem", str), _str_list(row, "steps")
    first_error = _field(row, "label", int)
    if not -1 <= first_error < len(steps):
        raise _RowError(f"field 'label'={first_error} is out of range for {len(steps)} steps; use -1 (no "
                        f"wrong step) or the 0-based index of the first wrong step, 0 to {len(steps) - 1}.")
    if first_error == -1:
        labels: list[float | None] = [1.0] * len(steps)
    else:  # only the first error is known: later steps stay unlabelled
        labels = [1.0] * first_error + [0.0] + [None] * (len(steps) - first_error - 1)
    meta = {"id": row.get("id"), "generator": _field(row, "generator", str, optional=True),
            "final_answer_correct": _field(row, "final_answer_correct", bool, optional=True),
            "first_error_index": first_error,
            **_extras(row, {"id", "generator", "problem", "steps", "final_answer_correct", "label", "answer"})}
    return StepSample(problem, steps, labels=labels, answer=_field(row, "answer", str, optional=True), meta=meta)


def read_processbench(path_or_lines: Source, *, on_error: str = "raise") -> ReadResult:
    """Read ProcessBench rows; ``label`` is the first wrong step's index, or -1 when none is.

    Such a row knows only where the first error is, so steps before it get 1.0, the first error
    0.0, and the steps after it None (unknown). ``label`` is kept as ``meta["first_error_index"]``,
    with ``id``, ``generator`` and ``final_answer_correct`` (which may be absent or null). An
    optional ``answer`` column becomes the answer.

    Parameters
    ----------
    path_or_lines : str, path, or iterable of str or dict
        A ``.jsonl`` (or ``.json`` list) file, JSON lines, or parsed rows.
    on_error : {"raise", "skip"}, default "raise"
        What a malformed row does: raise ``ValueError`` naming its line, or be skipped and counted.

    Returns
    -------
    ReadResult
        One sample per row.

    Examples
    --------
    >>> row = {"id": "demo-0", "generator": "me", "problem": "3 × 5 + 1?", "final_answer_correct": False,
    ...        "steps": ["3 × 5 = 15.", "15 + 1 = 17.", "The answer is 17."], "label": 1}
    >>> read_processbench([row])[0].labels
    (1.0, 0.0, None)
    """
    return _read(path_or_lines, _parse_processbench, on_error, "read_processbench")


def write_processbench(samples: Iterable[StepSample], path_or_file: Destination, *,
                       threshold: float | None = None) -> int:
    """Write samples as ProcessBench rows whose ``label`` is the first wrong step (-1: none).

    Every step up to the first error must be labelled (1.0 before it, 0.0 at it, unless
    ``threshold`` rounds soft labels); labels after the first error are not written, since the
    format has no place for them. ``id``, ``generator`` (a str) and ``final_answer_correct`` (a
    bool) come from ``meta`` (``id`` defaults to the sample's position, the others to null), and are
    refused when ``read_processbench`` would refuse them; ``answer`` is added when a sample has one.

    Parameters
    ----------
    samples : iterable of StepSample
        Labelled samples.
    path_or_file : str, path, or text file
        Destination; a ``.json`` path gets a JSON list, anything else JSONL.
    threshold : float, optional
        None (default): labels up to the first error must be exactly 1.0 or 0.0. A float: the
        first label below it is the first error (as ``StepSample.first_error_index``).

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    ValueError
        When a sample cannot be written: the format cannot hold it, or a value in it (e.g. a numpy
        scalar in ``meta``) is not JSON. Nothing is written then; a path keeps its old contents.

    Examples
    --------
    >>> import io, json
    >>> out = io.StringIO()
    >>> write_processbench([StepSample("1 + 2?", ["1 + 2 = 4.", "So 4."], labels=[0.0, None])], out)
    1
    >>> json.loads(out.getvalue())["label"]
    0
    """
    threshold = _check_threshold(threshold)

    def to_row(sample: StepSample, index: int) -> dict[str, Any]:
        first_error = -1
        for i in range(sample.n_steps):
            if not _is_correct(sample, i, threshold, "ProcessBench (up to the first error)"):
                first_error = i
                break
        generator = _meta_column(sample, "generator", str, "ProcessBench's 'generator' column")
        is_final_answer_correct = _meta_column(sample, "final_answer_correct", bool,
                                               "ProcessBench's 'final_answer_correct' column")
        row = {"id": sample.meta.get("id", str(index)), "generator": generator, "problem": sample.problem,
               "steps": list(sample.steps), "final_answer_correct": is_final_answer_correct, "label": first_error}
        return row if sample.answer is None else {**row, "answer": sample.answer}

    return _write(samples, path_or_file, to_row, "write_processbench")
