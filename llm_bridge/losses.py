"""Sequence-level preference losses in torch, one per rule, mirroring ``sim.rules`` exactly.

Every function here is the torch twin of the JAX per-pair loss of the same name in
``sim.rules.<module>`` (same arguments, same formula, same convention; THEORY §C.12).  The inputs are
*summed response log-probabilities* log π(y|x) = Σ_tokens log π(token | prefix) of whole responses
(:func:`llm_bridge.logprobs.sequence_logprobs`), so for a language model "arm y" is a response.
``tests/test_bridge_losses.py`` evaluates both implementations on the same vectors and checks the
values and the gradients with respect to every input agree to 1e-6 (float32) and 1e-12 (float64).

=============  ============================  =============================================================
torch          JAX twin                      per-pair loss
=============  ============================  =============================================================
dpo_loss       sim.rules.dpo.dpo_loss        −log σ(βΔ), Δ = (log π − log π_R)(y_w) − (…)(y_l)
ipo_loss       sim.rules.online_ipo          (Δ − 1/(2τ))², reference π_ref (Azar et al.; no length norm)
inpo_loss      sim.rules.inpo.inpo_loss      (h_t − 1/(2η))², h_t anchored on π_ref (τ/η) and π_t ((η−τ)/η)
sppo_loss      sim.rules.sppo.sppo_loss      (log π(y) − log π_t(y) − η(P̂(y≻π_t) − ½))²
sppo_code_loss sim.rules.sppo.sppo_code_loss ½[(Δ_w − η(P̂_w − ½))² + (Δ_l − η(P̂_l − ½))²] (uclaml/SPPO, β = 1/η)
dno_loss       sim.rules.dno.dno_loss        −[σ(Δr)log σ(ηΔ) + σ(−Δr)log σ(−ηΔ)], reference π_t
nash_md_pg_…   sim.rules.nash_md             −sg[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y)
=============  ============================  =============================================================

Conventions (THEORY §1): INPO's η and DNO's η are **inverse** learning rates, SPPO's η is a learning
rate, τ is the KL(π‖π_ref) weight.  IPO here is the sequence-level (summed log-prob) loss of the IPO
paper, not TRL's per-token-averaged ``ipo`` variant (ANCHORS §1.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(policy_w, policy_l, reference_w, reference_l, beta):
    """Per-pair DPO loss −log σ(βΔ), Δ = (log π − log π_R)(y_w) − (log π − log π_R)(y_l)."""
    delta = (policy_w - reference_w) - (policy_l - reference_l)
    return -F.logsigmoid(beta * delta)


def ipo_loss(policy_w, policy_l, reference_w, reference_l, tau):
    """Per-pair IPO loss (Azar et al.): ``(Δ − 1/(2τ))²``, Δ = (log π − log π_ref)(y_w) − (…)(y_l)."""
    delta = (policy_w - reference_w) - (policy_l - reference_l)
    return (delta - 1.0 / (2.0 * tau)) ** 2


def inpo_loss(policy_w, policy_l, reference_w, reference_l, previous_w, previous_l, eta, tau):
    """Per-pair INPO loss (Eq. 8): ``(h_t − 1/(2η))²`` with

    h_t = log π(y_w)/π(y_l) − (τ/η)·log π_ref(y_w)/π_ref(y_l) − ((η−τ)/η)·log π_t(y_w)/π_t(y_l).
    ``policy_*`` = log π, ``reference_*`` = log π_ref, ``previous_*`` = log π_t.
    """
    h = (
        (policy_w - policy_l)
        - (tau / eta) * (reference_w - reference_l)
        - ((eta - tau) / eta) * (previous_w - previous_l)
    )
    return (h - 1.0 / (2.0 * eta)) ** 2


def sppo_loss(policy_y, previous_y, win_rate_y, eta):
    """Per-sample SPPO loss (paper): ``(log π(y) − log π_t(y) − η(P̂(y≻π_t) − ½))²``."""
    return (policy_y - previous_y - eta * (win_rate_y - 0.5)) ** 2


def sppo_code_loss(policy_w, previous_w, win_rate_w, policy_l, previous_l, win_rate_l, eta):
    """Official-code SPPO loss (``uclaml/SPPO`` trainer, β = 1/η): ½[(Δ_w − η(P_w − ½))² + (Δ_l − η(P_l − ½))²].

    It is the mean of :func:`sppo_loss` over the two responses of the pair.
    """
    return 0.5 * (
        (policy_w - previous_w - eta * (win_rate_w - 0.5)) ** 2
        + (policy_l - previous_l - eta * (win_rate_l - 0.5)) ** 2
    )


def dno_loss(policy_1, policy_2, previous_1, previous_2, reward_margin, eta):
    """Per-pair soft-label DNO loss; ``reward_margin`` = r_t(y₁) − r_t(y₂), reference π_t."""
    delta = (policy_1 - previous_1) - (policy_2 - previous_2)
    label = torch.sigmoid(reward_margin)
    return -(label * F.logsigmoid(eta * delta) + (1.0 - label) * F.logsigmoid(-eta * delta))


def nash_md_pg_loss(policy_y, reference_y, preference_y_over_opponent, tau):
    """Per-sample Nash-MD-PG surrogate: −sg[P(y≻y′) − ½ − τ(log π(y) − log π_ref(y))]·log π(y)."""
    advantage = (preference_y_over_opponent - 0.5 - tau * (policy_y - reference_y)).detach()
    return -advantage * policy_y


__all__ = ["dpo_loss", "ipo_loss", "inpo_loss", "sppo_loss", "sppo_code_loss", "dno_loss", "nash_md_pg_loss"]
