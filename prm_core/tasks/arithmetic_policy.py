"""The noisy policy of the arithmetic benchmark: it writes step-by-step solutions with known mistakes.

Each normal step either computes the next operation on the value the policy *believes* it has, or
makes one mistake from a fixed taxonomy (``ERROR_KINDS``). Every sample records the kind of each step
in ``meta["step_kinds"]``, so a notebook can show which mistakes a PRM catches:

- ``ok``: right, on a right value. ``after_error``: the right computation on a value already wrong.
- ``slip``: the result is off (by ±1, ±2, ±10 or swapped digits). ``wrong_operand``: another operand.
  ``wrong_operation``: another symbol. ``miscopy``: the value carried over is mis-copied.
- ``trap``: the problem's tricky phrasing is misread, the same way in every sample (``MISREAD_OPS``),
  so wrong answers pile up on one value and majority vote can pick it.
- ``compensating``: off track, a wrong result lands on the true value: right answer, wrong steps.
- rechecks (``RECHECK_PREFIX``): ``recheck_fixed`` redoes a mistaken step correctly from a right value
  and puts the solution back on track, ``recheck_failed`` gets it wrong again, ``recheck_needless``
  confirms a right step, ``recheck_broke`` "corrects" a right step into a wrong one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields

from prm_core.checks import ArgumentTypeError, check_int, check_probability, check_seed
from prm_core.config_checks import check_fields
from prm_core.data import StepSample, is_correct_answer
from prm_core.tasks.arithmetic import (
    MISREAD_OPS,
    OPS,
    ArithmeticProblem,
    apply_op,
    format_step,
    graded_answer,
    track_steps,
)

# The mistake kinds a solution can contain (the policy also writes "ok", "after_error", "recheck_fixed"
# and "recheck_needless" steps, which are not errors of their own).
ERROR_KINDS = ("slip", "wrong_operand", "wrong_operation", "miscopy", "trap", "compensating",
               "recheck_failed", "recheck_broke")
_FIRST_LEADS = ("", "First, ")
_LEADS = ("", "Then ", "Next, ", "Now ", "So ")
_SLIP_DELTAS = (-10, -2, -1, 1, 2, 10)
# Mistakes the policy may notice and recheck. A compensating step looks right to it, and so does a
# misread trap: the arithmetic of a misreading is right, so rechecking it repeats the misconception.
_MISTAKES = frozenset({"slip", "wrong_operand", "wrong_operation", "miscopy"})
_ON_TRACK_KINDS = frozenset({"ok", "recheck_fixed", "recheck_needless"})
Computation = tuple[int, str, int, int]  # (a, symbol, b, c) of "a symbol b = c."


@dataclass(frozen=True)
class PolicyConfig:
    """Per-step mistake probabilities of ``NoisyPolicy``.

    The four plain mistakes are drawn as one categorical per normal step, so their sum must be <= 1.
    The defaults (with ``ProblemConfig``'s 2-8 operations) are tuned for *headroom*, never toward a
    method: on the standard best-of-N set some problems have no right answer among 16 samples (the
    oracle at N = 16 is about 0.94) and majority vote over 64 samples is wrong on about two problems
    in five, mostly on the trap's answer, so verifiers have room to differ. On 2,000 default problems
    x 5 samples about 37% of solutions end on the right answer and 24% have every step right
    (``benchmark_stats``; pinned in ``tests/test_arithmetic.py``). A trap is taken at full strength
    (``p_trap * trap_strength``, up to 1) and never rechecked (a misreading looks right to its
    solver), and compensation is rare enough that a long chain off the true path seldom lands back on it.
    """

    p_slip: float = 0.06  # per normal step: the result is off
    p_wrong_operand: float = 0.04  # per normal step: another operand, computed exactly
    p_wrong_operation: float = 0.03  # per normal step: another symbol, computed exactly
    p_miscopy: float = 0.03  # per normal step: the carried value is mis-copied, then computed exactly
    p_trap: float = 1.0  # at the trap operation, times the problem's trap_strength: misread it
    p_compensate: float = 0.05  # per step while holding a wrong value: land on the true value instead
    p_recheck_after_error: float = 0.3  # after a mistake: add a recheck of that operation
    p_recheck_fixes: float = 0.7  # that recheck is computed right (else it repeats or slips again)
    p_needless_recheck: float = 0.08  # after an ok step: add a recheck anyway
    p_needless_breaks: float = 0.25  # that needless recheck slips and "corrects" the right value

    def __post_init__(self) -> None:
        for f in fields(self):
            check_probability(getattr(self, f.name), f.name, "set it to 0.0 to turn that behaviour off")
        check_fields(self)  # numpy scalars become Python floats
        total = self.p_slip + self.p_wrong_operand + self.p_wrong_operation + self.p_miscopy
        if total > 1.0:
            raise ValueError(f"p_slip + p_wrong_operand + p_wrong_operation + p_miscopy = {total:.3f} must be "
                             "<= 1 (one mistake per step at most); lower some of them.")


def _swap_digits(n: int) -> int | None:
    """``n`` with its last two digits swapped (sign kept); None when that changes nothing or would
    start the number with a zero."""
    digits = str(abs(n))
    if len(digits) < 2 or digits[-1] == digits[-2] or (len(digits) == 2 and digits[-1] == "0"):
        return None
    swapped = int(digits[:-2] + digits[-1] + digits[-2])
    return -swapped if n < 0 else swapped


def _slip(rng: random.Random, exact: int) -> int:
    options = [exact + d for d in _SLIP_DELTAS] + [s for s in (_swap_digits(exact),) if s is not None]
    # A counting story has no negative counts, so a slip stays >= 0 unless the exact value is already below.
    plausible = [c for c in options if c >= 0] if exact >= 0 else options
    return rng.choice(plausible)


def _wrong_operand(rng: random.Random, problem: ArithmeticProblem, k: int, a: int) -> Computation | None:
    op = problem.operations[k]
    lowest = 2 if op.symbol in ("×", "÷") else 1  # × 1 and ÷ 1 would read as no-ops, not mistakes
    candidates = {op.operand + d for d in (-2, -1, 1, 2)} | {o.operand for o in problem.operations}
    usable = sorted(b for b in candidates - {op.operand}
                    if b >= lowest and (op.symbol != "÷" or a % b == 0) and apply_op(a, op.symbol, b) >= 0)
    if not usable:
        return None
    b = rng.choice(usable)
    return a, op.symbol, b, apply_op(a, op.symbol, b)


def _wrong_operation(rng: random.Random, problem: ArithmeticProblem, k: int, a: int) -> Computation | None:
    op = problem.operations[k]
    exact = op.apply(a)
    usable = [s for s in OPS if s != op.symbol and (s != "÷" or a % op.operand == 0)
              and apply_op(a, s, op.operand) >= 0 and apply_op(a, s, op.operand) != exact]
    if not usable:
        return None
    symbol = rng.choice(usable)
    return a, symbol, op.operand, apply_op(a, symbol, op.operand)


def _miscopy(rng: random.Random, problem: ArithmeticProblem, k: int, a: int) -> Computation | None:
    op = problem.operations[k]
    usable = sorted({c for c in (a - 1, a + 1, _swap_digits(a))
                     if c is not None and c >= 0 and op.apply(c) >= 0} - {a})
    if not usable:
        return None
    copied = rng.choice(usable)
    return copied, op.symbol, op.operand, op.apply(copied)


_PLAIN_MISTAKES = (("slip", None), ("wrong_operand", _wrong_operand), ("wrong_operation", _wrong_operation),
                   ("miscopy", _miscopy))


def trap_answer(problem: ArithmeticProblem) -> int | None:
    """The final value of a solution that falls for the trap and makes no other mistake; None if no trap.

    Examples
    --------
    >>> from prm_core.tasks.arithmetic import Operation
    >>> p = ArithmeticProblem(0, 12, (Operation("×", 2), Operation("+", 1)), "...", trap_index=0, trap_strength=0.5)
    >>> trap_answer(p)  # (12 + 2) + 1 instead of 12 × 2 + 1
    15
    """
    if problem.trap_index is None:
        return None
    value = problem.start
    for k, op in enumerate(problem.operations):
        value = apply_op(value, MISREAD_OPS[op.symbol] if k == problem.trap_index else op.symbol, op.operand)
    return value


class NoisyPolicy:
    """Samples step-by-step solutions with mistakes of known kinds, labelled exactly by ``check_steps``.

    Parameters
    ----------
    config : PolicyConfig, default PolicyConfig()
        Mistake and recheck probabilities.

    Examples
    --------
    >>> from prm_core.tasks.arithmetic import make_problems
    >>> problem = make_problems(1, seed=0)[0]
    >>> sample = NoisyPolicy().sample(problem, random.Random(0))
    >>> len(sample.steps) == len(sample.labels) == len(sample.meta["step_kinds"])
    True
    """

    def __init__(self, config: PolicyConfig = PolicyConfig()) -> None:
        if not isinstance(config, PolicyConfig):
            raise ArgumentTypeError(f"config has type {type(config).__name__}; pass a PolicyConfig.")
        self.config = config

    def _normal_step(self, problem: ArithmeticProblem, k: int, believed: int, is_on_track: bool,
                     rng: random.Random) -> tuple[str, Computation]:
        cfg, op = self.config, problem.operations[k]
        exact = op.apply(believed)
        if k == problem.trap_index and rng.random() < cfg.p_trap * problem.trap_strength:
            symbol = MISREAD_OPS[op.symbol]
            return "trap", (believed, symbol, op.operand, apply_op(believed, symbol, op.operand))
        true_after = problem.values[k + 1]
        # ÷ floors, so a wrong value can still give the true result: then there is nothing to compensate.
        if not is_on_track and exact != true_after and rng.random() < cfg.p_compensate:
            return "compensating", (believed, op.symbol, op.operand, true_after)
        u = rng.random()
        for kind, make in _PLAIN_MISTAKES:
            u -= getattr(cfg, f"p_{kind}")
            if u < 0:
                if make is None:
                    return kind, (believed, op.symbol, op.operand, _slip(rng, exact))
                computation = make(rng, problem, k, believed)
                if computation is not None:
                    return kind, computation
                break  # this mistake is impossible here (e.g. no other exact divisor): write it right
        return ("ok" if is_on_track else "after_error"), (believed, op.symbol, op.operand, exact)

    def _recheck(self, problem: ArithmeticProblem, k: int, kind: str, before: int, written: Computation,
                 rng: random.Random) -> tuple[str, Computation] | None:
        """The recheck step that may follow a step of ``kind``, or None; ``before`` is the value believed
        before that step, ``written`` its computation."""
        cfg, op = self.config, problem.operations[k]
        exact = op.apply(before)
        truth = (problem.values[k], op.symbol, op.operand, problem.values[k + 1])
        if kind in _MISTAKES and rng.random() < cfg.p_recheck_after_error:
            if rng.random() < cfg.p_recheck_fixes:
                redo = (before, op.symbol, op.operand, exact)
                # Right only when the value before was true; otherwise a right computation on a wrong value.
                return ("recheck_fixed" if redo == truth else "after_error"), redo
            # Repeating a step that happens to be right (a miscopy onto the true value) would not fail.
            repeats = rng.random() < 0.5 and written != truth
            return "recheck_failed", written if repeats else (before, op.symbol, op.operand, _slip(rng, exact))
        if kind == "ok" and rng.random() < cfg.p_needless_recheck:
            if rng.random() < cfg.p_needless_breaks:
                return "recheck_broke", (before, op.symbol, op.operand, _slip(rng, exact))
            return "recheck_needless", (before, op.symbol, op.operand, exact)
        return None

    def sample(self, problem: ArithmeticProblem, rng: random.Random, prefix: Sequence[str] = (),
               max_ops: int | None = None) -> StepSample:
        """One solution, continuing ``prefix`` (steps already written, e.g. by search or a rollout).

        The policy's state is read back from the prefix text: the next operation (rechecks do not
        advance it), the value it believes it has (``c`` of the last parsed step, else ``start``) and
        whether it is on track. Prefix steps get kind ``"prefix"``; a prefix that already covers every
        operation is returned as it is.

        Parameters
        ----------
        problem : ArithmeticProblem
        rng : random.Random
            The only source of randomness: equal rng states give equal samples.
        prefix : sequence of str, default ()
            Steps to continue from.
        max_ops : int, optional
            Write at most this many operations (each a step, plus the recheck that may follow it):
            ``max_ops=1`` is one move of a step-level search. None: finish the solution.

        Returns
        -------
        StepSample
            ``steps`` = prefix + new steps, exact ``labels``, ``answer`` = str of the final value, and
            ``meta`` with ``problem_id``, ``n_operations`` (the problem's chain length), ``step_kinds``,
            ``is_correct_answer``, ``error_kinds`` (sorted) and ``n_prefix_steps``.

        Examples
        --------
        >>> from prm_core.tasks.arithmetic import make_problems, reference_solution
        >>> problem = make_problems(1, seed=0)[0]
        >>> first = reference_solution(problem)[:1]
        >>> sample = NoisyPolicy().sample(problem, random.Random(0), prefix=first)
        >>> sample.steps[:1] == tuple(first), sample.labels[0]
        (True, 1.0)
        """
        if isinstance(prefix, str) or not all(isinstance(step, str) for step in prefix):
            raise ArgumentTypeError("prefix must be a sequence of step strings, e.g. prefix=['12 + 5 = 17.'].")
        if max_ops is not None:
            max_ops = check_int(max_ops, "max_ops", "[1, inf)", "pass None to finish the solution, or max_ops=1 for one step")
        track = track_steps(problem, prefix)
        steps, kinds = list(prefix), ["prefix"] * len(prefix)
        believed, is_on_track = track.last_value, track.is_on_track
        end = len(problem.operations) if max_ops is None else min(len(problem.operations), track.next_op_index + max_ops)
        for k in range(track.next_op_index, end):
            lead = rng.choice(_FIRST_LEADS if not steps else _LEADS)
            kind, written = self._normal_step(problem, k, believed, is_on_track, rng)
            steps.append(format_step(*written, lead=lead))
            kinds.append(kind)
            before, believed, is_on_track = believed, written[3], kind == "ok"
            recheck = self._recheck(problem, k, kind, before, written, rng)
            if recheck is not None:
                kind, written = recheck
                steps.append(format_step(*written, is_recheck=True))
                kinds.append(kind)
                believed, is_on_track = written[3], kind in _ON_TRACK_KINDS
        answer, is_correct_answer = graded_answer(problem, steps)
        meta = {"problem_id": problem.problem_id, "n_operations": len(problem.operations), "step_kinds": kinds,
                "is_correct_answer": is_correct_answer, "error_kinds": sorted(set(kinds) & set(ERROR_KINDS)),
                "n_prefix_steps": len(prefix)}
        return StepSample(problem=problem.text, steps=steps, labels=track_steps(problem, steps).labels,
                          answer=answer, meta=meta)

    def sample_many(self, problems: Sequence[ArithmeticProblem], n_samples: int, seed: int) -> list[StepSample]:
        """``n_samples`` solutions per problem, problem by problem, from one ``random.Random(seed)``
        (``n_samples`` an int >= 1, ``seed`` an int in [0, 2**63); ValueError otherwise).

        Examples
        --------
        >>> from prm_core.tasks.arithmetic import make_problems
        >>> samples = NoisyPolicy().sample_many(make_problems(2, seed=0), n_samples=3, seed=0)
        >>> len(samples), [s.meta["problem_id"] for s in samples]
        (6, [0, 0, 0, 1, 1, 1])
        """
        n_samples = check_int(n_samples, "n_samples", "[1, inf)", "pass n_samples=1 for one solution per problem")
        seed = check_seed(seed)
        rng = random.Random(seed)
        return [self.sample(problem, rng) for problem in problems for _ in range(n_samples)]


def benchmark_stats(samples: Sequence[StepSample]) -> dict[str, float]:
    """Solution-level rates of a batch of policy samples.

    Parameters
    ----------
    samples : sequence of StepSample
        Labelled samples whose ``meta`` holds ``is_correct_answer`` and ``error_kinds``, as
        ``NoisyPolicy.sample`` writes them; at least one.

    Returns
    -------
    dict of str to float
        ``n_solutions``; ``correct_answer_rate``; ``all_steps_correct_rate`` (every label 1.0);
        ``right_answer_wrong_step_rate`` (answer right, some label below 1); and ``rate_<kind>`` for
        each of ``ERROR_KINDS``, the share of solutions with at least one step of that kind.

    Examples
    --------
    >>> s = StepSample("q", ["2 + 3 = 6."], labels=[0.0], answer="6",
    ...                meta={"is_correct_answer": False, "error_kinds": ["slip"]})
    >>> stats = benchmark_stats([s])
    >>> stats["correct_answer_rate"], stats["rate_slip"], stats["rate_trap"]
    (0.0, 1.0, 0.0)
    """
    if not samples:
        raise ValueError("samples is empty; pass at least one sampled solution.")
    counts: dict[str, float] = {"correct_answer_rate": 0, "all_steps_correct_rate": 0,
                                "right_answer_wrong_step_rate": 0, **{f"rate_{k}": 0 for k in ERROR_KINDS}}
    for i, sample in enumerate(samples):
        if sample.labels is None or "is_correct_answer" not in sample.meta or "error_kinds" not in sample.meta:
            raise ValueError(f"samples[{i}] lacks labels or meta['is_correct_answer'/'error_kinds']; pass "
                             "samples from NoisyPolicy.sample.")
        is_correct = is_correct_answer(sample, f"samples[{i}]")
        all_right = all(label == 1.0 for label in sample.labels)
        counts["correct_answer_rate"] += is_correct
        counts["all_steps_correct_rate"] += all_right
        counts["right_answer_wrong_step_rate"] += is_correct and not all_right
        for kind in set(sample.meta["error_kinds"]) & set(ERROR_KINDS):
            counts[f"rate_{kind}"] += 1
    stats = {name: count / len(samples) for name, count in counts.items()}
    stats["n_solutions"] = float(len(samples))
    return stats


def main(argv: Sequence[str] | None = None) -> None:
    """Print ``benchmark_stats`` as JSON: ``python -m prm_core.tasks.arithmetic_policy --problems 2000``."""
    import argparse
    import json

    from prm_core.tasks.arithmetic import make_problems

    parser = argparse.ArgumentParser(description="Statistics of the noisy policy on the arithmetic benchmark.")
    parser.add_argument("--problems", type=int, default=2000, help="number of problems")
    parser.add_argument("--samples", type=int, default=5, help="solutions sampled per problem")
    parser.add_argument("--seed", type=int, default=0, help="seeds the problems (seed) and the samples (seed + 1)")
    args = parser.parse_args(argv)
    problems = make_problems(args.problems, seed=args.seed)
    samples = NoisyPolicy().sample_many(problems, n_samples=args.samples, seed=args.seed + 1)
    print(json.dumps({k: round(v, 4) for k, v in benchmark_stats(samples).items()}, indent=2))


if __name__ == "__main__":
    main()
