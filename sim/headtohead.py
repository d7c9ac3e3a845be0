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
    first, second = (np.asarray(policy, np.float64)[None] for policy in (policy_a, policy_b))
    return win_rate_matrix(first, second, preference, weights)[:, 0, 0]


def win_rate_matrix(
    first: np.ndarray, second: np.ndarray, preference: np.ndarray, weights: ArrayLike | None = None
) -> np.ndarray:
    """W_s(A, B) for every seed s, every policy A of ``first`` and B of ``second`` (each (L, S, K) or
    (L, S, M, K)): shape (S, L_first, L_second).  P π_B first, then π_Aᵀ of it: L·S·K² + L²·S·K products,
    not L²·S·K² (100 labels at K = 100 over 256 seeds would be 2.6e10)."""
    preference = np.asarray(preference, np.float64)
    against = np.einsum("s...ij,bs...j->bs...i", preference, np.asarray(second, np.float64))  # P π_B
    per_context = np.einsum("as...i,bs...i->s...ab", np.asarray(first, np.float64), against)
    if per_context.ndim == 3:
        return per_context
    seeds, count = per_context.shape[:2]
    weights = np.ones(count) / count if weights is None else np.asarray(weights, np.float64)
    return np.einsum("smab,sm->sab", per_context, np.broadcast_to(weights.reshape((-1, count)), (seeds, count)))


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
    per_seed = win_rate_matrix(stacked, stacked, preference, weights)
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
