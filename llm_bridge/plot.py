"""The bridge's second figure, ``curves.png``: win rate against π_ref, mean oracle reward and KL(π_t‖π_ref)
per iteration side by side, with 95% bands over held-out prompts (``win_rate.png`` is drawn by
:func:`sim.win_rate.plot_win_rate`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llm_bridge.metrics import mean_with_interval
from llm_bridge.run_layout import REFERENCE_DIR
from sim.plotting import FAMILY_MARKERS, curve_styles

#: Legend entries per row below the panels (more rules wrap onto further rows instead of running past the
#: figure's edges).
LEGEND_COLUMNS = 5
#: Markers of the rules' curves (one on every iteration): the first ten rules take ten hues with ``o``, and
#: the next ten take the hues again with the next marker (as :func:`sim.plotting.curve_styles` does).
RULE_MARKERS = tuple(marker for marker in FAMILY_MARKERS if marker)


def _heldout(out: Path, rule: str, iteration: int) -> dict | None:
    """The held-out record of π_t (iteration 0: π_ref's own evaluation), or None if it was not kept."""
    path = (
        out / REFERENCE_DIR / "heldout_policy_000.json"
        if iteration == 0
        else out / rule / f"iter_{iteration:03d}" / "heldout.json"
    )
    return json.loads(path.read_text()) if path.is_file() else None


def png_bytes(draw: Callable[[Path], object]) -> bytes:
    """The bytes of the PNG file that ``draw(path)`` writes, drawn in a temporary directory, so that the
    figure replaces its target together with the files it belongs with
    (:func:`sim.results_io.write_files_atomic`)."""
    with tempfile.TemporaryDirectory(prefix="prefsim-figure-") as scratch:
        path = Path(scratch) / "figure.png"
        draw(path)
        return path.read_bytes()


def plot_curves(table: pd.DataFrame, out: Path, path: Path) -> Path:
    """The figure of :func:`curves_figure` written to ``path`` (PNG, 120 dpi); returns the path."""
    curves_figure(table, out).savefig(path, dpi=120)
    return Path(path)


def curves_figure(table: pd.DataFrame, out: Path) -> Figure:
    """Win rate vs π_ref, mean oracle reward and KL(π_t‖π_ref) per iteration, one curve per rule, with 95%
    Student-t bands over held-out prompts (from each iteration's ``heldout.json``: rewards and the per-prompt
    terms log π_t(y)/π_ref(y) of the KL estimate; a band is left out where a record lacks them).  One legend
    below the panels, in rows of up to :data:`LEGEND_COLUMNS` entries, names the rules and the reference
    lines (dashed: ½ in the win-rate panel; dotted: π_ref's mean reward in the reward panel); inside a panel
    it covered bands.  Rules take the hues of :func:`sim.plotting.curve_styles`; past the tenth, the hues
    come again with another marker (:data:`RULE_MARKERS`)."""
    out = Path(out)
    # no pyplot: no global backend or figure registry is touched
    figure = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    rules = list(dict.fromkeys(table["rule"]))
    styles = curve_styles([str(rule) for rule in rules])
    for index, rule in enumerate(rules):
        colour = styles[str(rule)]["color"]
        marker = RULE_MARKERS[(index // 10) % len(RULE_MARKERS)]
        rows = table[table["rule"] == rule].sort_values("iteration")
        t = rows["iteration"].to_numpy().astype(int)
        axes[0].plot(t, rows["win_rate"], marker=marker, color=colour, label=rule)
        axes[0].fill_between(t, rows["win_rate_low"], rows["win_rate_high"], color=colour, alpha=0.15)
        for axis, key, column in (
            (axes[1], "rewards", "mean_reward"),
            (axes[2], "log_ratio_reference", "kl_reference"),
        ):
            axis.plot(t, rows[column], marker=marker, color=colour, label=rule)
            bands = [_heldout(out, rule, int(i)) for i in t]
            if all(b is not None and b.get(key) is not None for b in bands):
                intervals = np.array(
                    [mean_with_interval(np.asarray(b[key], dtype=float), bounds=(-np.inf, np.inf)) for b in bands]
                )
                axis.fill_between(t, intervals[:, 1], intervals[:, 2], color=colour, alpha=0.15)
    handles = axes[2].get_legend_handles_labels()[0]  # one curve per rule
    handles.append(axes[0].axhline(0.5, color="grey", lw=0.8, ls="--", label="½, a tie with π_ref (win rate)"))
    reference = table["reference_reward"].dropna()
    if len(reference):
        handles.append(
            axes[1].axhline(
                float(reference.iloc[0]), color="grey", lw=0.8, ls=(0, (1, 1.5)), label="π_ref's mean reward (reward)"
            )
        )
    titles = ("win rate of π_t vs π_ref", "mean oracle reward of π_t", "KL(π_t ‖ π_ref) (nats, Monte Carlo)")
    for axis, title in zip(axes, titles):
        axis.set_xlabel("iteration t")
        axis.set_title(title, fontsize=10)
        axis.set_xticks(sorted(set(table["iteration"].astype(int))))
    figure.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), LEGEND_COLUMNS), frameon=False, fontsize=8
    )
    figure.suptitle("held-out prompts, 95% CIs over prompts", fontsize=10)
    return figure
