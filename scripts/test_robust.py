"""Imitate another machine: train a second draw of every cached model with other CPU kernels, then run
every notebook's checked cells against it (``make test-robust``).

Why: a model trained on another CPU, with another thread count or seed, is another draw of the same
training procedure, and the course's claims are about the procedure. PyTorch picks its CPU kernels
by the instruction set it finds (``torch.backends.cpu.get_cpu_capability()``); ``ATEN_CPU_CAPABILITY``
forces an older set, whose kernels round differently, and so trains other weights on this very
machine. The draw goes to its own cache folder (cache keys name the config, not the kernels), so the
ordinary cache is untouched.

The default capability is the one below this machine's (avx512 -> avx2, avx2 -> default); pass
``--capability`` for another, ``--threads 2`` to also change the reductions' split. Every model of
the draw, the backbone too, trains with ``--threads`` threads (the ordinary prebuild gives the backbone
both cores), so the default draw differs from the ordinary cache in kernels and in threads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BELOW = {"AVX512": "avx2", "AVX512_BF16": "avx2", "AVX512_VNNI": "avx2", "AVX2": "default", "DEFAULT": "default",
         "ZVECTOR": "default", "SVE256": "default"}


def native_capability() -> str:
    """What torch uses here without ``ATEN_CPU_CAPABILITY`` (e.g. "AVX2")."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "cache-robust",
                        help="the second cache (default build/cache-robust); never the ordinary one")
    parser.add_argument("--capability", choices=["avx512", "avx2", "default"], default=None,
                        help="ATEN_CPU_CAPABILITY for the draw (default: the one below this machine's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per prebuild worker (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="prebuild worker processes (default 2)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--kinds", default=None, help="prebuild only these task kinds (e.g. standard,sweep,ablation) "
                        "and pass the notebooks that need only them; default: everything")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (default: notebooks/)")
    args = parser.parse_args(argv)

    native = native_capability()
    capability = args.capability or BELOW.get(native.upper(), "default")
    ordinary = os.environ.get("PRM_COURSE_CACHE")
    if ordinary and Path(ordinary).resolve() == args.cache.resolve():
        parser.error(f"--cache {args.cache} is PRM_COURSE_CACHE, the ordinary cache; pass another folder.")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "PRM_COURSE_CACHE": str(args.cache.resolve()),
           "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    print(f"another draw: ATEN_CPU_CAPABILITY={capability} (native {native}), {args.threads} thread(s) per worker, "
          f"cache {args.cache}", flush=True)
    start = time.monotonic()
    steps = [
        [sys.executable, "-m", "prm_core.prebuild", "--profile", args.profile, "--jobs", str(args.jobs),
         "--threads", str(args.threads), "--backbone-threads", str(args.threads),
         *(["--kinds", args.kinds] if args.kinds else [])],
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "--nbval-sanitize-with", "notebooks/sanitize.cfg", *(args.pytest_args or ["notebooks"])],
    ]
    for command in steps:
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        if code != 0:
            print(f"test-robust: {' '.join(command[1:4])} failed (exit {code}) on the draw with "
                  f"ATEN_CPU_CAPABILITY={capability}: a claim that fails here holds for one draw only.", file=sys.stderr)
            return code
    print(f"test-robust: every checked cell holds on the draw with ATEN_CPU_CAPABILITY={capability} "
          f"({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
