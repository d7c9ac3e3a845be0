"""The game as JAX sees it, and the log-space helpers every rule uses.

Data flow: ``bandits.games.GameSpec`` → ``bandits.games.GameInstance`` (NumPy, per seed) →
:class:`Game` (a JAX pytree, stacked over seeds when the game depends on the seed) → rules →
trajectory → metrics.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from bandits.games import GameInstance


class Game(NamedTuple):
    """A finite preference game in the arrays the rules read.

    Attributes:
      preference: P, shape (K, K), ``P[i, j] = Pr(i ≻ j)``.
      log_reference: log π_ref, shape (K,).
      log_initial: log π_0, shape (K,).
      rewards: Bradley–Terry rewards, shape (K,); all-NaN for a general preference game.
      tau: the game's regularisation τ (scalar), used by the metrics.
    """

    preference: jax.Array
    log_reference: jax.Array
    log_initial: jax.Array
    rewards: jax.Array
    tau: jax.Array


def game_from_instance(instance: GameInstance, dtype: DTypeLike = jnp.float64) -> Game:
    """Convert a :class:`bandits.games.GameInstance` to a :class:`Game` of ``dtype``."""
    return Game(*(jnp.asarray(leaf) for leaf in game_arrays(instance, dtype)))


def game_arrays(instance: GameInstance, dtype: DTypeLike = jnp.float64) -> Game:
    """:func:`game_from_instance` with NumPy leaves (of ``dtype``): what per-seed games are stacked from
    (:func:`sim.seed_games.build_games`), one JAX array per leaf for all seeds instead of one per seed."""
    arms = instance.arms
    rewards = instance.rewards if instance.rewards is not None else np.full(arms, np.nan)
    dtype = np.dtype(dtype)
    return Game(
        preference=np.asarray(instance.preference, dtype),
        log_reference=np.asarray(np.log(instance.reference), dtype),
        log_initial=np.asarray(np.log(instance.initial), dtype),
        rewards=np.asarray(rewards, dtype),
        tau=np.asarray(instance.tau, dtype),
    )


def stack_games(games: list[Game]) -> Game:
    """Stack per-seed games along a new leading axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *games)


def normalize(log_weights: jax.Array) -> jax.Array:
    """Log-softmax: ``v − logsumexp(v)``, the "norm" of docs/theory.md §C."""
    return log_weights - jax.scipy.special.logsumexp(log_weights, axis=-1, keepdims=True)


def win_rates(game: Game, policy: jax.Array) -> jax.Array:
    """``P(y ≻ π) = (Pπ)_y`` for every arm y."""
    return game.preference @ policy
