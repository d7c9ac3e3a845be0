"""The rules' per-pair losses evaluated on torch tensors: the functions of :mod:`sim.rules`, not copies.

Each loss is written once, in its rule module (``sim.rules.<module>``), against the small operation
table :class:`sim.rules.definition.LossOps`; here it is bound to torch's operations
(:data:`llm_bridge.ops.TORCH_OPS`).  The inputs are *summed response log-probabilities*
log π(y|x) = Σ_tokens log π(token | prefix) of whole responses
(:func:`llm_bridge.logprobs.sequence_logprobs`), so for a language model "arm y" is a response.
``tests/test_bridge_losses.py`` evaluates both on the same vectors (values and gradients).

==============  =============================  ============================================================
name            definition                     per-pair loss
==============  =============================  ============================================================
dpo_loss        sim.rules.dpo.dpo_loss         −log σ(βΔ), Δ = (log π − log π_R)(y_w) − (…)(y_l)
ipo_loss        sim.rules.online_ipo           (Δ − 1/(2τ))², reference π_ref (Azar et al.; no length norm)
inpo_loss       sim.rules.inpo.inpo_loss       (h_t − 1/(2η))², h_t anchored on π_ref (τ/η) and π_t ((η−τ)/η)
sppo_loss       sim.rules.sppo.sppo_loss       (log π(y) − log π_t(y) − η(P̂(y≻π_t) − ½))²
sppo_code_loss  sim.rules.sppo.sppo_code_loss  mean of sppo_loss over the pair (uclaml/SPPO, β = 1/η)
dno_loss        sim.rules.dno.dno_loss         −[σ(Δr)log σ(ηΔ) + σ(−Δr)log σ(−ηΔ)], reference π_t
nash_md_pg_loss sim.rules.nash_md              −sg[P(y≻y′) − ½ − τ(log π − log π_ref)(y)]·log π(y)
==============  =============================  ============================================================

Conventions (docs/theory.md §1): INPO's η and DNO's η are **inverse** learning rates, SPPO's η is a
learning rate, τ is the KL(π‖π_ref) weight.  IPO here is the sequence-level (summed log-prob) loss of
the IPO paper, not TRL's per-token-averaged ``ipo`` variant.
"""

from __future__ import annotations

import functools

from llm_bridge.ops import TORCH_OPS
from sim.rules.dno import dno_loss as _dno_loss
from sim.rules.dpo import dpo_loss as _dpo_loss
from sim.rules.inpo import inpo_loss
from sim.rules.nash_md import nash_md_pg_loss as _nash_md_pg_loss
from sim.rules.online_ipo import ipo_loss
from sim.rules.sppo import sppo_code_loss, sppo_loss

dpo_loss = functools.partial(_dpo_loss, ops=TORCH_OPS)
dno_loss = functools.partial(_dno_loss, ops=TORCH_OPS)
nash_md_pg_loss = functools.partial(_nash_md_pg_loss, ops=TORCH_OPS)

__all__ = ["dpo_loss", "ipo_loss", "inpo_loss", "sppo_loss", "sppo_code_loss", "dno_loss", "nash_md_pg_loss"]
