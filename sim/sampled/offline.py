"""Offline preference data for sampled mode (``[run] data = "offline"``, docs/theory.md §D.10).

Online (the default, ``data = "online"``): every iteration t draws N = ``pairs_per_iteration`` fresh
pairs from the current policy π_t.  Offline: **one** dataset D of ``offline_pairs`` labelled pairs is
drawn per seed, before the first update, from the reference policy,

    x ~ ρ,  y, y′ ~ π_ref(·|x) i.i.d.,  z ~ Ber(P(y ≻ y′ | x)),  (y_w, y_l) = (y, y′) if z else (y′, y),

(``lambda_p`` with π_ref in place of π_t, :func:`bandits.oracles.lambda_p_pairs`), and every
iteration minimises the rule's loss on the same D (full batch, or ``minibatch_size`` blocks of it).
By default ``offline_pairs = pairs_per_iteration × iterations`` (set by :func:`sim.spec.parse_spec`),
so an offline run and an online run of the same spec end with the same number of oracle labels; the
``queries`` column of an offline run is 0 at iteration 0 and ``offline_pairs`` from iteration 1 on
(the labels are all bought at once and never again).

Population minimisers with pairs from a fixed μ (here μ = π_ref), tabular policy, μ of full support.
Write ℓ = log π, c = the loss's target, and for INPO g(y) = ℓ(y) − (τ/η)ℓ_ref(y) − ((η−τ)/η)ℓ_t(y) so
that h_t(π, y, y′) = g(y) − g(y′) (for IPO: g = ℓ − ℓ_ref, c = 1/(2τ); for INPO c = 1/(2η)).

1. The label only decides the orientation: with I = z, the loss on the unordered draw (y, y′) is
   ((2I − 1)·h(y, y′) − c)² = h² − 2c(2I − 1)h + c², and E[2I − 1 | y, y′] = 2P(y ≻ y′) − 1, so
   up to a constant the population loss is
   ``E_{y,y′∼μ}[(h(y, y′) − 2c·(P(y ≻ y′) − ½))²]`` (the Prop. 6 trick of INPO, docs/theory.md §A.4/§C.5).
2. This is least squares of the pairwise differences g(y) − g(y′) onto 2c(P − ½) with weights
   μ(y)μ(y′).  Its normal equation at arm k (μ(k) > 0), using the antisymmetry of both sides, is
   Σ_{y′} μ(y′)[(g(k) − g(y′)) − 2c(P(k ≻ y′) − ½)] = 0, i.e.
   ``g(k) = 2c·(Pμ)(k) + const`` (Σ_{y′}μ(y′) = 1; the constant is Σ μ g − c).
3. Hence the population argmin is, on Supp(μ) and after normalisation,

   * **IPO** (rule ``online_ipo``, c = 1/(2τ)):  ``log π = log π_ref + Pμ/τ − norm = BR_τ(μ)``;
   * **INPO** (c = 1/(2η)):  ``log π = (1 − τ/η)·log π_t + (τ/η)·log π_ref + Pμ/η − norm``, the
     INPO / OMD step of Eq. (5) with the *data distribution* μ in place of π_t inside P·(·)
     (with μ = π_t it is Eq. (5): Prop. 6 is the special case).

   With μ = π_ref the IPO minimiser does not depend on t (each offline iteration solves the same
   problem), and offline INPO iterates ℓ_{t+1} = (1 − τ/η)ℓ_t + (τ/η)(ℓ_ref + Pπ_ref/τ) − norm, a
   contraction (η > τ) onto the same fixed point BR_τ(π_ref).  That is not π*_τ in general:
   π*_τ = BR_τ(π*_τ) ∝ π_ref·exp(Pπ*_τ/τ), so BR_τ(π_ref) = π*_τ iff P(π_ref − π*_τ) is a constant
   vector (e.g. π_ref = π*_τ), which fails for a generic non-transitive game; then its duality gap
   2τ·KL(BR_τ(π_ref) ‖ BR_τ(BR_τ(π_ref))) is > 0 (docs/theory.md §C.5: "with data from a fixed μ the
   population solution is the best response to μ").  The same holds on the empirical
   dataset: the tabular offline INPO iterates converge to the empirical offline IPO minimiser.

These are the ``distance_to_exact`` counterparts of an offline run (:func:`offline_exact_proximal`).
``tests/test_sampled_offline.py`` checks step 3 against a direct numerical minimisation of the
population loss and the N^{-1/2} approach of the sampled minimiser to it.

Offline data is supported for the rules whose definition has an ``offline`` counterpart
(:func:`offline_rules`) with ``pair_scheme = "lambda_p"`` only: SPPO
and DNO regress on win rates against π_t, which pairs from π_ref do not estimate; Nash-MD-PG samples
against the geometric mixture of π_t; APO's momentum is defined across fresh proximal steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from bandits.oracles import make_pairs
from sim.game import normalize
from sim.rules import RULES, rule_info

if TYPE_CHECKING:
    from bandits.oracles import PairBatch
    from sim.sampled.problem import Problem

#: Values of ``[run] data``.
DATA_SOURCES = ("online", "offline")
#: Pair schemes an offline dataset can be drawn with.
OFFLINE_SCHEMES = ("lambda_p",)
#: Folded into the seed's initial key to draw its offline dataset (independent of the policy init).
OFFLINE_KEY = 10_003


def check_data_settings(settings: Any) -> None:
    """Validate ``data`` / ``offline_pairs`` / ``pair_scheme`` of a :class:`sim.spec.RunSpec`."""
    data = settings.data
    if data not in DATA_SOURCES:
        raise PrefsimError(f"run.data: expected one of {', '.join(DATA_SOURCES)}, got {data!r}.")
    size = settings.offline_pairs
    if data == "online":
        if size is not None:
            raise PrefsimError(
                'run.offline_pairs: the size of an offline dataset applies only to data = "offline"; '
                'remove it, or set data = "offline".'
            )
        return
    if size is None:
        raise PrefsimError(
            'run.offline_pairs: data = "offline" needs the dataset size (a spec parsed by sim.spec.parse_spec '
            "sets it to pairs_per_iteration × iterations); set it explicitly when building a RunSpec by hand."
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise PrefsimError(
            f"run.offline_pairs: expected an integer ≥ 1 (labelled pairs in the offline dataset), got {size!r}."
        )
    if settings.pair_scheme not in OFFLINE_SCHEMES:
        raise PrefsimError(
            f'run.pair_scheme: data = "offline" draws its dataset as i.i.d. pairs from π_ref with one oracle '
            f"label each (lambda_p); pair_scheme {settings.pair_scheme!r} is not supported offline."
        )


def training_pairs(settings: Any) -> int:
    """Pairs the loss of one iteration is computed on: ``offline_pairs`` offline, else N."""
    return settings.offline_pairs if settings.data == "offline" else settings.pairs_per_iteration


def offline_rules() -> tuple:
    """Rules sampled mode trains on offline data (:attr:`~sim.rules.definition.RuleDefinition.trains_offline`:
    a closed-form population minimiser on pairs from a fixed μ, module docstring), read from the registry."""
    return tuple(name for name, definition in RULES.items() if definition.trains_offline)


def check_offline_rule(rule_name: str, where: str = "rule") -> None:
    """Raise a :class:`PrefsimError` when ``rule_name`` cannot train on offline data."""
    if not rule_info(rule_name).trains_offline:
        raise PrefsimError(
            f'{where}: run.data = "offline" supports rules {", ".join(offline_rules())} only (their loss has a '
            f"known population minimiser on pairs from π_ref: BR_τ(π_ref), resp. the INPO step against π_ref); "
            f"rule {rule_name} needs pairs or win rates drawn from the current policy π_t (sppo, dno, nash_md) "
            f'or fresh proximal steps (apo), or has no sampled loss; use data = "online" for it.'
        )


def offline_dataset(key: jax.Array, problem: Problem, settings: Any) -> PairBatch:
    """The seed's offline :class:`~bandits.oracles.PairBatch`: ``offline_pairs`` λ_p pairs from π_ref."""
    batch, _ = make_pairs(
        "lambda_p",
        key,
        problem.log_reference,
        problem.preference,
        problem.rewards,
        problem.context_probs,
        settings.offline_pairs,
    )
    return batch


def dataset_queries(settings: Any) -> int:
    """Oracle queries that buy the offline dataset (one per λ_p pair)."""
    return int(settings.offline_pairs)


def offline_exact_proximal(
    rule_name: str, parameters: dict, problem: Problem, log_policy: jax.Array, step: int | jax.Array
) -> jax.Array:
    """Population minimiser of the rule's loss on pairs from π_ref (module docstring, step 3), (M, K).

    The rule definition's ``offline`` counterpart (:mod:`sim.rules.online_ipo`: log BR_τ(π_ref);
    :mod:`sim.rules.inpo`: the INPO step with Pπ_ref in place of Pπ_t), normalised; ``log_policy`` =
    log π_t (M, K).
    """
    check_offline_rule(rule_name)
    reference_rates = jnp.einsum("mij,mj->mi", problem.preference, jnp.exp(problem.log_reference))
    counterpart = rule_info(rule_name).offline
    return normalize(counterpart(parameters, log_policy, problem.log_reference, reference_rates, step))
