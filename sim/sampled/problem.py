"""The arrays a sampled run reads: a (possibly contextual) finite-action preference problem.

:class:`Problem` generalises :class:`sim.game.Game` to M contexts with features.  A ``[game]`` table
gives M = 1 (:func:`problem_from_game`); :mod:`bandits.linear` and :mod:`bandits.continuous` give
contextual linear bandits and the ring task (:func:`problem_from_arrays`).  Metrics of a contextual
problem are the context-weighted averages Σ_x ρ(x)·metric(π(·|x)) (exact for the duality gap, whose J
is an expectation over x, docs/theory.md §A.2 Eq. 3).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from bandits.errors import PrefsimError
from sim.game import Game
from sim.nash import target_policy, unique_unregularised_nash


class Problem(NamedTuple):
    """A preference problem over M contexts × K responses (JAX pytree).

    Attributes:
      preference: P(y ≻ y′ | x), shape (M, K, K).
      log_reference: log π_ref(·|x), shape (M, K).
      log_initial: log π_0(·|x), shape (M, K).
      rewards: Bradley–Terry rewards (M, K); all-NaN for a general preference problem.
      tau: the regularisation τ the metrics use (scalar).
      features: φ(x, y), shape (M, K, d) (d = 0 for a tabular-only problem).
      context_probs: ρ(x), shape (M,).
      target: π* per context as probabilities (M, K), for ``kl_to_nash`` and ``tv_to_optimum``.
      unregularised_target: π⁰ per context (M, K), the unique unregularised Nash policy, rows of NaN
        where it is not unique (:func:`sim.nash.unique_unregularised_nash`), for
        ``kl_to_unregularised_nash``.
    """

    preference: jax.Array
    log_reference: jax.Array
    log_initial: jax.Array
    rewards: jax.Array
    tau: jax.Array
    features: jax.Array
    context_probs: jax.Array
    target: jax.Array
    unregularised_target: jax.Array

    @property
    def contexts(self) -> int:
        return self.preference.shape[-3]

    @property
    def arms(self) -> int:
        return self.preference.shape[-1]


def context_games(problem: Problem) -> Game:
    """All contexts' games stacked on a leading axis (τ shared)."""
    return Game(problem.preference, problem.log_reference, problem.log_initial, problem.rewards, problem.tau)


GAME_AXES = Game(0, 0, 0, 0, None)


def problem_from_game(
    game: Game,
    target: ArrayLike,
    features: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    unregularised_target: ArrayLike | None = None,
) -> Problem:
    """Lift a non-contextual :class:`Game` (and its π* ``target``, shape (K,)) to M = 1.

    ``unregularised_target``: π⁰ (K,), NaN where not unique; ``None``: solved here from P."""
    dtype = dtype or game.preference.dtype
    arms = game.preference.shape[-1]
    if features is None:
        features = np.zeros((arms, 0))
    features = jnp.asarray(features, dtype)
    if features.ndim != 2 or features.shape[0] != arms:
        raise PrefsimError(f"features: expected shape (K, d) = ({arms}, d), got {tuple(features.shape)}.")
    if unregularised_target is None:
        unregularised_target = unique_unregularised_nash(np.asarray(game.preference, np.float64))
    return Problem(
        preference=jnp.asarray(game.preference, dtype)[None],
        log_reference=jnp.asarray(game.log_reference, dtype)[None],
        log_initial=jnp.asarray(game.log_initial, dtype)[None],
        rewards=jnp.asarray(game.rewards, dtype)[None],
        tau=jnp.asarray(game.tau, dtype),
        features=features[None],
        context_probs=jnp.ones((1,), dtype),
        target=jnp.asarray(target, dtype)[None],
        unregularised_target=jnp.asarray(unregularised_target, dtype)[None],
    )


def problem_from_arrays(
    preference: ArrayLike,
    features: ArrayLike,
    context_probs: ArrayLike | None = None,
    rewards: ArrayLike | None = None,
    reference: ArrayLike | None = None,
    tau: float = 0.0,
    dtype: DTypeLike = jnp.float64,
) -> Problem:
    """Build a :class:`Problem` from NumPy arrays (e.g. :mod:`bandits.linear`, :mod:`bandits.continuous`).

    ``reference`` defaults to uniform; π_0 = π_ref; the targets are solved per context with
    :func:`sim.nash.target_policy` (π*_τ for τ > 0, argmax r for a BT problem with τ = 0, else the LP
    Nash); π⁰ per context by :func:`sim.nash.unique_unregularised_nash`.
    """
    preference = np.asarray(preference, dtype=np.float64)
    if preference.ndim == 2:
        preference = preference[None]
    contexts, arms = preference.shape[0], preference.shape[1]
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 2:
        features = features[None]
    if features.shape[:2] != (contexts, arms):
        raise PrefsimError(f"features: expected shape ({contexts}, {arms}, d), got {features.shape}.")
    context_probs = (
        np.full(contexts, 1.0 / contexts) if context_probs is None else np.asarray(context_probs, np.float64)
    )
    rewards = (
        np.full((contexts, arms), np.nan)
        if rewards is None
        else np.asarray(rewards, np.float64).reshape(contexts, arms)
    )
    if reference is None:
        log_reference = np.full((contexts, arms), -np.log(arms))
    else:
        log_reference = (
            np.log(np.asarray(reference, np.float64)).reshape(contexts, arms)
            if np.ndim(reference) == 2
            else np.tile(np.log(np.asarray(reference, np.float64)), (contexts, 1))
        )
    if tau < 0:
        raise PrefsimError(f"tau: must be ≥ 0, got {tau:g}.")
    targets, unregularised = [], []
    for context in range(contexts):
        game = Game(
            jnp.asarray(preference[context]),
            jnp.asarray(log_reference[context]),
            jnp.asarray(log_reference[context]),
            jnp.asarray(rewards[context]),
            jnp.asarray(float(tau)),
        )
        targets.append(target_policy(game)[0])
        unregularised.append(unique_unregularised_nash(preference[context]))
    return Problem(
        preference=jnp.asarray(preference, dtype),
        log_reference=jnp.asarray(log_reference, dtype),
        log_initial=jnp.asarray(log_reference, dtype),
        rewards=jnp.asarray(rewards, dtype),
        tau=jnp.asarray(float(tau), dtype),
        features=jnp.asarray(features, dtype),
        context_probs=jnp.asarray(context_probs, dtype),
        target=jnp.asarray(np.stack(targets), dtype),
        unregularised_target=jnp.asarray(np.stack(unregularised), dtype),
    )
