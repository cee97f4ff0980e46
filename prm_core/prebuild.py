"""Train every cached model the notebooks use, in parallel workers: ``python -m prm_core.prebuild``.

Why: on an empty cache the notebooks spend most of their time training small models one after
another in one process with two threads. The course's models are small enough that a second thread
adds little (about 1.2x on generation, 1.4x on training, measured on a 2-core runner), so two
single-threaded workers get about 1.4x more done. Each task calls the cached builder a notebook
calls (same config, same cache key), so what a worker builds is what the notebook would have built
with one thread (``tests/test_prebuild.py`` checks it); the backbone, built alone first, is what a
notebook builds with as many threads as the prebuild has workers (two on 2 cores, torch's default
there). With other threads, or on another CPU, the same training gives other weights: another
draw of the same procedure, which the notebooks' claims must survive (``make test-robust`` trains
such a draw). An entry another worker is building is waited for (``files.entry_lock``), never built
twice. Nothing here is needed: a notebook builds whatever is missing itself; this only does it sooner.

It prints where the time went: the backbone, trained first and alone with every worker's threads
(everything else starts from it), each worker's tasks with their own work and their wait for
another worker's entry, and the critical path; ``build/prebuild-times.json`` keeps the same.
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

KINDS = ("backbone", "standard", "train_seed", "policy", "rl", "labels", "sweep", "ablation")
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

    The pretrained backbone comes first and alone (every other task starts from it, so it gets
    every worker's threads: nothing else could run meanwhile), then the standard PRM and ORM
    (nearly everything needs them), then the LM policy, then the standard models of the other
    training seeds (``standard.train_seeds``; the RL runs of the later seeds use them as rewards),
    then the RL runs, the longest tasks (those that need no reward model first), and last the
    short sweep models, which fill the gaps while the last RL runs finish.
    Raises ``ValueError`` for an unknown profile.
    """
    from prm_core.experiments import load_profile, load_train_seeds
    from prm_core.labeling import LABEL_SOURCES
    from prm_core.policy_runs import load_policy_runs
    from prm_core.sweeps import ABLATIONS, load_sweep

    config = load_profile(profile)  # the profile's errors first
    runs, sweep, train_seeds = load_policy_runs(profile), load_sweep(profile), load_train_seeds(profile)
    untrained = sorted(set(runs.reward_train_seeds) - set(train_seeds))
    if untrained:  # an RL task would train those reward models itself, and the results would leave them out
        raise ValueError(f"params/{profile}.yaml: rl.reward_train_seeds names train seeds {untrained} that "
                         f"standard.train_seeds={list(train_seeds)} lacks; add them there or pick among those.")
    out = [Task("backbone"), Task("standard"), Task("policy")]
    out += [Task("train_seed", (kind, seed)) for seed in train_seeds if seed != config.seed
            for kind in ("prm", "orm")]
    out += [Task("rl", ("outcome", seed)) for seed in runs.seeds if "outcome" in runs.rewards]
    out += [Task("rl", (reward, seed)) for reward in runs.rewards if reward != "outcome" for seed in runs.seeds]
    out += [Task("labels", (source,)) for source in LABEL_SOURCES]
    out += [Task("sweep", (kind, n, seed)) for n in sweep.train_sizes for seed in sweep.seeds for kind in ("prm", "orm")]
    out += [Task("ablation", (name, seed)) for name in ABLATIONS for seed in sweep.ablation_seeds]
    # the unchanged side is a sweep model only at a sweep size and seed; build the others here
    covered = set(sweep.seeds) if sweep.ablation_train_size in sweep.train_sizes else set()
    out += [Task("ablation", ("none", seed)) for seed in sweep.ablation_seeds if seed not in covered]
    return out


@dataclass(frozen=True)
class TaskTime:
    """When a task ran: ``start`` and ``end`` on the machine's monotonic clock (seconds), the
    worker's process id, and ``waited``, the part spent waiting for an entry another worker built."""

    worker: int
    start: float
    end: float
    waited: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


@functools.cache
def _datasets(profile: str) -> Any:
    """The profile's datasets, made once per worker and only for the seed and sweep tasks (about 10 s;
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
    if task.kind == "backbone":
        experiments.pretrained_backbone(config, cache_dir)
    elif task.kind == "standard":
        experiments.standard_run(config, profile, cache_dir)
    elif task.kind == "train_seed":  # the standard model of another training seed, and its scores
        experiments.model_scores(config, task.args[0], _datasets(profile), cache_dir, train_seed=task.args[1])
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
        size = sweep.ablation_train_size
        if task.kind == "labels":  # notebook 08's label sources: the first ablation seed
            sweeps.sweep_scores(config, sweep, "prm", data, size, sweep.ablation_seeds[0], cache_dir=cache_dir,
                                labels=task.args[0], n_rollouts=MC_TRAIN_K)
        elif task.kind == "sweep":
            sweeps.sweep_scores(config, sweep, task.args[0], data, *task.args[1:], cache_dir=cache_dir)
        else:
            name, seed = task.args
            change = {} if name == "none" else sweeps.ABLATIONS[name][2]
            sweeps.sweep_scores(config, sweep, "prm", data, size, seed, change, cache_dir)
    return time.perf_counter() - start


def _timed_task(task: Task, profile: str, cache_dir: str | None) -> TaskTime:
    """``run_task`` in a worker, timed on the clock every process shares."""
    from prm_core.files import lock_wait_seconds

    waited, start = lock_wait_seconds(), time.monotonic()
    run_task(task, profile, cache_dir)
    return TaskTime(os.getpid(), start, time.monotonic(), lock_wait_seconds() - waited)


def _worker_setup(threads: int = 1) -> None:
    """One torch thread (or ``threads``), and no progress bars: two workers' bars would interleave on
    one terminal (the main process shows one bar, a step per finished task)."""
    import torch
    import tqdm.std

    torch.set_num_threads(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    shown = tqdm.std.tqdm.__init__

    def hidden(self: Any, *args: Any, **kwargs: Any) -> None:
        shown(self, *args, **{**kwargs, "disable": True})

    tqdm.std.tqdm.__init__ = hidden  # every tqdm class (auto, notebook) initialises through it


def prebuild(profile: str = "cpu", jobs: int = 2, cache_dir: str | None = None, show_progress: bool = True,
             only: Sequence[Task] | None = None, threads: int = 1,
             backbone_threads: int | None = None) -> dict[str, TaskTime]:
    """Run ``tasks(profile)`` (or ``only``) in ``jobs`` worker processes of ``threads`` torch threads
    each (1: what a notebook would build with one thread; 2 draws other weights on some CPUs). The
    backbone trains first, alone, with ``backbone_threads`` (default: every worker's threads, at
    most the CPUs).

    Returns
    -------
    dict
        str(task) -> its ``TaskTime`` in its worker (a few ms for an entry already cached);
        ``timing_report`` turns it into lines.

    Raises
    ------
    ValueError
        For ``jobs``, ``threads`` or ``backbone_threads`` that is not an int >= 1, or an unknown profile.
    Exception
        The first task's error, with the task named in a note; tasks not yet started are dropped.
    """
    from tqdm.auto import tqdm

    from prm_core.backbones import cache_root
    from prm_core.checks import check_int

    jobs = check_int(jobs, "jobs", "[1, inf)", "pass e.g. jobs=2 (one per core)")
    threads = check_int(threads, "threads", "[1, inf)", "pass e.g. threads=1 (torch threads per worker)")
    if backbone_threads is None:  # never more threads than CPUs: on 2 cores, 2 workers x 2 threads would oversubscribe
        backbone_threads = min(jobs * threads, os.cpu_count() or 1)
    backbone_threads = check_int(backbone_threads, "backbone_threads", "[1, inf)", "pass e.g. backbone_threads=2, "
                                 "or None for every worker's threads")
    root = cache_root(cache_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"the cache {root} is a file; point PRM_COURSE_CACHE (or cache_dir) at a folder.")
    todo = list(only) if only is not None else tasks(profile)
    if not todo:
        return {}
    return _run_all(todo, profile, jobs, threads, cache_dir,
                    tqdm(total=len(todo), desc=f"prebuild ({jobs} workers)", disable=not show_progress),
                    backbone_threads)


def _run_all(todo: list[Task], profile: str, jobs: int, threads: int, cache_dir: str | None,
             bar: Any, backbone_threads: int) -> dict[str, TaskTime]:
    """The backbone first, in one worker of ``backbone_threads`` threads (the other workers would only
    wait for it), then the rest in ``jobs`` workers of ``threads`` threads."""
    first = [t for t in todo if t.kind == "backbone"]
    rest = [t for t in todo if t.kind != "backbone"]
    times: dict[str, TaskTime] = {}
    with bar:
        if first:
            times |= _run_pool(first, profile, 1, backbone_threads, cache_dir, bar)
        if rest:
            times |= _run_pool(rest, profile, min(jobs, len(rest)), threads, cache_dir, bar)
    return times


def _run_pool(todo: list[Task], profile: str, jobs: int, threads: int, cache_dir: str | None,
              bar: Any) -> dict[str, TaskTime]:
    times: dict[str, TaskTime] = {}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_setup,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_timed_task, task, profile, cache_dir): task for task in todo}
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
                times[str(task)] = future.result()
                bar.update()
                bar.set_postfix_str(f"{task}: {times[str(task)].seconds:.0f} s")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prm_core.prebuild", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", help="parameter profile: a file params/<profile>.yaml")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--backbone-threads", type=int, default=None,
                        help="torch threads of the backbone, trained first and alone (default: jobs x threads, "
                             "at most the CPUs)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated task kinds to build (default all: {','.join(KINDS)})")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"--kinds {args.kinds!r}: name task kinds from {', '.join(KINDS)}, e.g. --kinds standard,sweep")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: pass 1 or more worker processes, e.g. --jobs 2 (one per core)")
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: pass 1 or more torch threads per worker, e.g. --threads 1")
    if args.backbone_threads is not None and args.backbone_threads < 1:
        parser.error(f"--backbone-threads {args.backbone_threads}: pass 1 or more, or leave it out for jobs x threads")
    start = time.monotonic()
    # the backbone first whatever --kinds names: inside a one-thread worker it would be another draw
    only = None if set(kinds) == set(KINDS) else [t for t in tasks(args.profile) if t.kind in {"backbone", *kinds}]
    times = prebuild(args.profile, args.jobs, threads=args.threads, only=only, backbone_threads=args.backbone_threads)
    end = time.monotonic()
    print(timing_report(times, start, end))
    write_times(times, start, end, args)
    return 0


def write_times(times: dict[str, TaskTime], start: float, end: float, args: argparse.Namespace,
                path: str = "build/prebuild-times.json") -> None:
    """The run's times as JSON (seconds from the start): each task's worker, start, end and wait,
    the options, the cache and CPU kernels it trained into, and the report's lines, so two runs can
    be compared without reading a log. A file that cannot be written is warned about, not raised."""
    from pathlib import Path

    from prm_core.backbones import cache_root
    from prm_core.files import write_json

    record = {
        "profile": args.profile, "jobs": args.jobs, "threads": args.threads, "seconds": end - start,
        "cache": str(cache_root()), "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "native"),
        "tasks": {name: {"worker": t.worker, "start": t.start - start, "end": t.end - start, "waited": t.waited}
                  for name, t in times.items()},
        "report": timing_report(times, start, end).splitlines()}
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(path), record, indent=2)
    except OSError as err:  # the models are built; a times file that cannot be written is no failure
        print(f"prebuild: could not write {path} ({err}); the times are printed above", file=sys.stderr)


def timing_report(times: dict[str, TaskTime], start: float, end: float, min_seconds: float = 1.0) -> str:
    """Where a prebuild's time went, as lines: the total, the backbone that ran first and alone (with
    every worker's threads), then each worker's tasks in the order it ran them (own work, and the wait
    for another worker's entry), then the critical path: the backbone, then the tasks of the worker
    that finished last. Tasks under ``min_seconds`` (entries already cached) are counted, not listed.

    Examples
    --------
    >>> print(timing_report({"backbone": TaskTime(9, 0.0, 10.0), "standard": TaskTime(1, 10.0, 40.0),
    ...                      "policy": TaskTime(2, 10.0, 50.0, waited=25.0)}, 0.0, 51.0))
    prebuilt 3 tasks in 51 s with 2 workers: 55 s of work, 25 s waiting for another worker's entry, 12 s idle
      first, alone with every worker's threads: backbone 10 s
      worker 1: standard 30 s
      worker 2: policy 15 s (+25 s waiting)
    critical path (worker 2, done at 50 s): backbone 10 s -> policy 40 s
    """
    if not times:
        return "prebuilt nothing: no task"
    first: list[tuple[str, TaskTime]] = []  # the backbone, run alone before the workers
    workers: dict[int, list[tuple[str, TaskTime]]] = {}
    for name, t in sorted(times.items(), key=lambda kv: kv[1].start):
        if name.split()[0] == "backbone":
            first.append((name, t))
        else:
            workers.setdefault(t.worker, []).append((name, t))
    pool_start = max([t.end for _, t in first], default=start)
    waited = sum(t.waited for t in times.values())
    busy = sum(t.seconds for t in times.values())
    alone = sum(t.seconds for _, t in first)
    idle = max(len(workers), 1) * (end - pool_start) - (busy - alone)
    lines = [f"prebuilt {len(times)} tasks in {end - start:.0f} s with {max(len(workers), 1)} workers: "
             f"{busy - waited:.0f} s of work, {waited:.0f} s waiting for another worker's entry, {idle:.0f} s idle"]

    def shown(runs: list[tuple[str, TaskTime]], total: bool = False) -> str:
        parts = [f"{name} {t.seconds if total else t.seconds - t.waited:.0f} s"
                 + (f" (+{t.waited:.0f} s waiting)" if t.waited >= min_seconds and not total else "")
                 for name, t in runs if t.seconds >= min_seconds]
        quick = sum(t.seconds < min_seconds for _, t in runs)
        return ", ".join(parts + ([f"{quick} cached"] if quick else [])) or "nothing"

    if first:
        lines.append(f"  first, alone with every worker's threads: {shown(first)}")
    for number, runs in enumerate(workers.values(), 1):
        lines.append(f"  worker {number}: {shown(runs)}")
    if not workers:
        lines.append(f"critical path (done at {pool_start - start:.0f} s): {shown(first, total=True)}")
        return "\n".join(lines)
    last = max(workers, key=lambda w: workers[w][-1][1].end)
    number = list(workers).index(last) + 1
    built_first = [(name, t) for name, t in first if t.seconds >= min_seconds]  # a cached backbone took no time
    lines.append(f"critical path (worker {number}, done at {workers[last][-1][1].end - start:.0f} s): "
                 + shown(built_first + workers[last], total=True).replace(", ", " -> "))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
