"""Progress reporting (sim.progress): a bar on a terminal, one line per step otherwise, silence under --quiet."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

from sim.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_when_not_a_terminal_with_elapsed_and_time_left():
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, clock=clock)
    assert progress.mode == "lines"
    progress.stage(0, 4, "running inpo")
    clock.now = 10.0
    progress.stage(1, 4, "running sppo")
    clock.now = 20.0
    progress("sppo: 100 rows in 10.0 s")
    progress.stage(2, 4, "running mmd")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "prefsim: 0/4 rules · running inpo · 0 s elapsed, time left: after the first"
    assert lines[1] == "prefsim: 1/4 rules · running sppo · 10 s elapsed, ~30 s left"
    assert lines[2] == "sppo: 100 rows in 10.0 s"
    assert lines[3] == "prefsim: 2/4 rules · running mmd · 20 s elapsed, ~20 s left"
    assert "\r" not in stream.getvalue()


def test_bar_on_a_terminal_is_redrawn_in_place_and_messages_print_above_it():
    stream, clock = Terminal(), Clock()
    progress = Progress(stream, clock=clock)
    assert progress.mode == "bar"
    progress.stage(0, 2, "running inpo")
    clock.now = 65.0
    progress.stage(1, 2, "running sppo")
    progress("warning: something")
    progress.finish()
    text = stream.getvalue()
    assert text.count("\n") == 1, "only the message ends a line; the bar is redrawn with carriage returns"
    assert "[" + "#" * 12 + "·" * 12 + "] 1/2 rules · running sppo · 1 min 05 s elapsed, ~1 min 05 s left" in text
    assert text.endswith("\r")


def test_quiet_prints_nothing():
    stream = Terminal()
    progress = Progress(stream, mode="quiet")
    progress.stage(0, 3, "x")
    progress("a message")
    progress.finish()
    assert stream.getvalue() == ""
    with pytest.raises(ValueError):
        Progress(stream, mode="loud")


def test_cli_reports_each_rule_and_figure_when_not_a_terminal(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        textwrap.dedent(
            """
            iterations = 5
            seeds = 2
            [game]
            kind = "random"
            arms = 3
            tau = 0.3
            [[rule]]
            name = "inpo"
            eta = 4.0
            [[rule]]
            name = "sppo"
            """
        )
    )
    run = [sys.executable, "-m", "sim.cli", "run", str(spec), "--out", str(tmp_path / "out")]
    result = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "prefsim: 0/2 rules · running inpo" in result.stdout
    assert "prefsim: 1/2 rules · running sppo" in result.stdout
    assert "prefsim: 0/" in result.stdout and "figures · drawing " in result.stdout
    quiet = subprocess.run([*run, "--quiet"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout == ""
    replot = subprocess.run(
        [sys.executable, "-m", "sim.cli", "plot", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True
    )
    assert replot.returncode == 0 and replot.stdout == ""
