"""Preference models, reference policies and game specs (bandits/): validation and constructions."""

import math
import warnings

import numpy as np
import pytest

from bandits import preference as preference_models
from bandits import reference as reference_policies
from bandits.continuous import segment_regret
from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game, depends_on_seed, preference_depends_on_seed


# --------------------------------------------------------------------------- preference matrices
@pytest.mark.parametrize(
    "matrix, phrase",
    [
        ([[0.5, 1.2], [-0.2, 0.5]], "entries must be probabilities"),
        ([[0.5, 0.7], [0.4, 0.5]], "P + Pᵀ = 1"),
        ([[0.4, 0.5], [0.5, 0.6]], "P + Pᵀ = 1"),  # rows fine, diagonal not ½
        ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], "square"),
        ([0.5, 0.5], "square"),
        ([[0.5, np.nan], [np.nan, 0.5]], "non-finite"),
        ([[0.5]], "at least 2 arms"),
        ([["a", "b"], ["c", "d"]], "square matrix of numbers"),
    ],
)
def test_invalid_preference_matrix_names_the_field(matrix, phrase):
    with pytest.raises(PrefsimError) as info:
        preference_models.validate_preference_matrix(matrix, name="game.preference")
    assert "game.preference" in str(info.value)
    assert phrase in str(info.value)


def test_valid_matrix_is_accepted_unchanged():
    matrix = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.6], [0.8, 0.4, 0.5]])
    np.testing.assert_array_equal(preference_models.general_matrix(matrix), matrix)


def test_cyclic_three_arms_full_strength_is_rock_paper_scissors():
    # arm i beats arm i+1 surely (and loses to arm i−1): P − ½ is the rock–paper–scissors payoff ±½.
    expected = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(preference_models.cyclic(3, 1.0), expected)
    weaker = preference_models.cyclic(4, 0.5)
    assert weaker[0, 1] == 0.75 and weaker[1, 0] == 0.25 and weaker[3, 0] == 0.75 and weaker[0, 2] == 0.5


@pytest.mark.parametrize("arms, strength, field", [(2, 1.0, "arms"), (3, 1.5, "strength"), (3, -0.1, "strength")])
def test_cyclic_rejects_bad_arguments(arms, strength, field):
    with pytest.raises(PrefsimError, match=field):
        preference_models.cyclic(arms, strength)


def test_bradley_terry_matches_logistic_formula():
    rewards = np.array([0.0, 1.0, -2.0, 0.3])
    matrix = preference_models.bradley_terry(rewards)
    for i in range(4):
        for j in range(4):
            assert matrix[i, j] == pytest.approx(1.0 / (1.0 + np.exp(rewards[j] - rewards[i])), abs=1e-15)
    np.testing.assert_array_equal(matrix + matrix.T, np.ones((4, 4)))
    assert matrix[1, 0] == pytest.approx(0.7310585786300049, abs=1e-15)  # σ(1)
    with pytest.raises(PrefsimError, match="rewards"):
        preference_models.bradley_terry([1.0, np.inf])
    with pytest.raises(PrefsimError, match="rewards"):
        preference_models.bradley_terry([1.0])
    # finite rewards whose difference is not: a clear error, not NumPy's overflow warning and inf metrics
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            PrefsimError, match=r"rewards: the largest minus the smallest reward, 1e\+308 − \(-1e\+308\)"
        ):
            preference_models.bradley_terry([1e308, 0.5, -1e308])


@pytest.mark.parametrize(
    "construct",
    [
        lambda rng: preference_models.random_lower_triangle(6, rng),
        lambda rng: preference_models.random_skew_logits(6, rng, 2.0),
    ],
    ids=["lower_triangle", "skew_logits"],
)
def test_random_constructions_are_valid_and_seed_deterministic(construct):
    first = construct(np.random.default_rng(7))
    again = construct(np.random.default_rng(7))
    other = construct(np.random.default_rng(8))
    assert first.shape == (6, 6)
    np.testing.assert_allclose(first + first.T, 1.0, atol=1e-15, rtol=0)
    np.testing.assert_array_equal(np.diag(first), 0.5)
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.05
    # not degenerate: off-diagonal entries vary
    assert np.std(first[np.triu_indices(6, 1)]) > 0.05


def logistic(x):
    """σ(x) = 1/(1 + e^{−x}), written independently of bandits.preference's tanh form."""
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_skew_logits_multiply_the_gaussian_logits_by_the_scale(scale):
    # build_game draws the random game of seed 4 from the stream default_rng([4, 2]): G, 6×6 standard normals
    game = build_game(GameSpec(kind="random", arms=6, construction="skew_logits", scale=scale), 4)
    gaussian = np.random.default_rng([4, 2]).standard_normal((6, 6))
    expected = logistic(scale * (gaussian - gaussian.T) / np.sqrt(2.0))
    np.testing.assert_allclose(game.preference, expected, rtol=0, atol=1e-15)
    direct = preference_models.random_skew_logits(6, np.random.default_rng([4, 2]), scale)
    np.testing.assert_array_equal(direct, game.preference)


def test_lower_triangle_entries_are_the_seeds_uniform_draws():
    # EGPO's construction (docs/theory.md §C.10): P[i, j] ~ U[0, 1] i.i.d. below the diagonal, P[j, i] = 1 − P[i, j].
    # build_game draws the random game of seed 4 from default_rng([4, 2]): U, 6×6 uniforms, of which P keeps i > j
    game = build_game(GameSpec(kind="random", arms=6, construction="lower_triangle"), 4)
    uniforms = np.random.default_rng([4, 2]).uniform(size=(6, 6))
    below = np.tril_indices(6, -1)
    np.testing.assert_array_equal(game.preference[below], uniforms[below])
    np.testing.assert_allclose(game.preference.T[below], 1.0 - uniforms[below], rtol=0, atol=1e-15)
    # and over many games the entries below the diagonal are U[0, 1]: mean ½, variance 1/12, range near [0, 1]
    rng = np.random.default_rng(11)
    entries = np.concatenate([preference_models.random_lower_triangle(6, rng)[below] for _ in range(2000)])
    assert abs(entries.mean() - 0.5) < 5 * math.sqrt(1 / 12 / entries.size)
    assert abs(entries.var() - 1 / 12) < 0.005
    assert entries.min() < 1e-3 and entries.max() > 1 - 1e-3


# --------------------------------------------------------------------------- reference policies
@pytest.mark.parametrize(
    "policy, arms, phrase",
    [
        ([0.5, 0.5, 0.0], 3, "positive reference mass"),
        ([0.6, 0.5, -0.1], 3, "positive reference mass"),
        ([0.5, 0.3, 0.3], 3, "sum to 1"),
        ([0.5, 0.5], 3, "has 2 entries but the game has 3 arms"),
        ([[0.5, 0.5]], 2, "vector"),
        ([0.5, np.nan], 2, "non-finite"),
        ("peaked", 2, "expected a list of probabilities"),
    ],
)
def test_invalid_reference_names_the_field(policy, arms, phrase):
    with pytest.raises(PrefsimError) as info:
        reference_policies.validate_reference(policy, arms, name="game.reference")
    assert "game.reference" in str(info.value)
    assert phrase in str(info.value)


def test_random_reference_respects_min_mass_and_seed():
    for seed in range(20):
        policy = reference_policies.random_logits(5, np.random.default_rng(seed), scale=6.0, min_mass=0.03)
        assert policy.min() >= 0.03 - 1e-15
        assert policy.sum() == pytest.approx(1.0, abs=1e-14)
    # with a large scale and no floor, some arm gets far less than the floor above
    assert min(reference_policies.random_logits(5, np.random.default_rng(s), 6.0).min() for s in range(20)) < 0.03
    a = reference_policies.random_logits(5, np.random.default_rng(1))
    np.testing.assert_array_equal(a, reference_policies.random_logits(5, np.random.default_rng(1)))
    assert np.abs(a - reference_policies.random_logits(5, np.random.default_rng(2))).max() > 1e-3
    with pytest.raises(PrefsimError, match="min_mass"):
        reference_policies.random_logits(4, np.random.default_rng(0), min_mass=0.3)


# --------------------------------------------------------------------------- game specs
@pytest.mark.parametrize(
    "fields, field",
    [
        ({"kind": "tournament"}, "game.kind"),
        ({"kind": "random", "arms": 3, "construction": "upper"}, "game.construction"),
        ({"arms": 3, "initial": "uniform"}, "game.initial"),
        ({"arms": 3, "tau": -0.1}, "game.tau"),
        ({"arms": 3, "tau": "0.1"}, "game.tau"),
        ({"arms": 3, "tau": float("nan")}, "game.tau"),
        ({"kind": "matrix"}, "game.preference"),
        ({"kind": "bradley_terry"}, "game.rewards"),
        ({"kind": "bradley_terry", "rewards": "learned"}, "game.rewards"),
        ({"kind": "bradley_terry", "rewards": "random"}, "game.arms"),
        ({"kind": "cyclic"}, "game.arms"),
        ({"kind": "random"}, "game.arms"),
        ({"arms": 3, "reference": "peaked"}, "game.reference"),
        ({"kind": "cyclic", "arms": 2}, "game.arms"),
        ({"kind": "cyclic", "arms": 3, "strength": 1.5}, "game.strength"),
        ({"kind": "cyclic", "arms": 3, "strength": "strong"}, "game.strength"),
        ({"arms": 3, "reward_scale": -1.0}, "game.reward_scale"),
        # accepted once: a negative logit scale draws what its absolute value draws
        ({"arms": 3, "reference": "random", "reference_scale": -1.0}, "game.reference_scale: must be ≥ 0"),
        ({"kind": "random", "arms": 3, "construction": "skew_logits", "scale": -2.0}, "game.scale: must be ≥ 0"),
        ({"arms": 3, "reference_min_mass": -0.1}, "game.reference_min_mass"),
    ],
)
def test_game_spec_validate_names_the_field(fields, field):
    with pytest.raises(PrefsimError) as info:
        GameSpec(**fields).validate()
    assert field in str(info.value)


@pytest.mark.parametrize(
    "fields, field, phrase",
    [
        ({"kind": "cyclic", "arms": 3, "scale": 5.0}, "game.scale", "reads it, got kind = 'cyclic'; leave scale out"),
        ({"kind": "random", "arms": 3, "scale": 5.0}, "game.scale", 'construction = "skew_logits"'),
        ({"kind": "random", "arms": 3, "strength": 0.5}, "game.strength", "got kind = 'random'"),
        ({"kind": "cyclic", "arms": 3, "construction": "skew_logits"}, "game.construction", "got kind = 'cyclic'"),
        ({"kind": "cyclic", "arms": 3, "preference": [[0.5, 0.5], [0.5, 0.5]]}, "game.preference", "matrix"),
        ({"kind": "cyclic", "arms": 3, "rewards": "random"}, "game.rewards", "got kind = 'cyclic'"),
        ({"kind": "bradley_terry", "rewards": [0.0, 1.0], "reward_scale": 2.0}, "game.reward_scale", "rewards = [0.0"),
        ({"kind": "cyclic", "arms": 3, "reward_scale": 2.0}, "game.reward_scale", "got kind = 'cyclic'"),
        ({"kind": "cyclic", "arms": 3, "reference_scale": 3.0}, "game.reference_scale", "reference = 'uniform'"),
        ({"kind": "cyclic", "arms": 3, "reference_min_mass": 0.1}, "game.reference_min_mass", 'reference = "random"'),
        ({"kind": "bradley_terry", "rewards": [0.0, 1.0], "weights": [1.0]}, "game.weights", "bt_mixture"),
    ],
)
def test_game_spec_refuses_a_field_its_game_does_not_read(fields, field, phrase):
    """The Python API refuses what a spec file refuses: a field given where the game's kind (or its other
    settings) does not read it, naming the field and the kind; a field at its default counts as not given."""
    with pytest.raises(PrefsimError) as info:
        build_game(GameSpec(**fields), 0)
    assert str(info.value).startswith(f"{field}: only ") and phrase in str(info.value)
    unread = {key: value for key, value in fields.items() if f"game.{key}" == field}
    read = GameSpec(**{key: value for key, value in fields.items() if key not in unread})
    assert build_game(read, 0).arms >= 2  # the same game without the field is fine


def test_game_spec_fields_at_their_defaults_are_not_refused():
    game = build_game(GameSpec(kind="cyclic", arms=3, scale=1.0, reward_scale=1, reference_min_mass=0.0), 0)
    assert game.arms == 3


@pytest.mark.parametrize("call", [lambda: GameSpec(kind="cyclic", arm=3), lambda: GameSpec("cyclic", arm=3)])
def test_game_spec_refuses_a_misspelt_field_name(call):
    with pytest.raises(PrefsimError, match=r"GameSpec\(kind='cyclic'\): unknown field\(s\) arm; allowed: arms, "):
        call()


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"kind": "cyclic", "arms": 2.5}, "game.arms"),
        ({"kind": "cyclic", "arms": True}, "game.arms"),
        ({"kind": "bradley_terry", "rewards": [0.0, 1.0], "arms": 3}, "game.arms"),
        ({"kind": "bradley_terry", "rewards": [[0.0, 1.0]]}, "game.rewards"),
        ({"kind": "matrix", "preference": [[0.5, 0.9], [0.2, 0.5]]}, "game.preference"),
        ({"kind": "cyclic", "arms": 3, "reference": [0.5, 0.5]}, "game.reference"),
        ({"kind": "cyclic", "arms": 3, "strength": "strong"}, "game.strength"),
        ({"kind": "bradley_terry", "rewards": "random", "arms": 3, "reward_scale": "wide"}, "game.reward_scale"),
        ({"kind": "random", "arms": 3, "construction": "skew_logits", "scale": "big"}, "game.scale"),
        ({"kind": "cyclic", "arms": 3, "reference": "random", "reference_scale": [1.0]}, "game.reference_scale"),
        ({"kind": "cyclic", "arms": 3, "reference": "random", "reference_min_mass": 0.5}, "game.reference_min_mass"),
        # logits of scale 1e4: exp underflows to an exact zero mass for some arm
        ({"kind": "cyclic", "arms": 5, "reference": "random", "reference_scale": 1e4}, "game.reference_scale"),
    ],
)
def test_build_game_errors_name_the_field(fields, field):
    with pytest.raises(PrefsimError) as info:
        build_game(GameSpec(**fields), 0)
    assert field in str(info.value)


def test_build_game_kinds():
    cyclic = build_game(GameSpec(kind="cyclic", arms=3, strength=0.5, tau=0.1), 0)
    np.testing.assert_array_equal(cyclic.preference, preference_models.cyclic(3, 0.5))
    np.testing.assert_array_equal(cyclic.reference, np.full(3, 1 / 3))
    np.testing.assert_array_equal(cyclic.initial, cyclic.reference)
    assert cyclic.rewards is None and cyclic.tau == 0.1 and cyclic.arms == 3

    bt = build_game(GameSpec(kind="bradley_terry", rewards=[1.0, 0.0], reference=[0.25, 0.75]), 0)
    assert bt.preference[0, 1] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-15)
    np.testing.assert_array_equal(bt.rewards, [1.0, 0.0])
    np.testing.assert_array_equal(bt.reference, [0.25, 0.75])

    matrix = [[0.5, 0.9], [0.1, 0.5]]
    np.testing.assert_array_equal(build_game(GameSpec(kind="matrix", preference=matrix), 3).preference, matrix)

    random_bt = GameSpec(kind="bradley_terry", rewards="random", arms=4, reward_scale=2.0)
    rewards = build_game(random_bt, 5).rewards
    assert rewards.shape == (4,) and rewards.min() >= 0 and rewards.max() <= 2.0
    np.testing.assert_array_equal(rewards, build_game(random_bt, 5).rewards)
    assert not np.array_equal(rewards, build_game(random_bt, 6).rewards)


@pytest.mark.parametrize(
    "fields, varies",
    [
        ({"kind": "cyclic", "arms": 3}, False),
        ({"kind": "bradley_terry", "rewards": [0.0, 1.0]}, False),
        ({"kind": "matrix", "preference": [[0.5, 0.9], [0.1, 0.5]]}, False),
        ({"kind": "random", "arms": 4}, True),
        ({"kind": "random", "arms": 4, "construction": "skew_logits"}, True),
        ({"kind": "bradley_terry", "rewards": "random", "arms": 4}, True),
        ({"kind": "bt_mixture", "rewards": "random", "arms": 4, "components": 2}, True),
        ({"kind": "cyclic", "arms": 3, "reference": "random"}, True),
        ({"kind": "cyclic", "arms": 3, "initial": "random"}, True),
    ],
)
def test_depends_on_seed_matches_what_build_game_does(fields, varies):
    spec = GameSpec(**fields)
    assert depends_on_seed(spec) is varies
    first, second = build_game(spec, 0), build_game(spec, 1)
    differs = any(
        not np.array_equal(getattr(first, name), getattr(second, name))
        for name in ("preference", "reference", "initial")
    ) or (first.rewards is not None and not np.array_equal(first.rewards, second.rewards))
    assert differs is varies
    # P alone: what the seeds' stacked games and the memory estimate (sim.limits) count per seed
    assert preference_depends_on_seed(spec) is not np.array_equal(first.preference, second.preference)
    # and the same seed always rebuilds the same game
    again = build_game(spec, 1)
    np.testing.assert_array_equal(again.preference, second.preference)
    np.testing.assert_array_equal(again.initial, second.initial)


@pytest.mark.parametrize("scale", [0.5, 7.0])
def test_random_bradley_terry_rewards_are_the_reward_scale_times_uniforms(scale):
    # rewards = "random" draws r ~ U[0, reward_scale]^K for seed 3 from the stream default_rng([3, 1])
    game = build_game(GameSpec(kind="bradley_terry", rewards="random", arms=5, reward_scale=scale), 3)
    rewards = scale * np.random.default_rng([3, 1]).uniform(size=5)
    np.testing.assert_array_equal(game.rewards, rewards)
    np.testing.assert_allclose(game.preference, logistic(rewards[:, None] - rewards[None, :]), rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", [-1, 1.7, True, "3", None])
def test_build_game_refuses_a_seed_that_is_not_a_non_negative_integer(seed):
    # -1 was NumPy's raw "expected non-negative integer" ValueError; 1.7 silently ran seed 1
    with pytest.raises(PrefsimError) as info:
        build_game(GameSpec(kind="random", arms=3), seed)
    assert str(info.value) == f"seed: expected an integer ≥ 0, got {seed!r}."


def test_build_game_accepts_numpy_integer_seeds():
    spec = GameSpec(kind="random", arms=3)
    np.testing.assert_array_equal(build_game(spec, np.int64(2)).preference, build_game(spec, 2).preference)


def test_random_initial_policy_is_a_distribution():
    game = build_game(GameSpec(kind="cyclic", arms=5, initial="random"), 3)
    assert game.initial.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(game.initial > 0)
    np.testing.assert_array_equal(game.reference, np.full(5, 0.2))


def test_import_layers():
    # bandits/ imports neither sim nor llm_bridge; sim never imports torch or llm_bridge (HELPERS.md layers)
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bandits, bandits.games, bandits.preference, bandits.reference\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('sim', 'llm_bridge')], 'bandits imports sim'\n"
        "import sim, sim.experiment, sim.rules, sim.metrics, sim.nash, sim.trajectory, sim.spec, sim.sampled\n"
        "import sim.limits, sim.results_io, sim.spec_checks\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'llm_bridge')], 'sim imports torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: reference_policies.uniform(0), "arms: expected an integer number of arms ≥ 1, got 0"),
        (lambda: reference_policies.random_logits(0, np.random.default_rng(0)), "arms: expected an integer"),
        (lambda: reference_policies.random_logits(3, np.random.default_rng(0), "x"), "scale: expected a number"),
        (lambda: preference_models.cyclic(3, "x"), "strength: expected a number"),
        (lambda: preference_models.random_skew_logits(3, np.random.default_rng(0), "x"), "scale: expected a number"),
        (lambda: preference_models.validate_preference_matrix(np.eye(2), tolerance=float("nan")), "tolerance"),
        (lambda: segment_regret(np.ones(10), 0), "segment: expected an integer from 1 to the 10 iterations"),
        (lambda: segment_regret(np.ones(10), 11), "segment: expected an integer from 1 to the 10 iterations"),
    ],
)
def test_library_calls_with_bad_values_are_clear_errors(call, message):
    """Called directly (not through a spec), these raised ZeroDivisionError or ValueError, or accepted the value
    silently: a NaN tolerance passed any matrix, a segment longer than the data gave no segment at all."""
    with pytest.raises(PrefsimError, match=message):
        call()
    assert reference_policies.uniform(1).tolist() == [1.0]
    assert segment_regret(np.arange(10.0), 5).tolist() == [2.0, 7.0]


def test_a_zero_tolerance_checks_the_matrix_exactly_and_a_negative_one_is_refused():
    """The docstring asks for P + Pᵀ = 1 "within tolerance" and the error says "a number ≥ 0": tolerance 0 is
    the exact check (entries in binary fractions sum exactly), so it is accepted; a matrix off by 1e-12 then
    fails, which the default 1e-9 lets pass; a negative tolerance is refused."""
    exact = np.array([[0.5, 0.75], [0.25, 0.5]])
    assert preference_models.validate_preference_matrix(exact, tolerance=0.0).tolist() == exact.tolist()
    assert preference_models.validate_preference_matrix(exact, tolerance=0).tolist() == exact.tolist()
    off = exact + np.array([[0.0, 1e-12], [0.0, 0.0]])
    preference_models.validate_preference_matrix(off)
    with pytest.raises(PrefsimError, match="P \\+ Pᵀ = 1"):
        preference_models.validate_preference_matrix(off, tolerance=0.0)
    with pytest.raises(PrefsimError, match="tolerance: expected a number ≥ 0, got -1e-12"):
        preference_models.validate_preference_matrix(exact, tolerance=-1e-12)
