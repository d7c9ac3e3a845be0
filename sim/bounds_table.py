"""The theory bounds of a run, computed once when the run ends and stored as ``bounds.csv``.

Figures read this file through :mod:`sim.bounds_file` (plotting never rebuilds games, solves for Nash
policies or imports :mod:`sim.theory`).  Columns:
``rule, metric, iteration, bound, label`` — per rule label × metric × recorded iteration the largest
bound over seeds (a bound on every seed, hence on the mean curve; none where the bound fails on some
seed or lies below the rounding floor), as :func:`sim.theory.bounds_for_run` computes it.  Which bound
applies to which rule, and under which hypotheses: each rule definition's ``bounds``
(:mod:`sim.theorems`), tabulated in docs/theory.md §H.

:func:`missing_bound_notes` says, for every rule whose definition lists a drawn bound for its variant
but got none on this run, why (sampled mode, π_0 ≠ π_ref, a rule τ different from the game's, a moving
reference, …), so a bound never disappears without a message.
"""

from __future__ import annotations

import pandas as pd

from sim import theory
from sim.bounds_file import BOUND_COLUMNS
from sim.reference_schedule import as_run
from sim.rules import rule_info
from sim.spec import ExperimentSpec, RuleSpec
from sim.theorems import Bound, spec_setting

#: Said for every rule with a bound when the run is not in exact mode.
SAMPLED = "the theorems are about exact (population) updates and this is a sampled-mode run"


def _selected(rule: RuleSpec, point: dict, iterations: int) -> tuple[dict, list[Bound]]:
    """The parameters of one grid point of ``rule`` as a run of ``iterations`` executes them
    (:func:`sim.rules.reference.as_run`) and the drawn bounds of its definition that select them."""
    parameters = as_run({**rule.fixed(), **point}, iterations)
    return parameters, [b for b in rule_info(rule.name).bounds if b.drawn and b.selects(parameters)]


def compute_bounds(table: pd.DataFrame, spec: ExperimentSpec, games: tuple | None = None) -> pd.DataFrame:
    """Bound curves of the run (columns :data:`BOUND_COLUMNS`; empty when none applies), with
    ``attrs[theory.NOT_DRAWN]`` saying why an evaluated bound got no curve (:func:`sim.theory.bounds_for_run`).

    ``games``: the run's float64 ``(games, game_axes, targets)`` (:func:`sim.seed_games.build_games`), which
    are then not built and solved a second time (:func:`sim.theory.tightness_report`)."""
    selected = any(_selected(rule, point, spec.iterations)[1] for rule in spec.rules for _, point in rule.grid_labels())
    if spec.run.mode != "exact" or not selected:
        return pd.DataFrame(columns=BOUND_COLUMNS)  # nothing to bound: do not rebuild the games
    bounds = theory.bounds_for_run(table, spec, games)
    stored = bounds[BOUND_COLUMNS].reset_index(drop=True)
    stored.attrs[theory.NOT_DRAWN] = bounds.attrs.get(theory.NOT_DRAWN, {})
    return stored


def missing_bound_notes(spec: ExperimentSpec, bounds: pd.DataFrame | None) -> list[str]:
    """One message per rule table whose bounds got no curve on this run, and one per bound that got none
    where the table got others.

    Each grid point of a rule (``inpo[tau=0.3]``) is judged on its own parameters.  Points with no curve
    at all say ``no theory bound drawn for <labels>: <reasons>.`` (labels sharing their reasons together;
    the rule's label when all its points share them): each selected bound's first failing hypothesis, or
    what the data decided (``bounds.attrs[NOT_DRAWN]``: the bound's condition held on only some seeds'
    games, or its values fell below the rounding floor), or the bound's ``unmet``.  A point with some
    curves says ``no <bound> bound drawn for <label>: <reason>.`` for each selected bound without one.
    """
    drawn = set() if bounds is None or bounds.empty else set(bounds["rule"])
    curves = set() if bounds is None or bounds.empty else set(zip(bounds["rule"], bounds["label"]))
    decided = {} if bounds is None else bounds.attrs.get(theory.NOT_DRAWN, {})
    notes = []
    for rule in spec.rules:
        points = rule.grid_labels()
        missing: dict[str, list[str]] = {}  # reasons → the point labels with no curve for them
        for label, point in points:
            parameters, selected = _selected(rule, point, spec.iterations)
            if not selected:
                continue
            setting = spec_setting(spec.game, parameters)
            why = {b.label: b.reason(setting) or decided.get((label, b.label)) or b.unmet for b in selected}
            if spec.run.mode != "exact":
                missing.setdefault(SAMPLED, []).append(label)
            elif label not in drawn:
                missing.setdefault("; ".join(dict.fromkeys(why.values())), []).append(label)
            else:
                for bound in selected:
                    if (label, f"{bound.short} bound ({label})") not in curves:
                        notes.append(f"no {bound.short} bound drawn for {label}: {why[bound.label]}.")
        for reasons, labels in missing.items():
            which = rule.label if len(labels) == len(points) else ", ".join(labels)
            notes.append(f"no theory bound drawn for {which}: {reasons}.")
    return notes
