"""End-to-end checks of the ``prefsim`` command line, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from sim.metrics import METRIC_COLUMNS

SMALL_SPEC = textwrap.dedent(
    """
    iterations = 30
    seeds = 3
    [game]
    kind = "random"
    arms = 4
    tau = 0.2
    [[rule]]
    name = "inpo"
    eta = [0.5, 5.0]
    [[rule]]
    name = "online_ipo"
    """
)


def prefsim(*arguments, cwd=None):
    """Run the CLI in a fresh interpreter, as the console script does."""
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    spec = directory / "small.toml"
    spec.write_text(SMALL_SPEC)
    out = directory / "out"
    result = prefsim("run", spec, "--out", out)
    return spec, out, result


def test_run_writes_table_manifest_and_figures(finished_run):
    spec, out, result = finished_run
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns[:3]) == ["rule", "seed", "iteration"]
    assert set(METRIC_COLUMNS) <= set(table.columns)
    assert set(table["rule"]) == {"inpo[eta=0.5]", "inpo[eta=5]", "online_ipo"}
    # one row per label x seed x recorded iteration, iteration 0 included
    assert len(table) == 3 * 3 * table["iteration"].nunique()
    assert table["iteration"].min() == 0 and table["iteration"].max() == 30
    # suboptimality and regret do not apply to a general preference game: empty cells
    assert table["suboptimality"].isna().all() and table["regret"].isna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["seeds"] == [0, 1, 2]
    assert manifest["spec"]["game"]["arms"] == 4
    assert manifest["versions"]["jax"]
    assert list(out.glob("*.png")), "no figure written"
    # the short summary table is printed
    assert "online_ipo" in result.stdout


def test_plot_redraws(finished_run):
    _, out, _ = finished_run
    for figure in out.glob("*.png"):
        figure.unlink()
    result = prefsim("plot", out)
    assert result.returncode == 0, result.stderr
    assert list(out.glob("*.png"))


def _option_help(command: str, option: str) -> str:
    """The help text of one option of ``prefsim COMMAND --help``, on one line."""
    lines = prefsim(command, "--help").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {option} "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  -")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_no_plots_help_names_every_file_a_run_writes_but_figures(finished_run, tmp_path):
    """``--no-plots`` says which files a run still writes: those of a run without it, less the figures and
    their list (headtohead.csv was missing from the help)."""
    spec, out, _ = finished_run
    named = set(re.findall(r"[a-z_]+\.(?:csv|json)", _option_help("run", "--no-plots")))
    written = {path.name for path in out.iterdir() if path.is_file() and path.suffix in (".csv", ".json")}
    assert named == written - {"figures.json"}
    bare = tmp_path / "bare"
    assert prefsim("run", spec, "--out", bare, "--no-plots", "--quiet").returncode == 0
    assert {path.name for path in bare.iterdir() if path.suffix in (".csv", ".json")} == named | {"figures.json"}


def test_shard_default_out_is_under_the_spec_files_name_as_its_help_says(tmp_path):
    """A shard without --out goes to results/<the spec file's name without .toml>/shard-I-of-N, not under the
    spec's ``name`` (the help said "<spec name>")."""
    (tmp_path / "file_stem.toml").write_text('name = "other_name"\n' + SMALL_SPEC)
    assert "results/<the spec file's name without .toml>/shard-I-of-N" in _option_help("run", "--shard")
    result = prefsim("run", "file_stem.toml", "--shard", "0/2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "results" / "file_stem" / "shard-0-of-2" / "manifest.json").is_file()
    assert not (tmp_path / "results" / "other_name").exists()


def test_resume_reuses_finished_parts(finished_run):
    spec, out, _ = finished_run
    result = prefsim("run", spec, "--out", out, "--resume", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already computed") == 2


def test_rules_lists_every_rule_with_parameters():
    result = prefsim("rules")
    assert result.returncode == 0
    for name in ("inpo", "mmd", "nash_md", "sppo", "dno", "online_ipo", "extragradient", "optimistic", "dpo", "apo"):
        assert f"\n{name}:" in "\n" + result.stdout
    assert "INVERSE learning rate" in result.stdout
    assert "Anchored PO" in result.stdout


@pytest.mark.parametrize(
    "spec_text, expected",
    [
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\ntau=0.1\n[[rule]]\nname='inpo'\neta=0.05\n", "eta > tau"),
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\n[[rule]]\nname='nope'\n", "unknown rule 'nope'"),
        (
            "iterations = 10\n[game]\nkind='matrix'\npreference=[[0.5,0.9],[0.3,0.5]]\n[[rule]]\nname='mmd'\n",
            "P + Pᵀ = 1",
        ),
        ("iterations = 10\n[game]\nkind='matrix'\npreference=[[0.5,1.5],[-0.5,0.5]]\n[[rule]]\nname='mmd'\n", "[0, 1]"),
        (
            "iterations = 10\n[game]\nkind='cyclic'\narms=3\nreference=[0.5,0.5,0.0]\n[[rule]]\nname='mmd'\n",
            "game.reference",
        ),
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\nreference=[0.5,0.3,0.1]\n[[rule]]\nname='mmd'\n", "sum to 1"),
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\n[[rule]]\nname='mmd'\nstep=3\n", "unknown parameter 'step'"),
        ("iterations = 'ten'\n[game]\nkind='cyclic'\narms=3\n[[rule]]\nname='mmd'\n", "iterations"),
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\n[[rule]]\nname='dpo'\n", "Bradley–Terry"),
        ("iterations = 10\n[game]\nkind='cyclic'\narms=3\n[[rule]]\nname='mmd'\n[run]\nmode='psychic'\n", "run.mode"),
        ("iterations = 10\n[game\nkind='cyclic'\n", "not valid TOML"),
    ],
)
def test_bad_input_is_one_clear_error_without_traceback(tmp_path, spec_text, expected):
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text)
    result = prefsim("run", spec, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_spec_file_is_a_clear_error(tmp_path):
    result = prefsim("run", tmp_path / "absent.toml")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_plot_of_an_empty_directory_is_a_clear_error(tmp_path):
    result = prefsim("plot", tmp_path)
    assert result.returncode == 2
    assert "nothing to plot" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no lock file left in a folder that holds no results


def test_plot_of_a_path_that_is_no_directory_is_a_clear_error(tmp_path):
    """`prefsim plot` of a mistyped directory or of a file said "--out '…': cannot create the lock file", naming
    an option `prefsim plot` does not have."""
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL_SPEC)
    for path in (tmp_path / "absent", spec):
        result = prefsim("plot", path)
        assert result.returncode == 2, result.stderr
        assert f"{str(path)!r} is not a directory" in result.stderr
        assert "--out" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        # argparse's own errors: its usage line, then one error line
        (["frobnicate"], "prefsim: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["run", "{spec}", "--frobnicate"], "prefsim: error: unrecognized arguments: --frobnicate"),
        (["run", "{spec}", "--shard"], "prefsim run: error: argument --shard: expected one argument"),
        # prefsim's: one line
        (["run", "{directory}", "--out", "{out}"], "error: spec file '{directory}' does not exist or is not a regular"),
        (["run", "{directory}/absent.toml"], "error: spec file '{directory}/absent.toml' does not exist"),
        (["run", "{spec}", "--out", "{file}"], "error: --out '{file}': the result directory exists and is not a dir"),
        (["run", "{spec}", "--out", "{file}/sub"], "error: --out '{file}/sub': its parent '{file}' exists and is not"),
        (["run", "{spec}", "--out", "{directory}", "--at", "x"], "error: --at: expected iteration numbers, got 'x'."),
        (["report", "{directory}"], "error: '{directory}' is not a finished `prefsim run` directory"),
        (["compare", "{directory}", "{file}"], "error: '{directory}' is not a finished `prefsim run` directory"),
        (["merge", "{directory}", "--out", "{out}"], "error: '{directory}' holds no finished shard"),
    ],
)
def test_bad_command_lines_end_with_status_2_and_one_error_line(tmp_path, arguments, expected):
    """The command line's surface, as a user mistypes it: subcommands, options, files for directories and back."""
    paths = {"spec": tmp_path / "small.toml", "directory": tmp_path / "folder", "file": tmp_path / "file.txt"}
    paths["spec"].write_text(SMALL_SPEC)
    paths["directory"].mkdir()
    paths["file"].write_text("not a directory\n")
    paths["out"] = tmp_path / "out"
    result = prefsim(*(argument.format(**paths) for argument in arguments), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(expected.format(**paths)), result.stderr
    assert len(lines) == 1 or lines[0].startswith("usage: prefsim"), result.stderr
    assert not paths["out"].exists() and paths["file"].read_text() == "not a directory\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a directory its user cannot write to")
def test_an_unwritable_out_directory_is_one_error_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    spec = tmp_path / "small.toml"
    spec.write_text(SMALL_SPEC)
    try:
        result = prefsim("run", spec, "--out", locked / "out")
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: --out '{locked / 'out'}': ") and result.stderr.count("\n") == 1


def test_default_example_spec_parses():
    from sim.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "default.toml")
    assert spec.iterations == 1000 and len(spec.seeds) == 20


def test_default_example_runs_the_nash_seeking_rules_its_header_lists():
    """The default experiment is a chosen set: its header's "# Rules:" line names exactly the rules it runs,
    each a registered Nash-seeking rule (one that needs no rewards, as dpo does, and wraps no base, as apo
    does); a rule registered later need not join it."""
    from sim.rules import RULES
    from sim.spec import load_spec

    path = Path(__file__).resolve().parents[1] / "examples" / "default.toml"
    header = next(line for line in path.read_text().splitlines() if line.startswith("# Rules:"))
    claimed = {name.strip() for name in header.removeprefix("# Rules:").split(",")}
    spec = load_spec(path)
    assert {rule.name for rule in spec.rules} == claimed
    assert claimed <= set(RULES)
    assert not any(RULES[name].needs_rewards or RULES[name].wrapper for name in claimed)


def test_game_keys_of_another_kind_are_an_error_not_ignored():
    from bandits.errors import PrefsimError
    from sim.spec import parse_spec

    spec = {"iterations": 5, "game": {"kind": "cyclic", "arms": 3, "rewards": [1, 2, 3]}, "rule": [{"name": "mmd"}]}
    with pytest.raises(PrefsimError, match=r'game.rewards = \[1, 2, 3\] is used only with kind = "bradley_terry" or'):
        parse_spec(spec)


def test_manifest_of_a_python_built_spec_holds_the_spec(tmp_path):
    import dataclasses

    import sim

    spec = sim.parse_spec(
        {"iterations": 4, "game": {"kind": "cyclic", "arms": 3, "tau": 0.1}, "rule": [{"name": "mmd"}]}
    )
    sim.run(dataclasses.replace(spec, raw={}), out=tmp_path)  # as built in Python: no raw TOML
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parsed_spec"]["game"]["kind"] == "cyclic"
    assert manifest["spec"]["iterations"] == 4
    assert manifest["git_commit"] is None or len(manifest["git_commit"]) == 40


#: Runs the CLI in an interpreter where the ``llm`` extra's modules cannot be imported (the README's base
#: install: the bridge's plugin entry point is registered, torch and its stack are not there).
WITHOUT_LLM_EXTRA = textwrap.dedent(
    """
    import importlib.abc, sys
    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {"torch", "transformers", "accelerate", "safetensors", "peft", "tokenizers"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Missing())
    from sim.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("spec", ["examples/llm_demo.toml", "/nonexistent/spec.toml"])
def test_prefsim_llm_without_torch_prints_the_install_hint(tmp_path, spec):
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_LLM_EXTRA, "llm", spec, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: `prefsim llm` needs the LLM extra"), result.stderr
    assert 'pip install -e ".[llm]"' in result.stderr and "constraints-cpu.txt" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_llm_bridge_registers_the_llm_command():
    pytest.importorskip("torch")
    result = prefsim("--help")
    line = next((l for l in result.stdout.splitlines() if l.strip().startswith("llm")), "")
    assert line and "unavailable" not in line, result.stdout
    missing = prefsim("llm", "/nonexistent/spec.toml", "--out", "/tmp/prefsim-llm-out")
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
