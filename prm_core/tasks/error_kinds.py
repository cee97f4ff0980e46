"""Name the first mistake of any solution to a benchmark problem, from its text alone.

``NoisyPolicy`` records the kind of each mistake it makes; a language-model policy does not, so its
error profile is read back from the steps: the first step ``check_steps`` labels wrong is compared
with what the right step would have been.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from prm_core.checks import ArgumentTypeError, check_bool
from prm_core.data import StepSample
from prm_core.tasks.arithmetic import MISREAD_OPS, ArithmeticProblem, parse_step, track_steps

# In the order they are tested: the first that fits names the mistake.
FIRST_ERROR_KINDS = ("none", "malformed", "trap", "slip", "wrong_operand", "wrong_operation", "miscopy",
                     "bad_recheck", "too_few_steps", "too_many_steps", "other")


def first_error_kind(problem: ArithmeticProblem, steps: Sequence[str], is_ended: bool = True) -> str:
    """The kind of a solution's first mistake (one of ``FIRST_ERROR_KINDS``).

    ``malformed``: it did not end or a step does not parse; ``trap``: the tricky phrasing misread as
    ``MISREAD_OPS`` says, on the right value; ``slip``: the right computation with a wrong result;
    ``wrong_operand``/``wrong_operation``: another operand or symbol; ``miscopy``: another starting
    value; ``bad_recheck``: a recheck that breaks a right step; ``too_few_steps``/``too_many_steps``:
    every step right but the solution stops early or runs on past the last operation. ``is_ended``
    is a bool (ValueError otherwise: ``"False"`` would read as True).

    Examples
    --------
    >>> from prm_core.tasks.arithmetic import Operation
    >>> p = ArithmeticProblem(0, 12, (Operation("×", 2), Operation("+", 1)), "...", trap_index=0, trap_strength=1.0)
    >>> first_error_kind(p, ["12 + 2 = 14.", "14 + 1 = 15."]), first_error_kind(p, ["12 × 2 = 25."])
    ('trap', 'slip')
    >>> first_error_kind(p, ["12 × 2 = 24."])
    'too_few_steps'
    """
    if isinstance(steps, str) or not all(isinstance(step, str) for step in steps):
        raise ArgumentTypeError("steps must be a sequence of step strings, e.g. ['12 + 2 = 14.'].")
    check_bool(is_ended, "is_ended")
    parsed = [parse_step(s) for s in steps]
    if not is_ended or any(p is None for p in parsed):
        return "malformed"
    labels = track_steps(problem, steps).labels
    if all(label == 1.0 for label in labels):
        n_ops = sum(not p.is_recheck for p in parsed)
        if n_ops == len(problem.operations):
            return "none"
        return "too_few_steps" if n_ops < len(problem.operations) else "too_many_steps"
    j = labels.index(0.0)
    step, k = parsed[j], sum(not p.is_recheck for p in parsed[:j])  # k: the operation this step should do
    if step.is_recheck:
        return "bad_recheck"
    if k >= len(problem.operations):
        return "too_many_steps"
    op, value = problem.operations[k], problem.values[k]
    if step.a != value:
        return "miscopy"
    if k == problem.trap_index and step.symbol == MISREAD_OPS[op.symbol] and step.b == op.operand:
        return "trap"
    if step.symbol == op.symbol and step.b == op.operand:
        return "slip"
    if step.symbol == op.symbol:
        return "wrong_operand"
    if step.b == op.operand:
        return "wrong_operation"
    return "other"


def error_profile(samples: Sequence[StepSample], problems: Sequence[ArithmeticProblem]) -> dict[str, float]:
    """Share of ``samples`` whose first mistake is of each kind (``FIRST_ERROR_KINDS``; they sum to 1).

    ``problems`` are looked up by ``meta["problem_id"]``; ``meta["is_ended"]`` (default True) says
    whether the solution ended.
    """
    if not samples:
        raise ValueError("samples is empty; pass policy samples.")
    by_id: dict[Any, ArithmeticProblem] = {}
    for p in problems:
        if by_id.setdefault(p.problem_id, p) != p:
            raise ValueError(f"problems holds two different problems with problem_id={p.problem_id!r}; give each "
                             "problem its own id (ProblemGenerator does).")
    counts: Counter[str] = Counter()
    for i, s in enumerate(samples):
        pid = s.meta.get("problem_id")
        if pid not in by_id:
            raise ValueError(f"samples[{i}].meta['problem_id']={pid!r} is not among problems; pass the problems "
                             "the samples were drawn for.")
        counts[first_error_kind(by_id[pid], s.steps, bool(s.meta.get("is_ended", True)))] += 1
    return {kind: counts[kind] / len(samples) for kind in FIRST_ERROR_KINDS}
