"""Iterative DPO as a proximal-point step (Bradley–Terry), THEORY §B.2 and §C.2.

Reference = the current policy π_t (APO's reading).  With the exact reward the DPO population
minimiser on pairs with full support is the KL-proximal step

    log π_{t+1} = log π_t + r/β − log Z,   so   π_T = softmax(log π_ref + T·r/β).

Needs a Bradley–Terry game (``rewards``).  Sampled loss: −log σ(β[(log π − log π_R)(y_w) − (…)(y_l)]).
"""

from __future__ import annotations

import jax

from sim.rules.base import ExactRule, advance, initial_state, require_positive


def dpo(beta=1.0) -> ExactRule:
    """Exact iterative DPO (proximal step with reference π_t).  Args: beta (KL coefficient > 0)."""
    require_positive("dpo", "beta", beta)

    def update(state, game):
        return advance(state, state.log_policy + game.rewards / beta)

    return ExactRule("dpo", initial_state, update)


def dpo_loss(policy_w, policy_l, reference_w, reference_l, beta):
    """Per-pair DPO loss −log σ(βΔ), Δ = (log π − log π_R)(y_w) − (log π − log π_R)(y_l)."""
    delta = (policy_w - reference_w) - (policy_l - reference_l)
    return -jax.nn.log_sigmoid(beta * delta)
