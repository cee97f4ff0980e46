"""The grader's worker: one exercise cell, run on the cases the grader sent, in a process of its own.

``python -I -S -B -u grading_worker.py CELL JOB REPORT MEMORY_MB SITE_PACKAGES LIBRARY_ROOT``
(``prm_core.grading`` starts it; the token that marks its report arrives on stdin). This file imports nothing from
``prm_core`` and is run by path without site's ``.pth`` files, so for most exercises ``prm_core`` is
not importable at all. When the job's arguments are instances of the course's classes (the model
exercises, the beam step), its root is put on the path to load them: the job then loads only the
modules those classes live in, never the module of the exercise's answer, and a finder refuses any
further ``prm_core`` import (a speed bump for a cell that goes looking, not a wall). The worker sends back what the learner's
function returned, as plain data (``to_wire``, never a pickle); the grader computes the references
and compares, out of the cell's reach.

The process forks first: the cell runs in the child, so a cell that kills its parent reaches this
intermediate, not the grader, and the grader reads that as a crash.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- values as plain data (both sides use these)


def to_wire(value: Any) -> Any:
    """``value`` as JSON-ready data that ``from_wire`` turns back into the same type and values.

    Tensors and arrays keep dtype and shape; Python and numpy scalars, strings, None, and lists,
    tuples and string-keyed dicts of these are kept. Anything else becomes a marker naming its
    type, which equals no answer.
    """
    import numpy as np
    import torch

    if type(value) is int and value.bit_length() > 10_000:  # about 3000 digits; JSON's limit is 4300
        return {"unsupported": "int of more than 3000 digits"}
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
    import numpy as np
    import torch

    if data is None or type(data) in (bool, str, int):
        return data
    if type(data) is not dict or len(data) not in (1, 2, 3):
        raise ValueError(f"malformed value record {str(data)[:80]!r}")
    if "float" in data:
        return float(data["float"])
    if "tensor" in data:
        dtype = getattr(torch, data["tensor"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"malformed tensor record: {data['tensor']!r} is not a dtype")
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


def module_parameters(args: tuple) -> list[dict[str, Any]]:
    """Every ``nn.Module`` argument's parameters, by name (detached copies): what an exercise that
    changes a model (a training step) is judged on, besides what it returns."""
    import torch

    return [{n: p.detach().clone() for n, p in a.named_parameters()} for a in args if isinstance(a, torch.nn.Module)]


def module_gradients(args: tuple) -> list[list[Any]]:
    """Every ``nn.Module`` argument's ``.grad`` per parameter (None where there is none): a pickle
    drops them, so the job carries them beside the arguments."""
    import torch

    return [[p.grad for p in a.parameters()] for a in args if isinstance(a, torch.nn.Module)]


# ---------------------------------------------------------------- the worker


class _NoLibrary:
    """A meta-path finder that refuses ``prm_core``: installed after the job is loaded, before the cell."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "prm_core" or name.startswith("prm_core."):
            raise ImportError(f"{name} is not available to an exercise cell: write the function with Python, "
                              "numpy or torch")
        return None


def _describe(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)
    line = next((f" (cell line {f.lineno})" for f in reversed(where) if f.filename == "<exercise cell>"), "")
    return f"{type(err).__name__}: {err}{line}"


def _load_job(job_file: Path) -> dict:
    import torch

    job = torch.load(job_file, weights_only=False)  # written by the grader, not by the cell
    job_file.unlink()
    for args, grads in zip(job["args"], job["grads"], strict=True):
        modules = [a for a in args if isinstance(a, torch.nn.Module)]
        for module, module_grads in zip(modules, grads, strict=True):
            for p, g in zip(module.parameters(), module_grads, strict=True):
                p.grad = g
    return job


def run(source: str, job: dict) -> dict:
    """The report for one exercise: how its cell ran, then each case's returned value."""
    name = job["name"]
    sys.meta_path.insert(0, _NoLibrary())
    namespace: dict = {"__name__": "__student__"}
    try:
        exec(compile(source, "<exercise cell>", "exec"), namespace)  # noqa: S102 - the point of a grader
    except BaseException as err:  # SystemExit and KeyboardInterrupt too: a cell only defines
        return {"status": "cell_failed", "error": _describe(err), "escape": not isinstance(err, Exception)}
    fn = namespace.get(name)
    if not callable(fn):
        return {"status": "not_callable", "type": type(fn).__name__}
    outputs = []
    for k, args in enumerate(job["args"]):
        try:
            got = fn(*args)
        except NotImplementedError as err:
            return {"status": "not_implemented", "message": str(err)}
        except BaseException as err:  # an escape (SystemExit, KeyboardInterrupt) fails this exercise too
            return {"status": "raised", "case": k, "error": _describe(err), "outputs": outputs,
                    "escape": not isinstance(err, Exception)}
        try:
            outputs.append(None)
            outputs[-1] = to_wire([got, module_parameters(args)] if job["observe"] else got)
            json.dumps(outputs[-1])
        except Exception as err:  # noqa: BLE001 - e.g. a list that holds itself, an int past JSON's limit
            outputs[-1:] = [{"unsupported": f"{type(got).__name__} that could not be sent back ({type(err).__name__})"}]
    return {"status": "ran", "outputs": outputs}


def _child(token: str, cell_file: Path, job_file: Path, report_file: Path) -> None:
    report = run(cell_file.read_text(encoding="utf-8"), _load_job(job_file))
    tmp = report_file.with_suffix(".partial")
    tmp.write_text(json.dumps(report | {"token": token}), encoding="utf-8")
    tmp.replace(report_file)  # the report appears whole or not at all


def _set_path(site_packages: str, library_root: str) -> None:
    """Run with ``-S``: the grader's site-packages folders on the path without their ``.pth`` files,
    so the editable install of ``prm_core`` is not importable; ``library_root`` (or "-") only when
    the job's arguments are instances of the course's own classes, and then ``_NoLibrary`` refuses
    the rest of it."""
    sys.path.extend(p for p in site_packages.split(os.pathsep) if p and p not in sys.path)
    if library_root != "-":
        sys.path.append(library_root)


def main(argv: list[str]) -> int:
    cell_file, job_file, report_file, memory_mb, site_packages, library_root = argv
    _set_path(site_packages, library_root)
    token = sys.stdin.readline().strip()
    if int(memory_mb) > 0:
        import resource

        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    pid = os.fork()
    if pid:  # the intermediate: wait, and pass the child's end on as an exit code
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code
    try:
        _child(token, Path(cell_file), Path(job_file), Path(report_file))
    except BaseException:  # noqa: BLE001 - anything left is the worker's own failure: say it, then exit
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers or finalizers that the cell registered


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
