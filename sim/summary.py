"""The run summary: ``summary.csv`` (mean and bootstrap CI per rule × metric at the final and chosen
iterations) and the table ``prefsim run`` prints.

Values of a curve that sits at its metric's rounding floor (:func:`sim.diagnostics.metric_floor`: 2.2e-14
in float64; for ``tv_to_optimum`` π*'s accuracy at the game's τ when higher, 1e-14·(τ + 1)/τ) are rounding,
not results: the printed table shows
them as "≈ 0" (``summary.csv`` keeps the numbers, with a column saying so).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bandits.errors import PrefsimError
from sim import stats
from sim.diagnostics import floor_iteration, floor_note, metric_floor, precision_floor, rule_taus
from sim.results_io import SUMMARY_FILE, csv_bytes, write_files_atomic

SUMMARY_COLUMNS = ["rule", "metric", "iteration", "mean", "ci_lower", "ci_upper", "seeds", "at_floor"]
#: Metrics printed after a run by default (those with data).  Sampled mode adds its own columns.
HEADLINE_METRICS = (
    "duality_gap",
    "duality_gap_mixture",
    "exploitability_mixture",
    "kl_to_nash",
    "suboptimality",
    "regret",
    "distance_to_exact",
    "queries",
)


def metrics_with_data(table: pd.DataFrame) -> list[str]:
    """Metric columns with a finite value somewhere (absent metrics are NaN throughout)."""
    return [m for m in stats.metric_columns(table) if table[m].notna().any()]


def choose_metrics(table: pd.DataFrame, requested: str | Iterable[str] | None = None) -> list[str]:
    """``requested`` metric names (checked against the table) or the headline metrics with data."""
    available = metrics_with_data(table)
    if requested is None:
        return [m for m in HEADLINE_METRICS if m in available]
    requested = [requested] if isinstance(requested, str) else list(requested)
    unknown = [m for m in requested if m not in table.columns]
    if unknown:
        raise PrefsimError(
            f"--metrics: {', '.join(unknown)} not in this run's table; "
            f"its metrics with data are {', '.join(available)}."
        )
    empty = [m for m in requested if m not in available]
    if empty:
        raise PrefsimError(
            f"--metrics: {', '.join(empty)} has no value on this run (it does not apply to this game); "
            f"metrics with data: {', '.join(available)}."
        )
    return requested


def summary_frame(
    table: pd.DataFrame,
    iterations: Iterable[int] = (),
    precision: str = "float64",
    metrics: Iterable[str] | None = None,
    tau: float | None = None,
) -> pd.DataFrame:
    """Mean, 95% bootstrap CI and seed count per rule × metric at each rule's final iteration and at
    every iteration of ``iterations`` that the rule recorded (columns :data:`SUMMARY_COLUMNS`, with the
    table's swept-value columns ``rule.*``/``game.*``/``run.*`` after ``rule``).

    ``metrics``: default every metric with data.  ``at_floor`` marks rows whose mean curve sits at the
    metric's rounding floor (:func:`sim.diagnostics.floor_iteration` at :func:`sim.diagnostics.metric_floor`),
    at each rule's game τ: the table's ``game.tau`` column where a τ sweep put one, else ``tau`` (the spec's
    ``game.tau``; ``None``: unknown, :data:`sim.diagnostics.DEFAULT_FLOOR_TAU` is assumed).  An iteration
    that no rule recorded raises :class:`PrefsimError`.
    """
    metrics = metrics_with_data(table) if metrics is None else list(metrics)
    frames = [stats.summary_table(table, metrics=metrics)]
    recorded = set(int(i) for i in table["iteration"].unique())
    for iteration in sorted(set(int(i) for i in iterations)):
        if iteration not in recorded:
            shown = ", ".join(map(str, sorted(recorded)[:16]))
            raise PrefsimError(f"--at: iteration {iteration} was not recorded; recorded iterations: {shown}….")
        rules = [
            r
            for r in stats.rules_of(table)
            if iteration in set(table.loc[table["rule"] == r, "iteration"])
            and iteration != int(table.loc[table["rule"] == r, "iteration"].max())
        ]
        if rules:
            frames.append(stats.summary_table(table[table["rule"].isin(rules)], iteration=iteration, metrics=metrics))
    summary = pd.concat(frames, ignore_index=True)
    summary["at_floor"] = _at_floor(table, summary, precision, tau)
    order = {rule: index for index, rule in enumerate(stats.rules_of(table))}
    summary = summary.sort_values(
        ["iteration", "rule"], key=lambda c: c.map(order) if c.name == "rule" else c, kind="stable"
    )
    summary = summary[SUMMARY_COLUMNS].reset_index(drop=True)
    values = stats.field_values_by_rule(table)  # the swept values each label names, after ``rule``
    for offset, column in enumerate(values.columns):
        summary.insert(1 + offset, column, values[column].reindex(summary["rule"]).to_numpy())
    return summary


def _at_floor(table: pd.DataFrame, summary: pd.DataFrame, precision: str, tau: float | None) -> np.ndarray:
    """Per summary row: the rule's mean curve of the metric sits at the metric's rounding floor (at the rule's
    game τ, :func:`sim.diagnostics.rule_taus`) at that iteration."""
    means = table.groupby(["rule", "iteration"], sort=False)[list(dict.fromkeys(summary["metric"]))].mean()
    taus = rule_taus(table, tau)
    starts: dict[tuple[str, str], int | None] = {}
    flags = []
    for row in summary.itertuples():
        key = (row.rule, row.metric)
        floor = metric_floor(row.metric, precision, taus.get(str(row.rule), tau))
        if key not in starts:
            curve = means.loc[row.rule, row.metric]
            starts[key] = floor_iteration(curve.index.to_numpy(), curve.to_numpy(), floor)
        start = starts[key]
        flags.append(bool(start is not None and row.iteration >= start and abs(row.mean) <= floor))
    return np.asarray(flags, dtype=bool)


def summary_cell(row: Any, floor: float) -> str:
    """ "mean [CI]" of a summary row, its value alone when one seed has one (no interval), or "≈ 0" when
    the row is at the rounding floor."""
    if bool(row.at_floor):
        return "≈ 0"
    if not row.seeds > 1:
        return _number(row.mean)
    return f"{_number(row.mean)} [{_number(row.ci_lower)}, {_number(row.ci_upper)}]"


def summary_heading(seeds: int) -> str:
    """What a summary table's cells are: "mean [95% bootstrap CI] over S seeds", or the one seed's values."""
    if seeds == 1:
        return "the one seed's value (no interval)"
    return f"mean [95% bootstrap CI] over {seeds} seeds"


def _number(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "–"


def write_summary(directory: Path, summary: pd.DataFrame) -> Path:
    """Write ``summary.csv`` in ``directory`` (full float precision) whole or not at all
    (:func:`sim.results_io.write_files_atomic`: a full disk leaves the previous file, and names it); return
    its path."""
    path = Path(directory) / SUMMARY_FILE
    write_files_atomic({path: csv_bytes(summary)})
    return path


def format_value(value: float, floor: float) -> str:
    """``3.1e-05``-style text with 3 significant digits; "≈ 0" at or below the rounding floor."""
    if not np.isfinite(value):
        return "–"
    if abs(value) <= floor:
        return "≈ 0"
    return f"{value:.3g}"


def format_summary(
    summary: pd.DataFrame, metrics: list[str], precision: str = "float64", tau: float | None = None
) -> str:
    """The printed table: one row per rule, one column per metric, "mean [CI]" cells, per iteration.  The note
    under it names the floors of the metrics shown as "≈ 0" at the game's τ (the summary's ``game.tau``
    column in a τ sweep, else ``tau``; ``None``: the floor's formula in τ)."""
    floor = precision_floor(precision)
    blocks = []
    for iteration, block in summary[summary["metric"].isin(metrics)].groupby("iteration", sort=False):
        cells = block.assign(cell=[summary_cell(row, floor) for row in block.itertuples()])
        wide = cells.pivot(index="rule", columns="metric", values="cell")
        wide = wide.reindex(index=list(dict.fromkeys(block["rule"])), columns=[m for m in metrics if m in wide.columns])
        seeds = int(block["seeds"].max())
        header = f"iteration {iteration}: {summary_heading(seeds)}"
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
            blocks.append(f"{header}\n{wide.fillna('–').to_string()}")
    floored = summary[summary["metric"].isin(metrics) & summary["at_floor"].astype(bool)]
    taus = floored["game.tau"].astype(float).tolist() if "game.tau" in floored.columns else tau
    note = f"(≈ 0: at or below {floor_note(precision, list(floored['metric']), taus)})"
    return "\n\n".join(blocks) + ("\n" + note if "≈ 0" in "".join(blocks) else "")
