"""Pair construction from K responses per prompt, and the population pairs of a finite response set.

Each scheme returns :class:`Pair` records (indices into the prompt's responses) and asks the oracle
for the comparisons it needs; labels are z ~ Ber(P(y ≻ y′)) drawn with the given NumPy generator.

Scheme names are those of :mod:`bandits.pair_schemes` (the old ``iid`` and ``best_worst`` still work).

* ``lambda_p`` (formerly ``iid``; K = 2) — y, y′ ~ π_t i.i.d., one query, order from the Bernoulli label
  (λ_p of INPO Eq. 1).
  All pairs are kept.  This is the scheme under which INPO's Eq. (8) equals Eq. (7) (Prop. 6; docs/theory.md
  §A.4 conditions 1–3).  Win-rate estimates: P̂(y_w ≻ π_t) = P(y_w ≻ y_l), P̂(y_l ≻ π_t) = 1 − that
  (a single-opponent, unbiased estimate, since the opponent is a draw from π_t).
* ``best_worst_by_win_rate`` (formerly ``best_worst``) — all K(K−1)/2 comparisons (probabilities, not
  labels); P̂(y_i ≻ π_t) = mean over
  j ≠ i of P(y_i ≻ y_j) (no self-comparison, unlike uclaml/SPPO's estimator which is shrunk by
  (K−1)/K); chosen = argmax P̂, rejected = argmin P̂ (APO / SPPO / RLHFlow practice).  Selection-biased.
* ``tournament`` — INPO's practical scheme on sampled mode's bracket
  (:func:`bandits.pair_schemes.tournament_bracket`), the K responses seated in a random order: Bernoulli
  matches; the first-round winners play a winners' bracket (champion), the first-round losers a losers'
  bracket where the loser advances (worst), then one final champion vs worst; byes when K is not a power
  of 2.  The pair is kept only if the champion wins the final (or the two are the same text).
  K + ⌊K/2⌋ − 1 queries (:func:`~bandits.pair_schemes.tournament_queries`; 11 for K = 8).  Biased
  (docs/theory.md §A.4).
* ``best_second_by_win_rate`` — COMAL's pair choice (docs/theory.md §F.1), the definition sampled mode runs
  (:func:`bandits.pair_schemes.best_second_pair`): every ordered pair of the K responses judged, both orders
  (K(K−1) queries, :func:`~bandits.pair_schemes.best_second_comparisons`; 20 for COMAL's K = 5), the
  oracle's probabilities averaged per distinct text, chosen = the best, rejected = the second best, ties
  in a random order; no pair when the K responses are one text.  Selection-biased (Proposition 6 fails).

* opponent pairs (:func:`opponent_pairs`, a rule whose definition names an opponent: Nash-MD) — y ~ π_t
  and y′ ~ the opponent (the geometric mixture), one query; the pair is (y, y′), not reordered, with
  P̂(y ≻ opponent) = P(y ≻ y′) (the oracle's probability: the expectation of sampled mode's Bernoulli
  label given the two responses) and ``both_from_policy = 0`` in the loss.

:func:`population_pairs` enumerates every ordered pair of a finite response set with the weight
π_t(y)π_t(y′)P(y ≻ y′) — the expectation of the ``iid`` scheme, used to check the bridge against
``sim``'s exact updates.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from bandits.errors import PrefsimError
from bandits.pair_schemes import SCHEME_ALIASES, best_second_comparisons, best_second_pair, tournament_bracket

if TYPE_CHECKING:
    from llm_bridge.oracles import Oracle


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training pair of a prompt: response indices and the numbers the losses use."""

    prompt: int
    """Index of the prompt in the iteration's prompt list."""
    winner: int
    """Index (among the prompt's K responses) of y_w (first response for order-free rules)."""
    loser: int
    """Index of y_l."""
    preference: float
    """Oracle probability P(y_w ≻ y_l | x)."""
    win_rate_w: float
    """Estimate of P(y_w ≻ π_t | x)."""
    win_rate_l: float
    """Estimate of P(y_l ≻ π_t | x)."""
    weight: float = 1.0
    """Weight of the pair in the loss (1 for sampled pairs)."""


def build_pairs(
    scheme: str, prompts: list[str], responses: list[list[str]], oracle: Oracle, rng: np.random.Generator
) -> list[Pair]:
    """Pairs for every prompt under ``scheme``; ``responses[i]`` are the K texts for ``prompts[i]``."""
    builders = {
        "lambda_p": _iid,
        "best_worst_by_win_rate": _best_worst,
        "tournament": _tournament,
        "best_second_by_win_rate": _best_second,
    }
    scheme = SCHEME_ALIASES.get(scheme, scheme)
    if scheme not in builders:
        raise PrefsimError(f"pairs must be one of {', '.join(builders)}, got {scheme!r}.")
    pairs = []
    for index, (prompt, texts) in enumerate(zip(prompts, responses)):
        pairs.extend(builders[scheme](index, prompt, texts, oracle, rng))
    return pairs


def opponent_pairs(prompts: list[str], responses: list[list[str]], oracle: Oracle) -> list[Pair]:
    """One pair per prompt from ``responses[i] = [y, y′]`` (y from π_t, y′ from the opponent), kept in that
    order: preference and win-rate estimate of y are P(y ≻ y′ | x), one oracle query each."""
    for texts in responses:
        if len(texts) != 2:
            raise PrefsimError(
                f"opponent pairs need one response from π_t and one from the opponent, got {len(texts)}."
            )
    probabilities = oracle.probabilities(list(prompts), [t[0] for t in responses], [t[1] for t in responses])
    return [Pair(i, 0, 1, float(p), float(p), 1.0 - float(p)) for i, p in enumerate(probabilities)]


def _iid(index, prompt, texts, oracle, rng):
    if len(texts) != 2:
        raise PrefsimError(f'pairs = "iid" needs exactly 2 responses per prompt, got {len(texts)}.')
    p = float(oracle.probabilities([prompt], [texts[0]], [texts[1]])[0])
    if rng.random() < p:
        return [Pair(index, 0, 1, p, p, 1.0 - p)]
    return [Pair(index, 1, 0, 1.0 - p, 1.0 - p, p)]


def _best_worst(index, prompt, texts, oracle, rng):
    k = len(texts)
    firsts, seconds = zip(*[(i, j) for i in range(k) for j in range(i + 1, k)])
    probs = oracle.probabilities([prompt] * len(firsts), [texts[i] for i in firsts], [texts[j] for j in seconds])
    matrix = np.full((k, k), 0.5)
    for i, j, p in zip(firsts, seconds, probs):
        matrix[i, j], matrix[j, i] = p, 1.0 - p
    win = (matrix.sum(axis=1) - 0.5) / (k - 1)
    best, worst = int(np.argmax(win)), int(np.argmin(win))
    if best == worst:  # all equal: any two distinct responses
        best, worst = 0, 1
    return [Pair(index, best, worst, float(matrix[best, worst]), float(win[best]), float(win[worst]))]


def _tournament(index, prompt, texts, oracle, rng):
    """INPO's knockout on the bracket of :func:`bandits.pair_schemes.tournament_bracket` (sampled mode's), seats
    filled by a random permutation of the K responses; one oracle call per round, one label per match."""
    bracket = tournament_bracket(len(texts))
    seats = [int(i) for i in rng.permutation(len(texts))]
    uniforms = rng.random(len(bracket.matches))  # match m's label: the m-th draw, as sampled mode's columns
    seats.extend([0, 0] * len(bracket.matches))
    probability = {}
    for matches in bracket.rounds:
        firsts = [seats[bracket.matches[m][0]] for m in matches]
        seconds = [seats[bracket.matches[m][1]] for m in matches]
        probs = oracle.probabilities([prompt] * len(matches), [texts[a] for a in firsts], [texts[b] for b in seconds])
        for m, a, b, p in zip(matches, firsts, seconds, probs):
            probability[(a, b)], probability[(b, a)] = float(p), 1.0 - float(p)
            won = uniforms[m] < p
            seats[len(texts) + 2 * m : len(texts) + 2 * m + 2] = (a, b) if won else (b, a)
    champion, worst = seats[bracket.champion], seats[bracket.worst]
    if texts[seats[len(texts) + 2 * len(bracket.matches) - 2]] != texts[champion]:  # the final's winner is y_l
        return []
    p = probability[(champion, worst)]
    return [Pair(index, champion, worst, p, p, 1.0 - p)]


def _best_second(index, prompt, texts, oracle, rng):
    """COMAL's best vs second best (:func:`bandits.pair_schemes.best_second_pair`, sampled mode's definition):
    one oracle call for the K(K−1) ordered pairs, a random tie order; the pair's preference is the mean of its
    two judged orders, its win rates the two candidates' scores (COMAL's ``score_chosen``/``score_rejected``)."""
    comparisons = best_second_comparisons(len(texts))
    firsts, seconds = (list(seats) for seats in zip(*comparisons))
    probs = oracle.probabilities([prompt] * len(comparisons), [texts[i] for i in firsts], [texts[j] for j in seconds])
    judged = np.full((1, len(texts), len(texts)), 0.5)
    judged[0, firsts, seconds] = probs
    same = np.array([[a == b for b in texts] for a in texts])[None]
    chosen, rejected, keep, score = best_second_pair(judged, same, rng.random((1, len(texts))), np)
    if not keep[0]:
        return []
    w, lo = int(chosen[0]), int(rejected[0])
    p = 0.5 * (judged[0, w, lo] + 1.0 - judged[0, lo, w])
    return [Pair(index, w, lo, float(p), float(score[0, w]), float(score[0, lo]))]


def population_pairs(policy: np.ndarray, preference: np.ndarray) -> list[Pair]:
    """Every ordered pair (y, y′) of a finite response set, weight π(y)π(y′)P(y ≻ y′) (prompt 0).

    With these weights the weighted mean of a per-pair loss is the population loss of the ``iid``
    scheme (INPO Eq. 8).  Win rates are exact: P(y ≻ π) = (Pπ)_y.  Identical pairs (y, y) are
    included, as i.i.d. draws produce them: they do not move pairwise losses but carry the π_t(y)
    weighting of per-response losses (SPPO).
    """
    policy = np.asarray(policy, dtype=np.float64)
    preference = np.asarray(preference, dtype=np.float64)
    rates = preference @ policy
    k = len(policy)
    return [
        Pair(
            0,
            i,
            j,
            float(preference[i, j]),
            float(rates[i]),
            float(rates[j]),
            float(policy[i] * policy[j] * preference[i, j]),
        )
        for i in range(k)
        for j in range(k)
    ]
