"""Figures: step scores, calibration, first-error detection, best-of-N and learning curves.

Each draws on ``ax`` (a new figure when None) and returns it; none shows, saves or changes rcParams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prm_core.checks import check_int, check_probability, check_real, check_real_array

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from prm_core.metrics import ReliabilityBins

SCORE_CMAP = "RdYlGn"  # one colormap for every score: low red (wrong), high green (right)
_DIAGONAL_GID = "prm-viz-perfect-calibration"  # lets a second plot_reliability call skip the diagonal


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        import matplotlib.pyplot as plt  # lazy: importing prm_core must not pick a backend
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _values(values: Any, name: str, n: int | None = None, of: str = "value", dtype: Any = np.float64,
            is_probability: bool = False, allow_bool: bool = False) -> np.ndarray:
    """A float array of reals (``check_real_array``: no bools unless ``allow_bool``, None as nan), or
    ``values`` as ``dtype`` when that is not float (bool masks, object tick labels)."""
    if dtype is np.float64:
        array = check_real_array(values, name, allow_nan=True, allow_inf=True, allow_bool=allow_bool)
    else:
        if hasattr(values, "detach"):  # a torch tensor; bf16 has no numpy view, and bools survive the round trip
            values = values.detach().cpu().double().numpy()
        array = np.asarray(values, dtype=dtype)
    if array.size == 0 or (n is not None and len(array) != n):
        raise ValueError(f"{name} has {len(array)} entries; pass {n or 'at least one'}, one per {of}.")
    if is_probability and (bad := array[~((array >= 0) & (array <= 1))]).size:  # the negation catches nan
        raise ValueError(f"{name} holds {bad[:3].tolist()}; pass probabilities in [0, 1] (sigmoid logits).")
    return array


def plot_step_scores(steps: Sequence[str], scores: Sequence[float],
                     labels: Sequence[float | None] | None = None, *, threshold: float = 0.5,
                     ax: Axes | None = None, max_chars: int = 48, title: str | None = None) -> Axes:
    """One horizontal bar per step, as long as its score and coloured by it, first step on top.

    Parameters
    ----------
    steps : sequence of str, shape (n_steps,)
        The y tick labels, cut to ``max_chars`` characters with "…".
    scores : sequence of float in [0, 1], shape (n_steps,)
    labels : sequence of (float or None), shape (n_steps,), optional
        True labels, marked at the bar's end: ✓ when >= 0.5, ✗ below, nothing for None.
    threshold : float, default 0.5
        Drawn as a dashed vertical line; steps scored below it count as errors. In [0, 1].
    ax : matplotlib Axes, optional
    max_chars : int, default 48
        An int >= 2.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        For no steps, scores that are not one probability per step (bools included), a threshold
        outside [0, 1] (NaN included) or ``max_chars`` that is not an int >= 2.

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
    score = _values(scores, "scores", len(steps), "step", is_probability=True)
    label = (np.full(len(steps), np.nan) if labels is None
             else _values(labels, "labels", len(steps), "step", allow_bool=True))  # True: a correct step
    threshold = check_probability(threshold, "threshold", "pass e.g. threshold=0.5")
    max_chars = check_int(max_chars, "max_chars", "[2, inf)", "pass e.g. max_chars=48")
    ax = _axes(ax, (7.0, 1.0 + 0.4 * len(steps)))
    rows, texts = np.arange(len(steps)), [" ".join(str(s).split()) for s in steps]  # one line per tick label
    ax.barh(rows, score, color=matplotlib.colormaps[SCORE_CMAP](score), edgecolor="0.3", linewidth=0.5)
    ax.set_yticks(rows, labels=[t if len(t) <= max_chars else t[: max_chars - 1] + "…" for t in texts])
    ax.invert_yaxis()  # reading order: step 0 on top
    ax.axvline(threshold, color="0.3", linestyle="--", linewidth=1, label=f"threshold = {threshold:g}")
    for row in np.flatnonzero(~np.isnan(label)):  # unlabelled steps get no mark
        mark, color = ("✓", "tab:green") if label[row] >= 0.5 else ("✗", "tab:red")
        ax.text(score[row] + 0.015, row, mark, color=color, va="center", fontweight="bold", fontsize=12)
    ax.set(xlim=(0, 1.08), xlabel="step score (P(step is correct))")  # room for a mark after a full bar
    if title is not None:
        ax.set_title(title)
    return ax


def plot_score_heatmap(step_scores: Any, mask: Any, *, ax: Axes | None = None,
                       row_labels: Sequence[str] | None = None) -> Axes:
    """Step scores of N candidates as a heatmap, padded cells grey, with a colorbar beside ``ax``.

    Parameters
    ----------
    step_scores, mask : array-like of shape (N, S)
        Step probabilities in [0, 1], and bools True at real steps (``StepScores.mask``).
    ax : matplotlib Axes, optional
    row_labels : sequence of str, shape (N,), optional
        Y tick labels; candidate indices when None. There is one tick per candidate and per step.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> ax = plot_score_heatmap([[0.9, 0.1], [0.8, 0.0]], [[1, 1], [1, 0]], ax=Figure().subplots())
    >>> ax.images[0].get_array().mask.tolist()
    [[False, False], [False, True]]
    """
    import matplotlib
    score, is_real = _values(step_scores, "step_scores"), _values(mask, "mask", dtype=bool)
    if score.ndim != 2 or score.shape != is_real.shape:
        raise ValueError(f"step_scores.shape={score.shape} and mask.shape={is_real.shape} must be equal.")
    _values(score[is_real], "step_scores where mask is True", is_probability=True)
    row_labels = None if row_labels is None else _values(row_labels, "row_labels", len(score), "row", object)
    ax = _axes(ax, (1.5 + 0.5 * score.shape[1], 1.0 + 0.35 * score.shape[0]))
    cmap = matplotlib.colormaps[SCORE_CMAP].with_extremes(bad="0.85")  # a copy: the registered one is kept
    image = ax.imshow(np.ma.masked_where(~is_real, score), cmap=cmap, vmin=0, vmax=1, aspect="auto",
                      interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="step score")
    ax.set_xticks(np.arange(score.shape[1]))
    ax.set_yticks(np.arange(len(score)), labels=None if row_labels is None else list(row_labels))
    ax.set(xlabel="step index", ylabel="candidate")
    return ax


def plot_reliability(bins: ReliabilityBins, *, ax: Axes | None = None, label: str | None = None) -> Axes:
    """Reliability diagram: per non-empty bin, fraction of correct steps against mean score.

    Parameters
    ----------
    bins : ReliabilityBins
        From ``prm_core.metrics.reliability_bins``; marker area grows with each bin's count.
    ax : matplotlib Axes, optional
        Call again on the same ``ax`` to add a model (PRM and ORM); the diagonal is drawn once.
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
    fields = ("confidence", "accuracy", "count")  # a missing one reads as empty, hence a ValueError naming it
    confidence, accuracy, count = (_values(getattr(bins, k, []), f"bins.{k}") for k in fields)
    if not (keep := (count > 0) & np.isfinite(confidence) & np.isfinite(accuracy)).any():
        raise ValueError("bins.count is 0 in every bin: there are no labelled steps to plot.")
    ax = _axes(ax, (4.5, 4.5))
    if not any(line.get_gid() == _DIAGONAL_GID for line in ax.lines):
        ax.plot([0, 1], [0, 1], "--", color="0.5", lw=1, label="perfectly calibrated", gid=_DIAGONAL_GID)
    (line,) = ax.plot(confidence[keep], accuracy[keep], linewidth=1.5, label=label)
    ax.scatter(confidence[keep], accuracy[keep], s=15 + 185 * count[keep] / count[keep].max(),
               color=line.get_color(), alpha=0.7, edgecolors="white", zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="mean step score", ylabel="fraction correct")
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
        raise ValueError(f"detection={detection!r} must be a non-empty dict, as first_error_report gives.")
    try:  # (kind, rate, count) from either form of value
        pairs = {k: (v["rate"], v["count"]) if isinstance(v, Mapping) else tuple(v) for k, v in detection.items()}
        items = [(str(k), check_real(rate, f"detection[{k!r}] rate", "[-inf, inf]"),  # True: no rate; 2.7: no count
                  check_int(count, f"detection[{k!r}] count", "[0, inf)")) for k, (rate, count) in pairs.items()]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"detection values must be {{'rate': r, 'count': c}} or (r, c): {err!r}.") from err
    items.sort(key=lambda item: (-item[1], item[0]))  # best-detected kind first, ties by name
    kinds, rates, counts = (list(column) for column in zip(*items, strict=True))
    _values(rates, "detection rates", is_probability=True)
    ax = _axes(ax, (1.5 + 0.9 * len(kinds), 3.5))
    palette = dict(zip(kinds, matplotlib.colormaps[SCORE_CMAP](np.asarray(rates)), strict=True))
    sns.barplot(x=kinds, y=rates, hue=kinds, order=kinds, palette=palette, legend=False, ax=ax)
    for i, (rate, count) in enumerate(zip(rates, counts, strict=True)):  # over a full bar, keep it inside
        ax.text(i, min(rate + 0.02, 0.93), f"n={count}", ha="center", va="bottom", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})  # readable on a dark bar too
    ax.set(ylim=(0, 1), xlabel="kind of first error", ylabel="detection rate (exact first error)")
    ax.tick_params(axis="x", labelrotation=30 if len(kinds) > 3 else 0)
    return ax


def plot_best_of_n(table: Mapping[str, Mapping[str, Mapping[str, float]]], methods: Sequence[str], *,
                   ax: Axes | None = None, labels: Mapping[str, str] | None = None,
                   styles: Mapping[str, Mapping[str, Any]] | None = None) -> Axes:
    """Answer accuracy against N (log2 axis) for each selection method, its 95% CI as a band.

    Parameters
    ----------
    table : dict of str(N) -> method -> {"accuracy", "ci_low", "ci_high"}, as ``best_of_n_report`` returns
    methods : sequence of str
        Methods to draw, one line each; every one must be in the table at every N.
    ax : matplotlib Axes, optional
    labels : dict of method -> str, optional
        Legend names; a method missing from it is shown by its key.
    styles : dict of method -> dict, optional
        Line keywords per method (``color``, ``linestyle``, ...), so one method keeps one look
        across figures; the band takes the line's colour.

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
    keys = list(table) if isinstance(table, Mapping) else []
    if not keys or not all(isinstance(n, str) and n.isdigit() and n[0] != "0" for n in keys):
        raise ValueError(f"table has keys {keys[:5]}; pass best_of_n_report(...), a dict keyed '1', '2', ...")
    ns, stats = sorted(int(n) for n in table), ("accuracy", "ci_low", "ci_high")  # keys as str(N), any order
    unknown = [m for m in methods if not all(set(stats) <= set(table[str(n)].get(m, ())) for n in ns)]
    if isinstance(methods, str) or len(methods) == 0 or unknown:
        raise ValueError(f"methods={methods!r} must list methods that table holds, with {stats}, at every N; "
                         f"not {unknown}. Known at N={ns[0]}: {sorted(table[str(ns[0])])}.")
    styles = dict(styles or {})
    if set(styles) - set(methods) or not all(isinstance(v, Mapping) and "label" not in v for v in styles.values()):
        raise ValueError(f"styles must map methods being drawn to dicts of line keywords (no 'label': use labels=), "
                         f"e.g. {{'prm_min': {{'color': 'tab:blue'}}}}; got keys {sorted(styles)} for methods {list(methods)}.")
    curves = {m: np.array([[table[str(n)][m][k] for k in stats] for n in ns]) for m in methods}  # (N's, 3)
    ax = _axes(ax, (6.0, 4.0))
    for method, curve in curves.items():
        (line,) = ax.plot(ns, curve[:, 0], **{"marker": "o", **styles.get(method, {})},
                          label=(labels or {}).get(method, method))
        ax.fill_between(ns, curve[:, 1], curve[:, 2], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)  # N doubles from point to point; base 2 has no minor ticks
    ax.set_xticks(ns, labels=[str(n) for n in ns])
    ax.set(xlabel="N (candidates per problem)", ylabel="answer accuracy")
    ax.legend()
    return ax


def plot_learning_curves(history: Sequence[Mapping], eval_history: Sequence[Mapping] | None = None, *,
                         ax: Axes | None = None, label: str | None = None, train_key: str = "train_loss",
                         eval_key: str = "eval_loss") -> Axes:
    """A training loss against optimizer step, and a held-out loss as points when given.

    Parameters
    ----------
    history, eval_history : list of dict
        ``TrainResult.history`` (keys "step" and ``train_key``) and, optionally,
        ``TrainResult.eval_history`` (keys "step" and ``eval_key``); None or an empty list draws no
        eval points.
    ax : matplotlib Axes, optional
    label : str, optional
        Prefix of the legend entries, e.g. "PRM"; call again on ``ax`` with another to compare runs.
    train_key, eval_key : str, default "train_loss" and "eval_loss"
        Which losses to draw. ``"train_bce"`` with ``"eval_bce"`` compares like with like: the
        supervised BCE alone, on training batches and on held-out solutions.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> history = [{"step": 1, "train_loss": 0.7, "lr": 1e-3}, {"step": 2, "train_loss": 0.5, "lr": 1e-3}]
    >>> ax = plot_learning_curves(history, [{"step": 2, "eval_loss": 0.6}], ax=Figure().subplots(), label="A")
    >>> [line.get_label() for line in ax.lines]
    ['A train loss', 'A eval loss']
    """
    try:  # (n_logs, 2) and (n_evals, 2): step, loss; a dict for history fails here too (its keys are str)
        train = _values([[row["step"], row[train_key]] for row in history], "history")
        held_out = np.array([[row["step"], row[eval_key]] for row in eval_history or []], dtype=np.float64)
    except (KeyError, TypeError) as err:
        raise ValueError(f"history rows need 'step', {train_key!r} and eval_history rows 'step', {eval_key!r}; "
                         f"got {err!r}.") from err
    prefix = "" if label is None else f"{label} "
    names = {"train_loss": "train loss", "eval_loss": "eval loss"}
    ax = _axes(ax, (6.0, 4.0))
    (line,) = ax.plot(train[:, 0], train[:, 1], label=prefix + names.get(train_key, train_key.replace("_", " ")))
    if len(held_out):
        ax.plot(held_out[:, 0], held_out[:, 1], "o--", color=line.get_color(),
                label=prefix + names.get(eval_key, eval_key.replace("_", " ")))
    ax.set(xlabel="optimizer step", ylabel="loss")
    ax.legend()
    return ax


# One colour per method in every figure of the course (matplotlib's tab10), so a reader can follow
# a method from notebook to notebook.
METHOD_COLORS = {"PRM": "tab:blue", "ORM": "tab:orange", "majority vote": "tab:gray", "oracle": "black",
                 "on": "tab:blue", "off": "tab:red"}


def plot_intervals(groups: Sequence[Any], series: Mapping[str, Sequence[Mapping[str, float]]], *,
                   ax: Axes | None = None, key: str = "value", colors: Mapping[str, str] | None = None,
                   xlabel: str | None = None, ylabel: str | None = None) -> Axes:
    """Point estimates with their 95% intervals: one x position per group, one colour per series.

    Entries that carry ``per_seed`` (each training seed's own value, as ``comparison_over_seeds``
    gives them) also show those values as small open markers beside the mean, so the seeds' spread
    the interval comes from is in the figure.

    Parameters
    ----------
    groups : sequence
        The x tick labels (e.g. chain lengths or training-set sizes).
    series : dict of name -> list of {key, "ci_low", "ci_high"}
        One list per series, one entry per group, as ``comparison_metrics`` gives them; the series
        sit side by side around each tick.
    ax : matplotlib Axes, optional
    key : str, default "value"
        The point estimate's key ("accuracy" for best-of-N entries).
    colors : dict of series name -> colour, optional
        Defaults to ``METHOD_COLORS`` where it names the series.
    xlabel, ylabel : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> point = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    >>> ax = plot_intervals([2, 3], {"PRM": [point, point], "ORM": [point, point]}, ax=Figure().subplots())
    >>> [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_legend().get_texts()]
    (['2', '3'], ['PRM', 'ORM'])
    """
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty dict of name -> list of {key, 'ci_low', 'ci_high'}.")
    try:
        arrays = {name: _values([[e[key], e["ci_low"], e["ci_high"]] for e in entries], f"series[{name!r}]",
                                n=len(groups), of="group") for name, entries in series.items()}
    except (KeyError, TypeError) as err:
        raise ValueError(f"every series entry needs {key!r}, 'ci_low' and 'ci_high'; got {err!r}.") from err
    for name, values in arrays.items():
        bad = ~((values[:, 1] <= values[:, 0]) & (values[:, 0] <= values[:, 2]))  # also True for nan
        if bad.any():
            raise ValueError(f"series[{name!r}] has entries outside their own interval (ci_low <= {key} <= "
                             f"ci_high fails, or nan) at groups {[groups[i] for i in np.flatnonzero(bad)]}.")
    if colors is not None and not isinstance(colors, Mapping):
        raise ValueError(f"colors must be a dict of series name -> colour, e.g. {{'PRM': 'tab:blue'}}; got {colors!r}.")
    ax = _axes(ax, (1.5 + 1.1 * len(groups), 3.5))
    width = 0.7 / len(arrays)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(arrays.items()):
        offset = (i - (len(arrays) - 1) / 2) * width
        error = np.abs(values[:, 1:].T - values[:, 0])  # (2, groups): distances below and above
        drawn = ax.errorbar(x + offset, values[:, 0], yerr=error, fmt="o", capsize=3, label=name,
                            color=(colors or METHOD_COLORS).get(name))
        if all(isinstance(e, Mapping) and "per_seed" in e for e in series[name]):
            for j, entry in enumerate(series[name]):
                seeds = check_real_array(list(entry["per_seed"]), f"series[{name!r}][{j}]['per_seed']")
                ax.scatter(np.full(seeds.size, x[j] + offset + width * 0.3), seeds, s=12, facecolors="none",
                           edgecolors=drawn.lines[0].get_color(), linewidths=0.8, zorder=3)
    ax.set_xticks(x, labels=[str(g) for g in groups])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    return ax
