"""Losses for step supervision (PRM) and outcome supervision (ORM, one label at the last step).

The PRM loss is binary cross-entropy at each labelled step tag. Three options change what it
teaches: ``pos_weight`` scales the "correct" class (below 1 makes errors count more), masking after
the first error drops steps whose label only repeats that an earlier step went wrong (PRM800K stops
labelling there), and soft labels (Monte Carlo estimates) are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prm_core.checks import check_bool, check_int, check_probability, check_real
from prm_core.data import StepSample


@dataclass
class StepLoss:
    loss: torch.Tensor  # scalar; exactly 0 (with a gradient path) when no step is labelled
    n_labelled: torch.Tensor  # scalar long: labelled steps that counted


def mask_after_first_error(labels: torch.Tensor, label_mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``label_mask`` with every step after a sample's first error (label < threshold) switched off.

    ``threshold`` is a number in [0, 1] (ValueError otherwise: NaN would find no error) and
    ``label_mask`` a bool tensor of ``labels``' shape.

    Examples
    --------
    >>> labels = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    >>> mask_after_first_error(labels, torch.ones(1, 4, dtype=torch.bool)).tolist()
    [[True, True, False, False]]
    """
    threshold = check_probability(threshold, "threshold", "pass e.g. threshold=0.5")
    _check_mask(label_mask, labels)
    is_error = (labels < threshold) & label_mask  # (B, S)
    errors_before = torch.cumsum(is_error.long(), dim=1) - is_error.long()  # errors strictly before each step
    return label_mask & (errors_before == 0)


def _check_mask(label_mask: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(label_mask, torch.Tensor) or label_mask.dtype != torch.bool:
        got = label_mask.dtype if isinstance(label_mask, torch.Tensor) else type(label_mask).__name__
        raise ValueError(f"label_mask has type/dtype {got}; pass a bool tensor, True at labelled steps "
                         "(e.g. label_mask.bool()).")
    if label_mask.shape != labels.shape:
        raise ValueError(f"label_mask.shape={tuple(label_mask.shape)} must equal labels.shape={tuple(labels.shape)}.")


def step_bce_loss(logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor, *,
                  pos_weight: float = 1.0, use_mask_after_first_error: bool = False) -> StepLoss:
    """Mean binary cross-entropy over labelled steps.

    Parameters
    ----------
    logits : Tensor of shape (B, S)
        One logit per step (``ProcessRewardModel`` output).
    labels : Tensor of shape (B, S)
        Targets in [0, 1]; soft labels allowed. Ignored where ``label_mask`` is False.
    label_mask : bool Tensor of shape (B, S)
        True at labelled steps.
    pos_weight : float, default 1.0
        Weight of the "correct" (label 1) term; < 1 makes errors count more.
    use_mask_after_first_error : bool, default False
        Drop the steps after each sample's first error from the loss.

    Returns
    -------
    StepLoss
        ``loss`` (mean over counted steps; 0 when none) and ``n_labelled``.

    Raises
    ------
    ValueError
        For shapes that differ, a mask that is not bool, ``pos_weight`` that is not a finite number
        > 0 (NaN would make the loss NaN), or a label under the mask that is NaN or outside [0, 1]
        (binary cross-entropy would return a number for it, a wrong one; checked for CPU tensors).

    Examples
    --------
    >>> out = step_bce_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))
    >>> round(out.loss.item(), 4)  # both steps at p = 0.5: -log(0.5)
    0.6931
    """
    if logits.shape != labels.shape or labels.shape != label_mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, labels {tuple(labels.shape)} and label_mask "
                         f"{tuple(label_mask.shape)} must have the same (B, S) shape.")
    pos_weight = check_real(pos_weight, "pos_weight", "(0, inf)", "1.0 weighs both classes equally")
    check_bool(use_mask_after_first_error, "use_mask_after_first_error")
    _check_mask(label_mask, labels)
    bad = label_mask & ~((labels >= 0) & (labels <= 1))  # (B, S); the negation catches NaN
    # Checked on the host only: on an accelerator it would cost a sync per step, and the training
    # loop's labels come from StepEncoder.collate of validated StepSamples, in [0, 1] by construction.
    if labels.device.type == "cpu" and bool(bad.any()):
        raise ValueError(f"labels hold {labels[bad][:3].tolist()} at labelled steps (label_mask True); labels "
                         "must be in [0, 1] there: mark unlabelled steps False in label_mask instead.")
    mask = mask_after_first_error(labels, label_mask) if use_mask_after_first_error else label_mask
    targets = labels.float().masked_fill(~mask, 0.0)
    weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per_step = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight, reduction="none")
    n = mask.sum()
    # Dividing by max(n, 1) makes a batch without labels give 0 (not 0/0 = NaN) and keep the graph.
    loss = (per_step * mask).sum() / n.clamp(min=1)
    return StepLoss(loss=loss, n_labelled=n)


def next_token_loss(lm_logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    ignore_ids: tuple[int, ...] = ()) -> torch.Tensor:
    """Auxiliary language-model loss: predict each next token of the text (padding and ``ignore_ids``,
    a tuple of int token ids, skipped).

    Predicting the digits after "=" teaches a small backbone the arithmetic it must later judge.
    """
    ignore_ids = tuple(check_int(t, f"ignore_ids[{i}]", "[0, inf)") for i, t in enumerate(ignore_ids))
    targets = input_ids[:, 1:].clone()  # (B, T-1)
    keep = attention_mask[:, 1:].bool()  # a view of the caller's mask when it is already bool
    for token_id in ignore_ids:
        keep = keep & (targets != token_id)  # out of place, so the caller's attention_mask is left as it was
    targets[~keep] = -100
    logits = lm_logits[:, :-1].reshape(-1, lm_logits.shape[-1]).float()  # (B*(T-1), V)
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets.reshape(-1), ignore_index=-100)


def outcome_sample(sample: StepSample, is_correct: bool) -> StepSample:
    """The ORM view of a sample: no step labels except the outcome, at the last step (``is_correct``
    a bool; ValueError otherwise).

    Examples
    --------
    >>> outcome_sample(StepSample("q", ["a", "b"], labels=[0.0, 1.0]), is_correct=True).labels
    (None, 1.0)
    """
    check_bool(is_correct, "is_correct")
    labels = [None] * (sample.n_steps - 1) + [1.0 if is_correct else 0.0]
    return StepSample(sample.problem, sample.steps, labels=labels, answer=sample.answer, meta=sample.meta)
