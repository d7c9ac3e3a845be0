"""What a run does besides its updates, made cheaper without changing a number (issue 14, end to end):
the bounds reuse the run's games, the per-seed Nash linear programs run on threads, figures share one
mathtext parser and are drawn once each, CSV files are written without pandas' per-value formatting and
``prefsim --version`` loads no JAX.  No timing here (benchmarks/run_all.py times them)."""

import io
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from python_process import python_output

import sim
from bandits.errors import PrefsimError
from sim import plotting, results_io, seed_games
from sim.bounds_table import compute_bounds
from sim.nash import unique_unregularised_nash
from sim.plot_spec import parse_plot
from sim.precision import float64, on_device
from sim.seed_games import build_games, unregularised_targets
from sim.spec import parse_spec

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
    """Every figure's renderer uses plotting's one parser, so a mathtext label (here the title's; the log
    axes' labels are plain text, :class:`sim.plotting.PlainLogFormatter`) is parsed once per run."""
    table = sim.run(SPEC)
    plot = {"layout": layout} if layout == "panels" else None
    rules, title = plotting.stats.rules_of(table), r"a run at $\tau = 0.1$"
    figure = plotting.metric_figure(table, "kl_to_nash", rules, parse_plot(plot), title=title)
    plotting.save_figure(figure, tmp_path / "a.png")
    assert figure.canvas.get_renderer().mathtext_parser is plotting._MATHTEXT
    info = plotting._MATHTEXT._parse_cached.cache_info()
    again = plotting.metric_figure(table, "kl_to_nash", rules, parse_plot(plot), title=title)
    plotting.save_figure(again, tmp_path / "b.png")
    after = plotting._MATHTEXT._parse_cached.cache_info()
    assert after.misses == info.misses and after.hits > info.hits  # the second figure parsed nothing new
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize("layout", ["single", "panels"])
def test_a_png_is_drawn_once_with_the_pixels_savefig_draws(tmp_path, layout, monkeypatch):
    """save_figure writes what Matplotlib's savefig would (the same pixels, the dpi), drawing the figure once."""
    table = sim.run(SPEC)
    plot = parse_plot({"layout": layout} if layout == "panels" else None)

    def figure():
        return plotting.metric_figure(table, "kl_to_nash", plotting.stats.rules_of(table), plot, title="a title")

    reference = io.BytesIO()
    figure().savefig(reference, dpi=plotting.STYLE["savefig.dpi"], format="png")
    drawn = figure()
    draws = []
    original_draw = type(drawn).draw  # Figure.draw: called once per pass over the artists
    monkeypatch.setattr(type(drawn), "draw", lambda self, renderer: draws.append(1) or original_draw(self, renderer))
    path = plotting.save_figure(drawn, tmp_path / "a.png")
    assert len(draws) == 1
    written, expected = Image.open(path), Image.open(reference)
    assert written.mode == "RGB" and written.size == expected.size  # the figure is opaque: no alpha channel
    np.testing.assert_array_equal(np.asarray(written), np.asarray(expected.convert("RGB")))
    assert written.info["dpi"] == pytest.approx(expected.info["dpi"])
    assert drawn.get_dpi() == figure().get_dpi()  # the figure's own dpi is given back


def test_a_transparent_figure_keeps_its_alpha_channel(tmp_path):
    figure, axes = plotting.new_figure()
    figure.patch.set_alpha(0.0)
    axes.plot([1, 2], [1, 2])
    image = Image.open(plotting.save_figure(figure, tmp_path / "a.png"))
    assert image.mode == "RGBA" and np.asarray(image)[0, 0, 3] == 0


CSV_FRAMES = {
    "special floats, text to quote": pd.DataFrame(
        {
            "x": np.array([0.1, -0.0, np.nan, -np.inf, 1e-300, 5e-324]),
            "flag": [True, False, True, True, False, False],
            "text": ["q", None, 'he said "hi"', "", "a\nb", "c,d"],
        }
    ),
    "float32 and small integers": pd.DataFrame(
        {"x": np.array([1.5, 0.1], np.float32), "n": np.array([1, 255], np.uint8), "i": [-3, 2**40]}
    ),
    "one text column of empty fields": pd.DataFrame({"x": ["", ""]}),
    "every field missing": pd.DataFrame({"a": [np.nan, np.nan], "b": [None, None]}),
    "a header to quote": pd.DataFrame({"a,b": [1.0, 2.0], "c": ["x", "y"]}),
    "no rows": pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=str)}),
    "no columns": pd.DataFrame(index=[0, 1]),
    "an extension dtype (left to pandas)": pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "s": ["a", "b"]}),
    "numbers in an object column (left to pandas)": pd.DataFrame({"o": [1.5, None, "x,y"], "s": ["a", "b", "c"]}),
}


@pytest.mark.parametrize("name", list(CSV_FRAMES))
def test_csv_bytes_are_pandas_bytes(name):
    frame = CSV_FRAMES[name]
    assert results_io.csv_bytes(frame) == frame.to_csv(index=False, float_format=results_io.CSV_FLOAT_FORMAT).encode()


def test_the_same_content_twice_is_formatted_once_and_any_change_is_written_again(monkeypatch):
    table = sim.run(SPEC)
    first = results_io.csv_bytes(table)
    formatted = []
    original = results_io._csv_text
    monkeypatch.setattr(results_io, "_csv_text", lambda frame: formatted.append(1) or original(frame))
    assert results_io.csv_bytes(table.copy()) == first and formatted == []  # a run's part, then metrics.csv
    changed = table.copy()
    changed.loc[3, "kl_to_nash"] = np.nextafter(changed.loc[3, "kl_to_nash"], np.inf)
    renamed = table.rename(columns={"kl_to_nash": "kl"})
    text_changed = table.assign(rule=table["rule"].str.replace("inpo", "inpo2"))
    for other in (changed, renamed, text_changed):
        assert results_io.csv_bytes(other) == original(other) != first
    assert len(formatted) == 3  # each changed frame is formatted anew
    assert results_io.content_digest(CSV_FRAMES["numbers in an object column (left to pandas)"]) is None


def test_a_runs_table_is_written_as_pandas_writes_it_and_reads_back_exactly():
    table = sim.run({**SPEC, "rule": [{"name": "inpo", "eta": 1.0}, {"name": "nash_md", "eta": 0.5}]})
    written = results_io.csv_bytes(table)
    assert written == table.to_csv(index=False, float_format="%.17g").encode()
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(written)), table, check_exact=True, check_dtype=False)


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
    assert python_output(code) == "ok"


def test_a_figure_process_loads_no_jax():
    """A figure process imports sim.plotting (and warms Matplotlib up) without JAX or the rules: ~0.5 s less
    of the idle core it starts on (sim.figure_worker)."""
    code = (
        "import sys\n"
        "import sim.plotting\n"
        "sim.plotting.warm_up()\n"
        "heavy = [m for m in ('jax', 'scipy', 'sim.rules', 'sim.spec') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    assert python_output(code) == "ok"


def test_a_failing_seed_stops_the_remaining_linear_programs(monkeypatch):
    """An error in one seed's π⁰ (or Ctrl-C) propagates at once: the seeds not started are not solved."""
    spec = parse_spec({**SPEC, "seeds": 40})
    with float64():
        games, axes, _, _ = build_games(spec)
    started, lock = [], threading.Lock()

    def solve(matrix, tolerance=None, candidate=None):
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


def test_on_device_copies_host_data_without_a_compiled_program():
    """``sim.precision.on_device`` equals ``jnp.asarray`` (values, dtype for the 64-bit setting) for NumPy
    data, through ``jax.device_put``: no program is traced (``jnp.asarray`` stages one per shape)."""
    host = np.random.default_rng(0).random((3, 4))
    traced = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: traced.append(event) if event == "/jax/core/compile/jaxpr_trace_duration" else None
    )
    jax.jit(lambda values: values + 1.0)(host)  # a new function is traced: the listener hears it
    assert traced
    with jax.enable_x64(True):
        before = len(traced)
        placed = on_device(host)
        assert len(traced) == before
        assert placed.dtype == jnp.float64 and not placed.weak_type
        np.testing.assert_array_equal(placed, host)
        assert on_device(host, np.float32).dtype == jnp.float32
        assert on_device(placed) is placed and on_device(placed, jnp.float32).dtype == jnp.float32
    with jax.enable_x64(False):
        assert on_device(host).dtype == jnp.asarray(host).dtype == jnp.float32
        assert on_device(np.arange(3)).dtype == jnp.asarray(np.arange(3)).dtype
