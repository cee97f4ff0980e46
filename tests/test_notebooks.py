"""Checks on the committed notebooks that need no kernel (nbval re-runs them under `make test`)."""

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def _code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and c.source.strip()]


def test_course_has_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no numbered notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_with_outputs_of_one_clean_run(path):
    counts = [c.execution_count for c in _code_cells(path)]
    assert None not in counts, f"{path.name} has unexecuted code cells: run `make refresh-notebooks`"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name} was not run top to bottom once: {counts}"
    errors = [o for c in _code_cells(path) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} holds error outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_first_code_cell_is_the_parameters_cell(path):
    first = _code_cells(path)[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert "PROFILE" in first.source and "BACKBONE" in first.source and "SEED" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_notebook_on_the_standard_models_takes_their_training_seed_as_a_parameter(path):
    """So its checked cells can be run on another training run (papermill -p TRAIN_SEED 1)."""
    cells = _code_cells(path)
    calls = [c.source for c in cells if "standard_run(config, PROFILE" in c.source]
    if not calls:
        pytest.skip(f"{path.name} does not load the standard models as `standard_run(config, PROFILE)`")
    assert "TRAIN_SEED = None" in cells[0].source
    assert all("standard_run(config, PROFILE, train_seed=TRAIN_SEED)" in source for source in calls)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_checked_cells_assert_their_claims(path):
    checked = [c for c in _code_cells(path) if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, f"{path.name} has no checked cell"
    assert any("assert " in c.source for c in checked)


def _run_on_local_backbone(course_backbone, tmp_path, prefix, parameters=None):
    """Execute the notebook ``prefix``* with BACKBONE set to a save_pretrained folder of the course
    backbone (how a hub model arrives, offline); its stdout and the executed notebook."""
    papermill = pytest.importorskip("papermill")
    model, tokenizer, _ = course_backbone
    folder = tmp_path / "my-backbone"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    path = next(p for p in NOTEBOOKS if p.name.startswith(prefix))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(path), str(out), parameters={"BACKBONE": str(folder), **(parameters or {})},
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    stdout = "".join(o.get("text", "") for c in _code_cells(out) for o in c.outputs)
    return stdout, json.loads(out.read_text()), str(folder)


def test_notebook_backbone_parameter_accepts_a_local_save_pretrained_folder(course_backbone, tmp_path):
    stdout, executed, folder = _run_on_local_backbone(course_backbone, tmp_path, "02_")
    assert "tags == steps: True" in stdout
    assert executed["metadata"]["papermill"]["parameters"]["BACKBONE"] == folder


@pytest.mark.timeout(2400)  # run alone on a cold cache, it trains the standard PRM (~16 min on a slow 2-core machine)
def test_real_models_notebook_takes_a_local_backbone_and_data_files(course_backbone, tmp_path):
    # The online path of notebook 11 (a hub backbone, downloaded dataset files), offline: a
    # save_pretrained folder and copies of the fixture files passed as papermill parameters.
    from prm_core.formats import fixture_path

    files = {}
    for name, param in (("prm800k", "PRM800K_FILE"), ("math_shepherd", "MATH_SHEPHERD_FILE"),
                        ("processbench", "PROCESSBENCH_FILE")):
        files[param] = str(tmp_path / f"{name}.jsonl")
        (tmp_path / f"{name}.jsonl").write_text(fixture_path(name).read_text())
    stdout, executed, _ = _run_on_local_backbone(course_backbone, tmp_path, "11_", {"TRAIN_STEPS": 3, **files})
    assert "every step is tagged or reported as dropped: True" in stdout
    assert "one prediction per ProcessBench row: True" in stdout
    assert executed["metadata"]["papermill"]["parameters"]["PROCESSBENCH_FILE"] == files["PROCESSBENCH_FILE"]
