"""Seed-axis sharding: a 2-device (forced host platform) run gives the single-device table.

Each configuration runs in its own subprocess because XLA_FLAGS must be set before JAX starts.  The
child asserts its device count, so the test cannot pass without actually sharding.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]

SPECS = {
    # P, π_ref batched over seeds; 3 seeds on 2 devices exercises the padding
    "random": {
        "iterations": 20,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.2, "reference": "random"},
        "rule": [{"name": "inpo", "eta": [0.5, 2.0]}],
    },
    # every game leaf shared (replicated); only the targets are per seed
    "shared": {
        "iterations": 20,
        "seeds": [0, 1, 2, 3],
        "game": {"kind": "bradley_terry", "rewards": [0.0, 1.0, 0.3], "tau": 0.1},
        "rule": [{"name": "apo", "alpha": 0.3, "beta": 0.5}],
    },
}

#: Run again with seeds in groups (sim.trajectory.seed_group): 13 seeds of K = 4 and a budget of three
#: games' P (384 B) make groups of 2 seeds a device (2 devices: groups of 4, 13 padded to 16;
#: 1 device: groups of 2, 13 padded to 14).
TILED = {**SPECS["random"], "seeds": 13}

CHILD = """
import json, sys
import jax
import sim
import sim.shared_engine
expected_devices, out = int(sys.argv[1]), sys.argv[2]
# on a CPU: split from CPU_SHARD_WORK = 1e9 on, never for an unknown work, at least 2 seeds a device
count = sim.shared_engine.seed_device_count
assert count(8, 1e9) == min(expected_devices, 4) and count(8, 1e9 - 1) == 1 and count(8) == 1
assert count(2, 1e12) == 1 and count(3, 1e12) == min(expected_devices, 2)
sim.shared_engine.CPU_SHARD_WORK = 0  # split even these small runs over the CPU devices
assert jax.device_count() == expected_devices, jax.devices()
specs = json.loads(sys.argv[3])
for name, spec in specs.items():
    sim.run(spec).to_csv(f"{out}/{name}.csv", index=False, float_format="%.17g")
sim.shared_engine.SEED_TILE_BYTES = 3 * 4 * 4 * 8
assert sim.shared_engine.seed_tile(-(-13 // expected_devices), 4) == 2
sim.run(json.loads(sys.argv[4])).to_csv(f"{out}/tiled.csv", index=False, float_format="%.17g")
print("devices", jax.device_count())
"""


def _run_child(devices, out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(devices), str(out), json.dumps(SPECS), json.dumps(TILED)],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"devices {devices}" in result.stdout
    return {name: pd.read_csv(out / f"{name}.csv") for name in [*SPECS, "tiled"]}


def test_two_devices_give_the_single_device_table(tmp_path):
    single = _run_child(1, tmp_path / "one")
    sharded = _run_child(2, tmp_path / "two")
    for name in SPECS:
        assert len(single[name]) > 0
        pd.testing.assert_frame_equal(sharded[name], single[name], check_exact=False, rtol=1e-12, atol=1e-15)
    assert sorted(set(single["random"]["seed"])) == [0, 1, 2]
    # seeds in groups, on one device and on two, give the first 3 seeds' rows of the run without groups
    for tiled in (single["tiled"], sharded["tiled"]):
        assert sorted(set(tiled["seed"])) == list(range(13))
        first = tiled[tiled["seed"] < 3].reset_index(drop=True)
        pd.testing.assert_frame_equal(first, single["random"], check_exact=False, rtol=1e-12, atol=1e-15)


SPEC_TOML = """
iterations = 20
seeds = 3
[game]
kind = "random"
arms = 4
tau = 0.2
reference = "random"
[[rule]]
name = "inpo"
eta = 0.5
"""


def _prefsim_run(spec, out, *options, environment=None):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PREFSIM_CPU_DEVICES")}
    env.update({"JAX_PLATFORMS": "cpu", **(environment or {})})
    # python -m sim.cli, with even this small run split over the CPU devices (sim.shared_engine.CPU_SHARD_WORK)
    code = "import sys, sim.shared_engine as e; e.CPU_SHARD_WORK = 0; import sim.cli; sys.exit(sim.cli.console())"
    command = [sys.executable, "-c", code, "run", str(spec), "--out", str(out), "--no-plots", "--quiet"]
    return subprocess.run([*command, *options], env=env, capture_output=True, text=True, timeout=300)


def test_prefsim_run_splits_the_seeds_over_cpu_devices(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TOML)
    runs = {
        "one": _prefsim_run(spec, tmp_path / "one", "--cpu-devices", "1"),
        "two": _prefsim_run(spec, tmp_path / "two", "--cpu-devices", "2"),
        "variable": _prefsim_run(spec, tmp_path / "variable", environment={"PREFSIM_CPU_DEVICES": "2"}),
    }
    for result in runs.values():
        assert result.returncode == 0, result.stderr[-2000:]
    devices = {name: json.loads((tmp_path / name / "manifest.json").read_text())["devices"] for name in runs}
    assert devices == {"one": ["cpu:0"], "two": ["cpu:0", "cpu:1"], "variable": ["cpu:0", "cpu:1"]}
    one = pd.read_csv(tmp_path / "one" / "metrics.csv")
    for name in ("two", "variable"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / name / "metrics.csv"), one, check_exact=False, rtol=1e-12, atol=1e-15
        )


def test_bad_or_late_cpu_device_counts_are_clear_errors(tmp_path, capsys):
    from sim.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TOML)
    bad = _prefsim_run(spec, tmp_path / "bad", "--cpu-devices", "zero")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "CPU devices: expected a positive whole number or auto, got 'zero'" in bad.stderr
    # far more devices than cores: refused before XLA tries (and fails) to start their threads
    many = _prefsim_run(spec, tmp_path / "many", "--cpu-devices", "100000")
    assert many.returncode == 2 and "Traceback" not in many.stderr and "per usable core" in many.stderr
    # in this process JAX already runs (on its one CPU device): another count cannot be set any more
    import jax

    running = len(jax.devices("cpu"))
    assert main(["run", str(spec), "--out", str(tmp_path / "late"), "--cpu-devices", str(running + 1)]) == 2
    assert f"JAX already runs on {running} CPU device(s)" in capsys.readouterr().err
    assert not (tmp_path / "late").exists()
