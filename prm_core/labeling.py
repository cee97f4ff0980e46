"""Where step labels come from, and how good each source is.

Three sources, as in the PRM literature:

- **exact** (human-like): the benchmark's checker marks each step (``check_steps``); PRM800K pays
  people to do this.
- **outcome**: every step inherits the solution's final outcome. Free, but a wrong step on the way to
  a right answer is called correct, and a right step before a later mistake is called wrong.
- **Monte Carlo** (Math-Shepherd, Wang et al. 2024): from each step prefix, let the policy finish the
  solution ``k`` times. *Hard*: 1 if any rollout reaches the right answer. *Soft*: the share that
  does. They measure whether a prefix *can still lead* to the right answer, which is not the same
  as whether its last step is right: a compensating error can rescue a wrong prefix, and a trap
  ahead can doom a right one.

The rollouts of each step are drawn once with ``k_max`` and the first ``k`` are used, so the labels
for k = 1, 2, 4, ... are nested and their agreement curve is not blurred by fresh noise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from prm_core.checks import check_bool, check_choice, check_int, check_real, check_seed
from prm_core.data import StepSample, is_correct_answer
from prm_core.tasks.arithmetic import ArithmeticProblem, grade_answer
from prm_core.tasks.arithmetic_policy import NoisyPolicy

LABEL_SOURCES = ("exact", "outcome", "mc_hard", "mc_soft")


def outcome_labels(sample: StepSample) -> StepSample:
    """``sample`` with every step labelled by its outcome (``meta["is_correct_answer"]``).

    The exact labels, when present, move to ``meta["exact_labels"]`` so agreement can be measured.

    Examples
    --------
    >>> s = StepSample("q", ["2 + 3 = 6.", "6 × 2 = 12."], labels=[0.0, 0.0], answer="12",
    ...                meta={"is_correct_answer": True})
    >>> outcome_labels(s).labels
    (1.0, 1.0)
    """
    if "is_correct_answer" not in sample.meta:
        raise ValueError("sample.meta lacks 'is_correct_answer'; outcome labels need the graded outcome "
                         "(NoisyPolicy.sample writes it).")
    label = 1.0 if is_correct_answer(sample) else 0.0
    return _relabel(sample, [label] * sample.n_steps, "outcome")


def _relabel(sample: StepSample, labels: Sequence[float], source: str) -> StepSample:
    meta = {**sample.meta, "label_source": source}
    if sample.labels is not None and "exact_labels" not in meta:
        meta["exact_labels"] = list(sample.labels)
    return replace(sample, labels=tuple(labels), meta=meta)


def rollout_successes(samples: Sequence[StepSample], problems: Sequence[ArithmeticProblem],
                      policy: NoisyPolicy, n_rollouts: int, seed: int = 0,
                      show_progress: bool = True) -> list[np.ndarray]:
    """For each sample, whether each of ``n_rollouts`` policy completions of each step prefix is right.

    Parameters
    ----------
    samples : sequence of StepSample
        Solutions to label; each one's ``problem`` text must be the text of one of ``problems``.
    problems : sequence of ArithmeticProblem
        The problems the samples answer (looked up by text).
    policy : NoisyPolicy
        The policy that finishes each prefix (Math-Shepherd uses the policy being improved).
    n_rollouts : int
        Completions per prefix, ``k_max``; smaller ``k`` take the first ``k`` columns.
    seed : int, default 0
        In [0, 2**63). Sample ``i`` draws from its own ``random.Random(seed * 1_000_003 + i)``, so its
        rollouts do not depend on how many rollouts earlier samples drew.

    Returns
    -------
    list of ndarray of bool, shape (n_steps, n_rollouts) each
        Row ``j`` holds the outcomes of the completions of ``steps[: j + 1]``. The last row is the
        sample's own outcome repeated: a finished solution has nothing left to roll out.

    Raises
    ------
    ValueError
        For ``n_rollouts`` that is not an int >= 1, a bad ``seed`` (``random.Random`` would hash a
        float or a str silently), or a sample whose problem is not among ``problems``.

    Examples
    --------
    >>> from prm_core.tasks.arithmetic import make_problems, reference_solution
    >>> problem = make_problems(1, seed=0)[0]
    >>> right = StepSample(problem.text, reference_solution(problem), answer=str(problem.answer))
    >>> hits = rollout_successes([right], [problem], NoisyPolicy(), n_rollouts=4, show_progress=False)
    >>> hits[0].shape == (right.n_steps, 4), bool(hits[0][-1].all())
    (True, True)
    """
    from tqdm.std import tqdm

    n_rollouts = check_int(n_rollouts, "n_rollouts", "[1, inf)", "e.g. 8 as in Math-Shepherd")
    seed = check_seed(seed)
    check_bool(show_progress, "show_progress")
    by_text = {p.text: p for p in problems}
    out = []
    for i, sample in enumerate(tqdm(samples, desc=f"rollouts (k={n_rollouts})", disable=not show_progress)):
        problem = by_text.get(sample.problem)
        if problem is None:
            raise ValueError(f"samples[{i}].problem is not the text of any of the {len(problems)} problems "
                             "given; pass the problems the samples were drawn for.")
        rng = random.Random(seed * 1_000_003 + i)
        hits = np.zeros((sample.n_steps, n_rollouts), dtype=bool)
        for j in range(sample.n_steps - 1):
            prefix = sample.steps[: j + 1]
            for r in range(n_rollouts):
                hits[j, r] = grade_answer(policy.sample(problem, rng, prefix=prefix).answer, problem)
        hits[-1] = grade_answer(sample.answer, problem)
        out.append(hits)
    return out


def monte_carlo_labels(successes: Sequence[np.ndarray], k: int, kind: str) -> list[list[float]]:
    """Hard or soft Monte Carlo labels from the first ``k`` rollouts of each step.

    ``successes`` are ``rollout_successes``' bool arrays (n_steps, n_rollouts); ``k`` is an int in
    [1, n_rollouts] and ``kind`` "hard" or "soft" (ValueError otherwise: float "successes" would
    average into labels that no rollout gave).

    Examples
    --------
    >>> hits = [np.array([[True, False], [False, False]])]
    >>> monte_carlo_labels(hits, 2, "hard"), monte_carlo_labels(hits, 2, "soft"), monte_carlo_labels(hits, 1, "soft")
    ([[1.0, 0.0]], [[0.5, 0.0]], [[1.0, 0.0]])
    """
    check_choice(kind, "kind", ("hard", "soft"))
    out = []
    for i, hits in enumerate(successes):
        hits = np.asarray(hits)
        if hits.dtype != bool or hits.ndim != 2:
            raise ValueError(f"successes[{i}] has dtype {hits.dtype} and shape {hits.shape}; pass the (n_steps, "
                             "n_rollouts) bool arrays rollout_successes returns.")
        k = check_int(k, "k", f"[1, {hits.shape[1]}]", f"the rollouts drawn for successes[{i}]; draw more for a larger k")
        first_k = hits[:, :k]
        out.append((first_k.any(axis=1) if kind == "hard" else first_k.mean(axis=1)).astype(float).tolist())
    return out


def with_labels(samples: Sequence[StepSample], labels: Sequence[Sequence[float]], source: str) -> list[StepSample]:
    """Copies of ``samples`` carrying ``labels`` (one list per sample), their source, and their exact
    labels kept in ``meta["exact_labels"]``.

    Examples
    --------
    >>> s = StepSample("q", ["a", "b"], labels=[1.0, 0.0])
    >>> t = with_labels([s], [[1.0, 1.0]], "mc_hard")[0]
    >>> t.labels, t.meta["exact_labels"], t.meta["label_source"]
    ((1.0, 1.0), [1.0, 0.0], 'mc_hard')
    """
    if len(labels) != len(samples):
        raise ValueError(f"labels has {len(labels)} lists for {len(samples)} samples; give one per sample.")
    return [_relabel(s, y, source) for s, y in zip(samples, labels, strict=True)]


@dataclass(frozen=True)
class LabelAgreement:
    """How a label source compares with the exact step labels, step by step (at 0.5)."""

    accuracy: float  # share of steps on the same side of 0.5 as the exact label
    wrong_called_right: float  # share of exactly-wrong steps labelled >= 0.5 (missed errors)
    right_called_wrong: float  # share of exactly-right steps labelled < 0.5 (false alarms)
    n_steps: int


def label_agreement(labels: Sequence[Sequence[float]], exact: Sequence[Sequence[float]]) -> LabelAgreement:
    """Agreement of ``labels`` with ``exact`` over every step (``None`` labels are skipped).

    Every other label is a number in [0, 1], never NaN or a bool (ValueError otherwise: NaN would
    count as a step labelled wrong).

    Examples
    --------
    >>> a = label_agreement([[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]])
    >>> round(a.accuracy, 3), a.wrong_called_right, a.right_called_wrong, a.n_steps
    (0.667, 0.5, 0.0, 3)
    """
    if len(labels) != len(exact):
        raise ValueError(f"labels has {len(labels)} lists but exact has {len(exact)}; pass one per sample.")
    got, want = [], []
    for i, (y, t) in enumerate(zip(labels, exact, strict=True)):
        if len(y) != len(t):
            raise ValueError(f"labels[{i}] has {len(y)} steps but exact[{i}] has {len(t)}; labels are "
                             "never truncated to fit.")
        pairs = [(check_real(a, f"labels[{i}][{j}]", "[0, 1]"), check_real(b, f"exact[{i}][{j}]", "[0, 1]"))
                 for j, (a, b) in enumerate(zip(y, t, strict=True)) if b is not None and a is not None]
        got += [a >= 0.5 for a, _ in pairs]
        want += [b >= 0.5 for _, b in pairs]
    if not want:
        raise ValueError("no step carries both labels; pass labelled samples.")
    got_a, want_a = np.array(got), np.array(want)
    wrong, right = ~want_a, want_a
    return LabelAgreement(
        accuracy=float((got_a == want_a).mean()),
        wrong_called_right=float(got_a[wrong].mean()) if wrong.any() else float("nan"),
        right_called_wrong=float((~got_a[right]).mean()) if right.any() else float("nan"),
        n_steps=len(want),
    )
