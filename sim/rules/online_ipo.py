"""Online IPO solved exactly each iteration = regularised best response (docs/theory.md §C.5).

Calandriello et al. 2024.  Minimising the IPO loss (h_π − 1/(2τ))² exactly on pairs drawn from π_t
(labels from the oracle, h_π = log π(y_w)π_ref(y_l)/(π(y_l)π_ref(y_w))) gives

    π_{t+1} = BR_τ(π_t),   log π_{t+1} = log π_ref + (Pπ_t)/τ − log Z,

which is INPO with η = τ.  It converges iff ω_max < τ and cycles otherwise (docs/theory.md §A.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_positive
from sim.rules.definition import GAME_TAU, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE, ETA_CRITICAL


def online_ipo(tau: float | jax.Array = 0.1) -> ExactRule:
    """Iterated regularised best response: π_{t+1} ∝ π_ref·exp(Pπ_t/τ)."""
    require_positive("online_ipo", "tau", tau)

    def update(state, game):
        return advance(state, game.log_reference + current_win_rates(state, game) / tau)

    return ExactRule("online_ipo", initial_state, update)


def ipo_loss(
    policy_w: LossArray, policy_l: LossArray, reference_w: LossArray, reference_l: LossArray, tau: float | jax.Array
) -> LossArray:
    """Per-pair IPO loss (Azar et al.): ``(Δ − 1/(2τ))²``, Δ = (log π − log π_ref)(y_w) − (…)(y_l)."""
    delta = (policy_w - reference_w) - (policy_l - reference_l)
    return (delta - 1.0 / (2.0 * tau)) ** 2


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """Online IPO's loss on a pair batch (anchor π_ref, pairs from π_t)."""
    return ipo_loss(batch["policy_w"], batch["policy_l"], batch["reference_w"], batch["reference_l"], parameters["tau"])


def offline_update(
    parameters: Mapping[str, Any],
    log_policy: jax.Array,
    log_reference: jax.Array,
    reference_win_rates: jax.Array,
    step: int | jax.Array,
) -> jax.Array:
    """Population minimiser of the IPO loss on pairs from π_ref: log BR_τ(π_ref) + const (independent of π_t)."""
    return log_reference + reference_win_rates / parameters["tau"]


DEFINITION = RuleDefinition(
    name="online_ipo",
    paper="Calandriello et al., Human Alignment of LLMs through Online Preference Optimisation, ICML 2024",
    summary="exact per-iteration argmin of online IPO = regularised best response BR_τ(π_t)",
    update_formula="ℓ_ref + Pπ_t/τ (exact argmin = best response)",
    loss_formula="(Δ − 1/(2τ))² (sequence-level, no per-token averaging)",
    anchors="π_ref",
    parameters=(
        Parameter(
            "tau", "KL(π‖π_ref) regularisation τ; the loss's target is 1/(2τ)", GAME_TAU, constraint="> 0", symbol="τ"
        ),
    ),
    exact=online_ipo,
    loss=pair_loss,
    data=PairData(),
    offline=offline_update,
    bounds=(ETA_CRITICAL, ADVANCEMENT_MONOTONE),
    aliases=("ipo",),
    anchored=True,
)
