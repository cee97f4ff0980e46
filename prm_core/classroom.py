"""Classroom assignments: student notebooks generated from the instructor's, and an autograder.

Instructor notebooks (``notebooks/``) hold exercise cells: a code cell with a line
``# EXERCISE: <name>`` (anywhere in the cell) defines the function ``<name>``, and its body between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` is the answer. An optional ``### HINT: ...`` line right
after ``BEGIN`` becomes the stub's message. ``make exercises`` writes ``exercises/`` (each answer
replaced by ``raise NotImplementedError(hint)``, every output cleared).

``make grade NB=...`` grades a student's copy, wherever it is. The exercise registry
(``prm_core.exercise_checks``) says which exercises the notebook's assignment holds and what each
is worth; one that is missing, renamed or unparseable fails with 0 points. Each exercise cell runs
alone in its own subprocess with a time limit (``prm_core.grading``) and the checks run here, out of
its reach. ``make nbgrader`` writes the same assignments as an nbgrader course (``prm_core.nbgrader``).

CLI: ``python -m prm_core.classroom make-exercises [--check]`` and
``python -m prm_core.classroom grade NB [--assignment 03_loss] [--timeout 60] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from prm_core.exercise_checks import EXERCISES, exercises_of
from prm_core.files import write_json, write_text
from prm_core.grading import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, GradeResult, grade_source

ROOT = Path(__file__).resolve().parent.parent
EXERCISE_LINE = re.compile(r"^\s*# EXERCISE: (\w+)\s*$", re.MULTILINE)
METADATA_KEY = "prm_course"  # notebook metadata: {"assignment": "03_loss"} in every student copy
BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
STUDENT_NOTE = ("**Student version.** Each `# EXERCISE` cell raises `NotImplementedError` until you write "
                "its body; the cell after it checks your function. Grade the whole notebook with "
                "`make grade NB=<path to this notebook>`.")


def exercise_markers(source: str) -> list[str]:
    """Every exercise a code cell's ``# EXERCISE: <name>`` lines name, wherever they stand in it."""
    return EXERCISE_LINE.findall(source)


def exercise_name(source: str) -> str | None:
    """The exercise a code cell defines, from its marker line; None for any other cell.

    Examples
    --------
    >>> exercise_name("# my answer\\n# EXERCISE: keep_top\\ndef keep_top(): ..."), exercise_name("x = 1")
    ('keep_top', None)
    """
    names = exercise_markers(source)
    return names[0] if names else None


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
    student.metadata[METADATA_KEY] = {"assignment": where.removesuffix(".ipynb")}
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


@dataclass
class Grade:
    """A graded notebook: its assignment, one result per registered exercise, and notes on marked
    cells that are not part of it (they earn nothing and fail nothing)."""

    notebook: str
    assignment: str
    results: list[GradeResult]
    notes: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_points(self) -> int:
        return sum(r.max_points for r in self.results)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "assignment": self.assignment, "points": self.points,
                "max_points": self.max_points, "exercises_passed": sum(r.passed for r in self.results),
                "exercises": len(self.results), "results": [r.to_dict() for r in self.results],
                "notes": self.notes}


def assignments() -> list[str]:
    """Every assignment: the stems of the notebooks that hold registered exercises."""
    return list(dict.fromkeys(e.notebook for e in EXERCISES.values()))


def assignment_of(path: Path, nb: nbformat.NotebookNode | None, found: list[str]) -> str:
    """Which assignment a notebook is: its metadata (written into every student copy), else its file
    name (``03_loss.ipynb`` or ``03_loss-alice.ipynb``), else the exercises its cells name."""
    known = assignments()
    meta = (nb.metadata.get(METADATA_KEY) or {}).get("assignment") if nb is not None else None
    if meta in known:
        return meta
    by_name = [a for a in known if path.stem == a or path.stem.startswith(a)]
    if by_name:
        return by_name[0]
    owners = {EXERCISES[n].notebook for n in found if n in EXERCISES}
    if len(owners) == 1:
        return owners.pop()
    raise ValueError(f"cannot tell which assignment {path.name} is (no prm_course metadata, a file name that "
                     f"starts with none of them, exercises of {sorted(owners) or 'none'}); pass "
                     f"--assignment, one of {known}.")


def grade_notebook(path: str | Path, *, assignment: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                   jobs: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB) -> Grade:
    """Grade every exercise the assignment of the notebook at ``path`` must contain.

    ``assignment`` overrides what the notebook says of itself (see ``assignment_of``); ``timeout`` is
    seconds per exercise; ``jobs`` exercises run at a time (default: the CPU count, at most 4);
    ``memory_mb`` caps each exercise's address space (0: no cap). A deleted or unreadable exercise is
    "missing", one marked twice (or sharing its cell with another) "failed", both with 0 points.
    Raises ValueError for a missing path, an unknown assignment or a bad ``timeout``/``jobs``/``memory_mb``.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"NB={str(path)!r} does not exist; pass the path of a notebook, e.g. "
                         "NB=exercises/03_loss.ipynb.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds, e.g. 60.")
    jobs = min(4, os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be an integer >= 1.")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or not (memory_mb == 0 or memory_mb >= 1024):
        raise ValueError(f"memory_mb={memory_mb!r} must be 0 (no cap) or an integer >= 1024 (torch alone takes "
                         "about 800 MiB of address space).")
    if assignment is not None and assignment not in assignments():
        raise ValueError(f"assignment={assignment!r} is not one; known: {assignments()}.")
    try:
        nb, unreadable = nbformat.read(path, as_version=4), None
    except Exception as err:  # not JSON, not a notebook: every exercise fails, the reason given
        nb, unreadable = None, f"{type(err).__name__}: {str(err)[:200]}"
    cells: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells if nb is not None else []):
        if cell.get("cell_type") == "code":
            for name in exercise_markers(cell.source):
                cells.setdefault(name, []).append(i)
    chosen, assignment = assignment is not None, assignment or assignment_of(path, nb, list(cells))
    expected = exercises_of(assignment)
    by_name = [a for a in assignments() if path.stem.startswith(a)]
    notes = [f"graded as {assignment}, which the notebook's metadata says, but its file name says {by_name[0]}; "
             "pass --assignment to choose"] if not chosen and by_name and by_name[0] != assignment else []
    notes += [f"{name} (cell {', '.join(map(str, where))}) is not an exercise of {assignment}; not graded. "
             "Was its marker line edited?" for name, where in cells.items() if name not in {e.name for e in expected}]
    results: dict[str, GradeResult] = {}
    runnable = {}
    for exercise in expected:
        where = cells.get(exercise.name, [])
        source = nb.cells[where[0]].source if len(where) == 1 else ""
        message, status = None, "missing"
        if unreadable:
            message = f"the notebook could not be read ({unreadable})"
        elif not where:
            message = (f"missing: no code cell has the line '# EXERCISE: {exercise.name}'; restore the cell "
                       f"from exercises/{assignment}.ipynb")
        elif len(where) > 1:
            status = "failed"
            message = (f"marked in {len(where)} cells ({', '.join(map(str, where))}); keep one, so the grader "
                       "knows which to grade")
        elif len(exercise_markers(source)) > 1:
            status = "failed"
            message = f"cell {where[0]} is marked for {exercise_markers(source)}; give each exercise its own cell"
        if message is None:
            runnable[exercise.name] = source
        else:
            results[exercise.name] = GradeResult(exercise.name, status, 0, exercise.points, message)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        graded = pool.map(lambda name: grade_source(name, runnable[name], timeout, memory_mb), runnable)
        for name, result in zip(runnable, graded, strict=True):
            results[name] = result
    return Grade(str(path), assignment, [results[e.name] for e in expected], notes)


def report(grade: Grade) -> str:
    """The grader's printout: one line per exercise, notes, then the score."""
    width = max([len(r.name) for r in grade.results] + [0])
    label = {"passed": "PASS", "missing": "MISSING", "timeout": "TIMEOUT",
             "crashed": "CRASH"}
    lines = [f"Grading {grade.notebook} (assignment {grade.assignment})"]
    lines += [f"  {label.get(r.status, 'FAIL'):7} {r.name:{width}} {r.points}/{r.max_points}  {r.message}"
              for r in grade.results]
    lines += [f"  NOTE    {note}" for note in grade.notes]
    n_passed = sum(r.passed for r in grade.results)
    lines.append(f"Score: {n_passed}/{len(grade.results)} exercises, {grade.points}/{grade.max_points} points "
                 f"({100 * grade.points / max(1, grade.max_points):.0f}%)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-exercises", help="write exercises/ from notebooks/")
    make.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    grade = sub.add_parser("grade", help="grade a notebook's exercises (exit 0 all passed, 1 any failed, 2 bad usage)")
    grade.add_argument("notebook", type=Path)
    grade.add_argument("--assignment", help=f"which assignment it is, when its name and metadata do not say: "
                                            f"one of {assignments()}")
    grade.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per exercise (default 60)")
    grade.add_argument("--jobs", type=int, default=None, help="exercises graded at a time (default: CPUs, at most 4)")
    grade.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                       help=f"address space per exercise, MiB (default {DEFAULT_MEMORY_MB}; 0: no cap)")
    grade.add_argument("--json", type=Path, help="also write per-exercise results (name, points, max_points, "
                                                 "status, message) to this file")
    args = parser.parse_args(argv)
    if args.command == "make-exercises":
        stale = make_exercises(check_only=args.check)
        for target in stale:
            print(f"{'stale' if args.check else 'wrote'}: {target.relative_to(ROOT)}")
        return 1 if args.check and stale else 0
    try:
        if args.json:
            _check_writable(args.json)
        result = grade_notebook(args.notebook, assignment=args.assignment, timeout=args.timeout, jobs=args.jobs,
                                memory_mb=args.memory_mb)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        try:
            write_json(args.json, result.to_dict(), indent=1)
        except OSError as err:
            print(f"--json {args.json}: could not write the results ({err.strerror or err}); the grades above stand.",
                  file=sys.stderr)
            return 2
    return 0 if result.passed else 1


def _check_writable(path: Path) -> None:
    """Fail before grading, not after, when ``--json`` names a file that cannot be written (missing
    folders are made when it is written)."""
    if path.is_dir():
        raise ValueError(f"--json {path} is a folder; pass a file path, e.g. --json {path / 'grade.json'}.")
    folder = next(p for p in [path.parent, *path.parent.parents, Path(".")] if p.exists())
    if not folder.is_dir():
        raise ValueError(f"--json {path}: {folder} is a file, not a folder; pass another path.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--json {path} cannot be written (no permission in {folder}); pass a path you can write.")

if __name__ == "__main__":
    sys.exit(main())
