"""Checks of a sampled-mode spec: the ``[run]`` keys against the game and every rule's data needs.

:mod:`sim.spec` calls :func:`validate_sampled_spec` when ``run.mode = "sampled"``; every rule check
reads the rule's definition in the registry (:mod:`sim.rules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bandits.errors import PrefsimError
from bandits.games import GameSpec
from bandits.pair_schemes import check_candidates, resolve_scheme
from sim.rules import base_of, base_parameters, rule_info, surrogate_sentence
from sim.rules.apo import check_form
from sim.rules.reference import REFERENCE_EVERY
from sim.sampled.engine import check_settings
from sim.sampled.losses import check_sampled_rule
from sim.sampled.offline import check_offline_rule
from sim.spec_checks import LINEAR_PROBLEMS

PROBLEMS = ("game", *LINEAR_PROBLEMS, "ring")
FEATURES = ("one_hot", "random")


def validate_sampled_spec(run: Any, game: GameSpec, rules: Sequence[Any]) -> None:
    """Check the ``[run]`` sampled keys against the game and rules (raises :class:`PrefsimError`)."""
    check_settings(run)
    scheme = resolve_scheme(run.pair_scheme, "sampled", "run.pair_scheme")
    if run.problem not in PROBLEMS:
        raise PrefsimError(f"run.problem: unknown problem {run.problem!r}; choose one of {', '.join(PROBLEMS)}.")
    if run.features not in FEATURES:
        raise PrefsimError(f"run.features: expected one of {', '.join(FEATURES)}, got {run.features!r}.")
    for name in ("feature_dim", "contexts", "ring_grid", "candidates"):
        value = getattr(run, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PrefsimError(f"run.{name}: expected an integer ≥ 1, got {value!r}.")
    check_candidates(scheme, run.candidates)
    if not isinstance(run.self_comparison, bool):
        raise PrefsimError(f"run.self_comparison: expected true or false, got {run.self_comparison!r}.")
    if run.problem == "ring" and run.ring_grid < 2:
        raise PrefsimError(
            f"run.ring_grid: the ring task needs at least 2 grid points per axis (K = ring_grid²), got {run.ring_grid}."
        )
    if run.problem == "linear_preference_game" and run.feature_dim < 2:
        raise PrefsimError(
            "run.feature_dim: a linear preference game needs d ≥ 2 (a non-zero skew-symmetric A), "
            f"got {run.feature_dim}."
        )
    if run.contexts > 1 and run.problem not in LINEAR_PROBLEMS:
        raise PrefsimError(
            "run.contexts: several contexts need a linear problem (linear_bradley_terry or linear_preference_game)."
        )
    if run.problem in LINEAR_PROBLEMS and game.arms is None:
        raise PrefsimError(f"game.arms: run.problem = {run.problem!r} needs the number of arms K.")
    if run.problem == "game" and run.policy != "tabular" and game.initial != "reference":
        raise PrefsimError(f'run.policy: a {run.policy} policy starts at π_ref; set game.initial = "reference".')
    has_rewards = (run.problem == "game" and game.kind == "bradley_terry") or run.problem in (
        "linear_bradley_terry",
        "ring",
    )
    if run.pair_scheme == "best_worst_by_reward" and not has_rewards:
        raise PrefsimError("run.pair_scheme: best_worst_by_reward ranks by reward and needs a Bradley–Terry problem.")
    for index, rule in enumerate(rules):
        where = f"rule #{index + 1} ({rule.label})"
        check_sampled_rule(rule.name, rule.parameters, run.pair_scheme, where)
        if run.data == "offline":
            check_offline_rule(rule.name, where)
            if rule_info(base_of(rule.name, rule.parameters)).data.stages:
                raise PrefsimError(
                    f"{where}: rule {rule.name} draws fresh pairs at every stage of an iteration (from π_t and its "
                    'half step); run.data = "offline" has one fixed dataset. Use data = "online".'
                )
            if REFERENCE_EVERY.name in rule.parameters:
                raise PrefsimError(
                    f'{where}: reference_every moves the rule\'s reference to π_t, while run.data = "offline" '
                    'trains on one dataset drawn from the fixed π_ref; use data = "online" with reference '
                    "advancement."
                )
        base = base_of(rule.name, rule.parameters)
        if rule_info(rule.name).wrapper:
            check_form(rule.parameters.get("form", "parameters"), base, "sampled", where)
        if rule_info(base).needs_rewards and not has_rewards:
            raise PrefsimError(
                f"{where}: the proximal step's exact counterpart (DPO) needs a Bradley–Terry problem (game.kind = "
                f'"bradley_terry", or run.problem = linear_bradley_terry / ring).'
            )


def biased_loss_notes(run: Any, rules: Sequence[Any]) -> list[str]:
    """One message per rule whose loss's population minimiser is not its exact update: under the run's pair
    scheme (the definition's ``PairData.unbiased_schemes`` does not list it), under its parameters (one of
    ``PairData.minimiser_parameters`` has another value), or always (``PairData.minimiser``: a loss that is a
    step, not an argmin); what a sampled run's ``distance_to_exact`` then shows."""
    notes = []
    for rule in rules:
        base = base_of(rule.name, rule.parameters)
        own = base_parameters(rule.name, rule.parameters)
        data = rule_info(base).data
        for key, value in data.minimiser_parameters:
            if own.get(key, value) != value:
                notes.append(
                    f"rule {rule.label}: {base}'s loss has the {key} = {value!r} step as its population minimiser, "
                    f"not the {key} = {own[key]!r} step that distance_to_exact measures against, so "
                    "distance_to_exact levels off at the gap between the two steps (which grows with the step "
                    f"size; docs/sampled_mode.md) instead of falling to 0 with more pairs; {key} = {value!r} "
                    "compares with the step the loss trains."
                )
        surrogate = surrogate_sentence(base, "(inner_steps, tolerance) on pairs from π_t")
        if surrogate is not None:
            notes.append(f"rule {rule.label}: {surrogate}; distance_to_exact measures against {base}'s step.")
        unbiased = data.unbiased_schemes
        if run.data == "online" and unbiased and run.pair_scheme not in unbiased:
            notes.append(
                f"rule {rule.label}: {base}'s soft label σ(r̂(y₁) − r̂(y₂)) is not linear in the win-rate estimates "
                f"r̂ that pair_scheme {run.pair_scheme!r} gives, so its population minimiser is not the exact {base} "
                f"step and distance_to_exact does not fall to 0 with more pairs; pair_scheme = "
                f"{' or '.join(repr(s) for s in unbiased)} trains the exact rule."
            )
    return notes
