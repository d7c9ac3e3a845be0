"""The stored bounds of a run (``bounds.csv``), as figures and reports read them.

Written once per run by :mod:`sim.bounds_table`; this module only reads it, so plotting and reports
do not import :mod:`sim.theory` (nor rebuild games).  Columns: ``rule, metric, iteration, bound,
label`` — per rule label × metric × recorded iteration the largest bound over seeds, where it holds on
every seed and lies above the rounding floor (:func:`sim.theory.bounds_for_run`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bandits.errors import PrefsimError

BOUNDS_FILE = "bounds.csv"
BOUND_COLUMNS = ["rule", "metric", "iteration", "bound", "label"]


def read_bounds(directory: Path) -> pd.DataFrame | None:
    """The stored bounds of a result directory, or ``None`` when the run wrote none (older runs)."""
    path = Path(directory) / BOUNDS_FILE
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    missing = set(BOUND_COLUMNS) - set(frame.columns)
    if missing:
        raise PrefsimError(f"{str(path)!r}: missing column(s) {', '.join(sorted(missing))}; rerun the experiment.")
    return frame


def bounds_for_metric(bounds: pd.DataFrame | None, metric: str) -> pd.DataFrame | None:
    """The rows of ``bounds`` for ``metric`` (None when there are none)."""
    if bounds is None or bounds.empty:
        return None
    selected = bounds[bounds["metric"] == metric]
    if selected.empty:
        return None
    values = selected["bound"].to_numpy(dtype=np.float64)
    return selected if np.isfinite(values).any() else None
