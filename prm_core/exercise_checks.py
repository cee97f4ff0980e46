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
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prm_core import aggregation, labeling, losses, metrics, rl, search, voting
from prm_core.training import TrainConfig, _lr_lambda

N_RANDOM = 20  # random cases per exercise, after the fixed ones


class ExerciseFailed(AssertionError):
    """A check found a case where the learner's function and the reference disagree."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives, its cases and its reference."""

    name: str
    notebook: str  # stem of the notebook that holds it, e.g. "03_loss"
    cases: Callable[[np.random.Generator], Iterable[tuple]]  # argument tuples: fixed first, then random
    reference: Callable[..., Any]
    compare: Callable[[Any, Any], bool]
    adapt: Callable[[tuple], tuple] | None = None  # case args -> the learner's args, built fresh per call


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, torch.Tensor):
        return (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype
                and torch.allclose(got.float(), want.float(), atol=1e-5, equal_nan=True))
    if isinstance(want, tuple):
        return isinstance(got, tuple) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, float):
        return isinstance(got, (int, float, np.floating)) and bool(np.isclose(float(got), want, atol=1e-6,
                                                                                equal_nan=True))
    if isinstance(want, list):
        return hasattr(got, "__iter__") and list(got) == want  # None etc. is a wrong answer, not a crash
    return type(got) is type(want) and got == want


def _show(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value)
    if isinstance(value, torch.Tensor):
        text = f"tensor({text}, dtype={value.dtype})"
    return text if len(text) <= 300 else text[:297] + "..."


def run_check(exercise: Exercise, fn: Callable[..., Any], seed: int = 0) -> int:
    """Compare ``fn`` with the reference on every case; the number of cases, or ``ExerciseFailed``."""
    if not callable(fn):
        raise ExerciseFailed(f"{exercise.name} is {type(fn).__name__}, not a function; define "
                             f"`def {exercise.name}(...)` in its exercise cell.")
    n = 0
    for args in exercise.cases(np.random.default_rng(seed)):
        want = exercise.reference(*copy.deepcopy(args))
        learner_args = exercise.adapt(copy.deepcopy(args)) if exercise.adapt else copy.deepcopy(args)
        try:
            got = fn(*learner_args)
        except NotImplementedError:
            raise
        except Exception as err:  # a learner's bug: report it on the case that triggered it
            raise ExerciseFailed(f"{exercise.name}{_show(args)} raised {type(err).__name__}: {err}") from err
        if not exercise.compare(got, want):
            raise ExerciseFailed(f"{exercise.name}{_show(args)} returned {_show(got)}; expected {_show(want)}.")
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
    from prm_core.tasks.arithmetic import track_steps

    return lambda candidates: [min(track_steps(problem, steps).labels) for steps in candidates]


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


def _close_flat(got: Any, want: list[float]) -> bool:
    return _close_nested([got], [want])


def _close_nested(got: Any, want: list[list[float]]) -> bool:
    try:
        return len(got) == len(want) and all(len(g) == len(w) and np.allclose(np.asarray(g, dtype=float), w, atol=1e-6)
                                             for g, w in zip(got, want, strict=True))
    except (TypeError, ValueError):
        return False


_EXERCISES = [
    Exercise("my_step_tag_positions", "02_architecture", _tag_cases, _tag_positions_reference, _same),
    Exercise("my_gather_step_scores", "02_architecture", _gather_cases, _gather_reference, _same),
    Exercise("my_masked_step_bce", "03_loss", _bce_cases, lambda lo, la, m: losses.step_bce_loss(lo, la, m).loss, _same),
    Exercise("my_mask_after_first_error", "03_loss", _first_error_mask_cases, losses.mask_after_first_error, _same),
    Exercise("my_majority_label_accuracy", "04_training", _majority_label_cases, _majority_label_reference, _same),
    Exercise("my_warmup_cosine_lr", "04_training", _lr_cases, _lr_reference, _same),
    Exercise("my_min_aggregate", "05_aggregation", _aggregation_cases, aggregation.min_score, _same),
    Exercise("my_geomean_aggregate", "05_aggregation", _aggregation_cases, aggregation.geomean_score, _same),
    Exercise("my_majority_vote", "06_verification", lambda rng: _vote_cases(rng, False), voting.majority_vote, _same),
    Exercise("my_weighted_vote", "06_verification", lambda rng: _vote_cases(rng, True), voting.weighted_vote, _same),
    Exercise("my_expected_calibration_error", "07_visualization", _calibration_cases,
             metrics.expected_calibration_error, _same),
    Exercise("my_step_auroc", "07_visualization", _auroc_cases, metrics.step_auroc, _same),
    Exercise("my_monte_carlo_label", "08_step_labels", _mc_cases, _mc_reference, _same),
    Exercise("my_missed_error_rate", "08_step_labels", _missed_errors_cases, _missed_errors_reference, _same),
    Exercise("my_keep_top", "09_search", _keep_top_cases, search.keep_top, _same),
    Exercise("my_beam_step", "09_search", _beam_step_cases, _beam_step_reference, _same, adapt=_beam_step_args),
    Exercise("my_first_error_index", "10_first_error", _first_error_cases, metrics.first_error_index, _same),
    Exercise("my_processbench_f1", "10_first_error", _f1_cases, lambda p, t: metrics.first_error_f1(p, t).f1, _same),
    Exercise("my_group_advantages", "14_rl_with_process_rewards", _group_cases, rl.group_advantages, _close_flat),
    Exercise("my_process_token_advantages", "14_rl_with_process_rewards", _process_tokens_cases,
             _process_tokens_reference, _close_nested),
]
EXERCISES: dict[str, Exercise] = {e.name: e for e in _EXERCISES}
