"""Independent NumPy computations the exact-core tests compare prefsim against.

Nothing here imports ``sim``'s rules or metrics: every formula is written out again from docs/theory.md
(§A.2 closed forms, §C update rules) so a test compares two independent computations.  The only
``sim`` pieces used are the :class:`sim.game.Game` container and :func:`iterate`, which runs a rule's
own ``init``/``update`` (the code under test) in a jitted ``lax.scan`` so long trajectories are fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp


# --------------------------------------------------------------------------- games (NumPy)
def normalize(log_weights):
    """log-softmax in NumPy."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    return log_weights - logsumexp(log_weights)


def cyclic_matrix(strength, arms=3):
    """P = ½ + (c/2)A with A[i, i+1] = 1 = −A[i+1, i] (docs/theory.md §A.3), built by hand."""
    matrix = np.full((arms, arms), 0.5)
    for i in range(arms):
        matrix[i, (i + 1) % arms] = 0.5 + 0.5 * strength
        matrix[(i + 1) % arms, i] = 0.5 - 0.5 * strength
    return matrix


def bradley_terry_matrix(rewards):
    rewards = np.asarray(rewards, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(rewards[:, None] - rewards[None, :])))


def random_matrix(arms, seed):
    """A random valid preference matrix (upper triangle U[0,1]), independent of prefsim's constructors."""
    rng = np.random.default_rng(seed)
    matrix = np.full((arms, arms), 0.5)
    for i in range(arms):
        for j in range(i + 1, arms):
            matrix[i, j] = rng.uniform()
            matrix[j, i] = 1.0 - matrix[i, j]
    return matrix


def random_policy(arms, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return np.exp(normalize(scale * rng.standard_normal(arms)))


# --------------------------------------------------------------------------- closed forms (docs/theory.md §A.2)
def kl(p, q):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def best_response(matrix, reference, tau, policy):
    """BR_τ(π) ∝ π_ref·exp(Pπ/τ), as probabilities."""
    return np.exp(normalize(np.log(reference) + matrix @ policy / tau))


def duality_gap_logz(matrix, reference, tau, policy):
    """2[τ log Σ π_ref e^{Pπ/τ} + τ KL(π‖π_ref)] − 1 (the first closed form of docs/theory.md §A.2)."""
    log_z = logsumexp(np.log(reference) + matrix @ policy / tau)
    return 2.0 * (tau * log_z + tau * kl(policy, reference)) - 1.0


def payoff(matrix, reference, tau, first, second):
    """J(π₁, π₂) = π₁ᵀPπ₂ − τKL(π₁‖π_ref) + τKL(π₂‖π_ref) (INPO Eq. 3)."""
    return float(first @ matrix @ second - tau * kl(first, reference) + tau * kl(second, reference))


def regularised_nash(matrix, reference, tau, tolerance=1e-15):
    """π*_τ, the unique solution of ℓ = normalize(ℓ_ref + P e^ℓ/τ) (docs/theory.md §C.1), in NumPy/SciPy.

    A few hundred exact INPO steps with the safe η = τ + 1/τ, then SciPy's ``root`` (Powell hybrid) on
    the fixed-point residual, so the answer is accurate to ~1e-15 in log space (stopping on the gap
    would leave errors ~ √1e-16, the gap being quadratic in the error).
    """
    from scipy.optimize import root

    log_reference = np.log(reference)
    eta = tau + 1.0 / tau
    log_policy = log_reference.copy()
    for _ in range(300):
        log_policy = normalize(
            (1 - tau / eta) * log_policy + (tau / eta) * log_reference + matrix @ np.exp(log_policy) / eta
        )

    def residual(log_weights):
        return log_weights - normalize(log_reference + matrix @ np.exp(normalize(log_weights)) / tau)

    solution = root(residual, log_policy, method="hybr", tol=tolerance)
    log_policy = normalize(solution.x)
    if np.abs(residual(log_policy)).max() > 1e-13:
        raise RuntimeError("regularised_nash (test reference) did not converge")
    return np.exp(log_policy)


# --------------------------------------------------------------------------- update rules (docs/theory.md §C)
def inpo_step(log_policy, log_reference, matrix, eta, tau):
    """Eq. (5): (1 − τ/η)ℓ_t + (τ/η)ℓ_ref + Pπ_t/η − norm."""
    return normalize((1 - tau / eta) * log_policy + (tau / eta) * log_reference + matrix @ np.exp(log_policy) / eta)


def mirror_step(log_policy, log_reference, opponent, step, tau):
    """U(ℓ; π′) = (1 − sτ)ℓ + sτℓ_ref + sPπ′ − norm (docs/theory.md §C.10); ``opponent`` = Pπ′."""
    return normalize((1 - step * tau) * log_policy + step * tau * log_reference + step * opponent)


# --------------------------------------------------------------------------- running a rule
def make_game(matrix, reference=None, tau=0.0, initial=None, rewards=None, dtype=jnp.float64):
    """A :class:`sim.game.Game` from NumPy arrays (π_0 = π_ref unless ``initial`` is given)."""
    from sim.game import Game

    matrix = np.asarray(matrix, dtype=np.float64)
    arms = matrix.shape[0]
    reference = np.full(arms, 1.0 / arms) if reference is None else np.asarray(reference, dtype=np.float64)
    initial = reference if initial is None else np.asarray(initial, dtype=np.float64)
    rewards = np.full(arms, np.nan) if rewards is None else np.asarray(rewards, dtype=np.float64)
    return Game(
        preference=jnp.asarray(matrix, dtype),
        log_reference=jnp.asarray(np.log(reference), dtype),
        log_initial=jnp.asarray(np.log(initial), dtype),
        rewards=jnp.asarray(rewards, dtype),
        tau=jnp.asarray(tau, dtype),
    )


def iterate(rule, game, steps):
    """log π_0 … log π_steps of ``rule`` on ``game`` (the rule's own init/update in a jitted scan)."""

    @jax.jit
    def run(game):
        state = rule.init(game)

        def body(state, _):
            state = rule.update(state, game)
            return state, state.log_policy

        _, logs = jax.lax.scan(body, state, None, length=steps)
        return jnp.concatenate([state.log_policy[None], logs])

    return np.asarray(run(game))
