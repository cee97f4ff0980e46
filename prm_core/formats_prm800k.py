"""PRM800K (openai/prm800k) files <-> ``StepSample`` lists.

A PRM800K row is one labelled solution. ``label.steps[k].completions`` holds the candidate texts
for step k, each rated -1 (wrong), 0 (neutral: "isn't incorrect, but makes no progress") or +1
by a human, or null. Phase 1 (``generation`` null) often has several rated alternatives per step:
the labeler continued with ``chosen_completion``, or wrote ``human_completion`` when none was
good. Phase 2 (``generation`` an int) labels pre-generated solutions
(``question.pre_generated_steps``) and stops at the first error, so most steps have one completion
and later steps no label. Import the reader and writer from ``prm_core.formats``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from prm_core.data import StepSample
from prm_core.formats_io import Destination, ReadResult, Source, _field, _read, _RowError, _write

PHASES: tuple[str, ...] = ("phase1", "phase2")
RATINGS = (-1, 0, 1)
_QUESTION_META = ("ground_truth_answer", "ground_truth_solution", "pre_generated_verifier_score")
_ROW_META = ("labeler", "timestamp", "generation", "is_quality_control_question", "is_initial_screening_question")


def _check_label(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) \
            or not 0.0 <= value <= 1.0:
        what = "a neutral" if name == "neutral" else "a human-written"
        raise ValueError(f"{name}={value!r} must be a float in [0, 1] or None: 1.0 counts {what} step "
                         "as correct, 0.0 as a mistake, 0.5 as halfway, None leaves it unlabelled.")
    return float(value)


def _check_neutral(neutral: float | None) -> float | None:
    return _check_label("neutral", neutral)


def _label(rating: int | None, neutral: float | None) -> float | None:
    return {1: 1.0, -1: 0.0, 0: neutral}[rating] if rating is not None else None


def _completion(value: Any, name: str) -> dict[str, Any]:
    """A checked completion: a dict with a str ``text``, a rating in {-1, 0, 1, null}."""
    if isinstance(value, str):  # a human_completion stored as bare text
        return {"text": value, "rating": None}
    if not isinstance(value, Mapping):
        raise _RowError(f"field '{name}'={value!r} must be an object with 'text' and 'rating'.")
    _field(value, "text", str, name=f"{name}.text")
    rating = value.get("rating")
    if rating is not None and (isinstance(rating, bool) or rating not in RATINGS):
        raise _RowError(f"field '{name}.rating'={rating!r} must be -1, 0, 1 or null.")
    _field(value, "flagged", bool, name=f"{name}.flagged", optional=True)
    return dict(value)


def _is_empty_step(step: Mapping[str, Any]) -> bool:
    """A step with nothing to follow: no completion, no choice, no human-written step."""
    return (not step.get("completions") and step.get("chosen_completion") is None
            and step.get("human_completion") is None)


def _follow(raw_steps: list[Any]) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], list[int], int]:
    """The completion followed at each step, the alternatives not followed, the human-written steps,
    and how many steps were cut at the first step with nothing to follow."""
    followed, alternatives, human_steps = [], [], []
    for k, step in enumerate(raw_steps):
        name = f"label.steps[{k}]"
        if not isinstance(step, Mapping):
            raise _RowError(f"field '{name}'={step!r} must be an object with 'completions'.")
        if _is_empty_step(step):  # released rows end this way: keep what came before
            return followed, alternatives, human_steps, len(raw_steps) - k
        raw = step.get("completions")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise _RowError(f"field '{name}.completions'={raw!r} has type {type(raw).__name__}; it must be a list "
                            "or null.")
        completions = [_completion(c, f"{name}.completions[{j}]") for j, c in enumerate(raw)]
        chosen = _field(step, "chosen_completion", int, name=f"{name}.chosen_completion", optional=True)
        human = step.get("human_completion")
        if chosen is not None:
            if not 0 <= chosen < len(completions):
                raise _RowError(f"field '{name}.chosen_completion'={chosen} is out of range for "
                                f"{len(completions)} completions; use an index from 0 or null.")
            pick = completions[chosen]
        elif human is not None:
            pick = _completion(human, f"{name}.human_completion")
            human_steps.append(k)
        elif len(completions) == 1 or (completions and k == len(raw_steps) - 1):
            # The row ends here without a choice (e.g. found_error): phase 2 lists the
            # pre-generated step first, so take the first step rated -1, else the first step.
            pick = next((c for c in completions if c.get("rating") == -1), completions[0])
        else:
            raise _RowError(f"field '{name}' has {len(completions)} completions, chosen_completion null and no "
                            "human_completion, yet later steps follow; set chosen_completion to the index "
                            "the solution continued with.")
        followed.append(pick)
        alternatives.append([c for c in completions if c is not pick])
    return followed, alternatives, human_steps, 0


def read_prm800k(path_or_lines: Source, *, neutral: float | None = 1.0, human: float | None = 1.0,
                 phase: str | None = None, exclude_quality_control: bool = True, exclude_screening: bool = True,
                 on_error: str = "raise") -> ReadResult:
    """Read PRM800K rows into one sample per row, following the path the labeler took.

    At each step the path takes ``chosen_completion``; if that is null, ``human_completion``; if
    that is null too, the step must be the row's last (or have one completion), and the path takes
    its first completion rated -1, else its first completion. A step whose ``completions``,
    ``chosen_completion`` and ``human_completion`` are all null (or empty) has nothing to follow:
    the row is kept up to the step before it, and the steps from there on are cut and counted
    (``meta["n_cut_steps"]``, ``ReadResult.cut``); a row cut before its first step is excluded as
    "no_steps". Ratings become labels: +1 -> 1.0, -1 -> 0.0, null -> None, 0 -> ``neutral``. A
    human-written step (phase 1: the labeler wrote it when every completion was rated -1) carries no
    rating in the released files; it counts as correct, as PRM800K's README says, so it gets
    ``human`` (an explicit rating on it wins). Its index is in ``meta["human_steps"]``. When the path
    is the start of ``question.pre_generated_steps`` (phase 2), the sample holds all pre-generated
    steps and the unlabelled rest gets None. ``answer`` is ``question.pre_generated_answer`` (None
    in phase 1).

    ``meta`` keeps the rest: ``labeler``, ``timestamp``, ``generation``, ``phase`` ("phase1" when
    ``generation`` is null, else "phase2"), ``finish_reason``, ``total_time``, the question's
    ``ground_truth_answer``, ``ground_truth_solution`` and ``pre_generated_verifier_score``, the
    quality-control and screening flags, ``ratings`` (raw, per labelled step), ``flagged_steps`` and
    ``human_steps`` (indices), ``alternatives`` (per labelled step, the rated completions not
    followed) and ``neutral``.

    Parameters
    ----------
    path_or_lines : str, path, or iterable of str or dict
        A ``.jsonl`` (or ``.json`` list) file, JSON lines, or parsed rows.
    neutral : float or None, default 1.0
        The label of a step rated 0. The default counts neutral steps as correct: PRM800K rates 0
        a step that is reasonable but makes no progress, which is not a mistake, and Lightman et
        al. (2023) also treat neutral as positive in some of their analyses. Choose 0.0 to count
        them as mistakes, 0.5 for halfway, None to leave them unlabelled. Stored in ``meta``.
    phase : {"phase1", "phase2"}, optional
        Keep only rows of that phase; others are counted in ``excluded["other_phase"]``.
    human : float or None, default 1.0
        The label of a human-written step without a rating: 1.0 (PRM800K's and TRL's reading),
        None to leave it unlabelled. Stored in ``meta["human_label"]``.
    exclude_quality_control, exclude_screening : bool, default True
        Leave out quality-control rows (served to every labeler) and initial-screening rows,
        counted in ``excluded["quality_control"]`` / ``excluded["screening"]``. Exclusion reads
        only the flags; excluded rows are not checked further.
    on_error : {"raise", "skip"}, default "raise"
        What a malformed row does: raise ``ValueError`` naming its line, or be skipped and counted.

    Returns
    -------
    ReadResult
        One sample per kept row. Rows with no step at all (e.g. a "bad_problem" reported at once)
        are counted in ``excluded["no_steps"]``.

    Examples
    --------
    >>> from prm_core.formats import fixture_path
    >>> result = read_prm800k(fixture_path("prm800k"))
    >>> len(result), result.excluded
    (3, {'quality_control': 1, 'screening': 1})
    >>> [s.labels for s in read_prm800k(fixture_path("prm800k"), neutral=0.5)]
    [(1.0, 0.5, 1.0), (1.0, 0.0, None), (0.5, 1.0)]
    """
    neutral = _check_neutral(neutral)
    human = _check_label("human", human)
    if phase is not None and phase not in PHASES:
        raise ValueError(f"phase={phase!r} must be None (both phases) or one of {list(PHASES)}.")

    def parse(row: Mapping[str, Any]) -> StepSample | str:
        if exclude_quality_control and _field(row, "is_quality_control_question", bool, optional=True):
            return "quality_control"
        if exclude_screening and _field(row, "is_initial_screening_question", bool, optional=True):
            return "screening"
        generation = _field(row, "generation", int, optional=True)
        row_phase = "phase1" if generation is None else "phase2"
        if phase is not None and row_phase != phase:
            return "other_phase"
        question, label = _field(row, "question", Mapping), _field(row, "label", Mapping)
        problem = _field(question, "problem", str, name="question.problem")
        raw_steps = _field(label, "steps", list, name="label.steps")
        followed, alternatives, human_steps, n_cut = _follow(raw_steps)
        texts = [c["text"] for c in followed]
        pre = _field(question, "pre_generated_steps", list, name="question.pre_generated_steps", optional=True)
        for k, text in enumerate(pre or ()):
            _field({"text": text}, "text", str, name=f"question.pre_generated_steps[{k}]")
        steps = pre if pre and len(texts) <= len(pre) and pre[: len(texts)] == texts else texts
        if not steps:
            return "no_steps"
        ratings = [c.get("rating") for c in followed]
        labels = [human if r is None and k in human_steps else _label(r, neutral) for k, r in enumerate(ratings)]
        labels += [None] * (len(steps) - len(texts))
        meta: dict[str, Any] = {key: row.get(key) for key in _ROW_META}
        meta.update({key: question.get(key) for key in _QUESTION_META})
        meta.update(phase=row_phase, finish_reason=_field(label, "finish_reason", str, optional=True,
                                                          name="label.finish_reason"),
                    total_time=label.get("total_time"), ratings=ratings, human_steps=human_steps,
                    flagged_steps=[k for k, c in enumerate(followed) if c.get("flagged")],
                    alternatives=alternatives, neutral=neutral, human_label=human)
        if n_cut:
            meta.update(n_cut_steps=n_cut, cut_reason=f"label.steps[{len(raw_steps) - n_cut}] has no completion, "
                        "chosen_completion or human_completion; the row is kept up to the step before it.")
        if pre and steps is not pre:
            meta["pre_generated_steps"] = pre  # the labelled path left the pre-generated one: keep both
        answer = _field(question, "pre_generated_answer", str, name="question.pre_generated_answer", optional=True)
        return StepSample(problem, steps, labels=labels, answer=answer, meta=meta)

    return _read(path_or_lines, parse, on_error, "read_prm800k")


def _rating(label: float | None, neutral: float | None, k: int) -> int | None:
    if label is None:
        return None
    if label in (0.0, 1.0):
        return 1 if label == 1.0 else -1
    if label == neutral:
        return 0
    raise ValueError(f"labels[{k}]={label!r} has no PRM800K rating: ratings are +1 (1.0), -1 (0.0), null "
                     f"(None) and 0 (neutral={neutral!r}); pass neutral={label!r} if it marks neutral steps, "
                     "or round the label.")


def _prm800k_row(sample: StepSample, neutral: float | None) -> dict[str, Any]:
    meta, n = sample.meta, sample.n_steps
    labels = sample.labels if sample.labels is not None else (None,) * n
    raw = meta.get("ratings") if isinstance(meta.get("ratings"), list) else []
    human, flagged = set(meta.get("human_steps") or ()), set(meta.get("flagged_steps") or ())

    def keeps_raw(k: int, label: float | None) -> bool:
        # A raw rating that still maps to the label is kept, so a neutral 0 read with neutral=1.0
        # stays 0, and a human-written step's null rating (read as meta["human_label"]) stays null.
        if k >= len(raw) or raw[k] not in (*RATINGS, None):
            return False
        is_unrated_human = raw[k] is None and k in human and label is not None and label == meta.get("human_label")
        return _label(raw[k], neutral) == label or is_unrated_human

    ratings = [raw[k] if keeps_raw(k, label) else _rating(label, neutral, k) for k, label in enumerate(labels)]
    is_pre_generated = meta.get("generation") is not None or meta.get("phase") == "phase2"
    n_labelled = n
    if is_pre_generated:  # phase 2 stops labelling at the first error: write the labelled prefix only
        last = max((k for k, r in enumerate(ratings) if r is not None), default=-1)
        n_labelled = min(n, max(last + 1, len(raw)))
    alternatives = meta.get("alternatives") if isinstance(meta.get("alternatives"), list) else []
    steps = []
    for k in range(n_labelled):
        pick = {"text": sample.steps[k], "rating": ratings[k], "flagged": True if k in flagged else None}
        others = list(alternatives[k]) if k < len(alternatives) and isinstance(alternatives[k], list) else []
        if k in human:
            steps.append({"completions": others, "human_completion": pick, "chosen_completion": None})
        else:
            steps.append({"completions": [pick, *others], "human_completion": None, "chosen_completion": 0})
    finish = meta.get("finish_reason") or ("found_error" if -1 in ratings else "solution")
    question = {"problem": sample.problem, **{key: meta.get(key) for key in _QUESTION_META},
                "pre_generated_steps": list(sample.steps) if is_pre_generated else None,
                "pre_generated_answer": sample.answer}
    row = {key: meta.get(key) for key in _ROW_META}
    row.update(is_quality_control_question=bool(row["is_quality_control_question"]),
               is_initial_screening_question=bool(row["is_initial_screening_question"]), question=question,
               label={"steps": steps, "total_time": meta.get("total_time"), "finish_reason": finish})
    return row


def write_prm800k(samples: Iterable[StepSample], path_or_file: Destination, *,
                  neutral: float | None = 1.0) -> int:
    """Write samples as PRM800K rows, one completion followed per step (``chosen_completion`` 0).

    Labels become ratings: 1.0 -> +1, 0.0 -> -1, None -> null, ``neutral`` -> 0; any other label
    raises. ``meta`` from ``read_prm800k`` is written back (labeler, flags, raw ratings,
    alternatives, human-written steps), so a read-write-read cycle keeps it. A sample whose
    ``meta`` has a ``generation`` (phase 2) is written as pre-generated steps, labelled up to its
    last labelled step; otherwise every step is written as labelled. ``finish_reason`` defaults
    to "found_error" when a step is rated -1, else "solution".

    Parameters
    ----------
    samples : iterable of StepSample
        The samples; unlabelled ones get null ratings (and read back with all-None labels).
    path_or_file : str, path, or text file
        Destination; a ``.json`` path gets a JSON list, anything else JSONL.
    neutral : float or None, default 1.0
        The label that ``read_prm800k`` gave neutral steps; pass the same value to both.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    ValueError
        When a sample cannot be written: the format cannot hold it, or a value in it (e.g. a numpy
        scalar in ``meta``) is not JSON. Nothing is written then; a path keeps its old contents.

    Examples
    --------
    >>> import io, json
    >>> out = io.StringIO()
    >>> write_prm800k([StepSample("1 + 1?", ["1 + 1 = 2.", "So 2."], labels=[1.0, 0.5])], out, neutral=0.5)
    1
    >>> [s["completions"][0]["rating"] for s in json.loads(out.getvalue())["label"]["steps"]]
    [1, 0]
    """
    neutral = _check_neutral(neutral)
    return _write(samples, path_or_file, lambda s, i: _prm800k_row(s, neutral), "write_prm800k")
