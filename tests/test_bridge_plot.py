"""llm_bridge.plot.plot_curves (three panels, bands from each heldout.json) and the demo specs."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd

from llm_bridge.metrics import COLUMNS
from llm_bridge.plot import _heldout, curves_figure, plot_curves

matplotlib.use("Agg")


def write_run(out, with_terms: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for t in range(3):
        record = {
            "texts": ["a"] * 5,
            "win_probability": rng.uniform(size=5).tolist(),
            "rewards": rng.normal(size=5).tolist(),
        }
        if with_terms:
            record["log_ratio_reference"] = (t * rng.uniform(size=5)).tolist()
        path = (
            out / "reference" / "heldout_policy_000.json" if t == 0 else out / "inpo" / f"iter_{t:03d}" / "heldout.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        row = {c: float("nan") for c in COLUMNS}
        row.update(rule="inpo", iteration=t, win_rate=0.5 + 0.1 * t, win_rate_low=0.4, win_rate_high=0.8)
        row.update(mean_reward=float(np.mean(record["rewards"])), reference_reward=0.1, kl_reference=float(t))
        rows.append(row)
    return pd.DataFrame(rows)


def test_curves_are_drawn_with_and_without_per_prompt_terms(tmp_path):
    table = write_run(tmp_path)
    assert _heldout(tmp_path, "inpo", 2)["log_ratio_reference"] and _heldout(tmp_path, "inpo", 7) is None
    path = plot_curves(table, tmp_path, tmp_path / "curves.png")
    assert path.is_file() and path.stat().st_size > 10_000
    older = tmp_path / "older"
    table = write_run(older, with_terms=False)  # runs recorded before the KL terms were stored: no KL band
    assert plot_curves(table, older, older / "curves.png").is_file()


def test_every_line_of_every_panel_is_named_in_a_legend_below_the_panels(tmp_path):
    """The reward panel's dotted π_ref line had no legend entry (only the KL panel had a legend), nor had the
    win-rate panel's line at ½; a legend inside the KL panel could cover its bands."""
    figure = curves_figure(write_run(tmp_path), tmp_path)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    named = {text.get_text() for text in legend.get_texts()}
    for axes in figure.axes:
        assert axes.get_legend() is None
        for line in axes.get_lines():
            assert line.get_label() in named, f"{line.get_label()!r} in {axes.get_title()!r} is not in the legend"
        assert not legend.get_window_extent(renderer).overlaps(axes.bbox), "the legend covers no panel"
    assert "π_ref's mean reward (reward)" in named and "inpo" in named


def test_demo_and_study_specs_parse():
    from pathlib import Path

    from llm_bridge.spec import load_spec

    root = Path(__file__).resolve().parents[1] / "examples"
    demo, study = load_spec(root / "llm_demo.toml"), load_spec(root / "llm_study.toml")
    assert [e.label for e in demo.rules] == ["inpo", "apo", "iterative_dpo"] == [e.label for e in study.rules]
    assert demo.iterations == 3 and study.iterations > demo.iterations
    assert len(demo.prompts.heldout) == 48 and not set(demo.prompts.heldout) & set(demo.prompts.train)
    assert study.prediction.prompts == 16 and study.report_to == ("tensorboard",)


def test_the_legend_of_thirteen_rules_wraps_inside_the_figure_and_no_two_rules_look_alike(tmp_path):
    """One row of 15 entries ran past both edges of the figure (and was clipped); rule 11 took rule 1's colour."""
    one = write_run(tmp_path)
    labels = [f"rule_{index:02d}" for index in range(13)]
    table = pd.concat([one.assign(rule=label) for label in labels], ignore_index=True)
    figure = curves_figure(table, tmp_path)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    box, page = legend.get_window_extent(renderer), figure.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (box, page)
    looks = {
        line.get_label(): (matplotlib.colors.to_hex(line.get_color()), line.get_marker())
        for line in figure.axes[0].get_lines()
        if line.get_label() in labels
    }
    assert len(looks) == 13 and len(set(looks.values())) == 13
