"""benchmarks/gpu/run.sh in its CPU dry run: every step runs and writes its gpu_*.md (the GPU run itself
needs a GPU; this checks that the script and its helpers work end to end, at toy sizes); without a GPU the
measured run refuses to start, and a spent budget skips steps.  Also the ratios to DPO of gpu/throughput.py
and benchmarks/bridge_step_cost.py: taken within one repeat (structure only, never speed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


def run_script(*arguments: str, timeout: float) -> subprocess.CompletedProcess:
    """``benchmarks/gpu/run.sh`` with ``arguments``, from the repository root, its output captured."""
    return subprocess.run(["bash", str(SCRIPT), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    result = run_script("--dry-run", "--out", str(out), timeout=600)
    return result, out


def test_dry_run_passes_every_step(dry_run):
    result, out = dry_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = (out / "gpu_run_log.md").read_text()
    for step in ("environment", "cuda_checks", "bridge_tests", "throughput", "exact_updates"):
        assert f"| {step} | ok |" in log, log
    assert "--dry-run (CPU, tiny; not a GPU measurement)" in log


def test_dry_run_reports(dry_run):
    _, out = dry_run
    checks = (out / "gpu_cuda_checks.md").read_text()
    assert checks.count("| pass |") == 3 and "dry run, not a GPU" in checks
    assert "ok |" in (out / "gpu_environment.md").read_text()
    tests = (out / "gpu_bridge_tests.md").read_text()
    collected = int(re.search(r"summary: (\d+)(?:/\d+)? tests? collected", tests).group(1))
    assert collected > 50, tests
    throughput = json.loads((out / "gpu_throughput.json").read_text())
    assert throughput["tiny"] and [m["name"] for m in throughput["models"]] == [
        "tiny_smollm2_shape",
        "tiny_llama_shape",
    ]
    for model in throughput["models"]:
        ratios = model["steps"]["ratio_to_dpo"]
        assert set(ratios) == {"dpo", "online_ipo", "inpo", "sppo", "dno", "nash_md", "apo(dpo)"}
        assert ratios["dpo"] == 1.0 and all(r > 0 for r in ratios.values())
        assert model["master_dtypes"] == ["torch.float32"] and model["generation"]["tokens_per_second"] > 0
    assert "not a GPU measurement" in (out / "gpu_throughput.md").read_text()
    assert (out / "gpu_exact_updates.md").is_file() and (out / "gpu_exact_updates.json").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--fast"], "error: unknown argument --fast"),
        (["--out"], "error: --out needs a directory"),
        (["--budget", "five"], "error: --budget needs a whole number of seconds"),
    ],
)
def test_bad_argument_is_an_error(arguments, message):
    result = run_script(*arguments, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_spent_budget_skips_the_remaining_steps(tmp_path):
    """The whole run has a budget (5 minutes on the GPU): a step's limit is cut to what is left of it, and a
    step with nothing left is recorded as skipped, not run; the run then fails."""
    result = run_script("--dry-run", "--budget", "12", "--out", str(tmp_path), timeout=120)
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]
    log = (tmp_path / "gpu_run_log.md").read_text()
    for step in ("environment", "cuda_checks", "bridge_tests", "throughput", "exact_updates"):
        assert f"| {step} | SKIPPED (the run's 12 s budget is spent) | 0 |" in log, log
    assert [path.name for path in tmp_path.iterdir()] == ["gpu_run_log.md"]


def test_the_docs_state_the_gpu_runs_time_limit_its_default_budget_sets():
    """Every doc that says how long ``run.sh`` takes on a GPU gives the minutes its default budget allows
    (docs/llm_bridge.md said ≤ 8 min while the budget is 290 s, ≤ 5 min as benchmarks/README.md says)."""
    budget = int(re.search(r"BUDGET_S=(\d+); \}", SCRIPT.read_text()).group(1))
    minutes = -(-budget // 60)
    for doc in ("docs/llm_bridge.md", "benchmarks/README.md"):
        text = " ".join((ROOT / doc).read_text().split())
        stated = [int(m) for m in re.findall(r"run\.sh`? .{0,40}?≤ (\d+) min", text)]
        assert stated and all(m == minutes for m in stated), (doc, stated, minutes)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="on a GPU machine this would measure for real")
@pytest.mark.parametrize("mode", [[], ["--speed"]], ids=["full", "speed"])
def test_without_a_gpu_a_measured_run_stops_before_measuring(tmp_path, mode):
    """Without ``--dry-run`` the script measures the GPU: on a machine without one it must say so and stop
    (exit status 3), not time the CPU and write the numbers as ``gpu_*`` results."""
    result = run_script(*mode, "--out", str(tmp_path), timeout=120)
    assert result.returncode == 3, result.stdout[-4000:] + result.stderr[-4000:]
    assert "error: no GPU for this measurement" in result.stderr and "JAX's default backend is cpu" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_speed_dry_run_measures_issue_14_on_the_device_it_finds(tmp_path):
    """``--speed``: issue 14's GPU run (the environment, then run_all.py's per-seed and compute-bound
    sections on JAX's default device, here the CPU), with the float32 peak fraction reported."""
    result = run_script("--speed", "--dry-run", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = (tmp_path / "gpu_speed_log.md").read_text()
    assert "| environment | ok |" in log and "| speed_targets | ok |" in log and "cuda_checks" not in log
    assert "--speed --dry-run (CPU, tiny; not a GPU measurement)" in log
    report = json.loads((tmp_path / "gpu_speed_targets.json").read_text())
    assert set(report["sections"]) == {"per_seed", "compute_bound"}
    assert any(name.startswith("per_seed_bandwidth_fraction") for name in report["targets"])
    float32 = report["sections"]["compute_bound"]["float32"]
    assert float32["peak_gflops"] > 0 and all(0 < f for f in float32["fractions"])
    assert "of the float32 matmul peak" in (tmp_path / "gpu_speed_targets.md").read_text()


def test_throughput_ratio_to_dpo_is_taken_within_each_repeat():
    """gpu/throughput.py's ratio to DPO (the INPO ≤ 1.05× target reads it) is a rule's step ÷ DPO's step of
    the same repeat, the median over repeats; structure only, no speed asserted."""
    import torch

    from llm_bridge.precision import precision_for
    from llm_bridge.tiny import random_pair_batch
    from llm_bridge.trainer import TrainingSpec

    throughput = load_script(ROOT / "benchmarks" / "gpu" / "throughput.py", "gpu_throughput_benchmark")
    device = torch.device("cpu")
    shape = throughput.TINY["tiny_llama_shape"]
    model = throughput.build_model(shape, device)
    data = random_pair_batch(range(3, shape["vocab_size"]), 2, 8, 8)
    spec = TrainingSpec(optimizer="adamw", learning_rate=1e-7, batch_size=2, micro_batch_size=2)
    steps = throughput.step_times(model, data, spec, precision_for("float32", "cpu", bf16=True), 3, device)
    seconds = steps["all_seconds"]
    for label, values in seconds.items():
        ratios = [t / d for t, d in zip(values, seconds["dpo"], strict=True)]
        assert steps["ratio_to_dpo"][label] == pytest.approx(float(np.median(ratios)), rel=1e-12)
        assert steps["ratio_to_dpo_spread"][label] == [min(ratios), max(ratios)]
    assert steps["ratio_to_dpo"]["dpo"] == 1.0


def test_bridge_step_cost_ratio_to_dpo_is_taken_within_each_repeat(tmp_path):
    """benchmarks/bridge_step_cost.py (tiny model): wall and CPU ratios to DPO are medians over repeats of the
    ratio within one repeat; structure only, no speed asserted."""
    bridge_step_cost = load_script(ROOT / "benchmarks" / "bridge_step_cost.py", "bridge_step_cost_benchmark")
    assert bridge_step_cost.main(["--repeats", "3", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bridge_step_cost_tiny.json").read_text())
    for ratios, seconds in (("ratio_to_dpo", "all_step_seconds"), ("cpu_ratio_to_dpo", "all_step_cpu_seconds")):
        for label, values in result[seconds].items():
            paired = [t / d for t, d in zip(values, result[seconds]["dpo"], strict=True)]
            assert result[ratios][label] == pytest.approx(float(np.median(paired)), rel=1e-12)
