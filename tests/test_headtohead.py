"""The head-to-head table: W(A, B) = mean over seeds of π_Aᵀ P_s π_B for the final policies, with CIs."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import sim
from bandits.games import build_game
from sim import headtohead, stats
from sim.cli import main as prefsim
from sim.diagnostics import DegenerateRunWarning
from sim.figure_plan import HEADTOHEAD, plan_figures
from sim.game import game_from_instance
from sim.headtohead import headtohead_table, win_rates_per_seed
from sim.plotting import HEATMAP_MAX_LABELS, draw_job_figure, headtohead_figure, plot_headtohead
from sim.rules import build_rule, resolve_parameters
from sim.spec import parse_spec


def _final_policy(name, given, spec, seed, iterations):
    game = game_from_instance(build_game(spec.game, seed), jnp.float64)
    rule = build_rule(name, resolve_parameters(name, given, float(spec.game.tau)))
    state = rule.init(game)
    for _ in range(iterations):
        state = rule.update(state, game)
    return np.exp(np.asarray(state.log_policy)), np.asarray(game.preference)


def test_exact_run_writes_the_closed_form_table(tmp_path):
    raw = {
        "iterations": 40,
        "seeds": 3,
        "game": {"kind": "random", "arms": 4, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": 0.5}, {"name": "sppo", "eta": 1.0}, {"name": "dno", "eta": 2.0}],
    }
    table = sim.run(raw, out=tmp_path / "run")
    stored = pd.read_csv(tmp_path / "run" / "headtohead.csv")
    pd.testing.assert_frame_equal(
        stored, pd.DataFrame(table.attrs["headtohead"]), check_exact=False, rtol=1e-12, atol=1e-15
    )
    spec = parse_spec(raw)
    rules = [(r["name"], {k: v for k, v in r.items() if k != "name"}) for r in raw["rule"]]
    finals = {name: [_final_policy(name, given, spec, s, 40) for s in spec.seeds] for name, given in rules}
    for row in stored.itertuples():
        per_seed = [pa @ preference @ pb for (pa, preference), (pb, _) in zip(finals[row.rule_a], finals[row.rule_b])]
        assert abs(row.win_rate - np.mean(per_seed)) < 1e-12
        assert row.ci_lower <= row.win_rate <= row.ci_upper and row.seeds == 3
    wide = stored.pivot(index="rule_a", columns="rule_b", values="win_rate")
    np.testing.assert_allclose(wide.to_numpy() + wide.to_numpy().T, 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(wide.to_numpy()), 0.5, atol=1e-12)
    # a resumed run reads the stored final policies and gives the same table
    again = sim.run(raw, out=tmp_path / "run", resume=True)
    pd.testing.assert_frame_equal(
        pd.DataFrame(again.attrs["headtohead"]), stored, check_exact=False, rtol=1e-12, atol=1e-15
    )
    # tables of several runs concatenate (their attrs are plain data pandas can compare)
    assert len(pd.concat([table, again], ignore_index=True)) == 2 * len(table)
    # pandas deep-copies attrs into every frame an operation makes: the record is shared, not copied (a
    # 100-label table as lists made each copy cost 60 ms and a run's warnings 55 s)
    chunk = next(iter(table.groupby("rule")))[1]
    assert chunk.attrs["headtohead"] is table.attrs["headtohead"] and table[["seed"]].attrs == table.attrs


def test_contexts_are_weighted_by_their_probabilities():
    rng = np.random.default_rng(0)
    seeds, contexts, arms = 2, 3, 4
    policies = rng.dirichlet(np.ones(arms), size=(2, seeds, contexts))
    raw = rng.uniform(size=(seeds, contexts, arms, arms))
    preference = (raw + 1 - np.swapaxes(raw, -1, -2)) / 2
    weights = np.array([0.2, 0.3, 0.5])
    got = win_rates_per_seed(policies[0], policies[1], preference, weights)
    for s in range(seeds):
        expected = sum(weights[x] * policies[0, s, x] @ preference[s, x] @ policies[1, s, x] for x in range(contexts))
        assert abs(got[s] - expected) < 1e-14
    table = headtohead_table({"a": policies[0], "b": policies[1]}, preference, weights)
    assert list(table.rule_a) == ["a", "a", "b", "b"]


def test_sampled_run_has_a_table_too(tmp_path):
    """The sampled run's table is W(A, B) = mean over seeds of π_Aᵀ P_s π_B for the stored final policies."""
    raw = {
        "iterations": 3,
        "seeds": 2,
        "game": {"kind": "random", "arms": 3, "tau": 0.2},
        "rule": [{"name": "inpo", "eta": 1.0}, {"name": "online_ipo"}],
        "run": {"mode": "sampled", "pairs_per_iteration": 100, "inner_steps": 10},
    }
    table = sim.run(raw, out=tmp_path / "run")
    headtohead = pd.DataFrame(table.attrs["headtohead"])
    assert len(headtohead) == 4
    spec = parse_spec(raw)
    finals = {}
    for label in ("inpo", "online_ipo"):
        with np.load(tmp_path / "run" / "final_policies" / f"{label}.npz") as stored:
            policies = stored["label_0"]  # (seeds, contexts, K): the game is one context
        assert policies.shape == (2, 1, 3)
        finals[label] = policies[:, 0]
    preferences = [np.asarray(build_game(spec.game, seed).preference) for seed in spec.seeds]
    for row in headtohead.itertuples():
        per_seed = [a @ p @ b for a, p, b in zip(finals[row.rule_a], preferences, finals[row.rule_b])]
        assert row.win_rate == pytest.approx(np.mean(per_seed), abs=1e-12)
    wide = headtohead.pivot(index="rule_a", columns="rule_b", values="win_rate").to_numpy()
    np.testing.assert_allclose(wide + wide.T, 1.0, atol=1e-12)
    assert abs(wide[0, 1] - 0.5) > 1e-6  # two different rules: not the trivial ½


def _duels(rules, seeds=256):
    rows = [
        {"rule_a": a, "rule_b": b, "win_rate": 0.5 if a == b else 0.6 - 0.2 * (a > b), "ci_lower": 0.4, "ci_upper": 0.7}
        for a in rules
        for b in rules
    ]
    return pd.DataFrame(rows).assign(seeds=seeds)


@pytest.mark.parametrize("rules", [["inpo", "sppo"], ["inpo", "sppo", "dno", "nash_md", "online_ipo"]])
def test_the_heat_map_has_its_whole_title_inside_the_figure(tmp_path, rules):
    path = plot_headtohead(_duels(rules), tmp_path / "h.png")
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape[1] > image.shape[0] / 2
    # the title is the first dark row; no dark pixel touches the left or right border (nothing cut off)
    dark = image < 128
    assert dark.any(axis=1)[: image.shape[0] // 5].any()
    assert not dark[:, :2].any() and not dark[:, -2:].any()


def test_the_heat_map_is_drawn_for_2_to_40_labels_as_the_readme_says():
    """Above HEATMAP_MAX_LABELS the run writes headtohead.csv but no map; the README said the map showed its
    cells' values "up to 40 rules", as if a larger one were drawn without them."""
    names = [f"r{i:02d}" for i in range(HEATMAP_MAX_LABELS + 1)]
    assert headtohead_figure(_duels(names)) is None
    assert headtohead_figure(_duels(names[:HEATMAP_MAX_LABELS])) is not None
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert f"for 2 to {HEATMAP_MAX_LABELS} rule labels, `headtohead.png`" in readme
    assert f"above {HEATMAP_MAX_LABELS} rule labels no map is drawn" in readme


def test_one_rule_gets_no_heat_map(tmp_path):
    """W(A, A) = ½ for a run of one rule: the table is written, the figure is not drawn."""
    assert plot_headtohead(_duels(["inpo"]), tmp_path / "h.png") is None
    assert not (tmp_path / "h.png").exists()
    out = tmp_path / "run"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'iterations = 5\nseeds = 2\n[game]\nkind = "random"\narms = 3\ntau = 0.1\n[[rule]]\nname = "inpo"\neta = 1.0\n',
        encoding="utf-8",
    )
    assert prefsim(["run", str(spec), "--out", str(out), "--quiet"]) == 0
    assert (out / "headtohead.csv").is_file() and not (out / "headtohead.png").exists()
    assert (out / "kl_to_nash.png").is_file()


def test_the_map_is_one_of_a_runs_figures_for_two_rules_and_left_out_when_the_plot_picks_metrics(tmp_path):
    table = sim.run(
        {
            "iterations": 5,
            "seeds": 2,
            "game": {"kind": "random", "arms": 3, "tau": 0.1},
            "rule": [{"name": "inpo", "eta": 1.0}, {"name": "sppo", "eta": 1.0}],
        }
    )
    duels = _duels(["inpo", "sppo"])
    plan = plan_figures(table, tmp_path, headtohead=duels)
    assert plan.figures[-1] == HEADTOHEAD and plan.job.headtohead is duels
    assert draw_job_figure(plan.job, HEADTOHEAD) == [tmp_path / "headtohead.png"]
    assert Image.open(tmp_path / "headtohead.png").size[0] > 100
    picked = plan_figures(table, tmp_path, headtohead=duels, plot={"metrics": ["kl_to_nash"]})
    assert picked.figures == ["kl_to_nash"] and picked.job.headtohead is None
    alone = plan_figures(table, tmp_path, headtohead=_duels(["inpo"]))
    assert HEADTOHEAD not in alone.figures


@pytest.mark.parametrize("contexts", [None, 3])
def test_the_table_is_each_pairs_win_rates_and_bootstrap_computed_for_all_pairs_at_once(contexts):
    """One einsum and one shared bootstrap over every cell equal the pair-by-pair definition (W_s(A, B) of
    win_rates_per_seed, then bootstrap_ci of those S numbers)."""
    rng = np.random.default_rng(1)
    seeds, arms, labels = 5, 4, ["a", "b", "c", "d"]
    shape = (seeds, arms) if contexts is None else (seeds, contexts, arms)
    finals = {label: rng.dirichlet(np.ones(arms), size=shape[:-1]) for label in labels}
    raw = rng.uniform(size=shape[:-1] + (arms, arms))
    preference = (raw + 1 - np.swapaxes(raw, -1, -2)) / 2
    weights = None if contexts is None else np.array([0.2, 0.3, 0.5])
    table = headtohead_table(finals, preference, weights)
    assert list(zip(table.rule_a, table.rule_b)) == [(a, b) for a in labels for b in labels]
    for row in table.itertuples():
        per_seed = win_rates_per_seed(finals[row.rule_a], finals[row.rule_b], preference, weights)
        centre, lower, upper = stats.bootstrap_ci(per_seed)
        np.testing.assert_allclose([row.win_rate, row.ci_lower, row.ci_upper], [centre, lower, upper], rtol=1e-13)
        assert row.seeds == seeds


def test_a_run_with_more_labels_than_a_table_is_for_writes_none_and_says_so(tmp_path, monkeypatch):
    """Above MAX_LABELS (400: 160 000 pairs) the run skips the table and its heat map, with a note (a 100-value
    sweep spent 100 s in one bootstrap per pair, silently)."""
    assert headtohead.skipped_because(400, 100) is None
    assert headtohead.skipped_because(401, 1).startswith(
        "no head-to-head table: 401 rule labels over 1 seeds are 160,801"
    )
    assert headtohead.skipped_because(300, 200) is not None  # 300² × 200 per-seed win rates: over MAX_CELLS
    monkeypatch.setattr(headtohead, "MAX_LABELS", 2)
    raw = {
        "iterations": 5,
        "seeds": 10,
        "game": {"kind": "random", "arms": 3, "tau": 0.1},
        "rule": [{"name": "inpo", "eta": [0.5, 1.0, 2.0]}],
    }
    with pytest.warns(DegenerateRunWarning, match="no head-to-head table: 3 rule labels over 10 seeds are 9 ordered"):
        table = sim.run(raw, out=tmp_path / "run")
    assert table.attrs["headtohead"] is None and not (tmp_path / "run" / "headtohead.csv").exists()
    assert not list((tmp_path / "run").glob("headtohead.*"))


@pytest.mark.parametrize("count", [13, 40])
def test_the_map_centres_its_colours_at_a_half_and_prints_every_value_in_a_font_that_fits_its_cell(count):
    """default.toml's map of 13 rules: win rates in [0.459, 0.541] on a fixed 0–1 scale looked white, and above
    12 rules no cell had its value.  The colours span ½ ± the largest |W − ½| (the colour bar says so), and every
    cell has its value, inside the cell, up to the 40-label limit."""
    rules = [f"rule_{k}" for k in range(count)]
    rng = np.random.default_rng(1)
    upper = 0.5 + rng.uniform(-0.041, 0.041, size=(count, count))
    wins = np.triu(upper, 1) + np.tril(1.0 - upper.T, -1) + 0.5 * np.eye(count)
    table = pd.DataFrame(
        [{"rule_a": a, "rule_b": b, "win_rate": wins[i, j]} for i, a in enumerate(rules) for j, b in enumerate(rules)]
    ).assign(ci_lower=0.4, ci_upper=0.6, seeds=20)
    figure = headtohead_figure(table)
    (axes, bar) = figure.axes
    (image,) = axes.get_images()
    spread = np.max(np.abs(wins - 0.5))
    assert image.norm.vmin == pytest.approx(0.5 - spread) and image.norm.vmax == pytest.approx(0.5 + spread)
    assert f"½ ± {spread:.2g}" in bar.get_ylabel()
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    texts = axes.texts
    assert len(texts) == count * count
    cell = axes.bbox.width / count
    for text in texts[:: max(1, count // 5)]:
        box = text.get_window_extent(renderer)
        assert box.width < cell and box.height < cell, "a cell's value fits in the cell"
    assert float(texts[1].get_text()) == pytest.approx(wins[0, 1], abs=1e-3)
    assert len(texts[1].get_text()) == 5, "three digits where the win rates are within 0.05 of a half"


@pytest.mark.parametrize("count", [2, 3, 13])
def test_the_maps_labels_lie_inside_the_figure(count):
    """default.toml's 13 labels: with the plain constrained layout the square grid pushed "rule A" 4 px past the
    figure's left edge, where the saved PNG cut it; with 2–4 labels the colour bar's one-line label ran past the
    figure's top and bottom."""
    rules = ["inpo[eta=0.5]", "inpo[eta=2]", "inpo_theorem4", "mmd", "nash_md", "online_ipo", "extragradient"]
    rules = (rules + ["optimistic", "sppo", "dno", "comal", "mpo", "mnpo"])[:count]
    table = pd.DataFrame(
        [
            {"rule_a": a, "rule_b": b, "win_rate": 0.5 + 0.001 * (i - j)}
            for i, a in enumerate(rules)
            for j, b in enumerate(rules)
        ]
    ).assign(ci_lower=0.4, ci_upper=0.6, seeds=20)
    figure = headtohead_figure(table)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (axes, bar) = figure.axes
    texts = [axes.xaxis.label, axes.yaxis.label, bar.yaxis.label, *axes.get_xticklabels(), *axes.get_yticklabels()]
    for text in texts:
        box = text.get_window_extent(renderer)
        inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1
        assert inside, (text.get_text(), box, figure.bbox)
