"""Offline preference data in sampled mode (``[run] data = "offline"``, docs/theory.md §D.10,
:mod:`sim.sampled.offline`).

* The offline tabular IPO minimiser (solved to a gradient tolerance) approaches BR_τ(π_ref) like
  N^{-1/2} (seed-bootstrap CI of the log-log slope contains −1/2), and stays away from π*_τ.
* The population argmin of the INPO loss on pairs from π_ref, found by direct numerical minimisation
  of the λ_p-labelled population loss (NumPy/SciPy, independent of the engine), is the INPO step with
  π_ref in place of π_t inside P·(·) — and not the online step (Eq. 5).
* The ``queries`` column counts the dataset's labels once; the dataset is drawn once per seed and
  reused (tolerance-solved offline IPO has the same loss at every iteration; offline INPO converges
  to the offline IPO minimiser of the same dataset).
* Bad input is a one-paragraph PrefsimError naming the field (and, via the CLI, exit 2 with ``error:``).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rate_fit import slope_and_interval
from scipy.optimize import minimize

import sim
from bandits.errors import PrefsimError
from sim.rules import RULES
from sim.sampled.engine import build_iteration
from sim.sampled.experiment import build_sampled_inputs
from sim.sampled.offline import offline_exact_proximal
from sim.sampled.problem import problem_from_arrays
from sim.spec import parse_spec

PAIRS = (400, 6400)
SEEDS = 32
TAU = 0.5
RANDOM_GAME = {"kind": "random", "arms": 5, "tau": TAU, "reference": "random", "reference_min_mass": 0.05}
SOLVE = {
    "mode": "sampled",
    "data": "offline",
    "policy": "tabular",
    "optimizer": "sgd",
    "learning_rate": 1.0,
    "inner_steps": 3000,
    "tolerance": 1e-9,
}


def _one_offline_iteration(game: dict, rule: dict, pairs=PAIRS):
    """(len(pairs), SEEDS) arrays: distance to the offline exact counterpart, and to π*_τ, after one iteration."""
    spec = parse_spec({"iterations": 1, "seeds": SEEDS, "game": game, "rule": [rule], "run": SOLVE})
    inputs = build_sampled_inputs(spec)
    rule_spec = spec.rules[0]
    to_exact, to_nash = [], []
    for count in pairs:
        settings = dataclasses.replace(spec.run, offline_pairs=count)
        init, iteration = build_iteration(rule_spec.name, rule_spec.parameters, settings)

        def one(problem, key, init=init, iteration=iteration):
            state, info = iteration(init(key, problem), problem, key)
            return info.distance_to_exact, jnp.max(jnp.abs(state.log_policy - jnp.log(problem.target)))

        exact, nash = jax.jit(jax.vmap(one, in_axes=(inputs.axes, 0)))(inputs.problems, inputs.keys)
        to_exact.append(np.asarray(exact))
        to_nash.append(np.asarray(nash))
    return np.stack(to_exact), np.stack(to_nash), inputs


def _exact_best_response_to_reference(problems, tau):
    """max_y |log BR_τ(π_ref)(y) − log π*_τ(y)| per seed, from the (possibly shared) problems (NumPy)."""
    preference = np.asarray(problems.preference).reshape(-1, *problems.preference.shape[-2:])
    log_reference = np.asarray(problems.log_reference).reshape(-1, problems.log_reference.shape[-1])
    logits = log_reference + np.einsum("sij,sj->si", preference, np.exp(log_reference)) / tau
    log_br = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    log_nash = np.log(np.asarray(problems.target).reshape(-1, problems.target.shape[-1]))
    return np.max(np.abs(log_br - log_nash), axis=1)


#: The c = 1 three-cycle with a skewed reference: BR_τ(π_ref) is 0.66 (max-abs log-probability) from π*_τ.
CYCLE = {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": 0.2, "reference": [0.5, 0.3, 0.2]}


def test_offline_ipo_minimiser_approaches_best_response_to_reference_at_root_n():
    to_br, to_nash, _ = _one_offline_iteration(RANDOM_GAME, {"name": "online_ipo", "tau": TAU})
    assert np.all(np.isfinite(to_br)) and np.all(np.isfinite(to_nash))
    fitted, (low, high) = slope_and_interval(to_br, PAIRS)
    assert low <= -0.5 <= high, f"slope {fitted:.3f}, 95% CI [{low:.3f}, {high:.3f}] excludes −1/2"
    assert high - low < 0.4, f"slope CI [{low:.3f}, {high:.3f}] too wide to test anything"
    assert to_br[-1].mean() < 0.1


def test_offline_ipo_limit_is_the_best_response_to_reference_not_the_nash_policy():
    to_br, to_nash, inputs = _one_offline_iteration(CYCLE, {"name": "online_ipo", "tau": 0.2}, pairs=(400, 6400))
    exact = _exact_best_response_to_reference(inputs.problems, 0.2)
    assert exact.min() > 0.5, f"BR_τ(π_ref) should be far from π*_τ on the 3-cycle, distance {exact.min():.3g}"
    # the sampled minimiser closes in on BR_τ(π_ref) and stays at BR_τ(π_ref)'s distance from π*_τ
    assert to_br[1].mean() < 0.5 * to_br[0].mean() and to_br[1].mean() < 0.15
    assert to_nash[1].mean() > 4.0 * to_br[1].mean()
    assert abs(to_nash[1].mean() - exact.mean()) < 0.15, (to_nash[1].mean(), exact.mean())


@pytest.mark.parametrize("rule", [{"name": "inpo", "eta": 2.0}, {"name": "mmd", "eta": 0.8}], ids=["inpo", "mmd"])
def test_offline_inpo_from_a_random_policy_approaches_its_offline_counterpart_at_root_n(rule):
    # π_0 random ≠ π_ref, so the offline counterpart (Pπ_ref inside) differs from the online INPO step (Pπ_0);
    # MMD's loss is INPO's at η_INPO = τ + 1/η, its counterpart the MMD step with Pπ_ref
    game = {**RANDOM_GAME, "initial": "random"}
    to_exact, _, _ = _one_offline_iteration(game, {**rule, "tau": TAU})
    fitted, (low, high) = slope_and_interval(to_exact, PAIRS)
    assert low <= -0.5 <= high, f"slope {fitted:.3f}, 95% CI [{low:.3f}, {high:.3f}] excludes −1/2"
    assert high - low < 0.4
    assert to_exact[-1].mean() < 0.05


def _population_loss(theta, preference, log_reference, log_previous, mu, eta, tau):
    """E_{y,y′~μ i.i.d., (y_w,y_l)~λ_p}[(h_t(π, y_w, y_l) − 1/(2η))²] written out over all K² draws (NumPy).

    For the draw (y, y′) the oracle says y wins with probability P[y, y′] (then (y_w, y_l) = (y, y′)),
    else y′ wins.  π = softmax θ; with η = τ this is the IPO loss.
    """
    log_policy = theta - np.log(np.exp(theta).sum())
    g = log_policy - (tau / eta) * log_reference - ((eta - tau) / eta) * log_previous
    h = g[:, None] - g[None, :]  # h[y, y′] = h_t(π, y, y′)
    target = 1.0 / (2.0 * eta)
    per_draw = preference * (h - target) ** 2 + preference.T * (-h - target) ** 2
    return float(np.sum(mu[:, None] * mu[None, :] * per_draw))


def _random_instance(seed: int, arms: int = 5):
    rng = np.random.default_rng(seed)
    upper = rng.uniform(0.0, 1.0, (arms, arms))
    preference = np.triu(upper, 1) + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(arms)
    reference = rng.dirichlet(np.ones(arms)) * 0.9 + 0.1 / arms
    previous = rng.dirichlet(np.ones(arms))
    return preference, np.log(reference), np.log(previous)


def _normalise(v):
    return v - np.log(np.exp(v - v.max()).sum()) - v.max()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule, eta", [("inpo", 0.8), ("inpo", 3.0), ("online_ipo", None)])
def test_offline_population_argmin_is_the_step_against_the_reference(seed, rule, eta):
    tau = 0.3
    preference, log_reference, log_previous = _random_instance(seed)
    eta_used = tau if rule == "online_ipo" else eta
    mu = np.exp(log_reference)  # offline data: pairs from π_ref

    def objective(theta):
        return _population_loss(theta, preference, log_reference, log_previous, mu, eta_used, tau)

    found = minimize(
        objective, np.zeros(preference.shape[0]), method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000}
    )
    numeric = _normalise(found.x)
    problem = problem_from_arrays(
        preference, np.zeros((preference.shape[0], 0)), reference=np.exp(log_reference), tau=tau
    )
    parameters = {"tau": tau} if rule == "online_ipo" else {"eta": eta, "tau": tau, "schedule": "constant"}
    claimed = np.asarray(offline_exact_proximal(rule, parameters, problem, jnp.asarray(log_previous)[None], 0))[0]
    assert np.max(np.abs(numeric - claimed)) < 1e-6, (numeric, claimed)
    # the closed form: log π = (1 − τ/η)ℓ_t + (τ/η)ℓ_ref + Pπ_ref/η − norm (η = τ: BR_τ(π_ref))
    formula = _normalise(
        (1 - tau / eta_used) * log_previous + (tau / eta_used) * log_reference + preference @ mu / eta_used
    )
    assert np.max(np.abs(formula - claimed)) < 1e-12
    # ... which is not the online step of Eq. (5) (P against π_t), nor, for INPO, BR_τ(π_ref)
    online = _normalise(
        (1 - tau / eta_used) * log_previous
        + (tau / eta_used) * log_reference
        + preference @ np.exp(log_previous) / eta_used
    )
    assert np.max(np.abs(online - numeric)) > 0.02
    if rule == "inpo":
        best_response = _normalise(log_reference + preference @ mu / tau)
        assert np.max(np.abs(best_response - numeric)) > 0.02


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("rule", ["extragradient", "optimistic"])
def test_two_stage_rules_stage_minimiser_is_the_mirror_step_from_pi_t_towards_the_source(seed, rule):
    """Each stage of sampled extragradient / optimistic trains the (h − η/2)² loss on pairs from a fixed μ; its
    population minimiser (the definition's ``offline``) is U(ℓ_t; μ): (1 − ητ)·log π_t + ητ·log π_ref + η·Pμ, the
    INPO loss at η_INPO = 1/η, found here by BFGS on the loss written out (π_t and π_ref swapped passed every other
    test: mutation testing)."""
    eta, tau = 0.5, 0.3
    preference, log_reference, log_previous = _random_instance(seed)
    mu = np.exp(_random_instance(seed + 10)[2])  # a source policy that is neither π_t nor π_ref
    found = minimize(
        lambda theta: _population_loss(theta, preference, log_reference, log_previous, mu, 1.0 / eta, tau),
        np.zeros(preference.shape[0]),
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10_000},
    )
    stage = RULES[rule].offline({"eta": eta, "tau": tau}, log_previous, log_reference, preference @ mu, 0)
    claimed = _normalise(np.asarray(stage))
    assert np.max(np.abs(_normalise(found.x) - claimed)) < 1e-6
    formula = _normalise((1 - eta * tau) * log_previous + eta * tau * log_reference + eta * preference @ mu)
    assert np.max(np.abs(formula - claimed)) < 1e-12
    swapped = _normalise((1 - eta * tau) * log_reference + eta * tau * log_previous + eta * preference @ mu)
    assert np.max(np.abs(swapped - claimed)) > 0.05


def _offline_spec(rule, **run):
    return {
        "iterations": 6,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.3},
        "rule": [rule],
        "run": {
            "mode": "sampled",
            # with offline_pairs given, pairs_per_iteration is not read (and not accepted)
            **({} if "offline_pairs" in run else {"pairs_per_iteration": 50}),
            "inner_steps": 20,
            "learning_rate": 0.1,
            "data": "offline",
            **run,
        },
    }


def test_offline_queries_count_the_dataset_once():
    table = sim.run(_offline_spec({"name": "online_ipo"}))
    assert set(table[table.iteration == 0].queries) == {0}
    assert set(table[table.iteration >= 1].queries) == {50 * 6}  # default: pairs_per_iteration × iterations
    sized = sim.run(_offline_spec({"name": "inpo", "eta": 1.0}, offline_pairs=123))
    assert set(sized[sized.iteration >= 1].queries) == {123} and set(sized[sized.iteration == 0].queries) == {0}
    online = sim.run({**_offline_spec({"name": "online_ipo"}), "run": {**_offline_spec({})["run"], "data": "online"}})
    last = online.iteration.max()
    # same number of labels at the end, but the online run buys them iteration by iteration
    assert set(online[online.iteration == last].queries) == {50 * 6}
    assert sorted(set(online.queries)) == sorted(50 * online.iteration.unique())
    assert parse_spec(_offline_spec({"name": "online_ipo"})).run.offline_pairs == 300


def test_offline_dataset_is_drawn_once_and_shared_by_the_rules_of_a_seed():
    solve = {"optimizer": "sgd", "learning_rate": 1.0, "inner_steps": 3000, "tolerance": 1e-10}
    spec = _offline_spec({"name": "online_ipo"}, **solve)
    spec["iterations"] = 40
    spec["rule"] = [
        {"name": "online_ipo"},
        {"name": "inpo", "eta": 0.6},
    ]  # τ/η = 1/2: offline INPO contracts by 2 per step
    table = sim.run(spec)
    ipo = table[(table.rule == "online_ipo") & (table.iteration >= 1)]
    # every iteration minimises the same loss on the same data: the same minimum
    for _, rows in ipo.groupby("seed"):
        assert np.ptp(rows.loss.to_numpy()) < 1e-9, rows.loss.to_numpy()
    # a fresh dataset per iteration (online) gives a different minimum each time
    online = sim.run(
        {**spec, "iterations": 5, "rule": [{"name": "online_ipo"}], "run": {**spec["run"], "data": "online"}}
    )
    assert online[online.iteration >= 1].groupby("seed").loss.agg(np.ptp).min() > 1e-3
    # offline INPO converges to the empirical offline IPO minimiser of the same dataset
    final = table[table.iteration == 40].pivot(index="seed", columns="rule", values="kl_to_nash")
    assert np.allclose(final["inpo"], final["online_ipo"], atol=1e-8), final
    assert final["online_ipo"].min() > 1e-3  # ... which is not π*_τ


def _sampled(**run):
    return {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 1.0, "tau": 0.1}],
        "run": {
            "mode": "sampled",
            **({} if "offline_pairs" in run else {"pairs_per_iteration": 20}),
            "inner_steps": 5,
            **run,
        },
    }


@pytest.mark.parametrize(
    "run, rule, match",
    [
        (
            {"data": "offline"},
            {"name": "sppo", "eta": 1.0},
            r"rule #1 \(sppo\): run\.data = \"offline\" supports rules online_ipo, inpo, mmd, mnpo only",
        ),
        ({"data": "offline"}, {"name": "apo", "base": "inpo", "eta": 1.0, "tau": 0.1}, r"run\.data = \"offline\".*apo"),
        ({"data": "offline"}, {"name": "nash_md", "eta": 1.0}, r"run\.data = \"offline\""),
        ({"data": "offline", "pair_scheme": "tournament"}, None, r"run\.pair_scheme.*offline"),
        ({"data": "offline", "pair_scheme": "exact_win_rates"}, None, r"run\.pair_scheme.*offline"),
        ({"data": "streaming"}, None, r"run\.data: expected one of online, offline"),
        ({"offline_pairs": 100}, None, r"run\.offline_pairs = 100 is used only with data = \"offline\""),
        ({"data": "offline", "offline_pairs": 0}, None, r"run\.offline_pairs: expected an integer ≥ 1"),
        ({"data": "offline", "offline_pairs": 2.5}, None, r"run\.offline_pairs"),
        (
            {"data": "offline", "offline_pairs": 30, "minibatch_size": 40},
            None,
            r"run\.minibatch_size.*offline_pairs = 30",
        ),
        ({"data": "offline", "mode": "exact"}, None, r"run\.data = \"offline\" is used only with mode = \"sampled\""),
    ],
)
def test_bad_offline_input_names_the_field(run, rule, match):
    spec = _sampled(**run)
    if rule is not None:
        spec["rule"] = [rule]
    with pytest.raises(PrefsimError, match=match):
        sim.parse_spec(spec)


def test_offline_minibatches_may_exceed_pairs_per_iteration():
    spec = parse_spec(_sampled(data="offline", minibatch_size=40))  # 40 ≤ 20 × 3 offline pairs
    assert spec.run.offline_pairs == 60 and spec.run.minibatch_size == 40


def test_an_offline_runspec_built_by_hand_needs_its_size():
    spec = parse_spec(_sampled(data="offline"))
    settings = dataclasses.replace(spec.run, offline_pairs=None)
    with pytest.raises(PrefsimError, match="run.offline_pairs"):
        build_iteration("inpo", spec.rules[0].parameters, settings)
    with pytest.raises(PrefsimError, match=r"run\.data = \"offline\" supports"):
        build_iteration("dno", {"eta": 1.0}, spec.run)


OFFLINE_SPPO_TOML = """
iterations = 5
[game]
kind = "cyclic"
arms = 3
tau = 0.1
[[rule]]
name = "sppo"
eta = 1.0
[run]
mode = "sampled"
data = "offline"
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (OFFLINE_SPPO_TOML, 'run.data = "offline" supports rules online_ipo, inpo, mmd, mnpo only'),
        (OFFLINE_SPPO_TOML.replace("sppo", "inpo") + 'pair_scheme = "tournament"\n', "run.pair_scheme"),
    ],
)
def test_cli_offline_bad_input_is_one_clear_error(tmp_path, text, expected):
    path = tmp_path / "offline.toml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_offline_example_spec_parses_as_documented():
    from pathlib import Path

    spec = sim.load_spec(Path(__file__).resolve().parents[1] / "examples" / "reviewer_d10_offline.toml")
    assert (
        spec.run.data == "offline" and spec.run.offline_pairs == spec.run.pairs_per_iteration * spec.iterations == 6000
    )
    assert {rule.name for rule in spec.rules} == {"online_ipo", "inpo"}
