"""The bridge runs under ``accelerate launch --cpu`` with one and with two CPU processes (gloo DDP)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llm_bridge.tiny import build_tiny_model

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("processes", [1, 2])
def test_accelerate_launch_cpu_processes(tmp_path, processes):
    model = build_tiny_model(tmp_path / "model", "llama")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
iterations = 1
[model]
path = "{model}"
[prompts]
train = ["tell me a story", "the movie was", "i love this", "write a review"]
heldout = ["what a", "i love this", "the weather is"]
per_iteration = 4
[generation]
max_new_tokens = 4
[training]
learning_rate = 1e-2
batch_size = 2
micro_batch_size = 1
[[rule]]
name = "inpo"
eta = 1.0
tau = 0.3
[run]
threads = 1
""")
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "the accelerate launcher is not installed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [
            launcher,
            "launch",
            "--cpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "llm_bridge.cli",
            str(spec),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert list(table["iteration"]) == [0, 1]
    assert (tmp_path / "out" / "inpo" / "iter_001" / "policy.safetensors").is_file()
    # every prompt's pair was gathered from the processes and trained on (4 pairs, 1 query each)
    assert table.loc[1, "pairs"] == 4 and table.loc[1, "oracle_queries"] == 4
    assert abs(table.loc[1, "loss_first"] - 0.25) < 1e-5  # INPO's (1/(2η))² at π_θ = π_t, on every process
