"""DNO — Direct Nash Optimization, theoretical form (Rosset et al. 2024), THEORY §C.8.

Convention: η is an **inverse** learning rate.  r_t(y) = P(y ≻ π_t) and

    log π_{t+1} = log π_t + (Pπ_t)/η − log Z_t,

i.e. SPPO with η_SPPO = 1/η_DNO; no π_ref term; the output is the uniform mixture (see the
``*_mixture`` metrics).  Regression form (soft-label Bradley–Terry, reference π_t):
−[σ(Δr)·log σ(ηΔ) + σ(−Δr)·log σ(−ηΔ)] with Δ the log-ratio difference of the pair.
"""

from __future__ import annotations

import jax

from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_positive


def dno(eta=1.0) -> ExactRule:
    """Exact theoretical DNO with inverse learning rate eta > 0."""
    require_positive("dno", "eta", eta)

    def update(state, game):
        return advance(state, state.log_policy + current_win_rates(state, game) / eta)

    return ExactRule("dno", initial_state, update)


def dno_loss(policy_1, policy_2, previous_1, previous_2, reward_margin, eta):
    """Per-pair soft-label DNO loss; ``reward_margin`` = r_t(y₁) − r_t(y₂), reference π_t."""
    delta = (policy_1 - previous_1) - (policy_2 - previous_2)
    label = jax.nn.sigmoid(reward_margin)
    return -(label * jax.nn.log_sigmoid(eta * delta) + (1.0 - label) * jax.nn.log_sigmoid(-eta * delta))
