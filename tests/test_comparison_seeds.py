"""PRM against ORM over training seeds: prm_core.comparison_seeds (two-level intervals)."""

import numpy as np
import pytest

from prm_core.comparison import comparison_metrics, prm_minus_orm
from prm_core.comparison_seeds import (
    SeedModels,
    comparison_over_seeds,
    difference_over_seeds,
    prm_minus_orm_over_seeds,
)
from tests.test_comparison import _data, _scores


def _scored(data, noise, seed):
    return {part: _scores(getattr(data, part), noise, seed) for part in ("val", "test", "bon")}


def test_one_seed_gives_comparison_metrics_intervals():
    data = _data()
    scored = _scored(data, 0.5, 0)
    one = comparison_over_seeds([scored], data, "prm", ns=(1, 4), n_bootstrap=200)
    plain = comparison_metrics(scored, data, "prm", ns=(1, 4), n_bootstrap=200)
    for metric in ("step_auroc", "first_error_f1"):
        assert {k: one[metric][k] for k in ("value", "ci_low", "ci_high")} == pytest.approx(plain[metric])
        assert one[metric]["n_seeds"] == 1 and one[metric]["per_seed"] == [pytest.approx(plain[metric]["value"])]
    for n in ("1", "4"):
        assert one["best_of_n"][n]["accuracy"] == pytest.approx(plain["best_of_n"][n]["accuracy"])
        assert (one["best_of_n"][n]["ci_low"], one["best_of_n"][n]["ci_high"]) == pytest.approx(
            (plain["best_of_n"][n]["ci_low"], plain["best_of_n"][n]["ci_high"]))
    assert one["thresholds"] == [plain["threshold"]] and one["n_seeds"] == 1


def test_seeds_that_disagree_widen_the_interval_and_per_seed_shows_them():
    data = _data()
    good, noisy = _scored(data, 0.1, 0), _scored(data, 0.9, 1)
    out = comparison_over_seeds([good, noisy, good], data, "prm", ns=(4,), n_bootstrap=300)
    auroc = out["step_auroc"]
    assert auroc["per_seed"][0] == auroc["per_seed"][2] > auroc["per_seed"][1]
    assert auroc["value"] == pytest.approx(np.mean(auroc["per_seed"]))
    single = comparison_metrics(good, data, "prm", ns=(4,), n_bootstrap=300)["step_auroc"]
    assert auroc["ci_high"] - auroc["ci_low"] > single["ci_high"] - single["ci_low"]


def test_the_difference_is_paired_seed_by_seed_and_matches_each_side():
    data = _data()
    prm = [_scored(data, 0.2, s) for s in range(3)]
    orm = [_scored(data, 1.5, 10 + s) for s in range(3)]
    diff = prm_minus_orm_over_seeds(prm, orm, data, ns=(4,), n_bootstrap=300)
    a = comparison_over_seeds(prm, data, "prm", ns=(4,), n_bootstrap=300)
    b = comparison_over_seeds(orm, data, "orm", ns=(4,), n_bootstrap=300)
    assert diff["step_auroc"]["per_seed"] == pytest.approx(
        [x - y for x, y in zip(a["step_auroc"]["per_seed"], b["step_auroc"]["per_seed"], strict=True)])
    assert diff["step_auroc"]["ci_low"] > 0  # a scorer that knows, against noise
    assert diff["best_of_n"]["4"]["value"] == pytest.approx(a["best_of_n"]["4"]["accuracy"] - b["best_of_n"]["4"]["accuracy"])
    one = prm_minus_orm({"prm": prm[0], "orm": orm[0]}, data, ns=(4,), n_bootstrap=300)
    alone = difference_over_seeds(prm[:1], orm[:1], data, ("prm", "orm"), ns=(4,), n_bootstrap=300)
    assert alone["best_of_n"]["4"]["value"] == pytest.approx(one["best_of_n"]["4"]["value"])


def test_prepared_models_give_the_same_numbers_as_lists():
    data = _data()
    prm = [_scored(data, 0.3, s) for s in range(2)]
    prepared = SeedModels(prm, data, "prm")
    assert comparison_over_seeds(prepared, data, "prm", ns=(4,), n_bootstrap=100) == \
        comparison_over_seeds(prm, data, "prm", ns=(4,), n_bootstrap=100)
    with pytest.raises(ValueError, match="prepared as 'prm'"):
        comparison_over_seeds(prepared, data, "orm")


def test_bad_seed_lists_raise_naming_the_fix():
    data = _data()
    scored = _scored(data, 0.3, 0)
    with pytest.raises(ValueError, match="one dict 'val' / 'test' / 'bon'"):
        comparison_over_seeds(scored, data, "prm")  # one model without the list
    with pytest.raises(ValueError, match="non-empty list"):
        comparison_over_seeds([], data, "prm")
    with pytest.raises(ValueError, match=r"scored_per_seed\[1\].*missing \['bon'\]"):
        comparison_over_seeds([scored, {"val": scored["val"], "test": scored["test"]}], data, "prm")
    with pytest.raises(ValueError, match="kind='xrm'"):
        comparison_over_seeds([scored], data, "xrm")
    with pytest.raises(ValueError, match="pair the same seeds"):
        difference_over_seeds([scored, scored], [scored], data)


def test_bad_inputs_raise_naming_the_field_and_the_fix():
    data = _data()
    good = _scored(data, 0.3, 0)
    with pytest.raises(ValueError, match=r"\['val'\] is a str"):
        comparison_over_seeds([{"val": "x", "test": "y", "bon": "z"}], data, "prm")
    with pytest.raises(ValueError, match="must be the Datasets"):
        SeedModels([good], None, "prm")
    short = dict(good, test=_scores(data.test[:60], 0.3, 0))
    with pytest.raises(ValueError, match=r"\[0\]\['test'\] holds 60 solutions but data.test 80"):
        comparison_over_seeds([short], data, "prm")
    with pytest.raises(ValueError, match="ns=\\(\\) asks for no N"):
        comparison_over_seeds([good], data, "prm", ns=())
    with pytest.raises(ValueError, match="metric='stepauroc'"):
        SeedModels([good], data, "prm").interval("stepauroc", 10, 0)
    other = _data(seed=1)
    with pytest.raises(ValueError, match="other Datasets"):
        comparison_over_seeds(SeedModels([good], data, "prm"), other, "prm")
    with pytest.raises(ValueError, match="prepared as 'prm'; pass kinds=\\('prm', 'prm'\\)"):
        difference_over_seeds(SeedModels([good], data, "prm"), SeedModels([good], data, "prm"), data, ("prm", "orm"))
    with pytest.raises(ValueError, match="kinds='prm'"):
        difference_over_seeds([good], [good], data, "prm")
