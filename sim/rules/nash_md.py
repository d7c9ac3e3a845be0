"""Nash-MD (Munos et al., ICML 2024, "Nash Learning from Human Feedback"), docs/theory.md §C.6.

Convention: η is the **learning rate**, τ the regularisation (π_ref is the paper's μ).  The opponent
is the geometric mixture π_t^μ ∝ π_t^{1−ητ}·π_ref^{ητ} (requires ητ ≤ 1):

    log π_{t+1} = (1 − ητ)·log π_t + ητ·log π_ref + η·P π_t^μ − log Z.

Unlike INPO, π*_τ is not an exact fixed point at constant η: the limit has an O(η²) duality gap.

Sampled form Nash-MD-PG: per sample y ~ π, y′ ~ π^μ, loss −sg[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import normalize, win_rates
from sim.rules.base import ExactRule, advance, initial_state, is_concrete, mirror_weights, require_positive
from sim.rules.definition import GAME_TAU, JAX_OPS, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE, NASH_MD_THEOREM1


def nash_md(eta: float | jax.Array = 0.1, tau: float | jax.Array = 0.1) -> ExactRule:
    """Exact Nash-MD.  Args: eta (learning rate > 0), tau (regularisation > 0), with ητ ≤ 1."""
    require_positive("nash_md", "eta", eta)
    require_positive("nash_md", "tau", tau)
    if is_concrete(eta) and is_concrete(tau) and float(eta) * float(tau) > 1.0:
        raise PrefsimError(f"rule nash_md: the mixture exponent eta·tau must be ≤ 1, got {float(eta) * float(tau):g}.")

    def update(state, game):
        mixture = normalize(mixture_log_weights(state.log_policy, game.log_reference, eta, tau))
        return advance(
            state, mirror_weights(state.log_policy, game.log_reference, win_rates(game, jnp.exp(mixture)), eta, tau)
        )

    return ExactRule("nash_md", initial_state, update)


def mixture_log_weights(
    log_policy: jax.Array, log_reference: jax.Array, eta: float | jax.Array, tau: float | jax.Array
) -> jax.Array:
    """Unnormalised log π_t^μ = (1 − ητ)·log π_t + ητ·log π_ref: Nash-MD's geometric-mixture opponent."""
    return (1.0 - eta * tau) * log_policy + eta * tau * log_reference


def opponent(log_policy: jax.Array, log_reference: jax.Array, parameters: Mapping[str, Any]) -> jax.Array:
    """The opponent the sampled pairs are drawn against: π_t^μ (log-weights, unnormalised)."""
    return mixture_log_weights(log_policy, log_reference, parameters["eta"], parameters["tau"])


def nash_md_pg_loss(
    policy_y: LossArray,
    reference_y: LossArray,
    preference_y_over_opponent: LossArray,
    tau: float | jax.Array,
    ops: LossOps = JAX_OPS,
) -> LossArray:
    """Per-sample Nash-MD-PG surrogate: −sg[P(y≻y′) − ½ − τ(log π(y) − log π_ref(y))]·log π(y)."""
    advantage = ops.stop_gradient(preference_y_over_opponent - 0.5 - tau * (policy_y - reference_y))
    return -advantage * policy_y


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """Nash-MD-PG on a pair batch: the first response is a sample of π_t scored against its opponent
    (``win_rate_w``); when both responses are samples of π_t (``both_from_policy`` = 1, each the other's
    opponent) the two surrogates are averaged."""
    tau = parameters["tau"]
    both = batch["both_from_policy"]
    first = nash_md_pg_loss(batch["policy_w"], batch["reference_w"], batch["win_rate_w"], tau, ops)
    second = nash_md_pg_loss(batch["policy_l"], batch["reference_l"], batch["win_rate_l"], tau, ops)
    return (first + both * second) / (1.0 + both)


DEFINITION = RuleDefinition(
    name="nash_md",
    paper="Munos et al., Nash Learning from Human Feedback, ICML 2024 (arXiv 2312.00886)",
    summary="mirror descent against the geometric mixture π_t^{1−ητ}π_ref^{ητ}",
    update_formula="(1−ητ)ℓ_t + ητℓ_ref + ηPπ_t^μ, π^μ ∝ π_t^{1−ητ}π_ref^{ητ}",
    loss_formula=(
        "−sg[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y), y ~ π_t against y′ from the geometric mixture "
        "π_t^μ (below)"
    ),
    anchors="π_ref",
    parameters=(
        Parameter(
            "eta",
            "learning rate η (ητ ≤ 1); sets the mixture exponent ητ",
            0.1,
            constraint="> 0, eta·tau ≤ 1",
            symbol="η",
        ),
        Parameter("tau", "KL(π‖π_ref) regularisation τ", GAME_TAU, constraint="> 0", symbol="τ"),
    ),
    exact=nash_md,
    loss=pair_loss,
    data=PairData(
        schemes=("lambda_p",),
        opponent=opponent,
        minimiser=(
            "the π at which A(y)·π_t(y)/π(y) is the same for every response, A = Pπ_t^μ − ½ − τ·log(π/π_ref) "
            "(where that constant is 0, the regularised best response to the mixture, π_ref·exp(Pπ_t^μ/τ)/Z; η "
            "enters only through the mixture), far past Nash-MD's step"
        ),
    ),
    bounds=(NASH_MD_THEOREM1, ADVANCEMENT_MONOTONE),
    aliases=("nash_md_pg",),
    anchored=True,
)
