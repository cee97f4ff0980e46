"""The autograder against a student who games it, and against honest answers it used to fail.

Each case of issue 14 is a test here: a deleted or hidden exercise, a float64 answer, an endless
loop, a cell that patches the checker, and every way out of the student's code (sys.exit, SystemExit,
KeyboardInterrupt, os._exit). The grader must fail exactly that exercise, say why, and exit non-zero.
"""

import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.classroom import exercise_name, grade_notebook, main, student_notebook
from prm_core.exercise_checks import EXERCISES, ExerciseFailed, difference, exercises_of, run_check
from prm_core.grading import from_wire, grade_source, refused, to_wire

ROOT = Path(__file__).resolve().parent.parent
NB10 = ROOT / "exercises" / "10_first_error.ipynb"
SOLVED_FIRST_ERROR = (
    "def my_first_error_index(step_scores, threshold):\n"
    "    return next((i for i, s in enumerate(step_scores) if s < threshold), -1)\n"
)


def _copy_with(tmp_path, edit, source=NB10, name="homework.ipynb"):
    """A copy of a student notebook, ``edit(nb)`` applied, written to ``tmp_path / name``."""
    nb = nbformat.read(source, as_version=4)
    edit(nb)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _set_exercise(name, source):
    def edit(nb):
        cell = next(c for c in nb.cells if exercise_name(c.source) == name)
        cell.source = source
    return edit


def _by_name(grade):
    return {r.name: r for r in grade.results}


# ---------------------------------------------------------------- the exercises a notebook must hold


def test_a_deleted_exercise_cell_is_missing_with_zero_points_and_a_failing_exit(tmp_path, capsys):
    solved = _set_exercise("my_first_error_index", "# EXERCISE: my_first_error_index\n" + SOLVED_FIRST_ERROR)

    def delete_f1(nb):
        solved(nb)
        nb.cells = [c for c in nb.cells if exercise_name(c.source) != "my_processbench_f1"]

    path = _copy_with(tmp_path, delete_f1)
    assert main(["grade", str(path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"MISSING +my_processbench_f1 +0/1 +missing: no code cell has the line "
                     r"'# EXERCISE: my_processbench_f1'", out)
    assert re.search(r"PASS +my_first_error_index +1/1", out)
    assert "Score: 1/2 exercises, 1/2 points (50%)" in out


def test_a_marker_below_comments_and_blank_lines_is_still_found(tmp_path):
    hidden = "# my attempt, v2\n\n# EXERCISE: my_first_error_index\n" + SOLVED_FIRST_ERROR
    grade = grade_notebook(_copy_with(tmp_path, _set_exercise("my_first_error_index", hidden)))
    assert _by_name(grade)["my_first_error_index"].status == "passed"
    broken = "# a comment first\n# EXERCISE: my_first_error_index\ndef my_first_error_index(s, t):\n    return 0\n"
    result = _by_name(grade_notebook(_copy_with(tmp_path, _set_exercise("my_first_error_index", broken))))
    assert result["my_first_error_index"].status == "failed"  # found, so graded, and wrong


def test_a_renamed_marker_fails_the_exercise_and_notes_the_unknown_name(tmp_path):
    renamed = "# EXERCISE: my_first_error_idx\n" + SOLVED_FIRST_ERROR
    grade = grade_notebook(_copy_with(tmp_path, _set_exercise("my_first_error_index", renamed)))
    assert _by_name(grade)["my_first_error_index"].status == "missing" and not grade.passed
    assert len(grade.notes) == 1 and "my_first_error_idx" in grade.notes[0] and "not graded" in grade.notes[0]


def test_an_exercise_marked_in_two_cells_fails_naming_both(tmp_path):
    def duplicate(nb):
        cell = next(c for c in nb.cells if exercise_name(c.source) == "my_first_error_index")
        nb.cells.append(nbformat.v4.new_code_cell("# EXERCISE: my_first_error_index\n" + SOLVED_FIRST_ERROR))
        cell.source = "# EXERCISE: my_first_error_index\n" + SOLVED_FIRST_ERROR

    result = _by_name(grade_notebook(_copy_with(tmp_path, duplicate)))["my_first_error_index"]
    assert result.points == 0 and re.search(r"marked in 2 cells \(\d+, \d+\); keep one", result.message)


def test_an_unreadable_notebook_fails_every_exercise_of_its_assignment(tmp_path, capsys):
    path = tmp_path / "10_first_error.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    assert main(["grade", str(path), "--json", str(tmp_path / "r.json")]) == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in report["results"]] == [e.name for e in exercises_of("10_first_error")]
    assert all(r["points"] == 0 and "could not be read" in r["message"] for r in report["results"])


def test_the_assignment_comes_from_metadata_then_file_name_then_the_exercises_and_else_asks(tmp_path, capsys):
    def drop_metadata(nb):
        nb.metadata.pop("prm_course", None)

    assert grade_notebook(_copy_with(tmp_path, lambda nb: None, name="x.ipynb")).assignment == "10_first_error"
    by_file = _copy_with(tmp_path, drop_metadata, name="10_first_error-alice.ipynb")
    assert grade_notebook(by_file).assignment == "10_first_error"
    by_cells = _copy_with(tmp_path, drop_metadata, name="homework.ipynb")
    assert grade_notebook(by_cells).assignment == "10_first_error"
    nothing = _copy_with(tmp_path, lambda nb: (drop_metadata(nb), nb.cells.clear()), name="empty.ipynb")
    assert main(["grade", str(nothing)]) == 2
    assert "pass --assignment" in capsys.readouterr().err
    graded = grade_notebook(nothing, assignment="03_loss")  # the instructor says which: all missing
    assert graded.assignment == "03_loss" and {r.status for r in graded.results} == {"missing"}
    with pytest.raises(ValueError, match="assignment='99_nothing' is not one"):
        grade_notebook(nothing, assignment="99_nothing")


# ---------------------------------------------------------------- fair comparisons


def test_a_float64_masked_bce_passes_and_an_integer_one_is_told_its_dtype():
    float64 = ("import torch.nn.functional as F\ndef my_masked_step_bce(logits, labels, mask):\n"
               "    return F.binary_cross_entropy_with_logits(logits[mask].double(), labels[mask].double())\n")
    assert grade_source("my_masked_step_bce", float64).status == "passed"
    as_int = float64.replace(".double())\n", ".double()).long()\n")
    result = grade_source("my_masked_step_bce", as_int)
    assert result.status == "failed"
    assert "dtype torch.int64 where a floating dtype such as torch.float32 is expected" in result.message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tolerance_is_the_same_for_every_float_dtype(dtype):
    want = torch.tensor([0.5, 1.0])
    assert difference(torch.tensor([0.5 + 5e-6, 1.0], dtype=dtype), want) is None
    why = difference(torch.tensor([0.625, 1.0], dtype=dtype), want)
    assert why.startswith("values differ at index [0]: 0.625 where 0.5 is expected")


def test_difference_names_shape_type_and_half_precision():
    want = torch.zeros(2, 3)
    assert difference(torch.zeros(3, 2), want) == "shape (3, 2) where (2, 3) is expected"
    assert difference(np.zeros((2, 3)), want).startswith("a numpy.ndarray where a torch.Tensor is expected")
    assert "keeps about 3 significant digits" in difference(torch.full((2, 3), 1e-3, dtype=torch.float16), want)
    assert difference(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool)).startswith("dtype torch.float32 where torch.bool")
    assert difference(torch.tensor(0.5), 0.5).startswith("a torch.Tensor where a Python float is expected")
    assert difference(np.float32(0.5), 0.5) is None and difference(True, 1.0) == "a bool where a float is expected"
    assert difference((torch.zeros(1), torch.ones(1)), (torch.zeros(1), torch.zeros(1))).startswith("item 1: values differ")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=6))
def test_a_float32_answer_and_its_float64_twin_get_the_same_verdict(values):
    """Property: the verdict depends on the values, not on the float width they are given in."""
    want = torch.tensor(values, dtype=torch.float32)
    nudged = want.double() * (1 + 3e-6)
    assert (difference(nudged, want) is None) == (difference(nudged.float(), want) is None)
    assert difference(want.double(), want) is None


# ---------------------------------------------------------------- the student's code is kept apart


def test_an_endless_loop_times_out_that_exercise_only(tmp_path):
    looping = "# EXERCISE: my_first_error_index\ndef my_first_error_index(s, t):\n    while True:\n        pass\n"
    solved_f1 = ("# EXERCISE: my_processbench_f1\ndef my_processbench_f1(pred, true):\n"
                 "    err = [p == t for p, t in zip(pred, true) if t != -1]\n"
                 "    ok = [p == t for p, t in zip(pred, true) if t == -1]\n"
                 "    a, b = sum(err) / len(err), sum(ok) / len(ok)\n"
                 "    return 0.0 if a + b == 0 else 2 * a * b / (a + b)\n")

    def edit(nb):
        _set_exercise("my_first_error_index", looping)(nb)
        _set_exercise("my_processbench_f1", solved_f1)(nb)

    grade = grade_notebook(_copy_with(tmp_path, edit), timeout=10)
    by_name = _by_name(grade)
    assert by_name["my_first_error_index"].status == "timeout" and "within 10 s" in by_name["my_first_error_index"].message
    assert by_name["my_processbench_f1"].status == "passed"


@pytest.mark.parametrize("cell", [
    # patch the checker the grader would use, reached without naming prm_core in an import
    "import importlib, sys\nm = importlib.import_module('prm_' + 'core.exercise_checks')\n"
    "m.difference = lambda got, want: None\nm.run_check = lambda *a, **k: 99\n"
    "def my_first_error_index(s, t):\n    return 0\n",
    # replace the cases with ones the wrong answer gets right
    "import sys\nm = sys.modules['prm_' + 'core.exercise_checks']\n"
    "object.__setattr__(m.EXERCISES['my_first_error_index'], 'cases', lambda rng: iter([([0.1], 0.5)]))\n"
    "def my_first_error_index(s, t):\n    return 0\n",
], ids=["patched-difference", "patched-cases"])
def test_a_cell_that_patches_the_checker_still_fails(cell):
    result = grade_source("my_first_error_index", "# EXERCISE: my_first_error_index\n" + cell)
    assert result.status == "failed" and result.points == 0
    assert "the exercise cell failed to run" in result.message and "(cell line 3)" in result.message


@pytest.mark.parametrize("cell", [
    "import importlib\ndef my_first_error_index(s, t):\n"
    "    return importlib.import_module('prm_' + 'core.metrics').first_error_index(s, t)\n",
    "import sys\ndef my_first_error_index(s, t):\n    return sys.modules['prm_' + 'core.metrics'].first_error_index(s, t)\n",
    "import importlib.util\nspec = importlib.util.find_spec('prm_' + 'core')\n"
    "def my_first_error_index(s, t):\n    return -1\n",
    # take the import block away first: prm_core is not on this worker's path at all
    "import sys, importlib\nsys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_NoLibrary']\n"
    "my_first_error_index = importlib.import_module('prm_' + 'core.metrics').first_error_index\n",
], ids=["importlib", "sys.modules", "find_spec", "no-import-block"])
def test_a_cell_cannot_reach_the_reference_it_is_checked_against(cell):
    result = grade_source("my_first_error_index", cell)
    assert result.status == "failed" and result.points == 0
    assert re.search(r"(ImportError: prm_core is not available|KeyError: 'prm_core.metrics'|"
                     r"No module named 'prm_core')", result.message), result.message


def test_no_worker_has_the_module_of_its_exercise_s_answer_loaded(tmp_path):
    """Every exercise's worker, asked what it has loaded: only the modules its arguments need."""
    answers = {"prm_core.metrics", "prm_core.losses", "prm_core.aggregation", "prm_core.voting", "prm_core.search",
               "prm_core.rl", "prm_core.labeling", "prm_core.exercise_checks", "prm_core.grading", "prm_core.training"}

    def spy(name):
        out = tmp_path / f"{name}.json"
        return (f"import json, sys\njson.dump(sorted(m for m in sys.modules if m.startswith('prm_' + 'core')), "
                f"open({str(out)!r}, 'w'))\ndef {name}(*args):\n    raise NotImplementedError('spying')\n")

    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(EXERCISES, pool.map(lambda name: grade_source(name, spy(name)), EXERCISES), strict=True))
    for name, result in results.items():
        assert result.status == "not_implemented", (name, result.message)
        loaded = set(json.loads((tmp_path / f"{name}.json").read_text()))
        assert not loaded & answers, (name, loaded & answers)
    for name in ("my_step_logits", "my_prm_forward"):  # gather_step_hidden, head_logits, ProcessRewardModel.forward
        assert "prm_core.model" not in json.loads((tmp_path / f"{name}.json").read_text()), name
    assert "prm_core.model" in json.loads((tmp_path / "my_training_step.json").read_text())  # it needs prm(**batch)


def test_a_forged_report_is_not_taken_for_the_worker_s(tmp_path):
    forged = ("import json, os, sys\ndef my_first_error_index(s, t):\n"
              "    json.dump({'status': 'ran', 'outputs': [1] * 23}, open(sys.argv[3], 'w'))\n    os._exit(0)\n")
    result = grade_source("my_first_error_index", forged)
    assert result.status == "crashed" and result.points == 0 and "before its answers were all reported" in result.message


@pytest.mark.parametrize("forgery", [
    "import os, sys\nos.mkfifo(sys.argv[3])\nos._exit(0)\n",  # a report that would block a reader for good
    "import os, sys\nopen(sys.argv[3], 'w').write('[' * 200000)\nos._exit(0)\n",  # too deep for json
    "import os, sys\nos.symlink('/dev/zero', sys.argv[3])\nos._exit(0)\n",  # endless
], ids=["fifo", "deep", "dev-zero"])
def test_a_report_the_cell_made_crashes_only_its_exercise(forgery):
    result = grade_source("my_first_error_index", forgery, timeout=20)
    assert result.status == "crashed" and result.points == 0


def test_a_message_from_the_cell_cannot_forge_lines_of_the_printout():
    spoof = ("def my_first_error_index(s, t):\n    raise NotImplementedError('\\r\\x1b[2K  PASS    my_first_error_index 1/1'"
             " + '\\nScore: 2/2 exercises' + 'x' * 100000)\n")
    result = grade_source("my_first_error_index", spoof)
    assert result.status == "not_implemented" and "\n" not in result.message and "\x1b" not in result.message
    assert len(result.message) <= 1200


def test_an_answer_that_cannot_be_sent_back_fails_with_a_reason():
    cell = "def my_first_error_index(s, t):\n    x = []\n    x.append(x)\n    return x\n"
    result = grade_source("my_first_error_index", cell)
    assert result.status == "failed" and "could not be sent back (RecursionError)" in result.message


def test_a_cell_that_kills_its_parent_does_not_reach_the_grader(tmp_path, capsys):
    kill = "import os, signal\ndef my_first_error_index(s, t):\n    os.kill(os.getppid(), signal.SIGKILL)\n"
    path = _copy_with(tmp_path, _set_exercise("my_first_error_index", "# EXERCISE: my_first_error_index\n" + kill))
    assert main(["grade", str(path), "--json", str(tmp_path / "r.json")]) == 1  # this process is still here
    results = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert results["my_first_error_index"]["status"] == "crashed" and "signal 9" in results["my_first_error_index"]["message"]
    assert results["my_processbench_f1"]["status"] == "not_implemented"


def test_a_process_that_leaves_the_session_does_not_hang_the_grader():
    stray = ("import subprocess, sys\n"
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(40)'], start_new_session=True)\n"
             "def my_first_error_index(s, t):\n    while True:\n        pass\n")
    start = time.monotonic()
    result = grade_source("my_first_error_index", stray, timeout=8)
    assert result.status == "timeout"
    assert time.monotonic() - start < 30  # a grader that waited on the stray's output would take 40 s


def test_a_huge_or_strange_answer_fails_only_its_exercise(tmp_path, capsys):
    huge = "def my_processbench_f1(pred, true):\n    return 10 ** 400\n"
    odd = "def my_first_error_index(s, t):\n    return object()\n"

    def edit(nb):
        _set_exercise("my_processbench_f1", "# EXERCISE: my_processbench_f1\n" + huge)(nb)
        _set_exercise("my_first_error_index", "# EXERCISE: my_first_error_index\n" + odd)(nb)

    assert main(["grade", str(_copy_with(tmp_path, edit))]) == 1
    out = capsys.readouterr().out
    assert re.search(r"FAIL +my_processbench_f1 +0/1 .*returned <an int of about 401 digits>; expected 1.0", out), out
    assert re.search(r"FAIL +my_first_error_index 0/1 .*returned <a object>.*a object cannot be an answer", out), out
    assert "prm_core" not in out and "Score: 0/2 exercises" in out


def test_a_cell_that_takes_too_much_memory_fails_with_the_reason():
    greedy = "def my_first_error_index(s, t):\n    block = bytearray(3 * 2**30)\n    return -1\n"
    result = grade_source("my_first_error_index", greedy, memory_mb=2048)
    assert result.status == "failed" and "MemoryError" in result.message and "out of memory" in result.message
    with pytest.raises(ValueError, match="memory_mb=100 must be 0"):
        grade_notebook(NB10, memory_mb=100)


def test_a_cell_that_imports_prm_core_is_refused_without_running():
    for cell in ("from prm_core.metrics import first_error_index as my_first_error_index",
                 "import prm_core.metrics\nmy_first_error_index = prm_core.metrics.first_error_index",
                 "import importlib\nmy_first_error_index = importlib.import_module('prm_core.metrics').first_error_index"):
        result = grade_source("my_first_error_index", cell)
        assert result.status == "failed" and "uses prm_core" in result.message, cell
    assert refused("import numpy as np\ndef f():\n    return np.zeros(1)") is None


ESCAPES = {
    "sys.exit(0) in the cell": ("import sys\nsys.exit(0)\n", "crashed", "failed to run: SystemExit: 0"),
    "SystemExit(0) in the function": ("def my_first_error_index(s, t):\n    raise SystemExit(0)\n", "crashed",
                                      "raised SystemExit: 0"),
    "KeyboardInterrupt in the function": ("def my_first_error_index(s, t):\n    raise KeyboardInterrupt\n",
                                          "crashed", "raised KeyboardInterrupt"),
    "os._exit(0) in the function": ("import os\ndef my_first_error_index(s, t):\n    os._exit(0)\n", "crashed",
                                    "process ended (exit code 0) before its answers were all reported"),
    "a segfault-like kill": ("import os, signal\ndef my_first_error_index(s, t):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
                             "crashed", "process ended (signal 9)"),
    "a RuntimeError in the cell": ("raise RuntimeError('boom')\n", "failed", "failed to run: RuntimeError: boom (cell line 2)"),
    "a name that is not a function": ("my_first_error_index = 3\n", "failed", "is int, not a function"),
}


@pytest.mark.parametrize("body", list(ESCAPES.values()), ids=list(ESCAPES))
def test_every_escape_from_student_code_fails_that_exercise_with_the_reason(tmp_path, capsys, body):
    source, status, message = body

    def edit(nb):
        _set_exercise("my_first_error_index", "# EXERCISE: my_first_error_index\n" + source)(nb)

    path = _copy_with(tmp_path, edit)
    assert main(["grade", str(path), "--json", str(tmp_path / "r.json")]) == 1  # never a silent exit 0
    results = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert results["my_first_error_index"]["status"] == status and results["my_first_error_index"]["points"] == 0
    assert message in results["my_first_error_index"]["message"]
    assert results["my_processbench_f1"]["status"] == "not_implemented"  # graded on, untouched by the escape
    assert "Score: 0/2 exercises, 0/2 points (0%)" in capsys.readouterr().out


def test_what_the_student_code_printed_before_crashing_is_in_the_message():
    cell = "import os\ndef my_first_error_index(s, t):\n    print('about to leave')\n    os._exit(3)\n"
    result = grade_source("my_first_error_index", cell)
    assert "exit code 3" in result.message and "Its last output: about to leave" in result.message


# ---------------------------------------------------------------- points and machine-readable results


def test_json_report_has_name_points_max_points_status_message_and_totals(tmp_path, capsys):
    out = tmp_path / "deep" / "grades.json"
    assert main(["grade", str(ROOT / "notebooks" / "02_architecture.ipynb"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [set(r) for r in report["results"]] == [{"name", "points", "max_points", "status", "message"}] * 4
    assert report["points"] == report["max_points"] == sum(e.points for e in exercises_of("02_architecture")) == 6
    assert "Score: 4/4 exercises, 6/6 points (100%)" in capsys.readouterr().out


def test_metadata_that_contradicts_the_file_name_is_noted(tmp_path):
    def claim_another(nb):
        nb.metadata["prm_course"] = {"assignment": "10_first_error"}

    path = _copy_with(tmp_path, claim_another, source=ROOT / "exercises" / "03_loss.ipynb", name="03_loss-alice.ipynb")
    grade = grade_notebook(path)
    assert grade.assignment == "10_first_error" and any("file name says 03_loss" in n for n in grade.notes)
    assert grade_notebook(path, assignment="03_loss").notes == []


def test_an_unwritable_json_path_is_refused_before_grading(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    for target, says in ((tmp_path / "a-file" / "r.json", "is a file, not a folder"), (tmp_path, "is a folder")):
        assert main(["grade", str(NB10), "--json", str(target)]) == 2
        err = capsys.readouterr()
        assert says in err.err and "--json" in err.err and "Grading" not in err.out


def test_bad_timeout_and_jobs_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="timeout=0 must be a positive number"):
        grade_notebook(NB10, timeout=0)
    with pytest.raises(ValueError, match="timeout=nan"):
        grade_notebook(NB10, timeout=math.nan)
    with pytest.raises(ValueError, match="jobs=0 must be an integer >= 1"):
        grade_notebook(NB10, jobs=0)


def test_every_registered_exercise_is_worth_a_positive_whole_number_of_points():
    assert all(isinstance(e.points, int) and e.points >= 1 for e in EXERCISES.values())
    assert {e.name for e in EXERCISES.values() if e.points > 1} >= {"my_step_logits", "my_prm_forward", "my_training_step"}


# ---------------------------------------------------------------- hints nudge, they do not answer


def _solution_and_hint(source):
    lines = source.split("\n")
    begin = next(i for i, line in enumerate(lines) if line.strip() == "### BEGIN SOLUTION")
    end = next(i for i, line in enumerate(lines) if line.strip() == "### END SOLUTION")
    hint = next(line.strip()[len("### HINT:"):].strip() for line in lines[begin:end] if "### HINT:" in line)
    body = [line.strip() for line in lines[begin + 1:end] if "### HINT:" not in line]
    return body, hint


def _instructor_exercise_cells():
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and exercise_name(cell.source):
                yield exercise_name(cell.source), cell.source


def test_no_hint_contains_a_line_or_expression_of_its_solution():
    cells = list(_instructor_exercise_cells())
    assert len(cells) == len(EXERCISES)
    for name, source in cells:
        body, hint = _solution_and_hint(source)
        assert 30 <= len(hint) <= 200, (name, hint)
        code_in_hint = hint.replace(" ", "")
        for line in body:
            fragment = line.replace(" ", "")
            assert len(fragment) < 12 or fragment not in code_in_hint, (name, line)
            windows = {fragment[i:i + 20] for i in range(max(0, len(fragment) - 19))}
            assert not any(w in code_in_hint for w in windows if set(w) & set("([=,")), (name, line)


def test_the_hints_that_handed_over_the_answer_now_nudge():
    hints = {name: _solution_and_hint(source)[1] for name, source in _instructor_exercise_cells()}
    assert not ("logits[mask]" in hints["my_masked_step_bce"] and "with_logits" in hints["my_masked_step_bce"])
    assert "any()" not in hints["my_monte_carlo_label"] and "sum / len" not in hints["my_monte_carlo_label"]


# ---------------------------------------------------------------- the exercises on the model itself


def test_model_exercises_fail_the_usual_mistakes(tmp_path):
    import torch.nn.functional as F

    def no_zero_grad(prm, batch, optimizer):
        mask = batch["label_mask"]
        loss = F.binary_cross_entropy_with_logits(prm(**batch).logits[mask], batch["labels"][mask])
        loss.backward()
        optimizer.step()
        return loss.item()

    with pytest.raises(ExerciseFailed, match="after the step: values differ"):
        run_check(EXERCISES["my_training_step"], no_zero_grad)

    def every_step_label(prm, batch, optimizer):  # ignores label_mask: unlabelled steps count as 0
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(prm(**batch).logits, batch["labels"])
        loss.backward()
        optimizer.step()
        return loss.item()

    with pytest.raises(ExerciseFailed, match="the returned loss"):  # the cases' padded steps count
        run_check(EXERCISES["my_training_step"], every_step_label)

    def unmasked_forward(prm, batch):
        hidden = prm.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        index = batch["step_positions"].clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return prm.head(hidden.gather(1, index)).squeeze(-1)  # padded steps keep a logit

    with pytest.raises(ExerciseFailed, match="values differ"):
        run_check(EXERCISES["my_prm_forward"], unmasked_forward)

    def last_token(hidden, step_positions, head):  # reads the last token for every step
        return head(hidden[:, -1:, :].expand(-1, step_positions.shape[1], -1)).squeeze(-1)

    with pytest.raises(ExerciseFailed):
        run_check(EXERCISES["my_step_logits"], last_token)


def test_model_exercise_references_are_the_model_itself():
    from prm_core.exercise_checks import _model_case

    prm, batch = _model_case(3, 3, 8)
    want = EXERCISES["my_prm_forward"].reference(prm, batch)
    hidden = prm.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.equal(want, prm(**batch).logits.detach())
    assert torch.allclose(EXERCISES["my_step_logits"].reference(hidden, batch["step_positions"], prm.head), want)
    assert (batch["step_positions"] < 0).any()  # the case has padding to get wrong


# ---------------------------------------------------------------- values cross the process boundary as data


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.text(max_size=5))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                       st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                      max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_to_wire_round_trips_plain_values_exactly(value):
    back = from_wire(json.loads(json.dumps(to_wire(value))))
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize("value", [
    torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16), torch.arange(6, dtype=torch.int32).reshape(2, 3),
    torch.tensor([True, False]), torch.zeros(0, 4), torch.tensor(3.25, dtype=torch.float64),
    np.array([[1, 2]], dtype=np.int16), np.float32(0.1), np.bool_(True), float("nan"), float("-inf"),
])
def test_to_wire_round_trips_tensors_arrays_and_special_floats(value):
    back = from_wire(json.loads(json.dumps(to_wire(value))))
    assert type(back) is type(value)
    if isinstance(value, torch.Tensor):
        assert back.dtype == value.dtype and back.shape == value.shape and torch.equal(back, value)
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert np.array_equal(back, value) and np.asarray(back).dtype == np.asarray(value).dtype


def test_an_object_the_wire_cannot_carry_is_never_a_right_answer():
    class Liar:
        def __eq__(self, other):
            return True

    back = from_wire(to_wire(Liar()))
    assert difference(back, 1.0) is not None and difference(back, [1]) is not None
    assert repr(back) == "<a Liar>"


def test_student_copies_name_their_assignment_in_metadata():
    nb = student_notebook(nbformat.read(ROOT / "notebooks" / "03_loss.ipynb", as_version=4), "03_loss.ipynb")
    assert nb.metadata["prm_course"] == {"assignment": "03_loss"}
    assert nbformat.read(ROOT / "exercises" / "03_loss.ipynb", as_version=4).metadata["prm_course"] == {"assignment": "03_loss"}
