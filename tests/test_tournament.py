"""INPO's knockout tournament, one definition in both modes: the exact distribution of (y_w, y_l, kept) from an
independent enumeration of every bracket and every match outcome, against sampled mode's JAX scheme and the
bridge's NumPy scheme (Monte Carlo), for K = 2 … 8, byes included; the query count K + ⌊K/2⌋ − 1."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandits.errors import PrefsimError
from bandits.oracles import knockout_tournament
from bandits.pair_schemes import check_candidates, tournament_bracket, tournament_queries
from llm_bridge.oracles import CallableOracle
from llm_bridge.pairs import build_pairs

SIZES = [2, 3, 4, 5, 6, 8]


@functools.cache
def _outcome_bits(matches: int) -> np.ndarray:
    """Every outcome of ``matches`` Bernoulli matches: one row per outcome, True = the first player wins."""
    return np.array(list(itertools.product([True, False], repeat=matches)), bool)


def _enumerate_bracket(matrix: np.ndarray, order: list, values: list | None = None) -> dict:
    """Exact distribution of (y_w, y_l, kept) for one seating ``order`` of the candidates, over every outcome of
    every match, written from the paper's description (four pairs; winners play winners, losers play losers, the
    loser advancing; the final y_w vs y_l, kept only if y_w wins) with prefsim's byes: the last of an odd number
    of players sits the round out and opens the next.  ``values``: the response each candidate is (sampled
    mode's i.i.d. draws repeat responses); then y_w, y_l are responses and y_w's response beating itself is a win.
    """
    k = len(order)
    matches = k // 2 + (k + 1) // 2 - 1 + k // 2 - 1 + 1
    bits = _outcome_bits(matches)
    probability = np.ones(len(bits))
    played = []

    def match(a, b):
        z = bits[:, len(played)]
        played.append(z)
        probability[:] *= np.where(z, matrix[a, b], 1.0 - matrix[a, b])
        return np.where(z, a, b), np.where(z, b, a)

    def bracket(players, advance):
        while len(players) > 1:
            following = [players[-1]] if len(players) % 2 else []
            following += [match(a, b)[advance] for a, b in zip(players[0::2], players[1::2])]
            players = following
        return players[0]

    seats = [np.full(len(bits), candidate) for candidate in order]
    first = [match(seats[i], seats[i + 1]) for i in range(0, k - 1, 2)]
    champion = bracket([w for w, _ in first] + seats[k - 1 :] * (k % 2), 0)
    worst = bracket([lo for _, lo in first], 1)
    final_winner, _ = match(champion, worst)
    assert len(played) == matches
    names = np.arange(len(matrix)) if values is None else np.asarray(values)
    size = max(len(matrix), int(names.max()) + 1)
    cell = (names[champion] * size + names[worst]) * 2 + (names[final_winner] == names[champion])
    total = np.bincount(cell, weights=probability, minlength=2 * size * size)
    return {(int(c) // 2 // size, int(c) // 2 % size, bool(c % 2)): total[c] for c in np.flatnonzero(total)}


def _random_bracket(matrix: np.ndarray) -> dict:
    """The K candidates seated uniformly at random (the bridge): the mean over every seating; two seatings that
    differ by the order inside a first-round match give the same distribution, so one of them is enumerated."""
    k = len(matrix)
    total: dict = {}
    seatings = [o for o in itertools.permutations(range(k)) if all(o[i] < o[i + 1] for i in range(0, k - 1, 2))]
    for order in seatings:
        for key, p in _enumerate_bracket(matrix, list(order)).items():
            total[key] = total.get(key, 0.0) + p / len(seatings)
    return total


def _iid_candidates(preference: np.ndarray, policy: np.ndarray, k: int) -> dict:
    """K candidates drawn i.i.d. from ``policy`` and seated in draw order (sampled mode); responses as values."""
    total: dict = {}
    for draws in itertools.product(range(len(policy)), repeat=k):
        weight = np.prod(policy[list(draws)])
        sub = preference[np.ix_(draws, draws)]
        for key, p in _enumerate_bracket(sub, list(range(k)), list(draws)).items():
            total[key] = total.get(key, 0.0) + weight * p
    return total


def _matrix(k: int, seed: int) -> np.ndarray:
    skew = np.random.default_rng(seed).normal(size=(k, k))
    return 0.5 + 0.5 * np.tanh(skew - skew.T)  # P + Pᵀ = 1, diagonal ½


def _assert_frequencies(exact: dict, observed: dict, draws: int) -> None:
    """Every cell's frequency within 5 standard errors (+ 1/draws) of its exact probability."""
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-12)
    for key in set(exact) | set(observed):
        p, seen = exact.get(key, 0.0), observed.get(key, 0) / draws
        assert abs(seen - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1 / draws, (key, seen, p)


def _bridge(matrix: np.ndarray, responses: list, seed: int) -> tuple[dict, int]:
    """(y_w, y_l, kept) counts of llm_bridge.pairs' tournament with texts ``r<i>`` (i a row of ``matrix``), kept or
    not (the final is the last query of a prompt), and the oracle's query count."""
    finals = {}

    def preference(prompt, first, second):
        finals[prompt] = (int(first[1:]), int(second[1:]))
        return matrix[int(first[1:]), int(second[1:])]

    oracle = CallableOracle(preference)
    prompts = [str(i) for i in range(len(responses))]
    texts = [[f"r{v}" for v in row] for row in responses]
    pairs = build_pairs("tournament", prompts, texts, oracle, np.random.default_rng(seed))
    kept = {p.prompt for p in pairs}
    for p in pairs:
        assert finals[str(p.prompt)] == (int(texts[p.prompt][p.winner][1:]), int(texts[p.prompt][p.loser][1:]))
    counts: dict = {}
    for index, prompt in enumerate(prompts):
        key = (*finals[prompt], index in kept)
        counts[key] = counts.get(key, 0) + 1
    return counts, oracle.queries


def test_the_enumeration_follows_the_papers_description():
    """K = 8: 4 + 3 + 3 + 1 = 11 matches; under a deterministic total order y_w is the best and y_l the worst of
    the eight and every pair is kept, whatever the seating; K = 2 by hand: the final replays the first match."""
    order = np.triu(np.ones((8, 8)), 1) + 0.5 * np.eye(8)  # candidate i beats every j > i
    assert _outcome_bits(11).shape == (2048, 11)
    for seating in ([0, 1, 2, 3, 4, 5, 6, 7], [5, 2, 7, 0, 3, 6, 1, 4]):
        assert _enumerate_bracket(order, seating) == {(0, 7, True): 1.0}
    p = 0.7
    assert _random_bracket(np.array([[0.5, p], [1 - p, 0.5]])) == pytest.approx(
        {(0, 1, True): p * p, (0, 1, False): p * (1 - p), (1, 0, True): (1 - p) ** 2, (1, 0, False): (1 - p) * p}
    )
    # K = 3 by hand: seats (a, b) play, c has a bye; y_l is the first-round loser, y_w the winner of (w, c)
    matrix = _matrix(3, 0)
    by_hand: dict = {}
    for a, b, c in itertools.permutations(range(3)):
        for w, lo, first in ((a, b, matrix[a, b]), (b, a, matrix[b, a])):
            for champion, second in ((w, matrix[w, c]), (c, matrix[c, w])):
                for kept, last in ((True, matrix[champion, lo]), (False, matrix[lo, champion])):
                    key = (champion, lo, kept)
                    by_hand[key] = by_hand.get(key, 0.0) + first * second * last / 6
    assert _random_bracket(matrix) == pytest.approx(by_hand, abs=1e-15)


@pytest.mark.parametrize("k", [*SIZES, 7, 9, 16])
def test_one_bracket_and_one_query_count_for_any_k(k):
    """K + ⌊K/2⌋ − 1 queries (3K/2 − 1 for K even, 11 for K = 8), the matches of the bracket both modes play; each
    candidate enters one first-round match or has the bye; y_w and y_l are seats of the two brackets."""
    bracket = tournament_bracket(k)
    assert tournament_queries(k) == len(bracket.matches) == k + k // 2 - 1
    assert sorted(m for r in bracket.rounds for m in r) == list(range(len(bracket.matches)))
    assert bracket.matches[-1] == (bracket.champion, bracket.worst)
    assert bracket.rounds[-1] == (len(bracket.matches) - 1,)
    seats = [s for m in bracket.matches for s in m]
    assert len(seats) == len(set(seats))  # every seat plays at most once
    first_round = {s for m in bracket.rounds[0] for s in bracket.matches[m]}
    assert [s for s in range(k) if s not in first_round] == ([k - 1] if k % 2 else [])
    if k == 8:  # the paper's four pairs, then 3 + 3 bracket matches and the final
        assert len(bracket.rounds[0]) == 4 and bracket.matches[:4] == ((0, 1), (2, 3), (4, 5), (6, 7))
    for round_index, matches in enumerate(bracket.rounds):  # a round reads only seats of earlier rounds
        earlier = {k + 2 * m + j for r in bracket.rounds[:round_index] for m in r for j in (0, 1)} | set(range(k))
        assert all(a in earlier and b in earlier for m in matches for a, b in [bracket.matches[m]])


@pytest.mark.parametrize("bad", [1, 0, 2.0, True, "8", None])
def test_the_bracket_refuses_fewer_than_two_candidates(bad):
    with pytest.raises(PrefsimError, match=r"^run\.candidates: scheme tournament needs an integer number"):
        tournament_bracket(bad)
    with pytest.raises(PrefsimError, match=r"^run\.candidates: scheme tournament needs an integer number"):
        check_candidates("tournament", bad)


@pytest.mark.parametrize("k", SIZES)
def test_the_bridge_plays_the_enumerated_distribution(k):
    """The bridge's tournament on K distinct responses, any K (byes for 3, 5, 6), against the enumeration."""
    matrix = _matrix(k, k)
    draws = 4000
    counts, queries = _bridge(matrix, [list(range(k))] * draws, seed=k)
    assert queries == draws * tournament_queries(k)
    _assert_frequencies(_random_bracket(matrix), counts, draws)


@pytest.mark.parametrize("k", SIZES)
def test_sampled_mode_plays_the_enumerated_distribution(k):
    """Sampled mode's tournament (i.i.d. candidates from π, responses repeat) against the enumeration, any K: it
    refused every K that is not a power of 2, which the bridge accepted."""
    arms = 3 if k < 8 else 2
    preference = _matrix(arms, 10 + k)
    policy = np.random.default_rng(k).dirichlet(3 * np.ones(arms))
    pairs = 200_000
    batch, queries = knockout_tournament(
        jax.random.PRNGKey(k), jnp.log(jnp.asarray(policy))[None], jnp.asarray(preference)[None], jnp.ones(1), pairs, k
    )
    assert queries == pairs * tournament_queries(k)
    first, second, kept = (np.asarray(x) for x in (batch.first, batch.second, batch.weight == 1))
    cells = np.unique(np.stack([first, second, kept]), axis=1, return_counts=True)
    observed = {(int(a), int(b), bool(c)): int(n) for (a, b, c), n in zip(cells[0].T, cells[1])}
    _assert_frequencies(_iid_candidates(preference, policy, k), observed, pairs)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_bridge_keeps_a_final_between_two_copies_of_a_response_as_sampled_mode_does(k):
    """Responses drawn i.i.d. repeat; the bridge dropped half the pairs whose y_w and y_l were the same text (the
    final's coin flip decided) while sampled mode keeps them (y_w's response won).  Both now give the same
    distribution of (y_w, y_l, kept) over responses, so an LM run and its sampled prediction filter alike."""
    preference, policy = _matrix(2, 20 + k), np.array([0.8, 0.2])
    draws = 6000
    responses = np.random.default_rng(k).choice(2, size=(draws, k), p=policy).tolist()
    counts, _ = _bridge(preference, responses, seed=k)
    _assert_frequencies(_iid_candidates(preference, policy, k), counts, draws)
