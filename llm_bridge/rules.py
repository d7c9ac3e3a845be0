"""The rules the bridge trains with, built from :data:`sim.rules.RULES` (no rule is defined here).

A rule table of an LLM spec has the same name, parameters and defaults as in an exact or sampled spec
(``prefsim rules`` lists them), plus two data keys of the bridge: ``pairs`` (the pair scheme,
:mod:`bandits.pair_schemes`; default: ``lambda_p``, as in sampled mode) and ``samples`` (responses per
prompt K; 2 for ``lambda_p``, else 4).  The loss is the rule definition's per-pair loss evaluated with
torch's operations (:data:`llm_bridge.ops.TORCH_OPS`) on a batch of 1-D tensors, one entry per pair:

==================  ===========================================================================
key                 meaning
==================  ===========================================================================
``policy_w/l``      log π_θ(y|x) summed over response tokens, **with gradient**
``reference_w/l``   log π_ref(y|x), precomputed once per iteration (no gradient)
``previous_w/l``    log π_t(y|x) of the iteration's anchor (APO's implicit reference: the hook's
                    (1+α)log π̂_t − α log π̂_{t−1})
``win_rate_w/l``    estimate of P(y ≻ π_t | x) from the pair scheme (:mod:`pairs`)
``preference``      oracle probability P(y_w ≻ y_l | x)
``weight``          pair weight (1 for sampled pairs; π_t(y)π_t(y′)P(y≻y′) for population pairs)
==================  ===========================================================================

τ defaults to the spec's top-level ``tau`` (default :data:`LLM_TAU`), the LLM counterpart of
``game.tau``.  Nash-MD's second response is drawn from the definition's opponent, the geometric
mixture π_t^μ, token by token (:class:`llm_bridge.generation.GeometricMixture`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from bandits.errors import PrefsimError
from bandits.pair_schemes import PAIR_SCHEMES, default_scheme, resolve_scheme
from llm_bridge.ops import TORCH_OPS
from sim.rules import (
    RULES,
    base_of,
    base_parameters,
    build_rule,
    canonical_name,
    iteration_hook,
    resolve_parameters,
    rule_info,
    surrogate_sentence,
)
from sim.rules.definition import Stage

#: Default τ of an LLM spec (its top-level ``tau``), standing in for ``game.tau``.
LLM_TAU = 0.1


@dataclasses.dataclass(frozen=True)
class BridgeRule:
    """A validated rule for the bridge.

    Attributes:
      name: the registry name (``dpo``, ``online_ipo``, ``inpo``, ``sppo``, ``dno``, ``nash_md``, ``apo``, …).
      parameters: resolved parameters (defaults filled), including a wrapper's base parameters.
      loss: the base rule definition's per-pair loss ``(ops, batch, parameters) -> losses``.
      pairs: pair construction scheme (:mod:`bandits.pair_schemes`).
      samples: responses per prompt K.
      hook: a wrapper's iteration hook (APO's :class:`sim.rules.apo.Extrapolation`), else ``None``.
      step: the iteration t the loss is evaluated at (step-dependent parameters, e.g. INPO's theorem4).
    """

    name: str
    parameters: dict
    loss: Callable
    pairs: str
    samples: int
    hook: object = None
    step: int = 0

    @property
    def base(self) -> str:
        """The rule whose loss is minimised (a wrapper's base, or the rule itself)."""
        return base_of(self.name, self.parameters)

    @property
    def alpha(self) -> float:
        """APO's constant α (0 without a hook)."""
        return float(self.hook.alpha) if self.hook is not None else 0.0

    @property
    def form(self) -> str | None:
        """The wrapper's form (``parameters`` / ``implicit_reference``), else ``None``."""
        return self.hook.form if self.hook is not None else None

    @property
    def stages(self) -> tuple:
        """The definition's proximal stages of one iteration (:class:`sim.rules.definition.Stage`); one
        stage on pairs from π_t when the definition names none."""
        return rule_info(self.base).data.stages or (Stage(),)

    @property
    def opponent(self) -> Callable | None:
        """``(log π_t, log π_ref) -> unnormalised log-weights`` of the opponent the second response is drawn
        from (Nash-MD's geometric mixture; the definition's ``PairData.opponent``), or ``None``."""
        opponent = rule_info(self.base).data.opponent
        if opponent is None:
            return None
        parameters = base_parameters(self.name, self.parameters)
        return lambda log_policy, log_reference: opponent(log_policy, log_reference, parameters)

    @property
    def reference_every(self) -> int | None:
        """M of reference advancement (the loss's reference moves to π_t every M iterations), else ``None``."""
        every = self.parameters.get("reference_every")
        return None if every is None else int(every)

    def at_step(self, step: int) -> BridgeRule:
        """The same rule with its loss evaluated at iteration ``step``."""
        return dataclasses.replace(self, step=int(step))

    def pair_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-pair loss (1-D tensor); the trainer takes the weighted mean."""
        # both responses are samples of π_t, unless the second is the opponent's (as in sampled mode)
        both = 0.0 if rule_info(self.base).data.opponent is not None else 1.0
        full = {**batch, "step": self.step, "both_from_policy": both}
        return self.loss(TORCH_OPS, full, base_parameters(self.name, self.parameters))


def surrogate_note(label: str, rule: BridgeRule) -> str | None:
    """For a rule whose loss is a step's surrogate, not an argmin (:func:`sim.rules.surrogate_sentence`:
    Nash-MD-PG), what training it reaches instead of the rule's step; ``None`` for every other rule."""
    surrogate = surrogate_sentence(rule.base, "on pairs from π_t (the [training] epochs)")
    return None if surrogate is None else f"rule {label!r}: {surrogate}."


def build_bridge_rule(name: str, given: dict, where: str = "rule", tau: float = LLM_TAU) -> BridgeRule:
    """Validate ``given`` (a ``[[rule]]`` table without ``name``/``label``) and build the rule."""
    name = canonical_name(name, where, "llm")
    if name not in RULES:
        llm = [n for n, d in RULES.items() if "llm" in d.modes]
        raise PrefsimError(f"{where}: unknown rule {name!r}; rules of the LLM bridge: {', '.join(llm)}.")
    info = rule_info(name)
    if "llm" not in info.modes:
        llm = [n for n, d in RULES.items() if "llm" in d.modes]
        raise PrefsimError(
            f"{where}: rule {name} runs in {' and '.join(info.modes)} mode only (it has no per-pair loss); the LLM "
            f"bridge runs {', '.join(llm)}."
        )
    given = dict(given)
    pairs = given.pop("pairs", None)
    samples = given.pop("samples", None)
    for key, value in given.items():
        if isinstance(value, list):
            raise PrefsimError(f"{where}: {key} = {value!r}: an LLM spec trains one value; give a number.")
        if isinstance(value, float) and value != value:
            raise PrefsimError(f"{where}: {key} must be a number, got {value!r}.")
    resolved = resolve_parameters(name, given, tau, where)
    try:
        build_rule(name, resolved)  # the exact factory checks the values, as in every mode
    except PrefsimError as exc:
        raise PrefsimError(f"{where}: {exc}") from None
    base = base_of(name, resolved)
    data = rule_info(base).data
    fixed = data.scheme(base_parameters(name, resolved)) if data.scheme is not None else None
    if fixed is not None and "llm" not in PAIR_SCHEMES[fixed].modes:
        raise PrefsimError(
            f"{where}: rule {base}'s parameters select the pair scheme {fixed!r} ({PAIR_SCHEMES[fixed].summary}), "
            "which runs in sampled mode only: responses of a language model are sequences, with no uniform draw "
            "over them.  In the bridge keep the parameter that chose it at its default."
        )
    pairs = resolve_scheme(default_scheme(data.schemes) if pairs is None else pairs, "llm", f"{where}: pairs")
    if data.schemes and pairs not in data.schemes:
        raise PrefsimError(f"{where}: rule {base} needs pairs = {' or '.join(map(repr, data.schemes))}, got {pairs!r}.")
    reason = data.unreadable(pairs, "llm")
    if reason is not None:
        raise PrefsimError(f"{where}: pairs: rule {base} {reason}.")
    if samples is None:
        samples = 2 if pairs == "lambda_p" else 4
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise PrefsimError(f"{where}: samples must be an integer ≥ 2, got {samples!r}.")
    if pairs == "lambda_p" and samples != 2:
        raise PrefsimError(
            f'{where}: pairs = "lambda_p" (the default) draws exactly 2 responses per prompt; got samples = '
            f"{samples}. To use K responses per prompt choose a scheme that ranks them, e.g. "
            'pairs = "best_worst_by_win_rate" or "tournament".'
        )
    try:
        hook = iteration_hook(name, resolved, "llm")
    except PrefsimError as exc:
        raise PrefsimError(f"{where}: {exc}") from None
    return BridgeRule(name, resolved, rule_info(base).loss, pairs, samples, hook)
