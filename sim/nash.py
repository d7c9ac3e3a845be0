"""Equilibria to measure against: the τ-regularised Nash policy and the unregularised Nash (LP).

* :func:`regularised_nash` — π*_τ = BR_τ(π*_τ), π* ∝ π_ref·exp(Pπ*/τ) (THEORY §A.2, §C.1), unique for
  τ > 0.  Solved in JAX by extragradient (mirror-prox) with step s = 1/(τ + 2·max|P − ½|), which
  contracts linearly, iterated until the closed-form duality gap is below ``tolerance`` (default
  1e-14, well inside the gap < 1e-12 the metrics require) **and** one step moves log π by at most
  ``STEP_TOLERANCE`` on average under π (Σ_y π(y)·|Δ log π(y)|).  The second condition matters: the gap is quadratic in the
  error, so a gap of 1e-14 alone leaves π* wrong by ~1e-7, which floors ``kl_to_nash`` near 1e-13 and
  biases convergence-rate fits; the step condition makes π* accurate to ~1e-12.
* :func:`unregularised_nash` — a maximin strategy of the symmetric zero-sum game P − ½ by linear
  programming (SciPy ``linprog``): maximise v subject to (Pᵀπ)_y ≥ v, π in the simplex.  Its value is
  ½.  Not unique in general (it is for odd cyclic games and for Bradley–Terry games with a unique
  best arm, where it is the point mass on argmax r).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bandits.errors import PrefsimError
from sim.game import Game, normalize, win_rates
from sim.metrics import duality_gap
from sim.rules.base import mirror_step

DEFAULT_TOLERANCE = 1e-14
#: Largest π-weighted change Σ_y π(y)|Δ log π(y)| in one extragradient step at which
#: :func:`regularised_nash` stops.
STEP_TOLERANCE = 1e-14
MAX_ITERATIONS = 500_000


def regularised_nash(game: Game, tolerance: float = DEFAULT_TOLERANCE, max_iterations: int = MAX_ITERATIONS):
    """Return ``(log π*_τ, duality_gap(π*_τ), iterations)`` for a game with τ > 0 (jit/vmap-able)."""
    tau = game.tau
    lipschitz = jnp.max(jnp.abs(game.preference - 0.5))
    step = 1.0 / (tau + 2.0 * lipschitz)

    def gap(log_policy):
        return duality_gap(game, log_policy, tau)

    def cond(carry):
        log_policy, iteration, current_gap, change = carry
        moving = change > STEP_TOLERANCE
        return ((current_gap > tolerance) | moving) & (iteration < max_iterations)

    def body(carry):
        log_policy, iteration, _, _ = carry
        half = mirror_step(log_policy, game.log_reference, win_rates(game, jnp.exp(log_policy)), step, tau)
        new = mirror_step(log_policy, game.log_reference, win_rates(game, jnp.exp(half)), step, tau)
        # the move of log π weighted by π: arms of negligible mass may keep drifting in log space
        return new, iteration + 1, gap(new), jnp.sum(jnp.exp(new) * jnp.abs(new - log_policy))

    start = game.log_reference
    initial = (start, jnp.zeros((), jnp.int32), gap(start), jnp.asarray(jnp.inf, start.dtype))
    log_policy, iterations, final_gap, _ = jax.lax.while_loop(cond, body, initial)
    return log_policy, final_gap, iterations


def unregularised_nash(preference) -> np.ndarray:
    """A maximin (Nash) policy of the symmetric game P by linear programming (NumPy in, NumPy out)."""
    from scipy.optimize import linprog

    matrix = np.asarray(preference, dtype=np.float64)
    arms = matrix.shape[0]
    # variables (π_1..π_K, v); maximise v  <=>  minimise −v
    cost = np.zeros(arms + 1)
    cost[-1] = -1.0
    # v − (Pᵀπ)_y ≤ 0 for every y
    inequality = np.hstack([-matrix.T, np.ones((arms, 1))])
    equality = np.hstack([np.ones((1, arms)), np.zeros((1, 1))])
    result = linprog(
        cost,
        A_ub=inequality,
        b_ub=np.zeros(arms),
        A_eq=equality,
        b_eq=[1.0],
        bounds=[(0, None)] * arms + [(None, None)],
        method="highs",
    )
    if not result.success:
        raise PrefsimError(f"unregularised Nash: the linear program failed ({result.message}).")
    policy = np.clip(result.x[:arms], 0.0, None)
    return policy / policy.sum()


def target_policy(game: Game, tolerance: float = DEFAULT_TOLERANCE):
    """The policy the metrics measure distance to, as probabilities (NumPy), and its duality gap.

    τ > 0: the regularised Nash π*_τ.  τ = 0: for a Bradley–Terry game the point mass on argmax r
    (APO's target, the Condorcet winner); otherwise the LP Nash policy.
    """
    if float(game.tau) > 0:
        log_policy, gap, _ = jax.jit(regularised_nash, static_argnums=(1,))(game, tolerance)
        return np.exp(np.asarray(normalize(log_policy))), float(gap)
    rewards = np.asarray(game.rewards)
    if np.all(np.isfinite(rewards)):
        policy = (rewards == rewards.max()).astype(np.float64)
        return policy / policy.sum(), float("nan")
    return unregularised_nash(np.asarray(game.preference)), float("nan")
