import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.aggregation import AGGREGATION_NOTES, AGGREGATIONS, aggregate

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)
RULES = sorted(AGGREGATIONS)
GRID = 64  # scores k / 64 are exact in float64, and so are their squares: no rounding ties


def _slow_rule(rule: str, p: list[float]) -> float:
    """The obvious per-solution definition of each rule, on the real steps of one row."""
    if rule == "min":
        return min(p)
    if rule == "prod":
        return math.prod(p)
    if rule == "last":
        return p[-1]
    if rule == "mean":
        return sum(p) / len(p)
    if rule == "geomean":
        return math.exp(sum(math.log(max(x, 1e-12)) for x in p) / len(p))
    if rule == "sum_logit":
        clamped = [min(max(x, 1e-6), 1 - 1e-6) for x in p]
        return sum(math.log(x / (1 - x)) for x in clamped)
    raise AssertionError(rule)


def _slow_aggregate(step_scores: torch.Tensor, mask: torch.Tensor, rule: str) -> torch.Tensor:
    rows = []
    for scores_row, mask_row in zip(step_scores.tolist(), mask.tolist(), strict=True):
        rows.append(_slow_rule(rule, [s for s, m in zip(scores_row, mask_row, strict=True) if m]))
    return torch.tensor(rows, dtype=torch.float64)


@st.composite
def padded_batches(draw, grid: bool = False):
    """(step_scores (N, S) float64, mask (N, S) bool) with at least one real step per row."""
    n, s = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    value = st.integers(0, GRID).map(lambda k: k / GRID) if grid else st.floats(0.0, 1.0)
    scores = torch.tensor(draw(st.lists(value, min_size=n * s, max_size=n * s)), dtype=torch.float64).view(n, s)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n * s, max_size=n * s))).view(n, s)
    for row in range(n):
        mask[row, draw(st.integers(0, s - 1))] = True
    return scores, mask


def _batch():
    scores = torch.tensor([[0.9, 0.5, 0.8], [0.2, 0.6, 0.99]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    return scores, mask


HAND_CASES = {
    "min": [0.5, 0.2],
    "prod": [0.36, 0.12],  # 0.9 * 0.5 * 0.8; 0.2 * 0.6 (0.99 is padding)
    "last": [0.8, 0.6],  # row 1's last real step is column 1
    "mean": [2.2 / 3, 0.4],  # (0.9 + 0.5 + 0.8) / 3; (0.2 + 0.6) / 2
    "geomean": [0.36 ** (1 / 3), 0.12**0.5],  # 0.7114, 0.3464
    "sum_logit": [math.log(36.0), math.log(0.375)],  # log 9 + log 1 + log 4; log(1/4) + log(3/2)
}


@pytest.mark.parametrize("rule", RULES, ids=RULES)
def test_aggregate_hand_computed_batch_matches_expected(rule):
    scores, mask = _batch()
    expected = torch.tensor(HAND_CASES[rule], dtype=torch.float64)
    torch.testing.assert_close(aggregate(scores, mask, rule), expected, rtol=1e-12, atol=1e-12)


def test_last_score_noncontiguous_mask_reads_last_real_step():
    scores = torch.tensor([[0.3, 0.9, 0.1, 0.7]])
    mask = torch.tensor([[True, False, True, False]])
    assert aggregate(scores, mask, "last").item() == pytest.approx(0.1)


def test_geomean_score_zero_step_is_clamped_not_nan():
    scores, mask = torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool)
    # exp((log 1e-12 + log 1) / 2) = sqrt(1e-12) = 1e-6
    assert aggregate(scores, mask, "geomean").item() == pytest.approx(1e-6, rel=1e-9)


def test_sum_logit_score_certain_steps_stay_finite():
    scores, mask = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    # logit(1e-6) + 2 * logit(1 - 1e-6) = -13.8155 + 2 * 13.8155
    assert aggregate(scores, mask, "sum_logit").item() == pytest.approx(math.log((1 - 1e-6) / 1e-6), rel=1e-6)


@pytest.mark.parametrize("rule", RULES, ids=RULES)
def test_aggregate_float32_input_keeps_dtype(rule):
    scores, mask = _batch()
    assert aggregate(scores.float(), mask, rule).dtype == torch.float32


@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_aggregate_every_rule_matches_slow_per_row_reference(batch):
    scores, mask = batch
    for rule in RULES:
        torch.testing.assert_close(aggregate(scores, mask, rule), _slow_aggregate(scores, mask, rule),
                                   rtol=1e-9, atol=1e-9, msg=rule)


@PROPERTY_SETTINGS
@given(batch=padded_batches(), data=st.data())
def test_aggregate_inserted_padding_with_any_values_never_changes_result(batch, data):
    scores, mask = batch
    n, s = scores.shape
    k = data.draw(st.integers(1, 3))
    # Pad slots are spread among the real columns, which keep their order; pads hold anything, NaN too.
    pad_slots = sorted(data.draw(st.permutations(range(s + k)))[:k])
    keep_slots = [j for j in range(s + k) if j not in pad_slots]
    junk = data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n * k, max_size=n * k))
    padded = torch.empty(n, s + k, dtype=torch.float64)
    padded[:, pad_slots] = torch.tensor(junk, dtype=torch.float64).view(n, k)
    padded[:, keep_slots] = scores
    padded_mask = torch.zeros(n, s + k, dtype=torch.bool)
    padded_mask[:, keep_slots] = mask
    for rule in RULES:
        torch.testing.assert_close(aggregate(padded, padded_mask, rule), aggregate(scores, mask, rule),
                                   rtol=1e-12, atol=1e-12, msg=rule)


@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_aggregate_min_geomean_mean_max_are_ordered(batch):
    scores, mask = batch
    lowest, geo, mean = (aggregate(scores, mask, r) for r in ("min", "geomean", "mean"))
    highest = torch.where(mask, scores, -torch.inf).amax(dim=1)
    # atol covers float rounding and the 1e-12 clamp, which lifts geomean of all-zero rows above mean = 0.
    assert torch.all(lowest <= geo + 1e-9)
    assert torch.all(geo <= mean + 1e-9)
    assert torch.all(mean <= highest + 1e-12)


@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_prod_score_never_exceeds_min_score(batch):
    scores, mask = batch
    assert torch.all(aggregate(scores, mask, "prod") <= aggregate(scores, mask, "min"))


def _long_solutions(dtype):
    # 160 steps each: 0.5**160 ~ 6.8e-49 and 0.4**160 ~ 4.3e-64, both below float32's smallest 1.4e-45
    return torch.tensor([[0.5] * 160, [0.4] * 160], dtype=dtype), torch.ones(2, 160, dtype=torch.bool)


def test_prod_score_long_solutions_underflow_to_a_tie_in_float32_as_documented():
    assert aggregate(*_long_solutions(torch.float32), "prod").tolist() == [0.0, 0.0]  # kept: notebook numbers


@pytest.mark.parametrize("dtype,rule", [(torch.float64, "prod"), (torch.float32, "geomean"),
                                        (torch.float32, "sum_logit")], ids=["prod-float64", "geomean", "sum_logit"])
def test_prod_underflow_is_avoided_by_float64_scores_or_a_log_space_rule(dtype, rule):
    values = aggregate(*_long_solutions(dtype), rule)
    assert values[0] > values[1]  # 0.5 per step beats 0.4 per step, no tie


@pytest.mark.parametrize(
    "rescale", [lambda p: p**2, torch.sqrt, lambda p: p**3], ids=["square", "sqrt", "cube"]
)
@pytest.mark.parametrize("rule", ["min", "last"], ids=["min", "last"])
@PROPERTY_SETTINGS
@given(batch=padded_batches(grid=True))
def test_order_only_rules_monotone_rescaling_keeps_argmax_pick(rule, rescale, batch):
    scores, mask = batch
    # Grid scores keep distinct values distinct after rescaling, so argmax (first maximum) is stable.
    picked = torch.argmax(aggregate(rescale(scores), mask, rule)).item()
    assert picked == torch.argmax(aggregate(scores, mask, rule)).item()


@PROPERTY_SETTINGS
@given(batch=padded_batches(), data=st.data())
def test_aggregate_permuted_rows_permute_output(batch, data):
    scores, mask = batch
    order = torch.tensor(data.draw(st.permutations(range(scores.shape[0]))))
    for rule in RULES:
        torch.testing.assert_close(aggregate(scores[order], mask[order], rule), aggregate(scores, mask, rule)[order],
                                   rtol=0, atol=0, msg=rule)


def test_aggregation_notes_cover_every_rule_with_one_sentence():
    assert set(AGGREGATION_NOTES) == set(AGGREGATIONS)
    for rule, note in AGGREGATION_NOTES.items():
        assert note.startswith(rule) and note.endswith(".") and note.count(". ") == 0


BAD_INPUTS = {
    "shapes-differ": (torch.rand(2, 3), torch.ones(2, 4, dtype=torch.bool), "min", "mask.shape"),
    "one-dim": (torch.rand(3), torch.ones(3, dtype=torch.bool), "min", "same \\(N, S\\)"),
    "empty-row": (torch.rand(2, 2), torch.tensor([[True, False], [False, False]]), "min", "rows \\[1\\] have no real step"),
    "int-mask": (torch.rand(2, 2), torch.ones(2, 2, dtype=torch.int64), "min", "mask has type/dtype"),
    "int-scores": (torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.bool), "min", "float tensor"),
    "above-one": (torch.tensor([[0.5, 1.5]]), torch.ones(1, 2, dtype=torch.bool), "min", "torch.sigmoid"),
    "nan-step": (torch.tensor([[0.5, float("nan")]]), torch.ones(1, 2, dtype=torch.bool), "mean", "in \\[0, 1\\]"),
    "unknown-rule": (torch.rand(1, 2), torch.ones(1, 2, dtype=torch.bool), "median", "rule='median'"),
    "no-rows": (torch.rand(0, 2), torch.ones(0, 2, dtype=torch.bool), "min", "N=0"),
}


@pytest.mark.parametrize("scores,mask,rule,match", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_aggregate_bad_input_raises_value_error_naming_field(scores, mask, rule, match):
    with pytest.raises(ValueError, match=match):
        aggregate(scores, mask, rule)


# ---------------------------------------------------------------- issue 13: float32 or wider, whatever the input
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64}
OUT_DTYPES = {"bf16": torch.float32, "fp16": torch.float32, "fp32": torch.float32, "fp64": torch.float64}


def test_sum_logit_score_bf16_scores_give_the_float32_result_and_keep_the_pick():
    # issue 13: in bf16, 1 - 1e-6 rounds to 1, log1p(-1) = -inf, and row 0 scored inf, beating row 1.
    scores, mask = torch.tensor([[1.0, 0.001], [0.99, 0.99]]), torch.ones(2, 2, dtype=torch.bool)
    low = aggregate(scores.bfloat16(), mask, "sum_logit")
    # bf16 holds 0.001 as 0.00099945 and 0.99 as 0.98828125: row 0 = logit(1 - 1e-6, fp32) + logit(0.00099945)
    # = 13.8023 - 6.9073 = 6.8950; row 1 = 2 * log(0.98828125 / 0.01171875) = 2 * 4.4348 = 8.8696
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert low.tolist() == pytest.approx([6.8950, 8.8696], abs=1e-3)
    assert int(low.argmax()) == int(aggregate(scores, mask, "sum_logit").argmax()) == 1


@pytest.mark.parametrize("name", DTYPES, ids=DTYPES)
@pytest.mark.parametrize("rule", RULES, ids=RULES)
def test_aggregate_output_is_float32_or_wider(rule, name):
    scores, mask = _batch()
    assert aggregate(scores.to(DTYPES[name]), mask, rule).dtype == OUT_DTYPES[name]


@pytest.mark.parametrize("name", DTYPES, ids=DTYPES)
@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_aggregate_equals_each_rule_function_for_every_dtype(name, batch):
    scores, mask = batch
    low = scores.to(DTYPES[name])
    for rule, function in AGGREGATIONS.items():
        assert torch.equal(aggregate(low, mask, rule), function(low, mask)), rule


@pytest.mark.parametrize("name", ["bf16", "fp16"], ids=["bf16", "fp16"])
@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_aggregate_low_precision_scores_give_the_float32_result_of_the_same_values(name, batch):
    scores, mask = batch
    low = scores.to(DTYPES[name])
    for rule in RULES:
        assert torch.equal(aggregate(low, mask, rule), aggregate(low.float(), mask, rule)), rule


@pytest.mark.parametrize("name", DTYPES, ids=DTYPES)
@PROPERTY_SETTINGS
@given(batch=padded_batches())
def test_aggregate_every_dtype_matches_slow_reference_on_the_values_it_holds(name, batch):
    scores, mask = batch
    low = scores.to(DTYPES[name])
    held = low.double()  # the values the low-precision tensor really holds
    tol = 1e-9 if name == "fp64" else 2e-5  # float32 arithmetic: a few ulps on sums of up to 6 logits of 14
    for rule in RULES:
        reference = _slow_aggregate(held, mask, rule)
        if name != "fp64" and rule == "sum_logit":  # the clamp bound 1 - 1e-6 itself is rounded in float32
            held32 = held.clamp(1e-6, float(torch.tensor(1 - 1e-6, dtype=torch.float32)))
            reference = _slow_aggregate(held32, mask, rule)
        torch.testing.assert_close(aggregate(low, mask, rule).double(), reference, rtol=tol, atol=tol, msg=rule)


@pytest.mark.parametrize("rule", [True, None, ["min"]], ids=["bool", "none", "list"])
def test_aggregate_rule_that_is_not_a_name_raises_naming_rule(rule):
    with pytest.raises(ValueError, match="rule="):
        aggregate(torch.rand(1, 2), torch.ones(1, 2, dtype=torch.bool), rule)
