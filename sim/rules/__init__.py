"""Every update rule, one module each, and the registry that maps names to their definitions.

``prefsim rules`` (``--json``) lists every rule with its module's parameters, defaults, modes, pair schemes
and paper, and README's rule table is written from this registry (``python -m sim.doc_tables``).  Every
anchored (τ-regularised) rule also accepts ``reference_every = M``: its own reference moves to π_t every M
updates (:mod:`sim.rules.reference`).

APO takes its base rule's parameters under their own names, except the base INPO's ``schedule``,
which is ``base_schedule`` (APO's own ``schedule`` is the extrapolation schedule).

Each module's ``DEFINITION`` (:class:`~sim.rules.definition.RuleDefinition`) holds the rule's
parameters, exact update, per-pair loss, data needs, offline counterpart and bounds; :data:`RULES`
gathers them and every mode reads it.  A new rule is one module with a ``DEFINITION`` plus one entry in
:data:`_BUILT_IN` (or one :func:`register_rule` call from outside the package).

:func:`build_rule` turns a name and a parameter dict into an :class:`~sim.rules.base.ExactRule`;
numeric parameters may be JAX tracers (a swept grid is one ``vmap``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from bandits.errors import PrefsimError
from sim.rules import apo, dno, dpo, extragradient, inpo, mmd, mnpo, nash_md, online_ipo, presets, sppo
from sim.rules.base import ExactRule, ExactState
from sim.rules.definition import GAME_TAU, JAX_OPS, DerivedDefault, LossOps, PairData, Parameter, RuleDefinition
from sim.rules.reference import REFERENCE_EVERY, with_reference_advancement

_BUILT_IN = (
    online_ipo.DEFINITION,
    inpo.DEFINITION,
    mmd.DEFINITION,
    nash_md.DEFINITION,
    sppo.DEFINITION,
    dno.DEFINITION,
    extragradient.EXTRAGRADIENT,
    extragradient.OPTIMISTIC,
    dpo.DEFINITION,
    apo.DEFINITION,
    presets.COMAL,
    presets.MPO,
    mnpo.DEFINITION,
)

#: name → definition: the one source of rule names for exact mode, sampled mode, the bridge and the docs.
RULES: dict[str, RuleDefinition] = {definition.name: definition for definition in _BUILT_IN}
#: Old name → current name (each use prints a deprecation note).
ALIASES: dict[str, str] = {alias: d.name for d in _BUILT_IN for alias in d.aliases}

#: Kept for readers of the previous API: a registry entry is a :class:`RuleDefinition`.
RuleInfo = RuleDefinition


def register_rule(definition: RuleDefinition, replace: bool = False) -> RuleDefinition:
    """Add a rule to :data:`RULES` (every mode sees it at once); returns the definition.

    Raises :class:`PrefsimError` when the name (or an alias) is taken, unless ``replace``.
    """
    if not isinstance(definition, RuleDefinition):
        raise PrefsimError(f"register_rule: expected a RuleDefinition, got {type(definition).__name__}.")
    taken = (definition.name in RULES or definition.name in ALIASES) and not replace
    if taken:
        raise PrefsimError(f"register_rule: a rule named {definition.name!r} exists; pass replace=True to replace it.")
    RULES[definition.name] = definition
    for alias in definition.aliases:
        ALIASES[alias] = definition.name
    return definition


def unregister_rule(name: str) -> None:
    """Remove a rule added with :func:`register_rule` (tests)."""
    definition = RULES.pop(name, None)
    for alias in () if definition is None else definition.aliases:
        ALIASES.pop(alias, None)


def canonical_name(name: Any, where: str = "rule", mode: str = "llm") -> str:
    """The current name of rule ``name``.

    The aliases are the LLM bridge's old names (``ipo``, ``nash_md_pg``): in an LLM spec they still
    work for one release and print a deprecation note; an exact or sampled spec never accepted them,
    so there they are an error that names the current rule.
    """
    if isinstance(name, str) and name in ALIASES:
        current = ALIASES[name]
        if mode != "llm":
            raise PrefsimError(
                f"{where}: unknown rule {name!r} (the LLM bridge's old name of {current!r}); use {current!r}."
            )
        print(
            f"note: {where}: rule {name!r} is now called {current!r}; the old name works for one more release.",
            file=sys.stderr,
        )
        return current
    return name


def uses_built_in_code(name: str, parameters: dict) -> bool:
    """Whether rule ``name`` (with a wrapper's ``base``) runs prefsim's own definition, so that its code
    is prefsim's source (:class:`sim.program_cache.SourceKey`), not a rule :func:`register_rule` added
    or replaced at run time."""
    names = [name, base_of(name, parameters)] if rule_info(name).wrapper else [name]
    return all(any(rule_info(entry) is built_in for built_in in _BUILT_IN) for entry in names)


def rule_info(name: str) -> RuleDefinition:
    """Registry entry, or a clear error listing the known names."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise PrefsimError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}.") from None


def surrogate_sentence(base: str, how: str) -> str | None:
    """What minimising ``base``'s loss ``how`` reaches, for a loss that is a step's surrogate, not an argmin
    (its definition's ``PairData.minimiser``: Nash-MD-PG), as sampled mode's warning and the bridge's note say
    it; ``None`` for every other rule."""
    minimiser = rule_info(base).data.minimiser
    if minimiser is None:
        return None
    return f"{base}'s loss is a gradient step's surrogate, not an argmin: minimised {how} it moves toward {minimiser}"


def base_of(name: str, parameters: dict) -> str:
    """The rule whose loss and data a run uses: a wrapper's ``base``, else the rule itself."""
    return parameters.get("base", "dpo") if rule_info(name).wrapper else name


def base_parameters(name: str, parameters: dict) -> dict:
    """The parameters of :func:`base_of` (a wrapper's base parameters under their own names)."""
    if not rule_info(name).wrapper:
        return parameters
    own = {p.name for p in rule_info(name).parameters}
    return {_base_key(k): v for k, v in parameters.items() if k not in own}


def wrapper_parameters(name: str, parameters: dict) -> dict:
    """A wrapper's own parameters (``{}`` for a plain rule)."""
    if not rule_info(name).wrapper:
        return {}
    return {p.name: parameters[p.name] for p in rule_info(name).parameters if p.name in parameters}


def iteration_hook(name: str, parameters: dict, engine: str) -> Any:
    """The hook a wrapper rule runs after each proximal step in ``engine`` (``sampled``/``llm``), else ``None``.

    Raises :class:`PrefsimError` when the wrapper's settings cannot run in that engine.
    """
    info = rule_info(name)
    if not info.wrapper:
        return None
    return info.hook(wrapper_parameters(name, parameters), base_of(name, parameters), engine)


def resolve_parameters(name: str, given: dict, game_tau: float, where: str = "rule") -> dict:
    """Fill defaults, check names and types; return ``{param: value}`` for the rule and its APO base.

    Numbers may be lists (sweeps); the caller expands them.  Unknown keys are errors; renamed keys
    (:attr:`RuleDefinition.renamed`) are translated with a deprecation note.
    """
    info = rule_info(name)
    allowed = {p.name: p for p in info.parameters}
    if info.anchored and REFERENCE_EVERY.name not in allowed:
        allowed[REFERENCE_EVERY.name] = REFERENCE_EVERY
    given = _renamed(info, given, where)
    if info.wrapper:
        base_name = given.get("base", "dpo")
        if not isinstance(base_name, str) or base_name not in RULES or not RULES[base_name].proximal:
            proximal = ", ".join(n for n, r in RULES.items() if r.proximal)
            raise PrefsimError(f"{where}: {name}'s base must be a proximal rule ({proximal}), got {base_name!r}.")
        given = _renamed(RULES[base_name], given, where)
        for parameter in RULES[base_name].parameters:
            key = _apo_key(parameter.name)
            allowed[key] = dataclasses.replace(parameter, name=key)
    resolved = {}
    for key, value in given.items():
        if key not in allowed:
            raise PrefsimError(
                f"{where}: unknown parameter {key!r} for rule {name}; its parameters are {', '.join(allowed)}."
            )
        parameter = allowed[key]
        if parameter.choices:
            if not isinstance(value, str) or value not in parameter.choices:
                raise PrefsimError(f"{where}: {key} must be one of {', '.join(parameter.choices)}, got {value!r}.")
        else:
            values = value if isinstance(value, list) else [value]
            if not values or not all(_is_number(v) for v in values):
                raise PrefsimError(f"{where}: {key} must be a number or a list of numbers, got {value!r}.")
            if parameter.integer and not all(_is_integer(v) for v in values):
                raise PrefsimError(
                    f"{where}: {key} must be an {parameter.constraint} (a count, written without a decimal point; a "
                    f"list of them is swept), got {value!r}."
                )
        resolved[key] = value
    schedule_key = "base_schedule" if info.wrapper else "schedule"
    scheduled_eta = resolved.get(schedule_key) == "theorem4"  # the schedule sets η_t = τ(t+2)/2: no eta
    for key, parameter in allowed.items():
        if key in resolved:
            continue
        if parameter.optional or isinstance(parameter.default, DerivedDefault):
            continue
        if parameter.default == GAME_TAU:
            resolved[key] = float(game_tau)
        elif parameter.default is not None:
            resolved[key] = parameter.default
        elif not (key == "eta" and scheduled_eta):
            raise PrefsimError(f"{where}: rule {name} needs parameter {key!r} ({parameter.doc}).")
    for key, parameter in allowed.items():
        if key == "eta" and scheduled_eta:
            continue  # no default for it (comal's 3·tau), as no required eta
        if key not in resolved and isinstance(parameter.default, DerivedDefault):
            derived = parameter.default
            if any(isinstance(resolved.get(name), list) for name in derived.uses):
                raise PrefsimError(
                    f"{where}: {key} defaults to {derived.text}, which a sweep over {', '.join(derived.uses)} "
                    f"does not define; give {key} explicitly."
                )
            resolved[key] = derived.compute(resolved)
    if scheduled_eta and "eta" in given:
        # a given eta would be silently ignored (a sweep over it
        # would give identical runs under different labels)
        raise PrefsimError(f"{where}: eta is not used with schedule theorem4 (η_t = τ(t+2)/2); remove it.")
    if info.check is not None:
        info.check(resolved, where)
    return resolved


def build_rule(name: str, parameters: dict) -> ExactRule:
    """Construct the exact rule ``name`` from resolved scalar ``parameters``."""
    info = rule_info(name)
    if info.wrapper:
        base_name = parameters.get("base", "dpo")
        base = build_rule(base_name, base_parameters(name, parameters))
        own = {k: v for k, v in wrapper_parameters(name, parameters).items() if k != "base"}
        return info.exact(base, **own)
    keys = {p.name for p in info.parameters} - {REFERENCE_EVERY.name}
    try:
        rule = info.exact(**{k: v for k, v in parameters.items() if k in keys})
    except PrefsimError as error:  # a preset (comal) runs its base's (inpo's) checks: name the rule asked for
        said = str(error)
        base = said.split(":", 1)[0].removeprefix("rule ")
        if not said.startswith("rule ") or base == info.name:
            raise
        raise PrefsimError(f"rule {info.name} ({base}'s update):{said.split(':', 1)[1]}") from None
    every = parameters.get(REFERENCE_EVERY.name)
    rule = rule if every is None else with_reference_advancement(rule, every)
    return rule._replace(name=info.name)  # a preset runs its base's update under its own name


def _renamed(info: RuleDefinition, given: dict, where: str) -> dict:
    if not info.renamed or not any(key in given for key in info.renamed):
        return given
    given = dict(given)
    for old, (new, values) in info.renamed.items():
        if old not in given:
            continue
        if new in given:
            raise PrefsimError(f"{where}: give {new!r} only ({old!r} is its old name).")
        value = given.pop(old)
        given[new] = values.get(value, value) if isinstance(value, str) else value
        print(
            f"note: {where}: parameter {old} = {value!r} of rule {info.name} is now {new} = {given[new]!r}; "
            "the old form works for one more release.",
            file=sys.stderr,
        )
    return given


def _base_key(key: str) -> str:
    return "schedule" if key == "base_schedule" else key


def _apo_key(base_parameter: str) -> str:
    """Spec key of a wrapper's base-rule parameter: the base's ``schedule`` is ``base_schedule``."""
    return "base_schedule" if base_parameter == "schedule" else base_parameter


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = [
    "ALIASES",
    "GAME_TAU",
    "JAX_OPS",
    "RULES",
    "ExactRule",
    "ExactState",
    "LossOps",
    "PairData",
    "Parameter",
    "RuleDefinition",
    "RuleInfo",
    "base_of",
    "base_parameters",
    "build_rule",
    "iteration_hook",
    "canonical_name",
    "register_rule",
    "resolve_parameters",
    "rule_info",
    "surrogate_sentence",
    "unregister_rule",
    "uses_built_in_code",
    "wrapper_parameters",
]
