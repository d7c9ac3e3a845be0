"""Head-to-head table of a run: how often the final policy of rule A beats that of rule B.

For every ordered pair of rule labels (A, B) and every seed s, the win rate of A's final policy against
B's on that seed's game is the closed form

    W_s(A, B) = Σ_x w_x · π_A(·|x)ᵀ P_x π_B(·|x)     (one context: π_Aᵀ P π_B),

with the context weights w_x of a contextual problem.  W(A, B) + W(B, A) = 1 and W(A, A) = ½.  The
table holds the mean over seeds and its 95% percentile-bootstrap interval (:func:`sim.stats.bootstrap_ci`),
the format of COMAL's and EGPO's main tables, without their single seed.  :func:`sim.run` writes it as
``headtohead.csv``; :func:`sim.plotting.plot_headtohead` draws it as a heat map from that file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from sim.stats import bootstrap_ci

#: Key under which the engines return each run's final policy (probabilities; exact (K,), sampled (M, K)).
FINAL_POLICY = "final_policy"
COLUMNS = ("rule_a", "rule_b", "win_rate", "ci_lower", "ci_upper", "seeds")


def win_rates_per_seed(
    policy_a: np.ndarray, policy_b: np.ndarray, preference: np.ndarray, weights: ArrayLike | None = None
) -> np.ndarray:
    """W_s(A, B) for every seed: policies (S, K) or (S, M, K), preference (S, K, K) or (S, M, K, K)."""
    policy_a, policy_b = np.asarray(policy_a, np.float64), np.asarray(policy_b, np.float64)
    preference = np.asarray(preference, np.float64)
    if policy_a.ndim == 2:
        return np.einsum("si,sij,sj->s", policy_a, preference, policy_b)
    per_context = np.einsum("smi,smij,smj->sm", policy_a, preference, policy_b)
    weights = np.ones(per_context.shape[1]) / per_context.shape[1] if weights is None else np.asarray(weights)
    return np.sum(per_context * weights.reshape((-1, per_context.shape[1])), axis=1)


#: Rule labels above which a run writes no head-to-head table (:func:`skipped_because`): 400 labels are
#: 160 000 ordered pairs, 8 s of bootstrap intervals on 2 cores.
MAX_LABELS = 400
#: The most per-seed win rates (labels² × seeds, 128 MB) a table is computed from.
MAX_CELLS = 1 << 24


def skipped_because(labels: int, seeds: int) -> str | None:
    """Why a run of ``labels`` rule labels over ``seeds`` seeds writes no head-to-head table (``None``: it does)."""
    if labels <= MAX_LABELS and labels * labels * seeds <= MAX_CELLS:
        return None
    return (
        f"no head-to-head table: {labels} rule labels over {seeds} seeds are {labels * labels:,} ordered pairs "
        f"(the table is written up to {MAX_LABELS} labels and {MAX_CELLS:,} labels² × seeds); for chosen labels, "
        "call sim.headtohead.headtohead_table on their final policies (final_policies/<label>.npz)."
    )


def headtohead_table(
    final_policies: dict[str, np.ndarray], preference: np.ndarray, weights: ArrayLike | None = None
) -> pd.DataFrame:
    """The table for ``final_policies`` (label → (S, K) or (S, M, K)) on per-seed ``preference``.

    Every ordered pair at once: the per-seed win rates of all pairs (S, L, L), then one bootstrap over the
    seeds that every cell shares (:func:`sim.stats.bootstrap_ci`), not one per pair (L² of them took
    100 s at 100 labels).  Rows in the order A, then B, of ``final_policies``.
    """
    labels = list(final_policies)
    stacked = np.stack([np.asarray(final_policies[label], np.float64) for label in labels])  # (L, S, …, K)
    preference = np.asarray(preference, np.float64)
    if stacked.ndim == 3:
        per_seed = np.einsum("asi,sij,bsj->sab", stacked, preference, stacked)
    else:
        per_context = np.einsum("asmi,smij,bsmj->smab", stacked, preference, stacked)
        seeds, count = per_context.shape[:2]
        weights = np.ones(count) / count if weights is None else np.asarray(weights, np.float64)
        per_seed = np.einsum("smab,sm->sab", per_context, np.broadcast_to(weights.reshape((-1, count)), (seeds, count)))
    centre, lower, upper = bootstrap_ci(per_seed)
    count = len(labels)
    return pd.DataFrame(
        {
            "rule_a": np.repeat(np.array(labels, dtype=object), count),
            "rule_b": np.tile(np.array(labels, dtype=object), count),
            "win_rate": np.ravel(centre),
            "ci_lower": np.ravel(lower),
            "ci_upper": np.ravel(upper),
            "seeds": per_seed.shape[0],
        },
        columns=list(COLUMNS),
    )


class ColumnRecord(dict):
    """A table's columns (name → tuple of values) kept in a run table's ``attrs``: shared, never copied.

    pandas deep-copies a frame's ``attrs`` whenever an operation makes a new frame (each groupby chunk,
    each column selection): a 100-label head-to-head table kept as lists cost 60 ms a copy, and 55 s of a
    run's warnings.  The values are tuples and the record is not changed after it is made, so frames can
    share it; it compares by content (pandas compares attrs when concatenating tables), and
    ``pd.DataFrame(record)`` is the table again.
    """

    def __deepcopy__(self, memo: dict) -> ColumnRecord:
        return self


def column_record(frame: pd.DataFrame) -> ColumnRecord:
    """``frame`` as a :class:`ColumnRecord`."""
    return ColumnRecord({name: tuple(values) for name, values in frame.to_dict("list").items()})


def with_rule_values(duels: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """``duels`` with the swept rule parameters of both sides after ``rule_b``: ``rule_a.eta``,
    ``rule_b.eta`` for each ``rule.eta`` column of ``values`` (:func:`sim.stats.field_values_by_rule`)."""
    columns = [c for c in values.columns if c.startswith("rule.")]
    duels = duels.copy()
    position = list(duels.columns).index("rule_b") + 1
    for side in ("rule_a", "rule_b"):
        for column in columns:
            duels.insert(position, f"{side}.{column[5:]}", values[column].reindex(duels[side]).to_numpy())
            position += 1
    return duels
