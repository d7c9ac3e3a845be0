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

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, check_size, finite_number, real_array


def ring_reward(actions: ArrayLike, radius: float = 1.0, width: float = 0.25) -> np.ndarray:
    """r(a) = exp(−|‖a‖ − radius| / width) for actions of shape (..., 2); ``radius`` and ``width`` finite and > 0."""
    points = real_array(actions, "actions", "an array of 2-D actions, shape (..., 2)")
    if points.ndim < 1 or points.shape[-1] != 2:
        raise PrefsimError(f"actions: expected an array of 2-D actions, shape (..., 2), got shape {points.shape}.")
    if not np.all(np.isfinite(points)):
        raise PrefsimError("actions: every coordinate must be finite (no NaN or inf).")
    radius, width = _positive(radius, "radius"), _positive(width, "width")
    with np.errstate(over="ignore"):  # ‖a‖ = inf far beyond 1e154: r = 0, the limit
        return np.exp(-np.abs(np.linalg.norm(points, axis=-1) - radius) / width)


def _positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0; a clear error naming the ring's ``name`` otherwise."""
    number = finite_number(value, f"ring {name}")
    if number <= 0:
        raise PrefsimError(f"ring {name}: must be > 0, got {value!r}.")
    return number


#: Reward spread of the grid below which :func:`ring_task` warns: every preference is then within a quarter of
#: it of ½ (σ's slope at 0), a game with no action better than another.
DEGENERATE_RING_SPREAD = 1e-3


def ring_task(grid: int = 25, extent: float = 2.0, radius: float = 1.0, width: float = 0.25) -> dict[str, Any]:
    """The discretised ring bandit: dict with ``actions`` (K, 2), ``features`` (1, K, 2),
    ``rewards`` (1, K), ``preference`` (1, K, K) and ``context_probs`` (1,)."""
    grid = check_integer(grid, "ring grid", 2, "an integer number of points per axis")
    extent = _positive(extent, "extent")
    check_size(grid**4, "ring grid", f"the {grid**2}×{grid**2} preference matrix of a {grid}×{grid} grid")
    with np.errstate(over="ignore", invalid="ignore"):
        axis = np.linspace(-extent, extent, grid)
    if not np.all(np.isfinite(axis)):
        raise PrefsimError(f"ring extent: {extent:g} is too large for float64 (the grid spans 2·extent); use ≤ 1e300.")
    actions = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    rewards = ring_reward(actions, radius, width)
    spread = float(rewards.max() - rewards.min())
    if spread < DEGENERATE_RING_SPREAD:
        warnings.warn(
            f"ring task: the rewards of the {grid}×{grid} grid on [−{extent:g}, {extent:g}]² differ by {spread:.2g} at "
            f"most (radius {radius:g}, width {width:g}): every preference is within {spread / 4:.2g} of ½, so no "
            "action is better than another; put the ring inside the grid (radius < extent) or widen it.",
            RuntimeWarning,
            stacklevel=2,
        )
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
    values = real_array(regret_per_iteration, "regret_per_iteration", "an array of regrets, one per iteration")
    if values.ndim < 1:
        raise PrefsimError("regret_per_iteration: expected an array of regrets, one per iteration, got one number.")
    if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)) or not 1 <= segment <= values.shape[-1]:
        raise PrefsimError(
            f"segment: expected an integer from 1 to the {values.shape[-1]} iterations given (each segment averages "
            f"that many), got {segment!r}."
        )
    count = values.shape[-1] // segment
    return values[..., : count * segment].reshape(values.shape[:-1] + (count, segment)).mean(axis=-1)
