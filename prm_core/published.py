"""Published PRMs behind one interface: score steps with a model someone else trained.

Public PRMs read a solution in one of three ways, and each is a convention about *where* in the
token sequence a step's score lives and *which* numbers make it:

* ``"token_logits"``: a causal LM reads the solution with a tag token after every step and, at
  the tag, compares the logits of a "good" and a "bad" token (Math-Shepherd, Wang et al. 2024,
  section 3: ``ки`` after each step, ``+``/``-``; RLHFlow's PRMs likewise with their own tokens).
  P(correct) = softmax([good, bad])[good].
* ``"token_classification"``: a token-classification model reads the prompt, then each step
  followed by a separator, and classifies the last token of each step (what TRL's ``PRMTrainer``
  trains: separator ``"\\n"``, class 1 = correct). P(correct) = softmax(logits)[1].
* ``"qwen_prm"``: Qwen2.5-Math-PRM (Zhang et al. 2025): a chat (system, user = problem,
  assistant = the steps each followed by ``<extra_0>``), a 2-way head read at every ``<extra_0>``.
  P(correct) = softmax(logits)[1]. The released model ships its own model code
  (``trust_remote_code=True``); a token-classification checkpoint in the same layout also loads.

The classic failure is to tokenise the whole text and then search for the tag's id: a tag can
merge with its neighbours (``" ки"`` vs ``"ки"``), so a step silently gets no score, or a tag
written inside a step gets one it should not. Here each step's position is known by construction:
the tag conventions tokenise the whole text as the model was trained on it and find each tag by
its character span (the token that ends where the tag ends must be the tag), and TRL's convention
tokenises prompt, steps and separators one by one, as its trainer does. A tag that does not come
out as its own token, or a step text that contains the tag, raises.

``load_published_prm(name_or_path, convention, **options)`` returns a ``PublishedPRM``, which
``Verifier``, ``search.beam_search`` and ``evaluation.processbench_report`` take in place of the
course's ``ProcessRewardModel``. Offline, pass a local ``save_pretrained`` folder; online, a hub name.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prm_core.checkpoints import is_file_error, load_pretrained, load_tokenizer
from prm_core.checks import check_bool, check_int
from prm_core.control_tokens import check_text_has_no_control_tokens, control_tokens
from prm_core.data import StepSample
from prm_core.files import CorruptFileError, atomic_folder, read_json, write_json
from prm_core.verification import StepScores

CONVENTIONS: tuple[str, ...] = ("token_logits", "token_classification", "qwen_prm")
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
_SENTINEL = "\x00STEPS\x00"  # where the steps go in a rendered chat; never in real text

# The options each convention takes, with their defaults (Math-Shepherd's, TRL's, Qwen's).
OPTIONS: dict[str, dict[str, Any]] = {
    "token_logits": {"step_tag": "ки", "good_token": "+", "bad_token": "-", "step_format": "Step {k}: {step}"},
    "token_classification": {"separator": "\n"},
    "qwen_prm": {"step_tag": "<extra_0>", "system": QWEN_SYSTEM},
}
COMMON_OPTIONS = ("max_length", "trust_remote_code", "torch_dtype", "device")


@dataclass
class EncodedSolution:
    """One solution as the published model reads it."""

    input_ids: list[int]
    positions: list[int]  # index in input_ids where each kept step's score is read
    n_dropped_steps: int = 0  # trailing steps that did not fit max_length


@dataclass
class PublishedPRM:
    """A published PRM with its tokenizer and convention; scores steps as P(correct).

    Build it with ``load_published_prm``. ``score_steps`` returns ``StepScores`` (steps that did not
    fit ``max_length`` are counted in ``n_dropped_steps``), so everything downstream of a
    ``Verifier`` works unchanged.
    """

    model: Any
    tokenizer: Any
    convention: str
    options: dict[str, Any] = field(default_factory=dict)
    max_length: int = 4096
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention={self.convention!r} must be one of {list(CONVENTIONS)}.")
        self.max_length = check_int(self.max_length, "max_length", "[2, inf)", "pass e.g. max_length=4096")
        if self.convention == "token_logits":
            for name in ("step_tag", "good_token", "bad_token"):
                self._ids[name] = self._context_id(name, self.options[name])
            if self._ids["good_token"] == self._ids["bad_token"]:
                raise ValueError("good_token and bad_token map to the same id; pass two different tokens.")
        elif self.convention == "qwen_prm":
            self._ids["step_tag"] = self._context_id("step_tag", self.options["step_tag"])
        else:
            self._ids["separator"] = self._separator_ids()
        self._check_head()

    # -- checks ----------------------------------------------------------------------------------
    def _context_id(self, name: str, token: Any) -> int:
        """The id ``token`` gets where the convention puts it, after a space (Math-Shepherd reads
        ``+``/``-`` as the label text spells them: "... +"); it must be one token there."""
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"{name}={token!r} must be a non-empty str.")
        ids = self.tokenizer.encode(f"a {token}", add_special_tokens=False)
        last = ids[-1] if ids else None
        if last is None or self.tokenizer.decode([last]).strip() != token.strip():
            raise ValueError(f"{name}={token!r} is not one token for this tokenizer (after a space it is "
                             f"{[self.tokenizer.decode([i]) for i in ids[1:]]}); the convention reads one token per "
                             "step, so pass a token the tokenizer keeps whole (add it with tokenizer.add_tokens and "
                             "resize the model's embeddings if you train one).")
        return last

    def _separator_ids(self) -> Any:
        separator = self.options["separator"]
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"separator={separator!r} must be a non-empty str, e.g. '\\n' (TRL's default).")
        ids = self.tokenizer.encode(separator, add_special_tokens=False)
        if not ids:
            raise ValueError(f"separator={separator!r} encodes to no tokens; pass a visible separator.")
        return ids

    def _check_head(self) -> None:
        if self.convention == "token_logits":
            head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
            if head is None:
                raise ValueError("convention='token_logits' needs a causal LM with an LM head "
                                 "(AutoModelForCausalLM); this model has none.")
            if max(self._ids.values()) >= head.weight.shape[0]:
                raise ValueError(f"a label or tag id ({max(self._ids.values())}) is past the LM head's "
                                 f"{head.weight.shape[0]} outputs; the tokenizer and the model do not match.")
        else:
            labels = getattr(self.model.config, "num_labels", None)
            if labels is not None and labels != 2 and not getattr(self.model.config, "auto_map", None):
                raise ValueError(f"convention={self.convention!r} reads a 2-way head, but the model has "
                                 f"num_labels={labels}.")

    # -- encoding --------------------------------------------------------------------------------
    def _text(self, sample: StepSample) -> tuple[str, list[int]]:
        """The whole text the model reads and the character index just past each step's tag."""
        steps = [s.strip() for s in sample.steps]
        tag = self.options["step_tag"]
        if self.convention == "token_logits":  # "<problem> Step 1: <text> ки\nStep 2: <text> ки"
            text, ends = sample.problem.strip() + " ", []
            for k, step in enumerate(steps, 1):
                text += ("" if k == 1 else "\n") + self.options["step_format"].format(k=k, step=step) + " " + tag
                ends.append(len(text))
            return text, ends
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("convention='qwen_prm' renders a chat, but this tokenizer has no chat_template; use "
                             "the model's own tokenizer (Qwen2.5-Math-PRM ships one).")
        messages = [{"role": "system", "content": self.options["system"]},
                    {"role": "user", "content": sample.problem}, {"role": "assistant", "content": _SENTINEL}]
        frame = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        if frame.count(_SENTINEL) != 1:
            raise ValueError("the chat template did not place the assistant's content exactly once; this "
                             "tokenizer's template does not fit convention='qwen_prm'.")
        before, after = frame.split(_SENTINEL)
        text, ends = before, []
        for step in steps:
            text += step + tag
            ends.append(len(text))
        return text + after, ends

    def _encode_text(self, sample: StepSample) -> tuple[list[int], list[int]]:
        """Whole-text tokenisation (as the model was trained), each tag found by its character span."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("this convention locates each tag by character offsets, which needs a fast tokenizer; "
                             "load it with AutoTokenizer.from_pretrained(..., use_fast=True).")
        text, ends = self._text(sample)
        encoding = self.tokenizer(text, add_special_tokens=self.convention == "token_logits",
                                  return_offsets_mapping=True)
        ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
        positions, t = [], 0
        for k, end in enumerate(ends):
            while t < len(offsets) and not (offsets[t][0] < end <= offsets[t][1]):
                t += 1
            if t == len(offsets) or ids[t] != self._ids["step_tag"] or offsets[t][1] != end:
                found = self.tokenizer.decode([ids[t]]) if t < len(ids) else "nothing"
                raise ValueError(f"step {k}'s tag {self.options['step_tag']!r} tokenised as {found!r} together with the "
                                 "text around it, so its score has no position; the tokenizer does not keep the tag "
                                 "whole in this text (check step_tag, or the step's last characters).")
            positions.append(t)
        if len(positions) != sample.n_steps:  # pragma: no cover - one position per tag by construction
            raise ValueError(f"found {len(positions)} tags for {sample.n_steps} steps.")
        return ids, positions

    def _encode_pieces(self, sample: StepSample) -> tuple[list[int], list[int]]:
        """TRL's layout: the prompt (after BOS), then each step and the separator, tokenised one by one."""
        bos = getattr(self.tokenizer, "bos_token_id", None)
        ids = ([bos] if bos is not None else []) + self.tokenizer.encode(sample.problem, add_special_tokens=False)
        positions = []
        for step in sample.steps:
            ids += self.tokenizer.encode(step, add_special_tokens=False) + list(self._ids["separator"])
            positions.append(len(ids) - 1)
        return ids, positions

    def encode(self, sample: StepSample) -> EncodedSolution:
        """Token ids and the position of each step's score; steps whose position is past
        ``max_length`` are dropped and counted (the model is causal: the kept scores do not change).

        Raises ``ValueError`` when not even the first step fits, a text holds the tag or another
        control token of the tokenizer (``prm_core.control_tokens``' policy), or a tag does not come out as
        its own token."""
        if not isinstance(sample, StepSample):
            raise ValueError(f"sample is a {type(sample).__name__}; pass a StepSample.")
        # the course's one policy for control-token text (prm_core.control_tokens): refused, tag included
        check_text_has_no_control_tokens(sample, control_tokens(self.tokenizer, self.options.get("step_tag")))
        if self.convention == "token_classification":
            ids, positions = self._encode_pieces(sample)
        else:
            ids, positions = self._encode_text(sample)
        kept = [p for p in positions if p < self.max_length]
        if not kept:
            raise ValueError(f"the problem and first step need {positions[0] + 1} tokens but max_length="
                             f"{self.max_length}; raise max_length.")
        if len(kept) < len(positions):
            ids = ids[: kept[-1] + 1]
        return EncodedSolution(ids, kept, len(positions) - len(kept))

    # -- scoring ---------------------------------------------------------------------------------
    def parameters(self) -> Any:
        return self.model.parameters()

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, V or 2) logits -> (B, T) P(correct)."""
        if self.convention == "token_logits":
            pair = logits[..., [self._ids["good_token"], self._ids["bad_token"]]].float()
            return pair.softmax(-1)[..., 0]
        if logits.shape[-1] != 2:
            raise ValueError(f"the model returned {logits.shape[-1]} logits per token; convention="
                             f"{self.convention!r} reads 2 (wrong, correct).")
        return logits.float().softmax(-1)[..., 1]

    @torch.inference_mode()
    def score_steps(self, samples: Sequence[StepSample], *, batch_size: int = 8,
                    device: torch.device | str | None = None) -> StepScores:
        """P(correct) of every kept step, (N, S) padded, in the order given.

        Parameters
        ----------
        samples : sequence of StepSample
        batch_size : int, default 8
            Solutions per forward pass (right padding; positions do not move).
        device : torch.device or str, optional
            Defaults to the model's.

        Returns
        -------
        StepScores
            ``n_dropped_steps`` counts steps past ``max_length``.
        """
        if len(samples) == 0:
            raise ValueError("samples is empty; pass at least one solution to score.")
        batch_size = check_int(batch_size, "batch_size", "[1, inf)", "pass e.g. batch_size=8")
        device = torch.device(device) if device is not None else next(self.model.parameters()).device
        encoded = []
        for i, sample in enumerate(samples):
            try:
                encoded.append(self.encode(sample))
            except ValueError as err:  # say which solution of the batch it was
                raise ValueError(f"samples[{i}]: {err}") from err
        width = max(len(e.positions) for e in encoded)
        scores = torch.zeros((len(encoded), width))
        mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        pad = 0 if pad is None else pad
        was_training = self.model.training
        self.model.eval()
        try:
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # tight padding
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                longest = max(len(encoded[i].input_ids) for i in rows)
                ids = torch.full((len(rows), longest), pad, dtype=torch.long)
                attention = torch.zeros((len(rows), longest), dtype=torch.long)
                for j, i in enumerate(rows):
                    n = len(encoded[i].input_ids)
                    ids[j, :n] = torch.tensor(encoded[i].input_ids)
                    attention[j, :n] = 1
                out = self.model(input_ids=ids.to(device), attention_mask=attention.to(device))
                logits = out.logits if hasattr(out, "logits") else out[0]
                probs = self._probabilities(logits).cpu()
                for j, i in enumerate(rows):
                    k = len(encoded[i].positions)
                    scores[i, :k] = probs[j, encoded[i].positions]
                    mask[i, :k] = True
        finally:
            self.model.train(was_training)
        return StepScores(scores, mask, torch.tensor([e.n_dropped_steps for e in encoded], dtype=torch.long))


def _model_class(convention: str, config: Any, trust_remote_code: bool) -> Any:
    import transformers

    if convention == "token_logits":
        return transformers.AutoModelForCausalLM
    if convention == "token_classification":
        return transformers.AutoModelForTokenClassification
    auto_map = getattr(config, "auto_map", None) or {}
    if "AutoModel" in auto_map:  # Qwen2.5-Math-PRM: its own model class, shipped with the weights
        if not trust_remote_code:
            raise ValueError("this qwen_prm checkpoint ships its own model code (config.auto_map); pass "
                             "trust_remote_code=True if you trust its source.")
        return transformers.AutoModel
    return transformers.AutoModelForTokenClassification


def load_published_prm(name_or_path: str | Path, convention: str, **options: Any) -> PublishedPRM:
    """Load a published PRM by hub name or local folder, read by ``convention``.

    Parameters
    ----------
    name_or_path : str or Path
        A hub name (needs the network, e.g. ``"peiyi9979/math-shepherd-mistral-7b-prm"``,
        ``"Qwen/Qwen2.5-Math-PRM-7B"``) or a ``save_pretrained`` folder.
    convention : {"token_logits", "token_classification", "qwen_prm"}
        Where and how the model scores a step (module docstring).
    **options
        ``token_logits``: ``step_tag`` ("ки"), ``good_token`` ("+"), ``bad_token`` ("-"),
        ``step_format`` ("Step {k}: {step}"). ``token_classification``: ``separator`` ("\\n").
        ``qwen_prm``: ``step_tag`` ("<extra_0>"), ``system`` (Qwen's prompt). Any convention:
        ``max_length`` (default: the model's position limit, at most 4096), ``trust_remote_code``
        (False), ``torch_dtype``, ``device``.

    Returns
    -------
    PublishedPRM

    Raises
    ------
    ValueError
        An unknown convention or option, a tag or label token that is not one token, a model whose
        head does not fit the convention, or remote code not allowed.
    CorruptFileError
        (a ValueError) naming the folder, when a local folder's weights are cut short, have the wrong
        shape, or are stored with a dtype their header lies about.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} must be one of {list(CONVENTIONS)}.")
    known = {**OPTIONS[convention], **dict.fromkeys(COMMON_OPTIONS)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"convention={convention!r} takes no option {unknown}; it takes {sorted(known)}.")
    from transformers import AutoConfig

    trust = check_bool(options.get("trust_remote_code", False), "trust_remote_code")
    fmt = options.get("step_format", OPTIONS["token_logits"]["step_format"]) if convention == "token_logits" else None
    if fmt is not None and (not isinstance(fmt, str) or "{step}" not in fmt
                            or {f for _, f, _, _ in string.Formatter().parse(fmt) if f} - {"k", "step"}):
        raise ValueError(f"step_format={fmt!r} must be a str with {{step}} (and optionally {{k}}, the step number) and "
                         "no other fields, e.g. 'Step {k}: {step}'.")
    if Path(str(name_or_path)).anchor and not Path(name_or_path).exists():
        raise ValueError(f"{name_or_path} does not exist; pass a save_pretrained folder or a hub name (online).")
    what = f"published PRM (convention={convention!r})"
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust)
    except Exception as err:  # a cut, missing or invalid config.json of a local folder
        if not Path(name_or_path).is_dir() or not (isinstance(err, ValueError) or is_file_error(err)):
            raise
        raise CorruptFileError(f"{what} {name_or_path}: its config.json cannot be read ({str(err)[:200]}); save the "
                               "folder again.") from err
    tokenizer = load_tokenizer(name_or_path, what, trust_remote_code=trust)
    kwargs = {"trust_remote_code": trust}
    if options.get("torch_dtype") is not None:
        kwargs["dtype"] = options["torch_dtype"]
    architectures = getattr(config, "architectures", None) or []
    if convention == "token_logits" and architectures and not any("CausalLM" in a or "LMHead" in a
                                                                  for a in architectures):
        raise ValueError(f"{name_or_path} is a {architectures[0]}, but convention='token_logits' reads a causal LM's "
                         "next-token logits; for a classifier use 'token_classification' or 'qwen_prm'.")
    from prm_core.backbones import quiet_hf_progress

    # A local folder loads in a blink; a hub download keeps transformers' progress bar. A local
    # folder's weight headers are checked too (a cut file, a dtype that lies: checkpoints.load_pretrained).
    with quiet_hf_progress() if Path(name_or_path).is_dir() else contextlib.nullcontext():
        model, info = load_pretrained(_model_class(convention, config, trust), name_or_path, what, strict=False,
                                      **kwargs)
    missing = [k for k in info.get("missing_keys", ()) if "rotary" not in k]
    if missing:  # e.g. a base LM read as a classifier: its head would be random, every score noise
        raise ValueError(f"{name_or_path} has no weights for {sorted(missing)[:4]}, which convention={convention!r} "
                         "reads; it is not a checkpoint of this convention (check the convention, or the folder).")
    if options.get("device") is not None:
        model = model.to(options["device"])
    limit = getattr(config, "max_position_embeddings", None) or 4096
    max_length = options.get("max_length")
    if max_length is None:
        max_length = min(int(limit), 4096)
    else:
        max_length = check_int(max_length, "max_length", f"[2, {int(limit)}]",
                               "at most the model's max_position_embeddings")
    chosen = {k: options.get(k, default) for k, default in OPTIONS[convention].items()}
    return PublishedPRM(model.eval(), tokenizer, convention, chosen, max_length)


def save_tiny_published_prm(folder: str | Path, convention: str, tokenizer: Any, *, seed: int = 0,
                            remote_code: bool = False) -> Path:
    """Save a tiny randomly initialised PRM in ``convention``'s layout, with its tokenizer, to ``folder``.

    For offline demonstrations and tests of the published-PRM path: its scores mean nothing, but
    every position, probability and file is laid out as a real checkpoint of that convention lays
    them out. The tokenizer (copied, not changed) gains the convention's tag (``ки``, or
    ``<extra_0>`` and a chat template); ``remote_code=True`` (qwen_prm only) also writes the model
    class as a Python file named in ``config.auto_map``, as Qwen2.5-Math-PRM ships its own.

    Returns
    -------
    pathlib.Path
        The folder, for ``load_published_prm(folder, convention)``.
    """
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} must be one of {list(CONVENTIONS)}.")
    if remote_code and convention != "qwen_prm":
        raise ValueError("remote_code=True stands for Qwen2.5-Math-PRM's own model code; use it with 'qwen_prm'.")
    tokenizer = copy.deepcopy(tokenizer)
    if convention == "token_logits":
        tokenizer.add_tokens([OPTIONS["token_logits"]["step_tag"]])
    if convention == "qwen_prm":
        tokenizer.add_tokens([OPTIONS["qwen_prm"]["step_tag"]], special_tokens=True)
        tokenizer.chat_template = _TINY_CHAT_TEMPLATE
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, num_labels=2,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (Qwen2ForCausalLM if convention == "token_logits" else Qwen2ForTokenClassification)(config)
    from prm_core.backbones import quiet_hf_progress

    with atomic_folder(folder, "config.json", merge=True) as tmp:  # config.json last: a failure keeps the old one
        with quiet_hf_progress():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if remote_code:
            (tmp / "modeling_tiny_prm.py").write_text(_TINY_REMOTE_CODE)
            saved = read_json(tmp / "config.json", "model config")
            saved.update(auto_map={"AutoModel": "modeling_tiny_prm.TinyProcessRewardModel"},
                         architectures=["TinyProcessRewardModel"])
            write_json(tmp / "config.json", saved, indent=2)
    return Path(folder)


_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_TINY_REMOTE_CODE = '''from transformers import Qwen2ForTokenClassification


class TinyProcessRewardModel(Qwen2ForTokenClassification):
    """Stands in for Qwen2.5-Math-PRM's own model class: a 2-way head on every token."""
'''
