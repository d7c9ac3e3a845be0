"""A long rule runs in blocks (sim.shared_engine.plan_blocks / run_blocks, sim.trajectory.simulate_grid):
the numbers do not depend on the block size (bit for bit), blocks reuse compiled functions, the host
reports progress between blocks (sim.progress.Progress.within) and honours a stop request there."""

from __future__ import annotations

import io
import signal

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import sim.progress as progress_module
import sim.sampled.engine as sampled_engine
import sim.trajectory as trajectory
from bandits.games import GameSpec, build_game
from sim import stop_request
from sim.cli import main
from sim.experiment import prepare_run
from sim.game import game_from_instance
from sim.progress import Progress
from sim.rules import build_rule
from sim.sampled.engine import simulate_sampled_grid
from sim.shared_engine import COMPILED_RUNS, plan_blocks, stack_over_seeds
from sim.spec import parse_spec
from sim.trajectory import default_record_iterations, simulate_grid

RULES = {
    "inpo": {"eta": 0.5},
    "extragradient": {"eta": 0.3},  # two products per update
    "optimistic": {"eta": 0.3},  # carries its own leading product
    "nash_md": {"eta": 0.3},  # a geometric-mixture opponent; reads no measured win rates
    "apo": {"base": "inpo", "alpha": 0.5},  # a wrapper with its own state
}


def _inputs(iterations=60, seeds=2, arms=4, record_every=None):
    every = {"record_every": record_every} if record_every else {}
    spec = parse_spec(
        {
            "iterations": iterations,
            "seeds": seeds,
            **every,
            "game": {"kind": "random", "arms": arms, "tau": 0.1},
            "rule": [{"name": "inpo", "eta": 0.5}],
        }
    )
    return prepare_run(spec)


def _run(name, parameters, inputs, block_size=None, progress=None, grid=None):
    grid = {"eta": np.array([0.2, 0.4])} if grid is None else grid
    return simulate_grid(
        lambda point: build_rule(name, {**parameters, **point}),
        grid,
        inputs.games,
        inputs.game_axes,
        inputs.targets,
        inputs.record,
        cache_key=("test_block_progress", name),
        unregularised_targets=inputs.unregularised,
        progress=progress,
        block_size=block_size,
    )


def _assert_identical(first, second):
    (metrics_a, bad_a), (metrics_b, bad_b) = first, second
    assert set(metrics_a) == set(metrics_b)
    for column in metrics_a:
        assert np.array_equal(metrics_a[column], metrics_b[column], equal_nan=True), column
    assert np.array_equal(bad_a, bad_b)


# ---------------------------------------------------------------------------------------------- the plan


def test_blocks_cover_the_run_cut_at_recordings_and_block_boundaries():
    record = default_record_iterations(30)  # 0 … 10, 12, 14, 17, 20, 25, 30
    blocks, schedules = plan_blocks(record, 7)
    schedules = list(schedules)
    assert blocks == len(schedules) == 5
    assert len(schedules[0].lengths) == 7  # the first block: exactly its pieces (seven segments of 1)
    assert {len(s.lengths) for s in schedules[1:]} == {5}  # the rest padded alike: one compiled function
    ends, at = [], 0
    for index, schedule in enumerate(schedules):
        assert schedule.lengths.sum() <= 7 and schedule.lengths.sum() == min(7, 30 - 7 * index)
        for length, fresh, measures in zip(*schedule):
            if length == 0:  # padding does nothing
                assert not fresh and not measures
                continue
            assert fresh == (at in record)
            at += int(length)
            assert measures == (at in record)
            if measures:
                ends.append(at)
    assert at == 30 and ends == record[1:].tolist()
    # the fourth block (updates 22 … 28) continues the segment 20 → 25 and stops inside 25 → 30
    assert schedules[3].lengths[:2].tolist() == [4, 3] and not schedules[3].fresh[0]


def test_a_short_run_is_one_block_of_its_segments():
    record = default_record_iterations(1000)
    blocks, schedules = plan_blocks(record, 1000)
    (schedule,) = list(schedules)
    assert blocks == 1 and schedule.lengths.tolist() == np.diff(record).tolist()
    assert schedule.fresh.all() and schedule.measures.all()
    assert trajectory.block_updates(1, 8, 10) >= 10_000  # a small spec's default is one block


def test_block_size_at_hand_computed_points():
    # 10¹⁰ / (G·S·(K²/c + 64·K)), c = 16 when the seeds share P, else 1
    assert trajectory.block_updates(1, 16, 1000) == 587  # 10¹⁰ / (16 · 1 064 000)
    assert trajectory.block_updates(1, 64, 1000, shared_preference=True) == 1235  # 10¹⁰ / (64 · 126 500)
    assert trajectory.block_updates(2, 1024, 10) == 6598  # 10¹⁰ / (2 · 1024 · 740)
    assert trajectory.block_updates(10**6, 10**6, 1000) == 1  # never below one update


# ---------------------------------------------------------------------------------------------- same numbers


@pytest.mark.parametrize("name", sorted(RULES))
def test_blocked_runs_give_the_same_numbers_bit_for_bit(name):
    inputs = _inputs()
    whole = _run(name, RULES[name], inputs)
    # 7 and 13 put block boundaries inside the segments 40 → 50 → 60 (and 13 inside 20 → 25 → 30)
    for block_size in (7, 13):
        _assert_identical(whole, _run(name, RULES[name], inputs, block_size))


def test_blocks_with_record_every_and_a_block_of_one_update():
    inputs = _inputs(iterations=23, record_every=5)
    whole = _run("extragradient", RULES["extragradient"], inputs)
    for block_size in (1, 3, 5):
        _assert_identical(whole, _run("extragradient", RULES["extragradient"], inputs, block_size))


def test_a_blocked_run_reuses_two_compiled_functions():
    inputs = _inputs(iterations=200)
    COMPILED_RUNS.clear()
    calls = []
    _run("inpo", RULES["inpo"], inputs, block_size=5, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) == 40 and calls[-1] == (200, 200) and calls[0] == (5, 200)
    (compiled,) = COMPILED_RUNS.values()
    assert compiled._cache_size() == 2  # the first block (which starts the run) and every later one
    _run("inpo", RULES["inpo"], _inputs(iterations=300), block_size=5)  # another T: nothing new
    assert compiled._cache_size() == 2


def test_the_exact_first_bad_iteration_is_found_when_it_lies_inside_a_block():
    # DPO in float32 with β = 1e-37 overflows at iteration 35 (tests/test_trajectory.py); recordings 30, 40.
    game = game_from_instance(
        build_game(GameSpec(kind="bradley_terry", rewards=[0.0, 1.0, 0.5]).validate()), jnp.float32
    )
    games, axes = stack_over_seeds([game])
    target = jnp.asarray([[0.0, 1.0, 0.0]], jnp.float32)
    record = default_record_iterations(50)
    results = []
    for block_size in (None, 4, 6):
        metrics, first_bad = simulate_grid(
            lambda point: build_rule("dpo", {"beta": 1e-37}), {}, games, axes, target, record, block_size=block_size
        )
        assert first_bad.tolist() == [[35]]
        results.append((metrics, first_bad))
    _assert_identical(results[0], results[1])
    _assert_identical(results[0], results[2])


def test_a_progress_exception_stops_the_run_between_blocks():
    inputs = _inputs(iterations=100)
    calls = []

    class Stop(Exception):
        pass

    def progress(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        _run("inpo", RULES["inpo"], inputs, block_size=10, progress=progress)
    assert calls == [10, 20]


# ---------------------------------------------------------------------------------------------- Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_within_lines_are_occasional_with_elapsed_and_time_left(monkeypatch):
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, clock=clock)
    progress.stage(2, 7, "running apo")
    for second in range(1, 101):  # one block a second, 10⁵ updates each; the first also compiled
        clock.now = second + 4.0
        progress.within("apo", second * 100_000, 10_000_000)
    lines = [line for line in stream.getvalue().splitlines() if "updates" in line]
    assert lines[0] == "prefsim: apo: 1e5/1e7 updates · 5 s elapsed, time left: after the next block (rule 3/7)"
    assert lines[1] == "prefsim: apo: 1.1e6/1e7 updates · 15 s elapsed, ~1 min 29 s left (rule 3/7)"
    assert 5 <= len(lines) <= 12, lines  # not one per block
    quiet = io.StringIO()
    silent = Progress(quiet, mode="quiet")
    silent.within("apo", 1, 2)
    assert quiet.getvalue() == ""


def test_within_redraws_the_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream, clock = Terminal(), Clock()
    progress = Progress(stream, clock=clock)
    progress.within("mmd", 250, 1000)
    clock.now = 10.0
    progress.within("mmd", 500, 1000)
    progress.finish()
    text = stream.getvalue()
    assert "\n" not in text
    assert "[" + "#" * 12 + "·" * 12 + "] mmd: 500/1000 updates · 10 s elapsed, ~20 s left" in text


# ---------------------------------------------------------------------------------------------- the CLI

SPEC = """
iterations = 120
seeds = 2
[game]
kind = "random"
arms = 4
tau = 0.2
[[rule]]
name = "mmd"
label = "first"
[[rule]]
name = "inpo"
label = "second"
eta = 1.0
"""


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(trajectory, "block_updates", lambda points, seeds, arms, shared_preference=False: 10)
    monkeypatch.setattr(progress_module, "LINE_SECONDS", 0.0)


def test_prefsim_run_reports_progress_inside_a_rule_and_nothing_when_quiet(tmp_path, capsys, small_blocks):
    (tmp_path / "spec.toml").write_text(SPEC)
    status = main(["run", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "a"), "--no-plots"])
    out = capsys.readouterr().out
    assert status == 0
    inside = [line for line in out.splitlines() if " updates · " in line]
    assert any(line.startswith("prefsim: first: 10/120 updates · ") for line in inside), out
    assert any(line.startswith("prefsim: second: ") and "(rule 2/2)" in line for line in inside), out
    status = main(["run", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "b"), "--no-plots", "--quiet"])
    assert status == 0 and capsys.readouterr().out == ""
    a, b = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


def test_a_stop_request_is_honoured_between_blocks(tmp_path, capsys, small_blocks, monkeypatch):
    (tmp_path / "spec.toml").write_text(SPEC)
    reports = []
    real = Progress.within

    def sigterm_after_the_third_block(self, label, done, total):
        reports.append(done)
        real(self, label, done, total)
        if len(reports) == 3:
            stop_request.request_stop(signal.SIGTERM)  # what the SIGTERM handler records

    monkeypatch.setattr(Progress, "within", sigterm_after_the_third_block)
    out = tmp_path / "out"
    status = main(["run", str(tmp_path / "spec.toml"), "--out", str(out), "--no-plots"])
    err = capsys.readouterr().err
    assert status == 143, err
    assert err.startswith("terminated (SIGTERM)") and "Traceback" not in err
    assert reports == [10, 20, 30]  # the fourth block's report stopped it, inside the first rule
    assert not (out / "metrics.csv").exists() and not (out / "parts" / "first.csv").exists()


# ---------------------------------------------------------------------------------------------- sampled mode

SAMPLED_RULES = {
    "inpo": {"eta": 0.5},
    "extragradient": {"eta": 0.3},  # two proximal stages per iteration
    "optimistic": {"eta": 0.3},  # carries the pairs of its second stage
    "nash_md": {"eta": 0.3},  # pairs against a mixture opponent
}


def _sampled(name, iterations=23):
    spec = parse_spec(
        {
            "iterations": iterations,
            "seeds": 2,
            "game": {"kind": "random", "arms": 4, "tau": 0.1},
            "run": {"mode": "sampled", "pairs_per_iteration": 16, "inner_steps": 3, "learning_rate": 0.3},
            "rule": [{"name": name, **SAMPLED_RULES[name]}],
        }
    )
    return spec, prepare_run(spec)


def _run_sampled(spec, inputs, block_size=None, progress=None):
    rule, sampled = spec.rules[0], inputs.sampled
    return simulate_sampled_grid(
        rule.name,
        rule.fixed(),
        {},
        spec.run,
        sampled.problems,
        sampled.axes,
        sampled.keys,
        inputs.record,
        progress=progress,
        block_size=block_size,
    )


@pytest.mark.parametrize("name", sorted(SAMPLED_RULES))
def test_sampled_blocked_runs_give_the_same_numbers_bit_for_bit(name):
    spec, inputs = _sampled(name)
    whole = _run_sampled(spec, inputs)
    for block_size in (4, 7):  # boundaries inside the segments 10 → 12 → … → 23
        _assert_identical(whole, _run_sampled(spec, inputs, block_size))


def test_sampled_blocks_reuse_two_compiled_functions_and_report_progress():
    spec, inputs = _sampled("inpo", iterations=40)
    COMPILED_RUNS.clear()
    calls = []
    _run_sampled(spec, inputs, 4, lambda done, total: calls.append((done, total)))
    assert calls == [(4 * i, 40) for i in range(1, 11)]
    (compiled,) = COMPILED_RUNS.values()
    assert compiled._cache_size() == 2  # the start (iteration 0) and every block
    assert sampled_engine.block_iterations(1, 8, spec.run, (1, 4)) >= 1000  # a small run is one block


def test_prefsim_run_reports_progress_inside_a_sampled_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sampled_engine, "block_iterations", lambda points, seeds, settings, shape: 4)
    monkeypatch.setattr(progress_module, "LINE_SECONDS", 0.0)
    (tmp_path / "spec.toml").write_text(
        'iterations = 12\nseeds = 1\n[game]\nkind = "random"\narms = 3\ntau = 0.2\n'
        '[run]\nmode = "sampled"\npairs_per_iteration = 8\ninner_steps = 2\n[[rule]]\nname = "inpo"\neta = 1.0\n'
    )
    status = main(["run", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "out"), "--no-plots"])
    out = capsys.readouterr().out
    assert status == 0
    assert "prefsim: inpo: 4/12 updates · " in out, out


def test_a_game_every_seed_shares_runs_one_trajectory_in_every_block():
    # a cyclic game: P and π_0 shared, so the state is carried once per grid point (seeds differ by π* only)
    spec = parse_spec(
        {
            "iterations": 40,
            "seeds": 3,
            "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
            "rule": [{"name": "inpo", "eta": 0.5}],
        }
    )
    inputs = prepare_run(spec)
    whole = _run("inpo", RULES["inpo"], inputs)
    blocked = _run("inpo", RULES["inpo"], inputs, block_size=6)
    _assert_identical(whole, blocked)
    assert blocked[0]["final_policy"].shape == (2, 3, 3)
