"""RL with outcome, ORM and PRM rewards: a GRPO-style policy gradient on ``LMPolicy``.

Each update samples ``group_size`` solutions (a *group*) for each of ``problems_per_update`` train-side
problems, turns the chosen reward into per-token advantages, and takes ``epochs_per_batch`` clipped
policy-gradient steps with a KL penalty to the SFT reference (GRPO: Shao et al. 2024, DeepSeekMath,
section 4.1, eq. 3). Only the reward source changes between runs:

- ``outcome``: 1 for a right answer, 0 otherwise (the exact grader: a verifiable reward);
- ``orm``: the course ORM's probability that the whole solution is right (its last step's score);
- ``prm_min``: the PRM's lowest step probability, used as one outcome-style reward per solution;
- ``prm``: the PRM's probability for every step, dense: a token's advantage is the sum of the
  group-normalised rewards of its step and every later step (DeepSeekMath, section 4.1.3).

Solution-level rewards are normalised within their group (``group_advantages``) and shared by every
token. A malformed solution (no EOS within the budget, or a step that does not parse) earns 0 from
every source (for ``prm``: its last step's reward is 0), so no reward pays for rambling.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from prm_core.checks import check_choice, check_int, check_real, check_real_array, check_seed
from prm_core.config_checks import check_fields
from prm_core.data import is_correct_answer
from prm_core.lm_policy import Completion, LMPolicy
from prm_core.tasks.arithmetic import ArithmeticProblem

REWARDS = ("outcome", "orm", "prm", "prm_min")
_STD_FLOOR = 1e-6  # absolute: a group whose rewards' std is below it carries no signal, its advantages are 0


def _mean_and_std(values: np.ndarray, name: str) -> tuple[float, float]:
    """The mean and population std of finite ``values``; ValueError where they overflow float64
    (rewards near 1e154 or beyond), which would turn every advantage into 0 without a word."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = values.mean(), values.std()
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise ValueError(f"{name} span {values.min():.3g} to {values.max():.3g}, too wide for their mean and std in "
                         "float64; rescale them (e.g. to [0, 1]) before computing advantages.")
    return mean, std


@dataclass(frozen=True)
class RLConfig:
    """One RL run; ``reward`` is the only switch between the four runs a comparison makes."""

    reward: str = "outcome"  # one of REWARDS
    n_updates: int = 30  # policy-gradient updates (each on a fresh batch of rollouts)
    problems_per_update: int = 16  # problems per batch
    group_size: int = 8  # G: solutions sampled per problem; advantages are normalised within them
    learning_rate: float = 1e-4  # AdamW, constant
    clip_eps: float = 0.2  # PPO ratio clipping: the update ignores ratios outside [1 - eps, 1 + eps]
    kl_coef: float = 0.04  # beta: weight of the KL penalty to the SFT reference (DeepSeekMath used 0.04)
    epochs_per_batch: int = 2  # gradient steps on each batch (GRPO's mu); the ratio moves from 1 after the first
    eval_every: int = 10  # held-out evaluation every this many updates (and before the first, after the last)
    # solutions per forward of the update, grouped by length: less padding, the same gradient (the
    # loss of each group weighted by its share of the batch, summed before the optimizer step)
    micro_batch_size: int = 48
    seed: int = 0  # seeds problem order, sampling and evaluation
    show_progress: bool = True

    def __post_init__(self) -> None:
        check_choice(self.reward, "reward", REWARDS)
        for name in ("n_updates", "problems_per_update", "epochs_per_batch", "eval_every", "micro_batch_size"):
            check_int(getattr(self, name), name, "[1, inf)")
        check_int(self.group_size, "group_size", "[2, inf)", "advantages compare the solutions of one group")
        check_real(self.learning_rate, "learning_rate", "(0, 1)", "e.g. 1e-4")
        check_real(self.clip_eps, "clip_eps", "(0, 1)", "e.g. 0.2")
        check_seed(self.seed)
        check_real(self.kl_coef, "kl_coef", "[0, inf)", "0 turns the KL penalty off")
        check_fields(self)


# -- advantages ----------------------------------------------------------------------------------
def group_advantages(rewards: Sequence[float]) -> list[float]:
    """Rewards of one group, normalised: ``(r - mean) / std`` (population std).

    All 0 when the std is below ``1e-6`` (an absolute floor, whatever the rewards' scale): equal
    rewards, or rewards that differ by less than about that, carry no signal. Rewards so large that
    their std overflows float64 are refused (ValueError).

    Examples
    --------
    >>> group_advantages([1.0, 0.0, 0.0, 1.0])
    [1.0, -1.0, -1.0, 1.0]
    >>> group_advantages([0.5, 0.5])
    [0.0, 0.0]
    """
    r = check_real_array(rewards, "rewards", fix="pass one finite reward per solution (float(is_correct), not a bool)")
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards has shape {r.shape}; pass a non-empty list of finite numbers, one per solution.")
    mean, std = _mean_and_std(r, "rewards")
    return [0.0] * r.size if std < _STD_FLOOR else ((r - mean) / std).tolist()


def process_advantages(step_rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per-step advantages of one group from dense step rewards (DeepSeekMath, section 4.1.3).

    Every step reward of the group is normalised by the mean and std of *all* of them, then each
    step's advantage is the sum of the normalised rewards of that step and every later step of its
    solution: a token is credited for what its step and the steps it led to earned.

    Parameters
    ----------
    step_rewards : sequence of sequence of float
        One list per solution of the group, one reward per step (at least one step each).

    Returns
    -------
    list of list of float
        The same shape; every token of step j takes advantage ``[i][j]``.

    Examples
    --------
    >>> adv = process_advantages([[1.0, 1.0], [1.0, 0.0]])  # mean 0.75, std 0.433: 1 -> 0.577, 0 -> -1.732
    >>> [[round(a, 4) for a in row] for row in adv]
    [[1.1547, 0.5774], [-1.1547, -1.7321]]
    """
    if not step_rewards or any(len(steps) == 0 for steps in step_rewards):
        raise ValueError("step_rewards must hold one non-empty list of step rewards per solution.")
    rows = [check_real_array(steps, f"step_rewards[{i}]", fix="score every step with a finite number").ravel()
            for i, steps in enumerate(step_rewards)]
    flat = np.concatenate(rows)
    mean, std = _mean_and_std(flat, "step_rewards")
    out = []
    for steps in rows:
        normalised = np.zeros(len(steps)) if std < _STD_FLOOR else (steps - mean) / std
        out.append(np.cumsum(normalised[::-1])[::-1].tolist())  # suffix sums: this step and every later one
    return out


def token_advantages(step_advantages: Sequence[float], step_ends: Sequence[int], n_tokens: int) -> list[float]:
    """Spread per-step advantages over a completion's tokens: token t takes the advantage of the
    first step that ends at or after t (tokens after the last step end take the last step's).

    Examples
    --------
    >>> token_advantages([0.5, -1.0], step_ends=[1, 3], n_tokens=5)
    [0.5, 0.5, -1.0, -1.0, -1.0]
    """
    if len(step_advantages) != len(step_ends) or not step_ends:
        raise ValueError(f"got {len(step_advantages)} step advantages for {len(step_ends)} step ends; pass one per step.")
    step_advantages = check_real_array(step_advantages, "step_advantages",
                                       fix="a non-finite advantage spreads to every token: compute them from finite rewards").tolist()
    step_ends = [check_int(end, f"step_ends[{i}]", "[0, inf)") for i, end in enumerate(step_ends)]
    n_tokens = check_int(n_tokens, "n_tokens", "[1, inf)")
    if any(later <= earlier for earlier, later in zip(step_ends[:-1], step_ends[1:], strict=True)) or n_tokens < step_ends[-1] + 1:
        raise ValueError(f"step_ends={list(step_ends)!r} must strictly increase (one end per step, each step at least "
                         f"one token) and lie within n_tokens={n_tokens} tokens.")
    out, j = [], 0
    for t in range(n_tokens):
        while j < len(step_ends) - 1 and step_ends[j] < t:
            j += 1
        out.append(float(step_advantages[j]))
    return out


# -- rewards ---------------------------------------------------------------------------------------
@dataclass
class Rewards:
    """Rewards of a batch: one per solution (``solution``) and, for ``prm``, one per step (``steps``)."""

    solution: list[float]
    steps: list[list[float]] | None = None


def compute_rewards(reward: str, completions: Sequence[Completion], verifiers: dict[str, Any]) -> Rewards:
    """The rewards of ``completions`` from the source ``reward`` (one of ``REWARDS``; ValueError
    otherwise); ``verifiers`` maps "prm"/"orm" to a ``Verifier`` (only the one the source needs is read)."""
    check_choice(reward, "reward", REWARDS)
    samples = [c.sample for c in completions]
    is_ok = np.array([bool(s.meta["is_well_formed"]) for s in samples])
    if reward == "outcome":
        return Rewards([float(is_correct_answer(s, f"completions[{i}].sample")) for i, s in enumerate(samples)])
    name = "orm" if reward == "orm" else "prm"
    if name not in verifiers:
        raise ValueError(f"reward={reward!r} needs verifiers[{name!r}], a Verifier on the course {name.upper()}.")
    scores = verifiers[name].score_steps(samples)
    if reward in ("orm", "prm_min"):
        # a solution longer than the reward model's window earns nothing, as a malformed one
        values = scores.solution_scores("last" if reward == "orm" else "min", truncated="lowest").numpy()
        return Rewards(np.where(is_ok, values, 0.0).tolist())
    steps = []
    for sample, row, ok in zip(samples, scores.per_sample(truncated="prefix"), is_ok, strict=True):
        row = row + [0.0] * (sample.n_steps - len(row))  # steps the encoder could not fit earn nothing
        if not ok:
            row[-1] = 0.0
        steps.append(row)
    return Rewards([min(row) for row in steps], steps)


def batch_advantages(reward: str, rewards: Rewards, completions: Sequence[Completion], group_size: int) -> list[list[float]]:
    """Per-token advantages of every completion; groups are consecutive runs of ``group_size`` (an int
    >= 1 that divides the batch; ``reward`` one of ``REWARDS``; ValueError otherwise)."""
    check_choice(reward, "reward", REWARDS)
    group_size = check_int(group_size, "group_size", "[1, inf)")
    if len(completions) % group_size:
        raise ValueError(f"{len(completions)} completions do not split into groups of {group_size}.")
    out: list[list[float]] = []
    for g in range(0, len(completions), group_size):
        group = completions[g : g + group_size]
        if reward == "prm":
            per_step = process_advantages(rewards.steps[g : g + group_size])
        else:
            per_step = [[a] * len(c.step_ends) for a, c in zip(group_advantages(rewards.solution[g : g + group_size]),
                                                                 group, strict=True)]
        for steps, c in zip(per_step, group, strict=True):
            out.append(token_advantages(steps, c.step_ends, len(c.completion_ids)) if c.step_ends
                       else [0.0] * len(c.completion_ids))
    return out


# -- the update ------------------------------------------------------------------------------------
def _batch_tensors(completions: Sequence[Completion], advantages: Sequence[Sequence[float]], pad_id: int,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded prompt + completion ids, and per-target masks/advantages aligned with logits[:, :-1]."""
    width = max(len(c.prompt_ids) + len(c.completion_ids) for c in completions)
    n = len(completions)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    target_mask = torch.zeros((n, width - 1))
    target_adv = torch.zeros((n, width - 1))
    for r, (c, adv) in enumerate(zip(completions, advantages, strict=True)):
        if len(adv) != len(c.completion_ids):
            raise ValueError(f"completion {r} has {len(c.completion_ids)} tokens but {len(adv)} advantages; pass one per token.")
        row = c.prompt_ids + c.completion_ids
        ids[r, : len(row)] = torch.tensor(row)
        attention[r, : len(row)] = 1
        start = len(c.prompt_ids) - 1  # logits at position t predict token t + 1
        target_mask[r, start : start + len(c.completion_ids)] = 1.0
        target_adv[r, start : start + len(c.completion_ids)] = torch.tensor(adv, dtype=torch.float32)
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "attention_mask": attention, "mask": target_mask, "advantages": target_adv}.items()}


def length_groups(completions: Sequence[Completion], size: int) -> list[list[int]]:
    """Indices of ``completions`` in groups of at most ``size``, shortest prompt + completion first, so
    that each group pads to a length near its own rows' (the update's micro-batches)."""
    order = sorted(range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].completion_ids))
    return [order[k : k + size] for k in range(0, len(order), size)]


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T - 1): log-probability of each next token under ``model``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()  # (B, T-1, V)
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's objective, negated (DeepSeekMath eq. 3): the clipped surrogate plus ``kl_coef`` times the
    unbiased KL estimate ``exp(ref - logp) - (ref - logp) - 1``, averaged over each solution's tokens,
    then over solutions. All inputs are (B, T); returns ``(loss, mean per-token KL)``. ``clip_eps`` is a
    number in (0, 1) and ``kl_coef`` a finite number >= 0 (ValueError otherwise: NaN would make the
    loss NaN, and True would read as 1).

    Examples
    --------
    >>> z = torch.zeros(1, 2)
    >>> loss, kl = grpo_loss(z, z, z, torch.ones(1, 2), torch.ones(1, 2), 0.2, 0.04)
    >>> float(loss), float(kl)  # ratio 1, advantage 1: loss -1; the reference equals the policy: KL 0
    (-1.0, 0.0)
    """
    clip_eps = check_real(clip_eps, "clip_eps", "(0, 1)", "e.g. 0.2")
    kl_coef = check_real(kl_coef, "kl_coef", "[0, inf)", "0 turns the KL penalty off")
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    log_ratio_ref = ref_logp - logp
    kl = (torch.expm1(log_ratio_ref) - log_ratio_ref).clamp(min=0)  # >= 0 in exact arithmetic; expm1 keeps it so near 0
    per_token = -(surrogate - kl_coef * kl)
    lengths = mask.sum(dim=1).clamp(min=1)
    loss = ((per_token * mask).sum(dim=1) / lengths).mean()
    mean_kl = ((kl * mask).sum(dim=1) / lengths).mean()
    return loss, mean_kl.detach()


# -- evaluation and the run --------------------------------------------------------------------------
def evaluate_policy(policy: LMPolicy, problems: Sequence[ArithmeticProblem], seed: int, n_samples: int = 1) -> dict[str, float]:
    """Held-out answer accuracy of one sample (averaged over ``n_samples`` per problem), greedy accuracy
    and the share of well-formed samples; also the per-problem arrays for paired comparisons.
    ``n_samples`` is an int >= 1 and ``seed`` an int in [0, 2**63) (ValueError otherwise)."""
    n_samples = check_int(n_samples, "n_samples", "[1, inf)")
    seed = check_seed(seed)
    sampled = policy.sample_many(problems, n_samples, seed)
    greedy = policy.sample_many(problems, 1, seed, greedy=True)
    per_problem = np.array([is_correct_answer(s) for s in sampled], dtype=float).reshape(len(problems), n_samples)
    return {"accuracy": float(per_problem.mean()), "greedy_accuracy": float(np.mean([is_correct_answer(s) for s in greedy])),
            "well_formed": float(np.mean([s.meta["is_well_formed"] for s in sampled])),
            "per_problem": per_problem.mean(axis=1).tolist(),
            "greedy_per_problem": [float(is_correct_answer(s)) for s in greedy]}


@dataclass
class RLResult:
    """What a run did: held-out points, per-update training log, cost."""

    evals: list[dict[str, Any]] = field(default_factory=list)  # {"update", "accuracy", "greedy_accuracy", ...}
    updates: list[dict[str, float]] = field(default_factory=list)  # per update: reward, train_accuracy, kl, ...
    seconds: float = 0.0  # rollouts, rewards and gradient steps; held-out evaluation excluded
    eval_seconds: float = 0.0
    generate_seconds: float = 0.0  # of ``seconds``, sampling the rollouts
    n_generated_tokens: int = 0
    generated_tokens_per_second: float = 0.0  # while sampling rollouts
    config: dict[str, Any] = field(default_factory=dict)


def train_rl(policy: LMPolicy, train_problems: Sequence[ArithmeticProblem], eval_problems: Sequence[ArithmeticProblem],
             config: RLConfig, verifiers: dict[str, Any] | None = None, eval_samples: int = 1,
             initial_eval: dict[str, Any] | None = None) -> RLResult:
    """Improve ``policy`` in place with ``config.reward``; its starting weights are the KL reference.

    Parameters
    ----------
    policy : LMPolicy
        The SFT policy; trained in place (copy it first to keep the original).
    train_problems : sequence of ArithmeticProblem
        Problems the updates sample from (shuffled by ``config.seed``, cycled).
    eval_problems : sequence of ArithmeticProblem
        Held-out problems, evaluated before the first update, every ``eval_every`` and after the last.
    config : RLConfig
    verifiers : dict, optional
        ``{"prm": Verifier, "orm": Verifier}``; the rewards ``prm``, ``prm_min`` and ``orm`` need theirs.
    eval_samples : int, default 1
        Samples per held-out problem for the one-sample accuracy (more: a less noisy estimate).
    initial_eval : dict, optional
        ``evaluate_policy`` of this policy on ``eval_problems`` with this seed, when the caller has it
        (runs from one SFT policy share it); evaluated here otherwise.

    Returns
    -------
    RLResult
        ``evals`` rows: ``update``, ``accuracy``, ``greedy_accuracy``, ``well_formed``, ``reward``
        (mean training reward of the updates since the last row), ``kl`` (mean per-token KL to the
        reference, likewise), ``train_accuracy``; plus the per-problem arrays.

    Raises
    ------
    ValueError
        Before any work: for a config that is not an ``RLConfig``, ``eval_samples`` that is not an
        int >= 1, too few train problems, no eval problems, or no verifier for the reward.
    FloatingPointError
        When the loss turns NaN or infinite.
    """
    from tqdm.auto import tqdm

    if not isinstance(config, RLConfig):
        raise ValueError(f"config is a {type(config).__name__}; pass an RLConfig.")
    eval_samples = check_int(eval_samples, "eval_samples", "[1, inf)", "pass e.g. eval_samples=1")
    if len(train_problems) < config.problems_per_update:
        raise ValueError(f"train_problems has {len(train_problems)} problems but problems_per_update="
                         f"{config.problems_per_update}; pass more problems or lower it.")
    if not eval_problems:
        raise ValueError("eval_problems is empty; pass held-out problems to measure accuracy on.")
    verifiers = verifiers or {}
    needed = {"outcome": None, "orm": "orm"}.get(config.reward, "prm")
    if needed is not None and needed not in verifiers:  # before the reference copy and the first evaluation
        raise ValueError(f"reward={config.reward!r} needs verifiers[{needed!r}], a Verifier on the course "
                         f"{needed.upper()}; pass verifiers={{{needed!r}: Verifier(model)}}.")
    reference = copy.deepcopy(policy.model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    model = policy.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    order = list(range(len(train_problems)))
    random.Random(config.seed).shuffle(order)
    result = RLResult(config=asdict(config))
    window: list[dict[str, float]] = []

    def evaluate(update: int) -> None:
        paused = time.perf_counter()
        row = {"update": update, **evaluate_policy(policy, eval_problems, seed=config.seed * 7919 + 1, n_samples=eval_samples)}
        if window:
            row |= {k: float(np.mean([w[k] for w in window])) for k in ("reward", "kl", "train_accuracy")}
            window.clear()
        result.evals.append(row)
        result.eval_seconds += time.perf_counter() - paused

    if initial_eval is None:
        evaluate(0)
    else:
        needed = {"accuracy", "greedy_accuracy", "well_formed", "per_problem", "greedy_per_problem"}
        if not isinstance(initial_eval, dict) or not needed <= set(initial_eval):
            raise ValueError(f"initial_eval must be evaluate_policy's dict (keys {sorted(needed)}); pass None to "
                             "evaluate the starting policy here.")
        result.evals.append({"update": 0, **{k: v for k, v in initial_eval.items() if k != "update"}})
    start, eval_before = time.perf_counter(), result.eval_seconds
    bar = tqdm(range(config.n_updates), desc=f"RL ({config.reward})", disable=not config.show_progress, leave=False)
    for update in bar:
        picks = [order[(update * config.problems_per_update + i) % len(order)] for i in range(config.problems_per_update)]
        problems = [train_problems[i] for i in picks]
        generating = time.perf_counter()
        completions = policy.complete(problems, config.group_size, seed=config.seed * 1_000_003 + update)
        result.generate_seconds += time.perf_counter() - generating
        rewards = compute_rewards(config.reward, completions, verifiers)
        advantages = batch_advantages(config.reward, rewards, completions, config.group_size)
        batches = [_batch_tensors([completions[i] for i in group], [advantages[i] for i in group], policy.pad_id, policy.device)
                   for group in length_groups(completions, config.micro_batch_size)]
        with torch.no_grad():  # the sampling policy's log-probs (in eval mode as it sampled) and the reference's
            # one epoch: the first (only) forward is the sampling policy's own, so its detached log-probs
            # serve as old_logp (ratio 1, as TRL's GRPO with num_iterations=1) and a forward is saved
            old_logps = [token_logprobs(model, b["input_ids"], b["attention_mask"]) if config.epochs_per_batch > 1
                         else None for b in batches]
            ref_logps = [token_logprobs(reference, b["input_ids"], b["attention_mask"]) for b in batches]
        model.train()
        for _ in range(config.epochs_per_batch):
            kl = 0.0
            for b, old_logp, ref_logp in zip(batches, old_logps, ref_logps, strict=True):
                share = len(b["input_ids"]) / len(completions)  # the batch loss is the mean over solutions
                logp = token_logprobs(model, b["input_ids"], b["attention_mask"])
                loss, group_kl = grpo_loss(logp, logp.detach() if old_logp is None else old_logp, ref_logp,
                                           b["advantages"], b["mask"], config.clip_eps, config.kl_coef)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the RL loss became {float(loss)} at update {update + 1}; lower learning_rate.")
                (loss * share).backward()
                kl += float(group_kl) * share
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        model.eval()
        n_tokens = sum(len(c.completion_ids) for c in completions)
        result.n_generated_tokens += n_tokens
        stats = {"update": update + 1, "reward": float(np.mean(rewards.solution)), "kl": float(kl),
                 "train_accuracy": float(np.mean([is_correct_answer(c.sample) for c in completions]))}
        result.updates.append(stats)
        window.append(stats)
        bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.4f}")
        if (update + 1) % config.eval_every == 0 or update + 1 == config.n_updates:
            evaluate(update + 1)
    bar.close()
    result.seconds = time.perf_counter() - start - (result.eval_seconds - eval_before)
    result.generated_tokens_per_second = result.n_generated_tokens / max(result.generate_seconds, 1e-9)
    return result
