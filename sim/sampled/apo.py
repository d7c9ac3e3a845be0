"""APO's extrapolation in sampled mode: the engine's :class:`~sim.rules.apo.ExtrapolationSpace`.

The hook itself — α_t, the three forms ``parameters``, ``log_space`` and ``implicit_reference`` and
their formulas — is :class:`sim.rules.apo.Extrapolation`, the same object exact mode and the LLM bridge
run.  Sampled mode stores a policy as an optax parameter pytree, so it supplies

* ``combine``: θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t) leaf by leaf (:func:`extrapolate_parameters`; exact, i.e.
  equal to the log-space form, for tabular and log-linear policies, where log π is affine in the
  parameters up to the normaliser; a first-order approximation for the MLP);
* ``log_probs``: the policy model's log-probabilities (M, K).

With ``log_space`` the next proximal step is warm-started at the parameter extrapolation (for
tabular/log-linear policies these represent π_{t+1} exactly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax

from sim.rules.apo import FORMS, ExtrapolationSpace, extrapolate, extrapolate_log_space, implicit_reference

if TYPE_CHECKING:
    from sim.sampled.policies import PolicyModel
    from sim.sampled.problem import Problem

APO_FORMS = FORMS


class ApoSampledState(NamedTuple):
    """APO's own state in sampled mode: the last proximal output θ̂_t and log π̂_t (M, K)."""

    previous_params: Any
    previous_log_policy: jax.Array


def extrapolate_parameters(new_params: Any, old_params: Any, alpha: float | jax.Array) -> Any:
    """θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t), leaf by leaf (:func:`sim.rules.apo.extrapolate`)."""
    return jax.tree_util.tree_map(lambda new, old: extrapolate(new, old, alpha), new_params, old_params)


def sampled_space(policy: PolicyModel, problem: Problem) -> ExtrapolationSpace:
    """The extrapolation space of a sampled policy model on ``problem``."""
    return ExtrapolationSpace(extrapolate_parameters, lambda params: policy.log_probs(params, problem))


__all__ = [
    "APO_FORMS",
    "ApoSampledState",
    "extrapolate_log_space",
    "extrapolate_parameters",
    "implicit_reference",
    "sampled_space",
]
