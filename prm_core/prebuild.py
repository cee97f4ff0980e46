"""Train every cached model the notebooks use, in parallel workers: ``python -m prm_core.prebuild``.

Why: on an empty cache the notebooks spend most of their time training small models one after
another in one process with two threads. The course's models are small enough that a second thread
adds little (about 1.2x on generation, 1.4x on training, measured on a 2-core runner), so two
single-threaded workers get about 1.4x more done. Each task calls the cached builder a notebook
calls (same config, same cache key), so what it builds is what the notebook would have built: the
course's training and sampling give the same bits with one thread as with two
(``tests/test_prebuild.py`` checks it). An entry another worker is building is waited for
(``files.entry_lock``), never built twice. Nothing here is needed: a notebook builds whatever is
missing itself; this only does it sooner.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

KINDS = ("standard", "policy", "rl", "labels", "sweep", "ablation")
MC_TRAIN_K = 8  # notebook 08's TRAIN_K: Monte Carlo rollouts per prefix for its training labels


@dataclass(frozen=True)
class Task:
    """One cached build: ``kind`` names the builder, ``args`` its arguments (see ``run_task``)."""

    kind: str
    args: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return " ".join([self.kind, *map(str, self.args)])


def tasks(profile: str = "cpu") -> list[Task]:
    """The builds behind the notebooks' cold cells, in the order a worker should start them.

    The standard PRM and ORM come first (nearly everything needs them), then the LM policy (it
    waits for the pretrained backbone), then the RL runs, the longest tasks (those that need no reward
    model first), and last the short sweep models, which fill the gaps while the last RL runs finish.
    Raises ``ValueError`` for an unknown profile.
    """
    from prm_core.experiments import load_profile
    from prm_core.labeling import LABEL_SOURCES
    from prm_core.policy_runs import load_policy_runs
    from prm_core.sweeps import ABLATIONS, load_sweep

    load_profile(profile)  # the profile's errors first
    runs, sweep = load_policy_runs(profile), load_sweep(profile)
    out = [Task("standard"), Task("policy")]
    out += [Task("rl", ("outcome", seed)) for seed in runs.seeds if "outcome" in runs.rewards]
    out += [Task("rl", (reward, seed)) for reward in runs.rewards if reward != "outcome" for seed in runs.seeds]
    out += [Task("labels", (source,)) for source in LABEL_SOURCES]
    out += [Task("sweep", (kind, n, seed)) for n in sweep.train_sizes for seed in sweep.seeds for kind in ("prm", "orm")]
    out += [Task("ablation", (name,)) for name in ABLATIONS]
    return out


@functools.cache
def _datasets(profile: str) -> Any:
    """The profile's datasets, made once per worker and only for the sweep tasks (about 20 s on 2 cores;
    ``standard_run`` and the policy builders make what they need themselves)."""
    from prm_core.experiments import load_profile, make_datasets

    return make_datasets(load_profile(profile))


def run_task(task: Task, profile: str = "cpu", cache_dir: str | None = None) -> float:
    """Build (or load) what ``task`` names with the profile's defaults; the seconds it took."""
    from prm_core import experiments, policy_runs, sweeps

    if task.kind not in KINDS:
        raise ValueError(f"task kind {task.kind!r} is not one of {', '.join(KINDS)}.")
    start = time.perf_counter()
    config = experiments.load_profile(profile)
    if task.kind == "standard":
        experiments.standard_run(config, profile, cache_dir)
    elif task.kind in ("policy", "rl"):
        runs = policy_runs.load_policy_runs(profile)
        if task.kind == "rl":
            policy_runs.rl_run(config, runs, *task.args, cache_dir=cache_dir)
        else:
            for seed in runs.seeds:
                policy_runs.policy_profile(config, runs, seed, cache_dir)
            policy_runs.on_policy_models(config, runs, cache_dir)
    else:  # the sweep models: "labels", "sweep", "ablation"
        sweep, data = sweeps.load_sweep(profile), _datasets(profile)
        size, seed = sweep.ablation_train_size, sweep.ablation_seed
        if task.kind == "labels":
            sweeps.sweep_scores(config, sweep, "prm", data, size, seed, cache_dir=cache_dir, labels=task.args[0],
                                n_rollouts=MC_TRAIN_K)
        elif task.kind == "sweep":
            sweeps.sweep_scores(config, sweep, task.args[0], data, *task.args[1:], cache_dir=cache_dir)
        else:
            sweeps.sweep_scores(config, sweep, "prm", data, size, seed, sweeps.ABLATIONS[task.args[0]][2], cache_dir)
    return time.perf_counter() - start


def _worker_setup() -> None:
    """One torch thread, and no progress bars: two workers' bars would interleave on one terminal
    (the main process shows one bar, a step per finished task)."""
    import torch
    import tqdm.std

    torch.set_num_threads(1)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    shown = tqdm.std.tqdm.__init__

    def hidden(self: Any, *args: Any, **kwargs: Any) -> None:
        shown(self, *args, **{**kwargs, "disable": True})

    tqdm.std.tqdm.__init__ = hidden  # every tqdm class (auto, notebook) initialises through it


def prebuild(profile: str = "cpu", jobs: int = 2, cache_dir: str | None = None, show_progress: bool = True,
             only: Sequence[Task] | None = None) -> dict[str, float]:
    """Run ``tasks(profile)`` (or ``only``) in ``jobs`` single-threaded worker processes.

    Returns
    -------
    dict
        str(task) -> seconds it took in its worker (a few ms for an entry already cached).

    Raises
    ------
    ValueError
        For ``jobs`` that is not an int >= 1, or an unknown profile.
    Exception
        The first task's error, with the task named in a note; tasks not yet started are dropped.
    """
    from tqdm.auto import tqdm

    from prm_core.backbones import cache_root
    from prm_core.checks import check_int

    jobs = check_int(jobs, "jobs", "[1, inf)", "pass e.g. jobs=2 (one per core)")
    root = cache_root(cache_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"the cache {root} is a file; point PRM_COURSE_CACHE (or cache_dir) at a folder.")
    todo = list(only) if only is not None else tasks(profile)
    if not todo:
        return {}
    jobs = min(jobs, len(todo))
    return _run_all(todo, profile, jobs, cache_dir, tqdm(total=len(todo), desc=f"prebuild ({jobs} workers)",
                                                          disable=not show_progress))


def _run_all(todo: list[Task], profile: str, jobs: int, cache_dir: str | None, bar: Any) -> dict[str, float]:
    seconds: dict[str, float] = {}
    with bar, ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_setup) as pool:
        futures = {pool.submit(run_task, task, profile, cache_dir): task for task in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures[future]
                err = future.exception()
                if err is not None:  # the tasks not started are dropped; the running ones finish first
                    pool.shutdown(wait=False, cancel_futures=True)
                    if hasattr(err, "add_note"):  # Python 3.11+
                        err.add_note(f"while prebuilding: {task} (a notebook that needs it raises the same)")
                    raise err
                seconds[str(task)] = future.result()
                bar.update()
                bar.set_postfix_str(f"{task}: {seconds[str(task)]:.0f} s")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prm_core.prebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", help="parameter profile: a file params/<profile>.yaml")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each (default 2)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: pass 1 or more worker processes, e.g. --jobs 2 (one per core)")
    start = time.perf_counter()
    seconds = prebuild(args.profile, args.jobs)
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    print(f"prebuilt {len(seconds)} tasks in {time.perf_counter() - start:.0f} s with {args.jobs} workers; "
          "slowest: " + ", ".join(f"{t} {s:.0f} s" for t, s in slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
