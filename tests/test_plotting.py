"""Tests of sim.plotting: files written, NaN metrics skipped, bounds and fits drawn."""

import numpy as np
import pandas as pd
import pytest

import sim
from bandits.errors import PrefsimError
from sim import plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cyclic_table():
    spec = {
        "iterations": 40,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.3},
        "rule": [{"name": "inpo", "eta": 4.0}, {"name": "sppo", "eta": 0.5}],
    }
    return sim.run(spec)


def test_plot_run_writes_one_png_per_metric_with_data_and_skips_nan(tmp_path, cyclic_table):
    paths = plotting.plot_run(cyclic_table, tmp_path / "figures")
    names = {p.stem for p in paths}
    assert "kl_to_nash" in names and "duality_gap_mixture" in names
    # no Bradley–Terry rewards: suboptimality is NaN and regret is only 0 at t = 0
    assert not names & {"suboptimality", "suboptimality_mixture", "regret"}
    for path in paths:
        assert path.exists() and path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)


def test_plot_metric_draws_bands_theory_fit_and_the_t3_marker(cyclic_table):
    bound = pd.DataFrame(
        {"iteration": np.arange(1, 41), "bound": 1.0 / np.arange(1, 41), "rule": "inpo", "label": "a bound"}
    )
    axes = plotting.plot_metric(cyclic_table, "kl_to_nash", theory=bound, fit_window=(4, 40))
    labels = [line.get_label() for line in axes.get_lines()]
    assert "a bound" in labels
    assert any(label.startswith("inpo: slope") for label in labels)
    assert any(line.get_xdata()[0] == 3 for line in axes.get_lines() if line.get_linestyle() == ":")
    assert axes.get_yscale() == "log" and axes.get_xscale() == "symlog"
    assert len(axes.collections) == 2  # one band per rule


def test_plot_metric_single_seed_and_bad_input(tmp_path):
    table = sim.run(
        {
            "iterations": 5,
            "seeds": 1,
            "game": {"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": [0.5, 0.3, 0.2]},
            "rule": [{"name": "inpo", "eta": 20.0}],
        }
    )
    paths = plotting.plot_run(table, tmp_path)
    assert paths and all(p.exists() for p in paths)
    with pytest.raises(PrefsimError):
        plotting.plot_metric(table, "not_a_metric")
    with pytest.raises(PrefsimError, match="theory"):
        plotting.plot_metric(table, "kl_to_nash", theory=[1, 2, 3])


def test_plot_run_draws_theory_bounds_from_the_manifest(tmp_path):
    spec = {
        "iterations": 30,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "label": "inpo_t4", "schedule": "theorem4"}],
    }
    table = sim.run(spec)
    bound = plotting._theory_for(table, "kl_to_nash", {"spec": spec})
    assert bound is not None and set(bound["rule"]) == {"inpo_t4"} and (bound["bound"] > 0).all()
    assert plotting._theory_for(table, "exploitability", {"spec": spec}) is None
    paths = plotting.plot_run(table, tmp_path, {"spec": spec, "seeds": [0, 1]})
    assert tmp_path / "kl_to_nash.png" in paths


def test_fit_window_per_rule(cyclic_table):
    axes = plotting.plot_metric(cyclic_table, "kl_to_nash", fit_window={"inpo": (4, 40)})
    labels = [line.get_label() for line in axes.get_lines()]
    assert any(label.startswith("inpo: slope") for label in labels) and "sppo" in labels
