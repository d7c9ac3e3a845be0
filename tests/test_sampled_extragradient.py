"""Extragradient (EGPO) and optimistic MD (ONPO) in sampled mode: two proximal stages per iteration.

Each stage minimises the mirror-step loss (h − target)² with anchor π_t on its own pairs; its population
minimiser is U(ℓ_t; μ) = (1 − ητ)ℓ_t + ητℓ_ref + ηPμ for pairs from μ.  Extragradient draws the half
step's pairs from π_t and the full step's from π_{t+½} (2 draws per iteration); optimistic MD trains its
leading step on the pairs drawn last iteration from π̄_t and its main step on fresh pairs from π̄_{t+1},
which it keeps (1 draw per iteration, plus one before the first update).  Checked: the sampled iteration
approaches the exact update like N^{-1/2} for both estimators (EGPO's Online-IPO form on λ_p pairs and
its uniform-pair estimator), the query counts, and the exact counterpart.
"""

import numpy as np
import pytest
from test_sampled_convergence import RANDOM_GAME, TABULAR, _assert_root_n, _distances

import sim
from bandits.errors import PrefsimError


@pytest.mark.parametrize("name", ["extragradient", "optimistic"])
@pytest.mark.parametrize("estimator", ["ipo", "uniform"])
def test_two_stage_sampled_iterations_approach_the_exact_update_at_root_n(name, estimator):
    rule = {"name": name, "eta": 0.8, "tau": 0.5, "estimator": estimator}
    _assert_root_n(f"{name}/{estimator}", _distances(RANDOM_GAME, rule, TABULAR))


@pytest.mark.parametrize(
    "name, estimator, per_iteration, up_front",
    [
        ("extragradient", "ipo", 2, 0),  # two fresh λ_p draws of N pairs, 1 query each
        ("extragradient", "uniform", 4, 0),  # two draws, 2 queries per pair
        ("optimistic", "ipo", 1, 1),  # one fresh draw, plus the π_0 draw bought before t = 0
        ("optimistic", "uniform", 2, 2),
    ],
)
def test_queries_count_every_stage(name, estimator, per_iteration, up_front):
    pairs = 50
    spec = {
        "iterations": 3,
        "seeds": 2,
        "record_every": 1,
        "game": RANDOM_GAME,
        "rule": [{"name": name, "eta": 0.8, "tau": 0.5, "estimator": estimator}],
        "run": {"mode": "sampled", "pairs_per_iteration": pairs, "inner_steps": 5, "learning_rate": 0.1},
    }
    table = sim.run(spec)
    seed0 = table[table.seed == 0].sort_values("iteration")
    expected = [0] + [t * per_iteration * pairs + up_front * pairs for t in (1, 2, 3)]
    assert list(seed0["queries"]) == expected


def test_two_stage_rules_refuse_what_they_cannot_do():
    base = {"iterations": 2, "game": RANDOM_GAME}
    with pytest.raises(PrefsimError, match="samples its own pairs"):
        sim.parse_spec(
            {**base, "rule": [{"name": "extragradient"}], "run": {"mode": "sampled", "pair_scheme": "tournament"}}
        )
    with pytest.raises(PrefsimError, match="offline"):
        sim.parse_spec({**base, "rule": [{"name": "optimistic"}], "run": {"mode": "sampled", "data": "offline"}})
    from llm_bridge.rules import build_bridge_rule

    with pytest.raises(PrefsimError, match="sampled mode only"):  # the bridge has no uniform draw over sequences
        build_bridge_rule("extragradient", {"estimator": "uniform"})


def test_the_estimator_does_not_change_the_exact_update():
    base = {"iterations": 20, "seeds": 2, "game": RANDOM_GAME}
    one = sim.run({**base, "rule": [{"name": "optimistic", "eta": 0.8, "estimator": "ipo"}]})
    other = sim.run({**base, "rule": [{"name": "optimistic", "eta": 0.8, "estimator": "uniform"}]})
    columns = [c for c in one.columns if c != "rule"]
    np.testing.assert_array_equal(one[columns].to_numpy(float), other[columns].to_numpy(float))
