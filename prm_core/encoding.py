"""One encoder for training, scoring, search and evaluation: problem + steps -> ids + step positions.

Why a step tag and not the newline: BPE tokenizers glue punctuation to the newline after it
(``".\\n"`` is one token in Qwen2), so searching the ids for the newline token finds no step end
and yields one score per solution (see ``naive_newline_step_ends``). Instead the encoder tokenizes
each step on its own and appends a dedicated special token after it; the tag's position is where
the model's step score is read. The number of tags always equals the number of steps, or it raises.

Text that spells one of the tokenizer's control tokens (``<|endoftext|>``, ``<|pad|>``, the step
tag) is refused, naming the sample, the field and the token: ``prm_core.control_tokens`` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import numpy as np
import torch

from prm_core.backbones import STEP_TAG
from prm_core.checks import ArgumentTypeError, check_bool, check_choice, check_int, check_seed
from prm_core.control_tokens import (
    check_settings_are_not_control_tokens,
    check_text_has_no_control_tokens,
    control_tokens,
)
from prm_core.data import StepSample

logger = logging.getLogger(__name__)

Truncation = Literal["drop_steps", "left_problem", "error"]
TRUNCATION_POLICIES: tuple[str, ...] = ("drop_steps", "left_problem", "error")


@dataclass(frozen=True)
class EncodedSample:
    """One sample as ids, with where each kept step's tag sits and that step's label."""

    input_ids: list[int]
    step_positions: list[int]  # index into input_ids of each kept step's tag, increasing
    labels: list[float | None] | None  # one per kept step, or None for an unlabelled sample
    n_dropped_steps: int = 0  # trailing steps removed to fit max_length (truncation="drop_steps")
    n_dropped_problem_tokens: int = 0  # leading problem tokens removed (truncation="left_problem")
    steps_start: int = 0  # index into input_ids of the first step's first token (where the problem ends)

    @property
    def n_steps(self) -> int:
        return len(self.step_positions)


class StepEncoder:
    """Turn ``StepSample``s into model inputs with exact step boundaries.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Must have a pad token. The step tag is added to it as a special token if it lacks one
        (the tokenizer is changed in place, so save it with the model).
    max_length : int, default 512
        Longest encoded sample in tokens. Longer samples are cut by ``truncation``.
    truncation : {"drop_steps", "left_problem", "error"}, default "drop_steps"
        ``"drop_steps"`` removes whole trailing steps, ``"left_problem"`` removes tokens from the
        start of the problem, ``"error"`` raises. A step is never cut in half, and what was dropped
        is reported on the ``EncodedSample`` and in the batch.
    step_tag : str, default "<|step|>"
        The special token appended after every step.
    problem_separator : str, default "\\n"
        Text put between the problem and the first step.
    add_bos : bool, default True
        Prepend the tokenizer's BOS token when it has one.
    model : transformers model, optional
        If given and the tag was added, its input embeddings are resized to the new vocabulary.

    Examples
    --------
    >>> enc = StepEncoder(tokenizer, max_length=128)  # doctest: +SKIP
    >>> e = enc.encode(StepSample("2 + 3?", ["2 + 3 = 5."]))  # doctest: +SKIP
    >>> e.input_ids[e.step_positions[0]] == enc.step_tag_id  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int = 512,
        truncation: Truncation = "drop_steps",
        step_tag: str = STEP_TAG,
        problem_separator: str = "\n",
        add_bos: bool = True,
        model: Any = None,
    ) -> None:
        max_length = check_int(max_length, "max_length", "[2, inf)", "a step and its tag need 2 tokens at least")
        check_choice(truncation, "truncation", TRUNCATION_POLICIES)
        add_bos = check_bool(add_bos, "add_bos")  # a numpy bool would not survive json.dumps
        if not isinstance(step_tag, str) or not step_tag.strip():
            raise ValueError(f"step_tag={step_tag!r} must be a non-blank str such as {STEP_TAG!r}.")
        if not isinstance(problem_separator, str):
            raise ValueError(f"problem_separator={problem_separator!r} must be a str, e.g. '\\n'.")
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "tokenizer.pad_token is None, so batches cannot be padded; set one before building the "
                "encoder, e.g. tokenizer.pad_token = tokenizer.eos_token."
            )
        check_settings_are_not_control_tokens(tokenizer, step_tag, problem_separator)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.step_tag = step_tag
        self.problem_separator = problem_separator
        self.add_bos = add_bos
        self.step_tag_id = self._ensure_step_tag(model)

    def _ensure_step_tag(self, model: Any) -> int:
        tok = self.tokenizer
        if self.step_tag not in tok.get_vocab():
            from tokenizers import AddedToken

            tok.add_tokens([AddedToken(self.step_tag, special=True, normalized=False)], special_tokens=True)
            logger.info("added step tag %r to the tokenizer (vocabulary now %d)", self.step_tag, len(tok))
        tag_id = tok.convert_tokens_to_ids(self.step_tag)
        if tok(self.step_tag, add_special_tokens=False)["input_ids"] != [tag_id]:
            raise ValueError(
                f"step_tag={self.step_tag!r} does not encode to one token with this tokenizer; pass a "
                "step_tag that is (or can be added as) a single special token."
            )
        if model is not None and model.get_input_embeddings().num_embeddings < len(tok):
            model.resize_token_embeddings(len(tok))
        return tag_id

    def config(self) -> dict[str, Any]:
        """The settings a checkpoint stores so that scoring encodes exactly as training did."""
        return {
            "max_length": self.max_length,
            "truncation": self.truncation,
            "step_tag": self.step_tag,
            "problem_separator": self.problem_separator,
            "add_bos": self.add_bos,
        }

    def encode(self, sample: StepSample) -> EncodedSample:
        """Encode one sample; raises rather than guess when steps and tags could disagree.

        Raises
        ------
        ValueError
            When the problem or a step holds the text of a control token (the step tag, EOS, padding,
            ...: see the module docstring), a step encodes to no token, or the sample cannot fit
            ``max_length`` under the truncation policy.
        """
        return self.encode_many([sample])[0]

    def encode_many(self, samples: Sequence[StepSample]) -> list[EncodedSample]:
        """Encode many samples with one batched tokenizer call (the same ids as ``encode`` one by one).
        Raises as ``encode``, naming the sample (``samples[i]``)."""
        controls = control_tokens(self.tokenizer, self.step_tag)
        for i, sample in enumerate(samples):
            if not isinstance(sample, StepSample):
                raise ArgumentTypeError(f"samples[{i}] has type {type(sample).__name__}; pass a prm_core.StepSample.")
            check_text_has_no_control_tokens(sample, controls, f"samples[{i}]")
        # Each text is tokenized on its own, so equal texts get equal ids: tokenize each distinct one
        # once (candidates of one problem share its text and many of their steps).
        texts = dict.fromkeys(s.problem + self.problem_separator for s in samples)
        texts.update(dict.fromkeys(step for s in samples for step in s.steps))
        ids_of = dict(zip(texts, self._token_ids(list(texts)), strict=True)) if texts else {}
        return [self._assemble(s, ids_of[s.problem + self.problem_separator], [ids_of[step] for step in s.steps])
                for s in samples]  # _assemble builds new lists, so shared ids are never changed

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text without special tokens. A fast tokenizer's Rust backend is called
        directly when it is configured to neither truncate nor pad (the same ids, about twice as
        fast: the transformers wrapper builds a Python object per text)."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None) if self.tokenizer.is_fast else None
        if backend is None or backend.truncation is not None or backend.padding is not None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]

    def _assemble(self, sample: StepSample, problem_ids: list[int], step_ids: list[list[int]]) -> EncodedSample:
        bos = self.tokenizer.bos_token_id
        prefix = [bos] if self.add_bos and bos is not None else []
        for i, ids in enumerate(step_ids):
            if not ids:
                raise ValueError(
                    f"steps[{i}]={sample.steps[i]!r} encodes to no tokens with this tokenizer; drop or rewrite it."
                )
        chunks = [[*ids, self.step_tag_id] for ids in step_ids]
        n_keep, n_drop_problem = self._fit(len(prefix), len(problem_ids), [len(c) for c in chunks])
        input_ids = prefix + problem_ids[n_drop_problem:]
        steps_start = len(input_ids)
        positions = []
        for chunk in chunks[:n_keep]:
            input_ids.extend(chunk)
            positions.append(len(input_ids) - 1)

        n_found = input_ids.count(self.step_tag_id)  # a tag sits at every placed position, so any extra is text
        if n_found != len(positions):
            raise ValueError(
                f"found {n_found} step tags in the ids but placed {len(positions)}: the tokenizer "
                f"produces the tag id {self.step_tag_id} from ordinary text. Choose a step_tag that is "
                "a dedicated special token."
            )
        labels = None if sample.labels is None else list(sample.labels[:n_keep])
        n_dropped = sample.n_steps - n_keep
        if n_dropped or n_drop_problem:
            logger.info("truncated a sample: %d steps and %d problem tokens dropped", n_dropped, n_drop_problem)
        return EncodedSample(input_ids, positions, labels, n_dropped, n_drop_problem, steps_start)

    def _fit(self, n_prefix: int, n_problem: int, step_lengths: list[int]) -> tuple[int, int]:
        """How many steps to keep and how many problem tokens to drop so the sample fits."""
        total = n_prefix + n_problem + sum(step_lengths)
        if total <= self.max_length:
            return len(step_lengths), 0
        if self.truncation == "error":
            raise ValueError(
                f"the sample needs {total} tokens but max_length={self.max_length}; raise max_length or "
                "pass truncation='drop_steps' or 'left_problem'."
            )
        if self.truncation == "left_problem":
            excess = total - self.max_length
            if excess > n_problem:
                raise ValueError(
                    f"the steps alone need {n_prefix + sum(step_lengths)} tokens but max_length="
                    f"{self.max_length}; raise max_length or pass truncation='drop_steps'."
                )
            return len(step_lengths), excess
        used, n_keep = n_prefix + n_problem, 0
        for length in step_lengths:
            if used + length > self.max_length:
                break
            used, n_keep = used + length, n_keep + 1
        if n_keep == 0:
            raise ValueError(
                f"max_length={self.max_length} is too small for the problem ({n_prefix + n_problem} tokens) "
                f"plus its first step ({step_lengths[0]} tokens with its tag); raise max_length to at least "
                f"{n_prefix + n_problem + step_lengths[0]} or pass truncation='left_problem'."
            )
        return n_keep, 0

    def collate(self, encoded: Sequence[EncodedSample]) -> dict[str, torch.Tensor]:
        """Pad a batch on the tokenizer's padding side.

        Returns ``input_ids`` and ``attention_mask`` (B, T); ``step_positions`` (B, S), -1 where a
        sample has fewer steps; ``step_mask`` (B, S) true at real steps; ``labels`` (B, S) float
        (soft labels kept), 0 where unlabelled; ``label_mask`` (B, S) true at labelled steps;
        ``steps_start`` (B,) index of each sample's first step token; ``n_dropped_steps`` (B,).
        """
        if not encoded:
            raise ValueError("encoded is empty; pass at least one EncodedSample to collate.")
        # Vectorised over the batch (numpy gathers from flat arrays, no per-sample tensors): on a GPU
        # the host collates batch i + 1 while the device runs batch i, so this must keep up with it.
        lengths = np.array([len(e.input_ids) for e in encoded])  # (B,)
        n_steps = np.array([e.n_steps for e in encoded])  # (B,)
        for i, e in enumerate(encoded):
            if e.labels is not None and len(e.labels) != e.n_steps:
                raise ValueError(f"encoded[{i}] has {len(e.labels)} labels for {e.n_steps} steps; "
                                 "build EncodedSamples with StepEncoder.encode_many.")
        is_left = getattr(self.tokenizer, "padding_side", "right") == "left"
        offset = lengths.max() - lengths if is_left else np.zeros_like(lengths)  # (B,) left padding
        token_index = np.arange(lengths.max())[None, :] - offset[:, None]  # (B, T) index into each sample
        is_token = (token_index >= 0) & (token_index < lengths[:, None])
        flat_ids = np.fromiter(chain.from_iterable(e.input_ids for e in encoded), np.int64, int(lengths.sum()))
        input_ids = np.where(is_token, _gather(flat_ids, lengths, token_index), self.tokenizer.pad_token_id)
        step_index = np.arange(n_steps.max())[None, :]  # (1, S)
        is_step = step_index < n_steps[:, None]  # (B, S)
        flat_positions = np.fromiter(chain.from_iterable(e.step_positions for e in encoded), np.int64,
                                     int(n_steps.sum()))
        positions = np.where(is_step, _gather(flat_positions, n_steps, step_index) + offset[:, None], -1)
        flat_labels = np.fromiter((np.nan if label is None else label for e in encoded
                                   for label in (e.labels if e.labels is not None else [None] * e.n_steps)),
                                  np.float64, int(n_steps.sum()))
        labels = np.where(is_step, _gather(flat_labels, n_steps, step_index), np.nan)
        step_positions = torch.from_numpy(positions)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(is_token.astype(np.int64)),
            "step_positions": step_positions,
            "step_mask": step_positions >= 0,
            "labels": torch.from_numpy(np.nan_to_num(labels, nan=0.0).astype(np.float32)),
            "label_mask": torch.from_numpy(~np.isnan(labels)),
            "steps_start": torch.from_numpy(np.array([e.steps_start for e in encoded]) + offset),
            "n_dropped_steps": torch.tensor([e.n_dropped_steps for e in encoded]),
        }

    def iter_batches(self, encoded: Sequence[EncodedSample], batch_size: int, *, seed: int | None = None,
                     device: torch.device | str | None = None) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Length-bucketed batches (see ``bucket_batches``): yields each batch's sample indices and
        its collated tensors, moved to ``device`` when one is given. A bad ``batch_size`` or ``seed``
        raises ValueError (as ``bucket_batches``) when iteration starts."""
        for idx in bucket_batches([len(e.input_ids) for e in encoded], batch_size, seed=seed):
            batch = self.collate([encoded[i] for i in idx])
            if device is not None:
                batch = {k: to_device(v, device) for k, v in batch.items()}
            yield idx, batch

    def __call__(self, samples: Sequence[StepSample]) -> dict[str, torch.Tensor]:
        """Encode and collate a list of samples in one call."""
        if not samples:
            raise ValueError("samples is empty; pass at least one StepSample.")
        return self.collate(self.encode_many(samples))


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy a host tensor to ``device``; to a GPU through pinned memory without waiting, so the host
    can collate the next batch while the GPU still works on this one."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _gather(flat: np.ndarray, lengths: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``flat`` holds rows of ``lengths`` back to back; element ``index[i, j]`` of row i (clipped
    into the row, so callers mask what falls outside)."""
    starts = np.cumsum(lengths) - lengths  # (B,)
    if flat.size == 0:
        return np.zeros(index.shape, dtype=flat.dtype)
    return flat[np.clip(starts[:, None] + np.clip(index, 0, None), 0, flat.size - 1)]


def naive_newline_step_ends(tokenizer: Any, sample: StepSample, separator: str = "\n") -> list[int]:
    """The broken recipe, kept to teach why it fails: join steps with newlines, look for the newline id.

    It encodes the newline on its own, then searches the joined text's ids for that id. BPE merges
    the newline with the punctuation before it, so this usually finds fewer ends than steps. Do not
    use it for anything but showing the pitfall; use ``StepEncoder``.

    Examples
    --------
    >>> len(naive_newline_step_ends(tokenizer, sample)) < sample.n_steps  # doctest: +SKIP
    True
    """
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"] if isinstance(separator, str) else []
    if not separator_ids:
        raise ValueError(f"separator={separator!r} encodes to no token; the recipe joins steps with a newline, "
                         "so pass separator='\\n'.")
    newline_id = separator_ids[-1]
    text = sample.problem + separator + separator.join(sample.steps) + separator
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [i for i, t in enumerate(ids) if t == newline_id]


def naive_truncated_sample(tokenizer: Any, sample: StepSample, separator: str = "\n") -> StepSample:
    """The training sample the broken recipe builds, in ``StepEncoder``'s terms (to reproduce the bug).

    The recipe reads a score at each newline id ``naive_newline_step_ends`` finds, falls back to one
    score at the end of the text when it finds none, and cuts the labels to ``min(n_scores,
    n_labels)``. With no newline found, that is the *first* step's label, read at the last step:
    labels ``(None, ..., None, labels[0])``. With every step end found the recipe works and the sample
    comes back unchanged.

    Raises
    ------
    ValueError
        When the sample has no labels, or the search finds some but not all step ends: the found
        newlines sit at no step tag, so there is no exact view of that case.

    Examples
    --------
    >>> naive_truncated_sample(tokenizer, StepSample("q", ["a.", "b."], labels=[1.0, 0.0])).labels  # doctest: +SKIP
    (None, 1.0)
    """
    if sample.labels is None or sample.n_steps == 0:
        raise ValueError("sample has no labels (or no steps); the recipe truncates labels, so pass a labelled one.")
    # only separators after the first step can end a step: the one at index n_problem follows the problem
    n_problem = len(tokenizer(sample.problem, add_special_tokens=False)["input_ids"])
    found = sum(i > n_problem for i in naive_newline_step_ends(tokenizer, sample, separator))
    if found >= sample.n_steps:
        return sample
    if found:
        raise ValueError(f"the naive search found {found} of {sample.n_steps} step ends; those newline ids sit at no "
                         "step tag, so this sample has no exact truncated view. Use a tokenizer that merges the "
                         "newline (e.g. the course's) or leave the sample out.")
    labels = [None] * (sample.n_steps - 1) + [sample.labels[0]]
    return StepSample(sample.problem, sample.steps, labels=labels, answer=sample.answer, meta=sample.meta)


def bucket_batches(lengths: Sequence[int], batch_size: int, *, seed: int | None = None,
                   pool_batches: int = 50) -> list[list[int]]:
    """Group sample indices into batches of similar length, so padding wastes little compute.

    With ``seed`` None (scoring) the indices are sorted by length and cut into batches. With a seed
    (training) they are shuffled, then sorted by length only within pools of ``pool_batches``
    batches, and the batch order is shuffled: batches stay random but each is tightly padded.

    ``batch_size`` and ``pool_batches`` are ints >= 1 and ``seed`` None or an int in [0, 2**63)
    (ValueError otherwise: ``batch_size=2.0`` cannot slice, and ``True`` would make batches of one).

    Examples
    --------
    >>> bucket_batches([5, 1, 4, 2], batch_size=2)
    [[1, 3], [2, 0]]
    """
    batch_size = check_int(batch_size, "batch_size", "[1, inf)", "pass e.g. batch_size=32")
    pool_batches = check_int(pool_batches, "pool_batches", "[1, inf)", "pass e.g. pool_batches=50")
    if seed is not None:
        seed = check_seed(seed)
    order = list(range(len(lengths)))
    if seed is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
