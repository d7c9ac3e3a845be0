"""The ``[plot]`` table of a spec: what the figures of ``prefsim run`` / ``prefsim plot`` show.

Example::

    [plot]
    rules = ["apo", "dpo"]                  # [[rule]] labels (or grid labels) to draw; default all
    metrics = ["suboptimality"]             # metric columns to draw; default every metric with data
    per_seed = true                         # thin per-seed curves under the mean; default false
    formats = ["png", "pdf"]                # any of png, pdf, svg; default ["png"]
    layout = "auto"                         # auto | single | panels (one panel per [[rule]] table)
    fit = "auto"                            # auto | none | loglog | semilog
    title = "APO with exact rewards"        # default: the spec's name and problem
    facet = ["game.tau"]                    # swept [game]/[run] fields with one panel per value; default:
                                            # every swept field ("auto"); "none": curves on shared axes

    [plot.labels]                           # legend text for grid labels
    "apo[alpha=0.5]" = "APO, α = 0.5"

Plotting options never change results, so the table is not part of the spec's fingerprint (a
``--resume`` after editing ``[plot]`` reuses every computed part).  Unknown keys and wrong types
raise :class:`~bandits.errors.PrefsimError` naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bandits.errors import PrefsimError

FORMATS = ("png", "pdf", "svg")
LAYOUTS = ("auto", "single", "panels")
FITS = ("auto", "none", "loglog", "semilog")
PLOT_KEYS = ("rules", "metrics", "per_seed", "formats", "layout", "fit", "title", "labels", "facet")


@dataclasses.dataclass(frozen=True)
class PlotSpec:
    """The parsed ``[plot]`` table (defaults: every rule and metric with data, PNG, automatic fits)."""

    rules: tuple | None = None
    """Rule labels to draw: a ``[[rule]]`` label selects all its grid points; ``None``: all."""
    metrics: tuple | None = None
    """Metric columns to draw; ``None``: every metric with data."""
    per_seed: bool = False
    """Draw each seed's curve thinly under the mean and its band."""
    formats: tuple = ("png",)
    """File formats written per figure (``png``, ``pdf``, ``svg``)."""
    layout: str = "auto"
    """``single`` (one axes), ``panels`` (one axes per ``[[rule]]`` table, shared y) or ``auto``
    (panels when more than :data:`sim.figure_plan.MAX_CURVES_PER_AXES` curves)."""
    fit: str = "auto"
    """``auto`` (see :func:`sim.plotting.choose_fit`), ``none``, or force ``loglog`` / ``semilog``."""
    title: str | None = None
    """Figure title; default from the spec's name and problem."""
    labels: dict = dataclasses.field(default_factory=dict)
    """Grid label → legend text."""
    facet: tuple | str = "auto"
    """Swept ``[game]``/``[run]`` fields (``("game.tau",)``) whose values (or combinations) get one panel
    each; ``"auto"``: every field the run sweeps; ``"none"``: no facets (:func:`sim.plotting.metric_figure`)."""


def _strings(key: str, value, allowed: tuple | None = None) -> tuple:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PrefsimError(f"plot.{key}: expected a non-empty list of strings, got {value!r}.")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise PrefsimError(f"plot.{key}: unknown value(s) {', '.join(bad)}; allowed: {', '.join(allowed)}.")
    return tuple(value)


def _choice(key: str, value, allowed: tuple) -> str:
    if value not in allowed:
        raise PrefsimError(f"plot.{key}: expected one of {', '.join(allowed)}, got {value!r}.")
    return value


def parse_plot(table: Any) -> PlotSpec:
    """Validate a ``[plot]`` table (a dict, or ``None`` for the defaults)."""
    if table is None:
        return PlotSpec()
    if isinstance(table, PlotSpec):
        return table
    if not isinstance(table, dict):
        raise PrefsimError(f"plot: expected a table ([plot]), got {type(table).__name__}.")
    unknown = set(table) - set(PLOT_KEYS)
    if unknown:
        raise PrefsimError(f"plot: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(PLOT_KEYS)}.")
    values: dict = {}
    if "rules" in table:
        values["rules"] = _strings("rules", table["rules"])
    if "metrics" in table:
        values["metrics"] = _strings("metrics", table["metrics"])
    if "per_seed" in table:
        if not isinstance(table["per_seed"], bool):
            raise PrefsimError(f"plot.per_seed: expected true or false, got {table['per_seed']!r}.")
        values["per_seed"] = table["per_seed"]
    if "formats" in table:
        values["formats"] = tuple(dict.fromkeys(_strings("formats", table["formats"], FORMATS)))
    if "layout" in table:
        values["layout"] = _choice("layout", table["layout"], LAYOUTS)
    if "fit" in table:
        values["fit"] = _choice("fit", table["fit"], FITS)
    if "title" in table:
        if not isinstance(table["title"], str):
            raise PrefsimError(f"plot.title: expected a string, got {table['title']!r}.")
        if not table["title"].strip():  # it was dropped for the default without a word
            raise PrefsimError(
                "plot.title: an empty title; give one, or leave the key out for the default (the spec's name, "
                "its problem and the seeds the bands are over)."
            )
        values["title"] = table["title"]
    if "labels" in table:
        labels = table["labels"]
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise PrefsimError(
                'plot.labels: expected a table of grid label = "legend text" (e.g. "apo[alpha=0.5]" = "APO, α = 0.5").'
            )
        values["labels"] = dict(labels)
    if "facet" in table:
        facet = table["facet"]
        if facet in ("auto", "none"):
            values["facet"] = facet
        else:
            fields = _strings("facet", facet)
            bad = [f for f in fields if not f.startswith(("game.", "run."))]
            if bad:
                raise PrefsimError(
                    f"plot.facet: {', '.join(bad)} is not a swept [game]/[run] field; give fields such as "
                    '"game.tau", or "auto" / "none".'
                )
            values["facet"] = fields
    return PlotSpec(**values)


def check_plot_facets(plot: PlotSpec, swept: list[str]) -> None:
    """Reject ``plot.facet`` fields the run does not sweep (``swept``: its swept ``game.*``/``run.*`` fields)."""
    if plot.facet in ("auto", "none"):
        return
    missing = [field for field in plot.facet if field not in swept]
    if missing:
        raise PrefsimError(
            f"plot.facet: {', '.join(missing)} is not swept in this run; its swept fields are "
            f"{', '.join(swept) or 'none'}."
        )


def check_plot_against_rules(plot: PlotSpec, labels: list[str]) -> None:
    """Reject ``plot.rules`` / ``plot.labels`` entries that name no rule of the run.

    ``labels`` are the run's grid labels; a ``[[rule]]`` label matches all its grid points
    (``apo`` matches ``apo[alpha=0.5]``).
    """
    bases = {label.split("[", 1)[0] for label in labels}
    for name in plot.rules or ():
        if name not in labels and name not in bases:
            raise PrefsimError(f"plot.rules: {name!r} is not a rule of this run; its rules are {', '.join(labels)}.")
    for name in plot.labels:
        if name not in labels and name not in bases:
            raise PrefsimError(f"plot.labels: {name!r} is not a rule of this run; its rules are {', '.join(labels)}.")


def check_plot_metrics(plot: PlotSpec, known: tuple, mode: str) -> None:
    """Reject ``plot.metrics`` entries that are no metric column of a ``mode`` run (``known``), before the
    run: a misspelt name would otherwise be found only when the figures are drawn (or never, with
    ``--no-plots``)."""
    unknown = [name for name in plot.metrics or () if name not in known]
    if unknown:
        raise PrefsimError(
            f"plot.metrics: {', '.join(map(repr, unknown))} is not a metric of {mode} mode; its metrics are "
            f"{', '.join(known)}."
        )
