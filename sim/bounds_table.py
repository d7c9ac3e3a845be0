"""The theory bounds of a run, computed once when the run ends and stored as ``bounds.csv``.

Figures read this file through :mod:`sim.bounds_file` (plotting never rebuilds games, solves for Nash
policies or imports :mod:`sim.theory`).  Columns:
``rule, metric, iteration, bound, label`` — per rule label × metric × recorded iteration the largest
bound over seeds (a bound on every seed, hence on the mean curve), as :func:`sim.theory.bounds_for_run`
computes it.  Which bound applies to which rule, and under which hypotheses: each rule definition's
``bounds`` (:mod:`sim.theorems`), tabulated in docs/theory.md §H.

:func:`missing_bound_notes` says, for every rule whose definition lists a drawn bound for its variant
but got none on this run, why (sampled mode, π_0 ≠ π_ref, a rule τ different from the game's, a moving
reference, …), so a bound never disappears without a message.
"""

from __future__ import annotations

import pandas as pd

from sim import theory
from sim.bounds_file import BOUND_COLUMNS
from sim.rules import rule_info
from sim.spec import ExperimentSpec, RuleSpec
from sim.theorems import Bound, spec_setting

#: Said for every rule with a bound when the run is not in exact mode.
SAMPLED = "the theorems are about exact (population) updates and this is a sampled-mode run"


def _selected(rule: RuleSpec) -> tuple[dict, list[Bound]]:
    """The first grid point's parameters and the drawn bounds of the rule's definition that select it."""
    parameters = {**rule.fixed(), **rule.grid_labels()[0][1]}
    return parameters, [b for b in rule_info(rule.name).bounds if b.drawn and b.selects(parameters)]


def compute_bounds(table: pd.DataFrame, spec: ExperimentSpec, games: tuple | None = None) -> pd.DataFrame:
    """Bound curves of the run (columns :data:`BOUND_COLUMNS`; empty when none applies).

    ``games``: the run's float64 ``(games, game_axes, targets)`` (:func:`sim.seed_games.build_games`), which
    are then not built and solved a second time (:func:`sim.theory.tightness_report`)."""
    if spec.run.mode != "exact" or not any(_selected(rule)[1] for rule in spec.rules):
        return pd.DataFrame(columns=BOUND_COLUMNS)  # nothing to bound: do not rebuild the games
    bounds = theory.bounds_for_run(table, spec, games)
    return bounds[BOUND_COLUMNS].reset_index(drop=True)


def missing_bound_notes(spec: ExperimentSpec, bounds: pd.DataFrame | None) -> list[str]:
    """One message per rule table whose bounds got no curve on this run, and one per bound its hypotheses rule out.

    A table with no curve at all says ``no theory bound drawn for <labels>: <reasons>.`` (the first
    failing hypothesis of each selected bound, or what the data decide); a table that got some curves
    but where a selected bound's hypotheses fail on the spec (e.g. INPO's theorems under a moving
    reference) says ``no <bound> bound drawn for <label>: <reason>.``
    """
    drawn = set() if bounds is None or bounds.empty else set(bounds["rule"])
    notes = []
    for rule in spec.rules:
        parameters, selected = _selected(rule)
        if not selected:
            continue
        labels = [label for label, _ in rule.grid_labels()]
        missing = [label for label in labels if label not in drawn]
        setting = spec_setting(spec.game, parameters)
        if spec.run.mode != "exact":
            reasons = [SAMPLED]
        else:
            reasons = list(dict.fromkeys(b.reason(setting) or b.unmet for b in selected))
        if missing:
            which = rule.label if len(missing) == len(labels) else ", ".join(missing)
            notes.append(f"no theory bound drawn for {which}: {'; '.join(reasons)}.")
        if len(missing) < len(labels):
            for bound in selected:
                reason = bound.reason(setting)
                if reason is not None:
                    notes.append(f"no {bound.short} bound drawn for {rule.label}: {reason}.")
    return notes
