"""Step scores -> one score per solution.

A PRM scores every step of a solution; best-of-N and weighted voting need one number per
solution. Each rule here reduces a padded ``(N, S)`` tensor of step probabilities to ``(N,)``
using only the real steps (``mask`` True). Every rule is blind to something; ``AGGREGATION_NOTES``
says what, so a notebook can print the trade-off next to the curve it explains.

All rules are vectorised over rows and treat padded positions as absent, whatever value they hold
(zeros, NaN, garbage from a previous batch). Higher output means the solution looks more correct.

Every rule computes in float32 or wider: bf16 and fp16 scores are widened to float32 first (in
bf16, ``1 - 1e-6`` rounds to 1 and ``sum_logit`` overflows to inf), so they give the float32 result
of the same values; float32 and float64 scores are used as they are, and the output keeps their dtype.
In float32, ``prod`` of a long solution can underflow to 0, a tie (``prod_score``'s Notes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from prm_core.checks import check_choice

GEOMEAN_EPS = 1e-12  # log(0) is -inf; clamping keeps one p=0 step from making every geomean 0 via NaN
LOGIT_EPS = 1e-6  # logit(0) and logit(1) are infinite; clamp to [eps, 1 - eps]


def _check_inputs(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Check the batch and return ``step_scores`` in float32 or wider (bf16/fp16 widened to float32,
    float32 and float64 returned as they are, so their results stay bit for bit)."""
    if not isinstance(step_scores, torch.Tensor) or not step_scores.is_floating_point():
        got = step_scores.dtype if isinstance(step_scores, torch.Tensor) else type(step_scores).__name__
        raise ValueError(
            f"step_scores has type/dtype {got}; pass a float tensor of shape (N, S), "
            "e.g. torch.tensor(scores, dtype=torch.float32)."
        )
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(
            f"mask has type/dtype {got}; pass a bool tensor (True at real steps), e.g. mask.bool() "
            "or step_counts[:, None] > torch.arange(S)."
        )
    if step_scores.ndim != 2 or step_scores.shape != mask.shape:
        raise ValueError(
            f"step_scores.shape={tuple(step_scores.shape)} and mask.shape={tuple(mask.shape)} must be "
            "the same (N, S); pad every solution to S steps and mark real steps True in mask."
        )
    if step_scores.shape[0] == 0:
        raise ValueError("step_scores has no rows (N=0); pass at least one solution.")
    empty_rows = (~mask.any(dim=1)).nonzero().flatten()
    if empty_rows.numel():
        raise ValueError(
            f"mask rows {empty_rows[:5].tolist()} have no real step; every solution needs at least one "
            "True in mask: drop empty solutions before aggregating."
        )
    real = step_scores[mask]
    bad = torch.isnan(real) | (real < 0) | (real > 1)
    if bad.any():
        raise ValueError(
            f"step_scores holds {real[bad][:3].tolist()} at real steps; step scores must be probabilities "
            "in [0, 1]: apply torch.sigmoid to logits first."
        )
    return step_scores.float() if torch.finfo(step_scores.dtype).bits < 32 else step_scores


def min_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by its weakest real step.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Examples
    --------
    >>> min_score(torch.tensor([[0.9, 0.2, 0.0]]), torch.tensor([[True, True, False]]))
    tensor([0.2000])
    """
    step_scores = _check_inputs(step_scores, mask)
    return torch.where(mask, step_scores, torch.inf).amin(dim=1)


def prod_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by the product of its real step probabilities.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Notes
    -----
    A long solution's product can underflow to 0 in float32 (below about 1.4e-45: 160 steps at
    0.5 give 0.5**160, about 7e-49), and then every such solution ties at 0 and best-of-N takes the
    first. ``geomean`` and ``sum_logit`` work in log space and keep the order; float64 step scores
    (``scores.double()``) push the underflow out to about 1e-308.

    Examples
    --------
    >>> prod_score(torch.tensor([[0.5, 0.5, 7.0]]), torch.tensor([[True, True, False]]))
    tensor([0.2500])
    """
    step_scores = _check_inputs(step_scores, mask)
    return torch.where(mask, step_scores, 1.0).prod(dim=1)


def last_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by its last real step, wherever that sits in the row.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one. Real steps need not be contiguous.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Examples
    --------
    >>> last_score(torch.tensor([[0.1, 0.8, 0.3]]), torch.tensor([[True, True, False]]))
    tensor([0.8000])
    """
    step_scores = _check_inputs(step_scores, mask)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (N, S)
    last = torch.where(mask, positions, -1).amax(dim=1, keepdim=True)  # (N, 1), >= 0 as no row is empty
    return step_scores.gather(1, last).squeeze(1)


def mean_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by the arithmetic mean of its real step probabilities.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Examples
    --------
    >>> mean_score(torch.tensor([[0.2, 0.6, 9.0]]), torch.tensor([[True, True, False]]))
    tensor([0.4000])
    """
    step_scores = _check_inputs(step_scores, mask)
    total = torch.where(mask, step_scores, 0.0).sum(dim=1)
    return total / mask.sum(dim=1).to(step_scores.dtype)


def geomean_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by the geometric mean ``exp(mean(log p))`` of its real steps.

    Probabilities are clamped to at least ``GEOMEAN_EPS`` (1e-12) before the log.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Examples
    --------
    >>> geomean_score(torch.tensor([[0.25, 1.0, 0.0]]), torch.tensor([[True, True, False]]))
    tensor([0.5000])
    """
    step_scores = _check_inputs(step_scores, mask)
    # Fill padding with 1 before the log so NaN/negative padding never reaches torch.log.
    log_p = torch.where(mask, step_scores, 1.0).clamp(min=GEOMEAN_EPS).log()  # (N, S), 0 at padding
    return (log_p.sum(dim=1) / mask.sum(dim=1).to(step_scores.dtype)).exp()


def sum_logit_score(step_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Score each solution by the sum of ``log(p / (1 - p))`` over its real steps.

    Probabilities are clamped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` (1e-6) so the sum stays finite.
    The output is a real number, not a probability.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.

    Returns
    -------
    torch.Tensor of shape (N,)
        float32 for bf16/fp16 input, else the input's dtype.

    Raises
    ------
    ValueError
        For inputs other than the module docstring's (see ``aggregate``).

    Examples
    --------
    >>> sum_logit_score(torch.tensor([[0.5, 0.8, 0.9]]), torch.tensor([[True, True, False]]))
    tensor([1.3863])
    """
    step_scores = _check_inputs(step_scores, mask)
    p = torch.where(mask, step_scores, 0.5).clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)  # logit(0.5) = 0 at padding
    return (p.log() - torch.log1p(-p)).sum(dim=1)


AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "min": min_score,
    "prod": prod_score,
    "last": last_score,
    "mean": mean_score,
    "geomean": geomean_score,
    "sum_logit": sum_logit_score,
}

AGGREGATION_NOTES: dict[str, str] = {
    "min": "min cannot tell a solution with one weak step from one where every step is equally weak.",
    "prod": "prod shrinks with every extra step, so it penalises long solutions even when each step is sound.",
    "last": "last ignores an early error that later steps appear to recover from, trusting the final step alone.",
    "mean": "mean dilutes one bad step among many good ones, so a long solution hides its single error.",
    "geomean": "geomean still dilutes one bad step among many, though a near-zero step pulls it down harder "
    "than mean.",
    "sum_logit": "sum_logit grows with the number of steps in either direction, so it favours long confident "
    "solutions and penalises long doubtful ones.",
}


def aggregate(step_scores: torch.Tensor, mask: torch.Tensor, rule: str) -> torch.Tensor:
    """Reduce per-step probabilities to one score per solution with a named rule.

    Parameters
    ----------
    step_scores : torch.Tensor of shape (N, S)
        Per-step probabilities in [0, 1]; padded positions may hold anything.
    mask : torch.Tensor of bool, shape (N, S)
        True at real steps; every row needs at least one.
    rule : {"min", "prod", "last", "mean", "geomean", "sum_logit"}
        Key of ``AGGREGATIONS``; ``AGGREGATION_NOTES[rule]`` says what the rule misses.

    Returns
    -------
    torch.Tensor of shape (N,)
        Higher means the solution looks more correct; float32 for bf16/fp16 input, else the
        input's dtype. The same as ``AGGREGATIONS[rule](step_scores, mask)``.

    Raises
    ------
    ValueError
        For an unknown rule; unless step_scores is a float (N, S) tensor with N >= 1 and
        probabilities at real steps, and mask a bool tensor of that shape with a real step in every row.

    Examples
    --------
    >>> scores = torch.tensor([[0.9, 0.4], [0.7, 0.7]])
    >>> mask = torch.ones(2, 2, dtype=torch.bool)
    >>> aggregate(scores, mask, "min")
    tensor([0.4000, 0.7000])
    """
    check_choice(rule, "rule", sorted(AGGREGATIONS))
    return AGGREGATIONS[rule](step_scores, mask)
