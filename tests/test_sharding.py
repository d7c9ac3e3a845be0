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

CHILD = """
import json, sys
import jax
import sim
expected_devices, out = int(sys.argv[1]), sys.argv[2]
assert jax.device_count() == expected_devices, jax.devices()
specs = json.loads(sys.argv[3])
for name, spec in specs.items():
    sim.run(spec).to_csv(f"{out}/{name}.csv", index=False, float_format="%.17g")
print("devices", jax.device_count())
"""


def _run_child(devices, out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(devices), str(out), json.dumps(SPECS)],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"devices {devices}" in result.stdout
    return {name: pd.read_csv(out / f"{name}.csv") for name in SPECS}


def test_two_devices_give_the_single_device_table(tmp_path):
    single = _run_child(1, tmp_path / "one")
    sharded = _run_child(2, tmp_path / "two")
    for name in SPECS:
        assert len(single[name]) > 0
        pd.testing.assert_frame_equal(sharded[name], single[name], check_exact=False, rtol=1e-12, atol=1e-15)
    assert sorted(set(single["random"]["seed"])) == [0, 1, 2]
