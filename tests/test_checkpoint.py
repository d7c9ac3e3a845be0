"""A long rule keeps its state between time blocks (sim.checkpoint): a run interrupted inside a rule and rerun
with ``resume`` continues from its last saved block, and its numbers equal an uninterrupted run's bit for bit;
a saved state that does not belong to the run is reported and not used."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim.checkpoint as checkpoint_module
import sim.point_groups as point_groups
import sim.point_plan as point_plan
import sim.sampled.engine as sampled_engine
import sim.trajectory as trajectory
from bandits.errors import PrefsimError
from sim.cli import main
from sim.experiment import run
from sim.results_io import PROGRESS_SUFFIX
from sim.spec import parse_spec

EXACT = {
    "iterations": 120,
    "seeds": 3,
    "game": {"kind": "random", "arms": 5, "tau": 0.02},
    "rule": [{"name": "inpo", "eta": [0.3, 0.6]}, {"name": "optimistic", "eta": 0.3, "label": "second"}],
}
SAMPLED = {
    "iterations": 24,
    "seeds": 2,
    "game": {"kind": "random", "arms": 4, "tau": 0.1},
    "run": {"mode": "sampled", "pairs_per_iteration": 16, "inner_steps": 3, "learning_rate": 0.3},
    "rule": [{"name": "optimistic", "eta": 0.3, "reference_every": 5}],
}


class StopAfter:
    """A progress receiver (``within`` as sim.progress.Progress has it) that interrupts the run after
    ``blocks`` reports from inside rule ``label``; it records every report and message."""

    def __init__(self, label: str | None = None, blocks: int | None = None):
        self.label, self.blocks, self.reports, self.messages = label, blocks, [], []

    def __call__(self, message):
        self.messages.append(message)

    def within(self, label, done, total):
        self.reports.append((label, done))
        if label == self.label and sum(1 for name, _ in self.reports if name == label) == self.blocks:
            raise KeyboardInterrupt


@pytest.fixture
def save_every_block(monkeypatch):
    monkeypatch.setattr(checkpoint_module, "SAVE_SECONDS", 0.0)
    for module in (trajectory, point_groups):  # plain runs and [game] sweep groups
        monkeypatch.setattr(module, "block_updates", lambda points, seeds, arms, shared_preference=False: 10)
    monkeypatch.setattr(sampled_engine, "block_iterations", lambda points, seeds, settings, shape: 4)


def _interrupt(spec, out, label, blocks):
    with pytest.raises(KeyboardInterrupt):
        run(spec, out, progress=StopAfter(label, blocks))
    return out / "parts" / f"{label}{PROGRESS_SUFFIX}"


def _resume(spec, out):
    """Resume ``spec`` in ``out``; check its table equals an uninterrupted run's bit for bit; the receiver."""
    resumed = StopAfter()
    table = run(spec, out, resume=True, progress=resumed)
    pd.testing.assert_frame_equal(table, run(spec), check_exact=True)
    return resumed


def _resumed_reports(resumed, label):
    return [done for name, done in resumed.reports if name == label]


def test_an_interrupted_exact_rule_resumes_from_its_saved_block_bit_for_bit(tmp_path, save_every_block):
    saved = _interrupt(EXACT, tmp_path / "out", "inpo", 4)
    assert saved.is_file() and not (tmp_path / "out" / "parts" / "inpo.csv").exists()
    resumed = _resume(EXACT, tmp_path / "out")
    # the interruption came at the 4th report (40 updates), after the state of 40 updates was saved
    assert _resumed_reports(resumed, "inpo") == [40, 50, 60, 70, 80, 90, 100, 110, 120]
    assert any(
        message == f"inpo: resumed from its saved state after 40 updates ({saved})" for message in resumed.messages
    )
    assert not saved.exists()  # the part's rows are written: its progress is not kept


def test_a_resumed_rule_keeps_the_running_log_ratio_of_the_iterations_before_the_interruption(
    tmp_path, save_every_block
):
    """``max_log_ratio_so_far`` is carried between blocks: the largest log-ratio of this INPO run comes at
    iteration 9, recorded nowhere (every 25th is), and the run is interrupted after 40 updates, so the rows
    from t = 50 on show it only when the resumed state still holds it."""
    spec = {
        "iterations": 120,
        "seeds": 2,
        "record_every": 25,
        "game": {"kind": "cyclic", "arms": 3, "strength": 1.0, "tau": 0.1, "reference": [0.5, 0.3, 0.2]},
        "rule": [{"name": "inpo", "eta": 0.15}],
    }
    saved = _interrupt(spec, tmp_path / "out", "inpo", 4)
    assert saved.is_file()
    resumed = run(spec, tmp_path / "out", resume=True, progress=StopAfter())
    uninterrupted = run(spec)
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)
    every = run({**spec, "record_every": 1})  # the same trajectory, every iteration recorded
    for seed, frame in resumed.groupby("seed"):
        all_rows = every[every.seed == seed].sort_values("iteration")
        running = np.maximum.accumulate(all_rows["max_log_ratio"].to_numpy())[frame["iteration"].to_numpy()]
        np.testing.assert_allclose(frame["max_log_ratio_so_far"].to_numpy(), running, rtol=1e-12)
        # at t = 50 the maximum is that of an iteration before the interruption, larger than any after it
        before, since = all_rows["max_log_ratio"].to_numpy()[:41].max(), all_rows["max_log_ratio"].to_numpy()[41:51]
        assert frame.loc[frame.iteration == 50, "max_log_ratio_so_far"].item() == pytest.approx(before, rel=1e-12)
        assert before > since.max() + 0.5


def test_a_run_without_resume_starts_again_and_removes_the_saved_state(tmp_path, save_every_block):
    saved = _interrupt(EXACT, tmp_path / "out", "second", 2)
    assert saved.is_file()
    again = StopAfter()
    run(EXACT, tmp_path / "out", progress=again)
    assert _resumed_reports(again, "second")[0] == 10 and not saved.exists()


def test_seed_groups_keep_their_finished_results_and_the_running_groups_state(tmp_path, save_every_block, monkeypatch):
    monkeypatch.setattr(trajectory, "seed_group", lambda seeds, arms, games, axes, devices=1: 2)  # 3 groups of 2
    spec = {**EXACT, "seeds": 5, "rule": EXACT["rule"][:1]}
    # 3 groups × 120 updates, reported as one run of 360 (12 block reports and the group's end each):
    # the 17th report is 160, 40 updates into the second group
    saved = _interrupt(spec, tmp_path / "out", "inpo", 17)
    resumed = _resume(spec, tmp_path / "out")
    assert _resumed_reports(resumed, "inpo")[:2] == [160, 170]  # the first group loaded, the second continued
    assert not saved.exists()


def test_an_interrupted_sampled_rule_resumes_bit_for_bit(tmp_path, save_every_block):
    saved = _interrupt(SAMPLED, tmp_path / "out", "optimistic", 3)
    assert saved.is_file()
    resumed = _resume(SAMPLED, tmp_path / "out")
    assert _resumed_reports(resumed, "optimistic") == [12, 16, 20, 24]
    assert not saved.exists()


def test_a_saved_state_of_another_spec_or_an_unreadable_file_is_reported_and_not_used(tmp_path, save_every_block):
    saved = _interrupt(EXACT, tmp_path / "out", "inpo", 4)
    other = {**EXACT, "game": {**EXACT["game"], "tau": 0.03}}
    resumed = _resume(other, tmp_path / "out")
    expected = f"{saved} was saved for another spec, prefsim or JAX version or backend; the rule starts from its"
    assert f"inpo: {expected} beginning" in resumed.messages
    assert _resumed_reports(resumed, "inpo")[0] == 10

    for index, unreadable in enumerate((b"\x00\x01 not a checkpoint", _npy_bytes())):  # a lone array: np.load reads it
        saved = _interrupt(EXACT, tmp_path / f"unreadable-{index}", "inpo", 4)
        saved.write_bytes(unreadable)
        resumed = _resume(EXACT, tmp_path / f"unreadable-{index}")
        assert any(m.startswith(f"inpo: {saved} cannot be read (") for m in resumed.messages), resumed.messages


def _npy_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3.0))
    return buffer.getvalue()


def test_a_failed_save_is_reported_and_the_run_goes_on(tmp_path, save_every_block, monkeypatch):
    def full_disk(contents):
        raise PrefsimError(f"could not write {', '.join(map(str, contents))} (No space left on device); the previous")

    monkeypatch.setattr(checkpoint_module, "write_files_atomic", full_disk)
    messages = []
    table = run(EXACT, tmp_path / "out", progress=messages.append)
    pd.testing.assert_frame_equal(table, run(EXACT), check_exact=True)
    failed = [m for m in messages if "progress not saved, the run goes on: could not write" in m]
    assert failed and all("No space left on device" in m for m in failed)


def test_a_sweep_with_seed_blocks_checks_its_progress_paths_before_running(tmp_path):
    spec = {**EXACT, "game": {**EXACT["game"], "tau": [0.02, 0.03]}, "run": {"seed_block": 2}}
    blocked = tmp_path / "out" / "points" / "game.tau=0.02" / "parts" / f"inpo[game.tau=0.02]@block-0{PROGRESS_SUFFIX}"
    blocked.mkdir(parents=True)
    with pytest.raises(
        PrefsimError, match=r"inpo\[game.tau=0.02\]@block-0.progress.npz' exists and is not a regular file"
    ):
        run(spec, tmp_path / "out")


def test_a_saved_state_cut_into_other_blocks_is_not_used(tmp_path, save_every_block, monkeypatch):
    saved = _interrupt(EXACT, tmp_path / "out", "inpo", 4)
    monkeypatch.setattr(trajectory, "block_updates", lambda points, seeds, arms, shared_preference=False: 7)
    resumed = _resume(EXACT, tmp_path / "out")
    said = [m for m in resumed.messages if "inpo: the saved state was cut into other blocks (saved: blocks of" in m]
    assert len(said) == 1 and "; this run: blocks of 7 updates on 1 device(s), per-seed input" in said[0]
    assert said[0].endswith("); not used")
    assert _resumed_reports(resumed, "inpo")[0] == 7 and not saved.exists()


def test_the_state_is_saved_only_when_a_save_is_due(tmp_path, save_every_block, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "SAVE_SECONDS", 3600.0)
    saved = _interrupt(EXACT, tmp_path / "out", "inpo", 4)
    assert not saved.exists()  # a run shorter than SAVE_SECONDS writes no checkpoint


def test_progress_of_a_rule_no_longer_in_the_spec_is_removed(tmp_path, save_every_block):
    saved = _interrupt(EXACT, tmp_path / "out", "second", 2)
    spec = {**EXACT, "rule": EXACT["rule"][:1]}
    messages = []
    run(spec, tmp_path / "out", resume=True, progress=messages.append)
    assert not saved.exists()
    assert f"removed {saved}: its rule (or seed block) is no longer in the spec" in messages


def test_the_command_line_says_the_progress_is_kept(tmp_path, capsys, save_every_block, monkeypatch):
    (tmp_path / "spec.toml").write_text(
        'iterations = 120\nseeds = 2\n[game]\nkind = "random"\narms = 4\ntau = 0.1\n'
        '[[rule]]\nname = "inpo"\neta = 0.5\n'
    )
    real = trajectory.simulate_grid

    def interrupted(*args, progress=None, **kwargs):
        def stop(done, total):
            progress(done, total)
            if done == 30:
                raise KeyboardInterrupt

        return real(*args, progress=stop, **kwargs)

    monkeypatch.setattr("sim.experiment.simulate_grid", interrupted)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "spec.toml"), "--out", str(out), "--no-plots"]) == 130
    assert "finished parts and a long rule's progress are saved" in capsys.readouterr().err
    assert (out / "parts" / f"inpo{PROGRESS_SUFFIX}").is_file()
    monkeypatch.undo()
    monkeypatch.setattr(trajectory, "block_updates", lambda points, seeds, arms, shared_preference=False: 10)
    assert main(["run", str(tmp_path / "spec.toml"), "--out", str(out), "--no-plots", "--resume"]) == 0
    assert "inpo: resumed from its saved state after 30 updates" in capsys.readouterr().out
    assert np.isfinite(pd.read_csv(out / "metrics.csv")["exploitability"]).all()


@pytest.mark.parametrize(
    "spec, label, blocks, done",
    [
        ({**SAMPLED, "game": {**SAMPLED["game"], "tau": [0.1, 0.2]}}, "optimistic", 3, [12, 16, 20, 24]),
        ({**EXACT, "game": {**EXACT["game"], "tau": [0.02, 0.03]}}, "inpo", 4, [40, 50, 60, 70, 80, 90, 100, 110, 120]),
    ],
    ids=["sampled", "exact"],
)
def test_a_grouped_sweep_keeps_its_state_in_its_first_point(tmp_path, save_every_block, spec, label, blocks, done):
    assert point_plan.point_groups(parse_spec(spec)) == [(0, 1)]  # two points, one vmapped call
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "out", progress=StopAfter(label, blocks))
    saved = next((tmp_path / "out" / "points").glob(f"*/parts/{label}*{PROGRESS_SUFFIX}"))
    resumed = _resume(spec, tmp_path / "out")
    assert _resumed_reports(resumed, label) == done
    assert any(m.startswith(f"{label}: resumed from its saved state after {done[0]} updates") for m in resumed.messages)
    assert not saved.exists()


TWO_DEVICES = """
import json, sys
import jax
import pandas as pd
import sim.checkpoint, sim.shared_engine, sim.trajectory
from sim.experiment import run
assert jax.device_count() == 2, jax.devices()
sim.shared_engine.CPU_SHARD_WORK = 0  # split even this small run over the two CPU devices
sim.checkpoint.SAVE_SECONDS = 0.0
sim.trajectory.block_updates = lambda points, seeds, arms, shared_preference=False: 10
spec, out = json.loads(sys.argv[1]), sys.argv[2]
seen = []
real = sim.checkpoint.block_plan
def plan(record, size, separate, per_seed):
    seen.append(len(per_seed.sharding.device_set))
    return real(record, size, separate, per_seed)
sim.shared_engine.block_plan = plan
whole = run(spec)
class Stop:
    def __init__(self, at=None):
        self.at, self.messages, self.reports = at, [], []
    def __call__(self, message):
        self.messages.append(message)
    def within(self, label, done, total):
        self.reports.append(done)
        if done == self.at:
            raise KeyboardInterrupt
def interrupt(spec, out, at):
    try:
        run(spec, out, progress=Stop(at))
    except KeyboardInterrupt:
        return
    raise AssertionError("not interrupted")
interrupt(spec, out, 40)
resumed = Stop()
table = run(spec, out, resume=True, progress=resumed)
pd.testing.assert_frame_equal(table, whole, check_exact=True)
assert any("resumed from its saved state after 40 updates" in m for m in resumed.messages), resumed.messages
assert set(seen) == {2}, seen
print("resumed on", jax.device_count(), "devices")
# seed groups of 4 (2 a device): interrupted 40 updates into the second group on two devices, the run
# resumed on one device reuses nothing (neither the first group's result nor the second's state)
sim.trajectory.seed_group = lambda seeds, arms, games, axes, devices=1: 4
grouped = {**spec, "seeds": 12}
interrupt(grouped, out + "-groups", 120 + 40)
sim.shared_engine.CPU_SHARD_WORK = float("inf")  # one device from here on
resumed = Stop()
table = run(grouped, out + "-groups", resume=True, progress=resumed)
pd.testing.assert_frame_equal(table, run(grouped), check_exact=True)
assert resumed.reports[0] == 10 and not any("resumed" in m for m in resumed.messages), resumed.reports
assert seen[-1] == 1
print("groups of another layout not reused")
"""


def test_a_state_sharded_over_two_devices_resumes_on_them_and_not_on_one_device(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    spec = {**EXACT, "seeds": 6, "rule": EXACT["rule"][:1]}
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, json.dumps(spec), str(tmp_path / "out")],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed on 2 devices" in result.stdout and "groups of another layout not reused" in result.stdout
