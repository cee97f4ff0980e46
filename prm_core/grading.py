"""Grading one exercise: the learner's cell runs in its own subprocess, the checks run here.

The grader builds each case's arguments and sends them to a worker (``grading_worker.py``, run by
path in an isolated interpreter), which executes the exercise cell with a time limit and a memory
limit, calls the learner's function on every case and sends back only the *values* it returned, as
plain data (``to_wire``): never a pickle, so nothing the learner's code builds can run in the grader.
The worker never loads the modules that hold the answers and refuses ``prm_core`` imports, so a cell
cannot call the reference it is checked against. This process computes the reference answers and
compares. A cell that patches the checker, ends its process (``sys.exit``, ``os._exit``), kills its
parent, raises ``SystemExit`` or ``KeyboardInterrupt``, loops forever, leaves processes behind or
crashes the interpreter fails its own exercise, with the reason, and no other.

A report counts only when it carries the token the grader gave its worker and the worker exited
cleanly, and even then it holds values, never a verdict. This is isolation, not a sandbox: the cell
runs as its user, so it can read files (prm_core's source among them, which is copying an answer,
as from a classmate's notebook) or use the network.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import secrets
import signal
import site
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prm_core import grading_worker
from prm_core.exercise_checks import EXERCISES, Exercise, failure_message
from prm_core.grading_worker import Unsupported, from_wire, to_wire

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT_S", "STATUSES", "GradeResult", "Unsupported", "from_wire",
           "grade_source", "refused", "to_wire"]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_MB = 4096  # address space per worker; torch and transformers take about 0.8 GB of it
MAX_REPORT_BYTES = 64 * 2**20  # a training step's report is about 2 MB
MAX_MESSAGE = 1200  # characters of a message that quotes the learner's code (an error's text)
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

WORKER = Path(grading_worker.__file__)
# Cases and references seed torch's global generator (a model's weights, a head's): built from
# several grading threads at once they would interleave and differ between learner and reference.
BUILD_LOCK = threading.RLock()
LIBRARY_ROOT = WORKER.parent.parent  # the folder prm_core is in
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(message: str) -> str:
    """A message as one printable line of bounded length: an error text from the cell can hold
    terminal escapes or line breaks that would forge other lines of the printout."""
    message = _UNPRINTABLE.sub("?", message.replace("\n", " ").replace("\r", " "))
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _tail(text: str) -> str:
    text = text.strip()
    return "" if not text else " Its last output: " + (text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:])


@dataclass
class Worker:
    """A started worker: its process, its folder, the token its report must carry, the cases it got."""

    exercise: Exercise
    process: subprocess.Popen
    folder: Path
    token: str
    cases: list[tuple]
    memory_mb: int

    def output(self) -> str:
        """The end of what the worker printed (the cell may have made the file anything: read safely)."""
        data = _read_regular(self.folder / "output.log", tail=OUTPUT_TAIL * 4)
        return "" if data is None else data.decode("utf-8", "replace")


def _read_regular(path: Path, limit: int = MAX_REPORT_BYTES, tail: int | None = None) -> bytes | None:
    """``path``'s bytes if it is a regular file (not a link, FIFO or device) of at most ``limit``
    bytes, or its last ``tail`` bytes; None otherwise. Never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        if tail is not None:
            f.seek(max(0, info.st_size - tail))
            return f.read(tail)
        return f.read(limit + 1) if info.st_size <= limit else None


def start_worker(exercise: Exercise, source: str, folder: Path, memory_mb: int = DEFAULT_MEMORY_MB) -> Worker:
    """Start the worker for ``exercise`` on ``source`` in ``folder``: the cases' arguments are built
    here and sent as a job file; the worker runs in its own session, so a timeout stops what the
    cell starts too, and its output goes to a file (a pipe held open by a stray process would hang
    the grader)."""
    with BUILD_LOCK:
        cases = list(exercise.cases(np.random.default_rng(0)))
        args = [exercise.learner_args(case) for case in cases]
    job = io.BytesIO()
    torch.save({"name": exercise.name, "args": args, "grads": [grading_worker.module_gradients(a) for a in args],
                "observe": exercise.observe is not None}, job)
    (folder / "job.pt").write_bytes(job.getvalue())
    library = str(LIBRARY_ROOT) if b"prm_core" in job.getvalue() else "-"  # the arguments hold the course's classes
    (folder / "cell.py").write_text(source, encoding="utf-8")
    token = secrets.token_hex(16)
    env = os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(folder / "output.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-u", str(WORKER), "cell.py", "job.pt",
                                    str(folder / "report.json"), str(memory_mb), os.pathsep.join(site.getsitepackages()),
                                    library], cwd=folder, env=env, stdin=subprocess.PIPE, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(token.encode() + b"\n")
    process.stdin.close()
    return Worker(exercise, process, folder, token, cases, memory_mb)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the worker's session: the cell's own children too
    except (ProcessLookupError, PermissionError):
        pass
    process.kill()


def _ended(code: int) -> str:
    if code > 128:
        return f"signal {code - 128}"
    return f"exit code {code}" if code >= 0 else f"signal {-code}"


def finish_worker(worker: Worker, timeout: float) -> GradeResult:
    """Wait for the worker (at most ``timeout`` seconds), read what it reported and check it here.

    Any failure to check one exercise (an answer that cannot be compared, say) fails that exercise
    only, with the reason."""
    exercise = worker.exercise

    def result(status: str, message: str) -> GradeResult:
        return GradeResult(exercise.name, status, exercise.points if status == "passed" else 0, exercise.points,
                           _clean(message))

    try:
        worker.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(worker.process)
        worker.process.wait()
        return result("timeout", f"did not finish within {timeout:g} s (an endless loop?); if it is only slow, "
                                 f"grade with a longer --timeout.{_tail(worker.output())}")
    _kill_group(worker.process)  # whatever the cell left running in the background
    code = worker.process.returncode
    try:
        if code != 0:
            raise ValueError("the worker did not end cleanly")
        data = _read_regular(worker.folder / "report.json")
        report = json.loads(data) if data is not None else None
        if type(report) is not dict or report.get("token") != worker.token:
            raise ValueError("not the worker's report")
        status = report["status"]
    except Exception:  # noqa: BLE001 - RecursionError from a nested forgery too: no report, a crash
        output = worker.output()
        if code == 3:
            return result("crashed", "the worker could not run the exercise or send its answers back (exit code 3)"
                                     f"{_tail(output)}")
        memory = (f" It may have run out of memory (the limit is {worker.memory_mb} MiB; see --memory-mb)."
                  if "memory" in output.lower() else "")
        return result("crashed", f"the exercise's process ended ({_ended(code)}) before its answers were all reported: "
                                 f"does the cell end its own process (os._exit, os.kill) or crash Python?{memory}"
                                 f"{_tail(output)}")
    try:
        with BUILD_LOCK:
            return _verdict(exercise, report, status, worker.cases, result)
    except Exception as err:  # noqa: BLE001 - an answer the checks cannot handle fails only its exercise
        return result("failed", f"its answer could not be checked: {type(err).__name__}: {str(err)[:200]}")


def _verdict(exercise: Exercise, report: dict, status: str, cases: list[tuple], result: Callable) -> GradeResult:
    if status == "not_implemented":
        return result("not_implemented", f"not implemented yet. Hint: {report.get('message', '')}")
    if status == "cell_failed":
        kind = "crashed" if report.get("escape") else "failed"
        return result(kind, f"the exercise cell failed to run: {report.get('error', '')}"
                            + (" An exercise cell may only define its function." if report.get("escape") else ""))
    if status == "not_callable":
        return result("failed", f"{exercise.name} is {report.get('type', '?')}, not a function; define "
                                f"`def {exercise.name}(...)` in its exercise cell.")
    outputs = report.get("outputs", [])
    for k, case in enumerate(cases):
        if k == len(outputs):
            if status == "raised" and report.get("case") == k:
                kind = "crashed" if report.get("escape") else "failed"
                error = str(report.get("error", ""))
                memory = " (out of memory?)" if "memory" in error.lower() else ""
                return result(kind, f"{exercise.name}{exercise.show(case)} raised {error}{memory}")
            return result("crashed", f"the exercise's process reported {len(outputs)} of {len(cases)} answers.")
        try:
            got = from_wire(outputs[k])
            if exercise.observe:
                got = exercise.observe(*got)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            return result("failed", f"{exercise.name}{exercise.show(case)}: its answer could not be read back ({err}).")
        want = exercise.expected(case)
        why = exercise.differ(got, want)
        if why is not None:
            return result("failed", failure_message(exercise, exercise.show(case), got, want, why))
    return result("passed", f"{len(cases)} cases passed")


def grade_source(name: str, source: str, timeout: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB) -> GradeResult:
    """Grade one exercise cell's ``source`` against exercise ``name`` (see the module docstring)."""
    exercise = EXERCISES[name]
    why = refused(source)
    if why is not None:
        return GradeResult(name, "failed", 0, exercise.points, why)
    with tempfile.TemporaryDirectory(prefix="prm-grade-") as tmp:
        return finish_worker(start_worker(exercise, source, Path(tmp), memory_mb), timeout)
