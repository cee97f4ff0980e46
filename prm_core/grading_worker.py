"""The grader's worker: runs one exercise cell and the learner's function on every case, in its own
process, and writes what the function returned (plain data, ``grading.to_wire``) to a report file.

``python -m prm_core.grading_worker NAME CELL_FILE REPORT_FILE``; ``prm_core.grading`` starts it with a
time limit and does the checking, out of the cell's reach.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def _describe(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)
    line = next((f" (cell line {f.lineno})" for f in reversed(where) if f.filename == "<exercise cell>"), "")
    return f"{type(err).__name__}: {err}{line}"


def run(name: str, source: str) -> dict:
    """The report for exercise ``name``: how its cell ran, then each case's returned value."""
    import numpy as np

    from prm_core.exercise_checks import EXERCISES
    from prm_core.grading import to_wire

    exercise = EXERCISES[name]
    namespace: dict = {"__name__": "__student__"}
    try:
        exec(compile(source, "<exercise cell>", "exec"), namespace)  # noqa: S102 - the point of a grader
    except BaseException as err:  # SystemExit and KeyboardInterrupt too: a cell only defines
        return {"status": "cell_failed", "error": _describe(err), "escape": not isinstance(err, Exception)}
    fn = namespace.get(name)
    if not callable(fn):
        return {"status": "not_callable", "type": type(fn).__name__}
    outputs = []
    for k, case in enumerate(exercise.cases(np.random.default_rng(0))):
        args = exercise.learner_args(case)
        try:
            got = fn(*args)
        except NotImplementedError as err:
            return {"status": "not_implemented", "message": str(err)}
        except BaseException as err:  # an escape (SystemExit, KeyboardInterrupt) fails this exercise too
            return {"status": "raised", "case": k, "error": _describe(err), "outputs": outputs,
                    "escape": not isinstance(err, Exception)}
        outputs.append(to_wire(exercise.observe(args, got) if exercise.observe else got))
    return {"status": "ran", "outputs": outputs}


def main(argv: list[str]) -> int:
    name, cell_file, report_file = argv
    report = run(name, Path(cell_file).read_text(encoding="utf-8"))
    tmp = Path(report_file).with_suffix(".partial")
    tmp.write_text(json.dumps(report), encoding="utf-8")
    tmp.replace(report_file)  # the report appears whole or not at all
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
