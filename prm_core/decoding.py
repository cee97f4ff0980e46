"""Sampling a causal LM token by token with its KV cache, rows dropped from the batch as they end.

Why not transformers' ``generate``: it keeps every row of a batch running until the longest one ends
(or the token budget runs out), so on the course's LM policy, whose solutions are about 50 tokens
with an occasional one that runs to the 128-token budget, most of its forwards are for rows that have
already ended; and ``torch.multinomial`` draws an exponential per vocabulary entry per row. Here a
batch shrinks to its unfinished rows (``DynamicCache.batch_select_indices``) once an eighth of them
have ended, and a token is drawn by inverting the cumulative distribution with one uniform number
per row. Both leave the distribution as it was, not the draws: greedy decoding gives ``generate``'s
tokens; a sampled token follows the same softmax (with temperature and top-p), from another stream
of random numbers. ``make bench`` measures the two against each other (``sampling_ratio``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

COMPACT_SHARE = 8  # drop the ended rows once they are at least 1/COMPACT_SHARE of the batch


def next_token(logits: torch.Tensor, *, greedy: bool = False, temperature: float = 1.0,
               top_p: float = 1.0) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V): the argmax, or a draw from softmax(logits / temperature)
    restricted to its top-p nucleus (Holtzman et al. 2020, "The Curious Case of Neural Text
    Degeneration", section 3.1: the smallest set of most likely tokens holding ``top_p`` of the mass,
    the rule of transformers' ``TopPLogitsWarper``). Draws use torch's global generator.

    Returns
    -------
    torch.Tensor
        (B,) int64 token ids.

    Raises
    ------
    ValueError
        For a row of logits that gives no distribution (NaN, or every entry -inf).
    """
    if greedy:
        return logits.argmax(-1)
    logits = logits.float() / temperature if temperature != 1.0 else logits.float()
    if top_p < 1.0:
        ascending, order = logits.sort(-1)
        outside = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        outside[:, -1] = False  # the most likely token always stays
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    cdf = logits.softmax(-1).cumsum(-1)
    if not bool(torch.isfinite(cdf[:, -1]).all()):
        bad = int((~torch.isfinite(cdf[:, -1])).nonzero()[0])
        raise ValueError(f"logits row {bad} gives no distribution (NaN, or every entry -inf); check the model's "
                         "outputs (a NaN in its weights?) before sampling from them.")
    u = torch.rand(logits.shape[0], 1, device=logits.device) * cdf[:, -1:]  # scaled: the sum is 1 only to rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[1] - 1)


@torch.no_grad()
def decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           stop_ids: Sequence[int], greedy: bool = False, temperature: float = 1.0,
           top_p: float = 1.0) -> list[list[int]]:
    """Generated ids of each row of a left-padded batch, each up to and including its first id in
    ``stop_ids``, or ``max_new_tokens`` ids when none came.

    ``model`` is a transformers causal LM in eval mode (``logits_to_keep`` and a ``DynamicCache``);
    ``input_ids`` and ``attention_mask`` are (B, T) with padding on the left, as ``generate`` takes
    them. Positions count the real tokens only, as ``generate`` counts them, so a prompt's output does
    not depend on the longer prompts padded beside it.
    """
    from transformers import DynamicCache

    stop = torch.tensor(list(stop_ids), device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=cache,
                use_cache=True, logits_to_keep=1)
    if cache.get_seq_length() != input_ids.shape[1]:  # a forward that takes no ``cache`` would drop the context
        raise ValueError(f"{type(model).__name__} did not fill the KV cache it was given (transformers 5's `cache` "
                         "argument); sample it with SamplingConfig(decoder='generate').")
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)  # which input row each batch row is
    alive = torch.ones_like(rows, dtype=torch.bool)
    position, mask = positions[:, -1] + 1, attention_mask
    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []
    for step in range(max_new_tokens):
        token = next_token(out.logits[:, -1], greedy=greedy, temperature=temperature, top_p=top_p)
        drawn.append((rows[alive], token[alive]))
        alive = alive & ~torch.isin(token, stop)
        n_alive = int(alive.sum())
        if n_alive == 0 or step == max_new_tokens - 1:
            break
        if len(rows) - n_alive >= max(1, len(rows) // COMPACT_SHARE):
            keep = alive.nonzero().squeeze(1)
            rows, token, mask, position, alive = rows[keep], token[keep], mask[keep], position[keep], alive[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache,
                    use_cache=True, logits_to_keep=1)
        position = position + 1
    generated: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    for batch_rows, tokens in drawn:
        for row, token_id in zip(batch_rows.tolist(), tokens.tolist(), strict=True):
            generated[row].append(token_id)
    return generated
