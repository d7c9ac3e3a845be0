"""The rules the bridge trains with: parameters, validation, and the batch loss built from :mod:`losses`.

A :class:`BridgeRule` turns a batch of scored pairs into one loss per pair.  The batch is a dict of
1-D tensors, one entry per pair (winner ``w``, loser ``l``; for rules that do not use an order, ``w``
and ``l`` are just the first and second response):

==================  ===========================================================================
key                 meaning
==================  ===========================================================================
``policy_w/l``      log π_θ(y|x) summed over response tokens, **with gradient**
``reference_w/l``   log π_ref(y|x), precomputed once per iteration (no gradient)
``previous_w/l``    log π_t(y|x) of the iteration's sampling policy, precomputed (for APO's
                    implicit-reference form: (1+α)log π̂_t − α log π̂_{t−1}, see :mod:`apo`)
``win_rate_w/l``    estimate of P(y ≻ π_t | x) from the pair scheme (:mod:`pairs`)
``preference``      oracle probability P(y_w ≻ y_l | x)
``weight``          pair weight (1 for sampled pairs; π_t(y)π_t(y′)P(y≻y′) for population pairs)
==================  ===========================================================================

Rules (THEORY §C; every loss is the torch twin of a ``sim.rules`` loss):

* ``dpo``  — iterative DPO, β; ``reference = "previous"`` (π_t, the proximal-point reading of
  THEORY §C.2 and what ``sim.rules.dpo`` does exactly) or ``"initial"`` (π_ref fixed, RLHFlow style).
* ``ipo``  — online IPO with anchor π_ref, τ (Calandriello et al.; exact argmin = BR_τ(π_t)).
* ``inpo`` — INPO Eq. (8), anchors π_ref and π_t, inverse learning rate η > τ, target 1/(2η).
* ``sppo`` — SPPO with reference π_t and win-rate targets, learning rate η (code's β = 1/η).
* ``dno``  — soft-label DNO with reference π_t, inverse learning rate η, r_t(y) = P̂(y ≻ π_t).
* ``nash_md_pg`` — Nash-MD policy gradient, τ; each response of a pair is a sample and the other is its
  opponent (mixture coefficient 0: the opponent is drawn from π_t, not from the geometric mixture).
* ``apo`` — Accelerated PO (He, Yuan & Gu): a proximal base (``dpo``/``sppo``/``inpo``) plus Nesterov
  extrapolation across iterations with weight α, either in parameter space (``extrapolation =
  "parameter"``) or as an implicit reference (``"implicit"``); see :mod:`llm_bridge.apo`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from bandits.errors import PrefsimError
from llm_bridge import losses
from sim.rules import Parameter as ParameterDoc  # same fields: name, doc, default, choices

PAIR_SCHEMES = ("iid", "best_worst", "tournament")
EXTRAPOLATIONS = ("parameter", "implicit")


_COMMON = (
    ParameterDoc(
        "pairs",
        "pair construction: iid (y, y′ ~ π_t, Bernoulli order; the population-correct scheme), "
        "best_worst (best vs worst of K by estimated win rate), tournament (INPO's knock-out)",
        None,
        PAIR_SCHEMES,
    ),
    ParameterDoc("samples", "responses per prompt K (2 for iid)", None),
)

RULE_PARAMETERS: dict[str, tuple] = {
    "dpo": (
        ParameterDoc("beta", "KL coefficient β", 0.1),
        ParameterDoc(
            "reference", "previous (π_t, proximal point) or initial (π_ref)", "previous", ("previous", "initial")
        ),
    ),
    "ipo": (ParameterDoc("tau", "KL(π‖π_ref) coefficient τ; target 1/(2τ)", 0.1),),
    "inpo": (
        ParameterDoc("eta", "INVERSE learning rate η > τ; target 1/(2η)", None),
        ParameterDoc("tau", "KL(π‖π_ref) weight τ", None),
    ),
    "sppo": (ParameterDoc("eta", "learning rate η (uclaml/SPPO's beta = 1/η)", 1.0),),
    "dno": (ParameterDoc("eta", "INVERSE learning rate η: π_{t+1} ∝ π_t exp(r_t/η)", 1.0),),
    "nash_md_pg": (ParameterDoc("tau", "KL(π‖π_ref) weight τ", 0.1),),
    "apo": (
        ParameterDoc("base", "proximal base rule", "dpo", ("dpo", "sppo", "inpo")),
        ParameterDoc("alpha", "extrapolation weight α ∈ [0, 1)", 0.3),
        ParameterDoc(
            "extrapolation",
            "parameter (θ_{t+1} = θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t)) or implicit (shift π_t's log-probs instead)",
            "parameter",
            EXTRAPOLATIONS,
        ),
    ),
}

DEFAULT_PAIRS = {
    "dpo": "best_worst",
    "ipo": "iid",
    "inpo": "iid",
    "sppo": "best_worst",
    "dno": "iid",
    "nash_md_pg": "iid",
    "apo": "best_worst",
}


@dataclasses.dataclass(frozen=True)
class BridgeRule:
    """A validated rule for the bridge.

    Attributes:
      name: ``dpo``, ``ipo``, ``inpo``, ``sppo``, ``dno``, ``nash_md_pg`` or ``apo``.
      parameters: resolved parameters (defaults filled), including the APO base's.
      pair_loss: ``batch -> per-pair loss`` (1-D tensor); the trainer takes the weighted mean.
      pairs: pair construction scheme (:data:`PAIR_SCHEMES`).
      samples: responses per prompt K.
    """

    name: str
    parameters: dict
    pair_loss: Callable[[dict], torch.Tensor]
    pairs: str
    samples: int

    @property
    def base(self) -> str:
        """The rule whose loss is minimised (APO's base, or the rule itself)."""
        return self.parameters["base"] if self.name == "apo" else self.name

    @property
    def alpha(self) -> float:
        return float(self.parameters.get("alpha", 0.0)) if self.name == "apo" else 0.0

    @property
    def extrapolation(self) -> str | None:
        return self.parameters["extrapolation"] if self.name == "apo" else None


def build_bridge_rule(name: str, given: dict, where: str = "rule") -> BridgeRule:
    """Validate ``given`` (a ``[[rule]]`` table without ``name``/``label``) and build the rule."""
    if name not in RULE_PARAMETERS:
        raise PrefsimError(f"{where}: unknown bridge rule {name!r}; known: {', '.join(RULE_PARAMETERS)}.")
    allowed = {p.name: p for p in RULE_PARAMETERS[name] + _COMMON}
    if name == "apo":
        base = given.get("base", "dpo")
        if base not in ("dpo", "sppo", "inpo"):
            raise PrefsimError(f"{where}: apo's base must be dpo, sppo or inpo, got {base!r}.")
        for p in RULE_PARAMETERS[base]:
            allowed.setdefault(p.name, p)
    resolved = {}
    for key, value in given.items():
        if key not in allowed:
            raise PrefsimError(
                f"{where}: unknown parameter {key!r} for bridge rule {name}; its parameters are {', '.join(allowed)}."
            )
        p = allowed[key]
        if p.choices:
            if value not in p.choices:
                raise PrefsimError(f"{where}: {key} must be one of {', '.join(p.choices)}, got {value!r}.")
        elif key == "samples":
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise PrefsimError(f"{where}: samples must be an integer ≥ 2, got {value!r}.")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise PrefsimError(f"{where}: {key} must be a number, got {value!r}.")
        resolved[key] = value
    for key, p in allowed.items():
        if key in resolved or key in ("pairs", "samples"):
            continue
        if p.default is None:
            raise PrefsimError(f"{where}: bridge rule {name} needs parameter {key!r} ({p.doc}).")
        resolved[key] = p.default
    pairs = resolved.pop("pairs", DEFAULT_PAIRS[name])
    samples = resolved.pop("samples", 2 if pairs == "iid" else 4)
    if pairs == "iid" and samples != 2:
        raise PrefsimError(f'{where}: pairs = "iid" draws exactly 2 responses per prompt; got samples = {samples}.')
    _validate_numbers(name, resolved, where)
    base = resolved["base"] if name == "apo" else name
    return BridgeRule(name, resolved, _pair_loss(base, resolved), pairs, samples)


def _validate_numbers(name, p, where):
    def positive(key):
        if key in p and not float(p[key]) > 0:
            raise PrefsimError(f"{where}: rule {name}: {key} must be > 0, got {p[key]!r}.")

    for key in ("beta", "tau", "eta"):
        positive(key)
    if "eta" in p and "tau" in p and (name == "inpo" or p.get("base") == "inpo") and not p["eta"] > p["tau"]:
        raise PrefsimError(
            f"{where}: rule inpo needs eta > tau (η is the INVERSE learning rate; η = τ is online IPO, "
            f"use rule ipo); got eta = {p['eta']}, tau = {p['tau']}."
        )
    if name == "apo" and not 0.0 <= float(p["alpha"]) < 1.0:
        raise PrefsimError(f"{where}: apo's alpha must lie in [0, 1), got {p['alpha']!r}.")
    if name == "apo" and p["extrapolation"] == "implicit" and p["base"] == "sppo":
        raise PrefsimError(
            f'{where}: apo with extrapolation = "implicit" needs a pairwise base loss (dpo or inpo): '
            "the per-response SPPO loss would see the unknown normaliser of the implicit reference; "
            'use extrapolation = "parameter".'
        )
    if name == "apo" and p["base"] == "dpo" and p.get("reference", "previous") != "previous":
        raise PrefsimError(
            f'{where}: apo\'s base dpo must use reference = "previous" (the proximal step is '
            "anchored at the extrapolated π_t)."
        )


def _pair_loss(base: str, p: dict) -> Callable[[dict], torch.Tensor]:
    """The per-pair loss of ``base`` with the parameters bound."""
    if base == "dpo":
        anchor = "previous" if p.get("reference", "previous") == "previous" else "reference"
        beta = float(p["beta"])
        return lambda b: losses.dpo_loss(b["policy_w"], b["policy_l"], b[f"{anchor}_w"], b[f"{anchor}_l"], beta)
    if base == "ipo":
        tau = float(p["tau"])
        return lambda b: losses.ipo_loss(b["policy_w"], b["policy_l"], b["reference_w"], b["reference_l"], tau)
    if base == "inpo":
        eta, tau = float(p["eta"]), float(p["tau"])
        return lambda b: losses.inpo_loss(
            b["policy_w"], b["policy_l"], b["reference_w"], b["reference_l"], b["previous_w"], b["previous_l"], eta, tau
        )
    if base == "sppo":
        eta = float(p["eta"])
        return lambda b: losses.sppo_code_loss(
            b["policy_w"], b["previous_w"], b["win_rate_w"], b["policy_l"], b["previous_l"], b["win_rate_l"], eta
        )
    if base == "dno":
        eta = float(p["eta"])
        return lambda b: losses.dno_loss(
            b["policy_w"], b["policy_l"], b["previous_w"], b["previous_l"], b["win_rate_w"] - b["win_rate_l"], eta
        )
    if base == "nash_md_pg":
        tau = float(p["tau"])
        return lambda b: (
            0.5
            * (
                losses.nash_md_pg_loss(b["policy_w"], b["reference_w"], b["preference"], tau)
                + losses.nash_md_pg_loss(b["policy_l"], b["reference_l"], 1.0 - b["preference"], tau)
            )
        )
    raise PrefsimError(f"unknown bridge rule {base!r}.")


def weighted_mean(per_pair: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ w_i loss_i / Σ w_i: the sample mean for unit weights, the population loss for population weights."""
    return (weight * per_pair).sum() / weight.sum()
