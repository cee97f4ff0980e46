"""Grading one exercise: the learner's cell runs in its own subprocess, the checks run here.

The worker (``python -m prm_core.grading_worker``) executes the exercise cell in a fresh interpreter
with a time limit, calls the learner's function on every case and sends back only the *values* it
returned, as plain data (``to_wire``): never a pickle, so nothing the learner's code builds can run in
the grader. This process computes the reference answers itself and compares. A cell that patches the
checker, ends its process (``sys.exit``, ``os._exit``), raises ``SystemExit`` or ``KeyboardInterrupt``,
loops forever or crashes the interpreter fails its own exercise, with the reason, and no other.

This is isolation, not a sandbox: the cell can still read files or use the network as its user can.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prm_core.exercise_checks import EXERCISES, Exercise, failure_message

DEFAULT_TIMEOUT_S = 60.0
STATUSES = ("passed", "failed", "not_implemented", "missing", "timeout", "crashed")
OUTPUT_TAIL = 400  # characters of the learner's printed output kept in a crash message


@dataclass(frozen=True)
class GradeResult:
    """One exercise's outcome in one notebook; ``status`` is one of ``STATUSES``."""

    name: str
    status: str
    points: int
    max_points: int
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- values as plain data


def to_wire(value: Any) -> Any:
    """``value`` as JSON-ready data that ``from_wire`` turns back into the same type and values.

    Tensors and arrays keep dtype and shape; Python and numpy scalars, strings, None, and lists,
    tuples and string-keyed dicts of these are kept. Anything else becomes a marker naming its
    type, which equals no answer.
    """
    if value is None or type(value) in (bool, int, str):  # subclasses fall through to "unsupported"
        return value
    if type(value) is float:
        return {"float": repr(value)}  # repr round-trips, inf and nan included
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        if t.is_complex() or t.is_quantized or t.layout != torch.strided:
            return {"unsupported": f"torch.Tensor of {t.dtype}"}
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # the raw bytes: bfloat16 has no numpy twin
        return {"tensor": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": base64.b64encode(data).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"unsupported": f"numpy array of {value.dtype}"}
        return {"ndarray": value.dtype.str, "shape": list(value.shape),
                "data": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode("ascii")}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"npscalar": value.dtype.str, "data": base64.b64encode(value.tobytes()).decode("ascii")}
    if type(value) in (list, tuple):
        return {type(value).__name__: [to_wire(v) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: to_wire(v) for k, v in value.items()}}
    return {"unsupported": type(value).__name__}


@dataclass(frozen=True)
class Unsupported:
    """A returned value the grader cannot carry across processes (it is never a right answer)."""

    type_name: str

    def __repr__(self) -> str:
        return f"<a {self.type_name}>"


def from_wire(data: Any) -> Any:
    """The value ``to_wire`` encoded; a malformed record raises ValueError."""
    if data is None or type(data) in (bool, str, int):
        return data
    if type(data) is not dict or len(data) not in (1, 2, 3):
        raise ValueError(f"malformed value record {str(data)[:80]!r}")
    if "float" in data:
        return float(data["float"])
    if "tensor" in data:
        dtype = getattr(torch, data["tensor"])
        raw = bytearray(base64.b64decode(data["data"]))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat.reshape(data["shape"]).clone()
    if "ndarray" in data:
        return np.frombuffer(base64.b64decode(data["data"]), dtype=np.dtype(data["ndarray"])).reshape(data["shape"]).copy()
    if "npscalar" in data:
        return np.frombuffer(base64.b64decode(data["data"]), dtype=np.dtype(data["npscalar"]))[0]
    if "list" in data:
        return [from_wire(v) for v in data["list"]]
    if "tuple" in data:
        return tuple(from_wire(v) for v in data["tuple"])
    if "dict" in data:
        return {k: from_wire(v) for k, v in data["dict"].items()}
    if "unsupported" in data:
        return Unsupported(str(data["unsupported"]))
    raise ValueError(f"malformed value record {str(data)[:80]!r}")


# ---------------------------------------------------------------- what may not be in an exercise cell


def refused(source: str) -> str | None:
    """Why an exercise cell is not graded without running it (it does not parse, or it reaches for
    ``prm_core``, which holds the reference answers); None when it may run."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return f"the exercise cell does not parse: SyntaxError at line {err.lineno}: {err.msg}"
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "prm_core" in node.value:
            modules = ["prm_core"]
        if any(m.split(".")[0] == "prm_core" for m in modules):
            return (f"the exercise cell uses prm_core (line {node.lineno}), the library that holds the answers; "
                    "write the function with Python, numpy or torch instead")
    return None


# ---------------------------------------------------------------- running one exercise


def _tail(text: str) -> str:
    text = text.strip()
    return "" if not text else " Its last output: " + (text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:])


def start_worker(name: str, source: str, folder: Path) -> subprocess.Popen:
    """Start the worker for exercise ``name`` on ``source`` in ``folder`` (its own session, so a
    timeout can stop the processes the cell starts, too)."""
    (folder / "cell.py").write_text(source, encoding="utf-8")
    env = os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-m", "prm_core.grading_worker", name, "cell.py", "report.json"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> str:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    out, _ = process.communicate()
    return out.decode("utf-8", "replace")


def finish_worker(exercise: Exercise, process: subprocess.Popen, folder: Path, timeout: float) -> GradeResult:
    """Wait for the worker (at most ``timeout`` seconds), read what it reported and check it here."""
    def result(status: str, message: str) -> GradeResult:
        return GradeResult(exercise.name, status, exercise.points if status == "passed" else 0, exercise.points, message)

    try:
        out, _ = process.communicate(timeout=timeout)
        output = out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        output = _stop(process)
        return result("timeout", f"did not finish within {timeout:g} s (an endless loop?); if it is only slow, "
                                 f"grade with a longer --timeout.{_tail(output)}")
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever the cell left running in the background
    except (ProcessLookupError, PermissionError):
        pass
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        status = report["status"]
    except (OSError, ValueError, KeyError, TypeError):
        how = f"exit code {process.returncode}" if process.returncode >= 0 else f"signal {-process.returncode}"
        return result("crashed", f"the exercise's process ended ({how}) before its answers were all reported: "
                                 f"does the cell end its own process (os._exit, os.kill) or crash Python?"
                                 f"{_tail(output)}")
    if status == "not_implemented":
        return result("not_implemented", f"not implemented yet. Hint: {report.get('message', '')}")
    if status == "cell_failed":
        kind = "crashed" if report.get("escape") else "failed"
        return result(kind, f"the exercise cell failed to run: {report.get('error', '')}"
                            + (" An exercise cell may only define its function." if report.get("escape") else ""))
    if status == "not_callable":
        return result("failed", f"{exercise.name} is {report.get('type', '?')}, not a function; define "
                                f"`def {exercise.name}(...)` in its exercise cell.")
    cases = list(exercise.cases(np.random.default_rng(0)))
    outputs = report.get("outputs", [])
    for k, case in enumerate(cases):
        if k == len(outputs):
            if status == "raised" and report.get("case") == k:
                kind = "crashed" if report.get("escape") else "failed"
                return result(kind, f"{exercise.name}{exercise.show(case)} raised {report.get('error', '')}")
            return result("crashed", f"the exercise's process reported {len(outputs)} of {len(cases)} answers.")
        try:
            got = from_wire(outputs[k])
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            return result("failed", f"{exercise.name}{exercise.show(case)}: its answer could not be read back ({err}).")
        want = exercise.expected(case)
        why = exercise.differ(got, want)
        if why is not None:
            return result("failed", failure_message(exercise, exercise.show(case), got, want, why))
    return result("passed", f"{len(cases)} cases passed")


def grade_source(name: str, source: str, timeout: float = DEFAULT_TIMEOUT_S) -> GradeResult:
    """Grade one exercise cell's ``source`` against exercise ``name`` (see the module docstring)."""
    exercise = EXERCISES[name]
    why = refused(source)
    if why is not None:
        return GradeResult(name, "failed", 0, exercise.points, why)
    with tempfile.TemporaryDirectory(prefix="prm-grade-") as tmp:
        return finish_worker(exercise, start_worker(name, source, Path(tmp)), Path(tmp), timeout)
