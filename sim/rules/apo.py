"""APO — **Accelerated** Preference Optimization (He, Yuan & Gu, arXiv 2410.06293), THEORY §B, §C.3.

Not TRL's ``apo_zero`` / ``apo_down`` loss types, which are *Anchored* Preference Optimization
(arXiv 2408.06266): those are per-pair losses of one DPO run, while this is Nesterov-style momentum
*across iterations* wrapped around any proximal rule.

Wrapper (like optax's ``lookahead``): a base proximal rule (``dpo``, ``sppo``, ``inpo``) maps the
current, extrapolated π_t to its proximal output π̂_{t+1}; APO then extrapolates in log space between
**consecutive proximal outputs** (Eq. 3.6):

    log π_{t+1} = (1 + α_t)·log π̂_{t+1} − α_t·log π̂_t − log Z,    π̂_0 = π_0 = π_ref.

The next iteration samples from, and uses as reference, the extrapolated π_{t+1}.  Schedules:
``constant`` (α_t = α) or ``nesterov`` (α_t = (k − 1)/(k + 2) for the k-th update, k = 1, 2, …: 0, ¼, ⅖, …;
the classical accelerated proximal point, not necessarily the paper's).  With exact rewards and DPO,
log π_T = log π_ref + c_T·r/β with c_T = [T − α²(1 − α^T)/(1 − α)]/(1 − α) (THEORY §B.3).
"""

from __future__ import annotations

import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.rules.base import ExactRule, ExactState, is_concrete, normalize_with_policy

SCHEDULES = ("constant", "nesterov")


def extrapolation_weight(alpha, schedule: str, step):
    """α_t for the update t → t+1 (``step`` = t)."""
    if schedule == "nesterov":
        return step / (step + 3.0)
    return alpha


def apo(base: ExactRule, alpha=0.3, schedule: str = "constant") -> ExactRule:
    """Wrap a proximal rule with APO's extrapolation.  ``alpha`` ∈ [0, 1) for the constant schedule."""
    if schedule not in SCHEDULES:
        raise PrefsimError(f"rule apo: unknown schedule {schedule!r}; choose constant or nesterov.")
    if schedule == "constant" and is_concrete(alpha) and not (0.0 <= float(alpha) < 1.0):
        raise PrefsimError(f"rule apo: the extrapolation alpha must lie in [0, 1), got {float(alpha):g}.")

    def init(game):
        base_state = base.init(game)
        return base_state._replace(extra=(base_state.extra, base_state.log_policy))

    def update(state, game):
        base_extra, previous_proximal = state.extra
        proximal = base.update(state._replace(extra=base_extra), game)
        weight = extrapolation_weight(alpha, schedule, state.step)
        new, policy = normalize_with_policy((1.0 + weight) * proximal.log_policy - weight * previous_proximal)
        return ExactState(new, proximal.step, extra=(proximal.extra, proximal.log_policy), policy=policy)

    return ExactRule("apo", init, update)


def apo_multipliers(iterations, alpha):
    """Closed-form (ĉ_T, c_T) of THEORY §B.3 for exact-reward APO-DPO (constant α).

    log π̂_T = log π_ref + ĉ_T·r/β and log π_T = log π_ref + c_T·r/β with
    ĉ_T = [T − α(1 − α^T)/(1 − α)]/(1 − α),  c_T = [T − α²(1 − α^T)/(1 − α)]/(1 − α).
    """
    t = jnp.asarray(iterations, dtype=jnp.result_type(float))
    geometric = (1.0 - alpha**t) / (1.0 - alpha)
    return (t - alpha * geometric) / (1.0 - alpha), (t - alpha**2 * geometric) / (1.0 - alpha)
