"""Sharded runs (``prefsim run --shard I/N``), their merge (``prefsim merge``) and the launcher
(``prefsim launch``, submitit's local executor): the merged results are the unsharded run's, byte for byte.

Specs are tiny (4 arms, a few seeds and iterations) and the shards of one spec run in this process,
so every rule table compiles once for the whole file.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.cli import main
from sim.launch import launch_plan, memory_environment
from sim.shards import deal, parse_shard, shard_plan
from sim.spec import load_spec

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
    }


@pytest.fixture(scope="module")
def unsharded(specs, tmp_path_factory):
    """The unsharded run of each spec (figures only for the exact one)."""
    directory = tmp_path_factory.mktemp("unsharded")
    outs = {}
    for kind in ("exact", "sampled"):
        outs[kind] = directory / kind
        plots = () if kind == "exact" else ("--no-plots",)
        assert _cli("run", specs[kind], "--out", outs[kind], "--quiet", *plots) == 0
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
    assert "7 [[rule]] table(s)" in err and "at most 7 shards" in err
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
