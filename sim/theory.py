"""The papers' bounds on a run: observed / bound along every trajectory, and bound curves for figures.

The bounds themselves (formulas, sources, hypotheses) are in :mod:`sim.theorems`; each rule definition
lists the ones that apply to it (:attr:`sim.rules.definition.RuleDefinition.bounds`), and this module
evaluates a run's table against them without testing rule names.  The formulas are re-exported here
(``sim.theory.theorem4_kl_bound`` …), as before.

Main entry points: :func:`tightness_report` (observed / bound along a run, per rule, seed,
iteration) and :func:`bounds_for_run` (bound curves for the figures of :mod:`sim.plotting`).  Both
compute in float64 (:func:`sim.precision.in_float64`): the games are rebuilt, and in float32 the game's
τ would differ from the rule's by rounding, silently switching every τ-regularised bound off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from bandits.errors import PrefsimError
from sim.diagnostics import precision_floor
from sim.game import Game
from sim.precision import in_float64
from sim.reference_schedule import as_run
from sim.rules import rule_info
from sim.seed_games import build_games
from sim.spec import ExperimentSpec, load_spec, parse_spec
from sim.theorems import (
    advancement_kl_check,
    apo_dpo_lag,
    apo_exact_policy,
    apo_log_ratio_growth,
    apo_multiplier_sequence,
    apo_multipliers,
    apo_noise_weights,
    apo_suboptimality_bound,
    apo_tv_bound,
    apo_tv_log_slope,
    bradley_terry,
    dpo_base,
    eta_critical,
    exact_normaliser,
    fixed_reference,
    game_setting,
    hedge_exploitability_bound,
    hedge_optimal_eta,
    inpo_c,
    inpo_contraction_factor,
    inpo_linearised_regret,
    lemma2_eta,
    lemma2_regret_bound,
    log_reference_mass_bound,
    mirror_prox_kl_bound,
    mirror_prox_max_eta,
    mirror_prox_query_rate,
    mmd_kl_bound,
    mmd_lipschitz,
    nash_md_kl_bound,
    nash_md_theorem1_eta,
    omega_max,
    optimistic_average_gap_bound,
    policy_log_ratio,
    proximal_step,
    realised_log_ratio,
    regularised_game,
    reward_gap,
    spec_setting,
    starts_at_reference,
    theorem3_gap_bound,
    theorem4_eta_schedule,
    theorem4_kl_bound,
    theorem4_step_bound,
)

__all__ = [
    "advancement_kl_check",
    "apo_dpo_lag",
    "apo_exact_policy",
    "apo_log_ratio_growth",
    "apo_multiplier_sequence",
    "apo_multipliers",
    "apo_noise_weights",
    "apo_suboptimality_bound",
    "apo_tv_bound",
    "apo_tv_log_slope",
    "bradley_terry",
    "dpo_base",
    "eta_critical",
    "exact_normaliser",
    "fixed_reference",
    "game_setting",
    "hedge_exploitability_bound",
    "hedge_optimal_eta",
    "inpo_c",
    "inpo_contraction_factor",
    "inpo_linearised_regret",
    "lemma2_eta",
    "lemma2_regret_bound",
    "log_reference_mass_bound",
    "mirror_prox_kl_bound",
    "mirror_prox_max_eta",
    "mirror_prox_query_rate",
    "mmd_kl_bound",
    "mmd_lipschitz",
    "nash_md_kl_bound",
    "nash_md_theorem1_eta",
    "omega_max",
    "optimistic_average_gap_bound",
    "per_seed_games",
    "policy_log_ratio",
    "proximal_step",
    "realised_log_ratio",
    "regularised_game",
    "reward_gap",
    "spec_setting",
    "starts_at_reference",
    "theorem3_gap_bound",
    "theorem4_eta_schedule",
    "theorem4_kl_bound",
    "theorem4_step_bound",
    "NOT_DRAWN",
    "bounds_for_run",
    "tightness_report",
]


@in_float64
def per_seed_games(
    spec: ExperimentSpec | dict | str | os.PathLike, games: tuple | None = None
) -> tuple[ExperimentSpec, dict[int, dict[str, Any]]]:
    """The games a run plays, seed by seed, in float64 (what the bounds of this module are evaluated on).

    Returns ``(parsed spec, {seed: game})`` with NumPy arrays: ``preference`` P (K × K), ``reference`` π_ref,
    ``initial`` π_0, ``rewards`` (the Bradley–Terry rewards; NaN where the game has none), ``tau`` τ and
    ``target`` (the rules' common target π*_τ, :func:`sim.seed_games.build_games`).  ``spec``: a spec
    dict, a parsed spec or a spec file's path (a string or a ``pathlib.Path``, as :func:`sim.run` takes).
    ``games``: the run's ``(games, game_axes, targets)`` of :func:`sim.seed_games.build_games` in float64, when
    the caller has them (a run computing its bounds); otherwise they are built here."""
    spec = parse_spec(load_spec(spec) if isinstance(spec, (str, os.PathLike)) else spec)
    games, game_axes, targets = build_games(spec)[:3] if games is None else games
    seeds = list(spec.seeds)
    # one host copy of each leaf, then NumPy rows per seed (a JAX index per leaf and seed cost ~0.1 s at 256 seeds)
    host = {name: np.asarray(getattr(games, name)) for name in Game._fields}
    targets = np.asarray(targets)
    context = {}
    for index, seed in enumerate(seeds):
        leaf = {name: host[name][index] if getattr(game_axes, name) == 0 else host[name] for name in Game._fields}
        context[seed] = {
            "preference": leaf["preference"],
            "reference": np.exp(leaf["log_reference"]),
            "initial": np.exp(leaf["log_initial"]),
            "rewards": leaf["rewards"],
            "tau": float(leaf["tau"]),
            "target": np.asarray(targets[index]),
        }
    return spec, context


def _labels(spec) -> dict:
    """Result label → (rule name, resolved scalar parameters)."""
    labels = {}
    for rule in spec.rules:
        for label, point in rule.grid_labels():
            labels[label] = (rule.name, as_run({**rule.fixed(), **point}, spec.iterations))
    return labels


def _trajectories(table: pd.DataFrame) -> Iterator[tuple[tuple[str, Any], dict[str, np.ndarray]]]:
    """``((rule, seed), columns)`` for each rule × seed of ``table``, in the order they first appear (as
    ``groupby(sort=False)``), ``columns`` its column → NumPy slice, sorted by iteration: one sort of the
    whole table, not a pandas frame per seed (~0.5 ms each; 256 seeds took 0.14 s)."""
    codes, keys = pd.factorize(pd.MultiIndex.from_arrays([table["rule"], table["seed"]]))
    order = np.lexsort((table["iteration"].to_numpy(), codes))
    columns = {name: table[name].to_numpy()[order] for name in table.columns}
    edges = np.flatnonzero(np.diff(codes[order])) + 1
    for key, start, end in zip(keys, [0, *edges.tolist()], [*edges.tolist(), len(order)]):
        yield key, {name: values[start:end] for name, values in columns.items()}


def _bound_rows(name: str, parameters: dict, frame: Mapping[str, np.ndarray], game: dict) -> list[dict]:
    """Rows of every bound of rule ``name`` that applies, one dict per bound: ``iteration``, ``observed`` and
    ``bound`` arrays, ``metric`` and ``bound_name`` strings (``frame``: one trajectory's columns, by iteration)."""
    t = np.asarray(frame["iteration"], dtype=np.int64)
    setting = game_setting(game, parameters)
    out = []
    for bound in rule_info(name).bounds:
        if not bound.drawn or not bound.selects(parameters) or bound.reason(setting) is not None:
            continue
        evaluated = bound.evaluate(parameters, frame, game)
        if evaluated is None:
            continue
        values, mask = evaluated
        mask = np.ones_like(t, dtype=bool) if mask is None else mask
        observed = np.asarray(frame[bound.metric], dtype=np.float64)
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), t.shape)
        out.append(
            {
                "iteration": t[mask],
                "metric": bound.metric,
                "bound_name": bound.label,
                "observed": observed[mask],
                "bound": values[mask],
            }
        )
    return out


@in_float64
def tightness_report(
    table: pd.DataFrame, spec: ExperimentSpec | dict | str, games: tuple | None = None
) -> pd.DataFrame:
    """Observed metric / bound along every trajectory of a run, for every bound its rule's definition lists.

    For each rule label the bounds are those of its definition (:attr:`RuleDefinition.bounds
    <sim.rules.definition.RuleDefinition.bounds>`, objects of :mod:`sim.theorems`) that select its
    variant and whose hypotheses hold on the seed's game (a fixed reference, π_0 = π_ref, the rule's τ
    equal to the game's, Bradley–Terry rewards …, each bound's own list); docs/theory.md §H tabulates them.

    Args:
      table: the run table of :func:`sim.run` for ``spec``.
      spec: the spec (dict, path or :class:`~sim.spec.ExperimentSpec`) the table came from.
      games: optional ``(games, game_axes, targets)`` of :func:`sim.seed_games.build_games` for ``spec`` in
        float64 (what the run used), so they are not built and solved again; built from ``spec`` when omitted.

    Returns:
      DataFrame with columns ``rule, seed, iteration, metric, bound_name, observed, bound, ratio,
      holds``: ratio = observed/bound, NaN where the bound is at or below the run precision's rounding
      floor (:func:`sim.diagnostics.precision_floor`, 2.2e-14 in float64), which the recorded metric
      cannot resolve (a bound of 1e-47 against a metric at its floor of 1e-17 would read 1e30);
      holds = observed ≤ bound·(1 + 1e-9) + max(1e-12, floor).  Empty (same columns) when no bound applies.
    """

    if isinstance(spec, str):
        spec = load_spec(spec)

    spec = parse_spec(spec)
    if spec.run.mode != "exact" and getattr(spec.run, "problem", "game") != "game":
        raise PrefsimError(
            f"tightness_report: run.problem = {spec.run.problem!r} is not the [game] table; the bounds are "
            'computed from the game\'s P, π_ref and rewards, so only problem = "game" can be checked.'
        )
    spec, context = per_seed_games(spec, games)
    labels = _labels(spec)
    pieces = []  # (rule label, seed, rows of one bound): one table built at the end, not one per bound and seed
    for (label, seed), frame in _trajectories(table):
        if label not in labels:
            raise PrefsimError(f"tightness_report: rule {label!r} of the table is not in the spec.")
        if seed not in context:
            raise PrefsimError(f"tightness_report: seed {seed} of the table is not in the spec.")
        name, parameters = labels[label]
        for rows in _bound_rows(name, parameters, frame, context[seed]):
            pieces.append((label, seed, rows))
    columns = ["rule", "seed", "iteration", "metric", "bound_name", "observed", "bound", "ratio", "holds"]
    if not pieces:
        return pd.DataFrame(columns=columns)
    lengths = [len(rows["iteration"]) for _, _, rows in pieces]

    def repeated(values, dtype=object):  # one value per piece, repeated over the piece's rows
        return np.repeat(np.array(values, dtype=dtype), lengths)

    def joined(key):  # the pieces' arrays end to end
        return np.concatenate([rows[key] for _, _, rows in pieces])

    report = pd.DataFrame(
        {
            "rule": repeated([label for label, _, _ in pieces]),
            "seed": repeated([seed for _, seed, _ in pieces], None),
            "iteration": joined("iteration"),
            "metric": repeated([rows["metric"] for _, _, rows in pieces]),
            "bound_name": repeated([rows["bound_name"] for _, _, rows in pieces]),
            "observed": joined("observed"),
            "bound": joined("bound"),
        }
    )
    floor = precision_floor(spec.precision)
    resolved = report["bound"].to_numpy() > floor
    with np.errstate(divide="ignore", invalid="ignore"):
        report["ratio"] = np.where(resolved, report["observed"] / report["bound"], np.nan)
    report["holds"] = report["observed"] <= report["bound"] * (1.0 + 1e-9) + max(1e-12, floor)
    return report[columns]


#: ``bounds_for_run(...).attrs[NOT_DRAWN]``: (rule label, bound_name) → why a bound the run evaluated has no curve.
NOT_DRAWN = "bounds_not_drawn"


@in_float64
def bounds_for_run(table: pd.DataFrame, spec: ExperimentSpec | dict, games: tuple | None = None) -> pd.DataFrame:
    """Bound curves for figures: per rule × metric × iteration the largest bound over seeds.

    The max over seeds bounds every seed, hence the mean (and median) curve drawn by
    :func:`sim.plotting.plot_metric`, but only at iterations where the bound holds for **every** seed of
    the rule: a bound whose condition fails on some seeds (MMD's step η ≤ τ/L² depends on each seed's
    game) bounds no curve over all seeds and gets none.  Bound values at or below the precision's
    rounding floor are not drawn either: the recorded metric stops there, so the curve would seem to
    cross a bound it cannot resolve.  Why an evaluated bound got no curve is in
    ``result.attrs[NOT_DRAWN]`` ((rule, bound_name) → reason), which :func:`sim.bounds_table.missing_bound_notes`
    reports.  Columns: ``rule, metric, iteration, bound, label``.  Empty for sampled-mode runs: the
    theorems are about exact (population) updates, and a dashed "bound" next to a sampled curve would
    misstate what they promise (use :func:`tightness_report` to compare anyway).
    """

    columns = ["rule", "metric", "iteration", "bound", "label"]
    parsed = parse_spec(spec)
    if parsed.run.mode != "exact":
        return pd.DataFrame(columns=columns)
    report = tightness_report(table, parsed, games)
    if report.empty:
        return pd.DataFrame(columns=columns)
    seeds = table.groupby("rule", sort=False)["seed"].nunique()
    keys = ["rule", "metric", "bound_name", "iteration"]
    grouped = report.groupby(keys, sort=False)["bound"].agg(["max", "count"]).reset_index()
    grouped = grouped.rename(columns={"max": "bound"})
    every_seed = grouped["count"].to_numpy() == grouped["rule"].map(seeds).to_numpy()
    resolved = grouped["bound"].to_numpy() > precision_floor(parsed.precision)
    not_drawn, labels = {}, _labels(parsed)
    for (rule, name), frame in grouped.groupby(["rule", "bound_name"], sort=False):
        rows = frame.index.to_numpy()
        if not every_seed[rows].any():
            bound = next(b for b in rule_info(labels[rule][0]).bounds if b.label == name)
            evaluated = report[(report["rule"] == rule) & (report["bound_name"] == name)]["seed"].nunique()
            not_drawn[rule, name] = f"{bound.unmet} on {seeds[rule] - evaluated} of its {seeds[rule]} seeds' games"
        elif not (every_seed & resolved)[rows].any():
            not_drawn[rule, name] = f"its values lie below the {parsed.precision} rounding floor"
    grouped = grouped[every_seed & resolved].reset_index(drop=True)
    grouped["label"] = grouped["bound_name"].str.split(":").str[0] + " bound (" + grouped["rule"] + ")"
    result = grouped[columns]
    result.attrs[NOT_DRAWN] = not_drawn
    return result
