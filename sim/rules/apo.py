"""APO — **Accelerated** Preference Optimization (He, Yuan & Gu, arXiv 2410.06293), docs/theory.md §B, §C.3.

Not TRL's ``apo_zero`` / ``apo_down`` loss types, which are *Anchored* Preference Optimization
(arXiv 2408.06266): those are per-pair losses of one DPO run, while this is Nesterov-style momentum
*across iterations* wrapped around any proximal rule.

Wrapper (like optax's ``lookahead``): a base proximal rule (``dpo``, ``sppo``, ``inpo``) maps the
current, extrapolated π_t to its proximal output π̂_{t+1}; APO then extrapolates in log space between
**consecutive proximal outputs** (Eq. 3.6):

    log π_{t+1} = (1 + α_t)·log π̂_{t+1} − α_t·log π̂_t − log Z,    π̂_0 = π_0 = π_ref.

The next iteration samples from, and uses as reference, the extrapolated π_{t+1}.  α ∈ [0, 1) is the
paper's extrapolation; α ∈ (−1, 0) makes Eq. (3.6) a convex combination (1 − |α|)·log π̂_{t+1} + |α|·log π̂_t,
i.e. **averaging** consecutive proximal outputs (momentum by averaging in the style of Vieillard et al.
2020, outside the paper's range; docs/theory.md §B.3, §D.6).  Schedules:
``constant`` (α_t = α) or ``nesterov`` (α_t = (k − 1)/(k + 2) for the k-th update, k = 1, 2, …: 0, ¼, ⅖, …;
the classical accelerated proximal point, not necessarily the paper's).  With exact rewards and DPO,
log π_T = log π_ref + c_T·r/β with c_T = [T − α²(1 − α^T)/(1 − α)]/(1 − α) (docs/theory.md §B.3).

**One wrapper in every engine.**  :class:`Extrapolation` is the hook that exact mode (this module's
:func:`apo`), sampled mode (:mod:`sim.sampled.engine`) and the LLM bridge (:mod:`llm_bridge.loop`) all
run after the base rule's proximal step.  Its ``form`` (rule parameter ``form``) is one of

* ``parameters`` — θ_{t+1} = θ̂_{t+1} + α_t(θ̂_{t+1} − θ̂_t) (:func:`extrapolate`, weight arithmetic as
  APO ran it); for a tabular policy (exact mode) θ is log π up to a constant, so this *is* Eq. (3.6);
* ``log_space`` — Eq. (3.6) on the vector of log-probabilities (:func:`extrapolate_log_space`; finite
  action sets: exact and sampled mode);
* ``implicit_reference`` — keep θ̂_{t+1}, sample from π̂_{t+1}, and use the unnormalised
  (1+α_t)·log π̂_{t+1} − α_t·log π̂_t (:func:`implicit_reference`) as the next anchor π_t; only pairwise
  losses ignore the missing normaliser, so the base must be ``dpo`` or ``inpo``.

Each engine supplies the two operations that depend on how it stores a policy (an
:class:`ExtrapolationSpace`: combine parameters, read log-probabilities); the formulas are here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from bandits.errors import PrefsimError
from sim.game import normalize
from sim.rules.base import ExactRule, ExactState, is_concrete, normalize_with_policy
from sim.rules.definition import LossArray, Parameter, RuleDefinition
from sim.theorems import APO_SUBOPTIMALITY, APO_TV
from sim.theorems import apo_multipliers as apo_multipliers  # its closed form lives with the bounds

SCHEDULES = ("constant", "nesterov")
FORMS = ("parameters", "log_space", "implicit_reference")
#: Bases whose loss is pairwise, so the implicit reference's missing normaliser cancels.
IMPLICIT_BASES = ("dpo", "inpo")
#: The forms each engine runs (the bridge cannot normalise over all sequences: no ``log_space``).
ENGINE_FORMS = {
    "exact": ("parameters", "log_space", "implicit_reference"),
    "sampled": ("parameters", "log_space", "implicit_reference"),
    "llm": ("parameters", "implicit_reference"),
}
#: Old form names (the bridge's ``extrapolation`` values) → current names.
FORM_ALIASES = {"parameter": "parameters", "implicit": "implicit_reference"}


def extrapolation_weight(alpha: float | jax.Array, schedule: str, step: int | jax.Array) -> float | jax.Array:
    """α_t for the update t → t+1 (``step`` = t)."""
    if schedule == "nesterov":
        return step / (step + 3.0)
    return alpha


def extrapolate(new: LossArray, old: LossArray, weight: float | jax.Array) -> LossArray:
    """θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t) for one array (JAX, NumPy or torch)."""
    return new + weight * (new - old)


def implicit_reference(new_log_policy: LossArray, old_log_policy: LossArray, weight: float | jax.Array) -> LossArray:
    """(1+α)·log π̂_{t+1} − α·log π̂_t: Eq. (3.6) before normalisation (arrays of any library)."""
    return (1.0 + weight) * new_log_policy - weight * old_log_policy


def extrapolate_log_space(new_log_policy: jax.Array, old_log_policy: jax.Array, weight: float | jax.Array) -> jax.Array:
    """Eq. (3.6): normalise((1+α)·log π̂_{t+1} − α·log π̂_t) along the last axis."""
    return normalize(implicit_reference(new_log_policy, old_log_policy, weight))


class Iterate(NamedTuple):
    """What an engine hands the hook: parameters (pytree, or the log-policy itself in exact mode)
    and the log-probabilities of the policy they represent."""

    params: Any
    log_policy: Any


class NextIterate(NamedTuple):
    """The hook's answer: the parameters the next proximal step starts from, the policy the next pairs
    are drawn from (log-probabilities), and the anchor π_t the next loss uses (unnormalised for
    ``implicit_reference``)."""

    params: Any
    sampling: Any
    reference: Any


class ExtrapolationSpace(NamedTuple):
    """How an engine stores a policy.

    Attributes:
      combine: ``(new_params, old_params, weight) -> params``: :func:`extrapolate` leaf by leaf.
      log_probs: ``params -> log-probabilities`` of the policy the parameters represent.
    """

    combine: Callable
    log_probs: Callable


@dataclasses.dataclass(frozen=True)
class Extrapolation:
    """APO's hook, run after every proximal step in every engine (module docstring).

    Attributes:
      alpha: α for the constant schedule.
      schedule: ``constant`` or ``nesterov``.
      form: one of :data:`FORMS`.
    """

    alpha: Any = 0.3
    schedule: str = "constant"
    form: str = "parameters"

    def weight(self, step: int | jax.Array) -> float | jax.Array:
        """α_t of the update t → t+1."""
        return extrapolation_weight(self.alpha, self.schedule, step)

    def next_iterate(
        self, step: int | jax.Array, proximal: Iterate, previous: Iterate, space: ExtrapolationSpace
    ) -> NextIterate:
        """The next iterate from the proximal output π̂_{t+1} (``proximal``) and π̂_t (``previous``)."""
        weight = self.weight(step)
        if self.form == "implicit_reference":
            anchor = implicit_reference(proximal.log_policy, previous.log_policy, weight)
            return NextIterate(proximal.params, proximal.log_policy, anchor)
        params = space.combine(proximal.params, previous.params, weight)
        if self.form == "parameters":
            log_policy = space.log_probs(params)
        else:
            log_policy = extrapolate_log_space(proximal.log_policy, previous.log_policy, weight)
        return NextIterate(params, log_policy, log_policy)


def check_form(form: str, base: str, engine: str, where: str = "rule apo") -> str:
    """The current name of ``form`` after checking it against the base rule and the engine."""
    form = FORM_ALIASES.get(form, form)
    if form not in FORMS:
        raise PrefsimError(f"{where}: unknown form {form!r}; choose one of {', '.join(FORMS)}.")
    if form not in ENGINE_FORMS[engine]:
        raise PrefsimError(
            f"{where}: form {form!r} needs the normaliser over all responses, which {engine} mode cannot compute; "
            f"choose one of {', '.join(ENGINE_FORMS[engine])}."
        )
    if form == "implicit_reference" and base not in IMPLICIT_BASES:
        raise PrefsimError(
            f"{where}: form implicit_reference drops the normaliser, which only pairwise losses ignore; "
            f'apo\'s base must be one of {", ".join(IMPLICIT_BASES)}, got {base!r} (use form = "parameters").'
        )
    return form


class ApoState(NamedTuple):
    """APO's own state in exact mode.

    Attributes:
      base: the base rule's ``extra``.
      previous_proximal: log π̂_t, the last proximal output.
      reference: the anchor π_t of the next proximal step for ``implicit_reference`` (normalised),
        else ``None`` (the anchor is the iterate itself).
    """

    base: Any
    previous_proximal: Any
    reference: Any = None


def apo(
    base: ExactRule, alpha: float | jax.Array = 0.3, schedule: str = "constant", form: str = "parameters"
) -> ExactRule:
    """Wrap a proximal rule with APO's extrapolation.  ``alpha`` ∈ (−1, 1) for the constant schedule: [0, 1)
    extrapolates (the paper's range), (−1, 0) averages the last two proximal outputs (module docstring).

    Exact mode computes the ``parameters`` and ``log_space`` forms as Eq. (3.6) (they coincide for a
    tabular policy); ``implicit_reference`` keeps π̂_{t+1} as the iterate and anchors the next step at
    the normalised (1+α_t)·log π̂_{t+1} − α_t·log π̂_t, with the win rates of π̂_{t+1}.
    """
    if schedule not in SCHEDULES:
        raise PrefsimError(f"rule apo: unknown schedule {schedule!r}; choose constant or nesterov.")
    check_alpha(alpha, schedule)
    form = check_form(form, base.name, "exact")
    hook = Extrapolation(alpha, schedule, form)
    implicit = form == "implicit_reference"

    def init(game):
        base_state = base.init(game)
        reference = base_state.log_policy if implicit else None
        return base_state._replace(extra=ApoState(base_state.extra, base_state.log_policy, reference))

    def update(state, game):
        own = state.extra
        if implicit:
            # anchor at the implicit reference, win rates (pairs) of the iterate π̂_{t+1}
            anchored = state._replace(log_policy=own.reference, extra=own.base)
            proximal = base.update(anchored, game)
            weight = hook.weight(state.step)
            reference = normalize(implicit_reference(proximal.log_policy, own.previous_proximal, weight))
            return proximal._replace(extra=ApoState(proximal.extra, proximal.log_policy, reference))
        proximal = base.update(state._replace(extra=own.base), game)
        weight = hook.weight(state.step)
        new, policy = normalize_with_policy(implicit_reference(proximal.log_policy, own.previous_proximal, weight))
        return ExactState(new, proximal.step, extra=ApoState(proximal.extra, proximal.log_policy, None), policy=policy)

    return ExactRule("apo", init, update)


def make_hook(own: dict, base: str, engine: str) -> Extrapolation:
    """APO's hook for ``engine`` from its own parameters (``alpha``, ``schedule``, ``form``); a concrete α outside
    (−1, 1) is refused as in exact mode (a traced one, a grid's point, is checked where the grid is expanded)."""
    schedule = own.get("schedule", "constant")
    check_alpha(own.get("alpha", 0.3), schedule)
    form = check_form(own.get("form", "parameters"), base, engine)
    return Extrapolation(own.get("alpha", 0.3), schedule, form)


def check_alpha(alpha: Any, schedule: str = "constant") -> None:
    """Refuse a concrete constant-schedule α outside (−1, 1): [0, 1) extrapolates, (−1, 0) averages (every
    engine's check, the bridge's weight extrapolation included)."""
    if schedule == "constant" and is_concrete(alpha) and not (-1.0 < float(alpha) < 1.0):
        raise PrefsimError(
            f"rule apo: the extrapolation alpha must lie in (−1, 1) ([0, 1) extrapolates, (−1, 0) averages the "
            f"last two proximal outputs), got {float(alpha):g}."
        )


def _check(parameters: dict, where: str) -> None:
    check_form(parameters.get("form", "parameters"), parameters.get("base", "dpo"), "exact", where)


DEFINITION = RuleDefinition(
    name="apo",
    paper="He, Yuan & Gu, Accelerated Preference Optimization (arXiv 2410.06293), Eq. (3.6); "
    "not TRL's apo_zero (Anchored PO)",
    summary="Nesterov extrapolation between consecutive proximal outputs, wrapping a base rule",
    update_formula="(1+α)ℓ̂_{t+1} − αℓ̂_t around a proximal base (`dpo`, `sppo`, `inpo`)",
    loss_formula="the base's (`dpo`/`sppo`/`inpo`) + extrapolation α (`form`)",
    anchors="π_t (extrapolated)",
    parameters=(
        Parameter("base", "proximal base rule", "dpo", ("dpo", "sppo", "inpo")),
        Parameter(
            "alpha",
            "extrapolation weight α (constant schedule); α < 0: averaging (Vieillard et al. 2020-style momentum by "
            "averaging consecutive proximal outputs; outside the paper's range)",
            0.3,
            constraint="in (−1, 1)",
            symbol="α",
        ),
        Parameter("schedule", "constant α, or nesterov α_k = (k−1)/(k+2)", "constant", SCHEDULES),
        Parameter(
            "form",
            "parameters (θ + α(θ − θ_prev), as APO ran it), log_space (Eq. 3.6 on log-probabilities) or "
            "implicit_reference (keep θ̂, shift the anchor; dpo/inpo bases)",
            "parameters",
            FORMS,
        ),
    ),
    exact=apo,
    bounds=(APO_SUBOPTIMALITY, APO_TV),
    wrapper=True,
    hook=make_hook,
    renamed={"extrapolation": ("form", FORM_ALIASES)},
    check=_check,
)
