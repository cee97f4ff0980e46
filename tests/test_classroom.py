"""Student notebooks generated from the instructor's, and the autograder that checks them."""

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from prm_core.classroom import (
    exercise_name,
    grade_notebook,
    main,
    make_exercises,
    strip_solutions,
    student_notebook,
)
from prm_core.exercise_checks import EXERCISES, ExerciseFailed, check, exercises_of, run_check

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTOR = {p.stem: p for p in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))}
STUDENT = sorted((ROOT / "exercises").glob("[0-9]*.ipynb"))
WITH_EXERCISES = [f"{n:02d}" for n in range(2, 11)]  # notebooks 02 to 10


def _exercises_in(path):
    return [exercise_name(c.source) for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "code" and exercise_name(c.source)]


def test_every_notebook_from_02_to_10_has_at_least_two_exercises_and_each_is_registered():
    for prefix in WITH_EXERCISES:
        stem = next(s for s in INSTRUCTOR if s.startswith(prefix))
        names = _exercises_in(INSTRUCTOR[stem])
        assert len(names) >= 2, f"{stem} has {names}"
        assert all(EXERCISES[n].notebook == stem for n in names)
    assert sorted(n for p in INSTRUCTOR.values() for n in _exercises_in(p)) == sorted(EXERCISES)


def test_exercises_folder_is_up_to_date_with_notebooks():
    stale = make_exercises(check_only=True)
    assert not stale, f"run `make exercises` and commit: {[p.name for p in stale]} are out of date"
    assert [p.name for p in STUDENT] == [f"{s}.ipynb" for s in INSTRUCTOR if _exercises_in(INSTRUCTOR[s])]


@pytest.mark.parametrize("stem", [s for s in INSTRUCTOR if _exercises_in(INSTRUCTOR[s])])
def test_instructor_notebook_gets_full_marks(stem):
    grade = grade_notebook(INSTRUCTOR[stem])
    assert grade.assignment == stem and [r.name for r in grade.results] == [e.name for e in exercises_of(stem)]
    assert grade.passed and grade.points == grade.max_points > 0, [r.message for r in grade.results if not r.passed]


@pytest.mark.parametrize("path", STUDENT, ids=[p.stem for p in STUDENT])
def test_untouched_exercise_notebook_fails_every_check_with_its_hint(path):
    grade = grade_notebook(path)
    assert len(grade.results) == len(_exercises_in(path)) >= 2 and grade.points == 0 < grade.max_points
    for r in grade.results:
        assert r.status == "not_implemented" and r.message.startswith("not implemented yet. Hint: ")
        assert len(r.message) > 40


def _bound_at_top(tree):
    """Names a cell's top-level statements bind (def, class, import, assignment targets)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _is_check_of(node, name):
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "check"
            and [getattr(a, "value", None) for a in node.value.args[:1]] == [name])


def _run_problems(teacher, student):
    """Why a top-to-bottom run of the student cells would not raise exactly one NotImplementedError per
    exercise, given that the teacher cells run (code-cell sources, in order); [] when it would.

    Exercise cells may only define (def, class, import), so running one raises nothing. Any other cell
    must equal the instructor's and may reach an exercise's functions only through ``check(name, ...)``
    after the exercise, as the first statement of its cell that names one: that call raises, so what
    follows it in the cell never runs, and no later cell may use a name only those statements bind.
    """
    if len(teacher) != len(student):
        return [f"{len(student)} code cells, the instructor's notebook has {len(teacher)}"]
    trees = [ast.parse(s) for s in student]
    owner = {n.name: exercise_name(s) for s, tree in zip(student, trees, strict=True) if exercise_name(s)
             for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}  # the stubbed functions
    problems, checked, defined, skipped = [], [], [], set()
    for i, (t, s, tree) in enumerate(zip(teacher, student, trees, strict=True)):
        name = exercise_name(s)
        if name is not None:
            defined.append(name)
            if _bound_at_top(tree) != _bound_at_top(ast.parse(t)):
                problems.append(f"cell {i} ({name}) binds other top-level names than the instructor's")
            if any(not isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)) for n in tree.body):
                problems.append(f"cell {i} ({name}) runs code besides its definitions")
            continue
        if s != t:
            problems.append(f"cell {i} is not an exercise but differs from the instructor's")
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        if loads & skipped:
            problems.append(f"cell {i} uses {sorted(loads & skipped)}, bound only after a check() that raises")
        for k, node in enumerate(tree.body):
            used = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in owner})
            if not used:
                continue
            if len(used) == 1 and _is_check_of(node, owner[used[0]]) and owner[used[0]] in defined:
                checked.append(owner[used[0]])
                skipped |= set().union(*(_bound_at_top(ast.Module(body=[n], type_ignores=[])) for n in tree.body[k + 1:]))
            else:
                problems.append(f"cell {i} uses the student's {used} outside check(): {ast.unparse(node)[:120]}")
            break
    if sorted(checked) != sorted(defined):
        problems.append(f"exercises {sorted(defined)} are checked by {sorted(checked)}")
    return problems


def _code(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("stem", [p.stem for p in STUDENT])
def test_exercise_notebook_runs_like_the_instructor_one_but_for_its_checks(stem):
    """A top-to-bottom run of the student notebook, read from its code (the run itself is `make
    test-exercises`, the notebooks' whole cost again): the instructor notebook runs (nbval), the student
    one differs only inside its exercise cells, and a later cell first reaches an exercise's functions
    through ``check(name, ...)``, which raises NotImplementedError: one error per exercise."""
    assert _run_problems(_code(INSTRUCTOR[stem]), _code(ROOT / "exercises" / f"{stem}.ipynb")) == []


def test_run_problems_finds_each_way_a_student_notebook_would_break():
    teacher = ["# EXERCISE: my_f\ndef my_f(x):\n    return x + 1", "check(\"my_f\", my_f)\nprint(my_f(1))", "y = 2"]
    student = [strip_solutions("# EXERCISE: my_f\ndef my_f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n"
                               "    ### END SOLUTION"), teacher[1], teacher[2]]
    assert _run_problems(teacher, student) == []
    used_later = _run_problems(teacher + ["z = my_f(3)"], student + ["z = my_f(3)"])
    assert len(used_later) == 1 and "uses the student's ['my_f'] outside check()" in used_later[0]
    assert "differs" in _run_problems(teacher, student[:2] + ["y = 3"])[0]
    assert "checked by []" in _run_problems(teacher[:1] + teacher[2:], student[:1] + student[2:])[0]
    assert "other top-level names" in _run_problems(
        teacher, ["# EXERCISE: my_f\nraise NotImplementedError('x')", *teacher[1:]])[0]
    demo = ["# EXERCISE: my_f\ndef my_f(x):\n    return x + 1\nprint(my_f(1))"]  # a call in the exercise cell
    assert any("runs code" in p for p in _run_problems(demo + teacher[1:], [strip_solutions(demo[0])] + student[1:]))
    late = ["check(\"my_f\", my_f)\nTABLE = [1, 2]", "print(TABLE)"]  # bound after the raising check
    assert any("bound only after a check()" in p
               for p in _run_problems(teacher[:1] + late, student[:1] + late))
    helper = ["def helper(x):\n    return my_f(x) * 2"]  # defined before the exercise, called after
    assert any("outside check()" in p for p in _run_problems(helper + teacher, helper + student))


@pytest.mark.exercise_run
@pytest.mark.timeout(2400)  # cold, notebook 14 trains its RL runs in one cell
@pytest.mark.parametrize("path", STUDENT, ids=[p.stem for p in STUDENT])
def test_exercise_notebook_runs_top_to_bottom_with_only_not_implemented_errors(path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=2000, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert {e.ename for e in errors} == {"NotImplementedError"}
    assert len(errors) == len(_exercises_in(path))  # each exercise's check cell, and nothing else
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")


def test_grader_scores_a_student_copy_anywhere_on_disk(tmp_path, capsys):
    copy = tmp_path / "homework" / "my_03.ipynb"
    copy.parent.mkdir()
    shutil.copy(ROOT / "exercises" / "03_loss.ipynb", copy)
    nb = nbformat.read(copy, as_version=4)
    solved = next(c for c in nbformat.read(INSTRUCTOR["03_loss"], as_version=4).cells
                  if exercise_name(c.source) == "my_mask_after_first_error")
    for cell in nb.cells:
        if exercise_name(cell.source) == "my_mask_after_first_error":
            cell.source = solved.source
    nbformat.write(nb, copy)
    assert main(["grade", str(copy)]) == 1  # one of two still fails
    out = capsys.readouterr().out
    assert "(assignment 03_loss)" in out  # from the copy's metadata: its file name says nothing
    assert re.search(r"PASS +my_mask_after_first_error +1/1", out) and re.search(r"FAIL +my_masked_step_bce +0/1", out)
    assert "Score: 1/2 exercises, 1/2 points (50%)" in out


def test_grader_exits_zero_on_full_marks_and_two_on_a_missing_file(capsys):
    assert main(["grade", str(INSTRUCTOR["10_first_error"])]) == 0
    assert "Score: 2/2 exercises, 2/2 points (100%)" in capsys.readouterr().out
    assert main(["grade", "/nowhere/03_loss.ipynb"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_grader_reports_a_wrong_answer_with_the_input_and_both_values(tmp_path):
    nb = nbformat.read(ROOT / "exercises" / "10_first_error.ipynb", as_version=4)
    for cell in nb.cells:
        if exercise_name(cell.source) == "my_first_error_index":
            cell.source = "# EXERCISE: my_first_error_index\ndef my_first_error_index(step_scores, threshold):\n    return 0\n"
        if exercise_name(cell.source) == "my_processbench_f1":
            cell.source = "# EXERCISE: my_processbench_f1\ndef my_processbench_f1(pred, true)\n    return 1.0\n"
    path = tmp_path / "wrong.ipynb"
    nbformat.write(nb, path)
    by_name = {r.name: r for r in grade_notebook(path).results}
    assert by_name["my_first_error_index"].message == "my_first_error_index([0.9, 0.3, 0.1], 0.5) returned 0; expected 1."
    assert by_name["my_processbench_f1"].message.startswith("the exercise cell does not parse: SyntaxError at line 2")


def test_check_raises_exercise_failed_naming_the_case():
    with pytest.raises(ExerciseFailed, match=r"my_keep_top\(\['a', 'b', 'c', 'd'\], .*expected \['b', 'd'\]"):
        check("my_keep_top", lambda candidates, scores, beam_width: candidates[:beam_width])


def test_check_lets_not_implemented_error_through_for_the_notebook_to_show():
    def stub(*args):
        raise NotImplementedError("write it")

    with pytest.raises(NotImplementedError, match="write it"):
        run_check(EXERCISES["my_keep_top"], stub)


def test_check_unknown_exercise_raises_listing_known_ones():
    with pytest.raises(ValueError, match="my_keep_top"):
        check("my_keep_bottom", print)


def test_strip_solutions_keeps_indentation_and_uses_the_hint():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    ### HINT: add y\n    return x + y\n    ### END SOLUTION"
    assert strip_solutions(source) == 'def f(x):\n    y = 1\n    raise NotImplementedError("add y")'


@pytest.mark.parametrize(("source", "match"), [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "never opened"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
], ids=["unclosed", "unopened", "nested"])
def test_strip_solutions_malformed_region_raises_with_line(source, match):
    with pytest.raises(ValueError, match=match):
        strip_solutions(source, "nb cell 3")


def test_student_notebook_clears_outputs_and_keeps_instructor_untouched():
    instructor = nbformat.read(INSTRUCTOR["05_aggregation"], as_version=4)
    before = nbformat.writes(instructor)
    student = student_notebook(instructor)
    assert nbformat.writes(instructor) == before
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert not any("### BEGIN SOLUTION" in c.source for c in code)
    assert "widgets" not in student.metadata


def test_tag_position_reference_agrees_with_the_step_encoder(tiny_backbone):
    # The exercise's reference is a few lines of arithmetic; the encoder is what the course uses.
    import copy

    from prm_core.encoding import StepEncoder
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    tokenizer = copy.deepcopy(tiny_backbone[1])
    encoder = StepEncoder(tokenizer, max_length=512)
    reference = EXERCISES["my_step_tag_positions"].reference
    for sample in NoisyPolicy().sample_many(make_problems(10, seed=2), 3, seed=2):
        encoded = encoder.encode(sample)
        counts = [len(tokenizer(step, add_special_tokens=False)["input_ids"]) for step in sample.steps]
        assert reference(encoded.steps_start, counts) == encoded.step_positions


def test_make_exercises_full_disk_half_way_keeps_the_old_exercise_notebook(tmp_path, monkeypatch):
    from prm_core.classroom import instructor_notebooks
    from tests.test_files import fill_disk_half_way, leftovers

    first = tmp_path / instructor_notebooks()[0].name  # the first exercise notebook make_exercises writes
    first.write_text("an old student copy\n", encoding="utf-8")  # stale, so it is written again
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        make_exercises(tmp_path)
    monkeypatch.undo()
    assert first.read_text(encoding="utf-8") == "an old student copy\n" and leftovers(tmp_path) == []
