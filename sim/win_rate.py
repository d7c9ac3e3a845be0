"""The LLM bridge's figure, ``win_rate.png``: oracle win rate against π_ref per iteration, one curve per
rule, with 95% CIs.

It lives in ``sim`` (pandas and matplotlib only, no torch) so that ``prefsim plot DIR`` redraws it from
a ``prefsim llm`` result directory in the base install; the bridge (:mod:`llm_bridge.loop`) draws it
after every iteration.  A bridge directory holds one ``<rule label>/metrics.csv`` per rule while it runs
and ``metrics.csv`` with all of them at the end (:func:`read_win_rate_table` reads either).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bandits.errors import PrefsimError

#: Columns that mark a table as the bridge's (``llm_bridge.metrics``): the held-out win rate and its CI.
WIN_RATE_COLUMNS = ("rule", "iteration", "win_rate", "win_rate_low", "win_rate_high")


def is_win_rate_directory(directory: str | Path) -> bool:
    """Whether ``directory`` is a ``prefsim llm`` result directory (its tables have :data:`WIN_RATE_COLUMNS`)."""
    directory = Path(directory)
    candidates = [directory / "metrics.csv"] if (directory / "metrics.csv").is_file() else []
    candidates += sorted(directory.glob("*/metrics.csv"))[:1]
    for path in candidates:
        try:
            header = pd.read_csv(path, nrows=0).columns
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        return set(WIN_RATE_COLUMNS) <= set(header)
    return False


def read_win_rate_table(directory: str | Path) -> pd.DataFrame:
    """All rows of a bridge directory: ``metrics.csv``, else every ``<rule>/metrics.csv`` (a run in progress)."""
    directory = Path(directory)
    paths = [directory / "metrics.csv"] if (directory / "metrics.csv").is_file() else []
    paths = paths or sorted(directory.glob("*/metrics.csv"))
    frames = [pd.read_csv(path) for path in paths]
    frames = [frame for frame in frames if set(WIN_RATE_COLUMNS) <= set(frame.columns) and len(frame)]
    if not frames:
        raise PrefsimError(f"{str(directory)!r} holds no bridge metrics (metrics.csv with win_rate): nothing to plot.")
    return pd.concat(frames, ignore_index=True)


def plot_win_rate(table: pd.DataFrame, path: Path) -> Path:
    """Draw ``win_rate`` (with ``win_rate_low/high`` as error bars) against ``iteration`` for each rule."""
    figure = Figure(figsize=(5.5, 3.8))  # no pyplot: no global backend or figure registry is touched
    axis = figure.subplots()
    rules = list(dict.fromkeys(table["rule"]))
    for offset, rule in enumerate(rules):
        rows = table[table["rule"] == rule].sort_values("iteration")
        x = rows["iteration"].to_numpy() + 0.04 * (offset - (len(rules) - 1) / 2)
        y = rows["win_rate"].to_numpy()
        errors = [y - rows["win_rate_low"].to_numpy(), rows["win_rate_high"].to_numpy() - y]
        axis.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=rule)
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set_xlabel("iteration t")
    axis.set_ylabel("oracle win rate of π_t vs π_ref")
    axis.set_xticks(sorted(set(table["iteration"].astype(int))))
    axis.legend(frameon=False)
    axis.set_title("held-out win rate (95% CI over prompts)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return Path(path)
