"""Figures of notebook 14: RL curves per reward source, each a mean line with its 95% band.

Like ``prm_core.viz``: each draws on ``ax`` (a new figure when None) and returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prm_core.checks import check_real
from prm_core.viz import _axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# One colour per reward source, matching METHOD_COLORS where they share a model (PRM blue, ORM orange).
REWARD_COLORS = {"outcome": "tab:green", "orm": "tab:orange", "prm": "tab:blue", "prm_min": "tab:purple"}
REWARD_LABELS = {"outcome": "outcome (exact grader)", "orm": "ORM score", "prm": "PRM steps (dense)",
                 "prm_min": "PRM min (one per solution)"}


def plot_rl_curves(curves: Mapping[str, Mapping[str, Any]], key: str = "accuracy", *, ax: Axes | None = None,
                   ylabel: str | None = None, baseline: float | None = None) -> Axes:
    """One line per reward source against RL updates, with its 95% band when the points carry one.

    Parameters
    ----------
    curves : dict of reward -> curve
        As ``policy_runs.rl_curves`` returns them: a curve holds ``"update"`` (the x of held-out
        points) and ``"train_update"`` (the x of per-update logs); ``curve[key]`` is a list of
        ``{"value", "ci_low", "ci_high"}`` (held-out) or of floats (per-update logs).
    key : str, default "accuracy"
        "accuracy", "greedy_accuracy", "reward", "train_accuracy" or "kl".
    baseline : float, optional
        A dashed grey reference line (e.g. the SFT policy's accuracy); a finite number.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        For curves that are not ``rl_curves``' dicts, a missing ``key``, points that do not match
        their updates, or a baseline that is not a finite number.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> point = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    >>> ax = plot_rl_curves({"prm": {"update": [0, 10], "accuracy": [point, point]}}, ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['PRM steps (dense)']
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict of reward -> curve, as policy_runs.rl_curves returns.")
    if baseline is not None:
        baseline = check_real(baseline, "baseline", fix="pass e.g. the SFT policy's accuracy, or None")
    ax = _axes(ax, (6, 4))
    for reward, curve in curves.items():
        if key not in curve:
            raise ValueError(f"curves[{reward!r}] has no {key!r}; it has {sorted(curve)}.")
        points: Sequence[Any] = curve[key]
        is_held_out = bool(points) and isinstance(points[0], Mapping)
        x_key = "update" if is_held_out else "train_update"
        if x_key not in curve:
            raise ValueError(f"curves[{reward!r}] has no {x_key!r} (the x of its {key!r} points); pass the curves "
                             "policy_runs.rl_curves returns.")
        x = np.asarray(curve[x_key])
        if len(x) != len(points):
            raise ValueError(f"curves[{reward!r}][{key!r}] has {len(points)} points for {len(x)} updates.")
        color, label = REWARD_COLORS.get(reward), REWARD_LABELS.get(reward, reward)
        if is_held_out:
            if any(not isinstance(p, Mapping) or not {"value", "ci_low", "ci_high"} <= set(p) for p in points):
                raise ValueError(f"every point of curves[{reward!r}][{key!r}] must be a dict with 'value', 'ci_low' "
                                 "and 'ci_high'.")
            values = np.array([[p["value"], p["ci_low"], p["ci_high"]] for p in points], dtype=float)
            ax.plot(x, values[:, 0], marker="o", color=color, label=label)
            ax.fill_between(x, values[:, 1], values[:, 2], color=color, alpha=0.15, linewidth=0)
        else:
            ax.plot(x, np.asarray(points, dtype=float), color=color, label=label)
    if baseline is not None:
        ax.axhline(baseline, color="tab:gray", linestyle="--", linewidth=1, label="SFT policy")
    ax.set(xlabel="RL updates", ylabel=ylabel or key.replace("_", " "))
    ax.legend(loc="best", fontsize="small")
    return ax
