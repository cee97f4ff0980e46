"""Verifier: score many candidate solutions fast, then pick or vote among them.

Scoring encodes everything once (one batched tokenizer call; ``score_encoded`` skips even that),
sorts solutions by length so each batch is tightly padded, copies each batch through pinned memory
without waiting, runs under ``torch.inference_mode`` (bf16 autocast on GPU), keeps results on the
device and copies them to the host once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from prm_core.aggregation import aggregate
from prm_core.checks import check_choice, check_int, check_probability
from prm_core.data import StepSample
from prm_core.encoding import EncodedSample, to_device
from prm_core.metrics import first_error_index
from prm_core.model import ProcessRewardModel
from prm_core.voting import best_of_n, majority_vote, weighted_vote

# What the model's forward reads from a collated batch; labels stay on the host when scoring.
MODEL_INPUTS = ("input_ids", "attention_mask", "step_positions", "steps_start")

TRUNCATED_POLICIES: tuple[str, ...] = ("raise", "prefix", "lowest")
_TRUNCATED_MEANING = {"prefix": "use the kept steps; n_dropped_steps flags them",
                      "lowest": "rank them below every whole solution",
                      "unknown": "None where the kept steps show no error"}


@dataclass
class StepScores:
    """Step probabilities for N solutions, padded to the longest, and what each one lost to truncation.

    A solution longer than the encoder's ``max_length`` is scored on the steps that fit; the rest
    are counted in ``n_dropped_steps``. Every method that turns step scores into a decision asks
    what to do with such a solution (``truncated``), and refuses by default: a prefix is not the
    solution, and a min over it can rank a solution whose wrong step was cut off first.
    """

    scores: torch.Tensor  # (N, S) float, 0 at padded steps
    mask: torch.Tensor  # (N, S) bool, True at real (scored) steps
    n_dropped_steps: torch.Tensor | None = None  # (N,) int: trailing steps not scored; None means all zero

    def __post_init__(self) -> None:
        n = self.scores.shape[0]
        if self.n_dropped_steps is None:
            self.n_dropped_steps = torch.zeros(n, dtype=torch.long)
        counts = self.n_dropped_steps
        shape = tuple(counts.shape) if hasattr(counts, "shape") else np.shape(counts)
        if shape != (n,):
            raise ValueError(f"n_dropped_steps has shape {shape}; pass one count per solution ({n}).")
        # tolist: a tensor's or array's entries as Python numbers, so a float or bool count is refused by name
        entries = counts.tolist() if hasattr(counts, "tolist") else list(counts)
        self.n_dropped_steps = torch.tensor([check_int(c, f"n_dropped_steps[{i}]", "[0, inf)", "pass whole counts of "
                                                       "dropped steps (an int tensor)") for i, c in enumerate(entries)],
                                            dtype=torch.long)

    @property
    def is_truncated(self) -> torch.Tensor:
        """(N,) bool: True where steps were dropped to fit ``max_length``."""
        return self.n_dropped_steps > 0

    def _check(self, truncated: str, allowed: tuple[str, ...], what: str) -> None:
        check_choice(truncated, "truncated", allowed)
        if truncated == "raise" and bool(self.is_truncated.any()):
            rows = torch.nonzero(self.is_truncated).flatten().tolist()
            options = " or ".join(f"truncated={a!r} ({_TRUNCATED_MEANING[a]})" for a in allowed[1:])
            raise ValueError(
                f"{len(rows)} of {len(self.n_dropped_steps)} solutions lost steps to max_length (rows {rows[:5]}"
                f"{'...' if len(rows) > 5 else ''}; {int(self.n_dropped_steps.sum())} steps in all), so their {what} "
                f"would describe a prefix, not the solution. Raise the encoder's max_length, or pass {options}.")

    def per_sample(self, truncated: str = "raise") -> list[list[float]]:
        """Each solution's step scores (its scored steps only).

        ``truncated``: "raise" (default) refuses when any solution lost steps; "prefix" returns
        the scored prefix (look up ``n_dropped_steps`` to flag it).
        """
        self._check(truncated, ("raise", "prefix"), "step scores")
        return [row[m].tolist() for row, m in zip(self.scores, self.mask, strict=True)]

    def solution_scores(self, rule: str = "min", truncated: str = "raise") -> torch.Tensor:
        """One score per solution (N,) by an aggregation rule (see ``prm_core.aggregation``).

        ``truncated``: "raise" (default) refuses when any solution lost steps; "prefix" aggregates
        the scored prefix; "lowest" gives a truncated solution the lowest score the rule can give
        (0, or -inf for ``sum_logit``). A whole solution can score as low (0 exactly), so that value
        alone does not put truncated solutions last: ``Verifier.rank`` sorts them below every whole
        one, and ``Verifier.best_of_n`` and ``Verifier.weighted_vote`` leave them (``is_truncated``)
        out of the pick and the vote (``prm_core.voting`` takes finite scores only, and a weight of
        0 would beat the negative totals of ``sum_logit``).
        """
        self._check(truncated, TRUNCATED_POLICIES, "solution scores")
        values = aggregate(self.scores, self.mask, rule)
        if truncated == "lowest":
            values = values.masked_fill(self.is_truncated, -math.inf if rule == "sum_logit" else 0.0)
        return values

    def first_error_predictions(self, threshold: float = 0.5, truncated: str = "raise") -> list[int | None]:
        """Predicted first wrong step of each solution (-1: none): ``metrics.first_error_index`` of
        its scored steps at ``threshold`` (a number in [0, 1]; ValueError otherwise).

        ``truncated``: "raise" (default); "prefix" predicts from the scored prefix, reading "no
        error there" as -1; "unknown" keeps a prediction found in the prefix (later steps cannot
        move it on a causal backbone) and gives None where the prefix shows no error, to be counted
        and left out of ``first_error_f1``.
        """
        threshold = check_probability(threshold, "threshold", "pass e.g. 0.5 or one picked on validation data "
                                      "(metrics.best_threshold)")
        self._check(truncated, ("raise", "prefix", "unknown"), "first-error predictions")
        out: list[int | None] = []
        for row, m, dropped in zip(self.scores, self.mask, self.n_dropped_steps.tolist(), strict=True):
            index = first_error_index(row[m].tolist(), threshold)
            out.append(None if index == -1 and dropped and truncated == "unknown" else index)
        return out


def _device_of(model: object) -> torch.device:
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device(getattr(model, "device", "cpu"))


@runtime_checkable
class StepScorer(Protocol):
    """What the Verifier needs of a model that is not the course's ``ProcessRewardModel``.

    ``prm_core.published`` wraps the public PRMs in this: given solutions, one probability of
    "this step is correct" per step, with the steps that did not fit counted.
    """

    def score_steps(self, samples: Sequence[StepSample], *, batch_size: int,
                    device: torch.device) -> StepScores: ...


def default_batch_size(device: str | torch.device) -> int:
    """Solutions per scoring forward when none is given: 32 on a CPU, 256 on a GPU.

    Why: on a CPU the course model's activations for 256 solutions of ~300 tokens no longer fit in
    the caches, and the longest solution pads more rows; 32 scored about twice the solutions per
    second of 256 on a 2-core AVX2 runner (``make bench``). A GPU wants large batches.
    """
    return 256 if torch.device(device).type == "cuda" else 32


class Verifier:
    """Batched scoring and selection with a PRM or ORM: the course's own, or a published one.

    Parameters
    ----------
    model : ProcessRewardModel or StepScorer
        The course's model, or a scorer from ``prm_core.published.load_published_prm``.
    batch_size : int, optional
        Solutions per forward pass. None (default): ``default_batch_size(device)``, 32 on a CPU
        and 256 on a GPU.
    device : str or torch.device, optional
        Defaults to the model's device.
    answer_key : callable, optional
        Maps one answer to what votes group it by (e.g. ``int`` for the arithmetic benchmark).
        None (default): answers are grouped by mathematical equivalence (``prm_core.answers``,
        math-verify), and a vote returns the answer as its group's first candidate wrote it.

    Examples
    --------
    >>> verifier = Verifier(prm)  # doctest: +SKIP
    >>> best = verifier.best_of_n(candidates, rule="min")  # doctest: +SKIP
    """

    def __init__(self, model: ProcessRewardModel | StepScorer, *, batch_size: int | None = None,
                 device: str | torch.device | None = None,
                 answer_key: Callable[[str | None], Hashable] | None = None) -> None:
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", "[1, inf)", "pass e.g. batch_size=32, or None for the device's default")
        if not isinstance(model, ProcessRewardModel) and not isinstance(model, StepScorer):
            raise ValueError(f"model is a {type(model).__name__}; pass a ProcessRewardModel or a scorer from "
                             "prm_core.published.load_published_prm.")
        if answer_key is not None and not callable(answer_key):
            raise ValueError(f"answer_key={answer_key!r} must be callable (answer -> key) or None.")
        self.model = model
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.batch_size = batch_size if batch_size is not None else default_batch_size(self.device)
        self.answer_key = answer_key

    def score_steps(self, samples: Sequence[StepSample]) -> StepScores:
        """Step probabilities for every sample, in the order given (``n_dropped_steps`` counts the
        steps that did not fit)."""
        if len(samples) == 0:
            raise ValueError("samples is empty; pass at least one candidate solution to score.")
        if not isinstance(self.model, ProcessRewardModel):
            return self.model.score_steps(samples, batch_size=self.batch_size, device=self.device)
        return self.score_encoded(self.model.encoder.encode_many(samples))

    @torch.inference_mode()
    def score_encoded(self, encoded: Sequence[EncodedSample]) -> StepScores:
        """``score_steps`` on samples already encoded by the model's encoder, so samples scored
        again (by several models, rules or budgets) are tokenized once."""
        if len(encoded) == 0:
            raise ValueError("encoded is empty; pass at least one EncodedSample to score.")
        if not isinstance(self.model, ProcessRewardModel):
            raise ValueError("score_encoded needs the course's ProcessRewardModel; call score_steps with a "
                             "published scorer.")
        n_steps = max(e.n_steps for e in encoded)
        scores = torch.zeros((len(encoded), n_steps), device=self.device)
        mask = torch.zeros((len(encoded), n_steps), dtype=torch.bool, device=self.device)
        was_training = self.model.training
        self.model.eval()
        use_bf16 = self.device.type == "cuda"
        try:
            # No host sync inside the loop: results are written on the device and copied back once.
            for idx, batch in self.model.encoder.iter_batches(encoded, self.batch_size):
                inputs = {key: to_device(batch[key], self.device) for key in MODEL_INPUTS}
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    out = self.model(**inputs)
                rows = to_device(torch.tensor(idx), self.device)
                width = out.logits.shape[1]
                scores[rows, :width] = torch.sigmoid(out.logits.float()) * out.mask
                mask[rows, :width] = out.mask
        finally:
            self.model.train(was_training)
        return StepScores(scores=scores.cpu(), mask=mask.cpu(),
                          n_dropped_steps=torch.tensor([e.n_dropped_steps for e in encoded], dtype=torch.long))

    def score(self, samples: Sequence[StepSample], rule: str = "min", truncated: str = "raise") -> torch.Tensor:
        """One score per solution (N,), aggregated from its step scores by ``rule``; ``truncated``
        as in ``StepScores.solution_scores``."""
        return self.score_steps(samples).solution_scores(rule, truncated)

    def rank(self, samples: Sequence[StepSample], rule: str = "min", truncated: str = "raise") -> list[int]:
        """Indices of ``samples`` from the highest score to the lowest (stable for ties).

        Under ``truncated="lowest"`` every truncated candidate ranks below every whole one (their
        lowest score, 0, would otherwise tie with a whole solution scoring exactly 0), in the order given.
        """
        if truncated != "lowest":
            scores = self.score(samples, rule, truncated).tolist()
            return sorted(range(len(samples)), key=lambda i: -scores[i])
        scored = self.score_steps(samples)
        scores = scored.solution_scores(rule, truncated).tolist()
        is_truncated = scored.is_truncated.tolist()
        return sorted(range(len(samples)), key=lambda i: (is_truncated[i], -scores[i]))  # sorted is stable

    def _selection_scores(self, samples: Sequence[StepSample], rule: str,
                          truncated: str) -> tuple[np.ndarray, np.ndarray]:
        """(N,) solution scores and (N,) bool: which candidates take part in a pick or vote. Under
        ``truncated="lowest"`` only the whole ones do (``StepScores.is_truncated``), so a truncated
        candidate's lowest score (0, or -inf under ``sum_logit``) never competes; else all."""
        if truncated != "lowest":
            values = self.score(samples, rule, truncated).numpy()
            return values, np.ones(len(values), dtype=bool)
        scored = self.score_steps(samples)
        return scored.solution_scores(rule, truncated).numpy(), ~scored.is_truncated.numpy()

    def best_of_n(self, samples: Sequence[StepSample], rule: str = "min", truncated: str = "raise") -> StepSample:
        """The candidate with the highest solution score: ``voting.best_of_n`` of ``score`` (ties: first).

        Under ``truncated="lowest"`` a truncated candidate is left out of the pick, which keeps it
        last: it wins only when every candidate is truncated (then the first one).
        """
        values, takes_part = self._selection_scores(samples, rule, truncated)
        whole = np.flatnonzero(takes_part)
        if whole.size == 0:  # every candidate truncated: all tie at the lowest score, and ties go to the first
            return samples[0]
        return samples[int(whole[best_of_n(values[whole])])]

    def answer_groups(self, samples: Sequence[StepSample]) -> list[Hashable]:
        """What each candidate's answer counts as in a vote (``answer_key``, or its group's first answer)."""
        answers = [s.answer for s in samples]
        if self.answer_key is None:
            from prm_core.answers import representative_answers

            return representative_answers(answers)
        return [self.answer_key(a) for a in answers]

    def _answered(self, samples: Sequence[StepSample]) -> list[int]:
        """Candidates that state an answer (all of them when none does): "no answer" never wins a vote."""
        if len(samples) == 0:
            raise ValueError("samples is empty; pass at least one candidate solution.")
        for i, s in enumerate(samples):
            if not isinstance(s, StepSample):
                raise ValueError(f"samples[{i}] is a {type(s).__name__}; pass StepSample candidates (with .answer).")
        answered = [i for i, s in enumerate(samples) if s.answer is not None]
        return answered or list(range(len(samples)))

    def majority_vote(self, samples: Sequence[StepSample]) -> Hashable:
        """The most frequent answer (grouped as ``answer_groups`` says) among candidates that state one;
        needs no model."""
        keep = self._answered(samples)
        return majority_vote(self.answer_groups([samples[i] for i in keep]))

    def weighted_vote(self, samples: Sequence[StepSample], rule: str = "min", truncated: str = "raise") -> Hashable:
        """The answer whose candidates' solution scores sum highest (PRM-weighted vote), among
        candidates that state one: ``voting.weighted_vote`` of ``score``.

        Under ``truncated="lowest"`` a truncated candidate takes no part in the vote, as in
        ``best_of_n`` (a weight of 0 would beat the negative totals of ``sum_logit``), unless every
        answered candidate is truncated: then the vote is among them, all of weight 0, and the first
        answer wins.
        """
        keep = self._answered(samples)
        values, takes_part = self._selection_scores(samples, rule, truncated)
        whole = [i for i in keep if takes_part[i]]
        if whole:
            keep = whole
        else:  # every answered candidate truncated (their -inf under sum_logit would not be a weight)
            values = np.zeros(len(values))
        return weighted_vote(self.answer_groups([samples[i] for i in keep]), values[keep])
