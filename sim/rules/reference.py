"""Reference advancement: a τ-regularised rule whose own anchor π_ref moves to the current policy.

Contract (rule parameter ``reference_every = M``, a positive integer; absent = fixed reference): before
the update t → t+1, whenever t > 0 and t is a multiple of M, the rule's reference becomes π_t.  Only the
rule's own anchor moves; the game's π_ref and τ, which the metrics use, stay.  The trajectory is
therefore the base rule **restarted** every M steps from π_t with reference π_t (its own state, e.g.
optimistic MD's leading iterate, restarts too; the iteration counter t keeps counting, so a
step-dependent schedule such as INPO's ``theorem4`` continues rather than restarts).

Sources (docs/theory.md §F.1): COMAL (Liu et al., ICLR 2026, arXiv 2410.23223; code ``yale-nlp/COMAL``,
``comal.sh``: 24 iterations, reference updated every 12, τ/η = 1/3) runs INPO-style steps toward the
current reference and then sets π_ref ← π_t, the conceptual proximal-point method; MPO (Wang et al.,
arXiv 2410.16714) is MMD whose magnet is replaced periodically; both descend from slingshot
perturbation (arXiv 2305.16610).  COMAL proves KL(π⁰‖π_t) to the unregularised Nash π⁰ never
increases across its outer steps.

The same contract runs in every engine: exact mode wraps the rule (:func:`with_reference_advancement`),
sampled mode carries the anchor in its state, and the bridge scores the loss's reference with the
checkpoint of the last advance (:func:`anchor_iteration`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.rules.base import ExactRule, is_concrete
from sim.rules.definition import Parameter

#: The rule parameter every anchored (τ-regularised) rule accepts.
REFERENCE_EVERY = Parameter(
    "reference_every",
    "move the rule's reference to π_t before every update t → t+1 with t > 0 a multiple of M "
    "(absent: fixed reference π_ref)",
    None,
    constraint="integer ≥ 1",
    symbol="M",
    optional=True,
    integer=True,
)


class AnchorState(NamedTuple):
    """The wrapper's own state in exact mode: the base rule's ``extra`` and the current anchor log π_ref."""

    base: Any
    anchor: Any


def check_every(every: int | jax.Array) -> None:
    """Raise unless a concrete ``reference_every`` is an integer ≥ 1 (the spec puts the rule's name before it)."""
    if is_concrete(every):
        value = float(every)
        if not (value >= 1 and value.is_integer()):  # is_integer: False for inf and NaN (int(inf) would raise)
            raise PrefsimError(f"reference_every must be an integer ≥ 1 (iterations), got {every!r}.")


def advances_at(step: int | jax.Array, every: int | jax.Array) -> jax.Array:
    """True where the update from ``step`` = t starts by moving the reference: t > 0 and t mod M = 0."""
    return (step > 0) & (jnp.mod(step, every) == 0)


def anchor_iteration(step: int, every: int | None) -> int:
    """The iterate whose policy is the rule's reference for the update t → t+1 (0 = π_ref): M·⌊t/M⌋."""
    if not every:
        return 0
    return int(every) * (int(step) // int(every))


def steps_since_advance(step: Any, every: Any) -> Any:
    """t − M·⌊t/M⌋ = t mod M: the updates since the rule last restarted (t itself with ``every`` ``None``).

    A rule whose state counts its own iterates (MNPO's population π_t, …, π_{t−m+1}) restarts it at an
    advance, so that count starts again at 0.  Plain arithmetic: ints, JAX arrays (``every`` may be swept)
    and torch scalars alike.
    """
    return step if every is None else step % every


def with_reference_advancement(base: ExactRule, every: int | jax.Array) -> ExactRule:
    """``base`` with its reference moved to π_t every ``every`` updates (module docstring)."""
    check_every(every)

    def init(game):
        state = base.init(game)
        return state._replace(extra=AnchorState(state.extra, game.log_reference))

    def update(state, game):
        own = state.extra
        moving = advances_at(state.step, every)
        anchor = jnp.where(moving, state.log_policy, own.anchor)
        anchored = game._replace(log_reference=anchor)
        restarted = base.init(anchored._replace(log_initial=state.log_policy)).extra
        base_extra = jax.tree_util.tree_map(lambda new, old: jnp.where(moving, new, old), restarted, own.base)
        following = base.update(state._replace(extra=base_extra), anchored)
        return following._replace(extra=AnchorState(following.extra, anchor))

    return ExactRule(base.name, init, update)
