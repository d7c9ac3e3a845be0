"""The shape every exact (population) update rule has: a pair of pure functions, like optax.

``rule.init(game) -> ExactState`` and ``rule.update(state, game) -> ExactState``.  The state holds
the current log-policy ``log_policy`` (normalised), the number of updates done ``step``, and
whatever else the rule needs in ``extra`` (a pytree; ``()`` when nothing).  Numeric
hyper-parameters are closed over by the factory that builds the rule; they may be JAX tracers, so a
whole grid of values is one ``vmap``.  Validation of concrete values (η > τ, …) happens in the
factory when the values are plain numbers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import Game


class ExactState(NamedTuple):
    """State of an exact rule.

    Attributes:
      log_policy: log π_t, shape (K,), normalised.
      step: t, the number of updates applied so far (int32 scalar).
      extra: rule-specific pytree (e.g. APO's previous proximal output), ``()`` if none.
    """

    log_policy: jax.Array
    step: jax.Array
    extra: Any = ()


class ExactRule(NamedTuple):
    """A population update rule as ``init``/``update`` pure functions.

    Attributes:
      name: registry name (``inpo``, ``apo``, …).
      init: ``game -> ExactState``; starts from ``game.log_initial`` (π_ref unless the spec asks).
      update: ``(state, game) -> state`` applying one iteration t → t+1.
    """

    name: str
    init: Callable[[Game], ExactState]
    update: Callable[[ExactState, Game], ExactState]


def initial_state(game: Game, extra: Any = ()) -> ExactState:
    """π_0 = the game's initial policy, t = 0."""
    return ExactState(log_policy=game.log_initial, step=jnp.zeros((), jnp.int32), extra=extra)


def is_concrete(value) -> bool:
    """True for Python/NumPy numbers (checkable now), False for JAX tracers."""
    return not isinstance(value, jax.core.Tracer)


def require_positive(rule: str, name: str, value) -> None:
    """Raise if a concrete hyper-parameter is not a finite number > 0."""
    if is_concrete(value):
        value = float(value)
        if not (value > 0) or value != value or value == float("inf"):
            raise PrefsimError(f"rule {rule}: parameter {name} must be a finite number > 0, got {value:g}.")


def require_nonnegative(rule: str, name: str, value) -> None:
    """Raise if a concrete hyper-parameter is not a finite number ≥ 0."""
    if is_concrete(value):
        value = float(value)
        if not (value >= 0) or value == float("inf"):
            raise PrefsimError(f"rule {rule}: parameter {name} must be a finite number ≥ 0, got {value:g}.")


def mirror_step(log_policy, log_reference, opponent_win_rates, step_size, tau):
    """The regularised mirror-descent step U(ℓ; π′) of THEORY §C.10.

    ``U = (1 − sτ)·ℓ + sτ·ℓ_ref + s·Pπ′ − norm``, with step s and regularisation τ (sτ ≤ 1).
    INPO (s = 1/η), Nash-MD (opponent = geometric mixture), extragradient and optimistic MD are all
    this step with a different opponent.
    """
    weight = step_size * tau
    return normalize_shifted((1.0 - weight) * log_policy + weight * log_reference + step_size * opponent_win_rates)


def normalize_shifted(log_weights: jax.Array) -> jax.Array:
    """Log-softmax written as ``d − log Σ exp d`` with ``d = v − max v``.

    Equal to :func:`sim.game.normalize` up to rounding (|difference| ~ 1e-15); a non-finite input
    gives a non-finite output as there.  Written this way because XLA's CPU backend then fuses
    max → exp → sum of the rule's step into one kernel with the product P·π that precedes it, which
    made the exact INPO step about twice as fast at K = 10 (``benchmarks/exact_updates.py``).
    """
    shifted = log_weights - jnp.max(log_weights, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))

