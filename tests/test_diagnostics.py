"""Degenerate-run warnings (sim.diagnostics, sim.bounds_table): said once, in the output and the manifest."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import sim
from sim import cli
from sim.diagnostics import (
    DegenerateRunWarning,
    absent_metrics_to_nan,
    floor_iteration,
    floor_note,
    floor_reached,
    metric_floor,
    precision_floor,
    target_error,
)
from sim.summary import format_summary, summary_frame


def _warnings_of(spec) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run(spec)
    return [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]


def test_precision_floor():
    assert precision_floor("float64") == pytest.approx(100 * np.finfo(np.float64).eps)
    assert precision_floor("float32") == pytest.approx(100 * np.finfo(np.float32).eps)


def test_initial_policy_at_the_nash_point_is_said_once_in_output_and_manifest(tmp_path, capsys):
    spec = tmp_path / "flat.toml"
    spec.write_text(
        'iterations = 20\nseeds = 3\n[game]\nkind = "cyclic"\narms = 3\ntau = 0.1\n'
        '[[rule]]\nname = "inpo"\neta = 20.0\n'
    )
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("already the target π*") == 1
    assert printed.count("seeds give identical results") == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sum("already the target π*" in m for m in manifest["warnings"]) == 1
    # the flat run is not also reported as "reaching the float floor"
    assert not any("rounding floor" in m for m in manifest["warnings"])
    # --quiet prints nothing, the manifest still holds the warnings
    assert cli.main(["run", str(spec), "--out", str(tmp_path / "quiet"), "--no-plots", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "quiet" / "manifest.json").read_text())["warnings"] == manifest["warnings"]


def test_a_random_game_gives_no_warning():
    spec = {
        "iterations": 10,
        "seeds": 10,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 5.2}],
    }
    assert _warnings_of(spec) == []


@pytest.mark.parametrize("seeds", [1, 4, 9])
def test_fewer_than_ten_seeds_are_told_their_intervals_cover_less_than_95_percent(seeds):
    """With S < 10 seeds the percentile bootstrap's 95% interval covers a mean markedly less often
    (tests/test_stats.py measures it); one seed has no interval at all."""
    spec = {
        "iterations": 10,
        "seeds": seeds,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 5.2}],
    }
    said = _warnings_of(spec)
    if seeds == 1:
        assert said == [
            "a single seed: the figures and the summary show that seed's values with no interval, so nothing estimates "
            "the spread over games and sampling; use ≥ 10 seeds."
        ]
    else:
        assert len(said) == 1 and said[0].startswith(f"{seeds} seeds: the 95% bands and intervals are percentile")
        assert "≈ 79% at 4 seeds" in said[0]


def test_rule_tau_differs_from_the_game_tau_and_the_bound_says_why_it_is_missing(tmp_path):
    spec = {
        "iterations": 10,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 5.0, "tau": 0.1}],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run(spec, out=tmp_path)
    messages = [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]
    assert any("τ = 0.1 but the game has τ = 0.2" in m for m in messages)
    assert any(m.startswith("no theory bound drawn for inpo") and "differs from the game's τ" in m for m in messages)
    assert pd.read_csv(tmp_path / "bounds.csv").empty


def test_random_initial_policy_explains_the_missing_bound(tmp_path):
    spec = {
        "iterations": 10,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2, "initial": "random"},
        "rule": [{"name": "inpo", "schedule": "theorem4"}],
    }
    sim.run(spec, out=tmp_path, progress=lambda message: None)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (note,) = [m for m in manifest["warnings"] if m.startswith("no theory bound")]
    assert 'initial = "random"' in note


def test_float32_floor_is_flagged():
    spec = {
        "iterations": 300,
        "seeds": 2,
        "precision": "float32",
        "game": {"kind": "random", "arms": 4, "tau": 0.5},
        "rule": [{"name": "mmd", "eta": 1.0, "tau": 0.5}],
    }
    messages = _warnings_of(spec)
    (floor,) = [m for m in messages if "rounding floor" in m]
    assert "float32" in floor and "mmd: " in floor and 'precision = "float64"' in floor


def _converged_table() -> pd.DataFrame:
    """Two seeds of a rule converging linearly, as examples/default.toml's converged rules do: KL(π*‖π_t) and
    KL(π⁰‖π_t) to rounding (~6e-17), TV(π_t, π*) to π*'s own error (4.15e-14, above 100·eps = 2.2e-14)."""
    t = np.r_[np.arange(0, 11), 20, 50, 100, 200, 300, 500, 1000].astype(float)
    rows = []
    for seed in range(2):
        jitter = 1.0 + 0.01 * np.sin(t + seed)  # rounding noise: not a steady fall
        rows.append(
            pd.DataFrame(
                {
                    "rule": "mmd",
                    "seed": seed,
                    "iteration": t.astype(int),
                    "tv_to_optimum": np.maximum(0.3 * 0.85**t, 4.15e-14 * jitter),
                    "kl_to_nash": np.maximum(0.3 * 0.7**t, 6e-17 * jitter),
                    "kl_to_unregularised_nash": np.maximum(0.3 * 0.7**t, 6e-17 * jitter),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_tv_at_the_accuracy_of_pi_star_and_kl_to_the_unregularised_nash_reach_their_floors():
    table = _converged_table()
    reached = floor_reached(table, "float64", tau=0.1)  # examples/default.toml's τ
    assert reached == {"tv_to_optimum": ["mmd"], "kl_to_nash": ["mmd"], "kl_to_unregularised_nash": ["mmd"]}
    assert floor_note("float64", list(reached), 0.1) == (
        "the float64 rounding floor (2.2e-14; tv_to_optimum: 1.1e-13, the accuracy of π*)"
    )
    assert floor_note("float64", list(reached)) == (  # τ unknown: the formula
        "the float64 rounding floor (2.2e-14; tv_to_optimum: 1e-14·(τ + 1)/τ, the accuracy of π*)"
    )
    assert floor_note("float64", ["tv_to_optimum"], [0.1, 0.002]) == (  # a τ sweep
        "the float64 rounding floor (2.2e-14; tv_to_optimum: 1.1e-13 to 5.0e-12 by τ, the accuracy of π*)"
    )
    assert floor_note("float64", ["tv_to_optimum"], 1.0) == "the float64 rounding floor (2.2e-14)"
    assert floor_note("float32", ["tv_to_optimum"]) == "the float32 rounding floor (1.2e-05)"
    # the summary prints them as ≈ 0, not "4.15e-14 [4.1e-14, 4.2e-14]", and says which floor
    summary = summary_frame(table, precision="float64", tau=0.1)
    assert summary["at_floor"].all()
    printed = format_summary(summary, ["tv_to_optimum", "kl_to_nash"], "float64", tau=0.1)
    assert "e-14" not in printed.split("(≈ 0")[0] and "tv_to_optimum: 1.1e-13" in printed


def test_the_tv_floor_is_the_accuracy_of_pi_star_at_the_games_tau():
    # STEP_TOLERANCE·(τ + 1)/τ, at least the precision's floor (2.2e-14 in float64)
    assert target_error(1.0) == pytest.approx(2e-14)
    assert metric_floor("tv_to_optimum", "float64", 1.0) == precision_floor("float64")
    assert metric_floor("tv_to_optimum", "float64", 0.1) == pytest.approx(1.1e-13)
    assert metric_floor("tv_to_optimum", "float64", 0.002) == pytest.approx(5.01e-12)
    assert metric_floor("tv_to_optimum_mixture", "float64", 0.002) == pytest.approx(5.01e-12)
    assert metric_floor("tv_to_optimum", "float64") == pytest.approx(1.01e-12)  # τ unknown: DEFAULT_FLOOR_TAU
    assert metric_floor("tv_to_optimum", "float64", 0.0) == 1e-12  # τ = 0: π* is the LP's π⁰
    assert metric_floor("tv_to_optimum", "float32", 0.002) == precision_floor("float32")
    assert metric_floor("kl_to_nash", "float64", 0.002) == precision_floor("float64")  # quadratic in π*'s error
    # π*'s TV error measured against π* refined by 2×10⁵ more steps (K = 10, two seeds): the bound is ≥ 2× it
    for tau, measured in ((1.0, 4e-15), (0.1, 5e-14), (0.01, 3.6e-13), (0.002, 2.45e-12)):
        assert target_error(tau) >= 2 * measured


def _tv_table(curves: dict, taus: dict | None = None) -> pd.DataFrame:
    t = np.arange(0, 301, dtype=float)
    rows = []
    for rule, curve in curves.items():
        for seed in range(2):
            frame = pd.DataFrame({"rule": rule, "seed": seed, "iteration": t.astype(int), "tv_to_optimum": curve(t)})
            if taus is not None:
                frame.insert(3, "game.tau", taus[rule])
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def test_a_converging_tv_at_tau_one_is_not_floored_at_one_in_a_million_millions():
    # τ = 1: π* is accurate to ~4e-15, so a linear rate from 0.3 down to 4e-15 (t ≈ 197) is convergence down to
    # the precision's floor (2.2e-14, crossed at t = 187), not rounding from 1e-12 (crossed at t = 163) on
    def converging(t):
        return np.maximum(0.3 * 0.85**t, 4e-15 * (1.0 + 0.01 * np.sin(t)))

    table = _tv_table({"mmd": converging})
    curve = table[table["seed"] == 0]
    assert (
        floor_iteration(curve["iteration"], curve["tv_to_optimum"], metric_floor("tv_to_optimum", "float64", 1.0))
        == 187
    )
    assert floor_iteration(curve["iteration"], curve["tv_to_optimum"], metric_floor("tv_to_optimum", "float64")) == 163
    summary = summary_frame(table, iterations=[175], precision="float64", tau=1.0)  # TV(175) = 1.4e-13
    assert summary.set_index("iteration")["at_floor"].to_dict() == {175: False, 300: True}
    assert summary_frame(table, iterations=[175], precision="float64")["at_floor"].all()  # τ unknown: 1.01e-12


def test_a_few_recorded_values_of_rounding_noise_are_at_the_floor_not_a_steady_fall_below_it():
    """A sweep recording every 100th iteration: the seed mean of a duality gap crosses the floor and then
    reads 2e-16, 3.55e-17 (rounding noise).  Two falling steps looked like a steady fall below the floor, so
    the summary printed 3.55e-17 [0, 1.07e-16] instead of ≈ 0; a real fall below it keeps falling."""
    floor = metric_floor("duality_gap", "float64")
    iterations = np.array([0, 100, 200, 300, 400])
    noise = np.array([0.3, 1e-9, 1e-14, 2e-16, 3.55e-17])
    assert floor_iteration(iterations, noise, floor) == 200
    steady = np.array([0.3, 1e-9, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19])
    assert floor_iteration(np.arange(8) * 100, steady, floor) is None
    assert floor_iteration(np.arange(8) * 100, np.r_[steady[:4], 3e-15, steady[5:]], floor) == 200  # a step up


def test_a_tv_plateau_above_one_in_a_million_millions_is_floored_at_small_tau():
    # τ = 0.002: π*'s error reaches 2.45e-12, so a converged rule's TV sits there: rounding, not a value
    def plateau(t):
        return np.maximum(0.3 * 0.85**t, 2e-12)

    table = _tv_table({"mmd": plateau})
    assert floor_reached(table, "float64", tau=0.002) == {"tv_to_optimum": ["mmd"]}
    assert floor_reached(table, "float64", tau=0.1) == {}
    assert summary_frame(table, precision="float64", tau=0.002)["at_floor"].all()
    # a τ sweep: each rule's own τ, from the table's game.tau column (the argument is only a fallback)
    sweep = _tv_table(
        {"a[game.tau=0.002]": plateau, "a[game.tau=0.1]": plateau}, {"a[game.tau=0.002]": 0.002, "a[game.tau=0.1]": 0.1}
    )
    assert floor_reached(sweep, "float64", tau=1.0) == {"tv_to_optimum": ["a[game.tau=0.002]"]}
    summary = summary_frame(sweep, precision="float64")
    assert dict(zip(summary["rule"], summary["at_floor"])) == {"a[game.tau=0.002]": True, "a[game.tau=0.1]": False}


def test_absent_metric_is_absent_at_iteration_zero_too():
    table = pd.DataFrame(
        {
            "rule": ["a"] * 3 + ["b"] * 3,
            "seed": [0] * 6,
            "iteration": [0, 1, 2] * 2,
            "regret": [0.0, np.nan, np.nan, 0.0, 0.5, 0.7],
            "loss": [np.nan, 1.0, 2.0, np.nan, 1.0, 1.0],
        }
    )
    fixed = absent_metrics_to_nan(table)
    assert fixed["regret"].isna().tolist() == [True, True, True, False, False, False]
    assert fixed["loss"].isna().tolist() == table["loss"].isna().tolist()  # NaN only at t = 0 stays as is


def test_sampled_regret_is_absent_on_a_game_without_rewards():
    spec = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 5.0}],
        "run": {"mode": "sampled", "pairs_per_iteration": 50, "inner_steps": 5},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateRunWarning)
        table = sim.run(spec)
    assert table["regret"].isna().all()
    assert table["queries"].notna().all()


def test_infinite_values_in_a_run_are_said_with_their_rule_and_metric():
    """Rewards near the float64 limit overflow INPO's regret to inf: the run says which rule and metric hold
    ±inf (they were written to metrics.csv without a word)."""
    spec = {
        "iterations": 5,
        "seeds": 1,
        "game": {"kind": "bradley_terry", "rewards": [1.7e308, 0.0], "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 1.0}],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = sim.run(spec)
    assert np.isinf(table["regret"]).any()
    said = [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]
    assert any("±inf values: inpo: regret." in message for message in said), said
    # a finite run says nothing of the kind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run({**spec, "game": {"kind": "bradley_terry", "rewards": [1.0, 0.0], "tau": 0.1}})
    assert not any("±inf" in str(w.message) for w in caught)


def test_a_plot_metric_without_values_is_said_not_dropped_silently():
    """[plot] metrics = ["suboptimality"] on a game without rewards drew 0 figures and said nothing."""
    spec = {
        "iterations": 10,
        "seeds": 10,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 5.2}],
        "plot": {"metrics": ["suboptimality", "kl_to_nash"]},
    }
    said = _warnings_of(spec)
    assert len(said) == 1 and said[0].startswith("plot.metrics: suboptimality has no value after iteration 0"), said
    assert "metrics with values: duality_gap, exploitability, kl_to_nash" in said[0]
    spec["plot"] = {"metrics": ["kl_to_nash"]}
    assert _warnings_of(spec) == []


def test_a_reference_that_never_moves_is_said():
    """reference_every ≥ iterations (COMAL's default 12 in a 10-iteration run) leaves the reference fixed."""
    spec = {
        "iterations": 10,
        "seeds": 10,
        "game": {"kind": "random", "arms": 4, "tau": 0.2},
        "rule": [{"name": "comal"}, {"name": "inpo", "eta": 1.0, "reference_every": [5, 10, 20]}],
    }
    said = [m for m in _warnings_of(spec) if "never moves" in m]
    assert said == [
        "rule comal: reference_every = 12 ≥ iterations = 10, so its reference never moves in this run: it runs as "
        "the same rule with a fixed reference.",
        "rule inpo: reference_every = 10, 20 ≥ iterations = 10, so its reference never moves in this run: it runs "
        "as the same rule with a fixed reference.",
    ]


def test_a_sweep_says_its_seed_count_and_its_plot_metrics_once_not_once_per_point(tmp_path):
    """The seed count is the sweep's; the points' specs carry no [plot] table, so the sweep checks its plot
    metrics once, on all points' rows (the warning never fired for a sweep)."""
    spec = {
        "iterations": 10,
        "seeds": 4,
        "game": {"kind": "random", "arms": 4, "tau": [0.1, 0.2, 0.3]},
        "rule": [{"name": "inpo", "eta": 5.2}],
        "plot": {"metrics": ["suboptimality"]},
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run(spec, out=tmp_path)
    said = [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for start in ("4 seeds: ", "plot.metrics: suboptimality has no value"):
        assert sum(message.startswith(start) for message in said) == 1, said
        assert sum(message.startswith(start) for message in manifest["warnings"]) == 1, manifest["warnings"]
