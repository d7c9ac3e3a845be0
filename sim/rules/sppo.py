"""SPPO — Self-Play Preference Optimization (Wu et al., ICLR 2025), docs/theory.md §C.7.

Convention: η is the **learning rate** (the official code's β = 1/η).  No π_ref, no regularisation:
the unregularised game, multiplicative weights in self-play,

    exact normaliser:  log π_{t+1} = log π_t + η·Pπ_t − log Z_t.

The paper's loss replaces log Z_t by η/2: π_{t+1} = argmin over the simplex of
E_{y~π_t}[(log π(y)/π_t(y) − η(P(y≻π_t) − ½))²].  With ``normaliser = "paper"`` this module solves that
constrained argmin exactly: writing d = log π/π_t and c = η(p − ½), the KKT conditions give
d_y + μ·e^{d_y} = c_y with the multiplier μ ≥ 0 fixed by Σ π_t e^{d} = 1 (μ ≥ 0 because log Z ≥ η/2 by
Jensen).  When p is constant on the support, μ = 0 and both variants agree.

Theorem 4.1 (SPPO): with η = Θ(1/√T) the uniform mixture has an O(1/√T) duality gap; the last
iterate need not converge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.rules.base import ExactRule, advance, current_win_rates, initial_state, require_positive
from sim.rules.definition import LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import SPPO_HEDGE

NORMALISERS = ("exact", "paper")
_INNER_NEWTON_STEPS = 12
_OUTER_STEPS = 60


def wright_omega(x: jax.Array) -> jax.Array:
    """ω(x): the solution w > 0 of w + log w = x (elementwise), to machine precision.

    Two monotone Newton iterations that cannot overshoot or overflow: for x > 1 on the concave
    q(w) = w + log w − x from w₀ = x − log x ≤ ω(x) (increasing to the root); for x ≤ 1 on the convex
    p(s) = s + e^s − x in s = log w from s₀ = x ≥ log ω(x) (decreasing to the root, e^s ≤ e).  Both
    converge quadratically from these starts, so a fixed number of steps suffices for any x.
    """
    large = x > 1.0
    x_large = jnp.where(large, x, 2.0)
    x_small = jnp.where(large, 0.0, x)

    def newton_w(_, w):
        return w - (w + jnp.log(w) - x_large) * w / (w + 1.0)

    def newton_s(_, s):
        growth = jnp.exp(s)
        return s - (s + growth - x_small) / (1.0 + growth)

    w = jax.lax.fori_loop(0, _INNER_NEWTON_STEPS, newton_w, x_large - jnp.log(x_large))
    s = jax.lax.fori_loop(0, _INNER_NEWTON_STEPS, newton_s, x_small)
    return jnp.where(large, w, jnp.exp(s))


def solve_paper_target(log_policy: jax.Array, target: jax.Array) -> jax.Array:
    """argmin_{d: Σ π e^d = 1} Σ π (d − c)², π = exp(log_policy), c = ``target`` (docs/theory.md §C.7).

    Returns the new log-policy ``log_policy + d``.  Solves d_y + μe^{d_y} = c_y per arm in closed form
    through the Wright omega function, d_y = c_y − ω(log μ + c_y) (:func:`wright_omega`), and the
    scalar μ ≥ 0 by safeguarded Newton on log μ within a bisection bracket so that log Σ π e^d = 0.
    (A plain Newton iteration on d_y + μe^{d_y} = c_y overshoots far to the right when μe^{c_y} is
    large and then creeps back by ≈ 1 per step: with the official code's η = 1000 it returned policies
    violating the constraint by factors up to 1e52.)
    """
    policy = jnp.exp(log_policy)
    overshoot = jax.scipy.special.logsumexp(target, b=policy)  # log Σ π e^c ≥ 0 by Jensen
    dtype = target.dtype

    def solve_d(log_mu):
        # d + μe^d = c  ⇔  d = c − w with w = μe^d = ω(log μ + c), the Wright omega function
        return target - wright_omega(log_mu + target)

    def residual(log_mu):
        d = solve_d(log_mu)
        return jax.scipy.special.logsumexp(d, b=policy), d

    low = jnp.asarray(-60.0, dtype) - jnp.max(jnp.abs(target))
    high = jnp.asarray(5.0, dtype) + jnp.log1p(jnp.max(jnp.abs(target)))  # residual(high) < 0 there

    def outer(_, bracket):
        low, high, log_mu = bracket
        value, d = residual(log_mu)
        growth = target - d  # = μe^d
        # derivative of log Σ π e^d w.r.t. log μ: −Σ π e^d·μe^d/(1+μe^d) / Σ π e^d
        weights = policy * jnp.exp(d)
        slope = -jnp.sum(weights * growth / (1.0 + growth)) / jnp.sum(weights)
        low = jnp.where(value > 0, log_mu, low)
        high = jnp.where(value > 0, high, log_mu)
        candidate = log_mu - value / jnp.minimum(slope, -1e-300)
        inside = (candidate > low) & (candidate < high)
        return low, high, jnp.where(inside, candidate, 0.5 * (low + high))

    low, high, log_mu = jax.lax.fori_loop(0, _OUTER_STEPS, outer, (low, high, 0.5 * (low + high)))
    value, d = residual(log_mu)
    # If even the smallest μ leaves the constraint satisfied (overshoot ≈ 0), μ = 0: renormalise.
    exact = target - overshoot
    use_zero = residual(jnp.asarray(-60.0, dtype) - jnp.max(jnp.abs(target)))[0] <= 0
    return log_policy + jnp.where(use_zero, exact, d)


def sppo(eta: float | jax.Array = 1.0, normaliser: str = "exact") -> ExactRule:
    """Exact SPPO.  Args: eta (learning rate > 0), normaliser ``exact`` (log Z_t) or ``paper`` (η/2)."""
    require_positive("sppo", "eta", eta)
    if normaliser not in NORMALISERS:
        raise PrefsimError(f"rule sppo: unknown normaliser {normaliser!r}; choose exact or paper.")

    def update(state, game):
        payoff = current_win_rates(state, game)
        if normaliser == "exact":
            return advance(state, state.log_policy + eta * payoff)
        return advance(state, solve_paper_target(state.log_policy, eta * (payoff - 0.5)))

    return ExactRule("sppo", initial_state, update)


def sppo_loss(policy_y: LossArray, previous_y: LossArray, win_rate_y: LossArray, eta: float | jax.Array) -> LossArray:
    """Per-sample SPPO loss (paper): ``(log π(y) − log π_t(y) − η(P̂(y≻π_t) − ½))²``."""
    return (policy_y - previous_y - eta * (win_rate_y - 0.5)) ** 2


def sppo_code_loss(
    policy_w: LossArray,
    previous_w: LossArray,
    win_rate_w: LossArray,
    policy_l: LossArray,
    previous_l: LossArray,
    win_rate_l: LossArray,
    eta: float | jax.Array,
) -> LossArray:
    """Official-code SPPO loss (``uclaml/SPPO`` trainer, β = 1/η): the mean of :func:`sppo_loss` over
    the pair's two responses, ½[(Δ_w − η(P_w − ½))² + (Δ_l − η(P_l − ½))²]."""
    return 0.5 * (sppo_loss(policy_w, previous_w, win_rate_w, eta) + sppo_loss(policy_l, previous_l, win_rate_l, eta))


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """SPPO's loss on a pair batch: both responses regress on their win-rate targets (reference π_t)."""
    return sppo_code_loss(
        batch["policy_w"],
        batch["previous_w"],
        batch["win_rate_w"],
        batch["policy_l"],
        batch["previous_l"],
        batch["win_rate_l"],
        parameters["eta"],
    )


DEFINITION = RuleDefinition(
    name="sppo",
    paper="Wu et al., Self-Play Preference Optimization, ICLR 2025 (arXiv 2405.00675)",
    summary="multiplicative weights in self-play on the unregularised game",
    update_formula="ℓ_t + ηPπ_t",
    loss_formula="½[(Δ_w − η(P̂_w − ½))² + (Δ_l − η(P̂_l − ½))²]",
    anchors="π_t",
    parameters=(
        Parameter("eta", "learning rate η (the official code's beta = 1/η)", 1.0, constraint="> 0", symbol="η"),
        Parameter(
            "normaliser",
            "exact log Z_t, or paper: the η/2 target solved as a constrained argmin (the sampled and LLM loss "
            "always trains the paper target; this picks the update exact mode runs and distance_to_exact uses)",
            "exact",
            NORMALISERS,
        ),
    ),
    exact=sppo,
    loss=pair_loss,
    # the loss's target η(P̂ − ½) is the paper's η/2 normaliser: its population minimiser is that step
    data=PairData(needs_win_rates=True, minimiser_parameters=(("normaliser", "paper"),)),
    bounds=(SPPO_HEDGE,),
    proximal=True,
)
