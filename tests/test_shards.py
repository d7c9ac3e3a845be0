"""Sharded runs (``prefsim run --shard I/N``), their merge (``prefsim merge``) and the launcher
(``prefsim launch``, submitit's local executor): the merged results are the unsharded run's, byte for byte.

Specs are tiny (4 arms, a few seeds and iterations) and the shards of one spec run in this process,
so every rule table compiles once for the whole file.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bandits.errors import PrefsimError
from sim import launch, limits
from sim.cli import main
from sim.experiment import block_inputs, part_fingerprint, prepare_run, run, run_part, run_rule
from sim.headtohead import FINAL_POLICY
from sim.launch import launch_plan, memory_environment
from sim.results_io import read_part
from sim.sampled.experiment import run_sampled_rule
from sim.shards import deal, parse_shard, part_count, seed_blocks, shard_parts, shard_plan, work_parts
from sim.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent
SPLITS = (1, 2, 3, 7)

EXACT = """
name = "exact7"
iterations = 12
seeds = 3
record_every = 4
precision = "float64"

[game]
kind = "random"
arms = 4
tau = {tau}
reference = "random"
reference_min_mass = 0.01

[[rule]]
name = "inpo"
eta = [0.5, 2.0]

[[rule]]
name = "mmd"
eta = 1.0

[[rule]]
name = "nash_md"
eta = 0.2

[[rule]]
name = "online_ipo"

[[rule]]
name = "extragradient"
eta = 1.0

[[rule]]
name = "sppo"
eta = 0.2

[[rule]]
name = "optimistic"
eta = 1.0
"""

SAMPLED = """
name = "sampled7"
iterations = 4
seeds = 2
record_every = 2

[game]
kind = "random"
arms = 3
tau = 0.2

[[rule]]
name = "inpo"
eta = [1.0, 4.0]
tau = 0.2

[[rule]]
name = "online_ipo"

[[rule]]
name = "sppo"
eta = 0.5

[[rule]]
name = "nash_md"
eta = 0.2

[[rule]]
name = "dno"

[[rule]]
name = "extragradient"
eta = 1.0

[[rule]]
name = "optimistic"
eta = 1.0

[run]
mode = "sampled"
pairs_per_iteration = 8
policy = "tabular"
optimizer = "adam"
learning_rate = 0.05
inner_steps = 3
"""

# the first two tables (grid 2 and 1), 7 seeds in blocks of 2 (2, 2, 2, 1): 8 parts, enough for 7 shards
EXACT_BLOCKED = (
    "[[rule]]".join(EXACT.format(tau=0.1).split("[[rule]]")[:3]).replace("seeds = 3", "seeds = 7")
    + "\n[run]\nseed_block = 2\n"
)
SAMPLED_BLOCKED = (
    "[[rule]]".join(SAMPLED.split("[[rule]]")[:3]).replace("seeds = 2", "seeds = 7")
    + "\n[run]"
    + SAMPLED.split("[run]")[1]
    + "seed_block = 2\n"
)

COMPARED = ("metrics.csv", "headtohead.csv", "bounds.csv", "summary.csv")


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def _same_results(a: Path, b: Path) -> None:
    for name in COMPARED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    merged = json.loads((b / "manifest.json").read_text())
    unsharded = json.loads((a / "manifest.json").read_text())
    for key in ("fingerprint", "seeds", "recorded_iterations", "target_duality_gap_max", "warnings", "complete"):
        assert merged[key] == unsharded[key], key


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("specs")
    return {
        "exact": _write(directory, "exact7.toml", EXACT.format(tau=0.1)),
        "sampled": _write(directory, "sampled7.toml", SAMPLED),
        "foreign": _write(directory, "foreign.toml", EXACT.format(tau=0.15)),
        "exact_blocked": _write(directory, "exact_blocked.toml", EXACT_BLOCKED),
        "sampled_blocked": _write(directory, "sampled_blocked.toml", SAMPLED_BLOCKED),
    }


@pytest.fixture(scope="module")
def unsharded(specs, tmp_path_factory):
    """The unsharded run of each spec (figures only for the exact one)."""
    return _unsharded_runs(specs, tmp_path_factory.mktemp("unsharded"), "", {"sampled": ("--no-plots",)})


def _unsharded_runs(specs: dict, directory: Path, suffix: str, options: dict) -> dict:
    """``{kind: out}``: the unsharded run of ``specs[kind + suffix]`` for the exact and sampled spec."""
    outs = {kind: directory / kind for kind in ("exact", "sampled")}
    for kind, out in outs.items():
        assert _cli("run", specs[kind + suffix], "--out", out, "--quiet", *options.get(kind, ())) == 0
    return outs


@pytest.fixture(scope="module")
def exact_shards(specs, tmp_path_factory):
    """Shards 0/2 and 1/2 of the exact spec."""
    directory = tmp_path_factory.mktemp("exact_shards")
    outs = [directory / f"shard-{i}-of-2" for i in range(2)]
    for index, out in enumerate(outs):
        assert _cli("run", specs["exact"], "--out", out, "--shard", f"{index}/2", "--quiet") == 0
    return outs


def test_plan_is_deterministic_balanced_and_covers_every_table_once(specs):
    spec = load_spec(specs["exact"])
    assert deal([1, 1, 1, 1, 1], 2) == [[0, 2, 4], [1, 3]]
    assert deal([3, 1, 1, 1], 2) == [[0], [1, 2, 3]]  # the 3-point table alone balances the other three
    for count in SPLITS:
        plan = shard_plan(spec, count)
        labels = [rule.label for shard in plan for rule in shard]
        assert sorted(labels) == sorted(rule.label for rule in spec.rules)
        assert all(plan_shard for plan_shard in plan)  # N ≤ tables: no shard is empty
        costs = [sum(len(rule.grid_labels()) for rule in shard) for shard in plan]
        assert max(costs) - min(costs) <= 2  # the largest table has 2 grid points
    assert shard_plan(spec, 3) == shard_plan(load_spec(specs["exact"]), 3)
    assert parse_shard("2/7") == (2, 7)


@pytest.mark.parametrize("kind", ["exact", "sampled"])
def test_every_split_merges_to_the_unsharded_run(kind, specs, unsharded, tmp_path):
    for count in SPLITS:
        shards = [tmp_path / f"{count}" / f"shard-{i}" for i in range(count)]
        for index, out in enumerate(shards):
            assert _cli("run", specs[kind], "--out", out, "--shard", f"{index}/{count}", "--quiet") == 0
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["shard"]["index"] == index and manifest["shard"]["count"] == count
            assert manifest["fingerprint"] == json.loads((unsharded[kind] / "manifest.json").read_text())["fingerprint"]
            assert not (out / "bounds.csv").exists() and not (out / "headtohead.csv").exists()
        merged = tmp_path / f"merged-{count}"
        plots = () if kind == "exact" and count == 3 else ("--no-plots",)
        assert _cli("merge", *reversed(shards), "--out", merged, "--quiet", *plots) == 0  # any order
        _same_results(unsharded[kind], merged)
        if plots == ():
            figures = sorted(p.name for p in unsharded[kind].iterdir() if p.suffix == ".png")
            assert figures and figures == sorted(p.name for p in merged.iterdir() if p.suffix == ".png")
        # the merged directory is a run directory: --resume reuses every part
        assert sorted(p.name for p in (merged / "parts").glob("*.csv")) == sorted(
            p.name for p in (unsharded[kind] / "parts").glob("*.csv")
        )


def _error(capsys, *argv) -> str:
    assert _cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_duplicated_foreign_and_unfinished_shards_are_clear_errors(specs, exact_shards, tmp_path, capsys):
    first, second = exact_shards
    out = tmp_path / "merged"
    err = _error(capsys, "merge", first, "--out", out)
    assert "missing shard(s): 1/2" in err and "rule tables" in err
    err = _error(capsys, "merge", first, first, second, "--out", out)
    assert "shard 0/2 is given twice" in err
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    err = _error(capsys, "merge", first, copy, second, "--out", out)
    assert "given twice" in err and str(copy) in err

    foreign = tmp_path / "foreign"
    assert _cli("run", specs["foreign"], "--out", foreign, "--shard", "1/2", "--quiet") == 0
    err = _error(capsys, "merge", first, foreign, "--out", out)
    assert "foreign" in err and str(foreign) in err and "another spec" in err

    other_count = tmp_path / "other-count"
    assert _cli("run", specs["exact"], "--out", other_count, "--shard", "2/3", "--quiet") == 0
    err = _error(capsys, "merge", first, other_count, "--out", out)
    assert "2/3" in err and "0/2" in err

    unfinished = tmp_path / "unfinished"
    shutil.copytree(second, unfinished)
    (unfinished / "manifest.json").rename(unfinished / "parts" / "manifest.json")
    err = _error(capsys, "merge", first, unfinished, "--out", out)
    assert "unfinished shard" in err and "--resume" in err

    broken = tmp_path / "broken"
    shutil.copytree(second, broken)
    part = next((broken / "parts").glob("*.csv"))
    part.write_text(part.read_text() + "x\n")
    err = _error(capsys, "merge", first, broken, "--out", out)
    assert str(part) in err and "checksum" in err

    whole = tmp_path / "whole"
    shutil.copytree(first, whole)
    manifest = json.loads((whole / "manifest.json").read_text())
    del manifest["shard"]
    (whole / "manifest.json").write_text(json.dumps(manifest))
    err = _error(capsys, "merge", whole, second, "--out", out)
    assert "is not a shard" in err

    err = _error(capsys, "merge", first, second, "--out", first)
    assert "one of the shard directories" in err
    assert "0 ≤ I < N" in _error(capsys, "run", specs["exact"], "--out", tmp_path / "x", "--shard", "2/2")
    err = _error(capsys, "run", specs["exact"], "--out", tmp_path / "x", "--shard", "0/8")
    assert "7 [[rule]] table(s)" in err and "at most 7 shards" in err and "seed_block" in err
    assert "expected I/N" in _error(capsys, "run", specs["exact"], "--out", tmp_path / "x", "--shard", "one")
    assert not out.exists()


def test_a_killed_shard_resumes_and_merges_to_the_unsharded_run(specs, unsharded, exact_shards, tmp_path, capsys):
    out = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "sim.cli", "run", str(specs["exact"]), "--out", str(out), "--shard", "0/2"]
    process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list((out / "parts").glob("*.csv")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # no handler runs: the lock and any temporary file are left as they are
    process.wait()
    # with compiled programs in the cache a tiny table takes milliseconds, so the kill may land after more
    # parts (or the end): take the state back to "killed after the first part" in that case
    parts = sorted((out / "parts").glob("*.csv"))
    assert parts
    labels = [rule.label for rule in shard_plan(load_spec(specs["exact"]), 2)[0]]
    for label in labels[1:]:
        (out / "parts" / f"{label}.csv").unlink(missing_ok=True)
    if (out / "manifest.json").exists():
        (out / "manifest.json").unlink()
    assert _cli("run", specs["exact"], "--out", out, "--shard", "0/2", "--resume") == 0
    printed = "".join(capsys.readouterr())
    first = next(label for label in labels if (out / "parts" / f"{label}.csv") in parts)
    assert f"{first}: already computed" in printed
    assert sum(f"{label}: already computed" in printed for label in labels) < len(labels)  # the rest recomputed
    merged = tmp_path / "merged"
    assert _cli("merge", out, exact_shards[1], "--out", merged, "--quiet", "--no-plots") == 0
    _same_results(unsharded["exact"], merged)


def test_local_executor_launch_runs_shards_as_processes_then_merges(specs, unsharded, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the jobs run python -m sim.cli from this checkout
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # submitit configures logging handlers on import (logging.config.dictConfig), which closes pytest's capture
    monkeypatch.setenv("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    out = tmp_path / "launched"
    assert _cli("launch", specs["exact"], "--shards", "2", "--executor", "local", "--out", out, "--time", "10") == 0
    printed = capsys.readouterr().out
    assert "submitted 2 shard job(s)" in printed and f"merged 2 shard(s) into {out}" in printed
    for index in range(2):
        manifest = json.loads((out / "shards" / f"shard-{index}-of-2" / "manifest.json").read_text())
        assert manifest["shard"]["index"] == index
    _same_results(unsharded["exact"], out)
    err = _error(capsys, "launch", specs["exact"], "--shards", "9", "--executor", "local", "--out", out)
    assert "at most 7 shards" in err


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--executor", "local", "--time", "-5"], "--time: expected a time limit of at least 1 minute, got -5."),
        (["--executor", "local", "--cpus-per-task", "0"], "--cpus-per-task: expected a number ≥ 1, got 0."),
        (["--executor", "local", "--mem-gb", "0"], "--mem-gb: expected a memory size > 0, got 0.0."),
        (["--executor", "local", "--gpus-per-task", "-1"], "--gpus-per-task: expected a number ≥ 0, got -1."),
        (["--executor", "slurm"], "--executor slurm: this machine has no SLURM (sbatch and srun not found)"),
    ],
)
def test_launch_refuses_job_options_no_scheduler_takes_before_submitting(
    specs, tmp_path, capsys, monkeypatch, options, said
):
    """A negative --time gave a job killed at once with empty logs; SLURM on a machine without it, a traceback."""
    monkeypatch.setattr(launch.shutil, "which", lambda command: None)  # no SLURM here (and none in CI)
    out = tmp_path / "launched"
    err = _error(capsys, "launch", specs["exact"], "--shards", "2", "--out", out, *options)
    assert said in err and "Traceback" not in err
    assert not out.exists()  # nothing submitted, no log folder


def test_rerunning_a_shards_manifest_says_it_computes_the_whole_spec(specs, exact_shards, tmp_path, capsys):
    """`prefsim run DIR/manifest.json` reruns the spec it holds: of a shard's manifest, every table, not the shard's."""
    manifest = exact_shards[1] / "manifest.json"
    assert _cli("run", manifest, "--out", tmp_path / "whole", "--no-plots") == 0
    printed = capsys.readouterr()
    said = f"warning: {manifest} is the manifest of shard 1/2: the rerun computes the whole spec; add --shard 1/2"
    assert said in printed.out + printed.err
    assert _cli("run", manifest, "--out", tmp_path / "shard", "--shard", "1/2", "--no-plots") == 0
    assert "is the manifest of shard" not in "".join(capsys.readouterr())


def test_a_failed_shard_job_says_why_not_where_submitit_keeps_its_logs(tmp_path):
    """submitit's FailedJobError ends with its log paths: the error gave '(  - …/N_0_log.out)' as the reason,
    while the shard's own `error:` line, in the job's stderr log, said what was wrong."""
    err = tmp_path / "7_0_log.err"
    err.write_text(
        "submitit INFO - Starting\nerror: --out 'o/shard-1-of-3': the result directory exists and is not a "
        "directory; choose a directory path (a new one is created).\nsubmitit ERROR - Submitted job "
        "triggered an exception\n"
    )
    command = "`python -m sim.cli run s.toml --out o/shard-1-of-3 --shard 1/3` exited with status 2"
    frame = "-" * 22
    message = (
        f"Job (task=0) failed during processing with trace:\n{frame}\nTraceback (most recent call last):\n"
        f'  File "sim/launch.py", line 177, in run_commands\nRuntimeError: {command}\n\n{frame}\n'
        f"You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n  - {err}\n"
        f"  - {tmp_path / '7_0_log.out'}"
    )

    class FailedJob:
        job_id = "7"
        paths = type("Paths", (), {"stdout": tmp_path / "7_0_log.out", "stderr": err})

        def result(self):
            raise RuntimeError(message)

    with pytest.raises(PrefsimError) as failure:
        launch.wait_for(FailedJob(), "shard job")
    said = str(failure.value)
    assert said.startswith(f"shard job 7 failed: {command}; error: --out 'o/shard-1-of-3': the result directory")
    assert "(a new one is created). Its output is in " in said and "  - " not in said
    timeout = f"Job 8 (task: 0) with path {tmp_path}/8_0_result.pkl\nhas not produced any output (state: TIMEOUT)"
    assert launch.job_failure(timeout, "") == "has not produced any output (state: TIMEOUT)"


def test_launch_plan_runs_several_shards_per_task_with_jax_memory_shared():
    plan = launch_plan(Path("s.toml"), Path("out"), 5, 2, llm=False)
    assert [[command[command.index("--shard") + 1] for command in task] for task in plan["shards"]] == [
        ["0/5", "1/5"],
        ["2/5", "3/5"],
        ["4/5"],
    ]
    assert all("--resume" in command for task in plan["shards"] for command in task)
    assert plan["merge"][:2] == ["sim.cli", "merge"] and plan["merge"][-3:] == ["--out", "out", "--quiet"]
    assert memory_environment(0.45) == {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.450",
    }


# ---------------------------------------------------------------------------------------------- seed blocks


@pytest.fixture(scope="module")
def blocked(specs, tmp_path_factory):
    """The unsharded runs of the blocked specs ([run] seed_block = 2)."""
    no_plots = {"exact": ("--no-plots",), "sampled": ("--no-plots",)}
    return _unsharded_runs(specs, tmp_path_factory.mktemp("blocked"), "_blocked", no_plots)


def test_seed_blocks_are_units_of_the_plan(specs):
    spec = load_spec(specs["exact_blocked"])
    assert seed_blocks(spec) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    parts = work_parts(spec)
    assert [work.name for work in parts[:5]] == [
        "inpo@block-0",
        "inpo@block-1",
        "inpo@block-2",
        "inpo@block-3",
        "mmd@block-0",
    ]
    assert [work.cost for work in parts] == [4, 4, 4, 2, 2, 2, 2, 1]  # grid points × seeds in the block
    assert part_count(spec) == 8  # prefsim launch's default --shards: one shard per part
    assert part_count(load_spec(specs["exact"])) == len(load_spec(specs["exact"]).rules)
    for count in SPLITS:
        plan = shard_parts(spec, count)
        assert sorted(work.name for shard in plan for work in shard) == sorted(work.name for work in parts)
        assert all(plan)
        costs = [sum(work.cost for work in shard) for shard in plan]
        assert max(costs) - min(costs) <= 4  # the largest part costs 4
    assert shard_parts(spec, 7) == shard_parts(load_spec(specs["exact_blocked"]), 7)
    assert [rule.label for rule in shard_plan(spec, 2)[0]] == ["inpo", "mmd"]  # both tables have blocks in shard 0
    unblocked = load_spec(specs["exact"])
    assert seed_blocks(unblocked) == [(0, 3)] and [work.name for work in work_parts(unblocked)][0] == "inpo"
    # the memory estimate counts one block's trajectories, and the table of every seed; the games of every
    # seed, plus (K = 4 ≤ 12, a P per seed) the seed-last copy of one call's P: 2 seeds instead of 7
    whole = parse_spec({**spec.raw, "run": {}})
    estimate, full = limits.memory_estimate(spec), limits.memory_estimate(whole)
    assert estimate["policies"] * 7 == full["policies"] * 2
    assert full["preference"] - estimate["preference"] == (7 - 2) * 4 * 4 * 8


@pytest.mark.parametrize("kind", ["exact", "sampled"])
def test_blocked_run_merges_byte_identical_from_every_split_and_matches_the_unblocked_run(
    kind, specs, blocked, tmp_path
):
    spec = load_spec(specs[f"{kind}_blocked"])
    for count in SPLITS:
        shards = [tmp_path / f"{count}" / f"shard-{i}" for i in range(count)]
        for index, out in enumerate(shards):
            assert _cli("run", specs[f"{kind}_blocked"], "--out", out, "--shard", f"{index}/{count}", "--quiet") == 0
            held = json.loads((out / "manifest.json").read_text())["shard"]["parts"]
            assert held == [work.name for work in shard_parts(spec, count)[index]]
            assert sorted(p.stem for p in (out / "parts").glob("*.csv")) == sorted(held)
        merged = tmp_path / f"merged-{count}"
        assert _cli("merge", *reversed(shards), "--out", merged, "--quiet", "--no-plots") == 0
        _same_results(blocked[kind], merged)
    names = sorted(p.stem for p in (blocked[kind] / "parts").glob("*.csv"))
    assert names == sorted(work.name for work in work_parts(spec))  # one part per (table, block)
    # blocks change only the last bits: the unblocked run agrees to 1e-12, row for row
    table = pd.read_csv(blocked[kind] / "metrics.csv")
    unblocked = run(parse_spec({**spec.raw, "run": {k: v for k, v in spec.raw["run"].items() if k != "seed_block"}}))
    assert table[["rule", "seed", "iteration"]].equals(unblocked[["rule", "seed", "iteration"]])
    metrics = [c for c in table.columns if c not in ("rule", "seed", "iteration")]
    assert np.allclose(
        table[metrics].to_numpy(float), unblocked[metrics].to_numpy(float), rtol=0, atol=1e-12, equal_nan=True
    )
    headtohead = pd.read_csv(blocked[kind] / "headtohead.csv")  # from every seed's π_T, all blocks together
    expected = pd.DataFrame(unblocked.attrs["headtohead"])
    assert list(headtohead.columns) == list(expected.columns) and len(headtohead) == len(expected)
    numbers = [c for c in expected.columns if pd.api.types.is_float_dtype(expected[c])]
    assert numbers and np.allclose(headtohead[numbers], expected[numbers], rtol=0, atol=1e-12, equal_nan=True)


def test_a_killed_blocked_run_resumes_from_its_finished_blocks(specs, blocked, tmp_path, capsys):
    out = tmp_path / "killed"
    shutil.copytree(blocked["exact"], out)
    # the state of a run killed while computing inpo@block-2: earlier blocks written, nothing after
    for name in ("inpo@block-2", "inpo@block-3", "mmd@block-0", "mmd@block-1", "mmd@block-2", "mmd@block-3"):
        (out / "parts" / f"{name}.csv").unlink()
    for name in ("metrics.csv", "manifest.json", "bounds.csv", "headtohead.csv", "summary.csv"):
        (out / name).unlink(missing_ok=True)
    assert _cli("run", specs["exact_blocked"], "--out", out, "--resume", "--no-plots") == 0
    printed = "".join(capsys.readouterr())
    assert "inpo@block-0: already computed" in printed and "inpo@block-1: already computed" in printed
    assert "inpo@block-2: already computed" not in printed and "mmd@block-3: already computed" not in printed
    for name in COMPARED:
        assert (out / name).read_bytes() == (blocked["exact"] / name).read_bytes(), name
    spec = load_spec(specs["exact_blocked"])
    frame, _ = read_part(out / "parts" / "inpo@block-3.csv", part_fingerprint(spec, spec.rules[0]))
    assert sorted(set(frame["seed"])) == [6] and len(frame) == 2 * 1 * 4  # grid 2 × 1 seed × R = 4


@pytest.mark.parametrize("kind", ["exact", "sampled"])
def test_the_padded_last_block_gives_its_seed_the_bits_of_a_full_block(kind, specs):
    spec = load_spec(specs[f"{kind}_blocked"])
    inputs = prepare_run(spec)
    last = work_parts(spec)[3]  # inpo@block-3: seed 6 alone, run padded with a copy of itself to 2 seeds
    assert (last.name, last.start, last.stop) == ("inpo@block-3", 6, 7)
    padded = run_part(last, spec, inputs)
    assert set(padded["seed"]) == {6} and len(padded) == 2 * 1 * len(inputs.record)
    # the same seed beside another seed (2) in a call of the same size: the same bits, so padding is invisible
    beside_spec, beside = dataclasses.replace(spec, seeds=(6, 2)), block_inputs(inputs, np.array([6, 2]))
    if kind == "exact":
        rule, args = (
            spec.rules[0],
            (beside.games, beside.game_axes, beside.targets, beside.record, beside.unregularised),
        )
        frame = run_rule(rule, beside_spec, *args)
    else:
        frame = run_sampled_rule(spec.rules[0], beside_spec, beside.sampled, beside.record)
    alone = frame[frame["seed"] == 6].reset_index(drop=True)
    assert alone.equals(padded)
    for label, policies in padded.attrs[FINAL_POLICY].items():
        assert policies.shape[0] == 1 and np.array_equal(policies, frame.attrs[FINAL_POLICY][label][:1])


@pytest.mark.parametrize("value", [0, -3, 2.5, "4", True])
def test_a_bad_seed_block_is_a_clear_error(value, specs, tmp_path, capsys):
    spec = load_spec(specs["exact_blocked"])
    with pytest.raises(PrefsimError, match=r"run\.seed_block: expected an integer ≥ 1"):
        parse_spec({**spec.raw, "run": {"seed_block": value}})
    text = specs["exact_blocked"].read_text().replace("seed_block = 2", f"seed_block = {json.dumps(value)}")
    path = _write(tmp_path, "bad.toml", text)
    err = _error(capsys, "run", path, "--out", tmp_path / "out")
    assert "run.seed_block" in err


def test_seed_block_of_every_seed_is_one_block_with_the_unblocked_numbers(specs, capsys, tmp_path):
    spec = load_spec(specs["exact_blocked"])
    unblocked = run(parse_spec({**spec.raw, "run": {}}))
    for size in (7, 100):  # at least the seed count: one block, the same call as no blocking
        one = parse_spec({**spec.raw, "run": {"seed_block": size}})
        assert seed_blocks(one) == [(0, 7)]
        assert run(one).equals(unblocked)
    err = _error(capsys, "run", specs["exact_blocked"], "--out", tmp_path / "x", "--shard", "0/9")
    assert "2 [[rule]] table(s) × 4 seed block(s)" in err and "at most 8 shards" in err and "seed_block" in err
