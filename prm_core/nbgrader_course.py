"""The course's assignments as an nbgrader course: source notebooks with nbgrader's cell metadata.

nbgrader (https://nbgrader.readthedocs.io) reads three kinds of cell from the metadata written here:
each exercise cell is a *solution* cell (``### BEGIN SOLUTION`` / ``### END SOLUTION``, the markers the
course already uses; its hint stays as a comment above the region), the ``check(...)`` cell after it
is an *autograded test* cell worth the exercise's points from the registry, and every other cell is
*locked* (read-only; restored from the source when grading). ``nbgrader generate_assignment`` then
writes the student version and ``nbgrader autograde`` runs the whole notebook and scores the test
cells: a check that raises scores 0, one that passes scores its points.

nbgrader runs students' code in the notebook's own kernel; ``make grade`` is the stricter path (each
exercise in its own process, checks out of its reach). Both read the same registry.

CLI: ``python -m prm_core.nbgrader_course OUT`` writes ``OUT/nbgrader_config.py`` and
``OUT/source/<assignment>/<assignment>.ipynb`` for every assignment.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import nbformat

from prm_core.classroom import BEGIN, HINT, ROOT, exercise_name, instructor_notebooks
from prm_core.exercise_checks import EXERCISES
from prm_core.files import write_text

SCHEMA_VERSION = 3  # nbgrader's cell metadata schema (nbgrader 0.6 and later)
CONFIG = '''# nbgrader configuration for the prm-course assignments (written by prm_core.nbgrader_course)
c = get_config()  # noqa: F821 - nbgrader provides it
c.CourseDirectory.course_id = "prm-course"
c.CourseDirectory.root = {root!r}
# Training cells take minutes on a cold cache; nbgrader's default limit is 30 s per cell.
c.ExecutePreprocessor.timeout = {timeout}
'''


def checked_exercise(source: str) -> str | None:
    """The exercise a cell tests: the name in its first top-level ``check("<name>", ...)`` call."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check" and call.args
                and isinstance(call.args[0], ast.Constant) and call.args[0].value in EXERCISES):
            return call.args[0].value
    return None


def _hint_above_region(source: str) -> str:
    """Move each ``### HINT:`` line out of its solution region (nbgrader replaces the region whole)
    to a ``# Hint:`` comment just above it, at the region's indentation."""
    lines, out = source.split("\n"), []
    for i, line in enumerate(lines):
        if line.strip().startswith(HINT):
            continue
        if line.strip() == BEGIN and i + 1 < len(lines) and lines[i + 1].strip().startswith(HINT):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# Hint: {lines[i + 1].strip()[len(HINT):].strip()}")
        out.append(line)
    return "\n".join(out)


def _grade_id(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "-", text)


def nbgrader_notebook(nb: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """An instructor notebook as an nbgrader source notebook: outputs cleared, cell metadata set.

    Raises ValueError when a check cell has no exercise cell above it, or an exercise is never checked.
    """
    source = nbformat.from_dict(nbformat.from_dict(nb))  # a deep copy
    source.metadata.pop("widgets", None)
    seen, checked = [], []
    for i, cell in enumerate(source.cells):
        name = exercise_name(cell.source) if cell.cell_type == "code" else None
        tested = checked_exercise(cell.source) if cell.cell_type == "code" else None
        if name is not None:
            meta = {"grade": False, "solution": True, "locked": False, "task": False, "grade_id": _grade_id(name)}
            cell.source = _hint_above_region(cell.source)
            seen.append(name)
        elif tested is not None:
            if tested not in seen:
                raise ValueError(f"{where} cell {i} checks {tested!r} before (or without) its exercise cell; "
                                 "put the check cell after the exercise.")
            meta = {"grade": True, "solution": False, "locked": True, "task": False,
                    "grade_id": _grade_id(f"check_{tested}"), "points": EXERCISES[tested].points}
            checked.append(tested)
        else:
            meta = {"grade": False, "solution": False, "locked": True, "task": False,
                    "grade_id": _grade_id(f"cell_{cell.get('id') or i}")}
        cell.metadata["nbgrader"] = meta | {"schema_version": SCHEMA_VERSION}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if sorted(seen) != sorted(checked):
        raise ValueError(f"{where}: exercises {sorted(set(seen) - set(checked))} have no check cell.")
    return source


def write_course(out: str | Path, timeout_s: int = 3600) -> list[Path]:
    """Write an nbgrader course folder at ``out`` (config and one source assignment per notebook
    with exercises); the notebooks written. Existing files there are replaced, others kept."""
    out = Path(out).resolve()
    written = []
    write_text(out / "nbgrader_config.py", CONFIG.format(root=str(out), timeout=int(timeout_s)))
    for path in instructor_notebooks():
        target = out / "source" / path.stem / path.name
        nb = nbgrader_notebook(nbformat.read(path, as_version=4), path.name)
        write_text(target, nbformat.writes(nb) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the course folder to write (e.g. build/nbgrader)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"out={str(args.out)!r} is a file; pass a folder for the course.")
    for target in write_course(args.out):
        print(f"wrote: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    print(f"next: cd {args.out} && nbgrader generate_assignment 03_loss (see README, 'For instructors')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
