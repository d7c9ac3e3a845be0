"""DNO — Direct Nash Optimization, theoretical form (Rosset et al. 2024), docs/theory.md §C.8.

Convention: η is an **inverse** learning rate.  r_t(y) = P(y ≻ π_t) and

    log π_{t+1} = log π_t + (Pπ_t)/η − log Z_t,

i.e. SPPO with η_SPPO = 1/η_DNO; no π_ref term; the output is the uniform mixture (see the
``*_mixture`` metrics).  Regression form (soft-label Bradley–Terry, reference π_t):
−[σ(Δr)·log σ(ηΔ) + σ(−Δr)·log σ(−ηΔ)] with Δ the log-ratio difference of the pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_positive
from sim.rules.definition import JAX_OPS, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import DNO_HEDGE


def dno(eta: float | jax.Array = 1.0) -> ExactRule:
    """Exact theoretical DNO with inverse learning rate eta > 0."""
    require_positive("dno", "eta", eta)

    def update(state, game):
        return advance(state, state.log_policy + current_win_rates(state, game) / eta)

    return ExactRule("dno", initial_state, update)


def dno_loss(
    policy_1: LossArray,
    policy_2: LossArray,
    previous_1: LossArray,
    previous_2: LossArray,
    reward_margin: LossArray,
    eta: float | jax.Array,
    ops: LossOps = JAX_OPS,
) -> LossArray:
    """Per-pair soft-label DNO loss; ``reward_margin`` = r_t(y₁) − r_t(y₂), reference π_t:
    −[σ(Δr)·log σ(ηΔ) + σ(−Δr)·log σ(−ηΔ)], Δ = (log π − log π_t)(y₁) − (…)(y₂)."""
    delta = (policy_1 - previous_1) - (policy_2 - previous_2)
    label = ops.sigmoid(reward_margin)
    return -(label * ops.log_sigmoid(eta * delta) + (1.0 - label) * ops.log_sigmoid(-eta * delta))


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """DNO's loss on a pair batch, r_t(y) = the scheme's estimate of P(y ≻ π_t)."""
    return dno_loss(
        batch["policy_w"],
        batch["policy_l"],
        batch["previous_w"],
        batch["previous_l"],
        batch["win_rate_w"] - batch["win_rate_l"],
        parameters["eta"],
        ops,
    )


DEFINITION = RuleDefinition(
    name="dno",
    paper="Rosset et al., Direct Nash Optimization (arXiv 2404.03715), theoretical algorithm",
    summary="exponential weights on the win rate against π_t (= SPPO with η_SPPO = 1/η)",
    update_formula="ℓ_t + Pπ_t/η",
    loss_formula="soft-label BT with label σ(P̂_1 − P̂_2), η inverse LR",
    anchors="π_t",
    parameters=(
        Parameter("eta", "INVERSE learning rate η: π_{t+1} ∝ π_t exp(Pπ_t/η)", 1.0, constraint="> 0", symbol="η"),
    ),
    exact=dno,
    loss=pair_loss,
    # σ(r̂₁ − r̂₂) of sampled estimates r̂ is not σ(r₁ − r₂) on average: only exact win rates are unbiased
    data=PairData(needs_win_rates=True, unbiased_schemes=("exact_win_rates",)),
    bounds=(DNO_HEDGE,),
)
