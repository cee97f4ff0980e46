"""Figures: step scores, calibration, first-error detection, best-of-N and learning curves.

Each function draws on ``ax`` when given, else on a new figure, and returns the Axes; none shows, saves
or touches rcParams. Scores share one red (wrong) to green (right) colormap; imports are lazy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from prm_core.metrics import ReliabilityBins

SCORE_CMAP = "RdYlGn"  # low score red, high score green
_DIAGONAL_GID = "prm-viz-perfect-calibration"  # lets a second plot_reliability call skip the diagonal


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def _values(values: Any, name: str, n: int | None = None, of: str = "", dtype: Any = np.float64) -> np.ndarray:
    """``values`` as an array, non-empty and, when ``n`` is given, with ``n`` entries (one per ``of``)."""
    if hasattr(values, "detach"):  # a torch tensor; bf16 has no numpy view, so widen floats first
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    array = np.asarray(values, dtype=dtype)  # None becomes nan in a float array
    if array.size == 0 or (n is not None and len(array) != n):
        raise ValueError(f"{name} has {len(array)} entries; pass {n or 'at least one'}, one per {of or 'value'}.")
    return array


def _check_probabilities(array: np.ndarray, name: str) -> None:
    if (bad := array[~((array >= 0) & (array <= 1))]).size:  # the negation also catches nan
        raise ValueError(f"{name} holds {bad[:3].tolist()}; pass probabilities in [0, 1] (sigmoid the logits).")


def plot_step_scores(steps: Sequence[str], scores: Sequence[float], labels: Sequence[float | None] | None = None,
                     *, threshold: float = 0.5, ax: Axes | None = None, max_chars: int = 48,
                     title: str | None = None) -> Axes:
    """One horizontal bar per step, as long as the step's score, first step on top.

    Parameters
    ----------
    steps : sequence of str, shape (n_steps,)
        The y tick labels, cut to ``max_chars`` characters with "…".
    scores : sequence of float, shape (n_steps,)
        Step probabilities in [0, 1]: bar length and colour.
    labels : sequence of (float or None), shape (n_steps,), optional
        True labels, each marked at its bar's end: ✓ when >= 0.5, else ✗; None marks nothing.
    threshold : float, default 0.5
        A dashed vertical line; steps scored below it count as errors.
    ax : matplotlib Axes, optional
    max_chars : int, default 48
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = plot_step_scores(["3 × 4 = 12", "2 + 12 = 15"], [0.9, 0.2], [1.0, 0.0], ax=Figure().subplots())
    >>> [float(bar.get_width()) for bar in ax.patches], [t.get_text() for t in ax.texts]
    ([0.9, 0.2], ['✓', '✗'])
    """
    import matplotlib

    if isinstance(steps, str) or len(steps) == 0:
        raise ValueError(f"steps={steps!r} must be a non-empty sequence of step texts, one per bar.")
    score = _values(scores, "scores", len(steps), "step")
    label = None if labels is None else _values(labels, "labels", len(steps), "step")
    _check_probabilities(score, "scores")
    if not (0 <= threshold <= 1 and max_chars >= 2):
        raise ValueError(f"threshold={threshold!r} must be in [0, 1] and max_chars={max_chars!r} at least 2.")
    ax = _axes(ax, (7.0, 1.0 + 0.4 * len(steps)))
    rows = np.arange(len(steps))
    ax.barh(rows, score, color=matplotlib.colormaps[SCORE_CMAP](score), edgecolor="0.3", linewidth=0.5)
    texts = [" ".join(s.split()) for s in steps]  # one line per tick label
    ax.set_yticks(rows, labels=[t if len(t) <= max_chars else t[: max_chars - 1] + "…" for t in texts])
    ax.invert_yaxis()  # reading order: step 0 on top
    ax.axvline(threshold, color="0.3", linestyle="--", linewidth=1, label=f"threshold = {threshold:g}")
    for row in np.flatnonzero(~np.isnan(label)) if label is not None else []:  # unlabelled steps get no mark
        is_correct = label[row] >= 0.5
        ax.text(score[row] + 0.015, row, "✓" if is_correct else "✗", va="center", fontweight="bold", fontsize=12,
                color="tab:green" if is_correct else "tab:red")
    ax.set(xlim=(0, 1.08), xlabel="step score (P(step is correct))")  # room for a mark after a full bar
    if title is not None:
        ax.set_title(title)
    return ax


def plot_score_heatmap(step_scores: Any, mask: Any, *, ax: Axes | None = None,
                       row_labels: Sequence[str] | None = None) -> Axes:
    """Step scores of N candidates as a heatmap beside a colorbar; padded cells stay grey.

    Parameters
    ----------
    step_scores : array-like of shape (N, S)
        Step probabilities in [0, 1] at real steps; padded cells may hold anything.
    mask : array-like of bool, shape (N, S)
        True at real steps, as in ``StepScores.mask``.
    ax : matplotlib Axes, optional
        The colorbar takes some of its room.
    row_labels : sequence of str, shape (N,), optional
        Y tick labels; candidate indices when None.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = plot_score_heatmap([[0.9, 0.1], [0.8, 0.0]], [[True, True], [True, False]], ax=Figure().subplots())
    >>> ax.images[0].get_array().mask.tolist()
    [[False, False], [False, True]]
    """
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    score, is_real = _values(step_scores, "step_scores"), _values(mask, "mask", dtype=bool)
    if score.ndim != 2 or score.shape != is_real.shape:
        raise ValueError(f"step_scores.shape={score.shape} and mask.shape={is_real.shape} must be the same (N, S).")
    _check_probabilities(score[is_real], "step_scores")
    row_labels = None if row_labels is None else _values(row_labels, "row_labels", len(score), "row", object)
    ax = _axes(ax, (1.5 + 0.5 * score.shape[1], 1.0 + 0.35 * score.shape[0]))
    cmap = matplotlib.colormaps[SCORE_CMAP].with_extremes(bad="0.85")  # a copy; the registered one is untouched
    image = ax.imshow(np.ma.masked_where(~is_real, score), cmap=cmap, vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="step score")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    if row_labels is not None:
        ax.set_yticks(np.arange(len(score)), labels=list(row_labels))
    ax.set(xlabel="step index", ylabel="candidate")
    return ax


def plot_reliability(bins: ReliabilityBins, *, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Reliability diagram: fraction of correct steps against mean score, per non-empty bin.

    Marker area grows with the bin's step count. Call again on the same ``ax`` to compare models
    (e.g. PRM and ORM); the diagonal is drawn once.

    Parameters
    ----------
    bins : ReliabilityBins
        From ``prm_core.metrics.reliability_bins``.
    ax : matplotlib Axes, optional
    label : str, optional
        Legend entry for this curve; a legend is drawn when given.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from prm_core.metrics import reliability_bins
    >>> ax = plot_reliability(reliability_bins([0.1, 0.3, 0.9], [0, 1, 1], n_bins=2), ax=Figure().subplots())
    >>> ax.lines[-1].get_xdata().tolist(), ax.lines[-1].get_ydata().tolist()
    ([0.2, 0.9], [0.5, 1.0])
    """
    if not all(hasattr(bins, k) for k in ("confidence", "accuracy", "count")):
        raise ValueError(f"bins is a {type(bins).__name__}; pass prm_core.metrics.reliability_bins(...).")
    confidence, accuracy = _values(bins.confidence, "bins.confidence"), _values(bins.accuracy, "bins.accuracy")
    count = _values(bins.count, "bins.count")
    keep = (count > 0) & np.isfinite(confidence) & np.isfinite(accuracy)
    if not keep.any():
        raise ValueError("bins.count is 0 in every bin: there are no labelled steps to plot.")
    ax = _axes(ax, (4.5, 4.5))
    if not any(line.get_gid() == _DIAGONAL_GID for line in ax.lines):
        ax.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1, label="perfectly calibrated", gid=_DIAGONAL_GID)
    (line,) = ax.plot(confidence[keep], accuracy[keep], linewidth=1.5, label=label)
    ax.scatter(confidence[keep], accuracy[keep], s=15 + 185 * count[keep] / count[keep].max(),
               color=line.get_color(), alpha=0.7, edgecolors="white", zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean step score (confidence)", ylabel="fraction of correct steps")
    ax.set_aspect("equal")
    if label is not None:
        ax.legend(loc="upper left")
    return ax


def plot_detection_by_kind(detection: Mapping[Any, Any], *, ax: Axes | None = None) -> Axes:
    """Bars of the first-error detection rate per error kind, highest first, each with its count.

    Parameters
    ----------
    detection : dict of kind -> {"rate": float, "count": int}, or kind -> (rate, count)
        ``first_error_report(...)["detection_by_kind"]`` or ``detection_rate_by_kind(...)``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = plot_detection_by_kind({"carry": (0.25, 8), "sign": (0.75, 4)}, ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.texts]
    (['sign', 'carry'], ['n=4', 'n=8'])
    """
    import matplotlib
    import seaborn as sns

    if not isinstance(detection, Mapping) or not detection:
        raise ValueError(f"detection={detection!r} must be a non-empty dict, e.g. report['detection_by_kind'].")
    items = []
    for kind, value in detection.items():
        try:
            rate, count = (value["rate"], value["count"]) if isinstance(value, Mapping) else value
            items.append((str(kind), float(rate), int(count)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"detection[{kind!r}]={value!r} must be {{'rate', 'count'}} or (rate, count).") from err
        if not 0 <= items[-1][1] <= 1:
            raise ValueError(f"detection[{kind!r}] has rate={rate!r}; a detection rate must be in [0, 1].")
    items.sort(key=lambda item: (-item[1], item[0]))  # best-detected kind first, ties by name
    kinds, rates, counts = (list(column) for column in zip(*items, strict=True))
    ax = _axes(ax, (1.5 + 0.9 * len(kinds), 3.5))
    palette = dict(zip(kinds, matplotlib.colormaps[SCORE_CMAP](np.asarray(rates)), strict=True))
    sns.barplot(x=kinds, y=rates, hue=kinds, order=kinds, hue_order=kinds, palette=palette, legend=False,
                edgecolor="0.3", ax=ax)
    for i, (rate, count) in enumerate(zip(rates, counts, strict=True)):  # over a full bar, keep it inside
        ax.text(i, min(rate + 0.02, 0.93), f"n={count}", ha="center", va="bottom", fontsize=9)
    ax.set(ylim=(0, 1), xlabel="kind of first error", ylabel="detection rate (exact first error)")
    if len(kinds) > 3:
        ax.tick_params(axis="x", labelrotation=30)
    return ax


def plot_best_of_n(table: Mapping[str, Mapping[str, Mapping[str, float]]], methods: Sequence[str], *,
                   ax: Axes | None = None, labels: Mapping[str, str] | None = None) -> Axes:
    """Answer accuracy against N (log2 axis) for each selection method, its 95% CI as a band.

    Parameters
    ----------
    table : dict of str(N) -> method -> {"accuracy", "ci_low", "ci_high"}
        ``prm_core.evaluation.best_of_n_report(...)``.
    methods : sequence of str
        Methods to draw, one line each; every one must be in the table at every N.
    ax : matplotlib Axes, optional
    labels : dict of method -> str, optional
        Legend names; a method missing from it is shown by its key.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> table = {"1": {"prm_min": {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
    ...          "4": {"prm_min": {"accuracy": 0.7, "ci_low": 0.6, "ci_high": 0.8}}}
    >>> ax = plot_best_of_n(table, ["prm_min"], ax=Figure().subplots(), labels={"prm_min": "PRM, min"})
    >>> ax.lines[0].get_xdata().tolist(), ax.get_legend().get_texts()[0].get_text()
    ([1, 4], 'PRM, min')
    """
    from matplotlib.ticker import NullLocator

    if not isinstance(table, Mapping) or not table or not all(str(n).isdigit() and int(n) > 0 for n in table):
        raise ValueError(f"table has N keys {list(table)[:5]}; pass best_of_n_report(...), keyed by '1', '2', ...")
    ns = sorted(int(n) for n in table)
    if isinstance(methods, str) or len(methods) == 0:
        raise ValueError(f"methods={methods!r} must be a non-empty list of method names, e.g. ['majority'].")
    if unknown := [m for m in methods if not all(m in table[str(n)] for n in ns)]:
        raise ValueError(f"methods holds {unknown}, missing from table at some N; known at N={ns[0]}: "
                         f"{sorted(table[str(ns[0])])}.")
    try:  # method -> (len(ns), 3): accuracy, ci_low, ci_high
        curves = {m: np.array([[table[str(n)][m][k] for k in ("accuracy", "ci_low", "ci_high")] for n in ns],
                              dtype=np.float64) for m in methods}
    except (KeyError, TypeError) as err:
        raise ValueError(f"each table[N][method] must hold accuracy, ci_low and ci_high; missing {err}.") from err
    ax = _axes(ax, (6.0, 4.0))
    for method, stats in curves.items():
        (line,) = ax.plot(ns, stats[:, 0], marker="o", label=(labels or {}).get(method, method))
        ax.fill_between(ns, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)  # N doubles from point to point
    ax.set_xticks(ns, labels=[str(n) for n in ns])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="N (candidates per problem)", ylabel="answer accuracy")
    ax.legend()
    return ax


def _column(rows: Sequence[Mapping[str, float]], key: str, name: str) -> np.ndarray:
    try:
        return np.array([row[key] for row in rows], dtype=np.float64)
    except (KeyError, TypeError) as err:
        raise ValueError(f"every entry of {name} needs a {key!r} value, as TrainResult.{name} has.") from err


def plot_learning_curves(history: Sequence[Mapping[str, float]],
                         eval_history: Sequence[Mapping[str, float]] | None = None, *,
                         ax: Axes | None = None, label: str | None = None) -> Axes:
    """Training loss against optimizer step, and held-out loss as points when given.

    Call again on the same ``ax`` with another ``label`` to compare runs (e.g. PRM and ORM).

    Parameters
    ----------
    history : list of dict with "step" and "train_loss"
        ``TrainResult.history``.
    eval_history : list of dict with "step" and "eval_loss", optional
        ``TrainResult.eval_history``; None or an empty list draws no eval points.
    ax : matplotlib Axes, optional
    label : str, optional
        Prefix of the legend entries, e.g. "PRM".

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> history = [{"step": 1, "train_loss": 0.7, "lr": 1e-3}, {"step": 2, "train_loss": 0.5, "lr": 1e-3}]
    >>> ax = plot_learning_curves(history, [{"step": 2, "eval_loss": 0.6}], ax=Figure().subplots(), label="PRM")
    >>> [line.get_label() for line in ax.lines]
    ['PRM train loss', 'PRM eval loss']
    """
    if isinstance(history, Mapping) or len(history) == 0:
        raise ValueError("history must be a non-empty list of {'step', 'train_loss'} dicts (TrainResult.history).")
    prefix = "" if label is None else f"{label} "
    ax = _axes(ax, (6.0, 4.0))
    (line,) = ax.plot(_column(history, "step", "history"), _column(history, "train_loss", "history"),
                      label=f"{prefix}train loss")
    if eval_history:
        ax.plot(_column(eval_history, "step", "eval_history"), _column(eval_history, "eval_loss", "eval_history"),
                "o--", color=line.get_color(), label=f"{prefix}eval loss")
    ax.set(xlabel="optimizer step", ylabel="loss")
    ax.legend()
    return ax
