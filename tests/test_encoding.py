import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prm_core.backbones import STEP_TAG
from prm_core.data import StepSample
from prm_core.encoding import EncodedSample, StepEncoder, naive_newline_step_ends
from tests.conftest import STEP_ALPHABET

steps_strategy = st.lists(
    st.text(alphabet=STEP_ALPHABET, min_size=1, max_size=30).filter(lambda s: s.strip()),
    min_size=1,
    max_size=6,
)
problem_strategy = st.text(alphabet=STEP_ALPHABET, min_size=1, max_size=40).filter(lambda s: s.strip())
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@PROPERTY_SETTINGS
@given(problem=problem_strategy, steps=steps_strategy)
def test_encode_random_steps_one_tag_per_step_and_decodes_to_each_step(tokenizer_factory, problem, steps):
    tokenizer = tokenizer_factory()
    encoder = StepEncoder(tokenizer, max_length=4096)
    encoded = encoder.encode(StepSample(problem, steps))
    assert encoded.n_steps == len(steps)
    assert [encoded.input_ids[p] for p in encoded.step_positions] == [encoder.step_tag_id] * len(steps)
    assert encoded.input_ids.count(encoder.step_tag_id) == len(steps)
    for position, step in zip(encoded.step_positions, steps, strict=True):
        assert _decode(tokenizer, encoded.input_ids[:position]).endswith(step)


@PROPERTY_SETTINGS
@given(steps=steps_strategy, max_length=st.integers(min_value=8, max_value=80))
def test_drop_steps_truncation_keeps_a_prefix_of_whole_steps(tokenizer_factory, steps, max_length):
    encoder = StepEncoder(tokenizer_factory(), max_length=max_length, truncation="drop_steps")
    sample = StepSample("Q?", steps, labels=[1.0] * len(steps))
    try:
        encoded = encoder.encode(sample)
    except ValueError as err:
        assert "max_length" in str(err)
        return
    assert len(encoded.input_ids) <= max_length
    assert encoded.n_steps + encoded.n_dropped_steps == len(steps)
    assert encoded.n_steps >= 1
    assert len(encoded.labels) == encoded.n_steps
    assert encoded.step_positions[-1] == len(encoded.input_ids) - 1  # never a step cut in half


def test_naive_newline_search_finds_fewer_step_ends_than_steps_on_course_tokenizer(course_backbone):
    tokenizer = course_backbone[1]
    sample = StepSample(
        "Ana has 12 coins. She gets 5 more, then doubles them. How many coins does Ana have now?",
        ["12 + 5 = 17.", "Then 17 × 2 = 34."],
    )
    naive = naive_newline_step_ends(tokenizer, sample)
    assert len(naive) < sample.n_steps  # '.\n' is one token, so the newline id is never seen
    encoded = StepEncoder(tokenizer).encode(sample)
    assert encoded.n_steps == sample.n_steps


def test_naive_newline_search_on_benchmark_solutions_misses_step_ends(course_backbone):
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    tokenizer = course_backbone[1]
    samples = NoisyPolicy().sample_many(make_problems(20, seed=1), n_samples=2, seed=1)
    n_found = sum(len(naive_newline_step_ends(tokenizer, s)) for s in samples)
    n_steps = sum(s.n_steps for s in samples)
    assert n_found < n_steps / 2
    assert sum(StepEncoder(tokenizer).encode(s).n_steps for s in samples) == n_steps


def test_encoder_adds_missing_tag_and_resizes_model_embeddings(_cl100k_json):
    from transformers import Qwen2Config, Qwen2Model

    from tests.conftest import make_tokenizer

    tokenizer = make_tokenizer("cl100k", _cl100k_json)
    n_before = len(tokenizer)
    assert STEP_TAG not in tokenizer.get_vocab()
    model = Qwen2Model(Qwen2Config(vocab_size=n_before, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1))
    encoder = StepEncoder(tokenizer, model=model)
    assert len(tokenizer) == n_before + 1
    assert encoder.step_tag_id == n_before
    assert model.get_input_embeddings().num_embeddings == n_before + 1


def test_course_tokenizer_already_has_the_tag_so_vocab_is_unchanged(course_backbone):
    import copy

    tokenizer = copy.deepcopy(course_backbone[1])
    n_before = len(tokenizer)
    StepEncoder(tokenizer)
    assert len(tokenizer) == n_before


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_pads_on_tokenizer_side_and_keeps_positions_on_tags(tokenizer_factory, side):
    tokenizer = tokenizer_factory()
    tokenizer.padding_side = side
    encoder = StepEncoder(tokenizer)
    samples = [
        StepSample("Short?", ["1 + 1 = 2."], labels=[1.0]),
        StepSample("A longer problem text here?", ["3 × 4 = 12.", "12 - 5 = 7.", "7 + 1 = 9."],
                   labels=[1.0, 0.25, None]),
    ]
    batch = encoder(samples)
    ids, positions = batch["input_ids"], batch["step_positions"]
    assert positions.shape == (2, 3)
    assert positions[0].tolist()[1:] == [-1, -1]
    for i in range(2):
        real = positions[i][positions[i] >= 0]
        assert torch.all(ids[i, real] == encoder.step_tag_id)
        assert int(batch["attention_mask"][i].sum()) == len(encoder.encode(samples[i]).input_ids)
    pad_column = 0 if side == "left" else -1
    assert batch["attention_mask"][0, pad_column] == 0
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"][1].tolist() == [1.0, 0.25, 0.0]
    assert batch["label_mask"].tolist() == [[True, False, False], [True, True, False]]
    assert batch["step_mask"].tolist() == [[True, False, False], [True, True, True]]


def _collate_slow(encoded, pad_id, is_left):
    """The obvious per-sample loop that the vectorised ``collate`` must match."""
    length, n_steps = max(len(e.input_ids) for e in encoded), max(e.n_steps for e in encoded)
    out = {"input_ids": torch.full((len(encoded), length), pad_id), "attention_mask": torch.zeros(len(encoded), length),
           "step_positions": torch.full((len(encoded), n_steps), -1), "labels": torch.zeros(len(encoded), n_steps),
           "label_mask": torch.zeros(len(encoded), n_steps, dtype=torch.bool), "steps_start": torch.zeros(len(encoded))}
    for i, e in enumerate(encoded):
        offset = length - len(e.input_ids) if is_left else 0
        out["input_ids"][i, offset : offset + len(e.input_ids)] = torch.tensor(e.input_ids)
        out["attention_mask"][i, offset : offset + len(e.input_ids)] = 1
        out["step_positions"][i, : e.n_steps] = torch.tensor(e.step_positions) + offset
        out["steps_start"][i] = e.steps_start + offset
        for j, label in enumerate(e.labels or ()):
            if label is not None:
                out["labels"][i, j], out["label_mask"][i, j] = label, True
    return out


label_strategy = st.one_of(st.none(), st.sampled_from([0.0, 1.0]), st.floats(0, 1))
encoded_strategy = st.lists(st.lists(label_strategy, min_size=1, max_size=5).flatmap(
    lambda labels: st.tuples(st.integers(0, 6), st.lists(st.integers(1, 4), min_size=len(labels), max_size=len(labels)),
                             st.just(labels), st.booleans())), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(rows=encoded_strategy, is_left=st.booleans())
def test_collate_equals_per_sample_reference(rows, is_left):
    class Tok:
        pad_token_id = 0
        padding_side = "left" if is_left else "right"

    encoder = StepEncoder.__new__(StepEncoder)
    encoder.tokenizer = Tok()
    encoded = []
    for n_problem, step_lengths, labels, is_labelled in rows:  # ids 7.. for text, 99 for the tag
        ids, positions = list(range(7, 7 + n_problem)), []
        for k in step_lengths:
            ids += [7] * k + [99]
            positions.append(len(ids) - 1)
        encoded.append(EncodedSample(ids, positions, labels if is_labelled else None, steps_start=n_problem))
    fast, slow = encoder.collate(encoded), _collate_slow(encoded, 0, is_left)
    for key, expected in slow.items():
        assert fast[key].tolist() == expected.tolist(), key
    assert fast["input_ids"].dtype == fast["step_positions"].dtype == torch.long
    assert fast["labels"].dtype == torch.float32


def test_drop_steps_reports_dropped_steps_in_sample_and_batch(course_backbone):
    import copy

    sample = StepSample("What is 1 + 2 + 3 + 4?", ["1 + 2 = 3.", "3 + 3 = 6.", "6 + 4 = 10."], labels=[1.0, 1.0, 0.0])
    full = StepEncoder(copy.deepcopy(course_backbone[1])).encode(sample)
    # room for the problem and the first two steps, one token short of the third
    encoder = StepEncoder(copy.deepcopy(course_backbone[1]), max_length=len(full.input_ids) - 1)
    encoded = encoder.encode(sample)
    assert encoded.n_steps == 2
    assert encoded.n_dropped_steps == 1
    assert encoded.labels == [1.0, 1.0]
    assert encoded.input_ids == full.input_ids[: full.step_positions[1] + 1]
    assert encoder.collate([encoded])["n_dropped_steps"].tolist() == [1]


def test_left_problem_truncation_drops_problem_tokens_and_keeps_all_steps(course_backbone):
    import copy

    sample = StepSample("Ana has 12 coins and many other long words in the story. How many?", ["12 + 5 = 17."])
    full = StepEncoder(copy.deepcopy(course_backbone[1])).encode(sample)
    encoder = StepEncoder(copy.deepcopy(course_backbone[1]), max_length=len(full.input_ids) - 5,
                          truncation="left_problem")
    encoded = encoder.encode(sample)
    assert encoded.n_steps == 1
    assert encoded.n_dropped_problem_tokens == 5
    assert encoded.input_ids == full.input_ids[5:]


@pytest.mark.parametrize(
    ("truncation", "max_length", "match"),
    [("drop_steps", 6, "too small for the problem"), ("error", 10, "needs .* tokens but max_length=10"),
     ("left_problem", 3, "steps alone need")],
    ids=["drop-steps-no-step-fits", "error-policy", "left-problem-steps-too-long"],
)
def test_encode_too_long_raises_with_fix(course_backbone, truncation, max_length, match):
    import copy

    encoder = StepEncoder(copy.deepcopy(course_backbone[1]), max_length=max_length, truncation=truncation)
    with pytest.raises(ValueError, match=match):
        encoder.encode(StepSample("What is 12 + 5 + 3?", ["12 + 5 = 17.", "17 + 3 = 20."]))


@pytest.mark.parametrize("where", ["problem", "step"])
def test_encode_text_containing_the_step_tag_raises(course_backbone, where):
    import copy

    encoder = StepEncoder(copy.deepcopy(course_backbone[1]))
    problem = f"Q {STEP_TAG}?" if where == "problem" else "Q?"
    steps = ["1 + 1 = 2."] if where == "problem" else [f"1 + 1 = 2.{STEP_TAG}"]
    with pytest.raises(ValueError, match="step tag"):
        encoder.encode(StepSample(problem, steps))


def test_encoder_tokenizer_without_pad_token_raises(_cl100k_json):
    from tests.conftest import make_tokenizer

    tokenizer = make_tokenizer("cl100k", _cl100k_json)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad_token"):
        StepEncoder(tokenizer)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_length": 1}, "max_length=1"), ({"truncation": "cut"}, "truncation='cut'"), ({"step_tag": " "}, "step_tag")],
    ids=["tiny-max-length", "unknown-truncation", "blank-tag"],
)
def test_encoder_bad_settings_raise(course_backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StepEncoder(course_backbone[1], **kwargs)


@pytest.mark.parametrize(("token", "name"), [("<|pad|>", "pad"), ("<|endoftext|>", "eos")], ids=["pad", "eos"])
def test_encoder_step_tag_that_is_the_pad_or_eos_token_raises_naming_it(course_backbone, token, name):
    tokenizer = course_backbone[1]
    assert getattr(tokenizer, f"{name}_token") == token  # the course tokenizer's (its unk is EOS too)
    with pytest.raises(ValueError, match=rf"step_tag='{re.escape(token)}' is the tokenizer's {name} token, so every "
                                         rf"step tag would have the {name} id; pass a token of its own"):
        StepEncoder(tokenizer, step_tag=token)


@pytest.mark.parametrize("separator", ["<|pad|>", "\n<|endoftext|>\n", STEP_TAG], ids=["pad", "eos-in-text", "step-tag"])
def test_encoder_problem_separator_holding_a_control_token_raises_naming_it(course_backbone, separator):
    token = separator.strip()
    with pytest.raises(ValueError, match=rf"problem_separator=.* contains '{re.escape(token)}', .* of this tokenizer, "
                                         r"so every sample would carry its id; pass plain text"):
        StepEncoder(course_backbone[1], problem_separator=separator)


def test_encode_non_sample_raises_type_error(course_backbone):
    with pytest.raises(TypeError, match="StepSample"):
        StepEncoder(course_backbone[1]).encode({"problem": "q", "steps": ["a"]})


def test_call_with_empty_list_raises(course_backbone):
    with pytest.raises(ValueError, match="samples is empty"):
        StepEncoder(course_backbone[1])([])


def test_encode_many_equals_encode_one_by_one(tokenizer_factory):
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    encoder = StepEncoder(tokenizer_factory(), max_length=4096)
    samples = NoisyPolicy().sample_many(make_problems(10, seed=5), n_samples=2, seed=5)
    assert encoder.encode_many(samples) == [encoder.encode(s) for s in samples]


@PROPERTY_SETTINGS
@given(texts=st.lists(st.text(alphabet=STEP_ALPHABET, max_size=40), min_size=1, max_size=8))
def test_token_ids_fast_path_equals_the_tokenizer_call(tokenizer_factory, texts):
    encoder = StepEncoder(tokenizer_factory())
    expected = encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert encoder._token_ids(texts) == expected
    encoder.tokenizer.backend_tokenizer.enable_truncation(max_length=3)  # the fast path must step aside
    assert encoder._token_ids(texts) == encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_encode_text_that_normalises_to_the_tag_raises():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<pad>": 1, "ab": 2, "x": 3}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>")
    encoder = StepEncoder(tokenizer, step_tag="ab", add_bos=False)  # an ordinary token as the tag: a mistake
    assert encoder.encode(StepSample("x", ["x"])).step_positions == [2]
    with pytest.raises(ValueError, match="found 2 step tags in the ids but placed 1"):
        encoder.encode(StepSample("x", ["AB"]))  # "AB" is no tag as text, but lowercases to one


def test_naive_truncated_sample_keeps_the_first_label_at_the_last_step(course_backbone):
    from prm_core.encoding import naive_truncated_sample

    sample = StepSample("Ana has 12 coins. She gets 5 more. Then she doubles them. How many now?",
                        ["12 + 5 = 17.", "Then 17 × 2 = 35.", "So 35."], labels=[1.0, 0.0, 0.0])
    assert naive_newline_step_ends(course_backbone[1], sample) == []  # the pitfall: no step end found
    truncated = naive_truncated_sample(course_backbone[1], sample)
    assert truncated.labels == (None, None, 1.0)
    assert (truncated.problem, truncated.steps) == (sample.problem, sample.steps)


def test_naive_truncated_sample_leaves_a_sample_alone_when_every_step_end_is_found(tokenizer_factory):
    from prm_core.encoding import naive_truncated_sample

    tokenizer = tokenizer_factory()
    sample = StepSample("q", ["a", "b"], labels=[1.0, 0.0])  # no punctuation for the newline to merge with
    found = len(naive_newline_step_ends(tokenizer, sample))
    if found >= 2:
        assert naive_truncated_sample(tokenizer, sample) is sample
    elif found == 0:
        assert naive_truncated_sample(tokenizer, sample).labels == (None, 1.0)
    else:
        with pytest.raises(ValueError, match="found 1 of 2 step ends"):
            naive_truncated_sample(tokenizer, sample)


def test_naive_truncated_sample_without_labels_raises(course_backbone):
    from prm_core.encoding import naive_truncated_sample

    with pytest.raises(ValueError, match="no labels"):
        naive_truncated_sample(course_backbone[1], StepSample("q", ["a."]))


def test_naive_truncated_sample_does_not_count_the_newline_after_the_problem(tokenizer_factory):
    from prm_core.encoding import naive_truncated_sample

    tokenizer = tokenizer_factory()
    # a problem ending in a letter keeps its newline as its own token on these tokenizers, and the
    # step's newline merges with its period: the only newline id found ends the problem, not a step
    sample = StepSample("Ana has 12 coins and gets 5 more", ["12 + 5 = 17."], labels=[0.0])
    ends = naive_newline_step_ends(tokenizer, sample)
    n_problem = len(tokenizer(sample.problem, add_special_tokens=False)["input_ids"])
    if [i for i in ends if i > n_problem]:
        pytest.skip("this tokenizer keeps the step's newline as a token")
    assert naive_truncated_sample(tokenizer, sample).labels == (0.0,)  # one step, no end found: labels[0] at the end
    two = StepSample("Ana has 12 coins and gets 5 more", ["12 + 5 = 17.", "So 17."], labels=[1.0, 0.0])
    assert naive_truncated_sample(tokenizer, two).labels == (None, 1.0)


def test_naive_newline_step_ends_empty_separator_raises(course_backbone):
    with pytest.raises(ValueError, match="separator=''"):
        naive_newline_step_ends(course_backbone[1], StepSample("q", ["a."]), separator="")


# ---------------------------------------------------------------- control-token text is refused

@pytest.mark.parametrize("token", ["<|endoftext|>", "<|pad|>"], ids=["eos", "pad"])
def test_encode_step_spelling_a_control_token_raises_naming_sample_field_and_token(course_backbone, token):
    # the input: "a<|endoftext|>b" was encoded as the end-of-text id 0 (and <|pad|> as the pad id)
    import copy

    encoder = StepEncoder(copy.deepcopy(course_backbone[1]))
    with pytest.raises(ValueError, match=rf"samples\[0\]\.steps\[0\] contains '{token}'.*control token.*"
                                         r"refuses such text: remove it from the steps"):
        encoder.encode(StepSample("q", [f"a{token}b"]))


def test_encode_many_names_the_sample_and_the_problem_field(course_backbone):
    import copy

    encoder = StepEncoder(copy.deepcopy(course_backbone[1]))
    good = StepSample("What is 2 + 3?", ["2 + 3 = 5."])
    with pytest.raises(ValueError, match=r"samples\[1\]\.problem contains '<\|pad\|>'"):
        encoder.encode_many([good, StepSample("What is <|pad|>?", ["2 + 3 = 5."])])


@PROPERTY_SETTINGS
@given(before=problem_strategy, after=problem_strategy, data=st.data())
def test_encode_any_text_around_any_control_token_raises(tokenizer_factory, before, after, data):
    from prm_core.control_tokens import control_tokens

    tokenizer = tokenizer_factory()
    encoder = StepEncoder(tokenizer, max_length=4096)
    token = data.draw(st.sampled_from(sorted(control_tokens(tokenizer, encoder.step_tag))))
    in_problem = data.draw(st.booleans())
    text = before + token + after
    sample = StepSample(text, ["1 + 1 = 2."]) if in_problem else StepSample("q", ["1 + 1 = 2.", text])
    with pytest.raises(ValueError, match=r"contains '.*', (the step tag|a control token) of this tokenizer"):
        encoder.encode(sample)


@PROPERTY_SETTINGS
@given(problem=problem_strategy, steps=steps_strategy)
def test_encode_plain_text_holds_no_control_id_but_the_tags_and_bos(tokenizer_factory, problem, steps):
    tokenizer = tokenizer_factory()
    encoder = StepEncoder(tokenizer, max_length=4096)
    encoded = encoder.encode(StepSample(problem, steps))
    controls = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens} - {tokenizer.unk_token_id}
    allowed = set(encoded.step_positions) | ({0} if tokenizer.bos_token_id is not None else set())
    assert all(i in allowed for i, t in enumerate(encoded.input_ids) if t in controls)


def test_control_tokens_leave_out_unk_unless_it_is_also_eos_and_name_the_tag(tokenizer_factory):
    from prm_core.control_tokens import control_tokens

    tokenizer = tokenizer_factory()
    roles = control_tokens(tokenizer, STEP_TAG)
    assert roles[STEP_TAG] == "the step tag"
    assert tokenizer.pad_token in roles
    if tokenizer.unk_token is not None:  # the course tokenizer: transformers names EOS as unk too
        assert (tokenizer.unk_token in roles) == (tokenizer.unk_token == tokenizer.eos_token)


def test_encoder_numpy_bool_add_bos_is_stored_as_a_bool_that_json_can_hold(course_backbone):
    import copy
    import json

    import numpy as np

    encoder = StepEncoder(copy.deepcopy(course_backbone[1]), add_bos=np.bool_(True))
    assert type(encoder.add_bos) is bool and json.loads(json.dumps(encoder.config()))["add_bos"] is True
