"""The cached decoder (prm_core.decoding) against transformers' generate: greedy gives the same
tokens; sampling follows the same distribution (chi-square against the exact probabilities)."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_core.decoding import decode, next_token
from prm_core.lm_policy import LMPolicy, SamplingConfig
from prm_core.tasks.arithmetic import make_problems


def _chi_square_plausible(counts: torch.Tensor, probs: torch.Tensor) -> bool:
    """True unless ``counts`` lie about 6 standard deviations of the chi-square statistic away from
    what ``probs`` predict (categories expected under 5 times pooled into one)."""
    expected = probs.double() * counts.sum()
    small = expected < 5
    observed = torch.cat([counts[~small].double(), counts[small].double().sum()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    used = expected > 0
    assert observed[~used].sum() == 0, "a token of probability 0 was drawn"
    stat = float(((observed[used] - expected[used]) ** 2 / expected[used]).sum())
    df = int(used.sum()) - 1
    return stat < df + 6 * math.sqrt(2 * df)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The top-p rule written independently: a token stays when the tokens more likely than it hold
    less than ``top_p`` of the mass; the kept probabilities renormalised."""
    descending, order = probs.sort(descending=True)
    before = descending.cumsum(0) - descending
    kept = torch.zeros_like(probs).scatter(0, order, (before < top_p).to(probs.dtype))
    return probs * kept / (probs * kept).sum()


LOGITS = torch.tensor([2.0, 1.5, 1.0, 0.9, 0.3, 0.0, -0.5, -1.0, -2.0, -4.0])


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8), (1.0, 0.5)])
def test_next_token_draws_follow_the_softmax_with_temperature_and_nucleus(temperature, top_p):
    torch.manual_seed(0)
    draws = next_token(LOGITS.expand(20_000, -1), temperature=temperature, top_p=top_p)
    counts = torch.bincount(draws, minlength=len(LOGITS))
    exact = _nucleus(torch.softmax(LOGITS / temperature, 0), top_p)
    assert _chi_square_plausible(counts, exact)
    if top_p < 1.0:
        assert (counts[exact == 0] == 0).all() and (exact == 0).any()
    # the check has power: the untempered, unfiltered softmax is told apart from these draws
    if (temperature, top_p) != (1.0, 1.0):
        assert not _chi_square_plausible(counts, torch.softmax(LOGITS, 0))


@given(st.lists(st.floats(-5, 5), min_size=2, max_size=30))
@settings(max_examples=50, deadline=None)
def test_next_token_greedy_is_the_argmax_and_a_draw_is_a_valid_id(values):
    logits = torch.tensor([values, values[::-1]])
    assert next_token(logits, greedy=True).tolist() == logits.argmax(-1).tolist()
    drawn = next_token(logits, top_p=0.9)
    assert ((drawn >= 0) & (drawn < len(values))).all()


@pytest.fixture(scope="module")
def tiny_lm(course_backbone):
    """(model, tokenizer) of a small random Qwen2 causal LM on the course tokenizer (seeded); its LM
    head is untied, as a random tied one only repeats the last token."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = copy.deepcopy(course_backbone[1])
    config = Qwen2Config(vocab_size=len(tokenizer) + 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(1)
    return Qwen2ForCausalLM(config).eval(), tokenizer


def _policies(tiny_lm, **sampling):
    model, tokenizer = tiny_lm
    return {decoder: LMPolicy(model, tokenizer, SamplingConfig(decoder=decoder, **sampling))
            for decoder in ("cached", "generate")}


def test_greedy_decoding_gives_generates_tokens_while_rows_end_at_different_steps(tiny_lm):
    model, tokenizer = tiny_lm
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (40, 12), generator=generator)
    lengths = torch.randint(2, 13, (40,), generator=generator)  # left padding of several widths
    mask = (torch.arange(12)[None, :] >= 12 - lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, tokenizer.pad_token_id)
    free = decode(model, ids, mask, max_new_tokens=24, stop_ids=[-1], greedy=True)
    # stop tokens that the rows reach at different steps, so the batch shrinks on the way
    stop = sorted({free[i][2 + (3 * i) % 20] for i in range(0, 40, 8)})
    generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=24,
                               eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)[:, ids.shape[1]:].tolist()
    generated = [row[: min([row.index(t) for t in stop if t in row], default=23) + 1] for row in generated]
    cached = decode(model, ids, mask, max_new_tokens=24, stop_ids=stop, greedy=True)
    assert cached == generated
    assert len({len(row) for row in cached}) > 3
    # and through LMPolicy, both decoders, with the step tag as a stop too
    policies = _policies(tiny_lm, max_new_tokens=24, max_step_tokens=6, batch_size=16)
    prompts = [policies["cached"].prompt_ids(p) for p in make_problems(40, seed=2)]
    for stop_at_step in (False, True):
        assert (policies["cached"].generate_ids(prompts, seed=0, greedy=True, stop_at_step=stop_at_step)
                == policies["generate"].generate_ids(prompts, seed=0, greedy=True, stop_at_step=stop_at_step))


def test_sampled_first_tokens_follow_the_models_distribution_with_both_decoders(tiny_lm):
    model = copy.deepcopy(tiny_lm[0])
    with torch.no_grad():  # a few likely tokens rather than the fresh init's near-uniform 513
        model.get_output_embeddings().weight.mul_(10)
    policies = _policies((model, tiny_lm[1]), max_new_tokens=1, batch_size=2048, temperature=0.8, top_p=0.9)
    prompt = policies["cached"].prompt_ids(make_problems(1, seed=5)[0])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
    exact = _nucleus(torch.softmax(logits / 0.8, 0), 0.9)
    assert exact.max() < 0.9 and (exact > 0.01).sum() >= 3  # a distribution worth testing
    for decoder, policy in policies.items():
        drawn = [ids[0] for ids in policy.generate_ids([prompt] * 6000, seed=1)]
        counts = torch.bincount(torch.tensor(drawn), minlength=len(exact))
        assert _chi_square_plausible(counts, exact), decoder


def test_decode_returns_the_budget_when_no_stop_comes_and_stops_at_the_first_stop_id(tiny_lm):
    model, tokenizer = tiny_lm
    ids = torch.tensor([[5, 6, 7], [tokenizer.pad_token_id, 5, 6]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    free = decode(model, ids, mask, max_new_tokens=7, stop_ids=[-1], greedy=True)
    assert [len(row) for row in free] == [7, 7]
    stop = free[0][3]
    stopped = decode(model, ids, mask, max_new_tokens=7, stop_ids=[stop], greedy=True)
    assert stopped[0] == free[0][: free[0].index(stop) + 1]
    assert stopped[1] == (free[1][: free[1].index(stop) + 1] if stop in free[1] else free[1])


def test_sampling_config_names_the_decoders():
    with pytest.raises(ValueError, match="decoder='beam'.*cached.*generate"):
        SamplingConfig(decoder="beam")


@pytest.mark.parametrize("row", [[float("nan")] * 4, [float("-inf")] * 4], ids=["nan", "all-minus-inf"])
def test_next_token_refuses_logits_that_give_no_distribution(row):
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], row])
    with pytest.raises(ValueError, match="logits row 1 gives no distribution"):
        next_token(logits)


def test_decode_refuses_a_model_that_ignores_the_cache(tiny_lm):
    model, _ = tiny_lm

    class NoCache(torch.nn.Module):  # a forward of the transformers 4 kind: no ``cache`` argument
        config = model.config

        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, **_):
            return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    with pytest.raises(ValueError, match="did not fill the KV cache.*decoder='generate'"):
        decode(NoCache(), torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long), max_new_tokens=3, stop_ids=[1])
