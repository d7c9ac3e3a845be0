"""The demo figure: oracle win rate against π_ref per iteration, one curve per rule, with 95% CIs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def plot_win_rate(table: pd.DataFrame, path: Path) -> Path:
    """Draw ``win_rate`` (with ``win_rate_low/high`` as error bars) against ``iteration`` for each rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.8))
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
    plt.close(figure)
    return Path(path)
