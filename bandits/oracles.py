"""Preference data for sampled mode: pair sampling and labelling schemes (pure JAX, explicit keys).

Every scheme draws ``pairs`` training pairs from the current policy π_t and returns a
:class:`PairBatch` plus the **exact number of oracle queries it made** (a Python int, counted while
the scheme's comparisons are built, so it is known before the jitted run starts).  Arrays may carry
M contexts: ``log_policy`` and ``rewards`` are (M, K), ``preference`` is (M, K, K) and
``context_probs`` is (M,); a non-contextual bandit is M = 1.  Each pair first draws its context
x ~ ``context_probs``, then responses from π_t(·|x).

Oracle (INPO Definition 1, docs/theory.md §A.1): a query on (x, y, y′) returns z ~ Ber(P(y ≻ y′ | x)).

Schemes (names used by ``[run] pair_scheme``):

* ``lambda_p`` — **population-correct** (INPO Eq. 1 / Prop. 6): y, y′ ~ π_t i.i.d., one query,
  ordered (winner, loser) by the label; every pair kept.  Win-rate estimates: 1 for the winner, 0
  for the loser (the one-opponent unbiased estimate of P(y ≻ π_t), docs/theory.md §D.4).  1 query per pair.
* ``best_worst_by_reward`` (formerly ``best_worst_of_k``) — draw K candidates, chosen = argmax reward,
  rejected = argmin reward (the
  APO rebuttal's "top/bottom of five" with a reward model).  K reward-model calls per pair are
  counted as queries.  Needs a Bradley–Terry (reward) problem; no win-rate estimates.
* ``tournament`` — INPO's practical knockout (docs/theory.md §A.7), the bracket of
  :func:`bandits.pair_schemes.tournament_bracket` (the bridge plays the same): K candidates, ⌊K/2⌋
  first-round matches (K odd: the last candidate has a bye); the winners play a single-elimination
  winners bracket for the best, the losers a losers bracket in which the *loser* advances for the
  worst; a final best-vs-worst match decides whether the pair is kept (weight 1 only if best beats
  worst, or is the same response).  K + ⌊K/2⌋ − 1 queries per pair (3K/2 − 1 for K even: 11 for K = 8).
* ``sppo_win_rate`` — SPPO's official pipeline (``uclaml/SPPO`` ``scripts/compute_prob.py``,
  docs/theory.md §C.7): K candidates, every unordered pair compared once (K(K−1)/2 queries), W[i, j] = z_ij,
  W[j, i] = 1 − z_ij, W[i, i] = ½.  With self-comparison (the code): P̂_i = Σ_j W[i, j]/K, so
  E[P̂_i | y_i] = (½ + (K−1)·P(y_i ≻ π_t))/K, a (K−1)/K shrink towards ½; without:
  P̂_i = Σ_{j≠i} W[i, j]/(K−1), unbiased.  Chosen/rejected = argmax/argmin P̂ (selection bias).
  The code scores with PairRM probabilities; here the oracle is Bernoulli (same mean).
* ``best_second_by_win_rate`` — COMAL's pipeline (``yale-nlp/COMAL`` ``scoring.py``,
  ``data_processing.py::_make_output_pair_from_pm``; docs/theory.md §F.1): K candidates, every ordered pair
  judged (K(K−1) queries: 20 for COMAL's K = 5), each distinct candidate scored by its mean judge
  probability, chosen = the best, rejected = the **second best**; weight 0 when all K are the same response.
  The judge's probabilities are read from P (COMAL scores with its judge's probabilities, not labels), so
  the pair is a function of the draws and the tie order: :func:`bandits.pair_schemes.best_second_pair`,
  which the bridge runs too.  No win-rate estimates.
* Nash-MD-PG (not a ``pair_scheme``; used by rule ``nash_md`` with ``lambda_p``): y ~ π_t and
  y′ ~ π_t^μ ∝ π_t^{1−ητ}·π_ref^{ητ}, one query, z the label of y (:func:`mixture_opponent_pairs`).
* ``uniform_opponent`` — EGPO's estimator: y, y′ uniform over the responses, one opponent y″ ~ π_t,
  two queries (z = [y ≻ y″], z′ = [y′ ≻ y″]) as win-rate estimates; covers every pair whatever π_t.
* ``exact_win_rates`` — idealised: y, y′ ~ π_t i.i.d. (unordered) with the exact P(y ≻ π_t | x) as
  their win rates (for SPPO/DNO targets without estimation noise).  It reads P directly and counts
  **0** oracle queries.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bandits.errors import PrefsimError
from bandits.pair_schemes import (
    SCHEME_ALIASES,
    best_second_comparisons,
    best_second_pair,
    check_candidates,
    tournament_bracket,
    tournament_queries,
)

SCHEMES = (
    "lambda_p",
    "best_worst_by_reward",
    "tournament",
    "sppo_win_rate",
    "best_second_by_win_rate",
    "exact_win_rates",
    "uniform_opponent",
)


class PairBatch(NamedTuple):
    """One iteration's training pairs (all arrays of shape (N,)).

    Attributes:
      context: index of the context x of each pair.
      first: the winner / chosen response (for ``exact_win_rates``: the first draw).
      second: the loser / rejected response (for ``exact_win_rates``: the second draw).
      first_win_rate: estimate of P(first ≻ π_t | x) (NaN when the scheme gives none).
      second_win_rate: estimate of P(second ≻ π_t | x) (NaN when the scheme gives none).
      weight: 1 to train on the pair, 0 to drop it (the tournament's filter; best vs second best with one
        distinct candidate).
    """

    context: jax.Array
    first: jax.Array
    second: jax.Array
    first_win_rate: jax.Array
    second_win_rate: jax.Array
    weight: jax.Array


def _uniforms(key, pairs: int, columns: int, dtype):
    """All the uniforms a scheme needs in one draw (one PRNG call keeps compilation cheap).

    The optimisation barrier materialises them once; otherwise XLA fuses the generator into each
    consumer (binary search steps, oracle queries) and recomputes it there, several times slower.
    """
    return jax.lax.optimization_barrier(jax.random.uniform(key, (pairs, columns), dtype=dtype))


def draw_contexts(uniform: jax.Array, context_probs: jax.Array) -> jax.Array:
    """Context index per pair by inverse CDF, x ~ ``context_probs`` (M,), from uniforms (N,)."""
    if context_probs.shape[0] == 1:
        return jnp.zeros(uniform.shape, jnp.int32)
    cdf = jnp.cumsum(context_probs)
    return jnp.minimum(jnp.sum(uniform[:, None] > cdf[None, :], axis=1), context_probs.shape[0] - 1).astype(jnp.int32)


def draw_responses(uniform: jax.Array, log_policy: jax.Array, contexts: jax.Array) -> jax.Array:
    """Responses y ~ π_t(·|x) by inverse CDF from uniforms (N, count): shape (N, count).

    Binary search of every uniform in every context's CDF (M·N·count·log K work), then the pair's own
    context is selected; y = #{k : CDF_k < u}, clipped to K − 1 against rounding of the last CDF entry.
    """
    cdf = jnp.cumsum(jnp.exp(log_policy), axis=-1)  # (M, K)

    def search(row):
        return jnp.searchsorted(row, uniform, side="left", method="scan_unrolled")

    if cdf.shape[0] == 1:
        chosen = search(cdf[0])
    else:
        positions = jax.vmap(search)(cdf)  # (M, N, count)
        chosen = jnp.take_along_axis(positions, contexts[None, :, None], axis=0)[0]
    # materialised once (see _uniforms): the search is otherwise re-run inside every consumer
    return jax.lax.optimization_barrier(jnp.minimum(chosen, log_policy.shape[-1] - 1).astype(jnp.int32))


def query(
    uniform: jax.Array, preference: jax.Array, contexts: jax.Array, first: jax.Array, second: jax.Array
) -> jax.Array:
    """One oracle query per element: z = [u < P(first ≻ second | x)] ~ Ber(P), as a bool array."""
    return uniform < preference[contexts, first, second]


def lambda_p_pairs(
    key: jax.Array, log_policy: jax.Array, preference: jax.Array, context_probs: jax.Array, pairs: int
) -> tuple[PairBatch, int]:
    """INPO's λ_p: y, y′ ~ π_t i.i.d., ordered by one Bernoulli query.  Returns ``(batch, queries)``."""
    u = _uniforms(key, pairs, 4, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1:3], log_policy, contexts)
    first_wins = query(u[:, 3], preference, contexts, draws[:, 0], draws[:, 1])
    winner = jnp.where(first_wins, draws[:, 0], draws[:, 1])
    loser = jnp.where(first_wins, draws[:, 1], draws[:, 0])
    ones = jnp.ones((pairs,), preference.dtype)
    return PairBatch(contexts, winner, loser, ones, jnp.zeros_like(ones), ones), pairs


def mixture_opponent_pairs(
    key: jax.Array,
    log_policy: jax.Array,
    opponent_log_policy: jax.Array,
    preference: jax.Array,
    context_probs: jax.Array,
    pairs: int,
) -> tuple[PairBatch, int]:
    """Nash-MD-PG's samples: y ~ π_t, y′ ~ the opponent (the geometric mixture), one query each.

    Returns ``(batch, queries)`` with ``first`` = y, ``second`` = y′ (not reordered) and
    ``first_win_rate`` = z ~ Ber(P(y ≻ y′ | x)), the one-comparison estimate of P(y ≻ π^μ_t).
    """
    u = _uniforms(key, pairs, 4, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    mine = draw_responses(u[:, 1:2], log_policy, contexts)[:, 0]
    theirs = draw_responses(u[:, 2:3], opponent_log_policy, contexts)[:, 0]
    wins = query(u[:, 3], preference, contexts, mine, theirs).astype(preference.dtype)
    ones = jnp.ones((pairs,), preference.dtype)
    return PairBatch(contexts, mine, theirs, wins, 1.0 - wins, ones), pairs


def best_worst_of_k(
    key: jax.Array, log_policy: jax.Array, rewards: jax.Array, context_probs: jax.Array, pairs: int, candidates: int
) -> tuple[PairBatch, int]:
    """Best-of-K vs worst-of-K by reward (K reward calls per pair).  Returns ``(batch, queries)``."""
    check_candidates("best_worst_by_reward", candidates)
    u = _uniforms(key, pairs, 1 + candidates, rewards.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1:], log_policy, contexts)
    scores = rewards[contexts[:, None], draws]  # (N, K)
    rows = jnp.arange(pairs)
    chosen = draws[rows, jnp.argmax(scores, axis=1)]
    rejected = draws[rows, jnp.argmin(scores, axis=1)]
    nan = jnp.full((pairs,), jnp.nan, rewards.dtype)
    return PairBatch(contexts, chosen, rejected, nan, nan, jnp.ones((pairs,), rewards.dtype)), pairs * candidates


def knockout_tournament(
    key: jax.Array,
    log_policy: jax.Array,
    preference: jax.Array,
    context_probs: jax.Array,
    pairs: int,
    candidates: int = 8,
) -> tuple[PairBatch, int]:
    """INPO's knockout tournament (module docstring) over K i.i.d. candidates, played on the static bracket of
    :func:`bandits.pair_schemes.tournament_bracket` in draw order; keep the pair only if best beats worst (or is
    the same response).

    Returns ``(batch, queries)`` where ``queries`` = :func:`~bandits.pair_schemes.tournament_queries` ×
    ``pairs``.  Match m reads uniform column 1 + K + m, so a power-of-2 K draws the labels it always drew.
    """
    bracket = tournament_bracket(candidates)
    queries = tournament_queries(candidates)
    u = _uniforms(key, pairs, 1 + candidates + queries, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1 : 1 + candidates], log_policy, contexts)
    seats = {seat: draws[:, seat] for seat in range(candidates)}
    for matches in bracket.rounds:  # one vectorised query per round
        first = jnp.stack([seats[bracket.matches[m][0]] for m in matches], axis=1)
        second = jnp.stack([seats[bracket.matches[m][1]] for m in matches], axis=1)
        columns = u[:, 1 + candidates + matches[0] : 2 + candidates + matches[-1]]
        z = query(columns, preference, contexts[:, None], first, second)
        winners, losers = jnp.where(z, first, second), jnp.where(z, second, first)
        for column, m in enumerate(matches):
            seats[candidates + 2 * m], seats[candidates + 2 * m + 1] = winners[:, column], losers[:, column]
    best, worst = seats[bracket.champion], seats[bracket.worst]
    keep = (seats[candidates + 2 * queries - 2] == best).astype(preference.dtype)  # the final's winner is y_w's
    nan = jnp.full((pairs,), jnp.nan, preference.dtype)
    return PairBatch(contexts, best, worst, nan, nan, keep), pairs * queries


def win_rate_estimates(
    uniform: jax.Array, preference: jax.Array, contexts: jax.Array, samples: jax.Array, self_comparison: bool
) -> jax.Array:
    """SPPO's K-sample win-rate estimates P̂_i for samples (N, K) (module docstring).

    ``uniform`` (N, K, K): only the entries i < j are used, one query per unordered pair.
    Returns (N, K) estimates.
    """
    count = samples.shape[1]
    upper = jnp.triu(jnp.ones((count, count), bool), k=1)
    z = query(uniform, preference, contexts[:, None, None], samples[:, :, None], samples[:, None, :]).astype(
        preference.dtype
    )
    wins = jnp.where(upper, z, 0.0) + jnp.where(upper.T, 1.0 - jnp.swapaxes(z, 1, 2), 0.0)
    total = wins.sum(axis=2)
    if self_comparison:
        return (total + 0.5) / count
    return total / (count - 1)


def sppo_win_rate_pairs(
    key: jax.Array,
    log_policy: jax.Array,
    preference: jax.Array,
    context_probs: jax.Array,
    pairs: int,
    candidates: int = 5,
    self_comparison: bool = True,
) -> tuple[PairBatch, int]:
    """SPPO's pipeline: K samples, K(K−1)/2 queries, chosen/rejected = argmax/argmin P̂.  ``(batch, queries)``."""
    check_candidates("sppo_win_rate", candidates)
    u = _uniforms(key, pairs, 1 + candidates + candidates * candidates, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1 : 1 + candidates], log_policy, contexts)
    label_uniforms = u[:, 1 + candidates :].reshape(pairs, candidates, candidates)
    estimates = win_rate_estimates(label_uniforms, preference, contexts, draws, self_comparison)
    rows = jnp.arange(pairs)
    best, worst = jnp.argmax(estimates, axis=1), jnp.argmin(estimates, axis=1)
    batch = PairBatch(
        contexts,
        draws[rows, best],
        draws[rows, worst],
        estimates[rows, best],
        estimates[rows, worst],
        jnp.ones((pairs,), preference.dtype),
    )
    return batch, pairs * candidates * (candidates - 1) // 2


def best_second_pairs(
    key: jax.Array,
    log_policy: jax.Array,
    preference: jax.Array,
    context_probs: jax.Array,
    pairs: int,
    candidates: int = 5,
) -> tuple[PairBatch, int]:
    """COMAL's pair choice (module docstring): K i.i.d. candidates, every ordered pair judged with P's
    probabilities, best vs second best by :func:`bandits.pair_schemes.best_second_pair`; weight 0 when all K
    are one response.  Returns ``(batch, queries)``, ``queries`` = K(K−1) × ``pairs``
    (:func:`~bandits.pair_schemes.best_second_comparisons`).  Uniform columns: the context, K draws, K tie
    priorities."""
    queries = len(best_second_comparisons(candidates))
    u = _uniforms(key, pairs, 1 + 2 * candidates, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1 : 1 + candidates], log_policy, contexts)
    judged = preference[contexts[:, None, None], draws[:, :, None], draws[:, None, :]]
    same = draws[:, :, None] == draws[:, None, :]
    chosen, rejected, keep, _ = best_second_pair(judged, same, u[:, 1 + candidates :], jnp)
    rows = jnp.arange(pairs)
    nan = jnp.full((pairs,), jnp.nan, preference.dtype)
    batch = PairBatch(contexts, draws[rows, chosen], draws[rows, rejected], nan, nan, keep.astype(preference.dtype))
    return batch, pairs * queries


def uniform_opponent_pairs(
    key: jax.Array, log_policy: jax.Array, preference: jax.Array, context_probs: jax.Array, pairs: int
) -> tuple[PairBatch, int]:
    """EGPO's estimator: y, y′ uniform over the K responses, one opponent y″ ~ π_t, two queries.

    Returns ``(batch, queries)`` with ``first`` = y, ``second`` = y′ (not reordered) and the win-rate
    estimates z ~ Ber(P(y ≻ y″ | x)), z′ ~ Ber(P(y′ ≻ y″ | x)): E[z − z′] = P(y ≻ π_t) − P(y′ ≻ π_t).
    Every pair of responses is drawn with the same probability, whatever π_t (2 queries per pair).
    """
    u = _uniforms(key, pairs, 6, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    uniform = jnp.zeros_like(log_policy) - jnp.log(log_policy.shape[-1])
    draws = draw_responses(u[:, 1:3], uniform, contexts)
    opponent = draw_responses(u[:, 3:4], log_policy, contexts)[:, 0]
    first = query(u[:, 4], preference, contexts, draws[:, 0], opponent).astype(preference.dtype)
    second = query(u[:, 5], preference, contexts, draws[:, 1], opponent).astype(preference.dtype)
    return PairBatch(contexts, draws[:, 0], draws[:, 1], first, second, jnp.ones((pairs,), preference.dtype)), 2 * pairs


def exact_win_rate_pairs(
    key: jax.Array, log_policy: jax.Array, preference: jax.Array, context_probs: jax.Array, pairs: int
) -> tuple[PairBatch, int]:
    """Idealised: y, y′ ~ π_t with exact win rates P(y ≻ π_t | x) (0 queries).  ``(batch, queries)``."""
    u = _uniforms(key, pairs, 3, preference.dtype)
    contexts = draw_contexts(u[:, 0], context_probs)
    draws = draw_responses(u[:, 1:3], log_policy, contexts)
    rates = jnp.einsum("mij,mj->mi", preference, jnp.exp(log_policy))  # (M, K)
    batch = PairBatch(
        contexts,
        draws[:, 0],
        draws[:, 1],
        rates[contexts, draws[:, 0]],
        rates[contexts, draws[:, 1]],
        jnp.ones((pairs,), preference.dtype),
    )
    return batch, 0


def make_pairs(
    scheme: str,
    key: jax.Array,
    log_policy: jax.Array,
    preference: jax.Array,
    rewards: jax.Array,
    context_probs: jax.Array,
    pairs: int,
    candidates: int = 8,
    self_comparison: bool = True,
) -> tuple[PairBatch, int]:
    """Dispatch on the scheme name; returns ``(PairBatch, queries)`` (queries a Python int)."""
    if pairs < 1:
        raise PrefsimError(f"run.pairs_per_iteration: needs at least 1 pair per iteration, got {pairs}.")
    if scheme == "lambda_p":
        return lambda_p_pairs(key, log_policy, preference, context_probs, pairs)
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme == "best_worst_by_reward":
        return best_worst_of_k(key, log_policy, rewards, context_probs, pairs, candidates)
    if scheme == "tournament":
        return knockout_tournament(key, log_policy, preference, context_probs, pairs, candidates)
    if scheme == "sppo_win_rate":
        return sppo_win_rate_pairs(key, log_policy, preference, context_probs, pairs, candidates, self_comparison)
    if scheme == "best_second_by_win_rate":
        return best_second_pairs(key, log_policy, preference, context_probs, pairs, candidates)
    if scheme == "exact_win_rates":
        return exact_win_rate_pairs(key, log_policy, preference, context_probs, pairs)
    if scheme == "uniform_opponent":
        return uniform_opponent_pairs(key, log_policy, preference, context_probs, pairs)
    raise PrefsimError(f"run.pair_scheme: unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
