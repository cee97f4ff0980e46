"""Backbones: the course's own small model, built offline, or any Hugging Face model by name or path.

``load_backbone("course-tiny")`` trains a byte-level BPE tokenizer on the arithmetic benchmark and
builds a small Qwen2-architecture model, saves both with ``save_pretrained`` to a cache folder keyed
by their config, and loads them back with ``AutoModel``/``AutoTokenizer``: the very path a hub model
takes, so nothing downstream knows which one it got.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from prm_core.checkpoints import load_pretrained, load_tokenizer
from prm_core.checks import check_int, check_seed
from prm_core.config_checks import check_fields
from prm_core.files import CorruptFileError, atomic_folder, cached, is_complete, read_json, write_json

logger = logging.getLogger(__name__)

COURSE_TINY = "course-tiny"
STEP_TAG = "<|step|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
MARKER = "course_tiny.json"  # written last into a course-tiny folder: its presence means complete
# Bump when the corpus text or the build recipe changes, so stale caches are not reused.
BUILD_VERSION = 1
# Qwen2's pre-tokenizer pattern: digits split one by one, and punctuation glued to the newlines
# after it (" ?[^\s\p{L}\p{N}]+[\r\n]*"), which is why BPE learns merges such as ".\n".
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class CourseTinyConfig:
    """Size of the course backbone and of the corpus its tokenizer is trained on."""

    hidden_size: int = 64  # width of every layer; 64 trains in about a minute on 2 CPU cores
    num_layers: int = 2  # transformer blocks
    num_heads: int = 4  # query heads; hidden_size must divide by it
    num_kv_heads: int = 2  # key/value heads (grouped-query attention, as in Qwen2)
    intermediate_size: int = 256  # MLP width
    max_position_embeddings: int = 512  # longest input in tokens
    vocab_size: int = 512  # BPE vocabulary including the 256 byte symbols and special tokens
    corpus_problems: int = 3000  # benchmark problems whose text and sampled solutions train the tokenizer
    seed: int = 0  # seeds the corpus and the weight initialisation

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                     "max_position_embeddings", "corpus_problems"):
            check_int(getattr(self, name), name, "[1, inf)")
        check_seed(self.seed)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}; "
                "pick num_heads among its divisors."
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be divisible by num_kv_heads={self.num_kv_heads}."
            )
        check_fields(self)
        if check_int(self.vocab_size, "vocab_size") < 300:
            raise ValueError(
                f"vocab_size={self.vocab_size} must be >= 300: 256 byte symbols plus special tokens "
                "plus room for merges."
            )

    def cache_key(self) -> str:
        """A short hash of everything that shapes the built files, the benchmark's defaults included
        (they write the tokenizer's corpus)."""
        from prm_core.tasks.arithmetic import ProblemConfig
        from prm_core.tasks.arithmetic_policy import PolicyConfig

        benchmark = {"problems": asdict(ProblemConfig()), "policy": asdict(PolicyConfig())}
        payload = json.dumps({"config": asdict(self), "build_version": BUILD_VERSION, "benchmark": benchmark},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


PROFILES: dict[str, CourseTinyConfig] = {
    "cpu": CourseTinyConfig(),
    # About 14M parameters: the size the GPU targets were measured at.
    "gpu": CourseTinyConfig(hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=2,
                            intermediate_size=1536, vocab_size=1024),
}


def resolve_profile(profile: str | CourseTinyConfig) -> CourseTinyConfig:
    """Turn a profile name (``"cpu"``, ``"gpu"``) or a config into a config."""
    if isinstance(profile, CourseTinyConfig):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a known profile; use one of {sorted(PROFILES)}.")
    return PROFILES[profile]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where built backbones live: ``cache_dir``, else ``$PRM_COURSE_CACHE``, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("PRM_COURSE_CACHE"):
        return Path(os.environ["PRM_COURSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prm-course"


def course_tiny_dir(config: CourseTinyConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / f"{COURSE_TINY}-{config.cache_key()}"


def course_corpus(config: CourseTinyConfig) -> Iterator[str]:
    """Problem texts with reference and sampled solutions, one step a line.

    Steps are joined by plain newlines here on purpose: that is how text looks to a real tokenizer's
    trainer, so the course tokenizer learns the same punctuation-newline merges that break the naive
    step-end search (notebook 02).
    """
    from prm_core.tasks.arithmetic import make_problems, reference_solution
    from prm_core.tasks.arithmetic_policy import NoisyPolicy

    rng = random.Random(config.seed)
    policy = NoisyPolicy()
    for problem in make_problems(config.corpus_problems, seed=config.seed + 7919):
        yield problem.text + "\n" + "\n".join(reference_solution(problem)) + "\n"
        yield problem.text + "\n" + "\n".join(policy.sample(problem, rng).steps) + "\n"


def train_course_tokenizer(config: CourseTinyConfig):
    """A byte-level BPE tokenizer with Qwen2-style pre-tokenization, trained on the course corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN, STEP_TAG],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(course_corpus(config), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[STEP_TAG],
        model_max_length=config.max_position_embeddings,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def build_course_tiny(config: CourseTinyConfig, out_dir: str | os.PathLike) -> Path:
    """Train the tokenizer, initialise the model (seeded) and ``save_pretrained`` both to ``out_dir``.

    The files are written beside ``out_dir`` and renamed in with the marker ``course_tiny.json``
    last, so a failure part-way leaves an earlier build there as it was.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    from transformers import Qwen2Config, Qwen2Model

    tokenizer = train_course_tokenizer(config)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    # fork_rng keeps the caller's global torch RNG untouched by our seeded init.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2Model(model_config)
    with atomic_folder(out_dir, MARKER, merge=True) as tmp:
        with quiet_hf_progress():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        write_json(tmp / MARKER, {**asdict(config), "build_version": BUILD_VERSION}, indent=2)
    return Path(out_dir)


def _cached_course_tiny(config: CourseTinyConfig, cache_dir: str | os.PathLike | None, **kwargs: Any):
    """``(folder, model, tokenizer)`` of the cached course backbone, built first if it is missing.

    The cache's check is the verified load itself (``_from_pretrained``), so a folder without its
    marker, or with a damaged marker, weight, config or tokenizer, is rebuilt once and repaired.
    """
    final = course_tiny_dir(config, cache_dir)
    logger.info("course-tiny: %s backbone %s", "loading cached" if is_complete(final, MARKER) else "building", final)

    def load(folder: Path):
        read_json(folder / MARKER, "course-tiny marker")
        return (folder, *_from_pretrained(str(folder), "course-tiny backbone", uniform_dtype=True, **kwargs))

    return cached(final, MARKER, lambda tmp: build_course_tiny(config, tmp), load, "course-tiny backbone")


def ensure_course_tiny(config: CourseTinyConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached folder for ``config``, built first if it is missing (``files.cached``).

    The build goes to a temporary folder that is renamed into place, so two processes building at
    once (parallel notebooks) never see a half-written backbone. A folder without its marker
    ``course_tiny.json`` (an interrupted build of older code, a file removed by hand), or one whose
    model or tokenizer does not load whole (``load_backbone``'s checks), is rebuilt once, with a
    warning, and the folder repaired.

    Raises
    ------
    CorruptFileError
        When even the fresh build cannot be read back.
    """
    return _cached_course_tiny(config, cache_dir)[0]


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' own load/save progress bars for a block, then restore the setting.

    Loading a small checkpoint takes a blink; its bar would only add noise to notebook outputs.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_pretrained(name: str, what: str = "backbone", uniform_dtype: bool = False, **kwargs: Any):
    """Model and tokenizer, verified for a local folder (``checkpoints``): its tokenizer files read,
    its weight headers sound, and no weight of the base model missing or of another shape (a causal
    LM's own head is an unexpected weight the base model leaves out, and is allowed)."""
    from transformers import AutoModel

    try:
        with quiet_hf_progress():
            tokenizer = load_tokenizer(name, what, **kwargs)
            model, info = load_pretrained(AutoModel, name, what, strict=False, uniform_dtype=uniform_dtype, **kwargs)
    except (OSError, ValueError) as err:
        if Path(name).exists() or isinstance(err, CorruptFileError):
            raise
        raise OSError(
            f"name={name!r} is neither a local folder nor a model this machine can download (the "
            "Hugging Face hub is unreachable or HF_HUB_OFFLINE is set). Use "
            f"load_backbone({COURSE_TINY!r}) for the offline course backbone, or pass the path of a "
            "folder saved with save_pretrained."
        ) from err
    missing = sorted(info.get("missing_keys") or ()) + sorted(str(k) for k in info.get("mismatched_keys") or ())
    missing += _misplaced_weights(model, info.get("unexpected_keys") or ())
    if missing:
        raise CorruptFileError(f"{what} {name} lacks weights, holds them in another shape or holds weights of "
                               f"another architecture ({missing[:4]}); transformers would fill them at random: save "
                               "the folder again, or load the one it came from.")
    return model, tokenizer


def _misplaced_weights(model: Any, unexpected: Any) -> list[str]:
    """The unexpected weights that lie inside the base model (under one of its own modules, e.g.
    ``layers.0.self_attn.q_proj.bias``): weights of another architecture, such as a config.json whose
    ``model_type`` names a model without those biases, which transformers would drop. A causal LM's or
    classifier's head (``lm_head.weight``, ``score.weight``) lies outside it and is allowed."""
    prefix = getattr(model, "base_model_prefix", "")
    children = {name for name, _ in model.named_children()}
    return sorted(f"unexpected {k}" for k in map(str, unexpected)
                  if k.removeprefix(f"{prefix}.").split(".")[0] in children)


def load_backbone(
    name: str = COURSE_TINY,
    *,
    profile: str | CourseTinyConfig = "cpu",
    cache_dir: str | os.PathLike | None = None,
    **from_pretrained_kwargs: Any,
):
    """Load a backbone model and its tokenizer.

    Parameters
    ----------
    name : str, default "course-tiny"
        ``"course-tiny"`` for the course's own small model (built offline on first use, then
        cached); otherwise a Hugging Face model name (needs the hub) or a local
        ``save_pretrained`` folder.
    profile : str or CourseTinyConfig, default "cpu"
        Size of the course backbone: ``"cpu"`` (hidden 64, 2 layers), ``"gpu"`` (hidden 384,
        6 layers) or a config. Ignored for other names.
    cache_dir : path, optional
        Where course backbones are cached; defaults to ``$PRM_COURSE_CACHE`` or the user cache.
    **from_pretrained_kwargs
        Passed to ``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained``.

    Returns
    -------
    (model, tokenizer)
        A ``transformers`` base model (hidden states out, no LM head) and its tokenizer.

    Raises
    ------
    CorruptFileError
        (a ValueError) for a local folder whose tokenizer or weights are missing, damaged, or leave a
        weight of the model unset; a damaged course-tiny cache entry is rebuilt once instead.
    OSError
        For a hub name this machine cannot download (offline), naming the offline alternatives.

    Examples
    --------
    >>> model, tokenizer = load_backbone("course-tiny")  # doctest: +SKIP
    >>> model.config.hidden_size  # doctest: +SKIP
    64
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty str: {COURSE_TINY!r}, a hub name or a folder.")
    if name == COURSE_TINY:
        return _cached_course_tiny(resolve_profile(profile), cache_dir, **from_pretrained_kwargs)[1:]
    return _from_pretrained(name, **from_pretrained_kwargs)

