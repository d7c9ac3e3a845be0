"""APO (THEORY §B.2, Eq. 3.6) in sampled mode, three ways.

After the proximal step of iteration t gives parameters θ̂_{t+1} (policy π̂_{t+1}), APO extrapolates
between consecutive proximal outputs with weight α_t (``sim.rules.apo.extrapolation_weight``):

* ``parameters`` — θ_{t+1} = θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t) (ExPO-style weight arithmetic; **what APO
  did**, per the rebuttal).  The next iteration samples from and uses as reference π_{θ_{t+1}}.
  Exact (equal to the log-space form) for tabular and log-linear policies, where log π is affine in
  the parameters up to the normaliser; a first-order approximation for the MLP.
* ``log_space`` — log π_{t+1} = (1+α)·log π̂_{t+1} − α·log π̂_t − log Z, computed on the K-vector of
  log-probabilities (needs a finite action set); the next iteration samples from and uses as
  reference this exact distribution.  The next proximal step is warm-started at the parameter
  extrapolation (for tabular/log-linear policies these represent π_{t+1} exactly).
* ``implicit_reference`` — keep the model at θ̂_{t+1}, sample the next pairs from π̂_{t+1}, and use
  the **unnormalised** reference log-probability (1+α)·log π̂_{t+1}(y) − α·log π̂_t(y) in the loss.
  Only pairwise losses are invariant to the missing normaliser, so this form accepts the ``dpo`` and
  ``inpo`` bases only.

**LLM bridge:** a sequence model cannot normalise π̂_{t+1}^{1+α}π̂_t^{−α} over all sequences, so
``log_space`` is for finite action sets only.  The bridge can use ``parameters`` (weight arithmetic
on two checkpoints; what APO ran) and ``implicit_reference`` (two checkpoints' sequence
log-probabilities, no weight surgery; it samples from π̂_{t+1} rather than the extrapolated policy).
"""

from __future__ import annotations

import jax

from bandits.errors import PrefsimError
from sim.game import normalize

APO_FORMS = ("parameters", "log_space", "implicit_reference")
IMPLICIT_BASES = ("dpo", "inpo")


def extrapolate_parameters(new_params, old_params, alpha):
    """θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t), leaf by leaf."""
    return jax.tree_util.tree_map(lambda new, old: new + alpha * (new - old), new_params, old_params)


def extrapolate_log_space(new_log_policy, old_log_policy, alpha):
    """Eq. (3.6): normalise((1+α)·log π̂_{t+1} − α·log π̂_t) along the last axis."""
    return normalize((1.0 + alpha) * new_log_policy - alpha * old_log_policy)


def implicit_reference(new_log_policy, old_log_policy, alpha):
    """The unnormalised reference (1+α)·log π̂_{t+1} − α·log π̂_t (pairwise losses only)."""
    return (1.0 + alpha) * new_log_policy - alpha * old_log_policy


def check_form(form: str, base: str) -> None:
    """Validate an APO form against the base rule."""
    if form not in APO_FORMS:
        raise PrefsimError(f"run.apo_form: unknown form {form!r}; choose one of {', '.join(APO_FORMS)}.")
    if form == "implicit_reference" and base not in IMPLICIT_BASES:
        raise PrefsimError(
            f"run.apo_form: implicit_reference drops the normaliser, which only pairwise losses ignore; "
            f"apo's base must be one of {', '.join(IMPLICIT_BASES)}, got {base!r}."
        )


def apo_next(
    form: str, policy, problem, proximal_params, proximal_log_policy, previous_params, previous_log_policy, alpha
):
    """``(params, log_policy, reference)`` for the next iteration after a proximal step.

    ``params`` warm-starts the next proximal step, ``log_policy`` is the distribution the next pairs
    are drawn from, ``reference`` is the π_t the next loss uses.
    """
    if form == "implicit_reference":
        return proximal_params, proximal_log_policy, implicit_reference(proximal_log_policy, previous_log_policy, alpha)
    params = extrapolate_parameters(proximal_params, previous_params, alpha)
    if form == "parameters":
        log_policy = policy.log_probs(params, problem)
    else:
        log_policy = extrapolate_log_space(proximal_log_policy, previous_log_policy, alpha)
    return params, log_policy, log_policy
