"""Run by test_training under torchrun: train a tiny PRM for a few steps; each process writes its weights' hash."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from prm_core.backbones import CourseTinyConfig, load_backbone
from prm_core.encoding import StepEncoder
from prm_core.model import ProcessRewardModel
from prm_core.tasks.arithmetic import make_problems
from prm_core.tasks.arithmetic_policy import NoisyPolicy
from prm_core.training import TrainConfig, train


def digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()[:16]


def main() -> None:
    cache_dir, profile, out_dir = sys.argv[1], CourseTinyConfig(**json.loads(sys.argv[2])), sys.argv[3]
    backbone, tokenizer = load_backbone("course-tiny", profile=profile, cache_dir=cache_dir)
    torch.manual_seed(0)
    model = ProcessRewardModel(backbone, StepEncoder(tokenizer, model=backbone))
    before = digest(model)
    samples = NoisyPolicy().sample_many(make_problems(16, seed=0), n_samples=4, seed=0)
    result = train(model, samples, config=TrainConfig(max_steps=4, batch_size=8, show_progress=False))
    row = {"processes": result.n_processes, "device": result.device, "before": before, "after": digest(model)}
    (Path(out_dir) / f"rank-{os.environ['RANK']}.json").write_text(json.dumps(row))  # one file each: no interleaving
    if torch.distributed.is_initialized():  # leave together: a rank that exits alone can abort the other
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
