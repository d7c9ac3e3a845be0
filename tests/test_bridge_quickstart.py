"""The README's tiny-model quick start of ``prefsim llm``, as a user types it, and what the bridge says
and writes along the way: the checkpoint sizes it will keep, a per-iteration line that names its
numbers, ``win_rate.png`` after every iteration, and ``prefsim plot`` on the result directory."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from llm_bridge import loop as bridge_loop  # noqa: E402
from llm_bridge.spec import load_spec  # noqa: E402
from llm_bridge.tiny import build_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(*arguments, cwd):
    return subprocess.run([sys.executable, *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_readmes_tiny_quick_start_runs_and_says_what_it_writes(tmp_path):
    assert "python -m llm_bridge.tiny results/tiny_model" in (ROOT / "README.md").read_text()
    built = _run("-m", "llm_bridge.tiny", "results/tiny_model", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    run = _run("-m", "sim.cli", "llm", ROOT / "examples" / "llm_tiny.toml", "--out", "results/llm_tiny", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "results" / "llm_tiny"
    lines = run.stdout.splitlines()
    note = next(line for line in lines if line.startswith("checkpoints: "))
    each = sum(p.numel() * 4 for p in bridge_loop.load_causal_lm(str(tmp_path / "results/tiny_model")).parameters())
    # one reference checkpoint, and keep_checkpoints = 2 keeps the last two (plus the one being written)
    assert each < 2**20 and f"{each / 2**10:.0f} KB each" in note and "keep_checkpoints = 2" in note
    iteration = next(line for line in lines if line.startswith("[inpo] iteration 2/2: "))
    assert "held-out win rate of π_2 vs π_ref" in iteration and "(0.5 = no change)" in iteration
    assert "on the first minibatch" in iteration and "on the last" in iteration and "→" not in iteration
    # the last line names every file the run writes at its top level (docs/llm_bridge.md lists the same three)
    for name in ("metrics.csv", "win_rate.png", "curves.png"):
        assert name in lines[-1] and (out / name).is_file(), (name, lines[-1])
    (out / "win_rate.png").unlink()
    plotted = _run("-m", "sim.cli", "plot", out, cwd=tmp_path)
    assert plotted.returncode == 0 and "win_rate.png" in plotted.stdout, plotted.stderr
    assert (out / "win_rate.png").stat().st_size > 10_000


def test_win_rate_png_is_drawn_after_every_iteration(tmp_path, monkeypatch):
    """A run stopped during its second iteration already has the figure of the first; prefsim plot redraws
    it from the rule's rows (no top-level metrics.csv yet)."""
    model = build_tiny_model(tmp_path / "model", "llama")
    spec = load_spec(ROOT / "examples" / "llm_tiny.toml")
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, path=str(model)))
    drawn = []
    real_plot = bridge_loop.plot_win_rate
    monkeypatch.setattr(
        bridge_loop, "plot_win_rate", lambda table, path: drawn.append(len(table)) or real_plot(table, path)
    )
    real_update = bridge_loop._update

    def stop_at_the_second(session, entry, t):
        if t == 1:
            raise KeyboardInterrupt
        return real_update(session, entry, t)

    monkeypatch.setattr(bridge_loop, "_update", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        bridge_loop.run_bridge(spec, tmp_path / "run", progress=False)
    assert drawn == [2]  # π_0 and π_1 of the first rule
    assert (tmp_path / "run" / "win_rate.png").is_file() and not (tmp_path / "run" / "metrics.csv").exists()
    (tmp_path / "run" / "win_rate.png").unlink()
    from sim.cli import main

    assert main(["plot", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "win_rate.png").is_file()
