"""Sampled mode converges to exact mode as the pairs per iteration grow: error ∝ N^{-1/2}.

For each rule and policy class, one sampled iteration (:func:`sim.sampled.engine.build_iteration`)
is run from π_0 with N ∈ {400, 6400} pairs over 32 seeds, its loss minimised by SGD to a gradient
tolerance so the optimisation error is negligible next to the sampling error.  The error is the
iteration's ``distance_to_exact`` (max-abs log-probability difference between the sampled proximal
output and the exact population update applied to the same π_t).  The log-log slope of the mean
error against N, with a seed-bootstrap 95% interval, must contain −1/2 with an interval narrower
than 0.4 (a biased estimator has a slope near 0 and fails; see the DNO control).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
import pytest
from rate_fit import slope_and_interval

import sim
from sim.diagnostics import DegenerateRunWarning
from sim.rules import RULES
from sim.rules.catalogue import accepted_schemes
from sim.sampled.engine import build_iteration
from sim.sampled.experiment import build_sampled_inputs
from sim.spec import parse_spec

PAIRS = (400, 6400)
SEEDS = 32


def _distances(game: dict, rule: dict, run: dict, pairs=PAIRS) -> np.ndarray:
    """(len(pairs), SEEDS) distances to exact after one sampled iteration from π_0."""
    table = {"mode": "sampled", "optimizer": "sgd", "inner_steps": 3000, "tolerance": 1e-9, **run}
    spec = parse_spec({"iterations": 1, "seeds": SEEDS, "game": game, "rule": [rule], "run": table})
    inputs = build_sampled_inputs(spec)
    rule_spec = spec.rules[0]
    out = []
    for count in pairs:
        settings = dataclasses.replace(spec.run, pairs_per_iteration=count)
        init, iteration = build_iteration(rule_spec.name, rule_spec.parameters, settings)

        def one(problem, key, init=init, iteration=iteration):
            state = init(key, problem)
            _, info = iteration(state, problem, key)
            return info.distance_to_exact

        out.append(np.asarray(jax.jit(jax.vmap(one, in_axes=(inputs.axes, 0)))(inputs.problems, inputs.keys)))
    return np.stack(out)


def _assert_root_n(label: str, errors: np.ndarray):
    assert np.all(np.isfinite(errors)), label
    fitted, (low, high) = slope_and_interval(errors, PAIRS)
    assert low <= -0.5 <= high, f"{label}: slope {fitted:.3f}, 95% CI [{low:.3f}, {high:.3f}] excludes −1/2"
    assert high - low < 0.4, f"{label}: slope CI [{low:.3f}, {high:.3f}] too wide to test anything"
    assert errors[-1].mean() < 0.1, f"{label}: error at N = {PAIRS[-1]} is {errors[-1].mean():.3g}"


RANDOM_GAME = {"kind": "random", "arms": 5, "tau": 0.5, "reference": "random", "reference_min_mass": 0.05}
BT_GAME = {"kind": "bradley_terry", "rewards": [0.0, 0.5, 1.0, 1.5], "tau": 0.0, "reference": [0.4, 0.3, 0.2, 0.1]}
TABULAR = {"policy": "tabular", "learning_rate": 1.0}


def test_tabular_inpo_converges_at_root_n():
    _assert_root_n("inpo", _distances(RANDOM_GAME, {"name": "inpo", "eta": 2.0, "tau": 0.5}, TABULAR))


def test_tabular_online_ipo_converges_at_root_n():
    _assert_root_n("online_ipo", _distances(RANDOM_GAME, {"name": "online_ipo", "tau": 0.5}, TABULAR))


def test_tabular_sppo_paper_converges_at_root_n():
    # the sampled per-response loss's population argmin is the η/2-target update (normaliser = paper)
    _assert_root_n("sppo", _distances(RANDOM_GAME, {"name": "sppo", "eta": 1.0, "normaliser": "paper"}, TABULAR))


def test_tabular_dpo_converges_at_root_n():
    _assert_root_n(
        "dpo", _distances(BT_GAME, {"name": "dpo", "beta": 1.0}, {"policy": "tabular", "learning_rate": 2.0})
    )


def test_tabular_apo_inpo_proximal_step_converges_at_root_n():
    rule = {"name": "apo", "base": "inpo", "eta": 2.0, "tau": 0.5, "alpha": 0.3}
    _assert_root_n("apo", _distances(RANDOM_GAME, rule, TABULAR))


def test_log_linear_preference_game_inpo_converges_at_root_n():
    run = {"policy": "log_linear", "problem": "linear_preference_game", "feature_dim": 3, "learning_rate": 0.2}
    _assert_root_n("inpo", _distances({"arms": 8, "tau": 0.5}, {"name": "inpo", "eta": 2.0, "tau": 0.5}, run))


def test_log_linear_contextual_bradley_terry_dpo_converges_at_root_n():
    run = {
        "policy": "log_linear",
        "problem": "linear_bradley_terry",
        "feature_dim": 3,
        "contexts": 2,
        "learning_rate": 1.0,
    }
    _assert_root_n("dpo", _distances({"arms": 8, "tau": 0.0}, {"name": "dpo", "beta": 1.0}, run))


def test_dno_exact_win_rates_is_exact_at_any_n_and_one_comparison_labels_are_biased():
    """DNO's soft-label regression with exact win rates is realisable pair by pair, so any N gives the
    exact update; with one-comparison λ_p labels σ(Δr̂) is biased and the error does not fall."""
    rule = {"name": "dno", "eta": 1.0}
    exact = _distances(
        RANDOM_GAME, rule, {"policy": "tabular", "learning_rate": 4.0, "pair_scheme": "exact_win_rates"}, pairs=(400,)
    )
    assert exact.max() < 1e-6
    biased = _distances(RANDOM_GAME, rule, {"policy": "tabular", "learning_rate": 4.0})
    fitted, _ = slope_and_interval(biased, PAIRS)
    assert fitted > -0.2, f"biased DNO should plateau, slope {fitted:.3f}"
    assert biased[-1].mean() > 0.05


def test_a_dno_run_with_estimated_win_rates_warns_that_its_loss_is_biased():
    """The default λ_p scheme gives DNO one comparison per response: the run says its soft label is biased
    (what the test above measures); exact win rates give no such warning."""
    spec = {
        "iterations": 2,
        "seeds": 1,
        "game": RANDOM_GAME,
        "rule": [{"name": "dno", "eta": 1.0}],
        "run": {"mode": "sampled", "pairs_per_iteration": 50, "inner_steps": 5},
    }
    with pytest.warns(DegenerateRunWarning, match="soft label .* 'lambda_p'.* 'exact_win_rates' trains the exact"):
        sim.run(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateRunWarning)
        sim.run({**spec, "run": {**spec["run"], "pair_scheme": "exact_win_rates"}})
    said = [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]
    assert said and not any("soft label" in message for message in said)  # only the one-seed note


@pytest.mark.parametrize(
    "rule", [{"name": "sppo", "eta": 1.0}, {"name": "apo", "base": "sppo", "eta": 1.0, "alpha": 0.3}]
)
def test_a_sppo_run_with_the_exact_normaliser_warns_that_its_loss_trains_the_paper_step(rule):
    """SPPO's loss targets η(P̂ − ½): its population minimiser is the normaliser = "paper" step (the test
    above), while the default normaliser = "exact" is the Hedge step, which distance_to_exact then measures
    against; the run says so (also through APO), and says nothing with normaliser = "paper"."""
    spec = {
        "iterations": 2,
        "seeds": 1,
        "game": RANDOM_GAME,
        "rule": [rule],
        "run": {"mode": "sampled", "pairs_per_iteration": 50, "inner_steps": 5},
    }
    with pytest.warns(DegenerateRunWarning, match="normaliser = 'paper' step as its population minimiser"):
        sim.run(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateRunWarning)
        sim.run({**spec, "rule": [{**rule, "normaliser": "paper"}]})
    assert not any("population minimiser" in str(w.message) for w in caught)


def test_the_catalogue_lists_only_the_schemes_a_loss_can_read():
    """Pairwise losses need ordered pairs (not exact_win_rates' or uniform_opponent's two draws); SPPO and
    DNO need win rates of responses drawn from π_t (not uniform_opponent's)."""
    inpo = accepted_schemes(RULES["inpo"], "sampled")
    sppo = accepted_schemes(RULES["sppo"], "sampled")
    assert "lambda_p" in inpo and "exact_win_rates" not in inpo and "uniform_opponent" not in inpo
    assert "exact_win_rates" in sppo and "uniform_opponent" not in sppo and "tournament" not in sppo
