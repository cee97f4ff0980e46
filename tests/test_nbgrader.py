"""The assignments as an nbgrader course: cell metadata, and nbgrader's own pipeline run on them.

The pipeline test needs nbgrader (the ``classroom`` extra, installed by ``make setup``) and runs
notebook 10 twice, which loads the standard run that ``make test`` prebuilds.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from prm_core.classroom import exercise_name, instructor_notebooks
from prm_core.exercise_checks import EXERCISES
from prm_core.nbgrader_course import checked_exercise, main, nbgrader_notebook, write_course

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "10_first_error"  # short to run once its standard run is cached


def _kinds(nb):
    meta = [c.metadata["nbgrader"] for c in nb.cells]
    return ([m for m in meta if m["solution"]], [m for m in meta if m["grade"]],
            [m for m in meta if m["locked"] and not m["grade"]])


@pytest.mark.parametrize("path", instructor_notebooks(), ids=lambda p: p.stem)
def test_every_cell_gets_nbgrader_metadata_and_each_check_the_exercise_points(path):
    instructor = nbformat.read(path, as_version=4)
    nb = nbgrader_notebook(instructor, path.name)
    solutions, tests, locked = _kinds(nb)
    names = [exercise_name(c.source) for c in instructor.cells if c.cell_type == "code" and exercise_name(c.source)]
    assert [m["grade_id"] for m in solutions] == names
    assert [(m["grade_id"], m["points"]) for m in tests] == [(f"check_{n}", EXERCISES[n].points) for n in names]
    assert len(solutions) + len(tests) + len(locked) == len(nb.cells)
    assert len({c.metadata["nbgrader"]["grade_id"] for c in nb.cells}) == len(nb.cells)  # ids are unique
    assert all(c.metadata["nbgrader"]["schema_version"] == 3 for c in nb.cells)
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    for cell in nb.cells:  # the hint survives nbgrader's stub, as a comment above the region
        if cell.metadata["nbgrader"]["solution"]:
            assert "### HINT:" not in cell.source and "# Hint: " in cell.source and "### BEGIN SOLUTION" in cell.source


def test_nbgrader_metadata_validates_against_nbgrader_schema():
    pytest.importorskip("nbgrader")
    from nbgrader.nbgraderformat import MetadataValidator, ValidationError

    validator = MetadataValidator()
    for path in instructor_notebooks():
        validator.validate_nb(nbgrader_notebook(nbformat.read(path, as_version=4), path.name))
    bad = nbgrader_notebook(nbformat.read(instructor_notebooks()[0], as_version=4))
    test_cell = next(c for c in bad.cells if c.metadata["nbgrader"]["grade"])
    del test_cell.metadata["nbgrader"]["points"]  # the validator does notice what we must get right
    with pytest.raises(ValidationError, match="does not have points"):
        validator.validate_nb(bad)


def test_a_check_before_its_exercise_or_an_unchecked_exercise_is_refused():
    ex = nbformat.v4.new_code_cell("# EXERCISE: my_keep_top\ndef my_keep_top(c, s, k):\n    ### BEGIN SOLUTION\n"
                                   "    return c[:k]\n    ### END SOLUTION")
    chk = nbformat.v4.new_code_cell('check("my_keep_top", my_keep_top)')
    with pytest.raises(ValueError, match="checks 'my_keep_top' before"):
        nbgrader_notebook(nbformat.v4.new_notebook(cells=[chk, ex]), "nb.ipynb")
    with pytest.raises(ValueError, match=r"\['my_keep_top'\] have no check cell"):
        nbgrader_notebook(nbformat.v4.new_notebook(cells=[ex]), "nb.ipynb")
    assert checked_exercise('from x import check\ncheck("my_keep_top", f)') == "my_keep_top"
    assert checked_exercise('print(1)') is None and checked_exercise("check(") is None


def test_course_cli_writes_config_and_one_source_folder_per_assignment(tmp_path, capsys):
    assert main([str(tmp_path / "course")]) == 0
    assert (tmp_path / "course" / "nbgrader_config.py").read_text().count("ExecutePreprocessor.timeout") == 1
    written = sorted(p.relative_to(tmp_path / "course").as_posix() for p in (tmp_path / "course").rglob("*.ipynb"))
    assert written == [f"source/{p.stem}/{p.name}" for p in instructor_notebooks()]
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "file")])
    assert "is a file" in capsys.readouterr().err


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # alembic
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                         text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


@pytest.mark.timeout(1900)
def test_nbgrader_generate_and_autograde_give_full_marks_to_the_instructor_and_zero_to_an_untouched_copy(tmp_path):
    pytest.importorskip("nbgrader", reason="install the classroom extra: pip install -e '.[classroom]'")
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    write_course(course)
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    release = course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    released = nbformat.read(release, as_version=4)
    assert "### BEGIN SOLUTION" not in nbformat.writes(released)
    assert sum("raise NotImplementedError()" in c.source for c in released.cells) == 2
    for student, notebook in (("instructor", course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
                              ("untouched", release)):
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder / notebook.name)
    _nbgrader(course, "autograde", ASSIGNMENT, "--create")
    points = sum(e.points for e in EXERCISES.values() if e.notebook == ASSIGNMENT)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        instructor = gradebook.find_submission(ASSIGNMENT, "instructor")
        untouched = gradebook.find_submission(ASSIGNMENT, "untouched")
        assert (instructor.score, instructor.max_score) == (points, points)
        assert (untouched.score, untouched.max_score) == (0, points)
