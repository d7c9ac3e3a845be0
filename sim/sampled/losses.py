"""Each rule's loss on one iteration's pairs, built from the per-pair losses in :mod:`sim.rules`.

One definition per rule lives in its rule module (``inpo_loss``, ``dpo_loss``, ``ipo_loss``,
``sppo_loss``, ``sppo_code_loss``, ``dno_loss``); this module only gathers log-probabilities at the
pairs' (context, response) indices and takes the weighted mean Σ w·loss / max(Σ w, 1) (w = 0 drops a
pair: the tournament filter).  Conventions and constants are the papers' (THEORY §C.12):

=============  ================================================================================
rule           loss on a pair (first = winner/chosen y_w, second = loser/rejected y_l)
=============  ================================================================================
``inpo``       (h_t(π, y_w, y_l) − 1/(2η))², anchors π_ref and π_t (INPO Eq. 8, THEORY §A.4);
               η_t = τ(t+2)/2 under ``schedule = "theorem4"``
``dpo``        −log σ(β[(log π − log π_R)(y_w) − (log π − log π_R)(y_l)]), π_R = π_t
               (``dpo_reference = "previous"``, iterative DPO / APO) or π_ref (``"reference"``)
``online_ipo`` (Δ − 1/(2τ))², Δ = (log π − log π_ref)(y_w) − (…)(y_l), pairs from π_t (online IPO)
``sppo``       per response: (log π(y) − log π_t(y) − η(P̂(y ≻ π_t) − ½))², averaged over both
               responses of each pair (paper form, ``sppo_loss``); with ``pair_scheme =
               "sppo_win_rate"`` the official code's ``sppo_code_loss`` on (chosen, rejected) —
               numerically the same expression, the variants differ by their data
``dno``        soft-label BT, −[σ(Δr̂)·log σ(ηΔ) + σ(−Δr̂)·log σ(−ηΔ)], reference π_t,
               Δr̂ = P̂(y₁ ≻ π_t) − P̂(y₂ ≻ π_t)
``nash_md``    Nash-MD-PG surrogate on y ~ π_t, y′ ~ π_t^μ (geometric mixture, ητ): per sample
               −sg[z − ½ − τ(log π − log π_ref)(y)]·log π(y), z ~ Ber(P(y ≻ y′)) (``nash_md_pg_loss``).
               A policy-gradient step, not an argmin: its exact counterpart (Nash-MD's mirror step
               with learning rate η) is matched only in the small-step limit, so its
               ``distance_to_exact`` does not vanish as N grows
``apo``        the base rule's loss (dpo / sppo / inpo) with the APO reference π_t
=============  ================================================================================

Population minimisers (tabular, full support, ``lambda_p`` pairs; ``exact_win_rates`` for DNO):
INPO → Eq. (5); DPO (BT) → π_R·exp(r/β); online IPO → BR_τ(π_t); SPPO → the ``normaliser =
"paper"`` update (the η/2 target solved on the simplex); DNO → π_t·exp(Pπ_t/η).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from bandits.errors import PrefsimError
from bandits.oracles import WIN_RATE_SCHEMES
from sim.rules.dno import dno_loss
from sim.rules.dpo import dpo_loss
from sim.rules.inpo import inpo_eta, inpo_loss
from sim.rules.nash_md import nash_md_pg_loss
from sim.rules.online_ipo import ipo_loss
from sim.rules.sppo import sppo_code_loss, sppo_loss

#: Rules that have a sampled loss.
SAMPLED_RULES = ("inpo", "dpo", "online_ipo", "sppo", "dno", "nash_md", "apo")
#: Bases APO can wrap in sampled mode.
APO_BASES = ("dpo", "sppo", "inpo")
DPO_REFERENCES = ("previous", "reference")


def base_rule(rule_name: str, parameters: dict) -> tuple[str, dict]:
    """``(name, parameters)`` of the proximal step: the rule itself, or APO's base with its parameters."""
    if rule_name != "apo":
        return rule_name, parameters
    base = parameters.get("base", "dpo")
    base_parameters = {}
    for key, value in parameters.items():
        if key in ("base", "alpha", "schedule"):
            continue
        base_parameters["schedule" if key == "base_schedule" else key] = value
    return base, base_parameters


def check_sampled_rule(rule_name: str, parameters: dict, pair_scheme: str, where: str = "rule") -> None:
    """Raise a :class:`PrefsimError` when ``rule_name`` has no sampled loss or needs win rates it lacks."""
    if rule_name not in SAMPLED_RULES:
        raise PrefsimError(
            f"{where}: rule {rule_name} has no sampled loss; sampled mode supports {', '.join(SAMPLED_RULES)}."
        )
    name, _ = base_rule(rule_name, parameters)
    if rule_name == "apo" and name not in APO_BASES:
        raise PrefsimError(f"{where}: apo's base in sampled mode must be one of {', '.join(APO_BASES)}, got {name!r}.")
    if name == "nash_md" and pair_scheme != "lambda_p":
        raise PrefsimError(
            f"{where}: rule nash_md samples its own pairs (y ~ π_t against the geometric mixture); "
            f'leave pair_scheme at "lambda_p", got {pair_scheme!r}.'
        )
    if name in ("sppo", "dno") and pair_scheme not in WIN_RATE_SCHEMES:
        raise PrefsimError(
            f"{where}: rule {name} needs win-rate estimates, which pair_scheme {pair_scheme!r} does not give; "
            f"use one of {', '.join(WIN_RATE_SCHEMES)}."
        )


def _gather(log_probs, contexts, responses):
    return log_probs[contexts, responses]


def pair_loss(rule_name: str, parameters: dict, pair_scheme: str = "lambda_p", dpo_reference: str = "previous"):
    """The rule's loss split into ``(prepare, evaluate)`` so constants are gathered once per iteration.

    ``prepare(reference, log_reference, batch, step) -> terms`` gathers everything that does not
    depend on the trained policy (log π_t and log π_ref at the pairs, win rates, weights, η_t) into a
    dict of arrays (per-pair arrays of shape (N,), scalars of shape ()); ``evaluate(log_policy,
    terms)`` gathers the trained log π (M, K) at the pairs and returns the weighted mean of the rule
    module's per-pair loss.  Slicing every (N,) entry of ``terms`` by the same rows gives the loss of
    a minibatch.
    """
    check_sampled_rule(rule_name, parameters, pair_scheme)
    if dpo_reference not in DPO_REFERENCES:
        raise PrefsimError(f"run.dpo_reference: expected one of {', '.join(DPO_REFERENCES)}, got {dpo_reference!r}.")
    name, p = base_rule(rule_name, parameters)

    def prepare(reference, log_reference, batch, step):
        c, w, l = batch.context, batch.first, batch.second
        terms = {
            "context": c,
            "first": w,
            "second": l,
            "previous_w": _gather(reference, c, w),
            "previous_l": _gather(reference, c, l),
            "reference_w": _gather(log_reference, c, w),
            "reference_l": _gather(log_reference, c, l),
            "win_rate_w": batch.first_win_rate,
            "win_rate_l": batch.second_win_rate,
            "weight": batch.weight,
        }
        if name == "inpo":
            terms["eta"] = jnp.asarray(
                inpo_eta(p.get("eta"), p["tau"], p.get("schedule", "constant"), step), reference.dtype
            )
        return terms

    def evaluate(log_policy, t):
        pol_w = _gather(log_policy, t["context"], t["first"])
        pol_l = _gather(log_policy, t["context"], t["second"])
        if name == "inpo":
            per_pair = inpo_loss(
                pol_w, pol_l, t["reference_w"], t["reference_l"], t["previous_w"], t["previous_l"], t["eta"], p["tau"]
            )
        elif name == "dpo":
            if dpo_reference == "previous":
                per_pair = dpo_loss(pol_w, pol_l, t["previous_w"], t["previous_l"], p["beta"])
            else:
                per_pair = dpo_loss(pol_w, pol_l, t["reference_w"], t["reference_l"], p["beta"])
        elif name == "online_ipo":
            per_pair = ipo_loss(pol_w, pol_l, t["reference_w"], t["reference_l"], p["tau"])
        elif name == "sppo":
            if pair_scheme == "sppo_win_rate":
                per_pair = sppo_code_loss(
                    pol_w, t["previous_w"], t["win_rate_w"], pol_l, t["previous_l"], t["win_rate_l"], p["eta"]
                )
            else:
                per_pair = 0.5 * (
                    sppo_loss(pol_w, t["previous_w"], t["win_rate_w"], p["eta"])
                    + sppo_loss(pol_l, t["previous_l"], t["win_rate_l"], p["eta"])
                )
        elif name == "nash_md":
            per_pair = nash_md_pg_loss(pol_w, t["reference_w"], t["win_rate_w"], p["tau"])
        else:  # dno
            per_pair = dno_loss(
                pol_w, pol_l, t["previous_w"], t["previous_l"], t["win_rate_w"] - t["win_rate_l"], p["eta"]
            )
        weight = t["weight"]
        return jnp.sum(weight * per_pair) / jnp.maximum(jnp.sum(weight), 1.0)

    return prepare, evaluate


def batch_loss(
    rule_name: str, parameters: dict, pair_scheme: str = "lambda_p", dpo_reference: str = "previous"
) -> Callable:
    """The rule's mean loss on a batch.

    Returns ``loss(log_policy, reference, log_reference, batch, step)`` where ``log_policy`` is the
    trained policy's log π (M, K) (differentiated), ``reference`` the iteration's log π_t (M, K)
    (constant), ``log_reference`` log π_ref (M, K), ``batch`` a :class:`bandits.oracles.PairBatch`,
    and ``step`` the iteration index t (for step-dependent parameters).
    """
    prepare, evaluate = pair_loss(rule_name, parameters, pair_scheme, dpo_reference)

    def loss(log_policy, reference, log_reference, batch, step):
        return evaluate(log_policy, prepare(reference, log_reference, batch, step))

    return loss
