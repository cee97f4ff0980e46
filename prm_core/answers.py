"""Which final answers are the same answer: mathematical equivalence for votes over free-form answers.

A vote counts answers, so it needs to know when two strings are one answer. ``"320,\\!000"`` and
``"320,000"`` are; ``"\\frac{1}{2}"`` and ``"0.5"`` are; ``"40,\\!000"`` and ``"320,\\!000"`` are not.
Taking "the last number in the text" gets all three wrong. Hugging Face's ``math-verify`` parses
LaTeX and plain answers into sympy and compares them (numbers to 6 decimals, sets, intervals,
equations); this module applies it once per distinct answer and groups a problem's candidates.

The course's arithmetic benchmark keeps its exact integer grader (``tasks.arithmetic.graded_answer``);
this module is for datasets whose answers are written as in MATH (PRM800K, MATH-500, ProcessBench).
``math-verify`` is imported only when an answer is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

MATH_VERIFY_HINT = "pip install math-verify (it is in prm_core's dependencies)"


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as err:  # pragma: no cover - exercised only where the package is missing
        raise ImportError(f"grouping answers by equivalence needs math-verify; {MATH_VERIFY_HINT}.") from err
    return math_verify


def parse_answer(answer: str) -> tuple[Any, ...]:
    """math-verify's parse of one final answer, cached by its text; ``()`` when nothing parses.

    A bare answer (no ``$`` and no ``\\boxed``) is read as if boxed: math-verify reads a bare
    ``"40,\\!000"`` as 40 but a boxed one as 40000.

    Examples
    --------
    >>> [str(x) for x in parse_answer("40,\\\\!000")], parse_answer("")
    (['40000', '40,000'], ())
    """
    if not isinstance(answer, str):
        raise ValueError(f"answer={answer!r} must be a str; pass None for a solution without an answer.")
    return _parse(answer)


@lru_cache(maxsize=65536)
def _parse(answer: str) -> tuple[Any, ...]:
    text = answer.strip()
    if not text:
        return ()
    if "$" not in text.replace("\\$", "") and "\\boxed" not in text:  # an escaped \$ is currency, not math mode
        text = f"\\boxed{{{text}}}"
    return tuple(_math_verify().parse(text, parsing_timeout=_timeout()))


def answers_equivalent(first: str, second: str) -> bool:
    """Whether two final answers are the same mathematical object (math-verify's ``verify``).

    Answers that do not parse are equal only when their stripped texts are equal.

    Examples
    --------
    >>> answers_equivalent("320,\\\\!000", "320,000"), answers_equivalent("\\\\frac{1}{2}", "0.5")
    (True, True)
    >>> answers_equivalent("40,\\\\!000", "320,\\\\!000")
    False
    """
    for name, value in (("first", first), ("second", second)):
        if not isinstance(value, str):
            raise ValueError(f"{name}={value!r} must be a str.")
    return _equivalent(first.strip(), second.strip())


@lru_cache(maxsize=262144)
def _equivalent(first: str, second: str) -> bool:
    if first == second:
        return True
    a, b = parse_answer(first), parse_answer(second)
    if not a or not b:
        return False
    if len(a) > 1 and len(b) > 1 and a[1] == b[1]:  # the same normalised text: no need to compare
        return True
    return bool(_math_verify().verify(list(a), list(b), timeout_seconds=_timeout()))


def _timeout() -> int | None:
    """math-verify's timeouts use signal.alarm, which only the main thread may set: off elsewhere."""
    import threading

    return 5 if threading.current_thread() is threading.main_thread() else None


def group_answers(answers: Sequence[str | None]) -> list[int]:
    """For each candidate, the index of the first candidate whose answer is equivalent to its own.

    Equal codes mean one answer for ``voting.majority_vote`` / ``weighted_vote`` /
    ``select_many``. Each new distinct answer is compared with the first member of every group so
    far, in order, and joins the first group it matches (math-verify is not transitive on rounded
    decimals, so a fixed order keeps the grouping deterministic). Candidates without an answer
    (None) share one group.

    Parameters
    ----------
    answers : sequence of str or None, shape (N,)
        One problem's candidate answers.

    Returns
    -------
    list of int, shape (N,)
        ``codes[i] <= i``; ``codes[i] == i`` when candidate i starts a group.

    Raises
    ------
    ValueError
        When an answer is neither a str nor None.

    Examples
    --------
    >>> group_answers(["40,\\\\!000", "320,\\\\!000", "320,000", "320,000"])
    [0, 1, 1, 1]
    >>> group_answers(["\\\\frac{1}{2}", None, "0.5", "\\\\frac{3}{2}", None])
    [0, 1, 0, 3, 1]
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise ValueError("answers must be a list of str or None (one per candidate), not a single str or an iterator.")
    codes: list[int] = []
    first_of_text: dict[str | None, int] = {}
    leaders: list[tuple[int, str]] = []  # (first candidate, its stripped answer) of each answered group, in order
    for i, answer in enumerate(answers):
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"answers[{i}]={answer!r} must be a str or None.")
        key = None if answer is None else answer.strip()
        if key in first_of_text:
            codes.append(codes[first_of_text[key]])
            continue
        first_of_text[key] = i
        match = None if key is None else next((j for j, text in leaders if _equivalent(text, key)), None)
        if match is None:
            if key is not None:
                leaders.append((i, key))
            codes.append(i)
        else:
            codes.append(match)
    return codes


def representative_answers(answers: Sequence[str | None]) -> list[str | None]:
    """Each candidate's answer replaced by the first equivalent answer among the candidates.

    What the votes of ``Verifier`` count: the winner is then one of the answers given, written as
    the first candidate wrote it.

    Examples
    --------
    >>> representative_answers(["320,\\\\!000", "320,000", "0.5", "\\\\frac12"])
    ['320,\\\\!000', '320,\\\\!000', '0.5', '0.5']
    """
    return [answers[code] for code in group_answers(answers)]
