"""Seeds in groups (exact mode, a P per seed): each group of a few seeds per device runs its whole
trajectory while its games sit in the cores' caches (sim.trajectory.seed_group).  The numbers equal
the one-batch run up to rounding, padding seeds are dropped, every group runs one compiled program,
and progress, time blocks and the non-finite search work alike."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import sim.shared_engine as shared_engine
import sim.trajectory as trajectory
from bandits.games import GameSpec, build_game
from sim.experiment import prepare_run
from sim.game import game_from_instance
from sim.nash import regularised_targets
from sim.rules import build_rule
from sim.shared_engine import COMPILED_RUNS, seed_tile, seeds_on_host, stack_over_seeds, take_seeds
from sim.spec import parse_spec
from sim.trajectory import default_record_iterations, seed_group, simulate_grid

RULES = {
    "inpo": {"eta": 0.5},
    "extragradient": {"eta": 0.3},
    "optimistic": {"eta": 0.3},
    "nash_md": {"eta": 0.3},
    "apo": {"base": "inpo", "alpha": 0.5},
}
#: Bytes of one K = 4 float64 P: a budget of 3 of them makes tiles of 3 or 2 seeds.
ONE_GAME = 4 * 4 * 8


def test_tile_size_at_hand_computed_points():
    # budget 768 KiB: K = 100 → 80 000 B a seed, at most 9 a tile; K = 1000 → 8 MB, none fits
    assert shared_engine.SEED_TILE_BYTES == 768 * 1024
    assert seed_tile(128, 100) == 8  # 9 → 135, 8 → 128 (no padding), 7 → 133, 6 → 132, 5 → 130
    assert seed_tile(100, 100) == 5  # 9 → 108, 8 → 104, 7 → 105, 6 → 102, 5 → 100
    assert seed_tile(20, 100) == 5  # 9 → 27, 8 → 24, 7 → 21, 6 → 24, 5 → 20 (no padding)
    assert seed_tile(19, 100) is None  # 1 520 000 B ≤ twice the budget: a core's cache holds them all
    assert seed_tile(1024, 10) is None  # 819 200 B: the same
    assert seed_tile(16, 1000) is None  # one seed's P alone exceeds the budget
    assert seed_tile(64, 200) == 2  # 320 000 B a seed: at most 2
    assert seed_tile(64, 100, itemsize=4) == 16  # float32: 40 000 B a seed, at most 19; 16 → 64


def test_seeds_on_host_copies_the_batched_leaves_and_keeps_the_shared_ones():
    inputs = _inputs(seeds=5)
    games, axes = inputs.games, inputs.game_axes
    assert set(axes) == {0, None}  # P and π_ref per seed, τ shared
    host = seeds_on_host(games, axes)
    for leaf, on_host, axis in zip(games, host, axes):
        if axis is None:
            assert on_host is leaf
        else:
            assert type(on_host) is np.ndarray and np.array_equal(on_host, np.asarray(leaf), equal_nan=True)
    rows = np.array([4, 0, 4])  # a group padded with its last seed
    for cut, whole, axis in zip(take_seeds(host, axes, rows), games, axes):
        assert np.array_equal(
            np.asarray(cut), np.asarray(whole if axis is None else np.asarray(whole)[rows]), equal_nan=True
        )


def _inputs(seeds=7, iterations=60, arms=4):
    spec = parse_spec(
        {
            "iterations": iterations,
            "seeds": seeds,
            "game": {"kind": "random", "arms": arms, "tau": 0.1, "reference": "random"},
            "rule": [{"name": "inpo", "eta": 0.5}],
        }
    )
    return prepare_run(spec)


def _run(name, inputs, tile_bytes, monkeypatch, block_size=None, progress=None):
    monkeypatch.setattr(shared_engine, "SEED_TILE_BYTES", tile_bytes)
    return simulate_grid(
        lambda point: build_rule(name, {**RULES[name], **point}),
        {"eta": np.array([0.2, 0.4])},
        inputs.games,
        inputs.game_axes,
        inputs.targets,
        inputs.record,
        cache_key=("test_seed_groups", name),
        unregularised_targets=inputs.unregularised,
        block_size=block_size,
        progress=progress,
    )


def _assert_close(tiled, whole):
    (metrics_a, bad_a), (metrics_b, bad_b) = tiled, whole
    assert set(metrics_a) == set(metrics_b)
    for column in metrics_a:
        assert metrics_a[column].shape == metrics_b[column].shape, column
        np.testing.assert_allclose(metrics_a[column], metrics_b[column], rtol=1e-12, atol=1e-15, err_msg=column)
    assert np.array_equal(bad_a, bad_b)


@pytest.mark.parametrize("name", sorted(RULES))
def test_runs_in_seed_groups_equal_the_one_batch_run(name, monkeypatch):
    inputs = _inputs()
    assert inputs.game_axes.preference == 0  # a P per seed
    whole = _run(name, inputs, 10**12, monkeypatch)
    # 7 seeds (896 B of P): budget 3 games → tiles of 2 (7 → 8, one padding seed); 2 games → tiles of 1
    for budget in (3 * ONE_GAME, 2 * ONE_GAME):
        tiled = _run(name, inputs, budget, monkeypatch)
        _assert_close(tiled, whole)
        assert tiled[0]["kl_to_nash"].shape == (2, 7, len(inputs.record))
        # time blocks inside a tiled run: the same numbers bit for bit
        blocked = _run(name, inputs, budget, monkeypatch, block_size=7)
        for column, values in tiled[0].items():
            assert np.array_equal(values, blocked[0][column], equal_nan=True), column


def test_groups_share_one_compiled_program_and_report_progress_across_groups(monkeypatch):
    inputs = _inputs(seeds=8)
    monkeypatch.setattr(shared_engine, "SEED_TILE_BYTES", 3 * ONE_GAME)
    group = seed_group(8, 4, inputs.games, inputs.game_axes)
    assert group == 2  # one device: 8 seeds of 128 B, 3 a group → 9 pads, 2 → 8 does not
    batches = []
    original = trajectory._simulate_seeds

    def counting(make_rule, grid_values, games, targets, progress, checkpoint, **fixed):
        batches.append(int(targets.shape[0]))
        return original(make_rule, grid_values, games, targets, progress, checkpoint, **fixed)

    monkeypatch.setattr(trajectory, "_simulate_seeds", counting)
    COMPILED_RUNS.clear()
    calls = []
    _run("inpo", inputs, 3 * ONE_GAME, monkeypatch, progress=lambda done, total: calls.append((done, total)))
    assert batches == [2, 2, 2, 2]
    (compiled,) = COMPILED_RUNS.values()
    assert compiled._cache_size() == 1  # every group (one block each) ran the one program
    # T = 60 updates a group, each one call: progress between the groups, in updates of all groups
    assert calls == [(60, 240), (120, 240), (180, 240)]


def test_the_first_bad_iteration_is_found_in_a_run_in_seed_groups(monkeypatch):
    # DPO in float32 with β = 1e-37 overflows within a few dozen iterations on each random game
    games = [
        game_from_instance(build_game(GameSpec(kind="random", arms=4).validate(), seed), jnp.float32)
        for seed in range(8)
    ]
    stacked, axes = stack_over_seeds(games)
    assert axes.preference == 0
    targets = jnp.full((8, 4), 0.25, jnp.float32)
    record = default_record_iterations(60)
    found = []
    assert seed_tile(8, 4, itemsize=4) is None
    for budget in (10**12, 3 * 4 * 4 * 4):  # float32 K = 4: 64 B a seed; 3 games → tiles of 2
        monkeypatch.setattr(shared_engine, "SEED_TILE_BYTES", budget)
        assert budget > 10**6 or seed_tile(8, 4, itemsize=4) == 2
        _, first_bad = simulate_grid(
            lambda point: build_rule("dpo", {"beta": 1e-37}), {}, stacked, axes, targets, record
        )
        found.append(first_bad)
    assert np.all(found[0] > 0)
    assert np.array_equal(found[0], found[1])


def test_regularised_nash_targets_solved_in_groups_equal_the_one_batch_solve(monkeypatch):
    inputs = _inputs(seeds=7)
    whole, whole_gaps = regularised_targets(inputs.games, inputs.game_axes, 7)
    monkeypatch.setattr(shared_engine, "SEED_TILE_BYTES", 3 * ONE_GAME)
    assert seed_tile(7, 4) == 2  # 4 groups of 2, the last padded
    grouped, grouped_gaps = regularised_targets(inputs.games, inputs.game_axes, 7)
    assert grouped.shape == whole.shape == (7, 4) and len(grouped_gaps) == 7
    np.testing.assert_allclose(grouped, whole, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grouped_gaps, whole_gaps, rtol=1e-6, atol=1e-15)
    assert max(grouped_gaps) < 1e-10  # every seed converged, the padded group's included
