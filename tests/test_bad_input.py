"""Bad input to the public functions of ``bandits``: a clear :class:`PrefsimError`, never NumPy's own error,
a silent conversion or an allocation that cannot fit."""

import dataclasses
import warnings
from decimal import Decimal
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest

import sim
from bandits import continuous, inputs, linear, pair_schemes
from bandits import preference as preference_models
from bandits import reference as reference_policies
from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game

FEATURES = np.eye(3)[None, :, :2]  # one context, 3 arms, 2 features

#: Calls that read an array of numbers, each as a function of the bad array.
ARRAY_CALLS = {
    "preference": lambda bad: preference_models.validate_preference_matrix(bad),
    "rewards": lambda bad: preference_models.bradley_terry(bad),
    "mixture rewards": lambda bad: preference_models.bradley_terry_mixture(bad),
    "mixture weights": lambda bad: preference_models.validate_mixture_weights(bad),
    "reference": lambda bad: reference_policies.validate_reference(bad),
    "features": lambda bad: linear.linear_bradley_terry(bad, [1.0, 0.0]),
    "weights": lambda bad: linear.linear_bradley_terry(FEATURES, bad),
    "skew": lambda bad: linear.linear_preference_game(FEATURES, bad),
    "actions": lambda bad: continuous.ring_reward(bad),
    "regrets": lambda bad: continuous.segment_regret(bad, 1),
}
#: Arrays whose entries are not real numbers (shape 2×2, so only the kind of entry is wrong).
NOT_NUMBERS = {
    "text": np.array([["a", "b"], ["c", "d"]]),
    "complex": np.array([[0.5 + 1j, 0.5], [0.5, 0.5]]),
    "None": [[0.5, None], [0.5, 0.5]],
    "booleans": np.array([[True, False], [False, True]]),
    # NumPy reads booleans among numbers as 1 and 0 (once accepted: a reference [0.5, True, 0.5] was refused
    # only because it then summed to 2, a reward vector [0.0, True] was read as [0.0, 1.0])
    "a boolean among numbers": [[0.5, True], [0.0, 0.5]],
    "a NumPy boolean among numbers": [[0.5, 1.0], [np.False_, 0.5]],
    "a boolean array among numbers": [np.array([True, False]), [0.5, 0.5]],
}


@pytest.mark.parametrize("bad", list(NOT_NUMBERS.values()), ids=list(NOT_NUMBERS))
@pytest.mark.parametrize("call", list(ARRAY_CALLS.values()), ids=list(ARRAY_CALLS))
def test_arrays_of_anything_but_real_numbers_are_refused(call, bad):
    # was: NumPy's ValueError for text, a ComplexWarning and the real part kept for complex numbers, None read
    # as NaN, booleans as 0 and 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PrefsimError, match="give real numbers|could not read it as numbers"):
            call(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: preference_models.cyclic(3, "0.5"),
        lambda: preference_models.cyclic(3, True),
        lambda: preference_models.cyclic(3, 0.5 + 0j),
        lambda: preference_models.cyclic(3, np.complex128(0.5)),
        lambda: preference_models.cyclic(3, np.array([0.5])),
        lambda: continuous.ring_task(5, extent="2"),
        lambda: continuous.ring_task(5, extent=np.array(["2"])),
        lambda: continuous.ring_task(5, radius=None),
        lambda: continuous.ring_task(5, width=float("inf")),
        lambda: continuous.ring_task(5, extent=1e308),
        lambda: continuous.ring_reward(np.zeros((3, 2)), radius=float("nan")),
        lambda: continuous.ring_reward(np.zeros((3, 2)), width=-1.0),
        lambda: continuous.ring_reward(np.zeros(3)),
        lambda: continuous.ring_reward([[0.0, np.inf]]),
        lambda: continuous.segment_regret(1.0, 1),
        lambda: linear.random_linear_bandit(3, 2, scale=True),
    ],
    ids=[
        "quoted strength",
        "bool strength",
        "complex strength",
        "numpy complex strength",
        "array strength",
        "quoted extent",
        "text-array extent",
        "None radius",
        "inf width",
        "overflowing extent",
        "NaN radius",
        "negative width",
        "1-D actions",
        "inf action",
        "one regret",
        "bool scale",
    ],
)
def test_number_arguments_refuse_text_booleans_complex_and_non_finite_values(call):
    # was: the quoted "0.5" and True read as numbers, NumPy's TypeError for None or a text array, NaN rewards
    # for an overflowing extent or a NaN radius, an AxisError for 1-D actions, an IndexError for one regret
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PrefsimError):
            call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: build_game(GameSpec(kind=np.array(["cyclic", "random"]), arms=3)),
        lambda: build_game(GameSpec(kind="random", arms=3, construction=np.array(["a", "b"]))),
        lambda: build_game(GameSpec(kind="cyclic", arms=3, initial=["random"])),
        lambda: build_game({"kind": "cyclic", "arms": 3}),
        lambda: build_game(GameSpec(kind="cyclic", arms=3), True),
        lambda: linear.random_linear_bandit(3, 2, kind=np.array(["bradley_terry", "x"])),
        lambda: preference_models.random_lower_triangle(3, 0),
        lambda: reference_policies.random_logits(3, None),
        lambda: preference_models.validate_mixture_weights([1.0], components=np.array([1, 1])),
        lambda: reference_policies.validate_reference([0.5, 0.5], arms="2"),
        lambda: pair_schemes.schemes_for(np.array(["sampled", "llm"])),
        lambda: pair_schemes.resolve_scheme("lambda_p", "exact", "run.pair_scheme"),
        lambda: pair_schemes.gives_win_rates("no_such_scheme", "sampled"),
        lambda: pair_schemes.gives_ordered_pairs(None, "llm"),
    ],
    ids=[
        "array kind",
        "array construction",
        "list initial",
        "dict for a GameSpec",
        "bool seed",
        "array linear kind",
        "int for a Generator",
        "None for a Generator",
        "array components",
        "text arms",
        "array mode",
        "unknown mode",
        "unknown scheme",
        "None scheme",
    ],
)
def test_names_specs_and_generators_of_the_wrong_type_are_refused(call):
    # was: NumPy's "truth value of an array is ambiguous", an AttributeError or a KeyError
    with pytest.raises(PrefsimError):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: preference_models.cyclic(1000),
        lambda: preference_models.random_lower_triangle(1000, np.random.default_rng(0)),
        lambda: preference_models.random_skew_logits(1000, np.random.default_rng(0)),
        lambda: preference_models.bradley_terry(np.zeros(1000)),
        lambda: preference_models.bradley_terry_mixture(np.zeros((2, 1000))),
        lambda: reference_policies.uniform(10**6),
        lambda: reference_policies.random_logits(10**6, np.random.default_rng(0)),
        lambda: linear.random_linear_bandit(1000, 2),
        lambda: linear.linear_preference_game(np.ones((1000, 2)), [[0.0, 1.0], [-1.0, 0.0]]),
        lambda: continuous.ring_task(40),
        lambda: build_game(GameSpec(kind="random", arms=1000)),
    ],
)
def test_sizes_beyond_the_available_memory_are_refused_before_allocating(call, monkeypatch):
    # 1 MiB available: each call's arrays (8 MB and more) cannot fit; was NumPy's MemoryError, or a process
    # ended by the system, once the arrays really were too large
    monkeypatch.setattr(inputs, "available_memory", lambda: 2**20)
    monkeypatch.setattr(inputs, "SMALL_ARRAY_BYTES", 0)  # these sizes are below the size that asks the system
    with pytest.raises(PrefsimError, match="GiB of memory"):
        call()


def test_a_game_of_a_million_arms_is_refused_by_its_estimate():
    # 10⁶ × 10⁶ float64 entries are 8 TB: refused at once from the estimate, nothing allocated
    with pytest.raises(PrefsimError, match=r"arms: the 1000000×1000000 preference matrix needs 1e\+12 numbers"):
        preference_models.cyclic(10**6)


def test_random_rewards_of_a_game_too_large_are_refused_before_they_are_drawn():
    # was: the n·K rewards drawn first (NumPy's MemoryError for 10¹² components of 3 arms: 21.8 TiB), and a
    # Bradley–Terry game's K rewards drawn before its K×K matrix was found too large
    with pytest.raises(PrefsimError, match=r"^game.components: 1000000000000 component\(s\) of a 3×3 matrix needs"):
        build_game(GameSpec(kind="bt_mixture", rewards="random", arms=3, components=10**12))
    with pytest.raises(PrefsimError, match=r"^game.arms: the 1000000×1000000 preference matrix needs 1e\+12 numbers"):
        build_game(GameSpec(kind="bradley_terry", rewards="random", arms=10**6))


@pytest.mark.parametrize("field", ["tau", "strength", "reference_scale", "reference_min_mass"])
@pytest.mark.parametrize("number", [-(10**30), 10**400], ids=["-10**30", "10**400"])
def test_game_numbers_beyond_64_bits_are_refused_not_a_numpy_type_error(field, number):
    # was: "ufunc 'isfinite' not supported for the input types" (TypeError) from the finiteness check
    spec = GameSpec(kind="cyclic", arms=3, **({"reference": "random"} if field.startswith("reference") else {}))
    with pytest.raises(PrefsimError, match=f"^game.{field}: "):
        build_game(dataclasses.replace(spec, **{field: number}))


# --------------------------------------------------------------------------- sim's entry points
SPEC = {"iterations": 3, "seeds": 1, "game": {"kind": "cyclic", "arms": 3, "tau": 0.1}, "rule": [{"name": "inpo"}]}


@pytest.mark.parametrize(
    "call",
    [
        lambda sim: sim.load_spec(5),
        lambda sim: sim.load_spec(b"spec.toml"),
        lambda sim: sim.load_spec("x" * 5000),
        lambda sim: sim.load_spec("x" * 5000 + ".json"),
        lambda sim: sim.keep_programs(5).__enter__(),
        lambda sim: sim.enable_compile_cache(["cache"]),
        lambda sim: sim.run(SPEC, out=b"out"),
    ],
    ids=[
        "int path",
        "bytes path",
        "name too long",
        "json name too long",
        "int directory",
        "list directory",
        "bytes out",
    ],
)
def test_paths_of_the_wrong_type_or_too_long_are_refused(call):
    # was: Path's TypeError, or an OSError (File name too long) from Path.is_file
    with pytest.raises(PrefsimError):
        call(sim)


@pytest.mark.parametrize(
    "arguments",
    [
        {"resume": "no"},
        {"resume": np.array([True, False])},
        {"progress": "print"},
        {"progress": np.array(["a", "b"])},
        {"shard": True},
        {"shard": (0, 2, 3)},
        {"shard": ("0", "2")},
        {"shard": (0.0, 2)},
        {"keep_locked": True},
    ],
    ids=lambda arguments: f"{next(iter(arguments))}={next(iter(arguments.values()))!r}",
)
def test_run_arguments_of_the_wrong_type_are_refused_before_running(arguments):
    # was: a truthy "no" resumed, a string progress raised "not callable" after the run had started, a bool shard
    # raised "Value after * must be an iterable", keep_locked=True an AttributeError
    with pytest.raises(PrefsimError, match=next(iter(arguments))):
        sim.run(SPEC, **arguments)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iterations", -1),
        ("iterations", "3"),
        ("seeds", ()),
        ("seeds", [0, 1]),
        ("seeds", (0, 0)),
        ("precision", "float16"),
        ("record_every", 0),
        ("game", {"kind": "cyclic", "arms": 3}),
        ("run", {"mode": "exact"}),
        ("rules", ()),
        ("rules", ({"name": "inpo"},)),
    ],
    ids=lambda value: repr(value) if not isinstance(value, str) else value,
)
def test_an_experiment_spec_built_in_python_is_checked_before_running(field, value):
    # was: iterations = -1 a ValueError from pandas ("All arrays must be of the same length"), no rules one from
    # max(), a dict game an AttributeError, iterations = "3" and precision = "float16" ran
    spec = sim.parse_spec({**SPEC, "rule": [{"name": "inpo", "eta": 2.0}]})
    with pytest.raises(PrefsimError, match=f"^{field}: "):
        sim.run(dataclasses.replace(spec, **{field: value}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("precision", np.array(["float64", "float32"])),
        ("precision", np.zeros((2, 2))),
        ("rule", np.array(["inpo", "mmd"])),
        ("rule", [{"name": np.array(["inpo", "mmd"])}]),
        ("rule", [{"name": 5}]),
        ("run", {"mode": np.array(["exact", "sampled"])}),
    ],
    ids=["text-array precision", "numeric-array precision", "array of rules", "array name", "int name", "array mode"],
)
def test_spec_dicts_with_arrays_where_a_name_goes_are_refused(key, value):
    # was: "the truth value of an array is ambiguous" from `value not in CHOICES` or `name == "apo"`
    with pytest.raises(PrefsimError):
        sim.parse_spec({**SPEC, key: value})


def test_small_sizes_do_not_ask_the_system_and_float64_arrays_are_not_copied(monkeypatch):
    """A game is built per seed: below SMALL_ARRAY_BYTES check_size does not read /proc/meminfo (~30 µs a call),
    above it it does; real_array hands a float64 array back without copying it (as np.asarray did before it)."""

    def asked():
        raise AssertionError("available_memory was read")

    monkeypatch.setattr(inputs, "available_memory", asked)
    inputs.check_size(inputs.SMALL_ARRAY_BYTES // (8 * inputs.WORKING_COPIES), "arms", "a matrix")
    with pytest.raises(AssertionError, match="was read"):
        inputs.check_size(inputs.SMALL_ARRAY_BYTES // (8 * inputs.WORKING_COPIES) + 1, "arms", "a matrix")
    matrix = np.full((3, 3), 0.5)
    assert inputs.real_array(matrix, "matrix") is matrix
    assert inputs.real_array(np.ones(3, np.int64), "values").dtype == np.float64


def test_a_ring_outside_its_grid_warns_that_no_action_is_better():
    """radius 10 on a grid spanning [−1, 1]²: every reward ~1e-15, every preference ½ to 3e-16: a degenerate game,
    built silently before; the default ring (radius 1 inside [−2, 2]²) does not warn."""
    with pytest.warns(RuntimeWarning, match=r"ring task: the rewards .* differ by .*no action is better"):
        task = continuous.ring_task(5, extent=1.0, radius=10.0)
    assert np.abs(task["preference"] - 0.5).max() < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        continuous.ring_task(5)


def test_an_integer_too_large_for_a_float_is_refused_as_not_finite_not_an_overflow_error():
    """float(10**400) raises OverflowError, which finite_number let through as a traceback."""
    for value in (10**400, -(10**400), Fraction(10**400, 3)):
        with pytest.raises(PrefsimError, match=r"^strength: expected a finite number, got "):
            preference_models.cyclic(3, value)
        assert not inputs.is_finite_number(value)
    assert inputs.is_finite_number(Fraction(1, 3)) and not inputs.is_finite_number(True)


def test_real_numbers_of_any_type_are_accepted_and_an_odd_entry_is_named_once():
    """Fractions (an exact game written by hand) and 0-d JAX arrays are real numbers: refused by the checks as first
    written (a fraction as 'could not read it as numbers (…: expected …; give real numbers.)', the message twice
    over), though NumPy and float() read them; None among them is refused in one sentence."""
    half, tenth = Fraction(1, 2), Fraction(1, 10)
    exact = preference_models.validate_preference_matrix([[half, tenth], [1 - tenth, half]])
    np.testing.assert_array_equal(exact, [[0.5, 0.1], [0.9, 0.5]])
    np.testing.assert_array_equal(reference_policies.validate_reference([Fraction(1, 4), Fraction(3, 4)]), [0.25, 0.75])
    np.testing.assert_array_equal(preference_models.cyclic(3, jnp.asarray(0.5)), preference_models.cyclic(3, 0.5))
    np.testing.assert_array_equal(preference_models.cyclic(3, half), preference_models.cyclic(3, 0.5))
    assert inputs.finite_number(jnp.asarray(2, jnp.int32), "scale") == 2.0
    with pytest.raises(PrefsimError, match=r"^rewards: expected a list of numbers, got an entry None; give real n"):
        preference_models.bradley_terry([half, None, 1.0])
    with pytest.raises(PrefsimError, match=r"^strength: expected a number, got Array\(\[0.5, 0.5\]"):
        preference_models.cyclic(3, jnp.asarray([0.5, 0.5]))


def test_decimals_are_real_numbers_converted_to_the_nearest_float64():
    """A ``decimal.Decimal`` was refused ('got an entry Decimal('0.1')') where a ``Fraction`` was read; it is a real
    number, rounded once to the nearest float64 as ``float`` does, and its NaN, signalling NaN and infinities are
    refused as not finite (``float`` raises on a signalling NaN)."""
    tenth = Decimal("0.1")
    assert inputs.finite_number(tenth, "scale") == 0.1
    np.testing.assert_array_equal(
        preference_models.validate_preference_matrix([[Decimal("0.5"), tenth], [Decimal("0.9"), Decimal("0.5")]]),
        [[0.5, 0.1], [0.9, 0.5]],
    )
    np.testing.assert_array_equal(preference_models.cyclic(3, Decimal("0.5")), preference_models.cyclic(3, 0.5))
    np.testing.assert_array_equal(
        reference_policies.validate_reference([Decimal("0.25"), Fraction(3, 4)]), [0.25, 0.75]
    )
    for bad in ("NaN", "sNaN", "Infinity", "-Infinity"):
        with pytest.raises(PrefsimError, match=r"^strength: expected a finite number, got Decimal"):
            preference_models.cyclic(3, Decimal(bad))
        with pytest.raises(PrefsimError, match="finite"):
            preference_models.bradley_terry([Decimal(bad), 0.0])


def test_integers_beyond_float64_are_refused_as_not_finite_in_one_short_sentence():
    # was: OverflowError ('int too large to convert to float') from float() and from NumPy's astype
    with pytest.raises(PrefsimError, match=r"^strength: expected a finite number, got 1000\d{73}…\.$"):
        preference_models.cyclic(3, 10**400)
    with pytest.raises(PrefsimError, match="finite"):
        preference_models.bradley_terry([10**400, 0])
    with pytest.raises(PrefsimError, match="finite"):
        preference_models.bradley_terry([Fraction(-(10**400), 3), 0])
