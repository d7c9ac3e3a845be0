"""The theory bounds of a run, computed once when the run ends and stored as ``bounds.csv``.

Figures read this file through :mod:`sim.bounds_file` (plotting never rebuilds games, solves for Nash
policies or imports :mod:`sim.theory`).  Columns:
``rule, metric, iteration, bound, label`` — per rule label × metric × recorded iteration the largest
bound over seeds (a bound on every seed, hence on the mean curve), as :func:`sim.theory.bounds_for_run`
computes it.  Which bound applies to which rule, and under which hypotheses: docs/theory.md §H.

:func:`missing_bound_notes` says, for every rule that has a theorem in :mod:`sim.theory` but got no
bound on this run, why (sampled mode, π_0 ≠ π_ref, a rule τ different from the game's, …), so a bound
never disappears without a message.
"""

from __future__ import annotations

import pandas as pd

from sim import theory
from sim.bounds_file import BOUND_COLUMNS
from sim.spec import ExperimentSpec

#: Rules with a bound in :mod:`sim.theory` (docs/theory.md §H).
RULES_WITH_BOUNDS = ("inpo", "sppo", "dno", "nash_md", "mmd", "dpo", "apo")
#: Rules whose bound is about the game's τ-regularised Nash, so their own τ must be the game's.
_TAU_RULES = ("inpo", "nash_md", "mmd")


def compute_bounds(table: pd.DataFrame, spec: ExperimentSpec) -> pd.DataFrame:
    """Bound curves of the run (columns :data:`BOUND_COLUMNS`; empty when none applies)."""
    if spec.run.mode != "exact" or not any(rule.name in RULES_WITH_BOUNDS for rule in spec.rules):
        return pd.DataFrame(columns=BOUND_COLUMNS)  # nothing to bound: do not rebuild the games
    bounds = theory.bounds_for_run(table, spec)
    return bounds[BOUND_COLUMNS].reset_index(drop=True)


def _reason(name: str, parameters: dict, spec: ExperimentSpec) -> str | None:
    """Why the bound of rule ``name`` cannot apply to this run (None: it can, or the data decide)."""
    game = spec.game
    if spec.run.mode != "exact":
        return "the theorems are about exact (population) updates and this is a sampled-mode run"
    if name in ("inpo", "dpo", "apo") and game.initial != "reference":
        return f'its bound starts from π_0 = π_ref and this game has initial = "{game.initial}"'
    if name in _TAU_RULES:
        if not game.tau > 0:
            return "its bound is about the τ-regularised Nash and the game has τ = 0"
        rule_tau = parameters.get("tau", game.tau)
        if isinstance(rule_tau, (int, float)) and abs(float(rule_tau) - float(game.tau)) > 1e-12:
            return (
                f"the rule's τ = {float(rule_tau):g} differs from the game's τ = {float(game.tau):g}, and the "
                "metrics measure the game's Nash (the theorem is about the rule's own τ)"
            )
    if name == "sppo" and parameters.get("normaliser", "exact") != "exact":
        return 'the Hedge bound holds for the exact normaliser, not normaliser = "paper"'
    if name in ("dpo", "apo") and game.kind != "bradley_terry":
        return "its bound needs Bradley–Terry rewards and the game is not kind = bradley_terry"
    if name == "apo" and parameters.get("base", "dpo") != "dpo":
        return f"the exact-reward APO bound is derived for base = dpo, not base = {parameters.get('base')}"
    if name == "mmd":
        return "MMD's linear rate needs the step η ≤ τ/L² (L = max|P − ½|), which this run's η exceeds"
    return None


def missing_bound_notes(spec: ExperimentSpec, bounds: pd.DataFrame | None) -> list[str]:
    """One message per rule table with a theorem in :mod:`sim.theory` that got no bound on this run."""
    drawn = set() if bounds is None or bounds.empty else set(bounds["rule"])
    notes = []
    for rule in spec.rules:
        if rule.name not in RULES_WITH_BOUNDS:
            continue
        labels = [label for label, _ in rule.grid_labels()]
        missing = [label for label in labels if label not in drawn]
        if not missing:
            continue
        point = rule.grid_labels()[0][1]
        reason = _reason(rule.name, {**rule.fixed(), **point}, spec)
        if reason is None:
            reason = "its hypotheses do not hold on the recorded trajectory"
        which = rule.label if len(missing) == len(labels) else ", ".join(missing)
        notes.append(f"no theory bound drawn for {which}: {reason}.")
    return notes
