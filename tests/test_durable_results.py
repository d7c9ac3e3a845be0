"""Results survive interruptions, concurrent runs, full disks and other code: each test runs a tiny spec
(K = 3, 5 iterations, 2 seeds) and injects the failure where the durability review found results lost,
mixed or misattributed (a signal, a full disk, a second run, a source change)."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

import sim
import sim.experiment as experiment
import sim.plotting
import sim.summary
from bandits.errors import PrefsimError
from sim import cli, results_io
from sim.cli import main
from sim.provenance import code_differences, default_file_mode
from sim.report import build_report
from sim.summary import write_summary

SPEC = """
name = "tiny"
iterations = 5
seeds = 2
[game]
kind = "random"
arms = 3
tau = 0.2
[[rule]]
name = "inpo"
eta = 1.0
[[rule]]
name = "mmd"
"""

SPEC_DICT = {
    "iterations": 5,
    "seeds": 2,
    "game": {"kind": "random", "arms": 3, "tau": 0.2},
    "rule": [{"name": "inpo", "eta": 1.0}],
}


def _cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def fresh_code_identity():
    """The code identity is computed once per process: cleared around a test that pretends other code."""
    clear = getattr(getattr(experiment, "code_identity", None), "cache_clear", lambda: None)
    clear()
    yield clear
    clear()


@pytest.fixture
def no_figure_workers(monkeypatch):
    """Figures drawn in this process: no figure processes started (they would only slow a tiny test)."""
    monkeypatch.setattr(cli, "start_figure_workers", lambda: [])


def _count_rule_runs(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = experiment.run_rule

    def counting(rule, *arguments, **options):
        calls.append(rule.label)
        return real(rule, *arguments, **options)

    monkeypatch.setattr(experiment, "run_rule", counting)
    return calls


# ----------------------------------------------------------------------------------------------
# 1. the fingerprint covers uncommitted changes and the computing packages


def test_resume_and_merge_do_not_reuse_parts_of_uncommitted_code(
    spec_file, tmp_path, monkeypatch, capsys, fresh_code_identity
):
    out, shards = tmp_path / "run", [tmp_path / "s0", tmp_path / "s1"]
    # the code as it was while it had an uncommitted change (a tree whose sources hash differently)
    with monkeypatch.context() as edited:
        edited.setattr(experiment, "git_dirty", lambda: True)
        edited.setattr(experiment, "source_digest", lambda: "0" * 64, raising=False)
        assert _cli("run", spec_file, "--out", out, "--no-plots", "--quiet") == 0
        for index, shard in enumerate(shards):
            assert _cli("run", spec_file, "--out", shard, "--shard", f"{index}/2", "--quiet") == 0
        fresh_code_identity()
    assert json.loads((out / "manifest.json").read_text())["git_dirty"] is True
    capsys.readouterr()

    calls = _count_rule_runs(monkeypatch)  # the code now: every part is recomputed, none reused
    assert _cli("run", spec_file, "--out", out, "--no-plots", "--resume") == 0
    printed = capsys.readouterr().out
    assert sorted(calls) == ["inpo", "mmd"] and "already computed" not in printed
    assert "recomputing" in printed and "other code" in printed

    # a shard of the edited code with one of the code now: refused, saying what differs
    clean = tmp_path / "s1-clean"
    assert _cli("run", spec_file, "--out", clean, "--shard", "1/2", "--quiet") == 0
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert _cli("merge", shards[0], clean, "--out", merged, "--no-plots", "--quiet") == 2
    err = capsys.readouterr().err
    assert "foreign" in err and "other source files" in err and "with uncommitted changes" in err
    # every shard from the edited code, merged by the code now: refused too
    assert _cli("merge", *shards, "--out", merged, "--no-plots", "--quiet") == 2
    err = capsys.readouterr().err
    assert "this prefsim differs" in err and "other source files" in err
    assert not merged.exists()


def test_the_fingerprint_names_the_code_that_computes(fresh_code_identity, monkeypatch):
    spec = sim.parse_spec(SPEC_DICT)
    code = experiment.code_identity()
    assert {"prefsim", "git_commit", "git_dirty", "source_digest", "jax", "jaxlib", "numpy"} <= set(code)
    before = experiment.spec_fingerprint(spec)
    for name, value in [("source_digest", "edited"), ("jaxlib", "0.0.0"), ("numpy", "0.0.0")]:
        monkeypatch.setattr(experiment, "code_identity", lambda name=name, value=value: {**code, name: value})
        assert experiment.spec_fingerprint(spec) != before, name
    # an edit that computes nothing (a README, a spec file) or a commit that leaves the source alone: the
    # dirty flag and the commit change, the results do not, and --resume reuses them
    for name, value in [("git_dirty", not code["git_dirty"]), ("git_commit", "0" * 40)]:
        monkeypatch.setattr(experiment, "code_identity", lambda name=name, value=value: {**code, name: value})
        assert experiment.spec_fingerprint(spec) == before, name
    # an installed copy (no git checkout): the same fingerprint for the same source
    monkeypatch.setattr(experiment, "code_identity", lambda: {**code, "git_commit": None, "git_dirty": None})
    assert experiment.spec_fingerprint(spec) == before


# ----------------------------------------------------------------------------------------------
# 2. a [game] sweep group saves each table as soon as its vmapped call ends


def test_a_sweep_group_writes_each_tables_parts_when_its_call_ends(tmp_path, monkeypatch):
    spec = {
        "iterations": 5,
        "seeds": 2,
        "game": {"kind": "random", "arms": 3, "tau": [0.1, 0.2]},
        "rule": [{"name": "inpo", "eta": 1.0}, {"name": "mmd"}],
    }
    real = experiment.run_rule_over_points
    calls: list[str] = []

    def stopped_after_the_first_table(rules, *arguments, **options):
        calls.append(rules[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # SIGTERM / Ctrl-C while the group's second table runs
        return real(rules, *arguments, **options)

    monkeypatch.setattr(experiment, "run_rule_over_points", stopped_after_the_first_table)
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt):
        sim.run(spec, out=out)
    parts = sorted(path.relative_to(out).as_posix() for path in out.glob("points/*/parts/*.csv"))
    assert len(parts) == 2 and all("inpo" in part for part in parts), parts
    assert len(list(out.glob("points/*/final_policies/inpo*.npz"))) == 2
    assert not list(out.glob("points/*/parts/*.progress.npz"))

    calls.clear()
    resumed = sim.run(spec, out=out, resume=True)
    assert calls == ["mmd"]  # INPO's table was kept
    monkeypatch.undo()
    pd.testing.assert_frame_equal(resumed, sim.run(spec), check_dtype=False, check_exact=False, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# 3. the lock is held until summary.csv and the figures are written


def _try_lock(out: Path, refused: list[str]) -> None:
    try:
        with results_io.output_lock(out):
            refused.append("not refused")
    except PrefsimError as exc:
        refused.append(str(exc))


def test_run_and_merge_hold_the_lock_while_summary_and_figures_are_written(spec_file, tmp_path, monkeypatch):
    refused: list[str] = []
    real = sim.summary.write_summary

    def write_summary_while_another_run_starts(directory, summary):
        _try_lock(Path(directory), refused)  # a second `prefsim run --out` at this moment
        return real(directory, summary)

    monkeypatch.setattr(sim.summary, "write_summary", write_summary_while_another_run_starts)
    assert _cli("run", spec_file, "--out", tmp_path / "run", "--no-plots", "--quiet") == 0
    for index in range(2):
        assert _cli("run", spec_file, "--out", tmp_path / f"s{index}", "--shard", f"{index}/2", "--quiet") == 0
    assert _cli("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged", "--no-plots", "--quiet") == 0
    assert len(refused) == 2 and all("another prefsim run" in message for message in refused), refused

    # the Python API still locks on its own, and releases the lock when it returns
    with results_io.output_lock(tmp_path / "run"):
        with pytest.raises(PrefsimError, match="another prefsim run"):
            sim.run(SPEC_DICT, out=tmp_path / "run")
    sim.run(SPEC_DICT, out=tmp_path / "run")
    refused.clear()
    _try_lock(tmp_path / "run", refused)
    assert refused == ["not refused"]


# ----------------------------------------------------------------------------------------------
# 4. figures of an earlier run are removed, and the report shows this run's only


def test_an_earlier_runs_figures_are_removed_and_not_reported(tmp_path, no_figure_workers):
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(SPEC + '[plot]\nmetrics = ["kl_to_nash"]\n')
    second.write_text(SPEC + '[plot]\nmetrics = ["duality_gap"]\n')
    out = tmp_path / "run"
    assert _cli("run", first, "--out", out, "--quiet") == 0
    assert (out / "kl_to_nash.png").is_file()
    (out / "notes.png").write_bytes(b"the user's own file")  # never named by figures.json: never removed
    assert _cli("run", second, "--out", out, "--quiet") == 0
    assert not (out / "kl_to_nash.png").exists() and (out / "duality_gap.png").is_file()
    listed = json.loads((out / "figures.json").read_text())
    assert (listed["files"], listed["complete"], list(listed["drawn_from"])) == (
        ["duality_gap.png"],
        True,
        ["duality_gap.png"],
    )
    page = build_report(out).read_text()
    assert "<figcaption>duality_gap</figcaption>" in page
    assert "kl_to_nash</figcaption>" not in page and "notes</figcaption>" not in page

    assert _cli("run", second, "--out", out, "--no-plots", "--quiet") == 0  # draws none: the old ones go
    assert not (out / "duality_gap.png").exists() and (out / "notes.png").is_file()
    assert "<figcaption>" not in build_report(out).read_text()


def test_results_replaced_without_a_drawing_disown_the_earlier_figures_and_summary(tmp_path, no_figure_workers):
    """The CLI drew spec A's figures and summary; the Python API then wrote spec B's results there (it draws
    nothing): the report must not show A's figures and summary as B's."""
    first = tmp_path / "first.toml"
    first.write_text(SPEC + '[plot]\nmetrics = ["kl_to_nash"]\n')
    assert _cli("run", first, "--out", tmp_path / "run", "--quiet") == 0
    assert (tmp_path / "run" / "summary.csv").is_file()
    sim.run({**SPEC_DICT, "rule": [{"name": "mmd", "eta": 0.5}]}, out=tmp_path / "run")
    assert not (tmp_path / "run" / "summary.csv").exists()
    listed = json.loads((tmp_path / "run" / "figures.json").read_text())
    assert (listed["files"], listed["complete"]) == (["kl_to_nash.png"], False)  # what each was drawn from kept
    page = build_report(tmp_path / "run").read_text()
    assert "The figures were not all drawn from these results" in page
    assert ">mmd<" in page and ">inpo<" not in page  # the summary is B's, computed from its metrics.csv
    assert _cli("plot", tmp_path / "run", "--quiet") == 0  # a drawing of B lists its own figures
    assert json.loads((tmp_path / "run" / "figures.json").read_text())["complete"] is True


def test_plot_is_refused_while_a_run_holds_the_directory(tmp_path, capsys):
    sim.run(SPEC_DICT, out=tmp_path / "run")
    with results_io.output_lock(tmp_path / "run"):
        assert _cli("plot", tmp_path / "run", "--quiet") == 2
    assert "another prefsim run (process" in capsys.readouterr().err
    assert results_io.read_figure_list(tmp_path / "run") is None  # nothing drawn


def test_a_directory_without_figure_list_reports_every_figure(tmp_path):
    sim.run(SPEC_DICT, out=tmp_path)  # the Python API draws nothing and writes no list
    (tmp_path / "regret.png").write_bytes(b"\x89PNG drawn by an older prefsim")
    assert results_io.read_figure_list(tmp_path) is None
    assert "<figcaption>regret</figcaption>" in build_report(tmp_path).read_text()


# ----------------------------------------------------------------------------------------------
# 5. summary.csv whole or not at all


def _disk_full(*arguments, **options):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_summary_csv_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    summary = pd.DataFrame({"rule": ["inpo"] * 50, "metric": ["kl_to_nash"] * 50, "mean": range(50)})
    (tmp_path / "summary.csv").write_text("the previous summary\n")

    def fills_the_disk(self, data):  # a direct write: the first bytes land, then the disk is full
        with open(self, "wb") as handle:
            handle.write(data[:100])
        _disk_full()

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    monkeypatch.setattr(results_io.os, "fsync", _disk_full)  # a write through a temporary file
    with pytest.raises((PrefsimError, OSError)) as failure:
        write_summary(tmp_path, summary)
    assert "summary.csv" in str(failure.value) and "No space left" in str(failure.value)
    assert (tmp_path / "summary.csv").read_text() == "the previous summary\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary.csv"]  # no temporary file left


def test_report_html_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    sim.run(SPEC_DICT, out=tmp_path)
    previous = build_report(tmp_path).read_bytes()

    def fills_the_disk(self, data, *arguments, **options):  # a direct write: the first bytes land, then ENOSPC
        with open(self, "w", encoding="utf-8") as handle:
            handle.write(data[:100])
        _disk_full()

    monkeypatch.setattr(Path, "write_text", fills_the_disk)
    monkeypatch.setattr(results_io.os, "fsync", _disk_full)  # a write through a temporary file
    with pytest.raises(PrefsimError, match=r"report\.html .*No space left"):
        build_report(tmp_path)
    assert (tmp_path / "report.html").read_bytes() == previous
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_an_unwritable_path_is_named_with_what_to_fix(tmp_path, monkeypatch):
    """Not a full disk: a read-only directory, or a directory where a file should be.  The error names the
    file (not its temporary), says what to fix and how to rerun the command that failed."""
    sim.run(SPEC_DICT, out=tmp_path / "run")
    with pytest.raises(PrefsimError) as failure:
        build_report(tmp_path / "run", out=tmp_path)
    message = str(failure.value)
    assert "(Is a directory: " in message and "file name in an existing, writable directory" in message
    assert "Free disk space" not in message and "run `prefsim report` again" in message

    def read_only(*arguments, prefix="", **options):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{prefix}x1y2z3.tmp")

    monkeypatch.setattr(results_io.tempfile, "mkstemp", read_only)
    with pytest.raises(PrefsimError) as failure:
        build_report(tmp_path / "run")
    assert "(Read-only file system: report.html)" in str(failure.value) and ".tmp" not in str(failure.value)


def test_a_run_that_fills_the_disk_leaves_the_earlier_runs_summary(tmp_path, monkeypatch):
    """The earlier run's summary.csv goes only with its metrics.csv: a rerun whose results cannot be written
    (a full disk) leaves the earlier metrics.csv, manifest and summary.csv all as they were."""
    sim.run(SPEC_DICT, out=tmp_path)
    write_summary(tmp_path, pd.DataFrame({"rule": ["inpo"], "metric": ["kl_to_nash"], "mean": [0.5]}))
    before = {name: (tmp_path / name).read_bytes() for name in ("metrics.csv", "manifest.json", "summary.csv")}
    real = results_io.tempfile.mkstemp

    def full_at_metrics_csv(*arguments, prefix="", **options):  # the parts fit, the results do not
        if prefix.startswith(".metrics.csv."):
            _disk_full()
        return real(*arguments, prefix=prefix, **options)

    monkeypatch.setattr(results_io.tempfile, "mkstemp", full_at_metrics_csv)
    with pytest.raises(PrefsimError, match="No space left"):
        sim.run({**SPEC_DICT, "iterations": 7}, out=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


# ----------------------------------------------------------------------------------------------
# 6. no signal between the renames of files that belong together


def test_a_signal_between_two_renames_is_acted_on_after_the_last(tmp_path, monkeypatch):
    metrics, manifest = tmp_path / "metrics.csv", tmp_path / "manifest.json"
    metrics.write_text("old metrics")
    manifest.write_text("old manifest")
    real = os.replace

    def replace_then_interrupt(source, target, *arguments, **options):
        real(source, target, *arguments, **options)
        if Path(target).name == "metrics.csv":
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the first rename

    monkeypatch.setattr(results_io.os, "replace", replace_then_interrupt)
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            results_io.write_files_atomic({metrics: b"new metrics", manifest: b"new manifest"})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert (metrics.read_text(), manifest.read_text()) == ("new metrics", "new manifest")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["manifest.json", "metrics.csv"]


def test_a_directory_among_the_targets_leaves_every_file_as_it_was(tmp_path):
    """A directory where the second file should go: its rename would fail after the first file had been
    replaced (the error said every file was left as it was); it is refused before any file is written."""
    metrics, summary = tmp_path / "metrics.csv", tmp_path / "summary.csv"
    metrics.write_text("old metrics")
    summary.mkdir()
    with pytest.raises(PrefsimError, match=r"\(Is a directory: summary\.csv\); the previous version"):
        results_io.write_files_atomic({metrics: b"new metrics", summary: b"new summary"})
    assert metrics.read_text() == "old metrics"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.csv", "summary.csv"]


def test_a_file_that_a_function_writes_is_replaced_as_bytes_are(tmp_path):
    """replace_files_atomic takes a function that writes the file at the path it is given (the bridge's
    safetensors checkpoints, which had a twin of this code): the same temporary file, mode and rename; a
    failure in the function removes the temporary file and leaves the target as it was."""
    target, other = tmp_path / "policy.safetensors", tmp_path / "state.json"
    target.write_bytes(b"old")
    results_io.replace_files_atomic({target: lambda name: Path(name).write_bytes(b"new"), other: b"{}"})
    assert (target.read_bytes(), other.read_bytes()) == (b"new", b"{}")
    assert target.stat().st_mode & 0o777 == default_file_mode()

    def fails(name):
        Path(name).write_bytes(b"half")
        raise ValueError("the writer's own error")

    with pytest.raises(ValueError, match="the writer's own error"):
        results_io.replace_files_atomic({other: b"newer", target: fails})
    assert (target.read_bytes(), other.read_bytes()) == (b"new", b"{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["policy.safetensors", "state.json"]


# ----------------------------------------------------------------------------------------------
# 7. a shard run into another shard's directory


def test_a_shard_run_into_another_shards_directory_is_refused_and_deletes_nothing(spec_file, tmp_path, capsys):
    out = tmp_path / "shard"
    assert _cli("run", spec_file, "--out", out, "--shard", "0/2", "--quiet") == 0
    held = sorted(path.name for path in (out / "parts").glob("*.csv"))
    capsys.readouterr()
    for other in ("1/2", "0/1"):
        assert _cli("run", spec_file, "--out", out, "--shard", other, "--quiet") == 2
        err = capsys.readouterr().err
        assert "holds shard 0/2" in err and f"this is shard {other}" in err and "own --out" in err
        assert sorted(path.name for path in (out / "parts").glob("*.csv")) == held
    # the unsharded run may use the directory: it keeps and reuses the shard's part
    assert _cli("run", spec_file, "--out", out, "--no-plots", "--resume") == 0
    assert f"{held[0][:-4]}: already computed" in capsys.readouterr().out
    assert _cli("run", spec_file, "--out", out, "--shard", "1/2", "--quiet") == 2  # nor over an unsharded run
    assert "unsharded run" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# 8. a figure that cannot be written is named


def test_a_figure_that_cannot_be_written_is_named(spec_file, tmp_path, monkeypatch, capsys, no_figure_workers):
    monkeypatch.setattr(sim.plotting, "write_png", _disk_full)
    spec_file.write_text(SPEC + '[plot]\nmetrics = ["kl_to_nash"]\n')
    out = tmp_path / "run"
    assert _cli("run", spec_file, "--out", out, "--quiet") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out / "kl_to_nash.png") in err
    assert not list(out.glob("*.tmp.*"))


def test_code_differences_words_each_difference_and_leaves_unknown_fields_uncompared():
    """sim.provenance.code_differences, which simulator merges and reruns and the bridge's resume and merge share:
    versions both records hold that differ (only the named packages, when named), then other source files naming
    both commits; a field one record lacks is unknown, not a difference."""
    ran = {
        "versions": {"prefsim": "0.1", "jax": "0.0.1", "scipy": "1", "torch": "2"},
        "source_digest": "a",
        "git_commit": "1" * 8,
        "git_dirty": False,
    }
    now = {"versions": {"prefsim": "0.1", "jax": "0.9", "scipy": "2"}, "source_digest": "b", "git_commit": "2" * 8}
    assert code_differences(ran, now) == [
        "jax 0.0.1 instead of 0.9",
        "scipy 1 instead of 2",
        "other source files (git commit 11111111 (clean) instead of git commit 22222222)",
    ]
    assert code_differences(ran, now, ("prefsim", "jax"))[0] == "jax 0.0.1 instead of 0.9"
    assert len(code_differences(ran, now, ("prefsim", "jax"))) == 2
    assert code_differences({**ran, "versions": "damaged"}, {**now, "source_digest": None}) == []
    assert code_differences({**ran, "git_dirty": True}, {**now, "git_commit": None})[-1] == (
        "other source files (git commit 11111111 with uncommitted changes instead of an unknown git commit)"
    )
