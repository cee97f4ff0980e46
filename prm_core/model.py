"""ProcessRewardModel: a backbone plus a value head that reads one logit at every step tag.

An ORM is the same class trained with one label, at the last step's tag (``kind="orm"``): the
architecture is identical, only the supervision differs, which is what makes the comparison fair.
Checkpoints are safetensors plus JSON (never pickle), and carry the tokenizer and encoder settings,
so scoring encodes exactly as training did.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prm_core.backbones import quiet_hf_progress
from prm_core.checkpoints import (
    SAFETENSORS_FLOAT_DTYPES,
    load_pretrained,
    load_tensors,
    load_tokenizer,
    safetensors_dtype,
)
from prm_core.checks import ArgumentTypeError, check_int, check_real
from prm_core.config_checks import check_fields
from prm_core.encoding import StepEncoder
from prm_core.files import CorruptFileError, atomic_folder, read_json, write_json

CONFIG_FILE = "prm_config.json"
HEAD_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
KINDS = ("prm", "orm")
N_LM_FEATURES = 2  # per step: the lowest and the mean log-probability of its tokens


@dataclass(frozen=True)
class HeadConfig:
    """The value head on top of the backbone's hidden state at each step tag."""

    hidden_size: int  # backbone width, the head's input size
    mlp_size: int = 0  # 0: one linear layer; > 0: Linear -> GELU -> Linear with this many units
    dropout: float = 0.0  # on the head's input, during training only
    use_lm_features: bool = False  # also feed the head how surprised the backbone's LM is by each step

    def __post_init__(self) -> None:
        check_int(self.hidden_size, "hidden_size", "[1, inf)", "use backbone.config.hidden_size")
        check_int(self.mlp_size, "mlp_size", "[0, inf)", "0 gives a linear head")
        check_real(self.dropout, "dropout", "[0, 1)", "0.0 turns it off")
        check_fields(self)


@dataclass
class StepLogits:
    """What ``ProcessRewardModel.forward`` returns."""

    logits: torch.Tensor  # (B, S) one logit per step; 0 at padded steps
    mask: torch.Tensor  # (B, S) True at real steps
    lm_logits: torch.Tensor | None = None  # (B, T, V) next-token logits, when asked for (auxiliary LM loss)


def _backbone_fingerprint(backbone: Any) -> dict[str, Any]:
    cfg = backbone.config
    return {key: getattr(cfg, key, None) for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")}


def _require_tied_embeddings(backbone: Any, what: str) -> None:
    """The course reads next-token logits through the input embeddings, which is the LM head only when
    the two are tied; ``AutoModel`` does not load an untied model's own head at all."""
    if getattr(backbone.config, "tie_word_embeddings", True) is False:
        raise ValueError(f"{what} needs the backbone's LM head, but {backbone.config.model_type!r} does not tie it to "
                         "its input embeddings and AutoModel loads no head: set use_lm_features=False and "
                         "lm_loss_weight=0 for this backbone.")


def step_surprise(lm_logits: torch.Tensor, input_ids: torch.Tensor, step_positions: torch.Tensor,
                  steps_start: torch.Tensor) -> torch.Tensor:
    """Lowest and mean log-probability the backbone's LM gives the tokens of each step.

    A wrong step is usually one the LM did not expect (a result it would not have written, an
    operand copied wrongly), so its lowest token log-probability is low. Returns (B, S, 2), zeros
    at padded steps.
    """
    log_probs = torch.log_softmax(lm_logits[:, :-1].float(), dim=-1)  # (B, T-1, V): predicts token t+1
    token_lp = log_probs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    token_lp = torch.cat([token_lp.new_zeros(token_lp.shape[0], 1), token_lp], dim=1)  # (B, T): lp of token t
    starts = torch.cat([steps_start.unsqueeze(1), step_positions[:, :-1] + 1], dim=1)  # (B, S) first token
    t = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
    in_step = (t >= starts.unsqueeze(-1)) & (t < step_positions.unsqueeze(-1))  # (B, S, T), tag excluded
    in_step &= (step_positions >= 0).unsqueeze(-1)
    lp = token_lp.unsqueeze(1)  # (B, 1, T)
    count = in_step.sum(-1).clamp(min=1)
    lowest = torch.where(in_step, lp, torch.zeros_like(lp)).amin(-1)  # zeros outside keep max at <= 0
    mean = torch.where(in_step, lp, torch.zeros_like(lp)).sum(-1) / count
    return torch.stack([lowest, mean], dim=-1)  # (B, S, 2)


def gather_step_hidden(hidden: torch.Tensor, step_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's hidden state at each step tag: what the value head reads.

    ``hidden`` (B, T, H) and ``step_positions`` (B, S), -1 at padded steps, give features (B, S, H),
    the first token's state at padded steps (masked later), and the mask (B, S), True at real steps.
    Each step ends in a tag token whose state the head scores, like the step tag of Math-Shepherd
    (Wang et al., 2024) and the end-of-step token of "Let's Verify Step by Step" (Lightman et al., 2023).
    """
    mask = step_positions >= 0  # (B, S)
    index = step_positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])  # (B, S, H)
    return hidden.gather(1, index), mask


def head_logits(head: nn.Module, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One float32 logit per step from ``head`` on features (B, S, H): (B, S), 0.0 where ``mask`` is False."""
    return head(features).squeeze(-1).float().masked_fill(~mask, 0.0)


class ProcessRewardModel(nn.Module):
    """Backbone + value head; ``forward`` returns one logit per step tag.

    Parameters
    ----------
    backbone : transformers base model
        Anything ``AutoModel`` returns: it maps ``input_ids`` to ``last_hidden_state``.
    encoder : StepEncoder
        The encoder whose step tags the model reads; kept on the model so training and scoring share it.
    kind : {"prm", "orm"}, default "prm"
        What the model was (or will be) trained as. Only the labels differ.
    head : HeadConfig, optional
        Defaults to one linear layer on the backbone's hidden size.

    Examples
    --------
    >>> backbone, tokenizer = load_backbone("course-tiny")  # doctest: +SKIP
    >>> prm = ProcessRewardModel(backbone, StepEncoder(tokenizer, model=backbone))  # doctest: +SKIP
    >>> out = prm(**prm.encoder([sample]))  # doctest: +SKIP
    >>> out.logits.shape == (1, sample.n_steps)  # doctest: +SKIP
    True
    """

    def __init__(self, backbone: nn.Module, encoder: StepEncoder, *, kind: str = "prm",
                 head: HeadConfig | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} must be one of {KINDS}.")
        if not isinstance(encoder, StepEncoder):
            raise ArgumentTypeError(f"encoder has type {type(encoder).__name__}; pass the StepEncoder built for this backbone.")
        hidden_size = backbone.config.hidden_size
        self.head_config = head or HeadConfig(hidden_size=hidden_size)
        if self.head_config.hidden_size != hidden_size:
            raise ValueError(
                f"head.hidden_size={self.head_config.hidden_size} does not match the backbone's "
                f"hidden_size={hidden_size}; build the head for this backbone."
            )
        if self.head_config.use_lm_features:
            _require_tied_embeddings(backbone, "head.use_lm_features=True")
        if backbone.get_input_embeddings().num_embeddings < len(encoder.tokenizer):
            backbone.resize_token_embeddings(len(encoder.tokenizer))
        self.backbone = backbone
        self.encoder = encoder
        self.kind = kind
        h, m = self.head_config.hidden_size + N_LM_FEATURES * self.head_config.use_lm_features, self.head_config.mlp_size
        layers: list[nn.Module] = [nn.Dropout(self.head_config.dropout)]
        layers += [nn.Linear(h, m), nn.GELU(), nn.Linear(m, 1)] if m else [nn.Linear(h, 1)]
        self.head = nn.Sequential(*layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, step_positions: torch.Tensor,
                steps_start: torch.Tensor | None = None, return_lm_logits: bool = False, **_: Any) -> StepLogits:
        """Step logits for a batch from ``StepEncoder.collate`` (extra batch keys are ignored).

        ``return_lm_logits`` also returns next-token logits through the tied input embeddings, for
        the auxiliary language-model loss.
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        features, mask = gather_step_hidden(hidden, step_positions)  # (B, S, H), (B, S)
        use_lm = return_lm_logits or self.head_config.use_lm_features
        if use_lm:
            _require_tied_embeddings(self.backbone, "next-token logits (return_lm_logits, lm_loss_weight > 0)")
        lm_logits = hidden @ self.backbone.get_input_embeddings().weight.T if use_lm else None  # (B, T, V)
        if self.head_config.use_lm_features:
            if steps_start is None:
                raise ValueError("steps_start is None but the head uses LM features; pass the batch from "
                                 "StepEncoder.collate, which includes it.")
            surprise = step_surprise(lm_logits, input_ids, step_positions, steps_start)  # (B, S, 2)
            features = torch.cat([features, surprise.to(features.dtype)], dim=-1)
        logits = head_logits(self.head, features, mask)  # (B, S)
        return StepLogits(logits=logits, mask=mask, lm_logits=lm_logits if return_lm_logits else None)

    @torch.inference_mode()
    def lm_surprise(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, step_positions: torch.Tensor,
                    steps_start: torch.Tensor, **_: Any) -> torch.Tensor:
        """(B, S, 2): the lowest and the mean log-probability the backbone's LM gives each step's
        tokens (``step_surprise``), the two features the head adds when ``use_lm_features`` is on.
        Takes a batch from ``StepEncoder.collate``."""
        _require_tied_embeddings(self.backbone, "lm_surprise")
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        lm_logits = hidden @ self.backbone.get_input_embeddings().weight.T  # (B, T, V)
        return step_surprise(lm_logits, input_ids, step_positions, steps_start)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write backbone + tokenizer (``save_pretrained``), head (safetensors) and a JSON config.

        Everything is written beside ``directory`` first, then renamed in with ``prm_config.json``
        last, so a failure part-way leaves an earlier checkpoint there as it was, and a folder
        without its config is never taken for a whole one.

        Returns
        -------
        pathlib.Path
            ``directory``, for ``from_pretrained``.
        """
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        config = {"kind": self.kind, "head": asdict(self.head_config), "encoder": self.encoder.config(),
                  "backbone": _backbone_fingerprint(self.backbone),
                  "head_dtype": safetensors_dtype(next(iter(state.values())).dtype)}  # checked on load
        with atomic_folder(directory, CONFIG_FILE, merge=True) as tmp:
            with quiet_hf_progress():
                self.backbone.save_pretrained(tmp / BACKBONE_DIR)
                self.encoder.tokenizer.save_pretrained(tmp / BACKBONE_DIR)
            save_file(state, str(tmp / HEAD_FILE))
            write_json(tmp / CONFIG_FILE, config, indent=2)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **from_pretrained_kwargs: Any) -> ProcessRewardModel:
        """Load a checkpoint written by ``save_pretrained``, every part verified before it is used.

        The config must hold each key ``save_pretrained`` writes; the backbone must load with no
        missing, unexpected or mismatched weight and tensors of the dtypes its header claims
        (``checkpoints.load_pretrained``); the head must hold exactly the new head's tensors, of their
        shapes and float dtype (``checkpoints.load_tensors``). ``from_pretrained_kwargs`` go to
        ``AutoModel.from_pretrained`` (e.g. ``dtype``).

        Raises
        ------
        CorruptFileError
            (a ValueError) naming the folder and the fix, when the config is missing, not JSON or
            lacks a key; the tokenizer cannot be read or lacks the step tag; the backbone is damaged
            or is not the one the head was trained on; or the head file is missing or damaged.
        """
        from transformers import AutoModel

        src = Path(directory)
        if not (src / CONFIG_FILE).is_file():
            raise CorruptFileError(f"directory={str(src)!r} has no {CONFIG_FILE}; pass a folder written by "
                                   "ProcessRewardModel.save_pretrained (an interrupted save leaves none: save again).")
        config = read_json(src / CONFIG_FILE, "PRM checkpoint config", required=("kind", "head", "encoder", "backbone"))
        fix = f"{src} is damaged or was edited: save the checkpoint again (a cache entry is rebuilt when deleted)."
        if not isinstance(config["encoder"], dict) or not isinstance(config["encoder"].get("step_tag"), str):
            raise CorruptFileError(f"{src / CONFIG_FILE}: encoder={config['encoder']!r} must be a dict with a "
                                   f"step_tag; {fix}")
        if not (src / BACKBONE_DIR).is_dir():
            raise CorruptFileError(f"PRM checkpoint {src} has no {BACKBONE_DIR}/ folder; {fix}")
        tokenizer = load_tokenizer(src / BACKBONE_DIR, "PRM checkpoint backbone")
        tag = config["encoder"]["step_tag"]
        if tag not in tokenizer.get_vocab():
            raise CorruptFileError(f"the checkpoint's tokenizer lacks its step tag {tag!r}: it was saved without the "
                                   f"tag or replaced; save the tokenizer the model was trained with ({src}).")
        with quiet_hf_progress():
            backbone, _ = load_pretrained(AutoModel, src / BACKBONE_DIR, "PRM checkpoint backbone",
                                          uniform_dtype=True, **from_pretrained_kwargs)
        found = _backbone_fingerprint(backbone)
        if found != config["backbone"]:
            raise CorruptFileError(f"the backbone in {src / BACKBONE_DIR} ({found}) is not the one this head was "
                                   f"trained on ({config['backbone']}); load the matching backbone folder.")
        try:
            encoder = StepEncoder(tokenizer, **config["encoder"])
            model = cls(backbone, encoder, kind=config["kind"], head=HeadConfig(**config["head"]))
        except (TypeError, ValueError) as err:
            raise CorruptFileError(f"{src / CONFIG_FILE} holds settings this code cannot build ({err}); {fix}") from err
        head_dtype = config.get("head_dtype")  # None in checkpoints from before it was recorded
        if head_dtype is not None and head_dtype not in SAFETENSORS_FLOAT_DTYPES:
            raise CorruptFileError(f"{src / CONFIG_FILE}: head_dtype={head_dtype!r} must be one of "
                                   f"{list(SAFETENSORS_FLOAT_DTYPES)}; {fix}")
        model.head.load_state_dict(load_tensors(src / HEAD_FILE, model.head.state_dict(), "PRM checkpoint head",
                                                head_dtype))
        return model
