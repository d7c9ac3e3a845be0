"""INPO — Iterative Nash Policy Optimization (Zhang et al., ICLR 2025, arXiv 2407.00617).

Convention (docs/theory.md §1, §A.3, §E.1): **η is the inverse learning rate** (1/η is the OMD step) and
τ is the KL(π‖π_ref) weight of the game.  Exact update, Eq. (5):

    log π_{t+1} = (1 − τ/η)·log π_t + (τ/η)·log π_ref + (Pπ_t)/η − log Z_t.

It is a convex combination only for η ≥ τ; η = τ is iterated best response (``online_ipo``), so the
constant schedule requires **η > τ**.  The last iterate converges iff η > η_crit = (τ² + ω_max²)/(2τ)
(docs/theory.md §A.3).  Schedule ``theorem4`` uses η_t = τ(t+2)/2 for the update t → t+1, t = 0, 1, … (reading
(a) of docs/theory.md §A.5: the first update is BR_τ(π_ref)), under which Theorem 4 gives
KL(π*‖π_T) ≤ 32C²/(τ²(T+1)).

Sampled loss (Eq. 7/8, docs/theory.md §A.4): on pairs y, y′ ~ π_t i.i.d. ordered by the oracle (winner y_w),

    h_t(π, y_w, y_l) = log π(y_w)/π(y_l) − (τ/η)·log π_ref(y_w)/π_ref(y_l) − ((η−τ)/η)·log π_t(y_w)/π_t(y_l)
    loss = (h_t − 1/(2η))².
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from bandits.errors import PrefsimError
from sim.rules.base import (
    ExactRule,
    advance,
    current_win_rates,
    initial_state,
    is_concrete,
    mirror_weights,
    require_positive,
)
from sim.rules.definition import GAME_TAU, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE, ETA_CRITICAL, INPO_THEOREM3, INPO_THEOREM4

SCHEDULES = ("constant", "theorem4")


def inpo_eta(
    eta: float | jax.Array | None, tau: float | jax.Array, schedule: str, step: int | jax.Array | LossArray
) -> float | jax.Array | LossArray:
    """The inverse learning rate used by the update t → t+1 (``step`` = t)."""
    if schedule == "theorem4":
        return tau * (step + 2.0) / 2.0
    return eta


def inpo(eta: float | jax.Array | None = None, tau: float | jax.Array = 0.1, schedule: str = "constant") -> ExactRule:
    """Exact INPO / online mirror descent on the τ-regularised preference game.

    Args:
      eta: inverse learning rate η (> τ) for ``schedule = "constant"``; ``None`` (refused otherwise) for ``theorem4``.
      tau: KL(π‖π_ref) regularisation τ > 0 of the rule.
      schedule: ``constant`` or ``theorem4`` (η_t = τ(t+2)/2).
    """
    if schedule not in SCHEDULES:
        raise PrefsimError(f"rule inpo: unknown schedule {schedule!r}; choose constant or theorem4.")
    require_positive("inpo", "tau", tau)
    if schedule == "theorem4" and eta is not None:  # as a spec's rule table, which refuses it too
        raise PrefsimError('rule inpo: eta is not used with schedule = "theorem4" (η_t = τ(t+2)/2); remove it.')
    if schedule == "constant":
        if eta is None:
            raise PrefsimError(
                'rule inpo: parameter eta (the inverse learning rate) is required for schedule = "constant".'
            )
        require_positive("inpo", "eta", eta)
        if is_concrete(eta) and is_concrete(tau) and not float(eta) > float(tau):
            raise PrefsimError(
                f"rule inpo: needs eta > tau (η is the inverse learning rate; η = τ is iterated best "
                f"response, use rule online_ipo for that); got eta = {float(eta):g}, tau = {float(tau):g}."
            )

    def update(state, game):
        step_eta = inpo_eta(eta, tau, schedule, state.step)
        payoff = current_win_rates(state, game)
        return advance(state, mirror_weights(state.log_policy, game.log_reference, payoff, 1.0 / step_eta, tau))

    return ExactRule("inpo", initial_state, update)


def inpo_log_ratio(
    policy_w: LossArray,
    policy_l: LossArray,
    reference_w: LossArray,
    reference_l: LossArray,
    previous_w: LossArray,
    previous_l: LossArray,
    eta: float | jax.Array | LossArray,
    tau: float | jax.Array,
) -> LossArray:
    """h_t = log π(y_w)/π(y_l) − (τ/η)·log π_ref(y_w)/π_ref(y_l) − ((η−τ)/η)·log π_t(y_w)/π_t(y_l)."""
    return (
        (policy_w - policy_l)
        - (tau / eta) * (reference_w - reference_l)
        - ((eta - tau) / eta) * (previous_w - previous_l)
    )


def inpo_loss(
    policy_w: LossArray,
    policy_l: LossArray,
    reference_w: LossArray,
    reference_l: LossArray,
    previous_w: LossArray,
    previous_l: LossArray,
    eta: float | jax.Array | LossArray,
    tau: float | jax.Array,
) -> LossArray:
    """Per-pair INPO loss (Eq. 8) from log-probabilities of the winner (w) and loser (l).

    ``policy_*`` = log π, ``reference_*`` = log π_ref, ``previous_*`` = log π_t.  Returns
    ``(h_t − 1/(2η))²`` elementwise (:func:`inpo_log_ratio`).  Plain arithmetic: the same function runs on
    JAX arrays and torch tensors.
    """
    h = inpo_log_ratio(policy_w, policy_l, reference_w, reference_l, previous_w, previous_l, eta, tau)
    return (h - 1.0 / (2.0 * eta)) ** 2


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """INPO's loss on a pair batch (:data:`sim.rules.definition.BATCH_KEYS`), η_t of the schedule."""
    eta = inpo_eta(parameters.get("eta"), parameters["tau"], parameters.get("schedule", "constant"), batch["step"])
    return inpo_loss(
        batch["policy_w"],
        batch["policy_l"],
        batch["reference_w"],
        batch["reference_l"],
        batch["previous_w"],
        batch["previous_l"],
        eta,
        parameters["tau"],
    )


def offline_update(
    parameters: Mapping[str, Any],
    log_policy: jax.Array,
    log_reference: jax.Array,
    reference_win_rates: jax.Array,
    step: int | jax.Array,
) -> jax.Array:
    """Population minimiser of the INPO loss on pairs from π_ref (unnormalised log-weights).

    (1 − τ/η_t)·log π_t + (τ/η_t)·log π_ref + Pπ_ref/η_t: the INPO step with Pπ_ref in place of Pπ_t.
    """
    tau = parameters["tau"]
    eta = inpo_eta(parameters.get("eta"), tau, parameters.get("schedule", "constant"), step)
    return mirror_weights(log_policy, log_reference, reference_win_rates, 1.0 / eta, tau)


DEFINITION = RuleDefinition(
    name="inpo",
    paper="Zhang et al., Iterative Nash Policy Optimization, ICLR 2025 (arXiv 2407.00617), Eq. (5), loss Eq. (8)",
    summary="online mirror descent on the τ-regularised preference game",
    update_formula="(1 − τ/η)ℓ_t + (τ/η)ℓ_ref + Pπ_t/η",
    loss_formula="(h_t − 1/(2η))², η inverse LR > τ",
    anchors="π_ref (τ/η) and π_t ((η−τ)/η)",
    parameters=(
        Parameter(
            "eta",
            "INVERSE learning rate η (1/η is the OMD step); not used by schedule theorem4",
            None,
            constraint="> tau",
            symbol="η",
        ),
        Parameter("tau", "KL(π‖π_ref) regularisation τ of the rule", GAME_TAU, constraint="> 0", symbol="τ"),
        Parameter(
            "schedule",
            "constant η, or theorem4: η_t = τ(t+2)/2",
            "constant",
            SCHEDULES,
        ),
    ),
    exact=inpo,
    loss=pair_loss,
    data=PairData(),
    offline=offline_update,
    bounds=(INPO_THEOREM4, INPO_THEOREM3, ETA_CRITICAL, ADVANCEMENT_MONOTONE),
    proximal=True,
    anchored=True,
)
