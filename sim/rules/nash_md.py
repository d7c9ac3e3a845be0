"""Nash-MD (Munos et al., ICML 2024, "Nash Learning from Human Feedback"), THEORY §C.6.

Convention: η is the **learning rate**, τ the regularisation (π_ref is the paper's μ).  The opponent
is the geometric mixture π_t^μ ∝ π_t^{1−ητ}·π_ref^{ητ} (requires ητ ≤ 1):

    log π_{t+1} = (1 − ητ)·log π_t + ητ·log π_ref + η·P π_t^μ − log Z.

Unlike INPO, π*_τ is not an exact fixed point at constant η: the limit has an O(η²) duality gap.

Sampled form Nash-MD-PG: per sample y ~ π, y′ ~ π^μ, loss −sg[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.game import normalize, win_rates
from sim.rules.base import ExactRule, advance, initial_state, is_concrete, mirror_weights, require_positive


def nash_md(eta=0.1, tau=0.1) -> ExactRule:
    """Exact Nash-MD.  Args: eta (learning rate > 0), tau (regularisation > 0), with ητ ≤ 1."""
    require_positive("nash_md", "eta", eta)
    require_positive("nash_md", "tau", tau)
    if is_concrete(eta) and is_concrete(tau) and float(eta) * float(tau) > 1.0:
        raise PrefsimError(f"rule nash_md: the mixture exponent eta·tau must be ≤ 1, got {float(eta) * float(tau):g}.")

    def update(state, game):
        mixture = normalize((1.0 - eta * tau) * state.log_policy + eta * tau * game.log_reference)
        return advance(
            state, mirror_weights(state.log_policy, game.log_reference, win_rates(game, jnp.exp(mixture)), eta, tau)
        )

    return ExactRule("nash_md", initial_state, update)


def nash_md_pg_loss(policy_y, reference_y, preference_y_over_opponent, tau):
    """Per-sample Nash-MD-PG surrogate: −sg[P(y≻y′) − ½ − τ(log π(y) − log π_ref(y))]·log π(y)."""
    advantage = jax.lax.stop_gradient(preference_y_over_opponent - 0.5 - tau * (policy_y - reference_y))
    return -advantage * policy_y
