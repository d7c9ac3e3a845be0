"""Magnetic Mirror Descent (Sokota et al., ICLR 2023, arXiv 2206.05825), magnet ρ = π_ref.

Convention (docs/theory.md §C.9): η is the **step size** (learning rate) and τ the magnet strength (the MMD
paper's α).  Update:

    log π_{t+1} = [log π_t + ητ·log π_ref + η·Pπ_t] / (1 + ητ) − log Z.

Equivalence: MMD with step η_MMD equals exact INPO with η_INPO = τ + 1/η_MMD.
"""

from __future__ import annotations

import jax

from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_nonnegative, require_positive
from sim.rules.definition import GAME_TAU, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE, MMD_LINEAR


def mmd(eta: float | jax.Array = 1.0, tau: float | jax.Array = 0.1) -> ExactRule:
    """Exact MMD with magnet π_ref.  Args: eta (step size > 0), tau (magnet strength ≥ 0)."""
    require_positive("mmd", "eta", eta)
    require_nonnegative("mmd", "tau", tau)

    def update(state, game):
        payoff = current_win_rates(state, game)
        return advance(state, (state.log_policy + eta * tau * game.log_reference + eta * payoff) / (1.0 + eta * tau))

    return ExactRule("mmd", initial_state, update)


DEFINITION = RuleDefinition(
    name="mmd",
    paper="Sokota et al., Magnetic Mirror Descent, ICLR 2023 (arXiv 2206.05825)",
    summary="mirror descent with a magnet at π_ref; equals INPO with η_INPO = τ + 1/η",
    update_formula="[ℓ_t + ητℓ_ref + ηPπ_t]/(1+ητ)",
    parameters=(
        Parameter("eta", "step size (learning rate) η of MMD", 1.0, constraint="> 0", symbol="η"),
        Parameter("tau", "magnet strength (the MMD paper's α), magnet = π_ref", GAME_TAU, constraint="≥ 0", symbol="τ"),
    ),
    exact=mmd,
    bounds=(MMD_LINEAR, ADVANCEMENT_MONOTONE),
    anchored=True,
)
