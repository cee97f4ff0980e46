"""The course's exercises: what each asks for, and a check against ``prm_core``'s own implementation.

Every exercise is a function a learner writes in a notebook cell that starts ``# EXERCISE: <name>``;
names start with ``my_`` so that a stub never shadows the library function a notebook goes on to use.
``check(name, fn)`` runs ``fn`` on fixed cases (small, hand-readable) and seeded random ones, compares
each result with the reference, and stops at the first mismatch with a message that shows the input,
the expected and the returned value. ``NotImplementedError`` (an untouched stub) is re-raised as it
is, so a student notebook shows the stub's hint; ``prm_core.classroom`` turns it into a failed check.
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from prm_core import aggregation, labeling, losses, metrics, rl, search, voting
from prm_core.grading_worker import Unsupported, module_parameters
from prm_core.training import TrainConfig, _lr_lambda

N_RANDOM = 20  # random cases per exercise, after the fixed ones


class ExerciseFailed(AssertionError):
    """A check found a case where the learner's function and the reference disagree."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives, what it is worth, its cases and its reference."""

    name: str
    notebook: str  # stem of the notebook that holds it, e.g. "03_loss"
    cases: Callable[[np.random.Generator], Iterable[tuple]]  # argument tuples: fixed first, then random
    reference: Callable[..., Any]
    compare: Callable[[Any, Any], str | None] | None = None  # (got, want) -> why they differ; None: `difference`
    adapt: Callable[[tuple], tuple] | None = None  # case args -> the learner's args, built fresh per call
    build: Callable[..., tuple] | None = None  # case spec -> the arguments, built fresh for every call
    # (result, every model argument's parameters after the call) -> what is compared
    observe: Callable[[Any, list[dict[str, torch.Tensor]]], Any] | None = None
    points: int = 1  # what a pass is worth in `make grade` and in nbgrader

    def _fresh(self, case: tuple) -> tuple:
        # a model's gradients do not survive deepcopy, so model cases are built anew instead
        return self.build(*case) if self.build else copy.deepcopy(case)

    def learner_args(self, case: tuple) -> tuple:
        """Fresh arguments for one case, in the form the learner's function takes."""
        return self.adapt(self._fresh(case)) if self.adapt else self._fresh(case)

    def expected(self, case: tuple) -> Any:
        """What the reference gives on one case, seen as the learner's answer will be (``observe``)."""
        fresh = self._fresh(case)
        result = self.reference(*fresh)
        return self.observe(result, module_parameters(fresh)) if self.observe else result

    def show(self, case: tuple) -> str:
        """One case's arguments as a failure message prints them (a model case is built to be shown,
        as the learner's function got it, so call this only when something failed)."""
        return _show(self.learner_args(case) if self.build else case)

    def differ(self, got: Any, want: Any) -> str | None:
        """Why ``got`` is not ``want`` (a sentence), or None when it passes."""
        return (self.compare or difference)(got, want)


# One tolerance for every floating dtype a correct answer can use: float32 rounding (about 1e-7
# relative per operation) stays far inside it, and float64 is held to the same standard.
ATOL, RTOL = 1e-5, 1e-5


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"


def _float_hint(got: Any, want: Any) -> str:
    if isinstance(got, torch.Tensor) and got.dtype in (torch.float16, torch.bfloat16):
        return f"; {got.dtype} keeps about 3 significant digits: compute in float32 or float64"
    if isinstance(got, np.ndarray) and got.dtype == np.float16:
        return "; float16 keeps about 3 significant digits: compute in float32 or float64"
    return ""


def _tensor_difference(got: Any, want: torch.Tensor) -> str | None:
    if not isinstance(got, torch.Tensor):
        hint = " (convert with torch.as_tensor)" if isinstance(got, (np.ndarray, list)) else ""
        return f"a {_type_name(got)} where a torch.Tensor is expected{hint}"
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} where {tuple(want.shape)} is expected"
    if want.dtype == torch.bool and got.dtype != torch.bool:
        return f"dtype {got.dtype} where torch.bool is expected (a mask: compare, e.g. `x > 0`, or `.bool()`)"
    if want.dtype.is_floating_point and not got.dtype.is_floating_point:
        return f"dtype {got.dtype} where a floating dtype such as {want.dtype} is expected"
    if not want.dtype.is_floating_point and want.dtype != torch.bool and (got.dtype.is_floating_point or got.dtype == torch.bool):
        return f"dtype {got.dtype} where an integer dtype such as {want.dtype} is expected"
    g, w = got.detach().cpu().double(), want.detach().cpu().double()
    close = torch.isclose(g, w, rtol=RTOL, atol=ATOL, equal_nan=True) if want.dtype.is_floating_point else (g == w)
    if bool(close.all()):
        return None
    where = tuple(int(i) for i in torch.nonzero(~close)[0]) if close.dim() else ()
    at = f" at index {list(where)}" if where else ""
    return (f"values differ{at}: {g[where].item():.8g} where {w[where].item():.8g} is expected "
            f"(tolerance {ATOL:g} + {RTOL:g} x |expected|){_float_hint(got, want)}")


def difference(got: Any, want: Any) -> str | None:
    """Why the learner's ``got`` differs from the reference's ``want``, in words; None when it passes.

    Tensors must match in shape and in kind of dtype (floating, integer or bool), not in width: a
    float64 answer to a float32 reference passes when its values are within ``ATOL + RTOL * |want|``,
    the same tolerance for every floating dtype. Containers compare item by item and say which item
    differs; other values compare exactly, with their type.
    """
    if isinstance(got, Unsupported):  # a value the grader's worker could not send back
        return (f"a {got.type_name} cannot be an answer; answers are tensors, arrays, numbers, strings, None, "
                "and lists, tuples or dicts of them")
    if isinstance(want, torch.Tensor):
        return _tensor_difference(got, want)
    if isinstance(want, (tuple, list)):
        if isinstance(want, tuple) and not isinstance(got, tuple):
            return f"a {_type_name(got)} where a tuple of {len(want)} is expected"
        if isinstance(want, list) and not isinstance(got, (list, tuple)):
            return f"a {_type_name(got)} where a list is expected"
        if len(got) != len(want):
            return f"{len(got)} items where {len(want)} are expected"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            why = difference(g, w)
            if why is not None:
                return f"item {i}: {why}"
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            return f"{_show(got, 80)} where a dict with keys {list(want)} is expected"
        for key in want:
            why = difference(got[key], want[key])
            if why is not None:
                return f"{key}: {why}"
        return None
    if isinstance(want, bool):
        return None if isinstance(got, (bool, np.bool_)) and bool(got) == want else (
            f"{_show(got)} where {want} is expected")
    if isinstance(want, float):
        if isinstance(got, torch.Tensor):
            return "a torch.Tensor where a Python float is expected (return `.item()` of it)"
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
            return f"a {_type_name(got)} where a float is expected"
        try:
            value = float(got)
        except OverflowError:  # an int beyond float range
            return f"{_show(got)} where {want:.8g} is expected"
        if bool(np.isclose(value, want, rtol=RTOL, atol=ATOL, equal_nan=True)):
            return None
        return f"{value:.8g} where {want:.8g} is expected (tolerance {ATOL:g} + {RTOL:g} x |expected|)"
    if isinstance(want, int):
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
            return f"a {_type_name(got)} where an int is expected"
        return None if int(got) == want else f"{_show(int(got), 40)} where {want} is expected"
    if type(got) is not type(want):
        return f"a {_type_name(got)} where a {_type_name(want)} is expected"
    return None if got == want else f"{_show(got)} where {_show(want)} is expected"


def _show(value: Any, limit: int = 300) -> str:
    """A short, readable rendering of a case or an answer: large tensors by shape, models by class."""
    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
        text = f"<{type(value).__name__}>"
    elif isinstance(value, SimpleNamespace):
        text = "prm(" + ", ".join(f"{k}=<{type(v).__name__}>" for k, v in vars(value).items()) + ")"
    elif isinstance(value, tuple):
        text = "(" + ", ".join(_show(v, limit) for v in value) + ("," if len(value) == 1 else "") + ")"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k!r}: " + (f"<{tuple(v.shape)} {str(v.dtype)[6:]} tensor>" if isinstance(v, torch.Tensor)
                                            else _show(v, limit)) for k, v in value.items()) + "}"
    elif type(value) is int and value.bit_length() > 256:  # repr of a huge int is slow, or refused
        text = f"<an int of about {int(value.bit_length() * 0.30103) + 1} digits>"
    elif isinstance(value, torch.Tensor) and value.numel() > 24:
        text = f"tensor(shape {tuple(value.shape)}, dtype={value.dtype})"
    elif isinstance(value, torch.Tensor):
        text = f"tensor({value.tolist()!r}, dtype={value.dtype})"
    else:
        text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(exercise: Exercise, shown_args: str, got: Any, want: Any, why: str) -> str:
    """The line a learner reads for a wrong answer: the input, both values, and what differs."""
    if exercise.observe:  # what is compared is the state after the call, too large to print whole
        return f"{exercise.name}{shown_args}: {why}."
    plain = isinstance(want, (int, float, str)) and not isinstance(got, (torch.Tensor, np.ndarray))
    tail = "." if plain and type(got) is type(want) else f" ({why})."
    return f"{exercise.name}{shown_args} returned {_show(got)}; expected {_show(want)}{tail}"


def run_check(exercise: Exercise, fn: Callable[..., Any], seed: int = 0) -> int:
    """Compare ``fn`` with the reference on every case; the number of cases, or ``ExerciseFailed``."""
    if not callable(fn):
        raise ExerciseFailed(f"{exercise.name} is {type(fn).__name__}, not a function; define "
                             f"`def {exercise.name}(...)` in its exercise cell.")
    n = 0
    for case in exercise.cases(np.random.default_rng(seed)):
        want = exercise.expected(case)
        learner_args = exercise.learner_args(case)
        try:
            got = fn(*learner_args)
        except NotImplementedError:
            raise
        except Exception as err:  # a learner's bug: report it on the case that triggered it
            raise ExerciseFailed(f"{exercise.name}{exercise.show(case)} raised {type(err).__name__}: {err}") from err
        if exercise.observe:
            got = exercise.observe(got, module_parameters(learner_args))
        why = exercise.differ(got, want)
        if why is not None:
            raise ExerciseFailed(failure_message(exercise, exercise.show(case), got, want, why))
        n += 1
    return n


def check(name: str, fn: Callable[..., Any]) -> None:
    """Run exercise ``name``'s check on ``fn`` in a notebook: prints a line when it passes.

    Examples
    --------
    >>> check("my_first_error_index", metrics.first_error_index)
    my_first_error_index: passed 23 cases
    """
    if name not in EXERCISES:
        raise ValueError(f"name={name!r} is not an exercise; known: {sorted(EXERCISES)}.")
    print(f"{name}: passed {run_check(EXERCISES[name], fn)} cases")


# ---------------------------------------------------------------- cases and references


def _padded(rng: np.random.Generator, n: int, s: int, low: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, s) scores in [low, 1) and a mask with 1..s real steps per row, padding at the end."""
    scores = torch.tensor(rng.uniform(low, 1.0, size=(n, s)), dtype=torch.float32)
    lengths = rng.integers(1, s + 1, size=n)
    mask = torch.arange(s)[None, :] < torch.tensor(lengths)[:, None]
    return scores, mask


def _tag_positions_reference(n_prefix_tokens: int, step_token_counts: list[int]) -> list[int]:
    return [n_prefix_tokens + int(c) - 1 for c in np.cumsum(np.asarray(step_token_counts) + 1)]


def _tag_cases(rng):
    yield 3, [2, 4, 1]
    yield 0, [1]
    for _ in range(N_RANDOM):
        yield int(rng.integers(0, 30)), [int(c) for c in rng.integers(1, 12, size=rng.integers(1, 6))]


def _gather_reference(token_scores: torch.Tensor, step_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask = step_positions >= 0
    return token_scores.gather(1, step_positions.clamp(min=0)) * mask, mask


def _gather_cases(rng):
    yield torch.tensor([[0.1, 0.2, 0.3, 0.4]]), torch.tensor([[1, 3]])
    yield torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), torch.tensor([[2, -1], [0, 1]])
    for _ in range(N_RANDOM):
        b, t, s = (int(x) for x in rng.integers(1, 5, size=3))
        t += s
        positions = torch.tensor(np.sort(rng.choice(t, size=(b, s)), axis=1))
        cut = torch.tensor(rng.integers(1, s + 1, size=b))
        positions[torch.arange(s)[None, :] >= cut[:, None]] = -1
        yield torch.tensor(rng.normal(size=(b, t)), dtype=torch.float32), positions


def _bce_cases(rng):
    yield torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[True, True]])
    yield torch.tensor([[2.0, -1.0, 5.0]]), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[True, True, False]])
    for _ in range(N_RANDOM):
        scores, mask = _padded(rng, int(rng.integers(1, 5)), int(rng.integers(1, 6)))
        logits = torch.tensor(rng.normal(scale=2.0, size=scores.shape), dtype=torch.float32)
        labels = torch.tensor(rng.integers(0, 2, size=scores.shape), dtype=torch.float32)
        if rng.random() < 0.3:
            labels = scores  # soft targets
        yield logits, labels, mask


def _first_error_mask_cases(rng):
    yield torch.tensor([[1.0, 1.0, 0.0, 1.0]]), torch.tensor([[True, True, True, True]])
    yield torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([[True, True], [True, False]])
    for _ in range(N_RANDOM):
        scores, mask = _padded(rng, int(rng.integers(1, 5)), int(rng.integers(1, 7)))
        yield (scores > 0.3).float(), mask


def _majority_label_reference(labels: np.ndarray) -> float:
    share = float(np.nanmean(labels))
    return max(share, 1.0 - share)


def _majority_label_cases(rng):
    yield (np.array([1.0, 1.0, 0.0, np.nan]),)
    yield (np.array([[0.0, 0.0], [0.0, 1.0]]),)
    for _ in range(N_RANDOM):
        labels = rng.integers(0, 2, size=(int(rng.integers(1, 6)), int(rng.integers(1, 6)))).astype(float)
        labels[rng.random(labels.shape) < 0.2] = np.nan
        labels.flat[0] = float(rng.integers(0, 2))  # at least one labelled step
        yield (labels,)


def _lr_reference(step: int, max_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    return float(_lr_lambda(TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio))(step))


def _lr_cases(rng):
    yield 0, 100, 10, 0.1
    yield 9, 100, 10, 0.1
    yield 100, 100, 10, 0.1
    for _ in range(N_RANDOM):
        max_steps = int(rng.integers(10, 1000))
        yield int(rng.integers(0, max_steps + 1)), max_steps, int(rng.integers(1, max_steps // 2 + 1)), float(rng.uniform(0, 0.5))


def _aggregation_cases(rng):
    yield torch.tensor([[0.9, 0.2, 0.8]]), torch.tensor([[True, True, True]])
    yield torch.tensor([[0.25, 1.0, 0.0], [0.5, 0.7, 0.1]]), torch.tensor([[True, True, False], [True, False, False]])
    for _ in range(N_RANDOM):
        yield _padded(rng, int(rng.integers(1, 6)), int(rng.integers(1, 6)), low=0.01)


def _vote_cases(rng, with_scores: bool):
    yield ([3, 5, 5, 3, 7], [0.9, 0.3, 0.4, 0.1, 0.2]) if with_scores else ([3, 5, 5, 3, 7],)
    yield (["12", "7", "7"], [0.9, 0.3, 0.4]) if with_scores else (["12", "7", "7"],)
    for _ in range(N_RANDOM):
        n = int(rng.integers(1, 12))
        answers = [int(a) for a in rng.integers(0, 4, size=n)]
        yield (answers, [float(x) for x in np.round(rng.random(n), 2)]) if with_scores else (answers,)


def _calibration_cases(rng):
    yield np.array([0.1, 0.2, 0.9]), np.array([0.0, 1.0, 1.0]), 2
    yield np.array([0.05, 0.55, 0.65, 0.95]), np.array([0.0, 0.0, 1.0, 1.0]), 10
    for _ in range(N_RANDOM):
        n = int(rng.integers(4, 60))
        scores = rng.random(n)
        yield scores, (rng.random(n) < scores).astype(float), int(rng.integers(1, 15))


def _auroc_cases(rng):
    yield np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.0, 0.0, 1.0, 1.0])
    yield np.array([0.5, 0.5, 0.9]), np.array([1.0, 0.0, 1.0])  # a tie counts one half
    for _ in range(N_RANDOM):
        n = int(rng.integers(4, 40))
        labels = rng.integers(0, 2, size=n).astype(float)
        labels[:2] = [0.0, 1.0]
        yield np.round(rng.random(n), 1), labels


def _mc_reference(successes: list[bool], kind: str) -> float:
    return labeling.monte_carlo_labels([np.array(successes, dtype=bool)[None, :]], len(successes), kind)[0][0]


def _mc_cases(rng):
    yield [True, False, False, False], "hard"
    yield [True, False, False, False], "soft"
    yield [False, False], "hard"
    for _ in range(N_RANDOM):
        yield [bool(x) for x in rng.random(int(rng.integers(1, 17))) < rng.random()], ("hard", "soft")[int(rng.integers(2))]


def _missed_errors_reference(labels: list[float], exact: list[float]) -> float:
    return labeling.label_agreement([labels], [exact]).wrong_called_right


def _missed_errors_cases(rng):
    yield [1.0, 0.7, 0.2, 0.0], [1.0, 0.0, 0.0, 1.0]
    yield [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]
    for _ in range(N_RANDOM):
        n = int(rng.integers(2, 10))
        exact = [float(x) for x in rng.integers(0, 2, size=n)]
        exact[0] = 0.0
        yield [float(x) for x in np.round(rng.random(n), 2)], exact


def _keep_top_cases(rng):
    yield ["a", "b", "c", "d"], [0.2, 0.9, 0.5, 0.9], 2
    yield ["x"], [0.1], 3
    for _ in range(N_RANDOM):
        n = int(rng.integers(1, 10))
        yield [f"c{i}" for i in range(n)], [float(x) for x in np.round(rng.random(n), 1)], int(rng.integers(1, 5))


def _exact_min_score(problem):
    from prm_core.tasks.arithmetic import WeakestStepOracle

    return WeakestStepOracle(problem)


def _beam_step_reference(problem, beams, seed, beam_width, expansions):
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    rng, policy, candidates = random.Random(seed), NoisyPolicy(), []
    for prefix in beams:
        for _ in range(expansions):
            candidates.append(policy.sample(problem, rng, prefix=prefix, max_ops=1).steps)
    return search.keep_top(candidates, _exact_min_score(problem)(candidates), beam_width)


def _beam_step_cases(rng):
    from prm_core.tasks.arithmetic import make_problems, reference_solution

    problems = make_problems(8, seed=5)
    yield problems[0], [()], 0, 2, 3
    yield problems[1], [tuple(reference_solution(problems[1])[:1])], 1, 1, 4
    for i in range(N_RANDOM // 2):
        p = problems[2 + i % 6]
        yield p, [(), ()], int(rng.integers(0, 10**6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))


def _first_error_cases(rng):
    yield [0.9, 0.3, 0.1], 0.5
    yield [0.9, 0.8], 0.5
    yield [0.5, 0.49], 0.5
    for _ in range(N_RANDOM):
        yield [float(x) for x in np.round(rng.random(int(rng.integers(1, 8))), 2)], float(np.round(rng.random(), 2))


def _f1_cases(rng):
    yield [1, 2, -1], [1, 2, -1]
    yield [-1, -1, -1, 0], [1, 2, -1, -1]
    for _ in range(N_RANDOM):
        n = int(rng.integers(2, 20))
        true = [int(x) for x in rng.integers(-1, 4, size=n)]
        true[:2] = [-1, 0]
        pred = [t if rng.random() < 0.5 else int(rng.integers(-1, 4)) for t in true]
        yield pred, true


def _beam_step_args(args: tuple) -> tuple:
    """The learner's ``my_beam_step(problem, beams, policy, rng, score, beam_width, expansions)``: a fresh
    rng from the case's seed, the benchmark's policy, and a perfect scorer (each candidate's weakest
    exact step label), so every difference from the reference is the learner's."""
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    problem, beams, seed, beam_width, expansions = args
    return problem, beams, NoisyPolicy(), random.Random(seed), _exact_min_score(problem), beam_width, expansions


def _process_tokens_reference(step_rewards: list[list[float]], step_token_counts: list[list[int]]) -> list[list[float]]:
    per_step = rl.process_advantages(step_rewards)
    return [rl.token_advantages(adv, [int(e) for e in np.cumsum(counts) - 1], int(sum(counts)))
            for adv, counts in zip(per_step, step_token_counts, strict=True)]


def _process_tokens_cases(rng):
    yield [[1.0, 1.0], [1.0, 0.0]], [[2, 1], [1, 2]]  # mean 0.75, std 0.433
    yield [[0.5], [0.5, 0.5]], [[3], [1, 1]]  # all equal: no signal, every advantage 0
    yield [[0.9, 0.2, 0.8]], [[1, 1, 1]]  # one solution: normalised against its own steps
    for _ in range(N_RANDOM):
        group = int(rng.integers(2, 5))
        rewards = [[float(x) for x in np.round(rng.random(int(rng.integers(1, 5))), 2)] for _ in range(group)]
        yield rewards, [[int(c) for c in rng.integers(1, 4, size=len(r))] for r in rewards]


def _group_cases(rng):
    yield ([1.0, 0.0, 0.0, 1.0],)  # mean 0.5, std 0.5: +1 and -1
    yield ([0.3, 0.3, 0.3],)  # all equal: no signal, all 0
    yield ([0.9, 0.1],)
    for _ in range(N_RANDOM):
        rewards = [float(x) for x in np.round(rng.random(int(rng.integers(2, 9))), 2)]
        if rng.random() < 0.2:
            rewards = [rewards[0]] * len(rewards)
        yield (rewards,)


def _close_flat(got: Any, want: list[float]) -> str | None:
    return _close_nested([got], [want])


def _close_nested(got: Any, want: list[list[float]]) -> str | None:
    """Any nested sequence of numbers (lists, tuples, arrays) within the tolerance, row by row."""
    try:
        if len(got) != len(want):
            return f"{len(got)} rows where {len(want)} are expected"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            g = np.asarray(g, dtype=float)
            if g.shape != (len(w),):
                return f"row {i} has shape {g.shape} where ({len(w)},) is expected"
            if not np.allclose(g, w, rtol=RTOL, atol=ATOL):
                return f"row {i} differs (tolerance {ATOL:g} + {RTOL:g} x |expected|)"
    except (TypeError, ValueError):
        return f"a {_type_name(got)} where a list of lists of floats is expected"
    return None


# ---------------------------------------------------------------- exercises on the model itself

# The grader's own model: the course backbone at its smallest, untrained (weights seeded, built and
# cached on first use in a few seconds), so checks need no trained checkpoint and stay fast.
GRADER_BACKBONE = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64,
                   "corpus_problems": 300}


@functools.lru_cache(maxsize=1)
def _grader_backbone() -> tuple[Any, Any]:
    from prm_core.backbones import CourseTinyConfig, load_backbone

    return load_backbone("course-tiny", profile=CourseTinyConfig(**GRADER_BACKBONE))


def _grader_prm(seed: int, mlp_size: int = 0):
    from prm_core.encoding import StepEncoder
    from prm_core.model import HeadConfig, ProcessRewardModel

    backbone, tokenizer = (copy.deepcopy(x) for x in _grader_backbone())
    torch.manual_seed(seed)
    return ProcessRewardModel(backbone, StepEncoder(tokenizer, model=backbone),
                              head=HeadConfig(hidden_size=backbone.config.hidden_size, mlp_size=mlp_size))


def _grader_batch(prm, seed: int, n_samples: int) -> dict[str, torch.Tensor]:
    """A collated batch of benchmark solutions with exact step labels, of mixed lengths (padding)."""
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    samples = NoisyPolicy().sample_many(make_problems(n_samples, seed=seed), 1, seed=seed)
    return prm.encoder(samples[:n_samples])


def _head(rng: np.random.Generator, hidden_size: int) -> torch.nn.Module:
    torch.manual_seed(int(rng.integers(0, 2**31)))
    if rng.random() < 0.5:
        return torch.nn.Linear(hidden_size, 1)
    return torch.nn.Sequential(torch.nn.Linear(hidden_size, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))


def _step_logits_reference(hidden: torch.Tensor, step_positions: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    from prm_core.model import gather_step_hidden, head_logits

    with torch.no_grad():
        return head_logits(head, *gather_step_hidden(hidden, step_positions))


def _step_logits_cases(rng):
    torch.manual_seed(0)
    yield torch.randn(1, 5, 4), torch.tensor([[1, 4]]), torch.nn.Linear(4, 1)
    yield torch.randn(2, 4, 3), torch.tensor([[3, -1], [0, 2]]), torch.nn.Linear(3, 1)
    for _ in range(N_RANDOM // 4):
        b, s, h = (int(x) for x in rng.integers(1, 4, size=3))
        t = s + int(rng.integers(1, 6))
        positions = torch.tensor(np.sort(rng.choice(t, size=(b, s)), axis=1))
        cut = torch.tensor(rng.integers(1, s + 1, size=b))
        positions[torch.arange(s)[None, :] >= cut[:, None]] = -1
        yield torch.tensor(rng.normal(size=(b, t, h)), dtype=torch.float32), positions, _head(rng, h)


def _prm_forward_reference(prm, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return prm(**batch).logits


def _model_cases(rng):
    """Case specs (seed, number of solutions, head MLP width) for the exercises on the model."""
    yield 0, 1, 0
    yield 1, 3, 0
    for _ in range(2):
        yield int(rng.integers(2, 1000)), int(rng.integers(2, 5)), 8


def _model_case(seed: int, n_samples: int, mlp_size: int) -> tuple:
    """(prm, batch): a seeded grader PRM and a batch of ``n_samples`` labelled solutions."""
    prm = _grader_prm(seed, mlp_size)
    return prm, _grader_batch(prm, seed, n_samples)


def _model_parts(args: tuple) -> tuple:
    """The learner's ``my_prm_forward(prm, batch)``: ``prm`` with the parts a forward pass needs
    (``backbone``, ``head``), not the model whose ``forward`` is the answer."""
    prm, batch = args
    return SimpleNamespace(backbone=prm.backbone, head=prm.head), batch


def _training_step_reference(prm, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
    optimizer.zero_grad()
    loss = losses.step_bce_loss(prm(**batch).logits, batch["labels"], batch["label_mask"]).loss
    loss.backward()
    optimizer.step()
    return loss.item()


def _training_case(seed: int, n_samples: int, mlp_size: int) -> tuple:
    """(prm, batch, optimizer), the model holding gradients left over from an earlier backward pass:
    a step that does not zero them first trains on stale gradients."""
    prm, batch = _model_case(seed, n_samples, mlp_size)
    optimizer = torch.optim.SGD(prm.parameters(), lr=0.5)
    prm(**batch).logits.sum().backward()
    return prm, batch, optimizer


def _after_training_step(loss: Any, models: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """The returned loss, then every parameter of the model after the step: a step that was not taken,
    or was taken on stale gradients or another loss, shows here."""
    return {"the returned loss": loss} | {f"{name} after the step": p for name, p in models[0].items()}


_EXERCISES = [
    Exercise("my_step_tag_positions", "02_architecture", _tag_cases, _tag_positions_reference),
    Exercise("my_gather_step_scores", "02_architecture", _gather_cases, _gather_reference),
    Exercise("my_step_logits", "02_architecture", _step_logits_cases, _step_logits_reference, points=2),
    Exercise("my_prm_forward", "02_architecture", _model_cases, _prm_forward_reference, build=_model_case,
             adapt=_model_parts, points=2),
    Exercise("my_masked_step_bce", "03_loss", _bce_cases, lambda lo, la, m: losses.step_bce_loss(lo, la, m).loss),
    Exercise("my_mask_after_first_error", "03_loss", _first_error_mask_cases, losses.mask_after_first_error),
    Exercise("my_majority_label_accuracy", "04_training", _majority_label_cases, _majority_label_reference),
    Exercise("my_warmup_cosine_lr", "04_training", _lr_cases, _lr_reference),
    Exercise("my_training_step", "04_training", lambda rng: [(0, 2, 0), (1, 3, 8), (int(rng.integers(2, 1000)), 4, 0)],
             _training_step_reference, build=_training_case, observe=_after_training_step, points=2),
    Exercise("my_min_aggregate", "05_aggregation", _aggregation_cases, aggregation.min_score),
    Exercise("my_geomean_aggregate", "05_aggregation", _aggregation_cases, aggregation.geomean_score),
    Exercise("my_majority_vote", "06_verification", lambda rng: _vote_cases(rng, False), voting.majority_vote),
    Exercise("my_weighted_vote", "06_verification", lambda rng: _vote_cases(rng, True), voting.weighted_vote),
    Exercise("my_expected_calibration_error", "07_visualization", _calibration_cases,
             metrics.expected_calibration_error),
    Exercise("my_step_auroc", "07_visualization", _auroc_cases, metrics.step_auroc),
    Exercise("my_monte_carlo_label", "08_step_labels", _mc_cases, _mc_reference),
    Exercise("my_missed_error_rate", "08_step_labels", _missed_errors_cases, _missed_errors_reference),
    Exercise("my_keep_top", "09_search", _keep_top_cases, search.keep_top),
    Exercise("my_beam_step", "09_search", _beam_step_cases, _beam_step_reference, adapt=_beam_step_args, points=2),
    Exercise("my_first_error_index", "10_first_error", _first_error_cases, metrics.first_error_index),
    Exercise("my_processbench_f1", "10_first_error", _f1_cases, lambda p, t: metrics.first_error_f1(p, t).f1),
    Exercise("my_group_advantages", "14_rl_with_process_rewards", _group_cases, rl.group_advantages,
             compare=_close_flat),
    Exercise("my_process_token_advantages", "14_rl_with_process_rewards", _process_tokens_cases,
             _process_tokens_reference, compare=_close_nested, points=2),
]
EXERCISES: dict[str, Exercise] = {e.name: e for e in _EXERCISES}


def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises a notebook (its stem, e.g. ``"03_loss"``) must contain, in the registry's order."""
    return [e for e in _EXERCISES if e.notebook == notebook]
