r"""Every update rule, one module each, and the registry that maps spec names to them.

=================  ==============================================  ===============================
name               module (exact update + sampled loss)             parameters (paper names)
=================  ==============================================  ===============================
``inpo``           :mod:`sim.rules.inpo`                            eta (inverse LR), tau, schedule
``mmd``            :mod:`sim.rules.mmd`                             eta (step), tau (magnet)
``nash_md``        :mod:`sim.rules.nash_md`                         eta (LR), tau
``sppo``           :mod:`sim.rules.sppo`                            eta (LR), normaliser
``dno``            :mod:`sim.rules.dno`                             eta (inverse LR)
``online_ipo``     :mod:`sim.rules.online_ipo`                      tau
``extragradient``  :mod:`sim.rules.extragradient`                   eta (LR), tau
``optimistic``     :mod:`sim.rules.extragradient`                   eta (LR), tau
``dpo``            :mod:`sim.rules.dpo`                             beta
``apo``            :mod:`sim.rules.apo` (wraps dpo / sppo / inpo)   base, alpha, schedule + base's*
=================  ==============================================  ===============================

\* APO takes its base rule's parameters under their own names, except the base INPO's ``schedule``,
which is ``base_schedule`` (APO's own ``schedule`` is the extrapolation schedule).

:func:`build_rule` turns a name and a parameter dict into an :class:`~sim.rules.base.ExactRule`;
numeric parameters may be JAX tracers (a swept grid is one ``vmap``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bandits.errors import PrefsimError
from sim.rules.apo import apo
from sim.rules.base import ExactRule, ExactState
from sim.rules.dno import dno
from sim.rules.dpo import dpo
from sim.rules.extragradient import extragradient, optimistic
from sim.rules.inpo import inpo
from sim.rules.mmd import mmd
from sim.rules.nash_md import nash_md
from sim.rules.online_ipo import online_ipo
from sim.rules.sppo import sppo

#: Marker default: the rule's ``tau`` defaults to the game's τ.
GAME_TAU = "game.tau"


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One rule parameter as it appears in a spec."""

    name: str
    """Key in the ``[[rule]]`` table."""
    doc: str
    """Meaning, with the paper's convention."""
    default: Any = None
    """Default value; ``None`` means required; :data:`GAME_TAU` means the game's τ."""
    choices: tuple = ()
    """Allowed strings for a categorical parameter (empty for numbers)."""

    @property
    def numeric(self) -> bool:
        return not self.choices


@dataclasses.dataclass(frozen=True)
class RuleInfo:
    """Registry entry of a rule."""

    name: str
    factory: Callable[..., ExactRule]
    parameters: tuple
    paper: str
    summary: str
    proximal: bool = False
    """Can be APO's base (maps π_t to a proximal output π̂_{t+1})."""
    needs_rewards: bool = False
    """Needs a Bradley–Terry game (reward vector)."""

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)


_TAU_RULE = Parameter("tau", "KL(π‖π_ref) regularisation τ of the rule (default: the game's tau)", GAME_TAU)

RULES: dict[str, RuleInfo] = {
    info.name: info
    for info in (
        RuleInfo(
            "inpo",
            inpo,
            (
                Parameter("eta", "INVERSE learning rate η (1/η is the OMD step); needs eta > tau", None),
                _TAU_RULE,
                Parameter("schedule", "constant η, or theorem4: η_t = τ(t+2)/2", "constant", ("constant", "theorem4")),
            ),
            "Zhang et al., Iterative Nash Policy Optimization, ICLR 2025 (arXiv 2407.00617), Eq. (5)",
            "online mirror descent on the τ-regularised preference game",
            proximal=True,
        ),
        RuleInfo(
            "mmd",
            mmd,
            (
                Parameter("eta", "step size (learning rate) η of MMD", 1.0),
                Parameter(
                    "tau", "magnet strength (the MMD paper's α), magnet = π_ref (default: the game's tau)", GAME_TAU
                ),
            ),
            "Sokota et al., Magnetic Mirror Descent, ICLR 2023 (arXiv 2206.05825)",
            "mirror descent with a magnet at π_ref; equals INPO with η_INPO = τ + 1/η",
        ),
        RuleInfo(
            "nash_md",
            nash_md,
            (Parameter("eta", "learning rate η (ητ ≤ 1)", 0.1), _TAU_RULE),
            "Munos et al., Nash Learning from Human Feedback, ICML 2024 (arXiv 2312.00886)",
            "mirror descent against the geometric mixture π_t^{1−ητ}π_ref^{ητ}",
        ),
        RuleInfo(
            "sppo",
            sppo,
            (
                Parameter("eta", "learning rate η (the official code's beta = 1/η)", 1.0),
                Parameter(
                    "normaliser",
                    "exact log Z_t, or paper: the η/2 target solved as a constrained argmin",
                    "exact",
                    ("exact", "paper"),
                ),
            ),
            "Wu et al., Self-Play Preference Optimization, ICLR 2025 (arXiv 2405.00675)",
            "multiplicative weights in self-play on the unregularised game",
            proximal=True,
        ),
        RuleInfo(
            "dno",
            dno,
            (Parameter("eta", "INVERSE learning rate η: π_{t+1} ∝ π_t exp(Pπ_t/η)", 1.0),),
            "Rosset et al., Direct Nash Optimization (arXiv 2404.03715), theoretical algorithm",
            "exponential weights on the win rate against π_t (= SPPO with η_SPPO = 1/η)",
        ),
        RuleInfo(
            "online_ipo",
            online_ipo,
            (_TAU_RULE,),
            "Calandriello et al., Human Alignment of LLMs through Online Preference Optimisation, ICML 2024",
            "exact per-iteration argmin of online IPO = regularised best response BR_τ(π_t)",
        ),
        RuleInfo(
            "extragradient",
            extragradient,
            (Parameter("eta", "learning rate η (ητ ≤ 1)", 0.5), _TAU_RULE),
            "Cen et al. 2021; Zhou et al., EGPO (arXiv 2503.08942)",
            "mirror-prox: a half step, then the full step against the half-step policy",
        ),
        RuleInfo(
            "optimistic",
            optimistic,
            (Parameter("eta", "learning rate η (ητ ≤ 1)", 0.5), _TAU_RULE),
            "Rakhlin & Sridharan 2013; ONPO, Zhang et al. 2025 (arXiv 2502.16852)",
            "optimistic mirror descent (one product with P per iteration)",
        ),
        RuleInfo(
            "dpo",
            dpo,
            (Parameter("beta", "KL coefficient β of the proximal step", 1.0),),
            "Rafailov et al., DPO, NeurIPS 2023; iterative DPO with reference π_t (Xiong et al. 2024)",
            "proximal-point step π_{t+1} ∝ π_t exp(r/β) on a Bradley–Terry game",
            proximal=True,
            needs_rewards=True,
        ),
        RuleInfo(
            "apo",
            apo,
            (
                Parameter("base", "proximal base rule", "dpo", ("dpo", "sppo", "inpo")),
                Parameter("alpha", "extrapolation weight α ∈ [0, 1) (constant schedule)", 0.3),
                Parameter(
                    "schedule", "constant α, or nesterov α_k = (k−1)/(k+2)", "constant", ("constant", "nesterov")
                ),
            ),
            "He, Yuan & Gu, Accelerated Preference Optimization (arXiv 2410.06293), Eq. (3.6); "
            "not TRL's apo_zero (Anchored PO)",
            "Nesterov extrapolation between consecutive proximal outputs, wrapping a base rule",
        ),
    )
}


def rule_info(name: str) -> RuleInfo:
    """Registry entry, or a clear error listing the known names."""
    try:
        return RULES[name]
    except (KeyError, TypeError):
        raise PrefsimError(f"unknown rule {name!r}; known rules: {', '.join(RULES)}.") from None


def resolve_parameters(name: str, given: dict, game_tau: float, where: str = "rule") -> dict:
    """Fill defaults, check names and types; return ``{param: value}`` for the rule and its APO base.

    Numbers may be lists (sweeps); the caller expands them.  Unknown keys are errors.
    """
    info = rule_info(name)
    allowed = {p.name: p for p in info.parameters}
    if name == "apo":
        base_name = given.get("base", "dpo")
        if not isinstance(base_name, str) or base_name not in RULES or not RULES[base_name].proximal:
            proximal = ", ".join(n for n, r in RULES.items() if r.proximal)
            raise PrefsimError(f"{where}: apo's base must be a proximal rule ({proximal}), got {base_name!r}.")
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
            if value not in parameter.choices:
                raise PrefsimError(f"{where}: {key} must be one of {', '.join(parameter.choices)}, got {value!r}.")
        else:
            values = value if isinstance(value, list) else [value]
            if not values or not all(_is_number(v) for v in values):
                raise PrefsimError(f"{where}: {key} must be a number or a list of numbers, got {value!r}.")
        resolved[key] = value
    for key, parameter in allowed.items():
        if key in resolved:
            continue
        if parameter.default == GAME_TAU:
            resolved[key] = float(game_tau)
        elif parameter.default is not None:
            resolved[key] = parameter.default
        elif not (key == "eta" and resolved.get("base_schedule" if name == "apo" else "schedule") == "theorem4"):
            raise PrefsimError(f"{where}: rule {name} needs parameter {key!r} ({parameter.doc}).")
    inpo_schedule = (
        resolved.get("base_schedule") if name == "apo" and resolved.get("base") == "inpo" else resolved.get("schedule")
    )
    if (
        (name == "inpo" or (name == "apo" and resolved.get("base") == "inpo"))
        and inpo_schedule == "theorem4"
        and "eta" in given
    ):
        # the schedule sets η_t = τ(t+2)/2; a given eta would be silently ignored (a sweep over it
        # would give identical runs under different labels)
        raise PrefsimError(f"{where}: eta is not used with schedule theorem4 (η_t = τ(t+2)/2); remove it.")
    return resolved


def build_rule(name: str, parameters: dict) -> ExactRule:
    """Construct the exact rule ``name`` from resolved scalar ``parameters``."""
    info = rule_info(name)
    if name == "apo":
        base_name = parameters.get("base", "dpo")
        base_parameters = {
            p.name: parameters[_apo_key(p.name)] for p in RULES[base_name].parameters if _apo_key(p.name) in parameters
        }
        base = build_rule(base_name, base_parameters)
        return apo(base, alpha=parameters.get("alpha", 0.3), schedule=parameters.get("schedule", "constant"))
    keys = {p.name for p in info.parameters}
    return info.factory(**{k: v for k, v in parameters.items() if k in keys})


def _apo_key(base_parameter: str) -> str:
    """Spec key of an APO base-rule parameter: the base's ``schedule`` is ``base_schedule``."""
    return "base_schedule" if base_parameter == "schedule" else base_parameter


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = [
    "RULES",
    "ExactRule",
    "ExactState",
    "Parameter",
    "RuleInfo",
    "build_rule",
    "resolve_parameters",
    "rule_info",
    "apo",
    "dno",
    "dpo",
    "extragradient",
    "inpo",
    "mmd",
    "nash_md",
    "online_ipo",
    "optimistic",
    "sppo",
]
