"""The registry as data: what ``prefsim rules`` (and ``--json``) prints and the docs list.

Everything here is read from :data:`sim.rules.RULES`, so the catalogue cannot drift from the code.
"""

from __future__ import annotations

from bandits.pair_schemes import default_scheme, schemes_for
from sim.rules import RULES, RuleDefinition


def accepted_schemes(definition: RuleDefinition, mode: str) -> list:
    """The pair schemes a rule's loss accepts in ``mode`` (``sampled``/``llm``); a wrapper: its bases'."""
    if mode not in definition.modes:
        return []
    if definition.wrapper:
        bases = [RULES[name] for name in definition.parameter("base").choices]
        return sorted({s for base in bases for s in accepted_schemes(base, mode)}, key=schemes_for(mode).index)
    data = definition.data
    schemes = [s for s in schemes_for(mode) if not data.schemes or s in data.schemes]
    return [s for s in schemes if data.unreadable(s, mode) is None]


def describe_rule(definition: RuleDefinition) -> dict:
    """One rule as JSON-ready data: name, paper, summary, parameters, modes, pair schemes, bounds, aliases."""
    data = definition.data
    schemes = {}
    if "sampled" in definition.modes:
        schemes = {
            "sampled": accepted_schemes(definition, "sampled"),
            "llm": accepted_schemes(definition, "llm"),
            "default": default_scheme(data.schemes) if data is not None else "(the base's)",
        }
    return {
        "name": definition.name,
        "summary": definition.summary,
        "paper": definition.paper,
        "parameters": [parameter.describe() for parameter in definition.parameters],
        "modes": list(definition.modes),
        "pair_schemes": schemes,
        "needs_win_rates": bool(data is not None and data.needs_win_rates),
        "offline": definition.offline is not None,
        "bounds": [bound.describe() for bound in definition.bounds],
        "wrapper": definition.wrapper,
        "proximal": definition.proximal,
        "needs_rewards": definition.needs_rewards,
        "aliases": list(definition.aliases),
    }


def describe_rules() -> list:
    """Every registered rule, in registry order (:func:`describe_rule`)."""
    return [describe_rule(definition) for definition in RULES.values()]
