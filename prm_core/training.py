"""One training loop for PRMs and ORMs, on Hugging Face Accelerate (CPU, one GPU, or several).

The loop runs a fixed number of optimizer steps (never a wall-clock budget), seeded, so two CPU runs
with one config give identical models. Samples are encoded once and batched by length; each batch
is collated just before its step and copied without waiting, and the host only syncs with the
device at logging and evaluation steps.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prm_core.checks import check_choice, check_int, check_real, check_seed
from prm_core.config_checks import check_fields
from prm_core.data import StepSample
from prm_core.encoding import EncodedSample, bucket_batches, to_device
from prm_core.losses import next_token_loss, outcome_sample, step_bce_loss
from prm_core.model import ProcessRewardModel, _require_tied_embeddings

MIXED_PRECISION = ("auto", "no", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the model and the data are passed to ``train`` (they have no defaults)."""

    max_steps: int = 600  # optimizer steps in all; the run's length, not a time budget
    batch_size: int = 64  # solutions per step (per process under `accelerate launch`)
    learning_rate: float = 3e-3  # peak AdamW learning rate, reached after warmup
    warmup_steps: int = 30  # linear warmup, then cosine decay to min_lr_ratio * learning_rate
    min_lr_ratio: float = 0.1  # final learning rate as a share of the peak
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    lm_loss_weight: float = 0.0  # weight of the auxiliary next-token loss; 0 turns it off
    # Weight of the "correct" class in the step BCE; < 1 stresses errors. "balanced": n_wrong / n_correct
    # over the training labels (as scikit-learn's class_weight="balanced"), resolved by ``train``.
    pos_weight: float | str = 1.0
    use_mask_after_first_error: bool = False  # drop labels after a sample's first error from the loss
    eval_every: int = 0  # evaluate the held-out set every this many steps; 0: only at the end
    eval_batch_size: int = 256  # solutions per evaluation batch
    mixed_precision: str = "auto"  # "auto": bf16 autocast on GPU, fp32 on CPU; or "no" / "bf16"
    seed: int = 0  # seeds initialisation of the head, batching and dropout
    checkpoint_dir: str | os.PathLike | None = None  # save_pretrained into <dir>/step-<n> here; None: no checkpoints
    checkpoint_every: int = 0  # also checkpoint every this many steps; 0: only at the end
    show_progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batch_size"):
            check_int(getattr(self, name), name, "[1, inf)")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            check_int(getattr(self, name), name, "[0, inf)", "0 turns it off")
        for name in ("lm_loss_weight", "weight_decay", "grad_clip"):
            check_real(getattr(self, name), name, "[0, inf)", "0 turns it off")
        if self.pos_weight != "balanced":
            check_real(self.pos_weight, "pos_weight", "(0, inf)", "pass a number, or 'balanced' to give both classes "
                       "the same total weight (1.0 weighs every step the same)")
        check_real(self.learning_rate, "learning_rate", "(0, inf)", "e.g. 3e-3")
        check_real(self.min_lr_ratio, "min_lr_ratio", "[0, 1]")
        check_choice(self.mixed_precision, "mixed_precision", MIXED_PRECISION)
        check_seed(self.seed)
        check_fields(self)
        if self.checkpoint_dir is not None:
            folder = Path(self.checkpoint_dir)
            if str(self.checkpoint_dir) == "" or (folder.exists() and not folder.is_dir()):
                raise ValueError(f"checkpoint_dir={self.checkpoint_dir!r} is not a folder (it is empty or an existing "
                                 "file); pass a folder path, or None for no checkpoints.")
        elif self.checkpoint_every:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} needs a checkpoint_dir to write into; pass "
                             "checkpoint_dir='path/to/folder', or checkpoint_every=0.")


@dataclass
class TrainResult:
    """What a run did: per-log-step history, final held-out metrics, and throughput."""

    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # optimizer steps and batching, without evaluation and checkpoints
    eval_seconds: float = 0.0
    tokens_per_second: float = 0.0  # of this process; under `accelerate launch`, times n_processes in all
    n_train_tokens: int = 0
    n_processes: int = 1  # processes training together (one per GPU under `accelerate launch`)
    n_batches_without_labels: int = 0
    n_dropped_steps: int = 0
    pos_weight: float = 1.0  # the step BCE's pos_weight as used ("balanced" resolved to a number)
    device: str = "cpu"
    checkpoints: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


TRAIN_KINDS = ("prm", "orm", "lm")


def training_view(samples: Sequence[StepSample], kind: str) -> list[StepSample]:
    """The samples as the model of ``kind`` sees them: step labels (PRM), one outcome label (ORM),
    or plain text (LM pretraining of the backbone)."""
    if kind not in TRAIN_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {TRAIN_KINDS}.")
    if kind in ("prm", "lm"):
        return list(samples)
    from prm_core.data import is_correct_answer

    views = []
    for i, sample in enumerate(samples):
        if "is_correct_answer" not in sample.meta:
            raise ValueError(f"samples[{i}].meta lacks 'is_correct_answer', which an ORM trains on; "
                             "grade the answer first (see prm_core.tasks.arithmetic.grade_answer).")
        views.append(outcome_sample(sample, is_correct_answer(sample, f"samples[{i}]")))
    return views


def _lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine

    return factor


def _batches(model: ProcessRewardModel, encoded: Sequence[EncodedSample], batch_size: int,
             seed: int | None, device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [batch for _, batch in model.encoder.iter_batches(encoded, batch_size, seed=seed, device=device)]


def balanced_pos_weight(encoded: Sequence[EncodedSample]) -> float:
    """``pos_weight`` that gives both classes equal total weight: (wrong steps) / (correct steps) over
    the labelled steps (soft labels count fractionally: sum(1 - y) / sum(y)). It counts every label,
    also those that ``use_mask_after_first_error`` later leaves out of the loss.

    Examples
    --------
    >>> balanced_pos_weight([EncodedSample([5, 9, 7], [1, 2], [1.0, 0.0]), EncodedSample([5, 9], [1], [1.0])])
    0.5
    """
    labels = [y for e in encoded for y in (e.labels or []) if y is not None]
    if not all(0.0 <= y <= 1.0 for y in labels):  # also catches nan
        raise ValueError("labels must lie in [0, 1] (1 correct, 0 wrong, soft in between) for pos_weight='balanced'.")
    n_correct = sum(labels)
    n_wrong = len(labels) - n_correct
    if n_correct == 0 or n_wrong == 0:
        raise ValueError(f"pos_weight='balanced' needs correct and wrong steps; the training labels have "
                         f"{n_correct:g} correct and {n_wrong:g} wrong. Pass a number instead.")
    return float(n_wrong / n_correct)


def _loss(model: Any, batch: dict[str, torch.Tensor], config: TrainConfig, kind: str,
          ignore_ids: tuple[int, ...], pos_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training loss of one batch, its supervised part alone (the step BCE; the next-token loss
    for ``kind="lm"``) and how many labelled steps it had."""
    use_lm = kind == "lm" or config.lm_loss_weight > 0
    out = model(**batch, return_lm_logits=use_lm)
    lm_loss = next_token_loss(out.lm_logits, batch["input_ids"], batch["attention_mask"], ignore_ids) if use_lm else 0
    if kind == "lm":
        return lm_loss, lm_loss, batch["attention_mask"].sum()
    step_loss = step_bce_loss(out.logits, batch["labels"], batch["label_mask"], pos_weight=pos_weight,
                              use_mask_after_first_error=config.use_mask_after_first_error)
    return step_loss.loss + config.lm_loss_weight * lm_loss, step_loss.loss, step_loss.n_labelled


def _mean_bce(model: ProcessRewardModel, batches: Sequence[dict[str, torch.Tensor]]) -> tuple[float, int, list, list]:
    """Step BCE over every labelled step of ``batches``, their count, and the scores and labels."""
    total, count, scores, labels = 0.0, 0, [], []
    for batch in batches:
        out = model(**batch)
        loss = step_bce_loss(out.logits, batch["labels"], batch["label_mask"])
        n = int(loss.n_labelled)
        total, count = total + float(loss.loss) * n, count + n
        mask = batch["label_mask"]
        scores.append(torch.sigmoid(out.logits[mask]).float().cpu())
        labels.append(batch["labels"][mask].float().cpu())
    return (total / count if count else float("nan")), count, scores, labels


@torch.inference_mode()
def evaluate_loss(model: ProcessRewardModel, batches: Sequence[dict[str, torch.Tensor]],
                  objective_batches: Sequence[dict[str, torch.Tensor]] | None = None) -> dict[str, float]:
    """Held-out step BCE against step labels (``eval_loss``, one scale for PRM and ORM), step AUROC,
    and ``eval_bce``: the BCE of the model's own training view of the same solutions (an ORM's
    outcome label at the last step; for a PRM, ``batches`` again), the held-out twin of ``train_bce``."""
    from prm_core.metrics import step_auroc

    was_training = model.training
    model.eval()
    eval_loss, count, scores, labels = _mean_bce(model, batches)
    eval_bce = eval_loss if objective_batches is None else _mean_bce(model, objective_batches)[0]
    model.train(was_training)
    if count == 0:
        warnings.warn("the evaluation set has no labelled step; eval_loss and eval_auroc are nan.", stacklevel=2)
        return {"eval_loss": float("nan"), "eval_auroc": float("nan"), "eval_bce": eval_bce, "eval_n_labelled": 0.0}
    auroc = step_auroc(torch.cat(scores).numpy(), torch.cat(labels).numpy())
    return {"eval_loss": eval_loss, "eval_auroc": auroc, "eval_bce": eval_bce, "eval_n_labelled": float(count)}


def _check_before_the_first_step(model: ProcessRewardModel, encoded: Sequence[EncodedSample], has_eval: bool,
                                  config: TrainConfig, kind: str) -> None:
    """Refuse, before any compute, what would fail late or train on nothing: no labelled step to
    learn from, a next-token loss the backbone cannot give, a checkpoint folder that cannot be written."""
    if kind != "lm":
        n_labelled = sum(y is not None for e in encoded for y in (e.labels or ()))
        if n_labelled == 0:
            n_unlabelled = sum(e.labels is None for e in encoded)
            raise ValueError(
                f"train_samples hold no labelled step in the steps that fit max_length ({len(encoded)} samples, "
                f"{n_unlabelled} with labels=None), so a {kind.upper()} would learn nothing (its loss is 0 at every "
                "step). Label the steps (prm_core.labeling: outcome_labels or monte_carlo_labels), train "
                "kind='orm' on meta['is_correct_answer'], or kind='lm' for plain text.")
    if kind == "lm" or config.lm_loss_weight > 0:
        _require_tied_embeddings(model.backbone, f"kind={kind!r} with lm_loss_weight={config.lm_loss_weight}")
    if config.eval_every and (not has_eval or kind == "lm"):
        warnings.warn(f"eval_every={config.eval_every} but there is nothing to evaluate ("
                      f"{'kind=lm is not evaluated' if has_eval else 'no eval_samples'}); pass eval_samples or "
                      "set eval_every=0.", stacklevel=3)
    if config.checkpoint_dir is not None:
        folder = Path(config.checkpoint_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise ValueError(f"checkpoint_dir={str(folder)!r} cannot be written ({err}); pass a folder you can "
                             "write to, or checkpoint_dir=None. Nothing was trained.") from err
        every = config.checkpoint_every or config.max_steps
        for step in sorted({*range(every, config.max_steps + 1, every), config.max_steps}):
            path = folder / f"step-{step}"
            if path.exists() and not path.is_dir():
                raise ValueError(f"{path} is a file where the checkpoint of step {step} goes; move it, or pass another "
                                 "checkpoint_dir. Nothing was trained.")


def train(model: ProcessRewardModel, train_samples: Sequence[StepSample],
          eval_samples: Sequence[StepSample] | None = None, config: TrainConfig = TrainConfig(),
          kind: str | None = None) -> TrainResult:
    """Train ``model`` as a PRM (step labels), an ORM (outcome label at the last step), or its
    backbone as a language model (``kind="lm"``: next-token loss only, e.g. on correct solutions).

    Parameters
    ----------
    model : ProcessRewardModel
        Trained in place; ``model.kind`` picks the supervision unless ``kind`` is given.
    train_samples, eval_samples : sequence of StepSample
        Labelled samples; an ORM needs ``meta["is_correct_answer"]``. ``eval_samples`` are
        evaluated with their step labels whatever the kind, so PRM and ORM compare on one scale.
    config : TrainConfig

    Returns
    -------
    TrainResult
        ``history`` rows hold ``train_loss`` (the whole objective) and, for a PRM or an ORM,
        ``train_bce`` (the step BCE alone); ``eval_history`` rows hold ``eval_loss`` (step BCE on the
        held-out step labels), ``eval_bce`` (the BCE of the model's own view of them: an ORM's outcome
        label) and ``eval_auroc``.

    Raises
    ------
    ValueError
        Before the first step: for an unknown ``kind``, no training samples, no labelled step (PRM or
        ORM), ``pos_weight="balanced"`` on labels of one class, a next-token loss on a backbone whose
        LM head is not tied, or a ``checkpoint_dir`` that cannot be written.
    FloatingPointError
        When the loss turns NaN or infinite, naming the first bad step.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    kind = kind or model.kind
    if kind not in TRAIN_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {TRAIN_KINDS}.")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config has type {type(config).__name__}; pass a TrainConfig.")
    if not train_samples:
        raise ValueError("train_samples is empty; pass labelled StepSamples to train on.")
    encoded = model.encoder.encode_many(training_view(train_samples, kind))
    _check_before_the_first_step(model, encoded, bool(eval_samples), config, kind)
    use_bf16 = config.mixed_precision == "bf16" or (config.mixed_precision == "auto" and torch.cuda.is_available())
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no")
    set_seed(config.seed)
    n_dropped = sum(e.n_dropped_steps for e in encoded)
    pos_weight = balanced_pos_weight(encoded) if config.pos_weight == "balanced" else float(config.pos_weight)
    eval_batches = objective_batches = None
    if eval_samples and kind != "lm":
        eval_batches = _batches(model, model.encoder.encode_many(list(eval_samples)), config.eval_batch_size,
                                None, accelerator.device)
        if kind == "orm":  # held out in the ORM's own view too, so its learning curve compares like with like
            objective_batches = _batches(model, model.encoder.encode_many(training_view(eval_samples, kind)),
                                         config.eval_batch_size, None, accelerator.device)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    prepared, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    prepared.train()
    ignore_ids = (model.encoder.step_tag_id, model.encoder.tokenizer.pad_token_id)

    result = TrainResult(config=asdict(config) | {"kind": kind}, device=str(accelerator.device), n_dropped_steps=n_dropped,
                         n_processes=accelerator.num_processes, pos_weight=pos_weight)
    # Running sums stay on the device; reading them is the only host sync, once per log interval.
    loss_sum = torch.zeros((), device=accelerator.device)
    objective_sum = torch.zeros((), device=accelerator.device)
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)
    unlabelled = torch.zeros((), dtype=torch.long, device=accelerator.device)
    first_bad_step = torch.full((), -1, dtype=torch.long, device=accelerator.device)  # 1-based, like history
    log_every = max(1, min(50, config.max_steps // 20))
    lengths = [len(e.input_ids) for e in encoded]
    pending: list[list[int]] = []  # sample indices of this epoch's batches not yet trained on, last first
    epoch, window_start = 0, 0
    start = time.perf_counter()
    bar = tqdm(range(config.max_steps), desc=f"train {kind}", disable=not config.show_progress, leave=False)
    for step in bar:
        if not pending:
            epoch_batches = bucket_batches(lengths, config.batch_size, seed=config.seed + epoch)
            pending = epoch_batches[accelerator.process_index :: accelerator.num_processes][::-1]
            epoch += 1
        # Collated when needed: on a GPU the host builds this batch while the previous step still runs.
        collated = model.encoder.collate([encoded[i] for i in pending.pop()])
        batch = {k: to_device(v, accelerator.device) for k, v in collated.items()}
        with accelerator.autocast():
            loss, objective, n_labelled = _loss(prepared, batch, config, kind, ignore_ids, pos_weight)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(prepared.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        detached = loss.detach().float()
        is_bad = ~torch.isfinite(detached)
        first_bad_step = torch.where(is_bad & (first_bad_step < 0), torch.full_like(first_bad_step, step + 1),
                                     first_bad_step)
        loss_sum += torch.nan_to_num(detached)
        objective_sum += torch.nan_to_num(objective.detach().float())
        tokens += batch["attention_mask"].sum()
        unlabelled += (n_labelled == 0).long()
        is_last = step + 1 == config.max_steps
        if (step + 1) % log_every == 0 or is_last:
            if int(first_bad_step) >= 0:
                raise FloatingPointError(f"the training loss became NaN or infinite at step {int(first_bad_step)}; "
                                         "lower learning_rate or check the labels and inputs of that batch.")
            n_window = step + 1 - window_start
            mean_loss = float(loss_sum) / n_window
            row = {"step": step + 1, "train_loss": mean_loss, "lr": scheduler.get_last_lr()[0]}
            if kind != "lm":  # the supervised BCE alone: what eval_bce measures on held-out solutions
                row["train_bce"] = float(objective_sum) / n_window
            result.history.append(row)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            loss_sum.zero_()
            objective_sum.zero_()
            window_start = step + 1
        if eval_batches and ((config.eval_every and (step + 1) % config.eval_every == 0) or is_last):
            paused = time.perf_counter()
            result.eval_history.append({"step": step + 1, **evaluate_loss(accelerator.unwrap_model(prepared),
                                                                          eval_batches, objective_batches)})
            result.eval_seconds += time.perf_counter() - paused
        if config.checkpoint_dir and (is_last or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)):
            paused = time.perf_counter()
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                path = Path(config.checkpoint_dir) / f"step-{step + 1}"
                accelerator.unwrap_model(prepared).save_pretrained(path)
                result.checkpoints.append(str(path))
            result.eval_seconds += time.perf_counter() - paused
    bar.close()
    # Training time excludes evaluation and checkpointing, so it can be held to a budget.
    result.train_seconds = time.perf_counter() - start - result.eval_seconds
    result.n_train_tokens = int(tokens)
    result.tokens_per_second = result.n_train_tokens / max(result.train_seconds, 1e-9)
    result.n_batches_without_labels = int(unlabelled)
    prepared.eval()
    return result
