"""The one data format every stage shares: a problem, its reasoning steps, and a label per step.

Glossary (used across ``prm_core``): a *problem* is the question text; a *step* is one reasoning
step of a *solution*; a *label* is 1.0 (correct), 0.0 (incorrect), a float in between (a soft,
Monte Carlo label) or ``None`` (unlabelled: ignored by the loss).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prm_core.checks import ArgumentTypeError, check_bool, check_probability, check_real

Label = float | None

CORRECT = 1.0
INCORRECT = 0.0


def _check_label(i: int, label: Any) -> Label:
    if label is None:
        return None
    return check_real(label, f"labels[{i}]", "[0, 1]", "1.0 marks a correct step, 0.0 an incorrect one, values "
                      "in between are soft labels; use None to leave a step unlabelled")


@dataclass(frozen=True)
class StepSample:
    """One solution to one problem, split into steps, optionally labelled per step.

    Parameters
    ----------
    problem : str
        The question text; must not be blank.
    steps : sequence of str
        The solution's reasoning steps, in order; at least one, none blank.
    labels : sequence of (float or None), optional
        One label per step: 1.0 correct, 0.0 incorrect, a float in (0, 1) for a soft label,
        None for an unlabelled step. ``None`` (the default) means the whole solution is unlabelled.
    answer : str, optional
        The solution's final answer, as written.
    meta : mapping, optional
        Anything else worth keeping (ids, error kinds, source); not used by the model.

    Examples
    --------
    >>> s = StepSample("2 + 3 × 4?", ["3 × 4 = 12.", "2 + 12 = 14."], labels=[1.0, 1.0], answer="14")
    >>> s.n_steps, s.is_labelled, s.first_error_index()
    (2, True, -1)
    """

    problem: str
    steps: tuple[str, ...]
    labels: tuple[Label, ...] | None = None
    answer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.problem, str):
            raise ArgumentTypeError(f"problem has type {type(self.problem).__name__}; pass the question as a str.")
        if not self.problem.strip():
            raise ValueError("problem is empty or whitespace; pass the question text.")
        if isinstance(self.steps, str) or not isinstance(self.steps, Sequence):
            raise ArgumentTypeError(
                f"steps has type {type(self.steps).__name__}; pass a list of step strings, "
                "e.g. steps=['3 × 4 = 12.', '2 + 12 = 14.']."
            )
        steps = tuple(self.steps)
        if not steps:
            raise ValueError("steps is empty; a solution needs at least one step.")
        for i, step in enumerate(steps):
            if not isinstance(step, str):
                raise ArgumentTypeError(f"steps[{i}]={step!r} has type {type(step).__name__}; every step must be a str.")
            if not step.strip():
                raise ValueError(
                    f"steps[{i}]={step!r} is blank; remove it (and its label) or give it text."
                )
        object.__setattr__(self, "steps", steps)
        if self.labels is not None:
            if isinstance(self.labels, str) or not isinstance(self.labels, Sequence):
                raise ArgumentTypeError(f"labels has type {type(self.labels).__name__}; pass a list with one label per step.")
            if len(self.labels) != len(steps):
                raise ValueError(
                    f"labels has {len(self.labels)} entries but steps has {len(steps)}; give exactly one "
                    "label per step (None for an unlabelled step). Labels are never truncated to fit."
                )
            object.__setattr__(self, "labels", tuple(_check_label(i, x) for i, x in enumerate(self.labels)))
        if self.answer is not None and not isinstance(self.answer, str):
            raise ArgumentTypeError(f"answer={self.answer!r} has type {type(self.answer).__name__}; pass it as a str.")
        if not isinstance(self.meta, Mapping):
            raise ArgumentTypeError(f"meta has type {type(self.meta).__name__}; pass a dict.")

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def is_labelled(self) -> bool:
        """True when at least one step carries a label."""
        return self.labels is not None and any(x is not None for x in self.labels)

    def first_error_index(self, threshold: float = 0.5) -> int:
        """Index of the first step whose label is below ``threshold``; -1 when there is none.

        This is ProcessBench's target: -1 means "no erroneous step". Unlabelled steps are skipped.
        ``threshold`` is a number in [0, 1] (ValueError otherwise: NaN would find no error).

        Examples
        --------
        >>> StepSample("q", ["a", "b", "c"], labels=[1.0, 0.0, 0.0]).first_error_index()
        1
        """
        threshold = check_probability(threshold, "threshold", "pass e.g. threshold=0.5")
        if self.labels is None:
            raise ValueError("labels is None; first_error_index needs a labelled sample.")
        for i, label in enumerate(self.labels):
            if label is not None and label < threshold:
                return i
        return -1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``StepSample.from_dict`` reverses it."""
        return {
            "problem": self.problem,
            "steps": list(self.steps),
            "labels": None if self.labels is None else list(self.labels),
            "answer": self.answer,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> StepSample:
        missing = {"problem", "steps"} - set(row)
        if missing:
            raise ValueError(f"row lacks {sorted(missing)}; a StepSample dict needs 'problem' and 'steps'.")
        return cls(
            problem=row["problem"],
            steps=row["steps"],
            labels=row.get("labels"),
            answer=row.get("answer"),
            meta=row.get("meta") or {},
        )


def is_correct_answer(sample: StepSample, where: str = "sample") -> bool:
    """Whether ``sample``'s final answer is right: ``sample.meta["is_correct_answer"]``, checked.

    Read as a bool (Python's or numpy's), never by truthiness: the string ``"False"`` would read as
    True, None as False and NaN as True, and an ORM would train on the wrong outcome.

    Parameters
    ----------
    sample : StepSample
        A graded solution (``NoisyPolicy.sample``, ``LMPolicy.sample`` and ``beam_search`` write the flag).
    where : str, default "sample"
        How the message names the sample, e.g. ``"samples[3]"``.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        When ``meta`` lacks the flag; ``ArgumentTypeError`` (a ``ValueError`` too) when it is not a bool.

    Examples
    --------
    >>> is_correct_answer(StepSample("q", ["a"], meta={"is_correct_answer": True}))
    True
    >>> is_correct_answer(StepSample("q", ["a"], meta={"is_correct_answer": "False"}), "samples[0]")
    Traceback (most recent call last):
    ...
    prm_core.checks.ArgumentTypeError: samples[0].meta['is_correct_answer']='False' must be True or False, not str; grade the answer with prm_core.tasks.arithmetic.grade_answer and store the bool it returns, not text.
    """
    fix = "grade the answer with prm_core.tasks.arithmetic.grade_answer and store the bool it returns, not text"
    if "is_correct_answer" not in sample.meta:
        raise ValueError(f"{where}.meta lacks 'is_correct_answer'; {fix}.")
    return check_bool(sample.meta["is_correct_answer"], f"{where}.meta['is_correct_answer']", fix)
