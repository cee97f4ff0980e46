import math

import pytest
import torch
import torch.nn.functional as F

from prm_core.data import StepSample
from prm_core.losses import mask_after_first_error, next_token_loss, outcome_sample, step_bce_loss

LN2 = math.log(2)  # BCE of p = 0.5 against either label
LN3 = math.log(3)  # the logit of p = 0.75


def _bool(rows):
    return torch.tensor(rows, dtype=torch.bool)


def _bce_reference(logits, labels, label_mask, pos_weight=1.0):
    """Slow, obvious version: loop over labelled steps, BCE written out term by term."""
    total, n = 0.0, 0
    for x, y, m in zip(logits.flatten().tolist(), labels.flatten().tolist(), label_mask.flatten().tolist(),
                       strict=True):
        if m:
            p = 1 / (1 + math.exp(-x))
            total += -(pos_weight * y * math.log(p) + (1 - y) * math.log(1 - p))
            n += 1
    return total / max(n, 1)


# ---------------------------------------------------------------- step_bce_loss

STEP_BCE_CASES = {
    # both steps at p = 0.5: (ln 2 + ln 2) / 2
    "p-half-both-labels": ([[0.0, 0.0]], [[1.0, 0.0]], [[True, True]], 1.0, LN2),
    # p = 0.75 at a correct step: -ln 0.75 = 0.287682
    "confident-right": ([[LN3]], [[1.0]], [[True]], 1.0, -math.log(0.75)),
    # p = 0.75 at an incorrect step: -ln 0.25 = 1.386294
    "confident-wrong": ([[LN3]], [[0.0]], [[True]], 1.0, -math.log(0.25)),
    # pos_weight scales only the label-1 term: 2 * -ln 0.75 = 0.575364
    "pos-weight-2-on-correct": ([[LN3]], [[1.0]], [[True]], 2.0, 2 * -math.log(0.75)),
    # pos_weight leaves the label-0 term alone: -ln 0.25 = 1.386294
    "pos-weight-ignores-incorrect": ([[LN3]], [[0.0]], [[True]], 0.5, -math.log(0.25)),
    # p = 0.5, one of each label, pos_weight 0.5: (0.5 ln 2 + ln 2) / 2 = 0.75 ln 2 = 0.519860
    "pos-weight-half-mixed": ([[0.0, 0.0]], [[1.0, 0.0]], [[True, True]], 0.5, 0.75 * LN2),
    # soft label 0.75 at p = 0.75: -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.215762 + 0.346574 = 0.562335
    "soft-label-equal-to-p": ([[LN3]], [[0.75]], [[True]], 1.0, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))),
    # soft label 0.5 at p = 0.5: -(0.5 ln 0.5 + 0.5 ln 0.5) = ln 2
    "soft-label-half": ([[0.0]], [[0.5]], [[True]], 1.0, LN2),
    # the unlabelled step (logit 5, label 0) is out: only the p = 0.5 step counts, ln 2 / 1
    "label-mask-excludes-step": ([[0.0, 5.0]], [[1.0, 0.0]], [[True, False]], 1.0, LN2),
    # two rows, three labelled steps: (ln 2 + -ln 0.75 + -ln 0.25) / 3 = (0.693147 + 0.287682 + 1.386294) / 3
    "two-rows-mean-over-labelled": ([[0.0, 9.0], [LN3, LN3]], [[1.0, 1.0], [1.0, 0.0]],
                                    [[True, False], [True, True]], 1.0,
                                    (LN2 - math.log(0.75) - math.log(0.25)) / 3),
}


@pytest.mark.parametrize(("logits", "labels", "mask", "pos_weight", "expected"), STEP_BCE_CASES.values(),
                         ids=STEP_BCE_CASES.keys())
def test_step_bce_loss_hand_computed_cases_match(logits, labels, mask, pos_weight, expected):
    out = step_bce_loss(torch.tensor(logits), torch.tensor(labels), _bool(mask), pos_weight=pos_weight)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_step_bce_loss_n_labelled_counts_only_masked_in_steps():
    mask = _bool([[True, False, True], [False, False, True]])  # 2 + 1 = 3 labelled steps
    out = step_bce_loss(torch.zeros(2, 3), torch.ones(2, 3), mask)
    assert out.n_labelled.item() == 3


def test_step_bce_loss_unlabelled_steps_ignore_their_label_values():
    # Whatever sits at an unlabelled step (here a NaN) must not leak into the loss: still ln 2 / 1.
    out = step_bce_loss(torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, float("nan")]]), _bool([[True, False]]))
    assert out.loss.item() == pytest.approx(LN2, rel=1e-6)


def test_step_bce_loss_mask_after_first_error_drops_later_steps():
    # labels 1, 0, 0, 1: the first error is step 1, so steps 2 and 3 leave the loss.
    # Counted: step 0 (p 0.5, label 1) and step 1 (p 0.5, label 0): (ln 2 + ln 2) / 2 = ln 2.
    logits, labels = torch.tensor([[0.0, 0.0, LN3, LN3]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    out = step_bce_loss(logits, labels, torch.ones(1, 4, dtype=torch.bool), use_mask_after_first_error=True)
    assert out.loss.item() == pytest.approx(LN2, rel=1e-6)
    assert out.n_labelled.item() == 2


def test_step_bce_loss_without_mask_after_first_error_counts_every_step():
    # Same batch, all four steps: (ln 2 + ln 2 + -ln 0.25 + -ln 0.75) / 4 = 3.060271 / 4 = 0.765068
    logits, labels = torch.tensor([[0.0, 0.0, LN3, LN3]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    out = step_bce_loss(logits, labels, torch.ones(1, 4, dtype=torch.bool))
    assert out.loss.item() == pytest.approx(0.7650677, rel=1e-6)
    assert out.n_labelled.item() == 4


@pytest.mark.parametrize("pos_weight", [1.0, 0.3, 2.5], ids=["pos-weight-1", "pos-weight-0.3", "pos-weight-2.5"])
def test_step_bce_loss_random_batch_matches_slow_reference(pos_weight):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=generator) * 3
    labels = torch.rand(4, 5, generator=generator)  # soft labels in [0, 1)
    mask = torch.rand(4, 5, generator=generator) > 0.3
    out = step_bce_loss(logits, labels, mask, pos_weight=pos_weight)
    assert out.loss.item() == pytest.approx(_bce_reference(logits, labels, mask, pos_weight), rel=1e-5)


def test_step_bce_loss_no_labelled_step_gives_exact_zero_with_gradient_path():
    logits = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    out = step_bce_loss(logits, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), pos_weight=0.5,
                        use_mask_after_first_error=True)
    assert out.loss.item() == 0.0
    assert torch.isfinite(out.loss)
    assert out.n_labelled.item() == 0
    out.loss.backward()  # the graph is kept, so a training step on such a batch does not crash
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros(2, 3))


def test_step_bce_loss_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"must have the same \(B, S\) shape"):
        step_bce_loss(torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize("pos_weight", [0.0, -1.0], ids=["zero", "negative"])
def test_step_bce_loss_non_positive_pos_weight_raises(pos_weight):
    with pytest.raises(ValueError, match=rf"pos_weight={pos_weight} must be a (finite )?number in \(0, inf\)"):
        step_bce_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), pos_weight=pos_weight)


# ---------------------------------------------------------------- mask_after_first_error

MASK_CASES = {
    "no-error-keeps-all": ([[1.0, 1.0, 1.0]], [[True, True, True]], [[True, True, True]]),
    "error-first-keeps-only-it": ([[0.0, 1.0, 1.0]], [[True, True, True]], [[True, False, False]]),
    "error-mid-keeps-up-to-it": ([[1.0, 0.0, 0.0, 1.0]], [[True] * 4], [[True, True, False, False]]),
    "error-last-keeps-all": ([[1.0, 1.0, 0.0]], [[True, True, True]], [[True, True, True]]),
    # the 0 at step 1 is unlabelled, so it is no error; the first real error is the last step
    "unlabelled-zero-is-not-an-error": ([[1.0, 0.0, 1.0, 0.0]], [[True, False, True, True]],
                                        [[True, False, True, True]]),
    "soft-label-below-half-is-an-error": ([[0.9, 0.3, 1.0]], [[True, True, True]], [[True, True, False]]),
    "masked-off-steps-stay-off": ([[1.0, 1.0, 0.0]], [[False, True, True]], [[False, True, True]]),
    "rows-are-independent": ([[0.0, 1.0], [1.0, 1.0]], [[True, True], [True, True]], [[True, False], [True, True]]),
}


@pytest.mark.parametrize(("labels", "mask", "expected"), MASK_CASES.values(), ids=MASK_CASES.keys())
def test_mask_after_first_error_cases_match_expected_masks(labels, mask, expected):
    assert mask_after_first_error(torch.tensor(labels), _bool(mask)).tolist() == expected


def test_mask_after_first_error_threshold_decides_what_counts_as_error():
    labels, mask = torch.tensor([[0.9, 0.3, 1.0]]), torch.ones(1, 3, dtype=torch.bool)
    # 0.3 is not below 0.2, so no step is an error and all stay in
    assert mask_after_first_error(labels, mask, threshold=0.2).tolist() == [[True, True, True]]


# ---------------------------------------------------------------- next_token_loss

def _lm_batch():
    """One row of 5 positions, the last two padding (pad id 0), vocab 7, seeded logits."""
    lm_logits = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(0))
    input_ids = torch.tensor([[3, 1, 4, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 0, 0]])
    return lm_logits, input_ids, attention_mask


def test_next_token_loss_matches_manual_cross_entropy_over_real_tokens():
    lm_logits, input_ids, attention_mask = _lm_batch()
    # Real targets: position 0 predicts id 1, position 1 predicts id 4; positions 2-3 predict padding.
    nll = -torch.log_softmax(lm_logits[0], dim=-1)
    expected = (nll[0, 1] + nll[1, 4]) / 2
    loss = next_token_loss(lm_logits, input_ids, attention_mask)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_next_token_loss_ignore_ids_skips_those_targets():
    lm_logits, input_ids, attention_mask = _lm_batch()
    # Ignoring id 4 leaves one target: position 0 predicting id 1.
    expected = -torch.log_softmax(lm_logits[0, 0], dim=-1)[1]
    loss = next_token_loss(lm_logits, input_ids, attention_mask, ignore_ids=(4,))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_next_token_loss_logits_at_padding_do_not_change_it():
    lm_logits, input_ids, attention_mask = _lm_batch()
    noisy = lm_logits.clone()
    noisy[0, 2:] = 1e4  # positions 2-4 only predict (or are) padding
    torch.testing.assert_close(next_token_loss(noisy, input_ids, attention_mask),
                               next_token_loss(lm_logits, input_ids, attention_mask), rtol=0, atol=0)


def test_next_token_loss_matches_torch_cross_entropy_with_ignore_index():
    lm_logits, input_ids, attention_mask = _lm_batch()
    targets = torch.tensor([1, 4, -100, -100])  # the two padding targets set to ignore_index by hand
    expected = F.cross_entropy(lm_logits[0, :-1], targets, ignore_index=-100)
    torch.testing.assert_close(next_token_loss(lm_logits, input_ids, attention_mask), expected, rtol=1e-6, atol=1e-6)


def test_next_token_loss_nothing_to_predict_gives_zero_with_gradient_path():
    lm_logits = torch.randn(1, 3, 5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    loss = next_token_loss(lm_logits, torch.tensor([[2, 0, 0]]), torch.tensor([[1, 0, 0]]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(lm_logits.grad, torch.zeros(1, 3, 5))


def test_next_token_loss_bool_attention_mask_is_not_modified():
    lm_logits, input_ids, _ = _lm_batch()
    attention_mask = torch.tensor([[True, True, True, False, False]])
    next_token_loss(lm_logits, input_ids, attention_mask, ignore_ids=(4,))
    assert attention_mask.tolist() == [[True, True, True, False, False]]


# ---------------------------------------------------------------- outcome_sample

@pytest.mark.parametrize(("is_correct", "outcome"), [(True, 1.0), (False, 0.0)], ids=["correct", "incorrect"])
def test_outcome_sample_labels_only_the_last_step(is_correct, outcome):
    sample = StepSample("q", ["a", "b", "c"], labels=[1.0, 0.0, 1.0])
    assert outcome_sample(sample, is_correct=is_correct).labels == (None, None, outcome)


def test_outcome_sample_single_step_gets_the_outcome():
    assert outcome_sample(StepSample("q", ["a"], labels=[1.0]), is_correct=False).labels == (0.0,)


def test_outcome_sample_unlabelled_input_gets_an_outcome_label():
    assert outcome_sample(StepSample("q", ["a", "b"]), is_correct=True).labels == (None, 1.0)


def test_outcome_sample_keeps_problem_steps_answer_and_meta():
    sample = StepSample("2 + 3?", ["2 + 3 = 5."], labels=[1.0], answer="5", meta={"problem_id": 7})
    view = outcome_sample(sample, is_correct=True)
    assert (view.problem, view.steps, view.answer, dict(view.meta)) == ("2 + 3?", ("2 + 3 = 5.",), "5",
                                                                      {"problem_id": 7})


# ---------------------------------------------------------------- issue 13: a bad number never reaches the loss
def test_step_bce_loss_nan_pos_weight_raises_instead_of_a_nan_loss():
    # nan <= 0 is False, so NaN used to pass the check and make every loss NaN
    with pytest.raises(ValueError, match="pos_weight=nan"):
        step_bce_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), pos_weight=float("nan"))


BAD_LABELS = {"nan": float("nan"), "above-one": 1.5, "negative": -0.5}


@pytest.mark.parametrize("label", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_step_bce_loss_label_outside_unit_interval_under_the_mask_raises(label):
    # BCE-with-logits returns a number for a target of 1.5 or -0.5 (a wrong one), and NaN for NaN
    labels = torch.tensor([[1.0, label]])
    with pytest.raises(ValueError, match=r"labels hold \[.*\] at labelled steps"):
        step_bce_loss(torch.zeros(1, 2), labels, torch.ones(1, 2, dtype=torch.bool))


def test_step_bce_loss_bad_label_where_the_mask_is_false_is_ignored():
    mask = torch.tensor([[True, False]])
    loss = step_bce_loss(torch.zeros(1, 2), torch.tensor([[1.0, float("nan")]]), mask).loss
    assert loss.item() == pytest.approx(math.log(2))  # the one labelled step at p = 0.5: -log(0.5)


BAD_LOSS_ARGS = {
    "float-mask": (lambda: step_bce_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1)), "label_mask"),
    "mask-flag-not-bool": (lambda: step_bce_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool),
                                                 use_mask_after_first_error="yes"), "use_mask_after_first_error"),
    "bool-pos-weight": (lambda: step_bce_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool),
                                              pos_weight=True), "pos_weight"),
    "nan-threshold": (lambda: mask_after_first_error(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool),
                                                     threshold=float("nan")), "threshold"),
    "is-correct-not-bool": (lambda: outcome_sample(StepSample("q", ["a"]), is_correct=1.0), "is_correct"),
    "ignore-id-float": (lambda: next_token_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long),
                                                torch.ones(1, 2), ignore_ids=(1.0,)), "ignore_ids"),
}


@pytest.mark.parametrize("call,name", BAD_LOSS_ARGS.values(), ids=BAD_LOSS_ARGS.keys())
def test_loss_functions_bad_argument_raises_naming_it(call, name):
    with pytest.raises(ValueError, match=name):
        call()
