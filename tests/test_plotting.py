"""Tests of sim.plotting: files written, NaN metrics skipped, stored bounds drawn, honest fits, readable layout.

Layout is checked through the Matplotlib objects after drawing: legend boxes outside the axes and
inside the figure, the title inside the figure, the fit used recorded on each curve's Line2D.
"""

import colorsys
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
import pytest
from python_process import python_output
from test_stats import synthetic_table

import sim
from bandits.errors import PrefsimError
from sim import cli, diagnostics, figure_plan, figure_worker, plotting
from sim.figure_worker import FigureWorker
from sim.plot_spec import PlotSpec, parse_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cyclic_table():
    spec = {
        "iterations": 40,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.3},
        "rule": [{"name": "inpo", "eta": 4.0}, {"name": "sppo", "eta": 0.5}],
    }
    return sim.run(spec)


def synthetic(curves: dict, iterations=None, seeds: int = 4, noise: float = 0.02) -> pd.DataFrame:
    """A run table with one metric column per key of each curve (rule → {metric: f(t)}), seeds jittered."""
    iterations = np.arange(0, 201) if iterations is None else np.asarray(iterations)
    rng = np.random.default_rng(0)
    rows = []
    for rule, metrics in curves.items():
        for seed in range(seeds):
            scale = np.exp(noise * rng.standard_normal())
            frame = pd.DataFrame({"rule": rule, "seed": seed, "iteration": iterations})
            for metric, function in metrics.items():
                frame[metric] = function(iterations.astype(float)) * scale
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _curve(axes, rule):
    return next(line for line in axes.get_lines() if getattr(line, "prefsim_rule", None) == rule)


def test_plot_run_writes_one_png_per_metric_with_data_and_skips_nan(tmp_path, cyclic_table):
    paths = plotting.plot_run(cyclic_table, tmp_path / "figures")
    names = {p.stem for p in paths}
    assert "kl_to_nash" in names and "duality_gap_mixture" in names
    # no Bradley–Terry rewards: suboptimality and regret are NaN at every iteration (regret included)
    assert not names & {"suboptimality", "suboptimality_mixture", "regret"}
    assert cyclic_table["regret"].isna().all()
    for path in paths:
        assert path.exists() and path.read_bytes()[:8] == PNG_MAGIC
        # the image data is a zlib stream of the fastest level (FLEVEL 0 in its header: "x\x01")
        data = path.read_bytes()
        assert data[data.index(b"IDAT") + 4 : data.index(b"IDAT") + 6] == b"x\x01"
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)


def test_plot_metric_draws_bands_theory_fit_and_the_t3_marker(cyclic_table):
    bound = pd.DataFrame(
        {"iteration": np.arange(1, 41), "bound": 1.0 / np.arange(1, 41), "rule": "inpo", "label": "a bound"}
    )
    axes = plotting.plot_metric(cyclic_table, "kl_to_nash", theory=bound, fit_window=(4, 40), fit_scale="loglog")
    labels = [line.get_label() for line in axes.get_lines()]
    assert "a bound (thin)" in labels
    inpo = _curve(axes, "inpo")
    assert inpo.prefsim_fit.scale == "loglog" and "log-log slope" in inpo.get_label()
    assert any(line.get_xdata()[0] == 3 for line in axes.get_lines() if line.get_linestyle() == ":")
    assert axes.get_yscale() == "log" and axes.get_xscale() == "symlog"
    assert len(axes.collections) == 2  # one band per rule
    bound_line = next(line for line in axes.get_lines() if getattr(line, "prefsim_bound", False))
    assert bound_line.get_color() == inpo.get_color() and bound_line.get_linewidth() < inpo.get_linewidth()


def test_the_running_log_ratio_is_drawn_only_when_picked_by_name(tmp_path, cyclic_table):
    """``max_log_ratio_so_far`` (the bounds' B) has data on every run; a figure of it by default would add one
    figure to every run's drawing time, next to ``max_log_ratio``'s own figure."""
    plan = figure_plan.plan_figures(cyclic_table, tmp_path / "plan")
    assert "max_log_ratio" in plan.figures and "max_log_ratio_so_far" not in plan.figures
    picked = figure_plan.plan_figures(cyclic_table, tmp_path / "plan", metrics=["max_log_ratio_so_far"])
    assert picked.figures == ["max_log_ratio_so_far"]
    by_plot_table = figure_plan.plan_figures(
        cyclic_table, tmp_path / "plan", plot={"metrics": ["max_log_ratio_so_far"]}
    )
    assert by_plot_table.figures == ["max_log_ratio_so_far"]
    assert "realised B" in plotting.METRIC_LABELS["max_log_ratio"] and "max_log_ratio_so_far" in plotting.METRIC_LABELS


def test_a_metric_the_plot_table_picks_that_has_no_data_is_named_not_left_out_silently(tmp_path, cyclic_table):
    """[plot] metrics = ["suboptimality", "kl_to_nash"] on a game without rewards drew kl_to_nash alone and said
    nothing of suboptimality (metrics = ["suboptimality"] alone: "wrote 0 figure(s)")."""
    picked = ["suboptimality", "kl_to_nash"]
    plan = figure_plan.plan_figures(cyclic_table, tmp_path / "plan", metrics=picked)
    assert plan.figures == ["kl_to_nash"] and plan.without_data == ("suboptimality",)
    # every metric (no pick): those without data are left out without a word, as the module says
    assert figure_plan.plan_figures(cyclic_table, tmp_path / "plan").without_data == ()
    (tmp_path / "manifest.json").write_text(json.dumps({"spec": {"plot": {"metrics": picked}}}))
    messages = []
    paths = cli._draw(cyclic_table, tmp_path, messages.append)
    assert [path.name for path in paths] == ["kl_to_nash.png"]
    assert any("plot.metrics: suboptimality has no value" in message for message in messages), messages


def test_plot_metric_single_seed_and_bad_input(tmp_path):
    table = sim.run(
        {
            "iterations": 5,
            "seeds": 1,
            "game": {"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": [0.5, 0.3, 0.2]},
            "rule": [{"name": "inpo", "eta": 20.0}],
        }
    )
    paths = plotting.plot_run(table, tmp_path)
    assert paths and all(p.exists() for p in paths)
    with pytest.raises(PrefsimError):
        plotting.plot_metric(table, "not_a_metric")
    with pytest.raises(PrefsimError, match="theory"):
        plotting.plot_metric(table, "kl_to_nash", theory=[1, 2, 3])
    with pytest.raises(PrefsimError, match="fit_scale"):
        plotting.plot_metric(table, "kl_to_nash", fit_scale="cubic")


def test_the_run_stores_bounds_and_plotting_reads_them_without_rebuilding_games(tmp_path, monkeypatch):
    spec = {
        "iterations": 30,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "label": "inpo_t4", "schedule": "theorem4"}],
    }
    sim.run(spec, out=tmp_path)
    bounds = pd.read_csv(tmp_path / "bounds.csv")
    assert set(bounds["rule"]) == {"inpo_t4"} and set(bounds["metric"]) == {"kl_to_nash"}
    assert (bounds["bound"] > 0).all()
    # the stored bound is Theorem 4's 32C²/(τ²(T+1)) with C = 1 here (realised Bτ < 1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [m for m in manifest["warnings"] if not m.startswith("2 seeds: ")] == []  # no note of a missing bound
    assert np.all(bounds["bound"].to_numpy() >= 32.0 / (0.2**2 * (bounds["iteration"].to_numpy() + 1)) * (1 - 1e-12))

    def forbidden(*args, **kwargs):
        raise AssertionError("plotting rebuilt the games")

    monkeypatch.setattr("sim.experiment.build_games", forbidden)
    monkeypatch.setattr("sim.theory.bounds_for_run", forbidden)
    (tmp_path / "kl_to_nash.png").unlink(missing_ok=True)
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "kl_to_nash.png").exists()


def test_fit_window_per_rule(cyclic_table):
    axes = plotting.plot_metric(cyclic_table, "kl_to_nash", fit_window={"inpo": (4, 40)})
    assert _curve(axes, "inpo").prefsim_fit is not None
    assert _curve(axes, "sppo").prefsim_fit is None and _curve(axes, "sppo").get_label() == "sppo"


# ----------------------------------------------------------------------------------------------
# honest fits


def test_power_law_gets_a_log_log_fit_with_its_exponent():
    table = synthetic({"a": {"kl_to_nash": lambda t: 3.0 / (t + 1.0) ** 2}})
    axes = plotting.plot_metric(table, "kl_to_nash")
    line = _curve(axes, "a")
    assert line.prefsim_fit_choice.kind == "loglog" and line.prefsim_fit.scale == "loglog"
    assert line.prefsim_fit.window == (20, 200)
    assert line.prefsim_fit.slope == pytest.approx(-2.0, abs=0.05)
    assert "log-log slope" in line.get_label()


def test_linear_convergence_gets_a_semilog_fit_and_a_rate():
    table = synthetic({"a": {"duality_gap": lambda t: 0.5 * 0.9**t}}, iterations=np.arange(0, 121))
    axes = plotting.plot_metric(table, "duality_gap")
    line = _curve(axes, "a")
    assert line.prefsim_fit.scale == "semilog"
    assert line.prefsim_fit.slope == pytest.approx(math.log(0.9), rel=1e-6)
    assert "linear rate: semilog slope" in line.get_label() and "/iter" in line.get_label()


def test_fit_stops_at_the_float_floor():
    # geometric decay that hits rounding (1e-17) from t = 60 on: the fit uses t < 60 only
    table = synthetic(
        {"a": {"kl_to_nash": lambda t: np.where(t < 60, 0.7**t, 1e-17)}}, iterations=np.arange(0, 301), noise=0.0
    )
    axes = plotting.plot_metric(table, "kl_to_nash")
    line = _curve(axes, "a")
    assert line.prefsim_fit_choice.floor_iteration == 60
    assert line.prefsim_fit.window[1] < 60
    assert line.prefsim_fit.slope == pytest.approx(math.log(0.7), rel=1e-9)
    # entirely at the floor: no fit, and the legend says why
    flat = synthetic({"b": {"kl_to_nash": lambda t: np.where(t < 2, 0.5, 1e-18)}}, noise=0.0)
    line = _curve(plotting.plot_metric(flat, "kl_to_nash"), "b")
    assert line.prefsim_fit is None and "rounding floor" in line.get_label()
    # float32's floor is higher: 1e-9 is rounding there, not in float64
    choice = plotting.choose_fit(np.arange(0, 50), np.r_[1.0, np.full(49, 1e-9)], "kl_to_nash", 1.2e-5)
    assert choice.kind == "none" and choice.floor_iteration == 1


def test_plateaus_and_counts_get_no_fit():
    table = synthetic(
        {
            "a": {
                "exploitability": lambda t: 0.2 + 0.3 * np.exp(-t),  # levels off at the τ-Nash's exploitability
                "regret": lambda t: np.sqrt(t),  # a cumulative count: no rate
                "queries": lambda t: 100.0 * t,
            }
        }
    )
    line = _curve(plotting.plot_metric(table, "exploitability"), "a")
    assert line.prefsim_fit is None and "plateau" in line.get_label()
    for metric in ("regret", "queries"):
        line = _curve(plotting.plot_metric(table, metric), "a")
        assert line.prefsim_fit is None and line.get_label() == "a"


def test_a_fit_whose_interval_contains_zero_says_no_significant_trend():
    rng = np.random.default_rng(1)
    wobble = {seed: rng.uniform(0.5, 2.0, 201) for seed in range(4)}
    rows = [
        pd.DataFrame({"rule": "c", "seed": s, "iteration": np.arange(201), "kl_to_nash": w}) for s, w in wobble.items()
    ]
    line = _curve(plotting.plot_metric(pd.concat(rows), "kl_to_nash"), "c")
    if line.prefsim_fit is not None:
        assert line.prefsim_fit.lower <= 0 <= line.prefsim_fit.upper
        assert "no significant trend" in line.get_label()
    else:
        assert "plateau" in line.get_label() or "not converging" in line.get_label()


#: The iterations a run of 300 records (sim.trajectory's schedule): dense first, then log-spaced.
RECORDED_300 = np.r_[np.arange(0, 11), 12, 14, 17, 20, 25, 30, np.arange(40, 101, 10), 120, 140, 170, 200, 250, 300]


def test_tv_that_falls_and_then_lies_flat_at_the_accuracy_of_the_target_is_at_its_floor():
    # examples/default.toml: TV(π_t, π*) of a converged rule falls linearly, then sits at ~4e-14 (π*'s own
    # error), above the 2.2e-14 rounding floor: the fit must stop before it, not span it
    table = synthetic({"a": {"tv_to_optimum": lambda t: np.maximum(0.3 * 0.85**t, 4.15e-14)}}, iterations=RECORDED_300)
    line = _curve(plotting.plot_metric(table, "tv_to_optimum"), "a")
    assert line.prefsim_fit_choice.floor_iteration == 170  # 0.3·0.85^t < 1e-12 from t ≈ 164 on
    assert line.prefsim_fit.scale == "semilog" and line.prefsim_fit.slope == pytest.approx(math.log(0.85), rel=1e-6)
    assert line.prefsim_fit.span == (14, 140) and "t 14–140" in line.get_label()


def test_values_below_the_floor_neither_choose_the_scale_nor_widen_the_window():
    # a linear rate to 2e-15, then a slower steady fall far below the floor (one_rule_1seed.toml's KL): the
    # fit leaves those values out, so the scale and the window are chosen without them too
    def curve(t):
        fast = 0.3 * 0.8**t
        return np.where(fast > 2e-15, fast, 2e-15 * (np.maximum(t, 1.0) / 133.0) ** -8.0)

    table = synthetic({"a": {"kl_to_nash": curve}}, iterations=RECORDED_300, noise=0.0)
    line = _curve(plotting.plot_metric(table, "kl_to_nash"), "a")
    assert line.prefsim_fit_choice.floor_iteration is None  # it keeps falling: not at the floor
    assert line.prefsim_fit.scale == "semilog" and line.prefsim_fit.slope == pytest.approx(math.log(0.8))
    assert line.prefsim_fit.span == (12, 120) and "t 12–120" in line.get_label()


def test_rising_and_swinging_curves_are_not_converging_and_get_no_rate():
    table = synthetic(
        {
            "up": {"kl_to_nash": lambda t: 0.1 * (1.0 + t) ** 0.9},  # sppo's KL(π*‖π_t) in the default run
            "swing": {"duality_gap": lambda t: 0.29 * (1.0 + t) ** 0.02 * (1.0 + 0.25 * np.sin(t / 7.0))},
        },
        iterations=np.arange(0, 1001),
    )
    for rule, metric in (("up", "kl_to_nash"), ("swing", "duality_gap")):
        line = _curve(plotting.plot_metric(table[table["rule"] == rule], metric), rule)
        assert line.prefsim_fit is None and line.prefsim_fit_choice.reason == "not converging", rule
        assert line.get_label() == f"{rule}\n  no fit: not converging"


def test_a_curve_that_levels_off_is_fitted_only_before_it():
    # Nash-MD: a linear rate down to its bias, then flat (two_seeds.toml); the fit must not span the knee
    table = synthetic({"a": {"kl_to_nash": lambda t: 0.4 * 0.96**t + 7.3e-5}}, iterations=RECORDED_300)
    line = _curve(plotting.plot_metric(table, "kl_to_nash"), "a")
    fit = line.prefsim_fit
    assert fit.scale == "semilog" and fit.span == (20, 200) and "t 20–200" in line.get_label()
    assert fit.slope == pytest.approx(math.log(0.96), rel=0.1)
    # levelling off after falling less than a decade: a plateau, and from when
    choice = plotting.choose_fit(RECORDED_300, 0.2 + 0.3 * np.exp(-RECORDED_300 / 5.0), "exploitability", 2.2e-14)
    assert choice.kind == "none" and choice.reason.startswith("plateau from t = ")


#: The iterations a run of 10⁴ records (sim.trajectory's schedule).
RECORDED_10000 = np.r_[
    np.arange(0, 11), 12, 14, 17, 20, 25, 30, np.arange(40, 101, 10), 120, 140, 170, 200, 250, 300,
    np.arange(400, 1001, 100), 1200, 1400, 1700, 2000, 2500, 3000, np.arange(4000, 10001, 1000),
]  # fmt: skip


@pytest.mark.parametrize(
    "curve, exponent",
    [
        (lambda t: np.exp(-0.05 * t) + 0.01 * t**-0.5, -0.5),  # a fast transient, then a power law
        (lambda t: np.where(t < 100, t**-2.0, 1e-4 * (t / 100.0) ** -0.5), -0.5),
        (lambda t: np.where(t < 30, t**-1.5, 30**-1.5 * (t / 30.0) ** -0.4), -0.4),
    ],
)
def test_a_curve_that_only_falls_more_slowly_has_not_levelled_off(curve, exponent):
    # each falls two more decades after it slows down: the fit is its last decade's power law, not the
    # transient's rate before the slow-down (which a test relative to the earlier trend alone picked)
    t = RECORDED_10000.astype(float)
    choice = plotting.choose_fit(t, curve(np.maximum(t, 1.0)), "kl_to_nash", 2.2e-14)
    assert (choice.kind, choice.window) == ("loglog", (1000, 10000))
    assert plotting.level_off(t[1:], np.log(curve(t[1:]))) is None
    table = synthetic({"a": {"kl_to_nash": lambda t: curve(np.maximum(t, 1.0))}}, iterations=RECORDED_10000)
    fit = _curve(plotting.plot_metric(table, "kl_to_nash"), "a").prefsim_fit
    assert fit.scale == "loglog" and fit.span == (1000, 10000)
    assert fit.slope == pytest.approx(exponent, abs=0.02)


def test_kl_to_the_unregularised_nash_is_a_convergence_metric_with_a_fit():
    # comal approaches π⁰: KL(π⁰‖π_t) falls 0.105 → 0.021 over t = 100…1000 in the default run
    table = synthetic({"comal": {"kl_to_unregularised_nash": lambda t: 2.0 / (1.0 + t) ** 0.7}})
    line = _curve(plotting.plot_metric(table, "kl_to_unregularised_nash"), "comal")
    assert line.prefsim_fit.scale == "loglog" and line.prefsim_fit.slope == pytest.approx(-0.7, abs=0.02)


def test_the_label_names_the_first_and_last_recorded_iterations_fitted():
    # recorded every 5 iterations: the window [3, 30] holds t = 5…30 (sampled_inpo.toml)
    table = synthetic({"a": {"kl_to_nash": lambda t: 0.5 * 0.9**t}}, iterations=np.arange(0, 31, 5))
    line = _curve(plotting.plot_metric(table, "kl_to_nash"), "a")
    assert "t 5–30" in line.get_label() and "t 3–30" not in line.get_label()
    assert line.prefsim_fit.span == (5, 30)


def test_a_fit_of_one_seed_has_no_interval():
    table = synthetic({"a": {"kl_to_nash": lambda t: 3.0 / (t + 1.0) ** 2}}, seeds=1)
    label = _curve(plotting.plot_metric(table, "kl_to_nash"), "a").get_label()
    assert "[" not in label and "log-log slope -1.97\n  1 seed, t 20–200" in label


# ----------------------------------------------------------------------------------------------
# layout


def _inside(inner, outer, slack=1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - slack
        and inner.y0 >= outer.y0 - slack
        and inner.x1 <= outer.x1 + slack
        and inner.y1 <= outer.y1 + slack
    )


def test_legend_outside_the_axes_and_title_inside_the_figure(tmp_path):
    table = synthetic({f"r{i}": {"kl_to_nash": lambda t, i=i: (i + 1) / (t + 1.0)} for i in range(4)})
    manifest = {
        "spec": {"name": "a_rather_long_experiment_name_" * 3, "game": {"kind": "random", "arms": 10, "tau": 0.1}},
        "seeds": [0, 1, 2, 3],
    }
    figure = plotting.metric_figure(
        table, "kl_to_nash", plotting.stats.rules_of(table), PlotSpec(), title=figure_plan.figure_title(manifest)
    )
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    whole = figure.bbox
    (cell,) = figure.subfigs
    (axes,) = cell.axes
    (legend,) = cell.legends
    box = legend.get_window_extent(renderer)
    assert box.x0 >= axes.bbox.x1, "the legend must be right of the axes, not over the curves"
    assert _inside(box, whole), "the legend must fit in the figure"
    title = figure._suptitle
    assert "\n" in title.get_text(), "a long title is wrapped"
    assert _inside(title.get_window_extent(renderer), whole), "the title must not be cut at the figure's edge"
    assert not title.get_window_extent(renderer).overlaps(box), "the legend must not run into the title"


def test_a_long_axes_title_of_plot_metric_is_wrapped_inside_the_figure():
    """plot_metric's own ``title`` (the notebooks' figures) is wrapped to the axes' width, not cut off."""
    table = synthetic({"r": {"kl_to_nash": lambda t: 1 / (t + 1.0)}})
    figure, axes = plotting.new_figure()
    long = "duality gap: online vs offline data at a matched query budget, sampled mode, mean ± 95% bootstrap CI"
    plotting.plot_metric(table, "kl_to_nash", axes=axes, title=long, legend="outside")
    figure.canvas.draw()
    title = axes.title
    assert "\n" in title.get_text() and title.get_text().replace("\n", " ") == long
    assert _inside(title.get_window_extent(figure.canvas.get_renderer()), figure.bbox)


def test_an_axes_title_fits_beside_a_wide_legend_outside():
    """A wide legend outside narrows the axes at layout time: the title is wrapped to the axes' final width
    (notebook 01's "3-cycle, τ = 0.2: …" title was wrapped to the pre-layout width and cut at the left edge)."""
    rule = "a_rule_with_a_rather_long_label_that_takes_half_the_figure"
    table = synthetic({rule: {"kl_to_nash": lambda t: 1 / (t + 1.0)}})
    figure, axes = plotting.new_figure()
    title = "3-cycle, τ = 0.2: η = 0.8 vs 1.25 × η_crit (10 random initial policies)"
    plotting.plot_metric(table, "kl_to_nash", axes=axes, title=title, legend="outside")
    figure.canvas.draw()
    box = axes.title.get_window_extent(figure.canvas.get_renderer())
    assert _inside(box, figure.bbox), "the title must not be cut at the figure's edge"
    assert box.width <= axes.bbox.width + 1, "the title is wrapped to the axes' width after the layout"


def _assert_panel_legends_below_their_axes(figure, panels):
    """Each panel's legend below its axes (outside them) and inside the figure; return the renderer."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for cell in panels:
        (axes,) = cell.axes
        (legend,) = cell.legends
        box = legend.get_window_extent(renderer)
        assert box.y1 <= axes.bbox.y0 + 1, "panel legends sit below their axes"
        assert _inside(box, figure.bbox), "and inside the figure"
        assert not box.overlaps(axes.bbox)
    return renderer


def test_many_rules_become_small_multiples_coloured_by_family_styled_by_sweep(tmp_path):
    curves = {}
    for family in ("apo", "dpo"):
        for index, value in enumerate((0.0, 0.3, 0.5, 0.7, 0.9)):
            curves[f"{family}[alpha={value}]"] = {"suboptimality": lambda t, k=index: (k + 1) / (t + 1.0)}
    table = synthetic(curves)
    rules = plotting.stats.rules_of(table)
    figure = plotting.metric_figure(table, "suboptimality", rules, PlotSpec(), title="x")
    panels = [cell for cell in figure.subfigs if cell.axes]
    assert [cell.axes[0].get_title() for cell in panels] == ["apo", "dpo"]
    assert panels[0].axes[0].get_ylim() == panels[1].axes[0].get_ylim(), "small multiples share the y range"
    _assert_panel_legends_below_their_axes(figure, panels)
    styles = plotting.curve_styles(rules)
    apo = [styles[r] for r in rules if r.startswith("apo")]
    assert len({s["ls"] for s in apo}) == 5, "one line style per swept value"
    hue = [np.asarray(s["color"]) / max(s["color"]) for s in apo]
    assert all(np.allclose(h, hue[0]) for h in hue), "one hue per family (shades of it)"
    assert not np.allclose(styles["apo[alpha=0.0]"]["color"], styles["dpo[alpha=0.0]"]["color"])
    # the same figure with layout = "single" is one axes
    single = plotting.metric_figure(table, "suboptimality", rules, PlotSpec(layout="single"))
    assert len(single.axes) == 1


def test_more_curves_than_a_legend_can_hold_get_a_colour_scale_and_a_normal_height():
    """A 100-value sweep drew 100 legend entries with their fits (a figure 7000 pixels tall); above MANY_CURVES
    the curves follow one colour scale in the sweep's order, a colour bar names the first, middle and last,
    and every curve keeps its band."""
    count = plotting.MANY_CURVES + 8
    curves = {f"inpo[eta={k}]": {"kl_to_nash": lambda t, k=k: 1.0 / (t + k)} for k in range(1, count + 1)}
    table = synthetic(curves, iterations=np.arange(0, 21))
    rules = plotting.stats.rules_of(table)
    figure = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(), title="sweep")
    axes, bar = figure.axes  # the curves' axes and the colour bar's
    assert figure.get_figheight() == plotting.WIDE_FIGURE_SIZE[1]
    assert axes.get_legend_handles_labels() == ([], [])
    assert [tick.get_text() for tick in bar.get_yticklabels()] == ["inpo[eta=1]", "inpo[eta=10]", "inpo[eta=20]"]
    colours = [np.asarray(_curve(axes, rule).get_color()) for rule in rules]
    assert len({tuple(c) for c in colours}) == count and all(_curve(axes, r).prefsim_fit is None for r in rules)
    assert len(axes.collections) == count  # a band per curve
    # their bounds are dotted (apart from the solid curves) under one legend entry
    theory = pd.DataFrame(
        [
            {"rule": r, "iteration": t, "bound": 2.0 / (t + 1), "label": f"Toy bound ({r})"}
            for r in rules
            for t in (1, 20)
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "No artists with labels" from an empty legend either
        axes = plotting.plot_metric(table, "kl_to_nash", theory=theory)
    bound_lines = [line for line in axes.get_lines() if getattr(line, "prefsim_bound", False)]
    assert len(bound_lines) == count and {line.get_linestyle() for line in bound_lines} == {"--"}
    assert axes.get_legend_handles_labels()[1] == ["Toy bounds (thin, dotted)"]
    # at MANY_CURVES or fewer, the legend names each curve with its fit, as before
    few = plotting.metric_figure(table[table["rule"].isin(rules[:3])], "kl_to_nash", rules[:3], PlotSpec())
    assert len(few.axes) == 1 and len(few.legends or [l for c in few.subfigs for l in c.legends]) == 1


def test_curves_at_the_floor_in_a_colour_scale_figure_say_what_the_axis_bottom_line_is():
    """Above MANY_CURVES no curve has a legend entry, and the "▼ from t = …: ≤ floor … or 0 (axis bottom)" of each
    floored curve went with it: its ▼ and line along the axis bottom read as values at the axis bottom (1e-18 in a
    figure where another curve fell legitimately to 1e-17, below the floor of 2.2e-14)."""
    count = plotting.MANY_CURVES + 2
    curves = {
        f"inpo[eta={k}]": {"kl_to_nash": lambda t, k=k: np.where(t < 5 * k, 0.5 ** (t / k), 0.0)}
        for k in range(1, count + 1)
    }
    table = synthetic(curves, iterations=np.arange(0, 101), noise=0.0)
    rules = plotting.stats.rules_of(table)
    figure = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(), title="sweep")
    axes = figure.axes[0]
    floor_lines = [line for line in axes.get_lines() if getattr(line, "prefsim_floor_of", None)]
    assert len(floor_lines) == count
    legends = figure.legends or [legend for cell in figure.subfigs for legend in cell.legends]
    texts = [text.get_text() for legend in legends for text in legend.get_texts()]
    assert texts == ["▼ from there: ≤ floor 2.2×10⁻¹⁴\n  or 0 (axis bottom)"]
    (handle,) = [handle for legend in legends for handle in legend.legend_handles]
    assert handle.get_marker() == "v"
    # one floor per curve at each rule's τ: a τ sweep's floors of TV(π_t, π*) give their range
    with_tau = table.assign(**{"game.tau": table["rule"].map({rule: 0.1 + 0.1 * i for i, rule in enumerate(rules)})})
    axes = plotting.plot_metric(with_tau.rename(columns={"kl_to_nash": "tv_to_optimum"}), "tv_to_optimum")
    (label,) = axes.get_legend_handles_labels()[1]
    assert label == "▼ from there: ≤ each curve's floor, 2.2×10⁻¹⁴ to 1.1×10⁻¹³,\n  or 0 (axis bottom)"


def test_identical_curves_say_so_and_stay_visible():
    same = {"kl_to_nash": lambda t: 1 / (t + 1)}
    table = synthetic({"sppo": same, "dno": same}, noise=0.0)
    axes = plotting.plot_metric(table, "kl_to_nash")
    dno = _curve(axes, "dno")
    assert "(= sppo)" in dno.get_label() and dno.get_linestyle() != _curve(axes, "sppo").get_linestyle()


def test_title_describes_the_problem_actually_run():
    ring = {
        "spec": {"name": "ring", "game": {"kind": "cyclic", "arms": 3, "tau": 0.1}},
        "parsed_spec": {"run": {"mode": "sampled", "problem": "ring", "ring_grid": 25}},
        "seeds": [0],
    }
    title = figure_plan.figure_title(ring)
    assert "problem = ring, K = 625 actions, τ = 0.1" in title and "cyclic" not in title and "K = 3" not in title
    game = {"spec": {"game": {"kind": "bradley_terry", "rewards": [1.0, 0.5, 0.0], "tau": 0.0}}, "seeds": [0, 1]}
    assert "bradley_terry, K = 3" in figure_plan.figure_title(game)


# ----------------------------------------------------------------------------------------------
# the [plot] table


def test_plot_table_selects_rules_metrics_labels_per_seed_and_formats(tmp_path):
    spec = {
        "iterations": 20,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.3},
        "rule": [{"name": "inpo", "eta": [2.0, 4.0]}, {"name": "sppo", "eta": 0.5}],
        "plot": {
            "rules": ["inpo"],
            "metrics": ["kl_to_nash"],
            "per_seed": True,
            "formats": ["pdf", "svg"],
            "labels": {"inpo[eta=2]": "INPO, η = 2"},
        },
    }
    sim.run(spec, out=tmp_path)
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "kl_to_nash.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (tmp_path / "kl_to_nash.svg").read_bytes()[:2000]
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "duality_gap.pdf").exists()
    table = pd.read_csv(tmp_path / "metrics.csv")
    figure = plotting.metric_figure(
        table, "kl_to_nash", ["inpo[eta=2]", "inpo[eta=4]"], parse_plot(spec["plot"]), title="t"
    )
    axes = figure.axes[0]
    labels = [line.get_label() for line in axes.get_lines() if not line.get_label().startswith("_")]
    assert any(label.startswith("INPO, η = 2") for label in labels)
    assert not any(label.startswith("sppo") for label in labels)
    thin = [line for line in axes.get_lines() if line.get_label() == "_nolegend_" and line.get_linewidth() == 0.5]
    assert len(thin) == 2 * 3  # per-seed curves: 2 rules × 3 seeds


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"colour": "red"}, "plot: unknown key"),
        ({"formats": ["jpg"]}, "plot.formats"),
        ({"layout": "grid"}, "plot.layout"),
        ({"fit": "cubic"}, "plot.fit"),
        ({"per_seed": "yes"}, "plot.per_seed"),
        ({"labels": {"a": 1}}, "plot.labels"),
        ({"rules": []}, "plot.rules"),
        ({"title": 3}, "plot.title: expected a string"),
        ({"title": " "}, "plot.title: an empty title"),  # it was replaced by the default without a word
    ],
)
def test_plot_table_rejects_bad_input(table, message):
    with pytest.raises(PrefsimError, match=message):
        parse_plot(table)


def test_plot_table_names_only_rules_of_the_run():
    spec = {
        "iterations": 2,
        "game": {"kind": "random", "arms": 3, "tau": 0.3},
        "rule": [{"name": "inpo", "eta": 4.0}],
        "plot": {"rules": ["sppo"]},
    }
    with pytest.raises(PrefsimError, match="plot.rules: 'sppo' is not a rule of this run"):
        sim.spec.parse_spec(spec)
    assert sim.spec.parse_spec({**spec, "plot": {"rules": ["inpo"]}}).plot.rules == ("inpo",)


def test_plot_table_does_not_change_the_fingerprint():
    from sim.experiment import spec_fingerprint

    base = {"iterations": 2, "game": {"kind": "random", "arms": 3, "tau": 0.3}, "rule": [{"name": "inpo", "eta": 4.0}]}
    plotted = {**base, "plot": {"formats": ["svg"]}}
    assert spec_fingerprint(sim.spec.parse_spec(base)) == spec_fingerprint(sim.spec.parse_spec(plotted))


def test_a_curve_that_keeps_falling_far_below_epsilon_is_not_at_the_floor():
    # TV to a point mass is a sum of tiny probabilities, computed without cancellation: 0.5^t down to 1e-90.
    # Not at the floor (no warning, no "≈ 0"), but the fit uses only the values above TV's floor (1e-12,
    # below it from t = 40 on), and the label says so
    table = synthetic({"a": {"tv_to_optimum": lambda t: 0.5**t}}, iterations=np.arange(0, 301), noise=0.0)
    line = _curve(plotting.plot_metric(table, "tv_to_optimum"), "a")
    assert line.prefsim_fit_choice.floor_iteration is None
    assert line.prefsim_fit.span == (3, 39) and line.prefsim_fit.slope == pytest.approx(math.log(0.5))
    assert "t 3–39" in line.get_label()


def _swept(taus, arms=(3,)) -> pd.DataFrame:
    """A synthetic table of a sweep over game.tau (× game.arms): two rules per point, columns as sim.run writes."""
    curves, values = {}, {}
    for a in arms:
        for tau in taus:
            for rule, k in (("inpo", 1.0), ("mmd", 2.0)):
                label = f"{rule}[game.arms={a},game.tau={tau:g}]"
                curves[label] = {"kl_to_nash": lambda t, k=k, tau=tau: k * (1 + tau) / (t + 1.0)}
                values[label] = (a, tau)
    table = synthetic(curves, iterations=np.arange(0, 51))
    table.insert(3, "game.arms", [values[r][0] for r in table["rule"]])
    table.insert(4, "game.tau", [values[r][1] for r in table["rule"]])
    return table


def test_a_swept_game_field_gets_one_panel_per_value_with_legends_outside_and_titles_that_fit():
    table = _swept((0.05, 0.1, 0.2), arms=(3, 5))
    rules = plotting.stats.rules_of(table)
    title = "a sweep over tau and arms with a rather long title that must wrap " * 2
    figure = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(), title=title)
    panels = [cell for cell in figure.subfigs if cell.axes]
    assert [cell.axes[0].get_title() for cell in panels] == [
        f"game.arms={a}, game.tau={t:g}" for a in (3, 5) for t in (0.05, 0.1, 0.2)
    ]
    for cell in panels:  # each panel holds that point's two rules
        assert sorted(line.prefsim_rule.split("[")[0] for line in cell.axes[0].get_lines()
                      if getattr(line, "prefsim_rule", None)) == ["inpo", "mmd"]  # fmt: skip
    # a rule keeps its colour and line style in every panel
    looks = {
        (line.prefsim_rule.split("[")[0], line.get_linestyle(), tuple(line.get_color()))
        for cell in panels
        for line in cell.axes[0].get_lines()
        if getattr(line, "prefsim_rule", None)
    }
    assert len(looks) == 2
    renderer = _assert_panel_legends_below_their_axes(figure, panels)
    for cell in panels:
        assert _inside(cell.axes[0].title.get_window_extent(renderer), cell.bbox), "panel titles fit their panel"
    assert _inside(figure._suptitle.get_window_extent(renderer), figure.bbox), "the title is not cut"
    # facet = ["game.tau"]: one panel per τ, both arms in it; "none" or layout = "single": shared axes
    by_tau = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(facet=("game.tau",)))
    assert [cell.axes[0].get_title() for cell in by_tau.subfigs if cell.axes] == [
        "game.tau=0.05", "game.tau=0.1", "game.tau=0.2"
    ]  # fmt: skip
    assert len(plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(facet="none", layout="single")).axes) == 1
    with pytest.raises(PrefsimError, match="plot.facet: game.strength is not swept in this run"):
        plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(facet=("game.strength",)))


def test_too_many_facets_share_the_axes_and_the_title_says_so():
    table = _swept(tuple(0.01 * (i + 1) for i in range(figure_plan.MAX_FACETS + 1)))
    rules = plotting.stats.rules_of(table)
    figure = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(layout="single"), title="sweep")
    assert [a.get_label() for a in figure.axes[1:]] == ["<colorbar>"] * (len(rules) > plotting.MANY_CURVES)
    assert f"13 values of game.tau: more than {figure_plan.MAX_FACETS} panels" in figure._suptitle.get_text().replace(
        "\n", " "
    )


def assert_same_files(first: list[Path], second: list[Path]) -> None:
    """The same file names in the same order, byte for byte."""
    assert [p.name for p in first] == [p.name for p in second]
    for one, other in zip(first, second):
        assert one.read_bytes() == other.read_bytes(), one.name


def test_many_figures_are_drawn_in_another_process_too_and_equal_the_ones_drawn_here(tmp_path, cyclic_table):
    serial = plotting.plot_run(cyclic_table, tmp_path / "serial")
    table_rules = plotting.stats.rules_of(cyclic_table)
    groups, panels, _, _ = figure_plan.figure_layout(cyclic_table, table_rules, PlotSpec())
    assert not panels and len(groups) == 2  # two families on one axes
    stages = []

    class Recorder:
        def stage(self, index, total, label, unit="rules"):
            stages.append((index, total, label, unit))

    started = []
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(figure_plan, "PARALLEL_DRAWING_S", 0.0)  # any drawing is "long": a process is started
        patch.setattr(figure_plan, "usable_cores", lambda: 2)
        patch.setattr(figure_plan, "FigureWorker", lambda: started.append(FigureWorker()) or started[-1])
        parallel = plotting.plot_run(cyclic_table, tmp_path / "parallel", progress=Recorder())
    finally:
        patch.undo()
    assert len(started) == 1 and started[0].process.poll() is not None  # started, then ended
    assert_same_files(serial, parallel)
    # a stage per figure drawn here, counting the figures finished anywhere
    count = len(serial)
    indices = [index for index, *_ in stages]
    assert indices[0] == 0 and indices == sorted(indices) and all(total == count for _, total, *_ in stages)
    labels = [label for _, _, label, _ in stages]
    assert len(set(labels)) == len(labels) and all(label.startswith("drawing ") for label in labels)


def ready_worker(timeout: float = 120.0) -> FigureWorker:
    """A started FigureWorker once it says it is ready (its imports done)."""
    worker = FigureWorker()
    deadline = time.monotonic() + timeout
    while not worker.is_ready():
        assert worker.process.poll() is None, worker.stderr_text()
        assert time.monotonic() < deadline, "the figure process did not get ready"
        time.sleep(0.05)
    return worker


def figure_job(table, out_dir):
    """The FigureJob plot_run would send for ``table`` with the default [plot] table, into ``out_dir``."""
    return figure_plan.FigureJob(table, plotting.stats.rules_of(table), PlotSpec(), None, None, "float64", out_dir)


def test_a_figure_process_raises_a_figures_error_and_goes_on(tmp_path, cyclic_table):
    job = figure_job(cyclic_table, tmp_path)
    worker = FigureWorker()
    try:
        with pytest.raises(PrefsimError, match="no_such_metric' is not a column"):
            worker.draw(job, "no_such_metric")
        assert worker.draw(job, "kl_to_nash") == [tmp_path / "kl_to_nash.png"]
        assert (tmp_path / "kl_to_nash.png").read_bytes().startswith(PNG_MAGIC)
    finally:
        worker.stop()
    assert worker.process.returncode == 0  # idle with a job: asked to exit, it did


def test_a_figure_process_that_died_is_a_clear_error_and_stop_ends_an_idle_one(tmp_path, cyclic_table):
    job = figure_job(cyclic_table, tmp_path)
    worker = FigureWorker()
    worker.process.kill()
    with pytest.raises(PrefsimError, match=r"a figure process failed \(exit -9; "):
        worker.draw(job, "kl_to_nash")
    worker.stop()
    assert not (tmp_path / "kl_to_nash.png").exists()
    idle = FigureWorker()  # never sent a job: killed, pipes closed
    idle.stop()
    assert idle.process.returncode == -9 and idle.process.stdout.closed


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities on this platform")
def test_a_figure_process_lowers_its_priority_before_it_imports_anything_heavy(tmp_path):
    # the worker's command run with a stand-in sim.plotting that reports the priority at its import
    package = tmp_path / "sim"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plotting.py").write_text(
        "import os, sys\nsys.stdout.write(str(os.nice(0)))\ndef serve_figures():\n    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", figure_worker.WORKER_COMMAND],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == min(19, os.nice(0) + figure_worker.WORKER_NICENESS)


def test_messages_are_length_prefixed_pickles_and_a_cut_message_is_an_eof():
    stream = io.BytesIO()
    figure_worker.send_message(stream, {"kl_to_nash": [Path("a.png")]})
    figure_worker.send_message(stream, None)
    whole = stream.getvalue()
    stream.seek(0)
    assert figure_worker.read_message(stream) == {"kl_to_nash": [Path("a.png")]}
    assert figure_worker.read_message(stream) is None
    cut = io.BytesIO(whole[:-3])  # the second message loses its last bytes
    assert figure_worker.read_message(cut) == {"kl_to_nash": [Path("a.png")]}
    with pytest.raises(EOFError):
        figure_worker.read_message(cut)
    with pytest.raises(EOFError):
        figure_worker.read_message(io.BytesIO(b""))


def test_a_ready_worker_shares_the_figures_byte_for_byte(tmp_path, cyclic_table):
    serial = plotting.plot_run(cyclic_table, tmp_path / "serial")
    worker = ready_worker()
    by_worker = []
    first_from_worker = threading.Event()
    drawing = worker.draw

    def recorded(job, metric):
        paths = drawing(job, metric)
        by_worker.append(metric)
        first_from_worker.set()
        return paths

    worker.draw = recorded
    stages = []

    class Recorder:
        def stage(self, index, total, label, unit="rules"):
            # this process waits for the worker's first figure before its own last one, so both draw
            if index == len(serial) - 2:
                assert first_from_worker.wait(120)
            stages.append(label.removeprefix("drawing "))

    parallel = plotting.plot_run(cyclic_table, tmp_path / "parallel", progress=Recorder(), workers=[worker])
    assert worker.process.poll() is not None  # a worker serves one plot_run
    assert_same_files(serial, parallel)
    # every figure announced once, wherever it was drawn; the worker took them from the back, this
    # process from the front
    names = [p.stem for p in serial]
    assert sorted(stages) == sorted(names)
    assert by_worker and by_worker == names[::-1][: len(by_worker)]
    here = [name for name in stages if name not in by_worker]
    assert here[:-1] == names[: len(here) - 1]  # the last may be one taken back from a slow worker


class StuckWorker:
    """A stand-in for a FigureWorker that never gets ready: draw() blocks until stop()."""

    def __init__(self):
        self.ready, self.stopped, self.asked = False, threading.Event(), []

    def draw(self, job, metric):
        self.asked.append(metric)
        self.stopped.wait(60)
        raise figure_worker.FigureProcessLost("a figure process failed (exit -9): ")

    def is_ready(self):
        return self.ready

    def stop(self):
        self.stopped.set()


def recorded_in(here: list):
    """A ``draw_here`` for draw_shared that notes each metric it is given in ``here`` and 'draws' it."""

    def draw_here(metric):
        here.append(metric)
        return [Path(f"{metric}.png")]

    return draw_here


class QuickWorker(StuckWorker):
    """A ready stand-in for a FigureWorker that 'draws' a figure in ``seconds``."""

    def __init__(self, seconds=0.01):
        super().__init__()
        self.ready, self.seconds = True, seconds

    def draw(self, job, metric):
        self.asked.append(metric)
        time.sleep(self.seconds)
        return [Path(f"{metric}.png")]


def test_with_as_many_ready_workers_as_cores_this_process_leaves_every_figure_to_them():
    here, announced = [], []
    draw_here = recorded_in(here)
    workers = [QuickWorker(), QuickWorker()]
    paths = figure_worker.draw_shared(
        list("abcdef"), draw_here, None, workers, lambda done, metric: announced.append(metric), cores=2
    )
    assert paths == {name: [Path(f"{name}.png")] for name in "abcdef"}
    assert here == [] and sorted(workers[0].asked + workers[1].asked) == list("abcdef")
    assert sorted(announced) == list("abcdef")  # each figure announced once, though drawn elsewhere
    # one ready worker for two cores: this process draws too, from the front
    one = QuickWorker(0.05)
    figure_worker.draw_shared(list("abcdef"), draw_here, None, [one], cores=2)
    assert here[0] == "a" and one.asked[0] == "f" and set(here) | set(one.asked) == set("abcdef")


def test_a_ready_worker_that_finishes_nothing_gets_its_figures_drawn_here_after_the_patience():
    stuck = StuckWorker()
    stuck.ready = True  # ready, but its figure never comes back (a starved or hung process)
    here = []
    draw_here = recorded_in(here)
    began = time.monotonic()
    paths = figure_worker.draw_shared(list("abc"), draw_here, None, [stuck], average_seconds=0.1, cores=1)
    waited = time.monotonic() - began
    assert paths == {name: [Path(f"{name}.png")] for name in "abc"}
    assert stuck.asked == ["c"] and here == ["a", "b", "c"] and stuck.stopped.is_set()
    assert waited >= figure_worker.MIN_PATIENCE_SECONDS  # it waited before a (not again before b: see below)


def test_after_drawing_a_figure_itself_this_process_does_not_wait_again_for_workers_that_finish_nothing():
    """Its own figure is no sign that the workers are getting on: once they have finished nothing for the
    patience, this process draws the figures left one after another (it waited the patience again before
    each, and a machine busy with other work starved the workers: half its time idle)."""
    stuck = StuckWorker()
    stuck.ready = True
    starts = []

    def draw_here(metric):
        starts.append(time.monotonic())
        time.sleep(0.3)
        return [Path(f"{metric}.png")]

    paths = figure_worker.draw_shared(list("abcde"), draw_here, None, [stuck], average_seconds=0.1, cores=1)
    assert set(paths) == set("abcde") and stuck.asked == ["e"]
    gaps = np.diff(starts)  # 0.3 s of drawing each; waiting the patience (≥ 0.5 s) again made them ≥ 0.8 s
    assert len(gaps) == 4 and gaps.max() < 0.3 + figure_worker.MIN_PATIENCE_SECONDS, gaps


def test_workers_starved_by_a_busy_machine_do_not_keep_this_process_waiting():
    """A worker runs at the lowest priority: on a machine busy with other work its figures take far longer
    in wall time than in CPU time.  Its patience counts the CPU time, so this process (at normal priority)
    draws too; with wall times (1.5 s a figure, patience 3 s) it left every figure to the crawling workers."""

    class Starved(QuickWorker):
        def draw(self, job, metric):
            paths = super().draw(job, metric)
            self.last_cpu_seconds = 0.05  # of the 1.5 s it took: 3% of a core
            return paths

    here = []
    workers = [Starved(1.5), Starved(1.5)]
    paths = figure_worker.draw_shared(list("abcdefgh"), recorded_in(here), None, workers, cores=2)
    assert paths == {name: [Path(f"{name}.png")] for name in "abcdefgh"}
    assert len(here) >= 4, (here, workers[0].asked, workers[1].asked)


def test_a_figure_out_in_a_worker_that_is_not_ready_is_drawn_here():
    here = []
    worker = StuckWorker()
    draw_here = recorded_in(here)
    paths = figure_worker.draw_shared(["a", "b", "c"], draw_here, None, [worker])
    assert paths == {name: [Path(f"{name}.png")] for name in "abc"}
    assert worker.asked == ["c"] and worker.stopped.is_set()
    assert here == ["a", "b", "c"]  # c taken back after a and b


def test_the_figure_of_a_lost_figure_process_is_drawn_here_without_an_error():
    class Lost(StuckWorker):
        def draw(self, job, metric):
            self.asked.append(metric)
            if len(self.asked) == 1:
                return [Path(f"{metric}.png")]
            raise figure_worker.FigureProcessLost("a figure process failed (exit -11): ")

    lost, here = Lost(), []

    def draw_here(metric):
        time.sleep(0.1)  # slower than the worker: it takes d, then c, and is lost on c
        here.append(metric)
        return [Path(f"{metric}.png")]

    paths = figure_worker.draw_shared(["a", "b", "c", "d"], draw_here, None, [lost])
    assert paths == {name: [Path(f"{name}.png")] for name in "abcd"}
    assert lost.asked == ["d", "c"] and here == ["a", "b", "c"] and lost.stopped.is_set()


def test_a_figure_error_in_a_worker_is_raised_after_every_worker_stopped():
    class Failing(StuckWorker):
        def draw(self, job, metric):
            raise ValueError(f"cannot draw {metric}")

    failing, stuck = Failing(), StuckWorker()
    with pytest.raises(ValueError, match="cannot draw"):
        figure_worker.draw_shared(["a", "b", "c", "d"], lambda m: time.sleep(0.2) or [Path(m)], None, [failing, stuck])
    assert failing.stopped.is_set() and stuck.stopped.is_set()


RUN_SPEC = """
iterations = 20
seeds = 2
[game]
kind = "random"
arms = 3
tau = 0.3
[[rule]]
name = "inpo"
eta = 2.0
"""


def test_a_run_whose_figure_processes_are_ready_leaves_them_every_figure_and_never_imports_matplotlib(tmp_path):
    spec, out = tmp_path / "small.toml", tmp_path / "out"
    spec.write_text(RUN_SPEC)
    code = (
        "import sys, time\n"
        "import sim.cli as cli\n"
        "from sim.figure_worker import FigureWorker\n"
        "def start():\n"
        "    workers = [FigureWorker(), FigureWorker()]\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not all(worker.is_ready() for worker in workers):\n"
        "        assert time.monotonic() < deadline, 'the figure processes did not get ready'\n"
        "        time.sleep(0.05)\n"
        "    return workers\n"
        "cli.start_figure_workers = start\n"
        "cli.usable_cores = lambda: 2\n"
        f"assert cli.main(['run', {str(spec)!r}, '--out', {str(out)!r}, '--quiet']) == 0\n"
        "print(sorted(name for name in ('matplotlib', 'sim.plotting') if name in sys.modules))\n"
    )
    assert python_output(code) == "[]"
    drawn = sorted(out.glob("*.png"))
    assert {path.stem for path in drawn} >= {"kl_to_nash", "duality_gap"}
    assert all(path.read_bytes().startswith(PNG_MAGIC) for path in drawn)


def test_a_runs_figure_processes_start_before_jax_is_imported(tmp_path):
    """They import on the core this process leaves idle while it imports JAX and builds its games."""
    spec = tmp_path / "small.toml"
    spec.write_text(RUN_SPEC)
    code = (
        "import sys\n"
        "import sim.cli as cli\n"
        "seen = []\n"
        "cli.start_figure_workers = lambda: seen.append('jax' in sys.modules) or []\n"
        f"assert cli.main(['run', {str(spec)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet']) == 0\n"
        "print(seen)\n"
    )
    assert python_output(code) == "[False]"


def test_prefsim_run_starts_figure_processes_first_and_ends_them(tmp_path, monkeypatch):
    spec = tmp_path / "small.toml"
    spec.write_text(RUN_SPEC)
    started = []

    def recording(count):
        def start():
            workers = [ready_worker() for _ in range(count)]  # ready: it certainly gets figures
            started.append(workers)
            return workers

        return start

    monkeypatch.setattr(cli, "start_figure_workers", recording(0))
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "alone"), "--quiet"]) == 0
    monkeypatch.setattr(cli, "start_figure_workers", recording(1))
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "shared"), "--quiet"]) == 0
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "none"), "--quiet", "--no-plots"]) == 0
    # a spec that fails after the worker started: the worker is ended all the same
    (tmp_path / "bad.toml").write_text(RUN_SPEC.replace("eta = 2.0", "eta = 0.1"))
    assert cli.main(["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert [len(workers) for workers in started] == [0, 1, 1]  # none for --no-plots
    # every one ended: the first when the figures were drawn (it exits when idle, or is killed when a
    # figure it still draws was taken back on a loaded machine), the second, never sent figures, killed
    codes = [worker.process.poll() for workers in started for worker in workers]
    assert codes[0] in (0, -9) and codes[1] == -9
    alone = sorted((tmp_path / "alone").glob("*.png"))
    assert alone
    assert_same_files(alone, sorted((tmp_path / "shared").glob("*.png")))
    assert not list((tmp_path / "none").glob("*.png"))


def test_a_figure_process_the_system_cannot_start_is_one_helper_fewer():
    made = []

    def make():
        if len(made) == 2:
            raise OSError(11, "Resource temporarily unavailable")
        made.append("worker")
        return made[-1]

    assert figure_worker.start_workers(3, make) == ["worker", "worker"]
    assert figure_worker.start_workers(0, make) == [] and figure_worker.start_workers(-1, make) == []


def test_figure_processes_are_one_per_core_up_to_the_cap_and_none_on_one_core(monkeypatch):
    for cores, expected in ((1, 0), (2, 2), (3, 3), (64, cli.EARLY_FIGURE_WORKERS)):
        monkeypatch.setattr(cli, "usable_cores", lambda cores=cores: cores)
        monkeypatch.setattr(cli, "FigureWorker", lambda: "worker")
        assert cli.start_figure_workers() == ["worker"] * expected


def test_log_axis_labels_are_plain_text_with_the_same_numbers():
    assert plotting.plain_power_label(r"$\mathdefault{10^{-3}}$") == "10⁻³"
    assert plotting.plain_power_label(r"$\mathdefault{2.2\times10^{-1}}$") == "2.2×10⁻¹"
    assert plotting.plain_power_label(r"$\mathdefault{-10^{12}}$") == "−10¹²"
    assert plotting.plain_power_label(r"$\mathdefault{0}$") == "0"
    assert plotting.plain_power_label(r"$\mathdefault{10^{0.50}}$") == r"$\mathdefault{10^{0.50}}$"  # kept
    assert plotting.plain_power_label("") == ""
    reference = matplotlib.ticker.LogFormatterSciNotation(labelOnlyBase=False)
    plain = plotting.PlainLogFormatter(labelOnlyBase=False)
    figure, axes = plotting.new_figure()
    axes.set_yscale("log")
    axes.set_ylim(1e-5, 0.3)
    for formatter in (reference, plain):
        formatter.set_axis(axes.yaxis)
        formatter.set_locs([1e-4, 2e-3, 0.2])
    for value in (1e-4, 2e-3, 3e-3, 0.2, 1.0, 1e6):
        assert plain(value) == plotting.plain_power_label(reference(value))


def test_a_metric_figure_draws_no_mathtext_tick_label(cyclic_table):
    figure = plotting.metric_figure(cyclic_table, "kl_to_nash", ["inpo", "sppo"], parse_plot(None))
    figure.canvas.draw()
    (axes,) = [axes for axes in figure.get_axes() if axes.get_yscale() == "log"]
    labels = [tick.get_text() for tick in axes.get_yticklabels() + axes.get_xticklabels() if tick.get_text()]
    assert labels and not any("$" in text for text in labels)
    assert isinstance(axes.yaxis.get_major_formatter(), plotting.PlainLogFormatter)
    assert isinstance(axes.xaxis.get_major_formatter(), plotting.PlainLogFormatter)


def test_a_floored_curve_gets_two_decades_of_axis_below_the_data_but_none_below_its_floor():
    # τ = 1, record_every = 200: KL 7e-3 at t = 0, then 1.6e-16 (the floor) from t = 200.  The axis spanned only
    # the band at t = 0 ([2.8e-3, 1.2e-2]), so the line along its bottom read as a plateau at 2.8e-3
    floor = diagnostics.precision_floor("float64")
    table = synthetic({"mmd": {"kl_to_nash": lambda t: np.where(t == 0, 7e-3, 1.6e-16)}}, iterations=[0, 200, 400])
    axes = plotting.plot_metric(table, "kl_to_nash")
    curve = _curve(axes, "mmd")
    bottom, top = axes.get_ylim()
    start = table.loc[table["iteration"] == 0, "kl_to_nash"]  # the lowest value shown: the band's at t = 0
    assert floor <= bottom <= start.mean() / 100 and top > start.mean()
    assert curve.prefsim_floor_from == 200
    assert "▼ from t = 200: ≤ floor 2.2×10⁻¹⁴ or 0 (axis bottom)" in curve.get_label()
    (at_floor,) = [line for line in axes.get_lines() if getattr(line, "prefsim_floor_of", None) == "mmd"]
    assert at_floor.get_marker() == "v" and np.all(at_floor.get_ydata()[1:] == plotting.FLOOR_LINE_HEIGHT)
    # the band stops where the mean reaches the floor: no wedge from t = 0 down to 1e-16 across the axis
    (band,) = axes.collections
    assert band.get_paths()[0].vertices[:, 0].max() == 0.0
    # data within two decades of the floor: the bottom stops at the floor
    near = synthetic({"a": {"kl_to_nash": lambda t: np.where(t < 10, 1e-12 * 0.5**t, 1e-17)}}, noise=0.0)
    assert plotting.plot_metric(near, "kl_to_nash").get_ylim()[0] == pytest.approx(floor)
    # no floored curve: the axis keeps Matplotlib's range
    plain = synthetic({"a": {"kl_to_nash": lambda t: 7e-3 * 0.99**t}}, noise=0.0)
    assert plotting.plot_metric(plain, "kl_to_nash").get_ylim()[0] > 7e-3 * 0.99**200 / 2


def test_a_band_whose_lower_end_is_zero_runs_to_the_axis_bottom_not_to_the_mean():
    """Three of four seeds at exactly 0 from t = 5, one still falling: the mean is 1e-4 × 0.9ᵗ / 4, above the
    floor, and a bootstrap resample without the fourth seed (p = (3/4)⁴ ≈ 0.32) has mean 0, so the band's lower
    end is 0.  A log axis cannot show 0: the band was drawn from the mean up (its lower edge jumped to the curve
    where the lower end was 0, and ran down past the axis where it was a rounding residue of 1e-17)."""
    iterations = np.arange(0, 41)
    rows = []
    for seed in range(4):
        values = 1e-4 * 0.9**iterations if seed == 3 else np.where(iterations < 5, 1e-4 * 0.9**iterations, 0.0)
        rows.append(pd.DataFrame({"rule": "a", "seed": seed, "iteration": iterations, "kl_to_nash": values}))
    table = pd.concat(rows, ignore_index=True)
    summary = sim.stats.curve_summary(table, "kl_to_nash")
    zero_lower = summary.loc[summary["lower"] <= 0, "iteration"].to_numpy()
    assert zero_lower.size > 30 and zero_lower.min() == 5
    axes = plotting.plot_metric(table, "kl_to_nash", fit_window=None)
    (band,) = axes.collections
    vertices = band.get_paths()[0].vertices
    bottom = axes.get_ylim()[0]
    for iteration in zero_lower:
        at = vertices[vertices[:, 0] == iteration, 1]
        mean = summary.loc[summary["iteration"] == iteration, "center"].item()
        assert at.min() <= bottom < mean, f"t = {iteration}: the band stops at {at.min():.3g}, above the axis bottom"
    # the axis is still set by the data, not by the band's lower end
    assert bottom >= summary["center"][summary["center"] > 0].min() / 10


def test_the_tv_floor_of_a_figure_is_the_accuracy_of_pi_star_at_each_rules_tau(tmp_path):
    # τ = 1: π* is accurate to ~4e-15; a linear rate down to there is convergence to the precision's floor
    # (crossed at t = 187), not rounding from 1e-12 (crossed at t = 163), and the fit may run past 163
    table = synthetic(
        {"a": {"tv_to_optimum": lambda t: np.maximum(0.3 * 0.85**t, 4e-15)}}, iterations=np.arange(0, 301), noise=0.0
    )
    line = _curve(plotting.plot_metric(table, "tv_to_optimum", tau=1.0), "a")
    assert line.prefsim_floor_from == 187 and line.prefsim_fit.span[1] > 163
    assert _curve(plotting.plot_metric(table, "tv_to_optimum"), "a").prefsim_floor_from == 163  # τ unknown
    # the run's τ reaches the figures from its manifest
    plan = figure_plan.plan_figures(table, tmp_path, {"spec": {"game": {"tau": 1.0}}})
    assert plan.job.tau == 1.0
    # a τ sweep: each rule's own τ from the table's game.tau column; at τ = 0.002 π*'s error reaches 2.45e-12,
    # so a plateau at 2e-12 is at the floor (5.0e-12) there, and a value at τ = 0.1 (floor 1.1e-13)
    plateau = {"tv_to_optimum": lambda t: np.maximum(0.3 * 0.85**t, 2e-12)}
    sweep = synthetic({"a[game.tau=0.002]": plateau, "a[game.tau=0.1]": plateau}, noise=0.0)
    sweep.insert(3, "game.tau", np.where(sweep["rule"] == "a[game.tau=0.002]", 0.002, 0.1))
    axes = plotting.plot_metric(sweep, "tv_to_optimum", tau=1.0)
    small = _curve(axes, "a[game.tau=0.002]")
    assert small.prefsim_floor_from is not None and "≤ floor 5.0×10⁻¹²" in small.get_label()
    assert _curve(axes, "a[game.tau=0.1]").prefsim_floor_from is None


def test_rounding_residues_and_zeros_do_not_set_the_log_axis_and_a_floored_curve_runs_along_its_bottom():
    """inpo_eta_crit's kl_to_nash: a mean of 1e-26 at one iteration (most seeds exactly 0) stretched the log axis
    to 1e-26, and the curve vanished where it was exactly 0.  The axis' bottom is set by values above the
    precision floor; from the iteration the curve reaches the floor, its values ≤ floor (zeros too) run along
    the axis bottom from a ▼, and its legend entry says so."""
    floor = diagnostics.precision_floor("float64")

    def floored(t):
        return np.where(t <= 150, np.exp(-0.2 * t), np.where(t == 170, 1e-26, np.where(t < 250, 1e-17, 0.0)))

    table = synthetic({"below": {"kl_to_nash": lambda t: 0.3 + 0 * t}, "above": {"kl_to_nash": floored}}, noise=0.0)
    axes = plotting.plot_metric(table, "kl_to_nash")
    bottom, _ = axes.get_ylim()
    lowest_above_floor = np.exp(-0.2 * 150)
    # the bottom: the lowest value above the floor less Matplotlib's 5% margin (log space), not 1e-26
    assert floor / 10 < bottom < lowest_above_floor, "values at or below the floor do not set the axis' bottom"
    curve = _curve(axes, "above")
    assert curve.prefsim_floor_from == 151 and "▼ from t = 151: ≤ floor 2.2×10⁻¹⁴ or 0" in curve.get_label()
    assert np.all(np.isnan(curve.get_ydata()[curve.get_xdata() > 150])), "no value ≤ floor drawn as a value"
    (at_floor,) = [line for line in axes.get_lines() if getattr(line, "prefsim_floor_of", None) == "above"]
    x, y = at_floor.get_xdata(), at_floor.get_ydata()
    assert at_floor.get_transform() == axes.get_xaxis_transform(), "y in axes fraction: on the bottom at any range"
    assert np.all(y[x > 150] == plotting.FLOOR_LINE_HEIGHT) and np.all(np.isnan(y[x <= 150]))
    assert at_floor.get_marker() == "v" and list(at_floor.get_markevery()) == [int(np.argmax(x > 150))]
    assert _curve(axes, "below").prefsim_floor_from is None
    # a curve that keeps falling far below the floor is not at it: it keeps its values and the axis follows it
    falling = synthetic({"tv": {"tv_to_optimum": lambda t: np.exp(-0.3 * t)}}, noise=0.0)
    axes = plotting.plot_metric(falling, "tv_to_optimum")
    assert _curve(axes, "tv").prefsim_floor_from is None and axes.get_ylim()[0] < np.exp(-0.3 * 200)


def test_the_panels_of_a_row_have_one_axes_height_and_position_whatever_their_legends():
    """apo_exact's regret.png: constrained layout sized each panel's axes around its own legend, so the panel
    with the longest legend was the shortest, with the y range shared."""
    curves = {f"apo[alpha={k / 10}]": {"regret": lambda t, k=k: (k + 1) * np.log1p(t)} for k in range(5)}
    curves |= {f"dpo[beta={k}]": {"regret": lambda t, k=k: (k + 2) * np.log1p(t)} for k in (1, 2)}
    curves["apo_nesterov"] = {"regret": lambda t: 3 * np.log1p(t)}
    curves["mmd"] = {"regret": lambda t: 4 * np.log1p(t)}
    table = synthetic(curves, iterations=np.arange(0, 21))
    figure = plotting.metric_figure(table, "regret", plotting.stats.rules_of(table), PlotSpec(), title="regret")
    panels = [cell for cell in figure.subfigs if cell.axes]
    assert len(panels) == 4  # apo, dpo, apo_nesterov in the first row; mmd in the second
    _assert_panel_legends_below_their_axes(figure, panels)
    first_row = [cell.axes[0].get_position() for cell in panels[:3]]
    assert len({(round(box.y0, 9), round(box.height, 9)) for box in first_row}) == 1
    legend_tops = [cell.legends[0].get_window_extent().y1 for cell in panels[:3]]
    assert max(legend_tops) - min(legend_tops) < 1.0, "the row's legends hang from one line"
    # the positions are the ones written: the file is drawn without a second layout
    png = io.BytesIO()
    plotting.write_png(figure, png, 100)
    assert [cell.axes[0].get_position().bounds for cell in panels[:3]] == [box.bounds for box in first_row]


def test_more_than_ten_families_never_share_a_hue_without_a_marker():
    """tab20 gave the 11 families of a figure light and dark shades of ten hues: unrelated rules looked like one
    family's sweep.  Past ten families the hues come back with a marker of their own."""
    families = ["inpo", "mmd", "nash_md", "online_ipo", "extragradient", "optimistic"]
    families += ["sppo", "dno", "comal", "mpo", "mnpo", "apo"]
    styles = plotting.curve_styles(families + ["apo[alpha=0.5]"])

    def hue(colour):
        h, s, _ = colorsys.rgb_to_hsv(*colour[:3])
        return None if s < 0.1 else 360.0 * h

    for index, first in enumerate(families):
        for second in families[index + 1 :]:
            a, b = hue(styles[first]["color"]), hue(styles[second]["color"])
            same = (a is None and b is None) or (
                a is not None and b is not None and min(abs(a - b), 360 - abs(a - b)) < 5
            )
            if same:
                assert styles[first].get("marker", "") != styles[second].get("marker", ""), (first, second)
    assert styles["mnpo"]["color"] == styles["inpo"]["color"] and styles["mnpo"]["marker"] == "o"
    assert styles["apo[alpha=0.5]"]["marker"] == "o", "a family's sweep keeps the family's marker"
    assert "marker" not in plotting.curve_styles(families[:10])["mpo"], "ten families or fewer: no markers"
    table = synthetic({rule: {"kl_to_nash": lambda t, k=k: (k + 1) / (t + 1)} for k, rule in enumerate(families)})
    axes = plotting.plot_metric(table, "kl_to_nash", fit_window=None)
    assert _curve(axes, "mnpo").get_marker() == "o" and _curve(axes, "inpo").get_marker() in ("None", "", None)


def test_a_bound_drawn_for_several_rules_names_every_one_of_them():
    """single11.py: the Hedge regret bound of sppo and of dno had one legend entry, in sppo's colour; dno's bound
    went unexplained.  A label drawn for several rules names them; one drawn for one rule reads as before."""
    table = synthetic({rule: {"exploitability": lambda t: 1 / (t + 1)} for rule in ("sppo", "dno", "mmd")})
    theory = pd.DataFrame(
        [
            {"rule": rule, "iteration": t, "bound": scale / (t + 1), "label": f"{label} ({rule})"}
            for rule, label, scale in (
                ("sppo", "Hedge regret bound", 5),
                ("dno", "Hedge regret bound", 3),
                ("mmd", "MMD rate bound", 2),
            )
            for t in (1, 100)
        ]
    )
    axes = plotting.plot_metric(table, "exploitability", theory=theory, labels={"dno": "DNO"}, fit_window=None)
    texts = [text for text in axes.get_legend_handles_labels()[1] if "bound" in text]
    assert texts == ["Hedge regret bound (thin, in each rule's colour:\n  sppo, DNO)", "MMD rate bound (thin)"]
    bound_lines = [line for line in axes.get_lines() if getattr(line, "prefsim_bound", False)]
    assert len(bound_lines) == 3


def test_plot_grid_puts_each_legend_outside_its_axes():
    """Notebooks 04 and 06 call plot_grid without ``legend=``: the legend sat inside the axes (loc="best") over
    curves and bands."""
    curves = {
        f"r{k}": {"kl_to_nash": lambda t, k=k: (k + 1) / (t + 1), "regret": lambda t, k=k: k + t} for k in range(6)
    }
    table = synthetic(curves, iterations=np.arange(0, 41))
    figure = plotting.grid_figure(table, ["kl_to_nash", "regret", "kl_to_nash"], fit_window=None)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    shown = [axes for axes in figure.axes if axes.get_visible()]
    assert len(shown) == 3
    for axes in shown:
        box = axes.get_legend().get_window_extent(renderer)
        assert _inside(box, figure.bbox), "the legend fits in the figure"
        for other in shown:
            assert not box.overlaps(other.bbox), "no legend over an axes' data area"


@pytest.mark.parametrize("log_axis", [True, False])
def test_curves_closer_than_a_line_width_are_dashed_and_named_as_near_each_other(log_axis):
    """sampled_inpo's loss.png: inpo[eta=1] was 0.2% from apo_inpo and hidden under it, with a legend entry of
    its own.  Curves within 1% (log axis) or 1% of the values' range (linear axis) everywhere are drawn dashed
    and named "≈ <other>"; exact matches keep "= <other>"; curves further apart are left alone."""
    if log_axis:
        base, metric = (lambda t: 0.2 + 0.01 * np.sin(t)), "loss"
        near, far = (lambda t: 1.002 * base(t)), (lambda t: 1.05 * base(t))
    else:
        base, metric = (lambda t: -1.5 - np.sin(t / 10)), "loss"  # no positive value: a linear axis
        near, far = (lambda t: base(t) + 0.005), (lambda t: base(t) + 0.1)
    table = synthetic(
        {"inpo": {metric: base}, "apo": {metric: near}, "dno": {metric: far}, "sppo": {metric: base}}, noise=0.0
    )
    axes = plotting.plot_metric(table, metric)
    assert (axes.get_yscale() == "log") == log_axis
    solid = _curve(axes, "inpo").get_linestyle()
    assert _curve(axes, "apo").get_label() == "apo (≈ inpo)" and _curve(axes, "apo").get_linestyle() != solid
    assert _curve(axes, "dno").get_label() == "dno" and _curve(axes, "dno").get_linestyle() == solid
    assert _curve(axes, "sppo").get_label() == "sppo (= inpo)"


def test_a_fit_whose_seeds_converge_at_very_different_rates_also_gives_the_mean_curves_slope():
    """COMAL's KL to π⁰ on default.toml: some seeds fall like t⁻⁸, others stay near t^−0.1, so the mean of the
    per-seed slopes (−4) says nothing about the drawn mean curve, which follows the slow seeds."""
    t = np.arange(100, 1001, 100)
    rows = []
    for seed, power in enumerate([-8.0, -8.0, -0.1, -0.1]):
        rows.append(pd.DataFrame({"rule": "r", "seed": seed, "iteration": t, "kl_to_nash": 0.1 * (t / 100.0) ** power}))
    table = pd.concat(rows, ignore_index=True)
    fit = sim.stats.fit_rate(table, "kl_to_nash", "r", window=(100, 1000), scale="loglog", floor=1e-300)
    centre = table.groupby("iteration")["kl_to_nash"].mean().to_numpy()
    curve = plotting.mean_curve_slope(t, centre, fit, 1e-300)
    expected = np.polyfit(np.log(t), np.log(centre), 1)[0]  # least squares of the drawn curve, by hand
    assert fit.slope == pytest.approx(-4.05) and curve == pytest.approx(expected, rel=1e-12)
    assert -0.5 < curve < -0.1  # the slow seeds, and the fast ones early on
    label = plotting.fit_label(fit, curve)
    assert label.endswith(f"seeds differ: that is the mean of the seeds' slopes,\n  the mean curve's is {curve:.3g}")
    # seeds with one rate: the mean curve has it too, and the label says it once
    alike = table.assign(kl_to_nash=0.1 * (table["iteration"] / 100.0) ** -1.0 * (1 + table["seed"]))
    fit = sim.stats.fit_rate(alike, "kl_to_nash", "r", window=(100, 1000), scale="loglog", floor=1e-300)
    centre = alike.groupby("iteration")["kl_to_nash"].mean().to_numpy()
    assert "seeds differ" not in plotting.fit_label(fit, plotting.mean_curve_slope(t, centre, fit, 1e-300))


def test_the_fit_legend_states_the_slope_interval_and_window_of_an_independent_fit():
    """The legend's numbers against per-seed least squares done here: no test read them, so a label that printed
    the interval as [upper, lower], or another window than the fit's, passed every test."""
    t = np.arange(0, 201)
    rates = [0.05, 0.06, 0.07, 0.08, 0.09]
    rows = [
        pd.DataFrame({"rule": "r", "seed": seed, "iteration": t, "kl_to_nash": 0.3 * np.exp(-rate * t)})
        for seed, rate in enumerate(rates)
    ]
    line = _curve(plotting.plot_metric(pd.concat(rows, ignore_index=True), "kl_to_nash"), "r")
    window = (20, 200)  # the last decade, [T/10, T], of a curve that stays above the floor (e^-18 ≈ 1.5e-8)
    inside = (t >= window[0]) & (t <= window[1])
    slopes = np.array([np.polyfit(t[inside], -rate * t[inside] + np.log(0.3), 1)[0] for rate in rates])
    assert slopes == pytest.approx([-rate for rate in rates], rel=1e-9)
    _, lower, upper = sim.stats.bootstrap_ci(slopes)
    assert lower < upper
    expected = (
        f"linear rate: semilog slope {slopes.mean():.3g}/iter\n  [{lower:.3g}, {upper:.3g}], t {window[0]}–{window[1]}"
    )
    assert line.get_label() == f"r\n  {expected}"


def test_a_wrapped_title_keeps_its_own_line_breaks():
    """A title's explicit line breaks survive the wrapping (they were joined into one line), and a long line
    is still wrapped to the width."""
    assert plotting._wrap_title("first line\nsecond line", 6.0) == "first line\nsecond line"
    assert plotting._wrap_title("a\n\nb", 6.0) == "a\n\nb"
    long = plotting._wrap_title("word " * 40 + "\nend", 3.0, 11.0)
    assert long.endswith("\nend") and all(len(line) <= 32 for line in long.split("\n")), long


def test_a_panel_title_clears_the_offset_text_of_a_linear_axis():
    """A log panel's title sits at a given height (no offset text there); a linear panel may show one
    (×1e−7) and its title is placed above it, as Matplotlib places it (a given height overprinted it)."""
    rules = ["a_rule_with_a_long_label_that_fills_the_panel_width", "mmd"]
    table = synthetic_table({rule: lambda s, t: -1e-7 * (1 + s + t / 100) for rule in rules}, 4, np.arange(101))
    figure = plotting.metric_figure(table, "kl_to_nash", rules, PlotSpec(layout="panels"))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert len(panels) == 2
    for axes in panels:
        offset = axes.yaxis.offsetText
        assert axes.get_yscale() == "linear" and offset.get_text()
        title, number = axes.title.get_window_extent(renderer), offset.get_window_extent(renderer)
        assert not title.overlaps(number), (axes.get_title(), offset.get_text())


def test_a_figure_process_answering_in_another_protocol_is_lost_not_waited_for(monkeypatch):
    """A worker of another prefsim (a kernel that imported it before an update) answers with bare paths:
    it is ended and counts as lost, so its figure is drawn by the caller; waiting on it hung for good."""
    other = (
        "import sys\n"
        "from sim.figure_worker import READY, read_message, send_message\n"
        "answers, requests = sys.stdout.buffer, sys.stdin.buffer\n"
        "answers.write(READY)\n"
        "answers.flush()\n"
        "read_message(requests)\n"
        "read_message(requests)\n"
        "send_message(answers, ['a.png'])\n"
        "requests.read()\n"  # alive until its input closes
    )
    monkeypatch.setattr(figure_worker, "WORKER_COMMAND", other)
    worker = FigureWorker()
    try:
        with pytest.raises(figure_worker.FigureProcessLost, match="another protocol"):
            worker.draw(None, "kl_to_nash")
        assert worker.process.poll() is not None
    finally:
        worker.stop()


def test_a_run_again_into_its_directory_keeps_the_figures_drawn_from_the_same_results(tmp_path, monkeypatch):
    """README command 1 run twice: the second run's results are the same numbers, so its figures would be
    the same bytes: they are kept, not drawn again (figures.json records what each was drawn from).  A
    figure file changed since is drawn again, to the same bytes; other results redraw every figure."""
    monkeypatch.setattr(cli, "start_figure_workers", lambda: [])
    spec, out = tmp_path / "small.toml", tmp_path / "out"
    spec.write_text(RUN_SPEC)
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    first = {path.name: path.read_bytes() for path in out.glob("*.png")}
    assert first
    drawn = []
    monkeypatch.setattr(
        cli, "_draw_here", lambda job, figure: drawn.append(figure) or plotting.draw_job_figure(job, figure)
    )
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert drawn == []
    changed = sorted(first)[0]
    (out / changed).write_bytes(b"edited")
    assert cli.main(["plot", str(out), "--quiet"]) == 0
    assert drawn == [changed.removesuffix(".png")]
    assert {path.name: path.read_bytes() for path in out.glob("*.png")} == first
    listed = json.loads((out / "figures.json").read_text())
    assert listed["complete"] and sorted(listed["files"]) == sorted(listed["drawn_from"]) == sorted(first)
    # other results (one more seed): every figure drawn again
    spec.write_text(RUN_SPEC.replace("seeds = 2", "seeds = 3"))
    drawn.clear()
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert sorted(drawn) == sorted(name.removesuffix(".png") for name in first)


@pytest.mark.parametrize("kind", ["pdf", "svg"])
def test_a_pdf_or_svg_figure_drawn_twice_is_the_same_bytes(tmp_path, kind, monkeypatch):
    """No creation date and fixed SVG ids: a figure kept because its inputs did not change is what a new
    drawing would write (Matplotlib dates a PDF and salts an SVG's ids at random by default).  The two
    drawings are a day apart (``SOURCE_DATE_EPOCH``, which Matplotlib dates its files by)."""
    written = []
    for number in range(2):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(1_700_000_000 + 86_400 * number))
        figure, axes = plotting.new_figure()
        axes.plot([1.0, 2.0, 3.0])
        axes.set_title("one figure")
        written.append(plotting.save_figure(figure, tmp_path / f"figure{number}.{kind}").read_bytes())
    assert written[0] == written[1]


def test_the_figure_inputs_leave_out_settings_files_that_cannot_be_found(tmp_path, monkeypatch):
    """A working directory removed under the process, and no home directory: no error, the other files count."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "matplotlibrc").write_text("font.size: 12\n")
    monkeypatch.setenv("MPLCONFIGDIR", str(settings))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert figure_plan._matplotlib_settings_files() == [f"{settings / 'matplotlibrc'}\0font.size: 12\n"]


def test_an_earlier_head_to_head_map_is_removed_when_this_run_draws_none(tmp_path, monkeypatch):
    """The map is planned for two rules or more but drawn only up to HEATMAP_MAX_LABELS rules: a run whose
    map draws nothing removes the earlier run's map (it was left on disk, out of figures.json)."""
    monkeypatch.setattr(cli, "start_figure_workers", lambda: [])
    spec, out = tmp_path / "two.toml", tmp_path / "out"
    spec.write_text(RUN_SPEC + '[[rule]]\nname = "mmd"\neta = 0.5\n')
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert (out / "headtohead.png").is_file()
    monkeypatch.setattr(plotting, "HEATMAP_MAX_LABELS", 1)
    spec.write_text(spec.read_text().replace("seeds = 2", "seeds = 3"))
    assert cli.main(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert not (out / "headtohead.png").exists()
    assert "headtohead.png" not in json.loads((out / "figures.json").read_text())["files"]
