"""Adversarial input and faults, class by class, through ``prefsim run`` (issue 17).

Every bad input ends with exit status 2 and a one-paragraph ``error:`` (no traceback) before anything is
written; faults (a tampered part, a second run into the same directory, SIGTERM, a full disk) leave the
result directory consistent.  Most cases call :func:`sim.cli.main` in this process (the same code path as
the console script, without the interpreter start-up); the signal and file-size cases need a real process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
import sim.experiment as experiment
from bandits.errors import PrefsimError
from bandits.games import build_game
from sim import limits, results_io, spec_checks, stop_request
from sim.cli import main
from sim.game import Game, game_from_instance
from sim.spec import parse_spec
from sim.trajectory import default_record_iterations

ROOT = Path(__file__).resolve().parents[1]
SPEC = textwrap.dedent(
    """
    iterations = 20
    seeds = 2
    [game]
    kind = "random"
    arms = 4
    tau = 0.2
    [[rule]]
    name = "inpo"
    eta = [1.0, 2.0]
    [[rule]]
    name = "online_ipo"
    """
)


def cli(capsys, *arguments):
    """``prefsim ARGUMENTS`` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clear_error(status, err, *fragments):
    assert status == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err  # one paragraph
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- spec files


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"\x00\x01\x02\xff\xfe binary", "not a text file"),
        (SPEC.encode("utf-16"), "UTF-16"),
        (SPEC.encode("utf-32"), "UTF-32"),
        (SPEC.replace('"random"', '"randöm"').encode("latin-1"), "not UTF-8 text (byte 0xf6"),
    ],
    ids=["binary", "utf16", "utf32", "latin1"],
)
def test_a_spec_file_that_is_not_utf8_text_is_a_clear_error(tmp_path, capsys, content, fragment):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(content)
    status, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out")
    assert_clear_error(status, err, fragment, "spec.toml")
    assert not (tmp_path / "out").exists()


def test_a_spec_file_larger_than_a_spec_can_be_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(spec_checks, "MAX_SPEC_BYTES", 100)
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", SPEC), "--out", tmp_path / "out")
    assert_clear_error(status, err, "a spec is a small TOML text file")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(SPEC.encode("utf-8-sig"))
    status, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "--no-plots", "--quiet")
    assert status == 0, err


# ---------------------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ('kind = "random"', 'kind = ["random", 3]', ["sweep point game.kind=3", "game.kind", "expected a string"]),
        ('kind = "random"', "kind = 3", ["game.kind", "expected a string"]),
        ("tau = 0.2", "tau = 1000000000000000000000000000000", ["game.tau", "64 bits"]),
        ("seeds = 2", "seeds = 1e1", ["seeds"]),
    ],
    ids=["kind-list", "kind-int", "huge-integer", "seeds-float"],
)
def test_values_of_the_wrong_type_are_clear_errors(tmp_path, capsys, old, new, fragments):
    spec = write(tmp_path / "spec.toml", SPEC.replace(old, new, 1))
    status, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out")
    assert_clear_error(status, err, *fragments)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("arms = 4", "arms = 10000000", ["memory:", "GiB", "available", "preference"]),
        ("seeds = 2", "seeds = 10000000000", ["seeds:", "1000000"]),
        ("iterations = 20", "iterations = 4294967306", ["iterations:", "2147483647", "32-bit"]),
        ("iterations = 20", "iterations = 1000000000000", ["iterations:", "days"]),
        ("iterations = 20", "iterations = 2147483648", ["iterations:", "2147483647"]),
        ("iterations = 20", "iterations = 2147483647\nrecord_every = 1", ["memory:", "recordings"]),
    ],
    ids=["arms", "seeds", "iterations-wrap", "iterations-hang", "iterations-2^31", "recordings"],
)
def test_sizes_that_cannot_run_are_refused_before_allocating(tmp_path, capsys, old, new, fragments):
    spec = write(tmp_path / "spec.toml", SPEC.replace(old, new, 1))
    status, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out")
    assert_clear_error(status, err, *fragments)
    assert not (tmp_path / "out").exists()


def test_sampled_pairs_that_cannot_fit_are_refused(tmp_path, capsys):
    text = SPEC + '[run]\nmode = "sampled"\npairs_per_iteration = 1000000000000\ninner_steps = 2\n'
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", text), "--out", tmp_path / "out")
    assert_clear_error(status, err, "memory:", "pairs")


def test_an_out_of_memory_error_of_xla_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123456789 bytes.\nmore")

    monkeypatch.setattr(experiment, "run_rule", exhausted)
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", SPEC), "--out", tmp_path / "out", "--no-plots")
    assert_clear_error(status, err, "ran out of memory", "123456789 bytes")


def test_memory_estimate_formula_and_refusal_at_a_given_available_memory():
    spec = parse_spec(
        {
            "iterations": 10,
            "seeds": 3,
            "record_every": 5,
            "game": {"kind": "random", "arms": 100, "tau": 0.2},
            "rule": [{"name": "inpo", "eta": [1.0, 2.0]}],
        }
    )
    estimate = limits.memory_estimate(spec)
    assert estimate["preference"] == 2 * 3 * 100 * 100 * 8 + 100 * 100 * 8  # P per seed and stacked, + NumPy copy
    shared = parse_spec({**spec.raw, "game": {"kind": "cyclic", "arms": 100, "tau": 0.2}})
    assert limits.memory_estimate(shared)["preference"] == 100 * 100 * 8 + 100 * 100 * 8  # one P for every seed
    small = parse_spec({**spec.raw, "game": {"kind": "random", "arms": 10, "tau": 0.2}, "run": {"seed_block": 2}})
    # K ≤ 12: exact mode also holds one call's P (2 seeds) seed-last
    assert limits.memory_estimate(small)["preference"] == 2 * 3 * 10 * 10 * 8 + 2 * 10 * 10 * 8 + 10 * 10 * 8
    assert estimate["policies"] == limits.STATE_VECTORS * 2 * 3 * 100 * 8
    assert estimate["recordings"] == limits.TABLE_COLUMNS * (2 * 3 * 3 * 8 + 2 * 2 * 3 * 3 * 8)  # R = 3: 0, 5, 10
    # metrics.csv's text: every cell of the 2 labels × 3 seeds × 3 recorded rows as a Python string
    assert estimate["table_text"] == limits.TABLE_COLUMNS * 2 * 3 * 3 * limits.CSV_FIELD_BYTES
    total = sum(estimate.values())
    assert limits.check_memory(spec, available=total) == estimate
    with pytest.raises(
        PrefsimError, match=r"needs at least .* GiB .* has .* GiB available.* or set \[run\] seed_block"
    ):
        limits.check_memory(spec, available=total - 1)
    # seed blocks shrink the policies and recordings, not the per-seed games built up front: not advised where
    # even seed_block = 1 does not fit
    one_seed = sum(limits.memory_estimate(parse_spec({**spec.raw, "run": {"seed_block": 1}})).values())
    assert estimate["preference"] < one_seed < total
    with pytest.raises(
        PrefsimError,
        match=rf"blocks of seeds would not help: with seed_block = 1 it still needs {one_seed / 2**30:.3g} GiB\)\.$",
    ):
        limits.check_memory(spec, available=one_seed - 1)
    assert limits.available_memory() > 0
    assert (
        limits.describe_memory(estimate, available=2**30)
        == f"memory: at least {total / 2**30:.3g} GiB needed, 1 GiB available"
    )
    for iterations, every in ((10, None), (10, 3), (12, 3), (1000, 7), (1, 1)):
        assert limits.recorded_count(iterations, every) == len(default_record_iterations(iterations, every))
    limits.check_counts(2**31 - 1, 10**6)  # the largest accepted sizes


# ---------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("label", ["a\\u0000b", "x" * 300, "   ", "..", ".hidden", "a/b", "a b", "-rf", ""], ids=repr)
def test_labels_must_be_safe_file_names(tmp_path, capsys, label):
    text = SPEC.replace('name = "online_ipo"', f'name = "online_ipo"\nlabel = "{label}"')
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", text), "--out", tmp_path / "out")
    assert_clear_error(status, err, "label must be 1–100 ASCII letters", "rule #2")
    assert not (tmp_path / "out").exists()


def test_safe_labels_with_brackets_and_signs_are_accepted():
    for label in ("inpo_t4", "apo-0.3", "a+b", "x[eta=2](v2)", "A.b,c"):
        spec = parse_spec(
            {"iterations": 2, "game": {"kind": "cyclic", "arms": 3}, "rule": [{"name": "mmd", "label": label}]}
        )
        assert spec.rules[0].label == label


# ---------------------------------------------------------------------------------------------- --out


def _out_cases(tmp_path: Path) -> dict:
    a_file = write(tmp_path / "a_file", "x")
    parts_file = tmp_path / "parts_file"
    parts_file.mkdir()
    write(parts_file / "parts", "x")
    metrics_dir = tmp_path / "metrics_dir"
    (metrics_dir / "metrics.csv").mkdir(parents=True)
    part_dir = tmp_path / "part_dir"
    (part_dir / "parts" / "online_ipo.csv").mkdir(parents=True)
    return {
        "existing file": (a_file, "is not a directory"),
        "parent is a file": (a_file / "sub", "its parent"),
        "/dev/null": (Path("/dev/null"), "is not a directory"),
        "parts is a file": (parts_file, "parts"),
        "metrics.csv is a directory": (metrics_dir, "metrics.csv"),
        "a part is a directory": (part_dir, "online_ipo.csv"),
        "empty string": ("", "empty path"),
        "under /proc": (Path("/proc/prefsim-out"), "cannot"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "existing file",
        "parent is a file",
        "/dev/null",
        "parts is a file",
        "metrics.csv is a directory",
        "a part is a directory",
        "empty string",
        "under /proc",
    ],
)
def test_unusable_out_directories_are_refused_up_front(tmp_path, capsys, monkeypatch, case):
    out, fragment = _out_cases(tmp_path)[case]
    calls = []
    monkeypatch.setattr(experiment, "build_games", lambda *a, **k: calls.append(1))  # nothing may be computed
    spec = write(tmp_path / "spec.toml", SPEC)
    status, _, err = cli(capsys, "run", spec, "--out", out, "--no-plots")
    assert_clear_error(status, err, "--out", fragment)
    assert calls == []
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("manifest.json"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_an_unwritable_out_directory_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", SPEC), "--out", locked)
    finally:
        locked.chmod(0o700)
    assert_clear_error(status, err, "--out")


def test_an_out_directory_without_write_permission_is_refused_even_for_root(tmp_path, capsys, monkeypatch):
    """os.access decides (a test running as root cannot take its own write permission away)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", SPEC), "--out", tmp_path / "new" / "out")
    assert_clear_error(status, err, "--out", "is not writable")
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------- prefsim plot

GOOD_TABLE = "rule,seed,iteration,kl_to_nash\ninpo,0,0,1\ninpo,0,5,0.5\n"


@pytest.mark.parametrize(
    "files, fragments",
    [
        ({"metrics.csv": b"\x00\xff garbage"}, ["metrics.csv", "not a CSV table"]),
        ({"metrics.csv": b"rule,seed,iteration,kl_to_nash\ninpo,0,zero,abc\n"}, ["column 'iteration'", "non-numeric"]),
        ({"metrics.csv": b""}, ["metrics.csv", "not a CSV table"]),
        ({"metrics.csv": GOOD_TABLE.encode(), "manifest.json": b"{bad json"}, ["manifest.json", "not a manifest"]),
        ({"metrics.csv": GOOD_TABLE.encode(), "manifest.json": b'{"spec": 3}'}, ["manifest.json", "not a manifest"]),
        ({"parts/a.csv": b"# fingerprint=x\n\xff\xfe"}, ["a.csv", "not a CSV table"]),
        ({"metrics.csv": b"rule,seed,iteration,kl_to_nash\n"}, ["metrics.csv", "holds no rows (its header only)"]),
    ],
    ids=["binary", "non-numeric", "empty", "bad-json", "bad-manifest", "binary-part", "header-only"],
)
def test_plot_of_a_damaged_directory_is_a_clear_error(tmp_path, capsys, files, fragments):
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    status, _, err = cli(capsys, "plot", tmp_path)
    assert_clear_error(status, err, *fragments)


@pytest.mark.parametrize("command", ["compare", "report"])
def test_compare_and_report_of_an_llm_bridge_run_say_what_it_is(tmp_path, capsys, command):
    """A `prefsim llm` directory (metrics.csv, and a manifest without a parsed spec) gave KeyError: 'seed'."""
    bridge = tmp_path / "bridge"
    bridge.mkdir()
    (bridge / "metrics.csv").write_text("rule,iteration,win_rate\ninpo,0,0.5\ninpo,1,0.6\n")
    (bridge / "manifest.json").write_text('{"spec": {"name": "demo"}, "processes": 1, "versions": {}}')
    arguments = [bridge, bridge] if command == "compare" else [bridge, "--out", tmp_path / "r.html"]
    status, _, err = cli(capsys, command, *arguments)
    assert_clear_error(status, err, "holds an LLM bridge run (`prefsim llm`)", "read simulator runs")


# ---------------------------------------------------------------------------------------------- silent acceptance


@pytest.mark.parametrize(
    "text, fragments",
    [
        (
            SPEC + '[run]\noptimizer = "sgd"\npairs_per_iteration = 5\n',
            [
                'run.optimizer = "sgd" is used only with mode = "sampled" (this spec has mode = "exact")',
                "run.pairs_per_iteration = 5",
            ],
        ),
        (SPEC + '[run]\nmode = "exact"\ninner_steps = 5\n', ["inner_steps", "sampled"]),
        (
            SPEC.replace('kind = "random"', 'kind = "bradley_terry"\nrewards = "random"')
            + '[[rule]]\nname = "apo"\nschedule = "nesterov"\nalpha = 0.5\n',
            ["rule #3 (apo)", "alpha", "nesterov"],
        ),
        (SPEC + '[run]\nmode = "sampled"\ntolerance = inf\ninner_steps = 2\npairs_per_iteration = 5\n', ["tolerance"]),
    ],
    ids=["sampled-keys-in-exact", "sampled-key-explicit-exact", "alpha-with-nesterov", "tolerance-inf"],
)
def test_settings_that_would_be_ignored_are_errors(tmp_path, capsys, text, fragments):
    status, _, err = cli(capsys, "run", write(tmp_path / "spec.toml", text), "--out", tmp_path / "out")
    assert_clear_error(status, err, *fragments)


# ---------------------------------------------------------------------------------------------- parts and --resume

RESUME_SPEC = {
    "iterations": 12,
    "seeds": 2,
    "record_every": 3,
    "game": {"kind": "random", "arms": 4, "tau": 0.2},
    "rule": [{"name": "inpo", "eta": 1.0}, {"name": "mmd"}],
}


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = experiment.run_rule

    def counting(rule, *args, **kwargs):
        calls.append(rule.label)
        return original(rule, *args, **kwargs)

    monkeypatch.setattr(experiment, "run_rule", counting)
    return calls


def _tamper_value(text: str) -> str:
    lines = text.split("\n")
    fields = lines[4].split(",")
    fields[4] = repr(float(fields[4]) + 123.4)
    lines[4] = ",".join(fields)
    return "\n".join(lines)


def _cut_half(text: str) -> str:
    lines = text.split("\n")
    return "\n".join(lines[: len(lines) // 2]) + "\n"


def _header_only(text: str) -> str:
    return "\n".join(text.split("\n")[:3]) + "\n"


def _garbage_row(text: str) -> str:
    return text + "inpo,0,12,1,2,3\n"


@pytest.mark.parametrize(
    "damage", [_tamper_value, _cut_half, _header_only, _garbage_row], ids=["value", "half", "header", "garbage"]
)
def test_resume_recomputes_a_damaged_part_and_names_it(tmp_path, counted, damage):
    out = tmp_path / "out"
    fresh = sim.run(RESUME_SPEC, out=out)
    part = out / "parts" / "inpo.csv"
    part.write_text(damage(part.read_text()))
    counted.clear()
    messages = []
    again = sim.run(RESUME_SPEC, out=out, resume=True, progress=messages.append)
    assert counted == ["inpo"]  # the damaged part only
    assert any(str(part) in m and "recomputing" in m for m in messages), messages
    pd.testing.assert_frame_equal(again, fresh)
    assert (out / "metrics.csv").read_bytes() == results_io.csv_bytes(fresh)


def test_sampled_parts_are_reused_by_resume(tmp_path):
    spec = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "bradley_terry", "rewards": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": [1.0, 2.0]}, {"name": "online_ipo"}],
        "run": {"mode": "sampled", "pairs_per_iteration": 10, "inner_steps": 2},
    }
    fresh = sim.run(spec, out=tmp_path)
    messages = []
    again = sim.run(spec, out=tmp_path, resume=True, progress=messages.append)
    assert sum("already computed" in m for m in messages) == 2, messages
    pd.testing.assert_frame_equal(again, fresh)


@pytest.mark.parametrize("kind, applies", [("random", False), ("bradley_terry", True)])
def test_sampled_regret_applies_to_the_whole_run_or_is_absent(kind, applies):
    game = {"kind": kind, "arms": 4, "tau": 0.2, **({"rewards": "random"} if kind == "bradley_terry" else {})}
    run = {"mode": "sampled", "pairs_per_iteration": 10, "inner_steps": 2}
    table = sim.run({"iterations": 3, "seeds": 2, "game": game, "rule": [{"name": "online_ipo"}], "run": run})
    assert table["regret"].notna().all() if applies else table["regret"].isna().all()
    if applies:
        assert (table.loc[table.iteration == 0, "regret"] == 0.0).all()


def test_part_files_carry_a_checksum_of_their_rows(tmp_path):
    out = tmp_path / "out"
    sim.run(RESUME_SPEC, out=out)
    data = (out / "parts" / "mmd.csv").read_bytes()
    first, second, body = data.split(b"\n", 2)
    assert first.startswith(b"# fingerprint=")
    assert second == f"# sha256={hashlib.sha256(body).hexdigest()} rows={2 * 5}".encode()


def test_resume_removes_parts_of_rules_no_longer_in_the_spec_and_recomputes_a_changed_spec(tmp_path, counted):
    out = tmp_path / "out"
    sim.run(RESUME_SPEC, out=out)
    fewer = {**RESUME_SPEC, "rule": [{"name": "mmd"}]}
    counted.clear()
    messages = []
    table = sim.run(fewer, out=out, resume=True, progress=messages.append)
    assert counted == []
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["mmd.csv"]
    assert any("inpo.csv" in m and "no longer in the spec" in m for m in messages)
    assert set(table["rule"]) == {"mmd"}
    changed = {**fewer, "iterations": 15}
    counted.clear()
    assert sim.run(changed, out=out, resume=True)["iteration"].max() == 15
    assert counted == ["mmd"]


def test_a_second_run_into_a_locked_directory_stops_with_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    spec = write(tmp_path / "spec.toml", SPEC)
    assert cli(capsys, "run", spec, "--out", out, "--no-plots", "--quiet")[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != results_io.LOCK_NAME}
    other = write(tmp_path / "other.toml", SPEC.replace("iterations = 20", "iterations = 30"))
    with results_io.output_lock(out):  # another run holds the directory
        status, _, err = cli(capsys, "run", other, "--out", out, "--no-plots")
    assert_clear_error(status, err, "another prefsim run", f"process {os.getpid()}")
    assert {p: p.read_bytes() for p in before} == before
    assert cli(capsys, "run", other, "--out", out, "--no-plots", "--quiet")[0] == 0  # released afterwards


def test_a_failed_write_keeps_the_previous_complete_results(tmp_path, monkeypatch):
    """The disk fills up while the final manifest is written: neither metrics.csv nor manifest.json changes."""
    out = tmp_path / "out"
    sim.run(RESUME_SPEC, out=out)
    before = {name: (out / name).read_bytes() for name in ("metrics.csv", "manifest.json")}
    real_fsync = os.fsync

    def full_disk(descriptor):
        name = os.readlink(f"/proc/self/fd/{descriptor}")
        if Path(name).parent == out and Path(name).name.startswith(".manifest.json."):
            raise OSError(28, "No space left on device")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(PrefsimError, match="No space left on device"):
        sim.run({**RESUME_SPEC, "iterations": 15}, out=out)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.rglob("*.tmp"))
    assert len(list((out / "parts").glob("*.csv"))) == 2  # the new parts are kept for --resume


def _prefsim_process(*arguments, file_size_limit=None):
    """``prefsim ARGUMENTS`` in a new interpreter, optionally under RLIMIT_FSIZE (set by the child itself)."""
    setup = "import resource, runpy, signal, sys\n"
    if file_size_limit is not None:  # a write past the limit then fails with EFBIG instead of killing the process
        setup += "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        setup += f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))\n"
    setup += "sys.argv = ['prefsim', *sys.argv[1:]]\nrunpy.run_module('sim.cli', run_name='__main__')\n"
    return subprocess.Popen(
        [sys.executable, "-c", setup, *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_the_file_size_limit_while_writing_leaves_the_previous_results_intact(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(capsys, "run", write(tmp_path / "small.toml", SPEC), "--out", out, "--no-plots", "--quiet")[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(before[Path("metrics.csv")]) < 40_000
    big = write(tmp_path / "big.toml", SPEC.replace("iterations = 20", "iterations = 400\nrecord_every = 1"))
    process = _prefsim_process("run", big, "--out", out, "--no-plots", file_size_limit=40_000)
    _, err = process.communicate(timeout=300)
    assert_clear_error(process.returncode, err, "File too large", "previous version")
    assert (out / "metrics.csv").read_bytes() == before[Path("metrics.csv")]
    assert (out / "manifest.json").read_bytes() == before[Path("manifest.json")]
    assert not list(out.rglob("*.tmp"))


def test_sigterm_is_an_orderly_stop_and_resume_finishes_the_run(tmp_path, capsys):
    out = tmp_path / "out"
    slow = 'iterations = 30000\nseeds = 2\n[game]\nkind = "random"\narms = 40\ntau = 0.2\n'
    slow += '[[rule]]\nname = "mmd"\nlabel = "first"\n[[rule]]\nname = "inpo"\nlabel = "slow"\neta = [1.0, 2.0, 3.0]\n'
    spec = write(tmp_path / "slow.toml", slow)
    process = _prefsim_process("run", spec, "--out", out, "--no-plots")
    first = out / "parts" / "first.csv"
    deadline = time.time() + 240
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    assert err.startswith("terminated (SIGTERM): finished parts and a long rule's progress are saved"), err
    assert "Traceback" not in err
    assert not (out / "metrics.csv").exists()
    assert not list(out.rglob("*.tmp"))
    parsed = sim.load_spec(spec)
    stored, reason = results_io.read_part(first, experiment.part_fingerprint(parsed, parsed.rules[0]))
    assert reason is None and len(stored) > 0
    status, stdout, err = cli(capsys, "run", spec, "--out", out, "--no-plots", "--resume")
    assert status == 0, err
    assert "first: already computed" in stdout
    table = pd.read_csv(out / "metrics.csv")
    assert set(table["rule"]) == {"first", "slow[eta=1]", "slow[eta=2]", "slow[eta=3]"}
    assert np.isfinite(table["kl_to_nash"]).all()


def test_a_sigterm_whose_exception_was_swallowed_still_stops_at_the_next_rule(tmp_path, capsys, monkeypatch):
    """Python drops an exception raised by a signal handler while a garbage-collection callback runs (JAX
    registers one): the handler's flag stops the run at the next progress call, before any result is written."""
    spec = write(
        tmp_path / "two.toml",
        'iterations = 20\nseeds = 2\n[game]\nkind = "random"\narms = 4\ntau = 0.2\n'
        '[[rule]]\nname = "mmd"\nlabel = "first"\n[[rule]]\nname = "inpo"\nlabel = "second"\neta = 1.0\n',
    )
    real = experiment.simulate_grid

    def swallowed_sigterm(*args, **kwargs):
        stop_request.request_stop(signal.SIGTERM)  # as the handler does, minus the exception Python lost
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "simulate_grid", swallowed_sigterm)
    out = tmp_path / "out"
    status, _, err = cli(capsys, "run", spec, "--out", out, "--no-plots")
    assert status == 143, err
    assert err.startswith("terminated (SIGTERM): finished parts and a long rule's progress are saved"), err
    assert "Traceback" not in err
    assert not (out / "metrics.csv").exists() and not (out / "parts" / "second.csv").exists()
    monkeypatch.setattr(experiment, "simulate_grid", real)
    status, stdout, err = cli(capsys, "run", spec, "--out", out, "--no-plots", "--resume")  # main clears the flag
    assert status == 0, err
    assert set(pd.read_csv(out / "metrics.csv")["rule"]) == {"first", "second"}


# ---------------------------------------------------------------------------------------------- prefsim llm

BRIDGE_SPEC = textwrap.dedent(
    """
    iterations = 1
    [model]
    path = "no-such-model"
    [prompts]
    train = ["tell me a story", "the movie was"]
    heldout = ["what a", "i love this"]
    per_iteration = 2
    [oracle]
    kind = "vader"
    [training]
    learning_rate = 1e-2
    batch_size = 2
    micro_batch_size = 2
    [[rule]]
    name = "sppo"
    eta = 2.0
    """
)


@pytest.fixture
def bridge_parse():
    pytest.importorskip("torch")
    from llm_bridge.spec import parse_spec as parse_bridge

    return lambda text: parse_bridge(tomllib.loads(text))


@pytest.mark.parametrize(
    "old, new, fragments",
    [
        ("eta = 2.0", 'eta = 2.0\nlabel = ".."', ["rule #1", "label must be 1–100 ASCII"]),
        ("eta = 2.0", 'eta = 2.0\nlabel = "a\\u0000b"', ["label must be"]),
        ("eta = 2.0", f'eta = 2.0\nlabel = "{"y" * 300}"', ["label must be", "300 chars"]),
        ('kind = "vader"', 'kind = "vader"\nscale = inf', ["oracle.scale", "finite"]),
        ('kind = "vader"', 'kind = "vader"\nscale = 0.0', ["oracle.scale"]),
        (
            'kind = "vader"',
            'kind = "reward_function"\nfunction = "math:pi"',
            ["oracle.function", "'math:pi' is a float"],
        ),
        ('kind = "vader"', 'kind = "psychic"', ["oracle.kind"]),
    ],
    ids=["label-dotdot", "label-nul", "label-300", "scale-inf", "scale-zero", "not-callable", "kind"],
)
def test_bridge_spec_labels_and_oracle_are_checked(bridge_parse, old, new, fragments):
    with pytest.raises(PrefsimError) as caught:
        bridge_parse(BRIDGE_SPEC.replace(old, new, 1))
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


def test_bridge_spec_with_a_callable_oracle_function_parses(bridge_parse):
    spec = bridge_parse(BRIDGE_SPEC.replace('kind = "vader"', 'kind = "reward_function"\nfunction = "math:fsum"'))
    assert spec.oracle.function == "math:fsum"


@pytest.mark.parametrize(
    "content, out, fragments",
    [
        (b"\xff\xfe\x00\x01binary", "out", ["bridge spec file", "UTF-16"]),
        (b"iterations = 1\x00\x00", "out", ["not a text file"]),
        (BRIDGE_SPEC.encode(), "a_file", ["--out", "is not a directory"]),
        (BRIDGE_SPEC.encode(), "", ["--out", "empty path"]),
    ],
    ids=["utf16", "binary", "out-is-a-file", "out-empty"],
)
def test_prefsim_llm_bad_files_are_clear_errors(tmp_path, capsys, monkeypatch, content, out, fragments):
    pytest.importorskip("torch")
    spec = tmp_path / "bridge.toml"
    spec.write_bytes(content)
    write(tmp_path / "a_file", "x")
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "llm", spec, "--out", out)
    assert_clear_error(status, err, *fragments)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- memory of shared games


@pytest.mark.parametrize(
    "game, stacked",
    [
        ({"kind": "cyclic", "arms": 5, "tau": 0.1, "reference": "random"}, {"log_reference", "log_initial"}),
        ({"kind": "random", "arms": 5, "tau": 0.1}, {"preference"}),
        ({"kind": "cyclic", "arms": 5, "tau": 0.1, "initial": "random"}, {"log_initial"}),
    ],
    ids=["shared-P", "random-P", "random-initial"],
)
def test_build_games_keeps_one_copy_of_a_leaf_shared_by_every_seed(game, stacked):
    spec = parse_spec({"iterations": 2, "seeds": [4, 1, 7], "game": game, "rule": [{"name": "mmd"}]})
    games, axes, targets, _ = experiment.build_games(spec)
    assert {name for name in Game._fields if getattr(axes, name) == 0} == stacked
    for index, seed in enumerate(spec.seeds):
        single = game_from_instance(build_game(spec.game, seed))
        for name in Game._fields:
            leaf = getattr(games, name)
            leaf = leaf[index] if getattr(axes, name) == 0 else leaf
            np.testing.assert_array_equal(np.asarray(leaf), np.asarray(getattr(single, name)))
    assert targets.shape == (3, 5)


def test_an_interruption_while_a_rule_is_saved_is_acted_on_once_its_files_are_whole(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing a rule's final policies and rows: both are written whole, then the
    run stops (KeyboardInterrupt, so exit 130 from the command); a resumed run loads that rule and equals an
    uninterrupted one.  Before, the write broke (a traceback) and the rule's rows were lost."""
    spec = {
        "iterations": 30,
        "seeds": 2,
        "game": {"kind": "random", "arms": 3, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 1.0}, {"name": "mmd"}],
    }
    real = experiment.save_final_policies

    def interrupted(*arguments):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the signal is delivered here, in the middle of the rule's writes
        real(*arguments)

    monkeypatch.setattr(experiment, "save_final_policies", interrupted)
    out = tmp_path / "run"
    # Python's own Ctrl-C handler (a library loaded by an earlier test of the session may have replaced it)
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            sim.run(spec, out=out)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, earlier)
    assert sorted(p.name for p in (out / "parts").glob("*.csv")) == ["inpo.csv"]
    assert (out / "final_policies" / "inpo.npz").is_file()
    monkeypatch.undo()
    resumed = sim.run(spec, out=out, resume=True)
    fresh = sim.run(spec)
    pd.testing.assert_frame_equal(resumed.reset_index(drop=True), fresh.reset_index(drop=True))
