"""The long results table shared by exact and sampled mode (``rule, seed, iteration`` + metrics)."""

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
) -> pd.DataFrame:
    """Rows ``rule, seed, iteration`` + :data:`METRIC_COLUMNS` from arrays shaped (grid, seeds, recorded).

    ``labels`` is :meth:`sim.spec.RuleSpec.grid_labels` (one ``(label, point)`` per grid point).
    """
    grid_size, seed_count, recorded = metrics[METRIC_COLUMNS[0]].shape
    frame = pd.DataFrame(
        {
            "rule": np.repeat([label for label, _ in labels], seed_count * recorded),
            "seed": np.tile(np.repeat(np.asarray(seeds), recorded), grid_size),
            "iteration": np.tile(record, grid_size * seed_count),
        }
    )
    for name in METRIC_COLUMNS:
        frame[name] = metrics[name].reshape(-1)
    if FINAL_POLICY in metrics:  # each grid point's π_T per seed, for the head-to-head table
        frame.attrs[FINAL_POLICY] = {label: metrics[FINAL_POLICY][index] for index, (label, _) in enumerate(labels)}
    return frame
