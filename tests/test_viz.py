import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere in this process: no display needed

import subprocess  # noqa: E402
import sys  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from prm_core.metrics import ReliabilityBins, reliability_bins  # noqa: E402
from prm_core.viz import (  # noqa: E402
    METHOD_COLORS,
    plot_best_of_n,
    plot_detection_by_kind,
    plot_intervals,
    plot_learning_curves,
    plot_reliability,
    plot_score_heatmap,
    plot_step_scores,
)

STEPS = ["Ana has 3 coins.", "She gets 4 more, so 3 + 4 = 8.", "The answer is 8."]
SCORES = [0.9, 0.2, 0.4]
TABLE = {  # as best_of_n_report returns it, keys deliberately out of order
    "4": {"majority": {"accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7},
          "prm_min": {"accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.9}},
    "1": {"majority": {"accuracy": 0.4, "ci_low": 0.3, "ci_high": 0.5},
          "prm_min": {"accuracy": 0.4, "ci_low": 0.3, "ci_high": 0.5}},
    "2": {"majority": {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6},
          "prm_min": {"accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7}},
}
DETECTION = {"arithmetic": {"rate": 0.5, "count": 10}, "carry": {"rate": 0.9, "count": 4},
             "sign": {"rate": 0.2, "count": 123}}
HISTORY = [{"step": 1, "train_loss": 0.7, "lr": 1e-3}, {"step": 2, "train_loss": 0.6, "lr": 1e-3},
           {"step": 3, "train_loss": 0.4, "lr": 1e-3}]
EVAL_HISTORY = [{"step": 2, "eval_loss": 0.65, "eval_auroc": 0.6},
                {"step": 3, "eval_loss": 0.5, "eval_auroc": 0.7}]

POINT = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.95}

# One call per plot function, each drawing on the given ax.
CALLS = {
    "step_scores": lambda ax: plot_step_scores(STEPS, SCORES, [1.0, 0.0, None], ax=ax),
    "heatmap": lambda ax: plot_score_heatmap([[0.9, 0.2], [0.5, 0.0]], [[True, True], [True, False]], ax=ax),
    "reliability": lambda ax: plot_reliability(reliability_bins([0.1, 0.8, 0.9], [0, 1, 1], n_bins=4), ax=ax),
    "detection": lambda ax: plot_detection_by_kind(DETECTION, ax=ax),
    "best_of_n": lambda ax: plot_best_of_n(TABLE, ["majority", "prm_min"], ax=ax),
    "learning_curves": lambda ax: plot_learning_curves(HISTORY, EVAL_HISTORY, ax=ax),
    "intervals": lambda ax: plot_intervals([2, 3], {"PRM": [POINT, POINT], "ORM": [POINT, POINT]}, ax=ax),
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- every function -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CALLS, ids=list(CALLS))
def test_plot_with_ax_draws_on_it_and_opens_no_figure(name):
    _, ax = plt.subplots()
    before = plt.get_fignums()
    returned = CALLS[name](ax)
    assert returned is ax
    assert plt.get_fignums() == before


@pytest.mark.parametrize("name", CALLS, ids=list(CALLS))
def test_plot_without_ax_opens_exactly_one_figure(name):
    before = set(plt.get_fignums())
    ax = CALLS[name](None)
    assert isinstance(ax, Axes)
    assert set(plt.get_fignums()) - before == {ax.figure.number}


@pytest.mark.parametrize("name", CALLS, ids=list(CALLS))
def test_plot_leaves_rcparams_unchanged(name):
    before = dict(matplotlib.rcParams)
    CALLS[name](None)
    assert dict(matplotlib.rcParams) == before


def test_import_viz_does_not_import_matplotlib():
    code = "import sys, prm_core.viz; print('matplotlib' in sys.modules, 'seaborn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- plot_step_scores -----------------------------------------------------------------------------


def test_step_scores_one_bar_per_step_with_width_equal_to_score():
    ax = plot_step_scores(STEPS, SCORES)
    assert len(ax.patches) == len(STEPS)
    np.testing.assert_allclose([bar.get_width() for bar in ax.patches], SCORES)


def test_step_scores_first_step_on_top_with_step_text_as_tick_labels():
    ax = plot_step_scores(STEPS, SCORES)
    assert ax.yaxis_inverted()
    assert [bar.get_y() + bar.get_height() / 2 for bar in ax.patches] == [0, 1, 2]  # step i at y = i
    assert [t.get_text() for t in ax.get_yticklabels()] == STEPS


def test_step_scores_long_step_is_cut_to_max_chars_with_ellipsis():
    ax = plot_step_scores(["x" * 30, "short"], [0.5, 0.5], max_chars=10)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x" * 9 + "…", "short"]


def test_step_scores_low_score_bar_is_redder_than_high_score_bar():
    ax = plot_step_scores(["a", "b"], [0.05, 0.95])
    low, high = (bar.get_facecolor() for bar in ax.patches)
    assert low[0] > low[1] and high[1] > high[0]  # (r, g, b, a)


def test_step_scores_threshold_is_a_dashed_vertical_line():
    ax = plot_step_scores(STEPS, SCORES, threshold=0.3)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert list(dashed[0].get_xdata()) == [0.3, 0.3]


def test_step_scores_marks_each_given_label_at_the_bar_end():
    ax = plot_step_scores(STEPS, SCORES, [1.0, 0.0, None])
    marks = {t.get_text(): t.get_position() for t in ax.texts}
    assert sorted(marks) == ["✓", "✗"]  # the unlabelled third step gets no mark
    assert marks["✓"][1] == 0 and marks["✓"][0] > SCORES[0]
    assert marks["✗"][1] == 1 and marks["✗"][0] > SCORES[1]


def test_step_scores_without_labels_draws_no_marks():
    assert len(plot_step_scores(STEPS, SCORES).texts) == 0


def test_step_scores_title_is_set_when_given():
    assert plot_step_scores(STEPS, SCORES, title="PRM view").get_title() == "PRM view"


def test_step_scores_accepts_a_torch_tensor():
    ax = plot_step_scores(STEPS, torch.tensor(SCORES, dtype=torch.bfloat16))
    np.testing.assert_allclose([bar.get_width() for bar in ax.patches], SCORES, atol=1e-2)  # bf16 rounding


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": [], "scores": []}, "steps"),
    ({"steps": STEPS, "scores": [0.5, 0.5]}, "scores has 2 entries"),
    ({"steps": STEPS, "scores": SCORES, "labels": [1.0]}, "labels has 1 entries"),
    ({"steps": STEPS, "scores": [0.5, 1.5, 0.5]}, "scores holds"),
    ({"steps": STEPS, "scores": [0.5, float("nan"), 0.5]}, "scores holds"),
    ({"steps": STEPS, "scores": SCORES, "threshold": 2.0}, "threshold"),
    ({"steps": STEPS, "scores": SCORES, "max_chars": 1}, "max_chars"),
], ids=["no-steps", "short-scores", "short-labels", "score-above-1", "nan-score", "bad-threshold",
        "max-chars-1"])
def test_step_scores_bad_input_raises_value_error_naming_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_step_scores(**kwargs)


# --- plot_score_heatmap ---------------------------------------------------------------------------


def test_heatmap_image_is_masked_where_mask_is_false():
    scores = np.array([[0.9, 0.2, 0.0], [0.5, 7.0, 0.0]])  # padded cells may hold anything
    mask = np.array([[True, True, False], [True, False, False]])
    data = plot_score_heatmap(scores, mask).images[0].get_array()
    np.testing.assert_array_equal(data.mask, ~mask)
    np.testing.assert_allclose(data.compressed(), [0.9, 0.2, 0.5])


def test_heatmap_adds_a_colorbar_with_the_0_1_range():
    ax = plot_score_heatmap([[0.9, 0.2]], [[True, True]])
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar
    assert ax.images[0].get_clim() == (0, 1)


def test_heatmap_axes_are_step_index_and_candidate_with_row_labels():
    scores = [[0.9, 0.2, 0.1], [0.5, 0.4, 0.3]]
    ax = plot_score_heatmap(scores, np.ones((2, 3), bool), row_labels=["best", "worst"])
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["best", "worst"]


def test_heatmap_accepts_step_scores_tensors():
    scores, mask = torch.tensor([[0.9, 0.0], [0.5, 0.4]]), torch.tensor([[True, False], [True, True]])
    data = plot_score_heatmap(scores, mask).images[0].get_array()
    np.testing.assert_array_equal(data.mask, ~mask.numpy())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"step_scores": [[0.5, 0.5]], "mask": [[True]]}, "mask.shape"),
    ({"step_scores": [0.5, 0.5], "mask": [True, True]}, "step_scores.shape"),
    ({"step_scores": [[1.5, 0.5]], "mask": [[True, True]]}, "step_scores where mask is True"),
    ({"step_scores": [[0.5]], "mask": [[True]], "row_labels": ["a", "b"]}, "row_labels has 2"),
    ({"step_scores": [], "mask": []}, "step_scores"),
], ids=["shape-mismatch", "one-dim", "score-above-1", "row-labels-length", "empty"])
def test_heatmap_bad_input_raises_value_error_naming_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_score_heatmap(**kwargs)


# --- plot_reliability -----------------------------------------------------------------------------


def test_reliability_plots_accuracy_against_confidence_of_non_empty_bins():
    # 4 bins of width 0.25: bin 0 holds 0.1 (label 0); bin 3 holds 0.8, 0.9 (labels 1, 1); bins 1, 2 empty
    ax = plot_reliability(reliability_bins([0.1, 0.8, 0.9], [0, 1, 1], n_bins=4))
    curve = ax.lines[-1]
    np.testing.assert_allclose(curve.get_xdata(), [0.1, 0.85])  # 0.85 = (0.8 + 0.9) / 2
    np.testing.assert_allclose(curve.get_ydata(), [0.0, 1.0])


def test_reliability_marker_area_grows_with_bin_count():
    bins = ReliabilityBins(np.linspace(0, 1, 4), np.array([0.2, 0.5, 0.8]), np.array([0.1, 0.5, 0.9]),
                           np.array([5, 50, 500]))
    sizes = plot_reliability(bins).collections[0].get_sizes()
    assert sizes[0] < sizes[1] < sizes[2]


def test_reliability_draws_the_diagonal():
    ax = plot_reliability(reliability_bins([0.1, 0.9], [0, 1], n_bins=2))
    assert any(list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0, 1] for line in ax.lines)


def test_reliability_called_twice_adds_a_curve_but_one_diagonal():
    ax = plot_reliability(reliability_bins([0.1, 0.9], [0, 1], n_bins=2), label="PRM")
    plot_reliability(reliability_bins([0.3, 0.6], [0, 1], n_bins=2), ax=ax, label="ORM")
    assert len(ax.lines) == 3  # diagonal, PRM, ORM
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["perfectly calibrated", "PRM", "ORM"]


def test_reliability_without_label_draws_no_legend():
    assert plot_reliability(reliability_bins([0.1, 0.9], [0, 1], n_bins=2)).get_legend() is None


@pytest.mark.parametrize(("bins", "match"), [
    (ReliabilityBins(np.linspace(0, 1, 3), np.full(2, np.nan), np.full(2, np.nan), np.zeros(2, int)),
     "bins.count"),
    ({"confidence": [0.5]}, "bins.confidence"),
], ids=["all-bins-empty", "not-reliability-bins"])
def test_reliability_bad_input_raises_value_error_naming_field(bins, match):
    with pytest.raises(ValueError, match=match):
        plot_reliability(bins)


# --- plot_detection_by_kind -----------------------------------------------------------------------


def _bars_left_to_right(ax):
    return sorted(ax.patches, key=lambda bar: bar.get_x())


def test_detection_bars_are_sorted_by_rate_with_heights_equal_to_rates():
    ax = plot_detection_by_kind(DETECTION)
    np.testing.assert_allclose([bar.get_height() for bar in _bars_left_to_right(ax)], [0.9, 0.5, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["carry", "arithmetic", "sign"]


def test_detection_annotates_each_bar_with_its_count():
    ax = plot_detection_by_kind(DETECTION)
    texts = sorted(ax.texts, key=lambda t: t.get_position()[0])  # left to right
    assert [t.get_text() for t in texts] == ["n=4", "n=10", "n=123"]


def test_detection_y_limits_are_0_to_1():
    assert plot_detection_by_kind(DETECTION).get_ylim() == (0, 1)


def test_detection_tuple_form_draws_the_same_bars_as_dict_form():
    as_tuples = {kind: (v["rate"], v["count"]) for kind, v in DETECTION.items()}
    heights = [[bar.get_height() for bar in _bars_left_to_right(plot_detection_by_kind(d))]
               for d in (DETECTION, as_tuples)]
    assert heights[0] == heights[1]


def test_detection_equal_rates_are_ordered_by_kind_name():
    ax = plot_detection_by_kind({"b": (0.5, 1), "a": (0.5, 2)})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


@pytest.mark.parametrize(("detection", "match"), [
    ({}, "detection"),
    ([("carry", 0.5, 3)], "detection"),
    ({"carry": {"rate": 0.5}}, "detection values"),
    ({"carry": (0.5,)}, "detection values"),
    ({"carry": (1.5, 3)}, "detection rates"),
], ids=["empty", "not-a-dict", "missing-count", "short-tuple", "rate-above-1"])
def test_detection_bad_input_raises_value_error_naming_field(detection, match):
    with pytest.raises(ValueError, match=match):
        plot_detection_by_kind(detection)


# --- plot_best_of_n -------------------------------------------------------------------------------


def test_best_of_n_draws_one_line_per_method_over_sorted_n():
    ax = plot_best_of_n(TABLE, ["majority", "prm_min"])
    assert len(ax.lines) == 2
    for line in ax.lines:
        assert list(line.get_xdata()) == [1, 2, 4]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.4, 0.6, 0.8])  # prm_min at N = 1, 2, 4


def test_best_of_n_shades_the_ci_band_of_each_method():
    ax = plot_best_of_n(TABLE, ["majority", "prm_min"])
    assert len(ax.collections) == 2
    band_y = ax.collections[1].get_paths()[0].vertices[:, 1]
    assert band_y.min() == pytest.approx(0.3) and band_y.max() == pytest.approx(0.9)  # prm_min CI ends


def test_best_of_n_x_axis_is_log2_with_ticks_at_n():
    ax = plot_best_of_n(TABLE, ["majority"])
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [1, 2, 4]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


def test_best_of_n_legend_uses_labels_and_falls_back_to_method_name():
    ax = plot_best_of_n(TABLE, ["majority", "prm_min"], labels={"prm_min": "PRM (min)", "orm": "unused"})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["majority", "PRM (min)"]


@pytest.mark.parametrize(("table", "methods", "match"), [
    (TABLE, ["majority", "best_guess"], "best_guess"),
    (TABLE, [], "methods"),
    (TABLE, "majority", "methods"),
    ({}, ["majority"], "table"),
    ({"0": TABLE["1"]}, ["majority"], "table"),
    ({"four": TABLE["4"]}, ["majority"], "table"),
    ({"1": {"majority": {"accuracy": 0.5}}}, ["majority"], "ci_low"),
    ({"1": TABLE["1"], "2": {"prm_min": TABLE["2"]["prm_min"]}}, ["majority"], "majority"),
], ids=["unknown-method", "no-methods", "methods-is-str", "empty-table", "n-zero", "n-not-a-number",
        "missing-ci", "method-missing-at-one-n"])
def test_best_of_n_bad_input_raises_value_error_naming_field(table, methods, match):
    with pytest.raises(ValueError, match=match):
        plot_best_of_n(table, methods)


# --- plot_learning_curves -------------------------------------------------------------------------


def test_learning_curves_train_loss_against_step():
    ax = plot_learning_curves(HISTORY)
    assert len(ax.lines) == 1
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert list(ax.lines[0].get_ydata()) == [0.7, 0.6, 0.4]


def test_learning_curves_eval_loss_as_points_in_the_train_colour():
    ax = plot_learning_curves(HISTORY, EVAL_HISTORY)
    train, held_out = ax.lines
    assert list(held_out.get_xdata()) == [2, 3] and list(held_out.get_ydata()) == [0.65, 0.5]
    assert held_out.get_marker() == "o"
    assert held_out.get_color() == train.get_color()


@pytest.mark.parametrize("eval_history", [None, []], ids=["none", "empty-list"])
def test_learning_curves_without_eval_history_draws_train_loss_only(eval_history):
    assert len(plot_learning_curves(HISTORY, eval_history).lines) == 1


def test_learning_curves_two_runs_on_one_ax_get_prefixed_legend_entries():
    ax = plot_learning_curves(HISTORY, EVAL_HISTORY, label="PRM")
    plot_learning_curves(HISTORY, ax=ax, label="ORM")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PRM train loss", "PRM eval loss",
                                                                   "ORM train loss"]


@pytest.mark.parametrize(("history", "eval_history", "match"), [
    ([], None, "history has 0 entries"),
    ([{"step": 1}], None, "train_loss"),
    (HISTORY, [{"step": 1, "eval_auroc": 0.5}], "eval_loss"),
    ({"step": 1, "train_loss": 0.5}, None, "history"),
], ids=["empty", "missing-train-loss", "missing-eval-loss", "dict-not-list"])
def test_learning_curves_bad_input_raises_value_error_naming_field(history, eval_history, match):
    with pytest.raises(ValueError, match=match):
        plot_learning_curves(history, eval_history)


def test_learning_curves_plot_the_keys_asked_for():
    history = [{"step": 1, "train_loss": 0.9, "train_bce": 0.7}, {"step": 2, "train_loss": 0.8, "train_bce": 0.5}]
    ax = plot_learning_curves(history, [{"step": 2, "eval_loss": 0.6, "eval_bce": 0.55}], train_key="train_bce",
                              eval_key="eval_bce")
    assert ax.lines[0].get_ydata().tolist() == [0.7, 0.5]
    assert ax.lines[1].get_ydata().tolist() == [0.55]
    assert [line.get_label() for line in ax.lines] == ["train bce", "eval bce"]


def test_learning_curves_missing_key_raises_naming_it():
    with pytest.raises(ValueError, match="'train_bce'"):
        plot_learning_curves([{"step": 1, "train_loss": 0.9}], train_key="train_bce")


def test_intervals_error_bars_span_each_interval_around_its_point():
    low, high = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.8}, {"value": 0.9, "ci_low": 0.85, "ci_high": 0.95}
    ax = plot_intervals(["a", "b"], {"PRM": [low, high]})
    points = ax.lines[0]
    assert points.get_ydata().tolist() == [0.5, 0.9]
    segments = ax.collections[0].get_segments()  # the vertical error bars, one per group
    assert [v for seg in segments for v in (seg[0][1], seg[1][1])] == pytest.approx([0.4, 0.8, 0.85, 0.95])


def test_intervals_series_use_the_course_colours_and_sit_side_by_side():
    ax = plot_intervals([1], {"PRM": [POINT], "ORM": [POINT]})
    prm, orm = ax.lines[0], ax.lines[3]  # each errorbar adds a line and two cap markers
    assert matplotlib.colors.to_hex(prm.get_color()) == matplotlib.colors.to_hex(METHOD_COLORS["PRM"])
    assert matplotlib.colors.to_hex(orm.get_color()) == matplotlib.colors.to_hex(METHOD_COLORS["ORM"])
    assert prm.get_xdata()[0] < 0 < orm.get_xdata()[0]


@pytest.mark.parametrize("series,match", [({}, "non-empty"), ({"PRM": [POINT]}, "1 entries"),
                                          ({"PRM": [{"value": 1.0}, POINT]}, "ci_low")],
                         ids=["empty", "wrong-length", "missing-key"])
def test_intervals_bad_input_raises_value_error(series, match):
    with pytest.raises(ValueError, match=match):
        plot_intervals([1, 2], series)


def test_best_of_n_styles_set_each_methods_line_and_band_colour():
    ax = plot_best_of_n(TABLE, ["majority", "prm_min"], styles={"prm_min": {"color": "tab:blue", "linestyle": "--"}})
    line = ax.lines[1]
    assert line.get_linestyle() == "--" and matplotlib.colors.to_hex(line.get_color()) == matplotlib.colors.to_hex("tab:blue")
    band = ax.collections[1]
    assert matplotlib.colors.to_hex(band.get_facecolor()[0]) == matplotlib.colors.to_hex("tab:blue")


@pytest.mark.parametrize("entry", [{"value": 0.5, "ci_low": 0.6, "ci_high": 0.9}, {"value": 0.5, "ci_low": 0.9, "ci_high": 0.1},
                                   {"value": float("nan"), "ci_low": 0.1, "ci_high": 0.9}],
                         ids=["value-outside", "swapped", "nan"])
def test_intervals_an_entry_outside_its_own_interval_raises(entry):
    with pytest.raises(ValueError, match="outside their own interval"):
        plot_intervals([1], {"PRM": [entry]})


def test_intervals_show_each_seed_beside_the_mean_in_the_series_colour():
    a = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "per_seed": [0.75, 0.8, 0.85]}
    b = {"value": 0.6, "ci_low": 0.5, "ci_high": 0.7, "per_seed": [0.55, 0.65]}
    ax = plot_intervals([1, 2], {"PRM": [a, b], "ORM": [POINT, POINT]})
    dots = [c for c in ax.collections if c.get_offsets().size and len(c.get_offsets()[0]) == 2
            and not hasattr(c, "get_segments")]
    assert [c.get_offsets()[:, 1].tolist() for c in dots] == [[0.75, 0.8, 0.85], [0.55, 0.65]]
    assert all(matplotlib.colors.to_hex(c.get_edgecolor()[0]) == matplotlib.colors.to_hex(METHOD_COLORS["PRM"])
               for c in dots)
    with pytest.raises(ValueError, match=r"per_seed"):
        plot_intervals([1], {"PRM": [{**a, "per_seed": [0.7, float("nan")]}]})


def test_intervals_colors_must_be_a_dict():
    with pytest.raises(ValueError, match="colors must be a dict"):
        plot_intervals([1], {"PRM": [POINT]}, colors=["red"])


@pytest.mark.parametrize("styles", [{"prm_min": "r--"}, {"prm_min": {"label": "x"}}, {"prm_mni": {"color": "red"}}],
                         ids=["string-style", "label-key", "unknown-method"])
def test_best_of_n_bad_styles_raise(styles):
    with pytest.raises(ValueError, match="styles must map methods"):
        plot_best_of_n(TABLE, ["prm_min"], styles=styles)
