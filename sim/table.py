"""The long results table shared by exact and sampled mode (``rule, seed, iteration`` + metrics).

A rule table that sweeps parameters adds one column per swept parameter, ``rule.<parameter>``
(``rule.eta``; a categorical one such as ``rule.schedule`` too), after ``iteration``: the values its
label names.  Rows of rules that do not sweep that parameter leave it empty (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.headtohead import FINAL_POLICY
from sim.metrics import METRIC_COLUMNS


def results_table(
    labels: Sequence[tuple[str, Mapping[str, Any]]],
    seeds: Sequence[int],
    record: np.ndarray,
    metrics: Mapping[str, np.ndarray],
    categorical: Sequence[tuple[str, Any]] = (),
) -> pd.DataFrame:
    """Rows ``rule, seed, iteration``, ``rule.<parameter>`` per swept parameter and :data:`METRIC_COLUMNS`
    from arrays shaped (grid, seeds, recorded).

    ``labels`` is :meth:`sim.spec.RuleSpec.grid_labels` (one ``(label, point)`` per grid point);
    ``categorical`` the rule table's categorical sweep values (``(("schedule", "nesterov"),)``).
    """
    grid_size, seed_count, recorded = metrics[METRIC_COLUMNS[0]].shape
    frame = pd.DataFrame(
        {
            "rule": np.repeat([label for label, _ in labels], seed_count * recorded),
            "seed": np.tile(np.repeat(np.asarray(seeds), recorded), grid_size),
            "iteration": np.tile(record, grid_size * seed_count),
        }
    )
    rows = seed_count * recorded
    for name in labels[0][1]:
        frame[f"rule.{name}"] = np.repeat([point[name] for _, point in labels], rows)
    for name, value in categorical:
        frame[f"rule.{name}"] = [value] * len(frame)
    for name in METRIC_COLUMNS:
        frame[name] = metrics[name].reshape(-1)
    if FINAL_POLICY in metrics:  # each grid point's π_T per seed, for the head-to-head table
        frame.attrs[FINAL_POLICY] = {label: metrics[FINAL_POLICY][index] for index, (label, _) in enumerate(labels)}
    return frame


def order_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its swept-value columns right after ``rule, seed, iteration``: ``rule.*`` (first
    appearance order; concatenating tables that sweep different parameters appends new ones at the end),
    then ``game.*`` / ``run.*``, then the metrics in their order."""
    columns = list(table.columns)
    ids = [c for c in ("rule", "seed", "iteration") if c in columns]
    rule = [c for c in columns if isinstance(c, str) and c.startswith("rule.")]
    fields = [c for c in columns if isinstance(c, str) and c.startswith(("game.", "run."))]
    rest = [c for c in columns if c not in set(ids + rule + fields)]
    order = ids + rule + fields + rest
    return table if order == columns else table[order]
