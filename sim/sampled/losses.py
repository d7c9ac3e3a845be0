"""Each rule's loss on one iteration's pairs, read from the rule's definition in :mod:`sim.rules`.

The per-pair loss is the rule module's ``DEFINITION.loss``, written once and evaluated here with
JAX's operations (:data:`sim.rules.definition.JAX_OPS`) and by the LLM bridge with torch's.  This
module only gathers log-probabilities at the pairs' (context, response) indices into the pair batch
the loss reads (:data:`sim.rules.definition.BATCH_KEYS`) and takes the weighted mean
Σ w·loss / max(Σ w, 1) (w = 0 drops a pair: the tournament filter).  A wrapper (APO) trains with its
base's loss; its anchor π_t is the extrapolated (or implicit) reference the engine hands over.

Population minimisers (tabular, full support, ``lambda_p`` pairs; ``exact_win_rates`` for DNO):
INPO → Eq. (5); DPO (BT) → π_R·exp(r/β); online IPO → BR_τ(π_t); SPPO → the ``normaliser =
"paper"`` update (the η/2 target solved on the simplex); DNO → π_t·exp(Pπ_t/η).  Nash-MD-PG is a
policy-gradient step, not an argmin: its exact counterpart (Nash-MD's mirror step) is matched only in
the small-step limit, so its ``distance_to_exact`` does not vanish as N grows.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.rules import RULES, base_of, base_parameters, rule_info
from sim.rules.definition import JAX_OPS


def sampled_rules() -> tuple:
    """The rules that run in sampled mode (read from the registry)."""
    return tuple(name for name, definition in RULES.items() if "sampled" in definition.modes)


def check_sampled_rule(rule_name: str, parameters: dict, pair_scheme: str, where: str = "rule") -> None:
    """Raise a :class:`PrefsimError` when ``rule_name`` has no sampled loss or its data needs are not met."""
    if "sampled" not in rule_info(rule_name).modes:
        raise PrefsimError(
            f"{where}: rule {rule_name} has no sampled loss; sampled mode supports {', '.join(sampled_rules())}."
        )
    name = base_of(rule_name, parameters)
    data = rule_info(name).data
    if rule_info(name).loss is None:
        raise PrefsimError(f"{where}: {rule_name}'s base {name} has no sampled loss.")
    override = data.scheme(base_parameters(rule_name, parameters)) if data.scheme is not None else None
    # a parameter of the rule may fix its pairs (EGPO's estimator = "uniform"): the run's pair_scheme is then
    # not read, so it must stay at the rule's own (a scheme given for it would be silently replaced)
    if data.schemes and pair_scheme not in data.schemes and pair_scheme != override:
        raise PrefsimError(
            f"{where}: rule {name} samples its own pairs (against its opponent, or with its estimator); leave "
            f"pair_scheme at {' or '.join(repr(s) for s in data.schemes)}, got {pair_scheme!r}."
        )
    if override is None:
        reason = data.unreadable(pair_scheme, "sampled")
        if reason is not None:
            raise PrefsimError(f"{where}: rule {name} {reason}.")


def _gather(log_probs, contexts, responses):
    return log_probs[contexts, responses]


def pair_loss(rule_name: str, parameters: dict, pair_scheme: str = "lambda_p") -> tuple[Callable, Callable]:
    """The rule's loss split into ``(prepare, evaluate)`` so constants are gathered once per iteration.

    ``prepare(reference, log_reference, batch, step) -> terms`` gathers everything that does not
    depend on the trained policy (log π_t and log π_ref at the pairs, win rates, weights, t) into a
    dict of arrays (per-pair arrays of shape (N,), scalars of shape ()); ``evaluate(log_policy,
    terms)`` gathers the trained log π (M, K) at the pairs and returns the weighted mean of the rule
    definition's per-pair loss.  Slicing every (N,) entry of ``terms`` by the same rows gives the loss
    of a minibatch.
    """
    check_sampled_rule(rule_name, parameters, pair_scheme)
    name = base_of(rule_name, parameters)
    definition = rule_info(name)
    loss = definition.loss
    p = base_parameters(rule_name, parameters)
    both_from_policy = 0.0 if definition.data.opponent is not None else 1.0

    def prepare(reference, log_reference, batch, step):
        c, w, l = batch.context, batch.first, batch.second
        return {
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
            "step": step,
            "both_from_policy": jnp.asarray(both_from_policy, reference.dtype),
        }

    def evaluate(log_policy, t):
        pairs = dict(
            t,
            policy_w=_gather(log_policy, t["context"], t["first"]),
            policy_l=_gather(log_policy, t["context"], t["second"]),
        )
        per_pair = loss(JAX_OPS, pairs, p)
        weight = t["weight"]
        return jnp.sum(weight * per_pair) / jnp.maximum(jnp.sum(weight), 1.0)

    return prepare, evaluate


def batch_loss(rule_name: str, parameters: dict, pair_scheme: str = "lambda_p") -> Callable:
    """The rule's mean loss on a batch.

    Returns ``loss(log_policy, reference, log_reference, batch, step)`` where ``log_policy`` is the
    trained policy's log π (M, K) (differentiated), ``reference`` the iteration's log π_t (M, K)
    (constant), ``log_reference`` log π_ref (M, K), ``batch`` a :class:`bandits.oracles.PairBatch`,
    and ``step`` the iteration index t (for step-dependent parameters).
    """
    prepare, evaluate = pair_loss(rule_name, parameters, pair_scheme)

    def loss(log_policy, reference, log_reference, batch, step):
        return evaluate(log_policy, prepare(reference, log_reference, batch, step))

    return loss
