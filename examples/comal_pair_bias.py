"""COMAL's pair choice on bandits: where the rule lands with best vs second-best pairs, against λ_p pairs.

docs/theory.md §F.1.  Rule ``comal`` (INPO, η = 3τ, reference moved to π_t every 12 iterations), τ = 0.1, T = 96
iterations, on three games: COMAL's three-action game, a 5-action cyclic game from a random π_0 and random 5-action
games (a new game per seed).  Exact mode runs the exact update; sampled mode trains a tabular policy (Adam, lr 0.1,
100 inner steps) on N pairs per iteration drawn by ``lambda_p`` (Proposition 6: the loss's population minimiser
is the exact update) or ``best_second_by_win_rate`` (COMAL's pipeline, K = 5 candidates), each at N = 1000 and
4000.  Printed per game: the last iterate's exploitability and KL to the unregularised Nash, their paired
differences (best_second − λ_p, λ_p − exact) with 95% bootstrap intervals over seeds, and ``distance_to_exact``
(max |log π_{t+1} − log of the exact update from the same π_t|) averaged over the recorded t > 0 per seed, with
its interval: λ_p's falls like N^{−1/2}, a population bias does not.

    python examples/comal_pair_bias.py            # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import sys
import warnings

import pandas as pd

import sim
from sim import stats

ITERATIONS, SEEDS, PAIRS, TAU = 96, 10, (1000, 4000), 0.1
SCHEMES = ("lambda_p", "best_second_by_win_rate")
GAMES = {
    "COMAL's 3-action game": {"kind": "matrix", "preference": [[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]]},
    "cyclic, 5 actions, random π_0": {"kind": "cyclic", "arms": 5, "initial": "random"},
    "random, 5 actions": {"kind": "random", "arms": 5},
}
METRICS = ("exploitability", "kl_to_unregularised_nash")


def game_table(game: dict) -> pd.DataFrame:
    """Every run on ``game``, rule column ``exact`` or ``<scheme>@<N>``."""
    base = {
        "iterations": ITERATIONS,
        "seeds": SEEDS,
        "record_every": ITERATIONS // 8,
        "game": {**game, "tau": TAU},
        "rule": [{"name": "comal"}],
    }
    frames = [sim.run({**base, "run": {"mode": "exact"}}).assign(rule="exact")]
    for pairs in PAIRS:
        for scheme in SCHEMES:
            run = {
                "mode": "sampled",
                "pairs_per_iteration": pairs,
                "pair_scheme": scheme,
                "optimizer": "adam",
                "learning_rate": 0.1,
                "inner_steps": 100,
                **({"candidates": 5} if scheme != "lambda_p" else {}),
            }
            frames.append(sim.run({**base, "run": run}).assign(rule=f"{scheme}@{pairs}"))
    return pd.concat(frames, ignore_index=True)


def interval(value: float, lower: float, upper: float) -> str:
    return f"{value:.3g} [{lower:.3g}, {upper:.3g}]"


def report(name: str, table: pd.DataFrame) -> None:
    print(f"\n{name}")
    last = table[table.iteration == ITERATIONS].groupby("rule")[list(METRICS)].mean()
    print(last.to_string(float_format=lambda v: f"{v:.3g}"))
    for pairs in PAIRS:
        for metric in METRICS:
            for a, b in ((f"{SCHEMES[1]}@{pairs}", f"{SCHEMES[0]}@{pairs}"), (f"{SCHEMES[0]}@{pairs}", "exact")):
                d = stats.paired_difference(table, metric, a, b, iteration=ITERATIONS).iloc[0]
                print(f"  {metric}, {a} − {b}: {interval(d.difference, d.difference_lower, d.difference_upper)}")
    sampled = table[(table.iteration > 0) & (table.rule != "exact")]
    per_seed = sampled.groupby(["rule", "seed"]).distance_to_exact.mean()
    for rule, values in per_seed.groupby(level="rule"):
        print(f"  distance_to_exact, {rule}: {interval(*stats.bootstrap_ci(values.to_numpy()))}")


def main() -> None:
    warnings.simplefilter("ignore")  # few seeds and a biased scheme: the runs say so; the numbers are the point
    for name, game in GAMES.items():
        report(name, game_table(game))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
