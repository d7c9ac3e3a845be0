"""Figures of a run table: metric vs iteration, one line per rule with a 95% bootstrap band over seeds.

Design (what every figure shows):

* **x axis** – iterations on a ``symlog`` axis (linear on [0, 1], logarithmic above), so iteration
  0 (the initial policy, π_ref) sits at the left edge and the rest is a log axis; the initial value
  is marked with a hollow circle.
* **y axis** – logarithmic when the metric has positive values (non-positive values, e.g. an exact
  zero gap, are left out of the log axis), linear otherwise.
* **bands** – percentile-bootstrap 95% CI of the mean over seeds (:func:`sim.stats.curve_summary`).
* **fitted slope** – a log-log least-squares slope over the last decade [max(1, T/10), T] with its
  bootstrap CI (:func:`sim.stats.fit_rate`) in the legend, when the fit is defined.
* **T = 3** – a dotted vertical line: the iteration count of the INPO and APO LLM experiments.
* **theory** – optional bounds as dashed lines (:mod:`sim.theory` produces them).

Figures are built with the object-oriented API on :class:`matplotlib.figure.Figure` (no pyplot
state, no GUI backend), and written as PNG through the Agg canvas, so this module works headless and
inside notebooks alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bandits.errors import PrefsimError
from sim import stats

#: The iteration count of the papers' LLM experiments (INPO Table 1, APO's AlpacaEval runs).
LLM_ITERATIONS = 3
#: Human-readable axis labels of the metric columns.
METRIC_LABELS = {
    "duality_gap": "duality gap of π_t (τ-regularised)",
    "exploitability": "exploitability of π_t (τ = 0 gap)",
    "kl_to_nash": "KL(π* ‖ π_t)",
    "suboptimality": "sub-optimality max r − E_π r",
    "regret": "cumulative regret",
    "tv_to_optimum": "TV(π_t, π*)",
    "max_log_ratio": "max_y |log π_t/π_ref| (realised B)",
    "kl_to_unregularised_nash": "KL(π⁰ ‖ π_t) (π⁰: unregularised Nash)",
}
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 150,
}
FIGURE_SIZE = (6.4, 4.2)


def metric_label(metric: str) -> str:
    """Axis label of a metric column (``*_mixture`` columns are about π̄_t)."""
    if metric.endswith("_mixture"):
        base = metric[: -len("_mixture")]
        label = METRIC_LABELS.get(base, base)
        return label.replace("π_t", "π̄_t") if "π_t" in label else f"{label} of π̄_t"
    return METRIC_LABELS.get(metric, metric)


def _colours(count: int):
    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def new_figure(size=FIGURE_SIZE) -> tuple[Figure, object]:
    """A figure with one axes, the module's style, attached to an Agg canvas."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
    return figure, axes


def _default_window(iterations: np.ndarray) -> tuple[int, int]:
    last = int(iterations.max())
    return max(1, last // 10), last


def plot_metric(
    table: pd.DataFrame,
    metric: str,
    axes=None,
    rules=None,
    statistic: str = "mean",
    theory=None,
    fit_window="auto",
    fit_scale: str = "loglog",
    mark_iteration: int | None = LLM_ITERATIONS,
    title: str | None = None,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    styles: dict | None = None,
):
    """Draw ``metric`` vs iteration for each rule with a bootstrap band; return the axes.

    Args:
      table: the run table of :func:`sim.run`.
      metric: the metric column.
      axes: a Matplotlib axes to draw on (a new figure when ``None``; its figure is ``axes.figure``).
      rules: rule labels to draw (default: all, in order of appearance).
      statistic: ``mean`` or ``median`` over seeds.
      theory: optional bounds to draw dashed: a DataFrame with columns ``iteration, bound`` and
        optionally ``rule`` (the bound is drawn in that rule's colour) and ``label``; or a dict
        label → (iterations, values).
      fit_window: ``"auto"`` (last decade), ``None`` (no fit), an (first, last) window, or a dict
        rule label → one of those (rules not in the dict are not fitted); the fitted slope and CI go
        into the legend.
      fit_scale: ``loglog`` (slope = exponent) or ``semilog`` (slope = log contraction per iteration).
      mark_iteration: draw a dotted vertical line at this iteration (default 3); ``None`` for none.
      title: axes title.
      confidence: level of the bands.
      styles: optional rule label → dict of Matplotlib line properties (e.g. ``{"ls": "--"}``).
    """
    stats._check_table(table, metric)
    if axes is None:
        _, axes = new_figure()
    summary = stats.curve_summary(table, metric, statistic=statistic, confidence=confidence)
    rules = stats.rules_of(table) if rules is None else list(rules)
    colours = dict(zip(stats.rules_of(table), _colours(len(stats.rules_of(table)))))
    positive = summary["center"].to_numpy()
    positive = positive[np.isfinite(positive) & (positive > 0)]
    log_y = positive.size > 0
    with matplotlib.rc_context(STYLE):
        for rule in rules:
            curve = summary[summary["rule"] == rule]
            if not np.isfinite(curve["center"]).any():
                continue
            x = curve["iteration"].to_numpy(dtype=np.float64)
            centre = curve["center"].to_numpy()
            lower = curve["lower"].to_numpy()
            upper = curve["upper"].to_numpy()
            if log_y:
                centre = np.where(centre > 0, centre, np.nan)
                lower = np.where(lower > 0, lower, np.nan)
                upper = np.where(upper > 0, upper, np.nan)
            label = rule
            rule_window = fit_window.get(rule) if isinstance(fit_window, dict) else fit_window
            if rule_window is not None:
                window = _default_window(curve["iteration"].to_numpy()) if rule_window == "auto" else rule_window
                try:
                    fit = stats.fit_rate(table, metric, rule, window=window, scale=fit_scale)
                    label = f"{rule}: {fit.label()}"
                except Exception:  # noqa: BLE001 — a fit that is undefined (all at the floor) is just omitted
                    pass
            colour = colours[rule]
            line = {"color": colour, "lw": 1.6, **((styles or {}).get(rule, {}))}
            colour = line["color"]
            axes.plot(x, centre, label=label, **line)
            axes.fill_between(
                x,
                np.where(np.isfinite(lower), lower, centre),
                np.where(np.isfinite(upper), upper, centre),
                color=colour,
                alpha=0.2,
                lw=0,
            )
            if x[0] == 0 and np.isfinite(centre[0]):
                axes.plot([0.0], [centre[0]], marker="o", mfc="white", mec=colour, ms=5, zorder=5, clip_on=False)
        for label, xs, ys, colour in _theory_lines(theory, colours):
            ys = np.asarray(ys, dtype=np.float64)
            if log_y:
                ys = np.where(ys > 0, ys, np.nan)
            axes.plot(xs, ys, ls="--", lw=1.2, color=colour, label=label)
        axes.set_xscale("symlog", linthresh=1.0, linscale=0.4)
        axes.set_xlim(left=0.0)
        if log_y:
            axes.set_yscale("log")
        if mark_iteration is not None and summary["iteration"].max() >= mark_iteration:
            axes.axvline(mark_iteration, color="0.45", ls=":", lw=1.0)
            axes.annotate(
                f"T = {mark_iteration}",
                xy=(mark_iteration, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                va="top",
                fontsize=8,
                color="0.35",
            )
        axes.set_xlabel("iteration t (0 = initial policy π_0; symlog axis)")
        axes.set_ylabel(metric_label(metric))
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(loc="best", frameon=False)
        if title:
            axes.set_title(title)
    return axes


def _theory_lines(theory, colours):
    """Normalise the ``theory`` argument to (label, x, y, colour) tuples."""
    if theory is None:
        return []
    lines = []
    if isinstance(theory, pd.DataFrame):
        if not {"iteration", "bound"} <= set(theory.columns):
            raise PrefsimError(
                "theory: a DataFrame of bounds needs columns iteration and bound (optional rule, label)."
            )
        groups = (
            theory.groupby([c for c in ("rule", "label") if c in theory.columns], sort=False)
            if ("rule" in theory.columns or "label" in theory.columns)
            else [(("bound",), theory)]
        )
        for key, frame in groups:
            key = key if isinstance(key, tuple) else (key,)
            rule = frame["rule"].iloc[0] if "rule" in frame.columns else None
            label = frame["label"].iloc[0] if "label" in frame.columns else f"bound ({rule})"
            frame = frame.sort_values("iteration")
            lines.append(
                (
                    str(label),
                    frame["iteration"].to_numpy(dtype=np.float64),
                    frame["bound"].to_numpy(),
                    colours.get(rule, "0.2"),
                )
            )
        return lines
    if isinstance(theory, dict):
        for label, (xs, ys) in theory.items():
            lines.append((str(label), np.asarray(xs, dtype=np.float64), np.asarray(ys), "0.2"))
        return lines
    raise PrefsimError("theory: expected a DataFrame (iteration, bound[, rule, label]) or a dict label → (x, y).")


def save_figure(figure: Figure, path) -> Path:
    """Write ``figure`` as PNG (150 dpi) via a temporary file; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=STYLE["savefig.dpi"], format="png")
    temporary.replace(path)
    return path


def show_in_notebook(path) -> None:
    """Display a saved figure inside Jupyter; a no-op when a notebook runs as a script (as in CI)."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(str(path)))


def _title(metric: str, manifest: dict | None) -> str:
    if not manifest:
        return metric
    spec = manifest.get("spec", {}) if isinstance(manifest, dict) else {}
    game = spec.get("game", {}) if isinstance(spec, dict) else {}
    parts = []
    if spec.get("name"):
        parts.append(str(spec["name"]))
    if game:
        description = str(game.get("kind", "game"))
        if game.get("arms") is not None:
            description += f", K = {game['arms']}"
        if game.get("tau") is not None:
            description += f", τ = {game['tau']:g}" if isinstance(game.get("tau"), (int, float)) else ""
        parts.append(description)
    seeds = manifest.get("seeds")
    if seeds is not None:
        parts.append(f"{len(seeds)} seeds, mean ± 95% bootstrap CI")
    return " — ".join(parts) if parts else metric


def _theory_for(table: pd.DataFrame, metric: str, manifest: dict | None):
    """Bounds of :mod:`sim.theory` that apply to ``metric`` for the rules of this run, if any."""
    if not manifest or "spec" not in manifest:
        return None
    try:
        from sim import theory

        bounds = theory.bounds_for_run(table, manifest["spec"])
    except Exception:  # noqa: BLE001 — a figure without a bound is better than no figure
        return None
    if bounds is None or bounds.empty:
        return None
    selected = bounds[bounds["metric"] == metric]
    return selected if not selected.empty else None


def has_data(table: pd.DataFrame, metric: str) -> bool:
    """Whether ``metric`` is a column with a finite value at some iteration > 0 (a curve to draw)."""
    if metric not in table.columns:
        return False
    values = table.loc[table["iteration"] > 0, metric].to_numpy(dtype=np.float64)
    return bool(np.isfinite(values).any())


def plot_run(table: pd.DataFrame, out_dir, manifest: dict | None = None, metrics=None) -> list[Path]:
    """One PNG per metric with data: ``out_dir/<metric>.png``; return the written paths.

    Metrics with no finite value after iteration 0 (e.g. ``suboptimality`` without rewards,
    ``duality_gap`` at τ = 0, ``regret`` – which is 0 at t = 0 – without rewards) are skipped.  With a ``manifest`` (as written by :func:`sim.run`), the title names the
    game and seed count, and the bounds of :func:`sim.theory.bounds_for_run` that apply to the run's
    rules are drawn dashed.
    """
    stats._check_table(table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = stats.metric_columns(table) if metrics is None else list(metrics)
    paths = []
    for metric in names:
        if not has_data(table, metric):
            continue
        figure, axes = new_figure()
        plot_metric(
            table, metric, axes=axes, theory=_theory_for(table, metric, manifest), title=_title(metric, manifest)
        )
        paths.append(save_figure(figure, out_dir / f"{metric}.png"))
    return paths


def plot_grid(table: pd.DataFrame, metrics, path, columns: int = 2, manifest: dict | None = None, **kwargs) -> Path:
    """Several metrics side by side in one PNG (notebook figures); ``kwargs`` go to :func:`plot_metric`."""
    metrics = list(metrics)
    rows = math.ceil(len(metrics) / columns)
    with matplotlib.rc_context(STYLE):
        figure = Figure(
            figsize=(FIGURE_SIZE[0] * min(columns, len(metrics)), FIGURE_SIZE[1] * rows), layout="constrained"
        )
        FigureCanvasAgg(figure)
        grid = figure.subplots(rows, min(columns, len(metrics)), squeeze=False)
    for index, metric in enumerate(metrics):
        plot_metric(table, metric, axes=grid.flat[index], theory=_theory_for(table, metric, manifest), **kwargs)
    for extra in list(grid.flat)[len(metrics) :]:
        extra.set_visible(False)
    return save_figure(figure, path)
