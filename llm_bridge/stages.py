"""One bridge iteration as the rule definition's proximal stages (``PairData.stages``), as sampled mode runs them.

A stage (:class:`sim.rules.definition.Stage`) draws its pairs from some policy, then minimises the rule's
loss **from θ_t** with anchor π_t (log π_t and log π_ref of its pairs precomputed with θ_t in the model).
The stage's source is

* ``iterate`` — π_t itself (every single-stage rule; extragradient's half step);
* ``previous_stage`` — the previous stage's output, which the model holds when the stage draws
  (extragradient's full step draws from π_{t+½}; optimistic MD's main step from π̄_{t+1});
* ``carried`` — the pairs a ``carry`` stage drew in the previous iteration (optimistic MD's leading step
  trains on the pairs drawn from π̄_t); at t = 0 there are none, and the stage draws from π_0 (sampled
  mode buys these pairs at ``init``, before the first update).

The model is the one copy of the policy in memory: after a stage's training it holds that stage's output
(θ_{t+½}, θ̄_{t+1}); the next stage draws from it, then θ_t is put back (``restore``: from the checkpoint
of π_t, so no second copy of the weights is kept) before scoring and training.  The last stage's output
is θ_{t+1}.  Oracle queries are those of every draw of the iteration, the t = 0 draw of a ``carried``
stage included — sampled mode's count (:func:`sim.sampled.experiment.run_sampled_rule`).

:func:`run_stages` holds only this order of operations; drawing, scoring and training are the caller's
(:mod:`llm_bridge.loop` with generation and the oracle; the bandit-LM tests with sampled mode's pairs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bandits.errors import PrefsimError

SOURCES = ("iterate", "previous_stage", "carried")


@dataclasses.dataclass
class StagesOutcome:
    """What :func:`run_stages` returns.

    Attributes:
      results: ``train``'s result of every stage, in order (the last one trained θ_{t+1}).
      carried: the pairs of the ``carry`` stage (for the next iteration's ``carried`` stage), else ``None``.
      queries: oracle queries of the iteration's draws.
    """

    results: list
    carried: Any
    queries: int


def run_stages(
    stages: tuple,
    draw: Callable[[int, bool], tuple[Any, int]],
    restore: Callable[[], None],
    train: Callable[[int, Any], Any],
    carried: Any = None,
) -> StagesOutcome:
    """Run one iteration's ``stages``; the model holds θ_t on entry and θ_{t+1} on return.

    Args:
      stages: the definition's :class:`~sim.rules.definition.Stage` tuple (``BridgeRule.stages``).
      draw: ``(stage index, initial) -> (pairs, oracle queries)``, pairs drawn from the policy the model
        holds now (``initial``: a ``carried`` stage's draw from π_0 at t = 0).
      restore: puts θ_t back into the model.
      train: ``(stage index, pairs) -> result``: precompute log π_t (the model holds θ_t) and log π_ref of
        ``pairs`` and minimise the loss from θ_t.
      carried: the pairs the previous iteration's ``carry`` stage drew; ``None`` at t = 0.
    """
    holds_iterate, queries, results, keep = True, 0, [], None
    for index, stage in enumerate(stages):
        if stage.pairs_from not in SOURCES:
            raise PrefsimError(
                f"stage {index}: pairs_from must be one of {', '.join(SOURCES)}, got {stage.pairs_from!r}."
            )
        if stage.pairs_from == "previous_stage" and index == 0:
            raise PrefsimError("stage 0 cannot draw from a previous stage; the first stage's source is π_t or carried.")
        if stage.pairs_from == "iterate" and not holds_iterate:
            restore()
            holds_iterate = True
        if stage.pairs_from == "carried" and carried is not None:
            pairs, count = carried, 0
        else:
            if stage.pairs_from == "carried" and not holds_iterate:
                raise PrefsimError("a carried stage without carried pairs must come first (it draws from π_0).")
            pairs, count = draw(index, stage.pairs_from == "carried")
        queries += count
        if stage.carry:
            keep = pairs
        if not holds_iterate:
            restore()  # the stage trains from θ_t, anchored at π_t
        results.append(train(index, pairs))
        holds_iterate = False
    return StagesOutcome(results, keep, queries)
