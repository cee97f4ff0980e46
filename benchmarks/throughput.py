"""Throughput of the course's hot loops, as ratios measured in one run (``make bench``).

Scoring: the Verifier on encoded samples against a bare backbone forward over the same
length-sorted batches already on the device (the issue's target on a GPU: a ratio >= 0.90), and
end to end from text, tokenizer included. Training: tokens per second of the PRM loop (target on
the gpu profile: >= 1.0M tokens/s). No trained model is needed: throughput does not depend on the
weights. Votes over MATH-style answers: seconds to group 200 problems x 64 candidates by
math-verify equivalence (the issue's target: seconds, not minutes), cold cache. Sampling: generated
tokens per second of the LM policy's two decoders (``SamplingConfig.decoder``: the cached decoder
against transformers' ``generate``) on the same prompts, sampled and greedy; this one needs the SFT
policy, which makes the solution lengths realistic (from the cache; trained there first when absent,
about 6 minutes on a CPU). The RL update: seconds of one GRPO update's forwards and backward on 192
sampled solutions in one padded batch against length-grouped micro-batches (``RLConfig.micro_batch_size``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import torch

from prm_core.evaluation import scoring_throughput, throughput_batch_size
from prm_core.experiments import load_profile, make_datasets, new_model
from prm_core.training import train
from prm_core.verification import default_batch_size


def answer_grouping_seconds(n_problems: int = 200, n_candidates: int = 64, seed: int = 0) -> dict[str, float]:
    """Time ``answers.group_answers`` on MATH-style spellings of a few values per problem."""
    import time

    import numpy as np

    try:
        from prm_core.answers import _parse, group_answers
    except ImportError as err:  # math-verify absent (e.g. the GPU runner): say so, measure the rest
        return {"skipped": str(err)}
    _parse.cache_clear()
    rng = np.random.default_rng(seed)
    forms = ["{n}", "{n}.0", "\\frac{{{n}}}{{{d}}}", "{n},\\!000", "\\boxed{{{n}}}", "${n}$"]
    groups = []
    for _ in range(n_problems):
        values = rng.integers(1, 400, size=6)
        groups.append([str(rng.choice(forms)).format(n=int(rng.choice(values)), d=int(rng.integers(1, 9)))
                       for _ in range(n_candidates)])
    start = time.perf_counter()
    n_groups = sum(len(set(group_answers(g))) for g in groups)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "answers": n_problems * n_candidates, "answers_per_second": n_problems * n_candidates / seconds,
            "mean_groups_per_problem": n_groups / n_problems}


def scoring_batch_ratio(model, samples, batch_sizes: tuple[int, int]) -> dict[str, object]:
    """Solutions per second of ``Verifier.score_steps`` on the same samples at two batch sizes (the
    device's default first, then the old default of 256): why the default is what it is."""
    import time

    from prm_core.verification import Verifier

    rates = {}
    for batch_size in batch_sizes:
        verifier = Verifier(model, batch_size=batch_size)
        verifier.score_steps(samples[:batch_size])  # warm-up
        start = time.perf_counter()
        verifier.score_steps(samples)
        rates[str(batch_size)] = len(samples) / (time.perf_counter() - start)
    default, other = (str(b) for b in batch_sizes)
    return {"solutions_per_second": rates, f"batch_{default}_over_batch_{other}": rates[default] / rates[other]}


def sampling_ratio(n_prompts: int = 512, profile: str = "cpu") -> dict[str, object]:
    """Generated tokens per second of the SFT policy with each decoder (same prompts, one sample
    each, the profile's batch size), and cached over generate, sampled and greedy."""
    import time

    from prm_core.lm_policy import LMPolicy
    from prm_core.policy_runs import eval_problems, load_policy_runs, sft_policy

    config, runs = load_profile(profile), load_policy_runs(profile)
    policy, _ = sft_policy(config, runs)
    prompts = [policy.prompt_ids(p) for p in eval_problems(config, runs)][:n_prompts]
    out: dict[str, object] = {"prompts": len(prompts), "batch_size": runs.sampling.batch_size}
    for mode, greedy in (("sampled", False), ("greedy", True)):
        rates = {}
        for decoder in ("generate", "cached"):
            decoding = LMPolicy(policy.model, policy.tokenizer, replace(runs.sampling, decoder=decoder), policy.device)
            decoding.generate_ids(prompts[:16], seed=0, greedy=greedy)  # warm-up
            start = time.perf_counter()
            n_tokens = sum(map(len, decoding.generate_ids(prompts, seed=0, greedy=greedy)))
            rates[decoder] = n_tokens / (time.perf_counter() - start)
        out[mode] = {"tokens_per_second": rates, "cached_over_generate": rates["cached"] / rates["generate"]}
    return out


def rl_update_ratio(profile: str = "cpu", n_problems: int = 24, repeats: int = 3) -> dict[str, object]:
    """Seconds of the update's reference forward, policy forward and backward on one batch of the SFT
    policy's solutions (``n_problems`` x the profile's group size), whole against micro-batched."""
    import time

    from prm_core.policy_runs import load_policy_runs, rl_problems, sft_policy
    from prm_core.rl import _batch_tensors, length_groups, token_logprobs

    config, runs = load_profile(profile), load_policy_runs(profile)
    policy, _ = sft_policy(config, runs)
    completions = policy.complete(rl_problems(config, runs)[:n_problems], runs.rl.group_size, seed=0)
    advantages = [[1.0] * len(c.completion_ids) for c in completions]
    model = policy.model.train()

    def update_seconds(groups: list[list[int]]) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for group in groups:
                batch = _batch_tensors([completions[i] for i in group], [advantages[i] for i in group],
                                       policy.pad_id, policy.device)
                with torch.no_grad():
                    token_logprobs(model, batch["input_ids"], batch["attention_mask"])
                token_logprobs(model, batch["input_ids"], batch["attention_mask"]).sum().backward()
            model.zero_grad(set_to_none=True)
            best = min(best, time.perf_counter() - start)
        return best

    whole = update_seconds([list(range(len(completions)))])
    grouped = update_seconds(length_groups(completions, runs.rl.micro_batch_size))
    model.eval()
    return {"solutions": len(completions), "micro_batch_size": runs.rl.micro_batch_size,
            "seconds": {"one_batch": whole, "micro_batches": grouped}, "one_batch_over_micro_batches": whole / grouped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--scoring-batch", type=int, default=None, help="default: 32 on CPU, 4096 on GPU")
    parser.add_argument("--train-steps", type=int, default=30)
    args = parser.parse_args(argv)
    config = load_profile(args.profile)
    on_gpu = torch.cuda.is_available()
    batch = args.scoring_batch or throughput_batch_size("cuda" if on_gpu else "cpu")
    data = make_datasets(config)
    model = new_model(config.backbone, config, "prm").to("cuda" if on_gpu else "cpu")
    scoring = scoring_throughput(model, (data.bon * 2)[: max(4 * batch, 1024)], batch)
    device = "cuda" if on_gpu else "cpu"
    by_batch = scoring_batch_ratio(model, data.bon[:1024], (default_batch_size(device), 256))
    result = train(model, data.train, config=replace(config.prm, max_steps=args.train_steps, show_progress=False))
    report = {"profile": args.profile, "device": torch.cuda.get_device_name() if on_gpu else "cpu",
              "scoring": scoring, "scoring_by_batch_size": by_batch, "training_tokens_per_second": result.tokens_per_second,
              "training_batch_size": config.prm.batch_size, "answer_grouping": answer_grouping_seconds(),
              "sampling": sampling_ratio(profile=args.profile), "rl_update": rl_update_ratio(profile=args.profile)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
