"""Figures of a run table: metric vs iteration, one line per rule with a 95% bootstrap band over seeds.

Design (what every figure shows):

* **x axis** – iterations on a ``symlog`` axis (linear on [0, 1], logarithmic above), so iteration
  0 (the initial policy, π_ref) sits at the left edge and the rest is a log axis; the initial value
  is marked with a hollow circle.
* **y axis** – logarithmic when the metric has positive values (non-positive values, e.g. an exact
  zero gap, are left out of the log axis), linear otherwise.  A curve that reaches the precision's
  rounding floor (:func:`sim.diagnostics.floor_iteration`) is drawn down to it only: from that iteration its
  values ≤ floor, zeros included, run along the axis bottom from a ▼ (its band stops there too), its legend
  entry says from which t, values at or below the floor never set the log axis' range, and the axis reaches
  :data:`FLOOR_GAP_DECADES` below the lowest value drawn above the floor (not below the floor), so the
  bottom line reads as far below the data.  ``tv_to_optimum``'s floor is π*'s accuracy at the rule's game τ
  (:func:`sim.diagnostics.metric_floor`).
* **bands** – percentile-bootstrap 95% CI of the mean over seeds (:func:`sim.stats.curve_summary`); on a log
  axis a band whose lower end is 0 or below runs down past the axis bottom; optionally each seed's curve
  thinly (``per_seed``).
* **colour and line style** – one colour per rule family (a ``[[rule]]`` table: ``apo`` for
  ``apo[alpha=0.5]``), a line style and shade per swept value inside the family; past ten families the
  ten hues come back with a marker per further ten (:data:`FAMILY_MARKERS`).  Curves identical to an
  earlier one (e.g. ``sppo`` and ``dno`` at matching steps) say so in the legend ("= sppo"), and curves
  within a line's width of one (:data:`NEAR_CURVES`) say "≈ sppo"; both are drawn dashed on top, so
  neither hides the other.  An axes of more than :data:`MANY_CURVES` curves (a
  long sweep) draws them along one colour scale in their order, with a colour bar naming the first,
  middle and last, and no legend entries or fits (a legend of 100 curves was a figure 7000 pixels tall);
  one legend entry then says what the ▼ and the lines along the axis bottom are.
* **fits** – only where a fit means something (:func:`choose_fit`): for convergence metrics, over the
  last decade of the iterations *before* the curve reaches its rounding floor
  (:func:`sim.diagnostics.metric_floor`) or levels off (:func:`level_off`: stops falling, not merely
  slows down), log-log (polynomial rate,
  slope = exponent) or semilog (linear rate, slope = log contraction per iteration), whichever
  describes the window better; no fit for plateaus, for curves that rise or swing ("not converging"),
  for curves at the floor and for counts (``regret``, ``queries``, ``loss``, ``max_log_ratio``,
  ``max_log_ratio_so_far``).  The
  legend says which fit it is and the recorded iterations it used, or why there is none.
* **T = 3** – a dotted vertical line: the iteration count of the INPO and APO LLM experiments.
* **theory** – bounds stored by the run (``bounds.csv``, :mod:`sim.bounds_table`) as thin lines in the
  rule's colour (a bound drawn for several rules names them in its legend entry); this module never
  rebuilds games or solves for equilibria.
* **layout** – the legend outside the axes; one panel per rule family (shared y axis, and one axes height
  and position in a row whatever the panels' legends) when a figure would hold more than
  :data:`sim.figure_plan.MAX_CURVES_PER_AXES` curves; the title wrapped to the figure's width.
* **facets** – a run that sweeps ``[game]``/``[run]`` fields draws one panel per value (or combination)
  of them (:func:`sim.figure_plan.facet_panels`, ``[plot] facet``), up to
  :data:`sim.figure_plan.MAX_FACETS`; beyond that the curves share the axes and the title says why.

Figures are built with the object-oriented API on :class:`matplotlib.figure.Figure` (no pyplot
state, no GUI backend), and written as PNG, PDF or SVG through the Agg canvas, so this module works
headless and inside notebooks alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
import PIL.Image
import PIL.PngImagePlugin
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.mathtext import MathTextParser
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from bandits.errors import PrefsimError
from sim import stats
from sim.bounds_file import bounds_for_metric
from sim.diagnostics import floor_iteration as first_floor_iteration
from sim.diagnostics import is_convergence_metric, metric_floor, rule_taus
from sim.figure_plan import (
    HEADTOHEAD,
    FigureJob,
    draw_figures,
    family_of,
    figure_layout,
    plan_figures,
)
from sim.figure_worker import FigureWorker, serve
from sim.plot_spec import PlotSpec
from sim.progress import Progress

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
    "max_log_ratio_so_far": "max_{s≤t} max_y |log π_s/π_ref| (B over every iterate)",
    "kl_to_unregularised_nash": "KL(π⁰ ‖ π_t) (π⁰: unregularised Nash)",
    "queries": "cumulative oracle queries",
    "distance_to_exact": "max |log π_t − log π_t^exact|",
    "loss": "final inner loss",
    "inner_gradient": "max |∇ inner loss| at its end",
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
#: Size of a single-axes figure with its legend outside on the right.
WIDE_FIGURE_SIZE = (8.6, 4.4)
#: Size of one panel of a small-multiples figure.
PANEL_SIZE = (4.6, 3.6)
#: Height of one legend text line (8 pt font with spacing), for sizing figures around legends.
LEGEND_LINE_INCHES = 0.21
#: Line styles of the swept values inside a family (solid first).
#: An axes with more curves than this draws them along a colour scale, with a colour bar naming the first,
#: middle and last, instead of a legend entry and rate fit each (a 100-value sweep's legend made a figure
#: 7000 pixels tall).
MANY_CURVES = 12
LINE_STYLES = ("-", (0, (5, 1.5)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (7, 2, 1, 2)), (0, (2, 2)))
#: Height (axes fraction) of the line along the axis bottom that stands for a curve's values at or below the
#: rounding floor (a little above the spine, which would hide it).
FLOOR_LINE_HEIGHT = 0.012
#: Where a band's lower end at or below 0 is drawn on a log axis: below any axis bottom (the smallest normal
#: float64), so the band runs down past it; it never sets the axis' range (:func:`_log_range_above_floor`).
BAND_BELOW_LOG_AXIS = float(np.finfo(np.float64).tiny)
#: Markers of the families past the tenth (whose ten hues they share): none for the first ten, then one marker
#: for each further ten families, spaced along the curve.
FAMILY_MARKERS = ("", "o", "s", "^", "D", "v", "P", "X")
#: A bound drawn for up to this many rules names them in its legend entry (for more, it says how many).
MAX_NAMED_BOUND_RULES = 4
#: Mean curves this close everywhere (relative on a log axis; a share of the values' range on a linear one)
#: are drawn over each other at the figures' line width: the later one is dashed and named "≈ <earlier>".
NEAR_CURVES = 1e-2
#: A fit window needs at least this many recorded iterations.
MIN_FIT_POINTS = 3
#: A fit window whose trend line falls by less than this in log(metric) has no rate: a plateau when the curve
#: stays within it too, else "not converging" (it rises or swings).
PLATEAU_LOG_CHANGE = 0.1
#: :func:`level_off`: after levelling off a curve falls less than this fraction as fast as its trend before,
LEVEL_FRACTION = 1.0 / 3.0
#: falls at most this much in log(metric) (a factor 1.35) below its value there over the rest of the run (a
#: curve that slows from t^-2 to t^-0.5 has not levelled off: it falls two more decades in two decades of t),
LEVEL_MAX_FALL = 3 * PLATEAU_LOG_CHANGE
#: rises at most this much in log(metric) (jitter of a noisy mean),
LEVEL_RISE = 3 * PLATEAU_LOG_CHANGE
#: and its trend would have fallen at least this much in log(metric) over the flat stretch.
LEVEL_MIN_FALL = 3 * PLATEAU_LOG_CHANGE


def metric_label(metric: str) -> str:
    """Axis label of a metric column (``*_mixture`` columns are about π̄_t)."""
    if metric.endswith("_mixture"):
        base = metric[: -len("_mixture")]
        label = METRIC_LABELS.get(base, base)
        return label.replace("π_t", "π̄_t") if "π_t" in label else f"{label} of π̄_t"
    return METRIC_LABELS.get(metric, metric)


#: The one mathtext parser of every figure drawn here (see :class:`FigureCanvas`).
_MATHTEXT = MathTextParser("path")


class FigureCanvas(FigureCanvasAgg):
    """The Agg canvas of prefsim's figures: every figure's renderer uses one shared mathtext parser.

    The log axes' tick labels (``10⁻³``, ``2×10⁻¹``, …) are mathtext.  Matplotlib caches a parsed label per
    parser, and each Agg renderer makes its own parser, so every figure of a run parsed the same few labels
    again (about 9 parses per figure, a sixth of drawing a run's figures).  A parse depends only on the
    text, the font, the dpi and the antialiasing, which are the cache's key, so sharing the parser changes
    no pixel.
    """

    def get_renderer(self) -> RendererAgg:
        renderer = super().get_renderer()
        renderer.mathtext_parser = _MATHTEXT
        return renderer


#: Superscript forms of the characters of an exponent.
_SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
#: What Matplotlib's log formatters write (``$\mathdefault{…}$``): a coefficient, ``\times``, a base and an
#: integer exponent, each optional but the base; or a plain number.
_MATHTEXT_POWER = re.compile(r"^\$\\mathdefault\{(-?)(?:([0-9.]+)\\times)?(\d+)\^\{(-?\d+)\}\}\$$")
_MATHTEXT_NUMBER = re.compile(r"^\$\\mathdefault\{(-?)([0-9.]+)\}\$$")


class PlainLogFormatter(matplotlib.ticker.LogFormatterSciNotation):
    """Matplotlib's log-axis labels (the same ticks labelled, the same numbers) in plain text with Unicode
    superscripts, ``10⁻³`` or ``2×10⁻¹``, instead of mathtext: a new process parses and lays out every
    distinct mathtext label once (~8 ms each), about a third of drawing a run's first figures.  A label
    it does not recognise (a non-integer exponent) stays mathtext."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return plain_power_label(super().__call__(x, pos))


def plain_power_label(label: str) -> str:
    r"""A ``$\mathdefault{c\times b^{e}}$`` / ``$\mathdefault{b^{e}}$`` / ``$\mathdefault{n}$`` label in plain
    text (``c×bᵉ``, minus signs as U+2212, as Matplotlib draws them); anything else unchanged."""
    power = _MATHTEXT_POWER.match(label)
    if power is not None:
        sign, coefficient, base, exponent = power.groups()
        head = f"{coefficient}×" if coefficient else ""
        return f"{'−' if sign else ''}{head}{base}{exponent.translate(_SUPERSCRIPTS)}"
    number = _MATHTEXT_NUMBER.match(label)
    if number is not None:
        return f"{'−' if number.group(1) else ''}{number.group(2)}"
    return label


def plain_log_labels(axes: Axes) -> None:
    """Give ``axes``' log and symlog axes :class:`PlainLogFormatter` labels, with their formatters' settings."""
    for axis in (axes.xaxis, axes.yaxis):
        for get, put in (
            (axis.get_major_formatter, axis.set_major_formatter),
            (axis.get_minor_formatter, axis.set_minor_formatter),
        ):
            current = get()
            if type(current) is matplotlib.ticker.LogFormatterSciNotation:
                put(
                    PlainLogFormatter(
                        base=current._base,
                        labelOnlyBase=current.labelOnlyBase,
                        minor_thresholds=current.minor_thresholds,
                        linthresh=current._linthresh,
                    )
                )


def in_style() -> contextlib.AbstractContextManager:
    """:data:`STYLE` in effect: ``matplotlib.rc_context(STYLE)``, or nothing where it is in effect already (a
    panel drawn inside its figure's context; entering ``rc_context`` copies every rcParam, ~6 ms a panel)."""
    if all(matplotlib.rcParams[key] == value for key, value in STYLE.items()):
        return contextlib.nullcontext()
    return matplotlib.rc_context(STYLE)


def new_figure(size: tuple[float, float] = FIGURE_SIZE) -> tuple[Figure, object]:
    """A figure with one axes, the module's style, attached to an Agg canvas."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=size, layout="constrained")
        FigureCanvas(figure)
        axes = figure.add_subplot()
    return figure, axes


# ----------------------------------------------------------------------------------------------
# colours and styles


def curve_styles(labels: list[str]) -> dict[str, dict]:
    """Label → Matplotlib line properties: colour by family, line style and shade by position in it."""
    families = list(dict.fromkeys(family_of(label) for label in labels))
    # ten hues; the 11th family on takes them again with a marker of its own (tab20's light and dark shades
    # of ten hues made unrelated families look like one family's sweep)
    cmap = matplotlib.colormaps["tab10"]
    base = {family: np.asarray(cmap(i % cmap.N)[:3]) for i, family in enumerate(families)}
    marks = {family: FAMILY_MARKERS[(i // cmap.N) % len(FAMILY_MARKERS)] for i, family in enumerate(families)}
    members: dict[str, list[str]] = {}
    for label in labels:
        members.setdefault(family_of(label), []).append(label)
    styles = {}
    for family, group in members.items():
        for index, label in enumerate(group):
            # shade: from the full colour (first value) toward a darker tone for later values
            shade = 0.55 * index / max(len(group) - 1, 1)
            colour = tuple(base[family] * (1.0 - shade))
            styles[label] = {"color": colour, "ls": LINE_STYLES[index % len(LINE_STYLES)], "lw": 1.6}
            if marks[family]:
                styles[label].update(marker=marks[family], markevery=0.08, ms=4.5)
    return styles


# ----------------------------------------------------------------------------------------------
# fits


@dataclasses.dataclass(frozen=True)
class FitChoice:
    """What :func:`choose_fit` decided for one curve.

    ``kind`` is ``loglog``, ``semilog`` or ``none``; ``window`` the inclusive iteration window (None
    without a fit); ``reason`` a short legend text when there is no fit (``""`` for counts).
    """

    kind: str
    window: tuple | None = None
    reason: str = ""
    floor_iteration: int | None = None
    """First iteration > 0 at which the mean reaches the rounding floor (None if never)."""


def _residual(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of squared residuals of the least-squares line through (x, y)."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    _, residual, _, _ = np.linalg.lstsq(design, y, rcond=None)
    if residual.size:
        return float(residual[0])
    return float(np.sum((y - design @ np.linalg.lstsq(design, y, rcond=None)[0]) ** 2))


def choose_fit(
    iterations: np.ndarray,
    centre: np.ndarray,
    metric: str,
    floor: float,
    scale: str = "auto",
    window: tuple[int, int] | None = None,
) -> FitChoice:
    """Decide whether and how to fit the mean curve ``centre`` of ``metric`` over ``iterations``.

    * Counts and non-convergence metrics (``regret``, ``queries``, ``loss``, ``max_log_ratio``,
      ``max_log_ratio_so_far``): no fit.
    * ``floor``: the metric's floor (:func:`sim.diagnostics.metric_floor`).  The curve is used only up to
      the last iteration before it first reaches ``floor``: :func:`sim.stats.fit_rate` leaves out values at
      or below it, so the window and the scale are chosen on the points the fit uses.  Fewer than
      :data:`MIN_FIT_POINTS` recorded iterations ≥ 1 above it: no fit ("at the rounding floor", or "below
      the rounding floor" for a curve that keeps falling there, :func:`sim.diagnostics.floor_iteration`).
    * Window: ``window`` if given, else the last decade [max(1, T′/10), T′] of the usable part, where T′ is
      its last iteration or, when the curve levels off (:func:`level_off`), the last iteration before it
      does.  A curve that levels off after falling less than a decade over that window has no rate to
      show: no fit ("plateau from t = …").  The returned window is the first and last recorded iterations
      used.
    * Trend: the least-squares line through log(metric) over the window (in the chosen scale) must fall by
      at least :data:`PLATEAU_LOG_CHANGE` from the window's first to its last iteration; otherwise no fit:
      "plateau" when log(metric) stays within :data:`PLATEAU_LOG_CHANGE` over the window, "not converging"
      when it rises or swings more than that.  A falling trend whose last third of the window (in log t)
      stays within :data:`PLATEAU_LOG_CHANGE` is a plateau too (too slow for :func:`level_off`).
    * ``scale = "auto"``: log-log when a straight line in (log t, log y) fits the window at least as
      well as one in (t, log y), semilog otherwise (a linear rate is straight on a semilog axis);
      ``loglog`` / ``semilog`` force the kind; ``none`` disables fits.
    """
    if scale == "none" or not is_convergence_metric(metric):
        return FitChoice("none")
    iterations = np.asarray(iterations, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    order = np.argsort(iterations, kind="stable")
    iterations, centre = iterations[order], centre[order]
    floor_iteration = first_floor_iteration(iterations, centre, floor)
    reached = (iterations > 0) & np.isfinite(centre) & (centre <= floor)
    below_from = int(iterations[reached].min()) if reached.any() else None
    usable = (iterations >= 1) & np.isfinite(centre) & (centre > floor)
    if below_from is not None:
        usable &= iterations < below_from
    if usable.sum() < MIN_FIT_POINTS:
        if floor_iteration is not None:
            return FitChoice(
                "none", reason=f"at the rounding floor from t = {floor_iteration}", floor_iteration=floor_iteration
            )
        if below_from is not None:
            return FitChoice("none", reason=f"below the rounding floor from t = {below_from}")
        return FitChoice("none", reason="too few points to fit")
    if window is None:
        t_usable, log_usable = iterations[usable], np.log(centre[usable])
        knee = level_off(t_usable, log_usable)
        if knee is not None:
            last = int(t_usable[knee - 1])
            before = (t_usable >= max(1, last // 10)) & (t_usable <= last)
            fall = log_usable[before][0] - log_usable[before][-1] if before.any() else 0.0
            if before.sum() < MIN_FIT_POINTS or fall < math.log(10.0):
                reason = f"plateau from t = {int(t_usable[knee])}"
                return FitChoice("none", reason=reason, floor_iteration=floor_iteration)
        else:
            last = int(t_usable[-1])
        window = (max(1, last // 10), last)
    first, last = int(window[0]), int(window[1])
    inside = usable & (iterations >= first) & (iterations <= last)
    if inside.sum() < MIN_FIT_POINTS:
        return FitChoice("none", reason="too few points to fit", floor_iteration=floor_iteration)
    t = iterations[inside]
    log_y = np.log(centre[inside])
    if scale == "auto":
        scale = "loglog" if _residual(np.log(t), log_y) <= _residual(t, log_y) else "semilog"
    x = np.log(t) if scale == "loglog" else t
    change = np.polyfit(x, log_y, 1)[0] * (x[-1] - x[0])
    if change > -PLATEAU_LOG_CHANGE:
        reason = "plateau" if np.ptp(log_y) < PLATEAU_LOG_CHANGE else "not converging"
        return FitChoice("none", reason=reason, floor_iteration=floor_iteration)
    # a trend too slow to level off by :func:`level_off`'s measure, flat over the last third of the window
    # (in log t): a plateau, not a rate
    tail = np.log(t) >= np.log(t[0]) + (2.0 / 3.0) * (np.log(t[-1]) - np.log(t[0]))
    if tail.sum() >= 2 and np.ptp(log_y[tail]) < PLATEAU_LOG_CHANGE:
        return FitChoice("none", reason="plateau", floor_iteration=floor_iteration)
    return FitChoice(scale, (int(t[0]), int(t[-1])), floor_iteration=floor_iteration)


def level_off(iterations: np.ndarray, log_values: np.ndarray) -> int | None:
    """Index of the first point from which a curve has levelled off, or ``None``.

    ``iterations`` (≥ 1, increasing) and ``log_values`` (log of the mean curve) are the points a fit may
    use.  The curve has levelled off at point k when, measured on a log-log scale (on which a power law
    is straight and a linear rate steepens, so neither levels off), after t_k it

    * falls less than :data:`LEVEL_FRACTION` as fast as its log-log trend up to t_k (the least-squares
      line over [t_k/10, t_k], at least :data:`MIN_FIT_POINTS` points) would,
    * falls at most :data:`LEVEL_MAX_FALL` below its value at t_k in all (a curve that only slows down, an
      exponential's transient giving way to a power law or t^-2 to t^-0.5, keeps falling and has a rate
      to show over its last decade: fitting before the "knee" would name the transient's),
    * never rises more than :data:`LEVEL_RISE` above its value at t_k (a curve that turns and rises is
      not converging, not levelled), and
    * the trend would have fallen by at least :data:`LEVEL_MIN_FALL` by the last point (a shorter flat
      end is noise).

    The first such k is returned: Nash-MD's KL(π*‖π_t) falls linearly to its bias and then stays there.  A curve
    that keeps falling by more than :data:`LEVEL_MAX_FALL` after t_k, however slowly, has not levelled off
    there: :func:`choose_fit` fits its last decade, or its trend and flat-tail tests call it a plateau.
    """
    log_t = np.log(np.asarray(iterations, dtype=np.float64))
    log_values = np.asarray(log_values, dtype=np.float64)
    # the trend's slope at every k at once: least squares over points start[k]…k from prefix sums
    start = np.searchsorted(log_t, log_t - math.log(10.0) - 1e-12)
    end = np.arange(1, log_t.size + 1)
    count = end - start

    def window_sum(values):
        prefix = np.r_[0.0, np.cumsum(values)]
        return prefix[end] - prefix[start]

    sx, sy = window_sum(log_t), window_sum(log_values)
    sxx, sxy = window_sum(log_t * log_t), window_sum(log_t * log_values)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = -(count * sxy - sx * sy) / (count * sxx - sx * sx)
    candidates = (count >= MIN_FIT_POINTS) & (rate > 0) & (rate * (log_t[-1] - log_t) >= LEVEL_MIN_FALL)
    for k in np.flatnonzero(candidates[:-1]):
        if k == 0:
            continue
        fall = log_values[k] - log_values[k + 1 :]
        slow = np.all(fall < LEVEL_FRACTION * rate[k] * (log_t[k + 1 :] - log_t[k]))
        if slow and np.all(fall <= LEVEL_MAX_FALL) and np.all(-fall <= LEVEL_RISE):
            return int(k)
    return None


#: A fit's mean per-seed slope and the drawn mean curve's slope "differ" beyond this ratio (or in sign).
SLOPES_DIFFER = 2.0


def mean_curve_slope(iterations: np.ndarray, centre: np.ndarray, fit: stats.RateFit, floor: float) -> float:
    """The least-squares slope of the drawn mean curve ``centre`` over the iterations ``fit`` used, in its
    scale (NaN with fewer than two points above ``floor``): what the eye reads off the figure."""
    first, last = fit.span if fit.span is not None else fit.window
    iterations, centre = np.asarray(iterations, dtype=np.float64), np.asarray(centre, dtype=np.float64)
    inside = (iterations >= first) & (iterations <= last) & np.isfinite(centre) & (centre > floor)
    if inside.sum() < 2:
        return float("nan")
    x = np.log(iterations[inside]) if fit.scale == "loglog" else iterations[inside]
    return float(np.polyfit(x, np.log(centre[inside]), 1)[0])


def fit_label(fit: stats.RateFit, curve_slope: float | None = None) -> str:
    """Legend text naming the fit: ``log-log slope −1.02 [−1.05, −0.99], t 4–40`` or ``linear rate: …/iter``.

    The slope is the mean of the per-seed slopes, with its bootstrap CI over seeds; the window is the first
    and last recorded iterations the fit used (:attr:`sim.stats.RateFit.span`).  One seed has no interval:
    the slope and "1 seed".  A fit whose CI contains 0 says "no significant trend" (a cycle or a plateau the
    plateau test let through), not a rate.  ``curve_slope``: the drawn mean curve's slope over the same
    iterations (:func:`mean_curve_slope`); where it differs from the per-seed mean by more than a factor
    :data:`SLOPES_DIFFER` (seeds that converge at very different rates: the mean curve follows the slowest),
    the label says both.
    """
    label = _fit_text(fit)
    if curve_slope is not None and np.isfinite(curve_slope) and np.isfinite(fit.slope):
        ratio = curve_slope / fit.slope if fit.slope != 0 else math.inf
        if not 1.0 / SLOPES_DIFFER <= ratio <= SLOPES_DIFFER:
            unit = "" if fit.scale == "loglog" else "/iter"
            label += "\n  seeds differ: that is the mean of the seeds' slopes,"
            label += f"\n  the mean curve's is {curve_slope:.3g}{unit}"
    return label


def _fit_text(fit: stats.RateFit) -> str:
    first, last = fit.span if fit.span is not None else fit.window
    window = f"t {first}–{last}"
    if np.isfinite(fit.seed_slopes).sum() < 2:
        interval = "1 seed"
    else:
        interval = f"[{fit.lower:.3g}, {fit.upper:.3g}]"
        if fit.lower <= 0.0 <= fit.upper:
            kind = "log-log" if fit.scale == "loglog" else "semilog"
            return f"no significant trend ({kind} slope\n  {fit.slope:.2g} {interval}, {window})"
    if fit.scale == "loglog":
        return f"log-log slope {fit.slope:.3g}\n  {interval}, {window}"
    return f"linear rate: semilog slope {fit.slope:.3g}/iter\n  {interval}, {window}"


# ----------------------------------------------------------------------------------------------
# one axes


def plot_metric(
    table: pd.DataFrame,
    metric: str,
    axes: Axes | None = None,
    rules: Iterable[str] | None = None,
    statistic: str = "mean",
    theory: pd.DataFrame | dict[str, tuple[ArrayLike, ArrayLike]] | None = None,
    fit_window: str | tuple[int, int] | dict[str, str | tuple[int, int] | None] | None = "auto",
    fit_scale: str = "auto",
    mark_iteration: int | None = LLM_ITERATIONS,
    title: str | None = None,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    styles: dict | None = None,
    per_seed: bool = False,
    labels: dict | None = None,
    precision: str = "float64",
    legend: str = "outside",
    tau: float | None = None,
) -> Axes:
    """Draw ``metric`` vs iteration for each rule with a bootstrap band; return the axes.

    Args:
      table: the run table of :func:`sim.run`.
      metric: the metric column.
      axes: a Matplotlib axes to draw on (a new figure when ``None``; its figure is ``axes.figure``).
      rules: rule labels to draw (default: all, in order of appearance).
      statistic: ``mean`` or ``median`` over seeds.
      theory: optional bounds drawn as thin lines: a DataFrame with columns ``iteration, bound`` and
        optionally ``rule`` (drawn in that rule's colour and style) and ``label``; or a dict
        label → (iterations, values).
      fit_window: ``"auto"`` (see :func:`choose_fit`), ``None`` (no fit), an (first, last) window,
        or a dict rule label → one of those (rules not in the dict are not fitted).
      fit_scale: ``auto`` (log-log or semilog, whichever fits the window), ``loglog``, ``semilog``
        or ``none``.  The legend names the fit used.
      mark_iteration: draw a dotted vertical line at this iteration (default 3); ``None`` for none.
      title: axes title.
      confidence: level of the bands.
      styles: optional rule label → dict of Matplotlib line properties, over :func:`curve_styles`.
      per_seed: also draw each seed's curve thinly.
      labels: optional rule label → legend text.
      precision: the run's precision; values at or below its rounding floor end the fit window.
      legend: ``outside`` (right of the axes), ``below``, ``inside`` (best place in the axes) or ``none``.
      tau: the game's τ (the run's ``game.tau``), on which ``tv_to_optimum``'s floor depends
        (:func:`sim.diagnostics.metric_floor`); a table with a ``game.tau`` column (a τ sweep) gives each
        rule its own.  ``None``: unknown (:data:`sim.diagnostics.DEFAULT_FLOOR_TAU` is assumed).
    """
    stats._check_table(table, metric)
    if axes is None:
        _, axes = new_figure(WIDE_FIGURE_SIZE if legend == "outside" else FIGURE_SIZE)
    if fit_scale not in ("auto", "loglog", "semilog", "none"):
        raise PrefsimError(f"fit_scale: expected auto, loglog, semilog or none, got {fit_scale!r}.")
    all_rules = stats.rules_of(table)
    rules = all_rules if rules is None else list(rules)
    # bands only for the rules drawn (a panel of small multiples draws a few of them)
    drawn_table = table if len(rules) == len(all_rules) else table[table["rule"].isin(rules)]
    summary = stats.curve_summary(drawn_table, metric, statistic=statistic, confidence=confidence)
    line_styles = curve_styles(all_rules)
    many = len(rules) > MANY_CURVES
    ramp = matplotlib.colormaps["viridis"].resampled(len(rules))
    if many:  # one colour scale in the rules' order (a sweep's grid order), thin solid lines
        line_styles = {rule: {"color": ramp(index), "ls": "-", "lw": 1.0} for index, rule in enumerate(rules)}
        styles, fit_window = None, None
    taus = rule_taus(table, tau)
    positive = summary["center"].to_numpy()
    positive = positive[np.isfinite(positive) & (positive > 0)]
    log_y = positive.size > 0
    # curves closer than this draw over each other (a line's width on the drawn scale): relative on a log axis,
    # absolute (a share of the values' range) on a linear one
    finite = summary["center"].to_numpy()[np.isfinite(summary["center"].to_numpy())]
    closeness = (
        ("relative", NEAR_CURVES)
        if log_y
        else ("absolute", NEAR_CURVES * float(np.ptp(finite)) if finite.size else 0.0)
    )
    drawn: dict[str, np.ndarray] = {}
    shown: list[float] = []  # the positive values that set a log axis' range (none of them ≤ floor at the floor)
    floored: list[float] = []  # the floors of the curves drawn along the axis bottom
    with in_style():
        for rule in rules:
            curve = summary[summary["rule"] == rule]
            if not np.isfinite(curve["center"]).any():
                continue
            x = curve["iteration"].to_numpy(dtype=np.float64)
            centre = curve["center"].to_numpy()
            lower = curve["lower"].to_numpy()
            upper = curve["upper"].to_numpy()
            floor = metric_floor(metric, precision, taus.get(str(rule), tau))
            # a curve at the rounding floor (sim.diagnostics.floor_iteration) is drawn down to the floor only:
            # its values ≤ floor (zeros included) run along the axis bottom instead, from a ▼ at the first
            floor_from = first_floor_iteration(x, centre, floor) if log_y else None
            at_floor = np.zeros(x.shape, dtype=bool)
            if floor_from is not None:
                at_floor = (x >= floor_from) & np.isfinite(centre) & (centre <= floor)
                # its band too: from t = 0 to a floored point it was a wedge down to ~1e-16, crossing the axis
                # bottom early (record_every = 200: at t ≈ 1) as if the curve were there
                centre, lower, upper = (np.where(at_floor, np.nan, values) for values in (centre, lower, upper))
                floored.append(floor)
            if log_y:
                centre = np.where(centre > 0, centre, np.nan)
                # a band whose lower end is 0 or below (resamples of seeds at exactly 0) reaches below any log
                # axis: it runs down past the axis bottom, as one ending at a rounding residue of 1e-17 does
                lower = np.where(lower > 0, lower, np.where(np.isfinite(lower), BAND_BELOW_LOG_AXIS, np.nan))
                upper = np.where(upper > 0, upper, np.nan)
                # what sets the log axis' range: values above the floor, and a curve that is not at the floor
                shown.extend(centre[np.isfinite(centre)])
                shown.extend(lower[np.isfinite(lower) & (lower > floor)])
            name = (labels or {}).get(rule, rule)
            line = {**line_styles.get(rule, {"color": "0.2", "ls": "-", "lw": 1.6}), **((styles or {}).get(rule, {}))}
            twin, exact = _identical_to(centre, drawn, None if many else closeness)
            if twin is not None:
                name = f"{name} ({'=' if exact else '≈'} {(labels or {}).get(twin, twin)})"
                line = {**line, "ls": (0, (2, 3)), "lw": 2.2}
            drawn[rule] = centre
            fit, choice = _fit_for(table, metric, rule, x, curve["center"].to_numpy(), floor, fit_window, fit_scale)
            if many:
                name = "_nolegend_"  # the colour bar names the curves
            elif fit is not None:
                name = f"{name}\n  {fit_label(fit, mean_curve_slope(x, curve['center'].to_numpy(), fit, floor))}"
            elif choice.reason:
                name = f"{name}\n  no fit: {choice.reason}"
            if floor_from is not None and not many:
                name = f"{name}\n  ▼ from t = {floor_from}: ≤ floor {_floor_text(floor)} or 0 (axis bottom)"
            colour = line["color"]
            if per_seed:
                values, _, iterations = stats.seed_matrix(table, metric, rule)
                for row in values:
                    row = np.where(row > 0, row, np.nan) if log_y else row
                    axes.plot(iterations, row, color=colour, lw=0.5, alpha=0.35, ls="-", label="_nolegend_")
            artist = axes.plot(x, centre, label=name, **line)[0]
            artist.prefsim_fit = fit
            artist.prefsim_fit_choice = choice
            artist.prefsim_rule = rule
            artist.prefsim_floor_from = floor_from
            if floor_from is not None:
                # x in data, y in axes fraction: on the axis bottom whatever the y range (a shared one too)
                axes.plot(
                    x,
                    np.where(at_floor, FLOOR_LINE_HEIGHT, np.nan),
                    transform=axes.get_xaxis_transform(),
                    color=colour,
                    ls=line["ls"],
                    lw=line["lw"],
                    marker="v",
                    markevery=[int(np.argmax(x >= floor_from))],
                    ms=6,
                    clip_on=False,
                    label="_nolegend_",
                )[0].prefsim_floor_of = rule
            axes.fill_between(
                x,
                np.where(np.isfinite(lower), lower, centre),
                np.where(np.isfinite(upper), upper, centre),
                color=colour,
                alpha=max(0.01, 1.0 / len(rules)) if many else 0.15,  # overlapping bands add up
                lw=0,
            )
            if x[0] == 0 and np.isfinite(centre[0]):
                axes.plot(
                    [0.0],
                    [centre[0]],
                    marker="o",
                    mfc="white",
                    mec=colour,
                    ms=5,
                    zorder=5,
                    clip_on=False,
                    label="_nolegend_",
                )
        bound_lines = [line for line in _theory_lines(theory) if line[3] is None or line[3] in rules]
        entries = _bound_entries(bound_lines, labels or {}, many)
        for label, xs, ys, rule in bound_lines:
            ys = np.asarray(ys, dtype=np.float64)
            if log_y:
                ys = np.where(ys > 0, ys, np.nan)
                shown.extend(ys[np.isfinite(ys)])
            style = {**line_styles.get(rule, {"color": "0.2", "ls": "-"}), **((styles or {}).get(rule, {}))}
            if many:  # dotted, apart from the solid curves of the colour scale
                style = {**style, "ls": (0, (1, 1.5))}
            legend_label = entries.pop(label if not many else None, "_nolegend_")
            artist = axes.plot(xs, ys, lw=0.9, alpha=0.7, color=style["color"], ls=style["ls"], label=legend_label)[0]
            artist.prefsim_bound = True
        if many and floored:  # no legend entry per curve says what its ▼ and line along the axis bottom are
            low, high = _floor_text(min(floored)), _floor_text(max(floored))
            bound = f"floor {low}" if low == high else f"each curve's floor, {low} to {high},"
            label = f"▼ from there: ≤ {bound}\n  or 0 (axis bottom)"
            axes.plot([], [], color="0.35", lw=1.0, marker="v", ms=6, label=label)
        axes.set_xscale("symlog", linthresh=1.0, linscale=0.4)
        axes.set_xlim(left=0.0)
        if log_y:
            axes.set_yscale("log")
            _log_range_above_floor(axes, shown)
            _room_below_data(axes, shown, floored)
        plain_log_labels(axes)
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
        axes.set_xlabel("iteration t (0 = π_0; symlog axis)")
        axes.set_ylabel(metric_label(metric))
        if many:
            _curve_colour_bar(axes, rules, ramp, labels or {})
        axes.grid(True, which="major", alpha=0.3)
        _legend(axes, legend)
        if title:  # wrapped to the axes' width after the layout (a legend outside narrows the axes): not cut off
            figure = axes.get_figure(root=True)
            figure.draw_without_rendering()
            width = axes.get_position().width * figure.get_figwidth()
            axes.set_title(_wrap_title(title, width, STYLE["axes.titlesize"]))
    return axes


def _floor_text(floor: float) -> str:
    """The rounding floor as a legend writes it (``2.2×10⁻¹⁴``)."""
    mantissa, exponent = f"{floor:.1e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPTS)}"


def _log_range_above_floor(axes: Axes, shown: list[float]) -> None:
    """Raise a log y axis' bottom to the lowest of the ``shown`` values (with Matplotlib's 5% margin in
    log space) where something below them stretched it: a band or a seed's curve at or below the rounding
    floor (a mean of 1e-26 from a few rounding residues among zeros).  Only ever raises the bottom."""
    if not shown:
        return
    low, high = float(np.min(shown)), float(axes.dataLim.y1)
    if not (0.0 < low < high and np.isfinite(high)):
        return
    span = math.log10(high) - math.log10(low)
    margin = axes.margins()[1] * span
    bottom = 10.0 ** (math.log10(low) - margin)
    if bottom > axes.get_ylim()[0] * (1.0 + 1e-9):
        axes.set_ylim(bottom, 10.0 ** (math.log10(high) + margin))


#: A curve drawn along the axis bottom (at its floor) gets at least this many decades of axis below the lowest
#: value shown above the floor: right under the data, "at the floor" read as a plateau just below it.
FLOOR_GAP_DECADES = 2.0


def _room_below_data(axes: Axes, shown: list[float], floored: list[float]) -> None:
    """Lower a log y axis' bottom, when a curve runs along it (``floored``: the floors of those curves), to
    :data:`FLOOR_GAP_DECADES` below the lowest of the ``shown`` values, but not below the highest of those
    floors: the bottom line then reads as far below the data, not as a value next to it (τ = 1: a KL of
    1.6e-16 drawn at 2.8e-3, beside the 3×10⁻³ tick, under data down to 2.8e-3).  Only ever lowers it."""
    if not floored or not shown:
        return
    bottom, top = axes.get_ylim()
    wanted = max(float(np.min(shown)) / 10.0**FLOOR_GAP_DECADES, max(floored))
    if 0.0 < wanted < bottom:
        axes.set_ylim(wanted, top)


def _bound_entries(bound_lines: list, labels: dict, many: bool) -> dict:
    """Legend text of the bounds drawn, keyed by their label (the first line of a label gets it).

    A bound of one rule reads ``"<label> (thin)"``; one label drawn for several rules (the Hedge regret bound
    of ``sppo`` and of ``dno``) names them: the entry's line shows the first rule's colour only, and the
    others' lines must not go unexplained.  Above :data:`MANY_CURVES` curves, one entry (key ``None``) names
    every theorem for all the dotted lines.
    """
    if many:
        theorems = list(dict.fromkeys(_bound_name(label) for label, *_ in bound_lines))
        return {None: f"{', '.join(theorems)} bounds (thin, dotted)"} if theorems else {}
    owners: dict[str, list[str]] = {}
    for label, _, _, rule in bound_lines:
        owners.setdefault(label, []).append(labels.get(rule, rule) if rule is not None else None)
    entries = {}
    for label, names in owners.items():
        names = list(dict.fromkeys(name for name in names if name is not None))
        if len(names) < 2:
            entries[label] = f"{label} (thin)"
        elif len(names) <= MAX_NAMED_BOUND_RULES:
            entries[label] = f"{label} (thin, in each rule's colour:\n  {', '.join(names)})"
        else:
            entries[label] = f"{label} (thin, in each rule's colour:\n  {len(names)} rules)"
    return entries


def _bound_name(label: str) -> str:
    """A stored bound label without its rule (``"MMD linear rate bound (mmd)"`` → ``"MMD linear rate"``)."""
    return re.sub(r" bound( \(.*\))?$", "", label)


def _curve_colour_bar(axes: Axes, rules: list[str], ramp, labels: dict) -> None:
    """The colour bar of an axes with more than :data:`MANY_CURVES` curves: its colours in the rules' order,
    the first, middle and last rule named."""
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(-0.5, len(rules) - 0.5), cmap=ramp)
    bar = axes.get_figure(root=False).colorbar(mappable, ax=axes, pad=0.02)
    ticks = sorted({0, (len(rules) - 1) // 2, len(rules) - 1})
    bar.set_ticks(ticks, labels=[labels.get(rules[index], rules[index]) for index in ticks])
    bar.set_label(f"{len(rules)} curves, in this order (mean and band each; no rate fits)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _legend(axes, where: str) -> None:
    if where == "none" or not axes.get_legend_handles_labels()[0]:  # nothing named (a colour bar names the curves)
        return
    if where == "inside":
        axes.legend(loc="best", frameon=False)
    elif where == "below":
        axes.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), frameon=False, ncols=1)
    elif where == "outside":
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    else:
        raise PrefsimError(f"legend: expected outside, below, inside or none, got {where!r}.")


def _figure_legend(figure, axes, where: str) -> int:
    """A legend of ``axes``'s curves on ``figure`` (or subfigure) at ``where``; return its text lines."""
    handles, texts = axes.get_legend_handles_labels()
    if not handles:
        return 0
    figure.legend(handles, texts, loc=where, frameon=False)
    return sum(text.count("\n") + 1 for text in texts)


def _share_y(panels: list) -> None:
    """Give the panels one y range (the union of theirs), so small multiples compare at a glance."""
    if len(panels) < 2:
        return
    low = min(axes.get_ylim()[0] for axes in panels)
    high = max(axes.get_ylim()[1] for axes in panels)
    for axes in panels:
        axes.set_ylim(low, high)


def _identical_to(
    centre: np.ndarray, drawn: dict[str, np.ndarray], closeness: tuple[str, float] | None = None
) -> tuple[str | None, bool]:
    """The first already drawn rule whose mean curve equals ``centre`` (to 1e-12 relative), and ``True``; else,
    with ``closeness`` (``("relative", r)``: |a − b| ≤ r·max(|a|, |b|) at every iteration, for a log axis;
    ``("absolute", d)``: |a − b| ≤ d), the first whose curve is that close, one the other would hide, and
    ``False``; else ``(None, False)``.  Both curves must be drawn at the same iterations."""
    for rule, other in drawn.items():
        if other.shape == centre.shape and np.allclose(other, centre, rtol=1e-12, atol=0.0, equal_nan=True):
            return rule, True
    if closeness is None:
        return None, False
    kind, tolerance = closeness
    for rule, other in drawn.items():
        if other.shape != centre.shape or not np.array_equal(np.isfinite(other), np.isfinite(centre)):
            continue
        both = np.isfinite(centre)
        if not both.any():
            continue
        gap = np.abs(other[both] - centre[both])
        limit = tolerance * np.maximum(np.abs(other[both]), np.abs(centre[both])) if kind == "relative" else tolerance
        if np.all(gap <= limit):
            return rule, False
    return None, False


def _fit_for(table, metric, rule, iterations, centre, floor, fit_window, fit_scale):
    """(RateFit or None, FitChoice) for one curve under the ``fit_window`` / ``fit_scale`` arguments."""
    rule_window = fit_window.get(rule) if isinstance(fit_window, dict) else fit_window
    if rule_window is None:
        return None, FitChoice("none")
    window = None if rule_window == "auto" else tuple(rule_window)
    choice = choose_fit(iterations, centre, metric, floor, scale=fit_scale, window=window)
    if choice.kind == "none":
        return None, choice
    fit = stats.fit_rate(table, metric, rule, window=choice.window, scale=choice.kind, floor=floor)
    return fit, choice


def _theory_lines(theory):
    """Normalise the ``theory`` argument to (label, x, y, rule) tuples."""
    if theory is None:
        return []
    lines = []
    if isinstance(theory, pd.DataFrame):
        if not {"iteration", "bound"} <= set(theory.columns):
            raise PrefsimError(
                "theory: a DataFrame of bounds needs columns iteration and bound (optional rule, label)."
            )
        keys = [c for c in ("rule", "label") if c in theory.columns]
        groups = theory.groupby(keys, sort=False) if keys else [(("bound",), theory)]
        for _, frame in groups:
            rule = frame["rule"].iloc[0] if "rule" in frame.columns else None
            label = frame["label"].iloc[0] if "label" in frame.columns else "bound"
            if "label" in frame.columns and rule is not None:
                # stored labels read "<theorem> bound (<rule>)": the rule is shown by colour and style
                label = str(label).replace(f" ({rule})", "")
            frame = frame.sort_values("iteration")
            lines.append((str(label), frame["iteration"].to_numpy(dtype=np.float64), frame["bound"].to_numpy(), rule))
        return lines
    if isinstance(theory, dict):
        for label, (xs, ys) in theory.items():
            lines.append((str(label), np.asarray(xs, dtype=np.float64), np.asarray(ys), None))
        return lines
    raise PrefsimError("theory: expected a DataFrame (iteration, bound[, rule, label]) or a dict label → (x, y).")


# ----------------------------------------------------------------------------------------------
# files


#: zlib level of the PNGs (Pillow's default is 6): level 1 encodes a run's metric figure in ~8 ms
#: instead of ~24 ms, so a figure takes ~8% less time to draw, for files ~18% larger (K = 100,
#: 256 seeds: 12 figures 900 kB instead of 760 kB; 2-core CI machine, 2026-12-06).
PNG_COMPRESS_LEVEL = 1


#: Metadata that leaves out the date a PDF or SVG file would carry (``None`` omits an entry).
UNDATED = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}
#: The salt of an SVG's element ids (random without one): the same figure gets the same ids.
SVG_ID_SALT = "prefsim"


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` (PNG at 150 dpi, or PDF / SVG by the suffix) via a temporary file; return the path.

    An operating-system error (a full disk, a file-size limit) removes the temporary file and is raised
    again as an :class:`OSError` naming ``path`` (a write's ENOSPC names no file of its own)."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "png"
    if kind not in ("png", "pdf", "svg"):
        raise PrefsimError(f"save_figure: unknown format {kind!r}; use .png, .pdf or .svg.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp.{kind}")
    try:
        if kind == "png" and isinstance(figure.canvas, FigureCanvasAgg):
            write_png(figure, temporary, STYLE["savefig.dpi"])
        else:  # no date and fixed SVG ids: the same figure gives the same bytes (kept figures, diffs)
            with matplotlib.rc_context({"svg.hashsalt": SVG_ID_SALT}):
                figure.savefig(temporary, dpi=STYLE["savefig.dpi"], format=kind, metadata=UNDATED[kind])
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    return path


def write_png(figure: Figure, target: str | Path | IO[bytes], dpi: float) -> None:
    """Draw ``figure`` (on an Agg canvas) once at ``dpi`` and write its pixels as a PNG (zlib level
    :data:`PNG_COMPRESS_LEVEL`; RGB where every pixel is opaque, as a figure on its white face is).

    The same pixels as ``figure.savefig(target, dpi=dpi)``, ~15% sooner for a metric figure: with a layout
    engine, ``savefig`` draws the figure twice, once (without rendering) to place the axes and once to
    render; ``FigureCanvasAgg.draw`` places and renders in one pass.
    """
    canvas = figure.canvas
    previous = figure.get_dpi()
    figure.set_dpi(dpi)
    try:
        canvas.draw()
        width, height = canvas.get_width_height(physical=True)
        drawn = PIL.Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        # the canvas's buffer is reused by its next draw: convert() and copy() make images of their own
        image = drawn.convert("RGB") if drawn.getextrema()[3][0] == 255 else drawn.copy()
    finally:
        figure.set_dpi(previous)
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text("Software", f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/")
    image.save(target, format="png", compress_level=PNG_COMPRESS_LEVEL, dpi=(dpi, dpi), pnginfo=info)


def show_in_notebook(path: str | Path) -> None:
    """Display a saved figure inside Jupyter; a no-op when a notebook runs as a script (as in CI).

    IPython is imported lazily: it is optional (installed with Jupyter), not a dependency of prefsim.
    """
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(str(path)))


def _wrap_title(text: str, width_inches: float, fontsize: float = 11.0) -> str:
    """Wrap ``text`` to lines that fit ``width_inches`` (average glyph ≈ 0.6 × font size); its own line breaks
    are kept (each line is wrapped on its own)."""
    characters = max(20, int(width_inches * 72.0 / (0.6 * fontsize)))
    return "\n".join(piece for line in text.split("\n") for piece in textwrap.wrap(line, characters) or [""])


def _legend_labels(rules: list[str], plot: PlotSpec) -> dict:
    names = {}
    for rule in rules:
        if rule in plot.labels:
            names[rule] = plot.labels[rule]
        elif family_of(rule) in plot.labels and family_of(rule) != rule:
            names[rule] = plot.labels[family_of(rule)] + rule[len(family_of(rule)) :]
    return names


def metric_figure(
    table: pd.DataFrame,
    metric: str,
    rules: list[str],
    plot: PlotSpec,
    bounds: pd.DataFrame | None = None,
    title: str | None = None,
    precision: str = "float64",
    tau: float | None = None,
) -> Figure:
    """The figure of one metric: one axes, one panel per rule family, or one panel per value of the
    swept ``[game]``/``[run]`` fields (facets; see the module docstring).  ``tau``: the game's τ
    (:func:`plot_metric`)."""
    groups, panels, facets, note = figure_layout(table, rules, plot)
    theory = bounds_for_metric(bounds, metric)
    labels = _legend_labels(rules, plot)
    common = {
        "theory": theory,
        "per_seed": plot.per_seed,
        "labels": labels,
        "precision": precision,
        "tau": tau,
        "fit_window": None if plot.fit == "none" else "auto",
        "fit_scale": "auto" if plot.fit == "none" else plot.fit,
    }
    if facets:
        common["styles"] = facet_styles(rules, facets)
    if note:
        title = f"{title} ({note})" if title else note
    with matplotlib.rc_context(STYLE):
        if not panels:
            figure = Figure(figsize=WIDE_FIGURE_SIZE, layout="constrained")
            FigureCanvas(figure)
            # axes and legend in a subfigure: the legend then sits below the figure's title, not beside it
            cell = figure.subfigures(1, 1)
            axes = cell.add_subplot()
            plot_metric(table, metric, axes=axes, rules=rules, legend="none", **common)
            lines = _figure_legend(cell, axes, "outside right upper")
            figure.set_figheight(max(WIDE_FIGURE_SIZE[1], LEGEND_LINE_INCHES * lines + 1.0))
        else:
            columns = min(3, len(groups))
            rows = math.ceil(len(groups) / columns)
            figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.6), layout="constrained")
            FigureCanvas(figure)
            # one subfigure per family: its legend is placed "outside lower" by constrained layout,
            # which reserves the room (a legend anchored below an axes would not get any)
            cells = figure.subfigures(rows, columns, squeeze=False)
            panel_axes, legend_rows = [], [0] * rows
            for index, (name, members) in enumerate(groups):
                cell = cells.flat[index]
                axes = cell.add_subplot()
                plot_metric(table, metric, axes=axes, rules=members, legend="none", **common)
                # y given on a log axis: Matplotlib then skips placing the title above top ticks or an offset
                # text (a log panel has neither, so the same pixels), which took a pass over the y axis' ticks
                # at every layout pass and draw, ~12% of drawing a figure of 12 panels; a linear panel may show
                # an offset text (×1e−7) that the title must clear, so it is placed as Matplotlib places it
                height = 1.0 if axes.get_yscale() == "log" else None
                axes.set_title(_wrap_title(name, PANEL_SIZE[0], 10), fontsize=10, y=height)
                row = index // columns
                legend_rows[row] = max(legend_rows[row], _figure_legend(cell, axes, "outside lower left"))
                panel_axes.append(axes)
            _share_y(panel_axes)
            figure.set_figheight(sum(PANEL_SIZE[1] + LEGEND_LINE_INCHES * lines for lines in legend_rows) + 0.6)
        if title:
            figure.suptitle(_wrap_title(title, figure.get_figwidth(), STYLE["axes.titlesize"]), fontsize=11)
        if panels:
            _align_rows(figure, [panel_axes[start : start + columns] for start in range(0, len(panel_axes), columns)])
    return figure


def _align_rows(figure: Figure, rows: list[list[Axes]]) -> None:
    """Give the panels of each row one height and vertical position, then keep the layout as it is.

    Constrained layout sizes each panel's axes around its own legend below it, so in a row the panel with
    the longest legend had the shortest axes, and a shared y range then read differently from panel to
    panel.  The layout is run once, each row's axes get the lowest top and the highest bottom among them
    (the room of the row's longest legend, reserved in every panel), and the layout engine is switched off
    so that drawing the figure keeps these positions.  The row's legends hang from one line, the top of
    its longest legend.
    """
    figure.get_layout_engine().execute(figure)
    renderer = figure.canvas.get_renderer()
    to_figure = figure.transFigure.inverted()
    for row in rows:
        if len(row) < 2:
            continue
        boxes = [axes.get_position() for axes in row]
        bottom, top = max(box.y0 for box in boxes), min(box.y1 for box in boxes)
        for axes, box in zip(row, boxes):
            axes.set_position([box.x0, bottom, box.width, top - bottom])
        legends = [legend for axes in row for legend in axes.get_figure(root=False).legends]
        extents = [legend.get_window_extent(renderer).transformed(to_figure) for legend in legends]
        if extents:
            hang = max(extent.y1 for extent in extents)
            for legend, extent in zip(legends, extents):
                legend.set_loc("upper left")
                legend.set_bbox_to_anchor((extent.x0, hang), transform=figure.transFigure)
                legend.borderaxespad = 0.0
    figure.set_layout_engine("none")


#: Rule labels up to which the head-to-head heat map is drawn (a 40 × 40 map is 23 inches wide).
HEATMAP_MAX_LABELS = 40
#: The heat map's colours span ½ ± the largest |W − ½|, but never less than this (all W = ½: a blank map).
HEATMAP_MIN_SPREAD = 0.005
#: Largest font size of the heat map's cell values (points); smaller where a cell is too narrow for it.
HEATMAP_CELL_FONT = 8.0
#: Least height of the heat map (inches): its colour bar's two-line label beside a grid of 2 or 3 rules.
HEATMAP_MIN_HEIGHT = 3.2


def plot_headtohead(table: pd.DataFrame, path: str | Path) -> Path | None:
    """The heat map of :func:`headtohead_figure` written to ``path``; ``None``, and nothing written, where
    there is no map."""
    figure = headtohead_figure(table)
    return None if figure is None else save_figure(figure, path)


def headtohead_figure(table: pd.DataFrame) -> Figure | None:
    """Heat map of a run's head-to-head table (``headtohead.csv``, :mod:`sim.headtohead`): W(A, B), rows A,
    columns B, with the mean in each cell.  The colours diverge from white at ½ and span ½ ± the largest
    |W − ½| (the colour bar says so): win rates of 0.46–0.54 on a fixed 0–1 scale looked all white.
    ``None`` for a run of one rule (W(A, A) = ½ says nothing) and for more than :data:`HEATMAP_MAX_LABELS`
    (cells and labels too small to read; the table is in ``headtohead.csv``)."""
    labels = list(dict.fromkeys(table["rule_a"]))
    if not 2 <= len(labels) <= HEATMAP_MAX_LABELS:
        return None
    grid = table.pivot(index="rule_a", columns="rule_b", values="win_rate").reindex(index=labels, columns=labels)
    values = grid.to_numpy(dtype=np.float64)
    finite = np.abs(values[np.isfinite(values)] - 0.5)
    spread = max(float(finite.max(initial=0.0)), HEATMAP_MIN_SPREAD)
    digits = 2 if spread >= 0.05 else 3  # 0.46 … 0.54 in two digits would hide the differences
    size = 1.2 + 0.55 * len(labels)
    with matplotlib.rc_context(STYLE):
        # "compressed": the constrained layout for fixed-aspect axes (a square grid of cells); "constrained"
        # placed the row labels' axis title past the figure's left edge
        figure = Figure(figsize=(size + 1.5, max(size + 0.3, HEATMAP_MIN_HEIGHT)), layout="compressed")
        FigureCanvas(figure)
        axes = figure.add_subplot()
        norm = matplotlib.colors.Normalize(vmin=0.5 - spread, vmax=0.5 + spread)
        image = axes.imshow(values, cmap="RdBu_r", norm=norm)
        axes.spines[["top", "right"]].set_visible(True)  # a closed frame around the cells
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axes.set_yticks(range(len(labels)), labels)
        axes.set_xlabel("opponent B")
        axes.set_ylabel("rule A")
        # two short lines: one line ran past the top and bottom of a map of 2–4 rules
        figure.colorbar(image, ax=axes, label=f"P(A ≻ B)\nspan ½ ± {spread:.2g} = max |W − ½|")
        title = f"final policies: win rate of A vs B, mean over {int(table['seeds'].max())} seeds"
        figure.suptitle(_wrap_title(title, figure.get_figwidth(), 10), fontsize=10)
        # the cell values, in a font that fits a cell once the layout has sized the axes
        figure.get_layout_engine().execute(figure)
        cell = axes.get_position().width * figure.get_figwidth() * 72.0 / len(labels)
        fontsize = min(HEATMAP_CELL_FONT, 0.85 * cell / (0.62 * (digits + 2)))
        for i in range(len(labels)):
            for j in range(len(labels)):
                value = values[i, j]
                axes.text(j, i, f"{value:.{digits}f}", ha="center", va="center", fontsize=fontsize,
                          color="white" if abs(value - 0.5) > 0.6 * spread else "black")  # fmt: skip
    return figure


def facet_styles(rules: list[str], facets: list) -> dict[str, dict]:
    """Line properties that give a rule the same colour and style in every facet: :func:`curve_styles` of
    the labels with the facet's values left out (``inpo[eta=2,game.tau=0.1]`` → ``inpo[eta=2]``)."""
    panel_values = {rule: name.split(", ") for name, members in facets for rule in members}

    def without_facet(rule: str) -> str:
        if "[" not in rule:
            return rule
        stem, inside = rule[:-1].split("[", 1)
        kept = [entry for entry in inside.split(",") if entry not in panel_values[rule]]
        return f"{stem}[{','.join(kept)}]" if kept else stem

    keys = {rule: without_facet(rule) for rule in rules}
    styles = curve_styles(list(dict.fromkeys(keys.values())))
    return {rule: styles[key] for rule, key in keys.items()}


def plot_run(
    table: pd.DataFrame,
    out_dir: str | Path,
    manifest: dict | None = None,
    metrics: Iterable[str] | None = None,
    bounds: pd.DataFrame | None = None,
    plot: PlotSpec | dict | None = None,
    progress: Progress | None = None,
    workers: Sequence[FigureWorker] = (),
) -> list[Path]:
    """One figure per metric with data, ``out_dir/<metric>.<format>``; return the written paths.

    Metrics with no finite value after iteration 0 (e.g. ``suboptimality`` without rewards,
    ``duality_gap`` at τ = 0) are skipped.  With a ``manifest`` (as written by :func:`sim.run`) the
    title names the spec, the problem and the seeds, and its ``[plot]`` table (:mod:`sim.plot_spec`)
    chooses rules, metrics, per-seed curves, legend labels, layout, fits and formats unless ``plot``
    is given.  ``bounds`` (the run's ``bounds.csv``, :mod:`sim.bounds_table`) are drawn as thin lines.
    ``progress``: a :class:`sim.progress.Progress` (or anything with its ``stage`` method) is told
    when each figure starts.  ``workers``: figure processes started earlier (:class:`FigureWorker`) that
    share the figures with this process; without them, a long drawing starts one process per further
    usable core (:func:`sim.figure_plan.draw_figures`).  Every worker is stopped when the figures are
    drawn (a worker serves one call).
    """
    plan = plan_figures(table, out_dir, manifest, metrics, bounds, plot)
    return draw_figures(plan, draw_job_figure, workers, progress)


def draw_job_figure(job: FigureJob, figure: str) -> list[Path]:
    """Draw one figure of ``job`` (a metric's, or :data:`sim.figure_plan.HEADTOHEAD`'s map) and write it in
    each of the plot's formats into ``job.out_dir``; returns the paths.  What a figure process runs."""
    if figure == HEADTOHEAD:
        drawn = (plot_headtohead(job.headtohead, job.out_dir / f"headtohead.{kind}") for kind in job.plot.formats)
        return [path for path in drawn if path is not None]
    made = metric_figure(job.table, figure, job.rules, job.plot, job.bounds, job.title, job.precision, job.tau)
    return [save_figure(made, job.out_dir / f"{figure}.{kind}") for kind in job.plot.formats]


def serve_figures() -> None:
    """A :class:`sim.figure_worker.FigureWorker`'s process (:func:`sim.figure_worker.serve`): figures of
    its job, one at a time, on one core (BLAS on one thread)."""
    with threadpool_limits(1, user_api="blas"):
        serve(draw_job_figure, warm_up)


def warm_up() -> None:
    """Draw and encode a small figure with what a metric figure uses (log axes, a band, a legend, mathtext,
    constrained layout, PNG), so that Matplotlib's one-time work (fonts, the mathtext parser) is done
    before a figure process is sent figures, while it waits; writes nothing."""
    figure, axes = new_figure()
    with matplotlib.rc_context(STYLE):
        steps = np.arange(1.0, 11.0)
        axes.plot(steps, 1.0 / steps, label=r"$\propto t^{-1}$")
        axes.fill_between(steps, 0.5 / steps, 2.0 / steps, alpha=0.2)
        axes.set_xscale("symlog", linthresh=1.0)
        axes.set_yscale("log")
        axes.set_xlabel("iteration")
        figure.legend(loc="outside right upper")
        figure.suptitle("warm-up")
        write_png(figure, io.BytesIO(), STYLE["savefig.dpi"])


def plot_grid(
    table: pd.DataFrame,
    metrics: Iterable[str],
    path: str | Path,
    columns: int = 2,
    bounds: pd.DataFrame | None = None,
    **kwargs: Any,
) -> Path:
    """:func:`grid_figure` written to ``path``; returns the path."""
    return save_figure(grid_figure(table, metrics, columns, bounds, **kwargs), path)


def grid_figure(
    table: pd.DataFrame,
    metrics: Iterable[str],
    columns: int = 2,
    bounds: pd.DataFrame | None = None,
    **kwargs: Any,
) -> Figure:
    """Several metrics side by side in one figure (notebook figures); ``kwargs`` go to :func:`plot_metric`.

    Each axes' legend is outside it, on its right (``legend="outside"``, the default; a panel is then as wide as
    a metric figure with its legend): a legend inside the axes covered curves and bands."""
    metrics = list(metrics)
    rows = math.ceil(len(metrics) / columns)
    kwargs.setdefault("legend", "outside")
    width = WIDE_FIGURE_SIZE[0] if kwargs["legend"] == "outside" else FIGURE_SIZE[0]
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(width * min(columns, len(metrics)), FIGURE_SIZE[1] * rows), layout="constrained")
        FigureCanvas(figure)
        grid = figure.subplots(rows, min(columns, len(metrics)), squeeze=False)
    for index, metric in enumerate(metrics):
        plot_metric(table, metric, axes=grid.flat[index], theory=bounds_for_metric(bounds, metric), **kwargs)
    for extra in list(grid.flat)[len(metrics) :]:
        extra.set_visible(False)
    return figure
