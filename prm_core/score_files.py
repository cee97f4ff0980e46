"""Step scores on disk: the cache format the standard experiment and the sweeps share.

One safetensors file holds, per model and held-out part, ``<model>.<part>.scores`` (float, one row
per sample), ``.mask`` (bool, the same shape) and ``.n_dropped_steps`` (int, one per row). A file is
checked whole before any score is used, so a cut or mismatched file is refused (and, in a cache,
rebuilt once) instead of scoring the wrong samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from prm_core.checkpoints import read_tensors
from prm_core.data import StepSample
from prm_core.encoding import StepEncoder
from prm_core.files import CorruptFileError, atomic_file


def save_scores(scores: dict[str, dict[str, Any]], path: Path) -> None:
    """Write ``scores`` (model -> part -> StepScores) to the safetensors file ``path``, one tensor per
    ``<model>.<part>.<field>`` (scores, mask, n_dropped_steps), atomically (``files.atomic_file``)."""
    from safetensors.torch import save_file

    tensors = {f"{m}.{part}.{k}": getattr(s, k).contiguous() for m, parts in scores.items()
               for part, s in parts.items() for k in ("scores", "mask", "n_dropped_steps")}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp))


def load_scores(path: Path, parts: dict[str, Sequence[StepSample]],
                 encoder: StepEncoder | Callable[[], StepEncoder],
                 models: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The saved step scores (model -> part -> StepScores), checked before use; a file written before
    truncation was recorded gets its ``n_dropped_steps`` counted again by encoding ``parts`` (part ->
    samples) with ``encoder`` (or the encoder a callable builds, only then).

    Raises
    ------
    CorruptFileError
        When the file is missing or damaged, a key is not ``<model>.<part>.<field>``, a part lacks
        its scores or mask, the scores are not a float matrix with one row per sample of the part,
        the mask is not bool of the same shape with a scored step in every row, a scored step is
        not a probability, the counts are not one int per row, a row's scored and dropped steps are
        not its sample's steps (in order, no holes), or one of ``models`` lacks a part of ``parts``.
    """
    from prm_core.verification import StepScores

    tensors, scores = read_tensors(path, "step scores"), {}

    def corrupt(problem: str) -> CorruptFileError:
        return CorruptFileError(f"step scores {path}: {problem}; the file is damaged or from other data: delete it "
                                "and the scores are computed again.")

    groups = {}
    for key in tensors:
        pieces = key.split(".")
        if len(pieces) != 3 or pieces[1] not in parts or pieces[2] not in ("scores", "mask", "n_dropped_steps"):
            raise corrupt(f"key {key!r} is not <model>.<part>.scores, .mask or .n_dropped_steps for a part in "
                          f"{sorted(parts)}")
        groups.setdefault((pieces[0], pieces[1]), {})[pieces[2]] = tensors[key]
    for (model, part), group in groups.items():
        values, mask, dropped = group.get("scores"), group.get("mask"), group.get("n_dropped_steps")
        if values is None or mask is None:
            raise corrupt(f"{model}.{part} lacks its scores or mask (it holds {sorted(group)})")
        rows = len(parts[part])
        if not values.is_floating_point() or values.dim() != 2 or values.shape[0] != rows:
            raise corrupt(f"{model}.{part}.scores is {values.dtype} of shape {tuple(values.shape)}; it must be a float "
                          f"matrix with one row per sample ({rows})")
        if mask.dtype != torch.bool or mask.shape != values.shape:
            raise corrupt(f"{model}.{part}.mask is {mask.dtype} of shape {tuple(mask.shape)}; it must be bool of shape "
                          f"{tuple(values.shape)}")
        real = values[mask]
        if not bool(mask.any(dim=1).all()) or not bool(((real >= 0) & (real <= 1)).all()):  # NaN fails both
            raise corrupt(f"{model}.{part} has a row with no scored step, or scores outside [0, 1] (NaN included) at "
                          "scored steps; step scores are probabilities of at least one step per solution")
        if dropped is not None and (dropped.is_floating_point() or dropped.dtype == torch.bool
                                    or dropped.shape != (rows,)):
            raise corrupt(f"{model}.{part}.n_dropped_steps is {dropped.dtype} of shape {tuple(dropped.shape)}; it must "
                          f"hold one int count per row ({rows})")
        if dropped is None:
            encoder = encoder if isinstance(encoder, StepEncoder) else encoder()
            dropped = torch.tensor([e.n_dropped_steps for e in encoder.encode_many(parts[part])], dtype=torch.long)
        scored = mask.sum(dim=1)  # (rows,) scored steps of each solution
        is_prefix = (mask == (torch.arange(mask.shape[1]) < scored[:, None])).all(dim=1)  # True..True, then False
        n_steps = torch.tensor([s.n_steps for s in parts[part]])
        wrong = torch.nonzero(~is_prefix | (scored + dropped != n_steps)).flatten().tolist()
        if wrong:
            i = wrong[0]
            found = "a mask with holes" if not bool(is_prefix[i]) else f"{int(scored[i])} + {int(dropped[i])} dropped steps"
            raise corrupt(f"{model}.{part} row {i} holds {found}, but its sample has {int(n_steps[i])} steps "
                          f"({len(wrong)} rows differ): these are the scores of other samples")
        scores.setdefault(model, {})[part] = StepScores(values, mask, dropped)
    for model in models:
        missing = sorted(set(parts) - set(scores.get(model, {})))
        if missing:
            raise corrupt(f"it holds no {model} scores for {missing}")
    return scores
