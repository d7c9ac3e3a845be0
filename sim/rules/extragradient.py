"""Extragradient and optimistic mirror descent on the τ-regularised game (docs/theory.md §C.10).

Both use the regularised mirror step U(ℓ; π′) = (1 − ητ)ℓ + ητ·ℓ_ref + η·Pπ′ − norm, with **η the
learning rate** (step size, ητ ≤ 1) and τ the regularisation.

* Extragradient / mirror-prox (Cen et al. 2021; EGPO, arXiv 2503.08942): π_{t+½} = U(ℓ_t; π_t),
  π_{t+1} = U(ℓ_t; π_{t+½}).  Two products with P per iteration.
* Optimistic MD / OMWU (single call, as in ONPO arXiv 2502.16852): π̄_{t+1} = U(ℓ̄_t; π̄_t) is
  replaced by the standard two-sequence form π̄_{t+1} = U(ℓ_t; π̄_t), π_{t+1} = U(ℓ_t; π̄_{t+1}), with
  Pπ̄_t carried over from the previous iteration, so one product with P per iteration.

EGPO's tabular simulations (``zhourunlong/EGPO``, ``simulations/``) take one SGD step of size lr on
logits per stage, on a loss weighting all K² pairs equally: that is this rule with τ = β and
η = 4·lr/(Kβ), not η = lr (docs/theory.md §C.10, §C.14).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
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
from sim.rules.definition import GAME_TAU, LossArray, LossOps, PairData, Parameter, RuleDefinition, Stage
from sim.rules.inpo import inpo_log_ratio
from sim.theorems import ADVANCEMENT_MONOTONE, MIRROR_PROX_LINEAR, OPTIMISTIC_AVERAGE, OPTIMISTIC_LINEAR

ESTIMATORS = ("ipo", "uniform")


def _check(rule, eta, tau, estimator="ipo"):
    if estimator not in ESTIMATORS:
        raise PrefsimError(f"rule {rule}: estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}.")
    require_positive(rule, "eta", eta)
    require_nonnegative(rule, "tau", tau)
    if is_concrete(eta) and is_concrete(tau) and float(eta) * float(tau) > 1.0:
        raise PrefsimError(f"rule {rule}: the step eta·tau must be ≤ 1, got {float(eta) * float(tau):g}.")


def extragradient(eta: float | jax.Array = 0.5, tau: float | jax.Array = 0.1, estimator: str = "ipo") -> ExactRule:
    """Exact extragradient (mirror-prox) with learning rate eta and regularisation tau.

    ``estimator`` chooses the sampled loss (:func:`pair_loss`); the exact update does not depend on it.
    """
    _check("extragradient", eta, tau, estimator)

    def update(state, game):
        log_policy = state.log_policy
        _, half = normalize_with_policy(
            mirror_weights(log_policy, game.log_reference, current_win_rates(state, game), eta, tau)
        )
        return advance(state, mirror_weights(log_policy, game.log_reference, win_rates(game, half), eta, tau))

    return ExactRule("extragradient", initial_state, update)


def optimistic(eta: float | jax.Array = 0.5, tau: float | jax.Array = 0.1, estimator: str = "ipo") -> ExactRule:
    """Exact optimistic mirror descent; ``extra`` carries (log π̄_t, Pπ̄_t).  ``estimator``: as for
    :func:`extragradient`."""
    _check("optimistic", eta, tau, estimator)

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


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """Each stage's loss (EGPO, arXiv 2503.08942; ONPO, arXiv 2502.16852), anchor π_t and π_ref.

    ``estimator = "ipo"`` (EGPO's Online-IPO form): λ_p pairs from the stage's policy μ, ordered by one
    query, target η/2; ``"uniform"`` (EGPO's estimator): y, y′ uniform, one opponent from μ, target
    η(z − z′) with the two queries' outcomes (``win_rate_w/l``).  Both have population minimiser
    U(ℓ_t; μ) = (1 − ητ)ℓ_t + ητ·ℓ_ref + η·Pμ (h = Δlog π − ητ·Δlog π_ref − (1 − ητ)·Δlog π_t).
    """
    eta, tau = parameters["eta"], parameters["tau"]
    # the mirror step U(ℓ_t; μ) is INPO's step with inverse learning rate 1/η: same log-ratio h
    h = inpo_log_ratio(
        batch["policy_w"],
        batch["policy_l"],
        batch["reference_w"],
        batch["reference_l"],
        batch["previous_w"],
        batch["previous_l"],
        1.0 / eta,
        tau,
    )
    if parameters.get("estimator", "ipo") == "uniform":
        return (h - eta * (batch["win_rate_w"] - batch["win_rate_l"])) ** 2
    return (h - 0.5 * eta) ** 2


def stage_update(
    parameters: Mapping[str, Any],
    log_policy: jax.Array,
    log_reference: jax.Array,
    source_win_rates: jax.Array,
    step: int | jax.Array,
) -> jax.Array:
    """Population minimiser of a stage's loss on pairs from μ (unnormalised): U(ℓ_t; μ), given Pμ."""
    return mirror_weights(log_policy, log_reference, source_win_rates, parameters["eta"], parameters["tau"])


def stage_scheme(parameters: Mapping[str, Any]) -> str | None:
    """The pair scheme the estimator fixes: ``uniform_opponent`` for ``uniform``, else the run's."""
    return "uniform_opponent" if parameters.get("estimator", "ipo") == "uniform" else None


def _parameters():
    return (
        Parameter("eta", "learning rate η (ητ ≤ 1)", 0.5, constraint="> 0, eta·tau ≤ 1", symbol="η"),
        Parameter("tau", "KL(π‖π_ref) regularisation τ", GAME_TAU, constraint="≥ 0", symbol="τ"),
        Parameter(
            "estimator",
            "sampled loss of each stage: ipo (λ_p pairs, target η/2) or uniform (EGPO's: uniform pairs, one "
            "opponent from the stage's policy, 2 queries per pair)",
            "ipo",
            ESTIMATORS,
        ),
    )


def _two_stage_rule(
    name: str,
    paper: str,
    summary: str,
    update_formula: str,
    exact: Callable[..., ExactRule],
    stages: tuple,
    bounds: tuple,
) -> RuleDefinition:
    """A mirror-step rule whose sampled iteration solves the stage loss twice (``stages``)."""
    return RuleDefinition(
        name=name,
        paper=paper,
        summary=summary,
        update_formula=update_formula,
        loss_formula="(h − η/2)², h = Δlog π − ητΔlog π_ref − (1 − ητ)Δlog π_t, in two stages (below)",
        anchors="π_ref (ητ) and π_t (1 − ητ)",
        parameters=_parameters(),
        exact=exact,
        loss=pair_loss,
        offline=stage_update,
        data=PairData(schemes=("lambda_p",), stages=stages, scheme=stage_scheme),
        bounds=bounds + (ADVANCEMENT_MONOTONE,),
        anchored=True,
    )


# half step on pairs from π_t, full step on fresh pairs from π_{t+½}: 2N queries per iteration
EXTRAGRADIENT = _two_stage_rule(
    "extragradient",
    "Cen et al. 2021; Zhou et al., EGPO (COLM 2025, arXiv 2503.08942)",
    "mirror-prox: a half step, then the full step against the half-step policy",
    "mirror-prox on the τ-regularised game; in sampled mode and the LLM bridge two proximal solves per iteration "
    "(EGPO)",
    extragradient,
    (Stage("iterate"), Stage("previous_stage")),
    (MIRROR_PROX_LINEAR,),
)

# π̄_{t+1} on the pairs drawn last iteration from π̄_t, π_{t+1} on fresh pairs from π̄_{t+1} (kept for the
# next iteration): N queries per iteration, plus N from π_0 before the first
OPTIMISTIC = _two_stage_rule(
    "optimistic",
    "Rakhlin & Sridharan 2013; ONPO, Zhang et al. 2025 (arXiv 2502.16852)",
    "optimistic mirror descent (one product with P per iteration)",
    "optimistic MD on the τ-regularised game; in sampled mode and the LLM bridge two proximal solves per "
    "iteration (ONPO)",
    optimistic,
    (Stage("carried"), Stage("previous_stage", carry=True)),
    (OPTIMISTIC_LINEAR, OPTIMISTIC_AVERAGE),
)
