"""prm_core.control_tokens: one list of transformers' named special tokens, read by both checks."""

from types import SimpleNamespace

import pytest

import prm_core.control_tokens as control_tokens_module
from prm_core.control_tokens import (
    NAMED_SPECIAL_TOKENS,
    check_settings_are_not_control_tokens,
    control_tokens,
)


def _tokenizer(**named):
    """A stand-in tokenizer: named special tokens (``eos="<e>"`` sets ``eos_token``), all of them special."""
    return SimpleNamespace(added_tokens_decoder={}, all_special_tokens=list(named.values()),
                           **{f"{name}_token": text for name, text in named.items()})


def test_named_special_tokens_are_transformers_seven_with_pad_last():
    assert set(NAMED_SPECIAL_TOKENS) == {"mask", "cls", "sep", "unk", "bos", "eos", "pad"}
    assert NAMED_SPECIAL_TOKENS[-1] == "pad"  # EOS often pads too: the message calls it the pad token


def test_step_tag_shared_by_eos_and_pad_is_named_as_the_pad_token():
    with pytest.raises(ValueError, match=r"step_tag='<e>' is the tokenizer's pad token"):
        check_settings_are_not_control_tokens(_tokenizer(eos="<e>", pad="<e>"), "<e>", "\n")


def test_settings_check_reads_the_one_list_of_named_special_tokens(monkeypatch):
    monkeypatch.setattr(control_tokens_module, "NAMED_SPECIAL_TOKENS", (*NAMED_SPECIAL_TOKENS, "tool"))
    with pytest.raises(ValueError, match=r"step_tag='<t>' is the tokenizer's tool token"):
        check_settings_are_not_control_tokens(_tokenizer(tool="<t>"), "<t>", "\n")


def test_control_tokens_leave_out_unk_unless_a_named_token_of_the_one_list_shares_it(monkeypatch):
    tokenizer = _tokenizer(unk="<u>", tool="<u>")
    assert "<u>" not in control_tokens(tokenizer)  # "tool" is not a named special token: <u> is only unknown
    monkeypatch.setattr(control_tokens_module, "NAMED_SPECIAL_TOKENS", (*NAMED_SPECIAL_TOKENS, "tool"))
    assert control_tokens(tokenizer) == {"<u>": "a control token"}
