"""The registry as data: what ``prefsim rules`` (and ``--json``) prints and the docs list.

Everything here is read from :data:`sim.rules.RULES`, so the catalogue cannot drift from the code.  The
docs' rule tables (README's, docs/llm_bridge.md's) and docs/sampled_mode.md's list of offline rules are
written from it by ``python -m sim.doc_tables`` (:mod:`sim.doc_tables`).
"""

from __future__ import annotations

from bandits.pair_schemes import default_scheme, schemes_for
from sim.rules import RULES, RuleDefinition
from sim.rules.reference import REFERENCE_EVERY


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


def spec_parameters(definition: RuleDefinition) -> tuple:
    """The parameters a spec's rule table accepts for ``definition``: its own, and ``reference_every`` for an
    anchored (τ-regularised) rule that does not list it itself (:func:`sim.rules.resolve_parameters`)."""
    if definition.anchored and definition.parameter(REFERENCE_EVERY.name) is None:
        return definition.parameters + (REFERENCE_EVERY,)
    return definition.parameters


def describe_rule(definition: RuleDefinition) -> dict:
    """One rule as JSON-ready data: name, paper, summary, parameters (those a spec accepts, so
    ``reference_every`` for an anchored rule), modes, pair schemes, whether sampled mode trains it on
    offline data, bounds, aliases."""
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
        "parameters": [parameter.describe() for parameter in spec_parameters(definition)],
        "modes": list(definition.modes),
        "pair_schemes": schemes,
        "needs_win_rates": bool(data is not None and data.needs_win_rates),
        "offline": definition.trains_offline,
        "bounds": [bound.describe() for bound in definition.bounds],
        "wrapper": definition.wrapper,
        "proximal": definition.proximal,
        "needs_rewards": definition.needs_rewards,
        "aliases": list(definition.aliases),
    }


def describe_rules() -> list:
    """Every registered rule, in registry order (:func:`describe_rule`)."""
    return [describe_rule(definition) for definition in RULES.values()]


def parameter_text(parameter: dict) -> str:
    """One described parameter (:meth:`~sim.rules.definition.Parameter.describe`) in words, as ``prefsim rules``
    prints it: ``name: meaning (default; constraint)``."""
    if parameter["choices"]:
        default = f"one of {', '.join(parameter['choices'])}; default {parameter['default']}"
    elif parameter["required"]:
        default = "required"
    elif parameter["default"] is None:
        default = "optional"
    else:
        default = f"default: {parameter['default']}"
    constraint = f"; {parameter['constraint']}" if parameter["constraint"] and not parameter["choices"] else ""
    return f"{parameter['name']}: {parameter['meaning']} ({default}{constraint})"


def readme_rules_table() -> str:
    """README's rule table: name (old names), the update in log space, the parameters a spec accepts."""
    rows = ["| name | update (log space, `norm` = subtract logsumexp) | parameters |", "|---|---|---|"]
    for definition, rule in zip(RULES.values(), describe_rules(), strict=True):
        parameters = "<br>".join(_parameter_cell(parameter) for parameter in rule["parameters"])
        rows.append(f"| {_name_cell(rule)} | {_cell(definition.update_formula or rule['summary'])} | {parameters} |")
    return "\n".join(rows)


def bridge_rules_table() -> str:
    """docs/llm_bridge.md's rule table: every rule the bridge runs, its loss, anchors and default pairs."""
    rows = ["| rule | loss (docs/theory.md §C.12) | anchors | default `pairs` |", "|---|---|---|---|"]
    for definition, rule in zip(RULES.values(), describe_rules(), strict=True):
        if "llm" not in rule["modes"]:
            continue
        default = rule["pair_schemes"]["default"]
        pairs = f"`{default}`" if default in schemes_for("llm") else default
        if definition.data is not None and definition.data.opponent is not None:
            pairs += ", y′ from the rule's opponent (below)"
        loss, anchors = _cell(definition.loss_formula or "see `prefsim rules`"), _cell(definition.anchors)
        rows.append(f"| {_name_cell(rule)} | {loss} | {anchors} | {pairs} |")
    return "\n".join(rows)


def offline_rules_text() -> str:
    """docs/sampled_mode.md's sentence naming the rules sampled mode trains on offline data."""
    names = ", ".join(f"`{d.name}`" for d in RULES.values() if d.trains_offline)
    return (
        f"Rules: {names} (those with a known population minimiser on pairs from π_ref and a fixed reference); "
        "`pair_scheme` must be `lambda_p`."
    )


def _name_cell(rule: dict) -> str:
    old = f" (old name {', '.join(f'`{alias}`' for alias in rule['aliases'])})" if rule["aliases"] else ""
    return f"`{rule['name']}`{old}"


def _parameter_cell(parameter: dict) -> str:
    name, rest = parameter_text(parameter).split(": ", 1)
    return f"`{name}`: {_cell(rest)}"


def _cell(text: str) -> str:
    """``text`` inside a Markdown table cell: a ``|`` would end the cell."""
    return text.replace("|", "\\|")
