"""The course's one policy for control-token text: refused.

Text is text. A tokenizer turns the literal text of its special tokens (``<|endoftext|>``,
``<|pad|>``, the step tag, a chat marker) into those control tokens wherever it meets them, so a
problem or step that contains one could end its solution early, fake a step end, or read as
padding. Every encoder that turns a ``StepSample`` into ids (``StepEncoder``, the published PRMs'
in ``prm_core.published``) refuses such text with a ``ValueError`` naming the sample, the field and
the token (``check_text_has_no_control_tokens``), and refuses encoder settings that would put one
in every sample; ``LMPolicy`` writes a control token it generates inside a step as U+FFFD, so its
own samples never spell one. Unknown-character tokens (``<unk>``) are not control tokens and are not
refused.
"""

from __future__ import annotations

from typing import Any

from prm_core.backbones import STEP_TAG
from prm_core.data import StepSample

# transformers' named special tokens (``tokenizer.<name>_token``); where two share a text, the later
# name is the one a message gives (EOS is often the pad token too: the pad name wins).
NAMED_SPECIAL_TOKENS = ("mask", "cls", "sep", "unk", "bos", "eos", "pad")


def control_tokens(tokenizer: Any, step_tag: str | None = None) -> dict[str, str]:
    """The texts a tokenizer turns into control tokens, each with what it would do.

    Every special added token (EOS, padding, the step tag, chat markers) and every named special
    token but ``<unk>`` (which stands for unknown characters, not an action). Returns a dict
    ``text -> role`` ("the step tag" for ``step_tag``, else "a control token").
    """
    texts = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    texts.update(getattr(tokenizer, "all_special_tokens", ()))
    acting = {getattr(tokenizer, f"{name}_token", None) for name in NAMED_SPECIAL_TOKENS if name != "unk"}
    unk = getattr(tokenizer, "unk_token", None)
    if unk not in acting:  # transformers may name EOS as the unknown token too: then it stays a control token
        texts.discard(unk)
    roles = {text: "a control token" for text in texts if text}
    if step_tag:
        roles[step_tag] = "the step tag"
    return roles


def check_settings_are_not_control_tokens(tokenizer: Any, step_tag: str, problem_separator: str) -> None:
    """Refuse a step tag that is already a named special token of the tokenizer (the tag's id would
    be the pad or EOS id) and a separator holding a control token (every sample would carry it)."""
    named = {getattr(tokenizer, f"{name}_token", None): name for name in NAMED_SPECIAL_TOKENS}  # the last wins
    if step_tag in named:
        raise ValueError(f"step_tag={step_tag!r} is the tokenizer's {named[step_tag]} token, so every step tag would "
                         f"have the {named[step_tag]} id; pass a token of its own, e.g. step_tag={STEP_TAG!r}.")
    for token, role in control_tokens(tokenizer, step_tag).items():
        if token in problem_separator:
            raise ValueError(f"problem_separator={problem_separator!r} contains {token!r}, {role} of this tokenizer, "
                             "so every sample would carry its id; pass plain text such as '\\n'.")


def check_text_has_no_control_tokens(sample: StepSample, controls: dict[str, str], where: str = "sample") -> None:
    """Refuse a sample whose problem or steps hold the text of a control token (the module docstring says why).

    Raises
    ------
    ValueError
        Naming ``where`` (e.g. ``samples[3]``), the field (``problem`` or ``steps[i]``) and the token.
    """
    for field_name, text in (("problem", sample.problem), *((f"steps[{i}]", s) for i, s in enumerate(sample.steps))):
        for token, role in controls.items():
            if token in text:
                effect = ("would fake a step end" if role == "the step tag" else
                          "would act as that token (end the solution, or read as padding) instead of as text")
                raise ValueError(
                    f"{where}.{field_name} contains {token!r}, {role} of this tokenizer, which {effect}. The course "
                    f"refuses such text: remove it from the {field_name.split('[')[0]} (e.g. "
                    f"text.replace({token!r}, '')) or rewrite it so that it no longer spells the token.")
