"""The memory estimate's preference term against the bytes the built games hold (:mod:`sim.limits`).

The estimate counts ``2·S·M·K²`` numbers when P differs between seeds (the per-seed matrices and their
stack), ``M·K²`` when the seeds share one, plus one float64 ``M·K²`` copy while a game is built; here the
built stack's ``nbytes`` is compared with it exactly, at sizes that build in milliseconds.  The CSV text of
``metrics.csv`` (``table_text``) is compared with the memory its construction takes (``tracemalloc``).
"""

from __future__ import annotations

import tracemalloc

import jax.numpy as jnp
import pytest

import sim
from bandits.errors import PrefsimError
from sim import limits, results_io
from sim.sampled.experiment import build_sampled_inputs
from sim.seed_games import build_games
from sim.spec import parse_spec
from sim.trajectory import SMALL_ARMS

ARMS = SMALL_ARMS + 1  # above SMALL_ARMS: no seed-last copy of P in exact mode


def spec(game: dict, run: dict | None = None, seeds: int = 3):
    table = {"iterations": 2, "seeds": seeds, "game": game, "rule": [{"name": "inpo", "eta": 1.0, "tau": 0.1}]}
    return parse_spec({**table, "run": run} if run else table)


@pytest.mark.parametrize(
    "game, per_seed",
    [
        ({"kind": "bradley_terry", "rewards": "random", "arms": ARMS, "tau": 0.1}, True),
        ({"kind": "bt_mixture", "rewards": "random", "components": 2, "arms": ARMS, "tau": 0.1}, True),
        ({"kind": "bt_mixture", "rewards": [list(range(ARMS)), list(range(ARMS))[::-1]], "tau": 0.1}, False),
        ({"kind": "cyclic", "arms": ARMS, "tau": 0.1}, False),
    ],
    ids=["bradley_terry_random", "bt_mixture_random", "bt_mixture_listed", "cyclic"],
)
def test_exact_mode_preference_estimate_is_the_built_stack_twice_plus_one_float64_copy(game, per_seed):
    parsed = spec(game)
    games, axes, _, _ = build_games(parsed, jnp.float64)
    assert (axes.preference == 0) is per_seed  # the seeds' P are stacked exactly when they differ
    assert games.preference.shape[-1] == ARMS
    built = games.preference.nbytes  # S·K²·8 stacked, or one K²·8 shared
    copy = ARMS * ARMS * 8
    expected = 2 * built + copy if per_seed else built + copy
    assert limits.memory_estimate(parsed)["preference"] == expected


@pytest.mark.parametrize("problem", ["linear_preference_game", "linear_bradley_terry"])
def test_linear_problems_count_their_contexts_and_draw_p_per_seed(problem):
    contexts = 3
    run = {"mode": "sampled", "problem": problem, "contexts": contexts, "policy": "log_linear", "inner_steps": 1}
    parsed = spec({"arms": 5, "tau": 0.1}, run)
    inputs = build_sampled_inputs(parsed, jnp.float64)
    assert inputs.axes.preference == 0 and inputs.problems.preference.shape == (3, contexts, 5, 5)
    built = inputs.problems.preference.nbytes  # S·M·K²·8
    assert limits.memory_estimate(parsed)["preference"] == 2 * built + contexts * 5 * 5 * 8


def test_check_memory_refuses_per_seed_mixtures_and_many_contexts():
    available = 2**30
    # K = 2000 over 64 seeds: the stacked per-seed P alone is 64·2000²·8 B = 1.9 GiB, for either kind
    for kind in ("bradley_terry", "bt_mixture"):
        game = {"kind": kind, "rewards": "random", "arms": 2000, "tau": 0.1}
        if kind == "bt_mixture":
            game["components"] = 2
        with pytest.raises(PrefsimError, match=r"memory: this run needs at least 3\.8\d GiB \(preference 3\.84 GiB"):
            limits.check_memory(spec(game, seeds=64), available=available)
    # M = 500 contexts × K = 300 arms over 16 seeds: 16·500·300²·8 B = 5.4 GiB
    run = {"mode": "sampled", "problem": "linear_preference_game", "contexts": 500, "policy": "log_linear"}
    with pytest.raises(PrefsimError, match=r"memory: this run needs at least .* \(preference 11\.1 GiB"):
        limits.check_memory(spec({"arms": 300, "tau": 0.1}, run, seeds=16), available=available)
    # the same run with one context fits
    limits.check_memory(spec({"arms": 300, "tau": 0.1}, {**run, "contexts": 1}, seeds=16), available=available)


def test_the_arms_of_a_listed_mixture_are_the_length_of_its_reward_vectors():
    parsed = spec({"kind": "bt_mixture", "rewards": [[0.0] * 3000, [1.0] * 3000], "tau": 0.1}, seeds=1)
    assert limits.memory_estimate(parsed)["preference"] == 2 * 3000 * 3000 * 8  # one shared P, one build copy


def long_recorded_spec(iterations: int, seeds: int = 2):
    game = {"kind": "random", "arms": 3, "tau": 0.1}
    table = {"iterations": iterations, "record_every": 1, "seeds": seeds, "game": game}
    return parse_spec({**table, "rule": [{"name": "inpo", "eta": 0.5}]})


def test_the_csv_text_estimate_is_a_lower_bound_of_the_text_built_for_metrics_csv():
    """Writing metrics.csv builds one Python string per cell (:func:`sim.results_io.csv_bytes`), ~90 B a cell
    where the table holds 8: the estimate's ``table_text`` lies between half that text's peak and the peak."""
    parsed = long_recorded_spec(3000)
    table = sim.run(parsed)
    assert len(table) == 2 * 3001
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        text = results_io._csv_text(table)  # what csv_bytes builds (without its cache of the last text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(text) > 0
    estimate = limits.memory_estimate(parsed)["table_text"]
    assert peak / 2 <= estimate <= peak, (estimate, peak)


def test_check_memory_refuses_a_run_whose_recorded_table_text_does_not_fit():
    """10⁷ updates recorded at every iteration over 2 seeds: 2·10⁷ rows, whose CSV text alone needs ~25 GiB
    (the table's numbers ~6 GiB); refused on a machine with 20 GiB, not killed for memory while writing."""
    with pytest.raises(PrefsimError, match=r"memory: .*table_text \d"):
        limits.check_memory(long_recorded_spec(10**7), available=20 * 2**30)
    limits.check_memory(long_recorded_spec(10**5), available=20 * 2**30)  # 2·10⁵ rows fit


def test_the_parameters_of_a_deep_mlp_are_counted_and_a_thousand_layers_refused():
    """mlp_hidden_layers = 10⁵ was accepted (the estimate counted one layer's activations whatever the depth), then
    met by an allocation failure or a 10⁵-layer network to compile."""
    run = {"mode": "sampled", "policy": "mlp", "mlp_width": 256, "inner_steps": 1}
    one = limits.memory_estimate(spec({"kind": "random", "arms": 5, "tau": 0.1}, run))
    # K = 5 one-hot features (d = 5), w = 256, L = 1: d·w + 2w + 1 parameters, 5 copies, 3 seeds, float64
    assert one["parameters"] == 3 * limits.PARAMETER_COPIES * (5 * 256 + 2 * 256 + 1) * 8
    deep = spec({"kind": "random", "arms": 5, "tau": 0.1}, {**run, "mlp_hidden_layers": 100_000})
    assert limits.memory_estimate(deep)["parameters"] > 100_000 * 256 * 256 * 3 * limits.PARAMETER_COPIES * 8
    with pytest.raises(
        PrefsimError, match=r"memory: this run needs at least .* \(.*features 11\.4 GiB, parameters 735 GiB"
    ):
        limits.check_memory(deep, available=2**34)
