"""What a run's figures are, and who draws them: planned and handed out without Matplotlib.

:func:`plan_figures` reads a run's table, manifest and ``[plot]`` table (:mod:`sim.plot_spec`) and says
which figures the run has — one per metric with data (:func:`sim.stats.has_data`; those of
:data:`NOT_DRAWN_BY_DEFAULT` only when picked by name) and, for ``prefsim run``, the head-to-head map of two
rules or more — and what they share (:class:`FigureJob`: what a figure process
is sent once).  :func:`draw_figures` draws them, sharing them with figure processes
(:func:`sim.figure_worker.draw_shared`); each figure itself is drawn by
:func:`sim.plotting.draw_job_figure`, here or in a figure process.

This module imports neither Matplotlib nor JAX: a ``prefsim run`` whose figure processes are ready
when its results are stored hands them every figure and never imports Matplotlib itself (about 0.35 s
on the 2-core CI machine, and another 0.1 s for its first figure).  Figure processes import it to read
their job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from bandits.errors import PrefsimError
from sim import stats
from sim.field_sweep import format_value
from sim.figure_worker import FigureWorker, draw_shared, start_workers
from sim.machine import usable_cores
from sim.plot_spec import PlotSpec, check_plot_facets, parse_plot
from sim.progress import Progress
from sim.provenance import installed_versions, source_digest
from sim.results_io import frame_schema

#: More curves than this in one axes → one panel per rule family (``layout = "auto"``).
MAX_CURVES_PER_AXES = 6
#: At most this many facets (values or combinations of the swept [game]/[run] fields) get a panel each.
MAX_FACETS = 12
#: Metric columns that get a figure only when picked by name (``[plot] metrics`` of the spec):
#: ``max_log_ratio_so_far`` is the running maximum of ``max_log_ratio`` (the B the bounds read), whose own
#: figure every run draws; a figure of it by default would add a figure's drawing time to every run.
NOT_DRAWN_BY_DEFAULT = ("max_log_ratio_so_far",)


def family_of(label: str) -> str:
    """The rule family of a result label: the ``[[rule]]`` label before a sweep's ``[...]``."""
    return label.split("[", 1)[0]


def figure_title(manifest: dict | None) -> str | None:
    """Title from a run's manifest: the spec's name, what was simulated, and the seeds.

    Describes the problem the run actually used: in sampled mode with ``run.problem`` other than
    ``game`` (e.g. the ring), the ``[game]`` table is unused and is not cited.
    """
    if not manifest:
        return None
    spec = manifest.get("spec", {}) if isinstance(manifest, dict) else {}
    spec = spec if isinstance(spec, dict) else {}
    plot = spec.get("plot") if isinstance(spec.get("plot"), dict) else {}
    if plot.get("title"):
        return str(plot["title"])
    parsed = manifest.get("parsed_spec", {}) if isinstance(manifest.get("parsed_spec"), dict) else {}
    run = parsed.get("run") or spec.get("run") or {}
    parts = []
    if spec.get("name"):
        parts.append(str(spec["name"]))
    problem = run.get("problem", "game") if isinstance(run, dict) else "game"
    mode = run.get("mode", "exact") if isinstance(run, dict) else "exact"
    game = spec.get("game", {}) if isinstance(spec.get("game"), dict) else {}
    if mode == "sampled" and problem != "game":
        # the [game] table's kind is unused by these problems; they take only τ (and K for linear ones)
        description = f"sampled, problem = {problem}"
        if problem == "ring" and run.get("ring_grid"):
            description += f", K = {int(run['ring_grid']) ** 2} actions"
        elif game.get("arms") is not None:
            description += f", K = {game['arms']}"
        if isinstance(game.get("tau"), (int, float)):
            description += f", τ = {game['tau']:g}"
        parts.append(description)
    else:
        description = str(game.get("kind", "game"))
        if game.get("arms") is not None:
            description += f", K = {game['arms']}"
        elif isinstance(game.get("rewards"), list):
            description += f", K = {len(game['rewards'])}"
        if isinstance(game.get("tau"), (int, float)):
            description += f", τ = {game['tau']:g}"
        if mode == "sampled":
            description = f"sampled, {description}"
        parts.append(description)
    seeds = manifest.get("seeds")
    if seeds is not None:
        parts.append("1 seed, no interval" if len(seeds) == 1 else f"{len(seeds)} seeds, mean ± 95% bootstrap CI")
    return " — ".join(parts) if parts else None


def manifest_tau(manifest: dict | None) -> float | None:
    """The game's τ of a run's manifest (``parsed_spec``, else ``spec``), or ``None`` when it is not one
    number (a τ sweep: its table's ``game.tau`` column says each rule's,
    :func:`sim.diagnostics.rule_taus`)."""
    if not isinstance(manifest, dict):
        return None
    for key in ("parsed_spec", "spec"):
        game = manifest.get(key).get("game") if isinstance(manifest.get(key), dict) else None
        tau = game.get("tau") if isinstance(game, dict) else None
        if isinstance(tau, (int, float)) and not isinstance(tau, bool):
            return float(tau)
    return None


def selected_rules(table: pd.DataFrame, plot: PlotSpec) -> list[str]:
    """The rules of ``table`` that ``plot.rules`` picks (by label or family; all without it), in table order."""
    labels = stats.rules_of(table)
    if plot.rules is None:
        return labels
    chosen = [label for label in labels if label in plot.rules or family_of(label) in plot.rules]
    if not chosen:
        raise PrefsimError(f"plot.rules: none of {', '.join(plot.rules)} is a rule of this run ({', '.join(labels)}).")
    return chosen


def figure_layout(table: pd.DataFrame, rules: list[str], plot: PlotSpec) -> tuple[list, bool, list, str | None]:
    """``(groups, panels, facets, note)`` of a metric's figure: ``groups`` [(panel title, its rules)] (one
    per rule family, or the facets), ``panels`` whether they get a panel each (else one axes holds every
    rule), ``facets`` the facet groups when they are drawn (else empty) and the facet note."""
    families = list(dict.fromkeys(family_of(rule) for rule in rules))
    groups = [(family, [rule for rule in rules if family_of(rule) == family]) for family in families]
    panels = plot.layout == "panels" or (
        plot.layout == "auto" and len(rules) > MAX_CURVES_PER_AXES and len(families) > 1
    )
    facets, note = facet_panels(table, rules, plot)
    if facets and plot.layout != "single":
        return facets, True, facets, note
    return groups, panels, [], note


def facet_panels(table: pd.DataFrame, rules: list[str], plot: PlotSpec) -> tuple[list, str | None]:
    """``([(panel title, its rules)], note)``: one panel per value (or combination of values) of the facet
    fields (``plot.facet``; ``"auto"``: the ``game.*``/``run.*`` columns with more than one value among
    ``rules``).  More than :data:`MAX_FACETS` combinations: no panels and a note saying so."""
    if plot.facet == "none":
        return [], None
    values = stats.field_values_by_rule(table).reindex(rules)
    if plot.facet == "auto":
        fields = [c for c in values.columns if not c.startswith("rule.") and values[c].nunique(dropna=False) > 1]
    else:
        check_plot_facets(plot, [c for c in values.columns if not c.startswith("rule.")])
        fields = list(plot.facet)
    if not fields:
        return [], None
    keys = [tuple(values.at[rule, f] for f in fields) for rule in rules]
    combinations = list(dict.fromkeys(keys))
    if len(combinations) > MAX_FACETS:
        shown = " × ".join(fields)
        return [], f"{len(combinations)} values of {shown}: more than {MAX_FACETS} panels, curves share the axes"
    panels = []
    for combination in combinations:
        name = ", ".join(f"{f}={format_value(v)}" for f, v in zip(fields, combination))
        panels.append((name, [rule for rule, key in zip(rules, keys) if key == combination]))
    return panels, None


#: The figure key of the head-to-head map (:mod:`sim.headtohead`), drawn with the metric figures.
HEADTOHEAD = "headtohead"
#: Estimated seconds to draw a figure (:func:`plan_figures`): a fixed part and one per panel (2-core CI
#: machine, 2026-12-06: a figure of 12 panels, the default spec's, ~1.7 s; of one axes ~0.15 s).
FIGURE_SECONDS, PANEL_SECONDS = 0.03, 0.13
#: Above this many estimated seconds of drawing, :func:`draw_figures` without given workers starts figure
#: processes, one per further usable core (:class:`FigureWorker`); below it a process, which needs ~1 s
#: before it draws, would rarely get a figure.
PARALLEL_DRAWING_S = 3.0


@dataclasses.dataclass(frozen=True)
class FigureJob:
    """What every figure of one run shares: sent once to each figure process, which draws any of its
    figures with :func:`sim.plotting.draw_job_figure`.

    ``headtohead``: the run's head-to-head table (``headtohead.csv``) when its map is one of the figures.
    """

    table: pd.DataFrame
    rules: list
    plot: PlotSpec
    bounds: pd.DataFrame | None
    title: str | None
    precision: str
    out_dir: Path
    headtohead: pd.DataFrame | None = None
    tau: float | None = None
    """The game's τ when the run has one (not a τ sweep, whose table says each rule's): ``tv_to_optimum``'s
    floor depends on it (:func:`sim.diagnostics.metric_floor`)."""


@dataclasses.dataclass(frozen=True)
class FigurePlan:
    """A run's figures: ``figures`` (metric names, then :data:`HEADTOHEAD` when it is drawn), the
    :class:`FigureJob` they share and the estimated seconds of one (:data:`FIGURE_SECONDS`).

    ``without_data``: the metrics picked by name (``[plot] metrics`` or the ``metrics`` argument) that get no
    figure because they have no value after iteration 0 on the rules drawn (``suboptimality`` of a game
    without rewards), for the caller to say so."""

    job: FigureJob
    figures: list
    seconds_per_figure: float
    without_data: tuple = ()


#: Bumped whenever what :func:`figure_inputs_digest` covers changes.
FIGURE_INPUTS_FORMAT = "prefsim-figure-inputs-1"
#: The packages whose versions decide a figure's pixels, besides prefsim's own source files.
DRAWING_PACKAGES = ("matplotlib", "kiwisolver", "numpy", "pandas", "pillow", "scipy")


def _frame_digest(frame: pd.DataFrame | None) -> str:
    """SHA-256 of a frame's column names, dtypes and values (row order included); ``"none"`` for ``None``."""
    if frame is None:
        return "none"
    digest = hashlib.sha256(frame_schema(frame))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _matplotlib_settings_files() -> list[str]:
    """The contents of the ``matplotlibrc`` files Matplotlib may read settings from (the working directory's,
    ``$MATPLOTLIBRC``, ``$MPLCONFIGDIR``'s, and the user's configuration directory on Linux,
    ``$XDG_CONFIG_HOME/matplotlib`` or ``~/.config/matplotlib``, and elsewhere, ``~/.matplotlib``), by path:
    settings a figure's style does not fix (fonts, for one) come from them.  A place that cannot be known
    (a working directory since removed, no home directory) is left out."""
    places = [
        lambda: Path.cwd() / "matplotlibrc",
        lambda: Path(os.environ["MPLCONFIGDIR"]) / "matplotlibrc",
        lambda: Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib" / "matplotlibrc",
        lambda: Path.home() / ".matplotlib" / "matplotlibrc",
    ]
    if os.environ.get("MATPLOTLIBRC"):
        named = Path(os.environ["MATPLOTLIBRC"])
        places.append(lambda: named / "matplotlibrc" if named.is_dir() else named)
    found = []
    for place in places:
        with contextlib.suppress(OSError, RuntimeError, KeyError):
            path = place()
            found.append(f"{path}\0{path.read_text(encoding='utf-8', errors='replace')}")
    return found


def figure_inputs_digest(job: FigureJob) -> str:
    """One digest of everything a figure of ``job`` is drawn from: the run table, bounds and head-to-head
    table, the chosen rules, the ``[plot]`` settings, title, precision and τ, prefsim's source files
    (:func:`sim.provenance.source_digest`), the versions of :data:`DRAWING_PACKAGES` and the user's
    ``matplotlibrc`` files.  Two drawings with the same digest write the same bytes (nothing a figure
    shows is random or dated; PDF and SVG files carry no date, :func:`sim.plotting.save_figure`), so a
    figure file an earlier drawing made from it is kept (:func:`sim.results_io.kept_figures`).  Not
    covered: fonts installed on the system or a system FreeType (where a ``matplotlibrc`` picks another
    font than Matplotlib's own, or a distribution builds Matplotlib against them), and rcParams changed
    in the calling process (a notebook that calls the CLI's functions): ``prefsim plot`` after such a
    change may keep figures drawn before it; delete ``figures.json`` to draw every figure again."""
    parts = [
        FIGURE_INPUTS_FORMAT,
        source_digest(),
        repr(sorted(installed_versions(DRAWING_PACKAGES).items())),
        *_matplotlib_settings_files(),
        _frame_digest(job.table),
        _frame_digest(job.bounds),
        _frame_digest(job.headtohead),
        repr((list(job.rules), job.plot, job.title, job.precision, job.tau)),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def plan_figures(
    table: pd.DataFrame,
    out_dir: str | Path,
    manifest: dict | None = None,
    metrics: Iterable[str] | None = None,
    bounds: pd.DataFrame | None = None,
    plot: PlotSpec | dict | None = None,
    headtohead: pd.DataFrame | None = None,
) -> FigurePlan:
    """The figures of a run table (see :func:`sim.plotting.plot_run` for the arguments); creates ``out_dir``.

    Metrics with no finite value after iteration 0 are left out (those picked by name are named in
    :attr:`FigurePlan.without_data`); unknown ``metrics`` are a clear error.
    ``headtohead`` (a run's ``headtohead.csv``) adds its map when it has two rules or more and the
    ``[plot]`` table does not pick the metrics.
    """
    stats._check_table(table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = (manifest or {}).get("spec") if isinstance(manifest, dict) else None
    if plot is None:
        plot = parse_plot(spec.get("plot") if isinstance(spec, dict) else None)
    else:
        plot = parse_plot(plot)
    parsed = (manifest or {}).get("parsed_spec") or {}
    precision = parsed.get("precision") or (spec or {}).get("precision") or "float64"
    default = [metric for metric in stats.metric_columns(table) if metric not in NOT_DRAWN_BY_DEFAULT]
    names = list(metrics) if metrics is not None else list(plot.metrics or default)
    unknown = [m for m in names if m not in table.columns]
    if unknown:
        raise PrefsimError(
            f"plot.metrics: {', '.join(unknown)} not in this run's table; its metrics are "
            f"{', '.join(stats.metric_columns(table))}."
        )
    rules = selected_rules(table, plot)
    figures = [metric for metric in names if stats.has_data(table[table["rule"].isin(rules)], metric)]
    picked = metrics is not None or plot.metrics is not None
    without_data = tuple(metric for metric in names if metric not in figures) if picked else ()
    # a [plot] table that picks metrics leaves the map out; one rule: W(A, A) = ½ says nothing
    if headtohead is not None and plot.metrics is None and headtohead["rule_a"].nunique() >= 2:
        figures.append(HEADTOHEAD)
    else:
        headtohead = None
    tau = manifest_tau(manifest)
    job = FigureJob(table, rules, plot, bounds, figure_title(manifest), precision, out_dir, headtohead, tau)
    groups, panels, _, _ = figure_layout(table, rules, plot)
    seconds = FIGURE_SECONDS + PANEL_SECONDS * (len(groups) if panels else 1)
    return FigurePlan(job, figures, seconds, without_data)


def draw_figures(
    plan: FigurePlan,
    draw_here: Callable[[FigureJob, str], list[Path]],
    workers: Sequence[FigureWorker] = (),
    progress: Progress | None = None,
    cores: int | None = None,
) -> list[Path]:
    """Draw the figures of ``plan`` and return their paths, in the plan's order.

    ``draw_here(job, figure)`` draws one in this process (:func:`sim.plotting.draw_job_figure`).
    ``workers``: figure processes started earlier (e.g. by ``prefsim run`` when the run began) that share
    the figures (:func:`sim.figure_worker.draw_shared`); ``cores``: this process draws only while fewer
    than ``cores`` of them are ready (default: it always draws).  Without workers, a long drawing
    (:data:`PARALLEL_DRAWING_S`) starts one process per further usable core.  Every worker is stopped
    when the figures are drawn (a worker serves one call).  ``progress``: a :class:`sim.progress.Progress`
    (or anything with its ``stage`` method) is told when each figure starts.
    """
    drawn = plan.figures
    workers, started_here = list(workers), []
    long_drawing = len(drawn) * plan.seconds_per_figure > PARALLEL_DRAWING_S
    if not workers and long_drawing:  # new processes only for a long drawing
        started_here = start_workers(min(usable_cores() - 1, len(drawn) // 2), FigureWorker)
    sharing = workers + started_here
    stage = getattr(progress, "stage", None)  # a sim.progress.Progress shows one step per figure

    def announce(done: int, figure: str) -> None:
        if stage is not None:
            stage(done, len(drawn), f"drawing {figure}", unit="figures")

    try:
        # each process draws on one core: BLAS threads (the bootstrap's product) would take the workers' cores
        with threadpool_limits(1, user_api="blas") if sharing else contextlib.nullcontext():
            here = functools.partial(draw_here, plan.job)
            paths = draw_shared(drawn, here, plan.job, sharing, announce, plan.seconds_per_figure, cores)
    finally:
        for worker in started_here:
            worker.stop()
    return [path for figure in drawn for path in paths[figure]]
