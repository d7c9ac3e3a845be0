"""The pair schemes, one name per algorithm, in sampled mode and in the LLM bridge.

A pair scheme says how the training pairs of one iteration are drawn from π_t and labelled.  Sampled
mode implements them in :mod:`bandits.oracles` (JAX, Bernoulli oracle), the bridge in
:mod:`llm_bridge.pairs` (an oracle that returns probabilities); both read the names from here.  Old
names keep working for one release as aliases that print a deprecation note.

===========================  =================  ===================================================
name                         modes              pairs
===========================  =================  ===================================================
``lambda_p``                 sampled, llm       y, y′ ~ π_t i.i.d., one query orders them (INPO's λ_p)
``best_worst_by_reward``     sampled            best vs worst of K candidates by the reward
``best_worst_by_win_rate``   llm                best vs worst of K by the estimated win rate (all pairs)
``tournament``               sampled, llm       INPO's knock-out bracket; kept if the best beats the worst
``sppo_win_rate``            sampled            SPPO's pipeline: K candidates, all pairs, P̂ with self-comparison
``best_second_by_win_rate``  sampled, llm       COMAL's: best vs second best of K by the mean judge probability
``uniform_opponent``         sampled            EGPO's: y, y′ uniform, one opponent y″ ~ π_t, two queries; unordered
``exact_win_rates``          sampled            y, y′ ~ π_t with the exact P(y ≻ π_t) (no queries); unordered
===========================  =================  ===================================================
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from bandits.errors import PrefsimError


@dataclasses.dataclass(frozen=True)
class PairScheme:
    """One pair scheme: its name, what it does, where it runs, which modes give ordered pairs and win rates."""

    name: str
    summary: str
    modes: tuple
    win_rate_modes: tuple = ()
    """Modes in which the scheme estimates P(y ≻ π_t) for both responses, drawn from π_t (SPPO and DNO
    regress on them, weighted by how the responses are drawn)."""
    ordered_modes: tuple = ()
    """Modes in which each pair is ordered, chosen first, by a comparison (an oracle label, a reward, a
    win-rate estimate): what the pairwise losses (INPO, IPO, DPO, …) read."""
    aliases: tuple = ()


PAIR_SCHEMES: dict[str, PairScheme] = {
    scheme.name: scheme
    for scheme in (
        PairScheme(
            "lambda_p",
            "y, y′ ~ π_t i.i.d., one oracle query orders them (INPO's λ_p; population-correct)",
            ("sampled", "llm"),
            ("sampled", "llm"),
            ("sampled", "llm"),
            aliases=("iid",),
        ),
        PairScheme(
            "best_worst_by_reward",
            "K candidates from π_t; chosen = highest reward, rejected = lowest (a reward model's top/bottom)",
            ("sampled",),
            ordered_modes=("sampled",),
            aliases=("best_worst_of_k",),
        ),
        PairScheme(
            "best_worst_by_win_rate",
            "K candidates from π_t, every pair compared; chosen/rejected = highest/lowest estimated win rate",
            ("llm",),
            ("llm",),
            ("llm",),
            aliases=("best_worst",),
        ),
        PairScheme(
            "tournament",
            "INPO's knock-out bracket over K candidates; the pair is kept if the best beats the worst",
            ("sampled", "llm"),
            ("llm",),
            ("sampled", "llm"),
        ),
        PairScheme(
            "sppo_win_rate",
            "SPPO's pipeline: K candidates, all pairs labelled, win rates with self-comparison",
            ("sampled",),
            ("sampled",),
            ("sampled",),
        ),
        PairScheme(
            "best_second_by_win_rate",
            "COMAL's pipeline: K candidates from π_t, every ordered pair judged (K(K−1) queries, the judge's "
            "probabilities); chosen/rejected = the highest/second-highest mean probability among the distinct "
            "candidates, no pair when all K are the same response (best_second_pair)",
            ("sampled", "llm"),
            ordered_modes=("sampled", "llm"),
        ),
        PairScheme(
            "uniform_opponent",
            "EGPO's: y, y′ uniform over the responses, one opponent from π_t, two queries (win-rate estimates "
            'of uniformly drawn responses, unordered: extragradient\'s estimator = "uniform" only)',
            ("sampled",),
        ),
        PairScheme(
            "exact_win_rates",
            "y, y′ ~ π_t with the exact P(y ≻ π_t) as win rates (idealised, no oracle queries; unordered)",
            ("sampled",),
            ("sampled",),
        ),
    )
}

#: Old name → current name.
DEFAULT_SCHEME = "lambda_p"
"""The pair scheme of every rule in both modes when a spec names none (sampled ``run.pair_scheme``, an
LLM rule table's ``pairs``): the population-correct scheme, under which each rule's sampled loss has
the rule's exact update as its population minimiser — except DNO's, whose soft label σ(r̂₁ − r̂₂) is not
linear in the win-rate estimates (its ``PairData.unbiased_schemes`` says so and a run warns).  A rule
whose loss accepts only other schemes lists them in its ``PairData.schemes``; its first one is then its
default."""

SCHEME_ALIASES = {alias: scheme.name for scheme in PAIR_SCHEMES.values() for alias in scheme.aliases}


def default_scheme(accepted: tuple = ()) -> str:
    """The scheme a rule gets in both modes when its spec names none: :data:`DEFAULT_SCHEME`, or the first
    of the schemes its loss ``accepted`` (``PairData.schemes``; empty = all) when that is not one."""
    return DEFAULT_SCHEME if not accepted or DEFAULT_SCHEME in accepted else accepted[0]


#: The modes that draw training pairs: sampled mode (:mod:`bandits.oracles`) and the LLM bridge.
MODES = ("sampled", "llm")


def schemes_for(mode: str) -> tuple:
    """The scheme names that run in ``mode`` (``sampled`` or ``llm``)."""
    if not isinstance(mode, str) or mode not in MODES:
        raise PrefsimError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}.")
    return tuple(name for name, scheme in PAIR_SCHEMES.items() if mode in scheme.modes)


def resolve_scheme(name: Any, mode: str, where: str) -> str:
    """The current name of scheme ``name`` in ``mode``; an alias prints a deprecation note to stderr.

    Raises :class:`PrefsimError` for an unknown name or a scheme that does not run in ``mode``.
    """
    modes = schemes_for(mode)
    if isinstance(name, str) and name in SCHEME_ALIASES:
        current = SCHEME_ALIASES[name]
        print(
            f"note: {where}: pair scheme {name!r} is now called {current!r}; the old name works for one more release.",
            file=sys.stderr,
        )
        name = current
    if not isinstance(name, str) or name not in PAIR_SCHEMES:
        raise PrefsimError(f"{where}: unknown pair scheme {name!r}; choose one of {', '.join(modes)}.")
    if mode not in PAIR_SCHEMES[name].modes:
        other = " and ".join(PAIR_SCHEMES[name].modes)
        raise PrefsimError(
            f"{where}: pair scheme {name!r} runs in {other} mode only; in {mode} mode choose one of {', '.join(modes)}."
        )
    return name


def gives_win_rates(name: str, mode: str) -> bool:
    """Whether scheme ``name`` estimates P(y ≻ π_t) for both responses, drawn from π_t, in ``mode``."""
    return mode in _scheme(name).win_rate_modes


def gives_ordered_pairs(name: str, mode: str) -> bool:
    """Whether scheme ``name`` orders each pair (chosen first) in ``mode``."""
    return mode in _scheme(name).ordered_modes


def _scheme(name: object) -> PairScheme:
    """The :class:`PairScheme` called ``name`` (a current name, not an alias); a clear error for any other."""
    if not isinstance(name, str) or name not in PAIR_SCHEMES:
        raise PrefsimError(f"pair scheme: unknown scheme {name!r}; choose one of {', '.join(PAIR_SCHEMES)}.")
    return PAIR_SCHEMES[name]


#: Pair schemes that draw ``run.candidates`` responses per pair.
CANDIDATE_SCHEMES = ("best_worst_by_reward", "tournament", "sppo_win_rate", "best_second_by_win_rate")


def check_candidates(scheme: str, candidates: object) -> None:
    """Raise unless ``candidates`` suits ``scheme``: the schemes that draw candidates need an integer ≥ 2 (the
    knockout tournament takes any such K, with byes when K is not a power of 2: :func:`tournament_bracket`;
    best vs second best takes K = 2 too, where it orders the two by the judge, as COMAL's code does with two
    distinct candidates); other schemes draw none and accept any value."""
    if scheme not in CANDIDATE_SCHEMES:
        return
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise PrefsimError(
            f"run.candidates: scheme {scheme} needs an integer number of candidates ≥ 2, got {candidates!r}."
        )


@dataclasses.dataclass(frozen=True)
class Bracket:
    """INPO's knockout tournament over K candidates as a static structure, the one both modes play.

    Seats ``0 … K−1`` hold the candidates in play order (sampled mode: the order of the K i.i.d. draws;
    the bridge: a uniformly random permutation of the K responses).  Match ``m`` pits seat ``matches[m][0]``
    against seat ``matches[m][1]`` and puts its winner in seat ``K + 2m``, its loser in seat ``K + 2m + 1``;
    match ``m`` reads the m-th label of the pair (its m-th uniform), so ``matches`` is the order in which
    labels are drawn.  The last match is the final, ``champion`` vs ``worst``.
    """

    candidates: int
    matches: tuple[tuple[int, int], ...]
    """``(seat, seat)`` of every match, in the order its label is drawn."""
    rounds: tuple[tuple[int, ...], ...]
    """Consecutive match indices grouped into rounds: a round reads only seats filled before it (one batch of
    queries)."""
    champion: int
    """Seat of the winners' bracket's winner (y_w)."""
    worst: int
    """Seat of the losers' bracket's loser (y_l)."""


def tournament_bracket(candidates: int) -> Bracket:
    """INPO's knockout bracket over ``candidates`` = K ≥ 2 seats (the paper's experiments, docs/theory.md §A.7).

    First round: seats (0, 1), (2, 3), …; with K odd the last seat has a bye into the winners' bracket.
    The first-round winners play a single-elimination winners' bracket (the winner advances) for the
    champion y_w, the first-round losers a losers' bracket in which the *loser* advances, for the worst
    y_l; in either bracket a round with an odd number of players gives its last player a bye, moved to
    the front of the next round.  Then one final, y_w vs y_l; the pair is kept only if y_w wins it (a
    response against itself — the same response in two seats — counts as y_w's win, the paper's "on a
    tie the first response wins").  For K = 8 this is the paper's four pairs, 3 + 3 bracket matches and
    the final.  Labels are drawn first round, winners' bracket, losers' bracket, final.
    """
    check_candidates("tournament", candidates)
    matches: list[tuple[int, int]] = []

    def play(a: int, b: int) -> tuple[int, int]:
        """Add the match a vs b; its (winner seat, loser seat)."""
        matches.append((a, b))
        return candidates + 2 * len(matches) - 2, candidates + 2 * len(matches) - 1

    def knockout(players: list[int], keep_winner: bool) -> int:
        while len(players) > 1:
            following = [players[-1]] if len(players) % 2 else []  # odd count: the last one has a bye
            for a, b in zip(players[0::2], players[1::2]):
                following.append(play(a, b)[0 if keep_winner else 1])
            players = following
        return players[0]

    first = [play(a, b) for a, b in zip(range(0, candidates - 1, 2), range(1, candidates, 2))]
    winners = [winner for winner, _ in first] + ([candidates - 1] if candidates % 2 else [])
    champion = knockout(winners, keep_winner=True)
    worst = knockout([loser for _, loser in first], keep_winner=False)
    play(champion, worst)
    rounds, current = [], []  # runs of consecutive matches; a run ends before a match that reads a seat it filled
    for m, (a, b) in enumerate(matches):
        if any((seat - candidates) // 2 in current for seat in (a, b) if seat >= candidates):
            rounds.append(tuple(current))
            current = []
        current.append(m)
    rounds.append(tuple(current))
    return Bracket(candidates, tuple(matches), tuple(rounds), champion, worst)


def tournament_queries(candidates: int) -> int:
    """Oracle queries (matches) of the knockout tournament over K candidates: ⌊K/2⌋ first-round matches,
    ⌈K/2⌉ − 1 in the winners' bracket, ⌊K/2⌋ − 1 in the losers' bracket and the final, K + ⌊K/2⌋ − 1 in all
    (3K/2 − 1 for K even: 11 for K = 8; 6 for K = 5)."""
    check_candidates("tournament", candidates)
    return candidates + candidates // 2 - 1


def best_second_comparisons(candidates: int) -> tuple[tuple[int, int], ...]:
    """The judge calls of COMAL's pair choice over ``candidates`` = K ≥ 2 seats: every ordered pair ``(i, j)``,
    i ≠ j, seat i shown first, in ``yale-nlp/COMAL`` ``scoring.py::__pairwise``'s order (for i, for j ≠ i) —
    K(K−1) queries per pair (20 for COMAL's K = 5), the same seats judged in both orders; two seats that hold
    the same response are judged too."""
    check_candidates("best_second_by_win_rate", candidates)
    return tuple((i, j) for i in range(candidates) for j in range(candidates) if i != j)


def best_second_pair(judged: Any, same: Any, priority: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    """COMAL's training pair among K candidates, best vs **second best** — one definition, run by sampled mode
    (``xp`` = ``jax.numpy``) and the bridge (``xp`` = ``numpy``).

    From ``yale-nlp/COMAL`` at fd3c51e (read, not copied): ``scoring.py::__pairwise`` asks the pairwise judge
    about every ordered pair of the K samples (:func:`best_second_comparisons`), and
    ``data_processing.py::_make_output_pair_from_pm`` appends the judge's probability of the first response
    (``score_1``, the softmax of its ``a``/``b`` log-probabilities) to the first response's list and
    ``score_2`` = 1 − ``score_1`` to the second's, keyed by the response *text*: identical samples are one
    candidate (``set`` of texts) and its list holds every comparison of every copy, self-comparisons
    included.  Each distinct candidate c is scored by the mean of its list; candidates are sorted by score,
    descending, and chosen = ``candidates[0]``, rejected = ``candidates[1]``; with fewer than two distinct
    candidates the prompt gives no pair.  Writing q_ij for the judge's probability with seat i first and
    t_i = Σ_{j≠i} (q_ij + 1 − q_ji), the score of c is Σ_{i: y_i = c} t_i / (2(K−1)·m_c) with m_c its
    copies; for a judge with q_ij = P(y_i ≻ y_j) it is (Σ_j P(c ≻ y_j) − ½)/(K−1), so the ranking is that of
    the win rate against the K samples.  Not modelled: the length filter (candidates over ``max_len``
    tokens are dropped first) and failed parses of the judge's answer.

    Ties: ``sorted`` is stable and the candidates come in the iteration order of a Python ``set`` of strings
    (hash order, random per process), so tied candidates are ranked in a uniformly random order here:
    ``priority`` (distinct values in [0, 1)) orders the tied ones, the larger first.  Scores within
    2K²·ε of the best (ε the dtype's machine epsilon: the rounding of the sums, not a preference) are tied.

    Args:
      judged: (N, K, K) q_ij, the judge's probability that seat i's response beats seat j's, shown first
        (the diagonal is not read).
      same: (N, K, K) bool, whether seats i and j hold the same response (true on the diagonal).
      priority: (N, K) the tie order of the seats (a seat's copies take its first seat's).
      xp: the array module, ``numpy`` or ``jax.numpy``.

    Returns:
      ``(chosen, rejected, keep, score)``: chosen and rejected seats (N,) (each the first seat of its
      response), whether the pair exists (N,) (two distinct candidates at least) and every seat's candidate
      score (N, K).
    """
    k = judged.shape[-1]
    other = ~xp.eye(k, dtype=bool)
    per_seat = xp.sum(xp.where(other, judged + 1.0 - xp.swapaxes(judged, -1, -2), 0.0), axis=-1)
    score = xp.sum(xp.where(same, per_seat[..., None, :], 0.0), axis=-1) / (2 * (k - 1) * xp.sum(same, axis=-1))
    first_seat = ~xp.any(same & xp.tril(xp.ones((k, k), dtype=bool), -1), axis=-1)
    tolerance = 2 * k * k * xp.finfo(score.dtype).eps
    chosen = _top(score, priority, first_seat, tolerance, xp)
    remaining = first_seat & ~xp.take_along_axis(same, chosen[..., None, None], axis=-2)[..., 0, :]
    rejected = _top(score, priority, remaining, tolerance, xp)
    return chosen, rejected, xp.any(remaining, axis=-1), score


def _top(score: Any, priority: Any, eligible: Any, tolerance: float, xp: Any) -> Any:
    """The eligible seat of the highest score, the one of the highest priority among those tied with it."""
    best = xp.max(xp.where(eligible, score, -xp.inf), axis=-1, keepdims=True)
    tied = eligible & (score >= best - tolerance)
    return xp.argmax(xp.where(tied, priority, -1.0), axis=-1)
