"""The bridge runs under ``accelerate launch --cpu --num_processes 1`` (Accelerate's launcher, one CPU process)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from llm_bridge.tiny import build_tiny_model

REPO = Path(__file__).resolve().parent.parent


def test_accelerate_launch_one_cpu_process(tmp_path):
    model = build_tiny_model(tmp_path / "model", "llama")
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
iterations = 1
[model]
path = "{model}"
[prompts]
train = ["tell me a story", "the movie was"]
heldout = ["what a", "i love this"]
per_iteration = 2
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
        [launcher, "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "llm_bridge.cli", str(spec), "--out", str(tmp_path / "out"), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert list(table["iteration"]) == [0, 1]
    assert (tmp_path / "out" / "inpo" / "iter_001" / "policy.safetensors").is_file()
