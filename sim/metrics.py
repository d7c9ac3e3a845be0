"""Measurements of a policy in a preference game, all closed form (docs/theory.md §A.2, §B.3).

Public column names (the results contract): ``duality_gap``, ``exploitability``, ``kl_to_nash``,
``suboptimality``, ``regret``, ``tv_to_optimum``, ``max_log_ratio``, ``max_log_ratio_so_far``,
``kl_to_unregularised_nash``, and for the running uniform mixture of distributions
π̄_t = (1/(t+1))·Σ_{s=0}^{t} π_s (Theorem 3 of INPO is about π̄) the same names with ``_mixture`` (all but
``regret`` and ``max_log_ratio_so_far``).  A metric that does not apply is NaN (an empty CSV cell):
``duality_gap`` needs τ > 0, ``suboptimality``/``regret`` need Bradley–Terry rewards,
``kl_to_unregularised_nash`` a unique unregularised Nash policy π⁰.

Definitions (π a policy, τ the game's regularisation, π_ref the reference):

* ``duality_gap`` = max_{π₁} J(π₁, π) − min_{π₂} J(π, π₂) = 2τ·KL(π ‖ BR_τ(π)), with
  BR_τ(π) ∝ π_ref·exp(Pπ/τ) (equivalently 2[τ log Σ π_ref e^{Pπ/τ} + τ KL(π‖π_ref)] − 1).
* ``exploitability`` = the unregularised (τ = 0) duality gap = 2·max_y (Pπ)_y − 1.  It equals
  OpenSpiel's ``nash_conv`` on the game (P, Pᵀ); OpenSpiel's ``exploitability`` is half of it.
* ``kl_to_nash`` = KL(π* ‖ π) with π* the target of :func:`sim.nash.target_policy`
  (π*_τ for τ > 0).
* ``tv_to_optimum`` = ½‖π − π*‖₁ with the same π*.
* ``suboptimality`` = max_y r_y − Σ_y π(y) r_y;  ``regret`` at iteration t = Σ_{s=0}^{t−1} suboptimality(π_s)
  (the policies that collected the data of iterations 0 … t−1).
* ``max_log_ratio`` = max_y |log π(y)/π_ref(y)|, the realised B of Assumption A.
* ``max_log_ratio_so_far`` at iteration t = max_{s≤t} max_log_ratio(π_s) over **every** iterate
  π_0 … π_t, recorded or not: the trajectories carry this running maximum (one O(K) reduction per
  update), so the B that :func:`sim.theorems.realised_log_ratio` gives the bounds does not depend on
  ``record_every`` (the running maximum of the recorded ``max_log_ratio`` alone can miss the
  largest iterate between two recordings).  Like ``regret`` it is a trajectory quantity, so neither
  has a ``_mixture`` twin and :func:`all_metrics` takes it as an argument.
* ``kl_to_unregularised_nash`` = KL(π⁰ ‖ π) with π⁰ the unregularised (τ = 0, linear-program) Nash
  policy of P, whatever the game's τ: the distance COMAL (ICLR 2026) proves non-increasing under
  reference advancement.  NaN where π⁰ is not unique (and where it was not computed);
  :func:`sim.nash.unique_unregularised_nash` says how uniqueness is decided.  The runs compute π⁰
  once per seed in set-up and carry it next to π*.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sim.game import Game, normalize, win_rates

POLICY_METRICS = (
    "duality_gap",
    "exploitability",
    "kl_to_nash",
    "suboptimality",
    "tv_to_optimum",
    "max_log_ratio",
    "kl_to_unregularised_nash",
)
#: Running maximum of ``max_log_ratio`` over every iterate so far (a trajectory column, like ``regret``).
RUNNING_LOG_RATIO = "max_log_ratio_so_far"
METRIC_COLUMNS = (
    POLICY_METRICS[:4]
    + ("regret",)
    + POLICY_METRICS[4:6]
    + (RUNNING_LOG_RATIO,)
    + POLICY_METRICS[6:]
    + tuple(f"{m}_mixture" for m in POLICY_METRICS)
)

#: The τ each metric is scored at: ``"game"`` (the ``[game]`` table's τ, whatever a rule's own τ),
#: ``0`` (unregularised) or ``None`` (no τ enters it).  ``_mixture`` twins use their base's.
METRIC_TAU_SOURCE = {
    "duality_gap": "game",
    "kl_to_nash": "game",
    "tv_to_optimum": "game",
    "exploitability": 0,
    "kl_to_unregularised_nash": 0,
    "suboptimality": None,
    "regret": None,
    "max_log_ratio": None,
    RUNNING_LOG_RATIO: None,
}


def metric_tau(game_tau: float | str) -> dict[str, str]:
    """Per metric column, the τ it is scored at, in words (a run manifest's ``metric_tau``).

    ``game_tau`` is the game's τ, or the text ``"game.tau"`` for a sweep over it (each row's
    ``game.tau`` column then gives it).  A rule's own τ (``inpo[tau=0.5]``) never changes the target:
    the regularised metrics measure the distance to the game's τ-regularised Nash policy, which is
    what a rule whose τ differs from the game's is biased away from; sweep ``game.tau`` to score each
    τ against its own Nash policy (rules whose τ is not given follow it).
    """
    shown = f"game.tau = {game_tau:g}" if isinstance(game_tau, (int, float)) else "game.tau (the row's game.tau column)"
    words = {
        "game": f"{shown}: the game's τ-regularised Nash policy, whatever a rule's own τ",
        0: "τ = 0: unregularised",
        None: "no τ (rewards or the reference only)",
    }
    return {column: words[METRIC_TAU_SOURCE[column.removesuffix("_mixture")]] for column in METRIC_COLUMNS}


def best_response(game: Game, log_policy: jax.Array, tau: float | jax.Array) -> jax.Array:
    """log BR_τ(π) = log softmax(log π_ref + Pπ/τ)."""
    return normalize(game.log_reference + win_rates(game, jnp.exp(log_policy)) / tau)


def _gap_from_win_rates(game: Game, policy, log_policy, policy_win_rates, tau):
    """2τ·KL(π ‖ BR_τ(π)) from π, log π and Pπ (NaN for τ ≤ 0).

    With a = log π_ref + Pπ/τ, log BR_τ(π) = a − logsumexp(a), so
    KL(π‖BR_τ(π)) = Σ_y π(y)(log π(y) − a_y) + logsumexp(a)  (Σπ = 1; 0·log 0 = 0).
    """
    safe_tau = jnp.where(tau > 0, tau, 1.0)
    exponents = game.log_reference + policy_win_rates / safe_tau
    kl = jnp.sum(jnp.where(policy > 0, policy * (log_policy - exponents), 0.0), axis=-1) + logsumexp(exponents, axis=-1)
    # KL ≥ 0; clip rounding (|error| ~ 1e-17) so log-scale plots never see a negative gap.
    return jnp.where(tau > 0, jnp.maximum(2.0 * safe_tau * kl, 0.0), jnp.nan)


def duality_gap(game: Game, log_policy: jax.Array, tau: float | jax.Array) -> jax.Array:
    """Regularised duality gap 2τ·KL(π ‖ BR_τ(π)) (NaN for τ ≤ 0)."""
    policy = jnp.exp(log_policy)
    return _gap_from_win_rates(game, policy, log_policy, win_rates(game, policy), tau)


def exploitability(game: Game, log_policy: jax.Array) -> jax.Array:
    """Unregularised duality gap 2·max_y (Pπ)_y − 1."""
    return 2.0 * jnp.max(win_rates(game, jnp.exp(log_policy))) - 1.0


def suboptimality(game: Game, log_policy: jax.Array) -> jax.Array:
    """max r − E_π r (NaN without rewards)."""
    return jnp.max(game.rewards) - jnp.dot(jnp.exp(log_policy), game.rewards)


def log_target_policy(target: jax.Array) -> jax.Array:
    """log π* with 0 where π*(y) = 0 (those arms are masked out of KL(π*‖π))."""
    return jnp.log(jnp.where(target > 0, target, 1.0))


def _kl_from_target(target, log_target, log_policy):
    """KL(π*‖π) = Σ_{π*(y)>0} π*(y)(log π*(y) − log π(y)), clipped at 0 (rounding ~1e-17 at convergence,
    as for the gap, so log-scale plots see no negatives)."""
    return jnp.maximum(jnp.sum(jnp.where(target > 0, target * (log_target - log_policy), 0.0)), 0.0)


def metrics_from_win_rates(
    game: Game,
    policy: jax.Array,
    log_policy: jax.Array,
    policy_win_rates: jax.Array,
    target: jax.Array,
    log_target: jax.Array,
    unregularised_target: jax.Array | None = None,
    log_unregularised_target: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """All of :data:`POLICY_METRICS` for one policy from what a trajectory already holds.

    Args:
      game: the game (τ = ``game.tau``).
      policy: π, shape (K,); log_policy: log π (the same policy; the trajectory has both, so no exp).
      policy_win_rates: Pπ, shape (K,).
      target: π* as probabilities; log_target: :func:`log_target_policy` of it (computed once per run).
      unregularised_target: π⁰ as probabilities, all-NaN where it is not unique, or ``None`` (the
        column is then NaN); log_unregularised_target: its :func:`log_target_policy` (computed here
        when ``None``).

    The formulas of the module docstring; :func:`policy_metrics` is this with π, Pπ and log π*
    computed from ``log_policy`` and ``target``.  Besides Pπ the cost is one exp and one log of K
    numbers (the best response's normaliser).
    """
    if unregularised_target is None:
        kl_to_unregularised = jnp.full((), jnp.nan, log_policy.dtype)
    else:
        if log_unregularised_target is None:
            log_unregularised_target = log_target_policy(unregularised_target)
        unique = jnp.all(jnp.isfinite(unregularised_target))
        kl = _kl_from_target(unregularised_target, log_unregularised_target, log_policy)
        kl_to_unregularised = jnp.where(unique, kl, jnp.nan)
    return {
        "duality_gap": _gap_from_win_rates(game, policy, log_policy, policy_win_rates, game.tau),
        "exploitability": 2.0 * jnp.max(policy_win_rates) - 1.0,
        "kl_to_nash": _kl_from_target(target, log_target, log_policy),
        "suboptimality": jnp.max(game.rewards) - jnp.dot(policy, game.rewards),
        "tv_to_optimum": 0.5 * jnp.sum(jnp.abs(policy - target)),
        "max_log_ratio": log_ratio(game, log_policy),
        "kl_to_unregularised_nash": kl_to_unregularised,
    }


def log_ratio(game: Game, log_policy: jax.Array) -> jax.Array:
    """max_y |log π(y) − log π_ref(y)| over the last axis (``max_log_ratio``; one per row of ``log_policy``)."""
    return jnp.max(jnp.abs(log_policy - game.log_reference), axis=-1)


def policy_metrics(
    game: Game, log_policy: jax.Array, target: jax.Array, unregularised_target: jax.Array | None = None
) -> dict[str, jax.Array]:
    """All per-policy metrics of :data:`POLICY_METRICS` for one policy; ``target`` = π* and
    ``unregularised_target`` = π⁰ (or ``None``) as probabilities."""
    policy = jnp.exp(log_policy)
    return metrics_from_win_rates(
        game, policy, log_policy, win_rates(game, policy), target, log_target_policy(target), unregularised_target
    )


def all_metrics(
    game: Game,
    log_policy: jax.Array,
    log_mixture: jax.Array,
    regret: float | jax.Array,
    largest_log_ratio: float | jax.Array,
    target: jax.Array,
    unregularised_target: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The full row of :data:`METRIC_COLUMNS` for the last iterate and the running mixture; ``regret`` and
    ``largest_log_ratio`` (``max_log_ratio_so_far``) are the trajectory's, carried by the caller."""
    row = policy_metrics(game, log_policy, target, unregularised_target)
    mixture = policy_metrics(game, log_mixture, target, unregularised_target)
    row["regret"] = regret
    row[RUNNING_LOG_RATIO] = largest_log_ratio
    row.update({f"{name}_mixture": value for name, value in mixture.items()})
    return {name: row[name] for name in METRIC_COLUMNS}
