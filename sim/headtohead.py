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


def headtohead_table(
    final_policies: dict[str, np.ndarray], preference: np.ndarray, weights: ArrayLike | None = None
) -> pd.DataFrame:
    """The table for ``final_policies`` (label → (S, K) or (S, M, K)) on per-seed ``preference``."""
    labels = list(final_policies)
    rows = []
    for a in labels:
        for b in labels:
            per_seed = win_rates_per_seed(final_policies[a], final_policies[b], preference, weights)
            centre, lower, upper = bootstrap_ci(per_seed)
            rows.append((a, b, float(centre), float(lower), float(upper), len(per_seed)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


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
