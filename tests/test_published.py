"""Published PRMs in their three conventions, on tiny models built and saved locally (offline)."""

import copy

import pytest
import torch

from prm_core.data import StepSample
from prm_core.published import CONVENTIONS, load_published_prm, save_tiny_published_prm
from prm_core.verification import Verifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLES = [
    StepSample("Mei has 12 coins. She gets 5 more.", ["12 + 5 = 17.", "So she has 17."]),
    StepSample("Ana has 3 cats.", ["3 × 2 = 6.", "6 - 1 = 5.", "Then 5 + 5 = 10.", "The answer is 10."]),
    StepSample("Liam has 40 beads. He loses 4.", ["40 - 4 = 36."]),
]


def _save(tmp_path, tiny_backbone, convention, *, custom_code=False):
    return save_tiny_published_prm(tmp_path / convention, convention, tiny_backbone[1], remote_code=custom_code)


@pytest.fixture(scope="module", params=CONVENTIONS)
def published(request, tiny_backbone, tmp_path_factory):
    folder = _save(tmp_path_factory.mktemp("published"), tiny_backbone, request.param)
    return load_published_prm(folder, request.param)


def _by_hand(prm, sample):
    """P(correct) at each step's position, from one unpadded forward pass."""
    encoded = prm.encode(sample)
    with torch.no_grad():
        logits = prm.model(input_ids=torch.tensor([encoded.input_ids])).logits[0]
    if prm.convention == "token_logits":
        good, bad = prm._ids["good_token"], prm._ids["bad_token"]
        return [float(torch.softmax(logits[p, [good, bad]], -1)[0]) for p in encoded.positions]
    return [float(torch.softmax(logits[p], -1)[1]) for p in encoded.positions]


def test_each_step_is_read_where_its_convention_puts_it(published):
    for sample in SAMPLES:
        encoded = published.encode(sample)
        assert len(encoded.positions) == sample.n_steps and encoded.n_dropped_steps == 0
        tokens = [published.tokenizer.decode([encoded.input_ids[p]]) for p in encoded.positions]
        if published.convention == "token_logits":
            assert tokens == ["ки"] * sample.n_steps
            text = published.tokenizer.decode(encoded.input_ids)
            assert text.count("ки") == sample.n_steps and "Step 2:" in text or sample.n_steps == 1
        elif published.convention == "qwen_prm":
            assert tokens == ["<extra_0>"] * sample.n_steps
        else:  # TRL: the last token of step + separator, i.e. the separator "\n"
            assert all(t.endswith("\n") for t in tokens)
            ends = [published.tokenizer.decode(encoded.input_ids[: p + 1]) for p in encoded.positions]
            assert all(e.endswith(step + "\n") for e, step in zip(ends, sample.steps, strict=True))


def test_scores_are_the_probabilities_computed_by_hand_from_the_logits(published):
    scores = published.score_steps(SAMPLES, batch_size=3).per_sample()
    for sample, row in zip(SAMPLES, scores, strict=True):
        assert row == pytest.approx(_by_hand(published, sample), abs=1e-5)
        assert all(0.0 < p < 1.0 for p in row)


def test_scores_do_not_depend_on_batching_or_padding(published):
    alone = [published.score_steps([s], batch_size=1).per_sample()[0] for s in SAMPLES]
    together = published.score_steps(SAMPLES[::-1], batch_size=2).per_sample()[::-1]
    for a, b in zip(alone, together, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_the_verifier_and_its_selection_take_a_published_prm(published):
    verifier = Verifier(published, batch_size=2)
    scores = verifier.score(SAMPLES, rule="min")
    assert scores.shape == (3,)
    assert verifier.best_of_n(SAMPLES, rule="min") is SAMPLES[int(torch.argmax(scores))]


def test_a_solution_past_max_length_is_counted_not_silently_cut(published):
    long = StepSample("Count.", [f"{k} + 1 = {k + 1}." for k in range(20)])
    encoded = published.encode(long)
    prm = copy.copy(published)
    prm.max_length = encoded.positions[10] + 1
    scored = prm.score_steps([long, SAMPLES[0]])
    assert scored.n_dropped_steps.tolist() == [20 - 11, 0]
    with pytest.raises(ValueError, match="lost steps to max_length"):
        scored.solution_scores("min")
    # the kept steps score as they would in the whole solution: the model is causal
    assert scored.per_sample(truncated="prefix")[0] == pytest.approx(
        published.score_steps([long]).per_sample()[0][:11], abs=1e-5)


def test_a_step_holding_the_tag_raises(published):
    if published.convention == "token_classification":
        pytest.skip("the separator is ordinary text in TRL's convention")
    tag = published.options["step_tag"]
    with pytest.raises(ValueError, match=r"sample.steps\[1\] contains '.*', the step tag"):
        published.encode(StepSample("q", ["a.", f"b {tag} c."]))


@pytest.mark.parametrize("field", ["problem", "step"])
def test_text_spelling_a_control_token_raises_in_every_convention(published, field):
    # one policy with the course's StepEncoder: text that the tokenizer reads as EOS or padding is refused
    eos = published.tokenizer.eos_token or published.tokenizer.pad_token
    sample = StepSample(f"q {eos}", ["a."]) if field == "problem" else StepSample("q", ["a.", f"b {eos} c."])
    where = "problem" if field == "problem" else r"steps\[1\]"
    with pytest.raises(ValueError, match=rf"sample\.{where} contains .*a control token of this tokenizer"):
        published.encode(sample)


def test_unknown_convention_and_options_raise_naming_what_is_allowed(tmp_path, tiny_backbone):
    folder = _save(tmp_path, tiny_backbone, "token_logits")
    with pytest.raises(ValueError, match="convention='logits' must be one of"):
        load_published_prm(folder, "logits")
    with pytest.raises(ValueError, match=r"takes no option \['separator'\]; it takes"):
        load_published_prm(folder, "token_logits", separator="\n")
    with pytest.raises(ValueError, match="good_token='Ж' is not one token"):
        load_published_prm(folder, "token_logits", good_token="Ж")
    with pytest.raises(ValueError, match="good_token and bad_token map to the same id"):
        load_published_prm(folder, "token_logits", good_token="+", bad_token="+")


def test_a_qwen_prm_with_its_own_model_code_needs_trust_remote_code(tmp_path, tiny_backbone):
    folder = _save(tmp_path, tiny_backbone, "qwen_prm", custom_code=True)
    with pytest.raises(ValueError, match="pass trust_remote_code=True"):
        load_published_prm(folder, "qwen_prm")
    prm = load_published_prm(folder, "qwen_prm", trust_remote_code=True)
    assert type(prm.model).__name__ == "TinyProcessRewardModel"
    assert prm.score_steps(SAMPLES).per_sample()[1] == pytest.approx(_by_hand(prm, SAMPLES[1]), abs=1e-5)


def test_a_qwen_prm_tokenizer_without_a_chat_template_raises(tmp_path, tiny_backbone):
    prm = load_published_prm(_save(tmp_path, tiny_backbone, "qwen_prm"), "qwen_prm")
    prm.tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat_template"):
        prm.encode(SAMPLES[0])


def test_a_causal_lm_read_as_token_classification_raises(tmp_path, tiny_backbone):
    folder = _save(tmp_path, tiny_backbone, "token_logits")
    with pytest.raises(ValueError, match=r"has no weights for \['score.bias', 'score.weight'\]"):
        load_published_prm(folder, "qwen_prm", step_tag="ки")


def test_processbench_report_with_a_published_prm_counts_what_it_cannot_score(tmp_path, tiny_backbone):
    from prm_core.evaluation import processbench_report
    from prm_core.formats import fixture_path, read_processbench

    prm = load_published_prm(_save(tmp_path, tiny_backbone, "token_classification"), "token_classification")
    rows = read_processbench(fixture_path("processbench"))
    report = processbench_report(prm, rows, threshold=0.5)
    assert report.true == [-1, 2, 0, -1] and len(report.predicted) == 4
    assert report.n_truncated == report.n_unknown == 0 and report.f1.n_error + report.f1.n_correct == 4
    # threshold 1.0: every first step is below it, so every prediction is 0
    assert processbench_report(prm, rows, threshold=1.0).predicted == [0, 0, 0, 0]
    short = copy.copy(prm)
    short.max_length = short.encode(rows[1]).positions[0] + 1  # row 1 keeps one step
    with pytest.warns(UserWarning, match="F1 is undefined"):
        cut = processbench_report(short, rows[1:2], threshold=0.0)  # nothing is below 0: no error in the prefix
    assert (cut.n_truncated, cut.n_unknown, cut.predicted, cut.f1.n_error) == (1, 1, [None], 0)


def test_beam_search_takes_a_published_prm_through_the_verifier(tmp_path, tiny_backbone):
    from prm_core.search import BeamSearchConfig, beam_search
    from prm_core.tasks.arithmetic import make_problems
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    prm = load_published_prm(_save(tmp_path, tiny_backbone, "qwen_prm"), "qwen_prm")
    problems = make_problems(3, seed=0)
    results = beam_search(problems, NoisyPolicy(), Verifier(prm), BeamSearchConfig(beam_width=2, expansions=2),
                          show_progress=False)
    assert len(results) == 3 and all(r.solution.n_steps >= 1 and r.n_scored > 0 for r in results)


def test_remote_code_is_only_for_the_qwen_convention(tmp_path, tiny_backbone):
    with pytest.raises(ValueError, match="use it with 'qwen_prm'"):
        save_tiny_published_prm(tmp_path, "token_logits", tiny_backbone[1], remote_code=True)


def test_loader_option_values_are_checked(tmp_path, tiny_backbone):
    folder = _save(tmp_path, tiny_backbone, "token_logits")
    for options, match in (({"trust_remote_code": "no"}, "trust_remote_code='no' must be True or False"),
                           ({"max_length": 0}, r"max_length=0 must be an int in \[2, 1024\]"),
                           ({"max_length": 5000}, r"max_length=5000 must be an int in \[2, 1024\]"),
                           ({"step_format": "Step {k}:"}, "must be a str with {step}"),
                           ({"step_format": "{n}: {step}"}, "no other fields")):
        with pytest.raises(ValueError, match=match):
            load_published_prm(folder, "token_logits", **options)
    with pytest.raises(ValueError, match="does not exist"):
        load_published_prm(tmp_path / "nope", "token_logits")


def test_loader_and_scorer_take_numpy_scalars_as_python_values(tmp_path, tiny_backbone):
    import numpy as np

    from prm_core.published import PublishedPRM

    folder = _save(tmp_path, tiny_backbone, "token_logits")
    prm = load_published_prm(folder, "token_logits", max_length=np.int64(512), trust_remote_code=np.bool_(False))
    again = PublishedPRM(prm.model, prm.tokenizer, prm.convention, prm.options, max_length=np.int32(64))
    assert (prm.max_length, type(prm.max_length), again.max_length, type(again.max_length)) == (512, int, 64, int)
    with pytest.raises(ValueError, match=r"max_length=1 must be an int in \[2, inf\)"):
        PublishedPRM(prm.model, prm.tokenizer, prm.convention, prm.options, max_length=1)


def test_a_classifier_read_as_token_logits_raises_even_with_tied_embeddings(tmp_path, tiny_backbone):
    import json

    folder = _save(tmp_path, tiny_backbone, "token_classification")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    with pytest.raises(ValueError, match="is a Qwen2ForTokenClassification, but convention='token_logits'"):
        load_published_prm(folder, "token_logits")


# ---------------------------------------------------------------- loading verified, saving whole


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_load_published_prm_weights_header_claiming_i32_raises_naming_the_folder(tmp_path, tiny_backbone, convention):
    from prm_core.files import CorruptFileError
    from tests.test_files import lie_about_dtype, rewrite_header

    folder = _save(tmp_path, tiny_backbone, convention)
    rewrite_header(folder / "model.safetensors", lie_about_dtype("model.norm.weight"))
    with pytest.raises(CorruptFileError, match=rf"{folder}.*'model.norm.weight' is stored as I32"):
        load_published_prm(folder, convention)


def test_load_published_prm_cut_weights_raise_corrupt_file_error_naming_the_folder(tmp_path, tiny_backbone):
    from prm_core.files import CorruptFileError

    folder = _save(tmp_path, tiny_backbone, "token_classification")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-11])
    with pytest.raises(CorruptFileError, match=rf"{weights} is cut short"):
        load_published_prm(folder, "token_classification")


def test_load_published_prm_weight_of_another_shape_raises_corrupt_file_error(tmp_path, tiny_backbone):
    from safetensors.torch import load_file, save_file

    from prm_core.files import CorruptFileError

    folder = _save(tmp_path, tiny_backbone, "token_classification")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["score.weight"] = torch.zeros(3, 32)  # a 3-way head where the config says 2 labels
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CorruptFileError, match=rf"{folder} cannot be loaded"):
        load_published_prm(folder, "token_classification")


@pytest.mark.parametrize("remote_code", [False, True], ids=["plain", "remote-code"])
def test_save_tiny_published_prm_failure_part_way_keeps_the_old_folder(tmp_path, tiny_backbone, monkeypatch,
                                                                       remote_code):
    from transformers import PreTrainedTokenizerFast

    from tests.test_files import leftovers, snapshot

    folder = save_tiny_published_prm(tmp_path / "qwen", "qwen_prm", tiny_backbone[1], remote_code=remote_code)
    before = snapshot(folder)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", fail)  # after the model is written
    with pytest.raises(OSError, match="No space"):
        save_tiny_published_prm(folder, "qwen_prm", tiny_backbone[1], seed=1, remote_code=remote_code)
    monkeypatch.undo()
    assert snapshot(folder) == before and leftovers(tmp_path) == []
    load_published_prm(folder, "qwen_prm", trust_remote_code=remote_code)


@pytest.mark.parametrize("damage", [lambda f: (f / "config.json").write_text('{"model_type": '),
                                    lambda f: (f / "tokenizer.json").write_text('{"version": '),
                                    lambda f: (f / "tokenizer.json").unlink()],
                         ids=["cut-config", "cut-tokenizer", "no-tokenizer-vocabulary"])
def test_load_published_prm_damaged_config_or_tokenizer_raises_naming_the_folder(tmp_path, tiny_backbone, damage):
    from prm_core.files import CorruptFileError

    folder = _save(tmp_path, tiny_backbone, "token_classification")
    damage(folder)
    with pytest.raises(CorruptFileError, match=str(folder)):
        load_published_prm(folder, "token_classification")


def test_score_steps_names_the_solution_of_the_batch_that_is_refused(published):
    eos = published.tokenizer.eos_token or published.tokenizer.pad_token
    with pytest.raises(ValueError, match=r"^samples\[2\]: sample\.steps\[0\] contains"):
        published.score_steps([SAMPLES[0], SAMPLES[1], StepSample("q", [f"a {eos} b."])])


def test_load_published_prm_config_value_of_the_wrong_type_raises_corrupt_file_error(tmp_path, tiny_backbone):
    from prm_core.files import CorruptFileError
    from tests.test_files import edit_json

    folder = _save(tmp_path, tiny_backbone, "token_classification")
    edit_json(folder / "config.json", hidden_size="32")  # huggingface_hub's own error
    with pytest.raises(CorruptFileError, match=rf"{folder}: its config.json cannot be read .*hidden_size"):
        load_published_prm(folder, "token_classification")
