"""The result directory as a user reads it: summary.csv and the printed table, reruns from a manifest,
provenance in the manifest, file permissions, ``--version``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from sim.summary import format_summary, format_value, summary_frame

SPEC = textwrap.dedent(
    """
    name = "small"
    iterations = 400
    seeds = 3
    record_every = 1
    [game]
    kind = "random"
    arms = 4
    tau = 0.3
    [[rule]]
    name = "inpo"
    eta = 4.0
    [[rule]]
    name = "sppo"
    eta = 0.5
    """
)


def prefsim(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    (root / "small.toml").write_text(SPEC)
    previous = os.umask(0o022)
    try:
        result = prefsim(
            "run",
            root / "small.toml",
            "--out",
            root / "out",
            "--no-plots",
            "--at",
            "3",
            "--metrics",
            "kl_to_nash,exploitability",
        )
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    return root, result.stdout


def test_summary_csv_holds_final_and_chosen_iterations_with_cis(finished):
    root, _ = finished
    summary = pd.read_csv(root / "out" / "summary.csv")
    assert set(summary["iteration"]) == {3, 400}
    table = pd.read_csv(root / "out" / "metrics.csv")
    final = table[(table["iteration"] == 400) & (table["rule"] == "sppo")]
    row = summary[(summary["iteration"] == 400) & (summary["rule"] == "sppo") & (summary["metric"] == "exploitability")]
    assert row["mean"].item() == pytest.approx(final["exploitability"].mean(), rel=1e-12)
    assert (row["ci_lower"] <= row["mean"]).all() and (row["mean"] <= row["ci_upper"]).all()
    assert row["seeds"].item() == 3
    # every metric with data is in the file (not only the printed ones); absent metrics are not
    assert {"duality_gap_mixture", "max_log_ratio"} <= set(summary["metric"])
    assert "regret" not in set(summary["metric"]) and "suboptimality" not in set(summary["metric"])


def test_printed_table_shows_the_chosen_metrics_and_rounding_as_approximately_zero(finished):
    root, printed = finished
    assert "iteration 3:" in printed and "iteration 400:" in printed
    table_part = printed[printed.index("iteration 3:") :]
    assert "kl_to_nash" in table_part and "exploitability" in table_part and "duality_gap_mixture" not in table_part
    # INPO at η = 4 > η_crit reaches rounding level by t = 400: printed as ≈ 0, not as 3e-17
    inpo_line = next(line for line in table_part.splitlines()[::-1] if line.startswith("inpo"))
    assert "≈ 0" in inpo_line and "e-17" not in inpo_line and "e-16" not in inpo_line
    assert "rounding floor" in printed


def test_format_helpers():
    assert format_value(3e-17, 2.2e-14) == "≈ 0" and format_value(-1e-15, 2.2e-14) == "≈ 0"
    assert format_value(0.000123456, 2.2e-14) == "0.000123" and format_value(np.nan, 1e-14) == "–"
    table = pd.DataFrame(
        {"rule": ["a"] * 4, "seed": [0, 1, 0, 1], "iteration": [0, 0, 5, 5], "kl_to_nash": [1.0, 1.0, 1e-18, 2e-18]}
    )
    summary = summary_frame(table, precision="float64")
    assert bool(summary["at_floor"].item())
    text = format_summary(summary, ["kl_to_nash"])
    assert "≈ 0" in text and "float64 rounding floor" in text


def test_files_follow_the_users_umask(finished):
    root, _ = finished
    for name in ("metrics.csv", "manifest.json", "bounds.csv", "summary.csv"):
        mode = stat.S_IMODE((root / "out" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_manifest_records_git_state_and_reruns_to_the_same_numbers(finished):
    root, _ = finished
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    assert "git_dirty" in manifest and manifest["git_dirty"] in (True, False, None)
    if manifest["git_commit"] is not None:
        assert isinstance(manifest["git_dirty"], bool)
    result = prefsim("run", root / "out" / "manifest.json", "--no-plots", "--quiet", cwd=root)
    assert result.returncode == 0, result.stderr
    rerun = root / "results" / "small-rerun"  # the documented default for a manifest: results/<name>-rerun
    first = pd.read_csv(root / "out" / "metrics.csv")
    second = pd.read_csv(rerun / "metrics.csv")
    pd.testing.assert_frame_equal(first, second, check_exact=False, rtol=1e-12, atol=0.0)


def test_a_rerun_of_a_manifest_written_by_other_code_says_so(finished, tmp_path):
    """The same code reruns silently; a manifest whose source digest or computing packages differ from this
    code's gets a warning naming them (the numbers may differ), and the rerun goes on."""
    root, _ = finished
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    same = prefsim("run", root / "out" / "manifest.json", "--out", tmp_path / "same", "--no-plots", cwd=root)
    assert same.returncode == 0, same.stderr
    assert "other code" not in same.stdout + same.stderr
    manifest["source_digest"] = "0" * 64
    manifest["versions"]["jax"] = "0.0.1"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    other = prefsim("run", tmp_path / "manifest.json", "--out", tmp_path / "other", "--no-plots", cwd=root)
    assert other.returncode == 0, other.stderr
    said = other.stdout + other.stderr
    assert "was written by other code (jax 0.0.1 instead of " + jax.__version__ in said
    assert "; other source files (git commit " in said and "its numbers may differ" in said
    assert (tmp_path / "other" / "metrics.csv").is_file()


def test_a_rerun_reads_its_manifest_once_so_its_warning_is_about_the_spec_it_reruns(tmp_path, monkeypatch, capsys):
    """``prefsim run manifest.json`` read the manifest twice: once for the spec it reruns, once for the record of
    the code that computed it.  A manifest replaced between the two reads (here: a run of this code rewriting it)
    made the rerun of a spec recorded by other code go without its warning; the file is read once now."""
    from sim.cli import main

    (tmp_path / "s.toml").write_text(
        SPEC.replace("iterations = 400", "iterations = 3").replace("seeds = 3", "seeds = 1")
    )
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "first"), "--no-plots", "--quiet"]) == 0
    current = (tmp_path / "first" / "manifest.json").read_text()
    other = json.loads(current)
    other["versions"]["jax"] = "0.0.1"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(other))
    reads, read_text = [], Path.read_text

    def read_then_replace(self, *args, **kwargs):
        text = read_text(self, *args, **kwargs)
        if self == path:
            reads.append(text)
            path.write_text(current)  # replaced after the first read, as another process could
        return text

    monkeypatch.setattr(Path, "read_text", read_then_replace)
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "rerun"), "--no-plots"]) == 0
    said = "".join(capsys.readouterr())
    assert len(reads) == 1
    assert "was written by other code (jax 0.0.1 instead of " + jax.__version__ in said


def test_bad_manifest_and_bad_options_are_one_paragraph_errors(tmp_path):
    (tmp_path / "manifest.json").write_text('{"spec": {"iterations": 3}}')
    result = prefsim("run", tmp_path / "manifest.json", "--out", tmp_path / "o")
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
    (tmp_path / "broken.json").write_text("{not json")
    result = prefsim("run", tmp_path / "broken.json")
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    (tmp_path / "s.toml").write_text(SPEC)
    result = prefsim("run", tmp_path / "s.toml", "--metrics", "gap", "--out", tmp_path / "x")
    assert result.returncode == 2 and "unknown metric(s) gap" in result.stderr
    assert not (tmp_path / "x" / "metrics.csv").exists(), "a bad option fails before computing"
    result = prefsim("run", tmp_path / "s.toml", "--at", "3,401", "--out", tmp_path / "y")
    assert result.returncode == 2 and "--at: iteration(s) 401 will not be recorded" in result.stderr
    assert not (tmp_path / "y" / "metrics.csv").exists()


def test_version_and_default_out_documented():
    result = prefsim("--version")
    assert result.returncode == 0 and result.stdout.startswith("prefsim ")
    help_text = " ".join(prefsim("run", "--help").stdout.split())
    assert "the spec file's name without .toml" in help_text and "manifest.json" in help_text


def test_values_far_below_epsilon_that_are_not_rounding_are_printed():
    iterations = np.arange(0, 101)
    rows = [
        pd.DataFrame({"rule": "a", "seed": s, "iteration": iterations, "tv_to_optimum": 0.5**iterations})
        for s in range(2)
    ]
    summary = summary_frame(pd.concat(rows), precision="float64")
    assert not summary["at_floor"].any()
    assert "7.89e-31" in format_summary(summary, ["tv_to_optimum"])
