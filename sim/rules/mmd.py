"""Magnetic Mirror Descent (Sokota et al., ICLR 2023, arXiv 2206.05825), magnet ρ = π_ref.

Convention (docs/theory.md §C.9): η is the **step size** (learning rate) and τ ≥ 0 the magnet strength
(the MMD paper's α).  Update:

    log π_{t+1} = [log π_t + ητ·log π_ref + η·Pπ_t] / (1 + ητ) − log Z.

Equivalence: MMD with step η equals exact INPO with η_INPO = τ + 1/η (:func:`inpo_eta`), whatever τ ≥ 0
(τ = 0: π_{t+1} ∝ π_t·exp(η·Pπ_t), multiplicative weights).  The sampled and LLM loss is therefore
INPO's per-pair loss (:func:`sim.rules.inpo.inpo_loss`, Eq. 8) at η_INPO with the same τ, on pairs
y, y′ ~ π_t ordered by the oracle:

    h = Δlog π − (τ/η_INPO)·Δlog π_ref − ((η_INPO − τ)/η_INPO)·Δlog π_t,   loss = (h − 1/(2η_INPO))²,

with τ/η_INPO = ητ/(1 + ητ) and 1/(2η_INPO) = η/(2(1 + ητ)); INPO's Proposition 6 makes its population
minimiser the MMD step above for every τ ≥ 0 (docs/theory.md §C.9).  This is **prefsim's estimator, not
MPO's loss**: MPO (Wang et al., arXiv 2410.16714, the ``mpo`` preset) trains an LM with a policy-gradient
implementation of the MMD step (token-level, REINFORCE-style advantages, on the Safe-RLHF code base, as
summaries of the paper describe it; no public code was found).  Both target the same MMD step, by
different estimators.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from sim.rules import inpo
from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_nonnegative, require_positive
from sim.rules.definition import GAME_TAU, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE, MMD_LINEAR


def mmd(eta: float | jax.Array = 1.0, tau: float | jax.Array = 0.1) -> ExactRule:
    """Exact MMD with magnet π_ref.  Args: eta (step size > 0), tau (magnet strength ≥ 0)."""
    require_positive("mmd", "eta", eta)
    require_nonnegative("mmd", "tau", tau)

    def update(state, game):
        payoff = current_win_rates(state, game)
        return advance(state, (state.log_policy + eta * tau * game.log_reference + eta * payoff) / (1.0 + eta * tau))

    return ExactRule("mmd", initial_state, update)


def inpo_eta(eta: float | jax.Array | LossArray, tau: float | jax.Array | LossArray) -> float | jax.Array | LossArray:
    """INPO's inverse learning rate η_INPO = τ + 1/η of the MMD step with step size η and magnet strength τ."""
    return tau + 1.0 / eta


def inpo_parameters(parameters: Mapping[str, Any]) -> dict:
    """MMD's ``eta`` (step) and ``tau`` as INPO's parameters: constant η_INPO = τ + 1/η, the same τ."""
    tau = parameters["tau"]
    return {"eta": inpo_eta(parameters["eta"], tau), "tau": tau, "schedule": "constant"}


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """MMD's loss on a pair batch: INPO's (:func:`sim.rules.inpo.pair_loss`) at η_INPO = τ + 1/η."""
    return inpo.pair_loss(ops, batch, inpo_parameters(parameters))


def offline_update(
    parameters: Mapping[str, Any],
    log_policy: jax.Array,
    log_reference: jax.Array,
    reference_win_rates: jax.Array,
    step: int | jax.Array,
) -> jax.Array:
    """Population minimiser of the loss on pairs from π_ref (unnormalised): the MMD step with Pπ_ref in place
    of Pπ_t, [ℓ_t + ητℓ_ref + ηPπ_ref]/(1 + ητ) (INPO's :func:`sim.rules.inpo.offline_update` at η_INPO)."""
    return inpo.offline_update(inpo_parameters(parameters), log_policy, log_reference, reference_win_rates, step)


DEFINITION = RuleDefinition(
    name="mmd",
    paper="Sokota et al., Magnetic Mirror Descent, ICLR 2023 (arXiv 2206.05825)",
    summary="mirror descent with a magnet at π_ref; equals INPO with η_INPO = τ + 1/η",
    update_formula="[ℓ_t + ητℓ_ref + ηPπ_t]/(1+ητ)",
    loss_formula="INPO's (h_t − 1/(2η_INPO))² at η_INPO = τ + 1/η (η the step size; τ = 0 allowed)",
    anchors="π_ref (ητ/(1+ητ)) and π_t (1/(1+ητ))",
    parameters=(
        Parameter("eta", "step size (learning rate) η of MMD", 1.0, constraint="> 0", symbol="η"),
        Parameter("tau", "magnet strength (the MMD paper's α), magnet = π_ref", GAME_TAU, constraint="≥ 0", symbol="τ"),
    ),
    exact=mmd,
    loss=pair_loss,
    data=PairData(),
    offline=offline_update,
    bounds=(MMD_LINEAR, ADVANCEMENT_MONOTONE),
    anchored=True,
)
