"""Classroom assignments: student notebooks generated from the instructor's, and an autograder.

Instructor notebooks (``notebooks/``) hold exercise cells: a code cell whose first line is
``# EXERCISE: <name>`` defines the function ``<name>``, and its body between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` is the answer. An optional ``### HINT: ...`` line right after ``BEGIN``
becomes the stub's message. ``make exercises`` writes ``exercises/`` (each answer replaced by
``raise NotImplementedError(hint)``, every output cleared); ``make grade NB=...`` runs only the
exercise cells of a student's copy, wherever it is, and checks each function with
``prm_core.exercise_checks``.

CLI: ``python -m prm_core.classroom make-exercises [--check]`` and ``python -m prm_core.classroom grade NB``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from prm_core.exercise_checks import EXERCISES, ExerciseFailed, run_check
from prm_core.files import write_text

ROOT = Path(__file__).resolve().parent.parent
EXERCISE_LINE = re.compile(r"^# EXERCISE: (\w+)\s*$")
BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
STUDENT_NOTE = ("**Student version.** Each `# EXERCISE` cell raises `NotImplementedError` until you write "
                "its body; the cell after it checks your function. Grade the whole notebook with "
                "`make grade NB=<path to this notebook>`.")


def exercise_name(source: str) -> str | None:
    """The exercise a code cell defines, from its first line; None for any other cell.

    Examples
    --------
    >>> exercise_name("# EXERCISE: keep_top\\ndef keep_top(): ..."), exercise_name("x = 1")
    ('keep_top', None)
    """
    match = EXERCISE_LINE.match(source.split("\n", 1)[0])
    return match.group(1) if match else None


def strip_solutions(source: str, where: str = "cell") -> str:
    """``source`` with every solution region replaced by a stub that raises ``NotImplementedError``.

    Examples
    --------
    >>> print(strip_solutions("def f():\\n    ### BEGIN SOLUTION\\n    ### HINT: add one\\n    return 1\\n    ### END SOLUTION"))
    def f():
        raise NotImplementedError("add one")
    """
    out, inside, indent, hint = [], False, "", None
    for number, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{where}: line {number} opens a solution region inside another; close it "
                                 f"with '{END}' first.")
            inside, indent, hint = True, line[: len(line) - len(line.lstrip())], None
        elif stripped.startswith(HINT) and inside:
            hint = stripped[len(HINT):].strip()
        elif stripped == END:
            if not inside:
                raise ValueError(f"{where}: line {number} closes a solution region that was never opened; "
                                 f"add '{BEGIN}' above it.")
            message = hint or "write this part: see the exercise's docstring"
            out.append(f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: a solution region is never closed; add '{END}'.")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """The student version of an instructor notebook: solutions stubbed, outputs and widget state gone."""
    student = nbformat.from_dict(nbformat.from_dict(nb))  # a deep copy
    student.metadata.pop("widgets", None)
    for i, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{where} cell {i}")
            cell.outputs, cell.execution_count = [], None
    note = nbformat.v4.new_markdown_cell(STUDENT_NOTE)
    note.id = "student-version-note"
    student.cells.insert(1, note)
    return student


def instructor_notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """Numbered notebooks that hold at least one exercise cell."""
    return [p for p in sorted(folder.glob("[0-9]*.ipynb"))
            if any(exercise_name(c.source) for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")]


def make_exercises(out: Path = ROOT / "exercises", check_only: bool = False) -> list[Path]:
    """Write (or, with ``check_only``, compare) ``exercises/`` from ``notebooks/``; the stale files."""
    stale = []
    if not check_only:
        out.mkdir(parents=True, exist_ok=True)
    for path in instructor_notebooks():
        text = nbformat.writes(student_notebook(nbformat.read(path, as_version=4), path.name)) + "\n"
        target = out / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not check_only:
                write_text(target, text)  # atomic: a failure leaves the old exercise notebook intact
    return stale


@dataclass(frozen=True)
class GradeResult:
    """One exercise's outcome in one notebook."""

    name: str
    passed: bool
    message: str


def grade_notebook(path: str | Path) -> list[GradeResult]:
    """Run every exercise cell of the notebook at ``path`` (and nothing else) and check each function.

    Each exercise cell runs in a fresh namespace, so one broken cell fails only its own exercise.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"NB={str(path)!r} does not exist; pass the path of a notebook, e.g. "
                         "NB=exercises/03_loss.ipynb.")
    results = []
    for cell in nbformat.read(path, as_version=4).cells:
        name = exercise_name(cell.source) if cell.cell_type == "code" else None
        if name is None:
            continue
        if name not in EXERCISES:
            results.append(GradeResult(name, False, f"'{name}' is not a known exercise; was the first line edited?"))
            continue
        namespace: dict = {"__name__": "__student__"}
        try:
            exec(compile(cell.source, f"{path.name}:{name}", "exec"), namespace)  # noqa: S102 - the point of a grader
            n_cases = run_check(EXERCISES[name], namespace.get(name))
        except NotImplementedError as err:
            results.append(GradeResult(name, False, f"not implemented yet. Hint: {err}"))
        except ExerciseFailed as err:
            results.append(GradeResult(name, False, str(err)))
        except Exception as err:  # the cell itself does not run (syntax error, bad import, ...)
            results.append(GradeResult(name, False, f"the exercise cell failed to run: {type(err).__name__}: {err}"))
        else:
            results.append(GradeResult(name, True, f"{n_cases} cases passed"))
    return results


def report(path: str | Path, results: list[GradeResult]) -> str:
    """The grader's printout: one line per exercise, then the score."""
    lines = [f"Grading {path}"]
    lines += [f"  {'PASS' if r.passed else 'FAIL'}  {r.name}: {r.message}" for r in results]
    n_passed = sum(r.passed for r in results)
    lines.append(f"Score: {n_passed}/{len(results)} exercises ({100 * n_passed / max(1, len(results)):.0f}%)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-exercises", help="write exercises/ from notebooks/")
    make.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    grade = sub.add_parser("grade", help="grade a notebook's exercises")
    grade.add_argument("notebook", type=Path)
    args = parser.parse_args(argv)
    if args.command == "make-exercises":
        stale = make_exercises(check_only=args.check)
        for target in stale:
            print(f"{'stale' if args.check else 'wrote'}: {target.relative_to(ROOT)}")
        return 1 if args.check and stale else 0
    try:
        results = grade_notebook(args.notebook)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if not results:
        print(f"{args.notebook} has no exercise cells (a first line '# EXERCISE: <name>').", file=sys.stderr)
        return 2
    print(report(args.notebook, results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
