"""``kind = "bt_mixture"``: P(i≻j) = Σ_k w_k σ(r_k(i) − r_k(j)), against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandits import preference as preference_models
from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game, depends_on_seed
from sim.cli import main
from sim.spec import parse_spec


def direct_mixture(rewards, weights):
    """The formula written out with scalar loops and the logistic 1/(1 + e^{−x})."""
    rewards = np.asarray(rewards, dtype=np.float64)
    components, arms = rewards.shape
    matrix = np.zeros((arms, arms))
    for i in range(arms):
        for j in range(arms):
            matrix[i, j] = sum(
                weights[k] / (1.0 + math.exp(-(rewards[k, i] - rewards[k, j]))) for k in range(components)
            )
    return matrix


def test_mixture_equals_the_direct_computation_and_is_a_preference_matrix():
    rng = np.random.default_rng(0)
    rewards = 3.0 * rng.standard_normal((3, 5))
    weights = [0.2, 0.5, 0.3]
    matrix = preference_models.bradley_terry_mixture(rewards, weights)
    np.testing.assert_allclose(matrix, direct_mixture(rewards, weights), rtol=0, atol=1e-15)
    np.testing.assert_allclose(matrix + matrix.T, np.ones((5, 5)), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(np.diag(matrix), np.full(5, 0.5))
    assert matrix.min() > 0 and matrix.max() < 1
    # through the spec: the same matrix; no single reward vector (suboptimality does not apply)
    game = build_game(GameSpec(kind="bt_mixture", rewards=rewards.tolist(), weights=weights), 0)
    np.testing.assert_array_equal(game.preference, matrix)
    assert game.rewards is None and game.arms == 5


def test_one_component_is_bradley_terry_and_default_weights_are_uniform():
    rewards = [0.3, -1.0, 2.0, 0.0]
    np.testing.assert_allclose(
        preference_models.bradley_terry_mixture([rewards], [1.0]), preference_models.bradley_terry(rewards), atol=1e-16
    )
    two = [[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]]
    np.testing.assert_allclose(
        preference_models.bradley_terry_mixture(two), direct_mixture(two, [0.5, 0.5]), rtol=0, atol=1e-15
    )


def test_condorcet_paradox_mixture_is_a_three_cycle():
    # three equally weighted rankings a ≻ b ≻ c, b ≻ c ≻ a, c ≻ a ≻ b with reward gap s = 3
    s = 3.0
    rewards = [[2 * s, s, 0.0], [0.0, 2 * s, s], [s, 0.0, 2 * s]]
    game = build_game(GameSpec(kind="bt_mixture", rewards=rewards, weights=[1 / 3, 1 / 3, 1 / 3]), 0)
    sigma = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    beats_next = (2 * sigma(s) + sigma(-2 * s)) / 3  # a≻b: two rankings put a one step above b, one two below
    assert beats_next == pytest.approx(0.6358736, abs=1e-7)
    for i in range(3):
        assert game.preference[i, (i + 1) % 3] == pytest.approx(beats_next, abs=1e-15)
    # a ≻ b, b ≻ c and c ≻ a, each with probability > ½: not transitive, and no arm beats both others
    assert all(game.preference[i, (i + 1) % 3] > 0.5 for i in range(3))
    assert not any(all(game.preference[i, j] > 0.5 for j in range(3) if j != i) for i in range(3))


def test_random_rewards_per_seed():
    spec = GameSpec(kind="bt_mixture", rewards="random", arms=4, components=3, reward_scale=2.0)
    assert depends_on_seed(spec)
    first, again, other = build_game(spec, 5), build_game(spec, 5), build_game(spec, 6)
    np.testing.assert_array_equal(first.preference, again.preference)
    assert not np.array_equal(first.preference, other.preference)
    drawn = 2.0 * np.random.default_rng([5, 5]).uniform(size=(3, 4))
    np.testing.assert_allclose(first.preference, direct_mixture(drawn, [1 / 3] * 3), rtol=0, atol=1e-15)
    # the number of components can come from the weights
    weighted = build_game(GameSpec(kind="bt_mixture", rewards="random", arms=4, weights=[0.25, 0.75]), 1)
    drawn = np.random.default_rng([1, 5]).uniform(size=(2, 4))
    np.testing.assert_allclose(weighted.preference, direct_mixture(drawn, [0.25, 0.75]), rtol=0, atol=1e-15)
    assert not depends_on_seed(GameSpec(kind="bt_mixture", rewards=[[0.0, 1.0], [1.0, 0.0]]))


@pytest.mark.parametrize(
    "fields, field, phrase",
    [
        ({"weights": [0.5, 0.6]}, "game.weights", "sum to 1"),
        ({"weights": [0.5, float("nan")]}, "game.weights", "finite"),
        ({"weights": [0.5, float("inf")]}, "game.weights", "finite"),
        ({"weights": [1.5, -0.5]}, "game.weights", "≥ 0"),
        ({"weights": [[0.5, 0.5]]}, "game.weights", "flat"),
        ({"weights": ["a", "b"]}, "game.weights", "numbers"),
        ({"weights": [1.0]}, "game.weights", "one weight per component"),
        ({"rewards": [[0.0, 1.0], [1.0, 0.0, 2.0]]}, "game.rewards", "reward vectors"),
        ({"rewards": [0.0, 1.0]}, "game.rewards", "shape (2,)"),
        ({"rewards": [[0.0], [1.0]]}, "game.rewards", "K ≥ 2"),
        ({"rewards": [[0.0, float("inf")], [1.0, 0.0]]}, "game.rewards", "finite"),
        ({"rewards": [[0.0, float("nan")], [1.0, 0.0]]}, "game.rewards", "finite"),
        ({"rewards": 5}, "game.rewards", "reward vectors"),
        ({"rewards": None}, "game.rewards", "bt_mixture"),
        ({"rewards": "learned"}, "game.rewards", "random"),
        ({"components": 3}, "game.components", "lists 2"),
        ({"rewards": "random", "arms": 3}, "game.components", "number of components"),
        ({"rewards": "random", "arms": 3, "components": 0}, "game.components", "≥ 1"),
        ({"rewards": "random", "arms": 3, "components": 2.5}, "game.components", "integer"),
        ({"rewards": "random", "arms": 3, "components": 2, "weights": [1.0]}, "game.weights", "2 mixture"),
        ({"rewards": "random", "components": 2}, "game.arms", "number of arms"),
        ({"rewards": [[0.0, 1.0], [1.0, 0.0]], "arms": 3}, "game.arms", "has 2"),
    ],
)
def test_bad_mixtures_name_the_field(fields, field, phrase):
    fields = {"kind": "bt_mixture", "rewards": [[0.0, 1.0], [1.0, 0.0]], **fields}
    with pytest.raises(PrefsimError) as info:
        build_game(GameSpec(**fields), 0)
    assert field in str(info.value) and phrase in str(info.value)


def test_mixture_keys_belong_to_bt_mixture_only():
    with pytest.raises(PrefsimError, match='game.weights: only kind = "bt_mixture"'):
        GameSpec(kind="bradley_terry", rewards=[0.0, 1.0], weights=[1.0]).validate()
    with pytest.raises(PrefsimError, match="game.components"):
        GameSpec(kind="cyclic", arms=3, components=2).validate()


def test_spec_parser_reads_the_mixture_keys():
    spec = parse_spec(
        {
            "iterations": 5,
            "game": {
                "kind": "bt_mixture",
                "rewards": "random",
                "arms": 4,
                "components": 2,
                "weights": [0.3, 0.7],
                "reward_scale": 4.0,
                "tau": 0.1,
            },
            "rule": [{"name": "inpo", "eta": 1.0}],
        }
    )
    assert spec.game.kind == "bt_mixture" and spec.game.weights == [0.3, 0.7] and spec.game.components == 2
    with pytest.raises(PrefsimError, match=r'game.weights = \[1\] is used only with kind = "bt_mixture"'):
        parse_spec(
            {
                "iterations": 5,
                "game": {"kind": "bradley_terry", "rewards": [0, 1], "weights": [1.0]},
                "rule": [{"name": "inpo"}],
            }
        )
    with pytest.raises(PrefsimError, match="game.weights"):
        parse_spec(
            {
                "iterations": 5,
                "game": {"kind": "bt_mixture", "rewards": [[0, 1]], "weights": [0.5]},
                "rule": [{"name": "inpo"}],
            }
        )


OVERFLOW_SPEC = """iterations = 3
[game]
kind = "{kind}"
rewards = {rewards}
tau = 0.1
[[rule]]
name = "inpo"
eta = 1.0
"""


@pytest.mark.filterwarnings("error::RuntimeWarning")  # not NumPy's "overflow encountered in subtract"
@pytest.mark.parametrize(
    "kind, rewards, field",
    [
        ("bradley_terry", "[1e308, -1e308, 0.0]", "game.rewards"),
        ("bt_mixture", "[[0.0, 1.0, 2.0], [1e308, -1e308, 0.0]]", "game.rewards[1]"),
    ],
)
def test_rewards_whose_spread_overflows_are_a_clear_error_naming_game_rewards(tmp_path, capsys, kind, rewards, field):
    path = tmp_path / "spec.toml"
    path.write_text(OVERFLOW_SPEC.format(kind=kind, rewards=rewards), encoding="utf-8")
    status = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-plots"])
    assert status == 2
    assert capsys.readouterr().err == (
        f"error: {field}: the largest minus the smallest reward, 1e+308 − (-1e+308), overflows float64; rescale the "
        "rewards (P saturates at 0 and 1 once two rewards differ by more than about 40).\n"
    )
