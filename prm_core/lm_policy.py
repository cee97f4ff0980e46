"""A language-model policy: the course backbone, fine-tuned to write solutions, sampled with ``generate``.

``NoisyPolicy`` writes mistakes from a fixed list; ``LMPolicy`` makes its own. It is a transformers
``*ForCausalLM`` on the course tokenizer, started from the pretrained course backbone and trained by
supervised fine-tuning (SFT) on policy solutions in the encoder's format: the problem, a newline, then
each step followed by the step tag, and EOS after the last tag. The loss covers the solution tokens
only, so the model learns to write steps, end each with the tag, and stop.

A sample is labelled exactly by ``check_steps`` and graded by ``graded_answer``, like the noisy
policy's. A completion that does not end (EOS) within the token budget, or has a step that does not
parse, is *malformed*: it is kept, labelled (its bad steps get 0.0), graded wrong, and counted in
``meta["is_well_formed"]``; it is never dropped.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prm_core.backbones import EOS_TOKEN, STEP_TAG, quiet_hf_progress
from prm_core.checkpoints import load_pretrained, load_tokenizer
from prm_core.checks import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_int,
    check_probability,
    check_real,
    check_seed,
)
from prm_core.config_checks import check_fields
from prm_core.data import StepSample
from prm_core.decoding import decode
from prm_core.files import CorruptFileError, atomic_folder
from prm_core.tasks.arithmetic import ArithmeticProblem, graded_answer, parse_step, track_steps

CONTROL_STANDIN = "\ufffd"  # stands for a control token the model generated inside a step (not a digit, not ".")
EMPTY_STEP = "(empty step)"  # stands for a step the model ended without writing anything (labelled 0.0)
SFT_FILE = "sft_result.json"


def _check_problems(problems: Any) -> None:
    if isinstance(problems, str | bytes) or not isinstance(problems, Sequence) or not problems:
        raise ValueError("problems must be a non-empty list of ArithmeticProblem (ProblemGenerator.generate).")
    for i, p in enumerate(problems):
        if not isinstance(p, ArithmeticProblem):
            raise ValueError(f"problems[{i}] is a {type(p).__name__}, not an ArithmeticProblem; the policy needs the "
                             "problem's values to label its solutions (ProblemGenerator.generate makes them).")


DECODERS = ("cached", "generate")


@dataclass(frozen=True)
class SamplingConfig:
    """How ``LMPolicy`` samples; the defaults are plain sampling at temperature 1."""

    temperature: float = 1.0  # > 0; lower is greedier (greedy decoding is ``sample_many(..., greedy=True)``)
    top_p: float = 1.0  # nucleus sampling: keep the smallest set of tokens with this much probability
    max_new_tokens: int = 200  # token budget of a whole solution; a solution past it is malformed
    max_step_tokens: int = 48  # token budget of one step (``sample(..., max_ops=1)``, search)
    batch_size: int = 256  # prompts per batch; part of the seed: another size draws other samples
    # "cached": prm_core.decoding (ended rows leave the batch; about 2x generate's tokens/s on a CPU);
    # "generate": transformers' generate. Same distribution, other draws (greedy: the same tokens).
    decoder: str = "cached"

    def __post_init__(self) -> None:
        check_choice(self.decoder, "decoder", DECODERS)
        check_real(self.temperature, "temperature", "[0.001, inf)", "pass greedy=True to sample_many for greedy "
                   "decoding")
        check_real(self.top_p, "top_p", "(0, 1]", "1.0 turns nucleus sampling off")
        for name in ("max_new_tokens", "max_step_tokens", "batch_size"):
            check_int(getattr(self, name), name, "[1, inf)")
        check_fields(self)


@dataclass(frozen=True)
class Completion:
    """One generated solution as the RL update needs it: the tokens, where each step ends, and the sample."""

    sample: StepSample  # labelled and graded; meta says whether it is well formed
    prompt_ids: list[int]  # problem (and any prefix steps) as the model read it
    completion_ids: list[int]  # generated tokens, up to and including EOS when it ended
    step_ends: list[int] = field(default_factory=list)  # index in completion_ids of the last token of each step


def solution_ids(encoded_ids: Sequence[int], eos_id: int) -> list[int]:
    """The encoder's ids of a whole solution with EOS appended: what SFT trains on and a sample ends with."""
    return [*encoded_ids, eos_id]


def split_completion(ids: Sequence[int], step_tag_id: int, eos_id: int) -> tuple[list[list[int]], list[int], bool]:
    """Cut generated ids into steps at each step tag.

    Returns ``(steps, step_ends, is_ended)``: the ids of each step (tag excluded), the index of the
    token that ends it (its tag, or the last token of an unended tail), and whether EOS came. Tokens
    after EOS are ignored; EOS itself belongs to the last step (it ends it when no tag came before).

    Examples
    --------
    >>> split_completion([5, 6, 9, 7, 9, 1, 0, 0], step_tag_id=9, eos_id=1)
    ([[5, 6], [7]], [2, 5], True)
    >>> split_completion([5, 6, 9, 7], step_tag_id=9, eos_id=1)
    ([[5, 6], [7]], [2, 3], False)
    >>> split_completion([1], step_tag_id=9, eos_id=1)
    ([[]], [0], True)
    """
    step_tag_id = check_int(step_tag_id, "step_tag_id", "[0, inf)")  # a float id would match no token and split nothing
    eos_id = check_int(eos_id, "eos_id", "[0, inf)")
    steps: list[list[int]] = []
    ends: list[int] = []
    current: list[int] = []
    for i, token in enumerate(ids):
        if token == eos_id:
            if current or not ends:  # EOS without a tag before it: the tail (maybe empty) is a step of its own
                steps.append(current)
                ends.append(i)
            else:
                ends[-1] = i  # EOS is the last step's final token
            return steps, ends, True
        if token == step_tag_id:
            steps.append(current)
            ends.append(i)
            current = []
        else:
            current.append(token)
    if current:
        steps.append(current)
        ends.append(len(ids) - 1)
    return steps, ends, False


def labelled_sample(problem: ArithmeticProblem, steps: Sequence[str], is_ended: bool, n_prefix_steps: int = 0,
                    **meta: Any) -> StepSample:
    """A policy sample labelled by ``track_steps`` and graded by ``graded_answer``; malformed is wrong.

    ``is_ended`` is a bool and ``n_prefix_steps`` an int >= 0 (ValueError otherwise).

    Examples
    --------
    >>> from prm_core.tasks.arithmetic import Operation
    >>> p = ArithmeticProblem(0, 12, (Operation("+", 2),), "Mei has 12 coins. ...")
    >>> s = labelled_sample(p, ["12 + 2 = 14."], is_ended=False)
    >>> s.labels, s.answer, s.meta["is_correct_answer"], s.meta["is_well_formed"]
    ((1.0,), None, False, False)
    """
    check_bool(is_ended, "is_ended")
    n_prefix_steps = check_int(n_prefix_steps, "n_prefix_steps", "[0, inf)")
    steps = [step if step.strip() else EMPTY_STEP for step in steps] or [EMPTY_STEP]
    is_parsed = all(parse_step(step) is not None for step in steps)
    is_well_formed = is_ended and is_parsed
    answer, is_correct = graded_answer(problem, steps)
    if not is_well_formed:  # a malformed solution states no answer: no vote or pick can credit it
        answer = None
    info = {"problem_id": problem.problem_id, "n_operations": len(problem.operations),
            "is_correct_answer": is_correct and is_well_formed, "is_well_formed": is_well_formed,
            "is_ended": is_ended, "n_prefix_steps": n_prefix_steps, **meta}
    return StepSample(problem.text, steps, labels=track_steps(problem, steps).labels, answer=answer, meta=info)


class LMPolicy:
    """A causal LM that writes step-by-step solutions; the same sampling interface as ``NoisyPolicy``.

    Parameters
    ----------
    model : transformers ``*ForCausalLM``
        Its vocabulary must hold the step tag and EOS (the course tokenizer has both).
    tokenizer : transformers tokenizer
        The model's tokenizer; its padding side is set to left for generation.
    sampling : SamplingConfig, default SamplingConfig()
    device : str or torch.device, optional
        Where sampling runs; default the model's device.

    Examples
    --------
    >>> policy = LMPolicy.from_pretrained(folder)  # doctest: +SKIP
    >>> samples = policy.sample_many(problems, n_samples=4, seed=0)  # doctest: +SKIP
    >>> sum(s.meta["is_well_formed"] for s in samples) / len(samples)  # doctest: +SKIP
    """

    def __init__(self, model: Any, tokenizer: Any, sampling: SamplingConfig = SamplingConfig(),
                 device: str | torch.device | None = None) -> None:
        from prm_core.control_tokens import control_tokens
        from prm_core.encoding import StepEncoder

        if not isinstance(sampling, SamplingConfig):
            raise ArgumentTypeError(f"sampling has type {type(sampling).__name__}; pass a SamplingConfig.")
        if not hasattr(model, "generate") or model.get_output_embeddings() is None:
            raise ArgumentTypeError(f"model has type {type(model).__name__}, which has no LM head; load it with "
                                    "AutoModelForCausalLM (LMPolicy.from_pretrained does).")
        vocab = tokenizer.get_vocab()
        for token, what in ((STEP_TAG, "step tag"), (EOS_TOKEN, "EOS token")):
            if token not in vocab:
                raise ValueError(f"the tokenizer lacks the {what} {token!r}; use the course tokenizer (the one "
                                 "saved with the pretrained backbone).")
        self.model = model
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.encoder = StepEncoder(tokenizer, max_length=model.config.max_position_embeddings)
        self.step_tag_id = self.encoder.step_tag_id
        self.eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
        self.pad_id = tokenizer.pad_token_id
        self.control_texts = tuple(control_tokens(tokenizer))  # what a decoded step must not spell

    @classmethod
    def from_pretrained(cls, folder: str | Path, sampling: SamplingConfig = SamplingConfig(),
                        device: str | torch.device | None = None) -> LMPolicy:
        """Load a causal LM and its tokenizer from a ``save_pretrained`` folder (a pretrained course
        backbone saved as a base model gets its tied LM head from its input embeddings).

        Raises
        ------
        CorruptFileError
            (a ValueError) naming the folder, when the tokenizer is missing or cannot be read, or the model's
            weights are damaged, missing, unexpected or stored with a dtype their header lies about
            (``checkpoints.load_pretrained``).
        ValueError
            When the model does not tie its LM head to its input embeddings.
        """
        from transformers import AutoModelForCausalLM

        if not Path(folder).is_dir():  # a folder, never a hub name: a mistyped path is said to be one
            raise CorruptFileError(f"LM policy {folder} is not a folder; check the path (policy_runs.sft_policy "
                                   "writes one, and rebuilds it when it is deleted).")
        with quiet_hf_progress():
            tokenizer = load_tokenizer(folder, "LM policy")
            model, _ = load_pretrained(AutoModelForCausalLM, folder, "LM policy", uniform_dtype=True)
        if not getattr(model.config, "tie_word_embeddings", False):
            raise ValueError(f"the model in {folder} does not tie its LM head to its input embeddings, so a base "
                             "model saved there would get an untrained head; save a *ForCausalLM instead.")
        if device is not None:
            model.to(device)
        return cls(model.eval(), tokenizer, sampling, device)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save the model and tokenizer to ``folder`` (``from_pretrained`` reads it back).

        Both are written beside ``folder`` first and renamed in with ``config.json`` last, so a
        failure part-way leaves an earlier save there as it was.

        Returns
        -------
        pathlib.Path
            ``folder``.
        """
        with atomic_folder(folder, "config.json", merge=True) as tmp, quiet_hf_progress():
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return Path(folder)

    # -- prompts and decoding -------------------------------------------------------------------
    def prompt_ids(self, problem: ArithmeticProblem, prefix: Sequence[str] = ()) -> list[int]:
        """The problem, its newline, and each prefix step with its tag: the encoder's ids, as in SFT."""
        encoded = self.encoder.encode(StepSample(problem.text, [*prefix] or ["."]))
        if encoded.n_dropped_steps or encoded.n_dropped_problem_tokens:
            raise ValueError(f"the prompt of problem {problem.problem_id} with {len(prefix)} prefix steps does not fit "
                             f"the model's {self.encoder.max_length} positions; pass a shorter prefix.")
        return encoded.input_ids if prefix else encoded.input_ids[: encoded.steps_start]

    def _steps_text(self, step_ids: list[list[int]]) -> list[str]:
        """Each step's text; a control token the model wrote inside a step (padding, say) stands as
        U+FFFD, which is neither a digit nor a full stop, so the step parses (or not) as the token's
        own text would, stays visibly odd, and never spells a control token for the PRM to read."""
        texts = []
        for ids in step_ids:
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            for control in self.control_texts:
                text = text.replace(control, CONTROL_STANDIN)
            texts.append(text.strip())
        return texts

    @torch.no_grad()
    def generate_ids(self, prompts: Sequence[list[int]], seed: int, *, greedy: bool = False,
                     max_new_tokens: int | None = None, stop_at_step: bool = False,
                     show_progress: bool = False) -> list[list[int]]:
        """Generated ids for each prompt (padding removed), in batches of ``sampling.batch_size``.

        ``sampling.decoder``'s loop (``prm_core.decoding.decode``, or transformers' ``generate``) with its
        KV cache, left padding, temperature and top-p; stops at EOS (and at the
        step tag when ``stop_at_step``). ``seed`` seeds torch's generator for the whole call, so equal
        seeds and prompts give equal samples on CPU.

        Raises
        ------
        ValueError
            For a ``seed`` outside [0, 2**63), ``max_new_tokens`` that is not None or an int >= 1,
            ``greedy`` or ``stop_at_step`` that is not a bool, or an empty prompt.
        """
        from tqdm.auto import tqdm

        cfg = self.sampling
        if max_new_tokens is not None:
            max_new_tokens = check_int(max_new_tokens, "max_new_tokens", "[1, inf)", "or None for the sampling config's budget")
        seed = check_seed(seed)
        check_bool(greedy, "greedy")
        check_bool(stop_at_step, "stop_at_step")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("prompts holds an empty id list; build every prompt with prompt_ids.")
        budget = max_new_tokens or (cfg.max_step_tokens if stop_at_step else cfg.max_new_tokens)
        stop = [self.eos_id, self.step_tag_id] if stop_at_step else [self.eos_id]
        out: list[list[int]] = []
        was_training = self.model.training
        self.model.eval()
        starts = range(0, len(prompts), cfg.batch_size)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in tqdm(starts, desc="generate", disable=not show_progress or len(starts) < 2, leave=False):
                chunk = prompts[start : start + cfg.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in chunk], device=self.device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=self.device)
                if cfg.decoder == "cached":
                    out.extend(decode(self.model, ids, mask, max_new_tokens=budget, stop_ids=stop, greedy=greedy,
                                      temperature=cfg.temperature, top_p=cfg.top_p))
                    continue
                generated = self.model.generate(
                    input_ids=ids, attention_mask=mask, do_sample=not greedy, max_new_tokens=budget,
                    temperature=None if greedy else cfg.temperature, top_p=None if greedy else cfg.top_p,
                    top_k=None, eos_token_id=stop, pad_token_id=self.pad_id)[:, width:]
                for row in generated.tolist():
                    ends = [i for i, t in enumerate(row) if t in stop]
                    out.append(row[: ends[0] + 1] if ends else row)
        self.model.train(was_training)
        return out

    # -- whole solutions ------------------------------------------------------------------------
    def complete(self, problems: Sequence[ArithmeticProblem], n_samples: int, seed: int, *, greedy: bool = False,
                 show_progress: bool = False) -> list[Completion]:
        """``n_samples`` whole solutions per problem (problem-major) with their token ids, for RL."""
        n_samples = check_int(n_samples, "n_samples", "[1, inf)", "pass n_samples=1 for one solution per problem")
        check_bool(greedy, "greedy")
        _check_problems(problems)
        prompts = [self.prompt_ids(p) for p in problems]
        repeated = [prompts[i] for i in range(len(problems)) for _ in range(n_samples)]
        generated = self.generate_ids(repeated, seed, greedy=greedy, show_progress=show_progress)
        completions = []
        for j, ids in enumerate(generated):
            problem = problems[j // n_samples]
            step_ids, ends, is_ended = split_completion(ids, self.step_tag_id, self.eos_id)
            sample = labelled_sample(problem, self._steps_text(step_ids), is_ended, n_new_tokens=len(ids))
            completions.append(Completion(sample, repeated[j], ids, ends))
        return completions

    def sample_many(self, problems: Sequence[ArithmeticProblem], n_samples: int, seed: int, *,
                    greedy: bool = False, show_progress: bool = False) -> list[StepSample]:
        """``n_samples`` labelled solutions per problem, problem by problem (as ``NoisyPolicy.sample_many``).

        Parameters
        ----------
        problems : sequence of ArithmeticProblem
        n_samples : int
            Solutions per problem (with ``greedy=True`` they are all the same).
        seed : int
            Seeds the sampling of the whole call.
        greedy : bool, default False
            Greedy decoding instead of sampling.

        Returns
        -------
        list of StepSample
            ``len(problems) * n_samples`` samples, exact ``labels``; ``meta`` has ``problem_id``,
            ``n_operations``, ``is_correct_answer`` (False when malformed), ``is_well_formed``,
            ``is_ended`` and ``n_new_tokens``.
        """
        return [c.sample for c in self.complete(problems, n_samples, seed, greedy=greedy, show_progress=show_progress)]

    # -- one step at a time (search) --------------------------------------------------------------
    def extend_many(self, problems: Sequence[ArithmeticProblem], prefixes: Sequence[Sequence[str]],
                    seed: int) -> list[tuple[tuple[str, ...], bool]]:
        """One new step after each prefix, all in one batch: ``(steps, is_finished)`` per request.

        A request is finished when the model wrote EOS right after its step (or instead of one), or
        when it ran out of the step budget: a search must not extend a solution past its end.
        """
        if len(problems) == len(prefixes) == 0:
            return []
        _check_problems(problems)
        if len(problems) != len(prefixes):
            raise ValueError(f"problems has {len(problems)} entries but prefixes has {len(prefixes)}; pass one "
                             "prefix per problem.")
        prompts = [self.prompt_ids(p, tuple(prefix)) for p, prefix in zip(problems, prefixes, strict=True)]
        generated = self.generate_ids(prompts, seed, stop_at_step=True)
        # After a tag, one more token says whether the solution goes on: EOS finishes it.
        tagged = [j for j, ids in enumerate(generated) if ids and ids[-1] == self.step_tag_id]
        if tagged:
            nxt = self.generate_ids([prompts[j] + generated[j] for j in tagged], seed + 1, max_new_tokens=1)
            for j, ids in zip(tagged, nxt, strict=True):
                if ids and ids[0] == self.eos_id:
                    generated[j] = generated[j] + [self.eos_id]
        results = []
        for prefix, ids in zip(prefixes, generated, strict=True):
            step_ids, _, is_ended = split_completion(ids, self.step_tag_id, self.eos_id)
            is_cut = not is_ended and (not ids or ids[-1] != self.step_tag_id)
            new = self._steps_text(step_ids) if step_ids else ([] if is_ended else [EMPTY_STEP])
            steps = tuple(prefix) + tuple(s if s else EMPTY_STEP for s in new)
            if not steps:
                steps = (EMPTY_STEP,)
            results.append((steps, is_ended or is_cut))
        return results

    def sample(self, problem: ArithmeticProblem, rng: random.Random, prefix: Sequence[str] = (),
               max_ops: int | None = None) -> StepSample:
        """One solution (``max_ops=None``) or one more step (``max_ops=1``) after ``prefix``; as
        ``NoisyPolicy.sample``, seeded from ``rng``. ``meta["is_finished"]`` says whether it ended."""
        if max_ops is not None:
            max_ops = check_int(max_ops, "max_ops", "[1, 1]", "pass None (a whole solution) or 1 (one step)")
        if not isinstance(rng, random.Random):
            raise ValueError(f"rng is a {type(rng).__name__}; pass a random.Random, e.g. random.Random(0).")
        _check_problems([problem])
        seed = rng.getrandbits(62)
        prefix = tuple(prefix)
        if max_ops == 1:
            (steps, is_finished), = self.extend_many([problem], [prefix], seed)
            return labelled_sample(problem, steps, is_finished, n_prefix_steps=len(prefix), is_finished=is_finished)
        ids = self.generate_ids([self.prompt_ids(problem, prefix)], seed)[0]
        step_ids, _, is_ended = split_completion(ids, self.step_tag_id, self.eos_id)
        return labelled_sample(problem, [*prefix, *self._steps_text(step_ids)], is_ended,
                               n_prefix_steps=len(prefix), is_finished=True)


def well_formed_rate(samples: Sequence[StepSample]) -> float:
    """Share of samples whose ``meta["is_well_formed"]`` is True."""
    if not samples:
        raise ValueError("samples is empty; pass LMPolicy samples.")
    return sum(bool(s.meta.get("is_well_formed")) for s in samples) / len(samples)


# -- supervised fine-tuning ----------------------------------------------------------------------
@dataclass(frozen=True)
class SFTConfig:
    """The SFT data mix and run. Data: one solution per train-side problem, from the noisy policy with
    probability ``noisy_share`` and from the error-free policy otherwise."""

    noisy_share: float = 0.25  # share of noisy-policy solutions (its traps and slips) in the SFT data
    n_problems: int = 4000  # train-side problems, one solution each
    max_steps: int = 600  # optimizer steps
    batch_size: int = 64  # solutions per step
    learning_rate: float = 3e-3  # peak AdamW learning rate (warmup, then cosine decay to 10%)
    warmup_steps: int = 30
    seed: int = 0  # seeds the data mix and the batches
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_probability(self.noisy_share, "noisy_share", "0 trains on error-free solutions only")
        for name in ("n_problems", "max_steps", "batch_size"):
            check_int(getattr(self, name), name, "[1, inf)")
        max_steps = check_int(self.max_steps, "max_steps", "[1, inf)")  # the number, not a 0-d tensor's repr
        check_int(self.warmup_steps, "warmup_steps", f"[0, {max_steps}]", "at most max_steps")
        check_seed(self.seed)
        check_real(self.learning_rate, "learning_rate", "(0, inf)", "e.g. 3e-3")
        check_fields(self)


def sft_batch(rows: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on the problem and padding).

    ``rows`` are ``(ids, solution_start)``: the loss starts at the first solution token, an int in
    [0, len(ids)]; ``pad_id`` is an int >= 0 (ValueError otherwise).

    Examples
    --------
    >>> b = sft_batch([([7, 8, 9, 1], 2)], pad_id=0)
    >>> b["labels"].tolist()
    [[-100, -100, 9, 1]]
    """
    pad_id = check_int(pad_id, "pad_id", "[0, inf)", "pass the tokenizer's pad_token_id")
    if not rows:
        raise ValueError("rows is empty; pass at least one (ids, solution_start) pair.")
    for r, (ids, start) in enumerate(rows):
        check_int(start, f"rows[{r}] solution_start", f"[0, {len(ids)}]", "the first solution token's index")
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, start) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        labels[r, start : len(ids)] = torch.tensor(ids[start:])
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def sft(policy: LMPolicy, samples: Sequence[StepSample], config: SFTConfig = SFTConfig()) -> dict[str, Any]:
    """Fine-tune ``policy.model`` in place on ``samples`` (loss on solution tokens, step tags and EOS).

    Returns a dict with ``history`` (``step``, ``loss`` every ``max_steps // 20`` steps),
    ``train_seconds`` and ``n_train_tokens``. Raises ``FloatingPointError`` on a NaN loss.
    """
    import time

    from tqdm.auto import tqdm

    from prm_core.training import TrainConfig, _lr_lambda

    if not samples:
        raise ValueError("samples is empty; pass solutions to fine-tune on.")
    encoded = policy.encoder.encode_many(list(samples))
    dropped = sum(e.n_dropped_steps for e in encoded)
    if dropped:
        raise ValueError(f"{dropped} steps did not fit the model's {policy.encoder.max_length} positions; "
                         "a policy must see whole solutions, so pass shorter ones.")
    rows = [(solution_ids(e.input_ids, policy.eos_id), e.steps_start) for e in encoded]
    model = policy.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = TrainConfig(max_steps=config.max_steps, warmup_steps=config.warmup_steps,
                           learning_rate=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(schedule))
    rng = random.Random(config.seed)
    history, tokens, window = [], 0, []
    log_every = max(1, config.max_steps // 20)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for step in tqdm(range(config.max_steps), desc="SFT", disable=not config.show_progress, leave=False):
            batch = {k: v.to(policy.device) for k, v in
                     sft_batch([rows[rng.randrange(len(rows))] for _ in range(config.batch_size)], policy.pad_id).items()}
            loss = model(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the SFT loss became {float(loss)} at step {step + 1}; lower learning_rate.")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            window.append(float(loss.detach()))
            if (step + 1) % log_every == 0 or step + 1 == config.max_steps:
                history.append({"step": step + 1, "loss": sum(window) / len(window)})
                window = []
    model.eval()
    return {"history": history, "train_seconds": time.perf_counter() - start, "n_train_tokens": tokens}

