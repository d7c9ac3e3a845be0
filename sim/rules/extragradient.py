"""Extragradient and optimistic mirror descent on the τ-regularised game (THEORY §C.10).

Both use the regularised mirror step U(ℓ; π′) = (1 − ητ)ℓ + ητ·ℓ_ref + η·Pπ′ − norm, with **η the
learning rate** (step size, ητ ≤ 1) and τ the regularisation.

* Extragradient / mirror-prox (Cen et al. 2021; EGPO, arXiv 2503.08942): π_{t+½} = U(ℓ_t; π_t),
  π_{t+1} = U(ℓ_t; π_{t+½}).  Two products with P per iteration.
* Optimistic MD / OMWU (single call, as in ONPO arXiv 2502.16852): π̄_{t+1} = U(ℓ̄_t; π̄_t) is
  replaced by the standard two-sequence form π̄_{t+1} = U(ℓ_t; π̄_t), π_{t+1} = U(ℓ_t; π̄_{t+1}), with
  Pπ̄_t carried over from the previous iteration, so one product with P per iteration.
"""

from __future__ import annotations

import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import win_rates
from sim.rules.base import (
    ExactRule,
    advance,
    current_win_rates,
    initial_state,
    is_concrete,
    mirror_weights,
    normalize_with_policy,
    require_nonnegative,
    require_positive,
)
from sim.rules.definition import GAME_TAU, Parameter, RuleDefinition


def _check(rule, eta, tau):
    require_positive(rule, "eta", eta)
    require_nonnegative(rule, "tau", tau)
    if is_concrete(eta) and is_concrete(tau) and float(eta) * float(tau) > 1.0:
        raise PrefsimError(f"rule {rule}: the step eta·tau must be ≤ 1, got {float(eta) * float(tau):g}.")


def extragradient(eta=0.5, tau=0.1) -> ExactRule:
    """Exact extragradient (mirror-prox) with learning rate eta and regularisation tau."""
    _check("extragradient", eta, tau)

    def update(state, game):
        log_policy = state.log_policy
        _, half = normalize_with_policy(
            mirror_weights(log_policy, game.log_reference, current_win_rates(state, game), eta, tau)
        )
        return advance(state, mirror_weights(log_policy, game.log_reference, win_rates(game, half), eta, tau))

    return ExactRule("extragradient", initial_state, update)


def optimistic(eta=0.5, tau=0.1) -> ExactRule:
    """Exact optimistic mirror descent; ``extra`` carries (log π̄_t, Pπ̄_t)."""
    _check("optimistic", eta, tau)

    def init(game):
        return initial_state(game, extra=(game.log_initial, win_rates(game, jnp.exp(game.log_initial))))

    def update(state, game):
        _, leading_payoff = state.extra
        leading, leading_policy = normalize_with_policy(
            mirror_weights(state.log_policy, game.log_reference, leading_payoff, eta, tau)
        )
        leading_payoff = win_rates(game, leading_policy)
        return advance(
            state,
            mirror_weights(state.log_policy, game.log_reference, leading_payoff, eta, tau),
            extra=(leading, leading_payoff),
        )

    return ExactRule("optimistic", init, update)


def _parameters():
    return (
        Parameter("eta", "learning rate η (ητ ≤ 1)", 0.5, constraint="> 0, eta·tau ≤ 1", symbol="η"),
        Parameter("tau", "KL(π‖π_ref) regularisation τ", GAME_TAU, constraint="≥ 0", symbol="τ"),
    )


EXTRAGRADIENT = RuleDefinition(
    name="extragradient",
    paper="Cen et al. 2021; Zhou et al., EGPO (arXiv 2503.08942)",
    summary="mirror-prox: a half step, then the full step against the half-step policy",
    parameters=_parameters(),
    exact=extragradient,
    anchored=True,
)

OPTIMISTIC = RuleDefinition(
    name="optimistic",
    paper="Rakhlin & Sridharan 2013; ONPO, Zhang et al. 2025 (arXiv 2502.16852)",
    summary="optimistic mirror descent (one product with P per iteration)",
    parameters=_parameters(),
    exact=optimistic,
    anchored=True,
)
