"""README's results tables come from the committed results file, and that file holds what the issue asks."""

import json

import pytest

from prm_core.results_table import BEGIN, END, ROOT, markdown_tables, replace_block
from prm_core.sweeps import ABLATIONS

RESULTS = ROOT / "results" / "cpu-2core.json"


@pytest.fixture(scope="module")
def results():
    return json.loads(RESULTS.read_text())


def test_readme_results_block_is_generated_from_the_results_file(results):
    readme = (ROOT / "README.md").read_text()
    expected = replace_block(readme, markdown_tables(results, "results/cpu-2core.json"))
    assert readme == expected, "README's results tables are stale: run `python -m prm_core.results_table`"


def test_results_file_has_the_comparison_sections(results):
    assert results["by_n_operations"] and all({"n_operations", "prm", "orm"} <= set(r) for r in results["by_n_operations"])
    lengths = [r["n_operations"] for r in results["by_n_operations"]]
    assert lengths == sorted(lengths) and len(lengths) >= 5
    sizes = {r["n_train_solutions"] for r in results["data_efficiency"]}
    assert len(sizes) >= 3 and max(sizes) >= 10 * min(sizes)
    for row in results["data_efficiency"]:  # every size over 3 or more training seeds, each seed's value kept
        for kind in ("prm", "orm"):
            assert row[kind]["n_seeds"] >= 3 and len(row[kind]["step_auroc"]["per_seed"]) == row[kind]["n_seeds"]
        assert row["prm_minus_orm"]["step_auroc"]["n_seeds"] == row["prm"]["n_seeds"]
    seeds = results["over_seeds"]  # the standard models over 3 or more training seeds, paired seed by seed
    assert len(seeds["train_seeds"]) >= 3 and results["config"]["seed"] in seeds["train_seeds"]
    for entry in (seeds["prm"]["step_auroc"], seeds["orm"]["first_error_f1"], seeds["prm_minus_orm"]["step_auroc"],
                  seeds["prm_minus_orm"]["best_of_n"]["64"]):
        assert entry["n_seeds"] == len(entry["per_seed"]) == len(seeds["train_seeds"])
    assert set(results["ablations"]) == set(ABLATIONS)
    assert all(set(sides) == {"on", "off", "changed_minus_standard"} for sides in results["ablations"].values())
    assert all(sides["changed_minus_standard"]["step_auroc"]["n_seeds"] >= 3 for sides in results["ablations"].values())


def test_results_file_benchmark_leaves_headroom(results):
    assert results["best_of_n"]["16"]["oracle"]["accuracy"] <= 0.97
    assert results["best_of_n"]["64"]["majority"]["accuracy"] <= 0.75


def test_results_file_cpu_prm_meets_its_targets_in_every_training_seed(results):
    assert results["step_auroc"] >= 0.90 and results["first_error_f1"] >= 0.70
    prm = results["over_seeds"]["prm"]
    assert min(prm["step_auroc"]["per_seed"]) >= 0.90 and min(prm["first_error_f1"]["per_seed"]) >= 0.70


@pytest.mark.parametrize("text", ["no markers", f"{END}\n{BEGIN}", f"{BEGIN}{BEGIN}{END}"],
                         ids=["missing", "out-of-order", "twice"])
def test_replace_block_without_one_ordered_pair_of_markers_raises(text):
    with pytest.raises(ValueError, match="markers"):
        replace_block(text, "table")


def test_replace_block_keeps_what_surrounds_the_markers():
    assert replace_block(f"head\n{BEGIN}\nold\n{END}\ntail", "new") == f"head\n{BEGIN}\nnew\n{END}\ntail"


def test_markdown_tables_without_the_sweep_sections_raise_naming_make_results(results):
    partial = {k: v for k, v in results.items() if k not in ("data_efficiency", "prm_minus_orm")}
    with pytest.raises(ValueError, match=r"\['prm_minus_orm', 'data_efficiency'\].*make results"):
        markdown_tables(partial)
    with pytest.raises(ValueError, match="make results"):
        markdown_tables({})


@pytest.mark.parametrize("block", [None, f"x {END} y"], ids=["none", "holds-a-marker"])
def test_replace_block_refuses_a_block_that_is_not_plain_text(block):
    with pytest.raises(ValueError, match="without the begin/end markers"):
        replace_block(f"{BEGIN}\n{END}", block)


def test_results_table_cli_missing_file_exits_with_the_fix(tmp_path, capsys):
    from prm_core.results_table import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(tmp_path / "none.json"), "--readme", str(tmp_path / "README.md")])
    assert exit_info.value.code == 2 and "make results" in capsys.readouterr().err


def test_results_table_cli_cut_results_file_exits_naming_it(tmp_path, capsys):
    from prm_core.results_table import main

    cut = tmp_path / "cpu-2core.json"
    cut.write_text('{"best_of_n": {')
    with pytest.raises(SystemExit) as exit_info:
        main(["--results", str(cut), "--readme", str(tmp_path / "README.md")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{cut} is not valid UTF-8 JSON" in err and "make results" in err


def test_results_table_cli_full_disk_half_way_keeps_the_old_readme(tmp_path, monkeypatch, capsys):
    from prm_core.results_table import main
    from tests.test_files import fill_disk_half_way, leftovers

    readme = tmp_path / "README.md"
    readme.write_text(f"# Course\n\n{BEGIN}\nold tables\n{END}\n\nMore prose.\n", encoding="utf-8")
    before = readme.read_bytes()
    fill_disk_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        main(["--results", str(RESULTS), "--readme", str(readme)])
    monkeypatch.undo()
    assert readme.read_bytes() == before and leftovers(tmp_path) == []
    assert main(["--results", str(RESULTS), "--readme", str(readme)]) == 0 and "old tables" not in readme.read_text()


def test_markdown_tables_missing_nested_key_raises_naming_its_path_and_make_results(results):
    import copy

    broken = copy.deepcopy(results)
    del broken["prm"]["first_error"]  # before: KeyError: 'first_error'
    with pytest.raises(ValueError, match=r"results\['prm'\]\['first_error'\] is missing; regenerate them with "
                                         r"`make results`"):
        markdown_tables(broken)


def test_markdown_tables_null_value_raises_naming_its_path(results):
    import copy

    broken = copy.deepcopy(results)
    broken["by_n_operations"][1]["orm"]["step_auroc"]["ci_low"] = None  # before: TypeError: unsupported format string
    with pytest.raises(ValueError, match=r"results\['by_n_operations'\]\[1\]\['orm'\]\['step_auroc'\]\['ci_low'\] is "
                                         r"null; regenerate"):
        markdown_tables(broken)


def test_markdown_tables_section_where_a_number_belongs_raises_naming_its_path(results):
    import copy

    broken = copy.deepcopy(results)
    broken["prm"]["step_auroc"] = {"value": 0.9}
    with pytest.raises(ValueError, match=r"results\['prm'\]\['step_auroc'\] is a dict where a number belongs"):
        markdown_tables(broken)


def test_markdown_tables_empty_sweeps_or_ablations_with_two_changed_sides_raise(results):
    import copy

    for key in ("data_efficiency", "ablations"):
        broken = copy.deepcopy(results)
        broken[key] = [] if key == "data_efficiency" else {}
        with pytest.raises(ValueError, match="is empty; regenerate"):
            markdown_tables(broken)
    broken = copy.deepcopy(results)
    broken["ablations"]["lm_features"]["on"]["change"] = {"x": 1}
    with pytest.raises(ValueError, match=r"\['lm_features'\] must have exactly one side with an empty 'change'"):
        markdown_tables(broken)


def test_markdown_tables_refuse_per_seed_values_that_do_not_match_the_train_seeds(results):
    import copy

    cut = copy.deepcopy(results)
    cut["over_seeds"]["orm"]["step_auroc"]["per_seed"] = cut["over_seeds"]["orm"]["step_auroc"]["per_seed"][:2]
    with pytest.raises(ValueError, match=r"over_seeds'\]\['orm'\]\['step_auroc'\].*make results"):
        markdown_tables(cut)
    cut = copy.deepcopy(results)
    cut["over_seeds"]["train_seeds"] = cut["over_seeds"]["train_seeds"][:2]
    with pytest.raises(ValueError, match="for 2 train seeds"):
        markdown_tables(cut)
