"""Metrics (sim/metrics.py) and equilibria (sim/nash.py) against direct numerical optimisation and NumPy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_reference import (
    best_response,
    bradley_terry_matrix,
    cyclic_matrix,
    duality_gap_logz,
    inpo_step,
    kl,
    make_game,
    normalize,
    payoff,
    random_matrix,
    random_policy,
    regularised_nash,
)
from scipy.optimize import minimize
from scipy.special import softmax

import sim
from sim import metrics, nash

TAU = 0.2


def _direct_extremes(matrix, reference, tau, policy):
    """max_{π₁} J(π₁, π) and min_{π₂} J(π, π₂) by BFGS over softmax logits (J is concave/convex there)."""
    arms = len(policy)

    def best(sign, slot):
        def objective(logits):
            other = softmax(logits)
            pair = (other, policy) if slot == 0 else (policy, other)
            return -sign * payoff(matrix, reference, tau, *pair)

        values = [
            minimize(objective, np.log(start), method="BFGS", options={"gtol": 1e-12}).fun
            for start in (reference, policy, np.full(arms, 1 / arms))
        ]
        return -sign * min(values)

    return best(+1, 0), best(-1, 1)


@pytest.mark.parametrize("instance", range(3))
def test_duality_gap_closed_form_equals_direct_max_min(instance):
    arms = (3, 4, 5)[instance]
    matrix = random_matrix(arms, seed=30 + instance)
    reference = random_policy(arms, seed=40 + instance)
    policy = random_policy(arms, seed=50 + instance, scale=2.0)
    tau = (0.2, 0.5, 0.1)[instance]
    game = make_game(matrix, reference, tau)
    code = float(metrics.duality_gap(game, jnp.log(policy), tau))
    best_value, worst_value = _direct_extremes(matrix, reference, tau, policy)
    assert code == pytest.approx(best_value - worst_value, abs=1e-8)
    assert code == pytest.approx(2 * tau * kl(policy, best_response(matrix, reference, tau, policy)), abs=1e-14)
    assert code == pytest.approx(duality_gap_logz(matrix, reference, tau, policy), abs=1e-13)
    assert code > 1e-3
    # one-sided exploitability = gap/2: max J(π₁, π) − ½
    assert best_value - 0.5 == pytest.approx(code / 2, abs=1e-8)


def test_duality_gap_needs_positive_tau():
    game = make_game(cyclic_matrix(1.0), None, 0.0)
    assert np.isnan(float(metrics.duality_gap(game, jnp.log(jnp.full(3, 1 / 3)), 0.0)))


def _simplex_grid(arms, steps):
    for counts in itertools.product(range(steps + 1), repeat=arms - 1):
        if sum(counts) <= steps:
            yield np.array(list(counts) + [steps - sum(counts)]) / steps


@pytest.mark.parametrize("seed", [0, 1])
def test_exploitability_closed_form_and_brute_force(seed):
    matrix = random_matrix(3, seed=60 + seed)
    policy = random_policy(3, seed=70 + seed)
    code = float(metrics.exploitability(make_game(matrix), jnp.log(policy)))
    assert code == pytest.approx(2 * np.max(matrix @ policy) - 1, abs=1e-15)
    grid = np.array(list(_simplex_grid(3, 40)))
    best = np.max(grid @ matrix @ policy)  # max_{π₁} P(π₁ ≻ π)
    worst = np.min(policy @ matrix @ grid.T)  # min_{π₂} P(π ≻ π₂)
    assert code == pytest.approx(best - worst, abs=1e-12)  # the optimum is at a vertex, which the grid holds
    assert code > 0


def test_suboptimality_and_policy_metrics_by_hand():
    rewards = np.array([0.0, 2.0, 1.0])
    policy = np.array([0.2, 0.5, 0.3])
    reference = np.array([0.5, 0.25, 0.25])
    game = make_game(bradley_terry_matrix(rewards), reference, TAU, rewards=rewards)
    target = np.array([0.1, 0.6, 0.3])
    row = {k: float(v) for k, v in metrics.policy_metrics(game, jnp.log(policy), jnp.asarray(target)).items()}
    assert row["suboptimality"] == pytest.approx(2.0 - (0.5 * 2 + 0.3 * 1), abs=1e-15)
    assert row["tv_to_optimum"] == pytest.approx(0.5 * (0.1 + 0.1 + 0.0), abs=1e-15)
    assert row["kl_to_nash"] == pytest.approx(0.1 * np.log(0.5) + 0.6 * np.log(0.6 / 0.5), abs=1e-15)
    assert row["max_log_ratio"] == pytest.approx(-np.log(0.2 / 0.5), abs=1e-15)
    # a point-mass target (τ = 0 Bradley–Terry) gives KL = −log π(y*)
    point = metrics.policy_metrics(game, jnp.log(policy), jnp.asarray([0.0, 1.0, 0.0]))
    assert float(point["kl_to_nash"]) == pytest.approx(-np.log(0.5), abs=1e-15)
    no_rewards = make_game(cyclic_matrix(1.0), None, TAU)
    assert np.isnan(float(metrics.suboptimality(no_rewards, jnp.log(policy))))


@pytest.mark.parametrize(
    "matrix, reference, tau",
    [
        (cyclic_matrix(1.0), np.array([0.5, 0.3, 0.2]), 0.2),
        (random_matrix(5, seed=80), random_policy(5, seed=81), 0.1),
        (random_matrix(4, seed=82), random_policy(4, seed=83), 0.02),
        (bradley_terry_matrix([0.0, 1.0, -0.5, 0.4]), random_policy(4, seed=84), 0.5),
    ],
)
def test_regularised_nash_is_the_best_response_fixed_point(matrix, reference, tau):
    game = make_game(matrix, reference, tau)
    log_policy, gap, iterations = jax.jit(nash.regularised_nash)(game)
    policy = np.exp(np.asarray(log_policy))
    assert float(gap) < 1e-12 and int(iterations) > 0
    assert duality_gap_logz(matrix, reference, tau, policy) < 1e-12
    np.testing.assert_allclose(best_response(matrix, reference, tau, policy), policy, atol=1e-12, rtol=0)
    # accurate to far better than √gap (the gap is quadratic in the error)
    np.testing.assert_allclose(policy, regularised_nash(matrix, reference, tau), atol=1e-11, rtol=0)
    target, target_gap = nash.target_policy(game)
    np.testing.assert_allclose(target, policy, atol=1e-15)
    assert target_gap < 1e-12


def test_unregularised_nash_by_lp():
    np.testing.assert_allclose(nash.unregularised_nash(cyclic_matrix(1.0)), np.full(3, 1 / 3), atol=1e-9)
    np.testing.assert_allclose(nash.unregularised_nash(cyclic_matrix(0.5, arms=5)), np.full(5, 0.2), atol=1e-9)
    # random 6-arm games: no closed form, so check the defining property (zero exploitability)
    for seed in range(3):
        matrix = random_matrix(6, seed=90 + seed)
        policy = nash.unregularised_nash(matrix)
        assert policy.min() >= 0 and policy.sum() == pytest.approx(1.0)
        assert 2 * np.max(matrix @ policy) - 1 < 1e-9  # zero exploitability
    # Bradley–Terry: the Condorcet winner
    rewards = [0.0, 1.0, -0.5, 0.4]
    np.testing.assert_allclose(nash.unregularised_nash(bradley_terry_matrix(rewards)), [0, 1, 0, 0], atol=1e-9)
    target, gap = nash.target_policy(make_game(bradley_terry_matrix(rewards), None, 0.0, rewards=rewards))
    np.testing.assert_array_equal(target, [0, 1, 0, 0])
    assert np.isnan(gap)
    target, _ = nash.target_policy(make_game(cyclic_matrix(1.0), None, 0.0))
    np.testing.assert_allclose(target, np.full(3, 1 / 3), atol=1e-9)


# --------------------------------------------------------------------------- the metrics table of a run
REWARDS = [0.0, 1.0, -0.5, 0.4]
REFERENCE = [0.4, 0.1, 0.3, 0.2]


@pytest.fixture(scope="module")
def run_table():
    spec = {
        "iterations": 30,
        "seeds": 1,
        "record_every": 1,
        "game": {"kind": "bradley_terry", "rewards": REWARDS, "reference": REFERENCE, "tau": TAU},
        "rule": [{"name": "inpo", "eta": 0.9}, {"name": "dpo", "beta": 0.7}],
    }
    return sim.run(spec)


def _expected_rows(trajectory, matrix, reference, rewards, tau, target, unregularised):
    """Every metric column from a full trajectory π_0 … π_T, recomputed in NumPy (π⁰ = ``unregularised``)."""
    rows = []
    for t, policy in enumerate(trajectory):
        mixture = trajectory[: t + 1].mean(axis=0)
        row = {"iteration": t}
        for suffix, p in (("", policy), ("_mixture", mixture)):
            row["duality_gap" + suffix] = 2 * tau * kl(p, best_response(matrix, reference, tau, p))
            row["exploitability" + suffix] = 2 * np.max(matrix @ p) - 1
            row["kl_to_nash" + suffix] = kl(target, p)
            row["suboptimality" + suffix] = np.max(rewards) - p @ rewards
            row["tv_to_optimum" + suffix] = 0.5 * np.abs(p - target).sum()
            row["max_log_ratio" + suffix] = np.abs(np.log(p / reference)).max()
            row["kl_to_unregularised_nash" + suffix] = kl(unregularised, p)
        row["regret"] = sum(np.max(rewards) - trajectory[s] @ rewards for s in range(t))
        row["max_log_ratio_so_far"] = max(np.abs(np.log(trajectory[s] / reference)).max() for s in range(t + 1))
        rows.append(row)
    return rows


@pytest.mark.parametrize("label", ["inpo", "dpo"])
def test_run_metrics_equal_numpy_recomputation_from_the_trajectory(run_table, label):
    rewards, reference = np.array(REWARDS), np.array(REFERENCE)
    matrix = bradley_terry_matrix(rewards)
    target = regularised_nash(matrix, reference, TAU)
    trajectory = [np.log(reference)]
    for _ in range(30):
        if label == "inpo":
            trajectory.append(inpo_step(trajectory[-1], np.log(reference), matrix, 0.9, TAU))
        else:
            trajectory.append(normalize(trajectory[-1] + rewards / 0.7))
    trajectory = np.exp(np.array(trajectory))
    table = run_table[run_table["rule"] == label].reset_index(drop=True)
    assert list(table["iteration"]) == list(range(31))
    assert set(table["seed"]) == {0}
    # π⁰ of a Bradley–Terry game with one best arm: the point mass on argmax r (its Condorcet winner)
    expected = _expected_rows(trajectory, matrix, reference, rewards, TAU, target, np.eye(4)[np.argmax(rewards)])
    for column in sim.metrics.METRIC_COLUMNS:
        want = np.array([row[column] for row in expected])
        np.testing.assert_allclose(table[column].to_numpy(), want, atol=1e-9, rtol=1e-9, err_msg=column)
    # the mixture is an average of distributions, not of logits: they differ
    assert np.abs(table["duality_gap_mixture"] - table["duality_gap"]).max() > 1e-4
    # regret is cumulative suboptimality of π_0 … π_{t−1}: increments are suboptimality(π_{t−1})
    np.testing.assert_allclose(np.diff(table["regret"]), table["suboptimality"][:-1], atol=1e-12)
    assert table["regret"][0] == 0.0


def test_run_columns_and_nan_metrics():
    table = sim.run(
        {"iterations": 3, "game": {"kind": "cyclic", "arms": 3, "tau": 0.0}, "rule": [{"name": "sppo", "eta": 1.0}]}
    )
    assert list(table.columns) == ["rule", "seed", "iteration", *sim.metrics.METRIC_COLUMNS]
    assert table["duality_gap"].isna().all() and table["suboptimality"].isna().all() and table["regret"].isna().all()
    # π_0 = uniform = the LP Nash of rock–paper–scissors, a fixed point of SPPO
    np.testing.assert_allclose(table["exploitability"], 0.0, atol=1e-15)
    np.testing.assert_allclose(table["kl_to_nash"], 0.0, atol=1e-9)


def test_every_seeds_regularised_nash_is_solved_in_one_batched_call_equal_to_separate_solves():
    """build_games solves π*_τ for all seeds at once (issue: per-seed set-up vectorised); each seed's
    target equals its own target_policy solve and is the fixed point π* = BR_τ(π*)."""
    from sim.experiment import build_games
    from sim.game import Game
    from sim.nash import target_policy
    from sim.spec import parse_spec

    spec = parse_spec(
        {
            "iterations": 1,
            "seeds": 6,
            "game": {"kind": "random", "arms": 7, "tau": 0.2, "reference": "random"},
            "rule": [{"name": "inpo", "eta": 1.0}],
        }
    )
    games, axes, targets, gaps = build_games(spec)
    assert axes.preference == 0 and axes.log_reference == 0
    for index in range(6):
        game = Game(*(leaf if axis is None else leaf[index] for leaf, axis in zip(games, axes)))
        alone, gap = target_policy(game)
        np.testing.assert_allclose(np.asarray(targets[index]), alone, atol=1e-14, rtol=0)
        best = np.exp(np.asarray(game.log_reference)) * np.exp(np.asarray(game.preference) @ alone / 0.2)
        np.testing.assert_allclose(alone, best / best.sum(), atol=1e-12)
        assert gaps[index] <= 1e-12
