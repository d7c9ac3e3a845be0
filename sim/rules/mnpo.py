"""MNPO — Multiplayer Nash Preference Optimization, time-dependent form (Wu et al., arXiv 2509.23102, §3.2).

Convention (as :mod:`sim.rules.inpo`): **η is the inverse learning rate**, τ the KL(π‖π_ref) weight.  The
player faces a population of opponents, its own last m iterates π_t, π_{t−1}, …, π_{t−m+1} with weights
λ_j ∝ γ^j (j = 0 the current iterate; γ = ``decay``, 1 = uniform as in the authors' released trainer;
iterates before π_0 do not exist, so at t < m − 1 the weights are renormalised over j ≤ t).  The exact
update is INPO's step with its proximal centre π_t replaced by the population's geometric mixture
(docs/theory.md §F.4):

    A_t = Σ_j λ_j·log π_{t−j},
    log π_{t+1} = (1 − τ/η)·A_t + (τ/η)·log π_ref + (Pπ_t)/η − log Z_t.

m = 1 (or γ = 0) is INPO exactly.  Needs η > τ, like INPO.

With ``reference_every = M`` (:mod:`sim.rules.reference`) π_ref moves to π_t at every advance and the rule
restarts there, population included: at t = kM + s the population is π_t, …, π_{max(t−m+1, kM)}, the
weights renormalised over j ≤ s (as at t = s from π_0).  A_t is the proximal centre (INPO's π_t), π_ref the
regulariser's anchor; whatever the weights, the fixed point toward a reference ρ is the regularised Nash
toward ρ, so the advancing rule is COMAL's outer loop with MNPO as inner solver (m = 1: ``comal``).

Sampled loss (the paper's TD-MNPO squared loss; pairs y, y′ ~ π_t ordered by the oracle):

    h = log π(y_w)/π(y_l) − (τ/η)·log π_ref(y_w)/π_ref(y_l) − (1 − τ/η)·[A_t(y_w) − A_t(y_l)],
    loss = (h − 1/(2η))²,

which is INPO's loss with the anchor log-probabilities ``previous_w/l`` = A_t(y): every engine supplies
them from the log-probabilities of the last m iterates through :data:`HISTORY`
(:class:`sim.rules.definition.HistoryAnchor`).  Its population minimiser is the exact update above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from sim.rules import inpo
from sim.rules.base import (
    ExactRule,
    advance,
    current_win_rates,
    initial_state,
    is_concrete,
    mirror_weights,
    require_positive,
)
from sim.rules.definition import GAME_TAU, HistoryAnchor, LossArray, LossOps, PairData, Parameter, RuleDefinition
from sim.theorems import ADVANCEMENT_MONOTONE

#: Default number of iterates in the opponent population (the authors' runs: ``max_history_t = 2``).
DEFAULT_HISTORY = 2


class MnpoState(NamedTuple):
    """MNPO's own state in exact mode: ``past`` (m − 1, K) = log π_{t−1}, …, log π_{t−m+1} (rows older than
    the population's first iterate hold it; their weight is 0) and ``age``, the updates since the population
    started: t, or t mod M under reference advancement, which restarts the rule (:func:`init` sets 0)."""

    past: jax.Array
    age: jax.Array


def check_history(history: Any, where: str = "rule mnpo") -> int:
    """The population size m as an int; a clear error unless it is a concrete integer ≥ 1."""
    if not is_concrete(history):
        raise PrefsimError(
            f"{where}: history sets the size of the stored population (an array shape), so it cannot be swept; "
            "run one spec per value."
        )
    value = float(history)
    if isinstance(history, bool) or not (value >= 1 and value.is_integer()):  # False for inf and NaN
        raise PrefsimError(f"{where}: history must be an integer ≥ 1 (iterates in the population), got {history!r}.")
    return int(value)


def check_decay(decay: Any, where: str = "rule mnpo") -> None:
    """Raise unless a concrete ``decay`` lies in [0, 1]."""
    if is_concrete(decay):
        value = float(decay)
        if not (0.0 <= value <= 1.0):
            raise PrefsimError(f"{where}: decay must lie in [0, 1] (λ_j ∝ decay^j), got {value:g}.")


def mixture_weights(history: int, decay: Any, step: Any) -> list:
    """λ_0, …, λ_{m−1} for the update t → t+1 (``step`` = t): γ^j for j ≤ t, else 0, normalised.

    Plain arithmetic, so ``step`` and ``decay`` may be Python numbers, JAX tracers or torch scalars.
    """
    raw = [(decay**j) * (step >= j) for j in range(history)]
    total = sum(raw[1:], raw[0])
    return [weight / total for weight in raw]


def history_anchor(log_probs: Sequence[LossArray], step: Any, parameters: Mapping[str, Any]) -> LossArray:
    """A_t = Σ_j λ_j·log π_{t−j} from ``log_probs`` = [log π_t, log π_{t−1}, …] (any library's arrays);
    ``step``: the updates since the population started (t; under ``reference_every`` t mod M)."""
    weights = mixture_weights(len(log_probs), parameters["decay"], step)
    terms = [weight * values for weight, values in zip(weights, log_probs, strict=True)]
    return sum(terms[1:], terms[0])


def history_length(parameters: Mapping[str, Any]) -> int:
    """m: how many iterates (π_t included) the anchor mixes."""
    return check_history(parameters["history"])


#: What the engines need for the loss's anchor: the last m iterates' log-probabilities on the pairs.
HISTORY = HistoryAnchor(length=history_length, combine=history_anchor)


def mnpo(
    eta: float | jax.Array = 1.0,
    tau: float | jax.Array = 0.1,
    history: int = DEFAULT_HISTORY,
    decay: float | jax.Array = 1.0,
) -> ExactRule:
    """Exact time-dependent MNPO (module docstring).

    Args:
      eta: inverse learning rate η (> τ).
      tau: KL(π‖π_ref) regularisation τ > 0.
      history: m ≥ 1, the iterates π_t, …, π_{t−m+1} in the opponent population (not sweepable).
      decay: γ ∈ [0, 1], λ_j ∝ γ^j (1: uniform).
    """
    size = check_history(history)
    require_positive("mnpo", "eta", eta)
    require_positive("mnpo", "tau", tau)
    check_decay(decay)
    if is_concrete(eta) and is_concrete(tau) and not float(eta) > float(tau):
        raise PrefsimError(
            f"rule mnpo: needs eta > tau (η is the inverse learning rate, as in INPO); got eta = {float(eta):g}, "
            f"tau = {float(tau):g}."
        )
    parameters = {"decay": decay}

    def init(game):
        past = jnp.broadcast_to(game.log_initial, (size - 1, *game.log_initial.shape))
        return initial_state(game, MnpoState(past, jnp.zeros((), jnp.int32)))

    def update(state, game):
        past, age = state.extra
        anchor = history_anchor([state.log_policy, *past], age, parameters)
        payoff = current_win_rates(state, game)
        following = jnp.concatenate([state.log_policy[None], past], axis=0)[: size - 1]
        return advance(
            state,
            mirror_weights(anchor, game.log_reference, payoff, 1.0 / eta, tau),
            extra=MnpoState(following, age + 1),
        )

    return ExactRule("mnpo", init, update)


def pair_loss(ops: LossOps, batch: Mapping[str, Any], parameters: Mapping[str, Any]) -> LossArray:
    """TD-MNPO's squared loss: INPO's loss whose anchor ``previous_w/l`` is the engine-supplied A_t."""
    return inpo.inpo_loss(
        batch["policy_w"],
        batch["policy_l"],
        batch["reference_w"],
        batch["reference_l"],
        batch["previous_w"],
        batch["previous_l"],
        parameters["eta"],
        parameters["tau"],
    )


DEFINITION = RuleDefinition(
    name="mnpo",
    paper=(
        "Wu et al., Multiplayer Nash Preference Optimization, arXiv 2509.23102, §3.2 (time-dependent MNPO); "
        "code smiles724/MNPO"
    ),
    summary="INPO with its KL centre at the weighted geometric mixture of its last m iterates (opponent π_t)",
    update_formula=(
        "(1 − τ/η)·Σ_j λ_j ℓ_{t−j} + (τ/η)ℓ_ref + Pπ_t/η: INPO anchored at the weighted geometric mixture of its "
        "last m iterates (time-dependent MNPO, arXiv 2509.23102; docs/theory.md §F.4)"
    ),
    loss_formula=(
        "INPO's, with log π_t replaced by Σ_j λ_j log π_{t−j} over the last m = `history` iterates (default 2; "
        "λ_j ∝ `decay`^j; docs/theory.md §F.4)"
    ),
    anchors="π_ref (τ/η) and π_t, …, π_{t−m+1} ((η−τ)/η · λ_j; their checkpoints are kept)",
    parameters=(
        Parameter("eta", "INVERSE learning rate η (as INPO)", 1.0, constraint="> tau", symbol="η"),
        Parameter("tau", "KL(π‖π_ref) regularisation τ of the rule", GAME_TAU, constraint="> 0", symbol="τ"),
        Parameter(
            "history",
            "iterates π_t, …, π_{t−m+1} in the opponent population (1 = INPO; not sweepable)",
            DEFAULT_HISTORY,
            constraint="integer ≥ 1",
            symbol="m",
            integer=True,
        ),
        Parameter(
            "decay",
            "population weights λ_j ∝ decay^j, j = 0 the current iterate (1 = uniform)",
            1.0,
            constraint="in [0, 1]",
            symbol="γ",
        ),
    ),
    exact=mnpo,
    loss=pair_loss,
    data=PairData(history=HISTORY),
    offline=inpo.offline_update,  # the INPO step from the anchor the engines pass as log π_t (A_t here)
    bounds=(ADVANCEMENT_MONOTONE,),
    anchored=True,
)
