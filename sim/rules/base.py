"""The shape every exact (population) update rule has: a pair of pure functions, like optax.

``rule.init(game) -> ExactState`` and ``rule.update(state, game) -> ExactState``.  The state holds
the current log-policy ``log_policy`` (normalised), the number of updates done ``step``, whatever
else the rule needs in ``extra`` (a pytree; ``()`` when nothing), and ``policy`` = exp(log_policy)
as probabilities.  Rules finish an update with :func:`advance`, which normalises the new log-weights
and returns both forms from one ``exp``; the next update (for P·π_t) and the trajectory's running
mixture read ``policy`` instead of exponentiating again (one exp per step instead of three).  A
caller that has already multiplied P by π_t (the trajectory, for every update) hands the product
over in ``win_rates``; rules read Pπ_t through :func:`current_win_rates`.  Numeric
hyper-parameters are closed over by the factory that builds the rule; they may be JAX tracers, so a
whole grid of values is one ``vmap``.  Validation of concrete values (η > τ, …) happens in the
factory when the values are plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import Game, win_rates


class ExactState(NamedTuple):
    """State of an exact rule.

    Attributes:
      log_policy: log π_t, shape (K,), normalised.
      step: t, the number of updates applied so far (int32 scalar).
      extra: rule-specific pytree (e.g. APO's previous proximal output), ``()`` if none.
      policy: π_t = exp(log_policy), shape (K,), kept in step by :func:`advance`; ``None`` when a
        caller builds a state from a log-policy alone (then :func:`current_policy` takes the exp).
      win_rates: Pπ_t, shape (K,), when the caller has already computed it for this very policy
        (the trajectory does, in the form that suits the shapes), else ``None``.  Rules read it
        through :func:`current_win_rates`, so the product is not computed twice; :func:`advance`
        clears it, since it belongs to π_t and not to π_{t+1}.
    """

    log_policy: jax.Array
    step: jax.Array
    extra: Any = ()
    policy: Any = None
    win_rates: Any = None


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
    return ExactState(
        log_policy=game.log_initial, step=jnp.zeros((), jnp.int32), extra=extra, policy=jnp.exp(game.log_initial)
    )


def current_policy(state: ExactState) -> jax.Array:
    """π_t as probabilities: the carried ``state.policy``, or exp(log π_t) when the state has none."""
    return jnp.exp(state.log_policy) if state.policy is None else state.policy


def current_win_rates(state: ExactState, game: Game) -> jax.Array:
    """Pπ_t: the carried ``state.win_rates`` when a caller supplied it, else ``game.preference @ π_t``.

    Every rule whose update multiplies P by its current policy does it through this function.
    """
    return win_rates(game, current_policy(state)) if state.win_rates is None else state.win_rates


def advance(state: ExactState, log_weights: jax.Array, **changes: Any) -> ExactState:
    """The state after one update: π_{t+1} ∝ exp(``log_weights``), t + 1, and any other field changed.

    Normalises with :func:`normalize_with_policy`, so the new log-policy and its probabilities come
    from one ``exp``; the carried Pπ_t (``win_rates``) is dropped, as it is not Pπ_{t+1}.
    """
    log_policy, policy = normalize_with_policy(log_weights)
    return state._replace(log_policy=log_policy, policy=policy, step=state.step + 1, win_rates=None, **changes)


def is_concrete(value: Any) -> bool:
    """True for Python/NumPy numbers (checkable now), False for JAX tracers."""
    return not isinstance(value, jax.core.Tracer)


def require_positive(rule: str, name: str, value: float | jax.Array) -> None:
    """Raise if a concrete hyper-parameter is not a finite number > 0."""
    if is_concrete(value):
        value = float(value)
        if not (value > 0) or value != value or value == float("inf"):
            raise PrefsimError(f"rule {rule}: parameter {name} must be a finite number > 0, got {value:g}.")


def require_nonnegative(rule: str, name: str, value: float | jax.Array) -> None:
    """Raise if a concrete hyper-parameter is not a finite number ≥ 0."""
    if is_concrete(value):
        value = float(value)
        if not (value >= 0) or value == float("inf"):
            raise PrefsimError(f"rule {rule}: parameter {name} must be a finite number ≥ 0, got {value:g}.")


def mirror_step(
    log_policy: jax.Array,
    log_reference: jax.Array,
    opponent_win_rates: jax.Array,
    step_size: float | jax.Array,
    tau: float | jax.Array,
) -> jax.Array:
    """The regularised mirror-descent step U(ℓ; π′) of docs/theory.md §C.10.

    ``U = (1 − sτ)·ℓ + sτ·ℓ_ref + s·Pπ′ − norm``, with step s and regularisation τ (sτ ≤ 1).
    INPO (s = 1/η), Nash-MD (opponent = geometric mixture), extragradient and optimistic MD are all
    this step with a different opponent.
    """
    return normalize_shifted(mirror_weights(log_policy, log_reference, opponent_win_rates, step_size, tau))


def mirror_weights(
    log_policy: jax.Array,
    log_reference: jax.Array,
    opponent_win_rates: jax.Array,
    step_size: float | jax.Array,
    tau: float | jax.Array,
) -> jax.Array:
    """The unnormalised log-weights of :func:`mirror_step`: (1 − sτ)·ℓ + sτ·ℓ_ref + s·Pπ′."""
    weight = step_size * tau
    return (1.0 - weight) * log_policy + weight * log_reference + step_size * opponent_win_rates


def normalize_shifted(log_weights: jax.Array) -> jax.Array:
    """Log-softmax written as ``d − log Σ exp d`` with ``d = v − max v``.

    Equal to :func:`sim.game.normalize` up to rounding (|difference| ~ 1e-15); a non-finite input
    gives a non-finite output as there.  Written this way because XLA's CPU backend then fuses
    max → exp → sum of the rule's step into one kernel with the product P·π that precedes it, which
    made the exact INPO step about twice as fast at K = 10 (``benchmarks/exact_updates.py``).
    """
    return normalize_with_policy(log_weights)[0]


def normalize_with_policy(log_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log π, π)`` for π ∝ exp(``log_weights``): :func:`normalize_shifted` and its probabilities.

    With ``d = v − max v`` and ``e = exp d``: log π = d − log Σe and π = e / Σe, so both come from
    the one ``exp`` the normaliser needs anyway (π equals exp(log π) to rounding, ~1e-16 relative).
    """
    shifted = log_weights - jnp.max(log_weights, axis=-1, keepdims=True)
    weights = jnp.exp(shifted)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    return shifted - jnp.log(total), weights / total
