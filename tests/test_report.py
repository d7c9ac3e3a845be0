"""``prefsim compare`` (paired differences between two runs) and ``prefsim report`` (one HTML page),
the page opened in a real headless Chromium with a screenshot written next to it."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pandas as pd
import pytest

import sim
from sim.compare import compare_runs, describe_compared_run
from sim.report import build_report, png_css_width

SPEC = textwrap.dedent(
    """
    name = "pair"
    iterations = 6
    seeds = 4
    [game]
    kind = "random"
    arms = 4
    tau = 0.3
    [[rule]]
    name = "inpo"
    eta = 4.0
    """
)
SAMPLED = SPEC + textwrap.dedent(
    """
    [run]
    mode = "sampled"
    pairs_per_iteration = 200
    inner_steps = 30
    learning_rate = 0.1
    """
)


def prefsim(*arguments, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "exact.toml").write_text(SPEC)
    (root / "sampled.toml").write_text(SAMPLED)
    for name in ("exact", "sampled"):
        result = prefsim("run", root / f"{name}.toml", "--out", root / name, "--quiet")
        assert result.returncode == 0, result.stderr
    return root


def test_compare_sampled_against_exact_gives_paired_differences(runs):
    result = prefsim("compare", runs / "exact", runs / "sampled", "--metrics", "kl_to_nash,exploitability", "--at", "3")
    assert result.returncode == 0, result.stderr
    assert "B − A" in result.stdout and "P(B better)" in result.stdout
    comparison = pd.read_csv(runs / "sampled" / "compare.csv")
    assert set(comparison["metric"]) == {"kl_to_nash", "exploitability"} and set(comparison["iteration"]) == {3, 6}
    exact = pd.read_csv(runs / "exact" / "metrics.csv")
    sampled = pd.read_csv(runs / "sampled" / "metrics.csv")
    for row in comparison.itertuples():
        a = exact[exact["iteration"] == row.iteration].set_index("seed")[row.metric]
        b = sampled[sampled["iteration"] == row.iteration].set_index("seed")[row.metric]
        difference = (b - a).to_numpy()
        assert row.difference == pytest.approx(difference.mean(), rel=1e-12, abs=1e-15)
        assert row.difference_lower <= row.difference <= row.difference_upper
        assert row.probability_b_better == pytest.approx(np.mean(difference < 0) + 0.5 * np.mean(difference == 0))
        assert row.seeds == 4
    assert (comparison["difference"] != 0).all(), "sampled and exact runs differ on every compared cell"


def test_compare_means_are_over_the_paired_seeds_so_b_minus_a_is_the_difference():
    """A seed where one run has no value (NaN) is left out of both means, as out of the difference: the
    table's B − A column is mean B − mean A (A's mean took that seed in, 0.25 away from the difference)."""

    def table(values):
        return pd.DataFrame({"rule": "inpo", "seed": range(len(values)), "iteration": 5, "kl_to_nash": values})

    manifest = {"parsed_spec": {"game": {"kind": "random"}}}
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    b = [1.5, 1.0, 3.25, 4.0, np.nan]
    row = compare_runs(table(a), manifest, table(b), manifest, metrics=["kl_to_nash"]).iloc[0]
    paired_a, paired_b = np.array(a[:4]), np.array(b[:4])
    assert row.seeds == 4
    assert row.mean_a == pytest.approx(paired_a.mean(), abs=1e-15)
    assert row.mean_b == pytest.approx(paired_b.mean(), abs=1e-15)
    assert row.difference == pytest.approx(np.mean(paired_b - paired_a), abs=1e-15)
    assert row.mean_b - row.mean_a == pytest.approx(row.difference, abs=1e-15)
    assert row.probability_b_better == pytest.approx((1 + 0 + 0.5) / 4)


def test_compare_identical_runs_is_exactly_zero_and_refuses_other_games(runs, tmp_path):
    shutil.copytree(runs / "exact", tmp_path / "again")
    result = prefsim("compare", runs / "exact", tmp_path / "again", "--out", tmp_path / "c.csv")
    assert result.returncode == 0, result.stderr
    comparison = pd.read_csv(tmp_path / "c.csv")
    assert not comparison.empty and (comparison["difference"] == 0).all()
    assert (comparison["probability_b_better"] == 0.5).all()
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("arms = 4", "arms = 5"))
    assert prefsim("run", other, "--out", tmp_path / "other", "--quiet", "--no-plots").returncode == 0
    refused = prefsim("compare", runs / "exact", tmp_path / "other")
    assert refused.returncode == 2 and "different games" in refused.stderr and "Traceback" not in refused.stderr
    missing = prefsim("compare", runs / "exact", tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a finished `prefsim run` directory" in missing.stderr
    never = prefsim("compare", runs / "exact", runs / "sampled", "--at", "99999")
    assert never.returncode == 2 and "--at 99999: not an iteration both runs recorded" in never.stderr


def test_commands_that_read_results_load_no_jax(runs, tmp_path):
    """``prefsim plot``, ``compare`` and ``report`` read results with NumPy, pandas and Matplotlib: the
    command line sets JAX up only for the commands that compute with it (sim.cli._with_jax)."""
    commands = [
        ["plot", runs / "exact", "--quiet"],
        ["compare", runs / "exact", runs / "sampled", "--out", tmp_path / "compare.csv"],
        ["report", runs / "exact", "--out", tmp_path / "report.html"],
    ]
    code = textwrap.dedent(
        f"""
        import contextlib, io, sys
        import sim.cli
        for command in {[[str(part) for part in command] for command in commands]!r}:
            with contextlib.redirect_stdout(io.StringIO()):
                assert sim.cli.main(command, cpu_devices="auto") == 0, command
        print("jax" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert (tmp_path / "compare.csv").is_file() and (tmp_path / "report.html").is_file()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_is_one_self_contained_page_that_renders_in_chromium(runs, tmp_path):
    assert prefsim("compare", runs / "exact", runs / "sampled").returncode == 0
    result = prefsim("report", runs / "sampled", "--out", tmp_path / "report.html")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    figures = sorted(p.stem for p in (runs / "sampled").glob("*.png"))
    assert figures and all(f'id="figure-{stem}"' in page for stem in figures)
    for heading in ("Warnings", "Summary", "Head to head", "Figures", "Manifest"):
        assert f"<h2>{heading}" in page
    assert "distance_to_exact" in page and "queries" in page  # sampled mode's columns are in the summary
    assert "no theory bound drawn for inpo" in page  # the manifest's warning, shown on the page
    # which runs A and B are (compare.json beside compare.csv), with their commits
    record = json.loads((runs / "sampled" / "compare.json").read_text())
    assert record["a"]["directory"] == str((runs / "exact").resolve()) and record["b"]["name"] == "pair"
    assert f"<li>A = {html.escape(describe_compared_run(record['a']))}</li>" in page
    assert str((runs / "exact").resolve()) in page and "<li>B = " in page
    # each PNG shown at its printed size (150 dpi → 96 CSS px per inch), so its text is not shrunk
    png = (runs / "sampled" / f"{figures[0]}.png").read_bytes()
    width = struct.unpack(">I", png[16:20])[0] * 96 / 150
    assert abs(png_css_width(png) - width) < 0.2 and f'style="width: {width:.0f}px"' in page
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page) and "<link" not in page

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs the Debian package `chromium`)")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    url = (tmp_path / "report.html").as_uri()
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*common, "--window-size=1280,2400", f"--screenshot={screenshot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    dom = subprocess.run(
        [*common, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-loaded-images="(\d+)"', dom.stdout)
    assert loaded is not None, "the page's load handler did not run"
    assert int(loaded.group(1)) == len(figures), "every embedded figure decodes in the browser"
    shrunk = re.search(r'data-shrunk-images="(\d+)"', dom.stdout)
    assert shrunk is not None and shrunk.group(1) == "0", "every figure is shown at its printed size, not shrunk"


def test_report_gives_the_head_to_head_win_rates_with_their_intervals(tmp_path):
    """headtohead.png shows means only: the page lists each pair's W(A, B) with the 95% interval of
    headtohead.csv, once per unordered pair (W(B, A) = 1 − W(A, B))."""
    spec = {
        "iterations": 5,
        "seeds": 3,
        "game": {"kind": "random", "arms": 3, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": [1.0, 2.0]}, {"name": "nash_md"}],
    }
    sim.run(spec, out=tmp_path)
    duels = pd.read_csv(tmp_path / "headtohead.csv")
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert "<h3>Final policies head to head (headtohead.csv)" in page
    listed = set()
    for row in duels.itertuples():
        cell = f"<td>{row.win_rate:.4f} [{row.ci_lower:.4f}, {row.ci_upper:.4f}]</td>"
        if f"<td>{html.escape(row.rule_a)}</td><td>{html.escape(row.rule_b)}</td>{cell}" in page:
            listed.add((row.rule_a, row.rule_b))
    assert listed == {("inpo[eta=1]", "inpo[eta=2]"), ("inpo[eta=1]", "nash_md"), ("inpo[eta=2]", "nash_md")}


def test_report_says_what_the_run_time_covers_for_a_resumed_run_a_sweep_and_a_merge(tmp_path):
    """The page gave the manifest's seconds bare: for a resumed run they are only the parts this process
    computed, for a merge only the merge's (the shards' own times are in their manifests)."""
    two_rules = SPEC + '[[rule]]\nname = "sppo"\neta = 1.0\n'
    out = tmp_path / "run"
    sim.run(tomllib.loads(two_rules), out=out, progress=None)
    assert "wall time" in _provenance(out)
    (out / "parts" / "sppo.csv").unlink()  # one part to compute again, the other loaded
    sim.run(tomllib.loads(two_rules), out=out, resume=True, progress=None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["loaded_parts"] == ["inpo"]
    covered = f"{manifest['seconds']:g} s for the parts this run computed (1 loaded from an earlier run by --resume)"
    assert covered in _provenance(out)
    # a [game] sweep: every point's loaded parts
    sweep = SPEC.replace("tau = 0.3", "tau = [0.3, 0.5]")
    swept = tmp_path / "sweep"
    sim.run(tomllib.loads(sweep), out=swept, progress=None)
    sim.run(tomllib.loads(sweep), out=swept, resume=True, progress=None)
    loaded = json.loads((swept / "manifest.json").read_text())["loaded_parts"]
    assert loaded == ["inpo[game.tau=0.3]", "inpo[game.tau=0.5]"]
    # a merge of two shards
    spec_file = tmp_path / "two.toml"
    spec_file.write_text(two_rules)
    for index in (0, 1):
        result = prefsim("run", spec_file, "--shard", f"{index}/2", "--out", tmp_path / f"s{index}", "--quiet")
        assert result.returncode == 0, result.stderr
    result = prefsim("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "to merge 2 shard(s) (each shard's run time is in its own manifest)" in _provenance(tmp_path / "merged")


def _provenance(directory):
    page = build_report(directory).read_text(encoding="utf-8")
    return html.unescape(re.search(r'<p class="muted">(.*?)</p>', page).group(1))
