"""COMAL's pair choice, best vs second best (``best_second_by_win_rate``), one definition in both modes: the exact
distribution of (chosen, rejected) and of a dropped prompt from an independent enumeration written from
``yale-nlp/COMAL``'s ``data_processing.py::_make_output_pair_from_pm`` (exact fractions, every tie order), against
sampled mode's JAX scheme and the bridge's NumPy scheme (Monte Carlo); the K(K−1) query count; spec validation."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from bandits.oracles import best_second_pairs, make_pairs
from bandits.pair_schemes import best_second_comparisons, best_second_pair, check_candidates
from llm_bridge.oracles import CallableOracle
from llm_bridge.pairs import build_pairs
from llm_bridge.rules import build_bridge_rule
from sim.spec import parse_spec

DROPPED = (-1, -1)

#: COMAL's three-action game (docs/theory.md §F.1: P(b ≻ a) = P(c ≻ b) = 0.9, P(a ≻ c) = 0.8): no ties.
COMAL_GAME = [["1/2", "1/10", "4/5"], ["9/10", "1/2", "1/10"], ["1/5", "9/10", "1/2"]]
#: Rock-paper-scissors at 0.7 with a fourth action that loses 0.6 to 0 and 1 and ties 2: many exact ties.
TIED_GAME = [
    ["1/2", "3/10", "7/10", "3/5"],
    ["7/10", "1/2", "3/10", "3/5"],
    ["3/10", "7/10", "1/2", "1/2"],
    ["2/5", "2/5", "1/2", "1/2"],
]


def _fractions(game: list) -> list:
    return [[Fraction(x) for x in row] for row in game]


def _comal_pair(draws: tuple, preference: list) -> dict:
    """COMAL's pair for one prompt whose K samples are the responses ``draws``, over the tie orders: every
    ordered pair (i, j), i ≠ j, judged; ``score_1`` = P(y_i ≻ y_j) appended to y_i's list, ``score_2`` = 1 − it to
    y_j's (lists keyed by the response); each distinct response scored by its list's mean; ``sorted`` by score,
    descending, stable over the order the ``set`` gives (every order equally likely); chosen, rejected = the first
    two; no pair with one distinct response.  Returns {(chosen, rejected) or DROPPED: probability}."""
    lists: dict = {c: [] for c in set(draws)}
    for i, j in itertools.permutations(range(len(draws)), 2):
        lists[draws[i]].append(preference[draws[i]][draws[j]])
        lists[draws[j]].append(1 - preference[draws[i]][draws[j]])
    if len(lists) < 2:
        return {DROPPED: Fraction(1)}
    scores = {c: sum(v) / len(v) for c, v in lists.items()}
    orders = list(itertools.permutations(scores))
    out: dict = {}
    for order in orders:
        ranked = sorted(order, key=lambda c: scores[c], reverse=True)
        key = (ranked[0], ranked[1])
        out[key] = out.get(key, 0) + Fraction(1, len(orders))
    return out


def _exact(preference: list, policy: list, k: int) -> dict:
    """Exact distribution over K i.i.d. draws from ``policy`` (fractions)."""
    total: dict = {}
    for draws in itertools.product(range(len(policy)), repeat=k):
        weight = math.prod(policy[d] for d in draws)
        for key, p in _comal_pair(draws, preference).items():
            total[key] = total.get(key, 0) + weight * p
    return total


def _assert_frequencies(exact: dict, observed: dict, draws: int) -> None:
    """Every cell's frequency within 5 standard errors (+ 1/draws) of its exact probability."""
    assert sum(exact.values()) == 1
    for key in set(exact) | set(observed):
        p, seen = float(exact.get(key, 0)), observed.get(key, 0) / draws
        assert abs(seen - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1 / draws, (key, seen, p)


def _sampled(preference: np.ndarray, policy: np.ndarray, k: int, pairs: int, seed: int) -> tuple[dict, int]:
    batch, queries = best_second_pairs(
        jax.random.PRNGKey(seed),
        jnp.log(jnp.asarray(policy))[None],
        jnp.asarray(preference)[None],
        jnp.ones(1),
        pairs,
        k,
    )
    first, second, kept = (np.asarray(x) for x in (batch.first, batch.second, batch.weight == 1))
    first, second = np.where(kept, first, DROPPED[0]), np.where(kept, second, DROPPED[1])
    cells, counts = np.unique(np.stack([first, second]), axis=1, return_counts=True)
    return {(int(a), int(b)): int(n) for (a, b), n in zip(cells.T, counts)}, queries


def _bridge(preference: np.ndarray, responses: np.ndarray, seed: int) -> tuple[dict, int]:
    oracle = CallableOracle(lambda prompt, first, second: preference[int(first[1:]), int(second[1:])])
    prompts = [str(i) for i in range(len(responses))]
    texts = [[f"r{v}" for v in row] for row in responses]
    pairs = build_pairs("best_second_by_win_rate", prompts, texts, oracle, np.random.default_rng(seed))
    counts: dict = {DROPPED: len(prompts) - len(pairs)}
    for p in pairs:
        assert p.winner == texts[p.prompt].index(texts[p.prompt][p.winner])  # the first copy of each response
        key = (int(texts[p.prompt][p.winner][1:]), int(texts[p.prompt][p.loser][1:]))
        counts[key] = counts.get(key, 0) + 1
    return counts, oracle.queries


CASES = [  # (game, policy, K)
    (COMAL_GAME, ["1/2", "3/10", "1/5"], 2),
    (COMAL_GAME, ["1/2", "3/10", "1/5"], 3),
    (COMAL_GAME, ["2/5", "2/5", "1/5"], 5),
    (TIED_GAME, ["1/4", "1/4", "1/4", "1/4"], 3),
    (TIED_GAME, ["1/10", "3/10", "1/5", "2/5"], 4),
]


def test_the_enumeration_follows_comals_code_by_hand():
    """K = 2: the better of two distinct responses is chosen (P > ½), one response twice gives no pair; K = 3 on
    rock-paper-scissors, the three responses once each: all tied, each ordered pair 1/6; COMAL's game, the three
    once each: scores (P(c ≻ ·) summed) a 0.9, b 1.0, c 1.1, so (c, b)."""
    game = _fractions(COMAL_GAME)
    assert _comal_pair((0, 1), game) == {(1, 0): 1}
    assert _comal_pair((2, 2), game) == {DROPPED: 1}
    assert _comal_pair((0, 1, 2), game) == {(2, 1): 1}
    tied = _comal_pair((0, 1, 2), _fractions(TIED_GAME))
    assert tied == {pair: Fraction(1, 6) for pair in itertools.permutations(range(3), 2)}
    # a duplicate: (0, 0, 1): 0's list holds its self-comparisons (½ twice each way) and 0.1 twice per copy
    assert _comal_pair((0, 0, 1), game) == {(1, 0): 1}  # 0: (2·½ + 4·0.1)/6 < ½; 1: 0.9


@pytest.mark.parametrize("game, policy, k", CASES)
def test_sampled_mode_draws_the_enumerated_distribution(game, policy, k):
    preference = np.array(_fractions(game), dtype=float)
    exact = _exact(_fractions(game), [Fraction(x) for x in policy], k)
    pairs = 200_000
    observed, queries = _sampled(preference, np.array([float(Fraction(x)) for x in policy]), k, pairs, seed=k)
    assert queries == pairs * k * (k - 1)
    _assert_frequencies(exact, observed, pairs)


@pytest.mark.parametrize("game, policy, k", CASES)
def test_the_bridge_draws_the_enumerated_distribution(game, policy, k):
    preference = np.array(_fractions(game), dtype=float)
    exact = _exact(_fractions(game), [Fraction(x) for x in policy], k)
    prompts = 4000
    probabilities = np.array([float(Fraction(x)) for x in policy])
    responses = np.random.default_rng(100 + k).choice(len(policy), size=(prompts, k), p=probabilities)
    observed, queries = _bridge(preference, responses, seed=k)
    assert queries == prompts * k * (k - 1)
    _assert_frequencies(exact, observed, prompts)


#: Four responses whose scores tie exactly (every row of P off the diagonal sums to 3/2) while the rounded sums
#: of the judge's probabilities differ in the last bit, in each precision.
ROUNDING_TIES = {
    np.float64: [["1/2", "3/5", "4/5", "1/10"], ["2/5", "1/2", "1/5", "9/10"], ["1/5", "4/5", "1/2", "1/2"],
                 ["9/10", "1/10", "1/2", "1/2"]],
    np.float32: [["1/2", "3/5", "3/5", "3/10"], ["2/5", "1/2", "1/5", "9/10"], ["2/5", "4/5", "1/2", "3/10"],
                 ["7/10", "1/10", "7/10", "1/2"]],
}  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rounding_does_not_break_an_exact_tie(dtype):
    """Scores equal in exact arithmetic but not after rounding the sums stay tied: every one of the 12 ordered
    pairs of the four responses comes out of some tie order, in sampled mode's float32 too (the rounding, not a
    preference, decided without the tolerance)."""
    game = _fractions(ROUNDING_TIES[dtype])
    assert all(sum(row) - Fraction(1, 2) == Fraction(3, 2) for row in game)
    judged = np.array(game, dtype=dtype)
    rounded = np.sum(np.where(~np.eye(4, dtype=bool), judged + 1 - judged.T, 0), axis=-1)
    assert len(set(rounded.tolist())) > 1  # the case the tolerance is for
    same = np.eye(4, dtype=bool)[None]
    seen = set()
    for priority in itertools.permutations(np.arange(4, dtype=dtype) / 4):
        for xp in (np, jnp):
            chosen, rejected, keep, _ = best_second_pair(judged[None], same, np.array([priority], dtype), xp)
            assert bool(keep[0])
            seen.add((int(chosen[0]), int(rejected[0])))
    assert seen == set(itertools.permutations(range(4), 2))


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_the_query_count_is_every_ordered_pair(k):
    """K(K−1) judge calls, seat i first, in COMAL's scoring.py order (for i, for j ≠ i): 20 for K = 5."""
    comparisons = best_second_comparisons(k)
    assert len(comparisons) == k * (k - 1) and len(set(comparisons)) == len(comparisons)
    assert comparisons == tuple((i, j) for i in range(k) for j in range(k) if i != j)
    assert len(best_second_comparisons(5)) == 20
    preference = jnp.asarray([[[0.5, 0.3], [0.7, 0.5]]])
    _, queries = make_pairs(
        "best_second_by_win_rate", jax.random.PRNGKey(0), jnp.log(jnp.asarray([[0.5, 0.5]])), preference, None,
        jnp.ones(1), 7, candidates=k,
    )  # fmt: skip
    assert queries == 7 * k * (k - 1)


@pytest.mark.parametrize("bad", [1, 0, 2.0, True, "5", None])
def test_fewer_than_two_candidates_are_refused(bad):
    message = r"^run\.candidates: scheme best_second_by_win_rate needs an integer number of candidates ≥ 2"
    with pytest.raises(PrefsimError, match=message):
        best_second_comparisons(bad)
    with pytest.raises(PrefsimError, match=message):
        check_candidates("best_second_by_win_rate", bad)


def _spec(**run) -> dict:
    return {
        "iterations": 2,
        "seeds": 2,
        "record_every": 1,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "comal", "eta": 0.6, "reference_every": 1}],
        "run": {"mode": "sampled", "pairs_per_iteration": 16, "inner_steps": 2, "learning_rate": 0.1, **run},
    }


def test_a_sampled_spec_reads_candidates_and_runs_comal_on_it():
    spec = parse_spec(_spec(pair_scheme="best_second_by_win_rate", candidates=5))
    assert spec.run.candidates == 5
    table = sim.run(_spec(pair_scheme="best_second_by_win_rate", candidates=5))
    for _, rows in table.groupby("seed"):
        assert list(rows.sort_values("iteration").queries) == [0, 16 * 20, 2 * 16 * 20]
    with pytest.raises(PrefsimError, match=r"run\.candidates: scheme best_second_by_win_rate needs an integer"):
        parse_spec(_spec(pair_scheme="best_second_by_win_rate", candidates=1))
    with pytest.raises(PrefsimError, match="needs win-rate estimates"):
        parse_spec({**_spec(pair_scheme="best_second_by_win_rate"), "rule": [{"name": "sppo", "eta": 1.0}]})


def test_the_bridge_accepts_the_scheme_for_pairwise_rules_only():
    rule = build_bridge_rule("comal", {"eta": 0.6, "pairs": "best_second_by_win_rate", "samples": 5})
    assert (rule.pairs, rule.samples) == ("best_second_by_win_rate", 5)
    with pytest.raises(PrefsimError, match="needs win-rate estimates"):
        build_bridge_rule("sppo", {"eta": 1.0, "pairs": "best_second_by_win_rate"})
