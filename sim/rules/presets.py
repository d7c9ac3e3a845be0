"""Named presets: rules of the literature that are another rule with reference advancement.

* ``comal`` — COMAL (Liu, Oikonomou, Zheng, Cai & Cohan, ICLR 2026, arXiv 2410.23223): INPO steps toward
  the current reference, the reference moved to π_t every M iterations.  Default M = 12, the public
  script's ``UPDATE_INTERVAL`` (``yale-nlp/COMAL``, ``comal.sh``; the paper's Llama-3 run used 6).  The
  script fixes τ/η = 1/3 (``RATIO``), so ``eta`` defaults to 3·tau.
* ``mpo`` — Magnetic Preference Optimization (Wang et al., arXiv 2410.16714): MMD whose magnet is replaced
  by the current policy periodically.  The paper states the period for its LLM runs, not for a tabular
  game; the default M = 40 is docs/theory.md §F.1's derived setting (MMD η = 0.8, τ = 0.1 drives
  COMAL's 3-action game to machine precision), stated as ours, not the paper's.  Its sampled and LLM
  loss is MMD's (INPO's at η_INPO = τ + 1/η, :mod:`sim.rules.mmd`): another estimator of the same MMD
  step than the paper's policy-gradient implementation.

Each preset is the base rule's definition (update, loss, data, bounds) under its own name, paper and
``reference_every`` default; :mod:`sim.rules.reference` holds the advancement itself.  The base's bounds
are about a fixed reference, so their hypotheses rule them out (the run says so); COMAL's monotone KL to
π⁰, which every anchored rule lists (:data:`sim.theorems.ADVANCEMENT_MONOTONE`), is checked instead.
"""

from __future__ import annotations

import dataclasses

from sim.rules import inpo, mmd
from sim.rules.definition import DerivedDefault, RuleDefinition
from sim.rules.reference import REFERENCE_EVERY


def preset(
    base: RuleDefinition,
    name: str,
    paper: str,
    summary: str,
    every: int,
    defaults: dict | None = None,
    **texts: str,
) -> RuleDefinition:
    """``base`` under ``name`` with ``reference_every`` defaulting to ``every`` and other defaults replaced;
    ``texts`` are its own ``update_formula``, ``loss_formula`` and ``anchors`` (the docs' tables)."""
    every_parameter = dataclasses.replace(REFERENCE_EVERY, default=every, optional=False)
    parameters = tuple(
        dataclasses.replace(p, default=(defaults or {})[p.name]) if p.name in (defaults or {}) else p
        for p in base.parameters
    )
    return dataclasses.replace(
        base,
        name=name,
        paper=paper,
        summary=summary,
        parameters=parameters + (every_parameter,),
        proximal=False,
        aliases=(),
        renamed={},
        **texts,
    )


COMAL = preset(
    inpo.DEFINITION,
    "comal",
    "Liu, Oikonomou, Zheng, Cai & Cohan, COMAL: A Convergent Meta-Algorithm for Aligning LLMs with General "
    "Preferences, ICLR 2026 (arXiv 2410.23223); reference every 12 as in its script",
    "INPO toward the current reference, reference ← π_t every M iterations (the conceptual prox method)",
    12,
    {"eta": DerivedDefault(lambda parameters: 3.0 * parameters["tau"], "3·tau (the script's τ/η = 1/3)", ("tau",))},
    update_formula="INPO whose reference moves to π_t every M iterations (COMAL, ICLR 2026)",
    loss_formula="INPO's, toward the rule's current reference (η default 3τ)",
    anchors=(
        "the reference (τ/η), moved to π_t every `reference_every` = M iterations (default 12), and π_t ((η−τ)/η)"
    ),
)

MPO = preset(
    mmd.DEFINITION,
    "mpo",
    "Wang et al., Magnetic Preference Optimization (arXiv 2410.16714); magnet period 40 is prefsim's choice",
    "MMD whose magnet is replaced by the current policy every M iterations",
    40,
    update_formula="MMD whose magnet moves to π_t every M iterations (MPO, arXiv 2410.16714)",
    loss_formula="MMD's (INPO's at η_INPO = τ + 1/η), toward the current magnet; not MPO's policy-gradient loss",
    anchors=(
        "the magnet (ητ/(1+ητ)), moved to π_t every `reference_every` = M iterations (default 40), and π_t (1/(1+ητ))"
    ),
)
