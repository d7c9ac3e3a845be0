"""Iterative DPO as a proximal-point step (Bradley–Terry), docs/theory.md §B.2 and §C.2.

Reference = the current policy π_t (APO's reading).  With the exact reward the DPO population
minimiser on pairs with full support is the KL-proximal step

    log π_{t+1} = log π_t + r/β − log Z,   so   π_T = softmax(log π_ref + T·r/β).

Needs a Bradley–Terry game (``rewards``).  Sampled loss: −log σ(β[(log π − log π_R)(y_w) − (…)(y_l)]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

from bandits.errors import PrefsimError
from sim.rules.base import ExactRule, advance, initial_state, require_positive
from sim.rules.definition import JAX_OPS, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import APO_SUBOPTIMALITY, APO_TV

ANCHORS = ("previous", "reference")


def dpo(beta: float | jax.Array = 1.0, anchor: str = "previous") -> ExactRule:
    """Exact iterative DPO.  Args: beta (KL coefficient > 0); anchor ``previous`` (π_R = π_t, the
    proximal-point step) or ``reference`` (π_R = π_ref fixed: log π_{t+1} = log π_ref + r/β)."""
    require_positive("dpo", "beta", beta)
    if anchor not in ANCHORS:
        raise PrefsimError(f"rule dpo: anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}.")

    def update(state, game):
        base = state.log_policy if anchor == "previous" else game.log_reference
        return advance(state, base + game.rewards / beta)

    return ExactRule("dpo", initial_state, update)


def dpo_loss(
    policy_w: LossArray,
    policy_l: LossArray,
    reference_w: LossArray,
    reference_l: LossArray,
    beta: float | jax.Array,
    ops: LossOps = JAX_OPS,
) -> LossArray:
    """Per-pair DPO loss −log σ(βΔ), Δ = (log π − log π_R)(y_w) − (log π − log π_R)(y_l)."""
    delta = (policy_w - reference_w) - (policy_l - reference_l)
    return -ops.log_sigmoid(beta * delta)


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """DPO's loss on a pair batch, anchored at π_t (``previous``) or π_ref (``reference``)."""
    anchor = "previous" if parameters.get("anchor", "previous") == "previous" else "reference"
    return dpo_loss(
        batch["policy_w"], batch["policy_l"], batch[f"{anchor}_w"], batch[f"{anchor}_l"], parameters["beta"], ops
    )


DEFINITION = RuleDefinition(
    name="dpo",
    paper="Rafailov et al., DPO, NeurIPS 2023; iterative DPO with reference π_t read as a proximal-point step "
    "(He, Yuan & Gu, APO, arXiv 2410.06293, Eq. 3.2; docs/theory.md §B.2, §C.2)",
    summary="proximal-point step π_{t+1} ∝ π_t exp(r/β) on a Bradley–Terry game",
    update_formula="ℓ_t + r/β (proximal step, reference π_t; Bradley–Terry games)",
    loss_formula="−log σ(βΔ)",
    anchors='π_t (`anchor = "previous"`, proximal point) or π_ref (`"reference"`)',
    parameters=(
        Parameter(
            "beta", "KL coefficient β of the proximal step (TRL's default is 0.1)", 1.0, constraint="> 0", symbol="β"
        ),
        Parameter(
            "anchor",
            "previous: π_R = π_t (iterative DPO, the proximal-point reading); reference: π_R = π_ref fixed",
            "previous",
            ANCHORS,
        ),
    ),
    exact=dpo,
    loss=pair_loss,
    data=PairData(),
    bounds=(APO_SUBOPTIMALITY, APO_TV),
    proximal=True,
    needs_rewards=True,
    renamed={"reference": ("anchor", {"previous": "previous", "initial": "reference"})},
)
