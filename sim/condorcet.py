"""How often a random game has a Condorcet winner (a pure unregularised Nash policy), as a function of K.

An arm i is a **Condorcet winner** when P[i, j] > ½ for every j ≠ i; then the point mass on i is the
unique Nash policy of the symmetric game (:func:`sim.nash.condorcet_winner`), every τ-regularised
target tends to it as τ → 0, and preference optimisation has a "best response" to find instead of
a mixed equilibrium.  (A pure Nash policy e_i exists iff P[i, j] ≥ ½ for all j, a *weak* Condorcet
winner; for the continuous random constructions below ties have probability 0, so the two agree
almost surely.)

:func:`condorcet_frequency` estimates, by Monte Carlo over seeds, the probability that the game a
``[game]`` table builds (:func:`bandits.games.build_game`, seed by seed, exactly the games a run
uses) has a Condorcet winner, with a Wilson score interval for the binomial proportion.
:data:`CONSTRUCTIONS` names bandits' random constructions; :func:`exact_condorcet_probability`
gives the closed forms where they exist:

* ``random`` with ``lower_triangle`` or ``skew_logits``: each pair's winner is an independent fair
  coin (U[0,1] > ½, resp. a symmetric Gaussian logit > 0), so the majority graph is a uniformly random
  tournament, whose Condorcet winner events are disjoint, each of probability 2^{−(K−1)}:
  Pr = K / 2^{K−1} (:func:`tournament_condorcet_count` checks it by enumerating all tournaments);
* ``bradley_terry`` with random rewards: always 1 (argmax r, unique a.s.);
* ``bt_mixture`` with random rewards and **two equally weighted** components: always 1, because
  ½σ(x) + ½σ(y) > ½ ⟺ σ(x) > σ(−y) ⟺ x + y > 0, so i beats j by majority iff r_1(i) + r_2(i) >
  r_1(j) + r_2(j): the majority relation is transitive and argmax (r_1 + r_2) is the Condorcet winner
  (the mixture's probabilities themselves are not those of a Bradley–Terry model);
* ``bt_mixture`` with three or more components (or unequal weights): no closed form; the Condorcet
  paradox (:mod:`bandits.preference`) shows a winner can be missing.

:func:`plot_condorcet_frequency` draws the estimates against K; ``docs/condorcet_frequency.png`` is
``plot_condorcet_frequency(condorcet_frequencies(range(2, 11), 2000), "docs/condorcet_frequency.png")``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: bandits' random constructions: name → the ``[game]`` fields besides ``arms``.
CONSTRUCTIONS = {
    "random (lower_triangle)": {"kind": "random", "construction": "lower_triangle"},
    "random (skew_logits)": {"kind": "random", "construction": "skew_logits"},
    "bradley_terry (random rewards)": {"kind": "bradley_terry", "rewards": "random"},
    "bt_mixture (2 random BT, scale 5)": {
        "kind": "bt_mixture",
        "rewards": "random",
        "components": 2,
        "reward_scale": 5.0,
    },
    "bt_mixture (3 random BT, scale 5)": {
        "kind": "bt_mixture",
        "rewards": "random",
        "components": 3,
        "reward_scale": 5.0,
    },
}
#: z-quantile of the two-sided 95% interval.
Z_95 = 1.959963984540054


def has_condorcet_winner(preference: ArrayLike) -> bool:
    """Whether some arm i has P[i, j] > ½ for every j ≠ i."""
    beats = np.asarray(preference, dtype=np.float64) > 0.5
    np.fill_diagonal(beats, True)
    return bool(beats.all(axis=1).any())


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927): centre (p̂ + z²/2n)/(1 + z²/n),
    half-width z·√(p̂(1 − p̂)/n + z²/4n²)/(1 + z²/n).  Unlike p̂ ± z·se it stays inside [0, 1] and is
    not degenerate at p̂ ∈ {0, 1} (there it is [0, z²/(n + z²)] resp. its mirror)."""
    if isinstance(trials, bool) or not isinstance(trials, numbers.Integral) or trials < 1:
        raise PrefsimError(f"trials: need an integer number of samples ≥ 1, got {trials!r}.")
    if isinstance(successes, bool) or not isinstance(successes, numbers.Integral) or not 0 <= successes <= trials:
        raise PrefsimError(f"successes: need an integer from 0 to trials = {trials}, got {successes!r}.")
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass(frozen=True)
class CondorcetEstimate:
    """Monte Carlo estimate of Pr(Condorcet winner) for one construction and K."""

    construction: str
    arms: int
    samples: int
    hits: int
    low: float
    """Wilson 95% interval, lower end."""
    high: float
    """Wilson 95% interval, upper end."""

    @property
    def estimate(self) -> float:
        return self.hits / self.samples


def condorcet_frequency(construction: str, arms: int, samples: int = 1000, first_seed: int = 0) -> CondorcetEstimate:
    """Fraction of seeds ``first_seed … first_seed + samples − 1`` whose game has a Condorcet winner.

    ``construction`` is a key of :data:`CONSTRUCTIONS`; each seed's game is ``build_game`` of that
    ``[game]`` table with ``arms`` arms, so the games are those a run with these seeds would use.
    """
    if construction not in CONSTRUCTIONS:
        raise PrefsimError(f"construction: unknown {construction!r}; choose one of {', '.join(CONSTRUCTIONS)}.")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise PrefsimError(f"samples: expected an integer ≥ 1, got {samples!r}.")
    spec = GameSpec(arms=arms, **CONSTRUCTIONS[construction]).validate()
    hits = sum(
        has_condorcet_winner(build_game(spec, seed).preference) for seed in range(first_seed, first_seed + samples)
    )
    low, high = wilson_interval(hits, samples)
    return CondorcetEstimate(construction, int(arms), samples, int(hits), low, high)


def condorcet_frequencies(
    arms: Iterable[int], samples: int = 1000, constructions: Iterable[str] | None = None
) -> list[CondorcetEstimate]:
    """:func:`condorcet_frequency` for every K in ``arms`` and every construction (default: all of
    :data:`CONSTRUCTIONS`); the input of :func:`plot_condorcet_frequency`."""
    names = list(CONSTRUCTIONS) if constructions is None else list(constructions)
    return [condorcet_frequency(name, int(k), samples) for name in names for k in arms]


def exact_condorcet_probability(construction: str, arms: int) -> float:
    """The closed form of Pr(Condorcet winner) (see the module docstring), NaN where there is none."""
    if construction not in CONSTRUCTIONS:
        raise PrefsimError(f"construction: unknown {construction!r}; choose one of {', '.join(CONSTRUCTIONS)}.")
    fields = CONSTRUCTIONS[construction]
    if fields["kind"] == "random":
        return arms / 2.0 ** (arms - 1)
    if fields["kind"] == "bradley_terry":
        return 1.0
    if fields.get("components") == 2 and fields.get("weights") is None:
        return 1.0
    return float("nan")


def tournament_condorcet_count(arms: int) -> tuple[int, int]:
    """``(tournaments with a Condorcet winner, all tournaments)`` on ``arms`` players, by enumerating
    all 2^{K(K−1)/2} orientations of the pairs (feasible for K ≤ 6)."""
    if arms > 6:
        raise PrefsimError(f"arms: enumerating tournaments is feasible for K ≤ 6, got {arms}.")
    pairs = list(itertools.combinations(range(arms), 2))
    with_winner = 0
    for orientation in itertools.product((False, True), repeat=len(pairs)):
        wins = np.zeros(arms, dtype=int)
        for (i, j), j_wins in zip(pairs, orientation):
            wins[j if j_wins else i] += 1
        with_winner += int(wins.max() == arms - 1)
    return with_winner, 2 ** len(pairs)


def plot_condorcet_frequency(estimates: Iterable[CondorcetEstimate], path: str | Path | None = None) -> Figure:
    """Pr(Condorcet winner) against K: one line per construction with its Wilson 95% band, the
    closed forms dashed where they exist; legend outside the axes.  Returns the figure (and writes a
    PNG when ``path`` is given)."""
    from sim.plotting import curve_styles, new_figure, save_figure  # matplotlib is imported lazily (start-up speed)

    figure, axes = new_figure((9.0, 4.2))
    estimates = list(estimates)
    names = list(dict.fromkeys(e.construction for e in estimates))
    styles = curve_styles(names)  # one colour per construction (each is its own "family")
    for name in names:
        colour = styles[name]["color"]
        rows = sorted((e for e in estimates if e.construction == name), key=lambda e: e.arms)
        arms = np.array([e.arms for e in rows])
        samples = rows[0].samples
        axes.plot(arms, [e.estimate for e in rows], "o-", color=colour, label=f"{name} (n = {samples})")
        axes.fill_between(arms, [e.low for e in rows], [e.high for e in rows], color=colour, alpha=0.2, lw=0)
        exact = np.array([exact_condorcet_probability(name, int(k)) for k in arms])
        if np.all(np.isfinite(exact)):
            axes.plot(arms, exact, "--", color=colour, lw=1)
    axes.plot([], [], "k--", lw=1, label="closed form (K/2^(K−1); 1 for BT and 2 equal BT)")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("arms K")
    axes.set_ylabel("Pr(Condorcet winner)")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title("Random games with a Condorcet winner (95% Wilson bands)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    if path is not None:
        save_figure(figure, path)
    return figure
