"""Shared, offline fixtures: the course backbone (built once per session in a temp cache) and two
more tokenizer families trained locally with `tokenizers`, so no test ever touches a hub."""

import os

# Set before transformers/huggingface_hub are imported anywhere: tests must never reach a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

# Characters the property tests draw steps from: letters, digits, punctuation, newlines, unicode
# operators. The Unigram tokenizer gets them all as its alphabet, so nothing decodes to <unk>.
STEP_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,;:!?=+-×÷()\n"
CL100K_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _small_corpus() -> list[str]:
    lines = []
    for a in range(2, 60):
        for b, op in ((3, "+"), (2, "×"), (1, "-")):
            lines.append(f"Ana has {a} coins. Then {a} {op} {b} = {a + b}.\nNext, the total is {a}!\n")
    lines.append(STEP_ALPHABET)
    return lines


@pytest.fixture(scope="session")
def course_backbone(tmp_path_factory):
    """(model, tokenizer) of the default cpu course backbone, built in a session temp cache."""
    from prm_core.backbones import load_backbone

    cache = tmp_path_factory.mktemp("prm-course-cache")
    model, tokenizer = load_backbone("course-tiny", cache_dir=cache)
    return model, tokenizer, cache


@pytest.fixture(scope="session")
def _cl100k_json() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_small_corpus(), trainer)
    return tok.to_str()


@pytest.fixture(scope="session")
def _unigram_json() -> str:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "<unk>"], unk_token="<unk>",
                                      initial_alphabet=list(STEP_ALPHABET + "▁"), show_progress=False)
    tok.train_from_iterator(_small_corpus(), trainer)
    return tok.to_str()


def make_tokenizer(family: str, json_str: str | None = None, course=None):
    """A fresh tokenizer object per call, since StepEncoder adds its tag to the tokenizer in place."""
    if family == "course":
        import copy

        return copy.deepcopy(course)
    if family == "cl100k":
        return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json_str), eos_token="<|endoftext|>",
                                       pad_token="<|endoftext|>", clean_up_tokenization_spaces=False)
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json_str), unk_token="<unk>",
                                   pad_token="<pad>", clean_up_tokenization_spaces=False)


@pytest.fixture(params=["course", "cl100k", "unigram"], ids=["course-bpe", "cl100k-bpe", "metaspace-unigram"])
def tokenizer_factory(request, _cl100k_json, _unigram_json):
    """A zero-argument factory of fresh tokenizers of one family (three families in all)."""
    family = request.param
    if family == "course":
        course = request.getfixturevalue("course_backbone")[1]
        return lambda: make_tokenizer(family, course=course)
    json_str = {"cl100k": _cl100k_json, "unigram": _unigram_json}[family]
    return lambda: make_tokenizer(family, json_str)


import contextlib  # noqa: E402

# A course backbone small enough to train for tens of steps in about a second on one CPU core.
TINY_PROFILE_KWARGS = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                           corpus_problems=300)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """(model, tokenizer, cache_dir) of a 1-layer, 32-wide course backbone, built once per session.

    Tests that change weights or the tokenizer must copy them first (``build_tiny_prm`` does).
    """
    from prm_core.backbones import CourseTinyConfig, load_backbone

    cache = tmp_path_factory.mktemp("prm-tiny-cache")
    model, tokenizer = load_backbone("course-tiny", profile=CourseTinyConfig(**TINY_PROFILE_KWARGS), cache_dir=cache)
    return model, tokenizer, cache


def build_tiny_prm(tiny_backbone, kind: str = "prm", seed: int = 0, head=None, **encoder_kwargs):
    """A fresh ProcessRewardModel on private copies of the tiny backbone and its tokenizer.

    The head is initialised under ``torch.manual_seed(seed)``, so equal seeds give equal models.
    """
    import copy

    import torch

    from prm_core.encoding import StepEncoder
    from prm_core.model import ProcessRewardModel

    backbone, tokenizer = copy.deepcopy(tiny_backbone[0]), copy.deepcopy(tiny_backbone[1])
    torch.manual_seed(seed)
    return ProcessRewardModel(backbone, StepEncoder(tokenizer, model=backbone, **encoder_kwargs), kind=kind,
                              head=head)


@pytest.fixture
def make_tiny_prm(tiny_backbone):
    """Factory fixture around ``build_tiny_prm``: ``make_tiny_prm(kind="orm", seed=1)``."""
    return lambda **kwargs: build_tiny_prm(tiny_backbone, **kwargs)


@contextlib.contextmanager
def single_torch_thread():
    """Run a block with one intra-op thread, then restore the count.

    A 32-wide model gains nothing from a second thread, and on a shared 2-core runner two spinning
    OpenMP threads next to another busy process make each training step many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """``single_torch_thread`` as a fixture: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with single_torch_thread():
        yield
