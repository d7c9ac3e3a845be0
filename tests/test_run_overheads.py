"""What a run does besides its updates, made cheaper without changing a number (issue 14, end to end):
the bounds reuse the run's games, the per-seed Nash linear programs run on threads, figures share one
mathtext parser and ``prefsim --version`` loads no JAX.  No timing here (benchmarks/run_all.py times them)."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sim
from bandits.errors import PrefsimError
from sim import plotting, seed_games
from sim.bounds_table import compute_bounds
from sim.nash import unique_unregularised_nash
from sim.precision import float64
from sim.seed_games import build_games, unregularised_targets
from sim.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]

SPEC = {
    "iterations": 30,
    "seeds": 5,
    "game": {"kind": "random", "arms": 6, "tau": 0.1, "reference": "random"},
    "rule": [{"name": "inpo", "eta": 1.0}],
}


def test_bounds_from_the_runs_games_equal_bounds_built_from_the_spec():
    """compute_bounds with the run's float64 games gives the table it gives when it builds them itself."""
    spec = parse_spec(SPEC)
    table = sim.run(spec)
    with float64():
        games = build_games(spec)[:3]
        reused = compute_bounds(table, spec, games)
        rebuilt = compute_bounds(table, spec)
    assert not rebuilt.empty
    assert reused.equals(rebuilt)
    # and the games do matter: another seed's games give other bounds
    with float64():
        other = compute_bounds(table, spec, build_games(parse_spec({**SPEC, "seeds": [5, 6, 7, 8, 9]}))[:3])
    assert not other.equals(rebuilt)


def test_threaded_unregularised_targets_are_the_serial_rows():
    """π⁰ per seed from the thread pool equals the serial loop over seeds, bit for bit, NaN rows included."""
    spec = parse_spec({**SPEC, "seeds": 7, "game": {"kind": "random", "arms": 9, "tau": 0.1}})
    with float64():
        games, axes, _, _ = build_games(spec)
        threaded = np.asarray(unregularised_targets(games, axes, 7))
    serial = np.stack([unique_unregularised_nash(np.asarray(matrix)) for matrix in np.asarray(games.preference)])
    assert axes.preference == 0
    np.testing.assert_array_equal(threaded, serial)
    assert np.isfinite(serial).all(axis=1).any()  # some seed has a unique π⁰ (not a vacuous comparison)


@pytest.mark.parametrize("layout", ["single", "panels"])
def test_figures_share_one_mathtext_parser(tmp_path, layout):
    """Every figure's renderer uses plotting's one parser, so the log axes' labels are parsed once per run."""
    table = sim.run(SPEC)
    plot = {"layout": layout} if layout == "panels" else None
    figure = plotting.metric_figure(table, "kl_to_nash", plotting.stats.rules_of(table), plotting.parse_plot(plot))
    plotting.save_figure(figure, tmp_path / "a.png")
    assert figure.canvas.get_renderer().mathtext_parser is plotting._MATHTEXT
    info = plotting._MATHTEXT._parse_cached.cache_info()
    again = plotting.metric_figure(table, "kl_to_nash", plotting.stats.rules_of(table), plotting.parse_plot(plot))
    plotting.save_figure(again, tmp_path / "b.png")
    after = plotting._MATHTEXT._parse_cached.cache_info()
    assert after.misses == info.misses and after.hits > info.hits  # the second figure parsed nothing new
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_version_and_help_load_no_jax():
    """Building prefsim's parser (``--version``, ``--help``) imports neither JAX nor pandas."""
    code = (
        "import sys\n"
        "import sim.cli\n"
        "sim.cli._parser()\n"
        "heavy = [m for m in ('jax', 'pandas', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_a_failing_seed_stops_the_remaining_linear_programs(monkeypatch):
    """An error in one seed's π⁰ (or Ctrl-C) propagates at once: the seeds not started are not solved."""
    spec = parse_spec({**SPEC, "seeds": 40})
    with float64():
        games, axes, _, _ = build_games(spec)
    started, lock = [], threading.Lock()

    def solve(matrix):
        with lock:
            started.append(1)
            first = len(started) == 1
        if first:
            raise PrefsimError("unregularised Nash: the linear program failed (test).")
        time.sleep(0.05)
        return np.full(matrix.shape[0], np.nan)

    monkeypatch.setattr(seed_games, "unique_unregularised_nash", solve)
    with pytest.raises(PrefsimError, match="test"):
        seed_games.unregularised_targets(games, axes, 40)
    assert len(started) < 20
