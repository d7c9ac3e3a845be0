"""Sweeps over [game] and [run] fields and over categorical rule parameters (sim.field_sweep, sim.sweep_runs).

Each swept row must equal the run of the spec with that value fixed (to 1e-12); the tables carry one
column per swept field and labels that name the values; --resume reuses every point's parts; the
manifest says which τ each metric is scored at; bad sweeps are refused naming the field.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bandits.errors import PrefsimError
from sim import figure_plan, plotting, shared_engine, sweep_runs
from sim.cli import main
from sim.diagnostics import DegenerateRunWarning
from sim.experiment import run
from sim.field_sweep import point_name, sweep_label
from sim.merge import merge_shards
from sim.metrics import METRIC_COLUMNS
from sim.plot_spec import PlotSpec
from sim.results_io import read_results_table
from sim.spec import parse_spec
from sim.stats import metric_columns
from sim.sweep_merge import merge_sweep_shards

EXACT = {
    "iterations": 12,
    "seeds": 2,
    "record_every": 4,
    "game": {"kind": "random", "arms": [3, 4], "tau": [0.05, 0.2]},
    "rule": [{"name": "inpo", "eta": [2.0, 6.0]}, {"name": "mmd", "eta": 0.1}],
}


def _fixed(spec: dict, point: dict, rule_point: dict | None = None) -> dict:
    """``spec`` with the swept fields set to ``point`` (``{"game.arms": 3}``) and, for rule #1, the
    categorical values ``rule_point``."""
    one = copy.deepcopy(spec)
    for field, value in point.items():
        table, key = field.split(".", 1)
        one[table][key] = value
    for key, value in (rule_point or {}).items():
        one["rule"][0][key] = value
    return one


def _swept_label(single: str, values: list[tuple[str, object]]) -> str:
    """The sweep's label of a single run's label ``inpo[eta=2]`` at ``values``: ``inpo[eta=2,game.arms=3]``."""
    if single.endswith("]"):
        return single[:-1] + "," + sweep_label("", values)[1:]
    return sweep_label(single, values)


def _assert_rows_equal(swept: pd.DataFrame, single: pd.DataFrame, values: list[tuple[str, object]]) -> None:
    """The rows of ``swept`` at ``values`` equal ``single`` (relabelled) in every metric, to 1e-12."""
    rows = swept
    for field, value in values:
        if field.startswith(("game.", "run.")):
            rows = rows[rows[field] == value]
    expected = single.assign(rule=[_swept_label(label, values) for label in single["rule"]])
    rows = rows[rows["rule"].isin(set(expected["rule"]))]
    keys = ["rule", "seed", "iteration"]
    rows = rows.sort_values(keys).reset_index(drop=True)
    expected = expected.sort_values(keys).reset_index(drop=True)
    assert len(rows) == len(expected) > 0
    assert rows["rule"].tolist() == expected["rule"].tolist()
    for column in metric_columns(single):
        np.testing.assert_allclose(rows[column], expected[column], rtol=0, atol=1e-12, err_msg=column)


def test_a_game_sweep_over_arms_and_tau_equals_the_runs_with_each_value_fixed(tmp_path):
    out = tmp_path / "sweep"
    table = run(EXACT, out=out)
    # columns say which values a row belongs to, after iteration (the rule's swept parameters first, empty in
    # rows of a rule that does not sweep them); no such column is taken for a metric
    assert list(table.columns[:6]) == ["rule", "seed", "iteration", "rule.eta", "game.arms", "game.tau"]
    assert set(METRIC_COLUMNS) <= set(metric_columns(table)) and "game.tau" not in metric_columns(table)
    assert "rule.eta" not in metric_columns(table)
    assert table.loc[table["rule"].str.startswith("mmd"), "rule.eta"].isna().all()
    assert set(table.loc[table["rule"].str.startswith("inpo[eta=6"), "rule.eta"]) == {6.0}
    assert sorted(set(table["rule"])) == sorted(
        f"{stem}[{inside}game.arms={arms},game.tau={tau:g}]"
        for stem, inside in (("inpo", "eta=2,"), ("inpo", "eta=6,"), ("mmd", ""))
        for arms in (3, 4)
        for tau in (0.05, 0.2)
    )
    for arms in (3, 4):
        for tau in (0.05, 0.2):
            single = run(_fixed(EXACT, {"game.arms": arms, "game.tau": tau}))
            _assert_rows_equal(table, single, [("game.arms", arms), ("game.tau", tau)])

    # the files: metrics.csv as returned, one complete run per point, columns in bounds and head-to-head
    stored = read_results_table(out)
    pd.testing.assert_frame_equal(stored, table, check_dtype=False, rtol=0, atol=1e-15)
    names = sorted(p.name for p in (out / "points").iterdir())
    assert names == ["game.arms=3,game.tau=0.05", "game.arms=3,game.tau=0.2", "game.arms=4,game.tau=0.05",
                     "game.arms=4,game.tau=0.2"]  # fmt: skip
    assert all((out / "points" / name / "metrics.csv").is_file() for name in names)
    headtohead = pd.read_csv(out / "headtohead.csv")
    assert {"game.arms", "game.tau"} <= set(headtohead.columns)
    assert set(headtohead["rule_a"]) == set(table["rule"])
    bounds = pd.read_csv(out / "bounds.csv")
    if not bounds.empty:
        assert {"game.arms", "game.tau"} <= set(bounds.columns)
        assert set(bounds["rule"]) <= set(table["rule"])

    # the manifest lists the sweep and says which τ each metric uses
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["field_sweep"] == [{"field": "game.arms", "values": [3, 4]},
                                       {"field": "game.tau", "values": [0.05, 0.2]}]  # fmt: skip
    assert len(manifest["points"]) == 4 and manifest["points"][0]["values"] == {"game.arms": 3, "game.tau": 0.05}
    # arms changes shapes: one group per value, its τ points in one vmapped call per rule table
    assert manifest["point_groups"] == [["game.arms=3,game.tau=0.05", "game.arms=3,game.tau=0.2"],
                                        ["game.arms=4,game.tau=0.05", "game.arms=4,game.tau=0.2"]]  # fmt: skip
    assert manifest["vmapped_calls"] == 2 * 2
    assert manifest["parsed_spec"]["game"]["tau"] == [0.05, 0.2]
    assert "row's game.tau column" in manifest["metric_tau"]["kl_to_nash"]
    assert manifest["metric_tau"]["exploitability"].startswith("τ = 0")
    assert manifest["metric_tau"]["suboptimality"].startswith("no τ")


def test_resume_reuses_every_point_and_a_changed_sweep_recomputes_only_new_points(tmp_path):
    spec = copy.deepcopy(EXACT)
    spec["game"] = {"kind": "random", "arms": 3, "tau": [0.05, 0.2]}
    out = tmp_path / "sweep"
    first = run(spec, out=out)
    messages = []
    again = run(spec, out=out, resume=True, progress=messages.append)
    pd.testing.assert_frame_equal(again, first)
    loaded = [m for m in messages if "already computed" in m]
    assert len(loaded) == 2 * 2  # two rule tables at each of the two points
    assert not any("rows in" in m for m in messages)  # nothing recomputed

    # drop one value, add another: the kept point is loaded, the new one computed, the dropped one removed
    spec["game"]["tau"] = [0.2, 0.5]
    messages = []
    changed = run(spec, out=out, resume=True, progress=messages.append)
    assert sum("already computed" in m for m in messages) == 2
    assert any("removed" in m and "game.tau=0.05" in m for m in messages)
    assert sorted(p.name for p in (out / "points").iterdir()) == ["game.tau=0.2", "game.tau=0.5"]
    kept = first[first["game.tau"] == 0.2].reset_index(drop=True)
    pd.testing.assert_frame_equal(changed[changed["game.tau"] == 0.2].reset_index(drop=True), kept)


def test_a_directory_switching_between_sweep_and_plain_runs_keeps_no_stale_results(tmp_path):
    spec = copy.deepcopy(EXACT)
    spec["game"] = {"kind": "random", "arms": 3, "tau": 0.2}
    out = tmp_path / "out"
    run(spec, out=out)
    plain_parts = sorted(p.name for p in (out / "parts").glob("*.csv"))
    assert plain_parts
    spec["game"]["tau"] = [0.05, 0.2]  # now a sweep: the plain run's top-level parts go
    messages = []
    run(spec, out=out, resume=True, progress=messages.append)
    assert not list((out / "parts").glob("*.csv"))
    assert sum("the spec now sweeps" in m for m in messages) == len(plain_parts)
    spec["game"]["tau"] = 0.2  # plain again: the sweep's point folders go
    messages = []
    table = run(spec, out=out, resume=True, progress=messages.append)
    assert not (out / "points").exists()
    assert sum("no longer sweeps" in m for m in messages) == 2
    assert "game.tau" not in table.columns


def test_game_tau_sweep_moves_the_rules_tau_and_the_metrics_target():
    spec = {
        "iterations": 8,
        "seeds": 2,
        "record_every": 4,
        "game": {"kind": "cyclic", "arms": 3, "strength": 0.6, "reference": "random", "tau": [0.1, 0.4]},
        "rule": [
            {"name": "inpo", "label": "inpo_follows", "eta": 3.0},
            {"name": "inpo", "label": "inpo_fixed", "eta": 3.0, "tau": 0.1},
        ],
    }
    parsed = parse_spec(spec)
    assert [p.point for p in parsed.points] == [(("game.tau", 0.1),), (("game.tau", 0.4),)]
    # a rule without its own τ follows the point's game.tau; a rule that gives τ keeps it
    assert [p.rules[0].parameters["tau"] for p in parsed.points] == [0.1, 0.4]
    assert [p.rules[1].parameters["tau"] for p in parsed.points] == [0.1, 0.1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = run(spec)
    # the fixed-τ rule at game.tau = 0.4 is scored against the game's τ, and the run says so, once, at the end
    said = [str(w.message) for w in caught if issubclass(w.category, DegenerateRunWarning)]
    fixed = [m for m in said if "game's τ-regularised Nash" in m]
    assert len(fixed) == 1 and fixed[0].startswith("at game.tau=0.4: ") and "inpo_fixed" in fixed[0], said
    assert "inpo_follows" not in fixed[0]
    for tau in (0.1, 0.4):
        _assert_rows_equal(table, run(_fixed(spec, {"game.tau": tau})), [("game.tau", tau)])
    final = table[table["iteration"] == 8].groupby("game.tau")["kl_to_nash"].mean()
    assert final[0.1] != final[0.4]


def test_a_rule_tau_sweep_says_its_metrics_use_the_games_tau():
    spec = {
        "iterations": 4,
        "seeds": 1,
        "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 2.0, "tau": [0.1, 0.3]}],
    }
    with pytest.warns(DegenerateRunWarning, match=r"sweeps its τ over 0.1, 0.3 .*sweep game.tau instead"):
        run(spec)


def test_a_categorical_rule_parameter_runs_as_separate_rule_tables():
    game = {"kind": "bradley_terry", "rewards": "random", "arms": 4, "tau": 0.1}
    rules = [{"name": "apo", "beta": [0.5, 1.0], "schedule": ["constant", "nesterov"]}]
    spec = {"iterations": 10, "seeds": 2, "record_every": 5, "game": game, "rule": rules}
    parsed = parse_spec(spec)
    assert [r.label for r in parsed.rules] == ["apo[schedule=constant]", "apo[schedule=nesterov]"]
    table = run(spec)
    assert sorted(set(table["rule"])) == [
        "apo[beta=0.5,schedule=constant]",
        "apo[beta=0.5,schedule=nesterov]",
        "apo[beta=1,schedule=constant]",
        "apo[beta=1,schedule=nesterov]",
    ]
    for schedule in ("constant", "nesterov"):
        single = run(_fixed(spec, {}, {"schedule": schedule}))
        _assert_rows_equal(table, single, [("schedule", schedule)])
    a = table[table["rule"] == "apo[beta=1,schedule=constant]"]["kl_to_nash"].to_numpy()
    b = table[table["rule"] == "apo[beta=1,schedule=nesterov]"]["kl_to_nash"].to_numpy()
    assert not np.allclose(a, b)


SAMPLED = {
    "iterations": 4,
    "seeds": 2,
    "game": {"kind": "cyclic", "arms": 3, "tau": 0.1},
    "rule": [{"name": "sppo", "eta": 1.0}],  # a rule that reads win rates: both schemes give them
    "run": {
        "mode": "sampled",
        "pairs_per_iteration": [20, 60],
        "pair_scheme": ["lambda_p", "exact_win_rates"],
        "inner_steps": 3,
    },
}


def test_sampled_sweep_over_pairs_per_iteration_and_pair_scheme(tmp_path):
    out = tmp_path / "sampled"
    table = run(SAMPLED, out=out)
    assert list(table.columns[3:5]) == ["run.pairs_per_iteration", "run.pair_scheme"]
    for pairs in (20, 60):
        for scheme in ("lambda_p", "exact_win_rates"):
            values = [("run.pairs_per_iteration", pairs), ("run.pair_scheme", scheme)]
            single = run(_fixed(SAMPLED, dict(values)))
            _assert_rows_equal(table, single, values)
    queries = table[(table["iteration"] == 4) & (table["run.pair_scheme"] == "lambda_p")]
    assert sorted(set(queries["queries"])) == [4 * 20, 4 * 60]
    # metrics.csv has a column of names: it is read back (and plotted) as a prefsim table
    stored = read_results_table(out)
    assert stored["run.pair_scheme"].tolist() == table["run.pair_scheme"].tolist()
    assert "run.pairs_per_iteration" not in metric_columns(stored)
    # a sweep stopped before its combined files: the points' parts are read (their labels name the point)
    (out / "metrics.csv").unlink()
    assert set(read_results_table(out)["rule"]) == set(table["rule"])


def test_points_that_differ_only_in_game_values_share_one_compiled_function():
    spec = {
        "iterations": 4,
        "seeds": 2,
        "game": {"kind": "cyclic", "arms": 3, "tau": 0.1, "reference": "random", "strength": [0.2, 0.5, 0.9]},
        "rule": [{"name": "inpo", "eta": 2.0}],
    }
    before = set(shared_engine.COMPILED_RUNS)
    table = run(spec)
    new = [key for key in set(shared_engine.COMPILED_RUNS) - before if key[0][0] != "exact-points-state-check"]
    assert len(new) <= 1  # one jitted function for 3 points (besides the traced check of a shared state)
    final = table[table["iteration"] == 4].groupby("game.strength")["exploitability"].mean()
    assert len(set(final.round(12))) == 3


def test_plot_of_a_game_sweep_labels_the_curves_with_the_values(tmp_path):
    spec = {
        "name": "arms-sweep",
        "iterations": 6,
        "seeds": 2,
        "game": {"kind": "cyclic", "arms": [3, 5], "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 2.0}],
        "plot": {"metrics": ["kl_to_nash"], "rules": ["inpo"]},
    }
    out = tmp_path / "arms"
    run(spec, out=out)
    assert main(["plot", str(out), "--quiet"]) == 0
    assert (out / "kl_to_nash.png").is_file()
    assert not (out / "game.arms.png").exists()  # a swept field is not drawn as a metric
    table = read_results_table(out)
    figure = plotting.metric_figure(table, "kl_to_nash", plotting.stats.rules_of(table), PlotSpec())
    texts = [text.get_text() for cell in figure.subfigs for legend in cell.legends for text in legend.get_texts()]
    assert any(text.startswith("inpo[game.arms=3]") for text in texts)
    assert any(text.startswith("inpo[game.arms=5]") for text in texts)
    assert figure_plan.figure_title(json.loads((out / "manifest.json").read_text())).startswith(
        "arms-sweep — cyclic, K = [3, 5]"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(iterations=[10, 20]), r"iterations: cannot be swept .*largest T"),
        (lambda s: s.update(precision=["float64", "float32"]), r"precision: cannot be swept"),
        (lambda s: s.update(record_every=[1, 2]), r"record_every: cannot be swept"),
        (lambda s: s.update(run={"mode": ["exact", "sampled"]}), r"run.mode: cannot be swept .*prefsim compare"),
        (lambda s: s["game"].update(arms=[]), r"game.arms: an empty list sweeps nothing"),
        (lambda s: s["game"].update(arms=[3, 3]), r"game.arms: the sweep repeats the value\(s\) 3"),
        (
            lambda s: s["game"].update(tau=[0.1234561, 0.1234562]),
            r"game.tau: the values 0.1234561, 0.1234562 all show as 0.123456 in labels .*6 significant digits",
        ),
        (lambda s: s["game"].update(tau=[[0.1], [0.2]]), r"game.tau: a sweep is a list of numbers or names"),
        (lambda s: s["game"].update(arms=[3, 0]), r"sweep point game.arms=0: .*arms"),
        (lambda s: s["rule"][0].update(name=["inpo", "mmd"]), r"name cannot be a list"),
        (
            lambda s: s.update(run={"pairs_per_iteration": [10, 20]}),
            r"run.pairs_per_iteration = \[10, 20\] is read at no point of the sweep: it is used only with mode = "
            r"\"sampled\" \(every point has mode = \"exact\"\)",
        ),
        (
            lambda s: s.update(rule=[{"name": "apo", "schedule": ["constant", "nesterov"], "alpha": 0.5}]),
            r"alpha is not used with schedule = \"nesterov\" \(.*the schedule sweep includes nesterov",
        ),
        (lambda s: s["rule"][0].update(form=["log_space", "log_space"]), r"repeats the value\(s\) log_space"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(change, message):
    spec = {
        "iterations": 5,
        "game": {"kind": "bradley_terry", "rewards": "random", "arms": 3},
        "rule": [{"name": "apo"}],
    }
    change(spec)
    with pytest.raises(PrefsimError, match=message):
        parse_spec(spec)


def test_cli_reports_a_bad_sweep_as_an_error_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('iterations = [5, 10]\n[game]\nkind = "cyclic"\narms = 3\n[[rule]]\nname = "inpo"\n')
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: iterations: cannot be swept") and "Traceback" not in error


def test_a_sweep_says_each_points_warning_once_with_the_points_it_holds_at(tmp_path):
    """A warning its points say alike (their labels aside) is said once with the points it holds at, or
    ``at every point of the sweep``; the points' manifests keep their own messages."""
    spec = {
        "iterations": 30,
        "seeds": 10,
        "game": {"kind": "random", "arms": [3, 4, 5], "tau": 0.1},
        "rule": [{"name": "comal"}, {"name": "mmd", "eta": 1.0}],
    }
    said: list[str] = []
    run(spec, tmp_path / "sweep", progress=said.append)
    warned = [m.removeprefix("warning: ") for m in said if m.startswith("warning: ")]
    moved = [m for m in warned if "moves its reference" in m]
    assert moved == [
        "at every point of the sweep: no INPO Theorem 3 bound drawn for comal: its theorem is about a fixed reference "
        "and this rule moves its reference to π_t every 12 iterations (reference_every)."
    ]
    assert not any("[game.arms=" in m for m in warned), warned  # the labels lose the point's values
    assert len(warned) == len(set(warned))
    point = json.loads((tmp_path / "sweep" / "points" / "game.arms=4" / "manifest.json").read_text())
    assert any("comal[game.arms=4]" in m and "moves its reference" in m for m in point["warnings"])
    # a message said at some points only names them
    names = sweep_runs.PointWarnings(None, ["game.arms=3", "game.arms=4", "game.arms=5"])
    names("warning: no theory bound drawn for mmd[eta=2,game.arms=4]: η too large.")
    names("warning: no theory bound drawn for mmd[eta=2,game.arms=5]: η too large.")
    names("warning: no theory bound drawn for mmd[game.arms=5,eta=1]: η too large.")
    names("warning: 4 seeds are few.")
    names("warning: 4 seeds are few.")
    assert names.merged() == [
        "at game.arms=4; game.arms=5: no theory bound drawn for mmd[eta=2]: η too large.",
        "at game.arms=5: no theory bound drawn for mmd[eta=1]: η too large.",
        "4 seeds are few.",
    ]


def test_point_names_and_labels():
    assert point_name([("game.tau", 0.1), ("run.self_comparison", False)]) == "game.tau=0.1,run.self_comparison=false"
    assert sweep_label("inpo", []) == "inpo"
    assert sweep_label("inpo", [("eta", 2.0), ("game.arms", 5)]) == "inpo[eta=2,game.arms=5]"
    with pytest.raises(PrefsimError, match="cannot name its result folder"):
        point_name([("run.pair_scheme", "a b")])


def test_merging_into_a_directory_of_the_other_kind_removes_its_stale_results(tmp_path):
    plain = copy.deepcopy(EXACT)
    plain["game"] = {"kind": "random", "arms": 3, "tau": 0.2}
    sweep = copy.deepcopy(plain)
    sweep["game"]["tau"] = [0.05, 0.2]
    run(sweep, tmp_path / "sweep-shard", shard=(0, 1))
    run(plain, tmp_path / "plain-shard", shard=(0, 1))
    merged = tmp_path / "merged"
    merge_sweep_shards([tmp_path / "sweep-shard"], merged)
    assert (merged / "points").is_dir()
    messages = []
    merge_shards([tmp_path / "plain-shard"], merged, progress=messages.append)
    assert not (merged / "points").exists()
    assert sum("the spec does not sweep" in m for m in messages) == 2
    merge_sweep_shards([tmp_path / "sweep-shard"], merged, progress=messages.append)
    assert not list((merged / "parts").glob("*.csv")) and (merged / "points").is_dir()
    assert any("the spec sweeps, and each point keeps its parts in its folder" in m for m in messages)
