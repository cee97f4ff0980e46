"""Execute the course notebooks in order with papermill; on failure, name the notebook and the cell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _strip_run_metadata(path: Path) -> None:
    """Drop papermill's paths and timings, so committed notebooks hold no machine-specific metadata.

    The notebook is rewritten atomically (``prm_core.files.write_text``), as ``nbformat.write``
    would write it, so a failure leaves the executed notebook as it was.
    """
    import nbformat

    from prm_core.files import write_text

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    text = nbformat.writes(nb)
    write_text(path, text if text.endswith("\n") else text + "\n")  # nbformat.write ends the file with a newline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="cpu", help="parameter profile: a file params/<profile>.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "executed", help="executed notebooks go here")
    parser.add_argument("--in-place", action="store_true",
                        help="overwrite the notebooks themselves, with their default parameters (to commit)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb in order")
    args = parser.parse_args(argv)

    params_file = ROOT / "params" / f"{args.profile}.yaml"
    if not params_file.exists():
        known = sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))
        print(f"profile={args.profile!r} has no file {params_file}; use one of {known}.", file=sys.stderr)
        return 2
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        print("No notebooks in notebooks/ yet: nothing to run.")
        return 0

    import papermill as pm
    import yaml

    from prm_core.files import atomic_file

    # Only the upper-case keys are notebook parameters; the rest of the file configures experiments.
    parameters = {k: v for k, v in (yaml.safe_load(params_file.read_text()) or {}).items() if k.isupper()}
    if args.in_place:
        parameters = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        start = time.perf_counter()
        target = path if args.in_place else args.out / path.name
        print(f"running {path.name} (profile {args.profile}) ...", flush=True)
        try:
            if args.in_place:  # a committed notebook is replaced only by a whole, successful run
                with atomic_file(path) as tmp:
                    pm.execute_notebook(str(path), str(tmp), parameters=parameters,
                                        cwd=str(path.parent), kernel_name="python3", progress_bar=False)
                    _strip_run_metadata(tmp)
            else:  # a build copy: a failed run stays there, to show where it stopped
                pm.execute_notebook(str(path), str(target), parameters=parameters,
                                    cwd=str(path.parent), kernel_name="python3", progress_bar=False)
        except pm.PapermillExecutionError as err:
            print(f"FAILED: {path} in cell {err.cell_index} (execution count {err.exec_count}): "
                  f"{err.ename}: {err.evalue}", file=sys.stderr)
            return 1
        print(f"  ok in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
