"""Bad input to the bounds as code (sim.theorems, re-exported by sim.theory): a PrefsimError naming the function, the
argument and what is expected, never NumPy's or JAX's own error, a RuntimeWarning, or a silent NaN."""

import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import sim.theorems as T
from bandits.errors import PrefsimError
from bandits.preference import cyclic
from sim.game import Game

P = [[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]]
PI = [0.3, 0.3, 0.4]
R = [0.0, 1.0, 0.5]
GAME = Game(np.array(P), np.log(PI), np.log(PI), np.full(3, np.nan), 0.2)

#: Valid arguments of every function that takes user values; each row below changes one of them.
BASE = {
    "log_reference_mass_bound": dict(reference=PI),
    "policy_log_ratio": dict(policy=PI, reference=PI),
    "realised_log_ratio": dict(frame={"max_log_ratio_so_far": np.array([0.1, 0.2])}, target=PI, reference=PI),
    "omega_max": dict(preference=P, target=PI),
    "eta_critical": dict(preference=P, target=PI, tau=0.1),
    "inpo_contraction_factor": dict(preference=P, target=PI, tau=0.1, eta=2.0),
    "inpo_c": dict(log_ratio_bound=2.0, tau=0.1),
    "lemma2_eta": dict(iterations=[1, 10], log_ratio_bound=2.0, tau=0.1, divergence=1.0),
    "lemma2_regret_bound": dict(iterations=[1, 10], eta=2.0, tau=0.1, log_ratio_bound=2.0, divergence=1.0),
    "theorem3_gap_bound": dict(iterations=[1, 10], eta=2.0, tau=0.1, log_ratio_bound=2.0, divergence=1.0),
    "theorem4_kl_bound": dict(iterations=[0, 10], tau=0.1, log_ratio_bound=2.0),
    "theorem4_step_bound": dict(kl_previous=[0.1], eta=2.0, tau=0.1, log_ratio_bound=2.0),
    "theorem4_eta_schedule": dict(steps=[0, 1], tau=0.1),
    "inpo_linearised_regret": dict(game=GAME, eta=1.5, tau=0.2, iterations=3, comparator=PI),
    "hedge_exploitability_bound": dict(iterations=[1, 10], eta=0.5, initial_min_mass=0.3),
    "hedge_optimal_eta": dict(iterations=[1, 10], initial_min_mass=0.3),
    "nash_md_kl_bound": dict(iterations=[0, 10], eta=0.5, tau=0.1, kl_initial=1.0),
    "nash_md_theorem1_eta": dict(iterations=10, tau=0.1),
    "mmd_lipschitz": dict(preference=P),
    "mmd_kl_bound": dict(iterations=[0, 10], eta=0.5, tau=0.1, kl_initial=1.0, lipschitz=0.4),
    "apo_multipliers": dict(iterations=[1, 10], alpha=0.3),
    "apo_multiplier_sequence": dict(iterations=10, alpha=0.3),
    "apo_suboptimality_bound": dict(iterations=[1, 10], alpha=0.3, beta=1.0, reference=PI, rewards=R),
    "apo_exact_policy": dict(iterations=10, alpha=0.3, beta=1.0, reference=PI, rewards=R),
    "reward_gap": dict(rewards=R),
    "apo_tv_bound": dict(iterations=[1, 10], alpha=0.3, beta=1.0, reference=PI, rewards=R),
    "apo_tv_log_slope": dict(alpha=0.3, beta=1.0, rewards=R),
    "apo_dpo_lag": dict(iterations=[1, 10], alpha=0.3),
    "apo_noise_weights": dict(iterations=10, alpha=0.3),
    "apo_log_ratio_growth": dict(iterations=[1, 10], alpha=0.3, beta=1.0, rewards=R),
    "proximal_step": dict(eta=2.0, tau=0.1),
    "mirror_prox_max_eta": dict(lipschitz=0.5, tau=0.2),
    "mirror_prox_kl_bound": dict(iterations=[0, 3], eta=0.5, tau=0.2, kl_initial=2.0, lipschitz=0.5),
    "mirror_prox_query_rate": dict(queries=[0, 4], eta=0.5, tau=0.2),
    "optimistic_average_gap_bound": dict(iterations=[1, 10], eta=0.5, tau=0.2, initial_min_mass=0.25, lipschitz=0.5),
    "advancement_kl_check": dict(iterations=[0, 1, 2], kl=[1.0, 0.5, 0.4], every=2),
}

#: Public functions of sim.theorems that take no user arrays or numbers: the registry's hypotheses (they read a
#: BoundSetting the registry builds) and the builders of that setting from a parsed spec or a built game.
NO_USER_ARRAYS = {
    "fixed_reference",
    "starts_at_reference",
    "regularised_game",
    "exact_normaliser",
    "bradley_terry",
    "moving_anchor",
    "dpo_base",
    "spec_setting",
    "game_setting",
}

# (function, the argument changed, its bad value, a fragment of the message, after "<function>: ")
BAD = [
    # probability vectors: 1-d, non-empty, finite, ≥ 0 (π_ref > 0), summing to 1, one entry per arm
    ("log_reference_mass_bound", "reference", None, "reference: expected a vector of probabilities"),
    ("log_reference_mass_bound", "reference", "0.5", "reference: expected a vector of probabilities, got text"),
    ("log_reference_mass_bound", "reference", [], r"reference must be a non-empty vector .* shape \(0,\)"),
    ("log_reference_mass_bound", "reference", [[0.5, 0.5], [0.5, 0.5]], r"non-empty vector .* shape \(2, 2\)"),
    ("log_reference_mass_bound", "reference", [0.5, True], "reference: expected .* boolean entry True"),
    ("log_reference_mass_bound", "reference", [0.5, 0.0, 0.5], "every entry of reference must be > 0"),
    ("log_reference_mass_bound", "reference", [1.5, -0.5], "every entry of reference must be > 0"),
    ("log_reference_mass_bound", "reference", [0.5, 0.3, 0.1], "reference must sum to 1, it sums to 0.9"),
    ("log_reference_mass_bound", "reference", [0.5, math.nan, 0.5], "reference must be finite"),
    ("policy_log_ratio", "policy", [0.5, 0.5], "policy has 2 entries, expected 3"),
    ("policy_log_ratio", "policy", [0.3, 0.3, 0.3], "policy must sum to 1"),
    ("policy_log_ratio", "reference", [0.0, 0.6, 0.4], "every entry of reference must be > 0"),
    ("policy_log_ratio", "policy", 1j, "policy: expected a vector of probabilities, got complex"),
    ("realised_log_ratio", "frame", {"kl": [0.1]}, "frame must be one trajectory's table with a max_log_ratio"),
    ("realised_log_ratio", "frame", None, "frame must be one trajectory's table"),
    ("realised_log_ratio", "frame", {"max_log_ratio_so_far": ["a"]}, r"frame\['max_log_ratio_so_far'\]: expected"),
    (
        "realised_log_ratio",
        "frame",
        {"iteration": [0, 1], "max_log_ratio": ["a"]},
        r"frame\['max_log_ratio'\]: expected",
    ),
    ("realised_log_ratio", "target", [0.5, 0.5], "target has 2 entries, expected 3"),
    ("realised_log_ratio", "reference", [0.5, 0.0, 0.5], "every entry of reference must be > 0"),
    ("eta_critical", "target", [0.5, 0.5, 0.5], "target must sum to 1"),
    ("inpo_contraction_factor", "target", [1.0], "target has 1 entries, expected 3"),
    ("inpo_contraction_factor", "preference", np.full((3, 3), 0.6), "P \\+ Pᵀ = 1"),
    ("omega_max", "target", [0.5, 0.5], "target has 2 entries, expected 3"),
    ("omega_max", "target", [0.6, 0.6, -0.2], "every entry of target must be ≥ 0"),
    # preference matrices: square, K ≥ 2, entries in [0, 1], P + Pᵀ = 1
    ("omega_max", "preference", np.ones((2, 3)) / 2, r"preference: expected a square K×K matrix, got shape \(2, 3\)"),
    ("omega_max", "preference", [[0.5]], "preference: a preference game needs at least 2 arms"),
    ("omega_max", "preference", [[0.5, 1.5], [-0.5, 0.5]], r"entries must be probabilities in \[0, 1\]"),
    ("omega_max", "preference", [[0.5, 0.9], [0.9, 0.5]], "P \\+ Pᵀ = 1"),
    ("omega_max", "preference", None, "preference: expected a square matrix of numbers"),
    ("eta_critical", "preference", [[0.5, math.nan], [0.5, 0.5]], "preference: the matrix has non-finite entries"),
    ("mmd_lipschitz", "preference", [[0.5, 1.0], [1.0, 0.5]], "P \\+ Pᵀ = 1"),
    ("mmd_lipschitz", "preference", np.zeros((0, 0)), "needs at least 2 arms"),
    # positive / nonnegative numbers
    ("eta_critical", "tau", 0.0, "tau must be > 0, got 0"),
    ("eta_critical", "tau", None, "tau: expected a number, got None"),
    ("eta_critical", "tau", "0.1", "tau: expected a number, got '0.1'"),
    ("eta_critical", "tau", True, "tau: expected a number, got True"),
    ("inpo_contraction_factor", "eta", 0.0, "eta must be > 0, got 0"),
    ("inpo_contraction_factor", "tau", -0.1, "tau must be ≥ 0, got -0.1"),
    ("inpo_contraction_factor", "eta", math.inf, "eta: expected a finite number, got inf"),
    ("inpo_c", "log_ratio_bound", -1.0, "log_ratio_bound must be ≥ 0, got an entry -1"),
    ("inpo_c", "log_ratio_bound", [1.0, math.nan], "log_ratio_bound must be finite"),
    ("inpo_c", "log_ratio_bound", [], "log_ratio_bound is empty"),
    ("inpo_c", "tau", None, "tau: expected a number, got None"),
    ("lemma2_eta", "divergence", 0.0, "divergence must be > 0, got 0"),
    ("lemma2_eta", "log_ratio_bound", [1.0, 2.0, 3.0], "shapes do not match"),
    ("lemma2_regret_bound", "eta", 0.0, "eta must be > 0, got an entry 0"),
    ("lemma2_regret_bound", "divergence", -1.0, "divergence must be ≥ 0"),
    ("lemma2_regret_bound", "eta", [1.0, 2.0, 3.0], "shapes do not match"),
    ("theorem3_gap_bound", "eta", [1.0, -2.0], "eta must be > 0, got an entry -2"),
    ("theorem3_gap_bound", "log_ratio_bound", "2", "log_ratio_bound: expected a number or an array of numbers"),
    ("theorem4_kl_bound", "tau", 0.0, "tau must be > 0, got 0"),
    ("theorem4_kl_bound", "constant", math.nan, "constant: expected a finite number"),
    ("theorem4_step_bound", "kl_previous", [-0.1], "kl_previous must be ≥ 0"),
    ("theorem4_step_bound", "eta", [0.0], "eta must be > 0"),
    ("theorem4_step_bound", "log_ratio_bound", "2", "log_ratio_bound: expected a number or an array of numbers"),
    ("theorem4_step_bound", "tau", -1.0, "tau must be ≥ 0"),
    ("theorem4_kl_bound", "log_ratio_bound", [-1.0, 2.0], "log_ratio_bound must be ≥ 0"),
    ("theorem3_gap_bound", "tau", None, "tau: expected a number"),
    ("theorem3_gap_bound", "divergence", math.nan, "divergence: expected a finite number"),
    ("lemma2_eta", "tau", -0.1, "tau must be ≥ 0"),
    ("lemma2_regret_bound", "tau", "0.1", "tau: expected a number"),
    ("lemma2_regret_bound", "log_ratio_bound", [math.inf], "log_ratio_bound must be finite"),
    ("nash_md_kl_bound", "tau", math.nan, "tau: expected a finite number"),
    ("mirror_prox_kl_bound", "lipschitz", math.nan, "lipschitz: expected a finite number"),
    ("mirror_prox_kl_bound", "tau", -0.2, "tau must be ≥ 0"),
    ("mirror_prox_query_rate", "tau", None, "tau: expected a number"),
    ("optimistic_average_gap_bound", "eta", -0.5, "eta must be > 0"),
    ("optimistic_average_gap_bound", "tau", -0.2, "tau must be ≥ 0"),
    ("inpo_linearised_regret", "tau", -0.2, "tau must be ≥ 0"),
    ("apo_exact_policy", "rewards", [0.0, 1.0], "rewards has 2 entries and reference 3"),
    ("apo_log_ratio_growth", "alpha", 1.0, r"α must lie in \(−1, 1\)"),
    ("apo_log_ratio_growth", "rewards", "r", "rewards: expected a vector of rewards, got text"),
    ("apo_noise_weights", "alpha", None, "alpha: expected a number, got None"),
    ("apo_tv_bound", "alpha", 1.0, r"α must lie in \(−1, 1\)"),
    ("apo_tv_bound", "beta", None, "beta: expected a number"),
    ("apo_tv_bound", "reference", [0.6, 0.6, -0.2], "every entry of reference must be > 0"),
    ("apo_tv_bound", "rewards", [0.0, 1.0, 1.0], "needs a unique best arm"),
    ("apo_tv_log_slope", "rewards", [1.0], "rewards must be a vector of at least 2 rewards"),
    ("theorem4_eta_schedule", "tau", 0.0, "tau must be > 0"),
    ("hedge_exploitability_bound", "eta", 0.0, "eta must be > 0"),
    ("hedge_exploitability_bound", "initial_min_mass", None, "initial_min_mass: expected a number, got None"),
    ("hedge_optimal_eta", "initial_min_mass", "0.3", "initial_min_mass: expected a number"),
    ("nash_md_kl_bound", "kl_initial", -1.0, "kl_initial must be ≥ 0"),
    ("nash_md_kl_bound", "kl_initial", math.inf, "kl_initial must be finite"),
    ("nash_md_kl_bound", "eta", None, "eta: expected a number, got None"),
    ("nash_md_kl_bound", "kl_initial", [1.0, 2.0, 3.0], "shapes do not match"),
    ("nash_md_theorem1_eta", "tau", 0.0, "tau must be > 0"),
    ("mmd_kl_bound", "eta", 0.0, "eta must be > 0"),
    ("mmd_kl_bound", "lipschitz", -0.4, "lipschitz must be ≥ 0"),
    ("mmd_kl_bound", "kl_initial", None, "kl_initial: expected a number or an array of numbers"),
    ("mmd_kl_bound", "tau", -0.1, "tau must be ≥ 0"),
    ("apo_suboptimality_bound", "beta", 0.0, "beta must be > 0"),
    ("apo_suboptimality_bound", "reference", [0.5, 0.5], "rewards has 3 entries and reference 2"),
    ("apo_suboptimality_bound", "rewards", [0.0, math.nan, 1.0], "rewards must be finite"),
    ("apo_exact_policy", "beta", -1.0, "beta must be > 0"),
    ("apo_exact_policy", "reference", [0.3, 0.3, 0.3], "reference must sum to 1"),
    ("reward_gap", "rewards", [1.0], r"rewards must be a vector of at least 2 rewards, got shape \(1,\)"),
    ("reward_gap", "rewards", [], "rewards must be a vector of at least 2 rewards"),
    ("reward_gap", "rewards", [[1.0, 0.0]], "rewards must be a vector of at least 2 rewards"),
    ("apo_tv_log_slope", "beta", 0.0, "beta must be > 0"),
    ("apo_log_ratio_growth", "beta", 0.0, "beta must be > 0"),
    ("proximal_step", "eta", 20.0, "the mirror step needs ητ ≤ 1"),
    ("proximal_step", "tau", -0.1, "tau must be ≥ 0"),
    ("mirror_prox_max_eta", "lipschitz", None, "lipschitz: expected a number"),
    ("mirror_prox_max_eta", "tau", -1.0, "tau must be ≥ 0"),
    ("mirror_prox_kl_bound", "kl_initial", -2.0, "kl_initial must be ≥ 0"),
    ("mirror_prox_kl_bound", "eta", 0.0, "eta must be > 0"),
    ("mirror_prox_query_rate", "eta", 6.0, "the mirror step needs ητ ≤ 1"),
    ("optimistic_average_gap_bound", "initial_min_mass", 0.0, r"min π_0 must lie in \(0, 1\]"),
    ("optimistic_average_gap_bound", "lipschitz", None, "lipschitz: expected a number"),
    ("advancement_kl_check", "kl", [1.0, 0.5], r"iterations and kl must be columns of one length"),
    ("advancement_kl_check", "kl", ["a", "b", "c"], "kl: expected a column of numbers"),
    # iteration counts: whole numbers ≥ 1 (≥ 0 where t = 0, the initial policy, has a value)
    ("lemma2_eta", "iterations", [0, 10], "iterations must be whole numbers ≥ 1, got 0"),
    ("lemma2_eta", "iterations", None, "iterations: expected a number or an array of numbers"),
    ("lemma2_eta", "iterations", [], "iterations is empty"),
    ("lemma2_regret_bound", "iterations", [2.5], "iterations must be whole numbers ≥ 0, got 2.5"),
    ("theorem3_gap_bound", "iterations", 0, "iterations must be whole numbers ≥ 1, got 0"),
    ("theorem3_gap_bound", "iterations", True, "iterations: expected a number or an array of numbers, got booleans"),
    ("theorem4_kl_bound", "iterations", [-1, 2], "iterations must be whole numbers ≥ 0, got -1"),
    ("theorem4_kl_bound", "iterations", [1, math.inf], "iterations must be finite"),
    ("theorem4_eta_schedule", "steps", [-1], "steps must be whole numbers ≥ 0"),
    ("theorem4_eta_schedule", "steps", "1", "steps: expected a number or an array of numbers, got text"),
    ("hedge_exploitability_bound", "iterations", [0, 1], "iterations must be whole numbers ≥ 1, got 0"),
    ("hedge_optimal_eta", "iterations", 0, "iterations must be whole numbers ≥ 1"),
    ("nash_md_kl_bound", "iterations", [0.5], "iterations must be whole numbers ≥ 0, got 0.5"),
    ("nash_md_theorem1_eta", "iterations", 0, "iterations: expected an integer ≥ 1, got 0"),
    ("nash_md_theorem1_eta", "iterations", 10.5, "iterations: expected an integer ≥ 1, got 10.5"),
    ("mmd_kl_bound", "iterations", [-1], "iterations must be whole numbers ≥ 0"),
    ("apo_multipliers", "iterations", [-1, 2], "iterations must be whole numbers ≥ 0"),
    ("apo_multiplier_sequence", "iterations", -1, "iterations: expected an integer ≥ 0, got -1"),
    ("apo_multiplier_sequence", "iterations", "10", "iterations: expected an integer ≥ 0, got '10'"),
    ("apo_suboptimality_bound", "iterations", [1.5], "iterations must be whole numbers ≥ 0, got 1.5"),
    ("apo_exact_policy", "iterations", None, "iterations: expected an integer ≥ 0, got None"),
    ("apo_tv_bound", "iterations", [-2], "iterations must be whole numbers ≥ 0"),
    ("apo_dpo_lag", "iterations", [math.nan], "iterations must be finite"),
    ("apo_noise_weights", "iterations", 0, "iterations: expected an integer ≥ 1, got 0"),
    ("apo_log_ratio_growth", "iterations", [-1], "iterations must be whole numbers ≥ 0"),
    ("mirror_prox_kl_bound", "iterations", [0.5], "iterations must be whole numbers ≥ 0"),
    ("mirror_prox_query_rate", "queries", [-2], "queries must be whole numbers ≥ 0"),
    ("optimistic_average_gap_bound", "iterations", 0, "iterations must be whole numbers ≥ 1"),
    ("advancement_kl_check", "every", 0, "every: expected an integer ≥ 1, got 0"),
    ("advancement_kl_check", "every", 2.0, "every: expected an integer ≥ 1, got 2.0"),
    ("advancement_kl_check", "iterations", [0, 1.5, 2], "iterations must be whole numbers ≥ 0"),
    ("inpo_linearised_regret", "iterations", 0, "iterations: expected an integer ≥ 1, got 0"),
    ("inpo_linearised_regret", "comparator", [0.5, 0.5], "comparator has 2 entries, expected 3"),
    ("inpo_linearised_regret", "comparator", [0.5, 0.5, 0.5], "comparator must sum to 1"),
    ("inpo_linearised_regret", "eta", 0.0, "eta must be > 0"),
    ("inpo_linearised_regret", "game", {"preference": P}, "game must be a sim.game.Game"),
    # α ∈ [0, 1), schedules, iterates, flags
    ("apo_multipliers", "alpha", 1.0, r"α must lie in \(−1, 1\), got 1"),
    ("apo_multiplier_sequence", "alpha", 1.0, r"α must lie in \(−1, 1\), got 1"),
    ("apo_multiplier_sequence", "schedule", "nestrov", "schedule must be one of constant, nesterov, got 'nestrov'"),
    ("apo_suboptimality_bound", "schedule", "Nesterov", "schedule must be one of constant, nesterov"),
    ("apo_suboptimality_bound", "alpha", None, "alpha: expected a number, got None"),
    ("apo_suboptimality_bound", "iterate", ["proximal"], "iterate must be one of proximal, extrapolated"),
    ("apo_tv_bound", "schedule", None, "schedule must be one of constant, nesterov, got None"),
    ("apo_exact_policy", "alpha", "0.3", "alpha: expected a number, got '0.3'"),
    ("apo_tv_log_slope", "alpha", math.nan, "alpha: expected a finite number"),
    ("apo_dpo_lag", "alpha", -1.5, r"α must lie in \(−1, 1\)"),
    ("mirror_prox_max_eta", "optimistic", "yes", "optimistic must be True or False, got 'yes'"),
    ("mirror_prox_kl_bound", "optimistic", 1, "optimistic must be True or False, got 1"),
]


def _call(name, argument, value):
    return getattr(T, name)(**{**BASE[name], argument: value})


@pytest.mark.parametrize(
    ("name", "argument", "value", "fragment"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}-{index}") for index, row in enumerate(BAD)],
)
def test_bad_arguments_get_an_error_naming_the_function_and_the_argument(name, argument, value, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from NumPy is no answer either
        with pytest.raises(PrefsimError, match=rf"^{name}: .*{fragment}|^{name}: {fragment}"):
            _call(name, argument, value)


@pytest.mark.parametrize("name", sorted(BASE))
def test_the_base_arguments_are_valid(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        getattr(T, name)(**BASE[name])


def test_every_public_function_of_sim_theorems_is_checked_or_listed_as_taking_no_user_arrays():
    """A new bound cannot be added without a row here (or a reason it takes no user values)."""
    public = {
        name
        for name, function in inspect.getmembers(T, inspect.isfunction)
        if function.__module__ == T.__name__ and not name.startswith("_")
    }
    tested = {row[0] for row in BAD}
    assert public - tested - NO_USER_ARRAYS == set()
    assert set(BASE) <= public and NO_USER_ARRAYS <= public and not (tested & NO_USER_ARRAYS)
    # every argument of a tested function has at least one bad row
    missing = {(row, argument) for row in BASE for argument in BASE[row] if (row, argument) not in {r[:2] for r in BAD}}
    assert missing == set()


def test_numpy_jax_and_exotic_numbers_are_still_accepted():
    """The checks read NumPy and concrete JAX arrays, NumPy scalars, whole floats as counts, and broadcast shapes."""
    assert float(T.theorem4_kl_bound(np.int64(9), np.float64(0.2), jnp.asarray(10.0))) == pytest.approx(
        32 * 4 / (0.04 * 10)
    )
    np.testing.assert_allclose(T.theorem4_kl_bound(np.array([1.0, 3.0]), 0.5, 1.0), [64.0, 32.0])
    np.testing.assert_allclose(
        T.hedge_optimal_eta(jnp.asarray([4, 16]), 0.25), np.sqrt(8 * math.log(4) / np.array([4, 16]))
    )
    # B_t along a trajectory and one value per iteration broadcast together; a 2-d grid of (T, η) too
    grid = T.lemma2_regret_bound(np.array([[1], [10]]), np.array([1.0, 2.0]), 0.1, 2.0, 1.0)
    assert grid.shape == (2, 2)
    assert T.omega_max(cyclic(3, 1.0), jnp.full(3, 1 / 3)) == pytest.approx(1 / (2 * math.sqrt(3)), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(T.proximal_step(5.0, 0.2)) == math.inf  # ητ = 1: the exact best response
        assert float(T.mmd_kl_bound(10**12, 0.5, 0.1, 1.0, 0.4)) == 0.0  # (1 + ητ)^t overflows to inf
    # sums within float32 rounding pass (the tolerance is 1e-6)
    assert T.log_reference_mass_bound(np.array([0.3, 0.3, 0.4], dtype=np.float32)) == pytest.approx(-math.log(0.3))


def test_a_zero_entry_gives_an_infinite_log_ratio_with_a_warning_naming_the_action():
    """A zero is a valid probability (a pure policy) with no finite B: inf, and one RuntimeWarning of ours that names
    the action (NumPy's divide-by-zero warning is not it); realised_log_ratio's names π* (the target)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert T.policy_log_ratio([0.6, 0.0, 0.4], PI) == math.inf
    assert [str(w.message).split(",")[0] for w in caught] == [
        "policy_log_ratio: policy gives action 1 probability 0 (reference 0.3)"
    ]
    assert caught[0].category is RuntimeWarning and caught[0].filename == __file__
    with pytest.warns(RuntimeWarning, match=r"realised_log_ratio: target gives action 2 probability 0 .* no finite B"):
        running = T.realised_log_ratio({"max_log_ratio_so_far": np.array([0.1, 0.2])}, [0.5, 0.5, 0.0], PI)
    np.testing.assert_array_equal(running, [math.inf, math.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert T.policy_log_ratio([1e-300, 0.6, 0.4], PI) == pytest.approx(math.log(0.3 / 1e-300))


def test_bounds_beyond_float64_are_inf_or_their_value_without_an_overflow():
    """A huge L, B, τ or 1/η gave Python's OverflowError or NumPy's RuntimeWarning (and NaN from inf/inf): now a bound
    beyond float64's range is inf, a finite one keeps its value, and an overflowed ηL² fails MMD's step condition."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(T.mmd_kl_bound([1, 10], 0.5, 0.1, 1.0, 1e200)).all()  # ηL² = 5e399 > τ: no rate
        assert np.isnan(T.mirror_prox_kl_bound([1, 10], 0.5, 0.1, 1.0, 1e200)).all()
        # Theorem 4 = 32·max(B, 1/τ)²/(T + 1): finite although C = Bτ = 1e100 and τ² = 1e400 are not
        assert float(T.theorem4_kl_bound(9, 1e200, 1e-100)) == pytest.approx(3.2e-199, rel=1e-12)
        assert float(T.theorem4_kl_bound(9, 1e-200, 1.0)) == math.inf
        assert float(T.theorem4_kl_bound(9, 1e200, 1e200)) == math.inf
        assert float(T.theorem4_step_bound(0.1, 1e-200, 0.1, 1e200)) == math.inf
        assert float(T.theorem3_gap_bound(10, 1.0, 1e200, 1e200, 1.0)) == math.inf
        assert float(T.theorem3_gap_bound(10, 1e-320, 0.1, 2.0, 1.0)) == math.inf
        np.testing.assert_array_equal(T.lemma2_regret_bound([0, 1], 1.0, 1e200, 2.0, 1.0), [1.0, math.inf])
        assert float(T.inpo_c(1e200, 1e200)) == math.inf and float(T.lemma2_eta(4, 1e200, 1e200, 1.0)) == math.inf
        assert T.eta_critical(P, PI, 1e200) == pytest.approx(5e199, rel=1e-12)
        assert T.inpo_contraction_factor(P, PI, 1e300, 1e-300) == math.inf


def test_a_finite_bound_is_finite_when_a_partial_product_overflows():
    """The module docstring says no intermediate overflows while the bound is finite, but 32·max(B, 1/τ)² overflowed
    before the division by T + 1, (Bτ)² before the division by η², (2τB)² before T/η and Lemma 2's regret before
    Theorem 3's division by T: inf for values within float64 (checked here against Python's exact integers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 32·(1e155)²/(10¹⁰ + 1) = 3.2e301 (B = 1e155: C/τ = max(B, 1/τ) = B)
        expected = 32 * 10**310 / (10**10 + 1)
        assert float(T.theorem4_kl_bound(10**10, 1.0, 1e155)) == pytest.approx(expected, rel=1e-12)
        # one step: 8(Bτ/η)² = 8e300 at B = 1e300, τ = 1e10, η = 1e160 (Bτ alone is 1e310, beyond float64)
        assert float(T.theorem4_step_bound(0.0, 1e160, 1e10, 1e300)) == pytest.approx(8e300, rel=1e-12)
        # Lemma 2: ηD + (4τ²B² + 1)T/η = 1e10 + (4e310 + 1)/1e10 ≈ 4e300
        assert float(T.lemma2_regret_bound(1, 1e10, 1.0, 1e155, 1.0)) == pytest.approx(4e300, rel=1e-12)
        # Theorem 3 = 2·Reg_T/T: Reg_T ≈ ηD = 1e309 (η = 1e305, D = 1e4) is beyond float64; at T = 10⁶ the gap is 2e303
        assert float(T.theorem3_gap_bound(10**6, 1e305, 0.0, 1.0, 1e4)) == pytest.approx(2e303, rel=1e-12)
        # MMD's condition ηL² ≤ τ holds at η = 1e-200, L = 1e160, τ = 1e200 (L² alone overflows)
        assert np.isfinite(T.mmd_kl_bound(3, 1e-200, 1e200, 1.0, 1e160))
        # and the values beyond float64 are still inf
        assert float(T.theorem4_kl_bound(10, 1.0, 1e160)) == math.inf
        assert float(T.theorem3_gap_bound(1, 1e305, 0.0, 1.0, 1e4)) == math.inf


def test_sizes_beyond_memory_are_refused_before_allocation():
    for call in (lambda: T.apo_noise_weights(10**13, 0.3), lambda: T.apo_multiplier_sequence(10**13, 0.3)):
        with pytest.raises(PrefsimError, match="iterations: .* more than the .* GiB available"):
            call()


def test_traced_values_are_not_checked():
    """JAX traces these functions' η, τ (the scan of inpo_linearised_regret) and α, T (apo_multipliers)."""
    with jax.enable_x64(True):
        game = Game(jnp.asarray(cyclic(3, 1.0)), jnp.log(jnp.asarray(PI)), jnp.log(jnp.asarray(PI)), jnp.zeros(3), 0.2)
        traced = jax.jit(lambda eta, tau: jnp.asarray(T.apo_multipliers(jnp.arange(3.0), 0.5)[1] * eta * tau))
        assert traced(1.0, 1.0).shape == (3,)
        multipliers = jax.jit(lambda t, alpha: T.apo_multipliers(t, alpha)[1])(jnp.arange(3.0), 0.5)
        np.testing.assert_allclose(multipliers, [0.0, 1.5, 3.25])
        gradient = jax.grad(lambda alpha: T.apo_multipliers(2.0, alpha)[1])(0.5)
        assert np.isfinite(gradient)
        direct = T.inpo_linearised_regret(game, 1.5, 0.2, 4, PI)
        assert direct.shape == (4,)


def test_a_diverged_trajectory_gets_no_inpo_bound_rather_than_an_error():
    """The registry evaluates bounds on a run's data: a NaN in max_log_ratio (no finite B) or in the initial KL
    leaves the bound undrawn (it was a NaN curve, reported as not holding) instead of failing the run on the
    checks."""
    frame = {
        "iteration": np.arange(3),
        "max_log_ratio": np.array([0.1, np.nan, 0.3]),
        "kl_to_nash": np.array([np.nan, 0.5, 0.4]),
    }
    game = {"target": np.array(PI), "reference": np.array(PI), "tau": 0.2, "preference": np.array(P)}
    parameters = {"eta": 1.0}
    for bound in (T.INPO_THEOREM4, T.INPO_THEOREM3, T.NASH_MD_THEOREM1, T.MMD_LINEAR, T.MIRROR_PROX_LINEAR):
        assert bound.evaluate(parameters, frame, game) is None
    finite = {**frame, "max_log_ratio": np.array([0.1, 0.2, 0.3]), "kl_to_nash": np.array([1.0, 0.5, 0.4])}
    values, mask = T.INPO_THEOREM4.evaluate(parameters, finite, game)
    assert values.shape == (3,) and mask.tolist() == [False, True, True]
    assert isinstance(pd.DataFrame(finite)["max_log_ratio"], pd.Series)
    np.testing.assert_allclose(
        T.realised_log_ratio(pd.DataFrame(finite), PI, PI), [0.1, 0.2, 0.3]
    )  # a pandas frame reads as before


def test_apo_bounds_compute_in_float64_outside_jax_64_bit_mode():
    """NumPy in, NumPy float64 out: the APO bounds took their multipliers from JAX, float32 unless 64-bit mode is on
    (apo_tv_bound returned a float32 array; the Nesterov/recursive c_T at T = 20000 was off by 4e-5)."""
    alpha, horizon = 0.9, 20000
    exact = (horizon - alpha**2 * (1 - alpha**horizon) / (1 - alpha)) / (1 - alpha)
    with jax.enable_x64(False):
        sequence = T.apo_multiplier_sequence(horizon, alpha)[1]
        tv = T.apo_tv_bound(np.array([2, 40]), 0.5, 2.0, [0.5, 0.25, 0.25], [1.0, 0.0, 0.5])
        suboptimality = T.apo_suboptimality_bound(np.array([10]), 0.5, 1.0, [0.5, 0.25, 0.25], [1.0, 0.0, 0.5])
    assert sequence[-1] == pytest.approx(exact, rel=1e-9)  # the recursion rounds: 9e-12 in float64
    assert tv.dtype == np.float64 and tv[0] == pytest.approx(math.exp(-3.25 * 0.5 / 2), rel=1e-14)
    c_10 = (10 - 0.25 * (1 - 0.5**10) / 0.5) / 0.5
    assert suboptimality.dtype == np.float64 and suboptimality[0] == pytest.approx(math.log(2) / c_10, rel=1e-14)
