"""Verifier: score many candidate solutions fast, then pick or vote among them.

Scoring encodes everything once (one batched tokenizer call; ``score_encoded`` skips even that),
sorts solutions by length so each batch is tightly padded, copies each batch through pinned memory
without waiting, runs under ``torch.inference_mode`` (bf16 autocast on GPU), keeps results on the
device and copies them to the host once at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from prm_core.aggregation import aggregate
from prm_core.data import StepSample
from prm_core.encoding import EncodedSample, to_device
from prm_core.model import ProcessRewardModel
from prm_core.voting import best_of_n, majority_vote, weighted_vote

# What the model's forward reads from a collated batch; labels stay on the host when scoring.
MODEL_INPUTS = ("input_ids", "attention_mask", "step_positions", "steps_start")

# Thousands separators are part of the number: "1,000" is 1000, not the "000" after the comma.
_NUMBER = re.compile(r"-?\d+(?:,\d{3}(?!\d))*(?:\.\d+)?")


def default_answer_key(answer: str | None) -> Hashable:
    """Group answers that mean the same: the last number in the text if there is one, else the
    stripped, lower-cased text (so "The answer is 14." and "14" vote together).

    Examples
    --------
    >>> default_answer_key("The answer is 14."), default_answer_key(" Fourteen ")
    (14.0, 'fourteen')
    """
    if answer is None:
        return None
    numbers = _NUMBER.findall(answer)
    return float(numbers[-1].replace(",", "")) if numbers else answer.strip().lower()


@dataclass
class StepScores:
    """Step probabilities for N solutions, padded to the longest."""

    scores: torch.Tensor  # (N, S) float, 0 at padded steps
    mask: torch.Tensor  # (N, S) bool, True at real steps

    def per_sample(self) -> list[list[float]]:
        return [row[m].tolist() for row, m in zip(self.scores, self.mask, strict=True)]

    def solution_scores(self, rule: str = "min") -> torch.Tensor:
        """One score per solution by an aggregation rule (see ``prm_core.aggregation``)."""
        return aggregate(self.scores, self.mask, rule)


class Verifier:
    """Batched scoring and selection with a trained PRM or ORM.

    Parameters
    ----------
    model : ProcessRewardModel
    batch_size : int, default 256
        Solutions per forward pass.
    device : str or torch.device, optional
        Defaults to the model's device.
    answer_key : callable, default ``default_answer_key``
        Maps an answer to what votes are grouped by (the task's notion of "the same answer").

    Examples
    --------
    >>> verifier = Verifier(prm)  # doctest: +SKIP
    >>> best = verifier.best_of_n(candidates, rule="min")  # doctest: +SKIP
    """

    def __init__(self, model: ProcessRewardModel, *, batch_size: int = 256, device: str | torch.device | None = None,
                 answer_key: Callable[[str | None], Hashable] = default_answer_key) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1.")
        self.model = model
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.answer_key = answer_key

    def score_steps(self, samples: Sequence[StepSample]) -> StepScores:
        """Step probabilities for every sample, in the order given."""
        if len(samples) == 0:
            raise ValueError("samples is empty; pass at least one candidate solution to score.")
        return self.score_encoded(self.model.encoder.encode_many(samples))

    @torch.inference_mode()
    def score_encoded(self, encoded: Sequence[EncodedSample]) -> StepScores:
        """``score_steps`` on samples already encoded by the model's encoder, so samples scored
        again (by several models, rules or budgets) are tokenized once."""
        if len(encoded) == 0:
            raise ValueError("encoded is empty; pass at least one EncodedSample to score.")
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
        return StepScores(scores=scores.cpu(), mask=mask.cpu())

    def score(self, samples: Sequence[StepSample], rule: str = "min") -> torch.Tensor:
        """One score per solution (N,), aggregated from its step scores by ``rule``."""
        return self.score_steps(samples).solution_scores(rule)

    def rank(self, samples: Sequence[StepSample], rule: str = "min") -> list[int]:
        """Indices of ``samples`` from the highest score to the lowest (stable for ties)."""
        scores = self.score(samples, rule).tolist()
        return sorted(range(len(samples)), key=lambda i: -scores[i])

    def best_of_n(self, samples: Sequence[StepSample], rule: str = "min") -> StepSample:
        """The candidate with the highest solution score."""
        return samples[best_of_n(self.score(samples, rule).numpy())]

    def majority_vote(self, samples: Sequence[StepSample]) -> Hashable:
        """The most frequent answer (grouped by ``answer_key``); needs no model."""
        if len(samples) == 0:
            raise ValueError("samples is empty; pass at least one candidate solution.")
        return majority_vote([self.answer_key(s.answer) for s in samples])

    def weighted_vote(self, samples: Sequence[StepSample], rule: str = "min") -> Hashable:
        """The answer whose candidates' solution scores sum highest (PRM-weighted vote)."""
        scores = self.score(samples, rule).numpy()
        return weighted_vote([self.answer_key(s.answer) for s in samples], scores)
