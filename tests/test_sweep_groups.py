"""Sweeps over [game] values as one vmapped call per rule table (sim.point_groups), the rule.<parameter>
columns of rule-level sweeps, and sharded field sweeps merged byte for byte (sim.sweep_runs, sim.sweep_merge)."""

import copy
import dataclasses
import json
import tomllib

import numpy as np
import pandas as pd
import pytest

import sim.point_groups as point_groups_module
from bandits.errors import PrefsimError
from sim import limits, shared_engine
from sim.cli import main
from sim.experiment import prepare_run, run
from sim.point_groups import run_rule_over_points, varying_parameters
from sim.point_plan import point_groups
from sim.sampled import engine as sampled_engine
from sim.shards import check_shard_count
from sim.spec import parse_spec
from sim.stats import metric_columns
from sim.summary import summary_frame
from sim.sweep_runs import sweep_plan

GROUPED = {
    "iterations": 9,
    "seeds": 2,
    "record_every": 3,
    "game": {"kind": "cyclic", "arms": 3, "strength": 0.7, "tau": [0.05, 0.2], "reference": ["uniform", "random"]},
    "rule": [
        {"name": "inpo", "eta": [2.0, 6.0]},  # τ follows each point's game.tau: a traced per-point value
        {"name": "mmd", "label": "mmd_fixed", "eta": 0.3, "tau": 0.1},  # the same rule at every point
    ],
}


def _fixed(spec: dict, **game) -> dict:
    one = copy.deepcopy(spec)
    one["game"].update(game)
    return one


def _rows(table: pd.DataFrame, **values) -> pd.DataFrame:
    for field, value in values.items():
        table = table[table[f"game.{field}"] == value]
    return table.reset_index(drop=True)


def test_points_that_differ_in_game_values_run_as_one_vmapped_call_per_rule_table(recwarn):
    spec = parse_spec(GROUPED)
    assert point_groups(spec) == [(0, 1, 2, 3)]
    assert varying_parameters([point.rules[0] for point in spec.points]) == ["tau"]
    assert varying_parameters([point.rules[1] for point in spec.points]) == []
    before = set(shared_engine.COMPILED_RUNS)
    messages = []
    table = run(GROUPED, progress=messages.append)
    new = [key for key in set(shared_engine.COMPILED_RUNS) - before if key[0][0] == "exact-points"]
    assert len(new) == 2  # one compiled function per rule table for the four points
    assert sum("4 points in one vmapped call" in m for m in messages) == 2
    assert any("4 point(s) in 1 group(s), 2 vmapped call(s)" in m for m in messages)
    for tau in (0.05, 0.2):
        for reference in ("uniform", "random"):
            single = run(_fixed(GROUPED, tau=tau, reference=reference))
            rows = _rows(table, tau=tau, reference=reference)
            assert len(rows) == len(single) > 0
            assert [label.split("[")[0] for label in rows["rule"]] == [label.split("[")[0] for label in single["rule"]]
            for column in metric_columns(single):
                np.testing.assert_allclose(rows[column], single[column], rtol=0, atol=1e-12, err_msg=column)
    # the rule τ followed the point's τ (not one value for the group)
    last = table[(table["iteration"] == 9) & table["rule"].str.startswith("inpo[eta=2,")]
    assert last.groupby("game.tau")["kl_to_nash"].mean().nunique() == 2


@pytest.mark.parametrize(
    ("game", "run_table", "groups"),
    [
        ({"kind": "cyclic", "arms": [3, 4], "tau": [0.1, 0.2]}, {}, [(0, 1), (2, 3)]),  # arms: shapes
        ({"kind": ["cyclic", "random"], "arms": 3, "tau": 0.1}, {}, [(0,), (1,)]),  # kind: separate runs
        ({"kind": "cyclic", "arms": 3, "tau": 0.1}, {"mode": "sampled", "inner_steps": [2, 3]}, [(0,), (1,)]),
        ({"kind": "cyclic", "arms": 3, "tau": [0.1, 0.2]}, {"mode": "sampled", "inner_steps": 2}, [(0, 1)]),
    ],
)
def test_fields_that_change_shapes_kind_or_run_settings_stay_separate_runs(game, run_table, groups):
    spec = {"iterations": 3, "game": game, "rule": [{"name": "inpo", "eta": 2.0}], "run": run_table}
    assert point_groups(parse_spec(spec)) == groups


SAMPLED_GROUPED = {
    "iterations": 4,
    "seeds": 2,
    "record_every": 2,
    "game": {"kind": "random", "arms": 3, "tau": [0.05, 0.2], "reference": "random"},  # P differs per seed
    "rule": [
        {"name": "inpo", "eta": [2.0, 6.0]},  # τ follows each point's game.tau
        {"name": "online_ipo", "label": "ipo_fixed", "tau": 0.1},  # the same rule at every point
    ],
    "run": {"mode": "sampled", "pairs_per_iteration": 8, "inner_steps": 2},  # Adam: amplifies rounding
}


def test_sampled_points_that_differ_in_game_values_run_as_one_call_with_their_own_draws(recwarn):
    spec = parse_spec(SAMPLED_GROUPED)
    assert point_groups(spec) == [(0, 1)]
    before = set(shared_engine.COMPILED_RUNS)
    messages = []
    table = run(SAMPLED_GROUPED, progress=messages.append)
    new = [key for key in set(shared_engine.COMPILED_RUNS) - before if key[0][0] == "sampled-points"]
    assert len(new) == 2  # one compiled function per rule table for both points
    assert sum("2 points in one vmapped call" in m for m in messages) == 2
    for tau in (0.05, 0.2):
        single = run(_fixed(SAMPLED_GROUPED, tau=tau))  # the point's own run: its own keys, τ a constant
        rows = _rows(table, tau=tau)
        assert len(rows) == len(single) > 0
        assert {"queries", "distance_to_exact", "loss"} <= set(metric_columns(single))
        for column in metric_columns(single):
            np.testing.assert_allclose(rows[column], single[column], rtol=0, atol=1e-12, err_msg=column)
    last = table[(table["iteration"] == 4) & table["rule"].str.startswith("inpo[eta=6,")]
    assert last.groupby("game.tau")["loss"].mean().nunique() == 2  # each point ran with its own τ


def test_a_grouped_sampled_run_goes_in_time_blocks_with_progress_and_the_same_numbers(monkeypatch):
    spec = parse_spec({**SAMPLED_GROUPED, "rule": SAMPLED_GROUPED["rule"][:1]})
    points = list(spec.points)
    inputs = [prepare_run(point) for point in points]
    rules = [point.rules[0] for point in points]
    record = inputs[0].record
    whole = run_rule_over_points(rules, points, inputs, record)
    monkeypatch.setattr(sampled_engine, "SAMPLED_BLOCK_WORK", 1.0)  # one iteration per block
    reported = []
    blocked = run_rule_over_points(rules, points, inputs, record, lambda done, total: reported.append((done, total)))
    assert reported == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for one, other in zip(whole, blocked):
        one.attrs, other.attrs = {}, {}
        pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_a_grouped_exact_run_goes_in_time_blocks_with_progress_and_the_same_numbers(monkeypatch):
    spec = parse_spec(GROUPED)
    points = list(spec.points)
    inputs = [prepare_run(point) for point in points]
    reported = []
    for table in range(len(spec.rules)):
        rules = [point.rules[table] for point in points]
        record = inputs[0].record
        whole = run_rule_over_points(rules, points, inputs, record)
        with monkeypatch.context() as patch:
            patch.setattr(point_groups_module, "block_updates", lambda points, seeds, arms, shared=False: 3)
            reported.clear()
            blocked = run_rule_over_points(rules, points, inputs, record, lambda done, total: reported.append(done))
        assert reported == [3, 6, 9]  # 9 updates: blocks of 3, a report after each
        for one, other in zip(whole, blocked):
            one.attrs, other.attrs = {}, {}
            pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_a_trajectory_the_same_at_every_point_is_carried_once_in_blocks(monkeypatch):
    # a rule with its own τ on one cyclic game: only the metrics' targets differ between the τ points
    spec = parse_spec({"iterations": 30, "seeds": 2, "record_every": 5,
                       "game": {"kind": "cyclic", "arms": 5, "tau": [0.05, 0.1]},
                       "rule": [{"name": "mmd", "eta": 0.3, "tau": 0.1}, {"name": "inpo", "eta": 0.5}]})  # fmt: skip
    points = list(spec.points)
    inputs = [prepare_run(point) for point in points]
    for table, carried in ((0, 1), (1, 4)):  # inpo's τ follows each point's: a state per point × seed
        rules = [point.rules[table] for point in points]
        whole = run_rule_over_points(rules, points, inputs, inputs[0].record)
        sizes = []

        def three(points, seeds, arms, shared=False, sizes=sizes):
            sizes.append(seeds)
            return 3  # blocks of 3 cut the segments between the recordings (every 5)

        with monkeypatch.context() as patch:
            patch.setattr(point_groups_module, "block_updates", three)
            blocked = run_rule_over_points(rules, points, inputs, inputs[0].record)
        assert sizes == [carried]
        if carried == 1:  # one state, as vmap kept it in one call: the same bits in any blocks
            for one, other in zip(whole, blocked):
                one.attrs, other.attrs = {}, {}
                pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_a_rule_table_whose_static_settings_differ_between_points_splits_the_group():
    spec = parse_spec({"iterations": 3, "game": {"kind": "cyclic", "arms": 3, "tau": [0.1, 0.2, 0.3]},
                       "rule": [{"name": "inpo", "eta": 2.0}]})  # fmt: skip
    assert point_groups(spec) == [(0, 1, 2)]
    # a non-float parameter (an int, a name) fixes the compiled program: a point that differs runs alone
    points = list(spec.points)
    rule = points[1].rules[0]
    points[1] = dataclasses.replace(
        points[1], rules=(dataclasses.replace(rule, parameters={**rule.parameters, "k": 3}),)
    )
    assert point_groups(dataclasses.replace(spec, points=tuple(points))) == [(0, 2), (1,)]


def test_resume_works_per_point_inside_a_group(tmp_path, recwarn):
    out = tmp_path / "sweep"
    first = run(GROUPED, out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["point_groups"] == [[p["name"] for p in manifest["points"]]] and manifest["vmapped_calls"] == 2
    # one point's inpo part is lost: --resume loads the other three and recomputes that point alone
    lost = "game.tau=0.2,game.reference=random"
    (out / "points" / lost / "parts" / "inpo[game.tau=0.2,game.reference=random].csv").unlink()
    messages = []
    again = run(GROUPED, out=out, resume=True, progress=messages.append)
    assert sum("already computed" in m for m in messages) == 4 * 2 - 1
    assert not any("vmapped call," in m for m in messages)
    assert sum(" rows in " in m for m in messages) == 1
    recomputed = again["rule"].str.contains("game.tau=0.2,game.reference=random") & again["rule"].str.startswith("inpo")
    pd.testing.assert_frame_equal(again[~recomputed], first[~recomputed])
    for column in metric_columns(first):
        np.testing.assert_allclose(again.loc[recomputed, column], first.loc[recomputed, column], rtol=0, atol=1e-12)


def test_rule_level_sweeps_get_columns_in_metrics_summary_and_headtohead(tmp_path, recwarn):
    spec = {
        "iterations": 4,
        "seeds": 2,
        "game": {"kind": "bradley_terry", "rewards": "random", "arms": 3, "tau": 0.1},
        "rule": [
            {"name": "inpo", "eta": [0.5, 2.0]},
            {"name": "apo", "beta": 1.0, "schedule": ["constant", "nesterov"]},
        ],
    }
    out = tmp_path / "rules"
    table = run(spec, out=out)
    assert list(table.columns[:5]) == ["rule", "seed", "iteration", "rule.eta", "rule.schedule"]
    assert "rule.eta" not in metric_columns(table)
    by_rule = table.drop_duplicates("rule").set_index("rule")
    assert by_rule.loc["inpo[eta=0.5]", "rule.eta"] == 0.5 and np.isnan(
        by_rule.loc["apo[schedule=nesterov]", "rule.eta"]
    )
    assert by_rule.loc["apo[schedule=nesterov]", "rule.schedule"] == "nesterov"
    stored = pd.read_csv(out / "metrics.csv")
    assert list(stored.columns[:5]) == list(table.columns[:5])
    summary = summary_frame(table)
    assert list(summary.columns[:3]) == ["rule", "rule.eta", "rule.schedule"]
    assert set(summary.loc[summary["rule"] == "inpo[eta=2]", "rule.eta"]) == {2.0}
    duels = pd.read_csv(out / "headtohead.csv")
    assert list(duels.columns[:6]) == ["rule_a", "rule_b", "rule_a.eta", "rule_a.schedule", "rule_b.eta",
                                       "rule_b.schedule"]  # fmt: skip
    row = duels[(duels["rule_a"] == "inpo[eta=0.5]") & (duels["rule_b"] == "apo[schedule=constant]")].iloc[0]
    assert row["rule_a.eta"] == 0.5 and row["rule_b.schedule"] == "constant"
    # the figures read a table with these columns (no rule.* figure)
    assert main(["plot", str(out), "--quiet"]) == 0
    assert not list(out.glob("rule.*.png"))


SHARDED = """
name = "sharded-sweep"
iterations = 6
seeds = 2
record_every = 3

[game]
kind = "random"
arms = [3, 4]
tau = [0.1, 0.3]

[[rule]]
name = "inpo"
eta = [2.0, 5.0]

[[rule]]
name = "mmd"
eta = 0.2
"""

COMPARED = ("metrics.csv", "bounds.csv", "headtohead.csv", "summary.csv")


def test_a_field_sweep_shards_and_merges_to_the_unsharded_sweep_byte_for_byte(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(SHARDED)
    spec = parse_spec(tomllib.loads(SHARDED))
    assert [len(units) for units in sweep_plan(spec, 3)] == [1, 1, 2]  # inpo units cost 2 grid points
    full = tmp_path / "full"
    assert main(["run", str(path), "--out", str(full), "--quiet", "--no-plots"]) == 0
    for count in (1, 2, 3):
        shards = [tmp_path / f"{count}" / f"shard-{i}" for i in range(count)]
        for index, shard in enumerate(shards):
            assert main(["run", str(path), "--out", str(shard), "--shard", f"{index}/{count}", "--quiet"]) == 0
            manifest = json.loads((shard / "manifest.json").read_text())
            assert manifest["shard"]["points"] is True and manifest["shard"]["index"] == index
            assert not (shard / "bounds.csv").exists() and not (shard / "headtohead.csv").exists()
        merged = tmp_path / f"merged-{count}"
        assert main(["merge", *map(str, reversed(shards)), "--out", str(merged), "--quiet", "--no-plots"]) == 0
        for name in COMPARED:
            assert (full / name).read_bytes() == (merged / name).read_bytes(), (count, name)
        for name in ("fingerprint", "point_groups", "vmapped_calls", "warnings", "complete"):
            assert (
                json.loads((merged / "manifest.json").read_text())[name]
                == json.loads((full / "manifest.json").read_text())[name]
            ), name
        assert sorted(p.name for p in (merged / "points").iterdir()) == sorted(
            p.name for p in (full / "points").iterdir()
        )
    # a missing shard and too many shards are clear errors
    assert main(["merge", str(tmp_path / "3" / "shard-0"), str(tmp_path / "3" / "shard-2"), "--out",
                 str(tmp_path / "bad"), "--quiet"]) == 2  # fmt: skip
    assert "missing shard(s): 1/3" in capsys.readouterr().err
    with pytest.raises(PrefsimError, match="at most 4 shards"):
        sweep_plan(spec, 5)


SAMPLED_SWEEP = """
iterations = 3
seeds = 2

[game]
kind = "cyclic"
arms = 3
tau = [0.1, 0.2]

[[rule]]
name = "inpo"
eta = 5.0

[run]
mode = "sampled"
pairs_per_iteration = 8
inner_steps = [2, 3]
"""


def test_a_sampled_sweep_shards_by_group_and_a_killed_shard_resumes(tmp_path, capsys):
    path = tmp_path / "sampled.toml"
    path.write_text(SAMPLED_SWEEP)
    spec = parse_spec(tomllib.loads(SAMPLED_SWEEP))
    assert point_groups(spec) == [(0, 2), (1, 3)]  # the τ values group; run.inner_steps splits: one unit each
    check_shard_count(spec, 2)
    with pytest.raises(PrefsimError, match="at most 2 shards"):
        check_shard_count(spec, 3)  # what `prefsim launch` checks before submitting
    assert main(["run", str(path), "--out", str(tmp_path / "refused"), "--shard", "0/3", "--quiet"]) == 2
    assert "at most 2 shards" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()  # refused before its directory (lock, parts/) was made
    full = tmp_path / "full"
    assert main(["run", str(path), "--out", str(full), "--quiet", "--no-plots"]) == 0
    shards = [tmp_path / f"shard-{i}" for i in range(2)]
    for index, shard in enumerate(shards):
        assert main(["run", str(path), "--out", str(shard), "--shard", f"{index}/2", "--quiet"]) == 0
    # shard 1 was killed after its part: the point's files are gone; --resume loads the part, recomputes nothing
    for name in ("game.tau=0.1,run.inner_steps=3", "game.tau=0.2,run.inner_steps=3"):
        for file in ("metrics.csv", "manifest.json"):
            (shards[1] / "points" / name / file).unlink()
    (shards[1] / "manifest.json").unlink()
    assert main(["merge", *map(str, shards), "--out", str(tmp_path / "early"), "--quiet"]) == 2
    assert "no finished shard" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(shards[1]), "--shard", "1/2", "--resume"]) == 0
    said = capsys.readouterr().out
    assert said.count("already computed") == 2 and "vmapped call," not in said
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--out", str(merged), "--quiet", "--no-plots"]) == 0
    for name in COMPARED:
        assert (full / name).read_bytes() == (merged / name).read_bytes(), name


def test_a_sweep_with_seed_blocks_runs_points_one_by_one_and_merges_byte_for_byte(tmp_path):
    text = SHARDED.replace("seeds = 2", "seeds = 3").replace("arms = [3, 4]", "arms = 3") + "\n[run]\nseed_block = 2\n"
    path = tmp_path / "blocked.toml"
    path.write_text(text)
    spec = parse_spec(tomllib.loads(text))
    assert point_groups(spec) == [(0,), (1,)]  # seed blocks: points are not stacked into one call
    full = tmp_path / "full"
    assert main(["run", str(path), "--out", str(full), "--quiet", "--no-plots"]) == 0
    assert sorted(p.name for p in (full / "points" / "game.tau=0.1" / "parts").glob("*.csv")) == [
        "inpo[game.tau=0.1]@block-0.csv",
        "inpo[game.tau=0.1]@block-1.csv",
        "mmd[game.tau=0.1]@block-0.csv",
        "mmd[game.tau=0.1]@block-1.csv",
    ]
    shards = [tmp_path / f"shard-{i}" for i in range(2)]
    for index, shard in enumerate(shards):
        assert main(["run", str(path), "--out", str(shard), "--shard", f"{index}/2", "--quiet"]) == 0
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--out", str(merged), "--quiet", "--no-plots"]) == 0
    for name in COMPARED:
        assert (full / name).read_bytes() == (merged / name).read_bytes(), name
    with pytest.raises(PrefsimError, match="seed_block: cannot be swept"):
        parse_spec({**tomllib.loads(text), "run": {"seed_block": [1, 2]}})


def test_a_sweep_group_says_its_memory_once_for_its_points_together():
    """Not also once per point and once for the first point's spec, which understated what the group holds."""
    said = []
    spec = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "random", "arms": 3, "tau": [0.1, 0.2]},
        "rule": [{"name": "inpo", "eta": 1.0}],
    }
    run(spec, progress=said.append)
    memory = [line for line in said if "memory:" in line]
    assert len(memory) == 1 and memory[0].startswith("group of 2 points × 2 seeds: memory: at least"), memory


def test_a_sweep_group_that_cannot_fit_is_refused_before_any_group_runs(monkeypatch, tmp_path):
    """Every group's memory is checked at the start: a later group too large for the machine is refused naming
    its points, before the groups before it have run (they did, then the sweep stopped at the large one)."""
    spec = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "random", "arms": [3, 200], "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 1.0}],
    }
    small, large = (sum(limits.memory_estimate(point).values()) for point in parse_spec(spec).points)
    monkeypatch.setattr(limits, "available_memory", lambda: (small + large) // 2)
    said = []
    with pytest.raises(PrefsimError, match=r"sweep group 2/2 \(game\.arms=200\): memory: this run needs"):
        run(spec, out=tmp_path / "sweep", progress=said.append)
    assert not [line for line in said if "sweep group" in line or "rows in" in line], said
    assert not (tmp_path / "sweep" / "points").exists()
