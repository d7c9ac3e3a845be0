"""Pair schemes and oracles (bandits.oracles): distributions, selection rules and exact query counts."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from bandits.oracles import (
    best_worst_of_k,
    draw_responses,
    exact_win_rate_pairs,
    knockout_tournament,
    lambda_p_pairs,
    make_pairs,
    tournament_queries,
    win_rate_estimates,
)
from bandits.preference import random_lower_triangle
from sim.diagnostics import DegenerateRunWarning

jax.config.update("jax_enable_x64", True)

KEY = jax.random.PRNGKey(3)


def _game(arms=4, seed=0):
    preference = random_lower_triangle(arms, np.random.default_rng(seed))
    policy = np.random.default_rng(seed + 1).dirichlet(np.ones(arms) * 2)
    return jnp.asarray(preference)[None], jnp.log(jnp.asarray(policy))[None], jnp.ones(1), policy, preference


def _total_order(arms):
    """P[i, j] = 1 for i < j: arm 0 beats everyone, deterministically."""
    matrix = np.triu(np.ones((arms, arms)), 1)
    return jnp.asarray(matrix + 0.5 * np.eye(arms))[None]


def test_tournament_makes_eleven_comparisons_for_eight_candidates():
    assert tournament_queries(8) == 11
    assert tournament_queries(4) == 5 and tournament_queries(16) == 23 and tournament_queries(5) == 6
    preference, log_policy, rho, _, _ = _game(arms=6)
    _, queries = knockout_tournament(KEY, log_policy, preference, rho, pairs=10, candidates=8)
    assert queries == 110
    _, queries = knockout_tournament(KEY, log_policy, preference, rho, pairs=3, candidates=4)
    assert queries == 15


def test_tournament_finds_best_and_worst_under_a_deterministic_order():
    arms, pairs = 10, 500
    preference = _total_order(arms)
    log_policy = jnp.full((1, arms), -np.log(arms))
    batch, _ = knockout_tournament(KEY, log_policy, preference, jnp.ones(1), pairs, candidates=8)
    # rebuild the candidates: the scheme draws them from the same uniforms
    u = jax.random.uniform(KEY, (pairs, 1 + 8 + 11), dtype=preference.dtype)
    draws = np.asarray(draw_responses(u[:, 1:9], log_policy, jnp.zeros(pairs, jnp.int32)))
    np.testing.assert_array_equal(np.asarray(batch.first), draws.min(axis=1))  # lowest index wins every match
    np.testing.assert_array_equal(np.asarray(batch.second), draws.max(axis=1))
    distinct = draws.min(axis=1) != draws.max(axis=1)
    np.testing.assert_array_equal(np.asarray(batch.weight)[distinct], 1.0)  # best always beats worst here


def test_tournament_filter_drops_pairs_the_winner_loses():
    # P ≡ ½: best and worst are two distinct uniformly chosen candidates; when they are the same arm
    # (probability 1/K) the pair is kept, otherwise the final is a coin flip: kept = 1/K + (1 − 1/K)/2
    arms = 5
    preference = jnp.full((1, arms, arms), 0.5)
    log_policy = jnp.full((1, arms), -np.log(arms))
    batch, _ = knockout_tournament(KEY, log_policy, preference, jnp.ones(1), 20000, candidates=8)
    kept = float(np.mean(np.asarray(batch.weight)))
    expected = 1 / arms + (1 - 1 / arms) / 2
    assert abs(kept - expected) < 5 * 0.5 / np.sqrt(20000)


def test_tournament_takes_any_k_of_at_least_two():
    """It refused K = 6 ("a power of 2"), which the bridge plays with byes; both now play one bracket
    (tests/test_tournament.py checks the distributions)."""
    preference, log_policy, rho, _, _ = _game()
    _, queries = knockout_tournament(KEY, log_policy, preference, rho, 4, candidates=6)
    assert queries == 4 * 8
    with pytest.raises(PrefsimError, match="candidates ≥ 2, got 1"):
        knockout_tournament(KEY, log_policy, preference, rho, 4, candidates=1)


def test_lambda_p_winner_distribution_and_one_query_per_pair():
    preference, log_policy, rho, policy, matrix = _game(arms=4, seed=5)
    pairs = 200_000
    batch, queries = lambda_p_pairs(KEY, log_policy, preference, rho, pairs)
    assert queries == pairs
    winners = np.bincount(np.asarray(batch.first), minlength=4) / pairs
    expected = 2 * policy * (matrix @ policy)  # Pr(winner = y) = 2π(y)(Pπ)_y
    np.testing.assert_allclose(expected.sum(), 1.0)
    assert np.all(np.abs(winners - expected) < 5 * np.sqrt(expected * (1 - expected) / pairs))
    np.testing.assert_array_equal(np.asarray(batch.first_win_rate), 1.0)
    np.testing.assert_array_equal(np.asarray(batch.second_win_rate), 0.0)


def test_sppo_self_comparison_shrinks_win_rates_by_k_minus_one_over_k():
    preference, log_policy, rho, policy, matrix = _game(arms=3, seed=2)
    win_rate = matrix @ policy
    samples_per_prompt, prompts = 5, 100_000
    key_draw, key_label = jax.random.split(KEY)
    contexts = jnp.zeros(prompts, jnp.int32)
    draws = draw_responses(jax.random.uniform(key_draw, (prompts, samples_per_prompt)), log_policy, contexts)
    uniforms = jax.random.uniform(key_label, (prompts, samples_per_prompt, samples_per_prompt))
    with_self = np.asarray(win_rate_estimates(uniforms, preference, contexts, draws, True))
    without = np.asarray(win_rate_estimates(uniforms, preference, contexts, draws, False))
    first = np.asarray(draws[:, 0])
    for arm in range(3):
        rows = first == arm
        shrunk = (0.5 + (samples_per_prompt - 1) * win_rate[arm]) / samples_per_prompt
        standard_error = with_self[rows, 0].std() / np.sqrt(rows.sum())
        assert abs(with_self[rows, 0].mean() - shrunk) < 5 * standard_error
        assert abs(without[rows, 0].mean() - win_rate[arm]) < 5 * without[rows, 0].std() / np.sqrt(rows.sum())
        # the shrink is visible: (K−1)/K of the distance to ½
        np.testing.assert_allclose(shrunk - 0.5, (samples_per_prompt - 1) / samples_per_prompt * (win_rate[arm] - 0.5))
    assert abs(without[first == np.argmax(win_rate), 0].mean() - 0.5) > abs(
        with_self[first == np.argmax(win_rate), 0].mean() - 0.5
    )


def test_best_worst_of_k_selects_by_reward_and_counts_reward_calls():
    rewards = jnp.asarray([[0.3, -1.0, 2.0, 0.5, 1.1]])
    log_policy = jnp.full((1, 5), -np.log(5))
    batch, queries = best_worst_of_k(KEY, log_policy, rewards, jnp.ones(1), 1000, candidates=5)
    assert queries == 5000
    chosen = np.asarray(rewards[0][batch.first])
    rejected = np.asarray(rewards[0][batch.second])
    assert np.all(chosen >= rejected)
    assert np.mean(np.asarray(batch.first) == 2) > 1 - (4 / 5) ** 5 - 0.05  # P(best arm among 5 draws)


@pytest.mark.parametrize("scheme", ["best_worst_by_reward", "best_worst_of_k"])  # the scheme and its old alias
def test_too_few_candidates_name_the_scheme_by_its_current_name(scheme):
    rewards = jnp.asarray([[0.3, -1.0, 2.0]])
    log_policy = jnp.full((1, 3), -np.log(3))
    with pytest.raises(PrefsimError) as info:
        make_pairs(scheme, KEY, log_policy, _total_order(3), rewards, jnp.ones(1), 10, candidates=1)
    assert str(info.value) == (
        "run.candidates: scheme best_worst_by_reward needs an integer number of candidates ≥ 2, got 1."
    )


def test_exact_win_rates_are_the_population_win_rates_and_cost_no_queries():
    preference, log_policy, rho, policy, matrix = _game(arms=4)
    batch, queries = exact_win_rate_pairs(KEY, log_policy, preference, rho, 100)
    assert queries == 0
    np.testing.assert_allclose(np.asarray(batch.first_win_rate), (matrix @ policy)[np.asarray(batch.first)], atol=1e-12)


@pytest.mark.parametrize(
    "scheme, per_pair",
    [
        ("lambda_p", 1),  # one label orders the pair: each response's one-opponent win-rate estimate (1 or 0)
        ("sppo_win_rate", 6),  # K = 4 candidates, every unordered pair compared once: K(K − 1)/2
        ("exact_win_rates", 0),  # the population win rates, read from P
    ],
)
def test_sampled_dno_counts_the_queries_its_win_rate_estimates_make(scheme, per_pair):
    """docs/theory.md §D.2: DNO's ``queries`` column is t × N × the scheme's queries per pair, as INPO's
    and SPPO's, so that the three compare at matched cumulative queries."""
    pairs, iterations = 30, 3
    spec = {
        "iterations": iterations,
        "seeds": [0, 1],
        "record_every": 1,
        "game": {"kind": "random", "arms": 5, "tau": 0.2},
        "rule": [{"name": "dno", "eta": 1.0}],
        "run": {
            "mode": "sampled",
            "pairs_per_iteration": pairs,
            "pair_scheme": scheme,
            **({"candidates": 4} if scheme == "sppo_win_rate" else {}),
            "inner_steps": 3,
            "learning_rate": 0.1,
        },
    }
    with warnings.catch_warnings():  # DNO's soft label is biased under every scheme but exact win rates
        warnings.simplefilter("ignore", DegenerateRunWarning)
        table = sim.run(spec)
    for _, rows in table.groupby("seed"):
        rows = rows.sort_values("iteration")
        assert list(rows.queries) == [t * pairs * per_pair for t in range(iterations + 1)]
