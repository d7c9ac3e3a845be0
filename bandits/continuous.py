"""The APO authors' ring-shaped reward over 2-D actions (rebuttal toy, docs/theory.md §B.5), discretised.

The rebuttal gives only: 2-D continuous actions, a reward "highest along a circular path" that
"decreases exponentially as actions deviate from this optimal ring", a two-layer MLP of width 256,
β = 1, α = 0.3, 300 iterations, regret averaged over 60-iteration segments.  The exact reward,
output distribution and preference model are unknown.  **Choices made here (documented, not the
authors'):**

* Actions: a ``grid × grid`` lattice on [−extent, extent]² (default 25 × 25 on [−2, 2]²), so the
  policy is a softmax over K = grid² actions (exact metrics, exact log-space extrapolation).  A
  Gaussian head was not used because exact-mode counterparts and log-space APO need finite actions.
* Reward r(a) = exp(−|‖a‖ − radius|/width) (default radius 1, width 0.25): 1 on the ring, decaying
  exponentially away from it.
* Preferences: Bradley–Terry on r, P(a ≻ a′) = σ(r(a) − r(a′)).
* Features φ(a) = (a₁, a₂), the MLP's input; the reference is uniform on the grid.
* Regret at iteration t: max r − E_{π_t} r (the ``suboptimality`` metric).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError


def ring_reward(actions: ArrayLike, radius: float = 1.0, width: float = 0.25) -> np.ndarray:
    """r(a) = exp(−|‖a‖ − radius| / width) for actions of shape (..., 2)."""
    distance = np.abs(np.linalg.norm(np.asarray(actions, dtype=np.float64), axis=-1) - radius)
    return np.exp(-distance / width)


def ring_task(grid: int = 25, extent: float = 2.0, radius: float = 1.0, width: float = 0.25) -> dict[str, Any]:
    """The discretised ring bandit: dict with ``actions`` (K, 2), ``features`` (1, K, 2),
    ``rewards`` (1, K), ``preference`` (1, K, K) and ``context_probs`` (1,)."""
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise PrefsimError(f"ring grid: expected an integer ≥ 2 points per axis, got {grid!r}.")
    if not (extent > 0 and radius > 0 and width > 0):
        raise PrefsimError("ring task: extent, radius and width must be > 0.")
    axis = np.linspace(-extent, extent, grid)
    actions = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    rewards = ring_reward(actions, radius, width)
    preference = 0.5 * (1.0 + np.tanh(0.5 * (rewards[:, None] - rewards[None, :])))
    return {
        "actions": actions,
        "features": actions[None],
        "rewards": rewards[None],
        "preference": preference[None],
        "context_probs": np.ones(1),
    }


def segment_regret(regret_per_iteration: ArrayLike, segment: int = 60) -> np.ndarray:
    """Mean regret per consecutive ``segment`` iterations (the rebuttal's table: 1–60, …, 241–300).

    ``regret_per_iteration[t]`` is the regret of the policy of iteration t+1 (t = 0 … T−1).
    """
    values = np.asarray(regret_per_iteration, dtype=np.float64)
    if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)) or not 1 <= segment <= values.shape[-1]:
        raise PrefsimError(
            f"segment: expected an integer from 1 to the {values.shape[-1]} iterations given (each segment averages "
            f"that many), got {segment!r}."
        )
    count = values.shape[-1] // segment
    return values[..., : count * segment].reshape(values.shape[:-1] + (count, segment)).mean(axis=-1)
