"""π⁰, the unique unregularised Nash policy (sim.nash), and the ``kl_to_unregularised_nash`` columns."""

from __future__ import annotations

import numpy as np
import pytest
from exact_reference import bradley_terry_matrix, cyclic_matrix, inpo_step, kl, random_matrix

import sim
from bandits import preference as preference_models
from sim import nash
from sim.game import Game
from sim.seed_games import lemke_howson_candidates, unregularised_targets

# COMAL's 3-action game (a, b, c): P(b≻a) = P(c≻b) = 0.9, P(a≻c) = 0.8
COMAL = np.array([[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]])
# With A = P − ½ = [[0, x, y], [−x, 0, z], [−y, −z, 0]] the kernel of A is (z, −y, x): here (−0.4, −0.3, −0.4)
COMAL_NASH = np.array([4.0, 3.0, 4.0]) / 11.0


def is_nash(matrix, policy, slack=1e-12):
    """π is an unregularised Nash policy iff no arm beats it: (Pπ)_y ≤ ½ for every y."""
    return bool(np.max(matrix @ policy) <= 0.5 + slack)


@pytest.mark.parametrize(
    "matrix, expected",
    [
        (cyclic_matrix(1.0), np.full(3, 1 / 3)),
        (cyclic_matrix(0.3), np.full(3, 1 / 3)),
        (cyclic_matrix(0.5, arms=5), np.full(5, 1 / 5)),
        (COMAL, COMAL_NASH),
        # Condorcet paradox as a mixture of three Bradley–Terry rankings: symmetric, so uniform
        (
            preference_models.bradley_terry_mixture([[6.0, 3.0, 0.0], [0.0, 6.0, 3.0], [3.0, 0.0, 6.0]]),
            np.full(3, 1 / 3),
        ),
    ],
)
def test_cyclic_games_have_their_closed_form_nash(matrix, expected):
    policy = nash.unique_unregularised_nash(matrix)
    np.testing.assert_allclose(policy, expected, rtol=0, atol=1e-14)
    assert nash.certified_unique_nash(matrix) is not None


def test_a_condorcet_winner_is_the_unique_nash():
    # rock–paper–scissors among arms 0–2 and an arm 3 that beats each of them with probability 0.6
    matrix = np.full((4, 4), 0.5)
    matrix[:3, :3] = cyclic_matrix(1.0)
    matrix[3, :3], matrix[:3, 3] = 0.6, 0.4
    assert nash.condorcet_winner(matrix) == 3
    np.testing.assert_array_equal(nash.unique_unregularised_nash(matrix), np.eye(4)[3])
    # the LP ranges over the Nash polytope agree: a single point
    np.testing.assert_allclose(nash.nash_coordinate_ranges(matrix), np.eye(4)[3][:, None] * [1, 1], atol=1e-9)
    # Bradley–Terry with one best arm: its argmax, also for K above the LP cap (no LP is solved)
    np.testing.assert_array_equal(nash.unique_unregularised_nash(bradley_terry_matrix([0.3, 1.2, -1.0])), [0, 1, 0])
    rewards = np.linspace(0.0, 1.0, nash.UNREGULARISED_NASH_MAX_ARMS + 50)
    np.testing.assert_array_equal(
        nash.unique_unregularised_nash(bradley_terry_matrix(rewards)), np.eye(len(rewards))[-1]
    )
    assert nash.condorcet_winner(COMAL) is None


def test_condorcet_winner_pass_equals_the_definition():
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(300):
        arms = int(rng.integers(2, 7))
        # entries on a coarse grid, so ties P[i, j] = ½ happen too
        lower = np.tril(rng.integers(0, 5, size=(arms, arms)) / 4.0, k=-1)
        matrix = lower + np.triu(1.0 - lower.T, k=1) + 0.5 * np.eye(arms)
        winners = [i for i in range(arms) if all(matrix[i, j] > 0.5 for j in range(arms) if j != i)]
        assert nash.condorcet_winner(matrix) == (winners[0] if winners else None)
        found += bool(winners)
    assert 30 < found < 270


def test_non_unique_nash_gives_nan():
    # an even cycle: (Pπ)_y ≤ ½ ⟺ π_{y+1} ≤ π_{y−1}, so every (p, q, p, q) is Nash
    even = cyclic_matrix(1.0, arms=4)
    assert is_nash(even, np.array([0.5, 0, 0.5, 0])) and is_nash(even, np.array([0, 0.5, 0, 0.5]))
    np.testing.assert_allclose(nash.nash_coordinate_ranges(even), np.tile([0.0, 0.5], (4, 1)), atol=1e-9)
    # two equally good best arms of a Bradley–Terry game: both point masses are Nash
    tied = bradley_terry_matrix([2.0, 2.0, 0.0])
    assert is_nash(tied, np.eye(3)[0]) and is_nash(tied, np.eye(3)[1])
    # rock–paper–scissors with rock cloned: the rock mass may be split between the clones
    clone = np.full((4, 4), 0.5)
    clone[:3, :3] = cyclic_matrix(1.0)
    clone[3, :3], clone[:3, 3] = clone[0, :3], clone[:3, 0]
    clone[3, 3] = 0.5
    clone[0, 3] = clone[3, 0] = 0.5
    assert is_nash(clone, np.array([1, 1, 1, 0]) / 3) and is_nash(clone, np.array([0, 1, 1, 1]) / 3)
    for matrix in (even, tied, clone):
        assert nash.certified_unique_nash(matrix) is None
        assert np.isnan(nash.unique_unregularised_nash(matrix)).all()
    # no Condorcet winner above the LP cap: not computed
    big = cyclic_matrix(1.0, arms=nash.UNREGULARISED_NASH_MAX_ARMS + 1)
    assert np.isnan(nash.unique_unregularised_nash(big)).all()


@pytest.mark.parametrize("seed", range(6))
def test_random_games_certificate_agrees_with_the_nash_polytope_ranges(seed):
    matrix = random_matrix(7, seed)
    policy = nash.unique_unregularised_nash(matrix)
    ranges = nash.nash_coordinate_ranges(matrix)
    # random games have one Nash policy a.s.: the polytope is a point, and the certified π⁰ is it
    assert np.max(ranges[:, 1] - ranges[:, 0]) < 1e-8
    np.testing.assert_allclose(policy, ranges.mean(axis=1), atol=1e-8)
    np.testing.assert_allclose(policy, nash.unregularised_nash(matrix), atol=1e-7)
    assert is_nash(matrix, policy, slack=1e-14) and policy.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("matrix, expected", [(COMAL, COMAL_NASH), (cyclic_matrix(0.5, arms=5), np.full(5, 0.2))])
def test_range_lp_fallback_gives_the_same_nash(monkeypatch, matrix, expected):
    # the 2K-LP path, used when the certificate fails, on games whose π⁰ is known in closed form
    monkeypatch.setattr(nash, "certified_unique_nash", lambda preference: None)
    np.testing.assert_allclose(nash.unique_unregularised_nash(matrix), expected, rtol=0, atol=1e-14)
    assert np.isnan(nash.unique_unregularised_nash(cyclic_matrix(1.0, arms=4))).all()


def _numpy_inpo_trajectory(matrix, reference, eta, tau, steps):
    logs = [np.log(reference)]
    for _ in range(steps):
        logs.append(inpo_step(logs[-1], np.log(reference), matrix, eta, tau))
    return np.exp(np.array(logs))


def test_recorded_columns_equal_numpy_on_comal_game():
    reference = np.array([0.5, 0.3, 0.2])
    table = sim.run(
        {
            "iterations": 40,
            "record_every": 1,
            "game": {"kind": "matrix", "preference": COMAL.tolist(), "tau": 0.1, "reference": reference.tolist()},
            "rule": [{"name": "inpo", "eta": 0.5}],
        }
    )
    trajectory = _numpy_inpo_trajectory(COMAL, reference, 0.5, 0.1, 40)
    last = [kl(COMAL_NASH, p) for p in trajectory]
    mixture = [kl(COMAL_NASH, trajectory[: t + 1].mean(axis=0)) for t in range(41)]
    np.testing.assert_allclose(table["kl_to_unregularised_nash"], last, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(table["kl_to_unregularised_nash_mixture"], mixture, rtol=1e-10, atol=1e-13)
    # τ > 0: INPO approaches π*_τ, which is not π⁰, so KL to π⁰ stalls at a constant (COMAL's point)
    final = table.iloc[-1]
    assert final["kl_to_nash"] < 1e-4 and final["kl_to_unregularised_nash"] > 1e-2


def test_columns_are_empty_where_nash_is_not_unique_and_equal_kl_to_nash_at_tau_zero():
    even = sim.run(
        {"iterations": 5, "game": {"kind": "cyclic", "arms": 4, "tau": 0.1}, "rule": [{"name": "inpo", "eta": 1.0}]}
    )
    assert even["kl_to_unregularised_nash"].isna().all() and even["kl_to_unregularised_nash_mixture"].isna().all()
    assert np.isfinite(even["kl_to_nash"]).all()
    # τ = 0 on rock–paper–scissors: the target is the LP Nash, i.e. π⁰, so the columns coincide
    rps = sim.run(
        {
            "iterations": 8,
            "game": {"kind": "cyclic", "arms": 3, "strength": 0.8, "tau": 0.0, "initial": "random"},
            "seeds": 2,
            "rule": [{"name": "extragradient", "eta": 0.3}],
        }
    )
    assert rps["kl_to_unregularised_nash"].gt(0).all()
    for suffix in ("", "_mixture"):
        np.testing.assert_allclose(
            rps["kl_to_unregularised_nash" + suffix], rps["kl_to_nash" + suffix], rtol=1e-12, atol=1e-15
        )


def test_per_seed_nash_on_random_and_bt_mixture_games():
    for game in (
        {"kind": "random", "arms": 5, "tau": 0.1, "reference": "random"},
        {"kind": "bt_mixture", "rewards": "random", "components": 3, "reward_scale": 6.0, "arms": 5, "tau": 0.1}
        | {"reference": "random"},
    ):
        spec = {"iterations": 3, "seeds": [0, 1, 2, 3], "game": game, "rule": [{"name": "inpo", "eta": 1.0}]}
        table = sim.run(spec)
        start = table[table["iteration"] == 0].set_index("seed")
        parsed = sim.parse_spec(spec)
        values = set()
        for seed in parsed.seeds:
            instance = sim.experiment.build_game(parsed.game, seed)
            # π⁰ independently: the midpoint of the (single-point) Nash polytope from the 2K range LPs
            ranges = nash.nash_coordinate_ranges(instance.preference)
            assert np.max(ranges[:, 1] - ranges[:, 0]) < 1e-8
            expected = kl(ranges.mean(axis=1), instance.reference)
            assert start.loc[seed, "kl_to_unregularised_nash"] == pytest.approx(expected, rel=1e-7, abs=1e-9)
            values.add(round(expected, 6))
        assert len(values) == 4  # one game, and one π⁰, per seed


SAMPLED_RUN = {
    "mode": "sampled",
    "policy": "tabular",
    "pairs_per_iteration": 64,
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "inner_steps": 5,
}


def test_sampled_mode_records_the_columns():
    reference = np.array([0.5, 0.3, 0.2])
    spec = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "matrix", "preference": COMAL.tolist(), "tau": 0.1, "reference": reference.tolist()},
        "rule": [{"name": "online_ipo", "tau": 0.1}],
        "run": SAMPLED_RUN,
    }
    table = sim.run(spec)
    start = table[table["iteration"] == 0]
    np.testing.assert_allclose(start["kl_to_unregularised_nash"], kl(COMAL_NASH, reference), rtol=1e-12)
    assert np.isfinite(table["kl_to_unregularised_nash"]).all()
    assert np.isfinite(table["kl_to_unregularised_nash_mixture"]).all()
    rps = sim.run(
        {
            **spec,
            "game": {"kind": "cyclic", "arms": 3, "tau": 0.0, "initial": "random"},
            "rule": [{"name": "sppo", "eta": 1.0}],
        }
    )
    np.testing.assert_allclose(rps["kl_to_unregularised_nash"], rps["kl_to_nash"], rtol=1e-12, atol=1e-15)


def test_sampled_problem_carries_the_unregularised_nash():
    spec = sim.parse_spec(
        {
            "iterations": 3,
            "seeds": 2,
            "game": {"kind": "random", "arms": 4, "tau": 0.1},
            "rule": [{"name": "online_ipo", "tau": 0.1}],
            "run": SAMPLED_RUN,
        }
    )
    inputs = sim.sampled.experiment.build_sampled_inputs(spec)
    problems = inputs.problems
    assert problems.unregularised_target.shape == (2, 1, 4)
    for index, seed in enumerate(spec.seeds):
        matrix = sim.experiment.build_game(spec.game, seed).preference
        np.testing.assert_allclose(
            problems.unregularised_target[index, 0], nash.nash_coordinate_ranges(matrix).mean(axis=1), atol=1e-8
        )


def test_constant_sum_keeps_an_exact_game_and_mends_a_rounded_one():
    matrix = random_matrix(8, 3)
    assert np.array_equal(matrix + matrix.T, np.ones_like(matrix))  # the reference builder's P is exact
    assert nash.constant_sum(matrix) is matrix
    rounded = matrix.astype(np.float32).astype(np.float64)
    assert np.abs(rounded + rounded.T - 1.0).max() > 1e-9  # float32 rounds the two entries of a pair apart
    mended = nash.constant_sum(rounded)
    np.testing.assert_allclose(mended + mended.T, 1.0, rtol=0, atol=1e-15)
    assert np.abs(mended - rounded).max() <= 0.5 * np.abs(rounded + rounded.T - 1.0).max() + 1e-16
    # a stack of games: each transposed on its own, kept only when every game is exact
    exact_stack = np.stack([matrix, random_matrix(8, 4)])
    assert nash.constant_sum(exact_stack) is exact_stack
    np.testing.assert_array_equal(nash.constant_sum(np.stack([rounded, rounded]))[1], mended)


@pytest.mark.parametrize("seed", range(4))
def test_a_float32_game_has_the_nash_of_its_float64_game(seed):
    # a float32 P's pair sums are ~3e-8 off 1: its own polytope {π : Pπ ≤ ½} can be empty (the
    # uniqueness LPs were infeasible); π⁰ is that of the nearest constant-sum game, ~1e-7 from float64's
    matrix = random_matrix(8, seed)
    rounded = matrix.astype(np.float32)
    np.testing.assert_allclose(
        nash.unique_unregularised_nash(rounded), nash.unique_unregularised_nash(matrix), atol=1e-6
    )
    ranges = nash.nash_coordinate_ranges(nash.constant_sum(rounded.astype(np.float64)))
    assert np.max(ranges[:, 1] - ranges[:, 0]) < 1e-6  # the range LPs are feasible


def test_a_float32_run_on_random_games_measures_the_unregularised_nash():
    spec = {
        "iterations": 20,
        "seeds": 4,
        "precision": "float32",
        "game": {"kind": "random", "arms": 6, "tau": 0.1, "reference": "random"},
        "rule": [{"name": "inpo", "eta": 0.5}],
    }
    table = sim.run(spec)
    assert np.isfinite(table["kl_to_unregularised_nash"]).all()
    # the same games and iterates in float64: the float32 column is the same numbers to float32 accuracy
    exact = sim.run({**spec, "precision": "float64"})
    np.testing.assert_allclose(
        table["kl_to_unregularised_nash"], exact["kl_to_unregularised_nash"], rtol=1e-4, atol=1e-5
    )
    assert exact["kl_to_unregularised_nash"].min() > 1e-3  # not trivially zero


# ----------------------------------------------------------------------------------------------
# Lemke–Howson candidates (many large per-seed games)


def test_lemke_howson_finds_a_nash_policy_of_every_game():
    """Each row is a policy no arm beats ((Pπ)_y ≤ ½: the definition), on random games of several sizes,
    and the closed forms where the Nash policy is known."""
    for arms in (2, 3, 7, 30):
        matrices = np.stack([random_matrix(arms, seed) for seed in range(12)])
        policies = nash.lemke_howson_policies(matrices)
        assert policies.shape == (12, arms) and np.isfinite(policies).all()
        for matrix, policy in zip(matrices, policies):
            assert policy.min() >= 0 and policy.sum() == pytest.approx(1.0, abs=1e-14)
            assert is_nash(matrix, policy, slack=1e-12)
    closed = nash.lemke_howson_policies(np.stack([COMAL, cyclic_matrix(0.3)]))
    np.testing.assert_allclose(closed, [COMAL_NASH, np.full(3, 1 / 3)], rtol=0, atol=1e-14)
    winner = nash.lemke_howson_policies(bradley_terry_matrix([0.0, 2.0, 1.0])[None])
    np.testing.assert_array_equal(winner, [[0.0, 1.0, 0.0]])


def test_lemke_howson_pivots_in_groups_over_the_devices_as_all_at_once(monkeypatch):
    matrices = np.stack([random_matrix(9, seed) for seed in range(11)])
    together = nash.lemke_howson_policies(matrices)
    monkeypatch.setattr(nash, "seed_tile", lambda seeds, arms, itemsize=8: 4)  # groups of 4, the last padded
    np.testing.assert_array_equal(nash.lemke_howson_policies(matrices), together)


def test_a_game_out_of_pivots_gets_nan_and_its_linear_program(monkeypatch):
    matrices = np.stack([random_matrix(6, seed) for seed in range(3)])
    monkeypatch.setattr(nash, "LEMKE_HOWSON_PIVOTS_PER_ARM", 0)
    assert np.isnan(nash.lemke_howson_policies(matrices)).all()
    for matrix, candidate in zip(matrices, nash.lemke_howson_policies(matrices)):
        np.testing.assert_array_equal(
            nash.unique_unregularised_nash(matrix, candidate=candidate), nash.unique_unregularised_nash(matrix)
        )


def test_a_wrong_candidate_is_not_certified_and_the_lp_decides():
    matrix = random_matrix(8, 3)
    assert nash.condorcet_winner(matrix) is None
    for wrong in (np.eye(8)[0], np.full(8, 1 / 8)):  # a pure strategy some arm beats; the uniform policy
        assert nash.certified_unique_nash(matrix, wrong) is None
        np.testing.assert_array_equal(
            nash.unique_unregularised_nash(matrix, candidate=wrong), nash.unique_unregularised_nash(matrix)
        )


def test_per_seed_targets_from_lemke_howson_are_the_linear_programs_bit_for_bit(monkeypatch):
    """unregularised_targets with the pivoting (its threshold lowered to these small games) gives the rows
    of one LP per seed: random games (unique π⁰), games with two Nash policies (NaN rows) and a game
    with a Condorcet winner (no candidate needed)."""
    clone = np.full((5, 5), 0.5)  # rock–paper–scissors with rock cloned, and a fifth arm every arm beats
    clone[:3, :3] = cyclic_matrix(1.0)
    clone[3, :3], clone[:3, 3] = clone[0, :3], clone[:3, 0]
    clone[:4, 4], clone[4, :4] = 0.9, 0.1
    winner = bradley_terry_matrix([0.0, 1.0, 3.0, 2.0, 0.5])
    matrices = np.stack([random_matrix(5, seed) for seed in range(9)] + [clone, winner])
    serial = np.stack([nash.unique_unregularised_nash(matrix) for matrix in matrices])
    assert np.isnan(serial[9]).all() and np.isfinite(np.delete(serial, 9, axis=0)).all()
    monkeypatch.setattr("sim.seed_games.LEMKE_HOWSON_MIN_ENTRIES", 1)
    candidates = lemke_howson_candidates(matrices)
    assert candidates[-1] is None and all(candidate is not None for candidate in candidates[:-1])
    stacked = Game(*(matrices if name == "preference" else None for name in Game._fields))
    axes = Game(*(0 if name == "preference" else None for name in Game._fields))
    with sim.float64():
        threaded = np.asarray(unregularised_targets(stacked, axes, len(matrices)))
    np.testing.assert_array_equal(threaded, serial)
