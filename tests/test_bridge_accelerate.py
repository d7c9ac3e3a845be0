"""Two real processes: ``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo DDP), issue 13 §2.

(``accelerate launch --cpu`` starts a single process whatever ``--num_processes`` says; on a machine
without CUDA, ``--multi_gpu`` with ``Accelerator(cpu=True)`` gives a gloo process group.)  The run must
be the one-process run: world size 2 is recorded, both ranks hold identical parameters (``ranks.json``),
and the samples, pairs, losses and trained parameters equal those of a single-process run of the same
spec (SGD, so the parameters differ only by float32 summation order).  Seven pairs in global steps of 3
give the processes uneven shares (2 and 1 pairs) and a last step of one pair, where one process has
none; no pair is dropped.  Extragradient's second stage (drawn from the half-step policy, then θ_t put
back on both ranks) and Nash-MD's opponent (the geometric mixture, sampled with a copy of the model on
each rank) give the same pairs and parameters too.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from llm_bridge import loop as bridge_loop
from llm_bridge.models import read_weights
from llm_bridge.spec import load_spec
from llm_bridge.tiny import build_tiny_model
from sim.results_io import output_lock

REPO = Path(__file__).resolve().parent.parent
PAIRS = 7


def _spec(tmp_path, model):
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
iterations = 1
seed = 2
[model]
path = "{model}"
[prompts]
train = ["tell me a story", "the movie was", "i love this", "write a review", "what a", "the weather is", "she said"]
heldout = ["what a", "i love this", "the weather is"]
per_iteration = {PAIRS}
[generation]
max_new_tokens = 4
batch_size = 3
[training]
optimizer = "sgd"
learning_rate = 0.05
batch_size = 3
micro_batch_size = 1
[[rule]]
name = "inpo"
eta = 1.0
tau = 0.3
[[rule]]
name = "extragradient"
eta = 1.0
tau = 0.3
[[rule]]
name = "nash_md"
eta = 1.0
tau = 0.3
[run]
threads = 1
""")
    return spec


def test_two_processes_train_exactly_as_one(tmp_path):
    model = build_tiny_model(tmp_path / "model", "llama")
    spec = _spec(tmp_path, model)
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert launcher, "the accelerate launcher is not installed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    two = tmp_path / "two"
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    command += ["-m", "llm_bridge.cli", str(spec), "--out", str(two), "--quiet"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # two processes really ran, and ended with identical parameters
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["processes"] == 2 and len(manifest["model"]["sha256"]) == 64

    # only the main process locks the directory; its refusal (another run holds it) ends both processes at once
    with output_lock(two):
        refused = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert refused.stderr.count(f"another prefsim run (process {os.getpid()})") == 2, refused.stderr[-3000:]
    ranks = json.loads((two / "inpo" / "iter_001" / "ranks.json").read_text())
    assert ranks["processes"] == 2 and len(ranks["parameter_sha256"]) == 2
    assert len(set(ranks["parameter_sha256"])) == 1

    # ... and did what one process does with the same spec
    torch.set_num_threads(1)
    one = tmp_path / "one"
    bridge_loop.run_bridge(load_spec(spec), one, progress=False)
    table_two, table_one = pd.read_csv(two / "metrics.csv"), pd.read_csv(one / "metrics.csv")
    # π_0's held-out samples and their win rate do not depend on the number of processes
    assert table_two.loc[0, "win_rate"] == table_one.loc[0, "win_rate"]
    assert (two / "reference" / "heldout.json").read_text() == (one / "reference" / "heldout.json").read_text()
    # the same pairs, every one of them trained on (7 pairs, 3 steps of 3, 3, 1), losses summed over the ranks
    assert (two / "inpo" / "iter_001" / "pairs.jsonl").read_text() == (
        one / "inpo" / "iter_001" / "pairs.jsonl"
    ).read_text()
    for column in ("pairs", "optimizer_steps", "oracle_queries", "generation_tokens", "train_tokens"):
        assert table_two.loc[1, column] == table_one.loc[1, column]
    assert table_two.loc[1, "pairs"] == PAIRS and table_two.loc[1, "optimizer_steps"] == 3
    assert abs(table_two.loc[1, "loss_first"] - 0.25) < 1e-5  # INPO's (1/(2η))² over all pairs of the step
    for column in ("loss_first", "loss_last"):  # float32: the precomputed log-probs are batched differently
        assert abs(table_two.loc[1, column] - table_one.loc[1, column]) < 1e-5 * abs(table_one.loc[1, column]), column
    # the DDP steps equal the single-process steps over all the gathered pairs
    reference = read_weights(one / "reference" / "policy.safetensors")
    for rule in ("inpo", "extragradient", "nash_md"):
        for pairs in ("pairs.jsonl", "stage_1/pairs.jsonl"):
            if (one / rule / "iter_001" / pairs).is_file():
                texts = [(d / rule / "iter_001" / pairs).read_text() for d in (one, two)]
                assert texts[0] == texts[1], (rule, pairs)
        trained_one = read_weights(one / rule / "iter_001" / "policy.safetensors")
        trained_two = read_weights(two / rule / "iter_001" / "policy.safetensors")
        moved = max(float((trained_one[k] - reference[k]).abs().max()) for k in reference)
        assert moved > 1e-3
        for name in trained_one:  # float32 summation order only (a DDP mean instead of the sum: off by moved/2)
            torch.testing.assert_close(trained_two[name], trained_one[name], rtol=0, atol=1e-5)
