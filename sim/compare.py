"""``prefsim compare DIR_A DIR_B``: paired differences between two runs of the same game and seeds.

Typical uses: sampled mode against exact mode (the same spec with another ``[run]`` table), or two
code versions (the same spec run from two checkouts).  For every rule label both runs have, every
chosen metric and the final shared iteration (plus ``--at`` iterations), on the seeds where both runs
have a finite value (``seeds`` counts them): the mean of each run, the mean paired difference B − A (the
difference of those means) with its 95% bootstrap CI, and the probability that B is better (lower) than A
on a seed, with its CI (:func:`sim.stats.paired_difference`).
An ordering is supported only where the CI of the difference excludes 0.

The runs must simulate the same game: their parsed ``[game]`` tables must be equal, otherwise the
seeds would not pair the same instances and the comparison is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bandits.errors import PrefsimError
from sim import stats
from sim.results_io import read_json_object
from sim.summary import HEADLINE_METRICS, format_value, metrics_with_data

COMPARE_FILE = "compare.csv"
COMPARE_COLUMNS = [
    "rule",
    "metric",
    "iteration",
    "mean_a",
    "mean_b",
    "difference",
    "difference_lower",
    "difference_upper",
    "probability_b_better",
    "probability_lower",
    "probability_upper",
    "seeds",
]
#: Next to a comparison's CSV (``compare.csv`` → ``compare.json``): which runs are A and B (:func:`runs_record`).
COMPARE_RUNS_SUFFIX = ".json"
#: Metrics where "lower is better" has no meaning (not compared by default).
NOT_COMPARED = ("max_log_ratio", "max_log_ratio_so_far", "max_log_ratio_mixture", "loss", "inner_gradient")


def load_run(directory: str | Path) -> tuple[pd.DataFrame, dict]:
    """``(metrics table, manifest)`` of a result directory written by ``prefsim run`` (a clear error for any
    other directory: unfinished, an LLM bridge run, a table without rows)."""
    directory = Path(directory)
    metrics = directory / "metrics.csv"
    manifest = directory / "manifest.json"
    if not metrics.is_file() or not manifest.is_file():
        raise PrefsimError(
            f"{str(directory)!r} is not a finished `prefsim run` directory (it needs metrics.csv and manifest.json)."
        )
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrefsimError(f"{str(manifest)!r} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("parsed_spec"), dict):
        bridge = isinstance(data, dict) and "processes" in data and "parsed_spec" not in data
        what = "an LLM bridge run (`prefsim llm`)" if bridge else "not a `prefsim run` result"
        raise PrefsimError(
            f"{str(directory)!r} holds {what}: its manifest has no parsed spec. `prefsim compare` and "
            "`prefsim report` read simulator runs; a bridge run's metrics.csv and win_rate.png are its report."
        )
    table = pd.read_csv(metrics)
    if not {"rule", "seed", "iteration"} <= set(table.columns) or table.empty:
        raise PrefsimError(f"{str(metrics)!r} holds no run table (no rows, or no rule, seed and iteration columns).")
    return table, data


def compare_runs(
    table_a: pd.DataFrame,
    manifest_a: dict,
    table_b: pd.DataFrame,
    manifest_b: dict,
    metrics: Iterable[str] | None = None,
    iterations: Iterable[int] = (),
) -> pd.DataFrame:
    """The paired comparison of the module docstring (columns :data:`COMPARE_COLUMNS`)."""
    game_a = (manifest_a.get("parsed_spec") or {}).get("game")
    game_b = (manifest_b.get("parsed_spec") or {}).get("game")
    if game_a != game_b:
        raise PrefsimError(
            "compare: the two runs simulate different games (their [game] tables differ), so their seeds do "
            f"not pair the same instances: A has {game_a}, B has {game_b}."
        )
    seeds = sorted(set(table_a["seed"]) & set(table_b["seed"]))
    if not seeds:
        raise PrefsimError("compare: the two runs share no seed; rerun one with the other's seeds.")
    rules = [rule for rule in stats.rules_of(table_a) if rule in set(table_b["rule"])]
    if not rules:
        raise PrefsimError(
            f"compare: the runs share no rule label (A: {', '.join(stats.rules_of(table_a))}; "
            f"B: {', '.join(stats.rules_of(table_b))})."
        )
    shared = [m for m in metrics_with_data(table_a) if m in set(metrics_with_data(table_b))]
    if metrics is None:
        chosen = [m for m in shared if m not in NOT_COMPARED]
        headline = [m for m in HEADLINE_METRICS if m in chosen]
        metrics = headline or chosen
    else:
        metrics = list(metrics)
        missing = [m for m in metrics if m not in shared]
        if missing:
            raise PrefsimError(
                f"compare: {', '.join(missing)} has no value in one of the runs; shared metrics: {', '.join(shared)}."
            )
    recorded = set(table_a["iteration"]) & set(table_b["iteration"])
    absent = sorted({int(i) for i in iterations} - {int(i) for i in recorded})
    if absent:
        raise PrefsimError(
            f"compare: --at {', '.join(map(str, absent))}: not an iteration both runs recorded (their last shared "
            f"one is {max(recorded) if recorded else 'none'}); see the runs' record_every."
        )
    rows = []
    for rule in rules:
        a = table_a[(table_a["rule"] == rule) & table_a["seed"].isin(seeds)]
        b = table_b[(table_b["rule"] == rule) & table_b["seed"].isin(seeds)]
        common = sorted(set(a["iteration"]) & set(b["iteration"]))
        if not common:
            continue
        wanted = sorted({int(common[-1]), *(int(i) for i in iterations if int(i) in set(common))})
        combined = pd.concat([a.assign(rule="A"), b.assign(rule="B")], ignore_index=True)
        for metric in metrics:
            for iteration in wanted:
                at = combined[combined["iteration"] == iteration]
                paired = stats.paired_difference(at, metric, "B", "A", iteration=iteration)
                if paired.empty:
                    continue
                result = paired.iloc[0]
                rows.append(
                    {
                        "rule": rule,
                        "metric": metric,
                        "iteration": iteration,
                        # over the paired seeds; paired_difference's rule_a is run B here (difference B − A)
                        "mean_a": float(result["mean_b"]),
                        "mean_b": float(result["mean_a"]),
                        "difference": float(result["difference"]),
                        "difference_lower": float(result["difference_lower"]),
                        "difference_upper": float(result["difference_upper"]),
                        "probability_b_better": float(result["probability_of_improvement"]),
                        "probability_lower": float(result["probability_lower"]),
                        "probability_upper": float(result["probability_upper"]),
                        "seeds": int(result["seeds"]),
                    }
                )
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def format_comparison(comparison: pd.DataFrame, name_a: str, name_b: str, floor: float) -> str:
    """Printed form: one line per rule × metric × iteration, "≈ 0" at the rounding floor."""

    def cell(value):
        return format_value(value, floor)

    lines = [f"B − A (A = {name_a}, B = {name_b}): mean difference [95% CI]; P(B better) [95% CI]; seeds"]
    frame = pd.DataFrame(
        {
            "rule": comparison["rule"],
            "metric": comparison["metric"],
            "t": comparison["iteration"],
            "A": [cell(v) for v in comparison["mean_a"]],
            "B": [cell(v) for v in comparison["mean_b"]],
            "B − A": [
                f"{cell(r.difference)} [{cell(r.difference_lower)}, {cell(r.difference_upper)}]"
                for r in comparison.itertuples()
            ],
            "P(B better)": [
                f"{r.probability_b_better:.2f} [{r.probability_lower:.2f}, {r.probability_upper:.2f}]"
                for r in comparison.itertuples()
            ],
            "seeds": comparison["seeds"],
        }
    )
    lines.append(frame.to_string(index=False))
    return "\n".join(lines)


def runs_record(directory_a: str | Path, manifest_a: dict, directory_b: str | Path, manifest_b: dict) -> dict:
    """Which runs a comparison's A and B are: per run its directory (absolute), spec name, git commit and
    whether the tree was modified, as their manifests record them."""

    def run(directory, manifest) -> dict:
        spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
        return {
            "directory": str(Path(directory).resolve()),
            "name": spec.get("name"),
            "git_commit": manifest.get("git_commit"),
            "git_dirty": manifest.get("git_dirty"),
        }

    return {"a": run(directory_a, manifest_a), "b": run(directory_b, manifest_b)}


def runs_record_path(comparison_path: str | Path) -> Path:
    """Where :func:`runs_record` of the comparison in ``comparison_path`` is kept."""
    return Path(comparison_path).with_suffix(COMPARE_RUNS_SUFFIX)


def read_runs_record(comparison_path: str | Path) -> dict | None:
    """The :func:`runs_record` kept next to ``comparison_path``, or None (none, or unreadable)."""
    record = read_json_object(runs_record_path(comparison_path))
    ok = record is not None and all(isinstance(record.get(k), dict) for k in ("a", "b"))
    return record if ok else None


def describe_compared_run(run: dict) -> str:
    """``/path/to/run ("name", git abc1234, clean)`` for one side of :func:`runs_record`."""
    commit = run.get("git_commit")
    dirty = run.get("git_dirty")
    state = " with uncommitted changes" if dirty else ", clean" if dirty is False else ""
    details = [f'"{run["name"]}"'] if run.get("name") else []
    details.append(f"git {str(commit)[:12]}{state}" if commit else "git commit unknown")
    return f"{run.get('directory')} ({', '.join(details)})"
