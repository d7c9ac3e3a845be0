"""What a rule *is*, in one place: :class:`RuleDefinition` and its parts.

Every rule module of :mod:`sim.rules` ends with one ``DEFINITION = RuleDefinition(...)``; the registry
(:data:`sim.rules.RULES`) is built from those, and exact mode, sampled mode, the LLM bridge,
``prefsim rules`` and the docs read nothing else.  A definition holds

* the rule's **parameters** (:class:`Parameter`: name, default, constraint, meaning, paper symbol);
* the **exact update** (``exact``: a factory returning the ``init``/``update`` pair of
  :class:`sim.rules.base.ExactRule`);
* the **per-pair loss**, written once against a small table of operations (:class:`LossOps`), so the
  same function runs on JAX arrays (``JAX_OPS``, sampled mode) and on torch tensors (the ops that
  :mod:`llm_bridge` supplies; ``sim`` never imports torch);
* the **data** it needs (:class:`PairData`: default pair scheme, accepted schemes, whether it needs
  win-rate estimates, which opponent its pairs are drawn against);
* its **offline counterpart** (population minimiser on pairs from π_ref) where one is defined;
* the **bounds** that apply to it (:class:`sim.theorems.Bound` objects: source, metric, hypotheses, evaluation).

The loss reads a *pair batch*: a mapping with the keys of :data:`BATCH_KEYS` (each a 1-D array, one
entry per pair, except ``step``, the iteration index t, and ``both_from_policy``, a scalar).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from bandits.pair_schemes import gives_ordered_pairs, gives_win_rates, schemes_for

#: Marker default: the rule's ``tau`` defaults to the game's τ (in LLM specs, the spec's ``tau``).
GAME_TAU = "game.tau"

#: The keys a per-pair loss may read (first = winner / chosen y_w, second = loser / rejected y_l).
BATCH_KEYS = {
    "policy_w": "log π_θ(y_w|x), the trained policy (differentiated)",
    "policy_l": "log π_θ(y_l|x)",
    "reference_w": "log π_ref(y_w|x)",
    "reference_l": "log π_ref(y_l|x)",
    "previous_w": "log π_t(y_w|x), the iteration's anchor (APO: the extrapolated reference)",
    "previous_l": "log π_t(y_l|x)",
    "win_rate_w": "estimate of P(y_w ≻ π_t | x) from the pair scheme (Nash-MD: of P(y_w ≻ opponent))",
    "win_rate_l": "estimate of P(y_l ≻ π_t | x)",
    "step": "iteration index t (scalar), for step-dependent parameters",
    "both_from_policy": "1 when both responses are samples of π_t, 0 when the second is an opponent's (scalar)",
}


class LossOps(NamedTuple):
    """The non-arithmetic operations a per-pair loss may use; ``+ − × ÷ **`` are the arrays' own.

    Attributes:
      log_sigmoid: log σ(x), elementwise, numerically stable.
      sigmoid: σ(x), elementwise.
      stop_gradient: the value of x with no gradient flowing through it.
    """

    log_sigmoid: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    stop_gradient: Callable[[Any], Any]


#: JAX's operations (sampled mode).  :data:`llm_bridge.ops.TORCH_OPS` is torch's.
JAX_OPS = LossOps(jax.nn.log_sigmoid, jax.nn.sigmoid, jax.lax.stop_gradient)

#: An array a per-pair loss computes with: a JAX array in sampled mode, a torch tensor in the bridge.
LossArray = Any

#: ``loss(ops, batch, parameters) -> per-pair loss``.
PairLoss = Callable[[LossOps, Mapping[str, Any], Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class DerivedDefault:
    """A default computed from the rule's other resolved parameters (e.g. COMAL's η = 3τ)."""

    compute: Callable[[Mapping[str, Any]], Any]
    """``resolved parameters -> value``; called after every other parameter is resolved."""
    text: str
    """How ``prefsim rules`` states it (``"3·tau"``)."""
    uses: tuple = ()
    """The parameters it reads; a sweep over one of them needs the value given explicitly."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One rule parameter as it appears in a spec (the same in exact, sampled and LLM specs)."""

    name: str
    """Key in the ``[[rule]]`` table."""
    doc: str
    """Meaning, with the paper's convention."""
    default: Any = None
    """Default value; ``None`` means required; :data:`GAME_TAU` means the game's τ; a
    :class:`DerivedDefault` is computed from the other parameters."""
    choices: tuple = ()
    """Allowed strings for a categorical parameter (empty for numbers)."""
    constraint: str = ""
    """The admissible values in words (``"> 0"``, ``"> tau"``, ``"in [0, 1)"``), checked by the factory."""
    symbol: str = ""
    """The paper's symbol (``η``, ``τ``, ``β``, ``α``)."""
    optional: bool = False
    """Absent means "not used" (e.g. ``reference_every``: a fixed reference); not filled in when absent."""
    integer: bool = False
    """A count (``reference_every``, MNPO's ``history``): a spec must give integers, as for ``iterations`` (a float
    such as 3.0 or 1e300 is refused, not read as a count)."""

    @property
    def numeric(self) -> bool:
        return not self.choices

    def describe(self) -> dict:
        """JSON-ready description (``prefsim rules --json``)."""
        if isinstance(self.default, DerivedDefault):
            default = self.default.text
        else:
            default = "the game's tau" if self.default == GAME_TAU else self.default
        return {
            "name": self.name,
            "symbol": self.symbol,
            "default": default,
            "required": self.default is None and not self.optional,
            "constraint": self.constraint or (f"one of {', '.join(self.choices)}" if self.choices else ""),
            "choices": list(self.choices),
            "meaning": self.doc,
        }


@dataclasses.dataclass(frozen=True)
class Stage:
    """One proximal solve of an iteration that has several (extragradient: two).

    Attributes:
      pairs_from: the policy the stage's pairs are drawn from: ``iterate`` (π_t), ``previous_stage``
        (the previous stage's output, e.g. extragradient's π_{t+½}) or ``carried`` (the pairs a
        ``carry`` stage of the previous iteration drew: optimistic MD's π̄_t).
      carry: keep this stage's pairs for the next iteration's ``carried`` stage.
    """

    pairs_from: str = "iterate"
    carry: bool = False


@dataclasses.dataclass(frozen=True)
class HistoryAnchor:
    """The loss's anchor ``previous_w/l`` mixes the log-probabilities of the last iterates (MNPO).

    Every engine keeps the log-probabilities of the last ``length(parameters)`` = m iterates π_t,
    π_{t−1}, …, π_{t−m+1} (exact and sampled mode: the log-policies; the bridge: the checkpoints), and
    hands the loss ``combine([log π_t(y), log π_{t−1}(y), …], s, parameters)`` as ``previous``, with s the
    updates since the population started (:func:`sim.rules.reference.steps_since_advance`: t, or t mod M
    under ``reference_every``, where the rule restarts from π_t); an iterate before the population's first
    (π_0, or the last advance's π_t) is given as that one (``combine`` weighs it 0).  ``combine`` is plain
    arithmetic, so it runs on JAX arrays and torch tensors alike.
    """

    length: Callable[[Mapping[str, Any]], int]
    combine: Callable[[Any, Any, Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class PairData:
    """The data a rule's loss needs.

    Attributes:
      schemes: the pair schemes the loss accepts (empty: every scheme of the mode).  A spec that names
        no scheme gets :data:`bandits.pair_schemes.DEFAULT_SCHEME` in both modes (or this tuple's first
        entry when the default is not accepted): one default per rule, whatever the mode.
      needs_win_rates: reads ``win_rate_w``/``win_rate_l`` (SPPO, DNO): the scheme must estimate them.
      opponent: ``(log π_t, log π_ref, parameters) -> log-weights of the opponent`` when the second
        response is drawn from an opponent other than π_t (Nash-MD's geometric mixture); ``None``:
        both responses are drawn by the pair scheme.
      stages: the proximal solves of one iteration (:class:`Stage`), each minimising the same loss
        with anchor π_t on its own pairs; empty: one solve on pairs from π_t.  Sampled mode and the LLM
        bridge (:mod:`llm_bridge.stages`) run them alike.
      scheme: ``parameters -> scheme name`` when a parameter of the rule fixes its pair scheme (EGPO's
        ``estimator``), overriding the run's ``pair_scheme``; ``None``: the run's.
      history: a :class:`HistoryAnchor` when the loss's anchor mixes several past iterates (MNPO); then
        the definition's ``offline`` takes that anchor in place of log π_t.  ``None``: the anchor is π_t.
      unbiased_schemes: the schemes under which the loss's population minimiser is the exact update,
        where the default scheme's is not (DNO: σ of a sampled win-rate estimate is biased); a sampled
        run with another scheme warns.  Empty: the default scheme's is.
      minimiser_parameters: ``(parameter, value)`` pairs under which the loss's population minimiser is
        the exact update, where the other values' is not (SPPO: its loss targets η(P̂ − ½), the
        ``normaliser = "paper"`` step, whatever ``normaliser`` says); a sampled run with another value
        warns, since its ``distance_to_exact`` measures the gap to an update the loss cannot reach.
        Empty: every value's is.
      minimiser: for a loss that is a step, not an argmin, what minimising it reaches instead of the exact
        update, for every scheme and parameter value (Nash-MD-PG: the regularised best response to its
        opponent); a sampled run warns, since its ``distance_to_exact`` then measures that gap.  ``None``: a
        loss whose minimiser is the exact update (up to the two fields above).

    A loss that does not read win rates reads the order of each pair (chosen first), so the scheme must
    order its pairs (:func:`bandits.pair_schemes.gives_ordered_pairs`).
    """

    schemes: tuple = ()
    needs_win_rates: bool = False
    opponent: Callable | None = None
    stages: tuple = ()
    scheme: Callable | None = None
    history: HistoryAnchor | None = None
    unbiased_schemes: tuple = ()
    minimiser_parameters: tuple = ()
    minimiser: str | None = None

    def unreadable(self, scheme: str, mode: str) -> str | None:
        """Why this loss cannot read the pairs of ``scheme`` in ``mode`` (``sampled``/``llm``), naming the
        schemes it can read; ``None`` when it can."""
        if self.needs_win_rates:
            usable = [s for s in schemes_for(mode) if gives_win_rates(s, mode)]
            what = "needs win-rate estimates of responses drawn from π_t, which"
            missing = "does not give"
        else:
            usable = [s for s in schemes_for(mode) if gives_ordered_pairs(s, mode)]
            what = "reads which response of a pair was chosen, and"
            missing = "does not order its pairs (its two draws are unordered)"
        if scheme in usable:
            return None
        return f"{what} pair scheme {scheme!r} {missing}; use one of {', '.join(usable)}"


@dataclasses.dataclass(frozen=True)
class RuleDefinition:
    """Everything a rule is; one per rule module, gathered by :data:`sim.rules.RULES`.

    Attributes:
      name: the rule's name in every mode.
      paper: the source (authors, title, venue / arXiv, equation).
      summary: one line on what the rule does.
      parameters: its :class:`Parameter` tuple.
      exact: factory ``(**parameters) -> ExactRule`` (a wrapper's factory also takes ``base``).
      loss: the per-pair loss (``None`` where the rule has no sampled form).
      data: the :class:`PairData` of its loss (``None`` with ``loss``).
      offline: ``(parameters, log π_t, log π_ref, Pμ, step) -> log π̂`` (unnormalised), the population
        minimiser of its loss on pairs drawn from a fixed μ: offline data (μ = π_ref) and each stage of
        a multi-stage iteration (μ = the stage's source); ``None`` where not defined.
      bounds: the :class:`sim.theorems.Bound` objects about its trajectories (each with its source, metric,
        the variant it selects, its hypotheses and evaluation); a preset inherits its base's, whose
        hypotheses say when they do not apply (a moving reference).
      proximal: maps π_t to a proximal output π̂_{t+1} (can be APO's base).
      anchored: regularised toward its own reference π_ref, so it accepts ``reference_every``
        (:mod:`sim.rules.reference`: the reference moves to π_t every M updates).
      needs_rewards: its exact update needs a Bradley–Terry game (reward vector).
      wrapper: wraps a base rule (APO): its loss and data are the base's, its ``exact`` takes ``base``.
      hook: a wrapper's iteration hook factory ``(own parameters, base name, engine) -> hook``, the
        object sampled mode and the bridge run after each proximal step (APO:
        :class:`sim.rules.apo.Extrapolation`); exact mode's ``exact`` runs the same hook inside.
      aliases: old names that still select it (each prints a deprecation note).
      renamed: old parameter key → (current key, {old value: current value}); the old key still works
        for one release and prints a deprecation note.
      check: ``(parameters, where) -> None`` raising :class:`~bandits.errors.PrefsimError` on values
        the factory cannot see (e.g. combinations with the base); optional.
      update_formula: the exact update in log space, one line (ℓ = log π, ``norm`` = subtract
        logsumexp), as README's rule table prints it (``python -m sim.doc_tables`` writes the table).
      loss_formula: the per-pair loss as a formula (docs/llm_bridge.md's rule table); rules with a loss.
      anchors: the policies the loss is anchored to, with their weights (docs/llm_bridge.md's rule table).
    """

    name: str
    paper: str
    summary: str
    parameters: tuple
    exact: Callable
    loss: PairLoss | None = None
    data: PairData | None = None
    offline: Callable | None = None
    bounds: tuple = ()
    proximal: bool = False
    anchored: bool = False
    needs_rewards: bool = False
    wrapper: bool = False
    hook: Callable | None = None
    aliases: tuple = ()
    renamed: Mapping = dataclasses.field(default_factory=dict)
    check: Callable | None = None
    update_formula: str = ""
    loss_formula: str = ""
    anchors: str = ""

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def trains_offline(self) -> bool:
        """Whether sampled mode runs it on offline data (``run.data = "offline"``): a single-stage loss whose
        population minimiser on pairs from a fixed μ is known (``offline``), with a fixed reference (a
        preset such as COMAL moves its own).  Multi-stage rules use that minimiser per stage, but each stage
        needs fresh pairs from its own source."""
        staged = self.data is not None and bool(self.data.stages)
        advancing = self.parameter("reference_every") is not None
        return self.offline is not None and not staged and not advancing

    @property
    def modes(self) -> tuple:
        """The modes it runs in: ``exact`` always; ``sampled`` and ``llm`` with a loss (wrappers: the base's)."""
        if self.loss is None and not self.wrapper:
            return ("exact",)
        return ("exact", "sampled", "llm")
