"""APO's three sampled forms, the spec/run integration of sampled mode, and its bad-input errors."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from bandits.linear import random_linear_bandit
from llm_bridge.rules import build_bridge_rule
from sim.cli import main as cli_main
from sim.game import normalize
from sim.limits import PAIR_BYTES, check_memory, memory_estimate
from sim.metrics import METRIC_COLUMNS
from sim.rules import RULES, register_rule, unregister_rule
from sim.sampled.apo import extrapolate_log_space, extrapolate_parameters
from sim.sampled.engine import build_iteration, sampled_states
from sim.sampled.experiment import build_sampled_inputs
from sim.sampled.policies import make_policy
from sim.sampled.problem import problem_from_arrays
from sim.sampled.validation import biased_loss_notes
from sim.spec import parse_spec


def _linear_problem(kind="bradley_terry", contexts=2):
    bandit = random_linear_bandit(6, 3, contexts, kind, seed=1)
    return problem_from_arrays(bandit["preference"], bandit["features"], bandit["context_probs"], bandit["rewards"])


def test_log_linear_parameter_extrapolation_equals_log_space_extrapolation():
    problem = _linear_problem()
    policy = make_policy("log_linear")
    rng = np.random.default_rng(0)
    for alpha in (0.3, 0.9, -0.5):
        new, old = jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal(3))
        through_parameters = policy.log_probs(extrapolate_parameters(new, old, alpha), problem)
        in_log_space = extrapolate_log_space(policy.log_probs(new, problem), policy.log_probs(old, problem), alpha)
        np.testing.assert_allclose(through_parameters, in_log_space, atol=1e-12)


def test_mlp_parameter_extrapolation_is_only_an_approximation():
    problem = _linear_problem()
    policy = make_policy("mlp", width=16)
    new = policy.init(jax.random.PRNGKey(0), problem)
    new = jax.tree_util.tree_map(lambda leaf: leaf + 0.5, new)  # a non-zero output layer
    old = jax.tree_util.tree_map(lambda leaf: 0.7 * leaf, new)
    through_parameters = policy.log_probs(extrapolate_parameters(new, old, 0.3), problem)
    in_log_space = extrapolate_log_space(policy.log_probs(new, problem), policy.log_probs(old, problem), 0.3)
    assert np.max(np.abs(np.asarray(through_parameters - in_log_space))) > 1e-3


def _apo_spec(policy: str, form: str, **run):
    return {
        "iterations": 4,
        "seeds": 3,
        "record_every": 1,
        "game": {"arms": 6, "tau": 0.0},  # a linear problem reads K and τ of the [game] table
        "rule": [{"name": "apo", "base": "dpo", "beta": 1.0, "alpha": 0.3}],
        "run": {
            "mode": "sampled",
            "problem": "linear_bradley_terry",
            "feature_dim": 3,
            "contexts": 2,
            "policy": policy,
            "apo_form": form,
            "pairs_per_iteration": 200,
            "optimizer": "adam",
            "learning_rate": 0.05,
            "inner_steps": 30,
            **run,
        },
    }


def test_sampled_apo_log_linear_runs_identically_with_parameter_and_log_space_extrapolation():
    by_parameters = sim.run(_apo_spec("log_linear", "parameters"))
    in_log_space = sim.run(_apo_spec("log_linear", "log_space"))
    columns = ["suboptimality", "kl_to_nash", "distance_to_exact", "loss"]
    np.testing.assert_allclose(
        by_parameters[columns].to_numpy(), in_log_space[columns].to_numpy(), rtol=1e-8, atol=1e-10
    )
    implicit = sim.run(_apo_spec("log_linear", "implicit_reference"))
    assert np.all(np.isfinite(implicit["suboptimality"]))
    assert not np.allclose(implicit["suboptimality"].to_numpy(), by_parameters["suboptimality"].to_numpy())


def _iterates(spec: dict, through_parameters: bool = False) -> np.ndarray:
    """log π_0 … log π_T of each seed of the spec's one rule table, (S, T + 1, M, K), through
    :func:`sim.sampled.sampled_states` (vmapped over the seeds, float64); ``through_parameters``: the
    log-probabilities of the states' parameters instead."""
    parsed = parse_spec(spec)
    rule = parsed.rules[0]
    with sim.float64():
        inputs = build_sampled_inputs(parsed)

        def one(problem, key):
            states = sampled_states(rule.name, rule.parameters, parsed.run, problem, key, parsed.iterations)
            if through_parameters:
                model = make_policy(parsed.run.policy, parsed.run.mlp_width, parsed.run.mlp_hidden_layers)
                return jax.vmap(lambda params: model.log_probs(params, problem))(states.params)
            return states.log_policy

        return np.asarray(jax.jit(jax.vmap(one, in_axes=(inputs.axes, 0)))(inputs.problems, inputs.keys))


def test_sampled_states_hold_the_policies_the_run_measures():
    """sampled_states replays sim.run's draws: the suboptimality of its iterates (context-weighted, in
    NumPy) is the run's column at every iteration, for an MLP under APO's parameter extrapolation, whose
    parameters represent the iterate (the policy of params[t] is log_policy[t])."""
    spec = _apo_spec("mlp", "parameters", mlp_width=8)
    spec["rule"][0]["form"] = spec["run"].pop("apo_form")
    table = sim.run(spec).sort_values(["seed", "iteration"])
    iterates = _iterates(spec)
    assert iterates.shape == (3, 5, 2, 6)
    for seed in range(3):
        bandit = random_linear_bandit(6, 3, 2, "bradley_terry", seed=seed)
        rewards, weights = np.asarray(bandit["rewards"]), np.asarray(bandit["context_probs"])
        policies = np.exp(iterates[seed])
        expected = ((rewards.max(axis=-1) - np.sum(policies * rewards, axis=-1)) * weights).sum(axis=-1)
        measured = table[table.seed == seed].suboptimality.to_numpy()
        np.testing.assert_allclose(measured, expected, rtol=1e-9, atol=1e-12)
    assert np.ptp(iterates[:, -1] - iterates[:, 0]) > 0.1  # the policy moved
    np.testing.assert_allclose(_iterates(spec, through_parameters=True), iterates, rtol=0, atol=1e-12)


@pytest.mark.parametrize("iterations", [-1, 2.0, True, None])
def test_sampled_states_refuses_a_count_of_iterations_that_is_not_an_integer_at_least_0(iterations):
    """A negative count reached lax.scan as an MLIR "invalid tensor dimension size"; a float, bool or None
    is refused too, not converted."""
    spec = parse_spec(_apo_spec("tabular", "parameters"))
    with pytest.raises(PrefsimError, match=r"sampled_states: iterations: expected an integer ≥ 0"):
        sampled_states("apo", spec.rules[0].parameters, spec.run, _linear_problem(), jax.random.PRNGKey(0), iterations)


@pytest.mark.parametrize("alpha", [1.0, -1.0, 1.5, float("nan")])
def test_sampled_states_refuse_an_alpha_outside_minus_one_to_one(alpha):
    """Only the spec's exact-mode check refused α ∉ (−1, 1): sampled_states (and build_iteration) ran APO with
    α = 1.5 or −1 on parameters given directly; the sampled (and bridge) hook now refuses it in the same words."""
    spec = parse_spec(_apo_spec("tabular", "parameters"))
    parameters = {**spec.rules[0].parameters, "alpha": alpha}
    with pytest.raises(PrefsimError, match=r"rule apo: the extrapolation alpha must lie in \(−1, 1\)"):
        sampled_states("apo", parameters, spec.run, _linear_problem(), jax.random.PRNGKey(0), 2)
    with pytest.raises(PrefsimError, match=r"rule apo: the extrapolation alpha must lie in \(−1, 1\)"):
        build_iteration("apo", parameters, spec.run)
    states = sampled_states("apo", {**parameters, "alpha": -0.5}, spec.run, _linear_problem(), jax.random.PRNGKey(0), 2)
    assert states.log_policy.shape[0] == 3


@pytest.mark.parametrize(
    ("policy", "run"),
    [
        ("tabular", {}),
        ("log_linear", {"features": "one_hot"}),
        ("log_linear", {"features": "random", "feature_dim": 6}),
    ],
    ids=["tabular", "log_linear_one_hot", "log_linear_random_full_rank"],
)
def test_apo_parameter_and_log_space_forms_give_the_same_iterates(policy, run):
    """For policies whose log π is affine in the parameters (tabular; log-linear with K × K features of
    full rank) θ̂ + α(θ̂ − θ̂_prev) represents Eq. (3.6) exactly, so the two forms draw the same pairs and
    produce the same iterates, π_0 … π_T, to rounding; the implicit reference, a different
    algorithm, does not (the comparison can fail).  (A linear bandit with d < K:
    test_sampled_apo_log_linear_runs_identically_with_parameter_and_log_space_extrapolation.)"""

    def spec(form):
        return {
            "iterations": 6,
            "seeds": 3,
            "game": {"kind": "bradley_terry", "arms": 6, "rewards": "random", "tau": 0.0},
            "rule": [{"name": "apo", "base": "dpo", "beta": 1.0, "alpha": 0.5, "form": form}],
            "run": {
                "mode": "sampled",
                "policy": policy,
                "pairs_per_iteration": 200,
                "optimizer": "adam",
                "learning_rate": 0.1,
                "inner_steps": 40,
                **run,
            },
        }

    by_parameters, in_log_space = _iterates(spec("parameters")), _iterates(spec("log_space"))
    assert by_parameters.shape == (3, 7, 1, 6)
    # rounding only (the two forms normalise different but equal vectors; Adam rescales the difference): ≈ 4e-10
    np.testing.assert_allclose(by_parameters, in_log_space, rtol=0, atol=1e-8)
    assert np.abs(by_parameters[:, -1] - by_parameters[:, 0]).max() > 0.5  # the iterates moved
    implicit = _iterates(spec("implicit_reference"))
    assert np.abs(implicit[:, 2:] - by_parameters[:, 2:]).max() > 0.05


def _implicit_form_closed_form(alpha: float, iterations: int) -> np.ndarray:
    """c_t with log π̂_t = log π_ref + c_t·r/β for APO-DPO's implicit reference with exact rewards (π_ref =
    π̂_0, so c_0 = 0): the loss's reference at t ≥ 1 is (1+α)·log π̂_t − α·log π̂_{t−1} and its DPO
    argmin adds r/β, so c_{t+1} − c_t = 1 + α·(c_t − c_{t−1}) and c_1 = 1.  Written out here, not
    taken from sim.rules.apo."""
    steps = [1.0]
    for _ in range(iterations - 1):
        steps.append(1.0 + alpha * steps[-1])
    return np.concatenate([[0.0], np.cumsum(steps)])


def test_sampled_implicit_reference_apo_follows_its_closed_form():
    """APO-DPO's implicit-reference form through the whole sampled engine (sim.run, 20000 labelled pairs per
    iteration, tabular policy) against the closed form π̂_t ∝ π_ref·exp(c_t·r/β): α → −α in the shifted
    reference, or the two proximal outputs swapped, moves the suboptimality by 1.6× or more from t = 2 on."""
    alpha, beta, iterations = 0.5, 1.0, 4
    rewards = np.array([1.0, 0.5, 0.0])
    spec = {
        "iterations": iterations,
        "seeds": [0],
        "record_every": 1,
        "game": {"kind": "bradley_terry", "rewards": rewards.tolist(), "tau": 0.0},
        "rule": [{"name": "apo", "base": "dpo", "beta": beta, "alpha": alpha, "form": "implicit_reference"}],
        "run": {
            "mode": "sampled",
            "pairs_per_iteration": 20000,
            "optimizer": "sgd",
            "learning_rate": 3.0,
            "inner_steps": 500,
            "tolerance": 1e-9,
        },
    }
    table = sim.run(spec).sort_values("iteration")
    policies = np.exp(np.outer(_implicit_form_closed_form(alpha, iterations), rewards) / beta)
    policies /= policies.sum(axis=1, keepdims=True)
    expected = policies @ (rewards.max() - rewards)
    np.testing.assert_allclose(table["suboptimality"].to_numpy(), expected, rtol=0.15)
    flipped = np.exp(np.outer(_implicit_form_closed_form(-alpha, iterations), rewards) / beta)
    flipped = (flipped / flipped.sum(axis=1, keepdims=True)) @ (rewards.max() - rewards)
    assert np.all(flipped[2:] > 1.6 * expected[2:])  # the test separates α from −α


def test_implicit_reference_over_inpo_measures_its_distance_to_the_exact_step_it_takes():
    """APO(INPO) in the implicit-reference form: the exact counterpart of an iteration anchors at the
    extrapolated reference and takes the win rates of π̂_t, whose pairs the loss trains on (as exact mode
    does), so ``distance_to_exact`` is sampling noise (≈ 0.01 at 20000 pairs, as for the log-space form);
    with the anchor's own win rates it was 0.06–0.11."""
    spec = {
        "iterations": 3,
        "seeds": 2,
        "record_every": 1,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "apo", "base": "inpo", "eta": 0.5, "tau": 0.2, "alpha": 0.7, "form": "implicit_reference"}],
        "run": {"mode": "sampled", "pairs_per_iteration": 20000, "inner_steps": 200, "learning_rate": 0.05},
    }
    distance = sim.run(spec).groupby("iteration")["distance_to_exact"].max()
    assert distance.iloc[1:].max() < 0.03, distance


def test_inner_loops_that_could_not_finish_are_refused_before_running():
    """A jitted inner loop runs to its end before a signal is seen: inner_steps past the 32-bit counter, or
    T × inner_steps past 10¹¹ gradient steps per seed, is refused with the arithmetic."""
    base = {"iterations": 5, "seeds": 1, "game": {"kind": "random", "arms": 3, "tau": 0.2}}
    base["rule"] = [{"name": "inpo", "eta": 1.0}]
    with pytest.raises(PrefsimError, match="more than the inner loop can count"):
        parse_spec({**base, "run": {"mode": "sampled", "inner_steps": 2**32 + 1}})
    with pytest.raises(PrefsimError, match=r"100 iterations × 2000000000 inner steps = 2e\+11"):
        parse_spec({**base, "iterations": 100, "run": {"mode": "sampled", "inner_steps": 2_000_000_000}})
    parse_spec({**base, "iterations": 50, "run": {"mode": "sampled", "inner_steps": 2_000_000_000}})  # 10¹¹


def test_a_history_window_longer_than_the_run_is_refused():
    """MNPO's window holds past iterates; π_0 … π_T are T + 1 of them, so a longer one is a clear error."""
    game = {"kind": "random", "arms": 3, "tau": 0.2}
    with pytest.raises(PrefsimError, match=r"rule #1 \(mnpo\): a window of 1000 past iterates .* at most 21"):
        parse_spec({"iterations": 20, "seeds": 1, "game": game, "rule": [{"name": "mnpo", "history": 1000}]})
    parse_spec({"iterations": 20, "seeds": 1, "game": game, "rule": [{"name": "mnpo", "history": 21}]})
    swept = [{"name": "mnpo", "eta": [1.0, 2.0], "history": 1000}]  # every point of a sweep is checked
    with pytest.raises(PrefsimError, match="a window of 1000 past iterates"):
        parse_spec({"iterations": 20, "seeds": 1, "game": game, "rule": swept})


def test_the_memory_estimate_counts_the_candidates_a_scheme_compares():
    """SPPO's pipeline holds 2C² + 2C numbers per pair while it draws (uniforms, win-rate estimates): C = 10⁵
    candidates cannot fit, and the run is refused instead of failing inside XLA."""
    spec = parse_spec(
        {
            "iterations": 2,
            "seeds": 1,
            "game": {"kind": "random", "arms": 3, "tau": 0.2},
            "rule": [{"name": "sppo"}],
            "run": {
                "mode": "sampled",
                "pair_scheme": "sppo_win_rate",
                "candidates": 100_000,
                "pairs_per_iteration": 10,
            },
        }
    )
    estimate = memory_estimate(spec)
    assert estimate["pairs"] == 10 * (PAIR_BYTES + (2 * 10**10 + 2 * 10**5) * 8)
    with pytest.raises(PrefsimError, match="memory: this run needs"):
        check_memory(spec, available=2**40)


def test_sampled_run_table_columns_queries_and_reproducibility():
    spec = {
        "iterations": 3,
        "seeds": [4, 9],
        "record_every": 1,
        "game": {"kind": "random", "arms": 6, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": [1.0, 2.0], "tau": 0.2}],
        "run": {
            "mode": "sampled",
            "pairs_per_iteration": 50,
            "pair_scheme": "tournament",
            "candidates": 8,
            "optimizer": "rmsprop",
            "learning_rate": 0.01,
            "inner_steps": 10,
            "minibatch_size": 16,
        },
    }
    table = sim.run(spec)
    columns = ["rule", "seed", "iteration", "rule.eta", *METRIC_COLUMNS, "queries", "distance_to_exact", "loss"]
    columns.append("inner_gradient")
    assert list(table.columns) == columns  # rule.eta: the swept parameter's value of each row
    assert set(table.rule) == {"inpo[eta=1]", "inpo[eta=2]"}
    assert set(zip(table.rule, table["rule.eta"])) == {("inpo[eta=1]", 1.0), ("inpo[eta=2]", 2.0)}
    np.testing.assert_array_equal(table.queries, table.iteration * 50 * 11)
    assert table[table.iteration == 0].distance_to_exact.isna().all()
    assert np.all(np.isfinite(table[table.iteration > 0][["duality_gap", "distance_to_exact", "loss"]].to_numpy()))
    again = sim.run(spec)
    np.testing.assert_array_equal(table.duality_gap.to_numpy(), again.duality_gap.to_numpy())
    first, second = (table[(table.seed == s) & (table.iteration == 3)].duality_gap.to_numpy() for s in (4, 9))
    assert not np.allclose(first, second)


def _spec(**run):
    return {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 1.0, "tau": 0.1}],
        "run": {"mode": "sampled", "pairs_per_iteration": 20, "inner_steps": 5, **run},
    }


def test_sampled_runs_carry_the_log_ratio_of_every_iteration_recorded_or_not():
    """``max_log_ratio_so_far`` (the B that Theorem 3 and 4 read) is the maximum over every iteration, not only
    the recorded ones: a run recording every 4th iteration gives what the same run recording every one
    does; on a contextual problem (a weighted sum of each context's running maximum) it never falls and is
    at least the weighted ``max_log_ratio``."""
    spec = {
        "iterations": 24,
        "seeds": 2,
        "record_every": 4,
        "game": {"kind": "random", "arms": 4, "tau": 0.1},
        "run": {"mode": "sampled", "pairs_per_iteration": 16, "inner_steps": 3, "learning_rate": 0.3},
        "rule": [{"name": "online_ipo"}],
    }
    table = sim.run(spec)
    every = sim.run({**spec, "record_every": 1})
    missed = 0.0
    for seed, frame in table.groupby("seed"):
        rows = every[every.seed == seed].sort_values("iteration")
        running = np.maximum.accumulate(rows["max_log_ratio"].to_numpy())[frame["iteration"].to_numpy()]
        np.testing.assert_allclose(frame["max_log_ratio_so_far"].to_numpy(), running, rtol=1e-12)
        missed = max(missed, float(np.max(running - frame["max_log_ratio"].cummax().to_numpy())))
    assert missed > 0.1  # the recorded iterations alone miss it
    contextual = _apo_spec("log_linear", "parameters")
    contextual["record_every"] = 2
    table = sim.run(contextual)
    for _, frame in table.groupby("seed"):
        carried = frame.sort_values("iteration")["max_log_ratio_so_far"].to_numpy()
        assert np.all(np.diff(carried) >= 0) and np.all(carried >= frame.sort_values("iteration")["max_log_ratio"])


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_a_gradient_tolerance_stops_the_inner_loop_in_either_precision(precision):
    # a tolerance no gradient exceeds stops before the first step (the loop tests the gradient where it stands):
    # the policy stays π_0, while one fixed step per iteration moves it
    base = {
        "iterations": 5,
        "seeds": 2,
        "precision": precision,
        "game": {"kind": "random", "arms": 4, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 0.5}],
    }
    run = {"mode": "sampled", "pairs_per_iteration": 16, "learning_rate": 0.3}
    stopped = sim.run({**base, "run": {**run, "inner_steps": 50, "tolerance": 1e9}})
    one_step = sim.run({**base, "run": {**run, "inner_steps": 1}})
    three_steps = sim.run({**base, "run": {**run, "inner_steps": 3}})
    exact = 2e-7 if precision == "float32" else 1e-14
    start = stopped[stopped.iteration == 0].set_index("seed").exploitability
    np.testing.assert_allclose(stopped["exploitability"], start.loc[stopped.seed].to_numpy(), rtol=0, atol=exact)
    assert np.abs(stopped["exploitability"] - one_step["exploitability"]).max() > 1e-3
    assert np.abs(one_step["exploitability"] - three_steps["exploitability"]).max() > 1e-3


def test_zero_pairs_is_a_clear_error():
    with pytest.raises(PrefsimError, match="pairs_per_iteration"):
        sim.parse_spec(_spec(pairs_per_iteration=0))


def test_unknown_optimiser_is_a_clear_error():
    with pytest.raises(PrefsimError, match=r"run.optimizer.*'lbfgs'"):
        sim.parse_spec(_spec(optimizer="lbfgs"))


def test_adam_with_a_huge_learning_rate_is_caught_although_everything_stays_finite():
    spec = _spec(optimizer="adam", learning_rate=1e5, inner_steps=20)
    with pytest.raises(PrefsimError, match=r"rule 'inpo' diverged .* seed 0, iteration 1\b.*'adam'"):
        sim.run(spec)


def test_diverging_learning_rate_names_rule_seed_and_iteration():
    spec = _spec(optimizer="sgd", learning_rate=1e6, inner_steps=50)
    spec["seeds"] = [7]
    with pytest.raises(PrefsimError, match=r"rule 'inpo' diverged .* seed 7, iteration 1\b"):
        sim.run(spec)


def test_an_mlp_under_rmsprop_at_a_diverging_learning_rate_is_a_clear_error_exit_2(tmp_path, capsys):
    """RMSprop at learning rate 1000 throws the MLP's inner loss from 0.25 to ~200 (finite, so no NaN
    check sees it) and leaves a frozen policy far from the start: the run must stop, naming rule, seed
    and iteration, not write a table (it did, exit 0, while the divergence test allowed a 10⁴-fold loss)."""
    spec = _spec(policy="mlp", mlp_width=16, optimizer="rmsprop", learning_rate=1000.0, inner_steps=20)
    spec.update(seeds=[1], iterations=5, game={"kind": "random", "arms": 6, "tau": 0.1})
    spec["run"]["pairs_per_iteration"] = 100
    path = tmp_path / "mlp.toml"
    path.write_text(_toml(spec))
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: rule 'inpo' diverged in sampled mode at seed 1, iteration 1;"), error
    assert "'rmsprop'" in error and "learning_rate 1000" in error and "Traceback" not in error
    assert not (tmp_path / "out" / "metrics.csv").exists()


def _toml(spec: dict) -> str:
    """A flat TOML rendering of the small specs of this file (scalars, lists, tables, [[rule]])."""

    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {value(v)}" for k, v in spec.items() if not isinstance(v, (dict, list)) or k == "seeds"]
    for table in ("game", "run"):
        lines += [f"[{table}]"] + [f"{k} = {value(v)}" for k, v in spec[table].items()]
    for rule in spec["rule"]:
        lines += ["[[rule]]"] + [f"{k} = {value(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "run, rule, match",
    [
        ({"policy": "transformer"}, None, "run.policy"),
        ({"pair_scheme": "round_robin"}, None, "run.pair_scheme"),
        ({"pair_scheme": "tournament"}, {"name": "sppo", "eta": 1.0}, "needs win-rate estimates"),
        # win rates of uniformly drawn responses are not SPPO's (weighted by π_t); unordered pairs are no labels
        ({"pair_scheme": "uniform_opponent"}, {"name": "sppo", "eta": 1.0}, "drawn from π_t"),
        ({"pair_scheme": "exact_win_rates"}, {"name": "inpo", "eta": 1.0}, "does not order its pairs"),
        ({"pair_scheme": "uniform_opponent"}, {"name": "online_ipo"}, "does not order its pairs"),
        ({"pair_scheme": "exact_win_rates"}, {"name": "apo", "base": "dpo"}, "does not order its pairs"),
        # EGPO's estimator fixes its own pairs (uniform_opponent): another scheme would be silently replaced
        (
            {"pair_scheme": "tournament", "candidates": 4},
            {"name": "extragradient", "estimator": "uniform"},
            "leave pair_scheme at 'lambda_p', got 'tournament'",
        ),
        ({"pair_scheme": "exact_win_rates"}, {"name": "optimistic", "estimator": "uniform"}, "leave pair_scheme"),
        ({"apo_form": "implicit_reference"}, {"name": "apo", "base": "sppo", "eta": 1.0}, "implicit_reference"),
        ({"apo_form": "momentum"}, {"name": "apo", "base": "inpo", "eta": 1.0, "tau": 0.1}, "run.apo_form"),
        ({}, {"name": "dpo", "beta": 1.0}, "Bradley–Terry"),
        ({"learning_rate": -1.0}, None, "run.learning_rate"),
        ({"tolerance": 1e-6, "minibatch_size": 5}, None, "full-batch"),
        ({"minibatch_size": 50}, None, "run.minibatch_size"),
        ({"inner_steps": 0}, None, "run.inner_steps"),
        ({"problem": "mnist"}, None, "run.problem"),
    ],
)
def test_bad_sampled_input_names_the_field(run, rule, match):
    spec = _spec(**run)
    if rule is not None:
        spec["rule"] = [rule]
    with pytest.raises(PrefsimError, match=match):
        sim.parse_spec(spec)


@pytest.fixture
def exact_only_rule():
    """A rule with no per-pair loss (every built-in rule has one since mmd and mpo got INPO's): mmd without it."""
    definition = dataclasses.replace(RULES["mmd"], name="exact_only_mmd", loss=None, data=None, offline=None)
    register_rule(definition)
    try:
        yield definition.name
    finally:
        unregister_rule(definition.name)


def test_a_rule_without_a_loss_runs_in_exact_mode_and_is_refused_elsewhere(exact_only_rule):
    assert RULES[exact_only_rule].modes == ("exact",)
    spec = _spec()
    spec["rule"] = [{"name": exact_only_rule, "eta": 1.0}]
    supported = "sampled mode supports online_ipo, inpo, mmd,"
    with pytest.raises(PrefsimError, match=f"rule exact_only_mmd has no sampled loss; {supported}"):
        sim.parse_spec(spec)
    with pytest.raises(PrefsimError, match="rule exact_only_mmd runs in exact mode only"):
        build_bridge_rule(exact_only_rule, {"eta": 1.0})
    assert sim.parse_spec({**spec, "run": {"mode": "exact"}}).rules[0].name == exact_only_rule


def test_exact_mode_is_unchanged_by_the_sampled_keys():
    spec = _spec()
    spec["run"] = {"mode": "exact"}
    table = sim.run(spec)
    assert "queries" not in table.columns and list(table.columns[:3]) == ["rule", "seed", "iteration"]


def _first_iteration(spec):
    """Seed 0's state before and after sampled mode's first iteration of ``spec``'s first rule, and its problem."""
    inputs = build_sampled_inputs(spec)
    problem = jax.tree_util.tree_map(
        lambda leaf, axis: leaf if axis is None else leaf[0], inputs.problems, inputs.axes, is_leaf=lambda x: x is None
    )
    init, iteration = build_iteration(spec.rules[0].name, spec.rules[0].parameters, spec.run)
    state = init(inputs.keys[0], problem)
    return state, iteration(state, problem, inputs.keys[0])[0], problem


def test_nash_md_pg_one_sgd_step_matches_the_expected_policy_gradient():
    """One SGD step on the Nash-MD-PG surrogate with N pairs (y ~ π, y′ ~ π^μ, Bernoulli labels) moves
    the tabular logits by lr·(π⊙A − π·(π·A)) in expectation, A_y = (Pπ^μ)_y − ½ − τ(log π − log π_ref)_y.
    ητ = 0.8 puts the mixture far enough from π_t that drawing y′ from π_t instead is resolved (asserted)."""
    eta, tau, rate, pairs = 4.0, 0.2, 0.5, 200_000
    spec = sim.parse_spec(
        {
            "iterations": 1,
            "seeds": 1,
            "game": {"kind": "cyclic", "arms": 3, "tau": tau, "reference": [0.5, 0.3, 0.2], "initial": "random"},
            "rule": [{"name": "nash_md", "eta": eta, "tau": tau}],
            "run": {
                "mode": "sampled",
                "pairs_per_iteration": pairs,
                "optimizer": "sgd",
                "learning_rate": rate,
                "inner_steps": 1,
            },
        }
    )
    state, new_state, problem = _first_iteration(spec)
    log_policy, log_reference = np.asarray(state.log_policy[0]), np.asarray(problem.log_reference[0])
    policy = np.exp(log_policy)
    mixture = np.exp(np.asarray(normalize((1 - eta * tau) * log_policy + eta * tau * log_reference)))

    def expected_step(opponent):
        advantage = np.asarray(problem.preference[0]) @ opponent - 0.5 - tau * (log_policy - log_reference)
        step = rate * (policy * advantage - policy * (policy @ advantage))
        return step - step.mean()

    expected, tolerance = expected_step(mixture), 5 * rate / np.sqrt(pairs)
    moved = np.asarray(new_state.params[0] - state.params[0])
    np.testing.assert_allclose(moved - moved.mean(), expected, atol=tolerance)
    assert np.abs(expected).max() > 2 * tolerance  # the step is resolvable
    assert np.abs(expected_step(policy) - expected).max() > 3 * tolerance  # so is the opponent being π^μ, not π_t


def test_nash_md_pg_minimised_reaches_the_best_response_to_the_mixture_and_says_so():
    """Minimised over many inner steps on pairs drawn from π_t, the Nash-MD-PG surrogate is stationary where
    A(y)·π_t(y)/π(y) is the same for every y (A = Pπ^μ − ½ − τ log(π/π_ref)), near the regularised best response
    to the mixture π_ref·exp(Pπ^μ/τ)/Z and far past Nash-MD's step; a sampled run says so (PairData.minimiser),
    and says nothing of the kind for INPO."""
    eta, tau = 0.5, 0.5
    raw = {
        "iterations": 1,
        "seeds": 1,
        "game": {"kind": "cyclic", "arms": 3, "tau": tau, "reference": [0.5, 0.3, 0.2], "initial": "random"},
        "rule": [{"name": "nash_md", "eta": eta, "tau": tau}],
        "run": {"mode": "sampled", "pairs_per_iteration": 100_000, "optimizer": "adam", "learning_rate": 0.05,
                "inner_steps": 3000},
    }  # fmt: skip
    spec = sim.parse_spec(raw)
    state, new_state, problem = _first_iteration(spec)
    log_policy, log_reference = np.asarray(state.log_policy[0]), np.asarray(problem.log_reference[0])
    preference = np.asarray(problem.preference[0])
    mixture = np.exp(np.asarray(normalize((1 - eta * tau) * log_policy + eta * tau * log_reference)))
    best_response = np.asarray(normalize(log_reference + preference @ mixture / tau))
    step = np.asarray(normalize((1 - eta * tau) * log_policy + eta * tau * log_reference + eta * preference @ mixture))
    reached = np.asarray(new_state.log_policy[0])

    def ratio(log_pi):  # A(y)·π_t(y)/π(y): the same for every y where the fixed-sample surrogate is stationary
        return (preference @ mixture - 0.5 - tau * (log_pi - log_reference)) * np.exp(log_policy - log_pi)

    assert np.ptp(ratio(reached)) < 0.005 and np.ptp(ratio(step)) > 0.1  # stationary there, not at the step
    assert np.abs(reached - best_response).max() < 0.05  # near the best response here (the constant ≈ −0.02)
    assert np.abs(reached - step).max() > 10 * np.abs(reached - best_response).max()
    # with y drawn from the current π at every step (the population policy gradient) the stationary point is
    # the best response itself (docs/theory.md §C.6)
    logits = log_policy.copy()
    for _ in range(20_000):
        current = logits - np.log(np.exp(logits).sum())
        advantage = preference @ mixture - 0.5 - tau * (current - log_reference)
        logits += 2.0 * np.exp(current) * (advantage - np.exp(current) @ advantage)
    np.testing.assert_allclose(logits - np.log(np.exp(logits).sum()), best_response, rtol=0, atol=1e-9)
    notes = biased_loss_notes(spec.run, spec.rules)
    assert len(notes) == 1 and "not an argmin" in notes[0] and "best response to the mixture" in notes[0]
    raw["rule"] = [{"name": "inpo", "eta": 1.0, "tau": tau}]
    inpo = sim.parse_spec(raw)
    assert biased_loss_notes(inpo.run, inpo.rules) == []


def test_nash_md_requires_its_own_sampling():
    spec = _spec(pair_scheme="tournament")
    spec["rule"] = [{"name": "nash_md", "eta": 0.5, "tau": 0.1}]
    with pytest.raises(PrefsimError, match="nash_md samples its own pairs"):
        sim.parse_spec(spec)
